"""Two or more saved adapters side by side, exactly and from the factors (``ranklab compare``).

For every pair of adapters and every module both hold, with ΔW_a = L_a R_a (any factor chain is
collapsed to two thin factors, L: d_out x r, R: r x d_in), and never a d_out x d_in product:

- ``cosine``: <ΔW_a, ΔW_b>_F / (||ΔW_a|| ||ΔW_b||), the inner product as tr((L_a^T L_b)(R_b R_a^T)),
  an r_a x r_b product;
- ``relative_distance``: ||ΔW_a - ΔW_b||_F / ||ΔW_a||_F, from the two norms and the inner product;
- ``phi``: the LoRA paper's subspace similarity ||U_a^T U_b||_F^2 / min(k_a, k_b) of the top
  left singular vectors at the two updates' numerical ranks k_a, k_b (1: one column space holds
  the other; 0: orthogonal);
- ``column_angles`` / ``row_angles``: the principal angles (degrees) between the column spaces
  (U_a, U_b) and the row spaces (V_a, V_b), smallest first;
- both spectra, their ranks and norms.

Modules are matched by name up to PEFT's ``base_model.model.`` prefix, so a PEFT folder and a
ranklab folder of the same model compare; a module only some adapters hold is listed (``only_in``),
never dropped; a module whose shapes differ, or adapters that name different bases, are one-line
errors.  Only one module's singular vectors are held at a time beyond the factors.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..adapters.base import chain
from .adapter_files import SavedAdapter, SavedModule, read_adapter
from .factors import layer_index, short_module_name
from .spectra import two_factor_svd

PEFT_PREFIX = "base_model.model."
PAIR_COLUMNS = ("cosine", "relative_distance", "phi", "rank_a", "rank_b", "norm_a", "norm_b")


def two_factors(factors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, R) with L R = the chain's product, both float64: the inner factors go into L (thin: the
    chain's bond dimensions are small)."""
    factors = [f.detach().double() for f in factors]
    return (factors[0] if len(factors) == 2 else chain(factors[:-1])), factors[-1]


def _rank(sigma: torch.Tensor, tol: float) -> int:
    return int((sigma > tol * sigma[0]).sum()) if len(sigma) and float(sigma[0]) > 0 else 0


def _angles(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Principal angles (degrees, smallest first) between the spans of two orthonormal bases."""
    if a.shape[1] == 0 or b.shape[1] == 0:
        return []
    cosines = torch.linalg.svdvals(a.T @ b).clamp(0.0, 1.0)
    return [round(float(np.degrees(np.arccos(c))), 4) for c in cosines]


def compare_factors(factors_a: Sequence[torch.Tensor], factors_b: Sequence[torch.Tensor], name: str = "module",
                    tol: float = 1e-6) -> dict[str, Any]:
    """Every measure of one module's pair of updates (see the module docstring)."""
    left_a, right_a = two_factors(factors_a)
    left_b, right_b = two_factors(factors_b)
    shape_a, shape_b = (left_a.shape[0], right_a.shape[1]), (left_b.shape[0], right_b.shape[1])
    if shape_a != shape_b:
        raise ValueError(f"{name}: ΔW is {shape_a[0]} x {shape_a[1]} in one adapter and {shape_b[0]} x {shape_b[1]} "
                         "in the other; these adapters are not of the same model")
    def inner(left: torch.Tensor, right: torch.Tensor, left2: torch.Tensor, right2: torch.Tensor) -> float:
        return float(torch.trace((left.T @ left2) @ (right2 @ right.T)))  # <L R, L2 R2>_F, r x r products

    # norms from the same float64 traces as the inner product: a distance between near-equal
    # updates then cancels in float64, not in the float32 singular values
    cross = inner(left_a, right_a, left_b, right_b)
    norm_a, norm_b = (max(inner(left, right, left, right), 0.0) ** 0.5 for left, right in ((left_a, right_a), (left_b, right_b)))
    svd_a, svd_b = two_factor_svd(left_a, right_a), two_factor_svd(left_b, right_b)
    sigma_a, sigma_b = svd_a.S.double(), svd_b.S.double()
    k_a, k_b = _rank(sigma_a, tol), _rank(sigma_b, tol)
    u_a, u_b = svd_a.U[:, :k_a].double(), svd_b.U[:, :k_b].double()
    v_a, v_b = svd_a.V[:, :k_a].double(), svd_b.V[:, :k_b].double()
    both = norm_a > 0 and norm_b > 0
    return {
        "cosine": cross / (norm_a * norm_b) if both else float("nan"),
        "relative_distance": (max(norm_a**2 + norm_b**2 - 2 * cross, 0.0) ** 0.5 / norm_a) if norm_a > 0 else float("nan"),
        "phi": float((u_a.T @ u_b).norm() ** 2 / min(k_a, k_b)) if k_a and k_b else float("nan"),
        "rank_a": k_a, "rank_b": k_b, "norm_a": norm_a, "norm_b": norm_b,
        "column_angles": _angles(u_a, u_b), "row_angles": _angles(v_a, v_b),
        "spectrum_a": [float(s) for s in sigma_a[:k_a]], "spectrum_b": [float(s) for s in sigma_b[:k_b]],
    }


def adapter_modules(adapter: SavedAdapter) -> dict[str, tuple[SavedModule, dict[str, int]]]:
    """Module key (name without PEFT's prefix, a task/expert suffix for routed layers) -> (module, selector)."""
    out = {}
    for name, module in adapter.modules.items():
        key = name.removeprefix(PEFT_PREFIX)
        selectors = module.selectors()
        for selector in selectors:
            suffix = "".join(f" [{k} {v}]" for k, v in selector.items()) if len(selectors) > 1 else ""
            out[key + suffix] = (module, selector)
    return out


def _check_bases(adapters: Sequence[SavedAdapter]) -> None:
    named = {str(a.path): a.base_name for a in adapters if a.base_name}
    if len(set(named.values())) > 1:
        raise ValueError("the adapters name different bases (" + "; ".join(f"{p}: {b}" for p, b in named.items())
                         + "); compare adapters of the same base model")


def read_adapters(paths: Sequence[str | Path]) -> list[SavedAdapter]:
    """Each folder read (clear errors for one folder, a missing or unreadable one, different bases)."""
    if len(paths) < 2:
        raise ValueError(f"compare needs at least two adapter folders, got {len(paths)}")
    if len({Path(p).resolve() for p in paths}) < len(paths):
        raise ValueError("the same folder is given twice; give different adapter folders")
    adapters = [read_adapter(p) for p in paths]
    _check_bases(adapters)
    return adapters


def compare_adapters(paths: Sequence[str | Path], tol: float = 1e-6) -> pd.DataFrame:
    """One row per pair of adapters (in the order given) and module: ``a``, ``b`` (the folders),
    ``module``, ``layer``, ``module_type``, the measures, and ``only_in`` (the folders that hold a
    module the others lack: its measures are empty)."""
    adapters = read_adapters(paths)
    modules = [adapter_modules(a) for a in adapters]
    names = list(dict.fromkeys(key for found in modules for key in found))
    rows = []
    for i, j in itertools.combinations(range(len(adapters)), 2):
        for key in names:
            row = {"a": str(adapters[i].path), "b": str(adapters[j].path), "module": key,
                   "layer": layer_index(key), "module_type": short_module_name(key.split(" [")[0])}
            holders = [k for k in (i, j) if key in modules[k]]
            if len(holders) < 2:
                rows.append({**row, "only_in": ", ".join(str(adapters[k].path) for k in holders)})
                continue
            (module_a, selector_a), (module_b, selector_b) = modules[i][key], modules[j][key]
            for k, module in ((i, module_a), (j, module_b)):
                if module.needs_base:
                    raise ValueError(f"{key} in {adapters[k].path}: {module.needs_base}; `compare` reads updates "
                                     "without a base, so it refuses such adapters")
            rows.append({**row, "only_in": "", **compare_factors(module_a.factors(**selector_a),
                                                                 module_b.factors(**selector_b), key, tol)})
    return pd.DataFrame(rows)


def layer_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per pair and layer: the mean cosine, relative distance and phi over the modules both hold."""
    shared = frame[frame["only_in"] == ""]
    return (shared.groupby(["a", "b", "layer"], dropna=False)[["cosine", "relative_distance", "phi"]].mean()
            .reset_index())


def compare_text(frame: pd.DataFrame) -> str:
    """What `ranklab compare` prints: per pair, one line per module and the layer summary."""
    lines = []
    for (a, b), part in frame.groupby(["a", "b"], sort=False):
        lines.append(f"{a}  vs  {b}")
        shared = part[part["only_in"] == ""]
        if not shared.empty:
            table = shared[["module", *PAIR_COLUMNS]].copy()
            table["min column angle"] = [min(x) if x else float("nan") for x in shared["column_angles"]]
            lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            lines.append("per layer (mean over its modules):")
            lines.append(layer_summary(shared).drop(columns=["a", "b"]).to_string(index=False,
                                                                                    float_format=lambda v: f"{v:.4g}"))
        for _, row in part[part["only_in"] != ""].iterrows():
            lines.append(f"only in {row['only_in']}: {row['module']}")
        lines.append("")
    return "\n".join(lines)
