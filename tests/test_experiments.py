"""The reproduction protocol at the smoke scale (tiny model, synthetic tasks): recipes, the
learning-rate search, runs at several seeds, per-example predictions, summary, figures, claims."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ranklab.experiments.results import claims as claim_module
from ranklab.experiments.results import figures as figs
from ranklab.experiments.results import tables
from ranklab.experiments.run.analysis import ANALYSIS_FORMAT
from ranklab.experiments.results.derived import derive
from ranklab.experiments.protocol.recipes import (
    CONTROLS,
    EMD_SWEEP,
    MULTI_TASK_METHODS,
    SINGLE_TASK_METHODS,
    get_scale,
    recipe_runs,
    tuning_runs,
)
from ranklab.experiments.run.runner import is_finished, protocol_runs, run_folder, run_protocol, run_recipes, run_status
from ranklab.experiments.results.summary import collect, save_summary
from ranklab.experiments.results.summary_format import SUMMARY_FORMAT, decode, encode
from ranklab.experiments.run.tuning import TUNING_NAME

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_cover_every_method_at_every_seed():
    for name in ("embedded", "smoke"):  # the paper scale's own recipes: tests/test_paper_scale.py
        scale = get_scale(name)
        runs = recipe_runs(None, scale)
        assert len({r.run_id for r in runs}) == len(runs)
        assert {r.config.method for r in runs} == {"lora", "emd", "dylora", "adalora", "rank_router", "mor", "moelora"}
        single = [r for r in runs if r.recipe == "single_task"]
        assert len(single) == len(scale.single_tasks) * len(SINGLE_TASK_METHODS) * len(scale.seeds)
        multi = [r for r in runs if r.recipe == "multi_task"]
        assert len(multi) == (len(MULTI_TASK_METHODS) + len(CONTROLS)) * len(scale.seeds_for("multi_task"))
        assert {r.seed for r in multi} == set(scale.seeds_for("multi_task"))
        sweep = [r for r in runs if r.recipe == "emd_sweep"]
        sweep_tasks = scale.sweep_tasks or scale.single_tasks
        assert len(sweep) == (len(EMD_SWEEP) - 1) * len(sweep_tasks) * len(scale.seeds_for("emd_sweep"))
    embedded = get_scale("embedded")
    assert len(embedded.seeds) >= 5 and len(embedded.multi_seeds) >= 3  # the minimum
    assert len(embedded.tuning_seeds) == 2
    assert not set(embedded.tuning_seeds) & set(embedded.seeds + embedded.multi_seeds + embedded.sweep_seeds)
    assert len(recipe_runs(["multi_task"], "embedded")[0].config.tasks) == 7


def test_the_search_covers_the_grid_on_the_tuning_seeds_only():
    scale = get_scale("embedded")
    search = tuning_runs(None, scale)
    assert {r.seed for r in search} == set(scale.tuning_seeds)
    assert {r.config.lr for r in search} == set(scale.lr_grid)
    assert not any(r.config.eval_test for r in search)  # the search never sees a test split
    keys = {r.tune_key for r in search}
    assert keys == ({f"single:{method_id}" for method_id in SINGLE_TASK_METHODS}
                    | {f"multi:{method_id}" for method_id in MULTI_TASK_METHODS})  # every method, MoELoRA included
    # every (method, task set, seed, rate) once
    cells = [(r.tune_key, tuple(r.config.tasks), r.seed, r.config.lr) for r in search]
    per_seed_and_rate = len(SINGLE_TASK_METHODS) * len(scale.single_tasks) + len(MULTI_TASK_METHODS)
    assert len(cells) == len(set(cells)) == per_seed_and_rate * len(scale.tuning_seeds) * len(scale.lr_grid)
    # the sweep and the control use the rate of the method they vary
    reported = recipe_runs(None, scale)
    assert {r.tune_key for r in reported if r.recipe == "emd_sweep"} == {"single:emd_a4_b12"}
    assert {r.tune_key for r in reported if r.method_id in CONTROLS} == {"multi:rank_router_r8"}
    assert {r.tune_key for r in reported if r.config.method == "moelora"} == {"multi:moelora_e8_r3"}
    chosen = {key: 1e-2 for key in keys}
    assert {r.config.lr for r in recipe_runs(None, scale, learning_rates=chosen)} == {1e-2}


def test_compared_budgets_are_the_papers():
    """The rank router at LoRA r=16's parameter count (the nearest rank not above it) and MoR at the
    MoR paper's 93.93% +- 1% of MoELoRA's, counted from the layers the recipes build."""
    from ranklab.accounting import budget
    from ranklab.experiments.protocol import recipes
    from ranklab.experiments.results.claims import CLAIMS

    scale = get_scale("embedded")
    n_tasks = len(scale.multi_tasks)
    shapes = [(384, 384)] * 12  # MiniLM-L6's query and value projections

    def params(method_id: str, r_delta: int = 0) -> int:
        method, options = {**recipes.MULTI_TASK_METHODS, **recipes.CONTROLS}[method_id]
        sizes = {k: v for k, v in options.items() if k in ("r", "n_experts")}
        sizes["r"] += r_delta
        return budget(method, shapes, **sizes, **({"n_tasks": n_tasks} if method == "rank_router" else {}))["total"]

    lora16 = params("lora_r16")
    assert 0.95 < params(recipes.ROUTER_ID) / lora16 <= 1.0 < params(recipes.ROUTER_ID, r_delta=1) / lora16
    assert abs(params(recipes.MOR_BUDGET_ID) / params(recipes.MOELORA_ID) - 0.9393) <= 0.01
    pairs = {(c.a, c.b) for c in CLAIMS}
    assert ("lora_r16", recipes.ROUTER_ID) in pairs and (recipes.MOELORA_ID, recipes.MOR_BUDGET_ID) in pairs
    assert ("lora_r8", recipes.MOR_ID) in pairs and recipes.MULTI_TASK_METHODS[recipes.MOR_ID][1]["r"] == 8


def test_bad_scale_recipe_and_seed_names():
    with pytest.raises(ValueError, match="unknown scale 'huge'; valid scales: paper, embedded, smoke"):
        get_scale("huge")
    with pytest.raises(ValueError, match="valid recipes: single_task, emd_sweep, multi_task"):
        recipe_runs(["table9"], "smoke")
    from ranklab.experiments.run.commands import parse_seeds

    assert parse_seeds("3,1") == (3, 1) and parse_seeds(None) is None
    for bad in ("1,x", "1,1", "-1", ""):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    """The whole smoke protocol: search, every reported run (trained once per module)."""
    results = tmp_path_factory.mktemp("results")
    run_protocol(None, "smoke", results)
    return results


def test_the_search_picks_the_best_validation_rate_and_runs_use_it(protocol):
    tuning = json.loads((protocol / TUNING_NAME).read_text())
    for key, scores in tuning["scores"].items():
        best = max(scores.values())
        assert scores[f"{tuning['chosen'][key]:g}"] == best
        ties = [float(lr) for lr, s in scores.items() if s == best]
        assert tuning["chosen"][key] == min(ties)  # a tie goes to the smaller rate
    runs, rates = protocol_runs(None, "smoke", protocol)
    assert rates == tuning["chosen"]
    for run in runs:
        record = json.loads((run_folder(protocol, run) / "record.json").read_text())
        assert record["config"]["lr"] == tuning["chosen"][run.tune_key]
        assert record["seed"] in get_scale("smoke").seeds


def test_every_run_saves_its_test_predictions(protocol):
    from ranklab.data.metrics import compute_metrics  # noqa: F401  (synthetic tasks score accuracy)

    runs, _ = protocol_runs(None, "smoke", protocol)
    for run in runs:
        folder = run_folder(protocol, run)
        assert is_finished(folder), run.run_id
        record = json.loads((folder / "record.json").read_text())
        predictions = json.loads((folder / "predictions.json").read_text())
        for task, data in predictions["tasks"].items():
            accuracy = np.mean(np.array(data["predicted"]) == np.array(data["labels"]))
            assert accuracy == pytest.approx(record["test"][task]["accuracy"])
    search = tuning_runs(None, "smoke")
    assert not (run_folder(protocol, search[0]) / "predictions.json").exists()


def test_a_changed_recipe_is_refused_not_mixed_with_old_runs(protocol):
    from dataclasses import replace

    run = recipe_runs(["single_task"], "smoke", (1,), json.loads((protocol / TUNING_NAME).read_text())["chosen"])[0]
    changed = replace(run, config=replace(run.config, max_steps=run.config.max_steps + 1))
    with pytest.raises(ValueError, match="trained with other settings \\(max_steps\\)"):
        run_recipes(scale="smoke", results=protocol, runs=[changed])


def test_finished_runs_are_not_redone_and_stale_analyses_are_recomputed(protocol):
    run = recipe_runs(["single_task"], "smoke", (1,), json.loads((protocol / TUNING_NAME).read_text())["chosen"])[0]
    folder = run_folder(protocol, run)
    record = folder / "record.json"
    before = record.stat().st_mtime_ns
    run_recipes(scale="smoke", results=protocol, runs=[run])
    assert record.stat().st_mtime_ns == before
    analysis_path = folder / "analysis.json"
    steps = json.loads(record.read_text())["steps"]
    old = json.loads(analysis_path.read_text())
    analysis_path.write_text(json.dumps({**old, "format": ANALYSIS_FORMAT - 1}))
    assert run_status(folder) == "stale"
    run_recipes(scale="smoke", results=protocol, runs=[run])
    assert run_status(folder) == "finished"
    assert json.loads(record.read_text())["steps"] == steps  # resumed at its end: no new steps


def test_summary_round_trips_predictions_and_draws_every_figure(protocol, tmp_path):
    summary = collect("smoke", protocol)
    path = save_summary(summary, tmp_path / "summary.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(summary, default=float))
    run = summary["runs"][0]
    task = run["tasks"][0]
    correct = decode(run["predictions"][task]) == decode(summary["labels"][task])
    assert correct.mean() == pytest.approx(run["test"][task]["accuracy"])
    assert encode([0, 3, 9], False) == "039" and list(decode("039")) == [0, 3, 9]
    written = {p.name for p in figs.draw_all(summary, tmp_path, n_boot=200)}
    for stem in figs.FIGURES:
        assert {f"{stem}.png", f"{stem}.pdf"} <= written, stem
    study = summary["task_embedding_study"]
    assert {"trained", "initial", "no_contrastive"} <= set(study)
    assert len(study["trained"]["points"]) == 2 * 2 * 2  # tasks x modules x seeds


def test_a_summary_of_the_label_keyed_format_is_read_with_stable_ids(tmp_path):
    """Format 2 named runs, folders and tune keys by display label; reading it gives format 3's ids."""
    from ranklab.experiments.results.summary_format import read_summary, upgrade_summary

    old = {"format": 2, "scale": "embedded", "tuning": {
        "grid": [0.001], "seeds": [0], "rule": "r", "scores": {"multi:Rank router r<=8": {"0.001": 0.5}},
        "chosen": {"multi:Rank router r<=8": 0.001},
        "curves": {"tuning/multi_task/rank-router-r-8__a+b__s0__lr0.001": {"tune_key": "multi:Rank router r<=8"}}},
        "task_embedding_study": {"trained": {"label": "Rank router r<=8", "seeds": [1]}},
        "runs": [{"run_id": "multi_task/rank-router-r-8__a+b__s1", "recipe": "multi_task", "label": "Rank router r<=8",
                  "seed": 1, "tune_key": "multi:Rank router r<=8", "tasks": ["a", "b"]},
                 {"run_id": "table2/dylora-r-8-mnli-init__mnli__s0", "recipe": "table2",
                  "label": "DyLoRA r<=8 (MNLI, init)", "seed": 0, "tune_key": "table2:DyLoRA r<=8", "tasks": ["mnli"]}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    new = read_summary(tmp_path / "old.json")
    assert new["format"] == SUMMARY_FORMAT and upgrade_summary(new) is new
    router, mnli = new["runs"]
    assert list(router)[:4] == ["run_id", "recipe", "method_id", "label"]
    assert (router["method_id"], router["run_id"], router["tune_key"]) == (
        "rank_router_r8", "multi_task/rank_router_r8__a+b__s1", "multi:rank_router_r8")
    assert (mnli["method_id"], mnli["run_id"]) == ("dylora_r8_mnli_init", "table2/dylora_r8_mnli_init__mnli__s0")
    tuning = new["tuning"]
    assert tuning["chosen"] == {"multi:rank_router_r8": 0.001}
    assert tuning["labels"]["multi:rank_router_r8"] == "Rank router r<=8"
    assert list(tuning["curves"]) == ["tuning/multi_task/rank_router_r8__a+b__s0__lr0.001"]
    assert new["task_embedding_study"]["trained"]["method_id"] == "rank_router_r8"
    with pytest.raises(ValueError, match="format 1"):
        upgrade_summary({"format": 1, "runs": []})


def test_figures_and_tables_show_the_derived_numbers(protocol, tmp_path):
    summary = collect("smoke", protocol)
    derived = derive(summary, n_boot=300)
    scores = derived["scores"]["single_task"]["lora_r8"]
    runs = [r for r in summary["runs"] if r["recipe"] == "single_task" and r["method_id"] == "lora_r8"]
    per_seed = sorted(100 * r["test"]["toy_a"]["accuracy"] for r in runs)
    assert sorted(scores["scores"]["toy_a"]["per_seed"]) == pytest.approx(per_seed)
    assert scores["scores"]["toy_a"]["mean"] == pytest.approx(np.mean(per_seed))
    from ranklab.experiments.results.plots import MARKERS

    from matplotlib.colors import to_rgba

    def means(figure):  # the markers of the means: one shape per series; a cut interval's arrow is hollow,
        return sorted(round(line.get_ydata()[0], 6) for ax in figure.axes for line in ax.lines  # the papers apart
                      if line.get_marker() in MARKERS and len(line.get_ydata()) == 1
                      and to_rgba(line.get_markerfacecolor()) != to_rgba("white")
                      and ax.get_xlabel() != "paper's GLUE average")

    fig = figs.fig_results(summary, "single_task", derived)
    shown = means(fig)
    # one task: its panel only (the average of one task is the same number)
    expected = sorted(round(s["scores"]["toy_a"]["mean"], 6) for s in derived["scores"]["single_task"].values())
    assert shown == pytest.approx(expected)
    multi = figs.fig_results(summary, "multi_task", derived)
    shown = means(multi)
    expected = sorted(round(cell["mean"], 6) for s in derived["scores"]["multi_task"].values()
                      for cell in s["scores"].values())  # every task and the average
    assert shown == pytest.approx(expected)
    from ranklab.experiments.results.stats import verdict

    for claim in derived["claims"]:
        assert claim["low"] <= claim["difference"] <= claim["high"] and claim["holm_p"] >= claim["p_value"]
        assert claim["holm_low"] <= claim["low"] and claim["high"] <= claim["holm_high"]
        paper = None if claim["paper_difference"] is None else claim["paper_difference"]
        assert claim["interval_verdict"] == verdict(claim["low"], claim["high"], 1, paper)
        at_chance = claim["at_chance"]["a"] or claim["at_chance"]["b"]
        assert claim["verdict"] == ("confounded by collapse" if at_chance else claim["interval_verdict"])
    markdown = tables.results_markdown(summary, derived)
    assert "## The papers' claims" in markdown and "## Learning-rate search" in markdown
    # the protocol's own wall time, from the session log the runner keeps
    session = summary["sessions"][0]
    trained = len(tuning_runs(None, "smoke")) + len(protocol_runs(None, "smoke", protocol)[0])
    assert session["search_runs_trained"] + session["runs_trained"] == trained and session["total_s"] > 0
    assert f"Protocol wall time: {session['total_s'] / 60:.1f} min in 1 session(s)" in markdown
    assert "84.00" in markdown  # the paper's multi-task router average beside ours
    from ranklab.hardware import hardware_info

    (machine, count), = summary["hardware"].items()  # every run trained here, named with its threads
    assert count == len(summary["runs"]) and machine.startswith(hardware_info()["cpu"])
    assert f"Hardware (runs): {machine} ({count})." in markdown and machine.endswith("fp32")
    assert tables.results_markdown({**summary, "hardware": None}, derived).count("Hardware: not recorded") == 1


def test_claims_are_judged_from_paired_predictions():
    """A synthetic summary where B is right on 10% more examples than A on every seed."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1500)
    runs = []
    for seed in (1, 2, 3, 4, 5):
        right_a = rng.random(1500) < 0.75
        right_b = right_a | (rng.random(1500) < 0.4)  # B keeps A's right answers and gains some
        for method_id, right in (("lora_r8", right_a), ("emd_a4_b12", right_b)):
            predicted = np.where(right, labels, 1 - labels)
            runs.append({"recipe": "single_task", "method_id": method_id, "seed": seed,
                         "main_metrics": {"t": "accuracy"}, "predictions": {"t": encode(predicted, False)}})
    summary = {"runs": runs, "labels": {"t": encode(labels, False)}}
    result = claim_module.judge(summary, claim_module.CLAIMS[0], n_boot=500)
    assert result["verdict"] == "reproduced" and 7 < result["difference"] < 13 and result["low"] > 0
    reversed_claim = claim_module.Claim("x", "LoRA beats EMD", "single_task", "emd_a4_b12", "lora_r8", None, "")
    assert claim_module.judge(summary, reversed_claim, n_boot=500)["verdict"] == "contradicted"
    # the same predictions on both sides: the interval is [0, 0], which excludes the paper's +0.77
    same = [dict(r, method_id="emd_a4_b12") for r in runs if r["method_id"] == "lora_r8"]
    null = {"runs": [r for r in runs if r["method_id"] == "lora_r8"] + same, "labels": summary["labels"]}
    assert claim_module.judge(null, claim_module.CLAIMS[0], n_boot=50)["verdict"] == "paper's effect ruled out"
    # noise around no difference: inconclusive without a paper difference, ruled out far below a large one
    noisy = [dict(r, method_id="emd_a4_b12", predictions={"t": encode(np.where(rng.random(1500) < 0.75, labels,
             1 - labels), False)}) for r in runs if r["method_id"] == "lora_r8"]
    noise = {"runs": [r for r in runs if r["method_id"] == "lora_r8"] + noisy, "labels": summary["labels"]}
    judged = claim_module.judge(noise, claim_module.replace(claim_module.CLAIMS[0], paper_difference=None), n_boot=50)
    assert judged["verdict"] == "inconclusive" and judged["low"] < 0 < judged["high"]
    far = claim_module.replace(claim_module.CLAIMS[0], paper_difference=judged["high"] + 5)
    assert claim_module.judge(noise, far, n_boot=50)["verdict"] == "paper's effect ruled out"
    # one seed of A predicts one class: whatever the interval says, the claim is confounded by collapse
    collapsed = [dict(r, predictions={"t": encode(np.zeros(1500, dtype=int), False)})
                 if (r["method_id"], r["seed"]) == ("lora_r8", 2) else r for r in runs]
    judged = claim_module.judge({**summary, "runs": collapsed}, claim_module.CLAIMS[0], n_boot=50)
    assert judged["verdict"] == "confounded by collapse" and judged["at_chance"] == {"a": {"2": ["t"]}, "b": {}}
    assert judged["interval_verdict"] in ("reproduced", "inconclusive")


def test_quick_reuses_the_committed_rates_without_a_search(protocol, tmp_path):
    summary = collect("smoke", protocol)
    save_summary(summary, tmp_path / "results_summary.json")
    runs, rates = protocol_runs(None, "smoke", tmp_path / "fresh", (1,), quick=True,
                                summary_path=tmp_path / "results_summary.json")
    assert rates == summary["tuning"]["chosen"] and {r.seed for r in runs} == {1}
    assert all(r.config.lr == rates[r.tune_key] for r in runs)


def test_a_longer_schedule_runs_at_the_rates_the_original_search_chose(protocol, tmp_path, monkeypatch):
    """embedded-x4's mechanism on the smoke scale: x2 the steps and evaluation points, no search, the
    rates of the original protocol's summary (recorded with where they came from), and a clear error
    without that summary."""
    from ranklab.experiments.protocol import recipes

    smoke = get_scale("smoke")
    longer = recipes.longer_schedule(smoke, 2)
    assert (longer.name, longer.rates_from, longer.tuning_seeds) == ("smoke-x2", "smoke", ())
    assert longer.train == {**smoke.train, "max_steps": 120, "eval_every": 40}
    assert get_scale("embedded-x4").train["max_steps"] == 4 * get_scale("embedded").train["max_steps"]
    monkeypatch.setitem(recipes.SCALES, "smoke-x2", longer)
    summary = collect("smoke", protocol)
    save_summary(summary, tmp_path / "results_summary.json")
    with pytest.raises(ValueError, match="run `ranklab reproduce --scale smoke` first"):
        run_protocol(["single_task"], "smoke-x2", tmp_path / "x2", (1,), summary_path=tmp_path / "missing.json")
    run_protocol(["single_task"], "smoke-x2", tmp_path / "x2", (1,), summary_path=tmp_path / "results_summary.json")
    taken = json.loads((tmp_path / "x2" / TUNING_NAME).read_text())
    assert taken["chosen"] == summary["tuning"]["chosen"] and "smoke scale's search" in taken["taken_from"]
    assert not (tmp_path / "x2" / "tuning").exists()  # nothing searched
    runs, rates = protocol_runs(["single_task"], "smoke-x2", tmp_path / "x2", (1,))
    assert rates == summary["tuning"]["chosen"] and runs
    for run in runs:
        record = json.loads((run_folder(tmp_path / "x2", run) / "record.json").read_text())
        assert record["config"]["lr"] == rates[run.tune_key] and record["steps"] == 120
        assert [e["step"] for e in record["evals"]] == [40, 80, 120]
    assert len(collect("smoke-x2", tmp_path / "x2", ["single_task"])["runs"]) == len(runs)


def test_figures_command_without_results_is_a_clean_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ranklab.cli", "figures", "--results", str(tmp_path / "none"),
                             "--figures", str(tmp_path / "figs")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "run `ranklab reproduce --scale embedded` first" in result.stderr


def test_reproduce_refuses_the_tuning_seed(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ranklab.cli", "reproduce", "--scale", "smoke", "--seeds", "0,1",
                             "--results", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "tuning seeds [0] are never reported" in result.stderr


SUMMARY = ROOT / "figures" / "results_summary.json"
CONVERGED = ROOT / "figures" / "converged-v1" / "results_summary.json"  # the complete first run


def _committed_format() -> int | None:
    try:
        return json.loads(SUMMARY.read_text()).get("format")
    except (OSError, ValueError):
        return None


@pytest.mark.skipif(_committed_format() != SUMMARY_FORMAT, reason="no committed results summary of the current format")
@pytest.mark.parametrize("folder", ["figures", "figures/embedded-x4", "figures/converged-v1", "figures/converged"])
def test_committed_figures_match_what_the_pipeline_draws(tmp_path, folder):
    import matplotlib.image

    folder = ROOT / folder
    if not (folder / SUMMARY.name).is_file():
        pytest.skip(f"no committed summary in {folder.name}/ (a protocol not started yet)")
    written = figs.draw_all(json.loads((folder / SUMMARY.name).read_text()), tmp_path)
    committed = {p.name for p in folder.iterdir() if p.suffix in (".png", ".pdf", ".md")}
    assert {p.name for p in written} == committed
    for path in written:
        if path.suffix == ".png":
            ours, theirs = matplotlib.image.imread(path), matplotlib.image.imread(folder / path.name)
            assert ours.shape == theirs.shape and np.abs(ours - theirs).mean() < 0.01, path.name
        if path.suffix == ".md":
            assert path.read_text() == (folder / path.name).read_text()


def test_collapsed_seeds_are_runs_at_chance_whatever_the_class_balance():
    from ranklab.experiments.results.derived import chance_tasks, collapsed_seeds

    rng = np.random.default_rng(0)
    balanced, imbalanced = rng.integers(0, 3, 600), (rng.random(600) < 0.1).astype(int)  # 90% class 0
    labels = {"a": encode(balanced, False), "b": encode(imbalanced, False), "r": [0.5, 1.0]}
    constant = {"a": encode(np.zeros(600), False), "b": encode(np.zeros(600), False)}  # b: 90% accurate, no skill
    noisy = np.where(rng.random(600) < 0.8, balanced, (balanced + 1) % 3)
    good = {"a": encode(noisy, False), "b": encode(imbalanced, False)}
    half = {"a": encode(noisy, False), "b": encode(np.zeros(600), False)}
    runs = [{"recipe": "multi_task", "method_id": "m", "seed": seed, "predictions": predictions}
            for seed, predictions in ((1, constant), (2, good), (3, half))]
    summary = {"runs": runs, "labels": labels}
    assert chance_tasks(runs[0], labels) == ["a", "b"] and chance_tasks(runs[1], labels) == []
    assert chance_tasks({"predictions": {"r": [0.1, 0.9]}}, labels) == []  # regression is never "at chance"
    assert collapsed_seeds(summary, "multi_task", "m") == [1, 3]  # at least half of the tasks at chance


@pytest.mark.skipif(_committed_format() != SUMMARY_FORMAT, reason="no committed results summary of the current format")
def test_readme_shows_the_committed_claims_table():
    """README's reading rests on the claims table of RESULTS.md (itself checked against the pipeline above)."""
    def claim_rows(text: str, after: str = "") -> list[str]:
        start = text.index("| claim | B - A |", text.index(after))
        return text[start:text.index("\n\n", start)].splitlines()

    readme = (ROOT / "README.md").read_text()
    embedded = claim_rows(readme, "### The embedded protocol (120 steps)")
    assert embedded == claim_rows((ROOT / "figures" / "RESULTS.md").read_text())
    if CONVERGED.is_file():  # the single-task claims' own table, first in the section
        converged = claim_rows(readme, "### The converged protocol")
        assert converged == claim_rows((CONVERGED.parent / "RESULTS.md").read_text()) != embedded


def _claim_table(text: str) -> list[dict[str, str]]:
    """The rows of a RESULTS.md claims table, by column name."""
    lines = text[text.index("| claim | B - A |"):].split("\n\n")[0].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")))) for line in lines[2:]]


@pytest.mark.skipif(not (ROOT / "figures" / "embedded-x4" / "RESULTS.md").is_file(), reason="no committed x4 check")
def test_readme_quotes_the_committed_longer_schedule_check():
    """README's "Training length" paragraph quotes each single-task claim's interval at 4x the steps."""
    rows = _claim_table((ROOT / "figures" / "embedded-x4" / "RESULTS.md").read_text())
    readme = (ROOT / "README.md").read_text().replace("−", "-")
    paragraph = readme[readme.index("- **Training length.**"):]
    paragraph = " ".join(paragraph[:paragraph.index("\n- **")].split())
    assert len(rows) == 3
    for row in rows:
        interval, verdict = row["our Δ [95% CI]"], row["verdict"].strip("*")
        assert f"{interval} *{verdict}*" in paragraph, (interval, verdict)


@pytest.mark.skipif(_committed_format() != SUMMARY_FORMAT, reason="no committed results summary of the current format")
def test_every_number_readme_quotes_from_the_runs_is_recomputed_from_the_summaries():
    """Each difference with an interval that README's reading quotes is a claim (main or x4 summary,
    recomputed here), and the other quoted numbers (budget ratios, seeds at chance, the sweep's
    effective ranks, chosen-rank agreement, the embedding test) are what the summary gives."""
    import re

    from ranklab.experiments.protocol.recipes import LABELS, MOELORA_ID, MOR_BUDGET_ID, MOR_ID, ROUTER_ID
    from ranklab.experiments.results.claims import seeds_at_chance

    readme = (ROOT / "README.md").read_text().replace("−", "-")
    reading = readme[readme.index("How to read it:"):readme.index("### The paper scale")]
    assert "Reading the v1 claims" not in reading  # that one is checked against its own summary
    reading = " ".join(reading.split())  # Markdown wraps lines anywhere, an interval included
    main = json.loads(SUMMARY.read_text())
    longer = json.loads((ROOT / "figures" / "embedded-x4" / SUMMARY.name).read_text())
    derived = {"main": derive(main, n_boot=50), "x4": derive(longer, n_boot=50)}
    claims = {f"{c['difference']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]": c
              for d in derived.values() for c in d["claims"]}
    quoted = re.findall(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", reading)
    assert len(quoted) >= 7 and set(quoted) <= set(claims), sorted(set(quoted) - set(claims))
    for text in quoted:  # each quoted interval is followed by its verdict
        assert re.search(re.escape(text) + r"[^*]{0,40}\*" + re.escape(claims[text]["verdict"]) + r"\*", reading), text
    params = {r["method_id"]: r["params"]["adapter_params"] for r in main["runs"] if r["recipe"] == "multi_task"}
    assert f"{params[ROUTER_ID] / params['lora_r16']:.3f}" in reading
    assert f"{params[MOR_BUDGET_ID] / params[MOELORA_ID]:.3f}" in reading
    for method_id in ("lora_r8", "lora_r16", ROUTER_ID, MOR_ID, MOR_BUDGET_ID, MOELORA_ID):
        found = seeds_at_chance(main, "multi_task", method_id)
        assert f"{LABELS[method_id]} {len(found)} of 3" in reading, method_id
    for row in derived["main"]["sweep"]:
        assert f"({row['a']}, {row['b']}) {row['score']['mean']:.1f}" in reading
        assert f"{row['effective_rank']:.2f}" in reading
    assert f"in {100 * derived['main']['chosen_ranks']['all_seeds_agree']:.0f}% of" in reading
    study = main["task_embedding_study"]["trained"]["test"]
    assert f"Δcos {study['statistic']:+.3f}" in reading and f"p = {study['p_value']:.3f}" in reading
    from ranklab.experiments.results.embedding_study import neighbour_test  # no task gets a region of its own

    regions = {k: neighbour_test(v["points"]) for k, v in main["task_embedding_study"].items()}
    trained, control, initial = regions["trained"], regions["no_contrastive"], regions["initial"]
    assert (f"{100 * trained['same_task']:.0f}% of the trained router's points against {100 * trained['chance']:.0f}% "
            f"by chance (p = {trained['p_value']:.3f}; {100 * control['same_task']:.0f}%, p = {control['p_value']:.3f} "
            f"without the contrastive loss; {100 * initial['same_task']:.0f}% at initialisation)") in reading


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_protocol_bar_moves_with_every_step_also_of_runs_in_worker_processes(tmp_path, monkeypatch, jobs):
    """One bar for all runs; it advances during a run (per step), not only when a run ends, and
    ends at the total; jobs=2 trains the runs side by side in two spawned processes."""
    import ranklab.experiments.run.runner as runner

    seen = []

    class Bar(runner.tqdm):
        def refresh(self, *args, **kwargs):
            seen.append(self.n)
            return super().refresh(*args, **kwargs)

    monkeypatch.setattr(runner, "tqdm", Bar)
    runs = [r for r in recipe_runs(["single_task"], "smoke", (1,)) if r.config.method in ("lora", "emd")]
    runner.run_all(runs, tmp_path, get_scale("smoke"), jobs=jobs)
    assert all(is_finished(run_folder(tmp_path, r)) for r in runs)
    total = sum(runner.run_cost(r) for r in runs)
    steps = {r.config.batch_size for r in runs}
    assert seen[-1] == total and len(steps) == 1
    if jobs == 1:  # in-process runs refresh the bar at every step: positions between run ends
        inside = {n for n in seen if 0 < n < total and n % runner.run_cost(runs[0]) != 0}
        assert len(inside) >= 10
    # with jobs=2 the bar polls the shared count, so positions seen mid-run depend on timing; that
    # it ends at the total shows the workers' steps reached it (without them it would stay at 0),
    # and the next test checks that a worker counts each step as it happens


def _count_steps_in_a_worker(steps: int, batch_size: int) -> list[int]:
    import ranklab.experiments.run.runner as runner

    counter = runner.StepCounter(runner._PROGRESS, batch_size)
    values = []
    for step in range(steps + 1):  # step 0 is the callback before training
        counter(step, None)
        values.append(runner._PROGRESS.value)
    return values


def test_a_worker_process_adds_each_step_to_the_shared_count():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import ranklab.experiments.run.runner as runner

    context = multiprocessing.get_context("spawn")
    progress = context.Value("q", 5)
    with ProcessPoolExecutor(1, mp_context=context, initializer=runner._worker_init,
                             initargs=(1, progress)) as pool:
        values = pool.submit(_count_steps_in_a_worker, 4, 8).result()
    assert values == [5, 13, 21, 29, 37] and progress.value == 37


@pytest.mark.skipif(_committed_format() != SUMMARY_FORMAT, reason="no committed results summary of the current format")
def test_gate_figures_show_a_spread_only_when_several_seeds_are_averaged():
    """MoR kept one seed (two collapsed): its cells show that seed's value, not a '±0.00' spread."""
    summary = json.loads(SUMMARY.read_text())
    from ranklab.experiments.protocol.recipes import MOR_ID
    from ranklab.experiments.results.derived import collapsed_seeds, router_id

    for draw, method_id in ((figs.fig_mor_router, MOR_ID), (figs.fig_router_distribution, router_id(summary))):
        fig = draw(summary)
        kept = [r["seed"] for r in summary["runs"] if r["recipe"] == "multi_task" and r["method_id"] == method_id
                and r["seed"] not in collapsed_seeds(summary, "multi_task", method_id)]
        cells = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert cells and all(("±" in text) == (len(kept) > 1) for text in cells), method_id
        title = fig._suptitle.get_text()
        assert (f"seed {kept[0]} only" in title) == (len(kept) == 1), title


@pytest.mark.skipif(not CONVERGED.is_file() or _committed_format() != SUMMARY_FORMAT,
                    reason="no committed converged summary")
def test_readme_reading_of_the_converged_claims_is_recomputed_from_its_summary():
    """Every interval README's v1 reading quotes is a claim of the v1 summary followed by its Holm
    verdict and then its unadjusted one; the chosen rates with their search scores, the steps, the
    runs still rising at their stop, the per-task differences and the seed SD's interval are the
    summary's."""
    import re

    from scipy import stats

    from ranklab.experiments.results.summary_format import read_summary
    from ranklab.experiments.results.tables import best_at_last_eval

    readme = (ROOT / "README.md").read_text().replace("−", "-")
    reading = readme[readme.index("Reading the v1 claims"):readme.index("Budget of v1")]
    reading = " ".join(reading.split())
    converged = read_summary(CONVERGED)
    assert "In progress" not in (CONVERGED.parent / "RESULTS.md").read_text()  # complete: no provisional claim
    claims = {f"{c['difference']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]": c for c in derive(converged, n_boot=50)["claims"]}
    quoted = re.findall(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", reading)
    assert set(quoted) == set(claims), sorted(set(quoted) ^ set(claims))
    for text, c in claims.items():
        holm = re.escape(text) + r", Holm: \*" + re.escape(c["holm_verdict"]) + r"\*"
        assert re.search(holm + r"\**[^*]{0,30}unadjusted: \*" + re.escape(c["verdict"]) + r"\*", reading), text
        if c["key"] == "adalora_vs_dylora":
            assert f"p = {c['holm_p']:.3f}" in reading
        if c["key"] == "emd_vs_lora":  # the seed SD's own 95% interval (chi-square, df = seeds - 1)
            df = c["n_seeds"] - 1
            low, high = (c["seed_sd"] * np.sqrt(df / stats.chi2.ppf(q, df)) for q in (0.975, 0.025))
            assert (f"{c['seed_sd']:.2f} on {df} degrees of freedom, has a 95% interval of about "
                    f"[{low:.2f}, {high:.2f}]") in reading

    def task_mean(method_id, task):
        return {r["seed"]: 100 * r["test"][task]["accuracy"] for r in converged["runs"]
                if r["recipe"] == "single_task" and r["method_id"] == method_id and r["tasks"] == [task]}

    emd, lora = task_mean("emd_a4_b12", "movie"), task_mean("lora_r8", "movie")
    assert f"({np.mean([emd[s] - lora[s] for s in emd]):+.2f}; TREC" in reading
    emd, lora = task_mean("emd_a4_b12", "trec"), task_mean("lora_r8", "trec")
    assert f"TREC {np.mean([emd[s] - lora[s] for s in emd]):+.2f})" in reading
    dylora, adalora = task_mean("dylora_r8", "trec"), task_mean("adalora_r12_8", "trec")
    assert f"DyLoRA {np.mean(list(dylora.values())):.2f} against AdaLoRA's {np.mean(list(adalora.values())):.2f}" in reading
    tuning = converged["tuning"]
    for key, label in tuning["labels"].items():
        chosen = f"{tuning['chosen'][key]:g}"
        assert f"{label.split(' ')[0]}" in reading and f"{float(chosen):.0e}".replace("e-0", "e-") in reading
        assert f"{100 * tuning['scores'][key][chosen]:.2f}" in reading, (label, chosen)
    steps = [r["steps"] for r in converged["runs"]]
    assert f"between {min(steps):,} and {max(steps):,} steps" in reading
    assert f"all {len(steps)} reported runs" in reading
    single = [r for r in converged["runs"] if r["recipe"] == "single_task"]
    assert f"{sum(best_at_last_eval(r) for r in single)} of the {len(single)} single-task runs" in reading
    # why v1's last-quarter statistic could not fail: the last quarter inside the patience window
    inside = sum(0.25 * r["steps"] <= r["config"]["patience"] * r["config"]["eval_every"] for r in converged["runs"])
    protocol = " ".join(readme[readme.index("### The converged protocol"):readme.index("Reading the v1 claims")].split())
    assert f"in {inside} of {len(converged['runs'])} runs the last quarter lay inside" in protocol