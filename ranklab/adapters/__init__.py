"""Adapter methods and the registry that maps method names to (config, layer) classes.

A new method registers itself with ``register(ConfigClass, LayerClass)``; attach, save/load,
export and the CLI then know it by ``ConfigClass.method``.
"""
from __future__ import annotations

from typing import Any

from .base import CAPABILITIES, AdapterConfig, AdapterLayer, chain
from .dylora import DyLoraConfig, DyLoraLayer
from .emd import EmdConfig, EmdLayer
from .lora import LoraConfig, LoraLayer
from .moelora import MoeLoraConfig, MoeLoraLayer
from .mor import MorConfig, MorLayer
from .rank_router import RankRouterConfig, RankRouterLayer
from .vera import VeraConfig, VeraLayer

_REGISTRY: dict[str, tuple[type[AdapterConfig], type[AdapterLayer]]] = {}


def register(config_class: type[AdapterConfig], layer_class: type[AdapterLayer]) -> None:
    """Make a method known by its config's ``method`` name."""
    _REGISTRY[config_class.method] = (config_class, layer_class)


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str) -> tuple[type[AdapterConfig], type[AdapterLayer]]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(available_methods())}") from None


def make_config(method: str, **options: Any) -> AdapterConfig:
    """``make_config("emd", a=4, b=12)`` -> EmdConfig; unknown options name the valid ones."""
    config_class, _ = get_method(method)
    return config_class.from_dict(options)


def config_from_dict(data: dict[str, Any]) -> AdapterConfig:
    data = dict(data)
    if "method" not in data:
        raise ValueError(f"adapter config has no 'method'; registered methods: {', '.join(available_methods())}")
    config_class, _ = get_method(data.pop("method"))
    return config_class.from_dict(data)


register(LoraConfig, LoraLayer)
register(EmdConfig, EmdLayer)
register(DyLoraConfig, DyLoraLayer)
register(RankRouterConfig, RankRouterLayer)
register(MorConfig, MorLayer)
register(MoeLoraConfig, MoeLoraLayer)
register(VeraConfig, VeraLayer)

__all__ = [
    "CAPABILITIES", "AdapterConfig", "AdapterLayer", "chain", "register", "available_methods", "get_method",
    "make_config", "config_from_dict", "LoraConfig", "LoraLayer", "EmdConfig", "EmdLayer",
    "DyLoraConfig", "DyLoraLayer", "RankRouterConfig", "RankRouterLayer", "MorConfig", "MorLayer",
    "MoeLoraConfig", "MoeLoraLayer", "VeraConfig", "VeraLayer",
]
