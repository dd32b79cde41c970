"""The converged protocol's learning-rate search: the median tuning seed scores a rate, and a rate
at which any tuning run is at chance on a validation task is vetoed (a cliff cannot be chosen)."""
import json

import pytest

from ranklab.experiments.protocol.recipes import get_scale, tuning_runs
from ranklab.experiments.run.tuning import choose_learning_rates, run_outcome
from ranklab.train.records import RECORD_FORMAT


def write_records(results, search, score_of, mcc_of=lambda run: 0.5):
    for run in search:
        folder = results / run.run_id
        folder.mkdir(parents=True)
        metrics = {t: {"accuracy": score_of(run), "mcc": mcc_of(run)} for t in run.config.tasks}
        record = {"format": RECORD_FORMAT, "tasks": run.config.tasks, "steps": 900,
                  "evals": [{"step": 100, "score": score_of(run) - 0.1}, {"step": 900, "score": score_of(run)}],
                  "best": {"step": 900, "score": score_of(run), "metrics": metrics}}
        (folder / "record.json").write_text(json.dumps(record))


@pytest.fixture
def search():
    scale = get_scale("converged")
    runs = [r for r in tuning_runs(["single_task"], scale) if r.method_id == "lora_r8"]
    assert {r.config.lr for r in runs} == set(scale.lr_grid) and {r.seed for r in runs} == set(scale.tuning_seeds)
    assert all(r.config.tasks == ["trec"] for r in runs)  # the single-task search runs on trec only
    assert all(r.config.patience == 5 and r.config.max_eval is None for r in runs)  # at the reported length
    return runs


def test_the_median_seed_decides_not_one_lucky_seed(tmp_path, search):
    # 2e-3: one brilliant seed and two poor ones (mean 0.80, median 0.70); 1e-3: steady 0.75
    scores = {(2e-3, 0): 1.0, (2e-3, 10): 0.70, (2e-3, 20): 0.70}
    write_records(tmp_path, search, lambda r: scores.get((r.config.lr, r.seed), 0.75 if r.config.lr == 1e-3 else 0.6))
    mean = choose_learning_rates(search, tmp_path, "mean")
    median = choose_learning_rates(search, tmp_path, "median_veto")
    assert mean["chosen"]["single:lora_r8"] == 2e-3
    assert median["chosen"]["single:lora_r8"] == 1e-3
    assert median["scores"]["single:lora_r8"]["0.002"] == pytest.approx(0.70)


def test_a_rate_with_a_collapsed_tuning_run_is_vetoed(tmp_path, search):
    # 2e-3 scores best, but seed 20 ends at chance (MCC 0.05 < 0.1) on validation
    write_records(tmp_path, search, lambda r: {5e-4: 0.7, 1e-3: 0.8, 2e-3: 0.9}[r.config.lr],
                  lambda r: 0.05 if (r.config.lr, r.seed) == (2e-3, 20) else 0.6)
    chosen = choose_learning_rates(search, tmp_path, "median_veto")
    assert chosen["chosen"]["single:lora_r8"] == 1e-3
    assert list(chosen["vetoed"]["single:lora_r8"]) == ["0.002"]
    assert chosen["runs"][search[0].run_id]["min_mcc"] == pytest.approx(0.6)
    assert choose_learning_rates(search, tmp_path, "mean")["chosen"]["single:lora_r8"] == 2e-3  # the old rule


def test_every_rate_vetoed_is_an_error_naming_the_way_out(tmp_path, search):
    write_records(tmp_path, search, lambda r: 0.5, lambda r: 0.0)
    with pytest.raises(ValueError, match="every rate of the search for LoRA r=8 .* widen the grid"):
        choose_learning_rates(search, tmp_path, "median_veto")
    with pytest.raises(ValueError, match="unknown search rule 'best'; valid rules: mean, median_veto"):
        choose_learning_rates(search, tmp_path, "best")


def test_outcomes_of_runs_trained_elsewhere_count_like_records(tmp_path, search):
    write_records(tmp_path, search, lambda r: {5e-4: 0.7, 1e-3: 0.8, 2e-3: 0.9}[r.config.lr])
    here = choose_learning_rates(search, tmp_path, "median_veto")
    elsewhere = tmp_path / "elsewhere"  # a fresh machine: no records, the committed outcomes only
    elsewhere.mkdir()
    known = {run_id: outcome for run_id, outcome in here["runs"].items()}
    again = choose_learning_rates(search, elsewhere, "median_veto", known)
    assert again["chosen"] == here["chosen"] and again["scores"] == here["scores"]
    assert run_outcome({"best": None})["score"] is None


def test_the_declared_design_matches_the_scale_and_says_what_it_cannot_detect():
    from ranklab.experiments.results.claims import PILOT_SD, declared_design, seeds_for_paper_difference
    from ranklab.experiments.results.stats import minimal_detectable_effect

    scale = get_scale("converged")
    design = {d["claim"]: d for d in declared_design("converged")}
    emd = design["emd_vs_lora"]
    assert tuple(emd["seeds"]) == scale.seeds and tuple(emd["tasks"]) == scale.single_tasks
    assert emd["expected_mde"] == pytest.approx(minimal_detectable_effect(PILOT_SD, len(scale.seeds)))
    assert emd["reaches_paper"] is False and emd["expected_mde"] > 2 * emd["paper_difference"]
    need = seeds_for_paper_difference(PILOT_SD, emd["paper_difference"])
    assert minimal_detectable_effect(PILOT_SD, need) <= 0.77 < minimal_detectable_effect(PILOT_SD, need - 1)
    multi = [d for d in design.values() if d["claim"] in ("router_vs_lora16", "mor_vs_moelora")]
    assert all(not d["run"] and tuple(d["seeds"]) == scale.multi_seeds for d in multi)
    assert declared_design("embedded") == []  # no design was declared for the 120-step protocol


def test_adalora_reaches_its_budget_before_the_typical_plateau():
    from ranklab.train.adalora import AdaLoraOptions

    scale = get_scale("converged")
    run = next(r for r in tuning_runs(["single_task"], scale) if r.method_id == "adalora_r12_8")
    options = AdaLoraOptions(**{k: v for k, v in run.config.adapter.items()})
    assert options.final_budget_step(run.config.max_steps) == 800 < scale.typical_steps["single"]
