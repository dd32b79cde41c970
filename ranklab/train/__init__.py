"""Single- and multi-task training on Accelerate, AdaLoRA via PEFT, and results records."""
from .config import TrainConfig
from .evaluation import evaluate_tasks
from .records import find_records, load_record, results_table
from .tasks import TaskData
from .trainer import NonFiniteLossError, RunResult, Trainer, train

__all__ = [
    "TrainConfig", "evaluate_tasks", "TaskData", "Trainer", "RunResult", "NonFiniteLossError", "train",
    "results_table", "load_record", "find_records",
]
