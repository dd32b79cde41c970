"""Record router gate probabilities during forward passes.

Router layers (rank_router, mor, or any module following the same contract) pass their gates
through a ``hook_gates`` module (``ranklab.adapters.base.HookPoint``, an identity) in every
forward: (r,) gate probabilities for the current task (rank_router), (n_experts,) (task-level
MoR) or (batch, seq, n_experts) per token (token-level MoR).  The probe hooks those modules and
records each call's gates with the task id of ``ranklab.use_task`` (or None).

    with RouterProbe(model) as probe:
        for task, batch in batches:
            with ranklab.use_task(task):
                model(**batch)
    probe.gate_table()         # mean gate probability per module and task
    probe.token_gates(name)    # (n_tokens, n_experts) for token-level routers

Padding is left out of per-token gates by default: the probe reads the ``attention_mask`` each
forward pass of the probed model is given (``mask_padding=False`` keeps every token; setting
``probe.token_mask`` uses that mask instead).  The hooks are removed when the ``with`` block
ends, also when a forward pass raises.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..adapters.base import HookPoint
from ..context import current_task
from .factors import layer_index, short_module_name


def router_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules exposing their gates through a ``hook_gates`` HookPoint (router layers), by name."""
    return {name: m for name, m in model.named_modules() if isinstance(getattr(m, "hook_gates", None), HookPoint)}


def _as_samples(gates: torch.Tensor, mask: torch.Tensor | None) -> np.ndarray:
    """Gate tensor -> (n_samples, n_gates): one sample per task-level call or one per token."""
    gates = gates.detach().float().cpu()
    if gates.ndim == 1:
        return gates[None, :].numpy()
    if mask is not None and gates.ndim == 3 and tuple(mask.shape) == tuple(gates.shape[:2]):
        return gates[mask.detach().cpu().bool()].numpy()  # drop padding tokens
    return gates.reshape(-1, gates.shape[-1]).numpy()


def _attention_mask(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The attention mask of a forward call: ``attention_mask=`` or, transformers-style, the second
    positional argument when it has the shape of the first (input_ids)."""
    mask = kwargs.get("attention_mask")
    if mask is None and len(args) >= 2 and torch.is_tensor(args[0]) and torch.is_tensor(args[1]):
        mask = args[1] if args[1].shape == args[0].shape else None
    return mask


class RouterProbe:
    """Context manager recording every router layer's gates after each forward pass.

    Per-token gates leave out padding: by default the mask is the ``attention_mask`` of each
    forward pass of ``model`` (``mask_padding=False``: keep every token).  ``token_mask``: set it
    to a (batch, seq) mask before a forward pass to use that mask instead.
    """

    def __init__(self, model: nn.Module, names: list[str] | None = None, mask_padding: bool = True) -> None:
        layers = router_layers(model)
        if not layers:
            raise ValueError("model has no router layers (modules with a `hook_gates` HookPoint: methods rank_router, mor)")
        if names is not None:
            unknown = [n for n in names if n not in layers]
            if unknown:
                raise ValueError(f"not router layers: {unknown}; router layers: {', '.join(layers)}")
            layers = {n: layers[n] for n in names}
        self.layers = layers
        self.model = model
        self.mask_padding = mask_padding
        self.records: list[dict[str, Any]] = []
        self.token_mask: torch.Tensor | None = None
        self._call_mask: torch.Tensor | None = None  # attention mask of the model's current forward pass
        self._handles: list[Any] = []
        self._calls: dict[str, int] = {}  # forward calls seen per layer

    def _hook(self, name: str):
        def record(hook_point: nn.Module, args: tuple, gates: torch.Tensor) -> None:
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            mask = self.token_mask if self.token_mask is not None else self._call_mask
            self.records.append({
                "name": name, "layer": layer_index(name), "module": short_module_name(name),
                "task": current_task(), "call": call,
                "gates": _as_samples(gates, mask), "per_token": gates.ndim == 3,
            })
        return record

    def _capture_mask(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        self._call_mask = _attention_mask(args, kwargs) if self.mask_padding else None

    def __enter__(self) -> "RouterProbe":
        if self._handles:
            raise ValueError("this probe is already recording")
        for name, layer in self.layers.items():
            self._handles.append(layer.hook_gates.register_forward_hook(self._hook(name)))
        self._handles.append(self.model.register_forward_pre_hook(self._capture_mask, with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove all hooks (idempotent)."""
        while self._handles:
            self._handles.pop().remove()
        self._call_mask = None

    # --- results ------------------------------------------------------------------------------
    def gate_table(self, by: str = "task") -> pd.DataFrame:
        """Mean gate probability per module and group: one row each, columns gate_0..gate_{n-1}.

        ``by="task"`` groups by the task of ``ranklab.use_task`` (None when no task was set); ``by="call"`` by forward
        call of each layer; ``n_samples`` counts the averaged gate vectors (tokens or calls).
        """
        if by not in ("task", "call"):
            raise ValueError(f"by must be 'task' or 'call', got {by!r}")
        if not self.records:
            raise ValueError("nothing recorded: run forward passes inside `with RouterProbe(model) as probe:`")
        groups: dict[tuple, list[np.ndarray]] = {}
        meta: dict[tuple, dict[str, Any]] = {}
        for rec in self.records:
            key = (rec["name"], rec["task"] if by == "task" else rec["call"])
            groups.setdefault(key, []).append(rec["gates"])
            meta[key] = {"name": rec["name"], "layer": rec["layer"], "module": rec["module"], by: key[1]}
        rows = []
        for key, chunks in groups.items():
            samples = np.concatenate(chunks, axis=0)
            row = dict(meta[key], n_samples=len(samples))
            row.update({f"gate_{i}": float(v) for i, v in enumerate(samples.mean(axis=0))})
            rows.append(row)
        frame = pd.DataFrame(rows)
        frame["layer"] = frame["layer"].astype("Int64")
        return frame

    def mean_gates(self, task: int | None = None) -> dict[str, torch.Tensor]:
        """Mean recorded gate vector per module (optionally of one task), for router-averaged spectra:
        ``model_report(model, per_module={n: {"gates": g} for n, g in probe.mean_gates().items()})``.
        """
        names = dict.fromkeys(r["name"] for r in self.records)
        if not names:
            raise ValueError("nothing recorded: run forward passes inside `with RouterProbe(model) as probe:`")
        return {n: torch.from_numpy(self.token_gates(n, task).mean(axis=0)) for n in names}

    def token_gates(self, name: str, task: int | None = None) -> np.ndarray:
        """All recorded gate vectors of one module (optionally one task) as (n_samples, n_gates)."""
        chunks = [r["gates"] for r in self.records if r["name"] == name and (task is None or r["task"] == task)]
        if not chunks:
            recorded = sorted({r["name"] for r in self.records})
            raise ValueError(f"no gates recorded for {name!r} (task {task}); recorded modules: {recorded}")
        return np.concatenate(chunks, axis=0)


def _has_task_gates(layer: nn.Module, tasks: list[int]) -> bool:
    if not callable(getattr(layer, "gate_probs", None)) or not tasks:
        return False
    try:  # MoR's token router has gate_probs but raises: it has no per-task gates
        layer.gate_probs(tasks[0])
    except ValueError:
        return False
    return True


def router_summary(model: nn.Module, tasks: list[int]) -> pd.DataFrame:
    """Static per-task router state of rank routers: chosen rank and gate probabilities.

    Uses the layers' ``gate_probs(task)`` and, if present, ``chosen_rank(task)``; no forward pass.
    """
    layers = {n: m for n, m in router_layers(model).items() if _has_task_gates(m, tasks)}
    if not layers:
        raise ValueError("model has no task-level router layers (modules with gate_probs(task))")
    rows = []
    with torch.no_grad():
        for name, layer in layers.items():
            for task in tasks:
                probs = layer.gate_probs(task).detach().float().cpu().numpy()
                row = {"name": name, "layer": layer_index(name), "module": short_module_name(name), "task": task}
                if hasattr(layer, "chosen_rank"):
                    row["chosen_rank"] = int(layer.chosen_rank(task))
                row.update({f"gate_{i}": float(v) for i, v in enumerate(probs)})
                rows.append(row)
    frame = pd.DataFrame(rows)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame
