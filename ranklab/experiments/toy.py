"""Toy experiments on one frozen layer with a planted low-rank update (seconds on a CPU).

The target is y = (W0 + ΔW*) x with ΔW* of known rank, so a trained adapter's spectrum can be
read against the truth: the workshop opener and the `ranklab demo` command.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..adapters import AdapterLayer, make_config
from ..attach import adapter_layers, attach
from ..inspect import module_spectrum


class PlantedLayer(nn.Module):
    """One frozen d x d layer; ``planted`` is the rank-``true_rank`` update to learn."""

    def __init__(self, dim: int, true_rank: int, seed: int, decay: float = 1.0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.layer = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.layer.weight.copy_(torch.randn(dim, dim, generator=generator) / dim**0.5)
        left, _ = torch.linalg.qr(torch.randn(dim, true_rank, generator=generator))
        right, _ = torch.linalg.qr(torch.randn(dim, true_rank, generator=generator))
        sigma = decay ** torch.arange(true_rank, dtype=torch.float32)
        self.register_buffer("planted", left @ torch.diag(sigma) @ right.T)  # known spectrum sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


@dataclass
class PlantedFit:
    """What ``fit_planted`` returns: the trained layer, losses and the spectra to compare."""

    layer: AdapterLayer
    losses: list[float]
    learned_sigma: np.ndarray
    planted_sigma: np.ndarray
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)


def fit_planted(method: str = "lora", steps: int = 300, dim: int = 64, true_rank: int = 4, decay: float = 1.0,
                lr: float = 1e-2, batch: int = 128, seed: int = 0, **options: Any) -> PlantedFit:
    """Train one adapter to reproduce a planted update; exact spectra before and after."""
    torch.manual_seed(seed)
    task = PlantedLayer(dim, true_rank, seed, decay)
    attach(task, make_config(method, target_modules=["layer"], **options))
    target = task.layer.base.weight.detach() + task.planted
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=lr)
    losses, start = [], time.perf_counter()
    task.train()
    for _ in range(steps):
        x = torch.randn(batch, dim)
        loss = (task(x) - x @ target.T).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    task.eval()
    layer = adapter_layers(task)["layer"]
    planted = torch.linalg.svdvals(task.planted)[:true_rank].numpy()
    return PlantedFit(layer, losses, module_spectrum(layer).numpy(), planted, time.perf_counter() - start, options)
