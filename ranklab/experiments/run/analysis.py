"""What the figures need from a trained run, computed once after training and saved as JSON.

Figures are then redrawn from these files alone (``make figures``), without loading a model.
The evaluation code (and through it the data loaders) is imported by the functions that use it, so
the runner can read ``ANALYSIS_FORMAT`` without them.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ...adapters.base import EXPERT_ROUTED, MERGEABLE_PER_TASK, RANK_CHOOSING, RANK_SLICEABLE, TASK_EMBEDDINGS
from ...attach import adapter_layers, model_capabilities, set_rank
from ...context import use_task
from ...inspect import (
    RouterProbe,
    last_layer_tables,
    model_report,
    router_layers,
    router_summary,
    task_embedding_points,
)

PROBE_EXAMPLES = 64  # validation examples per task pushed through the router probe
# Version of analysis.json; bump it when the analysis changes, so older ones are recomputed.
# 4: the report keeps every singular value of ΔW (sigma_1..sigma_SPECTRUM_K), not the top 4.
ANALYSIS_FORMAT = 4
SPECTRUM_K = 64  # singular values kept per module (every one up to rank 64: the protocol's ranks are <= 32)
TABLE_DECIMALS = 5  # task-embedding tables are stored rounded (JSON size)


class InitialState:
    """A training callback keeping what the analysis compares with the start of training: the last
    layer's task-embedding tables at step 0 (the control of the task-embedding figure)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __call__(self, step: int, model: nn.Module) -> None:
        if step == 0 and TASK_EMBEDDINGS in model_capabilities(model):
            self.state["task_embedding_tables"] = _tables(model)


def _tables(model: nn.Module) -> dict[str, list[list[float]]]:
    return {name: np.round(table, TABLE_DECIMALS).tolist() for name, table in last_layer_tables(model).items()}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows (NaN and <NA> become None)."""
    clean = frame.astype(object).where(frame.notna(), None)
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()} for row in clean.to_dict("records")]


def _probe_forward(model: nn.Module, tasks: list, collator: Any) -> RouterProbe:
    """Run some validation examples of every task through the model with a router probe."""
    from ...train.tasks import collate

    model.eval()
    with RouterProbe(model) as probe, torch.no_grad():
        device = next(model.parameters()).device
        for task_id, task in enumerate(tasks):
            rows = [task.validation[i] for i in range(min(PROBE_EXAMPLES, len(task.validation)))]
            inputs, _ = collate(rows, collator, task.is_regression)
            probe.token_mask = inputs.get("attention_mask")
            with use_task(task_id):
                model(**{k: v.to(device) for k, v in inputs.items()})
    return probe


def _report(model: nn.Module, capabilities: frozenset[str], n_tasks: int, probe: RouterProbe | None) -> pd.DataFrame:
    if MERGEABLE_PER_TASK in capabilities:
        frames = [model_report(model, top_k=SPECTRUM_K, task=t).assign(task=t) for t in range(n_tasks)]
        return pd.concat(frames, ignore_index=True)
    if EXPERT_ROUTED in capabilities:  # token router: spectra of the router-averaged update of each task
        frames = [model_report(model, top_k=SPECTRUM_K, per_module={n: {"gates": g} for n, g in probe.mean_gates(t).items()})
                  .assign(task=t)
                  for t in range(n_tasks)]
        return pd.concat(frames, ignore_index=True)
    return model_report(model, top_k=SPECTRUM_K)


def rank_curve(model: nn.Module, tasks: list, collator: Any, batch_size: int) -> list[dict[str, Any]]:
    """Validation metrics of a rank-sliceable adapter (DyLoRA) evaluated at every rank b."""
    from ...train.evaluation import evaluate_tasks

    ranks = next(la.ranks for la in adapter_layers(model).values() if RANK_SLICEABLE in la.capabilities)
    rows = []
    for rank in ranks:
        set_rank(model, rank)
        rows.append({"rank": rank, "metrics": evaluate_tasks(model, tasks, collator, "validation", batch_size)})
    set_rank(model, ranks[-1])
    return rows


def analyse_run(model: nn.Module, tasks: list, method: str, collator: Any = None,
                batch_size: int = 64, initial: dict[str, Any] | None = None) -> dict[str, Any]:
    """Spectra report, router statistics, task embeddings and rank curves of a trained model.

    ``initial``: what ``InitialState`` kept at step 0 (stored under "initial")."""
    n_tasks = len(tasks)
    capabilities = model_capabilities(model)
    has_router = bool(router_layers(model))
    probe = _probe_forward(model, tasks, collator) if has_router else None
    analysis: dict[str, Any] = {"format": ANALYSIS_FORMAT, "method": method, "tasks": [t.name for t in tasks],
                                "capabilities": sorted(capabilities)}
    analysis["report"] = _records(_report(model, capabilities, n_tasks, probe))
    if probe is not None:
        analysis["gates"] = _records(probe.gate_table(by="task"))
    if RANK_CHOOSING in capabilities:
        analysis["router"] = _records(router_summary(model, list(range(n_tasks))))
    if TASK_EMBEDDINGS in capabilities:
        analysis["task_embeddings"] = _records(task_embedding_points(model, seed=0))
        analysis["task_embedding_tables"] = _tables(model)
    if initial:
        analysis["initial"] = initial
    if RANK_SLICEABLE in capabilities:
        analysis["rank_curve"] = rank_curve(model, tasks, collator, batch_size)
    return analysis
