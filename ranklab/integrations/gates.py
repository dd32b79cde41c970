"""Running statistics of router gates seen in training forward passes, for a Trainer's logs.

``GateMonitor(model)`` hooks every router layer's ``hook_gates`` (see ``ranklab.inspect.probes``)
and keeps O(1) running sums per module (no gate tensors are stored, unlike ``RouterProbe``):
the mean gate vector and the mean entropy of the gate distributions since the last ``reset``.
Padding tokens are left out of per-token gates: a pre-hook on the model reads the batch's
``attention_mask`` (the Trainer passes inputs as keyword arguments).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..adapters.base import RANK_CHOOSING
from ..inspect.probes import router_layers


class GateMonitor:
    """Sum gate vectors and their entropies over training forward passes, per router module."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = router_layers(model)
        if not self.layers:
            raise ValueError("model has no router layers (modules with a `hook_gates` HookPoint: rank_router, mor, moelora)")
        self._mask: torch.Tensor | None = None
        self._sums: dict[str, torch.Tensor] = {}
        self._entropy: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self._handles = [model.register_forward_pre_hook(self._read_mask, with_kwargs=True)]
        for name, layer in self.layers.items():
            self._handles.append(layer.hook_gates.register_forward_hook(self._hook(name, layer)))

    def _read_mask(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        self._mask = mask.detach() if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None

    def _hook(self, name: str, layer: nn.Module):
        def record(hook_point: nn.Module, args: tuple, gates: torch.Tensor) -> None:
            if not layer.training:  # evaluation passes are not training statistics
                return
            samples = gates.detach().float()
            if samples.ndim == 3 and self._mask is not None and tuple(self._mask.shape) == tuple(samples.shape[:2]):
                samples = samples[self._mask.bool()]
            samples = samples.reshape(-1, samples.shape[-1])
            entropy = -(samples * torch.log(samples.clamp_min(1e-12))).sum(-1)
            self._sums[name] = self._sums.get(name, 0) + samples.sum(0).cpu()
            self._entropy[name] = self._entropy.get(name, 0.0) + float(entropy.sum())
            self._count[name] = self._count.get(name, 0) + samples.shape[0]
        return record

    def metrics(self, task_names: list[str] | None = None) -> dict[str, float]:
        """Means over router modules since the last reset (empty if no training forward ran).

        ``router/entropy``: mean entropy (nats) of one gate distribution; ``router/entropy_max`` is
        log(n_gates), a uniform gate.  ``router/max_load``: the largest mean gate (1/n_gates when
        every expert or rank gets the same share, 1 when one takes everything).  For layers that
        choose ranks per task, ``router/chosen_rank/<task>``: the rank the task uses, mean over modules
        (tasks named by ``task_names`` where given, else ``task0``, ``task1``, ...).
        """
        names = [n for n in self.layers if self._count.get(n)]
        out: dict[str, float] = {}
        if names:
            means = [self._sums[n] / self._count[n] for n in names]
            out["router/entropy"] = sum(self._entropy[n] / self._count[n] for n in names) / len(names)
            out["router/entropy_max"] = sum(math.log(m.numel()) for m in means) / len(means)
            out["router/max_load"] = float(sum(float(m.max()) for m in means) / len(means))
        choosing = [la for la in self.layers.values() if RANK_CHOOSING in getattr(la, "capabilities", ())]
        if choosing:
            for task in range(min(la.n_tasks for la in choosing)):
                label = task_names[task] if task_names and task < len(task_names) else f"task{task}"
                out[f"router/chosen_rank/{label}"] = sum(la.chosen_rank(task) for la in choosing) / len(choosing)
        return out

    def reset(self) -> None:
        self._sums, self._entropy, self._count = {}, {}, {}

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        while self._handles:
            self._handles.pop().remove()
