"""Which modules ranklab adapts: ``nn.Linear`` and GPT-2's ``Conv1D``, chosen by name or "all-linear".

GPT-2 (and a few models derived from it) stores its projections as
``transformers.pytorch_utils.Conv1D``: ``y = x @ W + b`` with W of shape (d_in, d_out), the
transpose of ``nn.Linear``'s (d_out, d_in).  ranklab keeps one convention everywhere: an
adapter's ΔW, its factors and its spectra are (d_out x d_in), as for ``nn.Linear``; only merging
into a Conv1D weight transposes (PEFT calls this ``fan_in_fan_out``).

Conv1D is recognised without importing transformers: a Conv1D instance can only exist once
``transformers.pytorch_utils`` has been imported, so its class is looked up in ``sys.modules``.
"""
from __future__ import annotations

import sys

import torch
from torch import nn

ALL_LINEAR = "all-linear"  # PEFT's shorthand: every Linear / Conv1D except the output head
# Classification heads PEFT leaves out of "all-linear" (peft.utils.constants.SEQ_CLS_HEAD_NAMES)
CLASSIFIER_HEADS = ("score", "classifier")


def _conv1d_class() -> type | None:
    module = sys.modules.get("transformers.pytorch_utils")
    return getattr(module, "Conv1D", None)


def is_conv1d(module: nn.Module) -> bool:
    """A transformers ``Conv1D`` (weight stored d_in x d_out)."""
    conv1d = _conv1d_class()
    return conv1d is not None and isinstance(module, conv1d)


def is_linear_like(module: nn.Module) -> bool:
    """A module ranklab can adapt: ``nn.Linear`` or transformers' ``Conv1D``."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def linear_shape(module: nn.Module) -> tuple[int, int]:
    """(d_in, d_out) of an ``nn.Linear`` or a ``Conv1D``."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if is_conv1d(module):
        d_in, d_out = module.weight.shape  # Conv1D: (nx, nf)
        return int(d_in), int(d_out)
    raise ValueError(f"{type(module).__name__} is neither nn.Linear nor transformers' Conv1D")


def as_linear_weight(module: nn.Module) -> torch.Tensor:
    """The module's weight as an ``nn.Linear`` weight (d_out x d_in); a view for Conv1D."""
    return module.weight.T if is_conv1d(module) else module.weight


def output_head_names(model: nn.Module) -> set[str]:
    """Names of the modules "all-linear" leaves out: the output embeddings (a causal LM's lm_head)
    and a classification head (``score`` / ``classifier``)."""
    excluded: set[str] = set()
    heads = []
    get_output = getattr(model, "get_output_embeddings", None)
    if callable(get_output):
        output = get_output()
        if output is not None:
            heads.append(output)
    heads += [getattr(model, name) for name in CLASSIFIER_HEADS if isinstance(getattr(model, name, None), nn.Module)]
    for name, module in model.named_modules():
        if any(module is head for head in heads):
            excluded.add(name)
    return excluded


def linear_module_names(model: nn.Module) -> list[str]:
    """Every adaptable module (nn.Linear or Conv1D) of a model, in model order."""
    return [name for name, module in model.named_modules() if name and is_linear_like(module)]


def all_linear_targets(model: nn.Module) -> list[str]:
    """PEFT's "all-linear": every Linear / Conv1D except the output head and what lies under it."""
    excluded = output_head_names(model)
    return [name for name in linear_module_names(model)
            if not any(name == e or name.startswith(e + ".") for e in excluded)]


def candidate_names(model: nn.Module, limit: int = 12) -> str:
    """A one-line hint listing the adaptable modules' name suffixes, for "matched nothing" errors."""
    names = linear_module_names(model)
    if not names:
        return "the model has no nn.Linear or Conv1D module"
    suffixes = sorted({name.rsplit(".", 1)[-1] for name in names})
    kinds = sorted({"Conv1D" if is_conv1d(model.get_submodule(n)) else "Linear" for n in names})
    more = f" (+{len(suffixes) - limit} more)" if len(suffixes) > limit else ""
    return (f"candidate {'/'.join(kinds)} module names end in: {', '.join(suffixes[:limit])}{more} "
            f"(e.g. {', '.join(names[:3])}); or target_modules={ALL_LINEAR!r}")
