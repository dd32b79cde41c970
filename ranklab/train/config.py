"""TrainConfig: everything a run needs, shared by the Python API and `ranklab train`."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


ADALORA = "adalora"  # PEFT's AdaLoRA; not a ranklab registry method
SAMPLING = ("proportional", "uniform", "temperature", "softmax")  # ranklab.data.multitask.STRATEGIES
PRECISIONS = ("no", "fp16", "bf16")
ATTENTION = ("eager", "sdpa")  # ranklab.backbones.ATTENTION
OBJECTIVES = ("classification", "causal-lm")  # ranklab.data.tasks.OBJECTIVES
# Trackers --report-to accepts.  DECISION: tensorboard only, the one tested here offline (Accelerate
# knows more, e.g. wandb and mlflow, but they need accounts or servers this project cannot test).
TRACKERS = ("tensorboard",)
# Options that change how a run is executed, not what it computes (ignored when resuming).
RUN_OPTIONS = ("resume", "overwrite", "quiet", "output", "report_to", "log_every")


def known_methods() -> list[str]:
    from ..adapters import available_methods

    return sorted(set(available_methods()) | {ADALORA})


@dataclass
class TrainConfig:
    """One training run: method + options, task(s), backbone, optimisation and output."""

    method: str = field(default="lora", metadata={"help": "Adapter method (a ranklab method or adalora)."})
    adapter: dict[str, Any] = field(default_factory=dict, metadata={"help": "Method options (r, alpha, a, b, ...)."})
    tasks: list[str] = field(default_factory=lambda: ["movie"], metadata={
        "help": "Task name, or comma-separated names for a multi-task run."})
    backbone: str = field(default="minilm-l6", metadata={"help": "Backbone name (`ranklab backbones`)."})
    epochs: int = field(default=3, metadata={"help": "Passes over the training data."})
    max_steps: int | None = field(default=None, metadata={"help": "Optimizer steps; overrides epochs when set."})
    lr: float = field(default=5e-4, metadata={"help": "Peak learning rate (AdamW, linear warmup and decay)."})
    batch_size: int = field(default=32, metadata={
        "help": "Global training batch per optimizer step, shared by all processes (one task per batch)."})
    gradient_accumulation_steps: int = field(default=1, metadata={
        "help": "Micro-batches per optimizer step (the global batch_size is split into them)."})
    eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size."})
    max_length: int = field(default=128, metadata={"help": "Tokens per example (longer ones are cut)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay on matrices."})
    warmup_ratio: float = field(default=0.06, metadata={"help": "Share of steps with a rising learning rate."})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "Gradient clipping norm (None: no clipping)."})
    eval_every: int = field(default=0, metadata={"help": "Steps between evaluations (0: every epoch)."})
    rank_every: int = field(default=10, metadata={
        "help": "Steps between snapshots of a changing rank pattern (AdaLoRA; record['rank_history'])."})
    patience: int | None = field(default=None, metadata={
        "help": "Early stop after this many evals without a gain above min_delta (none: train to the end)."})
    min_delta: float = field(default=0.0, metadata={
        "help": "A gain of the validation score that resets patience must exceed this (e.g. the score's "
                "standard error, so noise does not keep a plateaued run going)."})
    seed: int = field(default=0, metadata={"help": "Random seed (init, data order, sampled ranks)."})
    max_train: int | None = field(default=None, metadata={"help": "Cap on training examples per task."})
    max_eval: int | None = field(default=None, metadata={
        "help": "Cap on validation examples per task: one fixed subset, the same for every seed."})
    max_test: int | None = field(default=None, metadata={
        "help": "Cap on test examples per task (none: the full test split; a fixed subset otherwise)."})
    group_by_length: bool = field(default=False, metadata={
        "help": "Batch rows of similar length (less padding, faster on CPUs); batch order stays random."})
    sampling: str = field(default="proportional", metadata={"help": "Multi-task sampling of the next task "
                                                            "(softmax: MoRE's p ~ softmax(n_i / N)).",
                                                            "choices": SAMPLING})
    temperature: float = field(default=2.0, metadata={"help": "Temperature of sampling='temperature'."})
    mixed_precision: str = field(default="no", metadata={
        "help": "Mixed precision: bf16 autocast on a GPU or a CPU with native bf16 (AMX / AVX512-BF16), fp16 on a "
                "GPU.", "choices": PRECISIONS})
    attn_implementation: str | None = field(default=None, metadata={
        "help": "Attention kernel of the backbone (none: transformers' default, sdpa); eager is faster for "
                "short sequences under CPU bf16.", "choices": ATTENTION})
    head_module: str = field(default="classifier", metadata={"help": "Name of the classification head (trained)."})
    eval_test: bool = field(default=True, metadata={"help": "Evaluate the best model on the test split at the end."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder with local GLUE files (instead of the hub)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Cache folder (default $RANKLAB_CACHE)."})
    output: str | None = field(default=None, metadata={
        "help": "Run folder (record.json, checkpoint.pt, adapter/); none: nothing written."})
    resume: bool = field(default=False, metadata={"help": "Continue from the output folder's last checkpoint."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a run already in the output folder."})
    quiet: bool = field(default=False, metadata={"help": "No progress bar."})
    objective: str = field(default="classification", metadata={
        "help": "classification (a head per task; regression too) or causal-lm (next-token loss on the "
                "completion of a text-completion task such as movie_lm, on a decoder backbone).",
        "choices": OBJECTIVES})
    report_to: str | None = field(default=None, metadata={
        "help": "Experiment tracker fed through Accelerate (event files in <output>/tracking): loss, metrics, "
                "effective rank per module, router gate entropy, AdaLoRA budget.", "choices": TRACKERS})
    log_every: int = field(default=10, metadata={"help": "Steps between tracker logs of the training loss."})
    warmup_steps: int | None = field(default=None, metadata={
        "help": "Steps with a rising learning rate; overrides warmup_ratio when set (MoRE: 500)."})
    init_from: str | None = field(default=None, metadata={
        "help": "Adapter folder of a finished run whose adapter weights (not its head) start this run, "
                "e.g. LoRA's MNLI-initialised MRPC, RTE and STS-B."})

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        self.tasks = list(self.tasks)
        if not self.tasks:
            raise ValueError("tasks is empty: give at least one task name")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks repeat a name: {self.tasks}")
        if self.method not in known_methods():
            raise ValueError(f"unknown method {self.method!r}; valid methods: {', '.join(known_methods())}")
        self.adapter = dict(self.adapter)
        for name in ("output", "data_dir", "cache_dir", "init_from"):  # plain strings keep the config JSON-ready
            if getattr(self, name) is not None:
                setattr(self, name, str(getattr(self, name)))
        for name in ("epochs", "batch_size", "eval_batch_size", "max_length", "gradient_accumulation_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.gradient_accumulation_steps:
            steps = self.gradient_accumulation_steps
            fits = [k for k in range(1, self.batch_size + 1) if self.batch_size % k == 0]
            raise ValueError(f"batch_size {self.batch_size} does not split into {steps} equal micro-batches "
                             f"(gradient_accumulation_steps); choose a batch size divisible by {steps} or "
                             f"accumulation steps in {fits}")
        for name in ("max_steps", "max_train", "max_eval", "max_test", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        for name in ("lr", "weight_decay", "warmup_ratio", "temperature", "max_grad_norm", "min_delta"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.rank_every < 1:
            raise ValueError(f"rank_every must be >= 1, got {self.rank_every}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0 = every epoch), got {self.eval_every}")
        if self.sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {self.sampling!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}")
        if self.attn_implementation is not None and self.attn_implementation not in ATTENTION:
            raise ValueError(f"attn_implementation must be one of {ATTENTION} or None, got {self.attn_implementation!r}")
        if self.warmup_steps is not None and (isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int)
                                              or self.warmup_steps < 0):
            raise ValueError(f"warmup_steps must be an int >= 0 or None, got {self.warmup_steps!r}")
        if self.init_from is not None and self.method == ADALORA:
            raise ValueError("init_from loads ranklab adapter weights; PEFT's AdaLoRA runs start from its own init")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.report_to is not None and self.report_to not in TRACKERS:
            raise ValueError(f"unknown tracker {self.report_to!r} for report_to; valid trackers: {', '.join(TRACKERS)} "
                             "(or none)")
        if self.report_to is not None and self.output is None:
            raise ValueError(f"report_to={self.report_to!r} writes into the run folder: give an output folder")
        if int(self.log_every) < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        self.adapter_config()  # validate method options now, not after loading a model

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    @property
    def causal_lm(self) -> bool:
        return self.objective == "causal-lm"

    @property
    def head(self) -> str | None:
        """The trained head module: the classifier, or none for a causal LM (its output layer is
        the frozen, tied embedding matrix)."""
        return None if self.causal_lm else self.head_module

    def adapter_config(self) -> Any:
        """The ranklab AdapterConfig (or AdaLoraOptions) these options describe."""
        if self.method == ADALORA:
            from .adalora import AdaLoraOptions

            return AdaLoraOptions.from_dict(self.adapter)
        from ..adapters import get_method, make_config

        config_class, _ = get_method(self.method)
        fields = {f.name for f in dataclasses.fields(config_class)}
        options = dict(self.adapter)
        options.setdefault("modules_to_save", [self.head] if self.head else [])
        if "n_tasks" in fields:  # multi-task methods size their task tables from the run
            options.setdefault("n_tasks", len(self.tasks))
        return make_config(self.method, **options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; valid keys: {sorted(names)}")
        return cls(**data)

    def same_run(self, other: "TrainConfig") -> list[str]:
        """Names of fields (other than run options) that differ: a resume must match."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in mine if k not in RUN_OPTIONS and mine[k] != theirs[k]]
