"""Compress a trained adapter: truncate every module's update to its energy rank and export a PEFT LoRA.

    result = compress_adapter(model, "runs/emd-compressed", tau=0.9, eval_batches=batches)
    result.table       # per module: rank before / after, energy kept, parameters before / after
    result.metrics     # loss and accuracy before, after and the change, on eval_batches
    compress_adapter("my-peft-adapter", "my-peft-adapter-r90", tau=0.9)   # a folder: no base needed

For each module ΔW = U diag(S) V^T is computed from the factors (QR + a small SVD, exact; never a
dense SVD), k = energy rank at ``tau`` (the fewest singular values holding a share tau of
||ΔW||_F^2) and ΔW_k = U_k diag(S_k) V_k^T, the best rank-k approximation (Eckart-Young).  The
export is a PEFT LoRA with ``rank_pattern`` = each module's k and ``alpha_pattern`` = k, so PEFT's
scaling is 1 and B = U_k diag(S_k), A = V_k^T hold the update exactly.  DECISION: a module whose
update is zero keeps rank 1 with B = 0 (PEFT needs r >= 1 for every targeted module).
"""
from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from .atomic import write_folder
from .context import use_task
from .inspect.factors import adapted_modules, adapter_param_count, layer_index, module_factors, short_module_name
from .inspect.ranks import energy_rank, numerical_rank
from .inspect.spectra import factored_svd

PEFT_PREFIX = "base_model.model."
_LORA_BIAS = ("{source} is a PEFT LoRA with lora_bias=True: compression writes a truncated plain LoRA and would drop "
              "each module's bias update, so it refuses (ranklab inspect audits it)")


@dataclass
class TruncatedModule:
    name: str  # the name in the base model (no PEFT prefix)
    left: torch.Tensor  # U_k diag(S_k): d_out x k (ΔW is d_out x d_in, also for Conv1D-style layers)
    right: torch.Tensor  # V_k^T: k x d_in
    fan_in_fan_out: bool = False  # PEFT Conv1D-style: the stored weight W0 is d_in x d_out

    def lora(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lora_B, lora_A) as PEFT stores them: nn.Linear's layout for Conv1D-style layers too."""
        return self.left, self.right


@dataclass
class Compression:
    tau: float
    modules: dict[str, TruncatedModule]
    table: pd.DataFrame
    heads: dict[str, torch.Tensor] = field(default_factory=dict)  # kept heads, as PEFT keys
    modules_to_save: list[str] = field(default_factory=list)
    peft_options: dict[str, Any] = field(default_factory=dict)  # task_type, base_model_name_or_path
    metrics: dict[str, dict[str, float]] | None = None
    path: Path | None = None

    def export(self, path: str | os.PathLike) -> Path:
        """Write the truncated adapter as a PEFT LoRA folder (atomically)."""
        from peft import LoraConfig

        ranks = {name: m.left.shape[1] for name, m in self.modules.items()}
        r = max(ranks.values())
        pattern = {name: k for name, k in ranks.items() if k != r}
        config = LoraConfig(r=r, lora_alpha=r, rank_pattern=pattern, alpha_pattern=dict(pattern),
                            target_modules=sorted(ranks), modules_to_save=self.modules_to_save or None,
                            fan_in_fan_out=any(m.fan_in_fan_out for m in self.modules.values()), **self.peft_options)
        tensors = dict(self.heads)
        for name, module in self.modules.items():
            lora_b, lora_a = module.lora()
            tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = lora_a.float().contiguous()
            tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = lora_b.float().contiguous()

        def write(tmp: Path) -> None:
            from safetensors.torch import save_file

            config.save_pretrained(str(tmp))
            save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})

        self.path = write_folder(path, write)
        return self.path

    def apply(self, model: nn.Module) -> nn.Module:
        """A plain copy of ``model`` (adapters removed, heads kept) whose weights are W0 + ΔW_k."""
        plain = _without_adapters(copy.deepcopy(model))
        with torch.no_grad():
            for name, module in self.modules.items():
                weight = plain.get_submodule(name).weight
                delta = module.left @ module.right
                weight += (delta.T if module.fan_in_fan_out else delta).to(weight.dtype)  # W0's storage layout
        return plain


def _without_adapters(model: nn.Module) -> nn.Module:
    from .attach import adapter_layers, remove_adapters

    if adapter_layers(model):
        return remove_adapters(model)
    if hasattr(model, "unload"):  # PEFT: the base model, trained modules_to_save heads in place
        return model.unload()
    raise ValueError("the model has no ranklab or PEFT adapters to compress")


def _truncate(factors: list[torch.Tensor], tau: float, tol: float) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    svd = factored_svd([f.detach().float() for f in factors], compute_uv=True)
    sigma = svd.S.double().cpu().numpy()
    k = max(1, energy_rank(sigma, tau))
    energy = float((sigma[:k] ** 2).sum() / (sigma ** 2).sum()) if sigma.size and sigma[0] > 0 else 1.0
    if not sigma.size:  # a module pruned to rank 0 (AdaLoRA): a zero rank-1 update
        left, right = torch.zeros(factors[0].shape[0], 1), torch.zeros(1, factors[-1].shape[1])
        right[0, 0] = 1.0
    else:
        left, right = svd.U[:, :k] * svd.S[:k], svd.V[:, :k].T
    stats = {"rank_before": numerical_rank(sigma, tol), "rank_after": k, "energy_kept": energy}
    return left.detach().cpu(), right.detach().cpu(), stats


def truncate(source: nn.Module | str | os.PathLike, tau: float = 0.9, tol: float = 1e-6, **selector: Any) -> Compression:
    """Truncate every adapted module of a model (ranklab or PEFT) or a saved adapter folder to its energy rank."""
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    entries = _model_entries(source, selector) if isinstance(source, nn.Module) else _folder_entries(source, selector)
    modules, rows = {}, []
    for name, factors, fan_in_fan_out, params in entries["modules"]:
        left, right, stats = _truncate(factors, tau, tol)
        modules[name] = TruncatedModule(name, left, right, fan_in_fan_out)
        d_out, d_in = factors[0].shape[0], factors[-1].shape[1]
        rows.append({"name": name, "layer": layer_index(name), "module": short_module_name(name), "d_out": d_out,
                     "d_in": d_in, **stats, "params_before": params, "params_after": stats["rank_after"] * (d_in + d_out)})
    table = pd.DataFrame(rows)
    table["layer"] = table["layer"].astype("Int64")
    return Compression(tau=tau, modules=modules, table=table, heads=entries["heads"],
                       modules_to_save=entries["modules_to_save"], peft_options=entries["peft_options"])


def _model_entries(model: nn.Module, selector: dict[str, Any]) -> dict[str, Any]:
    from .attach import adapter_layers
    from .saving import _head_tensors

    modules = adapted_modules(model)
    if not modules:
        raise ValueError("the model has no adapted modules (ranklab adapters or PEFT LoRA/AdaLoRA layers)")
    config = getattr(model, "ranklab_config", None)
    if adapter_layers(model):
        if "task" in selector:
            from .context import task_index

            selector = {**selector, "task": task_index(model, selector["task"])}
        entries = [(name, module_factors(m, **selector), False, m.num_adapter_params()) for name, m in modules.items()]
        return {"modules": entries, "heads": _head_tensors(model, config, selector.get("task")),
                "modules_to_save": list(config.modules_to_save), "peft_options": {}}
    return _peft_model_entries(model, modules, selector)


def _peft_model_entries(model: nn.Module, modules: dict[str, nn.Module], selector: dict[str, Any]) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    peft_config = model.peft_config[selector.get("adapter") or model.active_adapter]
    if getattr(peft_config, "lora_bias", False):
        raise ValueError(_LORA_BIAS.format(source="the model"))
    entries = [(name.removeprefix(PEFT_PREFIX), module_factors(m, **selector), bool(getattr(m, "fan_in_fan_out", False)),
                adapter_param_count(m, selector.get("adapter"))) for name, m in modules.items()]
    heads = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items() if "lora_" not in k}
    options = {"task_type": peft_config.task_type, "base_model_name_or_path": peft_config.base_model_name_or_path}
    return {"modules": entries, "heads": heads, "modules_to_save": list(peft_config.modules_to_save or []),
            "peft_options": options}


def _folder_entries(path: str | os.PathLike, selector: dict[str, Any]) -> dict[str, Any]:
    from .inspect.adapter_files import read_adapter

    saved = read_adapter(path)
    if saved.config.get("lora_bias"):
        raise ValueError(_LORA_BIAS.format(source=saved.path))
    needs_base = next((m.needs_base for m in saved.modules.values() if m.needs_base), None)
    if needs_base:
        raise ValueError(f"{saved.path} is {needs_base}: a truncated plain LoRA on the original base cannot "
                         "represent it, so compression refuses (ranklab inspect --base audits it)")
    n_tasks = (saved.config.get("n_tasks") or 0) if saved.format == "ranklab" else 0
    if n_tasks > 1 and "task" not in selector and any("task" in sel for m in saved.modules.values()
                                                       for sel in m.selectors()):
        raise ValueError(f"{saved.path} is a {saved.config.get('method')} adapter with {n_tasks} tasks, one update per "
                         f"task: pass --task N (task= in Python), N in 0..{n_tasks - 1}, to compress that task's update")
    entries, heads, keep = [], {}, []
    for name, module in saved.modules.items():
        entries.append((name.removeprefix(PEFT_PREFIX), module.factors(**selector),
                        bool(saved.config.get("fan_in_fan_out")), module.params))
    if saved.format == "ranklab":
        heads, keep = _ranklab_folder_heads(saved.path, saved.config, selector.get("task"))
        options = {}
    else:
        from .inspect.adapter_files import _peft_weights

        heads = {k: v for k, v in _peft_weights(saved.path).items() if "lora_" not in k}
        keep = list(saved.config.get("modules_to_save") or [])
        options = {"task_type": saved.task_type, "base_model_name_or_path": saved.base_name}
        if saved.config.get("alora_invocation_tokens"):  # an activated LoRA stays one
            options["alora_invocation_tokens"] = list(saved.config["alora_invocation_tokens"])
    return {"modules": entries, "heads": heads, "modules_to_save": keep, "peft_options": options}


def _ranklab_folder_heads(path: Path, config: Mapping[str, Any], task: int | None) -> tuple[dict, list[str]]:
    from .saving import _read_weights, _task_head_state

    keep = list(config.get("modules_to_save") or [])
    state = _read_weights(path)
    for head in keep:
        state = _task_head_state(state, head, task)
        if any(k.startswith(f"{head}.heads.") for k in state):
            raise ValueError(f"{head} holds one head per task: pass task= to compress one task's model")
    heads = {f"{PEFT_PREFIX}{k}": v for k, v in state.items() if any(k.startswith(h + ".") for h in keep)}
    return heads, keep


def evaluate(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], task: int | str | None = None
             ) -> dict[str, float]:
    """Mean loss and accuracy over ``batches`` (dicts with ``labels``): argmax accuracy for classifiers,
    next-token accuracy (labels shifted, -100 ignored) for causal LMs; NaN accuracy for regression."""
    model.eval()
    loss_sum, n_loss, correct, counted = 0.0, 0, 0, 0
    causal = any("CausalLM" in type(m).__name__ for m in (model, getattr(getattr(model, "base_model", None), "model", None)))
    with torch.no_grad(), use_task(task, model=model) if task is not None else contextlib.nullcontext():
        for batch in batches:
            out = model(**batch)
            labels, logits = batch["labels"], out.logits
            size = labels.shape[0]
            loss_sum, n_loss = loss_sum + float(out.loss) * size, n_loss + size
            if causal:
                logits, labels = logits[:, :-1], labels[:, 1:]
            if logits.shape[-1] > 1:  # one output is a regression: no accuracy
                keep = labels != -100
                correct += int((logits.argmax(-1) == labels)[keep].sum())
                counted += int(keep.sum())
    return {"loss": loss_sum / max(n_loss, 1), "accuracy": correct / counted if counted else float("nan")}


def compress_adapter(source: nn.Module | str | os.PathLike, path: str | os.PathLike | None = None, tau: float = 0.9,
                     eval_batches: Iterable[Mapping[str, torch.Tensor]] | None = None, tol: float = 1e-6,
                     **selector: Any) -> Compression:
    """Truncate to the energy rank, export a PEFT LoRA to ``path`` (if given) and, with a model and
    ``eval_batches``, report loss and accuracy before and after (``metrics["change"]`` = after - before)."""
    result = truncate(source, tau=tau, tol=tol, **selector)
    if path is not None:
        result.export(path)
    if eval_batches is not None:
        if not isinstance(source, nn.Module):
            raise ValueError("evaluating needs the model: pass the trained model, not a folder, with eval_batches")
        batches = list(eval_batches)
        task = selector.get("task")
        compressed = result.apply(source)
        if task is not None:  # a task name resolves through the model's task names
            compressed.ranklab_task_names = getattr(source, "ranklab_task_names", None)
        before, after = evaluate(source, batches, task), evaluate(compressed, batches, task)
        result.metrics = {"before": before, "after": after,
                          "change": {k: after[k] - before[k] for k in before if np.isfinite(before[k])}}
    return result
