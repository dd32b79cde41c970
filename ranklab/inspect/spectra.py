"""Exact singular values of ΔW from its factors, never from an SVD of the dense d x d matrix.

For ΔW = F1 F2 ... Fk (F1: d_out x r1, Fk: r_{k-1} x d_in), thin QR of the outer factors
(F1 = Q1 R1, Fk^T = Qk Rk) gives ΔW = Q1 (R1 F2 ... F_{k-1} Rk^T) Qk^T.  Q1 and Qk have
orthonormal columns, so the singular values of ΔW are those of the small core, and its singular
vectors are U = Q1 U_core, V = Qk V_core.  Cost O(d r^2) instead of O(d^3).

Only the min(bond dims) possibly non-zero singular values are returned; the dense matrix has
min(d_out, d_in) values, the rest exactly zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..adapters.base import chain
from .factors import adapted_modules, module_factors


@dataclass
class FactoredSVD:
    """Thin SVD ΔW = U diag(S) V^T computed from factors; U: d_out x q, S: q, V: d_in x q."""

    U: torch.Tensor | None
    S: torch.Tensor
    V: torch.Tensor | None


def _working_dtype(factors: Sequence[torch.Tensor]) -> torch.dtype:
    # Half precision has no QR/SVD kernels on CPU and too little precision anyway.
    dtype = factors[0].dtype
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


@torch.no_grad()
def factored_svd(factors: Sequence[torch.Tensor], compute_uv: bool = False) -> FactoredSVD:
    """Singular values (and vectors with ``compute_uv``) of ``chain(factors)`` via QR + small SVD."""
    if not factors:
        raise ValueError("factors is empty: give matrices [F1, ..., Fk] whose product is ΔW")
    dtype = _working_dtype(factors)
    mats = [f.detach().to(dtype) for f in factors]
    for left, right in zip(mats, mats[1:]):
        if left.shape[1] != right.shape[0]:
            raise ValueError(f"factor shapes do not chain: {tuple(left.shape)} @ {tuple(right.shape)}")
    if len(mats) == 1:  # already dense (e.g. a full-rank update): nothing to factor
        q_left = torch.eye(mats[0].shape[0], dtype=dtype)
        q_right = torch.eye(mats[0].shape[1], dtype=dtype)
        core = mats[0]
    else:
        q_left, r_left = torch.linalg.qr(mats[0])  # reduced mode: d_out x min(d_out, r1)
        q_right, r_right = torch.linalg.qr(mats[-1].T)
        core = chain([r_left, *mats[1:-1], r_right.T])
    if not compute_uv:
        return FactoredSVD(U=None, S=torch.linalg.svdvals(core), V=None)
    u_core, s, vh_core = torch.linalg.svd(core, full_matrices=False)
    return FactoredSVD(U=q_left @ u_core, S=s, V=q_right @ vh_core.T)


def spectrum_from_factors(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Singular values of the product of ``factors``, descending."""
    return factored_svd(factors).S


def module_spectrum(module: nn.Module, **selector: Any) -> torch.Tensor:
    """Singular values of one adapted module's ΔW (ranklab or PEFT), descending."""
    return spectrum_from_factors(module_factors(module, **selector))


def module_svd(module: nn.Module, **selector: Any) -> FactoredSVD:
    """Thin SVD of one module's ΔW with singular vectors (for subspace similarity)."""
    return factored_svd(module_factors(module, **selector), compute_uv=True)


def model_spectra(model: nn.Module, **selector: Any) -> dict[str, np.ndarray]:
    """Singular values of ΔW for every adapted module, as numpy arrays by module name."""
    modules = adapted_modules(model)
    if not modules:
        raise ValueError("model has no adapted modules (ranklab adapters or PEFT LoRA/AdaLoRA layers)")
    return {name: module_spectrum(m, **selector).cpu().numpy() for name, m in modules.items()}


@torch.no_grad()
def dense_spectrum(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Reference: SVD of the dense product (O(d^3)); for tests and the benchmark only."""
    dense = chain([f.detach().to(_working_dtype(factors)) for f in factors])
    return torch.linalg.svdvals(dense)


def spectrum_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference of two spectra; the shorter is padded with zeros (pruned ranks are zeros)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    width = max(len(a), len(b))
    return float(np.abs(np.pad(a, (0, width - len(a))) - np.pad(b, (0, width - len(b)))).max(initial=0.0))


@torch.no_grad()
def check_against_dense(module: nn.Module, **selector: Any) -> dict[str, float]:
    """The factored spectrum of one module against ``svdvals`` of its dense ΔW as the adapter itself
    builds it (PEFT's ``get_delta_weight``, ranklab's ``delta_weight``): the number of each and,
    relative to sigma_1, the largest difference and the largest dense value beyond the factored ones."""
    sigma = module_spectrum(module, **selector).double()
    if hasattr(module, "get_delta_weight"):  # PEFT
        delta = module.get_delta_weight(selector.get("adapter") or module.active_adapters[0])
    else:
        delta = module.delta_weight(**selector)
    dense = torch.linalg.svdvals(delta.detach().double())
    q, top = len(sigma), float(dense[0]) if len(dense) and dense[0] > 0 else 1.0
    return {"factored": q, "dense": len(dense),
            "max_relative_difference": float((sigma - dense[:q]).abs().max()) / top if q else 0.0,
            "largest_other": float(dense[q:].max()) / top if len(dense) > q else 0.0}


@torch.no_grad()
def two_factor_svd(left: torch.Tensor, right: torch.Tensor, compute_uv: bool = True,
                   left_vectors: bool = True) -> FactoredSVD:
    """Thin SVD of ΔW = left @ right (d_out x r, r x d_in) from the r x r Gram matrices (Cholesky
    QR, float64): the same exact result as ``factored_svd``, by matrix products instead of two
    Householder QRs of d x r factors (several times faster for large d: a 7B adapter's 224
    modules).  A factor whose Gram matrix is singular or badly conditioned (a zero B, pruned
    ranks) goes through ``factored_svd`` instead, where this squaring would cost accuracy."""
    left64, right64 = left.detach().double(), right.detach().double()
    gram_left, gram_right = left64.T @ left64, right64 @ right64.T
    chol_left, bad_left = torch.linalg.cholesky_ex(gram_left)  # left = Q_l chol_left^T
    chol_right, bad_right = torch.linalg.cholesky_ex(gram_right)  # right^T = Q_r chol_right^T
    diagonals = [torch.diagonal(c) for c in (chol_left, chol_right)]
    if bad_left or bad_right or any(float(d.min() / d.max()) ** 2 < 1e-8 for d in diagonals if d.numel()):
        return factored_svd([left.float(), right.float()], compute_uv=compute_uv)
    core = chol_left.T @ chol_right  # R_l R_r^T
    if not compute_uv:
        return FactoredSVD(U=None, S=torch.linalg.svdvals(core).float(), V=None)
    u_core, s, vh_core = torch.linalg.svd(core, full_matrices=False)
    # V = right^T X as (X^T right)^T: the same product with right contiguous is ~3x faster than
    # with its transposed view (a d_in x r x r GEMM over a strided operand, measured on 2 cores)
    v = (torch.linalg.solve_triangular(chol_right.T, vh_core.T, upper=True).T @ right64).T
    if not left_vectors:  # U costs another d_out x r x r product: only when asked (an audit with a base)
        return FactoredSVD(U=None, S=s.float(), V=v.float())
    u = left64 @ torch.linalg.solve_triangular(chol_left.T, u_core, upper=True)
    return FactoredSVD(U=u.float(), S=s.float(), V=v.float())
