"""The workshop's "predict, then run": LoRA at a few ranks on one real task, in smoke-sized runs.

Attendees write down what they expect (does accuracy rise with r? does the effective rank of ΔW
follow r?), then ``rank_runs`` trains LoRA at each rank for a few hundred steps (about a minute a
rank on 2 CPU cores for movie) and returns what happened, to set beside the protocol's numbers.
Not evidence for a claim: one seed, a short budget, validation on a fixed 300-row subset.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd

from ...hardware import native_bf16
from ...train.config import TrainConfig


def rank_runs(ranks: Sequence[int] = (1, 4, 16), task: str = "movie", steps: int = 150, seed: int = 1,
              lr: float = 1e-3, backbone: str = "minilm-l6", tasks: list | None = None,
              model_fn: Callable | None = None) -> pd.DataFrame:
    """One LoRA run per rank (same seed, rate and data order): its best validation score x 100, the
    mean effective and stable rank of its ΔW over the adapted modules, and its seconds.
    ``tasks``/``model_fn``: prepared tasks and a model builder (tests: synthetic tasks, tiny model)."""
    from ...inspect import model_report
    from ...train import train

    if not ranks or any(r < 1 for r in ranks):
        raise ValueError(f"ranks must be integers >= 1, got {list(ranks)}")
    rows = []
    for r in ranks:
        config = TrainConfig(method="lora", adapter={"r": r, "alpha": 16.0}, tasks=[task], backbone=backbone, seed=seed,
                             max_steps=steps, eval_every=max(1, steps // 3), lr=lr, batch_size=16, max_length=32,
                             max_eval=300, warmup_ratio=0.06, group_by_length=True, eval_test=False, quiet=True,
                             mixed_precision="bf16" if native_bf16() else "no")
        inputs: dict[str, Any] = {"tasks": tasks, "model_fn": model_fn} if tasks is not None else {}
        result = train(config, **inputs)
        report = model_report(result.model)
        rows.append({"r": r, "validation x 100": round(100 * result.record["best"]["score"], 2),
                     "effective rank of ΔW": round(float(report["effective_rank"].mean()), 2),
                     "stable rank of ΔW": round(float(report["stable_rank"].mean()), 2),
                     "seconds": round(result.record["wall_time_s"], 1)})
    return pd.DataFrame(rows)
