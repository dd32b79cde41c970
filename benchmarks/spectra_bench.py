"""Factored vs dense spectrum time for every adapted module of a model, printed as a ratio.

Shapes: minilm-l6 (6 layers, hidden 384) and roberta-base (12 layers, hidden 768), LoRA r=8 on
query and value.  Only the adapted Linear layers are built (the rest of the model does not enter
the timing).  Factored: QR of the outer factors + SVD of the r x r core
(ranklab.inspect.module_spectrum).  Dense: torch.linalg.svdvals of delta_weight().

    python benchmarks/spectra_bench.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import ranklab
from ranklab.inspect import module_spectrum

SHAPES = {"minilm-l6": (6, 384), "roberta-base": (12, 768)}


def build(n_layers: int, hidden: int, r: int = 8) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Module()
    model.layer = nn.ModuleList(
        [nn.ModuleDict({"query": nn.Linear(hidden, hidden), "value": nn.Linear(hidden, hidden)})
         for _ in range(n_layers)])
    ranklab.attach(model, ranklab.make_config("lora", r=r, target_modules=["query", "value"]))
    for layer in ranklab.adapter_layers(model).values():
        nn.init.normal_(layer.lora_B)  # a trained-looking (non-zero) update
    return model


def time_all(fn, layers, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            for layer in layers:
                fn(layer)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def relative_difference(layer: nn.Module) -> float:
    """max |factored - dense| / sigma_1 over the r non-zero singular values."""
    fast = module_spectrum(layer)
    dense = torch.linalg.svdvals(layer.delta_weight())
    return float((fast - dense[: len(fast)]).abs().max() / dense[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, (n_layers, hidden) in SHAPES.items():
        layers = list(ranklab.adapter_layers(build(n_layers, hidden)).values())
        factored = time_all(module_spectrum, layers, args.repeats)
        dense = time_all(lambda layer: torch.linalg.svdvals(layer.delta_weight()), layers, args.repeats)
        error = max(relative_difference(layer) for layer in layers)
        print(f"{name:13s} {len(layers):2d} modules  factored {factored * 1e3:8.2f} ms  dense {dense * 1e3:8.2f} ms  "
              f"dense/factored {dense / factored:6.1f}x  max rel. diff {error:.1e}")


if __name__ == "__main__":
    main()
