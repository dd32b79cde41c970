"""Figure functions for ranklab's introspection results.  Each returns a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` directly, not pyplot: no global state, no
backend needed (safe under Agg and in tests), and Jupyter shows a returned figure exactly once.
``save_figure`` writes PNG and PDF atomically.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from .atomic import atomic_path
from .inspect.factors import layer_index, short_module_name
from .inspect.report import rank_table

FORMATS = ("png", "pdf", "svg")
# No dates in the files, so the same figure redrawn gives the same bytes (committed figures stay comparable).
STABLE_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}, "svg": {"Date": None}}
# TrueType (Type 42) fonts in PDF/PS instead of matplotlib's default Type 3: journals and arXiv ask for
# them, and text stays selectable and searchable.  Set only while saving: ranklab never changes the
# user's global rcParams.
FONT_PARAMS = {"pdf.fonttype": 42, "ps.fonttype": 42}


def save_figure(fig: Figure, path_stem: str | os.PathLike, formats: Sequence[str] = ("png", "pdf"),
                dpi: int = 150) -> list[Path]:
    """Write ``fig`` to ``path_stem.<format>`` for each format (temp file + os.replace)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {list(formats)}")
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(target) as tmp, rc_context(FONT_PARAMS):
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=STABLE_METADATA[fmt])
        written.append(target)
    return written


def _grid(n_panels: int, ncols: int, panel_size: tuple[float, float] = (4.0, 3.0)) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def _by_module(names: Sequence[str]) -> dict[str, list[str]]:
    """Group qualified names by module type (query, value, ...), each sorted by layer index."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(short_module_name(name), []).append(name)
    return {m: sorted(ns, key=lambda n: (layer_index(n) is None, layer_index(n) or 0)) for m, ns in groups.items()}


def _label(name: str) -> str:
    index = layer_index(name)
    return f"layer {index}" if index is not None else name


def plot_spectra(spectra: Mapping[str, np.ndarray], normalize: bool = False, log: bool = False,
                 ncols: int = 2) -> Figure:
    """Singular values of ΔW: one panel per module type, one line per layer (x = index from 1).

    ``spectra`` is ``{name: sigma}`` as from ``ranklab.inspect.model_spectra``; ``normalize``
    divides each spectrum by its sigma_1 (zero spectra stay zero).
    """
    if not spectra:
        raise ValueError("spectra is empty: pass {module name: singular values}")
    groups = _by_module(list(spectra))
    fig, axes = _grid(len(groups), ncols)
    for ax, (module, names) in zip(axes, groups.items()):
        for name in names:
            sigma = np.asarray(spectra[name], dtype=float)
            if normalize and len(sigma) and sigma[0] > 0:
                sigma = sigma / sigma[0]
            ax.plot(np.arange(1, len(sigma) + 1), sigma, marker="o", markersize=3, label=_label(name))
        ax.set(title=module, xlabel="index k", ylabel="sigma_k / sigma_1" if normalize else "sigma_k")
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize="x-small")
    return fig


def heatmap(ax, matrix: np.ndarray, xlabels: Sequence, ylabels: Sequence, cmap: str = "viridis",
            annotate: bool = True, vmin: float | None = None, vmax: float | None = None, fmt: str = ".2g",
            fontsize: str | float = "x-small", xtick_fontsize: str | float | None = "small",
            ytick_fontsize: str | float | None = "small", xrotation: float = 45, colorbar: bool = True,
            colorbar_label: str | None = None) -> None:
    """Draw ``matrix`` on ``ax``: labelled ticks, cell values (small matrices), a colour bar.

    A tick font size of None keeps matplotlib's default; ``xrotation=0`` centres the x labels.
    """
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
    xstyle = {"rotation": xrotation, "ha": "right"} if xrotation else {}
    xstyle.update({"fontsize": xtick_fontsize} if xtick_fontsize is not None else {})
    ax.set_xticks(range(len(xlabels)), [str(x) for x in xlabels], **xstyle)
    ystyle = {"fontsize": ytick_fontsize} if ytick_fontsize is not None else {}
    ax.set_yticks(range(len(ylabels)), [str(y) for y in ylabels], **ystyle)
    if annotate and matrix.size <= 400:
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):  # dark text on light cells, light text on dark ones
                red, green, blue, _ = image.cmap(image.norm(value))
                colour = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
                ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=fontsize, color=colour)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, **({"label": colorbar_label} if colorbar_label else {}))


def plot_matrix(table: pd.DataFrame, title: str, xlabel: str | None = None, ylabel: str | None = None,
                figsize: tuple[float, float] | None = None, **heatmap_options) -> Figure:
    """One heatmap of a DataFrame (rows = index, columns = columns)."""
    fig = Figure(figsize=figsize or (1.1 * len(table.columns) + 2, 0.5 * len(table) + 2), layout="constrained")
    ax = fig.add_subplot()
    heatmap(ax, table.to_numpy(dtype=float), list(table.columns), list(table.index), **heatmap_options)
    ax.set(ylabel=ylabel, title=title)
    if xlabel:
        ax.set_xlabel(xlabel)
    return fig


def plot_heatmap_panels(tables: Mapping[str, pd.DataFrame], suptitle: str, xlabel: str = "module",
                        ylabel: str = "layer", panel_width: float = 3.2, height: float = 3.4,
                        colorbar: bool | str = True, **heatmap_options) -> Figure:
    """One heatmap per table side by side (titles from the mapping's keys), on one colour scale
    unless ``vmax`` is given.  ``colorbar="last"``: one colour bar, beside the last panel."""
    fig = Figure(figsize=(panel_width * len(tables) + (0.8 if colorbar else 0), height), layout="constrained")
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    for i, (ax, (title, table)) in enumerate(zip(axes, tables.items())):
        bar = colorbar is True or (colorbar == "last" and i == len(tables) - 1)
        heatmap(ax, table.to_numpy(dtype=float), list(table.columns), list(table.index), colorbar=bar,
                **heatmap_options)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.suptitle(suptitle)
    return fig


def plot_grouped_bars(values: pd.DataFrame, title: str, ylabel: str, ylim: tuple[float, float],
                      legend_loc: str = "lower right") -> Figure:
    """Bars grouped by column (e.g. task), one series per row (e.g. method), values on the bars."""
    fig = Figure(figsize=(1.6 * len(values.columns) + 3, 3.6), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(values)
    groups = np.arange(len(values.columns))
    for i, (label, row) in enumerate(values.iterrows()):
        bars = ax.bar(groups + i * width, row.to_numpy(dtype=float), width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(groups + 0.4 - width / 2, list(values.columns))
    ax.set(ylim=ylim, ylabel=ylabel, title=title)
    ax.legend(fontsize=7, loc=legend_loc)
    return fig


def plot_lines(lines: Sequence[Mapping], xlabel: str, ylabel: str, title: str, yscale: str | None = None,
               legend_fontsize: float = 8, figsize: tuple[float, float] = (5, 3.4)) -> Figure:
    """Line plot of ``{"x", "y", "label", "style" (e.g. "o-"), "color" (optional)}`` entries."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for line in lines:
        colour = {"color": line["color"]} if line.get("color") else {}
        ax.plot(line["x"], line["y"], line.get("style", "o-"), label=line["label"], **colour)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, **({"yscale": yscale} if yscale else {}))
    ax.legend(fontsize=legend_fontsize)
    return fig


def plot_rank_heatmap(report: pd.DataFrame, measure: str = "effective_rank") -> Figure:
    """Heatmap layer (rows) x module (columns) of one report column (default effective rank)."""
    table = rank_table(report, measure)
    fig = Figure(figsize=(1.2 * len(table.columns) + 3, 0.45 * len(table) + 2), layout="constrained")
    ax = fig.add_subplot()
    heatmap(ax, table.to_numpy(dtype=float), list(table.columns), list(table.index))
    ax.set(xlabel="module", ylabel="layer", title=measure.replace("_", " "))
    return fig


def plot_rank_dynamics(history: pd.DataFrame, measure: str = "effective_rank", ncols: int = 2) -> Figure:
    """A rank measure over training steps: one panel per module type, one line per layer."""
    if measure not in history.columns:
        raise ValueError(f"unknown measure {measure!r}; columns: {', '.join(history.columns)}")
    if history.empty:
        raise ValueError("history is empty: record with RankDynamics during training first")
    groups = _by_module(list(dict.fromkeys(history["name"])))
    fig, axes = _grid(len(groups), ncols)
    for ax, (module, names) in zip(axes, groups.items()):
        for name in names:
            rows = history[history["name"] == name]
            # modules recorded per task or per expert get one line each
            keys = [c for c in ("task", "expert") if c in rows.columns and rows[c].notna().any()]
            for key, part in rows.groupby(keys, dropna=False) if keys else [((), rows)]:
                label = _label(name) + "".join(f", {c} {v}" for c, v in zip(keys, key if keys else ()))
                part = part.sort_values("step")
                ax.plot(part["step"].to_numpy(), part[measure].to_numpy(dtype=float), label=label)
        ax.set(title=module, xlabel="step", ylabel=measure.replace("_", " "))
        ax.legend(fontsize="x-small")
    return fig


def _gate_columns(table: pd.DataFrame) -> list[str]:
    columns = [c for c in table.columns if c.startswith("gate_")]
    if not columns:
        raise ValueError("table has no gate_<i> columns; pass RouterProbe.gate_table() or router_summary()")
    return sorted(columns, key=lambda c: int(c.split("_")[1]))


def plot_router_distribution(gate_table: pd.DataFrame, group: str = "task", names: Sequence[str] | None = None,
                             ncols: int = 4) -> Figure:
    """Mean gate probability per module: one heatmap per module, rows = ``group`` values, cols = gates."""
    if group not in gate_table.columns:
        raise ValueError(f"group {group!r} is not a column; columns: {', '.join(gate_table.columns)}")
    gates = _gate_columns(gate_table)
    names = list(dict.fromkeys(gate_table["name"])) if names is None else list(names)
    fig, axes = _grid(len(names), ncols, panel_size=(3.2, 2.6))
    for ax, name in zip(axes, names):
        rows = gate_table[gate_table["name"] == name].sort_values(group, key=lambda s: s.astype(str))
        if rows.empty:
            raise ValueError(f"{name!r} is not in the gate table")
        matrix = rows[gates].to_numpy(dtype=float)
        heatmap(ax, matrix, [c.split("_")[1] for c in gates], list(rows[group]), cmap="magma",
                annotate=False, vmin=0.0, vmax=max(1e-12, float(np.nanmax(matrix))), xrotation=0,
                colorbar_label="mean gate probability")
        step = max(1, math.ceil(len(gates) / 8))  # at most 8 tick labels: 16 ranks stay readable
        ax.set_xticks(range(0, len(gates), step), [str(i) for i in range(0, len(gates), step)])
        ax.set(title=f"{_label(name)}: {short_module_name(name)}", xlabel="gate index (rank / expert)", ylabel=group)
    return fig


def plot_task_embeddings(points: pd.DataFrame, task_names: Sequence[str] | None = None) -> Figure:
    """Scatter of projected task embeddings (``task_embedding_points``), coloured by task."""
    missing = {"x", "y", "task"} - set(points.columns)
    if missing:
        raise ValueError(f"points lacks columns {sorted(missing)}; pass ranklab.inspect.task_embedding_points(...)")
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    modules = list(dict.fromkeys(points["name"])) if "name" in points else [None]
    for task in sorted(points["task"].unique()):
        label = task_names[task] if task_names is not None else f"task {task}"
        rows = points[points["task"] == task]
        colour = f"C{int(task) % 10}"
        for m_index, module in enumerate(modules):
            sub = rows if module is None else rows[rows["name"] == module]
            ax.scatter(sub["x"], sub["y"], color=colour, marker=markers[m_index % len(markers)], s=50,
                       label=label if m_index == 0 else None)
    method = points["method"].iloc[0] if "method" in points else ""
    ax.set(title=f"task embeddings ({method})", xlabel="dim 1", ylabel="dim 2")
    ax.legend(fontsize="small")
    return fig


def plot_similarity(grid: np.ndarray, title: str = "subspace similarity",
                    xlabel: str = "j", ylabel: str = "i") -> Figure:
    """Heatmap of phi(i, j) (entry [i-1, j-1]) from ``similarity_grid``; origin bottom-left."""
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 2:
        raise ValueError(f"grid must be 2-D, got shape {grid.shape}")
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, origin="lower", vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto",
                      extent=(0.5, grid.shape[1] + 0.5, 0.5, grid.shape[0] + 0.5))
    fig.colorbar(image, ax=ax, label="phi")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig
