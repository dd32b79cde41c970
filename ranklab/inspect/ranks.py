"""Rank measures of a spectrum, each under its own unambiguous name.

- effective_rank: Roy & Vetterli (2007), exp(-sum p_k log p_k) with p_k = sigma_k / sum sigma
  (L1-normalised singular values, 0 log 0 = 0).  Between 1 and the number of non-zero sigmas.
- stable_rank: sum sigma^2 / sigma_1^2 = ||ΔW||_F^2 / ||ΔW||_2^2.
- energy_rank: smallest k whose top-k singular values hold a share tau of sum sigma^2.
- numerical_rank: number of sigma above a tolerance (relative to sigma_1 by default).
- spectral_entropy: the normalised entropy H / log(n) in [0, 1] - NOT an effective rank.

A zero spectrum (e.g. LoRA at initialisation, B = 0) has no directions: every rank measure is
defined as 0 for it (and spectral_entropy as 0).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

ArrayLike = Sequence[float] | np.ndarray | torch.Tensor


def _sigma(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    sigma = np.asarray(values, dtype=np.float64)
    if sigma.ndim > 1:
        raise ValueError(f"rank measures take singular values (1-D), got an array of shape {sigma.shape}; for a "
                         "matrix use torch.linalg.svdvals, for an adapter ranklab.inspect.module_spectrum")
    sigma = sigma.ravel()
    if np.any(sigma < 0) or not np.all(np.isfinite(sigma)):
        raise ValueError("singular values must be finite and >= 0")
    return np.sort(sigma)[::-1]


def effective_rank(sigma: ArrayLike) -> float:
    """Roy & Vetterli effective rank exp(H(sigma / sum sigma)); 0 for a zero spectrum."""
    s = _sigma(sigma)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(math.exp(-np.sum(p * np.log(p))))


def spectral_entropy(sigma: ArrayLike) -> float:
    """Normalised entropy H(sigma / sum sigma) / log(n) in [0, 1] (n = len(sigma)); 0 if n <= 1 or zero."""
    s = _sigma(sigma)
    if len(s) <= 1 or s.sum() <= 0:
        return 0.0
    return float(math.log(effective_rank(s)) / math.log(len(s)))


def stable_rank(sigma: ArrayLike) -> float:
    """sum sigma^2 / sigma_1^2; 0 for a zero spectrum."""
    s = _sigma(sigma)
    if len(s) == 0 or s[0] <= 0:
        return 0.0
    return float(np.sum(s**2) / s[0] ** 2)


def energy_rank(sigma: ArrayLike, tau: float = 0.9) -> int:
    """Smallest k with sum_{i<=k} sigma_i^2 >= tau * sum sigma^2; 0 for a zero spectrum."""
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    s = _sigma(sigma)
    energy = np.cumsum(s**2)
    if len(s) == 0 or energy[-1] <= 0:
        return 0
    share = energy / energy[-1]
    # 1e-12 slack: a share that is exactly tau in exact arithmetic must count despite rounding.
    return int(np.argmax(share >= tau - 1e-12) + 1)


def numerical_rank(sigma: ArrayLike, tol: float = 1e-6, relative: bool = True) -> int:
    """Number of sigma > tol * sigma_1 (relative=True) or > tol (relative=False); 0 if all zero."""
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    s = _sigma(sigma)
    if len(s) == 0 or s[0] <= 0:
        return 0
    threshold = tol * s[0] if relative else tol
    return int(np.sum(s > threshold))


def frobenius_norm(sigma: ArrayLike) -> float:
    """||ΔW||_F = sqrt(sum sigma^2)."""
    return float(np.sqrt(np.sum(_sigma(sigma) ** 2)))


def rank_measures(sigma: ArrayLike, tau: float = 0.9, tol: float = 1e-6) -> dict[str, Any]:
    """All measures at once: effective, stable, energy and numerical rank, and ||ΔW||_F."""
    return {
        "effective_rank": effective_rank(sigma),
        "stable_rank": stable_rank(sigma),
        "energy_rank": energy_rank(sigma, tau),
        "numerical_rank": numerical_rank(sigma, tol),
        "delta_fro": frobenius_norm(sigma),
    }
