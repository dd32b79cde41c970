"""Causal-LM (text completion) tasks made from the offline classification tasks.

A row of the base task (text, label) becomes a prompt and a completion, e.g. for ``movie_lm``
``"Review: <text>\\nSentiment:"`` -> ``" positive"`` + EOS.  Tokenised rows hold the whole
sequence (``input_ids``), ``labels`` equal to it on the completion and -100 on the BOS and the
prompt (the loss and the metrics see only the completion), and the class id (``label``).
A text too long for ``max_length`` is cut, never the completion or the prompt's frame.

Any tokenizer works offline: the tiny decoders use MiniLM's WordPiece vocabulary, whose [CLS]
serves as BOS and [SEP] as EOS (a tokenizer's own bos/eos tokens come first when it has them).
"""
from __future__ import annotations

from typing import Any

import torch
from datasets import DatasetDict

from .splits import map_splits
from .tasks import TaskSpec, get_task

IGNORE_INDEX = -100  # labels the loss skips (torch's cross_entropy default)


SLOTS = ("{text}", "{text2}")  # where a prompt takes its task's first and second text field


def as_completions(data: DatasetDict, spec: str | TaskSpec) -> DatasetDict:
    """The base task's splits with ``prompt`` and ``completion`` columns added (``label`` kept)."""
    spec = get_task(spec)
    words, fields = spec.label_names, spec.text_fields

    def convert(batch: dict[str, list]) -> dict[str, list]:
        texts = zip(*[batch[f] for f in fields])
        return {"prompt": [_fill(spec.prompt, row) for row in texts],
                "completion": [" " + words[int(y)] for y in batch["label"]]}

    return DatasetDict({split: ds.map(convert, batched=True, desc=f"{spec.name}/{split}")
                        for split, ds in data.items()})


def special_ids(tokenizer: Any) -> tuple[int | None, int]:
    """(BOS or None, EOS): the tokenizer's own, else BERT-style [CLS] / [SEP]."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else getattr(tokenizer, "cls_token_id", None)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else getattr(tokenizer, "sep_token_id", None)
    if eos is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no end-of-sequence token (eos or sep); "
                         "a completion needs one to end")
    return bos, eos


def _pieces(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _fill(prompt: str, texts: tuple[str, ...]) -> str:
    for slot, text in zip(SLOTS, texts):
        prompt = prompt.replace(slot, text, 1)
    return prompt


def _frames(prompt: str, slots: int) -> list[str]:
    """The prompt's fixed text around its slots: [before, after] or [before, between, after]."""
    frames = prompt.split(SLOTS[0], 1)
    return [frames[0], *frames[1].split(SLOTS[1], 1)] if slots == 2 else frames


def _fit(texts: list[list[int]], room: int) -> list[list[int]]:
    """Cut the texts to ``room`` tokens in all, always from the longest (``longest_first``)."""
    lengths = [len(t) for t in texts]
    while sum(lengths) > room:
        lengths[lengths.index(max(lengths))] -= 1
    return [t[:n] for t, n in zip(texts, lengths)]


def tokenize_completions(data: DatasetDict, tokenizer: Any, spec: str | TaskSpec,
                         max_length: int = 128) -> DatasetDict:
    """input_ids / attention_mask / labels (-100 off the completion) / label (class id), unpadded.
    Texts too long for ``max_length`` are cut (the longest first), never the prompt's frame."""
    spec = get_task(spec)
    bos, eos = special_ids(tokenizer)
    fields = spec.text_fields
    frames = _frames(spec.prompt, len(fields))
    # a space before a text belongs to the text's first token (BPE vocabularies mark it so)
    spaces = [" " if frame.endswith(" ") else "" for frame in frames[:-1]]
    before = [_pieces(tokenizer, [f.rstrip(" ")])[0] if f.strip() else [] for f in frames[:-1]]
    before[0] = ([bos] if bos is not None else []) + before[0]
    tail = _pieces(tokenizer, [frames[-1]])[0] if frames[-1].strip() else []
    fixed = sum(len(b) for b in before) + len(tail)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        columns = [_pieces(tokenizer, [space + t for t in batch[f]]) for f, space in zip(fields, spaces)]
        endings = _pieces(tokenizer, [" " + spec.label_names[int(y)] for y in batch["label"]])
        out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "label": batch["label"]}
        for *texts, ending in zip(*columns, endings):
            ending = ending + [eos]
            room = max_length - fixed - len(ending)
            if room < len(texts):
                raise ValueError(f"max_length={max_length} leaves no room for the text of task {spec.name!r} "
                                 f"(prompt and completion take {max_length - room} tokens)")
            ids = [token for frame, text in zip(before, _fit(list(texts), room)) for token in frame + text]
            ids = ids + tail + ending
            out["input_ids"].append(ids)
            out["attention_mask"].append([1] * len(ids))
            out["labels"].append([IGNORE_INDEX] * (len(ids) - len(ending)) + ending)
        return out

    return map_splits(data, encode, spec)


class CompletionCollator:
    """Right-pads a batch: input_ids with the pad id, attention_mask with 0, labels with -100."""

    def __init__(self, pad_token_id: int) -> None:
        if pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos token)")
        self.pad_token_id = int(pad_token_id)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        fill = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        batch = {key: torch.tensor([list(row[key]) + [value] * (width - len(row[key])) for row in rows])
                 for key, value in fill.items() if key in rows[0]}
        if "label" in rows[0]:
            batch["label"] = torch.tensor([int(row["label"]) for row in rows])
        return batch


def make_completion_collator(tokenizer: Any) -> CompletionCollator:
    return CompletionCollator(tokenizer.pad_token_id)
