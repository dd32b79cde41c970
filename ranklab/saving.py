"""Save and load ranklab adapter sets; export mergeable adapters to PEFT's LoRA format.

A saved set is a folder with ``adapter_model.safetensors`` (adapter and kept-head weights) and
``ranklab_config.json`` (method config, ranklab version, module list).  Files are written to a
temporary folder and moved into place, so a crash never leaves a half-written set.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import write_folder
from .adapters import config_from_dict
from .attach import _head_modules, adapter_layers, attach, remove_adapters
from .version import __version__

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "ranklab_config.json"


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter parameters and buffers plus kept-head parameters, keyed by their model names."""
    config = getattr(model, "ranklab_config", None)
    if config is None:
        raise ValueError("this model has no ranklab adapters; call ranklab.attach(model, config) first")
    state: dict[str, torch.Tensor] = {}
    for name, layer in adapter_layers(model).items():
        for key, value in layer.state_dict().items():
            if not key.startswith("base."):
                state[f"{name}.{key}"] = value
    for name, head in _head_modules(model, config).items():
        for key, value in head.state_dict().items():
            state[f"{name}.{key}"] = value
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_adapters(model: nn.Module, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Save the model's adapter set to folder ``path`` (atomically)."""
    state = adapter_state_dict(model)
    meta = {
        "ranklab_version": __version__,
        "config": model.ranklab_config.to_dict(),
        "modules": list(adapter_layers(model)),
        "extra": extra or {},
    }

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"ranklab_version": __version__})
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2))

    return write_folder(path, write)


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    config_file = Path(path) / CONFIG_NAME
    if not config_file.is_file():
        raise ValueError(f"{path} is not a ranklab adapter folder (no {CONFIG_NAME})")
    return json.loads(config_file.read_text())


def load_adapters(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Attach the saved adapters to a fresh base model and load their weights.

    Fails with a clear ValueError on an unknown method, modules the model lacks, or shapes
    that differ (a different backbone size or rank).
    """
    meta = read_adapter_config(path)
    config = config_from_dict(meta["config"])  # unknown method -> lists registered ones
    summary = attach(model, config)
    try:
        _check_fits(model, path, meta, summary.modules)
    except ValueError:
        remove_adapters(model)  # leave the model as it was given
        raise
    model.load_state_dict(load_file(str(Path(path) / WEIGHTS_NAME)), strict=False)
    return model


def _check_fits(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any], modules: list[str]) -> None:
    missing = sorted(set(meta.get("modules", [])) - set(modules))
    if missing:
        raise ValueError(f"the saved adapters target modules this model lacks: {missing[:5]}")
    state = load_file(str(Path(path) / WEIGHTS_NAME))
    own = model.state_dict()
    problems = [f"{k}: unexpected" for k in state if k not in own]
    problems += [
        f"{k}: saved {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items() if k in own and own[k].shape != v.shape
    ]
    if problems:
        raise ValueError(
            f"saved adapters from {path} do not fit this model ({len(problems)} problems), e.g. "
            + "; ".join(problems[:3])
        )


def export_peft(model: nn.Module, path: str | os.PathLike, **selector: Any) -> Path:
    """Write a PEFT LoRA adapter equal to the (mergeable) ranklab adapters.

    ``selector`` picks one static update where a method needs it (``rank=`` for DyLoRA, ``task=``
    for the rank router).  Scaling is folded into B and ``lora_alpha`` equals each module's
    rank, so PEFT's scaling is 1 and the logits match.
    """
    from peft import LoraConfig as PeftLoraConfig

    config = getattr(model, "ranklab_config", None)
    if config is None:
        raise ValueError("this model has no ranklab adapters to export; call ranklab.attach(model, config) first")
    layers = adapter_layers(model)
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    for name, layer in layers.items():
        if not layer.mergeable:
            raise ValueError(f"method {config.method!r} is input-dependent and has no static LoRA export")
        with torch.no_grad():
            lora_B, lora_A = layer.lora_factors(**selector)
        ranks[name] = lora_A.shape[0]
        tensors[f"base_model.model.{name}.lora_A.weight"] = lora_A.detach().cpu().contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = lora_B.detach().cpu().contiguous()
    for name, head in _head_modules(model, config).items():
        for key, value in head.state_dict().items():
            tensors[f"base_model.model.{name}.{key}"] = value.detach().cpu().contiguous()
    r = max(ranks.values())
    pattern = {name: rank for name, rank in ranks.items() if rank != r}
    peft_config = PeftLoraConfig(
        r=r, lora_alpha=r, rank_pattern=pattern, alpha_pattern=dict(pattern),
        target_modules=sorted({n.rsplit(".", 1)[-1] for n in layers}),
        modules_to_save=list(config.modules_to_save) or None, lora_dropout=config.dropout,
    )

    def write(tmp: Path) -> None:
        peft_config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})

    return write_folder(path, write)
