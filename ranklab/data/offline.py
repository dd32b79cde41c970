"""Offline real tasks read from the pinned wheels, split once with a fixed seed and cached as parquet.

Cache layout (root: $RANKLAB_CACHE or ~/.cache/ranklab):
  wheels/<wheel file>                        verified wheels (never installed)
  tasks/v1/<task>/{train,validation,test}.parquet + meta.json (sha256 of each file, sizes, balance)
A task folder is published with one directory rename, so it is complete or absent; a folder whose
meta or file checksums do not match is deleted and rebuilt.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, Features, Value

from . import readers
from ..atomic import write_text
from .cache import cache_root, sha256_file
from .glue import label_feature
from .tasks import TaskSpec, available_tasks, get_task
from .wheels import WHEELS, fetch_wheel, wheel_cached

FORMAT_VERSION = 1
SPLIT_SEED = 1234
SPLITS = ("train", "validation", "test")
FRACTIONS = {"validation": 0.1, "test": 0.1}  # the rest is train
MIN_ABS_RATING = 0.5  # binary sentiment drops near-neutral snippets


def task_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "tasks" / f"v{FORMAT_VERSION}" / get_task(name).name


def _split_positions(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    order = rng.permutation(n)
    n_val, n_test = (int(round(FRACTIONS[s] * n)) for s in ("validation", "test"))
    return {"test": order[:n_test], "validation": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def split_frame(frame: pd.DataFrame, stratify: bool) -> dict[str, pd.DataFrame]:
    """Fixed seeded 80/10/10 split; stratified by label when asked (keeps rare classes in every split)."""
    rng = np.random.default_rng(SPLIT_SEED)
    if stratify:
        groups = [g.index.to_numpy() for _, g in frame.groupby("label", sort=True)]
    else:
        groups = [frame.index.to_numpy()]
    picked: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for index in groups:
        for split, positions in _split_positions(len(index), rng).items():
            picked[split].append(index[positions])
    return {s: frame.loc[np.sort(np.concatenate(picked[s]))].reset_index(drop=True) for s in SPLITS}


def build_splits(name: str, wheel_file: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Read one task from its wheel and split it: columns ``text`` and ``label``."""
    spec = get_task(name)
    source = readers.SOURCES[spec.name]
    frame = readers.read_source(source, wheel_file)
    if source.kind in ("binary", "rating"):
        # split the rated snippets first so movie and movie_rating share splits (no cross-task leakage)
        splits = split_frame(frame, stratify=False)
        if source.kind == "binary":
            kept = {s: f[f["rating"].abs() >= MIN_ABS_RATING] for s, f in splits.items()}
            splits = {s: f.assign(label=(f["rating"] > 0).astype("int64")) for s, f in kept.items()}
        else:
            splits = {s: f.assign(label=f["rating"].astype("float32")) for s, f in splits.items()}
    else:
        frame = frame.assign(label=frame["label"].map({n: i for i, n in enumerate(spec.label_names)}))
        if frame["label"].isna().any():
            raise ValueError(f"{spec.name}: labels outside {spec.label_names}")
        splits = split_frame(frame.astype({"label": "int64"}), stratify=True)
    return {s: f[["text", "label"]].reset_index(drop=True) for s, f in splits.items()}


def _stats(spec: TaskSpec, splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    labels = pd.concat([f["label"] for f in splits.values()])
    if spec.is_regression:
        balance = {"mean": round(float(labels.mean()), 3), "std": round(float(labels.std()), 3),
                   "min": round(float(labels.min()), 3), "max": round(float(labels.max()), 3)}
    else:
        counts = labels.value_counts().reindex(range(spec.num_labels), fill_value=0)
        balance = {spec.label_names[i]: round(float(c) / len(labels), 3) for i, c in counts.items()}
    return {"rows": {s: len(f) for s, f in splits.items()}, "label_balance": balance}


def _read_meta(folder: Path, wheel_sha: str) -> dict | None:
    """The meta of a complete, uncorrupted task folder, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta["format_version"] != FORMAT_VERSION or meta["wheel_sha256"] != wheel_sha:
            return None
        if any(sha256_file(folder / f"{s}.parquet") != meta["files"][s] for s in SPLITS):
            return None
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _publish(tmp: Path, folder: Path, wheel_sha: str) -> None:
    """Move a built task folder into place.  A valid folder another process published meanwhile
    is kept (never deleted under its readers); an invalid one is moved aside first, then removed."""
    if _read_meta(folder, wheel_sha) is not None:
        return
    if folder.exists():
        trash = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        try:
            os.replace(folder, trash)
        except OSError:
            pass
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process published the same task first; keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _building(folder: Path):
    """One builder per task folder at a time across processes (several ranks, parallel test runs
    or notebooks on a cold cache): an exclusive lock on a file beside the folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a+") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock here (e.g. Windows): the checks in _publish remain
            pass
        yield


def _stored_task(name: str) -> TaskSpec:
    """The task whose split files hold ``name``'s rows: a causal-LM task reads its base task's."""
    spec = get_task(name)
    return get_task(spec.base_task) if spec.is_causal_lm else spec


def prepare_task(name: str, *, cache_dir: str | os.PathLike | None = None,
                 wheel_dir: str | os.PathLike | None = None) -> Path:
    """Make sure the task's split files are in the cache (fetching its wheel if needed); return its folder."""
    spec = _stored_task(name)
    if spec.source != "offline":
        valid = ", ".join(available_tasks("offline"))
        raise ValueError(f"{spec.name!r} is not an offline task; offline tasks: {valid}")
    wheel_key = readers.SOURCES[spec.name].wheel
    folder = task_dir(spec.name, cache_dir)
    wheel_sha = WHEELS[wheel_key].sha256
    if _read_meta(folder, wheel_sha) is not None:
        return folder
    with _building(folder):
        if _read_meta(folder, wheel_sha) is not None:  # built by the process that held the lock before us
            return folder
        if folder.exists():
            warnings.warn(f"ranklab: cached task {spec.name!r} at {folder} is incomplete or corrupt; rebuilding")
        wheel = fetch_wheel(wheel_key, cache_dir=cache_dir, wheel_dir=wheel_dir)
        splits = build_splits(spec.name, wheel)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{spec.name}.tmp-"))
        try:
            files = {}
            for split, frame in splits.items():
                frame.to_parquet(tmp / f"{split}.parquet", index=False)
                files[split] = sha256_file(tmp / f"{split}.parquet")
            meta = {"task": spec.name, "format_version": FORMAT_VERSION, "wheel": WHEELS[wheel_key].filename,
                    "wheel_sha256": wheel_sha, "split_seed": SPLIT_SEED, "files": files, **_stats(spec, splits)}
            write_text(tmp / "meta.json", json.dumps(meta, indent=1))
            _publish(tmp, folder, wheel_sha)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_offline(name: str, *, cache_dir: str | os.PathLike | None = None,
                 wheel_dir: str | os.PathLike | None = None) -> DatasetDict:
    """An offline task as a DatasetDict (train / validation / test; columns ``text``, ``label``)."""
    spec = get_task(name)
    folder = prepare_task(spec.name, cache_dir=cache_dir, wheel_dir=wheel_dir)
    features = Features(text=Value("string"), label=label_feature(spec))
    return DatasetDict({s: Dataset.from_pandas(pd.read_parquet(folder / f"{s}.parquet"), features=features,
                                               preserve_index=False) for s in SPLITS})


def offline_status(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """"ready" (split files cached), "wheel cached" (builds offline) or "fetch" (needs PyPI once)."""
    spec = _stored_task(name)
    wheel_key = readers.SOURCES[spec.name].wheel
    if (task_dir(spec.name, cache_dir) / "meta.json").is_file():
        return "ready"
    return "wheel cached" if wheel_cached(wheel_key, cache_dir) else "fetch"


def datasheet(name: str, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Source, licence, size and label balance (measured from the cache when built, else as published).
    A causal-LM task has its base task's rows and balance, with its prompt and completions."""
    task, spec = get_task(name), _stored_task(name)
    source = readers.SOURCES[spec.name]
    wheel = WHEELS[source.wheel]
    processing = source.processing
    if task.is_causal_lm:
        processing += (f"; as text completion: prompt {task.prompt!r}, completion ' <word>' + EOS with words "
                       f"{', '.join(task.label_names)}")
    sheet = {"task": task.name, "source": f"{wheel.requirement} {source.member}", "licence": source.licence,
             "processing": processing, **readers.EXPECTED[spec.name]}
    folder = task_dir(spec.name, cache_dir)
    meta = _read_meta(folder, wheel.sha256) if folder.is_dir() else None
    if meta is not None:
        sheet.update(rows=meta["rows"], label_balance=meta["label_balance"])
    return sheet


def datasheet_line(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    sheet = datasheet(name, cache_dir)
    rows = sheet["rows"]
    size = f"{sum(rows.values()):,} rows ({' / '.join(f'{rows[s]:,}' for s in SPLITS)} train/val/test)"
    balance = ", ".join(f"{k} {v}" for k, v in sheet["label_balance"].items())
    return f"{sheet['task']}: {sheet['source']}; licence {sheet['licence']}; {size}; labels: {balance}"
