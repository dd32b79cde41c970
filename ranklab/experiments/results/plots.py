"""Figures of results with their uncertainty: interval bars with every seed, claims, sweeps,
task-embedding studies.  Each function returns a matplotlib Figure (see ranklab.plots).

Colours come from a colour-blind-safe palette (Okabe-Ito) and bars also differ by hatch, so
the figures survive greyscale printing; legends sit outside the data.
"""
from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ...plots import heatmap

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
HATCHES = ("", "//", "..", "xx", "\\\\", "--", "oo", "++")
VERDICT_COLOURS = {"reproduced": "#009E73", "contradicted": "#D55E00", "paper's effect ruled out": "#0072B2",
                   "inconclusive": "#7f7f7f", "confounded by collapse": "#CC79A7"}
def p_text(p: float) -> str:
    """A p-value as printed: three decimals, or "p < 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")  # with PALETTE: series told apart by shape too
COLLAPSED = dict(marker="x", color="#D55E00", s=22, linewidths=1.2, zorder=4)  # a seed at chance


def plot_dot_intervals(scores: Mapping[str, Mapping[str, Mapping[str, Any]]], panels: Sequence[tuple[str, Sequence[str]]],
                       title: str, chance: Mapping[str, float] | None = None,
                       at_chance: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
                       paper: Sequence[tuple[str, str, float, int | None]] = ()) -> Figure:
    """Means with 95% intervals and every seed, one panel per metric, each on its own axis.

    ``scores[series][group] = {"mean", "low", "high", "per_seed"}``; ``panels``: (y label, groups)
    per panel (e.g. accuracy tasks, MCC tasks, the average); ``chance[group]``: the majority-class
    level, drawn as a dashed line; ``at_chance[series][group]``: indices of seeds at chance there,
    drawn as a red x.  ``paper``: (table, method, value, series index or None) rows, every one drawn
    with its name in a last panel."""
    series = list(scores)
    widths = [max(1.5, 0.75 * len(groups)) for _, groups in panels] + ([2.6] if paper else [])
    fig = Figure(figsize=(max(sum(widths), 7.0), 5.6), layout="constrained")  # legend below: <= 11 in wide
    axes = fig.subplots(1, len(widths), gridspec_kw={"width_ratios": widths}, squeeze=False)[0]
    offset = 0.7 / max(len(series), 1)
    for ax, (ylabel, groups) in zip(axes, panels):
        x = np.arange(len(groups))
        values = []
        for i, name in enumerate(series):
            pos = x + (i - (len(series) - 1) / 2) * offset
            for p, group in zip(pos, groups):
                cell = scores[name].get(group)
                if not cell:
                    continue
                seeds = np.asarray(cell["per_seed"], dtype=float)
                low, high = (cell["low"], cell["high"]) if np.isfinite(cell["low"]) else (cell["mean"], cell["mean"])
                floor = -100.0 if ylabel.split()[0] in ("mcc", "pearson") else 0.0  # the metric's range x 100
                clipped = [end for end, out in ((floor, low < floor), (100.0, high > 100.0)) if out]
                low, high = max(low, floor), min(high, 100.0)
                ax.errorbar(p, cell["mean"], yerr=[[cell["mean"] - low], [high - cell["mean"]]],
                            fmt=MARKERS[i % len(MARKERS)], color=PALETTE[i % len(PALETTE)], markersize=5,
                            markeredgecolor="black", markeredgewidth=0.4, capsize=2, linewidth=1.2,
                            label=name if group == groups[0] else None)
                for end in clipped:  # an interval cut at the metric's range: an open arrow at the cut
                    ax.plot(p, end, "^" if end > 0 else "v", markerfacecolor="white", markersize=5,
                            markeredgecolor=PALETTE[i % len(PALETTE)], zorder=4)
                ax.scatter(np.full(len(seeds), p + offset * 0.3), seeds, s=8, color="black", linewidths=0, zorder=3)
                bad = list((at_chance or {}).get(name, {}).get(group, []))
                if bad:
                    ax.scatter(np.full(len(bad), p + offset * 0.3), seeds[bad], **COLLAPSED)
                values += [low, high, *seeds]
        finite = [v for v in values if np.isfinite(v)]
        if finite:  # a t-interval may reach past the metric's range: the axis stops at it
            floor = -100.0 if ylabel.split()[0] in ("mcc", "pearson") else 0.0
            span = max(finite) - min(finite)
            ax.set_ylim(max(floor - 0.5, min(finite) - 0.08 * span - 0.5), min(100.5, max(finite) + 0.08 * span + 0.5))
        bottom, top = ax.get_ylim()
        for j, group in enumerate(groups):
            if chance and group in chance:
                if bottom <= chance[group] <= top:
                    ax.hlines(chance[group], j - 0.45, j + 0.45, colors="black", linestyles="--", linewidth=0.8)
                else:  # far below the results: named at the axis' foot rather than squeezing them
                    ax.annotate(f"majority\n{chance[group]:.1f} ↓", (j, bottom), textcoords="offset points",
                                xytext=(0, 3), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, list(groups), fontsize=8, rotation=30 if len(groups) > 4 else 0)
        ax.set(ylabel=ylabel, xlim=(-0.6, len(groups) - 0.4))
        ax.grid(axis="y", linewidth=0.3)
    handles = [axes[0].errorbar([], [], yerr=[], fmt=MARKERS[i % len(MARKERS)], color=PALETTE[i % len(PALETTE)],
                                markeredgecolor="black", markeredgewidth=0.4, label=name)
               for i, name in enumerate(series)]
    handles.append(axes[0].plot([], [], "^", markerfacecolor="white", markeredgecolor="black",
                                label="interval cut at the metric's range")[0])
    handles += [axes[0].scatter([], [], s=8, color="black", label="one seed"),
                axes[0].scatter([], [], label="seed at chance (MCC < 0.1)", **COLLAPSED)]
    if chance:
        handles.append(axes[0].plot([], [], "k--", linewidth=0.8, label="majority class")[0])
    if paper:
        ax = axes[-1]
        y = np.arange(len(paper))[::-1]
        for yi, (table, method, value, index) in zip(y, paper):
            colour = PALETTE[index % len(PALETTE)] if index is not None else "black"
            ax.plot(value, yi, "D", color=colour, markeredgecolor="black", markersize=6)
            ax.annotate(f"{value:.2f}", (value, yi), textcoords="offset points", xytext=(6, -3), fontsize=8)
        ax.set_yticks(y, [f"{table}: {method}" for table, method, _, _ in paper], fontsize=8)
        low, high = min(v for *_, v, _ in paper), max(v for *_, v, _ in paper)
        ax.set(xlim=(low - 1.5, high + 2.0), ylim=(-0.7, len(paper) - 0.3), xlabel="paper's GLUE average",
               title="the papers' numbers\n(other backbone and tasks)")
        ax.title.set_fontsize(9)
        ax.grid(axis="x", linewidth=0.3)
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False, ncol=3,
               title="mean, 95% t-interval over seeds", title_fontsize=8)
    fig.suptitle(title)
    return fig


def plot_interval_bars(scores: Mapping[str, Mapping[str, Mapping[str, Any]]], groups: Sequence[str], title: str,
                       ylabel: str, paper: Mapping[str, float | None] | None = None,
                       paper_label: str = "paper avg") -> Figure:
    """Bars of means with 95% intervals and one dot per seed.

    ``scores[series][group] = {"mean", "low", "high", "per_seed"}`` (series: methods; groups:
    tasks and "avg").  ``paper[series]``: the paper's average, drawn in a second panel beside.
    """
    series = list(scores)
    has_paper = paper is not None and any(v is not None for v in paper.values())
    width_ratios = [max(4, len(groups)), 1.6] if has_paper else [1]
    fig = Figure(figsize=(1.25 * len(groups) + 4.5 + (2.2 if has_paper else 0), 4.2), layout="constrained")
    axes = fig.subplots(1, len(width_ratios), gridspec_kw={"width_ratios": width_ratios}, squeeze=False)[0]
    ax = axes[0]
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    lows = []
    for i, name in enumerate(series):
        cells = [scores[name].get(g) for g in groups]
        mean = np.array([c["mean"] if c else np.nan for c in cells])
        err = np.array([[c["mean"] - c["low"], c["high"] - c["mean"]] if c else [np.nan, np.nan] for c in cells]).T
        pos = x + (i - (len(series) - 1) / 2) * width
        ax.bar(pos, mean, width, color=PALETTE[i % len(PALETTE)], hatch=HATCHES[i % len(HATCHES)],
               edgecolor="white", linewidth=0.5, label=name, alpha=0.85)
        ax.errorbar(pos, mean, yerr=err, fmt="none", ecolor="black", capsize=2, linewidth=1)
        for p, c in zip(pos, cells):
            if c:
                seeds = np.asarray(c["per_seed"], dtype=float)
                jitter = np.linspace(-0.25, 0.25, len(seeds)) * width if len(seeds) > 1 else [0]
                ax.scatter(p + jitter, seeds, s=9, color="black", zorder=3, linewidths=0)
                lows.append(min(c["low"], seeds.min()))
    ax.set_xticks(x, list(groups))
    bottom = max(0.0, np.floor((min(lows) if lows else 0) / 5) * 5 - 5)
    ax.set(ylabel=ylabel, title=title, ylim=(bottom, 100))
    ax.axvline(len(groups) - 1.5, color="grey", linewidth=0.6, linestyle=":") if "avg" in groups else None
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              title="bars: mean, 95% CI\ndots: seeds", title_fontsize=7)
    if has_paper:
        values = [paper.get(s) for s in series]
        ax2 = axes[1]
        for i, v in enumerate(values):
            if v is not None:
                ax2.plot(i, v, "D", color=PALETTE[i % len(PALETTE)], markersize=7, markeredgecolor="black")
                ax2.annotate(f"{v:.2f}", (i, v), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=6)
        known = [v for v in values if v is not None]
        ax2.set_xticks(range(len(series)), [str(i + 1) for i in range(len(series))], fontsize=7)
        ax2.set(title=paper_label, ylim=(min(known) - 1.5, max(known) + 1.5), xlim=(-0.5, len(series) - 0.5),
                xlabel="method (legend order)", ylabel="GLUE average")
        ax2.tick_params(axis="y", labelsize=7)
        ax2.grid(axis="y", linewidth=0.3)
    return fig


def plot_claims(judged: Sequence[Mapping[str, Any]], title: str,
                panels: Sequence[tuple[str, Sequence[str]]] | None = None,
                superseded: Collection[str] = ()) -> Figure:
    """One row per claim: our B - A with its 95% t-interval over seeds (coloured by its headline verdict:
    Holm's where the claims are tested together, the unadjusted one beside it) and
    every seed's paired difference (black dots under it), the Holm-corrected interval as a thin
    line, the minimal detectable effect as a shaded band around 0 and the paper's difference as a
    hollow diamond just above the row (so it never hides our mean).  ``panels``: (title, recipes)
    per panel, each with its own x-range (default: one panel); claims of ``superseded`` recipes
    are drawn faded and say so (another protocol's verdicts replace them)."""
    groups = [(p_title, [c for c in judged if recipes is None or c["recipe"] in recipes])
              for p_title, recipes in (panels or [("", None)])]
    panels = [(p_title, rows) for p_title, rows in groups if rows]
    heights = [len(rows) + 0.8 for _, rows in panels]
    fig = Figure(figsize=(10, 0.75 * sum(heights) + 1.9), layout="constrained")
    axes = fig.subplots(len(panels), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    for ax, (p_title, rows) in zip(axes, panels):
        y = np.arange(len(rows))[::-1]
        for yi, claim in zip(y, rows):
            old = claim["recipe"] in superseded
            headline = claim.get("holm_verdict") or claim["verdict"]  # Holm's, where claims are tested together
            colour, alpha = VERDICT_COLOURS[headline], 0.4 if old else 1.0
            mde = claim["minimal_detectable_effect"]
            if np.isfinite(mde):
                ax.fill_betweenx([yi - 0.3, yi + 0.3], -mde, mde, color="#dddddd", linewidth=0)
            if "holm_low" in claim:
                ax.plot([claim["holm_low"], claim["holm_high"]], [yi + 0.14] * 2, color=colour, linewidth=0.9,
                        alpha=alpha)
            ax.plot([claim["low"], claim["high"]], [yi, yi], color=colour, linewidth=2.5, alpha=alpha)
            ax.plot(claim["difference"], yi, "o", color=colour, markersize=6, alpha=alpha, zorder=3)
            seeds = claim.get("per_seed") or []
            ax.scatter(seeds, np.full(len(seeds), yi - 0.2), s=10, color="black", alpha=alpha, linewidths=0, zorder=3)
            if claim.get("paper_difference") is not None:
                ax.plot(claim["paper_difference"], yi + 0.3, "D", markerfacecolor="none", markeredgecolor="black",
                        markersize=6, zorder=3)
            note = (f"Holm: {headline}\n(unadjusted: {claim['verdict']})" if claim.get("holm_verdict")
                    else claim["verdict"])
            note += "\nsuperseded" if old else ""
            ax.text(1.01, yi, note, transform=ax.get_yaxis_transform(), va="center", fontsize=8, color=colour,
                    alpha=max(alpha, 0.6))
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [f"{c['text']}\n({c.get('b_label') or c['b']} − {c.get('a_label') or c['a']}, "
                          f"{c['n_seeds']} seeds)" for c in rows], fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_title(p_title, fontsize=9)
    axes[-1].set_xlabel("difference B − A, points (mean of the tasks' main metric x 100, test)", fontsize=9)
    handles = [axes[-1].plot([], [], "o-", color="#7f7f7f", linewidth=2.5, label="ours: mean, 95% t-interval (seeds)")[0],
               axes[-1].scatter([], [], s=10, color="black", label="each seed's paired difference"),
               axes[-1].plot([], [], "-", color="#7f7f7f", linewidth=0.9, label="Holm-corrected interval")[0],
               axes[-1].plot([], [], "D", markerfacecolor="none", markeredgecolor="black", label="paper")[0],
               axes[-1].fill_between([], [], color="#dddddd", label="± minimal detectable effect")]
    handles += [axes[-1].plot([], [], "s", color=c, label=v)[0] for v, c in VERDICT_COLOURS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig


def plot_sweep(rows: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """EMD (a, b) sweep: accuracy with 95% interval and seeds (left), mean effective rank of ΔW (right)."""
    fig = Figure(figsize=(8.5, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    x = np.arange(len(rows))
    names = [r["label"] for r in rows]
    for i, r in enumerate(rows):
        s = r["score"]
        left.errorbar(i, s["mean"], yerr=[[s["mean"] - s["low"]], [s["high"] - s["mean"]]], fmt="o",
                      color=PALETTE[i % len(PALETTE)], capsize=3)
        left.scatter(np.full(len(s["per_seed"]), i) + 0.12, s["per_seed"], s=9, color="black", linewidths=0)
        right.bar(i, r["effective_rank"], 0.6, color=PALETTE[i % len(PALETTE)], hatch=HATCHES[i % len(HATCHES)],
                  edgecolor="white")
        right.text(i, r["effective_rank"] + 0.05, f"{r['effective_rank']:.2f} (max {r['max_rank']})", ha="center",
                   fontsize=8)
    left.set_xticks(x, names, fontsize=8)
    left.set(ylabel="test score x 100 (mean of tasks)", title="accuracy: mean, 95% CI, seeds")
    right.set_xticks(x, names, fontsize=8)
    right.set(ylabel="effective rank of ΔW (mean of modules)", title="rank used")
    fig.suptitle(title)
    return fig


def plot_embedding_study(studies: Mapping[str, Mapping[str, Any]], task_names: Sequence[str],
                         titles: Mapping[str, str], tests: Mapping[str, Mapping[str, float]] | None = None,
                         sentence: str = "") -> Figure:
    """Top row: the t-SNE of each study, every task with its own colour and marker (query module
    filled, value module hollow) and its points joined to their centre, so a task with a region
    of its own shows as a tight star; ``tests[key]``: the nearest-neighbour test of that map.
    Bottom row: the task x task cosine matrix on a diverging scale that spans its off-diagonal
    values (near-zero cosines stay visibly near zero), with the permutation test in the title.
    ``sentence``: what the maps show (the figure's title)."""
    keys = [k for k in titles if k in studies]
    fig = Figure(figsize=(11.0, 4.6 * len(keys) + 0.8), layout="constrained")
    axes = fig.subplots(len(keys), 2, squeeze=False).T  # a row per study: its map, then its cosines
    for col, key in enumerate(keys):
        data = studies[key]
        ax = axes[0][col]
        for t in range(len(task_names)):
            pts = [p for p in data["points"] if p["task"] == t]
            if not pts:
                continue
            colour, marker = PALETTE[t % len(PALETTE)], MARKERS[t % len(MARKERS)]
            cx, cy = np.mean([p["x"] for p in pts]), np.mean([p["y"] for p in pts])
            for p in pts:
                ax.plot([cx, p["x"]], [cy, p["y"]], color=colour, linewidth=0.6, alpha=0.6)
            for filled in (True, False):
                mine = [p for p in pts if (p["module"] == pts[0]["module"]) == filled]
                ax.scatter([p["x"] for p in mine], [p["y"] for p in mine], marker=marker, s=34, linewidths=0.9,
                           color=colour if filled else "white", edgecolors=colour if not filled else "black", zorder=3)
        method = data["points"][0]["method"] if data["points"] else ""
        test = (tests or {}).get(key)
        found = (f"\nnearest other-seed point, same task: {100 * test['same_task']:.0f}% "
                 f"(chance {100 * test['chance']:.0f}%), "
                 f"{p_text(test['p_value'])}") if test else ""
        ax.set(title=f"{titles[key]}\n{method}, seeds {', '.join(map(str, data['seeds']))} x "
                     f"{len(data['modules'])} modules{found}", xlabel="dim 1", ylabel="dim 2")
        ax.title.set_fontsize(9)
        matrix = np.asarray(data["cosine"])
        off = np.abs(matrix[~np.eye(len(matrix), dtype=bool)]).max()
        scale = float(np.ceil(max(off, 0.05) * 20) / 20)
        heatmap(axes[1][col], np.where(np.eye(len(matrix), dtype=bool), np.nan, matrix), task_names, task_names,
                cmap="RdBu_r", vmin=-scale, vmax=scale, fmt=".2f", fontsize=8, xtick_fontsize=9, ytick_fontsize=9,
                colorbar=True, colorbar_label="cosine (diagonal: 1, not coloured)")
        group = data.get("test")
        note = (f"{'+'.join(data['group'])} vs rest: Δcos {group['statistic']:+.3f}, p = {group['p_value']:.3f}"
                if group else "")
        axes[1][col].set_title(f"mean cosine (seeds, modules), scale ±{scale:g}\n{note}", fontsize=9)
    handles = [axes[0][0].scatter([], [], marker=MARKERS[i % len(MARKERS)], color=PALETTE[i % len(PALETTE)],
                                  edgecolors="black", label=t) for i, t in enumerate(task_names)]
    modules = sorted({p["module"] for s in studies.values() for p in s["points"]})
    if len(modules) == 2:
        handles += [axes[0][0].scatter([], [], marker="o", color="grey", edgecolors="black", label=f"{modules[0]} module"),
                    axes[0][0].scatter([], [], marker="o", color="white", edgecolors="grey", label=f"{modules[1]} module")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False,
               title="task (colour and marker);\nlines join a task's points\nto their centre", title_fontsize=8)
    fig.suptitle(sentence, fontsize=9)
    return fig


def plot_rank_consistency(chosen: Mapping[str, np.ndarray], columns: Sequence[str], task_names: Sequence[str],
                          title: str) -> Figure:
    """Mean chosen rank per task (rows) and layer.module (columns) over seeds (colour), each cell
    annotated with the seeds' range, lowest-highest (one number when every seed chose the same rank,
    underlined): a spread never rounds to "±0"; ``chosen[task]`` is (seeds, columns)."""
    values = {t: np.asarray(chosen[t]) for t in task_names}
    mean = np.array([values[t].mean(0) for t in task_names])
    low = np.array([values[t].min(0) for t in task_names])
    high = np.array([values[t].max(0) for t in task_names])
    fig = Figure(figsize=(min(0.65 * len(columns) + 2.8, 11.0), 0.55 * len(task_names) + 2.4), layout="constrained")
    ax = fig.add_subplot()
    heatmap(ax, mean, columns, task_names, cmap="cividis", annotate=False, vmin=1, xrotation=60, xtick_fontsize=8,
            ytick_fontsize=9, colorbar_label="mean chosen rank over seeds")
    for (i, j), value in np.ndenumerate(mean):
        agree = low[i, j] == high[i, j]
        ax.text(j, i, f"{low[i, j]:.0f}" if agree else f"{low[i, j]:.0f}-{high[i, j]:.0f}", ha="center", va="center",
                fontsize=8, fontweight="bold" if agree else "normal", color="white" if value < mean.max() * 0.6 else "black")
    ax.set(title=title + "\ncell: the seeds' chosen ranks, lowest-highest (bold: every seed chose the same)",
           xlabel="layer.module", ylabel="task")
    ax.title.set_fontsize(10)
    return fig
