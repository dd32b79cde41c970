"""Low-rank factors of adapted modules, for ranklab adapters and PEFT LoRA / AdaLoRA layers alike.

Every function here returns matrices ``[F1, ..., Fk]`` whose left-to-right product is the dense
update ΔW (d_out x d_in, also for GPT-2's Conv1D) with the scaling folded into F1, so the rest of ``ranklab.inspect``
never needs to know which library or method produced an adapter.

PEFT layers are recognised by their attributes (``base_layer`` plus ``lora_A``/``lora_B`` dicts),
so PEFT is not imported here.  Selectors: ranklab layers take their method's keywords
(``rank=b`` for DyLoRA, ``task=t`` / ``expert=i`` / ``gates=g`` for the multi-task methods);
PEFT layers take ``adapter="name"`` (default: the layer's first active adapter).
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Iterator

import torch
from torch import nn

from ..adapters import AdapterLayer
from ..adapters.targets import as_linear_weight
from ..adapters.base import EXPERT_ROUTED, TASK_ROUTED

_LAYER_INDEX = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


def is_peft_lora(module: nn.Module) -> bool:
    """A PEFT LoRA-family linear layer (LoRA or AdaLoRA), recognised by its attributes."""
    lora_a = getattr(module, "lora_A", None)
    if not (
        hasattr(getattr(module, "base_layer", None), "weight")
        and isinstance(lora_a, (nn.ModuleDict, nn.ParameterDict))
        and isinstance(getattr(module, "lora_B", None), (nn.ModuleDict, nn.ParameterDict))
        and isinstance(getattr(module, "scaling", None), dict)
        and len(lora_a) > 0
    ):
        return False
    # Linear-like only (nn.Linear, GPT-2 Conv1D): PEFT's conv and embedding LoRAs are not matrices.
    first = next(iter(lora_a.values()))
    return (isinstance(first, nn.Linear) or isinstance(first, nn.Parameter)) and _weight(first).ndim == 2


def is_adapted(module: nn.Module) -> bool:
    """Does ``module_factors`` understand this module?"""
    return isinstance(module, AdapterLayer) or is_peft_lora(module)


def _peft_adapter(module: nn.Module, adapter: str | None) -> str:
    names = list(module.lora_A.keys())
    if adapter is None:
        active = [a for a in getattr(module, "active_adapters", names) if a in module.lora_A]
        return active[0] if active else names[0]
    if adapter not in module.lora_A:
        raise ValueError(f"adapter {adapter!r} not in this layer; adapters: {', '.join(names)}")
    return adapter


def _weight(entry: Any) -> torch.Tensor:
    return entry.weight if isinstance(entry, nn.Module) else entry  # LoRA: nn.Linear, AdaLoRA: Parameter


def _peft_factors(module: nn.Module, adapter: str | None = None, **unknown: Any) -> list[torch.Tensor]:
    if unknown:
        raise ValueError(f"PEFT layers take only the selector 'adapter', got {sorted(unknown)}")
    adapter = _peft_adapter(module, adapter)
    if getattr(module, "use_dora", {}).get(adapter, False):
        raise ValueError("DoRA adapters rescale W0 + ΔW column-wise; their update is not a low-rank product")
    weight_a = _weight(module.lora_A[adapter])
    weight_b = _weight(module.lora_B[adapter])
    scaling = module.scaling[adapter]
    if hasattr(module, "lora_E"):  # AdaLoRA: ΔW = B (A * E) * scaling / (ranknum + 1e-5), as in PEFT
        scaling = scaling / (module.ranknum[adapter] + 1e-5)
        weight_a = weight_a * module.lora_E[adapter]
    # (d_out x d_in) also for GPT-2's Conv1D (fan_in_fan_out): PEFT's lora_A / lora_B have the
    # nn.Linear layout there too and only its get_delta_weight transposes, to W0's storage layout
    return [weight_b * scaling, weight_a]


def module_factors(module: nn.Module, **selector: Any) -> list[torch.Tensor]:
    """Matrices whose product is ΔW of one adapted module (ranklab AdapterLayer or PEFT LoRA/AdaLoRA)."""
    if isinstance(module, AdapterLayer):
        try:
            signature = inspect.signature(module.factors)
            signature.bind(**selector)
        except TypeError:
            raise ValueError(
                f"{module.config.method} factors() takes {list(signature.parameters) or 'no selector'}, "
                f"got {sorted(selector)}"
            ) from None
        return list(module.factors(**selector))
    if is_peft_lora(module):
        return _peft_factors(module, **selector)
    raise ValueError(
        f"{type(module).__name__} is not an adapted module; expected a ranklab AdapterLayer or a PEFT LoRA/AdaLoRA Linear"
    )


def default_selectors(module: nn.Module) -> list[dict[str, int]]:
    """Selectors that describe a module without data: one per task for task-routed ranklab layers
    (``{"task": t}``), one per expert for token-routed ones (``{"expert": i}``), else ``[{}]``."""
    capabilities = module.capabilities if isinstance(module, AdapterLayer) else frozenset()
    if TASK_ROUTED in capabilities:
        return [{"task": t} for t in range(module.n_tasks)]
    if EXPERT_ROUTED in capabilities:
        return [{"expert": i} for i in range(module.config.n_experts)]
    return [{}]


def adapted_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every adapted module of a model (ranklab or PEFT), by qualified name, in model order."""
    return {name: m for name, m in model.named_modules() if is_adapted(m)}


def model_factors(model: nn.Module, **selector: Any) -> Iterator[tuple[str, list[torch.Tensor]]]:
    """(name, factors) for every adapted module of a model."""
    modules = adapted_modules(model)
    if not modules:
        raise ValueError("model has no adapted modules (ranklab adapters or PEFT LoRA/AdaLoRA layers)")
    for name, module in modules.items():
        yield name, module_factors(module, **selector)


def base_weight(module: nn.Module) -> torch.Tensor:
    """The frozen W0 under an adapter as a (d_out x d_in) matrix, like ΔW: ``layer.base.weight``
    (ranklab), ``base_layer.weight`` (PEFT); transposed where GPT-2's Conv1D stores it (d_in x d_out)."""
    if isinstance(module, AdapterLayer):
        return module.base_weight()
    if is_peft_lora(module):
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else module.base_layer
        return as_linear_weight(base)
    raise ValueError(f"{type(module).__name__} is not an adapted module")


def method_name(module: nn.Module) -> str:
    """ranklab method name, or ``peft_lora`` / ``peft_adalora``."""
    if isinstance(module, AdapterLayer):
        return module.config.method
    if is_peft_lora(module):
        return "peft_adalora" if hasattr(module, "lora_E") else "peft_lora"
    raise ValueError(f"{type(module).__name__} is not an adapted module")


def adapter_param_count(module: nn.Module, adapter: str | None = None) -> int:
    """Trainable adapter parameters of one module (router and task embeddings included)."""
    if isinstance(module, AdapterLayer):
        return module.num_adapter_params()
    adapter = _peft_adapter(module, adapter)
    total = 0
    for dict_name in ("lora_A", "lora_B", "lora_E"):
        entries = getattr(module, dict_name, None)
        if entries is not None and adapter in entries:
            entry = entries[adapter]
            total += sum(p.numel() for p in entry.parameters()) if isinstance(entry, nn.Module) else entry.numel()
    return total


def layer_index(name: str) -> int | None:
    """First integer component of a qualified name (``encoder.layer.3.attention...`` -> 3)."""
    match = _LAYER_INDEX.search(name)
    return int(match.group(1)) if match else None


def short_module_name(name: str) -> str:
    """The part after the layer index (``attention.self.query``); the full name if there is none."""
    match = _LAYER_INDEX.search(name)
    return name[match.end():] if match and match.end() < len(name) else name
