"""A synthetic, learnable task and a tiny random RoBERTa: smoke runs and tests, no downloads.

Class c draws most of its tokens from its own slice of the vocabulary (the rest is noise), so a
model must look past the first token to classify: attention adapters have something to learn.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .tasks import TaskData

VOCAB = 100
FIRST_TOKEN = 5  # ids below are special (0 <s>, 1 <pad>, 2 </s>)


def synthetic_rows(n: int, num_classes: int = 2, length: int = 10, signal: float = 0.7,
                   seed: int = 0) -> list[dict[str, Any]]:
    if num_classes < 2 or not 0 < signal <= 1:
        raise ValueError(f"need num_classes >= 2 and signal in (0, 1], got {num_classes}, {signal}")
    rng = np.random.default_rng(seed)
    width = (VOCAB - FIRST_TOKEN) // num_classes
    rows = []
    for _ in range(n):
        label = int(rng.integers(num_classes))
        own = rng.integers(FIRST_TOKEN + label * width, FIRST_TOKEN + (label + 1) * width, size=length)
        noise = rng.integers(FIRST_TOKEN, VOCAB, size=length)
        ids = [0] + np.where(rng.random(length) < signal, own, noise).tolist() + [2]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "label": label})
    return rows


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"accuracy": float((predictions.argmax(-1) == labels).mean())}


def synthetic_task(name: str = "synthetic", num_classes: int = 2, n_train: int = 256, n_eval: int = 128,
                   signal: float = 0.7, seed: int = 0) -> TaskData:
    return TaskData(
        name=name, num_labels=num_classes, main_metric="accuracy",
        train=synthetic_rows(n_train, num_classes, signal=signal, seed=seed),
        validation=synthetic_rows(n_eval, num_classes, signal=signal, seed=seed + 1),
        test=synthetic_rows(n_eval, num_classes, signal=signal, seed=seed + 2),
        metrics_fn=accuracy,
    )


def tiny_roberta(num_labels: int, hidden: int = 32, layers: int = 2, dropout: float = 0.1) -> Any:
    """A random RoBERTa (built from the current torch RNG state, so seed before calling)."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=40, num_labels=num_labels,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    return RobertaForSequenceClassification(config)


def token_batch(generator: Any, vocab_size: int, batch_size: int = 16, length: int = 32, signal: float = 0.7,
                first_token: int = 1000) -> dict[str, Any]:
    """A random two-class batch for a real tokenizer's vocabulary (torch tensors, with labels):
    class c draws a share ``signal`` of its tokens from its own half of the ids above
    ``first_token`` (the lower ids are special and unused tokens), the rest is noise."""
    import torch

    if not first_token < vocab_size - 1 or not 0 < signal <= 1:
        raise ValueError(f"need first_token < vocab_size - 1 and signal in (0, 1], got {first_token}, {signal}")
    labels = torch.randint(0, 2, (batch_size,), generator=generator)
    half = (vocab_size - first_token) // 2
    own = first_token + labels[:, None] * half + torch.randint(0, half, (batch_size, length), generator=generator)
    noise = torch.randint(first_token, vocab_size, (batch_size, length), generator=generator)
    ids = torch.where(torch.rand(batch_size, length, generator=generator) < signal, own, noise)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


# Completion tokens of each class (causal-LM rows): classes end in completions of different lengths,
# so a per-row and a per-token loss normalisation differ.
COMPLETIONS = ([90], [91, 92], [93, 94, 95])
EOS = 2


def synthetic_completion_rows(n: int, num_classes: int = 2, length: int = 8, signal: float = 0.8,
                              seed: int = 0) -> list[dict[str, Any]]:
    """``synthetic_rows`` as prompts, each followed by its class's completion tokens and EOS;
    ``labels`` are -100 on the prompt (a causal-LM task of rows of different lengths)."""
    if num_classes > len(COMPLETIONS):
        raise ValueError(f"num_classes must be at most {len(COMPLETIONS)}, got {num_classes}")
    rows = []
    for row in synthetic_rows(n, num_classes, length, signal, seed):
        prompt = row["input_ids"][:-1]  # drop the classifier rows' </s>
        completion = COMPLETIONS[row["label"]] + [EOS]
        ids = prompt + completion
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "label": row["label"],
                     "labels": [-100] * len(prompt) + completion})
    return rows


def synthetic_completion_task(name: str = "synthetic_lm", num_classes: int = 2, n_train: int = 128,
                              n_eval: int = 64, seed: int = 0) -> TaskData:
    """A learnable causal-LM task (the completion names the prompt's class) for tiny decoders."""
    return TaskData(
        name=name, num_labels=num_classes, main_metric="exact_match",
        train=synthetic_completion_rows(n_train, num_classes, seed=seed),
        validation=synthetic_completion_rows(n_eval, num_classes, seed=seed + 1),
        test=synthetic_completion_rows(n_eval, num_classes, seed=seed + 2),
        objective="causal-lm",
    )
