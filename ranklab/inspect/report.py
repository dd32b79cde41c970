"""One table row per adapted module: shape, ranks, parameters, top singular values, rank measures."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from .factors import (
    adapted_modules,
    adapter_param_count,
    base_weight,
    layer_index,
    method_name,
    module_factors,
    short_module_name,
)
from .ranks import rank_measures
from .spectra import spectrum_from_factors


def module_row(
    name: str, module: nn.Module, top_k: int = 4, tau: float = 0.9, tol: float = 1e-6, **selector: Any,
) -> dict[str, Any]:
    """The report row of one adapted module (see ``model_report`` for the columns)."""
    factors = module_factors(module, **selector)
    sigma = spectrum_from_factors(factors).cpu().double().numpy()
    bonds = [f.shape[1] for f in factors[:-1]]
    with torch.no_grad():
        w0 = base_weight(module)
        base_fro = float(torch.linalg.matrix_norm(w0.detach().double()))
    row: dict[str, Any] = {
        "name": name,
        "layer": layer_index(name),
        "module": short_module_name(name),
        "method": method_name(module),
        "d_out": int(factors[0].shape[0]),
        "d_in": int(factors[-1].shape[1]),
        "ranks": "x".join(str(b) for b in bonds),  # inner dims of the factor chain: "8", or "12x4" for EMD
        "max_rank": int(min(bonds)) if bonds else int(min(factors[0].shape)),
        "params": adapter_param_count(module, selector.get("adapter")),
    }
    for k in range(top_k):
        row[f"sigma_{k + 1}"] = float(sigma[k]) if k < len(sigma) else np.nan
    row.update(rank_measures(sigma, tau=tau, tol=tol))
    row["base_fro"] = base_fro
    row["relative_delta"] = row["delta_fro"] / base_fro if base_fro > 0 else np.nan
    return row


def model_report(
    model: nn.Module, top_k: int = 4, tau: float = 0.9, tol: float = 1e-6,
    per_module: Mapping[str, dict[str, Any]] | None = None, **selector: Any,
) -> pd.DataFrame:
    """A DataFrame with one row per adapted module (ranklab or PEFT LoRA/AdaLoRA).

    Columns: name, layer (int index parsed from the name, <NA> if none), module (name after the
    layer index), method, d_out, d_in, ranks (inner dims of the factor chain), max_rank, params
    (trainable adapter parameters of the module), sigma_1..sigma_{top_k} (NaN beyond the rank),
    effective_rank, stable_rank, energy_rank (at ``tau``), numerical_rank (relative ``tol``),
    delta_fro = ||ΔW||_F (from the singular values), base_fro = ||W0||_F, relative_delta =
    ||ΔW||_F / ||W0||_F.  ``selector`` goes to every module's factors (``rank=4``, ``task=1``,
    ``adapter="default"``); for one row per task, call once per task and concatenate.
    ``per_module`` maps module names to their own selector, replacing ``selector`` there (e.g.
    each MoR module's router-averaged gates from ``RouterProbe.mean_gates()``).
    """
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    modules = adapted_modules(model)
    if not modules:
        raise ValueError("model has no adapted modules (ranklab adapters or PEFT LoRA/AdaLoRA layers)")
    per_module = dict(per_module or {})
    unknown = sorted(set(per_module) - set(modules))
    if unknown:
        raise ValueError(f"per_module names {unknown} are not adapted modules; modules: {', '.join(modules)}")
    rows = [
        module_row(name, m, top_k=top_k, tau=tau, tol=tol, **per_module.get(name, selector))
        for name, m in modules.items()
    ]
    frame = pd.DataFrame(rows)
    frame["layer"] = frame["layer"].astype("Int64")
    # attrs hold only plain values: pandas compares attrs when concatenating frames
    frame.attrs.update({"tau": tau, "tol": tol, "selector": repr(dict(selector))})
    return frame


def rank_table(report: pd.DataFrame, measure: str = "effective_rank") -> pd.DataFrame:
    """Pivot a report to layer x module for one measure (the effective-rank heatmap's matrix)."""
    if measure not in report.columns:
        numeric = [c for c in report.columns if pd.api.types.is_numeric_dtype(report[c])]
        raise ValueError(f"unknown measure {measure!r}; numeric columns: {', '.join(numeric)}")
    frame = report.copy()
    frame["layer"] = frame["layer"].fillna(-1).astype(int)  # modules outside numbered layers go to row -1
    modules = list(dict.fromkeys(frame["module"]))  # keep model order, not alphabetical
    table = frame.pivot_table(index="layer", columns="module", values=measure, aggfunc="mean")
    return table.reindex(columns=modules)
