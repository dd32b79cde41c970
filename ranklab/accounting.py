"""Parameter budgets of adapter methods from layer shapes alone (no model needed).

``module_params("rank_router", 768, 768, r=16, n_tasks=7)`` gives the per-module parts
(A, B, router, ...); ``budget(method, shapes, **options)`` sums them over modules, e.g. the
query/value projections of a backbone from ``target_shapes("roberta-base", ["query", "value"])``.
Counts are derived from each method's layer (built on the meta device), so a new method needs
no formula here: ``moelora`` (N full LoRA experts plus a token router, the MoR paper's baseline)
is counted from its layer like every other method.
"""
from __future__ import annotations

from typing import Any, Iterable

from .adapters import get_method, make_config
from .adapters.base import shared_sizes
from .backbones import BACKBONES

# module-name suffix -> (d_in, d_out) as a function of (hidden, ffn)
_SQUARE = ("query", "key", "value", "attention.output.dense", "q_proj", "k_proj", "v_proj", "o_proj")
_UP = ("intermediate.dense", "gate_proj", "up_proj")
_DOWN = ("output.dense", "down_proj")


def target_shapes(backbone: str, targets: Iterable[str]) -> list[tuple[int, int]]:
    """(d_in, d_out) of every adapted module: one per target per layer."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    spec = BACKBONES[backbone]
    hidden, layers, ffn = spec.hidden_size, spec.num_layers, spec.ffn_size
    shapes = []
    for target in targets:
        if target in _SQUARE:
            shape = (hidden, hidden)
        elif target in _UP:
            shape = (hidden, ffn)
        elif target in _DOWN:
            shape = (ffn, hidden)
        else:
            raise ValueError(f"unknown target {target!r}; known: {', '.join(_SQUARE + _UP + _DOWN)}")
        shapes += [shape] * layers
    return shapes


def module_params(method: str, d_in: int, d_out: int, **options: Any) -> dict[str, int]:
    """Trainable parameters of one adapted (d_out x d_in) module, by part.

    Options are the method's config fields (validated through its config; defaults apply).  The
    counts come from the method's layer itself, built on the meta device, so every registered
    method is counted with no formula here.
    """
    config = make_config(method, **options)  # unknown method or option -> ValueError
    config.check_shape(d_in, d_out)
    _, layer_class = get_method(method)
    return layer_class.count_for_shape(config, d_in, d_out)


def budget(method: str, shapes: Iterable[tuple[int, int]], **options: Any) -> dict[str, int]:
    """Parts summed over modules, plus ``total`` (trainable).  A method with model-level state
    (VeRA's projections) has it counted once: trainable parts in ``shared`` (within ``total``),
    frozen tensors as ``shared_frozen`` (outside it)."""
    shapes = list(shapes)
    parts: dict[str, int] = {}
    for d_in, d_out in shapes:
        for name, count in module_params(method, d_in, d_out, **options).items():
            parts[name] = parts.get(name, 0) + count
    shared = shared_counts(method, shapes, **options)
    if shared["trainable"]:
        parts["shared"] = shared["trainable"]
    parts["total"] = sum(parts.values())
    if shared["frozen"]:
        parts["shared_frozen"] = shared["frozen"]
    return parts


def shared_counts(method: str, shapes: Iterable[tuple[int, int]], **options: Any) -> dict[str, int]:
    """Trainable and frozen elements of the method's shared state over these modules, counted once."""
    config = make_config(method, **options)
    _, layer_class = get_method(method)
    shapes = list(shapes)
    shared = layer_class.shared_state(config, {str(i): shape for i, shape in enumerate(shapes)}) if shapes else None
    trainable, frozen = shared_sizes(shared)
    return {"trainable": trainable, "frozen": frozen}


def paper_budgets(n_tasks: int = 7) -> list[dict[str, Any]]:
    """The multi-task comparisons of the papers, with the numbers they report beside ours.

    Seed paper 1 (Table 1, multi-task RoBERTa-base; q/v assumed): LoRA r=8 0.24M, r=16 0.48M,
    rank router 0.48M.  Our counts split the rank router into its LoRA part (equal to LoRA r=16)
    and its router part (task embeddings and gate per module), which the paper's number leaves out.
    MoR paper: MoR (8 experts, rank 32) vs MoE-LoRA with 8 experts, on a LLaMA-7B's FFN.
    """
    qv = target_shapes("roberta-base", ["query", "value"])
    ffn = target_shapes("llama-7b", ["gate_proj", "up_proj", "down_proj"])
    rows = [
        ("seed1 multi-task", "roberta-base q,v", "lora", dict(r=8), 0.24e6),
        ("seed1 multi-task", "roberta-base q,v", "lora", dict(r=16), 0.48e6),
        ("seed1 multi-task", "roberta-base q,v", "rank_router", dict(r=16, n_tasks=n_tasks), 0.48e6),
        ("mor", "llama-7b ffn", "mor", dict(r=32, n_experts=8), None),
        ("mor", "llama-7b ffn", "moelora", dict(r=4, n_experts=8), None),
        ("mor", "llama-7b ffn", "moelora", dict(r=8, n_experts=8), None),
    ]
    table = []
    for source, modules, method, options, reported in rows:
        parts = budget(method, qv if "roberta" in modules else ffn, **options)
        lora_part = sum(parts.get(name, 0) for name in ("A", "B", "T", "experts"))  # the low-rank factors
        table.append({
            "source": source, "modules": modules, "method": method, "options": options,
            "params": parts["total"], "lora_part": lora_part, "other_part": parts["total"] - lora_part,
            "reported": reported,
        })
    return table
