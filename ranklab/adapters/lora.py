"""LoRA (Hu et al. 2021): delta(x) = s * B A x with s = alpha / r."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .base import AdapterConfig, AdapterLayer, check_positive_int, check_rank, kaiming_


@dataclass
class LoraConfig(AdapterConfig):
    r: int = field(default=8, metadata={"help": "Rank of the update."})
    method = "lora"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("r", self.r)

    @classmethod
    def examples(cls) -> list["LoraConfig"]:
        return [cls(r=4)]

    def check_shape(self, d_in: int, d_out: int, module_name: str = "module") -> None:
        check_rank("r", self.r, d_in, d_out, module_name)


class LoraLayer(AdapterLayer):
    param_parts = {"lora_A": "A", "lora_B": "B"}

    def __init__(self, base: nn.Linear, config: LoraConfig, module_name: str = "module") -> None:
        super().__init__(base, config, module_name)
        self.scaling = config.alpha / config.r
        self.lora_A = nn.Parameter(kaiming_(torch.empty(config.r, self.d_in)))
        self.lora_B = nn.Parameter(torch.zeros(self.d_out, config.r))

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        # Same operation order as PEFT (A, then B, then scale) so outputs match bit for bit.
        return (x @ self.lora_A.T) @ self.lora_B.T * self.scaling

    def factors(self) -> list[torch.Tensor]:
        return [self.lora_B * self.scaling, self.lora_A]
