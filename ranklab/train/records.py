"""Results records: one JSON file per run (the trainer writes it atomically); a table over many runs."""
from __future__ import annotations

import json
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from ..version import __version__


RECORD_NAME = "record.json"
RECORD_FORMAT = "ranklab-run/1"
from ..folders import ADAPTER_DIR  # noqa: F401 (re-exported: a run folder's saved adapter)
PREDICTIONS_NAME = "predictions.json"  # per-example test predictions and labels of a finished run
PREDICTIONS_FORMAT = "ranklab-predictions/1"
PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets")


def package_versions() -> dict[str, str]:
    versions = {"ranklab": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def load_record(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    record = json.loads(path.read_text())
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path} is not a ranklab results record")
    return record


def find_records(root: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """Every record under ``root`` (recursively), sorted by folder."""
    root = Path(root)
    if not root.exists():
        raise ValueError(f"no such folder: {root}")
    found = []
    for path in sorted(root.rglob(RECORD_NAME)):
        try:
            record = load_record(path)
            _row(path.parent, record)  # every field the table needs is there
        except (ValueError, OSError, KeyError, TypeError, AttributeError) as error:
            warnings.warn(f"skipping {path}: not a readable ranklab results record ({type(error).__name__}: {error})",
                          stacklevel=2)
            continue
        found.append((path.parent, record))
    return found


def _row(folder: Path | None, record: dict[str, Any]) -> dict[str, Any]:
    best = record.get("best") or {}
    row = {
        "run": folder.name if folder is not None else "",
        "method": record["method"], "backbone": record["backbone"], "tasks": ",".join(record["tasks"]),
        "seed": record["seed"], "status": record.get("status", ""), "steps": record.get("steps"),
        "adapter_params": record["params"]["adapter_params"], "head_params": record["params"]["head_params"],
        "best_score": best.get("score"), "best_step": best.get("step"),
    }
    for task, metrics in (best.get("metrics") or {}).items():
        main = record["main_metrics"][task]
        row[f"{task}/{main}"] = metrics.get(main)
    for task, metrics in (record.get("test") or {}).items():
        main = record["main_metrics"][task]
        row[f"test {task}/{main}"] = metrics.get(main)
    row["wall_time_s"] = round(record.get("wall_time_s", 0.0), 1)
    if record.get("error"):  # a failed run: why (ranklab results prints it below the table too)
        row["error"] = record["error"]
    return row


def results_table(source: str | os.PathLike | Iterable[dict[str, Any]]) -> Any:
    """A pandas DataFrame with one row per run: a folder (searched recursively) or records."""
    import pandas as pd

    if isinstance(source, (str, os.PathLike)):
        pairs = find_records(source)
    else:
        pairs = [(None, record) for record in source]
    return pd.DataFrame([_row(folder, record) for folder, record in pairs])


def load_predictions(folder: str | os.PathLike) -> dict[str, Any]:
    """A run's per-example predictions: ``{"split": ..., "tasks": {task: {"predicted", "labels"}}}``."""
    path = Path(folder) / PREDICTIONS_NAME
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != PREDICTIONS_FORMAT:
        raise ValueError(f"{path} is not a ranklab predictions file")
    return data
