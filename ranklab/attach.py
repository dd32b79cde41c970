"""Put adapters into a model, freeze the base, merge, unload and remove them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .adapters import AdapterConfig, AdapterLayer, get_method
from .adapters.base import RANK_SLICEABLE, SHARED_STATE, shared_sizes
from .adapters.targets import ALL_LINEAR, all_linear_targets, candidate_names, is_linear_like, linear_shape


@dataclass
class AttachSummary:
    """What ``attach`` did: which modules it wrapped and the parameter accounting."""

    method: str
    modules: list[str]
    adapter_params: int
    head_params: int
    total_params: int
    head_modules: list[str] = field(default_factory=list)
    shared_frozen: int = 0  # frozen tensors the method shares across layers (VeRA's A, B), counted once

    @property
    def trainable_params(self) -> int:
        return self.adapter_params + self.head_params

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "modules": list(self.modules), "head_modules": list(self.head_modules),
            "adapter_params": self.adapter_params, "head_params": self.head_params,
            "trainable_params": self.trainable_params, "total_params": self.total_params,
            "shared_frozen": self.shared_frozen,
        }

    def __str__(self) -> str:
        share = 100.0 * self.trainable_params / max(self.total_params, 1)
        return (
            f"ranklab {self.method}: {len(self.modules)} modules wrapped\n"
            f"  adapter params   {self.adapter_params:>12,}\n"
            f"  head params      {self.head_params:>12,}  ({', '.join(self.head_modules) or 'none'})\n"
            + (f"  shared, frozen   {self.shared_frozen:>12,}  (once, on the model)\n" if self.shared_frozen else "") +
            f"  trainable / all  {self.trainable_params:>12,} / {self.total_params:,} ({share:.3f}%)"
        )


def _name_matches(name: str, suffixes: list[str]) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


def adapter_layers(model: nn.Module) -> dict[str, AdapterLayer]:
    """All ranklab adapter layers of a model, by qualified module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, AdapterLayer)}


def shared_state(model: nn.Module) -> nn.Module | None:
    """The model-level state of its adapters' method (VeRA's projections), if it has any."""
    return model._modules.get(SHARED_STATE)


def model_capabilities(model: nn.Module) -> frozenset[str]:
    """What analysis can ask of the model's ranklab adapters (empty for PEFT or plain models)."""
    return frozenset().union(*(layer.capabilities for layer in adapter_layers(model).values()))


def _head_modules(model: nn.Module, config: AdapterConfig) -> dict[str, nn.Module]:
    heads = {name: m for name, m in model.named_modules() if name and _name_matches(name, config.modules_to_save)}
    # keep only the outermost match (classifier, not also classifier.dense)
    return {n: m for n, m in heads.items() if not any(n.startswith(o + ".") for o in heads if o != n)}


def target_names(model: nn.Module, config: AdapterConfig) -> list[str]:
    """The modules ``attach`` wraps: nn.Linear / Conv1D modules matching ``config.target_modules``
    ("all-linear": all but the output head), never inside a kept head (``modules_to_save``)."""
    heads = _head_modules(model, config)
    if config.target_modules == ALL_LINEAR:
        chosen = all_linear_targets(model)
    else:
        chosen = [name for name, module in model.named_modules() if is_linear_like(module) and config.matches(name)]
    targets = [name for name in chosen if not any(name == h or name.startswith(h + ".") for h in heads)]
    if not targets:
        raise ValueError(f"target_modules={config.target_modules!r} matched no nn.Linear or Conv1D module "
                         f"(ranklab adapts both: GPT-2's projections are Conv1D); {candidate_names(model)}")
    return targets


def attach(model: nn.Module, config: AdapterConfig) -> AttachSummary:
    """Wrap every nn.Linear or GPT-2 Conv1D whose name matches ``config.target_modules`` (or
    all of them but the output head: ``"all-linear"``) with the config's method.

    Freezes all other parameters except ``config.modules_to_save``; returns the accounting.
    """
    if not isinstance(config, AdapterConfig):
        raise ValueError(f"config must be an AdapterConfig (e.g. ranklab.make_config('lora', r=8)), got {type(config).__name__}")
    _, layer_class = get_method(config.method)
    if getattr(model, "ranklab_config", None) is not None or adapter_layers(model):
        raise ValueError("this model already has ranklab adapters; call ranklab.remove_adapters(model) first")
    for modules_to_save_name in config.modules_to_save:
        if not any(_name_matches(n, [modules_to_save_name]) for n, _ in model.named_modules()):
            raise ValueError(f"modules_to_save entry {modules_to_save_name!r} matches no module")
    heads = _head_modules(model, config)
    targets = target_names(model, config)
    for name in targets:  # validate every shape before changing anything
        config.check_shape(*linear_shape(model.get_submodule(name)), name)
    for p in model.parameters():
        p.requires_grad_(False)
    shared = layer_class.shared_state(config, {name: linear_shape(model.get_submodule(name)) for name in targets})
    layers = {}
    for name in targets:
        original = model.get_submodule(name)
        layer = layer_class(original, config, module_name=name)
        layer.to(device=original.weight.device).train(original.training)  # follow the model's mode
        model.set_submodule(name, layer)
        layers[name] = layer
    if shared is not None:  # once, on the model: .to(), .double() and state_dict see one copy
        setattr(model, SHARED_STATE, shared.to(device=model.get_submodule(targets[0]).base.weight.device))
        for layer in layers.values():
            layer.use_shared(shared)
    for head in heads.values():
        for p in head.parameters():
            p.requires_grad_(True)
    layer_class.on_attach(model, layers)
    model.ranklab_config = config
    return summarize(model)


def summarize(model: nn.Module) -> AttachSummary:
    config = getattr(model, "ranklab_config", None)
    if config is None:
        raise ValueError("this model has no ranklab adapters; call ranklab.attach(model, config) first")
    layers = adapter_layers(model)
    heads = _head_modules(model, config)
    shared_trainable, shared_frozen = shared_sizes(shared_state(model))
    return AttachSummary(
        method=config.method,
        modules=list(layers),
        adapter_params=sum(layer.num_adapter_params() for layer in layers.values()) + shared_trainable,
        shared_frozen=shared_frozen,
        head_params=sum(p.numel() for h in heads.values() for p in h.parameters()),
        total_params=sum(p.numel() for p in model.parameters()),
        head_modules=list(heads),
    )


def _detach_all(model: nn.Module, merge: bool, selector: dict[str, Any]) -> nn.Module:
    layers = adapter_layers(model)
    if not layers:
        raise ValueError("this model has no ranklab adapters")
    for name, layer in layers.items():
        if merge and layer.merged_with is None:
            layer.merge(**selector)
        elif not merge and layer.merged_with is not None:
            layer.unmerge()
        model.set_submodule(name, layer.base)
    for layer_class in {type(layer) for layer in layers.values()}:
        layer_class.on_detach(model, {n: la for n, la in layers.items() if type(la) is layer_class})
    if shared_state(model) is not None:
        delattr(model, SHARED_STATE)
    model.ranklab_config = None
    return model


def merge_and_unload(model: nn.Module, **selector: Any) -> nn.Module:
    """Fold every update into its base weight and return the plain model (e.g. rank=4, task=1)."""
    return _detach_all(model, merge=True, selector=selector)


def remove_adapters(model: nn.Module) -> nn.Module:
    """Take the adapters out, restoring the original (unmerged) weights."""
    return _detach_all(model, merge=False, selector={})


def merge_adapters(model: nn.Module, **selector: Any) -> None:
    for layer in adapter_layers(model).values():
        layer.merge(**selector)


def unmerge_adapters(model: nn.Module) -> None:
    for layer in adapter_layers(model).values():
        layer.unmerge()


def set_rank(model: nn.Module, rank: int) -> None:
    """Evaluate rank-sliceable adapters (DyLoRA) at ``rank``."""
    layers = [layer for layer in adapter_layers(model).values() if RANK_SLICEABLE in layer.capabilities]
    if not layers:
        raise ValueError("set_rank needs rank-sliceable adapters (method 'dylora')")
    for layer in layers:
        layer.set_rank(rank)
