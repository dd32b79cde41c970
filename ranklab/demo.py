"""`ranklab demo`: train an adapter on a tiny model for a few seconds and print its spectrum.

A smoke-sized tour of the library for a fresh install: attach, train, inspect, merge.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from .adapters import make_config
from .attach import adapter_layers, attach, merge_and_unload


class PlantedTask(nn.Module):
    """One frozen layer whose target is W0 + a planted rank-``true_rank`` update."""

    def __init__(self, dim: int, true_rank: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.layer = nn.Linear(dim, dim)
        with torch.no_grad():
            self.layer.weight.copy_(torch.randn(dim, dim, generator=generator) / dim**0.5)
            self.layer.bias.zero_()
        left = torch.randn(dim, true_rank, generator=generator)
        right = torch.randn(true_rank, dim, generator=generator)
        self.planted = (left @ right) / dim  # what the adapter should learn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def run_demo(method: str = "lora", steps: int = 300, dim: int = 64, true_rank: int = 4, seed: int = 0,
             **options: int) -> dict[str, object]:
    torch.manual_seed(seed)
    task = PlantedTask(dim, true_rank, seed)
    target_weight = task.layer.weight.detach() + task.planted
    summary = attach(task, make_config(method, target_modules=["layer"], **options))
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    start = time.perf_counter()
    for _ in range(steps):
        x = torch.randn(128, dim)
        loss = (task(x) - x @ target_weight.T - task.layer.base.bias).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    task.eval()
    layer = adapter_layers(task)["layer"]
    with torch.no_grad():
        learned = torch.linalg.svdvals(layer.delta_weight())
        planted = torch.linalg.svdvals(task.planted)
    merge_and_unload(task)
    return {"summary": summary, "loss": loss.item(), "seconds": time.perf_counter() - start,
            "learned": learned, "planted": planted}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="train an adapter on a toy layer and print its spectrum")
    demo.add_argument("--method", default="lora", help="adapter method (lora, emd, dylora, ...)")
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo_command)


def _demo_command(args: argparse.Namespace) -> int:
    options = {"lora": {"r": 8}, "emd": {"a": 4, "b": 12}, "dylora": {"r_min": 1, "r_max": 8}}.get(args.method, {})
    result = run_demo(args.method, steps=args.steps, seed=args.seed, **options)
    print(result["summary"])
    print(f"trained {args.steps} steps in {result['seconds']:.1f} s, final loss {result['loss']:.2e}")
    top = 8
    print(f"top {top} singular values, planted rank-4 update vs learned update:")
    for i in range(top):
        print(f"  sigma_{i + 1:<2}  planted {result['planted'][i]:8.4f}   learned {result['learned'][i]:8.4f}")
    return 0
