"""Careless input gets a clear error: merged selectors, task ids and names, config values, rank measures."""
import math

import numpy as np
import pytest
import torch

import ranklab
from ranklab.inspect import effective_rank, energy_rank, numerical_rank, stable_rank

from .conftest import randomize_adapters


def test_a_router_merged_for_one_task_refuses_another(tiny_roberta, token_batch):
    model = tiny_roberta()
    ranklab.attach(model, ranklab.make_config("rank_router", r=4, n_tasks=2))
    randomize_adapters(model)
    with torch.no_grad(), ranklab.use_task(0):
        ranklab.merge_adapters(model)  # the current task is recorded with the merge
        model(**token_batch)
    with torch.no_grad(), ranklab.use_task(1), pytest.raises(ValueError, match="merged for task 0; unmerge"):
        model(**token_batch)


def test_dylora_merged_at_one_rank_refuses_another():
    model = torch.nn.Sequential(torch.nn.Linear(16, 16))
    ranklab.attach(model, ranklab.make_config("dylora", r_max=8, target_modules=["0"]))
    ranklab.set_rank(model, 6)
    ranklab.merge_adapters(model)
    ranklab.set_rank(model, 6)  # the same rank is fine
    with pytest.raises(ValueError, match="merged at rank 6; unmerge"):
        ranklab.set_rank(model, 2)
    ranklab.unmerge_adapters(model)
    ranklab.set_rank(model, 2)


@pytest.mark.parametrize("task, message", [
    (1.7, "a task is an int id"), (None, "use_task needs a task id"), (True, "a task is an int id"),
    ("movie", "needs the model that knows it"),
])
def test_use_task_rejects_what_is_not_a_task(task, message):
    with pytest.raises(ValueError, match=message):
        with ranklab.use_task(task):
            pass


def test_use_task_accepts_names_the_model_knows(tiny_roberta, token_batch):
    model = tiny_roberta()
    ranklab.attach(model, ranklab.make_config("rank_router", r=4, n_tasks=2))
    model.ranklab_task_names = ["movie", "trec"]
    with ranklab.use_task("trec", model=model):
        assert ranklab.current_task() == 1
    with pytest.raises(ValueError, match="unknown task 'sst2'; this model's tasks: movie, trec"):
        with ranklab.use_task("sst2", model=model):
            pass


@pytest.mark.parametrize("options, message", [
    (dict(alpha="16"), "alpha must be a finite number, got '16'"),
    (dict(alpha=math.nan), "alpha must be a finite number, got nan"),
    (dict(alpha=0), r"alpha must be in \(0.0, inf\)"),
    (dict(target_modules=None), "target_modules must be a list of module-name suffixes or one regex"),
    (dict(target_modules="query(("), "is not a valid regex"),
    (dict(dropout=1.0), r"dropout must be in \[0.0, 1.0\)"),
])
def test_config_values_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        ranklab.make_config("lora", **options)


@pytest.mark.parametrize("measure", [effective_rank, stable_rank, energy_rank, numerical_rank])
def test_rank_measures_refuse_a_matrix(measure):
    with pytest.raises(ValueError, match="take singular values .* use torch.linalg.svdvals"):
        measure(np.eye(4))
    assert measure(np.ones(3)) > 0


def test_a_rank_one_router_needs_no_top_k_unless_it_selects_top_k():
    """Found by the property tests: r=1 with the default top_k=2 used to be refused for every selection."""
    assert ranklab.make_config("rank_router", r=1, n_tasks=2).r == 1
    with pytest.raises(ValueError, match="top_k=2 must be in 1..r=1"):
        ranklab.make_config("rank_router", r=1, n_tasks=2, selection="topk")
