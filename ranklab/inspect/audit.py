"""Audit a saved adapter folder without its base model: ``audit_adapter(path)`` / ``ranklab inspect PATH``.

    audit = audit_adapter("my-lora")                   # PEFT LoRA/AdaLoRA or ranklab folder
    print(audit.to_text())                              # one row per module, then the spectra
    audit.report                                        # DataFrame: every column
    audit.save_plots("figs/")                           # spectra, rank heatmaps, similarity
    audit_adapter("my-lora", base="path/to/base")       # + ||ΔW||/||W0||, alignment, intruder dimensions

Per module (per task for task-routed ranklab layers, per expert for token routers): ranks of the
factor chain, parameters, sigma_1..sigma_k, effective / stable / energy / numerical rank and
||ΔW||_F, all from the factors (QR + a small SVD, never a dense d x d SVD), and ``phi_prev``:
the subspace similarity phi(k, k) of the module's top-k right singular vectors with the same
module in the previous layer (k = the smaller numerical rank).  Columns that need W0 appear only
with a base (see ``ranklab.inspect.base_analysis``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..adapters.base import chain
from .adapter_files import SavedAdapter, SavedModule, read_adapter
from .base_analysis import chance_similarity, oriented_base, update_vs_base
from .factors import layer_index, short_module_name
from .ranks import rank_measures
from .spectra import FactoredSVD, factored_svd, two_factor_svd

TEXT_COLUMNS = ["layer", "module", "task", "expert", "method", "ranks", "sigma_1", "effective_rank", "stable_rank",
                "energy_rank", "numerical_rank", "delta_fro", "phi_prev", "relative_delta", "alignment",
                "amplification", "intruders"]


@dataclass
class AdapterAudit:
    path: Path
    format: str
    report: pd.DataFrame
    spectra: dict[str, np.ndarray]  # key: module name, plus " [task t]" / " [expert i]" where per task / expert
    base: str | None = None
    base_hint: str | None = None  # the base the folder names, when none was given
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bases: list[torch.Tensor | None] = field(default_factory=list, repr=False)  # per row: V[:, :numerical rank]
    _pairs: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def similarity(self) -> pd.DataFrame:
        """Every pair of same-type modules (same task / expert): name_1, name_2, k, phi, chance.
        Computed on first use (all pairs of a 7B adapter: seconds; ``phi_prev`` needs only neighbours)."""
        if self._pairs is None:
            if not self.bases:
                raise ValueError("this audit kept no singular vectors (audit_adapter(..., all_pairs=False)): "
                                 "run it with all_pairs=True for every pair's similarity")
            self._pairs = _similarities(self.report.copy(), self.bases, all_pairs=True)
        return self._pairs

    def to_text(self, spectra: bool = True) -> str:
        """The terminal view: a header, one row per module, then each module's spectrum."""
        n = self.report["name"].nunique()
        lines = [f"adapter {self.path} ({self.format}, {n} modules)"]
        if self.base is None:
            named = f"; the folder names {self.base_hint!r}" if self.base_hint else ""
            lines.append(f"no base model: pass --base NAME_OR_PATH for ||ΔW||/||W0||, alignment and intruder dimensions{named}")
        else:
            lines.append(f"base {self.base}")
        columns = [c for c in TEXT_COLUMNS if c in self.report.columns]
        lines.append(self.report[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"note: {note}" for note in self.notes]
        if spectra:
            lines.append("singular values of ΔW (from the factors):")
            lines += [f"  {label}: " + " ".join(f"{v:.6g}" for v in sigma) for label, sigma in self.spectra.items()]
        return "\n".join(lines)

    def save_plots(self, folder: str | os.PathLike) -> list[Path]:
        """The standard figures (PNG + PDF, each written atomically); returns the files written."""
        from .audit_plots import audit_figures
        from ..plots import save_figure

        written: list[Path] = []
        for stem, figure in audit_figures(self).items():
            written += save_figure(figure, Path(folder) / stem)
        return written


def _label(name: str, selector: dict[str, Any]) -> str:
    return name + "".join(f" [{key} {value}]" for key, value in selector.items())


def _row(module: SavedModule, selector: dict[str, Any], svd: FactoredSVD, factors: list[torch.Tensor],
         top_k: int, tau: float, tol: float) -> dict[str, Any]:
    sigma = svd.S.double().cpu().numpy()
    bonds = [f.shape[1] for f in factors[:-1]]
    row: dict[str, Any] = {
        "name": module.name, "layer": layer_index(module.name), "module": short_module_name(module.name),
        "task": selector.get("task"), "expert": selector.get("expert"), "method": module.method,
        "d_out": int(factors[0].shape[0]), "d_in": int(factors[-1].shape[1]),
        "ranks": "x".join(str(b) for b in bonds), "max_rank": int(min(bonds)) if bonds else int(min(factors[0].shape)),
        "params": module.params,
    }
    row.update({f"sigma_{k + 1}": float(sigma[k]) if k < len(sigma) else np.nan for k in range(top_k)})
    row.update(rank_measures(sigma, tau=tau, tol=tol))
    return row


def audit_adapter(path: str | os.PathLike, base: Any = None, tau: float = 0.9, tol: float = 1e-6, top_k: int = 4,
                  intruder_k: int = 10, intruder_eps: float = 0.5, all_pairs: bool = True,
                  **selector: Any) -> AdapterAudit:
    """Audit a saved adapter folder; ``base`` (a model, a local folder, a ranklab backbone name or a
    hub id) adds the columns that need W0.  ``selector`` (``task=``, ``rank=``, ``expert=``) goes to
    every ranklab module, replacing the default one-row-per-task / per-expert.  ``all_pairs=False``
    keeps only what ``phi_prev`` needs (no ``similarity`` of every pair): a 7B adapter's audit then
    holds no singular vectors (``ranklab inspect`` without ``--plots``)."""
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    saved = read_adapter(path)
    weights = _base_for_update(saved, base)
    rows, svds, spectra_in_order, bases = [], [], [], []
    previous: dict[tuple, tuple[int, torch.Tensor | None, int]] = {}  # same module one layer down: (row, V, d_in)
    # layer by layer, so phi_prev is computed as each module arrives and V's need not be kept (a 7B
    # adapter's are 350 MB); the report keeps the folder's order
    by_layer = sorted(saved.modules.values(), key=lambda m: -1 if layer_index(m.name) is None else layer_index(m.name))
    for module in by_layer:
        for chosen in [selector] if selector else module.selectors():
            with torch.no_grad():
                if module.needs_base:  # DoRA, KaSA: ΔW is a function of W0
                    d_out, d_in = module.fixed[0].shape[0], module.fixed[-1].shape[1]
                    w0 = oriented_base(weights[module.name], d_out, d_in, module.name)
                    factors = [f.detach().float() for f in module.factors_with_base(w0)]
                else:
                    factors = [f.detach().float() for f in module.factors(**chosen)]  # no copy if float32
            # two factors (every PEFT LoRA): Cholesky QR of the r x r Gram matrices, exact and fast
            svd = (two_factor_svd(*factors, left_vectors=base is not None) if len(factors) == 2
                   else factored_svd(factors, compute_uv=True))
            row = _row(module, chosen, svd, factors, top_k, tau, tol)
            k = int(row["numerical_rank"])
            basis = svd.V[:, :k].contiguous() if svd.V is not None and k else None
            key = (row["module"], row["task"], row["expert"])
            if key in previous and row["layer"] is not None:
                before, before_basis, d_in = previous[key]
                shared = min(k, int(rows[before]["numerical_rank"]))
                row["phi_prev"] = (_phi(before_basis, basis, shared) if shared and d_in == row["d_in"]
                                   else np.nan)
            previous[key] = (len(rows), basis, row["d_in"])
            rows.append(row)
            bases.append(basis if all_pairs else None)
            # with a base: the factors (dense ΔW) and U; without: only the spectrum and V's top k
            svds.append((svd, factors) if base is not None else None)
            spectra_in_order.append((_label(module.name, chosen), svd.S.double().cpu().numpy()))
            del svd, factors
    order = {name: i for i, name in enumerate(saved.modules)}
    keep = sorted(range(len(rows)), key=lambda i: order[rows[i]["name"]])  # stable: tasks / experts stay in order
    report = pd.DataFrame([rows[i] for i in keep]).reset_index(drop=True)
    if "phi_prev" not in report:
        report["phi_prev"] = np.nan
    svds = [svds[i] for i in keep]
    spectra = dict(spectra_in_order[i] for i in keep)
    bases = [bases[i] for i in keep] if all_pairs else []
    if base is not None:
        report = _with_base(report, svds, saved, base, intruder_k, intruder_eps, weights)
    report = _tidy(report)
    report.attrs.update({"tau": tau, "tol": tol, "format": saved.format})
    return AdapterAudit(path=saved.path, format=saved.format, report=report, spectra=spectra,
                        base=None if base is None else _base_label(base), base_hint=saved.base_name,
                        skipped=saved.skipped, notes=saved.notes, bases=bases)


def _base_label(base: Any) -> str:
    return f"<{type(base).__name__} given in Python>" if isinstance(base, torch.nn.Module) else str(base)


def _tidy(report: pd.DataFrame) -> pd.DataFrame:
    for column in ("task", "expert"):
        if report[column].isna().all():
            report = report.drop(columns=column)
        else:
            report[column] = report[column].astype("Int64")
    report["layer"] = report["layer"].astype("Int64")
    return report


def _similarities(report: pd.DataFrame, bases: list[torch.Tensor | None], all_pairs: bool) -> pd.DataFrame:
    """phi(k, k) of right singular vectors (k = the smaller numerical rank) for pairs of same-type
    modules of the same task / expert: every pair, or (``all_pairs=False``) each module with the one
    in the previous layer; fills ``phi_prev`` in ``report`` either way."""
    for column in ("task", "expert"):  # dropped from a tidied report where no module has one
        if column not in report:
            report[column] = np.nan
    keys = pd.Series([f"{m}|{t}|{e}" for m, t, e in zip(report["module"], report["task"], report["expert"])],
                     index=report.index)
    pairs = []
    report["phi_prev"] = np.nan
    for _, group in report.groupby(keys, sort=False):
        ordered = group.sort_values("layer", na_position="first").index.tolist()
        for position, a in enumerate(ordered):
            for b in ordered[position + 1:] if all_pairs else ordered[position + 1:position + 2]:
                k = int(min(report.at[a, "numerical_rank"], report.at[b, "numerical_rank"]))
                same_space = report.at[a, "d_in"] == report.at[b, "d_in"]
                phi = _phi(bases[a], bases[b], k) if k and same_space else np.nan
                if b == ordered[position + 1]:  # the same module one layer up
                    report.at[b, "phi_prev"] = phi
                pairs.append({"name_1": report.at[a, "name"], "name_2": report.at[b, "name"],
                              "module": report.at[a, "module"], "task": report.at[a, "task"],
                              "expert": report.at[a, "expert"], "k": k, "phi": phi,
                              "chance": chance_similarity(k, int(report.at[a, "d_in"])) if k else np.nan})
    return pd.DataFrame(pairs, columns=["name_1", "name_2", "module", "task", "expert", "k", "phi", "chance"])


def _phi(first: torch.Tensor, second: torch.Tensor, k: int) -> float:
    return float((first[:, :k].T @ second[:, :k]).double().pow(2).sum()) / k  # k x k in float64


def _base_for_update(saved: SavedAdapter, base: Any) -> dict[str, torch.Tensor] | None:
    """W0 of every module when some module's ΔW needs it (DoRA, KaSA); refuses without a base."""
    needs = [m for m in saved.modules.values() if m.needs_base]
    if not needs:
        return None
    if base is None:
        raise ValueError(f"{saved.path} is {needs[0].needs_base}; pass --base NAME_OR_PATH (base= in Python) "
                         "to compute it exactly")
    from .base_weights import base_weights

    return base_weights(base, list(saved.modules))


def _with_base(report: pd.DataFrame, svds: list[tuple[FactoredSVD, list[torch.Tensor]]], saved: SavedAdapter,
               base: Any, intruder_k: int, intruder_eps: float,
               weights: dict[str, torch.Tensor] | None = None) -> pd.DataFrame:
    from .base_weights import base_weights

    weights = weights if weights is not None else base_weights(base, list(saved.modules))
    extra = []
    for i, row in report.iterrows():
        w0 = oriented_base(weights[row["name"]], int(row["d_out"]), int(row["d_in"]), row["name"])
        svd, factors = svds[i]
        delta = chain([f.double() for f in factors])  # dense: W0 + ΔW needs it for the intruder SVD
        extra.append(update_vs_base(w0, delta, svd, int(row["numerical_rank"]), intruder_k, intruder_eps))
    return pd.concat([report, pd.DataFrame(extra, index=report.index)], axis=1)
