"""Enhanced Matrix Decomposition (Zhang et al. 2025): delta(x) = s * B' T A' x, ranks a and b.

A' (a x d_in) and T (b x a) start kaiming-uniform, B' (d_out x b) starts at zero so the update
starts at 0.  s = alpha / r_ref with r_ref = (a + b) / 2 unless given: equal to LoRA's alpha / r
when a = b = r.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .base import AdapterConfig, AdapterLayer, check_positive_int, check_rank, kaiming_


@dataclass
class EmdConfig(AdapterConfig):
    a: int = field(default=8, metadata={"help": "Rank of A' (a x d_in), the input side."})
    b: int = field(default=8, metadata={"help": "Rank of B' (d_out x b), the output side."})
    r_ref: float | None = field(default=None, metadata={"help": "Scaling denominator; default (a + b) / 2."})
    method = "emd"
    option_help = {"alpha": "Scaling numerator: s = alpha / r_ref ((a + b) / 2 unless r_ref is given)."}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("a", self.a)
        check_positive_int("b", self.b)
        if self.r_ref is not None and self.r_ref <= 0:
            raise ValueError(f"r_ref must be > 0, got {self.r_ref}")

    @classmethod
    def examples(cls) -> list["EmdConfig"]:
        return [cls(a=2, b=5), cls(a=5, b=2)]  # both sides of min(a, b)

    @classmethod
    def at_rank(cls, rank: int) -> dict[str, int]:
        return {"a": max(rank // 2, 1), "b": rank + rank // 2}  # a + b = 2r: LoRA r's budget on a square module

    @property
    def scaling(self) -> float:
        return self.alpha / (self.r_ref if self.r_ref is not None else (self.a + self.b) / 2)

    def check_shape(self, d_in: int, d_out: int, module_name: str = "module") -> None:
        check_rank("a", self.a, d_in, d_out, module_name)
        check_rank("b", self.b, d_in, d_out, module_name)


class EmdLayer(AdapterLayer):
    param_parts = {"emd_A": "A", "emd_T": "T", "emd_B": "B"}

    def __init__(self, base: nn.Linear, config: EmdConfig, module_name: str = "module") -> None:
        super().__init__(base, config, module_name)
        self.scaling = config.scaling
        self.emd_A = nn.Parameter(kaiming_(torch.empty(config.a, self.d_in)))
        self.emd_T = nn.Parameter(kaiming_(torch.empty(config.b, config.a)))
        self.emd_B = nn.Parameter(torch.zeros(self.d_out, config.b))

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        return ((x @ self.emd_A.T) @ self.emd_T.T) @ self.emd_B.T * self.scaling

    def factors(self) -> list[torch.Tensor]:
        return [self.emd_B * self.scaling, self.emd_T, self.emd_A]
