"""What ranklab's adapters need inside a Hugging Face ``Trainer`` or TRL's ``SFTTrainer``.

    trainer = RanklabTrainer(model=model, args=args, train_dataset=data)    # data: a task_id column
    RanklabSFTTrainer = with_ranklab(trl.SFTTrainer)                        # the same for any Trainer subclass

The mixin adds, for models carrying ranklab adapters:
- task routing: a ``task_id`` column (an int, or a name from ``model.ranklab_task_names``) goes
  through any data collator and the Trainer's column filter; each forward pass runs inside
  ``ranklab.use_task(t)``, backward too (gradient checkpointing recomputes forward passes there).
  ``default_task=`` serves data without the column.  ranklab's adapters take one task per
  forward pass, so a batch holding several tasks is split by task (see ``training_step``);
  task-homogeneous batches avoid the split.
- the adapters' extra losses (the rank router's contrastive loss) added to the training loss,
  scaled as the Trainer scales the model's loss under gradient accumulation, and logged as
  ``extra_loss``;
- per-step state: micro-batches after the first of an optimizer step run in
  ``ranklab.continuing_step()`` (DyLoRA keeps its sampled rank), and every layer's
  ``after_optimizer_step`` runs after each optimizer step, as in ranklab's own trainer.
It also puts any ``RankDynamicsCallback`` first, so the ``report_to`` trackers get its metrics.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from ..adapters.base import TASK_ROUTED
from ..attach import adapter_layers, model_capabilities
from ..context import continuing_step, current_task, task_index, use_task
from .callback import RankDynamicsCallback

TASK_COLUMN = "task_id"


class TaskIdCollator:
    """Wrap a data collator: take the task column out of each example, collate the rest, add it back
    as a LongTensor.  Collators that keep only the keys they know (TRL's) would drop it otherwise."""

    def __init__(self, collator: Callable, column: str = TASK_COLUMN, to_id: Callable[[Any], int] = int) -> None:
        self.collator, self.column, self.to_id = collator, column, to_id

    def __call__(self, features: Sequence[Any]) -> Any:
        if not features or not isinstance(features[0], Mapping) or self.column not in features[0]:
            return self.collator(features)
        missing = sum(self.column not in f for f in features)
        if missing:
            raise ValueError(f"{missing} of {len(features)} examples in a batch have no {self.column!r}; give every example one")
        ids = [self.to_id(f[self.column]) for f in features]
        batch = self.collator([{k: v for k, v in f.items() if k != self.column} for f in features])
        batch[self.column] = torch.tensor(ids, dtype=torch.long)
        return batch


def _select(inputs: Mapping[str, Any], index: torch.Tensor, n: int) -> dict[str, Any]:
    """The rows ``index`` of every per-example tensor of a batch of ``n`` examples; other values as they are."""
    return {k: v[index.to(v.device)] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n else v
            for k, v in inputs.items()}


def _merge(parts: list[Any], indices: list[torch.Tensor], n: int) -> Any:
    """Put per-task outputs (tensors, or tuples of them) back in the batch's row order."""
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, (tuple, list)):
        return type(first)(_merge([p[i] for p in parts], indices, n) for i in range(len(first)))
    out = first.new_empty((n, *first.shape[1:]))
    for part, index in zip(parts, indices):
        out[index.to(out.device)] = part
    return out


class _RanklabSteps(TrainerCallback):
    """Marks the first micro-batch of each optimizer step; runs the layers' ``after_optimizer_step``."""

    def __init__(self, trainer: "RanklabTrainerMixin") -> None:
        self.trainer = trainer

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer._first_micro_batch = True

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for layer in self.trainer._layers().values():
            layer.after_optimizer_step(state.global_step + 1)  # ranklab counts steps from 1


class RanklabTrainerMixin:
    """Put before a ``transformers.Trainer`` subclass: ``class T(RanklabTrainerMixin, SFTTrainer)``."""

    def __init__(self, *args: Any, default_task: int | str | None = None, task_column: str = TASK_COLUMN,
                 **kwargs: Any) -> None:
        self.task_column = task_column
        self._first_micro_batch = True
        self._extra_sum, self._extra_count = 0.0, 0.0
        self._share = 1.0  # the current task's share of a batch split by task
        super().__init__(*args, **kwargs)
        self._task_routed = TASK_ROUTED in model_capabilities(self.model)
        self.default_task = None if default_task is None else task_index(self.model, default_task)
        self.data_collator = TaskIdCollator(self.data_collator, task_column, self._task_id)
        self.add_callback(_RanklabSteps(self))
        for callback in [c for c in self.callback_handler.callbacks if isinstance(c, RankDynamicsCallback)]:
            callback.attach_to(self)
        self._check_task_source(getattr(self, "train_dataset", None))

    def _task_id(self, task: Any) -> int:
        return task_index(self.model, task.item() if isinstance(task, torch.Tensor) else task)

    def _layers(self) -> dict[str, nn.Module]:
        return adapter_layers(self.accelerator.unwrap_model(self.model))

    def _check_task_source(self, dataset: Any) -> None:
        columns = getattr(dataset, "column_names", None)
        if self._task_routed and self.default_task is None and columns is not None and self.task_column not in columns:
            raise ValueError(self._no_task_message() + f"; the training data has columns {list(columns)}")

    def _no_task_message(self) -> str:
        return (f"this model's ranklab adapters route by task: give every example a {self.task_column!r} column "
                "(a task id, or a name from model.ranklab_task_names) or pass default_task=")

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.task_column not in self._signature_columns:  # keep the column through remove_unused_columns
            self._signature_columns = [*self._signature_columns, self.task_column]

    # --- tasks --------------------------------------------------------------------------------
    def _task_groups(self, tasks: torch.Tensor | None) -> list[tuple[int | None, torch.Tensor | None]]:
        """[(task, row index)] of a batch; one group with index None when the batch holds one task."""
        if tasks is None:
            return [(None, None)]
        tasks = torch.as_tensor(tasks).reshape(-1)
        unique = tasks.unique(sorted=True)
        if len(unique) == 1:
            return [(int(unique[0]), None)]
        return [(int(t), (tasks == t).nonzero().reshape(-1)) for t in unique]

    def _task_context(self, task: int | None) -> contextlib.AbstractContextManager:
        if task is not None:
            return use_task(task)
        if current_task() is not None:  # set by prediction_step around this call
            return contextlib.nullcontext()
        if self.default_task is not None:
            return use_task(self.default_task)
        if self._task_routed:
            raise ValueError(self._no_task_message())
        return contextlib.nullcontext()

    # --- loss ---------------------------------------------------------------------------------
    def _loss_is_scaled(self, num_items_in_batch: Any) -> bool:
        """Did the model normalise its loss over the whole accumulated batch (the Trainer's own test)?"""
        flag = getattr(self, "loss_is_scaled_for_ga", None)
        if flag is not None:
            return bool(flag)
        accepts = getattr(self, "model_accepts_loss_kwargs", False)
        return bool((accepts and num_items_in_batch is not None) or getattr(self, "compute_loss_func", None))

    def _extra_loss(self) -> torch.Tensor | None:
        terms = [loss for layer in self._layers().values() if (loss := layer.extra_loss()) is not None]
        return torch.stack([t.float() for t in terms]).sum() if terms else None

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        """One micro-batch, forward and backward inside the batch's task.

        Backward must run inside the task too: gradient checkpointing (SFTConfig's default)
        recomputes forward passes during backward.  DECISION: a batch holding several tasks runs
        one forward and backward per task.  When the model's loss is normalised over the
        accumulated batch (``num_items_in_batch``), the per-task losses are sums divided by the
        same count and add up exactly; otherwise each per-task mean is weighted by its share of
        the batch's examples (exact for per-example losses; a token-mean loss is weighted by
        examples, not tokens).
        """
        tasks = inputs.pop(self.task_column, None)
        groups = self._task_groups(tasks)
        if len(groups) == 1:
            with self._task_context(groups[0][0]):
                return super().training_step(model, inputs, num_items_in_batch)
        n, total = int(torch.as_tensor(tasks).numel()), None
        for task, index in groups:
            self._share = len(index) / n
            try:
                with self._task_context(task):
                    loss = super().training_step(model, _select(inputs, index, n), num_items_in_batch)
            finally:
                self._share = 1.0
            total = loss if total is None else total + loss
        return total

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The Trainer's loss of a one-task batch, plus the adapters' extra losses in training.

        Extra losses are weighted like the model's loss (the task's share of a split batch) and,
        when the Trainer will not divide the loss by the accumulation steps, divided here.  The
        evaluation loss stays the model's own loss.
        """
        groups = self._task_groups(inputs.pop(self.task_column, None))
        if len(groups) > 1:
            raise ValueError("compute_loss takes a batch of one task; training_step and prediction_step split by task")
        training = model.training
        micro = contextlib.nullcontext() if self._first_micro_batch or not training else continuing_step()
        self._first_micro_batch = self._first_micro_batch and not training
        with micro, self._task_context(groups[0][0]):
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
            loss, outputs = result if return_outputs else (result, None)
            if training:
                loss = self._add_extra_loss(loss, self._loss_is_scaled(num_items_in_batch))
        return (loss, outputs) if return_outputs else loss

    def _add_extra_loss(self, loss: torch.Tensor, scaled: bool) -> torch.Tensor:
        if not scaled:  # a per-batch mean: weight by the task's share (the Trainer divides by GA later)
            loss = loss * self._share
        extra = self._extra_loss()
        if extra is None:
            return loss
        self._extra_sum += float(extra.detach()) * self._share
        self._extra_count += self._share  # a batch split by task counts once
        extra = extra * self._share
        if scaled:  # the Trainer will not divide this loss by the accumulation steps: do it for ours
            extra = extra / getattr(self, "current_gradient_accumulation_steps", 1)
        return loss + extra.to(loss.dtype)

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[Any, Any, Any]:
        tasks = inputs.pop(self.task_column, None)
        groups = self._task_groups(tasks)
        if len(groups) == 1:
            with self._task_context(groups[0][0]):
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        n = int(torch.as_tensor(tasks).numel())
        results, indices = [], []
        for task, index in groups:
            with self._task_context(task):
                results.append(super().prediction_step(model, _select(inputs, index, n), prediction_loss_only,
                                                       ignore_keys))
            indices.append(index)
        losses = [r[0] for r in results]
        loss = None if any(v is None for v in losses) else sum(v * len(i) for v, i in zip(losses, indices)) / n
        return loss, _merge([r[1] for r in results], indices, n), _merge([r[2] for r in results], indices, n)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self._extra_count and "loss" in logs:  # training logs: mean extra loss since the last one
            logs["extra_loss"] = self._extra_sum / self._extra_count
            self._extra_sum, self._extra_count = 0.0, 0.0
        super().log(logs, *args, **kwargs)


@functools.cache
def with_ranklab(trainer_class: type) -> type:
    """``trainer_class`` (``transformers.Trainer`` or a subclass such as TRL's ``SFTTrainer``) with
    ``RanklabTrainerMixin``: task ids, extra losses and per-step adapter hooks."""
    if not (isinstance(trainer_class, type) and issubclass(trainer_class, Trainer)):
        raise ValueError(f"with_ranklab takes transformers.Trainer or a subclass, got {trainer_class!r}")
    return type(f"Ranklab{trainer_class.__name__}", (RanklabTrainerMixin, trainer_class),
                {"__doc__": f"{trainer_class.__name__} with ranklab's task routing and extra losses.",
                 "__module__": __name__})


RanklabTrainer = with_ranklab(Trainer)
