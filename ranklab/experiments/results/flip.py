"""A verdict can belong to the budget: each single-task claim's interval and per-seed differences
under every protocol that judged it (120 steps, 480 steps, trained to a plateau), on one axis."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from .derived import derive
from .plots import VERDICT_COLOURS

Summary = dict[str, Any]


def flip_rows(summaries: Mapping[str, Summary], recipe: str = "single_task") -> dict[str, list[dict[str, Any]]]:
    """claim key -> one row per protocol (in the order given): its label, the claim's numbers."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, summary in summaries.items():
        for claim in derive(summary, n_boot=50)["claims"]:
            if claim["recipe"] == recipe:
                rows.setdefault(claim["key"], []).append({"protocol": name, **claim})
    return rows


def fig_verdict_flip(summaries: Mapping[str, Summary], recipe: str = "single_task") -> Figure | None:
    """One panel per claim, one row per protocol: mean and 95% t-interval, the Holm interval (thin),
    coloured by the headline verdict (Holm's; the unadjusted one beside it), each seed's paired
    difference, 0 and the paper's difference as lines."""
    rows = flip_rows(summaries, recipe)
    if not rows:
        return None
    fig = Figure(figsize=(10, 1.2 * len(summaries) * len(rows) + 1.6), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (key, judged) in zip(axes, rows.items()):
        y = np.arange(len(judged))[::-1]
        for yi, claim in zip(y, judged):
            verdict = claim.get("holm_verdict") or claim["verdict"]
            colour = VERDICT_COLOURS[verdict]
            ax.plot([claim["low"], claim["high"]], [yi, yi], color=colour, linewidth=2.5)
            if "holm_low" in claim:
                ax.plot([claim["holm_low"], claim["holm_high"]], [yi + 0.15] * 2, color=colour, linewidth=0.9)
            ax.plot(claim["difference"], yi, "o", color=colour, markersize=6)
            ax.scatter(claim["per_seed"], np.full(len(claim["per_seed"]), yi - 0.22), s=12, color="black", zorder=3)
            note = (f"Holm: {verdict}\n(unadjusted: {claim['verdict']})" if claim.get("holm_verdict")
                    else verdict)
            ax.text(1.01, yi, f"{note}\n{claim['n_seeds']} seeds", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=8, color=colour)
        ax.axvline(0, color="black", linewidth=0.8)
        paper = judged[0].get("paper_difference")
        if paper is not None:
            ax.axvline(paper, color="black", linestyle="--", linewidth=0.8)
            ax.text(paper, len(judged) - 0.45, f" paper {paper:+.2f}", fontsize=8, va="top")
        ax.set_yticks(y, [c["protocol"] for c in judged], fontsize=9)
        ax.set_ylim(-0.6, len(judged) - 0.3)
        ax.set_title(f"{judged[0]['text']} ({judged[0]['b_label']} − {judged[0]['a_label']})", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    axes[-1].set_xlabel("difference B − A, points (test, mean of the tasks' main metric x 100); "
                        "thick: 95% t-interval over seeds, thin: Holm's, dots: the seeds", fontsize=9)
    fig.suptitle("the same claims under three training budgets: a verdict can belong to the budget")
    return fig
