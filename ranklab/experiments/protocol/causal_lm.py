"""Causal-LM recipes: TrainConfigs for a decoder-only model trained on text completion.

    from ranklab.experiments.protocol.causal_lm import causal_lm_configs
    configs = causal_lm_configs("mor", scale="embedded", seeds=(0, 1, 2), output="runs/mor-lm")
    results = [ranklab.train.train(c) for c in configs]

Scales (same code path):
- ``smoke``: tiny-llama (random weights, built from a config), a few steps, for tests;
- ``embedded``: tiny-llama on movie_lm, CPU friendly (the tiny backbones have random weights:
  only the adapters learn, so this shows the pipeline and rank behaviour, not LLM quality);
- ``paper``: Qwen2-0.5B from the hub, bf16, a GPU expected.
MoR follows its paper: 8 experts on the FFN modules (the paper: rank 32 on a 7B LLaMA; here
rank 8 at the tiny scales, 32 at ``paper``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ...backbones import BACKBONES, check_backbone
from ...train.config import TrainConfig, known_methods

ALPHA = 16.0
# FFN projections per family (MoR's setting): Llama / Qwen2 gate/up/down, GPT-2 c_fc and mlp.c_proj
FFN_MODULES = {"llama": ["gate_proj", "up_proj", "down_proj"], "qwen2": ["gate_proj", "up_proj", "down_proj"],
               "gpt2": ["c_fc", "mlp.c_proj"]}


@dataclass(frozen=True)
class CausalScale:
    name: str
    backbone: str
    rank: int  # LoRA-family rank at this scale (MoR's shared rank)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    description: str = ""


CAUSAL_SCALES: dict[str, CausalScale] = {
    "smoke": CausalScale("smoke", "tiny-llama", 4, dict(
        max_steps=4, batch_size=8, max_train=64, max_eval=32, max_test=32, max_length=48, lr=1e-2, quiet=True),
        "a few steps on tiny-llama, for tests"),
    # DECISION (embedded): lr 1e-2 - the tiny backbones are random and frozen, so the adapters must
    # carry the whole task; at 3e-3 EMD on movie_lm stayed near the majority rate for a whole epoch.
    "embedded": CausalScale("embedded", "tiny-llama", 8, dict(
        epochs=1, batch_size=32, max_train=4000, max_eval=500, max_length=64, lr=1e-2, eval_every=50,
        group_by_length=True), "tiny-llama on movie_lm, CPU, a few minutes"),
    "paper": CausalScale("paper", "qwen2-0.5b", 32, dict(
        epochs=2, batch_size=32, gradient_accumulation_steps=4, max_length=256, lr=2e-4, mixed_precision="bf16"),
        "Qwen2-0.5B from the hub, bf16; a GPU expected"),
}


def method_options(method: str, family: str, rank: int) -> dict[str, Any]:
    """Adapter options of ``method`` at ``rank``, from the method's own config (``at_rank`` and
    ``recipe_targets``): the expert mixtures on the FFN (as in the MoR paper), the others on every
    Linear / Conv1D ("all-linear")."""
    from ...train.commands import method_config_classes

    classes = method_config_classes()
    if method not in classes:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(sorted(classes))}")
    config_class = classes[method]
    targets = FFN_MODULES[family] if config_class.recipe_targets == "ffn" else "all-linear"
    return {**config_class.at_rank(rank), "target_modules": targets, "alpha": ALPHA}


def causal_lm_configs(method: str = "mor", scale: str = "embedded", tasks: Sequence[str] = ("movie_lm",),
                      backbone: str | None = None, seeds: Sequence[int] = (0,), output: str | Path | None = None,
                      adapter: dict[str, Any] | None = None, **overrides: Any) -> list[TrainConfig]:
    """One TrainConfig per seed for ``method`` trained with the causal-LM objective.

    ``backbone`` replaces the scale's (any decoder: tiny-gpt2, tiny-llama, tiny-qwen2, qwen2-0.5b);
    ``adapter`` updates the method's options; ``overrides`` are further TrainConfig fields;
    ``output``: runs go to ``<output>/seed<k>`` (none: nothing written)."""
    if scale not in CAUSAL_SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(CAUSAL_SCALES)}")
    if method not in known_methods():
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(known_methods())}")
    spec = CAUSAL_SCALES[scale]
    backbone = backbone or spec.backbone
    check_backbone(backbone, "causal-lm")
    options = {**method_options(method, BACKBONES[backbone].family, spec.rank), **(adapter or {})}
    configs = []
    for seed in seeds:
        run_output = None if output is None else str(Path(output) / f"seed{seed}")
        fields = {**spec.train, **overrides}
        configs.append(TrainConfig(method=method, adapter=dict(options), tasks=list(tasks), backbone=backbone,
                                   objective="causal-lm", seed=seed, output=run_output, **fields))
    return configs
