"""Checkpoints: trainable weights, optimizer, scheduler, RNG states and loop position in one file.

Only what training changes is stored (adapters, heads, AdaLoRA's allocator); the frozen base
comes from the backbone again on resume.  Written to a temp file and moved into place.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..attach import adapter_layers

CHECKPOINT_NAME = "checkpoint.pt"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters plus adapter buffers, detached copies on CPU."""
    state = {name: p for name, p in model.named_parameters() if p.requires_grad}
    for layer_name, layer in adapter_layers(model).items():
        for name, buffer in layer.named_buffers():
            if not name.startswith("base."):
                state[f"{layer_name}.{name}"] = buffer
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"checkpoint does not fit this model; unexpected keys e.g. {unexpected[:3]}")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: str | os.PathLike, state: dict[str, Any]) -> Path:
    with atomic_path(Path(folder) / CHECKPOINT_NAME) as tmp:
        torch.save(state, tmp)
    return Path(folder) / CHECKPOINT_NAME


def load_checkpoint(folder: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(folder) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=False)  # our own file: it holds RNG tuples and dicts
    except Exception as error:  # truncated or foreign file: torch raises many kinds
        raise ValueError(f"checkpoint {path} is damaged ({type(error).__name__}); it cannot be resumed: "
                         "start again with --overwrite") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{path} is not a ranklab checkpoint; start again with --overwrite")
    return state


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove it can be written, before any work is spent."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output {str(folder)!r} is a file, not a folder; choose another --output")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"cannot write to output {str(folder)!r} ({error.strerror or error}); "
                         "choose a folder you can write") from None
    return folder
