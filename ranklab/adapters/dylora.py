"""DyLoRA (Valipour et al. 2023): train with a random rank b ~ U{r_min..r_max} each step.

The update at rank b uses the first b rows of A and columns of B with scaling alpha / b, so
one trained adapter can be evaluated (and merged, exported) at every b in r_min..r_max.

``frozen=True`` is the official code's training mode (huawei-noah/Efficient-NLP,
DyLoRA/loralib/DyLoRA.py, class ``dynamic``; DyLoRA/examples/NLU/examples/text-classification/
run_glue.py calls ``model.set_rank(new_rank, frozen=True)`` before every step): the forward value
is the same, but the rows 1..b-1 of A and columns 1..b-1 of B are detached, so only the sampled
rank's own row of A and column of B receive a gradient in that step.  (The official code draws
b - 1 ~ U{0..r-1}, i.e. b ~ U{1..r}, and scales A and B by sqrt(r / b) each: alpha / r * r / b =
alpha / b, as here.)  As in the official code, the optimiser still applies weight decay and its
momentum to the detached rows: ``frozen`` zeroes their gradient, it does not skip their update.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..context import is_continuing_step
from ..distributed import broadcast_int
from .base import MERGEABLE, RANK_SLICEABLE, AdapterConfig, AdapterLayer, check_positive_int, check_rank, kaiming_


@dataclass
class DyLoraConfig(AdapterConfig):
    r_min: int = field(default=1, metadata={"help": "Smallest rank sampled in training."})
    r_max: int = field(default=8, metadata={"help": "Largest rank (size of A and B)."})
    frozen: bool = field(default=False, metadata={
        "help": "Train only the sampled rank's row of A and column of B each step (the official code's mode)."})
    method = "dylora"
    option_help = {"alpha": "Scaling numerator: s = alpha / b at the sampled (or evaluated) rank b."}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("r_min", self.r_min)
        check_positive_int("r_max", self.r_max)
        if self.r_min > self.r_max:
            raise ValueError(f"r_min={self.r_min} must be <= r_max={self.r_max}")
        if not isinstance(self.frozen, bool):
            raise ValueError(f"frozen must be True or False, got {self.frozen!r}")

    @classmethod
    def examples(cls) -> list["DyLoraConfig"]:
        return [cls(r_min=1, r_max=4), cls(r_min=1, r_max=4, frozen=True)]

    @classmethod
    def at_rank(cls, rank: int) -> dict[str, int]:
        return {"r_min": 1, "r_max": rank}

    def check_shape(self, d_in: int, d_out: int, module_name: str = "module") -> None:
        check_rank("r_max", self.r_max, d_in, d_out, module_name)


class DyLoraLayer(AdapterLayer):
    param_parts = {"lora_A": "A", "lora_B": "B"}
    capabilities = frozenset({MERGEABLE, RANK_SLICEABLE})

    def __init__(self, base: nn.Linear, config: DyLoraConfig, module_name: str = "module") -> None:
        super().__init__(base, config, module_name)
        self.lora_A = nn.Parameter(kaiming_(torch.empty(config.r_max, self.d_in)))
        self.lora_B = nn.Parameter(torch.zeros(self.d_out, config.r_max))
        self.eval_rank = config.r_max  # rank used outside training; set with set_rank()
        self.train_rank: int | None = None  # set for all layers at once by the model-level hook
        self.last_rank = config.r_max  # rank used by the last forward (for inspection)

    @property
    def ranks(self) -> range:
        """Every rank the adapter can be evaluated at."""
        return range(self.config.r_min, self.config.r_max + 1)

    def set_rank(self, rank: int) -> None:
        if isinstance(rank, bool) or not isinstance(rank, int) or not self.config.r_min <= rank <= self.config.r_max:
            raise ValueError(f"rank must be an int in {self.config.r_min}..{self.config.r_max}, got {rank!r}")
        merged = (self.merged_with or {}).get("rank")
        if merged is not None and rank != merged:
            raise ValueError(f"{self.module_name} is merged at rank {merged}; unmerge() before setting rank {rank}")
        self.eval_rank = rank

    def resolve_selector(self, rank: int | None = None) -> dict[str, int]:
        return {"rank": self.eval_rank if rank is None else rank}

    def sample_rank(self) -> int:
        return int(torch.randint(self.config.r_min, self.config.r_max + 1, (1,)).item())

    @classmethod
    def on_attach(cls, model: nn.Module, layers: dict[str, "DyLoraLayer"]) -> None:
        """One rank per training forward pass, shared by every layer (as in the DyLoRA paper)."""
        layer_list = list(layers.values())

        def sample_shared_rank(module: nn.Module, args: tuple) -> None:
            if module.training and layer_list and not is_continuing_step():
                # several processes: process 0's draw, so every process trains the same rank
                rank = broadcast_int(layer_list[0].sample_rank(), layer_list[0].lora_A.device)
                for layer in layer_list:
                    layer.train_rank = min(max(rank, layer.config.r_min), layer.config.r_max)

        model._ranklab_dylora_hook = model.register_forward_pre_hook(sample_shared_rank)

    @classmethod
    def on_detach(cls, model: nn.Module, layers: dict[str, "DyLoraLayer"]) -> None:
        hook = getattr(model, "_ranklab_dylora_hook", None)
        if hook is not None:
            hook.remove()
            del model._ranklab_dylora_hook

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            rank = self.train_rank if self.train_rank is not None else self.sample_rank()
        else:
            rank = self.eval_rank
        self.last_rank = rank
        scaling = self.config.alpha / rank
        a, b = self.lora_A[:rank], self.lora_B[:, :rank]
        if self.training and self.config.frozen and rank > 1:  # only rank b's own row / column learns
            a = torch.cat([a[:-1].detach(), a[-1:]], dim=0)
            b = torch.cat([b[:, :-1].detach(), b[:, -1:]], dim=1)
        return (x @ a.T) @ b.T * scaling

    def factors(self, rank: int | None = None) -> list[torch.Tensor]:
        rank = self.eval_rank if rank is None else rank
        if not self.config.r_min <= rank <= self.config.r_max:
            raise ValueError(f"rank must be in {self.config.r_min}..{self.config.r_max}, got {rank}")
        return [self.lora_B[:, :rank] * (self.config.alpha / rank), self.lora_A[:rank]]
