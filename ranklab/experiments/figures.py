"""Draw every figure and the results table from a results summary (no model needed).

``draw_all(summary, figures_dir)`` writes PNG + PDF per figure and RESULTS.md with our numbers
beside the papers'.  Each figure function returns a Figure or None when its runs are missing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..accounting import module_params
from ..inspect import rank_table
from ..plots import plot_router_distribution, plot_task_embeddings, save_figure
from . import paper

Summary = dict[str, Any]


def _runs(summary: Summary, recipe: str, method: str | None = None) -> list[dict[str, Any]]:
    return [r for r in summary["runs"] if r["recipe"] == recipe and (method is None or r["method"] == method)]


def main_score(run: dict[str, Any], task: str) -> float:
    """The task's main metric on the test split (validation where a task has no test split)."""
    return float(run["test"][task][run["main_metrics"][task]])


def results_frame(summary: Summary, recipe: str) -> pd.DataFrame:
    """One row per method label: main metric per task (x100), their average, params and time.

    Single-task recipes have one run per (method, task); their rows are merged per method."""
    rows: dict[str, dict[str, Any]] = {}
    tasks: list[str] = []
    for run in _runs(summary, recipe):
        row = rows.setdefault(run["label"], {"method": run["label"], "adapter params": 0, "wall time (s)": 0.0})
        for task in run["tasks"]:
            row[task] = 100 * main_score(run, task)
            tasks += [task] if task not in tasks else []
        row["adapter params"] = max(row["adapter params"], run["params"].get("adapter_params", 0))
        row["wall time (s)"] += run["wall_time_s"]
    frame = pd.DataFrame(list(rows.values()))
    frame["avg"] = frame[tasks].mean(axis=1)
    return frame[["method", *tasks, "avg", "adapter params", "wall time (s)"]]


def fig_results(summary: Summary, recipe: str) -> Figure | None:
    if not _runs(summary, recipe):
        return None
    frame = results_frame(summary, recipe)
    tasks = list(frame.columns[1:frame.columns.get_loc("avg") + 1])
    fig = Figure(figsize=(1.6 * len(tasks) + 3, 3.6), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(frame)
    for i, row in frame.iterrows():
        values = row[tasks].to_numpy(dtype=float)
        bars = ax.bar(np.arange(len(tasks)) + i * width, values, width, label=f"{row['method']} ({row['adapter params']:,} params)")
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
    low = np.nanmin(frame[tasks].to_numpy(dtype=float))
    ax.set(ylim=(max(0.0, low - 10), 100), ylabel="main metric x 100 (test)",
           title=f"{recipe.replace('_', '-')} ({summary['scale']} scale)")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def fig_task_embeddings(summary: Summary) -> Figure | None:
    runs = [r for r in _runs(summary, "multi_task", "rank_router") if "task_embeddings" in r["analysis"]]
    if not runs:
        return None
    points = pd.DataFrame(runs[0]["analysis"]["task_embeddings"])
    fig = plot_task_embeddings(points, task_names=runs[0]["tasks"])
    fig.axes[0].set_title(f"last-layer task embeddings, rank router ({points['method'].iloc[0]})")
    return fig


def _gate_figure(summary: Summary, method: str, title: str) -> Figure | None:
    runs = [r for r in _runs(summary, "multi_task", method) if "gates" in r["analysis"]]
    if not runs:
        return None
    table = pd.DataFrame(runs[0]["analysis"]["gates"])
    table["task"] = [runs[0]["tasks"][t] for t in table["task"]]
    last = table["layer"].max()
    fig = plot_router_distribution(table[table["layer"] == last], group="task", ncols=2)
    fig.suptitle(title)
    return fig


def fig_router_distribution(summary: Summary) -> Figure | None:
    return _gate_figure(summary, "rank_router", "rank router: gate probability per rank and task (last layer)")


def fig_mor_router(summary: Summary) -> Figure | None:
    return _gate_figure(summary, "mor", "MoR: mean router weight per expert and task (last layer)")


def fig_chosen_ranks(summary: Summary) -> Figure | None:
    runs = [r for r in _runs(summary, "multi_task", "rank_router") if "router" in r["analysis"]]
    if not runs:
        return None
    table = pd.DataFrame(runs[0]["analysis"]["router"])
    table["column"] = [f"{m}\n{runs[0]['tasks'][t]}" for m, t in zip(table["module"], table["task"])]
    pivot = table.pivot_table(index="layer", columns="column", values="chosen_rank", sort=True)
    fig = Figure(figsize=(1.1 * len(pivot.columns) + 2, 0.5 * len(pivot) + 2), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(pivot.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=1)
    for (i, j), value in np.ndenumerate(pivot.to_numpy(dtype=float)):
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(len(pivot.columns)), list(pivot.columns), fontsize=7)
    ax.set_yticks(range(len(pivot)), list(pivot.index))
    ax.set(ylabel="layer", title="rank router: chosen rank per layer, module and task")
    fig.colorbar(image, ax=ax, label="chosen rank")
    return fig


def fig_effective_rank(summary: Summary) -> Figure | None:
    """Effective rank of ΔW per layer and module, one panel per single-task method (first task)."""
    runs = [r for r in _runs(summary, "single_task") if r["analysis"].get("report")]
    task = runs[0]["tasks"][0] if runs else None
    runs = [r for r in runs if r["tasks"] == [task]]
    if not runs:
        return None
    tables = [rank_table(pd.DataFrame(run["analysis"]["report"]), "effective_rank") for run in runs]
    vmax = max(float(np.nanmax(t.to_numpy(dtype=float))) for t in tables)
    fig = Figure(figsize=(3.2 * len(runs), 3.4), layout="constrained")
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    for ax, run, table in zip(axes, runs, tables):
        values = table.to_numpy(dtype=float)
        ax.imshow(values, aspect="auto", cmap="viridis", vmin=1, vmax=vmax)
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="w", fontsize=7)
        ax.set_xticks(range(len(table.columns)), [str(c).rsplit(".", 1)[-1] for c in table.columns])
        ax.set_yticks(range(len(table)), list(table.index))
        ax.set(title=run["label"], xlabel="module", ylabel="layer")
    fig.suptitle(f"effective rank of ΔW per layer ({task}, {summary['scale']} scale)")
    return fig


def fig_dylora_curve(summary: Summary) -> Figure | None:
    runs = [r for r in _runs(summary, "single_task", "dylora") if "rank_curve" in r["analysis"]]
    if not runs:
        return None
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for run in runs:
        task = run["tasks"][0]
        metric = run["main_metrics"][task]
        curve = run["analysis"]["rank_curve"]
        ax.plot([c["rank"] for c in curve], [100 * c["metrics"][task][metric] for c in curve], "o-", label=f"{task} ({metric})")
    ax.set(xlabel="rank b used at evaluation", ylabel="validation metric x 100", title="one DyLoRA adapter, every rank")
    ax.legend(fontsize=8)
    return fig


def fig_adalora_budget(summary: Summary) -> Figure | None:
    runs = [r for r in _runs(summary, "single_task", "adalora") if r["rank_history"]]
    if not runs:
        return None
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for run in runs:
        history = run["rank_history"]
        ax.plot([h["step"] for h in history], [h["total"] for h in history], "o-", label=run["tasks"][0])
    ax.set(xlabel="step", ylabel="total rank over all modules", title="AdaLoRA: rank budget during training")
    ax.legend(fontsize=8)
    return fig


def fig_mor_params(summary: Summary, d: int = 384, modules: int = 12) -> Figure:
    """Trainable parameters vs number of experts: MoR (shared A, B) vs N full LoRA experts (MoELoRA)."""
    experts = np.arange(1, 17)
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for r, style in ((8, "-"), (32, "--")):
        mor = [modules * sum(module_params("mor", d, d, r=r, n_experts=int(n)).values()) for n in experts]
        moe = [modules * sum(module_params("moelora", d, d, r=r, n_experts=int(n)).values()) for n in experts]
        ax.plot(experts, mor, style, color="C0", label=f"MoR, shared rank {r}")
        ax.plot(experts, moe, style, color="C3", label=f"MoELoRA, {r}-rank experts")
    ax.set(xlabel="experts N", ylabel="trainable adapter params", yscale="log",
           title=f"parameters vs experts ({modules} modules of {d} x {d})")
    ax.legend(fontsize=7)
    return fig


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


def write_results_markdown(summary: Summary, path: Path) -> Path:
    from ..data.cache import atomic_write_text

    return atomic_write_text(path, results_markdown(summary))


def _table(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = [f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, (int, np.integer)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_markdown(summary: Summary) -> str:
    scale = summary["scale"]
    parts = [f"# ranklab results ({scale} scale)", "", summary["description"], ""]
    for recipe, references in (("single_task", (paper.TABLE1_SINGLE, paper.TABLE2_SINGLE)), ("multi_task", (paper.TABLE1_MULTI,))):
        if not _runs(summary, recipe):
            continue
        frame = results_frame(summary, recipe)
        for i, reference in enumerate(references):
            frame[f"paper avg ({'Table 1' if reference is not paper.TABLE2_SINGLE else 'Table 2'})"] = [
                paper.paper_average(reference, label) if paper.paper_average(reference, label) is not None else "-"
                for label in frame["method"]]
        parts += [f"## {recipe.replace('_', '-')}", "", _table(frame), ""]
    parts += [
        "Our numbers: main metric x 100 on each task's test split, "
        f"{scale} scale, seed {summary['seed']}. The papers' averages are over GLUE tasks with RoBERTa "
        "(different backbone, tasks and budget): compare orderings, not values.", "",
        f"- {paper.MOR_CLAIM}", f"- {paper.LORA_PAPER}", "",
    ]
    return "\n".join(parts)
