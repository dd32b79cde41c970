"""The paper scale's recipes: every paper table and figure in its own setting.

Each recipe returns ``RunSpec``s whose ``TrainConfig`` carries the task's settings from
``paper_settings`` (cited there, file by file).  A run that starts from another run's adapter
(LoRA's and DyLoRA's MRPC, RTE and STS-B start from the same method's MNLI adapter, same seed)
names it in ``init_from``; the runner trains it first.  Labels match the generic recipes' where the
method is the same, so the papers' rows (``paper.py``) and the claims join them.

| recipe       | reproduces                                    | backbone      | runs per seed |
|--------------|-----------------------------------------------|---------------|---------------|
| single_task  | seed paper Table 1 (top): LoRA vs EMD          | RoBERTa-large | 8 tasks x 2   |
| table2       | seed paper Table 2: DyLoRA, AdaLoRA, EMD       | RoBERTa-base  | 5 x 3 + 2 MNLI|
| emd_sweep    | EMD's distinct ranks (a, b) at a + b = 16      | RoBERTa-large | 2 tasks x 2   |
| multi_task   | seed paper Table 1 (bottom), Fig. 2; MoR, MoELoRA | RoBERTa-base | 6          |
| ablations    | MoRE's ablations: sampling rule, selector      | RoBERTa-base  | 5             |
| mor          | MoR vs MoELoRA vs LoRA, decoder-only causal LM | LLaMA-7B      | 3             |
| mor_experts  | MoR Fig. 5 axis: number of experts             | LLaMA-7B      | 4             |
| mor_rank     | MoR Fig. 4 axis: shared rank                   | LLaMA-7B      | 3             |
"""
from __future__ import annotations

from typing import Any, Callable

from ..adapters.rank_router import MORE_OPTIONS
from ..backbones import BACKBONES
from ..train import TrainConfig
from . import paper_settings as ps
from .recipes import RunSpec, Scale

TABLE1_METHODS = {"LoRA r=8": ("lora", {"r": 8}), "EMD a=4, b=12": ("emd", {"a": 4, "b": 12})}
# DECISION: EMD runs with LoRA's scripts (the seed paper gives no EMD schedule; EMD is a LoRA of the
# same budget and scaling alpha / r_ref), MNLI initialisation included, so the two rows differ only
# in the decomposition.
TABLE2_TASKS = ("sst2", "mrpc", "cola", "qnli", "stsb")
TABLE2_METHODS = {"DyLoRA r<=8": ("dylora", {}), "AdaLoRA ->8": ("adalora", {}),
                  "EMD a=4, b=12": ("emd", {"a": 4, "b": 12})}
EMD_SWEEP = {"EMD a=8, b=8": {"a": 8, "b": 8}, "EMD a=12, b=4": {"a": 12, "b": 4}}  # a=4, b=12: single_task's
ROUTER = "Rank router r<=16"
MULTI_TASK_METHODS = {
    "LoRA r=8": ("lora", {"r": 8}),
    "LoRA r=16": ("lora", {"r": 16}),
    ROUTER: ("rank_router", {"r": 16, **MORE_OPTIONS}),
    "MoR 8 experts": ("mor", {"n_experts": 8, "r": 8}),
    "MoELoRA 8x r=2": ("moelora", {"n_experts": 8, "r": 2}),
    # the contrastive on/off ablation; the embedding study (Fig. 2) reads it from this recipe
    f"{ROUTER}, no contrastive loss": ("rank_router", {"r": 16, **MORE_OPTIONS, "contrastive_weight": 0.0}),
}
# MoRE's ablations, each against multi_task's router (reused, not retrained), one change at a time.
ABLATIONS = {
    f"{ROUTER}, proportional sampling": ({}, {"sampling": "proportional"}),
    f"{ROUTER}, uniform sampling": ({}, {"sampling": "uniform"}),
    f"{ROUTER}, soft selector": ({"selection": "soft"}, {}),
    f"{ROUTER}, top-2 selector": ({"selection": "topk", "top_k": 2}, {}),
    f"{ROUTER}, ranklab's router defaults": (  # gate_init full, all-rank straight-through, detached loss
        {"gate_init": "full", "straight_through": "all", "rank_scaling": "none", "contrastive_detach": True}, {}),
}
MOR_BACKBONE = "llama-7b"
MOR_METHODS = {"MoR 8 experts r=32": ("mor", {}),
               "MoELoRA 8x r=4": ("moelora", {"n_experts": 8, "r": 4}),  # DECISION: N x r = MoR's shared rank 32
               "LoRA r=32": ("lora", {"r": 32})}  # "simply increasing the rank" (MoR's abstract)

# --- the causal-LM entry point --------------------------------------------------------------------
# The TrainConfig fields of a causal-LM run (next-token loss on the completion of a text-completion
# task: the GLUE tasks as prompts and answer words, ranklab.data.tasks' "<task>_lm").
CAUSAL_LM = {"objective": "causal-lm"}


def completion_task(task: str) -> str:
    """The text-completion version of a classification task (e.g. mnli -> mnli_lm)."""
    from ..data import get_task

    name = f"{task}_lm"
    get_task(name)  # a clear error naming the valid tasks if there is none
    return name


def causal_lm_config(**fields: Any) -> TrainConfig:
    """The TrainConfig of a causal-LM run: ``fields`` with the completion tasks and ``CAUSAL_LM``."""
    fields["tasks"] = [completion_task(t) for t in fields["tasks"]]
    return TrainConfig(**fields, **CAUSAL_LM)


# --- building runs --------------------------------------------------------------------------------
def _config(scale: Scale, method: str, adapter: dict[str, Any], tasks: list[str], backbone: str, seed: int,
            train: dict[str, Any], causal_lm: bool = False) -> TrainConfig:
    fields = dict(method=method, adapter=adapter, tasks=tasks, backbone=backbone, seed=seed,
                  head_module=BACKBONES[backbone].head, **{**scale.train, **train})
    return causal_lm_config(**fields) if causal_lm else TrainConfig(**fields)


def _task_train(setting: ps.TaskSetting, common: dict[str, Any]) -> dict[str, Any]:
    return {"lr": setting.lr, "batch_size": setting.batch_size, "epochs": setting.epochs,
            "max_length": setting.max_length, "weight_decay": common["weight_decay"],
            "warmup_ratio": common["warmup_ratio"]}


def _script_runs(recipe: str, label: str, method: str, adapter: dict[str, Any], tasks: tuple[str, ...],
                 settings: dict[str, ps.TaskSetting], common: dict[str, Any], scale: Scale, backbone: str,
                 seed: int, mnli_label: str | None = None) -> list[RunSpec]:
    """One method on ``tasks`` with a script's per-task settings; the tasks the script starts from
    the MNLI adapter get ``init_from`` = this method's MNLI run (trained in this recipe, under
    ``mnli_label`` when MNLI is not one of ``tasks``)."""
    runs: dict[str, RunSpec] = {}
    needs_mnli = any(settings[t].init_from_mnli for t in tasks)
    for task in (("mnli",) if needs_mnli and "mnli" not in tasks else ()) + tuple(tasks):
        own_label = mnli_label if task == "mnli" and task not in tasks else label
        config = _config(scale, method, adapter, [task], backbone, seed, _task_train(settings[task], common))
        init = runs["mnli"].run_id if settings[task].init_from_mnli else None
        runs[task] = RunSpec(recipe, own_label, config, tune_key=f"{recipe}:{label}", init_from=init)
    return list(runs.values())


def table1_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """Seed paper Table 1 (top): LoRA r=8 vs EMD a=4, b=12 on RoBERTa-large, LoRA's scripts per task."""
    common = ps.LORA_COMMON
    return [run for seed in seeds for label, (method, options) in TABLE1_METHODS.items()
            for run in _script_runs("single_task", label, method,
                                    {"alpha": common["alpha"], "target_modules": common["target_modules"], **options},
                                    scale.single_tasks, ps.LORA_ROBERTA_LARGE, common, scale,
                                    scale.single_backbone, seed)]


def table2_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """Seed paper Table 2 on RoBERTa-base: DyLoRA (its official scripts, frozen), AdaLoRA (its scripts,
    adapted: paper_settings.adalora_options) and EMD (DyLoRA's = LoRA's base scripts).  DyLoRA and
    EMD train an MNLI adapter first: their MRPC and STS-B start from it."""
    runs = []
    common = ps.DYLORA_COMMON
    for seed in seeds:
        for label, (method, options) in TABLE2_METHODS.items():
            if method == "adalora":
                runs += [RunSpec("table2", label, _config(scale, "adalora", ps.adalora_options(task), [task],
                                                          scale.multi_backbone, seed, ps.adalora_train(task)),
                                 tune_key=f"table2:{label}") for task in TABLE2_TASKS]
                continue
            adapter = {"alpha": common["alpha"], "target_modules": common["target_modules"], **options}
            if method == "dylora":
                adapter.update(r_min=common["r_min"], r_max=common["r_max"], frozen=common["frozen"])
            runs += _script_runs("table2", label, method, adapter, TABLE2_TASKS, ps.DYLORA_ROBERTA_BASE, common,
                                 scale, scale.multi_backbone, seed, mnli_label=f"{label} (MNLI, init)")
    return runs


def emd_sweep_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """EMD's (a, b) at a + b = 16 in Table 1's setting, on tasks that start from scratch (no MNLI run)."""
    common = ps.LORA_COMMON
    adapter = {"alpha": common["alpha"], "target_modules": common["target_modules"]}
    return [run for seed in seeds for label, options in EMD_SWEEP.items()
            for run in _script_runs("emd_sweep", label, "emd", {**adapter, **options}, scale.sweep_tasks,
                                    ps.LORA_ROBERTA_LARGE, common, scale, scale.single_backbone, seed)]


def _multi(recipe: str, label: str, method: str, options: dict[str, Any], scale: Scale, seed: int,
           train: dict[str, Any] | None = None) -> RunSpec:
    adapter = {**ps.MORE_ADAPTER, **options}
    config = _config(scale, method, adapter, list(scale.multi_tasks), scale.multi_backbone, seed,
                     {**ps.MORE_TRAIN, **(train or {})})
    return RunSpec(recipe, label, config, tune_key=f"{recipe}:{label}")


def multi_task_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """Seed paper Table 1 (bottom) and Fig. 2 with MoRE's released code's settings (7 GLUE tasks,
    RoBERTa-base): LoRA r=8, r=16, the rank router with MoRE's options and its no-contrastive
    control, MoR and MoELoRA."""
    return [_multi("multi_task", label, method, options, scale, seed)
            for seed in seeds for label, (method, options) in MULTI_TASK_METHODS.items()]


def ablation_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """MoRE's ablations on the router: sampling rule and selector (the contrastive loss on/off is
    multi_task's control), plus ranklab's own router defaults; the reference is multi_task's router."""
    _, base = MULTI_TASK_METHODS[ROUTER]
    return [_multi("ablations", label, "rank_router", {**base, **options}, scale, seed, train)
            for seed in seeds for label, (options, train) in ABLATIONS.items()]


def _mor_run(recipe: str, label: str, method: str, options: dict[str, Any], scale: Scale, seed: int) -> RunSpec:
    adapter = {"target_modules": ps.MOR_ADAPTER["target_modules"], **options}
    adapter["alpha"] = 2.0 * adapter["r"]  # DECISION: alpha = 2r (paper_settings.MOR_TRAIN)
    config = _config(scale, method, adapter, list(scale.multi_tasks), MOR_BACKBONE, seed, ps.MOR_TRAIN, causal_lm=True)
    return RunSpec(recipe, label, config, tune_key=f"{recipe}:{label}")


def mor_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """MoR (8 experts, shared rank 32, LLaMA-7B FFN) vs MoELoRA and LoRA, a decoder-only causal LM."""
    mor = {k: v for k, v in ps.MOR_ADAPTER.items() if k != "target_modules"}
    return [_mor_run("mor", label, method, options or mor, scale, seed)
            for seed in seeds for label, (method, options) in MOR_METHODS.items()]


def mor_experts_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """MoR with 1..16 experts at rank 32 (8 experts: the mor recipe's run)."""
    r = ps.MOR_ADAPTER["r"]
    return [_mor_run("mor_experts", f"MoR {n} expert{'s' if n > 1 else ''} r={r}", "mor", {"n_experts": n, "r": r},
                     scale, seed) for seed in seeds for n in ps.MOR_EXPERTS if n != ps.MOR_ADAPTER["n_experts"]]


def mor_rank_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """MoR with 8 experts at shared rank 8..64 (rank 32: the mor recipe's run)."""
    n = ps.MOR_ADAPTER["n_experts"]
    return [_mor_run("mor_rank", f"MoR {n} experts r={r}", "mor", {"n_experts": n, "r": r}, scale, seed)
            for seed in seeds for r in ps.MOR_RANKS if r != ps.MOR_ADAPTER["r"]]


PAPER_RECIPES: dict[str, Callable[[Scale, tuple[int, ...]], list[RunSpec]]] = {
    "single_task": table1_runs, "table2": table2_runs, "emd_sweep": emd_sweep_runs,
    "multi_task": multi_task_runs, "ablations": ablation_runs,
    "mor": mor_runs, "mor_experts": mor_experts_runs, "mor_rank": mor_rank_runs,
}
PAPER_RECIPE_KIND = {"single_task": "single", "table2": "single", "emd_sweep": "single", "multi_task": "multi",
                     "ablations": "multi", "mor": "multi", "mor_experts": "multi", "mor_rank": "multi"}
