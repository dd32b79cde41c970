"""What both recipe sets are made of: a run (``RunSpec``), a scale (``Scale``) and the kind of
every recipe.

The generic recipes (``recipes``) and the paper scale's (``paper_recipes``) both build on this
module and never on each other's, so there is no import cycle between them (``recipes`` imports
``paper_recipes`` to pick a scale's recipe set; ``paper_recipes`` imports only this module and
``paper_settings``).

Run ids: every method entry of a recipe has a short stable ``method_id`` (``lora_r8``,
``rank_router_r8``, ``mor_e8_r18``: the method and the sizes it is compared at), declared as the
key of the recipe's method table; its ``label`` ("Rank router r<=8") is for display only and may
change without moving a run folder or breaking a join.  A run's ``run_id`` (its folder in a
results folder) is ``<recipe>/<method_id>__<tasks>__s<seed>``; results are joined on
(recipe, method_id) across seeds and on ``run_id`` for one run, never on a label.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ...train.config import TrainConfig

METHOD_ID = re.compile(r"[a-z][a-z0-9_]*")  # a method_id is part of a folder name: lower case, digits, _

# "single" or "multi" (task sets of one or several tasks), for the recipes of both sets.
RECIPE_KIND = {"single_task": "single", "emd_sweep": "single", "continuation": "single", "lora_rank_sweep": "single",
               "multi_task": "multi",  # generic (and paper)
               "table2": "single", "ablations": "multi", "mor": "multi", "mor_experts": "multi",
               "mor_rank": "multi"}  # the paper scale's own


def recipe_kind(recipe: str) -> str:
    """"single" or "multi" (task sets of one or several tasks)."""
    return RECIPE_KIND.get(recipe, "single")


@dataclass(frozen=True)
class Scale:
    """Backbones, tasks, training budget and seeds of one scale."""

    name: str
    single_backbone: str
    multi_backbone: str
    single_tasks: tuple[str, ...]
    multi_tasks: tuple[str, ...]
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    multi_train: dict[str, Any] = field(default_factory=dict)  # further overrides for multi-task runs
    seeds: tuple[int, ...] = (0,)  # reported seeds of single-task recipes
    multi_seeds: tuple[int, ...] | None = None  # reported seeds of multi-task recipes (default: seeds)
    sweep_seeds: tuple[int, ...] | None = None  # seeds of the EMD (a, b) sweep (default: seeds)
    sweep_tasks: tuple[str, ...] | None = None  # tasks of the EMD (a, b) sweep (default: single_tasks)
    tuning_seeds: tuple[int, ...] = ()  # seeds of the learning-rate search (never reported); (): no search
    lr_grid: tuple[float, ...] = ()  # one grid shared by every method
    multi_lr_grid: tuple[float, ...] | None = None  # the grid of multi-task runs (default: lr_grid)
    search_tasks: tuple[str, ...] | None = None  # single-task tasks the search runs on (default: every task)
    search_rule: str = "mean"  # how a rate is scored over tuning seeds: a key of run.tuning.RULES
    per_task_rates: bool = False  # single-task rates chosen per task, each on its own validation split
    grid_step: float | None = None  # a winner on its grid's edge adds the rate this factor beyond it (None: never)
    max_extensions: int = 3  # at most this many rates added beyond each edge of lr_grid
    continuation_seeds: tuple[int, ...] = ()  # single-task seeds trained on to the cap: the convergence check
    rank_sweep_seeds: tuple[int, ...] = ()  # seeds of the LoRA rank sweep (none: the scale has no sweep)
    adapter_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> options set at this scale
    typical_steps: dict[str, int] = field(default_factory=dict)  # "single"/"multi" -> steps a run is expected to
    # take when it stops at a plateau (progress bar and --max-minutes estimates; never a stopping rule)
    synthetic: bool = False  # tasks come from ranklab.train.synthetic, not ranklab.data
    description: str = ""
    rates_from: str | None = None  # no search: the rates chosen by this scale's protocol (its committed summary)
    # its runs and figures go to results/<name> and figures/<name> by default, apart from another
    # scale's whose run ids they share (a derived scale; a protocol not yet complete)
    apart: bool = False
    recipe_set: str = "generic"  # "generic": recipes.RECIPES; "paper": each paper's own setting (paper_recipes)

    def __post_init__(self) -> None:
        rules = ("mean", "median_veto", "median_veto_interior")
        if self.search_rule not in rules:
            raise ValueError(f"scale {self.name!r}: unknown search_rule {self.search_rule!r}; valid: {', '.join(rules)}")
        if self.grid_step is not None and not self.grid_step > 1:
            raise ValueError(f"scale {self.name!r}: grid_step must be > 1, got {self.grid_step}")
        if self.rates_from and self.tuning_seeds:
            raise ValueError(f"scale {self.name!r}: takes its rates from {self.rates_from!r}, so it has no search")
        if self.tuning_seeds:
            if not self.lr_grid:
                raise ValueError(f"scale {self.name!r}: tuning seeds need an lr_grid")
            reported = (set(self.seeds) | set(self.multi_seeds or ()) | set(self.sweep_seeds or ())
                        | set(self.continuation_seeds) | set(self.rank_sweep_seeds))
            if reported & set(self.tuning_seeds):
                raise ValueError(f"scale {self.name!r}: tuning seeds {sorted(reported & set(self.tuning_seeds))} "
                                 "must not be reported")

    def grid_for(self, kind: str) -> tuple[float, ...]:
        """The learning-rate grid of "single" or "multi" runs."""
        return self.multi_lr_grid if kind == "multi" and self.multi_lr_grid else self.lr_grid

    def seeds_for(self, recipe: str) -> tuple[int, ...]:
        if recipe == "emd_sweep":
            return self.sweep_seeds or self.seeds
        if recipe == "continuation":
            return self.continuation_seeds
        if recipe == "lora_rank_sweep":
            return self.rank_sweep_seeds
        multi = recipe_kind(recipe) == "multi"
        return (self.multi_seeds or self.seeds) if multi else self.seeds


@dataclass
class RunSpec:
    """One training run of a recipe: a method entry (``method_id``, shown as ``label``) at a seed."""

    recipe: str
    method_id: str  # stable id of the method entry in its recipe (joins); the label is display only
    label: str
    config: TrainConfig
    tune_key: str = ""  # runs with the same key use the same chosen learning rate
    tuning: bool = False  # a learning-rate search run (never reported)
    init_from: str | None = None  # run_id of the run whose adapter starts this one (trained first)
    requires: tuple[str, ...] = ()  # capabilities this ranklab lacks; the runner refuses the run until then

    def __post_init__(self) -> None:
        if not METHOD_ID.fullmatch(self.method_id):
            raise ValueError(f"method_id {self.method_id!r} (run {self.label!r}): "
                             "lower-case letters, digits and _ only")

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def run_id(self) -> str:
        base = f"{self.method_id}__{'+'.join(self.config.tasks)}__s{self.seed}"
        if self.tuning:
            return f"tuning/{self.recipe}/{base}__lr{self.config.lr:g}"
        return f"{self.recipe}/{base}"


Recipe = Callable[[Scale, tuple[int, ...]], list[RunSpec]]
