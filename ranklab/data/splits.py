"""One encoding over every split of a task's DatasetDict (classification and completion tasks alike)."""
from __future__ import annotations

from typing import Callable

from datasets import DatasetDict

from .tasks import TaskSpec


def map_splits(dataset_dict: DatasetDict, encode: Callable[[dict[str, list]], dict[str, list]],
               spec: TaskSpec) -> DatasetDict:
    """``encode`` (batched) over every split, replacing its columns; a split without the task's
    text fields or ``label`` is a clear error."""
    out = {}
    for split, ds in dataset_dict.items():
        missing = [c for c in (*spec.text_fields, "label") if c not in ds.column_names]
        if missing:
            raise ValueError(f"split {split!r} lacks columns {missing} needed by task {spec.name!r}")
        out[split] = ds.map(encode, batched=True, remove_columns=ds.column_names,
                            desc=f"tokenize {spec.name}/{split}")
    return DatasetDict(out)
