"""Turn a backbone into the model a run trains: task heads, then adapters (ranklab or AdaLoRA)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..attach import adapter_layers, attach
from . import adalora
from .config import ADALORA, TrainConfig
from .heads import add_task_heads


def setup_model(model: nn.Module, config: TrainConfig, num_labels: Sequence[int],
                total_steps: int) -> tuple[nn.Module, dict[str, Any], dict[str, int]]:
    """(model ready to train, adapter config dict, parameter accounting)."""
    if len(num_labels) > 1:
        add_task_heads(model, num_labels, config.head_module)
    adapter_config = config.adapter_config()
    if config.method == ADALORA:
        model = adalora.build_adalora(model, adapter_config, total_steps, config.head_module)
        return model, adapter_config.to_dict(), adalora.param_counts(model)
    summary = attach(model, adapter_config)
    params = {k: v for k, v in summary.to_dict().items() if k.endswith("_params")}
    return model, adapter_config.to_dict(), params


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def extra_loss(model: nn.Module) -> torch.Tensor | None:
    """Sum of the auxiliary losses adapters declare (router losses, AdaLoRA's orthogonality)."""
    if adalora.is_adalora(model):
        return adalora.orth_loss(model)
    terms = [loss for layer in adapter_layers(model).values() if (loss := layer.extra_loss()) is not None]
    return torch.stack([t.float() for t in terms]).sum() if terms else None


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only; biases, norms and vectors get no weight decay."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim >= 2 and "norm" not in n.lower()]
    rest = [p for n, p in params if not (p.ndim >= 2 and "norm" not in n.lower())]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def save_weights(model: nn.Module, folder: Path, extra: dict[str, Any]) -> Path:
    """The adapter (and head) weights: ranklab's format, or PEFT's for AdaLoRA (atomic both)."""
    from ..saving import _write_folder_atomically, save_adapters

    if adalora.is_adalora(model):
        return _write_folder_atomically(folder, lambda tmp: model.save_pretrained(str(tmp)))
    return save_adapters(model, folder, extra=extra)
