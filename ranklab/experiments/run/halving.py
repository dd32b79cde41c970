"""A cheaper learning-rate search, replayed on finished searches before it is used.

Successive halving over rates: every rate of a tune key starts on every tuning seed; at each rung
(an optimizer step) a rate scores the median over its tuning seeds of the best validation score
reached so far, and the worse rates stop there, keeping the better half (rounded up, never fewer
than ``min_keep``); the rates left run to their plateau and the protocol's rule chooses among them
(median seed, collapse veto, ties to the centre).  A stopped rate costs only its steps up to the
rung.

``replay`` runs the scheme on the curves a finished search recorded (every run's validation score
at every evaluation) and sets its choice beside the full search's: the same rate, or how much the
scheme's choice loses on the full search's own scores, and the steps it would have saved.  The
scheme is used only where the replay says it picks the same rates.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

SEED = re.compile(r"__s(\d+)__lr")


def _curves(tuning: dict[str, Any]) -> dict[str, dict[float, dict[int, tuple[list[int], list[float]]]]]:
    """tune key -> rate -> tuning seed -> (steps, validation scores); several task sets of one seed
    (a key searched on two tasks) are averaged at the steps they share."""
    found: dict[str, dict[float, dict[int, list[tuple[list[int], list[float]]]]]] = {}
    for run_id, curve in (tuning.get("curves") or {}).items():
        seed = SEED.search(run_id)
        if seed and curve.get("validation"):
            found.setdefault(curve["tune_key"], {}).setdefault(float(curve["lr"]), {}).setdefault(
                int(seed.group(1)), []).append((list(curve["steps"]), list(curve["validation"])))
    out: dict[str, dict[float, dict[int, tuple[list[int], list[float]]]]] = {}
    for key, by_rate in found.items():
        for lr, by_seed in by_rate.items():
            for seed, parts in by_seed.items():
                steps = sorted(set.intersection(*(set(s) for s, _ in parts)))
                values = [float(np.mean([v[s.index(step)] for s, v in parts])) for step in steps]
                out.setdefault(key, {}).setdefault(lr, {})[seed] = (steps, values)
    return out


def _best_until(curve: tuple[list[int], list[float]], step: int) -> float:
    steps, values = curve
    seen = [v for s, v in zip(steps, values) if s <= step]
    return max(seen) if seen else float("-inf")


def _choose(scores: dict[float, float]) -> float:
    """The rule's choice among rates already scored (highest; ties to the centre, then the smaller)."""
    best = max(scores.values())
    tied = sorted(lr for lr, s in scores.items() if s >= best - 1e-12)
    centre = float(np.mean(np.log(tied)))
    return min(tied, key=lambda lr: (round(abs(math.log(lr) - centre), 9), lr))


def halve(curves: dict[float, dict[int, tuple[list[int], list[float]]]], rungs: Sequence[int],
          min_keep: int = 2) -> tuple[float, dict[float, int], int, int]:
    """One key's search under successive halving: (chosen rate, the step each rate stopped at,
    steps trained, steps the full search trained)."""
    alive = sorted(curves)
    stopped: dict[float, int] = {}
    for rung in rungs:
        if len(alive) <= min_keep:
            break
        score = {lr: float(np.median([_best_until(c, rung) for c in curves[lr].values()])) for lr in alive}
        keep = max(min_keep, math.ceil(len(alive) / 2))
        ranked = sorted(alive, key=lambda lr: -score[lr])
        for lr in ranked[keep:]:
            stopped[lr] = rung
        alive = ranked[:keep]
    final = {lr: float(np.median([max(c[1]) for c in curves[lr].values()])) for lr in alive}
    full_steps = sum(c[0][-1] for by_seed in curves.values() for c in by_seed.values())
    used = sum(min(c[0][-1], stopped.get(lr, c[0][-1])) for lr, by_seed in curves.items() for c in by_seed.values())
    return _choose(final), stopped, used, full_steps


def replay(tuning: dict[str, Any], rungs: Sequence[int] = (300,), min_keep: int = 2) -> pd.DataFrame:
    """Per tune key of a finished search: the full search's rate, the scheme's, the scheme's loss
    on the full search's score of its choice (0 when the same), and the share of steps it trains."""
    rows = []
    for key, curves in _curves(tuning).items():
        chosen, stopped, used, full = halve(curves, rungs, min_keep)
        full_choice = float(tuning["chosen"][key])
        scores = tuning["scores"][key]
        rows.append({"tune key": key, "full search": full_choice, "halving": chosen,
                     "same rate": chosen == full_choice,
                     "validation lost (x 100)": round(100 * (scores[f"{full_choice:g}"] - scores[f"{chosen:g}"]), 2),
                     "stopped at the rung": ", ".join(f"{lr:g}" for lr in sorted(stopped)) or "none",
                     "steps trained / full": round(used / full, 3)})
    return pd.DataFrame(rows)
