"""What a protocol will train, before it trains: run order, optimizer steps and GPU hours.

``run_waves`` orders runs so that a run starting from another run's adapter (``RunSpec.init_from``)
comes after it; ``plan_text`` prints every run (task, method, options, optimisation, seed,
init-from), its optimizer steps and an estimated cost, with totals per recipe.

GPU-hour estimate (order of magnitude, for planning; ``ESTIMATE_RULE``): a frozen backbone of P
parameters costs 4 P FLOPs per training token (forward 2 P, backward to the activations 2 P; no
weight gradients) and 2 P per evaluated token; tokens = rows x padded length, the padded length
being min(max_length, ``TYPICAL_TOKENS[task]``), an approximate longest row of a batch; rows =
steps x batch for training, plus the validation split at every evaluation and the test split once.
FLOPs / (A100 bf16 peak 312 TFLOP/s x 30% utilisation) = GPU seconds.  Attention's extra cost and
the adapters' own FLOPs (about 1%) are left out.
"""
from __future__ import annotations

import math
from typing import Any

from ...backbones import BACKBONES, available_backbones
from ...train.config import TrainConfig
from ..protocol.paper_settings import GLUE_TRAIN_SIZES, ranklab_train_size
from ..protocol.recipes import RunSpec, Scale, recipes_for

# GLUE validation rows (ranklab's test split; MNLI: matched).
GLUE_TEST_SIZES = {"mnli": 9_815, "sst2": 872, "mrpc": 408, "cola": 1_043, "qnli": 5_463, "qqp": 40_430,
                   "rte": 277, "stsb": 1_500}
# DECISION: approximate longest row (RoBERTa BPE tokens, text pair with special tokens) of a random
# batch of 32-128 GLUE rows, from the tasks' typical lengths (not measured here: GLUE needs the hub);
# batches are padded to their longest row.  Prompted causal-LM rows add ``PROMPT_TOKENS``.
TYPICAL_TOKENS = {"mnli": 100, "sst2": 55, "mrpc": 90, "cola": 30, "qnli": 130, "qqp": 80, "rte": 200, "stsb": 70}
PROMPT_TOKENS = 24
GPU_FLOPS = 312e12 * 0.3  # A100 bf16 dense peak x an assumed 30% utilisation
ESTIMATE_RULE = ("GPU hours: 4 P FLOPs per training token + 2 P per evaluated token (frozen backbone of P "
                 "parameters), tokens = rows x min(max_length, a typical padded length per task), on an A100 at "
                 "312 TFLOP/s bf16 x 30% utilisation; an order-of-magnitude planning number")


def run_waves(runs: list[RunSpec], finished: set[str] = frozenset()) -> list[list[RunSpec]]:
    """The runs in waves: every run's ``init_from`` is in an earlier wave (or already ``finished``)."""
    by_id = {run.run_id: run for run in runs}
    missing = sorted({r.init_from for r in runs if r.init_from and r.init_from not in by_id
                      and r.init_from not in finished})
    if missing:
        raise ValueError(f"runs start from adapters of runs that are neither planned nor finished: {missing}; "
                         "include their recipe and seed")
    depth: dict[str, int] = {}

    def level(run: RunSpec, seen: tuple[str, ...] = ()) -> int:
        if run.run_id in seen:
            raise ValueError(f"init_from forms a cycle: {' -> '.join(seen + (run.run_id,))}")
        if run.run_id not in depth:
            source = by_id.get(run.init_from) if run.init_from else None
            depth[run.run_id] = 0 if source is None else level(source, seen + (run.run_id,)) + 1
        return depth[run.run_id]

    waves: list[list[RunSpec]] = []
    for run in runs:
        d = level(run)
        waves += [[] for _ in range(d + 1 - len(waves))]
        waves[d].append(run)
    return waves


def blocked_reasons(run: RunSpec) -> list[str]:
    """Why this ranklab cannot train ``run`` yet (empty: it can)."""
    reasons = list(run.requires)
    if run.config.backbone not in available_backbones():
        reasons.append(f"a loadable {run.config.backbone!r} backbone (ranklab.backbones has its shapes only)")
    return reasons


def runnable_recipes(scale: Scale) -> tuple[list[str], dict[str, list[str]]]:
    """The scale's recipes this ranklab can train, and the others with what they need (their first
    seed's runs decide: requirements do not depend on the seed)."""
    runnable, blocked = [], {}
    for name, build in recipes_for(scale).items():
        reasons = sorted({why for run in build(scale, scale.seeds_for(name)[:1]) for why in blocked_reasons(run)})
        if reasons:
            blocked[name] = reasons
        else:
            runnable.append(name)
    return runnable, blocked


def _base_tasks(config: TrainConfig) -> list[str]:
    """The tasks whose rows a run reads (a completion task "mnli_lm" reads MNLI's)."""
    from ...data import get_task

    return [get_task(t).base_task or t for t in config.tasks]


def steps_per_epoch(config: TrainConfig) -> int | None:
    """Optimizer steps of one epoch (a multi-task epoch has as many batches as proportional sampling)."""
    tasks = _base_tasks(config)
    if any(t not in GLUE_TRAIN_SIZES for t in tasks):
        return None  # sizes known only after loading (offline tasks)
    return sum(math.ceil(ranklab_train_size(t) / config.batch_size) for t in tasks)


def planned_steps(config: TrainConfig) -> int | None:
    if config.max_steps:
        return config.max_steps
    per_epoch = steps_per_epoch(config)
    return None if per_epoch is None else config.epochs * per_epoch


def _params(backbone: str) -> float:
    text = BACKBONES[backbone].approx_params
    return float(text[:-1]) * {"M": 1e6, "B": 1e9}[text[-1]]


def gpu_hours(config: TrainConfig, causal_lm: bool = False) -> float | None:
    """The estimate of ``ESTIMATE_RULE`` for one run (None for tasks other than GLUE's)."""
    steps, tasks = planned_steps(config), _base_tasks(config)
    if steps is None or any(t not in TYPICAL_TOKENS for t in tasks):
        return None  # lengths and split sizes known for GLUE only
    extra = PROMPT_TOKENS if causal_lm else 0
    length = sum(min(config.max_length, TYPICAL_TOKENS[t] + extra) for t in tasks) / len(tasks)
    evals = math.ceil(steps / config.eval_every) if config.eval_every else math.ceil(steps / steps_per_epoch(config))
    valid = sum(GLUE_TRAIN_SIZES[t] - ranklab_train_size(t) for t in tasks)
    test = sum(GLUE_TEST_SIZES[t] for t in tasks) if config.eval_test else 0
    p = _params(config.backbone)
    flops = 4 * p * steps * config.batch_size * length + 2 * p * (evals * valid + test) * length
    return flops / GPU_FLOPS / 3600


def _options(config: TrainConfig) -> str:
    def text(value: Any) -> str:
        return ",".join(value) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else str(value)
    return " ".join(f"{k}={text(v)}" for k, v in config.adapter.items())


def _schedule(config: TrainConfig) -> str:
    length = f"{config.max_steps} steps" if config.max_steps else f"{config.epochs} ep"
    warmup = (f"warmup {config.warmup_steps} st" if config.warmup_steps is not None
              else f"warmup {config.warmup_ratio:g}")
    sampling = f" {config.sampling}" if config.multi_task else ""
    return (f"lr {config.lr:g} batch {config.batch_size} {length} len {config.max_length} wd {config.weight_decay:g} "
            f"{warmup}{sampling}")


def plan_rows(runs: list[RunSpec]) -> list[dict[str, Any]]:
    """One row per run, in training order (wave by wave)."""
    rows = []
    for wave, group in enumerate(run_waves(runs)):
        for run in group:
            c = run.config
            blocked = blocked_reasons(run)
            causal = c.objective == "causal-lm"
            recipe = f"{run.recipe} (lr search)" if run.tuning else run.recipe
            rows.append({"wave": wave, "recipe": recipe, "method_id": run.method_id, "label": run.label,
                         "tasks": "+".join(c.tasks),
                         "method": c.method, "options": _options(c), "schedule": _schedule(c), "seed": c.seed,
                         "init_from": run.init_from or "-", "steps": planned_steps(c), "gpu_h": gpu_hours(c, causal),
                         "backbone": c.backbone, "blocked": "; ".join(blocked)})
    return rows


def plan_text(runs: list[RunSpec], scale_name: str) -> str:
    """Every run and the totals per recipe, as printed by ``ranklab reproduce --plan``."""
    rows = plan_rows(runs)
    lines = [f"Plan of the {scale_name} scale: {len(rows)} runs, trained in {len({r['wave'] for r in rows})} wave(s) "
             "(a run that starts from another run's adapter waits for it)", ""]
    for row in rows:
        steps = "?" if row["steps"] is None else f"{row['steps']:,}"
        hours = "?" if row["gpu_h"] is None else f"{row['gpu_h']:.2f}"
        lines.append(f"[{row['wave']}] {row['recipe']} | {row['label']} | {row['tasks']} | seed {row['seed']} | "
                     f"{row['backbone']} {row['method']} {row['options']} | {row['schedule']} | "
                     f"init-from {row['init_from']} | {steps} steps | {hours} GPU-h"
                     + (f" | BLOCKED: needs {row['blocked']}" if row["blocked"] else ""))
    lines += ["", "recipe | runs | optimizer steps | GPU hours"]
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        part = [r for r in rows if r["recipe"] == recipe]
        lines.append(f"{recipe} | {len(part)} | {_total(part, 'steps', '{:,.0f}')} | "
                     f"{_total(part, 'gpu_h', '{:,.1f}')}")
    lines.append(f"total | {len(rows)} | {_total(rows, 'steps', '{:,.0f}')} | {_total(rows, 'gpu_h', '{:,.1f}')}")
    blocked = [r for r in rows if r["blocked"]]
    if blocked:
        lines.append(f"{len(blocked)} run(s) cannot be trained by this ranklab yet (BLOCKED above); "
                     "`ranklab reproduce` leaves them out unless named in --recipes")
    lines += ["", ESTIMATE_RULE + "."]
    return "\n".join(lines)


def _total(rows: list[dict[str, Any]], key: str, fmt: str) -> str:
    values = [r[key] for r in rows]
    known = [v for v in values if v is not None]
    if not known:
        return "?"
    unknown = len(values) - len(known)
    return fmt.format(sum(known)) + (f" (+{unknown} unknown)" if unknown else "")
