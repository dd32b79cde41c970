"""The plateau rule (patience with ``min_delta``), one definition for the trainer and for replaying
it on a recorded validation curve (the convergence check: where would the rule have stopped?).

Patience counts evaluations since the score last rose by more than ``min_delta`` above the score
that last reset it: gains within the validation noise do not keep a run going.  Evaluations before
``selectable_from`` (AdaLoRA before its final budget) neither reset nor count.
"""
from __future__ import annotations

from typing import Any, Sequence


def plateau_update(plateau_score: float | None, bad_evals: int, score: float,
                   min_delta: float) -> tuple[float, int]:
    """(plateau score, evaluations without a gain) after one selectable evaluation scoring ``score``."""
    if plateau_score is None or score > plateau_score + min_delta:
        return score, 0
    return plateau_score, bad_evals + 1


def plateau_stop(evals: Sequence[dict[str, Any]], patience: int, min_delta: float,
                 selectable_from: int = 0) -> int | None:
    """The index of the evaluation after which the rule stops a run with these ``evals`` (each with
    "step" and "score"), or None if it never does."""
    plateau, bad = None, 0
    for i, entry in enumerate(evals):
        if entry["step"] < selectable_from:
            continue
        plateau, bad = plateau_update(plateau, bad, entry["score"], min_delta)
        if bad >= patience:
            return i
    return None
