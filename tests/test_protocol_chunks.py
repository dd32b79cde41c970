"""A protocol trained in chunks (``--max-minutes``), each on a fresh machine that has only the
committed summary, ends in the summary that one uninterrupted session writes."""
import json

import pytest

from ranklab.experiments.run.commands import SUMMARY_NAME, update_summary
from ranklab.experiments.run.runner import Budget, run_protocol

RECIPES = ["single_task"]
# differ between sessions by nature (when, how long, which session trained what)
VOLATILE = {"sessions", "versions"}


def comparable(summary):
    out = {k: v for k, v in summary.items() if k not in VOLATILE}
    out["runs"] = [{k: v for k, v in run.items() if k != "wall_time_s"} for run in summary["runs"]]
    return json.loads(json.dumps(out, default=float))


@pytest.fixture(scope="module")
def one_session_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("one")
    run_protocol(RECIPES, "smoke", root / "results", summary_path=root / "figures" / SUMMARY_NAME)
    update_summary(root / "results", root / "figures", "smoke", names=RECIPES)
    return root


@pytest.fixture(scope="module")
def one_session(one_session_root):
    from ranklab.experiments.results.summary_format import read_summary

    return read_summary(one_session_root / "figures" / SUMMARY_NAME)


def test_chunks_on_fresh_machines_give_the_one_session_summary(one_session, tmp_path):
    figures = tmp_path / "figures"  # what is committed between chunks: only the summary travels
    chunks, trained = 0, []
    while True:
        results = tmp_path / f"machine{chunks}"  # a fresh clone: no run folders of earlier chunks
        run_protocol(RECIPES, "smoke", results, summary_path=figures / SUMMARY_NAME, max_minutes=1e-4)
        summary = update_summary(results, figures, "smoke", names=RECIPES)
        log = json.loads((results / "protocol_log.json").read_text())[-1]
        trained.append(log.get("search_runs_trained", 0) + log.get("runs_trained", 0))
        chunks += 1
        if log["left_for_later"] == 0 or chunks > 40:
            break
    # a budget smaller than any run: each chunk trains exactly its first run
    assert trained[:-1] == [1] * (chunks - 1) and trained[-1] <= 1
    assert chunks >= len(one_session["runs"]) + len(one_session["tuning"]["runs"])
    assert summary["tuning"]["chosen"] == one_session["tuning"]["chosen"]
    assert comparable(summary) == comparable(one_session)
    assert len(summary["sessions"]) == chunks  # every chunk's session is kept


def test_a_partial_search_is_a_summary_without_runs(tmp_path):
    figures = tmp_path / "figures"
    run_protocol(RECIPES, "smoke", tmp_path / "a", summary_path=figures / SUMMARY_NAME, max_minutes=1e-4)
    summary = update_summary(tmp_path / "a", figures, "smoke", names=RECIPES)
    assert summary["runs"] == [] and summary["tuning"]["complete"] is False
    assert len(summary["tuning"]["runs"]) == 1
    outcome = next(iter(summary["tuning"]["runs"].values()))
    assert {"score", "best_step", "steps", "min_mcc", "config"} <= set(outcome)


def test_a_changed_setting_is_not_taken_from_the_summary(one_session, tmp_path):
    from ranklab.experiments.run.runner import finished_in_summary
    from ranklab.experiments.protocol.recipes import recipe_runs
    from dataclasses import replace

    runs = recipe_runs(RECIPES, "smoke", None, one_session["tuning"]["chosen"])
    assert finished_in_summary(runs, one_session) == {r.run_id for r in runs}
    changed = [replace(r, config=replace(r.config, max_steps=r.config.max_steps + 1)) for r in runs]
    assert finished_in_summary(changed, one_session) == set()


def test_budget_starts_a_run_only_when_it_is_expected_to_fit():
    budget = Budget(seconds=100.0)
    assert budget.take(10**9) and budget.started == 1  # a session's first run always starts
    assert budget.allows(10**9)  # nothing measured yet: runs start while time is left
    budget.measured(seconds=10.0, examples=1000)  # 0.01 s per example
    assert budget.allows(5000) and not budget.allows(20000)
    assert Budget().allows(10**12)  # no limit
    with pytest.raises(ValueError, match="--max-minutes must be > 0"):
        run_protocol(RECIPES, "smoke", "unused", max_minutes=0)


def test_redrawing_without_recipes_keeps_the_recipes_the_summary_was_trained_on(one_session, one_session_root,
                                                                                 tmp_path):
    """`ranklab figures` names no recipes: the redrawn summary plans the saved summary's recipes (not
    every recipe of the scale, which had turned a finished single-task protocol into 'in progress')."""
    import shutil

    from ranklab.experiments.protocol.recipes import get_scale, recipe_runs
    from ranklab.experiments.results.summary_format import read_summary

    figures = tmp_path / "figures"
    figures.mkdir()
    shutil.copy(one_session_root / "figures" / SUMMARY_NAME, figures / SUMMARY_NAME)
    redrawn = update_summary(tmp_path / "no-runs-here", figures, "smoke")  # nothing here: the saved summary
    assert redrawn["planned_runs"] == one_session["planned_runs"] == len(recipe_runs(RECIPES, get_scale("smoke")))
    again = update_summary(one_session_root / "results", figures, "smoke")  # the runs themselves, collected again
    assert again["planned_runs"] == one_session["planned_runs"] < len(recipe_runs(None, get_scale("smoke")))
    assert read_summary(figures / SUMMARY_NAME)["planned_runs"] == one_session["planned_runs"]


def test_a_notebook_resolves_its_scale_once_and_passes_the_scale_down(tmp_path, monkeypatch):
    """notebook_results (train=True) looks the scale up by name once; search, runs, plan and summary
    take the Scale object (issue "The multi-task half, converged", requirement 10)."""
    from ranklab.experiments.protocol import recipes
    from ranklab.experiments.run.notebook import notebook_results

    class Counting(dict):
        lookups = 0

        def __getitem__(self, key):
            Counting.lookups += 1
            return super().__getitem__(key)

    monkeypatch.setattr(recipes, "SCALES", Counting(recipes.SCALES))
    summary = notebook_results(["single_task"], "smoke", train=True, results_dir=tmp_path / "results",
                               summary_path=tmp_path / "none.json")
    assert summary["scale"] == "smoke" and summary["runs"]
    assert Counting.lookups == 1
