"""How an adapter moved over training, read afterwards from its saved checkpoints (``ranklab checkpoints``).

A training output folder holds ``checkpoint-<step>/`` folders (the Hugging Face Trainer's, each a
PEFT adapter; or any adapter folders so named, e.g. ``ranklab.export_peft`` at some steps).  For
every checkpoint: each module's rank measures (the audit's, from the factors: what
``RankDynamics`` records during training); between consecutive checkpoints and against the final
one: the measures of ``ranklab.inspect.compare`` (cosine, relative distance, phi).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .adapter_files import read_adapter
from .compare import adapter_modules, compare_factors
from .factors import layer_index, short_module_name
from .ranks import rank_measures
from .spectra import factored_svd

CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def find_checkpoints(folder: str | Path) -> dict[int, Path]:
    """step -> folder of every ``checkpoint-<step>`` under ``folder``, in step order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; give a training output folder holding checkpoint-<step>/ folders")
    found = {int(m.group(1)): p for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT.fullmatch(p.name))}
    if len(found) < 2:
        raise ValueError(f"{folder} holds {len(found)} checkpoint-<step>/ folder(s); drift needs at least two "
                         f"(it holds {sorted(p.name for p in folder.iterdir())[:6]})")
    return dict(sorted(found.items()))


def _factors(adapter: Any) -> dict[str, list]:
    """Module key (as ``compare`` names it) -> factors, one entry per task / expert of routed layers."""
    return {key: module.factors(**selector) for key, (module, selector) in adapter_modules(adapter).items()}


def checkpoint_drift(folder: str | Path, tau: float = 0.9, tol: float = 1e-6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranks, drift): per checkpoint and module its rank measures; per checkpoint and module its
    cosine, relative distance and phi against the previous checkpoint and against the final one.
    Only two checkpoints' factors are held at a time (plus the final one's)."""
    checkpoints = find_checkpoints(folder)
    steps = list(checkpoints)
    final = _factors(read_adapter(checkpoints[steps[-1]]))
    ranks, drift, previous = [], [], None
    for step in steps:
        current = final if step == steps[-1] else _factors(read_adapter(checkpoints[step]))
        missing = sorted(set(final) ^ set(current))
        if missing:
            raise ValueError(f"checkpoint-{step} and the final checkpoint hold different modules ({missing[:3]}); "
                             "they are not one training run")
        for name, factors in current.items():
            sigma = factored_svd(factors).S.double().numpy()
            ranks.append({"step": step, "module": name, "layer": layer_index(name),
                          "module_type": short_module_name(name.split(" [")[0]), **rank_measures(sigma, tau, tol)})
            for against, other in (("previous", previous), ("final", final)):
                if other is None:
                    continue
                measures = compare_factors(other[name], factors, name, tol)
                drift.append({"step": step, "module": name, "layer": layer_index(name), "against": against,
                              **{k: measures[k] for k in ("cosine", "relative_distance", "phi")}})
        previous = current
    return pd.DataFrame(ranks), pd.DataFrame(drift)


def drift_figure(ranks: pd.DataFrame, drift: pd.DataFrame) -> Figure:
    """Left: effective rank over steps, one line per layer (mean over its modules); right: the
    cosine with the final checkpoint over steps, one line per layer."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    final = drift[drift["against"] == "final"]
    for layer, part in ranks.groupby("layer", dropna=False):
        mean = part.groupby("step")["effective_rank"].mean()
        left.plot(mean.index, mean.to_numpy(), "o-", markersize=3, label=f"layer {layer}")
    for layer, part in final.groupby("layer", dropna=False):
        mean = part.groupby("step")["cosine"].mean()
        right.plot(mean.index, mean.to_numpy(), "o-", markersize=3, label=f"layer {layer}")
    left.set(xlabel="step (checkpoint)", ylabel="effective rank of ΔW (mean of the layer's modules)",
             title="effective rank over training")
    right.set(xlabel="step (checkpoint)", ylabel="cosine with the final ΔW", title="similarity to the final adapter",
              ylim=(min(-0.05, float(np.nanmin(final["cosine"])) - 0.05) if len(final) else -0.05, 1.05))
    for ax in (left, right):
        ax.legend(fontsize=8, ncol=2)
    return fig
