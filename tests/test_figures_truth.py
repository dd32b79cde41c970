"""Figures show what their captions say (issue "A workshop that tells the truth"): per-seed points on
the claims, no spread rounded to "±0", colour scales that span the values, intervals cut at the
metric's range and marked, a task-region test that can tell regions from none, no text under 8 pt."""
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.text import Text

from ranklab.experiments.results import figures as figs
from ranklab.experiments.results.derived import derive
from ranklab.experiments.results.embedding_study import neighbour_test
from ranklab.experiments.results.tables import CLIPPED, interval, results_frame

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ROOT / "figures" / "results_summary.json"
CONVERGED = ROOT / "figures" / "converged-v1" / "results_summary.json"
DISPLAY_WIDTH_IN = 11.0  # a notebook output area at 100% zoom, in matplotlib inches (100 dpi)
needs_summaries = pytest.mark.skipif(not (EMBEDDED.is_file() and CONVERGED.is_file()), reason="no committed summaries")


@pytest.fixture(scope="module")
def embedded():
    summary = json.loads(EMBEDDED.read_text())
    return summary, derive(summary, n_boot=50)


def test_the_region_test_tells_tasks_in_regions_from_tasks_without():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (7, 2))
    regions = [{"x": float(c[0] + rng.normal(0, 0.3)), "y": float(c[1] + rng.normal(0, 0.3)), "task": t, "seed": s,
                "module": m} for s in (1, 2, 3) for m in ("query", "value") for t, c in enumerate(centres)]
    test = neighbour_test(regions, n_perm=500)
    assert test["same_task"] == 1.0 and test["p_value"] < 0.01 and test["chance"] == pytest.approx(4 / 28)
    scattered = [{**p, "x": float(rng.normal()), "y": float(rng.normal())} for p in regions]
    assert neighbour_test(scattered, n_perm=500)["p_value"] > 0.05
    # a seed's own points never count: query and value of one seed side by side, tasks scattered
    pairs = []
    for s in (1, 2, 3):
        for t in range(7):
            x, y = rng.normal(0, 10, 2)
            pairs += [{"x": x, "y": y, "task": t, "seed": s, "module": "query"},
                      {"x": x + 0.01, "y": y, "task": t, "seed": s, "module": "value"}]
    assert neighbour_test(pairs, n_perm=500)["same_task"] < 0.5


@needs_summaries
def test_claims_show_every_seed_and_keep_the_paper_off_our_mean(embedded):
    summary, derived = embedded
    fig = figs.fig_claims(summary, derived)
    dots = sorted(round(float(x), 6) for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection)
                  for x, _ in c.get_offsets())
    seeds = sorted(round(float(x), 6) for c in derived["claims"] for x in c["per_seed"])
    assert dots == seeds
    for ax in fig.axes:
        lines = {tuple(np.round(line.get_xydata()[0], 6)): line.get_marker() for line in ax.get_lines()
                 if len(line.get_xydata()) == 1}
        diamonds = [xy for xy, m in lines.items() if m == "D"]
        means = [xy for xy, m in lines.items() if m == "o"]
        assert diamonds and all(d[1] != m[1] for d in diamonds for m in means)  # never on the mean's row


@needs_summaries
def test_chosen_ranks_show_the_seeds_range_never_a_rounded_spread(embedded):
    summary, derived = embedded
    fig = figs.fig_chosen_ranks(summary, derived)
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert cells and not any("±" in c for c in cells)
    chosen = derived["chosen_ranks"]["chosen"]
    expected = [f"{lo:.0f}" if lo == hi else f"{lo:.0f}-{hi:.0f}" for task in derived["chosen_ranks"]["tasks"]
                for lo, hi in zip(np.min(chosen[task], 0), np.max(chosen[task], 0))]
    assert cells == expected


@needs_summaries
def test_gate_colour_scale_spans_the_values_and_ranks_count_from_one(embedded):
    summary, _ = embedded
    fig = figs.fig_router_distribution(summary)
    images = [ax.images[0] for ax in fig.axes if ax.images]  # one colour scale over every module's panel
    top = max(float(np.nanmax(np.asarray(i.get_array()))) for i in images)
    assert all(top <= i.norm.vmax < top + 0.1 + 1e-9 < 1 for i in images)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][0] == "1"


@needs_summaries
def test_tables_cut_intervals_at_the_metric_range_and_say_so(embedded):
    summary, derived = embedded
    frame = results_frame(summary, derived, "multi_task")
    cells = [c for col in frame.columns for c in frame[col].astype(str) if "[" in c]
    for cell in cells:
        low, high = (float(v.rstrip(CLIPPED)) for v in cell.split("[")[1].rstrip("]").split(", "))
        assert -100 <= low <= high <= 100
    assert any(CLIPPED in c for c in cells)  # 3 seeds with a collapse reach past 100 in the committed runs
    assert interval({"mean": 50, "low": -10, "high": 120}, (0, 100)) == f"50.00 [0.00{CLIPPED}, 100.00{CLIPPED}]"
    assert CLIPPED in (ROOT / "figures" / "RESULTS.md").read_text()


@needs_summaries
@pytest.mark.parametrize("path", [EMBEDDED, CONVERGED])
def test_no_text_under_8_points(path):
    summary = json.loads(path.read_text())
    derived = derive(summary, n_boot=50)
    small = {}
    for name, draw in figs.FIGURES.items():
        fig = draw(summary, derived)
        if fig is None:
            continue
        # JupyterLab shows a figure at most about as wide as its output area (~11 inches at 100%
        # zoom) and scales a wider one down, text included: what a reader sees is what counts
        shrink = min(1.0, DISPLAY_WIDTH_IN / fig.get_figwidth())
        sizes = [t.get_fontsize() * shrink for t in fig.findobj(Text) if t.get_text().strip()]
        if sizes and min(sizes) < 8 - 1e-9:
            small[name] = round(min(sizes), 1)
    assert not small, small


@needs_summaries
def test_the_verdict_flip_figure_draws_each_protocols_claims():
    from ranklab.experiments.results.flip import fig_verdict_flip, flip_rows

    summaries = {"120 steps": json.loads(EMBEDDED.read_text()),
                 "480 steps": json.loads((ROOT / "figures" / "embedded-x4" / "results_summary.json").read_text()),
                 "plateau": json.loads(CONVERGED.read_text())}
    rows = flip_rows(summaries)
    assert set(rows) == {"emd_vs_lora", "emd_vs_adalora", "adalora_vs_dylora"}
    assert all([r["protocol"] for r in judged] == list(summaries) for judged in rows.values())
    fig = fig_verdict_flip(summaries)
    for ax, judged in zip(fig.axes, rows.values()):
        thick = [line.get_xdata() for line in ax.get_lines() if line.get_linewidth() == 2.5]
        assert [tuple(np.round(x, 6)) for x in thick] == [(round(c["low"], 6), round(c["high"], 6)) for c in judged]
        dots = sorted(round(float(x), 6) for c in ax.collections if isinstance(c, PathCollection) for x, _ in c.get_offsets())
        assert dots == sorted(round(float(x), 6) for c in judged for x in c["per_seed"])
    # the lesson: at least one claim's headline verdict differs between budgets
    assert any(len({c.get("holm_verdict") or c["verdict"] for c in judged}) > 1 for judged in rows.values())


def test_a_summary_without_spectra_says_why_the_panel_cannot_open():
    from ranklab.spectrum_panel import spectrum_panel

    with pytest.raises(ValueError, match="keeps no spectra .* analysis format 4"):
        spectrum_panel({"runs": [{"recipe": "single_task", "analysis": {"report": [{"layer": 0}]}}]})


@needs_summaries
def test_rank_measures_table_is_the_reports_mean_and_effective_never_below_stable():
    from ranklab.experiments.results.tables import rank_measures_frame

    summary = json.loads(CONVERGED.read_text())
    frame = rank_measures_frame(summary)
    lora = [row for r in summary["runs"] if r["recipe"] == "single_task" and r["method_id"] == "lora_r8"
            for row in r["analysis"]["report"]]
    row = frame[frame["method"] == "LoRA r=8"].iloc[0]
    assert row["effective_rank"] == round(float(np.mean([x["effective_rank"] for x in lora])), 2)
    assert row["modules x runs"] == len(lora) and (frame["effective_rank"] >= frame["stable_rank"]).all()
