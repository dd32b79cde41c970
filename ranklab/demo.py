"""`ranklab demo`: train an adapter on a toy layer for a few seconds and print its spectrum."""
from __future__ import annotations

import argparse

from .experiments.toy import fit_planted

DEMO_OPTIONS = {"lora": {"r": 8}, "emd": {"a": 4, "b": 12}, "dylora": {"r_min": 1, "r_max": 8}}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="train an adapter on a toy layer and print its spectrum")
    demo.add_argument("--method", default="lora", help="adapter method (lora, emd, dylora)")
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo_command)


def _demo_command(args: argparse.Namespace) -> int:
    fit = fit_planted(args.method, steps=args.steps, seed=args.seed, true_rank=4, decay=0.7,
                      **DEMO_OPTIONS.get(args.method, {}))
    print(f"ranklab {args.method}: {fit.layer.num_adapter_params():,} adapter params on a 64 x 64 layer")
    print(f"trained {args.steps} steps in {fit.seconds:.1f} s, final loss {fit.losses[-1]:.2e}")
    print("singular values, planted rank-4 update vs learned update:")
    for i, learned in enumerate(fit.learned_sigma[:8]):
        planted = fit.planted_sigma[i] if i < len(fit.planted_sigma) else 0.0
        print(f"  sigma_{i + 1:<2}  planted {planted:8.4f}   learned {learned:8.4f}")
    return 0
