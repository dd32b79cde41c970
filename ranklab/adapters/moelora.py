"""MoELoRA: N full LoRA experts and a per-token router (the MoE-LoRA baseline of MoR, arXiv 2410.13408).

Per adapted nn.Linear W0 (d_out x d_in), expert i = 1..N has its own A_i (r x d_in,
kaiming-uniform a=sqrt(5) as in LoRA) and B_i (d_out x r, zeros); s = alpha / r.  The router is
``G(x) = softmax(W_r x)`` per token with W_r = nn.Linear(d_in, N, bias=False): dense by default;
``top_k=k`` keeps each token's k largest gates, renormalised to sum 1, and zeroes the rest.

    delta(x) = s * sum_i G_i(x) B_i A_i x

One batched pass, never a Python loop over experts: A_all (N*r x d_in) stacks the A_i and B_all
(d_out x N*r) puts the B_i side by side, so ``h = x @ A_all.T`` is (..., N*r), each expert's r
columns are scaled by its gate and ``(h * repeat(G, r)) @ B_all.T`` sums the experts.  One gate
vector g gives the static LoRA [s * B_all * repeat(g, r), A_all] of rank <= N*r; ``expert=i`` is
expert i alone, [s * B_i, A_i].  Input-dependent, so it neither merges nor exports.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .base import EXPERT_ROUTED, AdapterConfig, AdapterLayer, HookPoint, check_positive_int, check_rank, kaiming_


@dataclass
class MoeLoraConfig(AdapterConfig):
    r: int = field(default=8, metadata={"help": "Rank of each LoRA expert."})
    # The CLI shows one help text per flag, the first method's in name order (moelora before mor
    # and rank_router), so these two are worded to hold for every method that has the option.
    n_experts: int = field(default=8, metadata={"help": "Number of experts."})
    top_k: int | None = field(
        default=None, metadata={"help": "How many of the largest gates to keep, renormalised; None keeps all (dense)."},
    )
    method = "moelora"
    recipe_targets = "ffn"  # the MoR paper adapts a decoder's FFN

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("r", self.r)
        check_positive_int("n_experts", self.n_experts)
        if self.top_k is not None:
            check_positive_int("top_k", self.top_k)
            if self.top_k > self.n_experts:
                raise ValueError(f"top_k={self.top_k} is larger than n_experts={self.n_experts}; "
                                 f"valid range is 1..{self.n_experts} (or None for dense gates)")

    @classmethod
    def examples(cls) -> list["MoeLoraConfig"]:
        return [cls(r=4, n_experts=3), cls(r=2, n_experts=3, top_k=2)]

    @classmethod
    def at_rank(cls, rank: int) -> dict[str, int]:
        return {"r": max(rank // 8, 1), "n_experts": 8}  # DECISION: 8 experts whose ranks sum to r (MoR's shared rank)

    def check_shape(self, d_in: int, d_out: int, module_name: str = "module") -> None:
        check_rank("r", self.r, d_in, d_out, module_name)


class MoeLoraLayer(AdapterLayer):
    mergeable = False
    param_parts = {"experts_A": "experts", "experts_B": "experts", "router": "router"}

    def __init__(self, base: nn.Linear, config: MoeLoraConfig, module_name: str = "module") -> None:
        super().__init__(base, config, module_name)
        r, n = config.r, config.n_experts
        self.scaling = config.alpha / r
        # kaiming's bound depends on fan_in = d_in only, so one init of the stack is N LoRA inits.
        self.experts_A = nn.Parameter(kaiming_(torch.empty(n * r, self.d_in)))  # rows i*r..(i+1)*r-1: A_i
        self.experts_B = nn.Parameter(torch.zeros(self.d_out, n * r))  # columns i*r..(i+1)*r-1: B_i
        self.router = nn.Linear(self.d_in, n, bias=False)
        self.hook_gates = HookPoint()  # sees the gates actually used, (..., N) per token

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({EXPERT_ROUTED})

    @property
    def n_experts(self) -> int:
        return self.config.n_experts

    # --- routing ----------------------------------------------------------------------------
    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token gates (..., N): softmax(W_r x), or its top-k renormalised (others exactly 0)."""
        probs = torch.softmax(self.router(x), dim=-1)
        k = self.config.top_k
        if k is None:
            return probs
        kept, index = probs.topk(k, dim=-1)
        return torch.zeros_like(probs).scatter(-1, index, kept / kept.sum(dim=-1, keepdim=True))

    def _per_column(self, gates: torch.Tensor) -> torch.Tensor:
        """Gates (..., N) -> (..., N*r): each expert's gate repeated over its r columns."""
        return gates.repeat_interleave(self.config.r, dim=-1)

    # --- adapter ----------------------------------------------------------------------------
    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.hook_gates(self.gates(x))
        h = x @ self.experts_A.T  # (..., N*r): every expert's A_i x at once
        return (h * self._per_column(gates)) @ self.experts_B.T * self.scaling

    def factors(self, expert: int | None = None, gates: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Two factors: ``expert=i`` gives [s * B_i, A_i]; ``gates=g`` (N,) gives
        [s * B_all * repeat(g, r), A_all].  With no selector it raises: the update is per token."""
        n = self.config.n_experts
        if expert is not None and gates is not None:
            raise ValueError("give one selector of expert=, gates=; got both")
        if expert is not None:
            if not isinstance(expert, int) or isinstance(expert, bool) or not 0 <= expert < n:
                raise ValueError(f"expert must be an int in 0..{n - 1}, got {expert!r}")
            rows = slice(expert * self.config.r, (expert + 1) * self.config.r)
            return [self.experts_B[:, rows] * self.scaling, self.experts_A[rows]]
        if gates is None:
            raise ValueError(
                "moelora is input-dependent (gates per token): its update has no single factorisation; "
                f"use factors(expert=i) or factors(gates=g) with g of shape ({n},)"
            )
        if gates.shape != (n,):
            raise ValueError(f"gates must have shape ({n},) (one weight per expert), got {tuple(gates.shape)}")
        mixed_B = self.experts_B * self._per_column(gates.to(self.experts_B))
        return [mixed_B * self.scaling, self.experts_A]
