"""A ``transformers.TrainerCallback`` for rank dynamics, PEFT AdaLoRA's budget and router gates.

    callback = RankDynamicsCallback(every=10)
    trainer = Trainer(model=peft_model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    callback.history          # spectra and rank measures every 10 steps (ranklab.inspect.RankDynamics)
    callback.budget_history   # AdaLoRA: kept rank per module at the same steps
    callback.budget_totals    # AdaLoRA: (step, total kept rank) after every optimizer step

It works on any model ``ranklab.inspect`` reads (PEFT LoRA/AdaLoRA, ranklab adapters).  With PEFT
AdaLoRA it calls ``update_and_allocate(state.global_step)`` in ``on_optimizer_step``: the
Trainer (transformers 4.41+) fires that event after ``optimizer.step()`` and before the scheduler
step and ``model.zero_grad()``, which is where PEFT's docstring puts the call (the allocator
scores each parameter by |p * grad|, so the gradients must still be there), and where PEFT's own
``AdamssAsaCallback`` makes the same call.  Without it the plain Trainer never prunes and the ranks
stay at ``init_r`` (peft#1801, peft#1327).  ``state.global_step`` there counts the finished
steps (0 at the first), as the step index of PEFT's example loop.

``on_log`` adds rank measures, the AdaLoRA budget and router gate statistics to the Trainer's
``logs`` dict and to ``state.log_history``.  Callbacks run in list order and the Trainer puts the
``report_to`` trackers before the user's callbacks: ``callback.attach_to(trainer)`` puts this one
first, so TensorBoard / W&B receive the same numbers.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from torch import nn
from transformers import TrainerCallback

from ..inspect.dynamics import RankDynamics
from ..inspect.factors import adapted_modules, default_selectors, module_factors, short_module_name
from ..inspect.probes import router_layers
from ..inspect.ranks import rank_measures
from ..inspect.spectra import spectrum_from_factors
from .gates import GateMonitor


def adalora_model(model: nn.Module) -> Any | None:
    """PEFT's ``AdaLoraModel`` inside ``model`` (a ``PeftModel`` or the tuner itself); None if no AdaLoRA."""
    for candidate in (model, getattr(model, "base_model", None)):
        if candidate is not None and hasattr(candidate, "rankallocator") and callable(
                getattr(candidate, "update_and_allocate", None)):
            return candidate
    if any(hasattr(m, "lora_E") for m in model.modules()):
        raise ValueError(
            "this model holds PEFT AdaLoRA layers but no AdaLoraModel (it was added with model.add_adapter or "
            "inject_adapter_in_model), so nothing can allocate AdaLoRA's rank budget (peft#3373): "
            "build it with peft.get_peft_model(model, AdaLoraConfig(...)), or pass adalora=False to only record")
    return None


def schedule_problems(config: Any, max_steps: int) -> list[str]:
    """Why an AdaLoRA schedule would not end at ``target_r`` in a run of ``max_steps`` (empty: it will)."""
    total, tinit, tfinal = config.total_step, config.tinit, config.tfinal
    problems = []
    if max_steps > 0 and max_steps < total - tfinal:
        problems.append(f"the Trainer runs {max_steps} steps but AdaLoRA fixes its final budget at step "
                        f"total_step - tfinal = {total - tfinal}: the ranks will not reach target_r={config.target_r}. "
                        f"Set AdaLoraConfig(total_step={max_steps}) (the Trainer's state.max_steps)")
    elif max_steps > 0 and total != max_steps:
        problems.append(f"AdaLoraConfig.total_step={total} but the Trainer runs {max_steps} steps; "
                        "the budget schedule follows total_step")
    if tfinal == 0:
        problems.append("AdaLoraConfig.tfinal=0: PEFT fixes the final budget at step total_step, after the last "
                        "step (steps count from 0), so the last allocation stays just above target_r; use tfinal >= 1")
    if tinit >= total - tfinal:
        problems.append(f"tinit={tinit} >= total_step - tfinal = {total - tfinal}: no step is left to reduce the budget")
    return problems


def kept_ranks(adalora: Any) -> dict[str, int]:
    """Rank each AdaLoRA module keeps now: PEFT's rank pattern, or init_r before the first allocation."""
    name = adalora.trainable_adapter_name
    pattern = adalora.peft_config[name].rank_pattern
    if pattern:
        return {key.split(".lora_E", 1)[0]: int(sum(mask)) for key, mask in pattern.items()}
    return {n.split(".lora_E", 1)[0]: int(p.shape[0]) for n, p in adalora.model.named_parameters()
            if ".lora_E." in n and n.endswith(name)}


def rank_metrics(model: nn.Module, tau: float = 0.9, tol: float = 1e-6, per_module: bool = False,
                 **selector: Any) -> dict[str, float]:
    """Effective rank (mean, min, max), mean energy rank and total numerical rank over adapted modules
    (task-routed ranklab layers count once per task, token routers once per expert, unless ``selector``)."""
    rows = {}
    for name, module in adapted_modules(model).items():
        for chosen in [selector] if selector else default_selectors(module):
            suffix = "".join(f"/{k}{v}" for k, v in chosen.items() if not selector)
            sigma = spectrum_from_factors(module_factors(module, **chosen))
            rows[name + suffix] = rank_measures(sigma, tau=tau, tol=tol)
    if not rows:
        return {}
    effective = np.array([r["effective_rank"] for r in rows.values()])
    out = {"rank/effective_mean": float(effective.mean()), "rank/effective_min": float(effective.min()),
           "rank/effective_max": float(effective.max()),
           "rank/energy_mean": float(np.mean([r["energy_rank"] for r in rows.values()])),
           "rank/numerical_total": float(sum(r["numerical_rank"] for r in rows.values()))}
    if per_module:
        out.update({f"rank/effective/{name}": float(r["effective_rank"]) for name, r in rows.items()})
    return out


class RankDynamicsCallback(TrainerCallback):
    """Record rank dynamics, run AdaLoRA's allocation and log ranks, budget and gates in a HF Trainer.

    ``every``: record spectra every ``every`` optimizer steps (and at the start and the end).
    ``tau``/``tol``/``selector``: as in ``ranklab.inspect.RankDynamics``.  ``adalora``: call PEFT
    AdaLoRA's ``update_and_allocate`` (set False if your own code already calls it).
    ``log_modules``: also log every module's effective rank (one key per module).  ``gates``:
    log router gate statistics of ranklab's router adapters (rank_router, mor, moelora).
    """

    def __init__(self, every: int = 50, tau: float = 0.9, tol: float = 1e-6, selector: dict[str, Any] | None = None,
                 adalora: bool = True, log_modules: bool = False, gates: bool = True) -> None:
        self.dynamics = RankDynamics(every=every, tau=tau, tol=tol, selector=selector)
        self.adalora, self.log_modules, self.gates = adalora, log_modules, gates
        self.budget_records: list[dict[str, Any]] = []  # AdaLoRA: kept rank per module at recorded steps
        self.budget_totals: list[tuple[int, int]] = []  # AdaLoRA: (steps done, total kept rank) every step
        self._adalora: Any | None = None
        self._monitor: GateMonitor | None = None
        self._last_recorded: int | None = None
        self._names: dict[str, str] = {}

    # --- results ------------------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """One row per (recorded step, module): rank measures and sigma (see ``RankDynamics.history``)."""
        return self.dynamics.history

    def spectra(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.dynamics.spectra(name)

    @property
    def budget_history(self) -> pd.DataFrame:
        """AdaLoRA: one row per (recorded step, module) with the rank it keeps (steps count finished steps)."""
        return pd.DataFrame(self.budget_records, columns=["step", "name", "module", "rank"])

    def attach_to(self, trainer: Any) -> Any:
        """Put this callback first in ``trainer``'s list, so the ``report_to`` trackers log its metrics too."""
        handler = trainer.callback_handler
        handler.callbacks = [self] + [c for c in handler.callbacks if c is not self]
        return trainer

    # --- Trainer events -----------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        if not adapted_modules(model):
            raise ValueError("RankDynamicsCallback: the model has no adapted modules (PEFT LoRA/AdaLoRA or ranklab adapters)")
        self._adalora = adalora_model(model) if self.adalora else None
        # PEFT names modules inside the tuner; report them by the model's names, as the spectra are
        self._names = {name.split("base_model.model.", 1)[-1]: name for name in adapted_modules(model)}
        if self._adalora is not None:
            config = self._adalora.peft_config[self._adalora.trainable_adapter_name]
            for problem in schedule_problems(config, state.max_steps):
                warnings.warn(f"RankDynamicsCallback: {problem}", stacklevel=2)
        if self.gates and router_layers(model) and self._monitor is None:
            self._monitor = GateMonitor(model)
        self._record(state.global_step, model)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # after optimizer.step(), before zero_grad: AdaLoRA scores parameters with their gradients
        if self._adalora is not None:
            self._adalora.update_and_allocate(state.global_step)
            self.budget_totals.append((state.global_step + 1, sum(kept_ranks(self._adalora).values())))

    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        if state.global_step % self.dynamics.every == 0:
            self._record(state.global_step, model)

    def on_train_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        self._record(state.global_step, model)  # the final state, whatever ``every`` is
        if self._monitor is not None:
            self._monitor.remove()
            self._monitor = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               model: nn.Module | None = None, **kwargs: Any) -> None:
        if logs is None or model is None or any(k.startswith("eval_") for k in logs):
            return  # evaluation logs carry evaluation metrics only
        metrics = self.metrics(model, state.global_step)
        logs.update(metrics)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)  # the Trainer appended a copy of logs before calling us

    def metrics(self, model: nn.Module, step: int) -> dict[str, float]:
        """What ``on_log`` adds: rank measures, AdaLoRA budget, gate statistics since the last log."""
        d = self.dynamics
        out = rank_metrics(model, d.tau, d.tol, self.log_modules, **d.selector)
        if self._adalora is not None:
            allocator = self._adalora.rankallocator
            out["adalora/budget"] = float(sum(kept_ranks(self._adalora).values()))
            out["adalora/target_budget"] = float(allocator.target_bgt)
            out["adalora/scheduled_budget"] = float(allocator.budget_schedule(step)[0])
        if self._monitor is not None:
            out.update(self._monitor.metrics(getattr(model, "ranklab_task_names", None)))
            self._monitor.reset()
        return out

    def _record(self, step: int, model: nn.Module) -> None:
        if step == self._last_recorded:
            return
        self.dynamics.record(step, model)
        self._last_recorded = step
        if self._adalora is not None:
            self.budget_records += [
                {"step": step, "name": self._names.get(key, key), "module": short_module_name(key), "rank": rank}
                for key, rank in kept_ranks(self._adalora).items()]
