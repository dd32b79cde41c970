"""Every number docs/workshop.md quotes is recomputed here from the committed summaries or from the
library, so the workshop cannot go stale again (as README's numbers are, in test_experiments)."""
import json
import re
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from ranklab.accounting import module_params
from ranklab.experiments.results.claims import declared_design
from ranklab.experiments.results.derived import derive
from ranklab.widgets import lora_state

ROOT = Path(__file__).resolve().parents[1]
WORKSHOP = " ".join((ROOT / "docs" / "workshop.md").read_text().split())
CONVERGED = ROOT / "figures" / "converged-v1" / "results_summary.json"
EMBEDDED = ROOT / "figures" / "results_summary.json"


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def _claims(path: Path) -> dict:
    return {c["key"]: c for c in derive(json.loads(path.read_text()), n_boot=50)["claims"]}


def test_the_lora_norm_falls_as_alpha_over_root_r():
    norms = {r: np.mean([lora_state(r, 16.0, 0.3, 64, seed)["norm"] for seed in range(200)]) for r in (4, 8, 16, 32)}
    quoted = f"{norms[4]:.1f}, {norms[8]:.1f}, {norms[16]:.1f} and {norms[32]:.1f} at r = 4, 8, 16 and 32"
    assert quoted in WORKSHOP
    ratios = [norms[r] / norms[2 * r] for r in (4, 8, 16)]
    assert np.allclose(ratios, np.sqrt(2), rtol=0.05)  # "falls by about 1/√2 each time"
    assert "stays of the same order" not in WORKSHOP


def test_the_emd_budget_exercise_is_exact():
    def count(a, b):
        return sum(module_params("emd", 384, 384, a=a, b=b).values())

    assert f"(2, 14) costs 384·16 + 28 = {count(2, 14):,}" in WORKSHOP and f"(8, 8) 384·16 + 64 = {count(8, 8):,}" in WORKSHOP
    assert f"{100 * (count(8, 8) - count(2, 14)) / count(8, 8):.1f}% apart" in WORKSHOP
    # no two slider settings (1-32) share a count with different exported ranks; the first such pair
    counts: dict[int, set[int]] = {}
    for a, b in product(range(1, 33), repeat=2):
        counts.setdefault(count(a, b), set()).add(min(a, b))
    assert all(len(ranks) == 1 for ranks in counts.values())
    # the first pair with equal counts and different ranks, by smallest count (a <= b)
    by_count: dict[int, list[tuple[int, int]]] = {}
    for a, b in product(range(1, 65), repeat=2):
        if a <= b:
            by_count.setdefault(count(a, b), []).append((a, b))
    first = min(n for n, pairs in by_count.items() if len({min(p) for p in pairs}) > 1)
    assert by_count[first] == [(1, 48), (12, 36)] and f"(1, 48) and (12, 36), {first:,} each" in WORKSHOP


@pytest.mark.skipif(not CONVERGED.is_file(), reason="no committed converged summary")
def test_notebook_03s_solution_quotes_the_converged_summary():
    c = _claims(CONVERGED)["emd_vs_lora"]
    design = {d["claim"]: d for d in declared_design("converged")}["emd_vs_lora"]
    assert f"expected an MDE of {design['expected_mde']:.2f} points" in WORKSHOP
    assert f"The table's MDE ({c['minimal_detectable_effect']:.2f})" in WORKSHOP
    assert f"[{_signed(c['low'])}, {_signed(c['high'])}] ends below +0.77" in WORKSHOP
    per_seed = [_signed(x) for x in c["per_seed"]]
    assert f"is {', '.join(per_seed[:-1])} and {per_seed[-1]} points on seeds 1-5" in WORKSHOP
    favour = " and ".join(str(s) for s, x in zip(c["seeds"], c["per_seed"]) if x > 0)
    assert f"seeds {favour} alone would have shown EMD ahead" in WORKSHOP
    assert "1.29" not in WORKSHOP and "−1.83" not in WORKSHOP  # the 120-step lesson is gone


@pytest.mark.skipif(not EMBEDDED.is_file(), reason="no committed embedded summary")
def test_notebook_04s_solution_quotes_the_embedded_summary():
    claims = _claims(EMBEDDED)
    tuning = json.loads(EMBEDDED.read_text())["tuning"]["chosen"]
    assert tuning["multi:lora_r8"] == 3e-3 and tuning["multi:moelora_e8_r3"] == 1e-3
    assert "(3e-3; MoELoRA 1e-3)" in WORKSHOP
    assert f"its MDE ({claims['router_vs_lora16']['minimal_detectable_effect']:.1f} points)" in WORKSHOP
    for key, side, label in (("lora16_vs_lora8", "a", "LoRA r=8"), ("mor_vs_lora", "b", "MoR r=8"),
                             ("mor_vs_moelora", "b", "MoR r=18")):
        at = claims[key]["at_chance"][side]
        seeds = sorted(at, key=int)
        assert re.search(re.escape(label) + r" seeds? " + re.escape(seeds[0]) + r" \(", WORKSHOP), label
        for seed in seeds:
            tasks = at[seed]
            text = "all 7 tasks" if len(tasks) == 7 else tasks[0] if len(tasks) == 1 else f"{len(tasks)} of 7 tasks"
            assert f"{seed} ({text})" in WORKSHOP, (label, seed)
    assert f"{1 / 35:.3f}" in WORKSHOP  # the permutation test's smallest p: 1 of C(7, 4) = 35


@pytest.mark.skipif(not EMBEDDED.is_file(), reason="no committed embedded summary")
def test_the_task_region_solution_quotes_the_test():
    from ranklab.experiments.results.embedding_study import neighbour_test

    study = json.loads(EMBEDDED.read_text())["task_embedding_study"]
    r = {k: neighbour_test(v["points"]) for k, v in study.items()}
    tr, nc, ini = r["trained"], r["no_contrastive"], r["initial"]
    assert (f"For {100 * tr['same_task']:.0f}% of the trained router's points the nearest point from another seed is "
            f"of the same task, against {100 * tr['chance']:.0f}% by chance (p = {tr['p_value']:.3f}; without the "
            f"contrastive loss {100 * nc['same_task']:.0f}%, p = {nc['p_value']:.3f}; at initialisation "
            f"{100 * ini['same_task']:.0f}%)") in WORKSHOP
