"""Subspace similarity of the LoRA paper (Hu et al. 2021, Sec. 7.2).

phi(U1, U2, i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j), in [0, 1], where U1 and U2 hold
orthonormal singular vectors ordered by singular value.  The paper uses the right singular
vectors of A (d_in side); ``module_similarity`` uses the right (default) or left singular vectors
of ΔW, computed from the factors.  It compares two adapters (same shape) or one adapter at two
selectors (e.g. DyLoRA at rank 4 and rank 8: ``selector1={"rank": 4}, selector2={"rank": 8}``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .spectra import FactoredSVD, module_svd

_SIDES = ("right", "left")


def _numpy(matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().double().numpy()
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D basis (d x k), got shape {matrix.shape}")
    return matrix


def similarity_grid(
    u1: np.ndarray | torch.Tensor, u2: np.ndarray | torch.Tensor,
    max_i: int | None = None, max_j: int | None = None,
) -> np.ndarray:
    """phi for all 1 <= i <= max_i, 1 <= j <= max_j: entry [i-1, j-1]; for heatmaps."""
    a, b = _numpy(u1), _numpy(u2)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"bases live in different spaces: {a.shape[0]} vs {b.shape[0]} rows")
    max_i = a.shape[1] if max_i is None else max_i
    max_j = b.shape[1] if max_j is None else max_j
    if not (1 <= max_i <= a.shape[1] and 1 <= max_j <= b.shape[1]):
        raise ValueError(f"max_i must be in 1..{a.shape[1]} and max_j in 1..{b.shape[1]}, got {max_i}, {max_j}")
    overlap = (a[:, :max_i].T @ b[:, :max_j]) ** 2
    cumulative = overlap.cumsum(axis=0).cumsum(axis=1)  # [i-1, j-1] = ||U1[:, :i]^T U2[:, :j]||_F^2
    i = np.arange(1, max_i + 1)[:, None]
    j = np.arange(1, max_j + 1)[None, :]
    return cumulative / np.minimum(i, j)


def subspace_similarity(u1: np.ndarray | torch.Tensor, u2: np.ndarray | torch.Tensor, i: int, j: int) -> float:
    """phi(U1, U2, i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j)."""
    return float(similarity_grid(u1, u2, i, j)[-1, -1])


def singular_basis(svd: FactoredSVD, side: str = "right") -> torch.Tensor:
    """V (d_in x q, side='right') or U (d_out x q, side='left') of a factored SVD."""
    if side not in _SIDES:
        raise ValueError(f"side must be one of {_SIDES}, got {side!r}")
    basis = svd.V if side == "right" else svd.U
    if basis is None:
        raise ValueError("this SVD has no singular vectors; compute it with compute_uv=True")
    return basis


def module_similarity(
    module1: nn.Module, module2: nn.Module | None = None, side: str = "right",
    selector1: dict[str, Any] | None = None, selector2: dict[str, Any] | None = None,
    max_i: int | None = None, max_j: int | None = None,
) -> np.ndarray:
    """similarity_grid of the singular vectors of two adapters' ΔW (module2 defaults to module1)."""
    module2 = module1 if module2 is None else module2
    u1 = singular_basis(module_svd(module1, **(selector1 or {})), side)
    u2 = singular_basis(module_svd(module2, **(selector2 or {})), side)
    return similarity_grid(u1, u2, max_i, max_j)


def row_space_basis(matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    """Right singular vectors (columns) of a raw matrix such as LoRA's A (r x d_in), as in the paper."""
    _, _, vh = np.linalg.svd(_numpy(matrix), full_matrices=False)
    return vh.T
