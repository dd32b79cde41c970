"""The paper scale's recipes: every paper table and figure in its own setting.

Each recipe returns ``RunSpec``s whose ``TrainConfig`` carries the task's settings from
``paper_settings`` (cited there, file by file).  A run that starts from another run's adapter
(LoRA's and DyLoRA's MRPC, RTE and STS-B start from the same method's MNLI adapter, same seed)
names it in ``init_from``; the runner trains it first.  Method ids (and labels) match the generic
recipes' where the method and its sizes are the same (``lora_r8``, ``emd_a4_b12``); the claims map
the others (``results.claims.PAPER_CLAIMS``).  This module builds on ``spec`` only, never on the
generic recipes (``recipes`` imports this one).

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

from typing import Any

from ...adapters.rank_router import MORE_OPTIONS
from ...backbones import BACKBONES
from ...train.config import TrainConfig
from . import paper_settings as ps
from .spec import Recipe, RunSpec, Scale

# Each table: method_id -> (method, options); PAPER_LABELS below: method_id -> display label.
TABLE1_METHODS = {"lora_r8": ("lora", {"r": 8}), "emd_a4_b12": ("emd", {"a": 4, "b": 12})}
# DECISION: EMD runs with LoRA's scripts (the seed paper gives no EMD schedule; EMD is a LoRA of the
# same budget and scaling alpha / r_ref), MNLI initialisation included, so the two rows differ only
# in the decomposition.
TABLE2_TASKS = ("sst2", "mrpc", "cola", "qnli", "stsb")
TABLE2_METHODS = {"dylora_r8": ("dylora", {}), "adalora_r8": ("adalora", {}),
                  "emd_a4_b12": ("emd", {"a": 4, "b": 12})}
PAPER_EMD_SWEEP = {"emd_a8_b8": {"a": 8, "b": 8}, "emd_a12_b4": {"a": 12, "b": 4}}  # a=4, b=12: single_task's
PAPER_ROUTER_ID = "rank_router_r16"
PAPER_CONTROL_ID = f"{PAPER_ROUTER_ID}_no_contrastive"
PAPER_MULTI_TASK_METHODS = {
    "lora_r8": ("lora", {"r": 8}),
    "lora_r16": ("lora", {"r": 16}),
    PAPER_ROUTER_ID: ("rank_router", {"r": 16, **MORE_OPTIONS}),
    "mor_e8_r8": ("mor", {"n_experts": 8, "r": 8}),
    "moelora_e8_r2": ("moelora", {"n_experts": 8, "r": 2}),
    # the contrastive on/off ablation; the embedding study (Fig. 2) reads it from this recipe
    PAPER_CONTROL_ID: ("rank_router", {"r": 16, **MORE_OPTIONS, "contrastive_weight": 0.0}),
}
# MoRE's ablations, each against multi_task's router (reused, not retrained), one change at a time:
# method_id -> (router options, training fields).
ABLATIONS = {
    f"{PAPER_ROUTER_ID}_proportional_sampling": ({}, {"sampling": "proportional"}),
    f"{PAPER_ROUTER_ID}_uniform_sampling": ({}, {"sampling": "uniform"}),
    f"{PAPER_ROUTER_ID}_soft_selector": ({"selection": "soft"}, {}),
    f"{PAPER_ROUTER_ID}_top2_selector": ({"selection": "topk", "top_k": 2}, {}),
    f"{PAPER_ROUTER_ID}_ranklab_defaults": (  # gate_init full, all-rank straight-through, detached loss
        {"gate_init": "full", "straight_through": "all", "rank_scaling": "none", "contrastive_detach": True}, {}),
}
MOR_BACKBONE = "llama-7b"
MOR_METHODS = {"mor_e8_r32": ("mor", {}),
               "moelora_e8_r4": ("moelora", {"n_experts": 8, "r": 4}),  # DECISION: N x r = MoR's shared rank 32
               "lora_r32": ("lora", {"r": 32})}  # "simply increasing the rank" (MoR's abstract)


def _mor_id(n_experts: int, r: int) -> str:
    return f"mor_e{n_experts}_r{r}"


def _mor_label(n_experts: int, r: int) -> str:
    return f"MoR {n_experts} expert{'s' if n_experts > 1 else ''} r={r}"


_ROUTER = "Rank router r<=16"
PAPER_LABELS = {  # method_id -> display label (figures, tables; never a join key)
    "lora_r8": "LoRA r=8", "lora_r16": "LoRA r=16", "lora_r32": "LoRA r=32", "emd_a4_b12": "EMD a=4, b=12",
    "emd_a8_b8": "EMD a=8, b=8", "emd_a12_b4": "EMD a=12, b=4", "dylora_r8": "DyLoRA r<=8",
    "adalora_r8": "AdaLoRA ->8", PAPER_ROUTER_ID: _ROUTER, "mor_e8_r8": "MoR 8 experts",
    "moelora_e8_r2": "MoELoRA 8x r=2", "moelora_e8_r4": "MoELoRA 8x r=4",
    PAPER_CONTROL_ID: f"{_ROUTER}, no contrastive loss",
    f"{PAPER_ROUTER_ID}_proportional_sampling": f"{_ROUTER}, proportional sampling",
    f"{PAPER_ROUTER_ID}_uniform_sampling": f"{_ROUTER}, uniform sampling",
    f"{PAPER_ROUTER_ID}_soft_selector": f"{_ROUTER}, soft selector",
    f"{PAPER_ROUTER_ID}_top2_selector": f"{_ROUTER}, top-2 selector",
    f"{PAPER_ROUTER_ID}_ranklab_defaults": f"{_ROUTER}, ranklab's router defaults",
    "mor_e8_r32": "MoR 8 experts r=32",
}
# The MoR figures' axes (mor_experts, mor_rank): method_id -> label, apart because mor_rank's
# ``mor_e8_r8`` (LLaMA-7B) is another run than multi_task's (RoBERTa-base), shown as "MoR 8 experts".
MOR_AXIS_LABELS = {
    **{_mor_id(n, ps.MOR_ADAPTER["r"]): _mor_label(n, ps.MOR_ADAPTER["r"]) for n in ps.MOR_EXPERTS},
    **{_mor_id(ps.MOR_ADAPTER["n_experts"], r): _mor_label(ps.MOR_ADAPTER["n_experts"], r) for r in ps.MOR_RANKS},
}
MNLI_INIT = "_mnli_init"  # method_id suffix of a run that only trains the MNLI adapter others start from

# --- the causal-LM entry point --------------------------------------------------------------------
# The TrainConfig fields of a causal-LM run (next-token loss on the completion of a text-completion
# task: the GLUE tasks as prompts and answer words, ranklab.data.tasks' "<task>_lm").
CAUSAL_LM = {"objective": "causal-lm"}


def completion_task(task: str) -> str:
    """The text-completion version of a classification task (e.g. mnli -> mnli_lm)."""
    from ...data import get_task

    name = f"{task}_lm"
    get_task(name)  # a clear error naming the valid tasks if there is none
    return name


def causal_lm_config(**fields: Any) -> TrainConfig:
    """The TrainConfig of a causal-LM run: ``fields`` with the completion tasks and ``CAUSAL_LM``."""
    fields["tasks"] = [completion_task(t) for t in fields["tasks"]]
    return TrainConfig(**fields, **CAUSAL_LM)


# --- building runs --------------------------------------------------------------------------------
def _script_config(scale: Scale, method: str, adapter: dict[str, Any], tasks: list[str], backbone: str, seed: int,
                   train: dict[str, Any], causal_lm: bool = False) -> TrainConfig:
    fields = dict(method=method, adapter=adapter, tasks=tasks, backbone=backbone, seed=seed,
                  head_module=BACKBONES[backbone].head, **{**scale.train, **train})
    return causal_lm_config(**fields) if causal_lm else TrainConfig(**fields)


def _task_train(setting: ps.TaskSetting, common: dict[str, Any]) -> dict[str, Any]:
    return {"lr": setting.lr, "batch_size": setting.batch_size, "epochs": setting.epochs,
            "max_length": setting.max_length, "weight_decay": common["weight_decay"],
            "warmup_ratio": common["warmup_ratio"]}


def _script_runs(recipe: str, method_id: str, method: str, adapter: dict[str, Any], tasks: tuple[str, ...],
                 settings: dict[str, ps.TaskSetting], common: dict[str, Any], scale: Scale, backbone: str,
                 seed: int, own_mnli: bool = False) -> list[RunSpec]:
    """One method on ``tasks`` with a script's per-task settings; the tasks the script starts from
    the MNLI adapter get ``init_from`` = this method's MNLI run (trained in this recipe; with
    ``own_mnli``, when MNLI is not one of ``tasks``, as an entry of its own: ``<method_id>_mnli_init``)."""
    runs: dict[str, RunSpec] = {}
    needs_mnli = any(settings[t].init_from_mnli for t in tasks)
    label = PAPER_LABELS[method_id]
    for task in (("mnli",) if needs_mnli and "mnli" not in tasks else ()) + tuple(tasks):
        init_only = own_mnli and task == "mnli" and task not in tasks
        own_id, own_label = (f"{method_id}{MNLI_INIT}", f"{label} (MNLI, init)") if init_only else (method_id, label)
        config = _script_config(scale, method, adapter, [task], backbone, seed, _task_train(settings[task], common))
        init = runs["mnli"].run_id if settings[task].init_from_mnli else None
        runs[task] = RunSpec(recipe, own_id, own_label, config, tune_key=f"{recipe}:{method_id}", init_from=init)
    return list(runs.values())


def table1_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """Seed paper Table 1 (top): LoRA r=8 vs EMD a=4, b=12 on RoBERTa-large, LoRA's scripts per task."""
    common = ps.LORA_COMMON
    return [run for seed in seeds for method_id, (method, options) in TABLE1_METHODS.items()
            for run in _script_runs("single_task", method_id, method,
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
        for method_id, (method, options) in TABLE2_METHODS.items():
            if method == "adalora":
                runs += [RunSpec("table2", method_id, PAPER_LABELS[method_id],
                                 _script_config(scale, "adalora", ps.adalora_options(task), [task],
                                                scale.multi_backbone, seed, ps.adalora_train(task)),
                                 tune_key=f"table2:{method_id}") for task in TABLE2_TASKS]
                continue
            adapter = {"alpha": common["alpha"], "target_modules": common["target_modules"], **options}
            if method == "dylora":
                adapter.update(r_min=common["r_min"], r_max=common["r_max"], frozen=common["frozen"])
            runs += _script_runs("table2", method_id, method, adapter, TABLE2_TASKS, ps.DYLORA_ROBERTA_BASE, common,
                                 scale, scale.multi_backbone, seed, own_mnli=True)
    return runs


def paper_emd_sweep_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """EMD's (a, b) at a + b = 16 in Table 1's setting, on tasks that start from scratch (no MNLI run)."""
    common = ps.LORA_COMMON
    adapter = {"alpha": common["alpha"], "target_modules": common["target_modules"]}
    return [run for seed in seeds for method_id, options in PAPER_EMD_SWEEP.items()
            for run in _script_runs("emd_sweep", method_id, "emd", {**adapter, **options}, scale.sweep_tasks,
                                    ps.LORA_ROBERTA_LARGE, common, scale, scale.single_backbone, seed)]


def _more_run(recipe: str, method_id: str, method: str, options: dict[str, Any], scale: Scale, seed: int,
              train: dict[str, Any] | None = None) -> RunSpec:
    """A multi-task run with MoRE's released code's settings."""
    adapter = {**ps.MORE_ADAPTER, **options}
    config = _script_config(scale, method, adapter, list(scale.multi_tasks), scale.multi_backbone, seed,
                            {**ps.MORE_TRAIN, **(train or {})})
    return RunSpec(recipe, method_id, PAPER_LABELS[method_id], config, tune_key=f"{recipe}:{method_id}")


def paper_multi_task_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """Seed paper Table 1 (bottom) and Fig. 2 with MoRE's released code's settings (7 GLUE tasks,
    RoBERTa-base): LoRA r=8, r=16, the rank router with MoRE's options and its no-contrastive
    control, MoR and MoELoRA."""
    return [_more_run("multi_task", method_id, method, options, scale, seed)
            for seed in seeds for method_id, (method, options) in PAPER_MULTI_TASK_METHODS.items()]


def ablation_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """MoRE's ablations on the router: sampling rule and selector (the contrastive loss on/off is
    multi_task's control), plus ranklab's own router defaults; the reference is multi_task's router."""
    _, base = PAPER_MULTI_TASK_METHODS[PAPER_ROUTER_ID]
    return [_more_run("ablations", method_id, "rank_router", {**base, **options}, scale, seed, train)
            for seed in seeds for method_id, (options, train) in ABLATIONS.items()]


def _mor_run(recipe: str, method_id: str, method: str, options: dict[str, Any], scale: Scale, seed: int,
             labels: dict[str, str] = PAPER_LABELS) -> RunSpec:
    adapter = {"target_modules": ps.MOR_ADAPTER["target_modules"], **options}
    adapter["alpha"] = 2.0 * adapter["r"]  # DECISION: alpha = 2r (paper_settings.MOR_TRAIN)
    config = _script_config(scale, method, adapter, list(scale.multi_tasks), MOR_BACKBONE, seed, ps.MOR_TRAIN,
                            causal_lm=True)
    return RunSpec(recipe, method_id, labels[method_id], config, tune_key=f"{recipe}:{method_id}")


def mor_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """MoR (8 experts, shared rank 32, LLaMA-7B FFN) vs MoELoRA and LoRA, a decoder-only causal LM."""
    mor = {k: v for k, v in ps.MOR_ADAPTER.items() if k != "target_modules"}
    return [_mor_run("mor", method_id, method, options or mor, scale, seed)
            for seed in seeds for method_id, (method, options) in MOR_METHODS.items()]


def mor_experts_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """MoR with 1..16 experts at rank 32 (8 experts: the mor recipe's run)."""
    r = ps.MOR_ADAPTER["r"]
    return [_mor_run("mor_experts", _mor_id(n, r), "mor", {"n_experts": n, "r": r}, scale, seed, MOR_AXIS_LABELS)
            for seed in seeds for n in ps.MOR_EXPERTS if n != ps.MOR_ADAPTER["n_experts"]]


def mor_rank_runs(scale: Scale, seeds: tuple[int, ...]) -> list[RunSpec]:
    """MoR with 8 experts at shared rank 8..64 (rank 32: the mor recipe's run)."""
    n = ps.MOR_ADAPTER["n_experts"]
    return [_mor_run("mor_rank", _mor_id(n, r), "mor", {"n_experts": n, "r": r}, scale, seed, MOR_AXIS_LABELS)
            for seed in seeds for r in ps.MOR_RANKS if r != ps.MOR_ADAPTER["r"]]


PAPER_RECIPES: dict[str, Recipe] = {  # their kinds (single- or multi-task): spec.RECIPE_KIND
    "single_task": table1_runs, "table2": table2_runs, "emd_sweep": paper_emd_sweep_runs,
    "multi_task": paper_multi_task_runs, "ablations": ablation_runs,
    "mor": mor_runs, "mor_experts": mor_experts_runs, "mor_rank": mor_rank_runs,
}
