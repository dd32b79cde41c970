"""Experiment recipes and the reproduction pipeline at the smoke scale (tiny model, synthetic tasks)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ranklab.experiments import figures as figs
from ranklab.experiments import tables
from ranklab.experiments.recipes import (
    MULTI_TASK_METHODS,
    SINGLE_TASK_METHODS,
    get_scale,
    recipe_runs,
)
from ranklab.experiments.analysis import ANALYSIS_FORMAT
from ranklab.experiments.runner import collect, is_finished, run_folder, run_recipes, run_status

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_cover_every_method_at_every_scale():
    for scale in ("paper", "embedded", "smoke"):
        runs = recipe_runs(None, scale)
        spec = get_scale(scale)
        assert len(runs) == len(spec.single_tasks) * len(SINGLE_TASK_METHODS) + len(MULTI_TASK_METHODS)
        assert len({r.run_id for r in runs}) == len(runs)
        assert {r.config.method for r in runs} == {"lora", "emd", "dylora", "adalora", "rank_router", "mor"}
    paper = recipe_runs(["multi_task"], "paper")
    assert {r.config.backbone for r in paper} == {"roberta-base"} and len(paper[0].config.tasks) == 7


def test_bad_scale_and_recipe_names():
    with pytest.raises(ValueError, match="unknown scale 'huge'; valid scales: paper, embedded, smoke"):
        get_scale("huge")
    with pytest.raises(ValueError, match="valid recipes: single_task, multi_task"):
        recipe_runs(["table9"], "smoke")


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """A subset of the smoke runs covering every analysis branch (trained once per module)."""
    results = tmp_path_factory.mktemp("results")
    runs = [r for r in recipe_runs(None, "smoke") if r.config.method in ("emd", "dylora", "rank_router", "mor")]
    run_recipes(scale="smoke", results=results, runs=runs)
    return results, runs


def test_runs_write_records_and_analyses(smoke_results):
    results, runs = smoke_results
    for run in runs:
        folder = run_folder(results, run)
        assert is_finished(folder), run.run_id
        analysis = json.loads((folder / "analysis.json").read_text())
        assert analysis["method"] == run.config.method and analysis["report"]
    router = json.loads((run_folder(results, runs[2]) / "analysis.json").read_text())
    assert {"router", "gates", "task_embeddings"} <= set(router)
    assert {"task_routed", "rank_choosing", "task_embeddings"} <= set(router["capabilities"])
    assert len(router["task_embeddings"]) == 2 * 2  # 2 tasks x (query, value) of the last layer
    dylora = json.loads((run_folder(results, runs[1]) / "analysis.json").read_text())
    assert [c["rank"] for c in dylora["rank_curve"]] == list(range(1, 9))


def test_finished_runs_are_not_redone(smoke_results):
    results, runs = smoke_results
    record = run_folder(results, runs[0]) / "record.json"
    before = record.stat().st_mtime_ns
    run_recipes(scale="smoke", results=results, runs=runs[:1])
    assert record.stat().st_mtime_ns == before


def test_stale_analysis_is_recomputed_without_training(smoke_results):
    results, runs = smoke_results
    folder = run_folder(results, runs[0])
    analysis_path, record_path = folder / "analysis.json", folder / "record.json"
    steps = json.loads(record_path.read_text())["steps"]
    old = json.loads(analysis_path.read_text())
    old["format"] = ANALYSIS_FORMAT - 1
    analysis_path.write_text(json.dumps(old))
    assert run_status(folder) == "stale" and not is_finished(folder)
    run_recipes(scale="smoke", results=results, runs=runs[:1])
    assert run_status(folder) == "finished"
    assert json.loads(analysis_path.read_text())["format"] == ANALYSIS_FORMAT
    assert json.loads(record_path.read_text())["steps"] == steps  # resumed at its end: no new steps
    analysis_path.unlink()  # a missing analysis is stale too
    assert run_status(folder) == "stale"
    run_recipes(scale="smoke", results=results, runs=runs[:1])
    assert run_status(folder) == "finished"


def test_figures_and_table_show_the_recorded_numbers(smoke_results, tmp_path):
    results, runs = smoke_results
    summary = collect("smoke", results)
    written = figs.draw_all(summary, tmp_path)
    names = {p.name for p in written}
    for stem in ("single_task_results", "multi_task_results", "task_embeddings_tsne", "chosen_ranks",
                 "router_distribution", "mor_router_weights", "dylora_rank_curve", "effective_rank_single_task"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names, stem
    frame = tables.results_frame(summary, "multi_task")
    router_run = next(r for r in summary["runs"] if r["method"] == "rank_router")
    row = frame[frame["method"] == router_run["label"]].iloc[0]
    assert row["toy_a"] == pytest.approx(100 * router_run["test"]["toy_a"]["accuracy"])
    fig = figs.fig_results(summary, "multi_task")
    heights = sorted(round(b.get_height(), 6) for b in fig.axes[0].patches)
    assert heights == sorted(round(float(v), 6) for v in frame[["toy_a", "toy_b", "avg"]].to_numpy().ravel())
    chosen = figs.fig_chosen_ranks(summary).axes[0].images[0].get_array()
    assert set(np.unique(chosen)) <= {r["chosen_rank"] for r in router_run["analysis"]["router"]}
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "| Rank router r<=16 |" in markdown and "84.00" in markdown  # the paper's number beside ours


def test_figures_command_without_results_is_a_clean_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ranklab.cli", "figures", "--results", str(tmp_path / "none"),
                             "--figures", str(tmp_path / "figs")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "run `ranklab reproduce --scale embedded` first" in result.stderr


SUMMARY = ROOT / "figures" / "results_summary.json"


@pytest.mark.skipif(not SUMMARY.is_file(), reason="no committed results summary yet")
def test_committed_figures_match_what_the_pipeline_draws(tmp_path):
    import matplotlib.image

    written = figs.draw_all(json.loads(SUMMARY.read_text()), tmp_path)
    committed = {p.name for p in (ROOT / "figures").iterdir() if p.suffix in (".png", ".pdf", ".md")}
    assert {p.name for p in written} == committed
    for path in written:
        if path.suffix == ".png":
            ours, theirs = matplotlib.image.imread(path), matplotlib.image.imread(ROOT / "figures" / path.name)
            assert ours.shape == theirs.shape and np.abs(ours - theirs).mean() < 0.01, path.name
        if path.suffix == ".md":
            assert path.read_text() == (ROOT / "figures" / path.name).read_text()
