"""VeRA (Kopiczko et al., ICLR 2024, arXiv 2310.11454): delta(x) = diag(b) B diag(d) A x.

A (r x d_in) and B (d_out x r) are frozen random matrices shared by every adapted layer; each layer
trains only the vectors d (r) and b (d_out).  The shared pair is model-level state (the
``shared_state`` hook): built once from a seed at the largest adapted shape, each layer slicing
``A[:, :d_in]`` and ``B[:d_out]`` as PEFT does; saved once, or regenerated from the seed when
``save_projection`` is off.  Same initialisation and operation order as PEFT's VeRA, so an export
to PEFT gives the same logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from .base import AdapterConfig, AdapterLayer, check_positive_int, check_real


@dataclass
class VeraConfig(AdapterConfig):
    r: int = field(default=256, metadata={
        "help": "Rank of the frozen random projections A (r x d_in) and B (d_out x r) shared by every layer."})
    projection_seed: int = field(default=0, metadata={
        "help": "Seed of A and B (PEFT's projection_prng_key): one seed, one pair of projections."})
    save_projection: bool = field(default=True, metadata={
        "help": "Save A and B (once) with the adapter; off: regenerate them from the seed when loading."})
    d_initial: float = field(default=0.1, metadata={"help": "Initial value of every entry of d (b starts at 0)."})
    method = "vera"
    option_help = {"alpha": "Not used by VeRA: as in PEFT, the vectors b and d carry the scale."}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("r", self.r)  # may exceed min(d_in, d_out): the paper uses r = 1024 on 768-wide layers
        if not isinstance(self.projection_seed, int) or isinstance(self.projection_seed, bool):
            raise ValueError(f"projection_seed must be an int, got {self.projection_seed!r}")
        if not isinstance(self.save_projection, bool):
            raise ValueError(f"save_projection must be true or false, got {self.save_projection!r}")
        check_real("d_initial", self.d_initial)

    @classmethod
    def examples(cls) -> list["VeraConfig"]:
        # r above the layer width, and projections regenerated from a seed instead of saved
        return [cls(r=6), cls(r=40, projection_seed=7, save_projection=False)]

    @classmethod
    def at_rank(cls, rank: int) -> dict[str, int]:
        # DECISION: r = 32 x LoRA's rank.  VeRA's paper pairs r = 1024 with LoRA r = 8 on GLUE (128x) and
        # with r = 64 for instruction tuning (16x); 32x lies between, and gives PEFT's default 256 at rank 8.
        return {"r": 32 * rank}


def _kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """PEFT's VeRA init (peft.tuners.vera.model._kaiming_init): U(-b, b), b = sqrt(6 / fan_in)."""
    bound = math.sqrt(3.0) * math.sqrt(2) / math.sqrt(shape[1])
    return torch.empty(shape, device="cpu").uniform_(-bound, bound, generator=generator)


class VeraProjections(nn.Module):
    """The frozen pair every VeRA layer of a model shares (buffers: frozen, moved with the model)."""

    def __init__(self, config: VeraConfig, d_in: int, d_out: int) -> None:
        super().__init__()
        generator = torch.Generator(device="cpu").manual_seed(config.projection_seed)
        # A first, then B, from one generator: PEFT's order, so PEFT regenerates the same pair
        self.register_buffer("vera_A", _kaiming_uniform((config.r, d_in), generator), persistent=config.save_projection)
        self.register_buffer("vera_B", _kaiming_uniform((d_out, config.r), generator), persistent=config.save_projection)


class VeraLayer(AdapterLayer):
    param_parts = {"vera_lambda_d": "d", "vera_lambda_b": "b"}

    def __init__(self, base: nn.Linear, config: VeraConfig, module_name: str = "module") -> None:
        super().__init__(base, config, module_name)
        # b before d: the base layer casts inputs to the first own parameter's dtype (both are float32)
        self.vera_lambda_b = nn.Parameter(torch.zeros(self.d_out))
        self.vera_lambda_d = nn.Parameter(torch.full((config.r,), float(config.d_initial)))

    @classmethod
    def shared_state(cls, config: VeraConfig, shapes: Mapping[str, tuple[int, int]]) -> nn.Module:
        return VeraProjections(config, max(d_in for d_in, _ in shapes.values()),
                               max(d_out for _, d_out in shapes.values()))

    def _projections(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shared = self.shared
        return (shared.vera_A[:, : self.d_in].to(like), shared.vera_B[: self.d_out].to(like))

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self._projections(x)
        # PEFT's order: lambda_b * linear(lambda_d * linear(x, A), B)
        return self.vera_lambda_b * nn.functional.linear(self.vera_lambda_d * nn.functional.linear(x, a), b)

    def factors(self) -> list[torch.Tensor]:
        a, b = self._projections(self.vera_lambda_b)
        return [self.vera_lambda_b[:, None] * b, self.vera_lambda_d[:, None] * a]

    @classmethod
    def peft_export(cls, config: VeraConfig, layers: Mapping[str, AdapterLayer],
                    shared: nn.Module) -> tuple[Any, dict[str, torch.Tensor]]:
        """PEFT's own VeRA: the same vectors, the projections once (or PEFT regenerates them)."""
        from peft import VeraConfig as PeftVeraConfig

        tensors = {}
        for name, layer in layers.items():
            tensors[f"base_model.model.{name}.vera_lambda_b"] = layer.vera_lambda_b
            tensors[f"base_model.model.{name}.vera_lambda_d"] = layer.vera_lambda_d
        if config.save_projection:
            tensors["base_model.vera_A"], tensors["base_model.vera_B"] = shared.vera_A, shared.vera_B
        peft_config = PeftVeraConfig(
            r=config.r, target_modules=sorted(layers), projection_prng_key=config.projection_seed,
            save_projection=config.save_projection, vera_dropout=config.dropout, d_initial=config.d_initial,
            modules_to_save=list(config.modules_to_save) or None,
            fan_in_fan_out=all(layer.fan_in_fan_out for layer in layers.values()))
        return peft_config, tensors
