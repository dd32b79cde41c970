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
from ranklab.experiments.results.tables import last_quarter_gain, results_markdown, training_length_frame
from ranklab.experiments.run.runner import run_protocol, run_cost


@pytest.fixture(scope="module")
def plateau_summary(tmp_path_factory):
    smoke = recipes.SCALES["smoke"]
    scale = replace(smoke, name="smoke-plateau", train={**smoke.train, "max_steps": 120, "eval_every": 10,
                                                         "patience": 2, "min_delta": 0.05},
                    tuning_seeds=(0, 10, 20), search_rule="median_veto", typical_steps={"single": 60})
    recipes.SCALES[scale.name] = scale
    try:
        results = tmp_path_factory.mktemp("plateau")
        run_protocol(["single_task"], scale.name, results)
        summary = collect(scale.name, results, ["single_task"])
        yield scale, summary, results
    finally:
        del recipes.SCALES[scale.name]


def test_runs_stop_at_their_own_plateau_and_the_table_says_where(plateau_summary):
    scale, summary, _ = plateau_summary
    steps = [r["steps"] for r in summary["runs"]]
    assert all(s % 10 == 0 and s <= 120 for s in steps) and min(steps) < 120  # some stopped early
    for run in summary["runs"]:  # stopped after 2 evaluations without a 5-point gain, or at the cap
        scores = [e["score"] for e in run["evals"]]
        assert run["steps"] == 120 or scores[-1] <= max(scores[:-2]) + 0.05 + 1e-9
    frame = training_length_frame(summary)
    lora = frame[frame["method"] == "LoRA r=8"].iloc[0]
    mine = sorted((r for r in summary["runs"] if r["method_id"] == "lora_r8"), key=lambda r: r["seed"])
    assert lora["steps per run (seeds in order)"] == "toy_a: " + ", ".join(str(r["steps"]) for r in mine)
    assert lora["runs at the cap"] == sum(r["steps"] == 120 for r in mine)


def test_the_search_record_names_its_rule_and_vetoes(plateau_summary):
    _, summary, _ = plateau_summary
    tuning = summary["tuning"]
    assert tuning["rule_name"] == "median_veto" and "vetoed" in tuning and tuning["seeds"] == [0, 10, 20]
    for key, rates in tuning["scores"].items():
        allowed = {lr: s for lr, s in rates.items() if lr not in tuning["vetoed"].get(key, {})}
        assert f"{tuning['chosen'][key]:g}" in allowed and rates[f"{tuning['chosen'][key]:g}"] == max(allowed.values())
    assert all(o["config"]["seed"] in (0, 10, 20) for o in tuning["runs"].values())


def test_results_and_figures_of_plateau_runs(plateau_summary, tmp_path):
    _, summary, _ = plateau_summary
    text = results_markdown(summary, derive(summary, n_boot=100))
    assert "## Training length: every run to a validation plateau" in text and "vetoed (a run at chance)" in text
    written = {p.name for p in draw_all(summary, tmp_path, n_boot=100)}
    assert "learning_curves.png" in written


def test_last_quarter_gain_and_expected_length():
    evals = [{"step": s, "score": v} for s, v in [(100, 0.5), (200, 0.8), (300, 0.81), (400, 0.83)]]
    assert last_quarter_gain(evals) == pytest.approx(2.0)  # best 0.83 vs 0.81 up to step 300 (x 100)
    run = recipes.tuning_runs(["single_task"], "converged")[0]
    assert run_cost(run, recipes.get_scale("converged")) == 1300 * 16  # typical plateau, not the 3,000 cap
    assert run_cost(run) == 3000 * 16
    assert json.dumps(recipes.get_scale("converged").typical_steps)


def test_learning_curve_legend_gives_the_tables_gain_over_every_task():
    """One legend per recipe names each method's largest last-quarter gain: over its runs on every
    task (panel), as RESULTS.md's training-length table gives it, not over the last panel's runs."""
    from pathlib import Path

    from ranklab.experiments.results.figures import fig_learning_curves
    from ranklab.experiments.results.summary_format import read_summary

    path = Path(__file__).resolve().parents[1] / "figures" / "converged" / "results_summary.json"
    if not path.is_file():
        pytest.skip("no committed converged summary")
    summary = read_summary(path)
    assert len({tuple(r["tasks"]) for r in summary["runs"] if r["recipe"] == "single_task"}) > 1  # several panels
    legend = {t.get_text().split(":")[0]: t.get_text() for ax in fig_learning_curves(summary).axes
              if ax.get_legend() for t in ax.get_legend().get_texts()}
    frame = training_length_frame(summary)
    for _, row in frame[frame["recipe"] == "single_task"].iterrows():
        runs = [r for r in summary["runs"] if r["recipe"] == "single_task" and r["label"] == row["method"]]
        assert legend[row["method"]] == (f"{row['method']}: {len(runs)} runs, "
                                         f"last-quarter gain <= {row['largest last-quarter gain']}")
