"""Audit a merge of PEFT LoRA adapters (``add_weighted_adapter``) before and after it is made.

Before: every pair of the adapters to merge, per module (``compare.compare_factors`` on their
scaled factors: cosine, principal angles), and for the combinations that vote on signs (ties,
dare_ties and their _svd forms) the share of entries whose signs disagree: in A and in B apart
for the non-SVD forms (PEFT combines A and B separately), in ΔW for the _svd forms.

After: the merge is made by PEFT itself, then per module the merged update ΔW_m = s_m B_m A_m is
set against the intended Σ w_i ΔW_i, exactly from the factors (a stacked factor pair, r x r Gram
traces): the relative error ‖ΔW_m − Σ w_i ΔW_i‖ / ‖Σ w_i ΔW_i‖, the merged update's rank and
spectrum, and why they differ:

- ``cat``: A and B are stacked, B_cat A_cat = Σ w_i s_i B_i A_i: exact (float precision);
- ``linear`` (and ties, dare, magnitude_prune): A and B are combined separately, so
  B_m A_m = Σ_i Σ_j √(w_i s_i w_j s_j) B_i A_j carries cross terms i ≠ j that nobody intended
  (PEFT issue #3013); the audit gives their size;
- ``svd`` forms: the intended sum truncated to the new rank; the audit gives the energy removed.
"""
from __future__ import annotations

import itertools
from typing import Any, Sequence

import pandas as pd
import torch

from ..compat import quiet_peft
from .compare import compare_factors
from .spectra import factored_svd

COMBINATIONS = ("linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd",
                "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd")
SIGN_VOTES = ("ties", "ties_svd", "dare_ties", "dare_ties_svd")
WHY = {"cat": "stacked A and B: the intended sum exactly",
       "linear": "A and B combined separately: cross terms B_i A_j (i != j) added",
       "svd": "the intended sum truncated to the new rank"}


def why(combination: str) -> str:
    """What makes a combination's merged update differ from the intended weighted sum."""
    if combination in ("cat", "linear", "svd"):
        return WHY[combination]
    if combination.endswith("svd"):
        return WHY["svd"] + ", after entries were trimmed or dropped"
    return "entries of A and B trimmed or dropped, then A and B combined separately (cross terms too)"


def _lora_modules(model: torch.nn.Module, adapters: Sequence[str]) -> dict[str, Any]:
    return {name: m for name, m in model.named_modules()
            if hasattr(m, "lora_A") and all(a in m.lora_A for a in adapters)}


def _scaled(module: Any, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(s B, A) of one adapter in a PEFT LoRA layer, float64."""
    return (module.lora_B[adapter].weight.detach().double() * module.scaling[adapter],
            module.lora_A[adapter].weight.detach().double())


def _dense(module: Any, adapter: str) -> torch.Tensor:
    left, right = _scaled(module, adapter)
    return left @ right


def _gram_norm(lefts: Sequence[torch.Tensor], rights: Sequence[torch.Tensor]) -> float:
    """‖Σ_k L_k R_k‖_F from the factors: stacked, then tr((L^T L)(R R^T))."""
    left, right = torch.cat(list(lefts), dim=1), torch.cat(list(rights), dim=0)
    return max(float(torch.trace((left.T @ left) @ (right @ right.T))), 0.0) ** 0.5


def compatibility(model: torch.nn.Module, adapters: Sequence[str], combination: str) -> pd.DataFrame:
    """Per pair of adapters and module: cosine and smallest principal angle of their updates, and
    (sign-voting combinations) the share of A and B entries whose signs disagree."""
    rows = []
    for name, module in _lora_modules(model, adapters).items():
        for a, b in itertools.combinations(adapters, 2):
            measures = compare_factors(_scaled(module, a), _scaled(module, b), name)
            row = {"module": name, "a": a, "b": b, "cosine": measures["cosine"],
                   "smallest column angle": min(measures["column_angles"], default=float("nan"))}
            if combination in SIGN_VOTES:  # the _svd forms vote on ΔW's entries (one module's, dense), the
                pairs = ({"ΔW": (_dense(module, a), _dense(module, b))} if combination.endswith("_svd") else  # others
                         {p: (getattr(module, f"lora_{p}")[a].weight.detach(), getattr(module, f"lora_{p}")[b].weight.detach())
                          for p in ("A", "B")})  # on A and B apart
                for part, (x, y) in pairs.items():
                    both = (x != 0) & (y != 0)
                    row[f"sign conflicts {part}"] = float(((torch.sign(x) != torch.sign(y)) & both).sum() / both.sum())
            rows.append(row)
    return pd.DataFrame(rows)


def merge_audit(model: torch.nn.Module, adapters: Sequence[str], weights: Sequence[float], combination: str,
                merged: str = "merged", **merge_options: Any) -> dict[str, pd.DataFrame]:
    """Make the merge with PEFT (``model.add_weighted_adapter``) and audit it: {"before":
    compatibility, "after": per module the relative error against Σ w_i ΔW_i, ranks, spectrum, why}."""
    if combination not in COMBINATIONS:
        raise ValueError(f"unknown combination {combination!r}; valid: {', '.join(COMBINATIONS)}")
    if len(adapters) < 2 or len(weights) != len(adapters):
        raise ValueError(f"give two or more adapters and one weight each, got {len(adapters)} adapters and "
                         f"{len(weights)} weights")
    known = list(getattr(model, "peft_config", {}))
    missing = [a for a in adapters if a not in known]
    if missing:
        raise ValueError(f"adapters {missing} are not in the model; it has {known}")
    if merged in known:
        raise ValueError(f"the model already has an adapter named {merged!r}; choose another name")
    before = compatibility(model, adapters, combination)
    with quiet_peft():
        model.add_weighted_adapter(list(adapters), list(weights), merged, combination_type=combination, **merge_options)
    rows = []
    for name, module in _lora_modules(model, [*adapters, merged]).items():
        parts = [_scaled(module, a) for a in adapters]
        intended_left = [w * left for w, (left, _) in zip(weights, parts)]
        intended_right = [right for _, right in parts]
        merged_left, merged_right = _scaled(module, merged)
        target = _gram_norm(intended_left, intended_right)
        error = _gram_norm([merged_left, *(-left for left in intended_left)], [merged_right, *intended_right])
        sigma = factored_svd([merged_left, merged_right]).S.double()
        rows.append({"module": name, "relative error": error / target if target > 0 else float("nan"),
                     "norm intended": target, "norm merged": float(sigma.norm()),
                     "merged rank": int((sigma > 1e-6 * sigma[0]).sum()) if len(sigma) and sigma[0] > 0 else 0,
                     "spectrum": [float(s) for s in sigma], "why": why(combination)})
    return {"before": before, "after": pd.DataFrame(rows)}


@torch.no_grad()
def reload_check(model: Any, merged: str, folder: str, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Save the merged adapter (PEFT ``save_pretrained``, atomically into ``folder``), load it into a
    fresh copy of the base with PEFT, and compare: rank and alpha patterns kept, rsLoRA scaling
    kept, and the largest logit difference on ``inputs`` against the in-memory merge; a folder PEFT
    cannot load back (its config and tensors disagree) is reported with PEFT's error, not raised."""
    import copy
    from pathlib import Path

    from peft import PeftModel

    from ..atomic import write_folder

    write_folder(folder, lambda staging: model.save_pretrained(str(staging), selected_adapters=[merged]))
    saved = Path(folder) / merged if (Path(folder) / merged).is_dir() else Path(folder)
    base = copy.deepcopy(model).unload()  # the plain base: every LoRA layer removed from the copy
    try:
        with quiet_peft():
            reloaded = PeftModel.from_pretrained(base, str(saved), adapter_name=merged).eval()
    except (RuntimeError, ValueError, KeyError) as error:  # the merged folder does not reload: say why
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return {"reloads": False, "reload error": " ".join(lines[:2])[:300], "folder": str(saved)}
    active = model.active_adapter
    model.set_adapter(merged)
    model.eval()
    try:
        ours, theirs = model(**inputs).logits, reloaded(**inputs).logits
    finally:
        model.set_adapter(active)
    config, again = model.peft_config[merged], reloaded.peft_config[merged]
    return {"reloads": True, "max logit difference": float((ours - theirs).abs().max()),
            "rank pattern kept": dict(config.rank_pattern or {}) == dict(again.rank_pattern or {}) and config.r == again.r,
            "alpha pattern kept": dict(config.alpha_pattern or {}) == dict(again.alpha_pattern or {})
            and config.lora_alpha == again.lora_alpha,
            "rslora kept": bool(config.use_rslora) == bool(again.use_rslora), "folder": str(saved)}
