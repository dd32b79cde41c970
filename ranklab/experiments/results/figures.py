"""Every figure of the reproduction, drawn from a results summary (no model needed).

Each ``fig_*`` function only chooses runs and numbers (``derived``); the drawing is in
``ranklab.plots`` and ``results.plots``.  Runs are chosen by what their analysis holds (its
capabilities) or by their stable method_id (``protocol.spec``), never by method name or display
label; labels are only drawn.  ``draw_all`` writes PNG + PDF per figure and RESULTS.md
(``results.tables``).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...accounting import module_params
from ...adapters.base import EXPERT_ROUTED, RANK_CHOOSING, RANK_SLICEABLE
from ...inspect import rank_table
from ...plots import heatmap, plot_heatmap_panels, plot_lines, save_figure
from ..protocol import paper
from ..protocol.recipes import CONTROLS, MOR_ID, MULTI_TASK_METHODS
from ..protocol.spec import recipe_kind
from .claims import CLAIMS, seeds_at_chance
from .derived import collapsed_seeds, derive, label_of, router_id, runs_of
from .embedding_study import neighbour_test, regions_sentence
from .plots import PALETTE, plot_claims, plot_dot_intervals, plot_embedding_study, plot_rank_consistency
from .plots import plot_sweep
from .search import fig_lr_search as search_figure
from .summary_format import decode
from .tables import PAPER_ROWS, write_results_markdown

Summary = dict[str, Any]
Derived = dict[str, Any]


def capabilities(run: dict[str, Any]) -> set[str]:
    return set(run["analysis"].get("capabilities", []))


def _runs(summary: Summary, recipe: str, needs: str | None = None, has: str | None = None) -> list[dict[str, Any]]:
    """Runs of a recipe with capability ``needs`` and analysis key ``has`` (when given)."""
    return [r for r in runs_of(summary, recipe)
            if (needs is None or needs in capabilities(r)) and (has is None or r["analysis"].get(has))]


def _main_metrics(summary: Summary, recipe: str) -> dict[str, str]:
    metrics: dict[str, str] = {}
    for run in runs_of(summary, recipe):
        metrics.update(run["main_metrics"])
    return metrics


def chance_levels(summary: Summary, tasks: list[str], metrics: dict[str, str]) -> dict[str, float]:
    """x 100, per task: the majority class's accuracy (from the test labels), or 0 for MCC (any
    constant prediction); the average where every task has one."""
    from collections import Counter

    levels = {}
    for task in tasks:
        if metrics.get(task) == "mcc":
            levels[task] = 0.0
        elif metrics.get(task) == "accuracy" and isinstance(summary.get("labels", {}).get(task), str):
            labels = decode(summary["labels"][task])
            levels[task] = 100 * Counter(labels.tolist()).most_common(1)[0][1] / len(labels)
    if tasks and all(t in levels for t in tasks):
        levels["avg"] = float(np.mean([levels[t] for t in tasks]))
    return levels


def _paper_points(summary: Summary, recipe: str, method_ids: list[str]) -> list[tuple[str, str, float, int | None]]:
    """Every paper row of the recipe's tables: (table, method, average, index of our matching method entry)."""
    ours = []
    for method_id in method_ids:
        run = runs_of(summary, recipe, method_id)[0]
        ours.append((run["method"], {k: v for k, v in run["adapter_config"].items() if k != "method"}))
    points = []
    for name, table in PAPER_ROWS.get(recipe, ()):
        for method_label, row in table.items():
            match = next((i for i, (method, options) in enumerate(ours) if method_ids[i] not in CONTROLS
                          and paper.paper_row({method_label: row}, method, options) is not None), None)
            points.append((name, method_label, row["avg"], match))
    return points


def fig_results(summary: Summary, recipe: str, derived: Derived | None = None) -> Figure | None:
    """Each method entry's mean over seeds with its 95% t-interval and every seed, per task and on average;
    accuracy and MCC on their own axes, the majority class as a dashed line, seeds at chance as a
    red x; every paper number beside, with its method's name."""
    scores = (derived or derive(summary))["scores"].get(recipe) or {}
    if not scores:
        return None
    first = next(iter(scores.values()))
    tasks = [g for g in first["scores"] if g != "avg"]
    metrics = _main_metrics(summary, recipe)
    panels = [(f"{metric} x 100 (test)", [t for t in tasks if metrics.get(t) == metric])
              for metric in dict.fromkeys(metrics.get(t, "score") for t in tasks)]
    if len(tasks) > 1:
        panels.append(("mean of the tasks' main metrics x 100", ["avg"]))
    named, at_chance = {}, {}
    for method_id, s in scores.items():
        run = runs_of(summary, recipe, method_id)[0]
        name = f"{run['label']} ({run['params'].get('adapter_params', 0):,} params)"
        named[name] = dict(s["scores"])
        index = {seed: i for i, seed in enumerate(s["seeds"])}
        found = seeds_at_chance(summary, recipe, method_id, s["seeds"])
        at_chance[name] = {t: [index[seed] for seed, bad in found.items() if t in bad] for t in tasks}
        at_chance[name]["avg"] = [index[seed] for seed in found]
    seeds = ", ".join(str(s) for s in first["seeds"])
    return plot_dot_intervals(named, panels, f"{recipe.replace('_', '-')}, {summary['scale']} scale, seeds {seeds}",
                              chance=chance_levels(summary, tasks, metrics), at_chance=at_chance,
                              paper=_paper_points(summary, recipe, list(scores)))


# Claims of a scale that another protocol's verdicts replace (recipe -> why), drawn faded.
SUPERSEDED = {scale: {"single_task": "the converged protocol replaces these fixed-budget verdicts"}
              for scale in ("embedded", "embedded-x4")}


def fig_claims(summary: Summary, derived: Derived | None = None) -> Figure | None:
    judged = (derived or derive(summary))["claims"]
    if not judged:
        return None
    recipes = list(dict.fromkeys(c["recipe"] for c in judged))
    superseded = SUPERSEDED.get(summary["scale"], {})
    panels = [(f"{kind}-task claims" + "".join(f" (superseded: {why})" for r, why in superseded.items()
                                               if recipe_kind(r) == kind),
               [r for r in recipes if recipe_kind(r) == kind]) for kind in ("single", "multi")]
    return plot_claims(judged, f"the papers' claims at the {summary['scale']} scale: per-seed paired differences",
                       panels=panels, superseded=superseded)


def fig_learning_curves(summary: Summary) -> Figure | None:
    """Validation score over training steps per method entry: the mean over the seeds that did not collapse
    (band: their min-max); a collapsed seed (at chance on at least half of its tasks) is its own
    dashed line, never averaged in.  Runs that stop at their own plateau are one line each.  The
    second row zooms on the last half of every run, where the 1-point plateau differences live."""
    panels = []
    for recipe in ("single_task", "multi_task"):
        runs = runs_of(summary, recipe)
        for tasks in dict.fromkeys(tuple(r["tasks"]) for r in runs):
            panels.append((recipe, tasks, [r for r in runs if tuple(r["tasks"]) == tasks]))
    if not panels:
        return None
    fig = Figure(figsize=(11.0, 3.3 * len(panels) + 0.4), layout="constrained")
    grid = fig.subplots(len(panels), 2, squeeze=False)  # a row per panel: full curves, then the zoom
    for row, (recipe, tasks, runs) in enumerate(panels):
        for ax in grid[row]:
            _draw_curves(ax, summary, recipe, runs)
        name = tasks[0] if len(tasks) == 1 else f"{len(tasks)} tasks (mean)"
        grid[row, 0].set(title=f"{recipe.replace('_', '-')}: {name}", ylabel="validation x 100", xlabel="optimizer step")
        late = [100 * e["score"] for r in runs if r["seed"] not in collapsed_seeds(summary, recipe, r["method_id"])
                for e in r["evals"] if e["step"] >= r["evals"][-1]["step"] / 2] or [0.0]
        grid[row, 1].set_ylim(min(late) - 0.5, max(late) + 0.5)
        grid[row, 1].set(title="zoom: the last half of every run", xlabel="optimizer step")
        grid[row, 1].title.set_fontsize(9)
    plateau = any((r.get("config") or {}).get("patience") for r in summary["runs"])
    first_of_recipe = {}
    for i, (recipe, _, _) in enumerate(panels):
        first_of_recipe.setdefault(recipe, i)  # one legend per recipe: colours differ between recipes
    for i in first_of_recipe.values():
        grid[i, 1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                          title=("one line per run, x: where it stopped at its plateau" if plateau else
                                 "solid: mean of the seeds named,\nband: their min-max")
                                + ";\ndashed: a collapsed seed\n(at chance on >= half its tasks)", title_fontsize=8)
    return fig


def _draw_curves(ax: Any, summary: Summary, recipe: str, runs: list[dict[str, Any]]) -> None:
    """One panel's curves: per method entry, one line per run (plateau runs) or the seeds' mean and band."""
    for i, method_id in enumerate(dict.fromkeys(r["method_id"] for r in runs)):
        colour = PALETTE[i % len(PALETTE)]
        collapsed = set(collapsed_seeds(summary, recipe, method_id))
        mine = [r for r in runs if r["method_id"] == method_id]
        label = mine[0]["label"]
        if any((r.get("config") or {}).get("patience") for r in mine):  # runs stop at their own plateau
            _plateau_lines(ax, mine, collapsed, label, colour, runs_of(summary, recipe, method_id))
            continue
        steps = [e["step"] for e in mine[0]["evals"]]
        kept = [r for r in mine if r["seed"] not in collapsed and len(r["evals"]) == len(steps)]
        name = f"{label}: seeds {', '.join(str(r['seed']) for r in kept) or '-'}"
        if kept:
            values = np.array([[100 * e["score"] for e in r["evals"]] for r in kept])
            ax.plot(steps, values.mean(0), "o-", markersize=3, color=colour, label=name)
            ax.fill_between(steps, values.min(0), values.max(0), color=colour, alpha=0.15)
        for r in (r for r in mine if r["seed"] in collapsed):
            ax.plot([e["step"] for e in r["evals"]], [100 * e["score"] for e in r["evals"]], "--", linewidth=0.9,
                    color=colour, label=f"{label}: seed {r['seed']} collapsed")


def _plateau_lines(ax: Any, runs: list[dict[str, Any]], collapsed: set[int], label: str, colour: Any,
                   every_task: list[dict[str, Any]]) -> None:
    """One thin line per run (each stops at its own plateau; x: where it stopped), and in the legend
    (one per recipe) how many of the method's runs, on every task (``every_task``), had their best
    validation score at their last evaluation, as RESULTS.md's training-length table gives it."""
    from .tables import best_at_last_eval

    rising = sum(best_at_last_eval(r) for r in every_task)
    for i, r in enumerate(runs):
        steps, values = [e["step"] for e in r["evals"]], [100 * e["score"] for e in r["evals"]]
        dashed = r["seed"] in collapsed
        ax.plot(steps, values, "--" if dashed else "-", linewidth=0.8, color=colour, alpha=0.7,
                label=(f"{label}: {len(every_task)} runs, {rising} best at the last evaluation" if i == 0 else None))
        ax.plot(steps[-1:], values[-1:], "x", color=colour, markersize=4)


def fig_lr_search(summary: Summary) -> Figure | None:
    """The search (``search.fig_lr_search``) with each searched task's majority-class level."""
    tasks = sorted({t for r in summary["runs"] for t in r["tasks"]})
    metrics = {t: m for r in summary["runs"] for t, m in r["main_metrics"].items()}
    return search_figure(summary, chance_levels(summary, tasks, metrics))


def fig_emd_sweep(summary: Summary, derived: Derived | None = None) -> Figure | None:
    rows = (derived or derive(summary))["sweep"]
    if len(rows) < 2:
        return None
    seeds = ", ".join(str(s) for s in rows[0]["seeds"])
    return plot_sweep(rows, f"EMD at equal budget (a + b = 16): distinct ranks for A' and B' ({summary['scale']}, "
                            f"{'/'.join(rows[0]['tasks'])}, seeds {seeds})")


def fig_task_embeddings(summary: Summary) -> Figure | None:
    studies = summary.get("task_embedding_study") or {}
    if "trained" not in studies:
        return None
    tasks = runs_of(summary, "multi_task", studies["trained"]["method_id"])[0]["tasks"]
    titles = {"trained": "rank router, trained (contrastive weight 0.1)",
              "no_contrastive": "control: trained without contrastive loss",
              "initial": "control: at initialisation"}
    tests = {k: neighbour_test(v["points"]) for k, v in studies.items() if k in titles and v.get("points")}
    sentence = regions_sentence(tests, titles)
    head = "last-layer task embeddings (seed paper 1, Fig. 2): does each task get a region of its own?"
    return plot_embedding_study(studies, tasks, titles, tests, "\n".join([head, *textwrap.wrap(sentence, 160)]))


def fig_chosen_ranks(summary: Summary, derived: Derived | None = None) -> Figure | None:
    data = (derived or derive(summary))["chosen_ranks"]
    if data is None:
        return None
    return plot_rank_consistency(data["chosen"], data["columns"], data["tasks"],
                                 f"rank router: chosen rank per task and module, seeds {data['seeds']} "
                                 f"(all seeds agree in {100 * data['all_seeds_agree']:.0f}% of cells)")


def _gate_figure(summary: Summary, needs: str, method_id: str, title: str, xlabel: str) -> Figure | None:
    """Gate probability per task (rows) and gate (columns, numbered from 1) of each last-layer
    module: the mean over the seeds that did not collapse, annotated with their spread (half the
    min-max range), on a colour scale that spans the values shown; ``title`` may name the entry's
    label as ``{label}``."""
    runs = [r for r in _runs(summary, "multi_task", needs=needs, has="gates") if r["method_id"] == method_id]
    if not runs:
        return None
    title = title.format(label=runs[0]["label"])
    collapsed = set(collapsed_seeds(summary, "multi_task", method_id))
    kept = [r for r in runs if r["seed"] not in collapsed] or runs
    frames = []
    for run in kept:
        table = pd.DataFrame(run["analysis"]["gates"])
        table["task"] = [run["tasks"][t] for t in table["task"]]
        frames.append(table)
    table = pd.concat(frames)
    gates = [c for c in table.columns if c.startswith("gate_")]
    modules = list(dict.fromkeys(table["name"]))
    tasks = list(dict.fromkeys(table["task"]))
    vmax = float(np.ceil(10 * table[gates].groupby([table["name"], table["task"]]).mean().to_numpy().max()) / 10)
    fig = Figure(figsize=(0.95 * len(gates) + 3.4, (0.5 * len(tasks) + 1.2) * len(modules) + 1.0), layout="constrained")
    axes = fig.subplots(len(modules), 1, squeeze=False)[:, 0]  # one row per module: wide enough to read in a notebook
    several = len(kept) > 1  # one seed has no spread to show
    for ax, module in zip(axes, modules):
        rows = table[table["name"] == module].groupby("task", sort=False)[gates]
        mean, spread = rows.mean().reindex(tasks).to_numpy(), (rows.max() - rows.min()).reindex(tasks).to_numpy() / 2
        heatmap(ax, mean, [int(g.split("_")[1]) + 1 for g in gates], tasks, cmap="magma", annotate=False, vmin=0,
                vmax=vmax, xrotation=0, xtick_fontsize=9, ytick_fontsize=9, colorbar=ax is axes[-1],
                colorbar_label="gate probability")
        for (i, j), value in np.ndenumerate(mean):
            text = f"{value:.2f}\n±{spread[i, j]:.2f}" if several else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if value > 0.6 * vmax else "white")
        ax.set(title=f"layer {module.split('layer.')[-1].split('.')[0]}: {module.rsplit('.', 1)[-1]}",
               xlabel=xlabel, ylabel="task")
    used = ", ".join(str(r["seed"]) for r in kept)
    left_out = sorted(collapsed & {r["seed"] for r in runs})
    note = f"; collapsed seeds {left_out} left out" if left_out and len(kept) < len(runs) else ""
    shown = (f"mean over seeds {used}{note}; ± half the seeds' min-max range (how far they spread)" if several
             else f"seed {used} only{note}")
    fig.suptitle(f"{title}\n{shown}", fontsize=10)
    return fig


def fig_router_distribution(summary: Summary) -> Figure | None:
    return _gate_figure(summary, RANK_CHOOSING, router_id(summary),
                        "{label}: gate probability per rank and task (last layer)",
                        "rank k the gate selects (the task uses ranks 1..k)")


def fig_mor_router(summary: Summary) -> Figure | None:
    return _gate_figure(summary, EXPERT_ROUTED, MOR_ID, "{label}: mean router weight per expert and task (last layer)",
                        "expert")


def fig_effective_rank(summary: Summary) -> Figure | None:
    """Effective rank of ΔW per layer and module, mean over seeds, one panel per single-task method."""
    runs = _runs(summary, "single_task", has="report")
    task = runs[0]["tasks"][0] if runs else None
    runs = [r for r in runs if r["tasks"] == [task]]
    if not runs:
        return None
    tables = {}
    for method_id in dict.fromkeys(r["method_id"] for r in runs):
        frames = [pd.DataFrame(r["analysis"]["report"]) for r in runs if r["method_id"] == method_id]
        table = rank_table(pd.concat(frames), "effective_rank")  # mean over seeds
        columns = [str(c).rsplit(".", 1)[-1] for c in table.columns]
        tables[label_of(summary, "single_task", method_id)] = table.set_axis(columns, axis=1)
    vmax = max(float(np.nanmax(t.to_numpy(dtype=float))) for t in tables.values())
    seeds = sorted({r["seed"] for r in runs})
    return plot_heatmap_panels(tables, f"effective rank of ΔW per layer ({task}, mean over seeds {seeds})",
                               panel_width=2.55, vmin=1, vmax=vmax, fmt=".1f", fontsize=9, xtick_fontsize=None, cmap="cividis",
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
        seeds = ", ".join(str(r["seed"]) for r in sorted(picked, key=lambda r: r["seed"]))
        lines.append({"x": ranks, "y": values.mean(0), "label": f"{task} ({metric}), mean of seeds {seeds}",
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
        seeds = sorted(r["seed"] for r in final if r["tasks"][0] == task)
        ax.set(title=f"{task}: final rank per module\n(mean of seeds {', '.join(map(str, seeds))})", xlabel="module",
               ylabel="layer")
    fig.suptitle("AdaLoRA 12 -> 8: where the rank budget went")
    return fig


def fig_mor_params(summary: Summary, d: int = 384, modules: int = 12) -> Figure:
    """Trainable parameters vs number of experts, not a result of the runs: the two sides of the claim
    "MoR beats N full LoRA experts (MoELoRA) with fewer parameters", one shared A, B (MoR) vs N full
    LoRA experts, on a linear axis (MoELoRA grows linearly in N, MoR almost not), with the pair the
    claim compares marked.  Their methods come from the claim's method entries in the recipes (by
    method_id), each named by the first word of its label."""
    claim = next(c for c in CLAIMS if c.key == "mor_vs_moelora")
    (shared, shared_name), (per_expert, expert_name) = (
        (MULTI_TASK_METHODS[method_id][0], label.split()[0]) for method_id, label in
        ((claim.b, claim.b_label), (claim.a, claim.a_label)))
    experts = np.arange(1, 17)
    fig = Figure(figsize=(6.2, 3.9), layout="constrained")
    ax = fig.add_subplot()
    for r, style in ((8, "-"), (32, "--")):
        for method, colour, label in ((shared, PALETTE[0], f"{shared_name}, shared rank {r}"),
                                      (per_expert, PALETTE[5], f"{expert_name}, {r}-rank experts")):
            counts = [modules * sum(module_params(method, d, d, r=r, n_experts=int(n)).values()) for n in experts]
            ax.plot(experts, np.array(counts) / 1e6, style, color=colour, label=label)
    pair = []
    for shift, (method_id, label, colour) in zip((-0.2, 0.2), ((claim.b, claim.b_label, PALETTE[0]),
                                                              (claim.a, claim.a_label, PALETTE[5]))):
        method, options = MULTI_TASK_METHODS[method_id]
        n = modules * sum(module_params(method, d, d, **options).values())
        pair.append(n)
        ax.plot(options["n_experts"] + shift, n / 1e6, "*", markersize=13, color=colour, markeredgecolor="black",
                label=f"compared: {label} ({n:,})")
    ax.annotate(f"{shared_name} / {expert_name} = {pair[0] / pair[1]:.3f}", (8, pair[1] / 1e6),
                textcoords="offset points", xytext=(12, 10), fontsize=9)
    ax.set(xlabel="experts N", ylabel="trainable adapter params (millions)",
           title=f"parameters vs experts ({modules} modules of {d} x {d})")
    ax.legend(fontsize=8, loc="upper left")
    return fig


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
    # not a result of the runs: drawn beside the multi-task results only (a derived scale has none)
    "mor_params_vs_experts": lambda s, d: fig_mor_params(s) if runs_of(s, "multi_task") else None,
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
