"""The task registry: every task ranklab knows, with its columns, label count and metrics."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SOURCES = ("glue", "offline")
KNOWN_METRICS = ("accuracy", "f1", "macro_f1", "mcc", "pearson", "spearman")
# Causal-LM (text completion) tasks: exact match of the whole completion (greedy decoding), share of
# completion tokens predicted right, and the completion tokens' mean loss and perplexity.
COMPLETION_METRICS = ("exact_match", "token_accuracy", "loss", "perplexity")
OBJECTIVES = ("classification", "causal-lm")


@dataclass(frozen=True)
class TaskSpec:
    """One task: where it comes from, which text columns it has and how it is scored.

    ``num_labels == 1`` means regression (float labels); the first metric is the main one.
    ``objective="causal-lm"``: a text-completion task made from ``base_task`` (a classification
    task): the prompt is ``prompt`` with the text in ``{text}`` (and a pair's second text in
    ``{text2}``), the completion is the label's word (``label_names``) and an end-of-sequence token.
    """

    name: str
    source: str
    text_fields: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    label_names: tuple[str, ...] = ()
    description: str = ""
    objective: str = "classification"
    base_task: str | None = None
    prompt: str = ""

    def __post_init__(self) -> None:
        # frozen dataclass: normalise lists given by from_dict into tuples
        for attr in ("text_fields", "metrics", "label_names"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        if self.source not in SOURCES:
            raise ValueError(f"task {self.name!r}: source must be one of {SOURCES}, got {self.source!r}")
        if not 1 <= len(self.text_fields) <= 2:
            raise ValueError(f"task {self.name!r}: needs 1 or 2 text fields, got {self.text_fields}")
        if self.num_labels < 1:
            raise ValueError(f"task {self.name!r}: num_labels must be >= 1, got {self.num_labels}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"task {self.name!r}: objective must be one of {OBJECTIVES}, got {self.objective!r}")
        valid = COMPLETION_METRICS if self.is_causal_lm else KNOWN_METRICS
        unknown = [m for m in self.metrics if m not in valid]
        if not self.metrics or unknown:
            raise ValueError(f"task {self.name!r}: metrics must be a non-empty subset of {valid}")
        if self.is_causal_lm and (not self.base_task or "{text}" not in self.prompt or not self.label_names):
            raise ValueError(f"task {self.name!r}: a causal-lm task needs base_task, a prompt with {{text}} "
                             "and label_names (the completion words)")
        if self.is_causal_lm and ("{text2}" in self.prompt) != (len(self.text_fields) == 2):
            raise ValueError(f"task {self.name!r}: a prompt holds {{text2}} exactly when the task has two text "
                             f"fields (it has {self.text_fields})")
        if self.label_names and len(self.label_names) != self.num_labels:
            raise ValueError(f"task {self.name!r}: {len(self.label_names)} label names for {self.num_labels} labels")

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1 and not self.is_causal_lm

    @property
    def is_causal_lm(self) -> bool:
        return self.objective == "causal-lm"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskSpec":
        return cls(**data)


def _spec(name, source, fields, labels, metrics, description) -> TaskSpec:
    names = () if isinstance(labels, int) else tuple(labels)
    count = labels if isinstance(labels, int) else len(names)
    return TaskSpec(name, source, tuple(fields), count, tuple(metrics), names, description)


_SENTIMENT = ("negative", "positive")
_TASKS = [
    # GLUE, as used by the papers (config names of the hub dataset nyu-mll/glue)
    _spec("cola", "glue", ["sentence"], ["unacceptable", "acceptable"], ["mcc", "accuracy"],
          "CoLA grammatical acceptability"),
    _spec("sst2", "glue", ["sentence"], _SENTIMENT, ["accuracy"], "SST-2 movie review sentiment"),
    _spec("mrpc", "glue", ["sentence1", "sentence2"], ["not_equivalent", "equivalent"], ["accuracy", "f1"],
          "MRPC paraphrase"),
    _spec("qqp", "glue", ["question1", "question2"], ["not_duplicate", "duplicate"], ["accuracy", "f1"],
          "QQP duplicate questions"),
    _spec("stsb", "glue", ["sentence1", "sentence2"], 1, ["pearson", "spearman"],
          "STS-B sentence similarity (0-5 regression)"),
    _spec("mnli", "glue", ["premise", "hypothesis"], ["entailment", "neutral", "contradiction"], ["accuracy"],
          "MNLI natural language inference (matched)"),
    _spec("qnli", "glue", ["question", "sentence"], ["entailment", "not_entailment"], ["accuracy"],
          "QNLI question answering inference"),
    _spec("rte", "glue", ["sentence1", "sentence2"], ["entailment", "not_entailment"], ["accuracy"],
          "RTE textual entailment"),
    # offline real tasks built from pinned PyPI wheels (see ranklab.data.offline)
    _spec("movie", "offline", ["text"], _SENTIMENT, ["accuracy", "f1"], "movie review snippet sentiment"),
    _spec("amazon", "offline", ["text"], _SENTIMENT, ["accuracy", "f1"], "Amazon product review sentiment"),
    _spec("tweet", "offline", ["text"], _SENTIMENT, ["accuracy", "f1"], "tweet sentiment"),
    _spec("nyt", "offline", ["text"], _SENTIMENT, ["accuracy", "f1"], "NYT editorial snippet sentiment"),
    _spec("movie_rating", "offline", ["text"], 1, ["pearson", "spearman"],
          "movie snippet mean rating -4..+4 (STS-B-like regression)"),
    _spec("trec", "offline", ["text"], ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"], ["accuracy", "macro_f1"],
          "TREC question type, 6 coarse classes"),
    _spec("sms_spam", "offline", ["text"], ["ham", "spam"], ["mcc", "f1", "accuracy"],
          "SMS spam detection (imbalanced)"),
    _spec("bbc", "offline", ["text"], ["business", "entertainment", "politics", "sport", "tech"],
          ["accuracy", "macro_f1"], "BBC news article topic"),
    # causal-LM (text completion) tasks made from the offline ones, for decoder-only backbones
    TaskSpec("movie_lm", "offline", ("text",), 2, COMPLETION_METRICS, _SENTIMENT,
             "movie snippet -> ' positive' / ' negative' as text (causal LM)", objective="causal-lm",
             base_task="movie", prompt="Review: {text}\nSentiment:"),
    TaskSpec("trec_lm", "offline", ("text",), 6, COMPLETION_METRICS,
             ("abbreviation", "description", "entity", "human", "location", "number"),
             "TREC question -> its type as a word (causal LM)", objective="causal-lm",
             base_task="trec", prompt="Question: {text}\nType:"),
]


def _glue_lm(base: str, prompt: str, words: tuple[str, ...]) -> TaskSpec:
    spec = next(t for t in _TASKS if t.name == base)
    return TaskSpec(f"{base}_lm", "glue", spec.text_fields, spec.num_labels, COMPLETION_METRICS, words,
                    f"{spec.description} as text completion (causal LM)", objective="causal-lm", base_task=base,
                    prompt=prompt)


# DECISION (the MoR paper's training data and prompts are not available to us): the multi-task GLUE
# tasks as text completion for decoder-only LLMs, one short answer word per label (GLUE's label order).
_TASKS += [
    _glue_lm("cola", "Sentence: {text}\nGrammatical:", ("no", "yes")),
    _glue_lm("sst2", "Review: {text}\nSentiment:", _SENTIMENT),
    _glue_lm("mrpc", "Sentence 1: {text}\nSentence 2: {text2}\nSame meaning:", ("no", "yes")),
    _glue_lm("qqp", "Question 1: {text}\nQuestion 2: {text2}\nSame question:", ("no", "yes")),
    _glue_lm("mnli", "Premise: {text}\nHypothesis: {text2}\nEntailed:", ("yes", "maybe", "no")),
    _glue_lm("qnli", "Question: {text}\nSentence: {text2}\nAnswers it:", ("yes", "no")),
    _glue_lm("rte", "Premise: {text}\nHypothesis: {text2}\nEntailed:", ("yes", "no")),
]
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _TASKS}
_ALIASES = {"sst_2": "sst2", "sts_b": "stsb", "sms": "sms_spam", "spam": "sms_spam", "bbc_news": "bbc"}


def available_tasks(source: str | None = None, objective: str | None = "classification") -> list[str]:
    """Task names, optionally only those of one source ("glue" or "offline"), of one objective
    ("classification", the default, or "causal-lm"; None: every task)."""
    if source is not None and source not in SOURCES:
        raise ValueError(f"unknown task source {source!r}; valid sources: {', '.join(SOURCES)}")
    if objective is not None and objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives: {', '.join(OBJECTIVES)}")
    return [name for name, spec in TASKS.items() if (source is None or spec.source == source)
            and (objective is None or spec.objective == objective)]


def get_task(name: str | TaskSpec) -> TaskSpec:
    """The spec of a task by name (case-insensitive, "SST-2" == "sst2"); a TaskSpec passes through."""
    if isinstance(name, TaskSpec):
        return name
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[key]
