"""What a training run needs from its method beyond the forward pass, as one object per run.

The trainer knows no method: it asks its runtime to set the model up, for extra loss terms, for
an action after every optimizer step, for state to checkpoint, for a rank snapshot and to save
the weights.  ``AdapterRuntime`` serves every ranklab registry method (each layer's
``extra_loss()`` and ``after_optimizer_step(step)``); ``AdaLoraRuntime`` wraps PEFT's AdaLoRA
(its orthogonal regulariser, ``update_and_allocate`` after every step - peft#1801 - and the
allocator state a resume needs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..atomic import write_folder
from ..attach import adapter_layers, attach
from ..saving import load_adapter_weights, save_adapters
from . import adalora
from .config import ADALORA, TrainConfig
from .heads import add_task_heads


class MethodRuntime:
    """The per-method part of a run; the defaults do nothing."""

    has_ranks = False  # does rank_snapshot() report a changing rank pattern?
    # evaluations before this step neither become the best checkpoint nor count for patience
    # (AdaLoRA: until every module holds its final budget, the model has more rank than compared)
    selectable_from = 0

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.model: nn.Module | None = None
        self.adapter_config: dict[str, Any] = {}
        self.params: dict[str, int] = {}

    def setup(self, model: nn.Module, num_labels: Sequence[int], total_steps: int) -> nn.Module:
        """Add task heads and the method's adapters; returns the model to train.  A causal LM keeps
        its one output layer for every task (routers still see the task through use_task)."""
        if len(num_labels) > 1 and not self.config.causal_lm:
            add_task_heads(model, num_labels, self.config.head_module)
        self.model = self._wrap(model, total_steps)
        self.model.ranklab_task_names = list(self.config.tasks)  # use_task("movie", model=...) and exports
        return self.model

    def _wrap(self, model: nn.Module, total_steps: int) -> nn.Module:
        raise NotImplementedError

    def extra_loss(self) -> torch.Tensor | None:
        return None

    def init_from(self, path: str) -> None:
        """Start from another run's adapter weights (not its head)."""
        raise ValueError(f"method {self.config.method!r} cannot start from another run's adapter")

    def after_optimizer_step(self, step: int) -> None:
        """Called after every optimizer step (and scheduler step), before gradients are zeroed."""

    def state(self) -> Any:
        """What the method remembers between steps, for an exact resume (None: nothing)."""
        return None

    def load_state(self, state: Any) -> None:
        pass

    def rank_snapshot(self, step: int) -> dict[str, Any] | None:
        return None

    def save(self, folder: Path, extra: dict[str, Any]) -> Path:
        raise NotImplementedError


class AdapterRuntime(MethodRuntime):
    """ranklab's own methods (the adapter registry)."""

    def _wrap(self, model: nn.Module, total_steps: int) -> nn.Module:
        adapter_config = self.config.adapter_config()
        summary = attach(model, adapter_config)
        self.adapter_config = adapter_config.to_dict()
        self.params = {k: v for k, v in summary.to_dict().items() if k.endswith("_params")}
        return model

    def init_from(self, path: str) -> None:
        load_adapter_weights(self.model, path)

    def extra_loss(self) -> torch.Tensor | None:
        terms = [loss for layer in adapter_layers(self.model).values() if (loss := layer.extra_loss()) is not None]
        return torch.stack([t.float() for t in terms]).sum() if terms else None

    def after_optimizer_step(self, step: int) -> None:
        for layer in adapter_layers(self.model).values():
            layer.after_optimizer_step(step)

    def save(self, folder: Path, extra: dict[str, Any]) -> Path:
        return save_adapters(self.model, folder, extra=extra)


class AdaLoraRuntime(MethodRuntime):
    """PEFT's AdaLoRA (not rewritten): budget schedule, regulariser, allocation, rank pattern."""

    has_ranks = True

    def _wrap(self, model: nn.Module, total_steps: int) -> nn.Module:
        options = self.config.adapter_config()
        model = adalora.build_adalora(model, options, total_steps, self.config.head)
        self.selectable_from = options.final_budget_step(total_steps)
        self.adapter_config, self.params = options.to_dict(), adalora.param_counts(model)
        return model

    def extra_loss(self) -> torch.Tensor | None:
        # PEFT adds this only when the model computes the loss itself; our trainer computes it
        return adalora.orth_loss(self.model)

    def after_optimizer_step(self, step: int) -> None:
        self.model.base_model.update_and_allocate(step)

    def state(self) -> Any:
        return adalora.allocator_state(self.model)

    def load_state(self, state: Any) -> None:
        if state is not None:
            adalora.load_allocator_state(self.model, state)

    def rank_snapshot(self, step: int) -> dict[str, Any] | None:
        return adalora.rank_snapshot(self.model, step)

    def save(self, folder: Path, extra: dict[str, Any]) -> Path:
        from ..compat import quiet_pruned_adalora_save

        with quiet_pruned_adalora_save():
            return write_folder(folder, lambda tmp: self.model.save_pretrained(str(tmp)))


def runtime_for(config: TrainConfig) -> MethodRuntime:
    """The runtime of ``config.method``: PEFT's AdaLoRA, or a ranklab registry method."""
    return AdaLoraRuntime(config) if config.method == ADALORA else AdapterRuntime(config)
