"""Experiment-tracker logging through Accelerate (``TrainConfig.report_to``, e.g. tensorboard).

Event files go to ``<output>/tracking/ranklab/``.  What is logged (tags):
- ``train/loss`` (mean over the last ``log_every`` steps) and ``train/lr``, every ``log_every`` steps;
- at every evaluation: ``eval/<task>/<metric>``, ``eval/score``, ``effective_rank/<module>`` (per
  task for task-routed adapters, ``.../task<t>``; router-averaged ΔW for token routers) and their
  mean ``effective_rank/mean``; for routers ``gate_entropy/<module>`` (per task for task routers,
  mean per-token entropy over the validation tokens, padding left out, for token routers) and
  ``gate_entropy/mean``;
- ``adalora/total_rank`` and ``adalora/rank/<module>`` whenever the AdaLoRA budget is recorded;
- ``test/<task>/<metric>`` at the end.
With ``report_to=None`` nothing here runs (no tracker, no probe, no spectra).
"""
from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..adapters.base import EXPERT_ROUTED, TASK_ROUTED
from ..inspect.factors import adapted_modules, module_factors
from ..inspect.probes import RouterProbe, router_layers
from ..inspect.ranks import effective_rank
from ..inspect.spectra import spectrum_from_factors

TRACKING_DIR = "tracking"
PROJECT = "ranklab"
_PEFT_PREFIX = "base_model.model."


def tracking_dir(output: str | Path) -> Path:
    """Where a run's event files are: ``<output>/tracking/ranklab``."""
    return Path(output) / TRACKING_DIR / PROJECT


def _short(name: str) -> str:
    return name[len(_PEFT_PREFIX):] if name.startswith(_PEFT_PREFIX) else name


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each probability vector along the last axis."""
    p = np.clip(np.asarray(probs, dtype=float), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


def _hparams(config: Any) -> dict[str, Any]:
    """The run's config as the flat scalars tensorboard's hparams take."""
    flat = {k: v for k, v in config.to_dict().items() if k != "adapter"}
    flat.update({f"adapter.{k}": v for k, v in config.adapter.items()})
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flat.items()}


def _selectors(module: nn.Module, gates: dict[str, torch.Tensor], name: str) -> dict[str, dict[str, Any]]:
    """Tag suffix -> selector under which the module's ΔW is one matrix (none: skip the module)."""
    caps = getattr(module, "capabilities", frozenset())
    if TASK_ROUTED in caps:
        return {f"/task{t}": {"task": t} for t in range(module.n_tasks)}
    if EXPERT_ROUTED in caps:
        return {"": {"gates": gates[name]}} if name in gates else {}
    return {"": {}}


def effective_ranks(model: nn.Module, gates: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """``effective_rank/<module>[/task<t>]`` of every adapted module (ranklab or PEFT), from its factors."""
    ranks = {}
    with torch.no_grad():
        for name, module in adapted_modules(model).items():
            for suffix, selector in _selectors(module, gates or {}, name).items():
                sigma = spectrum_from_factors(module_factors(module, **selector)).cpu().double().numpy()
                ranks[f"effective_rank/{_short(name)}{suffix}"] = effective_rank(sigma)
    if ranks:
        ranks["effective_rank/mean"] = float(np.mean(list(ranks.values())))
    return ranks


def gate_entropies(model: nn.Module, probe: RouterProbe | None) -> dict[str, float]:
    """``gate_entropy/<module>[/task<t>]``: task routers from their gates, token routers from the probe."""
    values = {}
    for name, layer in router_layers(model).items():
        if TASK_ROUTED in getattr(layer, "capabilities", frozenset()):
            with torch.no_grad():
                for t in range(layer.n_tasks):
                    values[f"gate_entropy/{_short(name)}/task{t}"] = float(entropy(layer.gate_probs(t).cpu().numpy()))
        elif probe is not None and any(r["name"] == name for r in probe.records):
            values[f"gate_entropy/{_short(name)}"] = float(entropy(probe.token_gates(name)).mean())
    if values:
        values["gate_entropy/mean"] = float(np.mean(list(values.values())))
    return values


class Tracker:
    """What the trainer logs to ``config.report_to``; every method is a no-op without one."""

    @staticmethod
    def accelerator_options(config: Any) -> dict[str, Any]:
        """``log_with`` and ``project_dir`` for Accelerator(...), checked before any work."""
        if config.report_to is None:
            return {}
        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError("report_to='tensorboard' needs the tensorboard package: pip install tensorboard")
        return {"log_with": config.report_to, "project_dir": str(Path(config.output) / TRACKING_DIR)}

    def __init__(self, config: Any, accelerator: Any, runtime: Any) -> None:
        self.config, self.accelerator, self.runtime = config, accelerator, runtime
        self.enabled = config.report_to is not None
        self.probe: RouterProbe | None = None
        self._loss_sum, self._loss_count = 0.0, 0
        if self.enabled:
            accelerator.init_trackers(PROJECT, config=_hparams(config))

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.enabled and values:
            self.accelerator.log(values, step=step)

    def log_step(self, step: int, loss: float, scheduler: Any) -> None:
        if not self.enabled:
            return
        self._loss_sum, self._loss_count = self._loss_sum + loss, self._loss_count + 1
        if step % self.config.log_every == 0:
            self.log({"train/loss": self._loss_sum / self._loss_count, "train/lr": float(scheduler.get_last_lr()[0])},
                     step)
            self._loss_sum, self._loss_count = 0.0, 0

    def log_metrics(self, step: int, prefix: str, metrics: dict[str, dict[str, float]]) -> None:
        self.log({f"{prefix}/{task}/{name}": float(value) for task, values in metrics.items()
                  for name, value in values.items()}, step)

    @contextlib.contextmanager
    def watching_gates(self, model: nn.Module) -> Iterator[None]:
        """Record token routers' gates during the block (the validation pass), padding masked."""
        token_routers = [n for n, m in router_layers(model).items()
                         if EXPERT_ROUTED in getattr(m, "capabilities", frozenset())] if self.enabled else []
        if not token_routers:
            self.probe = None
            yield
            return
        with RouterProbe(model, names=token_routers) as probe:
            yield
        self.probe = probe

    def log_eval(self, step: int, entry: dict[str, Any], model: nn.Module) -> None:
        if not self.enabled:
            return
        gates = self.probe.mean_gates() if self.probe is not None and self.probe.records else {}
        values = {"eval/score": float(entry["score"]), **effective_ranks(model, gates),
                  **gate_entropies(model, self.probe)}
        self.log(values, step)
        self.log_metrics(step, "eval", entry["metrics"])
        self.probe = None

    def log_budget(self, step: int, snapshot: dict[str, Any] | None) -> None:
        """AdaLoRA's rank pattern (``runtime.rank_snapshot``) as scalars."""
        if not self.enabled or not snapshot:
            return
        values = {"adalora/total_rank": float(snapshot["total"])}
        values.update({f"adalora/rank/{_short(n)}": float(r) for n, r in snapshot["per_module"].items()})
        self.log(values, step)

    def close(self) -> None:
        if self.enabled:
            self.accelerator.end_training()
