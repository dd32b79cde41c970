"""Every figure of the reproduction, drawn from a results summary (no model needed).

Each ``fig_*`` function only chooses runs and data; the drawing is in ``ranklab.plots``.  Runs are
chosen by what their analysis holds (its capabilities), never by method name.  ``draw_all``
writes PNG + PDF per figure and RESULTS.md (``ranklab.experiments.tables``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..accounting import module_params
from ..adapters.base import (
    EXPERT_ROUTED,
    MERGEABLE,
    MERGEABLE_PER_TASK,
    RANK_CHOOSING,
    RANK_SLICEABLE,
    TASK_EMBEDDINGS,
    TASK_ROUTED,
)
from ..inspect import rank_table
from ..plots import (
    plot_grouped_bars,
    plot_heatmap_panels,
    plot_lines,
    plot_matrix,
    plot_router_distribution,
    plot_task_embeddings,
    save_figure,
)
from .tables import recipe_runs, results_frame, write_results_markdown

Summary = dict[str, Any]
# Analyses of format 1 did not store capabilities: the method's default layer had these.  This
# migration is the one place a method name decides anything here.
FORMAT1_CAPABILITIES = {
    "lora": [MERGEABLE], "emd": [MERGEABLE], "dylora": [MERGEABLE, RANK_SLICEABLE],
    "rank_router": [TASK_ROUTED, TASK_EMBEDDINGS, RANK_CHOOSING, MERGEABLE_PER_TASK],
    "mor": [EXPERT_ROUTED], "adalora": [],
}


def capabilities(run: dict[str, Any]) -> set[str]:
    analysis = run["analysis"]
    if "capabilities" in analysis:
        return set(analysis["capabilities"])
    return set(FORMAT1_CAPABILITIES.get(run["method"], []))


def _runs(summary: Summary, recipe: str, needs: str | None = None, has: str | None = None) -> list[dict[str, Any]]:
    """Runs of a recipe with capability ``needs`` and analysis key ``has`` (when given)."""
    return [r for r in recipe_runs(summary, recipe)
            if (needs is None or needs in capabilities(r)) and (has is None or r["analysis"].get(has))]


def fig_results(summary: Summary, recipe: str) -> Figure | None:
    if not recipe_runs(summary, recipe):
        return None
    frame = results_frame(summary, recipe)
    tasks = list(frame.columns[1:frame.columns.get_loc("avg") + 1])
    labels = [f"{m} ({p:,} params)" for m, p in zip(frame["method"], frame["adapter params"])]
    values = frame[tasks].set_axis(labels, axis=0)
    low = np.nanmin(values.to_numpy(dtype=float))
    return plot_grouped_bars(values, title=f"{recipe.replace('_', '-')} ({summary['scale']} scale)",
                             ylabel="main metric x 100 (test)", ylim=(max(0.0, low - 10), 100))


def fig_task_embeddings(summary: Summary) -> Figure | None:
    runs = _runs(summary, "multi_task", needs=TASK_EMBEDDINGS, has="task_embeddings")
    if not runs:
        return None
    points = pd.DataFrame(runs[0]["analysis"]["task_embeddings"])
    fig = plot_task_embeddings(points, task_names=runs[0]["tasks"])
    fig.axes[0].set_title(f"last-layer task embeddings, rank router ({points['method'].iloc[0]})")
    return fig


def _gate_figure(summary: Summary, needs: str, title: str) -> Figure | None:
    runs = _runs(summary, "multi_task", needs=needs, has="gates")
    if not runs:
        return None
    table = pd.DataFrame(runs[0]["analysis"]["gates"])
    table["task"] = [runs[0]["tasks"][t] for t in table["task"]]
    last = table["layer"].max()
    fig = plot_router_distribution(table[table["layer"] == last], group="task", ncols=2)
    fig.suptitle(title)
    return fig


def fig_router_distribution(summary: Summary) -> Figure | None:
    return _gate_figure(summary, RANK_CHOOSING, "rank router: gate probability per rank and task (last layer)")


def fig_mor_router(summary: Summary) -> Figure | None:
    return _gate_figure(summary, EXPERT_ROUTED, "MoR: mean router weight per expert and task (last layer)")


def fig_chosen_ranks(summary: Summary) -> Figure | None:
    runs = _runs(summary, "multi_task", needs=RANK_CHOOSING, has="router")
    if not runs:
        return None
    table = pd.DataFrame(runs[0]["analysis"]["router"])
    table["column"] = [f"{m}\n{runs[0]['tasks'][t]}" for m, t in zip(table["module"], table["task"])]
    pivot = table.pivot_table(index="layer", columns="column", values="chosen_rank", sort=True)
    return plot_matrix(pivot, title="rank router: chosen rank per layer, module and task", ylabel="layer",
                       vmin=1, fmt=".0f", fontsize=8, xtick_fontsize=7, ytick_fontsize=None, xrotation=0,
                       colorbar_label="chosen rank")


def fig_effective_rank(summary: Summary) -> Figure | None:
    """Effective rank of ΔW per layer and module, one panel per single-task method (first task)."""
    runs = _runs(summary, "single_task", has="report")
    task = runs[0]["tasks"][0] if runs else None
    runs = [r for r in runs if r["tasks"] == [task]]
    if not runs:
        return None
    tables = {}
    for run in runs:
        table = rank_table(pd.DataFrame(run["analysis"]["report"]), "effective_rank")
        tables[run["label"]] = table.set_axis([str(c).rsplit(".", 1)[-1] for c in table.columns], axis=1)
    vmax = max(float(np.nanmax(t.to_numpy(dtype=float))) for t in tables.values())
    return plot_heatmap_panels(tables, f"effective rank of ΔW per layer ({task}, {summary['scale']} scale)",
                               vmin=1, vmax=vmax, fmt=".1f", fontsize=7, xtick_fontsize=None,
                               ytick_fontsize=None, xrotation=0, colorbar=False)


def fig_dylora_curve(summary: Summary) -> Figure | None:
    runs = _runs(summary, "single_task", needs=RANK_SLICEABLE, has="rank_curve")
    if not runs:
        return None
    lines = []
    for run in runs:
        task = run["tasks"][0]
        metric = run["main_metrics"][task]
        curve = run["analysis"]["rank_curve"]
        lines.append({"x": [c["rank"] for c in curve], "y": [100 * c["metrics"][task][metric] for c in curve],
                      "label": f"{task} ({metric})"})
    return plot_lines(lines, xlabel="rank b used at evaluation", ylabel="validation metric x 100",
                      title="one DyLoRA adapter, every rank")


def fig_adalora_budget(summary: Summary) -> Figure | None:
    runs = [r for r in recipe_runs(summary, "single_task") if r["rank_history"]]
    if not runs:
        return None
    lines = [{"x": [h["step"] for h in run["rank_history"]], "y": [h["total"] for h in run["rank_history"]],
              "label": run["tasks"][0]} for run in runs]
    return plot_lines(lines, xlabel="step", ylabel="total rank over all modules",
                      title="AdaLoRA: rank budget during training")


def fig_mor_params(summary: Summary, d: int = 384, modules: int = 12) -> Figure:
    """Trainable parameters vs number of experts: MoR (shared A, B) vs N full LoRA experts (MoELoRA)."""
    experts = np.arange(1, 17)
    lines = []
    for r, style in ((8, "-"), (32, "--")):
        for method, colour, label in (("mor", "C0", f"MoR, shared rank {r}"), ("moelora", "C3", f"MoELoRA, {r}-rank experts")):
            counts = [modules * sum(module_params(method, d, d, r=r, n_experts=int(n)).values()) for n in experts]
            lines.append({"x": experts, "y": counts, "label": label, "style": style, "color": colour})
    return plot_lines(lines, xlabel="experts N", ylabel="trainable adapter params", yscale="log", legend_fontsize=7,
                      title=f"parameters vs experts ({modules} modules of {d} x {d})")


FIGURES: dict[str, Callable[[Summary], Figure | None]] = {
    "single_task_results": lambda s: fig_results(s, "single_task"),
    "multi_task_results": lambda s: fig_results(s, "multi_task"),
    "task_embeddings_tsne": fig_task_embeddings,
    "router_distribution": fig_router_distribution,
    "chosen_ranks": fig_chosen_ranks,
    "mor_router_weights": fig_mor_router,
    "mor_params_vs_experts": fig_mor_params,
    "effective_rank_single_task": fig_effective_rank,
    "dylora_rank_curve": fig_dylora_curve,
    "adalora_rank_budget": fig_adalora_budget,
}


def draw_all(summary: Summary, figures_dir: str | Path) -> list[Path]:
    """Write every figure whose runs exist, plus RESULTS.md; returns the written files."""
    written = []
    for name, draw in FIGURES.items():
        fig = draw(summary)
        if fig is not None:
            written += save_figure(fig, Path(figures_dir) / name)
    written.append(write_results_markdown(summary, Path(figures_dir) / "RESULTS.md"))
    return written
