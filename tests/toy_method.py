"""A toy adapter method defined in one file, registered by its last line.

It proves the architecture's promise: a new method is one file plus one registration line, and
the CLI (`ranklab train --help`, `ranklab demo`), causal-LM recipes, parameter accounting and every
contract test pick it up with no other edit.  tests/conftest.py imports this module (that import is the registration).

delta(x) = s * B diag(d) A x: a LoRA whose rank-one components carry a learned scale d.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ranklab.adapters import register
from ranklab.adapters.base import AdapterConfig, AdapterLayer, check_positive_int, check_rank, kaiming_


@dataclass
class ToyConfig(AdapterConfig):
    k: int = field(default=4, metadata={"help": "Rank of the toy update."})
    method = "toy"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("k", self.k)

    @classmethod
    def examples(cls) -> list["ToyConfig"]:
        return [cls(k=3)]

    @classmethod
    def at_rank(cls, rank: int) -> dict[str, int]:  # recipes and the demo: its rank is called k
        return {"k": rank}

    def check_shape(self, d_in: int, d_out: int, module_name: str = "module") -> None:
        check_rank("k", self.k, d_in, d_out, module_name)


class ToyLayer(AdapterLayer):
    param_parts = {"toy_A": "A", "toy_B": "B", "toy_d": "scales"}

    def __init__(self, base: nn.Linear, config: ToyConfig, module_name: str = "module") -> None:
        super().__init__(base, config, module_name)
        self.scaling = config.alpha / config.k
        self.toy_A = nn.Parameter(kaiming_(torch.empty(config.k, self.d_in)))
        self.toy_d = nn.Parameter(torch.ones(config.k))
        self.toy_B = nn.Parameter(torch.zeros(self.d_out, config.k))

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        return ((x @ self.toy_A.T) * self.toy_d) @ self.toy_B.T * self.scaling

    def factors(self) -> list[torch.Tensor]:
        return [self.toy_B * (self.toy_d * self.scaling), self.toy_A]


register(ToyConfig, ToyLayer)
