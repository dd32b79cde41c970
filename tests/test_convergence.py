"""The convergence check (issue 32): a continuation run's curve, the plateau rule replayed on it,
and a verdict that fails when the run was still learning at the stop."""
import math

import pytest

from ranklab.experiments.protocol.recipes import get_scale
from ranklab.experiments.results.convergence import check_run, convergence_frame, method_verdicts
from ranklab.experiments.results.tables import results_markdown

RULE = get_scale("converged").train


def _run(recipe, scores, method_id="lora_r8", label="LoRA r=8", test=0.9, steps=None, n=538, start=0):
    evals = [{"step": 100 * (i + 1), "score": s, "train_loss": 0.1} for i, s in enumerate(scores)]
    return {"recipe": recipe, "method_id": method_id, "label": label, "tasks": ["trec"], "seed": 1,
            "evals": evals, "steps": steps or evals[-1]["step"], "selectable_from": start,
            "validation_sizes": {"trec": n}, "main_metrics": {"trec": "accuracy"},
            "test": {"trec": {"accuracy": test}}, "best": {"step": 100, "score": max(scores)}, "wall_time_s": 1.0,
            "config": {"patience": None if recipe == "continuation" else 5}}


# 0.90 at step 300, then five evaluations within 1 point: the rule stops at step 800
STOPPED = [0.80, 0.85, 0.90, 0.905, 0.90, 0.91, 0.90, 0.905]


def test_a_run_that_kept_learning_after_the_stop_fails_the_check():
    rising = _run("continuation", STOPPED + [0.93, 0.95, 0.96], test=0.95)
    reported = _run("single_task", STOPPED, test=0.91)
    row = check_run(rising, RULE["patience"], RULE["min_delta"], reported)
    se = 100 * math.sqrt(0.91 * 0.09 / 538)
    assert row["stop (replayed)"] == 800 == row["reported stop"] and row["same curve"] == "yes"
    assert row["best val at stop"] == 91.0 and row["best val to the cap"] == 96.0
    assert row["gain"] == pytest.approx(5.0) and row["1 SE"] == pytest.approx(round(se, 2))
    assert row["converged"] == "no" and row["Δ test"] == pytest.approx(4.0)


def test_a_flat_continuation_passes_and_a_different_curve_is_said():
    flat = _run("continuation", STOPPED + [0.905, 0.91, 0.912])
    reported = _run("single_task", STOPPED[:-1] + [0.5])  # not the same training
    row = check_run(flat, RULE["patience"], RULE["min_delta"], reported)
    assert row["converged"] == "yes" and row["gain"] == pytest.approx(0.2) and row["same curve"] == "no"


def test_evaluations_before_the_final_budget_do_not_count():
    # AdaLoRA: a high score at step 100 inside its schedule is never the best; the rule starts at 300
    # (400 resets it, 500-900 gain under 1 point: the fifth without a gain stops it at 900)
    curve = [0.99, 0.70, 0.80, 0.85, 0.86, 0.86, 0.86, 0.86, 0.86, 0.86]
    row = check_run(_run("continuation", curve, start=300), RULE["patience"], RULE["min_delta"], None)
    assert row["best val at stop"] == 86.0 and row["stop (replayed)"] == 900 and row["gain"] == 0.0


def test_the_check_reaches_results_md_with_a_verdict_per_method():
    summary = {"scale": "converged", "description": "d", "runs": [
        _run("single_task", STOPPED), _run("continuation", STOPPED + [0.95]),
        _run("single_task", STOPPED, "emd_a4_b12", "EMD a=4, b=12"),
        _run("continuation", STOPPED + [0.905], "emd_a4_b12", "EMD a=4, b=12")]}
    frame = convergence_frame(summary)
    assert method_verdicts(frame) == {"LoRA r=8": False, "EMD a=4, b=12": True}
    text = results_markdown(summary, {"claims": [], "scores": {}, "sweep": []})
    assert "## Convergence check" in text and "In progress: 2 of 4 continuation runs" in text
    assert "Fails for LoRA r=8" in text and "passes for: EMD a=4, b=12" in text


def test_the_x4_check_names_the_older_search_it_took_its_rates_from():
    """figures/embedded-x4 was trained at the rates of the embedded scale's first search (before the
    embedded protocol was retrained): its record says so, and the single-task rates it used are
    today's embedded choices, so its single-task comparison is at the rates it claims."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    x4 = json.loads((root / "figures" / "embedded-x4" / "results_summary.json").read_text())["tuning"]
    embedded = json.loads((root / "figures" / "results_summary.json").read_text())["tuning"]
    assert "first search" in x4["taken_from"] and "first search" in x4["rule"]
    single = {k: v for k, v in x4["chosen"].items() if k.startswith("single:")}
    assert single == {k: v for k, v in embedded["chosen"].items() if k.startswith("single:")}
    assert set(x4["chosen"]) != set(embedded["chosen"])  # its multi-task entries are the older search's
    assert "Not searched at this scale: taken from figures/results_summary.json at commit" in (
        root / "figures" / "embedded-x4" / "RESULTS.md").read_text()


def test_the_seeds_the_paper_difference_needs_are_quoted_as_computed():
    """README and docs/pilot quote one seed count for the paper's +0.77 at the pilot's SD, the one
    claims.seeds_for_paper_difference computes (not a rounded "about")."""
    import re
    from pathlib import Path

    from ranklab.experiments.results.claims import PILOT_SD, seeds_for_paper_difference

    root = Path(__file__).resolve().parents[1]
    need = seeds_for_paper_difference(PILOT_SD, 0.77)
    for path in (root / "README.md", root / "docs" / "pilot" / "README.md"):
        text = " ".join(path.read_text().split()).replace("*", "")
        quoted = {int(n) for n in re.findall(r"(\d+) seeds (?:would be needed|\(|\()", text)}
        assert quoted == {need}, (path.name, quoted)
        assert "about 32" not in text


def test_predict_then_run_trains_one_lora_per_rank():
    """The workshop exercise's runs, on a synthetic task and a tiny model: one row per rank, the
    effective rank of ΔW never above r, and bad ranks refused."""
    from ranklab.experiments.run.predict import rank_runs
    from ranklab.train.synthetic import synthetic_task, tiny_roberta

    task = synthetic_task("toy", n_train=64, n_eval=32, seed=0)
    frame = rank_runs((1, 4), task="toy", steps=6, tasks=[task], model_fn=tiny_roberta, backbone="tiny-random")
    assert list(frame["r"]) == [1, 4]
    assert (frame["effective rank of ΔW"] <= frame["r"] + 1e-9).all() and frame["effective rank of ΔW"].iloc[0] == 1.0
    assert frame["validation x 100"].between(0, 100).all()
    with pytest.raises(ValueError, match="ranks must be integers >= 1"):
        rank_runs((0, 4))


def test_readme_states_the_revision_progress_of_the_committed_summary():
    """While the revised converged protocol trains in chunks, README's status sentence gives the
    committed summary's own counts (search runs finished of the base search, per task)."""
    import json
    import re
    from pathlib import Path

    from ranklab.experiments.protocol.recipes import tuning_runs

    root = Path(__file__).resolve().parents[1]
    path = root / "figures" / "converged" / "results_summary.json"
    if not path.is_file():
        pytest.skip("no committed summary of the revised converged protocol yet")
    summary = json.loads(path.read_text())
    readme = " ".join((root / "README.md").read_text().split())
    status = readme[readme.index("**Status of the revision**"):readme.index("#### The first complete run")]
    tuning = summary.get("tuning") or {}
    base = tuning_runs(["single_task", "emd_sweep", "continuation"], "converged")
    done = {run_id for run_id in tuning.get("runs", {})}
    if tuning.get("chosen"):
        assert "search is complete" in status
        return
    per_task = {task: sum(1 for r in base if r.config.tasks == [task] and r.run_id in done) for task in ("trec", "movie")}
    found = re.search(r"(\d+) of its (\d+) base runs have finished \(TREC (\d+), movie (\d+)\)", status)
    assert found, status
    assert [int(g) for g in found.groups()] == [len(done & {r.run_id for r in base}), len(base),
                                                per_task["trec"], per_task["movie"]]
    assert len(summary["runs"]) == 0 and "no rate is chosen yet" in status
