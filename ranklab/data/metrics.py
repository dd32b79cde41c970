"""Standard task metrics from raw model outputs (logits or regression values)."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import f1_score, matthews_corrcoef

from .tasks import TaskSpec, get_task


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    # constant predictions have no correlation; report 0 like sklearn's MCC does
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return _pearson(rankdata(x), rankdata(y))


def _as_classes(predictions: np.ndarray) -> np.ndarray:
    """Logits (n, C) -> argmax; an already 1-d array of class ids passes through."""
    if predictions.ndim == 2:
        return predictions.argmax(axis=-1)
    if predictions.ndim == 1:
        return predictions.astype(np.int64)
    raise ValueError(f"predictions must be (n,) class ids or (n, num_labels) logits, got shape {predictions.shape}")


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _mcc(gold: np.ndarray, preds: np.ndarray) -> float:
    """Matthews correlation; 0 (no warning) when gold and predictions hold one class between them."""
    if len(np.union1d(gold, preds)) < 2:
        return 0.0
    return float(matthews_corrcoef(gold, preds))


def compute_metrics(task: str | TaskSpec, predictions: Any, labels: Any) -> dict[str, float]:
    """All metrics of ``task`` (main one first) for logits / values ``predictions`` and gold ``labels``.

    Classification: accuracy, f1 (binary, positive class 1), macro_f1, mcc (Matthews).
    Regression: pearson, spearman (0.0 when either side is constant).
    """
    spec = get_task(task)
    preds, gold = _to_numpy(predictions), _to_numpy(labels).reshape(-1)
    if len(gold) == 0:
        raise ValueError("compute_metrics needs at least one example")
    if spec.is_regression:
        preds = preds.reshape(len(gold), -1)[:, 0].astype(np.float64)
        gold = gold.astype(np.float64)
    else:
        preds = _as_classes(preds)
        gold = gold.astype(np.int64)
    if len(preds) != len(gold):
        raise ValueError(f"{len(preds)} predictions for {len(gold)} labels")
    scores: dict[str, float] = {}
    for name in spec.metrics:
        if name == "accuracy":
            scores[name] = float((preds == gold).mean())
        elif name == "f1":
            scores[name] = float(f1_score(gold, preds, average="binary", pos_label=1, zero_division=0))
        elif name == "macro_f1":
            # averaged over the classes present in gold or predictions (sklearn's default)
            scores[name] = float(f1_score(gold, preds, average="macro", zero_division=0))
        elif name == "mcc":
            scores[name] = _mcc(gold, preds)
        elif name == "pearson":
            scores[name] = _pearson(preds, gold)
        elif name == "spearman":
            scores[name] = _spearman(preds, gold)
    if not spec.is_regression and "mcc" not in scores:  # always: the protocol's collapse test reads it
        scores["mcc"] = _mcc(gold, preds)
    return scores
