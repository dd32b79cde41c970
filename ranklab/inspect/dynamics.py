"""Rank dynamics: a training callback recording spectra and rank measures every N steps.

    tracker = RankDynamics(every=50)
    tracker(step, model)                     # from your own loop, after each optimizer step
    transformers.Trainer(..., callbacks=[tracker])   # or as a Hugging Face Trainer callback
    tracker.history                          # DataFrame: step, name, layer, module, measures
    tracker.spectra(name)                    # (n_records, q) singular values over time

In a Hugging Face ``Trainer`` it records at the start and every ``every`` global steps and does
nothing else; ``ranklab.integrations.RankDynamicsCallback`` also runs PEFT AdaLoRA's
``update_and_allocate`` and logs ranks, budget and gate statistics.

Works on any model ``model_factors`` understands (ranklab or PEFT LoRA/AdaLoRA); for AdaLoRA
the numerical rank follows the pruned rank pattern.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from .factors import adapted_modules, default_selectors, layer_index, module_factors, short_module_name
from .ranks import rank_measures
from .spectra import spectrum_from_factors


class RankDynamics:
    """Record every module's spectrum and rank measures at steps 0, every, 2*every, ...

    ``selector`` goes to every module's factors (e.g. ``{"rank": 4}`` for DyLoRA);
    ``tau``/``tol`` are those of ``energy_rank``/``numerical_rank``.
    """

    def __init__(self, every: int = 50, tau: float = 0.9, tol: float = 1e-6,
                 selector: dict[str, Any] | None = None) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.every = every
        self.tau = tau
        self.tol = tol
        self.selector = dict(selector or {})
        self.records: list[dict[str, Any]] = []

    def __call__(self, step: int, model: nn.Module) -> None:
        self.on_step(step, model)

    def on_step(self, step: int, model: nn.Module) -> None:
        """Record if ``step`` is a multiple of ``every`` (call it after each optimiser step)."""
        if step % self.every == 0:
            self.record(step, model)

    def record(self, step: int, model: nn.Module) -> None:
        """Record now, whatever the step."""
        modules = adapted_modules(model)
        if not modules:
            raise ValueError("model has no adapted modules (ranklab adapters or PEFT LoRA/AdaLoRA layers)")
        for name, module in modules.items():
            # with no selector, task-routed layers are recorded per task and token routers per expert
            for selector in [self.selector] if self.selector else default_selectors(module):
                sigma = spectrum_from_factors(module_factors(module, **selector)).cpu().double().numpy()
                self.records.append({
                    "step": int(step), "name": name, "layer": layer_index(name),
                    "module": short_module_name(name), "task": selector.get("task"), "expert": selector.get("expert"),
                    **rank_measures(sigma, tau=self.tau, tol=self.tol), "sigma": sigma,
                })

    @property
    def history(self) -> pd.DataFrame:
        """One row per (step, module[, task or expert]): step, name, layer, module, task, expert (<NA>
        unless the module is recorded per task / per expert), rank measures, delta_fro, sigma."""
        measures = list(rank_measures(np.ones(1)))  # every measure ranks.py defines, in its order
        columns = ["step", "name", "layer", "module", "task", "expert", *measures, "sigma"]
        frame = pd.DataFrame(self.records, columns=columns)
        for column in ("layer", "task", "expert"):
            frame[column] = frame[column].astype("Int64")
        return frame

    def spectra(self, name: str, task: int | None = None, expert: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps, sigma matrix n_records x q) of one module (one task / expert where recorded per task
        or per expert), for spectrum-over-time plots."""
        rows = [r for r in self.records if r["name"] == name and r["task"] == task and r["expert"] == expert]
        if not rows:
            recorded = sorted({(r["name"], r["task"], r["expert"]) for r in self.records}, key=str)
            raise ValueError(f"no records for {name!r} (task {task}, expert {expert}); recorded (name, task, expert): "
                             f"{recorded}")
        width = max(len(r["sigma"]) for r in rows)
        matrix = np.zeros((len(rows), width))
        for i, r in enumerate(rows):
            matrix[i, : len(r["sigma"])] = r["sigma"]
        return np.array([r["step"] for r in rows]), matrix

    # --- transformers.Trainer events (duck-typed: this module does not import transformers) -----
    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        if any(hasattr(m, "lora_E") for m in model.modules()):
            warnings.warn("RankDynamics only records: under transformers.Trainer nothing calls AdaLoRA's "
                          "update_and_allocate, so its ranks stay at init_r. Use "
                          "ranklab.integrations.RankDynamicsCallback, which records and allocates.", stacklevel=2)
        self.record(state.global_step, model)

    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        self.on_step(state.global_step, model)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):  # every other Trainer event (on_init_end, on_log, ...): nothing to do
            return _ignore_event
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _ignore_event(*args: Any, **kwargs: Any) -> None:
    return None
