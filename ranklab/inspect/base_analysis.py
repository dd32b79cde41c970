"""How an update ΔW sits against the frozen weight W0 it is added to.

- ``w0_on_delta`` = ||U_r^T W0 V_r||_F with U_r, V_r the top-r singular vectors of ΔW (r its
  numerical rank), and ``amplification`` = ||ΔW||_F / w0_on_delta: the LoRA paper's Sec. 7.3
  (Hu et al. 2021, Table 7) measure of how much ΔW amplifies directions W0 already uses (small
  w0_on_delta and large amplification: ΔW amplifies directions W0 does not emphasise).
- ``alignment`` = phi(U_ΔW[:, :r], U_W0[:, :r]) = ||U_ΔW[:, :r]^T U_W0[:, :r]||_F^2 / r: the share of
  ΔW's top-r output directions inside W0's top-r output directions (LoRA paper's subspace
  similarity; two random r-dim subspaces of R^d give about r/d, reported as ``alignment_chance``).
- ``intruders``: intruder dimensions of Shuttleworth et al. 2024 ("LoRA vs Full Fine-tuning: An
  Illusion of Equivalence"): among the top ``k`` left singular vectors y_j of W0 + ΔW, those
  whose largest |cos| with every left singular vector x_i of W0 is below ``eps``.
  DECISION: left (output-side) singular vectors, k = 10 and eps = 0.5 by default (the paper
  sweeps eps; both are parameters), absolute cosines (singular vectors carry no sign).

These need dense SVDs of W0 and W0 + ΔW (O(d^3) per module), so they run only when a base is
given; ΔW's own spectrum still comes from its factors.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .spectra import FactoredSVD


def oriented_base(w0: torch.Tensor, d_out: int, d_in: int, name: str) -> torch.Tensor:
    """W0 in ΔW's orientation (d_out x d_in); a stored transpose (GPT-2's Conv1D keeps d_in x d_out) is flipped."""
    if tuple(w0.shape) == (d_out, d_in):
        return w0
    if tuple(w0.shape) == (d_in, d_out):
        return w0.T
    raise ValueError(f"{name}: the base weight has shape {tuple(w0.shape)} but the adapter's update is "
                     f"{d_out} x {d_in}; is this the base the adapter was trained on?")


@torch.no_grad()
def update_vs_base(w0: torch.Tensor, delta: torch.Tensor, svd: FactoredSVD, rank: int, intruder_k: int = 10,
                   intruder_eps: float = 0.5) -> dict[str, Any]:
    """The base-dependent columns of one module (see the module docstring); W0 and ΔW are d_out x d_in."""
    if intruder_k < 1 or not 0 < intruder_eps < 1:
        raise ValueError(f"need intruder_k >= 1 and 0 < intruder_eps < 1, got {intruder_k}, {intruder_eps}")
    w0 = w0.double()
    base_fro = float(torch.linalg.matrix_norm(w0))
    delta_fro = float(svd.S.double().pow(2).sum().sqrt())
    u0, _, _ = torch.linalg.svd(w0, full_matrices=False)
    row: dict[str, Any] = {"base_fro": base_fro, "relative_delta": delta_fro / base_fro if base_fro > 0 else math.nan}
    if rank > 0:
        u, v = svd.U[:, :rank].double(), svd.V[:, :rank].double()
        projected = float(torch.linalg.matrix_norm(u.T @ w0 @ v))
        row["w0_on_delta"] = projected
        row["amplification"] = delta_fro / projected if projected > 0 else math.inf
        row["alignment"] = float((u.T @ u0[:, :rank]).pow(2).sum()) / rank
        row["alignment_chance"] = rank / w0.shape[0]
    else:  # a zero update has no directions
        row.update({"w0_on_delta": math.nan, "amplification": math.nan, "alignment": math.nan,
                    "alignment_chance": math.nan})
    tuned, _, _ = torch.linalg.svd(w0 + delta.double(), full_matrices=False)
    k = min(intruder_k, tuned.shape[1])
    best = (tuned[:, :k].T @ u0).abs().max(dim=1).values  # largest |cos| of each top vector with W0's
    row["intruders"] = int((best < intruder_eps).sum())
    row["intruder_min_cos"] = float(best.min())
    return row


def chance_similarity(k: int, d: int) -> float:
    """Expected phi(k, k) of two random k-dimensional subspaces of R^d."""
    return k / d if d else np.nan
