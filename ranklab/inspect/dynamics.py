"""Rank dynamics: a training callback recording spectra and rank measures every N steps.

    tracker = RankDynamics(every=50)
    trainer.fit(..., callbacks=[tracker])   # the trainer calls tracker(step, model)
    tracker.history                          # DataFrame: step, name, layer, module, measures
    tracker.spectra(name)                    # (n_records, q) singular values over time

Works on any model ``model_factors`` understands (ranklab or PEFT LoRA/AdaLoRA); for AdaLoRA
the numerical rank follows the pruned rank pattern.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from .factors import adapted_modules, layer_index, module_factors, short_module_name
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
            sigma = spectrum_from_factors(module_factors(module, **self.selector)).cpu().double().numpy()
            self.records.append({
                "step": int(step), "name": name, "layer": layer_index(name),
                "module": short_module_name(name),
                **rank_measures(sigma, tau=self.tau, tol=self.tol), "sigma": sigma,
            })

    @property
    def history(self) -> pd.DataFrame:
        """One row per (step, module): step, name, layer, module, rank measures, delta_fro, sigma."""
        measures = list(rank_measures(np.ones(1)))  # every measure ranks.py defines, in its order
        columns = ["step", "name", "layer", "module", *measures, "sigma"]
        frame = pd.DataFrame(self.records, columns=columns)
        frame["layer"] = frame["layer"].astype("Int64")
        return frame

    def spectra(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, sigma matrix n_records x q) of one module, for spectrum-over-time plots."""
        rows = [r for r in self.records if r["name"] == name]
        if not rows:
            raise ValueError(f"no records for {name!r}; recorded: {sorted({r['name'] for r in self.records})}")
        width = max(len(r["sigma"]) for r in rows)
        matrix = np.zeros((len(rows), width))
        for i, r in enumerate(rows):
            matrix[i, : len(r["sigma"])] = r["sigma"]
        return np.array([r["step"] for r in rows]), matrix
