"""Single- and multi-task training on Accelerate, AdaLoRA via PEFT, and results records.

``TrainConfig`` is imported at once; the trainer and the rest on first use (PEP 562), so code that
only builds configs or reads records (the experiments' protocol and results) never imports
Accelerate or Transformers.
"""
from importlib import import_module
from typing import TYPE_CHECKING, Any

from .config import TrainConfig

if TYPE_CHECKING:  # what the lazy names below resolve to
    from .evaluation import evaluate_tasks
    from .records import find_records, load_record, results_table
    from .tasks import TaskData
    from .trainer import NonFiniteLossError, RunResult, Trainer, train

_LAZY = {"evaluate_tasks": "evaluation", "TaskData": "tasks", "find_records": "records", "load_record": "records",
         "results_table": "records", "NonFiniteLossError": "trainer", "RunResult": "trainer", "Trainer": "trainer",
         "train": "trainer"}

__all__ = [
    "TrainConfig", "evaluate_tasks", "TaskData", "Trainer", "RunResult", "NonFiniteLossError", "train",
    "results_table", "load_record", "find_records",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
