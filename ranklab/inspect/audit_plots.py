"""The standard figures of an adapter audit (``ranklab inspect PATH --plots DIR``).

Per group of rows (the whole adapter, or one task / expert of a routed ranklab adapter, with a
``_task<t>`` / ``_expert<i>`` suffix): ``spectra`` (log scale, one panel per module type),
``effective_rank`` and ``energy_rank`` heatmaps (layer x module), ``similarity`` (phi(k, k) of
every pair of layers, one panel per module type), and with a base ``alignment`` and
``intruders`` heatmaps.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..plots import plot_heatmap_panels, plot_rank_heatmap, plot_spectra

GROUP_COLUMNS = ("task", "expert")


def _groups(report: pd.DataFrame) -> list[tuple[str, dict[str, int], pd.DataFrame]]:
    """(file suffix, selector, rows) for each task / expert, or one group for the whole adapter."""
    column = next((c for c in GROUP_COLUMNS if c in report.columns), None)
    if column is None:
        return [("", {}, report)]
    return [(f"_{column}{int(value)}", {column: int(value)}, rows) for value, rows in report.groupby(column)]


def _similarity_panels(similarity: pd.DataFrame, rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{module type: layer x layer phi table} for the modules in ``rows`` (at least two layers)."""
    names = set(rows["name"])
    pairs = similarity[similarity["name_1"].isin(names) & similarity["name_2"].isin(names)]
    layer_of = dict(zip(rows["name"], rows["layer"]))
    panels = {}
    for module, part in pairs.groupby("module", sort=False):
        layers = sorted({layer_of[n] for n in pd.concat([part["name_1"], part["name_2"]])}, key=lambda v: (v is pd.NA, v))
        table = pd.DataFrame(np.eye(len(layers)), index=layers, columns=layers)
        for _, pair in part.iterrows():
            a, b = layer_of[pair["name_1"]], layer_of[pair["name_2"]]
            table.loc[a, b] = table.loc[b, a] = pair["phi"]
        panels[module] = table
    return panels


def audit_figures(audit: Any) -> dict[str, Figure]:
    """File stem -> figure, for every standard figure the audit's rows support (``audit``: an
    ``AdapterAudit``; not imported here, since audit.py imports this module)."""
    figures: dict[str, Figure] = {}
    for suffix, selector, rows in _groups(audit.report):
        label = "".join(f" [{k} {v}]" for k, v in selector.items())
        spectra = {name: audit.spectra[name + label] for name in rows["name"]}
        fig = plot_spectra(spectra, log=True)
        fig.suptitle(f"singular values of ΔW{label}")
        figures[f"spectra{suffix}"] = fig
        measures = ["effective_rank", "energy_rank"] + [m for m in ("alignment", "intruders") if m in rows.columns]
        for measure in measures:
            figures[f"{measure}{suffix}"] = plot_rank_heatmap(rows, measure)
        panels = _similarity_panels(audit.similarity, rows)
        if panels:
            figures[f"similarity{suffix}"] = plot_heatmap_panels(
                panels, f"subspace similarity phi(k, k) between layers{label}", xlabel="layer", ylabel="layer",
                vmin=0.0, vmax=1.0, xrotation=0)
    return figures
