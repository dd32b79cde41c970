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


KEY = "single:lora_r8@trec"


@pytest.fixture
def search():
    scale = get_scale("converged")
    runs = [r for r in tuning_runs(["single_task"], scale) if r.method_id == "lora_r8" and r.config.tasks == ["trec"]]
    assert {r.config.lr for r in runs} == set(scale.lr_grid) and {r.seed for r in runs} == set(scale.tuning_seeds)
    assert {r.tune_key for r in runs} == {KEY}  # trec's rate is chosen on trec's validation only
    assert all(r.config.patience == 5 and r.config.max_eval is None for r in runs)  # at the reported length
    return runs


def test_every_reported_task_is_searched_and_keeps_its_own_rate():
    """Each task's rate comes from its own search runs (movie's validation never chooses trec's
    rate); the EMD sweep takes EMD's trec rate and the continuation runs take their task's rate."""
    from ranklab.experiments.protocol.recipes import recipe_runs

    scale = get_scale("converged")
    search = tuning_runs(["single_task", "emd_sweep", "continuation"], scale)
    assert {tuple(r.config.tasks) for r in search} == {("movie",), ("trec",)}
    assert all(r.tune_key.endswith("@" + r.config.tasks[0]) for r in search)
    assert len(search) == 4 * 2 * 3 * 3  # methods x tasks x rates x tuning seeds: continuation adds none
    rates = {"single:emd_a4_b12@trec": 4e-3, "single:emd_a4_b12@movie": 5e-4, "single:lora_r8@trec": 1e-3,
             "single:lora_r8@movie": 2e-3}
    runs = recipe_runs(["single_task", "emd_sweep", "continuation"], scale, learning_rates=rates)
    for run in runs:
        if run.method_id.startswith("emd") or run.method_id == "lora_r8":
            assert run.config.lr == rates[f"single:{'emd_a4_b12' if run.method_id.startswith('emd') else 'lora_r8'}"
                                          f"@{run.config.tasks[0]}"], run.run_id
    continued = [r for r in runs if r.recipe == "continuation"]
    assert len(continued) == 4 * 2 and all(r.seed == 1 and r.config.patience is None for r in continued)
    assert all(r.config.max_steps == scale.train["max_steps"] for r in continued)  # the same schedule, to the cap


def test_the_median_seed_decides_not_one_lucky_seed(tmp_path, search):
    # 2e-3: one brilliant seed and two poor ones (mean 0.80, median 0.70); 1e-3: steady 0.75
    scores = {(2e-3, 0): 1.0, (2e-3, 10): 0.70, (2e-3, 20): 0.70}
    write_records(tmp_path, search, lambda r: scores.get((r.config.lr, r.seed), 0.75 if r.config.lr == 1e-3 else 0.6))
    mean = choose_learning_rates(search, tmp_path, "mean")
    median = choose_learning_rates(search, tmp_path, "median_veto")
    assert mean["chosen"][KEY] == 2e-3
    assert median["chosen"][KEY] == 1e-3
    assert median["scores"][KEY]["0.002"] == pytest.approx(0.70)


def test_a_rate_with_a_collapsed_tuning_run_is_vetoed(tmp_path, search):
    # 2e-3 scores best, but seed 20 ends at chance (MCC 0.05 < 0.1) on validation
    write_records(tmp_path, search, lambda r: {5e-4: 0.7, 1e-3: 0.8, 2e-3: 0.9}[r.config.lr],
                  lambda r: 0.05 if (r.config.lr, r.seed) == (2e-3, 20) else 0.6)
    chosen = choose_learning_rates(search, tmp_path, "median_veto")
    assert chosen["chosen"][KEY] == 1e-3
    assert list(chosen["vetoed"][KEY]) == ["0.002"]
    assert chosen["runs"][search[0].run_id]["min_mcc"] == pytest.approx(0.6)
    assert choose_learning_rates(search, tmp_path, "mean")["chosen"][KEY] == 2e-3  # the old rule


def test_every_rate_vetoed_is_an_error_naming_the_way_out(tmp_path, search):
    write_records(tmp_path, search, lambda r: 0.5, lambda r: 0.0)
    with pytest.raises(ValueError, match="every rate of the search for LoRA r=8 .* widen the grid"):
        choose_learning_rates(search, tmp_path, "median_veto")
    with pytest.raises(ValueError, match="unknown search rule 'best'; valid rules: mean, median_veto, median_veto_int"):
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


def test_a_median_tie_goes_to_the_higher_mean_then_the_centre_never_to_an_edge_by_rule(tmp_path, search):
    # DyLoRA's first search: 5e-4 and 2e-3 tied exactly on the median; the old rule took the smaller
    scores = {(5e-4, 0): 0.90, (5e-4, 10): 0.92, (5e-4, 20): 0.92, (1e-3, 0): 0.91, (1e-3, 10): 0.91,
              (1e-3, 20): 0.91, (2e-3, 0): 0.92, (2e-3, 10): 0.92, (2e-3, 20): 0.93}
    write_records(tmp_path, search, lambda r: scores[(r.config.lr, r.seed)])
    assert choose_learning_rates(search, tmp_path, "median_veto")["chosen"][KEY] == 5e-4  # ties: the smaller
    assert choose_learning_rates(search, tmp_path, "median_veto_interior")["chosen"][KEY] == 2e-3  # higher mean


def test_a_full_tie_goes_to_the_rate_nearest_the_centre_of_the_tied_rates():
    from ranklab.experiments.run.tuning import _interior_winner

    rates = [2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3]
    flat = {f"{lr:g}": 0.9 for lr in rates}
    assert _interior_winner(rates, flat, {lr: [0.9, 0.9, 0.9] for lr in rates}) == 1e-3  # the log-centre
    two = {f"{lr:g}": (0.9 if lr in (5e-4, 2e-3) else 0.8) for lr in rates}
    assert _interior_winner(rates, two, {lr: [0.9] for lr in rates}) == 5e-4  # equidistant: the smaller


def test_a_winner_on_an_edge_extends_the_grid_until_it_is_interior_or_the_rate_beyond_collapses(tmp_path):
    """The search's loop, driven by outcomes: the top edge wins at 2e-3, so 4e-3 is searched; it
    wins too, so 8e-3; at 8e-3 a tuning seed collapses (vetoed): 4e-3 is chosen, interior to the
    rates searched.  DyLoRA's bottom edge is extended to 2.5e-4 alike."""
    from ranklab.experiments.run.tuning import edge_winners, extensions

    scale = get_scale("converged")
    quality = {2.5e-4: 0.80, 5e-4: 0.84, 1e-3: 0.86, 2e-3: 0.88, 4e-3: 0.90, 8e-3: 0.95}
    extra: dict = {}
    rounds = 0
    while True:
        search = [r for r in tuning_runs(["single_task"], scale, extra)
                  if r.method_id == "emd_a4_b12" and r.config.tasks == ["trec"]]
        for run in search:
            if not (tmp_path / run.run_id).exists():
                write_records(tmp_path, [run], lambda r: quality[r.config.lr],
                              lambda r: 0.0 if (r.config.lr, r.seed) == (8e-3, 10) else 0.7)
        record = choose_learning_rates(search, tmp_path, scale.search_rule)
        more = extensions(record, scale.grid_step, scale.lr_grid, scale.max_extensions)
        if not more:
            break
        rounds += 1
        for key, lr in more.items():
            extra[key] = (*extra.get(key, ()), lr)
    key = "single:emd_a4_b12@trec"
    assert rounds == 2 and extra == {key: (4e-3, 8e-3)}
    assert record["chosen"][key] == 4e-3 and list(record["vetoed"][key]) == ["0.008"]
    assert record["grids"][key] == [5e-4, 1e-3, 2e-3, 4e-3, 8e-3] and edge_winners(record) == {}
    # the bottom edge, and the limit: 3 rates beyond an edge at most, then the winner stays there
    low = {"chosen": {"k": 5e-4}, "grids": {"k": [5e-4, 1e-3, 2e-3]}}
    assert extensions(low, 2.0, scale.lr_grid, 3) == {"k": 2.5e-4}
    deep = {"chosen": {"k": 6.25e-5}, "grids": {"k": [6.25e-5, 1.25e-4, 2.5e-4, 5e-4, 1e-3, 2e-3]}}
    assert extensions(deep, 2.0, scale.lr_grid, 3) == {} and edge_winners(deep) == {"k": 6.25e-5}
    assert extensions(low, None, scale.lr_grid, 3) == {}  # a scale without extension (embedded)


def test_the_runner_extends_the_search_in_rounds_and_reuses_them_in_a_later_chunk(tmp_path, monkeypatch):
    """runner._search: each round trains what the rule asks for (stubbed training writes the
    outcomes), and a second call (a later chunk) trains nothing new."""
    from ranklab.experiments.run import runner

    scale = get_scale("converged")
    trained = []

    def fake_run_all(runs, results, scale, quiet, desc="", jobs=1, budget=None, finished_elsewhere=frozenset()):
        for run in runs:
            if not (results / run.run_id / "record.json").exists():
                trained.append(run.run_id)
                good = 0.9 if (run.method_id == "adalora_r12_8") == (run.config.lr >= 2e-3) else 0.8
                write_records(results, [run], lambda r: good + (r.config.lr if r.method_id == "adalora_r12_8" else 0))
                (results / run.run_id / "record.json").write_text(json.dumps(
                    {**json.loads((results / run.run_id / "record.json").read_text()), "status": "completed"}))
        return []

    monkeypatch.setattr(runner, "run_all", fake_run_all)
    assert runner._search(["single_task"], scale, tmp_path, None, True, 1, runner.Budget())
    record = runner.read_tuning(tmp_path / "tuning.json")
    grids = record["grids"]
    assert grids["single:adalora_r12_8@movie"] == [5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]  # 3 beyond, then the limit
    assert record["chosen"]["single:adalora_r12_8@movie"] == 1.6e-2
    # the others: 5e-4 and 1e-3 tie, the smaller of an equidistant pair is an edge, so 2.5e-4 is searched;
    # it ties too, and the centre of the three tied rates, 5e-4, is chosen: interior
    assert all(g == [2.5e-4, 5e-4, 1e-3, 2e-3] and record["chosen"][k] == 5e-4
               for k, g in grids.items() if "adalora" not in k)
    first = len(trained)
    assert first == 8 * 3 * 3 + 6 * 3 + 2 * 3 * 3
    assert runner._search(["single_task"], scale, tmp_path, None, True, 1, runner.Budget())
    assert len(trained) == first  # a later chunk reuses every round


def test_the_lora_rank_sweep_searches_one_rate_per_task_at_r2_and_r32(tmp_path):
    """Declared before its runs: the sweep's rate per task is searched at r = 2 and r = 32 only,
    scored by the median seed of the two ranks' mean, and used for every rank; no other scale has it."""
    from ranklab.experiments.protocol.recipes import LORA_SWEEP_RANKS, recipe_runs

    scale = get_scale("converged-sweep")  # its own scale: its search and summary never mix with the protocol's
    assert not tuning_runs(["lora_rank_sweep"], "converged") and not recipe_runs(["lora_rank_sweep"], "converged")
    search = tuning_runs(["lora_rank_sweep"], scale)
    assert {r.method_id for r in search} == {"lora_r2", "lora_r32"}
    assert len(search) == 2 * len(scale.single_tasks) * len(scale.lr_grid) * len(scale.tuning_seeds)
    trec = [r for r in search if r.config.tasks == ["trec"]]
    # at 2e-3 r=2 is poor and r=32 good (mean 0.85), at 1e-3 both fair (0.86): the mean decides
    scores = {(2e-3, "lora_r2"): 0.80, (2e-3, "lora_r32"): 0.90, (1e-3, "lora_r2"): 0.86, (1e-3, "lora_r32"): 0.86}
    write_records(tmp_path, trec, lambda r: scores.get((r.config.lr, r.method_id), 0.5))
    record = choose_learning_rates(trec, tmp_path, "median_veto_interior")
    assert record["scores"]["single:lora_sweep@trec"]["0.002"] == pytest.approx(0.85)
    assert record["chosen"]["single:lora_sweep@trec"] == 1e-3
    runs = recipe_runs(["lora_rank_sweep"], scale, learning_rates={"single:lora_sweep@trec": 1e-3,
                                                                   "single:lora_sweep@movie": 4e-3})
    assert sorted({r.config.adapter["r"] for r in runs}) == list(LORA_SWEEP_RANKS)
    assert len(runs) == len(LORA_SWEEP_RANKS) * 2 * 3 and {r.seed for r in runs} == {1, 2, 3}
    assert all(r.config.lr == (1e-3 if r.config.tasks == ["trec"] else 4e-3) for r in runs)
    assert recipe_runs(["lora_rank_sweep"], "embedded") == [] and not tuning_runs(["lora_rank_sweep"], "embedded")


def test_successive_halving_stops_the_worse_rates_at_the_rung_and_lets_the_rest_plateau():
    from ranklab.experiments.run.halving import halve

    def curve(values):
        return list(range(100, 100 * len(values) + 1, 100)), values

    # 1e-3 starts slow and ends best; 3e-3 starts fast and ends worse; 1e-4 is poor throughout
    curves = {1e-4: {0: curve([0.2, 0.3, 0.4, 0.5]), 10: curve([0.2, 0.3, 0.4, 0.5])},
              1e-3: {0: curve([0.3, 0.6, 0.8, 0.9]), 10: curve([0.3, 0.6, 0.8, 0.9])},
              3e-3: {0: curve([0.6, 0.7, 0.75, 0.8]), 10: curve([0.6, 0.7, 0.75, 0.8])}}
    chosen, stopped, used, full = halve(curves, rungs=(200,), min_keep=2)
    assert stopped == {1e-4: 200} and chosen == 1e-3  # the slow starter survives with min_keep=2
    assert full == 6 * 400 and used == 4 * 400 + 2 * 200
    chosen, stopped, _, _ = halve(curves, rungs=(100, 200), min_keep=1)
    assert chosen == 3e-3 and stopped == {1e-4: 100, 1e-3: 200}  # halving down to one rate picks the fast starter


def test_the_replay_on_the_committed_converged_search_picks_the_same_rates_or_says_why_not():
    """Replayed on the first converged search's curves (TREC, 3 tuning seeds), halving at step 300
    keeps 2 of 3 rates: the same rate for LoRA, EMD and AdaLoRA, and for DyLoRA the other of its
    two exactly tied rates (0.00 validation points lost), with about 30% fewer steps."""
    import json
    from pathlib import Path

    from ranklab.experiments.run.halving import replay

    path = Path(__file__).resolve().parents[1] / "figures" / "converged-v1" / "results_summary.json"
    if not path.is_file():
        pytest.skip("no committed converged summary")
    frame = replay(json.loads(path.read_text())["tuning"], rungs=(300,)).set_index("tune key")
    assert list(frame["same rate"]) == [True, True, False, True]
    assert (frame["validation lost (x 100)"] == 0.0).all()
    assert 0.6 < frame["steps trained / full"].max() < 0.75
