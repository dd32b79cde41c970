"""Tokenisation of a task's DatasetDict and dynamic-padding collation."""
from __future__ import annotations

from typing import Any, Callable

from datasets import DatasetDict
from transformers import DataCollatorWithPadding

from .splits import map_splits
from .tasks import TaskSpec, get_task


def tokenize_task(dataset_dict: DatasetDict, tokenizer: Any, spec: str | TaskSpec,
                  max_length: int = 128) -> DatasetDict:
    """input_ids / attention_mask (/ token_type_ids) / labels; sequences truncated to ``max_length``,
    not padded (pad per batch with ``make_collator``).  A causal-LM task's rows hold the prompt and
    completion as one sequence (``ranklab.data.completion.tokenize_completions``)."""
    spec = get_task(spec)
    if max_length < 8:
        raise ValueError(f"max_length must be at least 8, got {max_length}")
    if spec.is_causal_lm:
        from .completion import tokenize_completions

        return tokenize_completions(dataset_dict, tokenizer, spec, max_length)
    fields = spec.text_fields

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(*[batch[f] for f in fields], truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        return dict(encoded)

    return map_splits(dataset_dict, encode, spec)


def make_collator(tokenizer: Any, pad_to_multiple_of: int | None = None,
                  objective: str = "classification") -> Callable[[list[dict]], dict]:
    """Pads each batch to its longest sequence and returns torch tensors (``objective="causal-lm"``:
    labels padded with -100, right padding)."""
    if objective == "causal-lm":
        from .completion import make_completion_collator

        return make_completion_collator(tokenizer)
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt")
