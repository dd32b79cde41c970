"""The learning-rate search as RESULTS.md and the figures show it: one row and one line per tune
key (a method, and its task where each task's rate is chosen on its own validation split), on the
rates searched for that key (a grid extended beyond an edge winner has more), also while the
search is still in progress (its runs so far, nothing chosen yet)."""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..run.tuning import edge_winners
from .plots import PALETTE

Summary = dict[str, Any]


def key_parts(key: str) -> tuple[str, str, str | None]:
    """(kind, method_id, task or None) of a tune key ("single:lora_r8@trec", "multi:mor_e8_r8")."""
    kind, rest = key.split(":", 1)
    method_id, _, task = rest.partition("@")
    return kind, method_id, task or None


def key_label(tuning: dict[str, Any], key: str) -> str:
    """A tune key as shown: the label of its method entry, and its task where it has one."""
    _, method_id, task = key_parts(key)
    label = (tuning.get("labels") or {}).get(key, method_id)
    return f"{label} ({task})" if task else label


def seed_points(tuning: dict[str, Any]) -> dict[str, dict[float, list[tuple[int, float]]]]:
    """tune key -> rate -> (tuning seed, best validation score) of every search run so far."""
    points: dict[str, dict[float, list[tuple[int, float]]]] = {}
    for run_id, curve in (tuning.get("curves") or {}).items():
        seed = re.search(r"__s(\d+)__lr", run_id)
        if seed and curve.get("validation"):
            points.setdefault(curve["tune_key"], {}).setdefault(float(curve["lr"]), []).append(
                (int(seed.group(1)), max(curve["validation"])))
    return points


def search_frame(summary: Summary) -> pd.DataFrame | None:
    """Best validation score x 100 per tune key and rate (the rule's statistic over the tuning seeds;
    "n of m seeds" where a rate is not finished yet), the chosen rate and the vetoed ones."""
    tuning = summary.get("tuning")
    if not tuning:
        return None
    points, seeds = seed_points(tuning), len(tuning.get("seeds") or []) or None
    keys = list(tuning.get("scores") or points)
    rates = sorted({float(r) for k in keys for r in (tuning.get("scores") or {}).get(k, {})} |
                   {lr for k in keys for lr in points.get(k, {})})
    rows = []
    for key in keys:
        row: dict[str, Any] = {"method": key_label(tuning, key)}
        for lr in rates:
            done = points.get(key, {}).get(lr, [])
            score = (tuning.get("scores") or {}).get(key, {}).get(f"{lr:g}")
            if score is not None:
                row[f"lr {lr:g}"] = f"{100 * score:.2f}"
            elif done:
                row[f"lr {lr:g}"] = f"{len(done)} of {seeds or '?'} seeds"
            else:
                row[f"lr {lr:g}"] = "-"
        chosen = (tuning.get("chosen") or {}).get(key)
        row["chosen"] = "searching" if chosen is None else f"{chosen:g}"
        if str(tuning.get("rule_name", "")).startswith("median_veto"):
            row["vetoed (a run at chance)"] = ", ".join(sorted((tuning.get("vetoed") or {}).get(key, {}))) or "none"
        rows.append(row)
    return pd.DataFrame(rows)


def fig_lr_search(summary: Summary, chance: dict[str, float] | None = None) -> Figure | None:
    """One panel per searched task (or task set): each method's best validation score per rate, every
    tuning seed (dots), the rule's statistic over them (line: median or mean), the chosen rate (a
    ring), and the majority-class level of that panel's task (``chance``: task -> level x 100)."""
    tuning = summary.get("tuning")
    if not tuning or tuning.get("taken_from"):  # a derived scale reuses another's search: no figure of its own
        return None
    points = seed_points(tuning)
    if not points:
        return None
    panels: dict[str, list[str]] = {}
    for key in points:
        kind, _, task = key_parts(key)
        tasks = task or "+".join(sorted({t for run_id, c in (tuning.get("curves") or {}).items()
                                         if c.get("tune_key") == key for t in c.get("tasks", [])}))
        panels.setdefault(f"{kind}-task search on {tasks}", []).append(key)
    statistic = "median" if str(tuning.get("rule_name", "")).startswith("median") else "mean"
    fig = Figure(figsize=(7.6, 3.8 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]  # one row per panel: readable in a notebook
    for ax, (title, keys) in zip(axes, panels.items()):
        values = []
        methods = list(dict.fromkeys(key_parts(k)[1] for k in keys))  # colours and markers per panel
        for key in keys:
            i = methods.index(key_parts(key)[1])
            colour, marker = PALETTE[i % len(PALETTE)], "osD^v<>"[i % 7]
            shift = 1 + 0.05 * (i - (len(methods) - 1) / 2)  # methods side by side at each rate
            by_lr = points[key]
            for lr, pts in sorted(by_lr.items()):
                ys = [100 * v for _, v in pts]
                values += ys
                ax.scatter([lr * shift] * len(ys), ys, s=14, color=colour, marker=marker, edgecolors="black",
                           linewidths=0.3, zorder=3)
            scores = (tuning.get("scores") or {}).get(key)
            label = key_label(tuning, key).split(" (")[0]
            if scores:
                rates = sorted(scores, key=float)
                ax.plot([float(r) * shift for r in rates], [100 * scores[r] for r in rates], "-", color=colour,
                        linewidth=1.2, marker=marker, markersize=4, markevery=[], label=label)
                chosen = (tuning.get("chosen") or {}).get(key)
                if chosen is not None:
                    ax.scatter([chosen * shift], [100 * scores[f"{chosen:g}"]], s=140, facecolors="none",
                               edgecolors=colour, linewidths=1.8, zorder=4)
            else:
                ax.plot([], [], marker, color=colour, label=label)
        tasks = title.rsplit(" on ", 1)[1].split("+")
        levels = [(chance or {}).get(t) for t in tasks]
        level = float(np.mean(levels)) if levels and None not in levels else None
        low, high = min(values), max(values)
        pad = max(0.5, 0.08 * (high - low))
        if level is not None and level >= low - 10:  # a majority level far below the data would flatten it
            ax.axhline(level, color="black", linestyle="--", linewidth=0.8, label=f"majority class ({level:.1f})")
            low = min(low, level)
        elif level is not None:
            ax.text(0.02, 0.02, f"majority class: {level:.1f} (below the axis)", transform=ax.transAxes, fontsize=8)
        ax.set_ylim(low - pad, high + pad)
        seeds = ", ".join(str(s) for s in tuning.get("seeds") or sorted({s for k in keys for p in points[k].values()
                                                                          for s, _ in p}))
        state = "" if tuning.get("chosen") else " (in progress)"
        ax.set(xscale="log", xlabel="peak learning rate", ylabel="best validation x 100",
               title=f"{title}{state}\ntuning seeds {seeds}")
        ticks = sorted({lr for key in keys for lr in points[key]})
        ax.set_xticks(ticks, [f"{lr:g}" for lr in ticks], fontsize=8)
        ax.minorticks_off()
        ax.title.set_fontsize(9)
        task_sets = {tuple(c.get("tasks", [])) for c in (tuning.get("curves") or {}).values() if c.get("tune_key") in keys}
        pooled = len(task_sets) > 1  # a key's rate chosen over several task sets: one dot per seed and task
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, title_fontsize=8,
                  title=(f"dots: {'each seed on each task' if pooled else 'tuning seeds'}\n"
                         f"line: their {statistic}{' (tasks averaged)' if pooled else ''}\nring: the chosen rate"))
    return fig


def search_text(tuning: dict[str, Any]) -> list[str]:
    """RESULTS.md's lines above the search table: seeds, rule, and what is still open."""
    seeds = tuning.get("seeds") or sorted({s for pts in seed_points(tuning).values() for p in pts.values()
                                           for s, _ in p})
    lines = [f"## Learning-rate search (validation only, tuning seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(str(s) for s in seeds)}, never reported)", ""]
    if not tuning.get("chosen"):
        done = len(tuning.get("runs") or {})
        lines += [f"**In progress: {done} search runs finished; no rate is chosen until every run of the search "
                  "(and of its extensions beyond an edge winner) has finished**, so no reported run of this "
                  "protocol exists yet.", ""]
    if tuning.get("taken_from"):
        lines += [f"Not searched at this scale: taken from {tuning['taken_from']}.", ""]
    rule = tuning.get("rule") or tuning.get("rule_name", "")
    lines += [f"Rule: {rule}. Best validation score x 100 per rate:", ""]
    edges = edge_winners(tuning)
    if edges:
        lines += ["Still on an edge of the rates searched (the extension limit): "
                  + "; ".join(f"{key_label(tuning, k)} at {lr:g}" for k, lr in edges.items()) + ".", ""]
    return lines
