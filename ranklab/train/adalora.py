"""AdaLoRA baseline through PEFT (not rewritten): build, regularise, allocate, record ranks.

PEFT's AdaLoRA needs three things users often forget (peft#1801): ``total_step`` fixed before
training, ``update_and_allocate(step)`` after every optimizer step, and the orthogonal
regulariser (PEFT adds it only when the model computes the loss itself; our trainer computes
the loss, so it adds ``orth_loss`` explicitly).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..adapters.targets import ALL_LINEAR, all_linear_targets, is_conv1d
from ..compat import quiet_peft

ADAPTER_NAME = "default"


@dataclass
class AdaLoraOptions:
    init_r: int = field(default=12, metadata={"help": "AdaLoRA: starting rank of every module."})
    target_r: int = field(default=8, metadata={"help": "AdaLoRA: average rank per module at the end (the budget)."})
    alpha: float = field(default=16.0, metadata={"help": "Scaling numerator: s = alpha / rank."})
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"], metadata={
        "help": "Module-name suffixes to adapt (list), one regex matched with re.fullmatch, or "
                "'all-linear' (every Linear/Conv1D but the output head, as in PEFT)."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter input."})
    tinit_ratio: float = field(default=0.1, metadata={"help": "AdaLoRA: share of steps before the budget shrinks."})
    tfinal_ratio: float = field(default=0.2, metadata={"help": "AdaLoRA: share of steps at the final budget."})
    delta_t: int = field(default=1, metadata={"help": "AdaLoRA: steps between reallocations."})
    schedule_steps: int | None = field(default=None, metadata={
        "help": "AdaLoRA: steps the budget schedule spans (none: the run's max_steps). Set it when a run "
                "stops at a plateau long before max_steps, so the budget reaches target_r first."})
    orth_reg_weight: float = field(default=0.5, metadata={"help": "AdaLoRA: weight of the orthogonal regulariser."})
    beta1: float = field(default=0.85, metadata={"help": "AdaLoRA: EMA factor of the sensitivity."})
    beta2: float = field(default=0.85, metadata={"help": "AdaLoRA: EMA factor of the uncertainty."})

    method = "adalora"
    recipe_targets = "all-linear"
    option_help: ClassVar[dict[str, str]] = {}

    @classmethod
    def at_rank(cls, rank: int) -> dict[str, int]:
        return {"init_r": rank + rank // 2, "target_r": rank}  # AdaLoRA's paper starts 1.5x above its budget

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str):
            self.target_modules = [t.strip() for t in self.target_modules.split(",") if t.strip()]
        if not 1 <= self.target_r <= self.init_r:
            raise ValueError(f"need 1 <= target_r <= init_r, got target_r={self.target_r}, init_r={self.init_r}")
        if not (0 <= self.tinit_ratio and 0 <= self.tfinal_ratio and self.tinit_ratio + self.tfinal_ratio < 1):
            raise ValueError("tinit_ratio and tfinal_ratio must be >= 0 with a sum below 1")
        if self.schedule_steps is not None and (isinstance(self.schedule_steps, bool) or self.schedule_steps < 2):
            raise ValueError(f"schedule_steps must be an int >= 2 or None, got {self.schedule_steps!r}")
        if self.delta_t < 1 or self.orth_reg_weight < 0 or self.alpha <= 0:
            raise ValueError("delta_t must be >= 1, orth_reg_weight >= 0 and alpha > 0")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AdaLoraOptions":
        data = {k: v for k, v in data.items() if k != "method"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown adalora options {unknown}; valid keys: {sorted(names)}")
        return cls(**data)

    def schedule(self, total_steps: int) -> tuple[int, int]:
        """(tinit, tfinal) in steps, leaving at least one budgeting step.

        PEFT scores the weights (``update_ipt``) only at steps s < total - tfinal (s counts from 1)
        and prunes to the final budget at s = total - tfinal, from those scores: without a step
        1 <= s < total - tfinal it fails with a KeyError deep inside PEFT (found by the paper
        recipes' miniature runs: 2 steps, tfinal = 1)."""
        tinit, tfinal = int(self.tinit_ratio * total_steps), int(self.tfinal_ratio * total_steps)
        if max(tinit, 1) >= total_steps - tfinal:
            raise ValueError(f"{total_steps} steps are too few for AdaLoRA's schedule (tinit {tinit}, tfinal {tfinal}: "
                             "no step is left to score and prune the ranks); train longer")
        return tinit, tfinal

    def horizon(self, total_steps: int) -> int:
        """Steps the budget schedule spans: ``schedule_steps``, or the whole run."""
        if self.schedule_steps is not None and self.schedule_steps > total_steps:
            raise ValueError(f"AdaLoRA's schedule_steps ({self.schedule_steps}) exceeds the run's {total_steps} steps: "
                             "the budget would never reach target_r; lower it or train longer")
        return self.schedule_steps or total_steps

    def final_budget_step(self, total_steps: int) -> int:
        """The step from which every module holds its final rank (PEFT prunes to target_r there)."""
        horizon = self.horizon(total_steps)
        return horizon - self.schedule(horizon)[1]


def _targets(model: nn.Module, options: AdaLoraOptions, head_module: str | None) -> list[str]:
    """PEFT's target list; "all-linear" resolved as ranklab.attach resolves it (the whole head
    is left out, where PEFT leaves out only a head that is itself one Linear)."""
    if [t.lower() for t in options.target_modules] != [ALL_LINEAR]:
        return list(options.target_modules)
    return [n for n in all_linear_targets(model)
            if head_module is None or not (n == head_module or n.startswith(head_module + "."))]


def build_adalora(model: nn.Module, options: AdaLoraOptions, total_steps: int,
                  head_module: str | None) -> nn.Module:
    """Wrap ``model`` with PEFT AdaLoRA whose budget schedule spans ``total_steps`` (or the options'
    ``schedule_steps``); ``head_module`` is trained and saved with it (None: no head, e.g. a causal
    LM's tied output layer).  After the schedule PEFT keeps the final rank pattern."""
    from peft import AdaLoraConfig, get_peft_model

    total_steps = options.horizon(total_steps)
    tinit, tfinal = options.schedule(total_steps)
    targets = _targets(model, options, head_module)
    matched = [m for n, m in model.named_modules() if any(n == t or n.endswith("." + t) for t in targets)]
    config = AdaLoraConfig(
        init_r=options.init_r, target_r=options.target_r, lora_alpha=options.alpha,
        target_modules=targets, lora_dropout=options.dropout,
        fan_in_fan_out=bool(matched) and all(is_conv1d(m) for m in matched),  # GPT-2: no PEFT warning
        tinit=tinit, tfinal=tfinal, deltaT=options.delta_t, total_step=total_steps,
        orth_reg_weight=options.orth_reg_weight, beta1=options.beta1, beta2=options.beta2,
        modules_to_save=[head_module] if head_module else None,
    )
    with quiet_peft():  # PEFT's own deprecation warning, not the user's
        return get_peft_model(model, config)


def orth_loss(model: nn.Module) -> torch.Tensor:
    """PEFT's orthogonal regulariser times its weight (same formula as AdaLoraModel.forward)."""
    weight = model.peft_config[ADAPTER_NAME].orth_reg_weight
    terms = []
    for name, p in model.base_model.model.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and ADAPTER_NAME in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p
            terms.append(torch.norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype), p="fro"))
    if not terms:
        return torch.zeros(())
    return weight * torch.stack(terms).mean()


def rank_pattern(model: nn.Module) -> dict[str, int]:
    """Current rank of every adapted module (PEFT's allocation, or init_r before the first one)."""
    config = model.peft_config[ADAPTER_NAME]
    if config.rank_pattern:  # keys end in .lora_E.default (.lora_E after a PEFT save)
        return {_module_name(name): int(sum(mask)) for name, mask in config.rank_pattern.items()}
    return {_module_name(name): int(p.shape[0]) for name, p in model.named_parameters() if ".lora_E." in name}


def _module_name(key: str) -> str:
    return key.replace("base_model.model.", "").split(".lora_E", 1)[0]


def rank_snapshot(model: nn.Module, step: int) -> dict[str, Any]:
    per_module = rank_pattern(model)
    return {"step": step, "total": sum(per_module.values()), "per_module": per_module}


def param_counts(model: nn.Module) -> dict[str, int]:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    adapter = sum(p.numel() for n, p in trainable if "lora_" in n)
    head = sum(p.numel() for n, p in trainable if "lora_" not in n)
    return {"adapter_params": adapter, "head_params": head, "trainable_params": adapter + head,
            "total_params": sum(p.numel() for p in model.parameters())}


def allocator_state(model: nn.Module) -> dict[str, Any]:
    """What update_and_allocate remembers between steps (needed for an exact resume)."""
    allocator = model.base_model.rankallocator
    return {
        "ipt": dict(allocator.ipt), "exp_avg_ipt": dict(allocator.exp_avg_ipt),
        "exp_avg_unc": dict(allocator.exp_avg_unc),
        "rank_pattern": model.peft_config[ADAPTER_NAME].rank_pattern,
    }


def load_allocator_state(model: nn.Module, state: dict[str, Any]) -> None:
    allocator = model.base_model.rankallocator
    allocator.ipt, allocator.exp_avg_ipt = dict(state["ipt"]), dict(state["exp_avg_ipt"])
    allocator.exp_avg_unc = dict(state["exp_avg_unc"])
    model.peft_config[ADAPTER_NAME].rank_pattern = state["rank_pattern"]
