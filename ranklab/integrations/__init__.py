"""Integrations with training stacks users already have: the Hugging Face Trainer and TRL.

- ``RankDynamicsCallback``: a ``transformers.TrainerCallback`` recording spectra and rank measures,
  running PEFT AdaLoRA's ``update_and_allocate`` at the right point of each step, and logging
  ranks, AdaLoRA's budget and router gate statistics.
- ``RanklabTrainer`` / ``with_ranklab(SFTTrainer)``: a Trainer that gives ranklab's multi-task
  adapters their task ids (a ``task_id`` column) and adds their extra losses.
"""
from .callback import RankDynamicsCallback, adalora_model, kept_ranks, rank_metrics, schedule_problems
from .gates import GateMonitor
from .trainer import TASK_COLUMN, RanklabTrainer, RanklabTrainerMixin, TaskIdCollator, with_ranklab

__all__ = [
    "RankDynamicsCallback", "adalora_model", "kept_ranks", "rank_metrics", "schedule_problems", "GateMonitor",
    "TASK_COLUMN", "RanklabTrainer", "RanklabTrainerMixin", "TaskIdCollator", "with_ranklab",
]
