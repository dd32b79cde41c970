"""The task id of the current batch, visible to every adapter without threading it through forward.

Multi-task batches hold one task; the trainer (or a user) sets it once per batch:

    with ranklab.use_task(2):
        logits = model(**batch).logits
"""
from __future__ import annotations

import contextlib
import contextvars
import numbers
from typing import Any, Iterator

_current_task: contextvars.ContextVar[int | None] = contextvars.ContextVar("ranklab_task", default=None)
_continuing_step: contextvars.ContextVar[bool] = contextvars.ContextVar("ranklab_continuing_step", default=False)


def task_index(model: Any, task: int | str) -> int:
    """A task id, or the id of a task name the model knows (``model.ranklab_task_names``)."""
    if isinstance(task, str):
        names = list(getattr(model, "ranklab_task_names", None) or [])
        if task not in names:
            known = f"this model's tasks: {', '.join(names)}" if names else "this model has no task names"
            raise ValueError(f"unknown task {task!r}; {known} (or pass a task id)")
        return names.index(task)
    if not isinstance(task, numbers.Integral) or isinstance(task, bool):
        raise ValueError(f"a task is an int id (or a name the model knows), got {task!r}")
    return int(task)


@contextlib.contextmanager
def use_task(task: int | str, model: Any = None) -> Iterator[None]:
    """Route the forward passes inside the block to ``task`` (an id, or a name of ``model``'s tasks)."""
    if task is None:
        raise ValueError("use_task needs a task id (an int), or a task name together with model=")
    if isinstance(task, str) and model is None:
        raise ValueError(f"task name {task!r} needs the model that knows it: use_task({task!r}, model=model)")
    token = _current_task.set(task_index(model, task))
    try:
        yield
    finally:
        _current_task.reset(token)


def current_task(required_by: str | None = None) -> int | None:
    """The task id set by ``use_task``; with ``required_by``, a clear error when none is set."""
    task = _current_task.get()
    if task is None and required_by is not None:
        raise ValueError(f"{required_by} needs a task id: wrap the forward pass in `with ranklab.use_task(t):`")
    return task


def resolve_task(task: int | None, n_tasks: int, required_by: str) -> int:
    """``task``, or the current ``use_task`` id when None, checked to be an int in 0..n_tasks-1."""
    if task is None:
        task = current_task(required_by=required_by)
    if not isinstance(task, numbers.Integral) or isinstance(task, bool) or not 0 <= task < n_tasks:
        raise ValueError(f"task must be an int in 0..{n_tasks - 1} (n_tasks={n_tasks}), got {task!r}")
    return int(task)


@contextlib.contextmanager
def continuing_step() -> Iterator[None]:
    """Forward passes inside continue the current optimizer step (gradient accumulation's later
    micro-batches): per-step choices, like DyLoRA's sampled rank, are kept, not drawn again."""
    token = _continuing_step.set(True)
    try:
        yield
    finally:
        _continuing_step.reset(token)


def is_continuing_step() -> bool:
    return _continuing_step.get()
