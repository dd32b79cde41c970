"""Save and load ranklab adapter sets; export mergeable adapters to PEFT's LoRA format.

A saved set is a folder with ``adapter_model.safetensors`` (adapter and kept-head weights) and
``ranklab_config.json`` (method config, ranklab version, module list).  Files are written to a
temporary folder and moved into place, so a crash never leaves a half-written set.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import write_folder
from .adapters import config_from_dict
from .adapters.base import SHARED_STATE
from .adapters.targets import linear_shape
from .attach import _head_modules, adapter_layers, attach, remove_adapters, shared_state
from .context import task_index
from .version import __version__

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "ranklab_config.json"


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter parameters and buffers, the method's shared state (once) and kept-head parameters,
    keyed by their model names."""
    config = getattr(model, "ranklab_config", None)
    if config is None:
        raise ValueError("this model has no ranklab adapters; call ranklab.attach(model, config) first")
    state: dict[str, torch.Tensor] = {}
    for name, layer in adapter_layers(model).items():
        for key, value in layer.state_dict().items():
            if not key.startswith("base."):
                state[f"{name}.{key}"] = value
    shared = shared_state(model)
    if shared is not None:  # persistent tensors only: the rest is rebuilt from the config
        for key, value in shared.state_dict().items():
            state[f"{SHARED_STATE}.{key}"] = value
    for name, head in _head_modules(model, config).items():
        for key, value in head.state_dict().items():
            state[f"{name}.{key}"] = value
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def module_shapes(model: nn.Module) -> dict[str, list[int]]:
    """[d_in, d_out] of every adapted module: saved beside the config, so a folder is read without
    guessing sizes from tensors (VeRA's layers keep no tensor of their input size)."""
    return {name: list(linear_shape(layer.base)) for name, layer in adapter_layers(model).items()}


def save_adapters(model: nn.Module, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Save the model's adapter set to folder ``path`` (atomically)."""
    state = adapter_state_dict(model)
    meta = {
        "ranklab_version": __version__,
        "config": model.ranklab_config.to_dict(),
        "modules": list(adapter_layers(model)),
        "module_shapes": module_shapes(model),
        "extra": extra or {},
    }

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"ranklab_version": __version__})
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2))

    return write_folder(path, write)


class AdapterLoadError(ValueError):
    """A saved adapter set could not be loaded; the model was left exactly as it was given."""


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    config_file = Path(path) / CONFIG_NAME
    if not config_file.is_file():
        raise AdapterLoadError(f"{path} is not a ranklab adapter folder (no {CONFIG_NAME})")
    try:
        meta = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdapterLoadError(f"{config_file} is damaged ({error}); save the adapters again") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise AdapterLoadError(f"{config_file} holds no adapter config; save the adapters again")
    return meta


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise AdapterLoadError(f"{path} has no {WEIGHTS_NAME}; save the adapters again")
    try:
        return load_file(str(weights))
    except Exception as error:  # safetensors raises its own error types on damaged files
        raise AdapterLoadError(f"{weights} is damaged or not a safetensors file ({error}); save the adapters again") from None


def _task_head_state(state: dict[str, torch.Tensor], head: str, task: int | None) -> dict[str, torch.Tensor]:
    """Saved per-task heads (``<head>.heads.<i>.*``) as one plain head (``<head>.*``) for ``task``."""
    prefix = f"{head}.heads."
    if not any(k.startswith(prefix) for k in state) or task is None:
        return state
    own = f"{prefix}{task}."
    if not any(k.startswith(own) for k in state):
        raise AdapterLoadError(f"the saved adapters have no head for task {task}")
    return {(f"{head}." + k[len(own):] if k.startswith(own) else k): v
            for k, v in state.items() if k.startswith(own) or not k.startswith(prefix)}


def _check_exact(model: nn.Module, state: dict[str, torch.Tensor], path: Path, meta: dict[str, Any]) -> None:
    """The saved tensors must be exactly the model's adapter (and kept-head) tensors, same shapes."""
    expected = adapter_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    problems = [f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}"] if missing else []
    problems += [f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}"] if unexpected else []
    problems += [f"{k}: saved {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                 for k, v in state.items() if k in expected and v.shape != expected[k].shape][:3]
    problems += [f"{k}: dtype {v.dtype} is not floating point" for k, v in state.items()
                 if k in expected and not v.is_floating_point() and expected[k].is_floating_point()][:3]
    if problems:
        hint = ""
        if any(".heads." in k for k in unexpected):
            tasks = (meta.get("extra") or {}).get("tasks")
            hint = f"; it holds one head per task ({tasks or 'multi-task'}): pass task= to load one into a plain model"
        raise AdapterLoadError(f"saved adapters from {path} do not fit this model: " + "; ".join(problems) + hint)


def load_adapters(model: nn.Module, path: str | os.PathLike, task: int | str | None = None) -> nn.Module:
    """Attach the saved adapters to a fresh base model and load their weights.

    Everything is checked before the model changes: a damaged or missing file, an unknown
    method, modules the model lacks, missing or unexpected tensors, other shapes.  On any failure
    the model is left exactly as it was given (weights, ``requires_grad`` flags, attributes) and
    one ``AdapterLoadError`` (a ValueError) says why.  ``task`` loads one task's head of a
    multi-task set into a plain model's head (a name from the run's tasks, or an id).
    """
    path = Path(path)
    meta = read_adapter_config(path)
    try:
        config = config_from_dict(meta["config"])  # unknown method -> lists registered ones
    except (ValueError, TypeError) as error:
        raise AdapterLoadError(f"{path / CONFIG_NAME}: {error}") from None
    state = _read_weights(path)
    if task is not None:
        names = (meta.get("extra") or {}).get("tasks") or []
        task = names.index(task) if isinstance(task, str) and task in names else task
        if not isinstance(task, int) or isinstance(task, bool):
            raise AdapterLoadError(f"task must be a task id or one of the saved tasks {names}, got {task!r}")
        for head in config.modules_to_save:
            state = _task_head_state(state, head, task)
    with restore_on_failure(model):
        attach(model, config)
        _check_exact(model, state, path, meta)
        model.load_state_dict(state, strict=False)  # exactly the adapter and head keys (checked)
        tasks = (meta.get("extra") or {}).get("tasks")
        if tasks:  # use_task("trec", model=model); routers still route by task with one head loaded
            model.ranklab_task_names = list(tasks)
    return model


def load_adapter_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Copy a saved set's adapter weights, not its kept heads, into the adapters already attached
    to ``model`` (same method, modules and shapes): a run that starts from another run's adapter,
    as LoRA's MRPC, RTE and STS-B start from its MNLI adapter (their heads have other labels).
    Everything is checked first; on a mismatch ``model`` is unchanged and AdapterLoadError says why."""
    path = Path(path)
    config = getattr(model, "ranklab_config", None)
    if config is None:
        raise ValueError("this model has no ranklab adapters; attach the run's adapters before loading weights")
    meta = read_adapter_config(path)
    saved_method = meta["config"].get("method")
    if saved_method != config.method:
        raise AdapterLoadError(f"{path} holds {saved_method!r} adapters; this model's are {config.method!r}")
    expected = {f"{name}.{key}": value for name, layer in adapter_layers(model).items()
                for key, value in layer.state_dict().items() if not key.startswith("base.")}
    shared = shared_state(model)
    if shared is not None:  # the same projections as the run it starts from
        expected.update({f"{SHARED_STATE}.{key}": value for key, value in shared.state_dict().items()})
    modules = tuple(f"{m}." for m in meta.get("modules") or []) + (f"{SHARED_STATE}.",)
    state = {k: v for k, v in _read_weights(path).items() if k.startswith(modules)}  # heads left out
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    shapes = [f"{k}: saved {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or shapes:
        problems = ([f"missing {missing[:3]}"] if missing else []) + ([f"unexpected {unexpected[:3]}"] if unexpected else [])
        raise AdapterLoadError(f"adapter weights in {path} do not fit this model: " + "; ".join(problems + shapes[:3]))
    with torch.no_grad():
        for key, value in state.items():
            expected[key].copy_(value)
    return model


@contextlib.contextmanager
def restore_on_failure(model: nn.Module) -> Iterator[None]:
    """Undo everything the block did to ``model`` if it raises: adapters, flags, head weights."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    attributes = {a: model.__dict__[a] for a in ("ranklab_config", "ranklab_task_names") if a in model.__dict__}
    try:
        yield
    except BaseException as error:
        if adapter_layers(model):
            remove_adapters(model)
        for attribute in ("ranklab_config", "ranklab_task_names"):
            model.__dict__.pop(attribute, None)
        model.__dict__.update(attributes)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(weights[name])
                p.requires_grad_(flags[name])
        if isinstance(error, Exception) and not isinstance(error, AdapterLoadError):
            raise AdapterLoadError(f"could not load the adapters ({type(error).__name__}: {error}); "
                                   "the model is unchanged") from error
        raise


def _check_selector(layer: nn.Module, selector: dict[str, Any]) -> None:
    valid = [n for n in inspect.signature(layer.factors).parameters if n != "self"]
    unknown = sorted(set(selector) - set(valid))
    if unknown:
        raise ValueError(f"unknown selector {unknown} for method {layer.config.method!r}; "
                         f"valid selectors: {', '.join(valid) or 'none'}")


def _head_tensors(model: nn.Module, config: Any, task: int | None) -> dict[str, torch.Tensor]:
    """Kept heads by their model names; per-task heads become task ``task``'s plain head."""
    tensors = {}
    for name, head in _head_modules(model, config).items():
        if isinstance(getattr(head, "heads", None), nn.ModuleList):  # ranklab.train.heads.TaskHeads
            if task is None:
                raise ValueError(f"{name} holds one head per task: pass task= to export one task's model")
            head = head.heads[task]
        for key, value in head.state_dict().items():
            tensors[f"base_model.model.{name}.{key}"] = value.detach().cpu().contiguous()
    return tensors


def _peft_own_method(model: nn.Module, config: Any, layers: dict[str, nn.Module], selector: dict[str, Any]) -> Any:
    """(PEFT config, tensors) of PEFT's own format where the method's layer offers one (VeRA), else None."""
    layer_class = type(next(iter(layers.values())))
    with torch.no_grad():
        exported = layer_class.peft_export(config, layers, shared_state(model))
    if exported is None:
        return None
    for layer in layers.values():
        _check_selector(layer, selector)
    peft_config, tensors = exported
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tensors.update(_head_tensors(model, config, selector.get("task")))
    return peft_config, tensors


def _write_peft(path: str | os.PathLike, peft_config: Any, tensors: dict[str, torch.Tensor]) -> Path:
    def write(tmp: Path) -> None:
        peft_config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})

    return write_folder(path, write)


def export_peft(model: nn.Module, path: str | os.PathLike, **selector: Any) -> Path:
    """Write a PEFT LoRA adapter equal to the (mergeable) ranklab adapters (or PEFT's own format
    where PEFT has the method and the layer offers it: VeRA).

    ``selector`` picks one static update where a method needs it (``rank=`` for DyLoRA, ``task=``
    for the rank router, a task name where the model knows its tasks).  Scaling is folded into B
    and ``lora_alpha`` equals each module's rank, so PEFT's scaling is 1 and the logits match.
    After multi-task training, ``task=t`` exports task t's head as the model's plain head, so the
    folder loads into a plain backbone.  PEFT wraps exactly the modules ranklab adapted.
    """
    from peft import LoraConfig as PeftLoraConfig

    config = getattr(model, "ranklab_config", None)
    if config is None:
        raise ValueError("this model has no ranklab adapters to export; call ranklab.attach(model, config) first")
    if "task" in selector:
        selector["task"] = task_index(model, selector["task"])
    layers = adapter_layers(model)
    own = _peft_own_method(model, config, layers, selector)
    if own is not None:
        return _write_peft(path, *own)
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    for name, layer in layers.items():
        if not layer.mergeable:
            raise ValueError(f"method {config.method!r} is input-dependent and has no static LoRA export")
        _check_selector(layer, selector)
        with torch.no_grad():
            lora_B, lora_A = layer.lora_factors(**selector)
        ranks[name] = lora_A.shape[0]
        tensors[f"base_model.model.{name}.lora_A.weight"] = lora_A.detach().cpu().contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = lora_B.detach().cpu().contiguous()
    tensors.update(_head_tensors(model, config, selector.get("task")))
    r = max(ranks.values())
    pattern = {name: rank for name, rank in ranks.items() if rank != r}
    peft_config = PeftLoraConfig(
        r=r, lora_alpha=r, rank_pattern=pattern, alpha_pattern=dict(pattern),
        target_modules=sorted(layers),  # exact names: a suffix could match modules ranklab never adapted
        modules_to_save=list(config.modules_to_save) or None, lora_dropout=config.dropout,
        # GPT-2's Conv1D: PEFT keeps lora_A (r x d_in), lora_B (d_out x r) and transposes when merging,
        # so the tensors are the same; the flag only says how W0 is stored (PEFT re-checks it per layer)
        fan_in_fan_out=all(layer.fan_in_fan_out for layer in layers.values()),
    )
    return _write_peft(path, peft_config, tensors)
