"""Every figure of the reproduction, drawn from a results summary (no model needed).

Each ``fig_*`` function only chooses runs and numbers (``derived``); the drawing is in
``ranklab.plots`` and ``ranklab.result_plots``.  Runs are chosen by what their analysis holds
(its capabilities), never by method name.  ``draw_all`` writes PNG + PDF per figure and
RESULTS.md (``ranklab.experiments.tables``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..accounting import module_params
from ..adapters.base import EXPERT_ROUTED, RANK_CHOOSING, RANK_SLICEABLE
from ..inspect import rank_table
from ..plots import heatmap, plot_heatmap_panels, plot_lines, plot_router_distribution, save_figure
from ..result_plots import PALETTE, plot_claims, plot_embedding_study, plot_interval_bars, plot_rank_consistency
from ..result_plots import plot_sweep
from . import paper
from .derived import derive, runs_of
from .recipes import CONTROLS
from .tables import write_results_markdown

Summary = dict[str, Any]
Derived = dict[str, Any]
PAPER_TABLES = {"single_task": (paper.TABLE1_SINGLE, paper.TABLE2_SINGLE), "multi_task": (paper.TABLE1_MULTI,)}


def capabilities(run: dict[str, Any]) -> set[str]:
    return set(run["analysis"].get("capabilities", []))


def _runs(summary: Summary, recipe: str, needs: str | None = None, has: str | None = None) -> list[dict[str, Any]]:
    """Runs of a recipe with capability ``needs`` and analysis key ``has`` (when given)."""
    return [r for r in runs_of(summary, recipe)
            if (needs is None or needs in capabilities(r)) and (has is None or r["analysis"].get(has))]


def _paper_average(summary: Summary, recipe: str, label: str) -> float | None:
    """The paper's average for a label's method and options (first table that has it); controls
    (ours, not the paper's) have none."""
    if label in CONTROLS:
        return None
    run = runs_of(summary, recipe, label)[0]
    options = {k: v for k, v in run["adapter_config"].items() if k != "method"}
    for table in PAPER_TABLES.get(recipe, ()):
        value = paper.paper_average(table, run["method"], options)
        if value is not None:
            return value
    return None


def fig_results(summary: Summary, recipe: str, derived: Derived | None = None) -> Figure | None:
    scores = (derived or derive(summary))["scores"].get(recipe) or {}
    if not scores:
        return None
    first = next(iter(scores.values()))
    groups = list(first["scores"])  # tasks, then "avg"
    params = {lb: runs_of(summary, recipe, lb)[0]["params"].get("adapter_params", 0) for lb in scores}
    named = {f"{lb} ({params[lb]:,} params)": {g: s["scores"].get(g) for g in groups} for lb, s in scores.items()}
    seeds = ", ".join(str(s) for s in first["seeds"])
    papers = {f"{lb} ({params[lb]:,} params)": _paper_average(summary, recipe, lb) for lb in scores}
    paper_label = "paper avg\n(Table 1; Table 2 where\nonly there)" if recipe == "single_task" else "paper avg\n(Table 1)"
    return plot_interval_bars(named, groups, title=f"{recipe.replace('_', '-')}, {summary['scale']} scale, seeds {seeds}",
                              ylabel="main metric x 100 (full test split)", paper=papers, paper_label=paper_label)


def fig_claims(summary: Summary, derived: Derived | None = None) -> Figure | None:
    judged = (derived or derive(summary))["claims"]
    if not judged:
        return None
    return plot_claims(judged, f"the papers' claims at the {summary['scale']} scale: paired differences")


def fig_learning_curves(summary: Summary) -> Figure | None:
    """Validation score over training steps, mean over seeds per label (what "flattened" means)."""
    panels = []
    for recipe in ("single_task", "multi_task"):
        runs = runs_of(summary, recipe)
        for tasks in dict.fromkeys(tuple(r["tasks"]) for r in runs):
            panels.append((recipe, tasks, [r for r in runs if tuple(r["tasks"]) == tasks]))
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * len(panels) + 2.5, 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (recipe, tasks, runs) in zip(axes, panels):
        labels = list(dict.fromkeys(r["label"] for r in runs))
        for i, label in enumerate(labels):
            curves = [r["evals"] for r in runs if r["label"] == label]
            steps = [e["step"] for e in curves[0]]
            values = np.array([[100 * e["score"] for e in c] for c in curves if len(c) == len(steps)])
            ax.plot(steps, values.mean(0), "o-", markersize=3, color=PALETTE[i % len(PALETTE)], label=label)
            ax.fill_between(steps, values.min(0), values.max(0), color=PALETTE[i % len(PALETTE)], alpha=0.15)
        name = tasks[0] if len(tasks) == 1 else f"{len(tasks)} tasks (mean)"
        ax.set(title=f"{recipe.replace('_', '-')}: {name}", xlabel="optimizer step", ylabel="validation x 100")
    last_of_recipe = {recipe: i for i, (recipe, _, _) in enumerate(panels)}  # one legend per recipe: colours differ
    for i in last_of_recipe.values():
        axes[i].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                       title="mean over seeds;\nband: min-max", title_fontsize=7)
    return fig


def fig_lr_search(summary: Summary) -> Figure | None:
    tuning = summary.get("tuning")
    if not tuning:
        return None
    kinds = sorted({key.split(":", 1)[0] for key in tuning["scores"]})
    fig = Figure(figsize=(4.8 * len(kinds) + 2.5, 3.4), layout="constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        keys = [k for k in tuning["scores"] if k.startswith(kind + ":")]
        for i, key in enumerate(keys):
            rates = sorted(tuning["scores"][key], key=float)
            ax.plot([float(r) for r in rates], [100 * tuning["scores"][key][r] for r in rates], "o-",
                    color=PALETTE[i % len(PALETTE)], label=key.split(":", 1)[1])
            chosen = tuning["chosen"][key]
            ax.plot(chosen, 100 * tuning["scores"][key][f"{chosen:g}"], "*", markersize=12, color=PALETTE[i % len(PALETTE)])
        ax.set(xscale="log", xlabel="peak learning rate", ylabel="best validation x 100\n(mean of the tuning seeds)",
               title=f"{kind}-task learning-rate search (star: chosen)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def fig_emd_sweep(summary: Summary, derived: Derived | None = None) -> Figure | None:
    rows = (derived or derive(summary))["sweep"]
    if len(rows) < 2:
        return None
    return plot_sweep(rows, f"EMD at equal budget (a + b = 16): distinct ranks for A' and B' ({summary['scale']})")


def fig_task_embeddings(summary: Summary) -> Figure | None:
    studies = summary.get("task_embedding_study") or {}
    if "trained" not in studies:
        return None
    tasks = runs_of(summary, "multi_task", studies["trained"]["label"])[0]["tasks"]
    titles = {"trained": "rank router, trained (contrastive weight 0.1)",
              "no_contrastive": "control: trained without contrastive loss",
              "initial": "control: at initialisation"}
    fig = plot_embedding_study(studies, tasks, titles)
    fig.suptitle("last-layer task embeddings (seed paper 1, Fig. 2): colour = task, marker = module")
    return fig


def fig_chosen_ranks(summary: Summary, derived: Derived | None = None) -> Figure | None:
    data = (derived or derive(summary))["chosen_ranks"]
    if data is None:
        return None
    return plot_rank_consistency(data["chosen"], data["columns"], data["tasks"],
                                 f"rank router: chosen rank per task and module, seeds {data['seeds']} "
                                 f"(all seeds agree in {100 * data['all_seeds_agree']:.0f}% of cells)")


def _gate_figure(summary: Summary, needs: str, title: str) -> Figure | None:
    runs = _runs(summary, "multi_task", needs=needs, has="gates")
    runs = [r for r in runs if r["label"] in ("Rank router r<=16", "MoR 8 experts")] or runs
    if not runs:
        return None
    table = pd.DataFrame(runs[0]["analysis"]["gates"])
    table["task"] = [runs[0]["tasks"][t] for t in table["task"]]
    fig = plot_router_distribution(table, group="task", ncols=2)
    fig.suptitle(f"{title}, seed {runs[0]['seed']}")
    return fig


def fig_router_distribution(summary: Summary) -> Figure | None:
    return _gate_figure(summary, RANK_CHOOSING, "rank router: gate probability per rank and task (last layer)")


def fig_mor_router(summary: Summary) -> Figure | None:
    return _gate_figure(summary, EXPERT_ROUTED, "MoR: mean router weight per expert and task (last layer)")


def fig_effective_rank(summary: Summary) -> Figure | None:
    """Effective rank of ΔW per layer and module, mean over seeds, one panel per single-task method."""
    runs = _runs(summary, "single_task", has="report")
    task = runs[0]["tasks"][0] if runs else None
    runs = [r for r in runs if r["tasks"] == [task]]
    if not runs:
        return None
    tables = {}
    for label in dict.fromkeys(r["label"] for r in runs):
        frames = [pd.DataFrame(r["analysis"]["report"]) for r in runs if r["label"] == label]
        table = rank_table(pd.concat(frames), "effective_rank")  # mean over seeds
        tables[label] = table.set_axis([str(c).rsplit(".", 1)[-1] for c in table.columns], axis=1)
    vmax = max(float(np.nanmax(t.to_numpy(dtype=float))) for t in tables.values())
    seeds = sorted({r["seed"] for r in runs})
    return plot_heatmap_panels(tables, f"effective rank of ΔW per layer ({task}, mean over seeds {seeds})",
                               vmin=1, vmax=vmax, fmt=".1f", fontsize=9, xtick_fontsize=None, cmap="cividis",
                               ytick_fontsize=None, xrotation=0, colorbar="last", colorbar_label="effective rank")


def fig_dylora_curve(summary: Summary) -> Figure | None:
    runs = _runs(summary, "single_task", needs=RANK_SLICEABLE, has="rank_curve")
    if not runs:
        return None
    lines = []
    for i, task in enumerate(dict.fromkeys(r["tasks"][0] for r in runs)):
        picked = [r for r in runs if r["tasks"][0] == task]
        metric = picked[0]["main_metrics"][task]
        ranks = [c["rank"] for c in picked[0]["analysis"]["rank_curve"]]
        values = np.array([[100 * c["metrics"][task][metric] for c in r["analysis"]["rank_curve"]] for r in picked])
        lines.append({"x": ranks, "y": values.mean(0), "label": f"{task} ({metric}), mean of {len(picked)} seeds",
                      "color": PALETTE[i]})
    return plot_lines(lines, xlabel="rank b used at evaluation", ylabel="validation metric x 100",
                      title="one DyLoRA adapter, every rank")


def fig_adalora_budget(summary: Summary) -> Figure | None:
    """AdaLoRA's total rank over training (its schedule is the same for every task and seed) and
    where the budget went: the final rank of every layer and module, mean over seeds, per task."""
    runs = [r for r in runs_of(summary, "single_task") if r["rank_history"]]
    if not runs:
        return None
    tasks = list(dict.fromkeys(r["tasks"][0] for r in runs))
    fig = Figure(figsize=(4.8 + 3.0 * len(tasks), 3.6), layout="constrained")
    axes = fig.subplots(1, 1 + len(tasks), gridspec_kw={"width_ratios": [1.6] + [1] * len(tasks)})
    for i, task in enumerate(tasks):
        history = next(r for r in runs if r["tasks"][0] == task)["rank_history"]
        axes[0].plot([h["step"] for h in history], [h["total"] for h in history], "-" if i == 0 else "--",
                     color=PALETTE[i], linewidth=3 - i, label=task)
    axes[0].set(xlabel="optimizer step", ylabel="total rank, all modules",
                title="budget schedule (the same for\nevery task and seed: lines coincide)")
    axes[0].legend(fontsize=8)
    final = [r for r in runs if r.get("final_ranks")]
    tables = {}
    for task in tasks:
        frames = [pd.DataFrame({"name": list(r["final_ranks"]), "rank": list(r["final_ranks"].values())})
                  for r in final if r["tasks"][0] == task]
        if frames:
            frame = pd.concat(frames)
            frame["layer"] = frame["name"].str.extract(r"layer\.(\d+)\.", expand=False).astype(int)
            frame["module"] = frame["name"].str.rsplit(".", n=1).str[-1]
            tables[task] = frame.pivot_table(index="layer", columns="module", values="rank", aggfunc="mean")
    vmax = max((float(t.to_numpy().max()) for t in tables.values()), default=1.0)
    for ax, (task, table) in zip(axes[1:], tables.items()):
        heatmap(ax, table.to_numpy(dtype=float), list(table.columns), list(table.index), cmap="cividis", vmin=0,
                vmax=vmax, fmt=".1f", fontsize=8, xrotation=0, colorbar=ax is axes[-1], colorbar_label="final rank")
        ax.set(title=f"{task}: final rank per module\n(mean of {len(final) // len(tasks)} seeds)", xlabel="module",
               ylabel="layer")
    fig.suptitle("AdaLoRA 12 -> 8: where the rank budget went")
    return fig


def fig_mor_params(summary: Summary, d: int = 384, modules: int = 12) -> Figure:
    """Trainable parameters vs number of experts: MoR (shared A, B) vs N full LoRA experts (MoELoRA)."""
    experts = np.arange(1, 17)
    lines = []
    for r, style in ((8, "-"), (32, "--")):
        for method, colour, label in (("mor", PALETTE[0], f"MoR, shared rank {r}"),
                                      ("moelora", PALETTE[5], f"MoELoRA, {r}-rank experts")):
            counts = [modules * sum(module_params(method, d, d, r=r, n_experts=int(n)).values()) for n in experts]
            lines.append({"x": experts, "y": counts, "label": label, "style": style, "color": colour})
    return plot_lines(lines, xlabel="experts N", ylabel="trainable adapter params", yscale="log", legend_fontsize=7,
                      title=f"parameters vs experts ({modules} modules of {d} x {d})")


FIGURES: dict[str, Callable[[Summary, Derived], Figure | None]] = {
    "single_task_results": lambda s, d: fig_results(s, "single_task", d),
    "multi_task_results": lambda s, d: fig_results(s, "multi_task", d),
    "claims": lambda s, d: fig_claims(s, d),
    "learning_curves": lambda s, d: fig_learning_curves(s),
    "lr_search": lambda s, d: fig_lr_search(s),
    "emd_sweep": lambda s, d: fig_emd_sweep(s, d),
    "task_embeddings_tsne": lambda s, d: fig_task_embeddings(s),
    "chosen_ranks": lambda s, d: fig_chosen_ranks(s, d),
    "router_distribution": lambda s, d: fig_router_distribution(s),
    "mor_router_weights": lambda s, d: fig_mor_router(s),
    "mor_params_vs_experts": lambda s, d: fig_mor_params(s),
    "effective_rank_single_task": lambda s, d: fig_effective_rank(s),
    "dylora_rank_curve": lambda s, d: fig_dylora_curve(s),
    "adalora_rank_budget": lambda s, d: fig_adalora_budget(s),
}


def draw_all(summary: Summary, figures_dir: str | Path, n_boot: int | None = None) -> list[Path]:
    """Write every figure whose runs exist, plus RESULTS.md; returns the written files."""
    derived = derive(summary, n_boot)
    written = []
    for name, draw in FIGURES.items():
        fig = draw(summary, derived)
        if fig is not None:
            written += save_figure(fig, Path(figures_dir) / name)
    written.append(write_results_markdown(summary, derived, Path(figures_dir) / "RESULTS.md"))
    return written
