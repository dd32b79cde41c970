"""`ranklab demo`: train an adapter on a toy layer for a few seconds and print its spectrum."""
from __future__ import annotations

import argparse

DEMO_RANK = 8  # options come from each method's at_rank(8): no list of methods here


def demo_methods() -> list[str]:
    """Registered methods whose update on one layer is a fixed matrix (its spectrum is the demo)."""
    import torch
    from torch import nn

    from .adapters import available_methods, get_method
    from .adapters.base import MERGEABLE

    methods = []
    for name in available_methods():
        config_class, layer_class = get_method(name)
        try:
            with torch.device("meta"):
                layer = layer_class(nn.Linear(64, 64), config_class.from_dict(config_class.at_rank(DEMO_RANK)))
        except (ValueError, NotImplementedError):  # needs more than one layer (e.g. a number of tasks)
            continue
        if MERGEABLE in layer.capabilities:
            methods.append(name)
    return methods


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="train an adapter on a toy layer and print its spectrum")
    demo.add_argument("--method", default="lora", choices=demo_methods(),
                      help=f"adapter method, at the options of its at_rank({DEMO_RANK})")
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo_command)


def _demo_command(args: argparse.Namespace) -> int:
    from .adapters import get_method
    from .experiments.toy import fit_planted

    options = get_method(args.method)[0].at_rank(DEMO_RANK)
    fit = fit_planted(args.method, steps=args.steps, seed=args.seed, true_rank=4, decay=0.7, **options)
    print(f"ranklab {args.method}: {fit.layer.num_adapter_params():,} adapter params on a 64 x 64 layer")
    print(f"trained {args.steps} steps in {fit.seconds:.1f} s, final loss {fit.losses[-1]:.2e}")
    print("singular values, planted rank-4 update vs learned update:")
    for i, learned in enumerate(fit.learned_sigma[:8]):
        planted = fit.planted_sigma[i] if i < len(fit.planted_sigma) else 0.0
        print(f"  sigma_{i + 1:<2}  planted {planted:8.4f}   learned {learned:8.4f}")
    return 0
