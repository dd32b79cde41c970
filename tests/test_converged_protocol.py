"""The converged protocol's code path in miniature: runs stop at their own plateau, the search
scores the median seed with a collapse veto, RESULTS.md prints each run's steps and the figures
draw runs of different lengths."""
import json
from dataclasses import replace

import pytest

from ranklab.experiments.protocol import recipes
from ranklab.experiments.results.derived import derive
from ranklab.experiments.results.figures import draw_all
from ranklab.experiments.results.summary import collect
from ranklab.experiments.results.convergence import convergence_frame
from ranklab.experiments.results.tables import best_at_last_eval, results_markdown, training_length_frame
from ranklab.experiments.run.runner import run_protocol, run_cost


@pytest.fixture(scope="module")
def plateau_summary(tmp_path_factory):
    smoke = recipes.SCALES["smoke"]
    scale = replace(smoke, name="smoke-plateau", train={**smoke.train, "max_steps": 120, "eval_every": 10,
                                                         "patience": 2, "min_delta": 0.05},
                    tuning_seeds=(0, 10, 20), search_rule="median_veto_interior", typical_steps={"single": 60},
                    per_task_rates=True, grid_step=2.0, max_extensions=1, continuation_seeds=(1,))
    recipes.SCALES[scale.name] = scale
    try:
        results = tmp_path_factory.mktemp("plateau")
        run_protocol(["single_task", "continuation"], scale.name, results)
        summary = collect(scale.name, results, ["single_task", "continuation"])
        yield scale, summary, results
    finally:
        del recipes.SCALES[scale.name]


def test_runs_stop_at_their_own_plateau_and_the_table_says_where(plateau_summary):
    scale, summary, _ = plateau_summary
    reported = [r for r in summary["runs"] if r["recipe"] == "single_task"]
    steps = [r["steps"] for r in reported]
    assert all(s % 10 == 0 and s <= 120 for s in steps) and min(steps) < 120  # some stopped early
    for run in reported:  # stopped after 2 evaluations without a 5-point gain, or at the cap
        scores = [e["score"] for e in run["evals"]]
        assert run["steps"] == 120 or scores[-1] <= max(scores[:-2]) + 0.05 + 1e-9
    frame = training_length_frame(summary)
    lora = frame[frame["method"] == "LoRA r=8"].iloc[0]
    mine = sorted((r for r in reported if r["method_id"] == "lora_r8"), key=lambda r: r["seed"])
    assert lora["steps per run (seeds in order)"] == "toy_a: " + ", ".join(str(r["steps"]) for r in mine)
    assert lora["runs at the cap"] == sum(r["steps"] == 120 for r in mine)


def test_the_search_record_names_its_rule_and_vetoes(plateau_summary):
    _, summary, _ = plateau_summary
    tuning = summary["tuning"]
    assert tuning["rule_name"] == "median_veto_interior" and "vetoed" in tuning and tuning["seeds"] == [0, 10, 20]
    assert all(key.endswith("@toy_a") for key in tuning["chosen"])  # each task's own rate
    for key, grid in tuning["grids"].items():  # extended where the winner sat on an edge (1 rate at most)
        assert set(grid) >= {1e-2, 3e-2} and len(grid) <= 4
        chosen = tuning["chosen"][key]  # interior, or on an edge already 1 rate beyond the grid (the limit)
        assert chosen not in (grid[0], grid[-1]) or chosen in (6e-2, 5e-3), (key, grid, chosen)
    for key, rates in tuning["scores"].items():
        allowed = {lr: s for lr, s in rates.items() if lr not in tuning["vetoed"].get(key, {})}
        assert f"{tuning['chosen'][key]:g}" in allowed and rates[f"{tuning['chosen'][key]:g}"] == max(allowed.values())
    assert all(o["config"]["seed"] in (0, 10, 20) for o in tuning["runs"].values())


def test_results_and_figures_of_plateau_runs(plateau_summary, tmp_path):
    _, summary, _ = plateau_summary
    text = results_markdown(summary, derive(summary, n_boot=100))
    assert "## Training length: every run to a validation plateau" in text and "vetoed (a run at chance)" in text
    assert "## Convergence check: training on past the plateau rule's stop" in text
    written = {p.name for p in draw_all(summary, tmp_path, n_boot=100)}
    assert "learning_curves.png" in written


def test_the_continuation_runs_replay_the_reported_runs_then_train_on(plateau_summary):
    """A continuation run is its reported twin without the stopping rule: the same curve up to the
    replayed stop (so the reported result is what the continuation says it is), then on to the cap."""
    scale, summary, _ = plateau_summary
    frame = convergence_frame(summary)
    assert len(frame) == len(recipes.SINGLE_TASK_METHODS)  # every method, on the one task, seed 1
    assert (frame["same curve"] == "yes").all() and (frame["stop (replayed)"] == frame["reported stop"]).all()
    assert (frame["steps run"] == 120).all() and set(frame["converged"]) <= {"yes", "no"}
    for _, row in frame.iterrows():
        assert row["gain"] >= 0 and (row["converged"] == "yes") == (row["gain"] < row["1 SE"])


def test_expected_length_and_runs_still_rising():
    evals = [{"step": s, "score": v} for s, v in [(100, 0.5), (200, 0.8), (300, 0.81), (400, 0.83)]]
    assert best_at_last_eval({"evals": evals, "best": {"step": 400}})
    assert not best_at_last_eval({"evals": evals, "best": {"step": 300}})
    run = recipes.tuning_runs(["single_task"], "converged")[0]
    assert run_cost(run, recipes.get_scale("converged")) == 1300 * 16  # typical plateau, not the 3,000 cap
    assert run_cost(run) == 3000 * 16
    assert json.dumps(recipes.get_scale("converged").typical_steps)


def test_learning_curve_legend_counts_runs_still_rising_over_every_task():
    """One legend per recipe names how many of each method's runs, on every task (panel), had their
    best at their last evaluation, as RESULTS.md's training-length table gives it."""
    from pathlib import Path

    from ranklab.experiments.results.figures import fig_learning_curves
    from ranklab.experiments.results.summary_format import read_summary

    path = Path(__file__).resolve().parents[1] / "figures" / "converged-v1" / "results_summary.json"
    if not path.is_file():
        pytest.skip("no committed converged summary")
    summary = read_summary(path)
    assert len({tuple(r["tasks"]) for r in summary["runs"] if r["recipe"] == "single_task"}) > 1  # several panels
    legend = {t.get_text().split(":")[0]: t.get_text() for ax in fig_learning_curves(summary).axes
              if ax.get_legend() for t in ax.get_legend().get_texts()}
    frame = training_length_frame(summary)
    for _, row in frame[frame["recipe"] == "single_task"].iterrows():
        runs = [r for r in summary["runs"] if r["recipe"] == "single_task" and r["label"] == row["method"]]
        rising = row["best at the last evaluation"].split(" of ")[0]
        assert legend[row["method"]] == f"{row['method']}: {len(runs)} runs, {rising} best at the last evaluation"


def test_each_reported_run_keeps_its_spectra_and_the_panel_shows_them(plateau_summary):
    """Every report row of a reported run keeps its whole spectrum (largest first), whose measures
    are the row's own; the spectrum panel picks a run and module and marks the four ranks."""
    from ranklab.inspect import effective_rank, stable_rank
    from ranklab.spectrum_panel import report_spectra, spectrum_panel

    _, summary, _ = plateau_summary
    rows = [row for r in summary["runs"] if r["recipe"] == "single_task" for row in r["analysis"]["report"]]
    assert rows and all(row["spectrum"] == sorted(row["spectrum"], reverse=True) for row in rows)
    for row in rows:
        assert row["spectrum"][0] == pytest.approx(row["sigma_1"], rel=1e-3)
        assert effective_rank(row["spectrum"]) == pytest.approx(row["effective_rank"], rel=1e-3)
        assert stable_rank(row["spectrum"]) == pytest.approx(row["stable_rank"], rel=1e-3)
    spectra = report_spectra(summary)
    panel = spectrum_panel(summary)
    key = list(spectra)[-1]
    for name, value in zip(("method", "task", "seed", "layer", "module"), key):
        panel.controls[name].value = value
    assert panel.state["sigma"].tolist() == pytest.approx(spectra[key])
    assert panel.state["effective"] >= panel.state["stable"] and "energy rank" in panel.state["sentence"]
    labels = [t.get_text() for t in panel.figure.axes[0].get_legend().get_texts()]
    assert any(t.startswith("effective rank") for t in labels) and any(t.startswith("numerical rank") for t in labels)
    panel.controls["tau"].value = 0.5
    assert panel.state["energy"] <= panel.state["numerical"]
