"""The causal-LM objective: next-token loss on the completion, and how completions are scored.

Rows hold ``labels`` equal to ``input_ids`` on the completion and -100 elsewhere (prompt, BOS,
padding; ``ranklab.data.completion``).  Position t predicts token t + 1, so logits[:, :-1] are
scored against labels[:, 1:].

Loss normalisation: an optimizer step's loss is the mean over the *tokens* of its global batch.
A micro-batch returns its own per-token mean; the trainer weights it by its share of the global
batch's target tokens (``target_counts``, via ``ranklab.distributed.micro_batches``), so any split
into micro-batches and processes gives the same gradient as the whole batch at once.  (Weighting
by rows instead would over-weight micro-batches with short completions.)

Scoring per row: summed loss and count of completion tokens, tokens predicted right (argmax), and
exact match.  Under teacher forcing the argmax at every completion position equals the gold token
exactly when greedy decoding from the prompt writes the gold completion (EOS included), so exact
match here is the greedy-generation exact match, computed in one forward pass.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..data.completion import IGNORE_INDEX

# Columns of row_scores
NLL, TOKENS, CORRECT, EXACT = range(4)


def completion_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions of a batch (0 if none)."""
    logits, targets = logits[:, :-1].float(), labels[:, 1:]
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                            ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


def target_count(labels: Sequence[int]) -> int:
    """Scored positions of one row: labelled tokens after the first (the first is never predicted)."""
    return sum(1 for y in list(labels)[1:] if y != IGNORE_INDEX)


@torch.no_grad()
def row_scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(batch, 4): summed loss, completion tokens, tokens right, exact match (1.0 / 0.0) per row."""
    logits, targets = logits[:, :-1].float(), labels[:, 1:]
    scored = targets != IGNORE_INDEX
    safe = targets.masked_fill(~scored, 0)
    nll = F.cross_entropy(logits.transpose(1, 2), safe, reduction="none") * scored
    right = (logits.argmax(dim=-1) == targets) & scored
    tokens, correct = scored.sum(dim=1), right.sum(dim=1)
    exact = (correct == tokens) & (tokens > 0)
    return torch.stack([nll.sum(dim=1), tokens.float(), correct.float(), exact.float()], dim=1)


def completion_metrics(scores: np.ndarray) -> dict[str, float]:
    """exact_match, token_accuracy, loss (per completion token) and perplexity = exp(loss)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] != 4 or len(scores) == 0:
        raise ValueError(f"expected row scores of shape (n >= 1, 4), got {scores.shape}")
    tokens = max(scores[:, TOKENS].sum(), 1.0)
    loss = float(scores[:, NLL].sum() / tokens)
    return {"exact_match": float(scores[:, EXACT].mean()), "token_accuracy": float(scores[:, CORRECT].sum() / tokens),
            "loss": loss, "perplexity": float(math.exp(min(loss, 700.0)))}


def completion_predictions(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row predicted class for predictions.json: the gold class where the completion is exact,
    -1 (another text) where not; so accuracy against the labels is the exact match."""
    exact = np.asarray(scores)[:, EXACT] > 0.5
    return np.where(exact, np.asarray(labels), -1)


def row_labels(data: Any) -> np.ndarray:
    """The class id of every row (column ``label``), -1 where the rows carry none."""
    if hasattr(data, "column_names"):
        return np.asarray(data["label"]) if "label" in data.column_names else np.full(len(data), -1)
    return np.array([int(row.get("label", -1)) for row in data])
