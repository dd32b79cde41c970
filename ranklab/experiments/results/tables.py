"""RESULTS.md from a results summary: the protocol, the learning-rate search, results with 95%
intervals and the papers' averages beside, the claims with their verdicts, the EMD sweep and
the task-embedding study."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...atomic import write_text
from ..protocol import paper
from .claims import CHANCE_MCC, claims_for, declared_design, seeds_at_chance
from .derived import label_of, runs_of
from .convergence import convergence_frame, convergence_notes
from .search import search_frame, search_text

Summary = dict[str, Any]
Derived = dict[str, Any]


def markdown_table(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = [f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)
                 for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CLIPPED = "†"  # an interval end cut at the metric's range
CLIPPED_NOTE = (f"{CLIPPED}: the 95% t-interval over the seeds reaches past the metric's range (few seeds, one of "
                "them far from the others: see the seeds in the figure); it is cut at the range's end.")
RANGES = {"accuracy": (0.0, 100.0), "f1": (0.0, 100.0)}  # x 100; correlations (MCC, Pearson) span -100..100


def interval(cell: dict[str, Any] | None, bounds: tuple[float, float] | None = None) -> str:
    """"mean [low, high]", each end cut at ``bounds`` (the metric's range, x 100) and marked if it was."""
    if not cell:
        return "-"
    low, high = cell["low"], cell["high"]
    if bounds is not None:
        low = f"{bounds[0]:.2f}{CLIPPED}" if low < bounds[0] else f"{low:.2f}"
        high = f"{bounds[1]:.2f}{CLIPPED}" if high > bounds[1] else f"{high:.2f}"
        return f"{cell['mean']:.2f} [{low}, {high}]"
    return f"{cell['mean']:.2f} [{low:.2f}, {high:.2f}]"


def metric_range(metrics: dict[str, str], group: str) -> tuple[float, float]:
    """The range x 100 of a task's main metric, or of the mean over tasks ("avg")."""
    names = metrics.values() if group == "avg" else [metrics.get(group, "")]
    return (0.0, 100.0) if all(n in RANGES for n in names) else (-100.0, 100.0)


def results_frame(summary: Summary, derived: Derived, recipe: str) -> pd.DataFrame:
    """One row per method entry: mean [95% interval] per task and on average, params, seeds, lr."""
    rows = []
    metrics = {t: m for r in runs_of(summary, recipe) for t, m in r["main_metrics"].items()}
    for method_id, scores in derived["scores"].get(recipe, {}).items():
        run = runs_of(summary, recipe, method_id)[0]
        found = seeds_at_chance(summary, recipe, method_id, scores["seeds"])
        row = {"method": run["label"], **{g: interval(c, metric_range(metrics, g)) for g, c in scores["scores"].items()},
               "adapter params": run["params"].get("adapter_params", 0), "lr": f"{run['lr']:g}",
               "seeds": len(scores["seeds"]), "seeds at chance": chance_text(found, len(run["tasks"]))}
        rows.append(row)
    return pd.DataFrame(rows)


def chance_text(found: dict[int, list[str]], n_tasks: int) -> str:
    """'none', or each seed at chance with its tasks: 'seed 1 (trec); seed 2 (5 of 7 tasks)'."""
    if not found:
        return "none"
    def tasks(names: list[str]) -> str:
        return ", ".join(names) if len(names) <= 2 else f"{len(names)} of {n_tasks} tasks"
    return "; ".join(f"seed {seed} ({tasks(names)})" for seed, names in sorted(found.items()))


def _params(summary: Summary, recipe: str, method_id: str) -> int:
    runs = runs_of(summary, recipe, method_id)
    return int(runs[0]["params"].get("adapter_params", 0)) if runs else 0


def spread(cell: dict[str, Any] | None) -> str:
    return "-" if not cell else f"{cell['median']:.2f} [{cell['min']:.2f}, {cell['max']:.2f}]"


def median_frame(summary: Summary, derived: Derived, recipe: str) -> pd.DataFrame:
    """The paper scale's table: one row per method entry, median [min, max] over seeds per task and on average."""
    rows = []
    for method_id, scores in derived["scores"].get(recipe, {}).items():
        run = runs_of(summary, recipe, method_id)[0]
        rows.append({"method": run["label"], **{g: spread(c) for g, c in scores["scores"].items()},
                     "adapter params": run["params"].get("adapter_params", 0), "seeds": len(scores["seeds"])})
    return pd.DataFrame(rows).fillna("-")  # e.g. an MNLI run that only initialises the others


PAPER_ROWS = {"single_task": (("Table 1", paper.TABLE1_SINGLE), ("Table 2", paper.TABLE2_SINGLE)),
              "table2": (("Table 2", paper.TABLE2_SINGLE),), "multi_task": (("Table 1", paper.TABLE1_MULTI),)}


def _paper_rows(recipe: str, scale: str = "embedded") -> pd.DataFrame:
    tables = PAPER_ROWS[recipe]
    if scale == "paper" and recipe == "single_task":  # Table 2 has its own recipe there
        tables = tables[:1]
    return pd.DataFrame([{"paper table": name, "method": label, "avg": row["avg"], "params": row.get("params", "-")}
                         for name, table in tables for label, row in table.items()])


def _ci(low: float, high: float) -> str:
    return f"[{low:+.2f}, {high:+.2f}]" if np.isfinite(low) else "[none: 1 seed]"


def claims_frame(derived: Derived, recipe: str | None = None, summary: Summary | None = None) -> pd.DataFrame:
    """The claims table (optionally only one recipe's claims).  With ``summary``: each compared
    pair's parameter ratio and the seeds of each side at chance (a collapse a difference may come from)."""
    rows = []
    for c in derived["claims"]:
        if recipe is not None and c["recipe"] != recipe:
            continue
        row = {"claim": c["text"], "B - A": f"{c['b_label']} − {c['a_label']}"}
        if summary is not None:
            a, b = _params(summary, c["recipe"], c["a"]), _params(summary, c["recipe"], c["b"])
            row["params B / A"] = f"{b / a:.3f}" if a else "-"
        row.update({
            "paper Δ": "-" if c["paper_difference"] is None else f"{c['paper_difference']:+.2f}",
            "our Δ [95% CI]": f"{c['difference']:+.2f} {_ci(c['low'], c['high'])}",
            "seed SD": f"{c['seed_sd']:.2f}", "test noise (SE)": f"{c['test_noise']:.2f}",
            "MDE": f"{c['minimal_detectable_effect']:.2f}", "seeds x test examples": f"{c['n_seeds']} x {c['n_examples']:,}",
            "p": f"{c['p_value']:.3f}",
            "Holm p [CI]": f"{c['holm_p']:.3f} {_ci(c['holm_low'], c['holm_high'])}" if "holm_p" in c else "-"})
        if summary is not None:
            row["seeds at chance (B / A)"] = " / ".join(
                ", ".join(sorted(c["at_chance"][side], key=int)) or "none" for side in ("b", "a"))
        row["verdict"] = f"**{c['verdict']}**" + (f" (provisional: {c['n_seeds']} of {c['declared_seeds']} declared seeds)"
                                                  if c.get("declared_seeds", 0) > c["n_seeds"] else "")
        row["Holm verdict"] = c.get("holm_verdict", "-")
        rows.append(row)
    return pd.DataFrame(rows)


def rank_measures_frame(summary: Summary, recipe: str = "single_task") -> pd.DataFrame:
    """Per method entry: the mean over its runs and modules of each rank measure of ΔW (the four
    disagree on the same spectra: effective >= stable always, energy and numerical by their cut)."""
    rows = []
    for method_id in dict.fromkeys(r["method_id"] for r in runs_of(summary, recipe)):
        report = [row for r in runs_of(summary, recipe, method_id) for row in r["analysis"].get("report", [])]
        if report:
            rows.append({"method": label_of(summary, recipe, method_id), "modules x runs": len(report),
                         **{name: round(float(np.mean([row[name] for row in report if row.get(name) is not None])), 2)
                            for name in ("effective_rank", "stable_rank", "energy_rank") if name in report[0]}})
    return pd.DataFrame(rows)


def best_at_last_eval(run: dict[str, Any]) -> bool:
    """Whether a run's best validation score is its final evaluation (still rising when it stopped)."""
    return bool(run["evals"]) and (run.get("best") or {}).get("step") == run["evals"][-1]["step"]


def training_length_frame(summary: Summary) -> pd.DataFrame:
    """Per recipe and method entry: the steps each run took (per task, in seed order), where its best
    validation score was, how many runs hit the cap, and how many had their best at the last evaluation."""
    rows = []
    entries = list(dict.fromkeys((r["recipe"], r["method_id"]) for r in summary["runs"]))  # plan order
    for recipe, method_id in entries:
        runs = sorted(runs_of(summary, recipe, method_id), key=lambda r: (r["tasks"], r["seed"]))
        cap = runs[0]["config"].get("max_steps") if runs[0].get("config") else None
        by_task: dict[str, list[str]] = {}
        for run in runs:
            by_task.setdefault("+".join(run["tasks"]) if len(run["tasks"]) < 3 else "all", []).append(str(run["steps"]))
        rows.append({"recipe": recipe, "method": runs[0]["label"],
                     "steps per run (seeds in order)": "; ".join(f"{t}: {', '.join(v)}" for t, v in by_task.items()),
                     "best step (median)": int(np.median([(r.get("best") or {}).get("step", 0) for r in runs])),
                     "runs at the cap": sum(cap is not None and r["steps"] >= cap for r in runs),
                     "best at the last evaluation": f"{sum(best_at_last_eval(r) for r in runs)} of {len(runs)}"})
    return pd.DataFrame(rows)


def design_frame(scale: str | None) -> pd.DataFrame:
    """The design declared before the runs (claims.DESIGNS): per claim seeds, tasks, the SD it was
    planned with and the expected minimal detectable effect against the paper's difference."""
    rows = []
    for d in declared_design(scale):
        mde, paper = d["expected_mde"], d["paper_difference"]
        rows.append({"claim": d["claim"], "seeds": len(d["seeds"]), "tasks": len(d["tasks"]),
                     "planned SD": "n/a" if d["planned_sd"] is None else f"{d['planned_sd']:.2f}",
                     "expected MDE": "n/a" if mde is None else f"{mde:.2f}",
                     "paper": "n/a" if paper is None else f"{paper:+.2f}",
                     "MDE <= paper": {True: "yes", False: "no", None: "n/a"}[d["reaches_paper"]],
                     "SD from": d["sd_source"], "trained": "yes" if d["run"] else "no: " + d["note"]})
    return pd.DataFrame(rows)


def sweep_frame(derived: Derived) -> pd.DataFrame:
    return pd.DataFrame([{"(a, b)": f"({r['a']}, {r['b']})", "score [95% CI]": interval(r["score"]),
                          "effective rank of ΔW": round(r["effective_rank"], 2), "max rank min(a, b)": r["max_rank"],
                          "adapter params": r["adapter_params"], "seeds": len(r["seeds"])} for r in derived["sweep"]])


def embedding_frame(summary: Summary) -> pd.DataFrame:
    names = {"trained": "router, trained", "no_contrastive": "router without contrastive loss",
             "initial": "router at initialisation"}
    rows = []
    for key, data in (summary.get("task_embedding_study") or {}).items():
        test = data.get("test")
        if test:
            rows.append({"embeddings": names.get(key, key), "Δcos (sentiment within − between)":
                         f"{test['statistic']:+.3f}", "p (exact, 1 of C(7,4) = 35)": f"{test['p_value']:.3f}",
                         "seeds x modules": f"{len(data['seeds'])} x {len(data['modules'])}"})
    return pd.DataFrame(rows)


STATISTICS_TEXT = (
    "Method: per seed, B − A on the same test examples (mean of the tasks' main metric x 100); the mean of these "
    "per-seed differences with a Student-t 95% interval (df = seeds − 1). Why: the claims are about what a new "
    "training seed gives, so the interval is at the level of seeds; a bootstrap over 3-5 seeds gives about "
    "[smallest, largest] per-seed difference and covered the seed-level difference in only 76% (3 seeds) and 83% "
    "(5 seeds) of simulated designs; the t-interval covers it in 95% (tests/test_stats.py simulates 2,000 designs at "
    "3, 5 and 10 seeds). Seed SD: the SD of the per-seed differences. Test noise: the standard error of the mean "
    "difference from resampling the test examples with the seeds fixed (how much another test set of the same "
    "size would move it), reported apart, not in the interval. MDE: the smallest true difference this design "
    "(seeds, seed SD) detects with 80% power in a two-sided t-test at 5% (noncentral t). p: the t-test of the "
    "per-seed differences; Holm: Holm's step-down correction across the claims below (adjusted p, and the "
    "interval at the claim's step-down level 1 − 0.05 / (m − k + 1)).")
VERDICTS_TEXT = (
    "Verdicts: reproduced = interval above 0; contradicted = below 0; paper's effect ruled out = the interval "
    "contains 0 but its upper end is below the paper's Δ (the data exclude an effect as large as the paper's); "
    "inconclusive otherwise; confounded by collapse = a seed of either side is at chance on a task (its test "
    f"predictions' Matthews correlation with the labels is below {CHANCE_MCC:g}: a majority-class collapse), "
    "whatever the interval: the difference then measures training stability at the chosen rate, not what the "
    "methods can learn.")


def _declared(scale: str | None = None) -> str:
    lines = ["Declared before the runs (`ranklab/experiments/results/claims.py`; since then the multi-task budgets were "
             "matched to the papers' and the statistics moved to the seed level, see the README).", "",
             STATISTICS_TEXT, "", VERDICTS_TEXT, ""]
    lines += [f"- `{c.key}`: {c.text} ({c.b_label} vs {c.a_label}; {c.source})" for c in claims_for(scale)]
    return "\n".join(lines)


def _hardware_text(hardware: dict[str, int] | None) -> list[str]:
    """Where the runs were trained: CPU, its bf16 support, PyTorch's kernel level, threads, precision."""
    if not hardware:
        return ["Hardware: not recorded in this summary (its runs were trained before records named the "
                "machine; the precision is in the description above).", ""]
    return ["Hardware (runs): " + "; ".join(f"{text} ({n})" for text, n in hardware.items()) + ".", ""]


def _sessions_text(sessions: list[dict[str, Any]], wall_s: float) -> list[str]:
    """Wall time of the `ranklab reproduce` sessions that trained these results; a session that
    only reused finished runs (trained nothing) is not the protocol's wall time."""
    full = [s for s in sessions if not s.get("quick")]
    trained = sum(s.get("runs_trained", 0) + s.get("search_runs_trained", 0) for s in full)
    if not full:
        return []
    if trained == 0:
        return [f"Protocol wall time: not recorded (the session log of this results folder holds only "
                f"{len(full)} session(s) that reused finished runs and trained nothing); the reported runs' own "
                f"records add up to {wall_s / 60:.0f} min of training and evaluation.", ""]
    total, search = sum(s["total_s"] for s in full), sum(s.get("search_s", 0.0) for s in full)
    jobs = sorted({s.get("jobs", 1) for s in full})
    return [f"Protocol wall time: {total / 60:.1f} min in {len(full)} session(s) of `ranklab reproduce` "
            f"({search / 60:.1f} min learning-rate search, {(total - search) / 60:.1f} min reported runs; "
            f"{trained} runs trained, {'/'.join(map(str, jobs))} side by side).", ""]


def results_markdown(summary: Summary, derived: Derived) -> str:
    scale = summary["scale"]
    wall = sum(r["wall_time_s"] for r in summary["runs"])
    in_progress = []
    if summary.get("planned_runs", 0) > len(summary["runs"]):
        in_progress = [f"**In progress: {len(summary['runs'])} of {summary['planned_runs']} reported runs finished** "
                       f"(`ranklab reproduce --scale {scale} --max-minutes N` goes on from this summary). A claim judged "
                       "on fewer seeds than its declared design is marked provisional: its interval is honest for the "
                       "seeds it has, but the design's power is not reached yet.", ""]
    parts = [f"# ranklab results ({scale} scale)", "", *in_progress, summary["description"], "",
             f"{len(summary['runs'])} reported runs ({wall / 60:.0f} min of training and evaluation, "
             f"{wall / len(summary['runs']):.0f} s per run on average)." if summary["runs"] else
             "No reported run yet.", ""]
    parts += _hardware_text(summary.get("hardware")) if summary["runs"] else []
    parts += _sessions_text(summary.get("sessions") or [], wall)
    design = design_frame(scale)
    if not design.empty:
        parts += ["## Design, declared before the reported runs", "",
                  "Committed (`ranklab/experiments/results/claims.py`, DESIGNS) before any reported run of this scale "
                  "was trained. Expected MDE: the smallest true difference the design detects with 80% power "
                  "(two-sided 5%) at the planned per-seed SD, in points x 100.", "", markdown_table(design), ""]
        short = [d for d in declared_design(scale) if d["reaches_paper"] is False]
        if short:
            from .claims import seeds_for_paper_difference

            d = short[0]
            need = seeds_for_paper_difference(d["planned_sd"], d["paper_difference"])
            parts += [f"No affordable design reaches the paper's difference: at the planned SD "
                      f"{d['planned_sd']:.2f}, an MDE of {d['paper_difference']:+.2f} needs {need} seeds "
                      f"({need * 8} single-task runs), against the {len(d['seeds'])} that fit the budget; a verdict "
                      "other than 'reproduced' or 'contradicted' says the design could not tell, not that the "
                      "methods are equal.", ""]
    tuning = search_frame(summary)
    if tuning is not None:
        parts += search_text(summary["tuning"]) + [markdown_table(tuning), ""]
    if derived["claims"]:
        parts += ["## The papers' claims", "", _declared(scale), "", markdown_table(claims_frame(derived, summary=summary)),
                  "", "params B / A: the two sides' trainable adapter parameters. Seeds at chance: the seeds of "
                  f"each side with a task whose test predictions have a Matthews correlation below {CHANCE_MCC:g} "
                  "with its labels (a constant prediction has MCC 0).", ""]
    if scale == "paper":
        parts += _paper_scale_tables(summary, derived)
    for recipe in ("single_task", "multi_task") if scale != "paper" else ():
        if derived["scores"].get(recipe):
            parts += [f"## {recipe.replace('_', '-')}: mean over seeds [95% interval], test x 100", "",
                      markdown_table(frame := results_frame(summary, derived, recipe)), "",
                      *([CLIPPED_NOTE, ""] if frame.astype(str).apply(lambda c: c.str.contains(CLIPPED)).any().any()
                        else []),
                      "The papers' averages (GLUE with RoBERTa: other backbone, tasks and budget; compare "
                      "orderings, not values):", "", markdown_table(_paper_rows(recipe)), ""]
    if any(r.get("config", {}).get("patience") for r in summary["runs"]):
        parts += ["## Training length: every run to a validation plateau", "",
                  "Steps each run took (the plateau rule is in the description above) and how many runs had their "
                  "best validation score at their last evaluation (still rising when the rule stopped them; the "
                  "rule itself allows that, so it is no convergence check: the continuation check below is).", "",
                  markdown_table(training_length_frame(summary)), ""]
    check = convergence_frame(summary)
    if check is not None:
        text, after = convergence_notes(summary, check)
        parts += ["## Convergence check: training on past the plateau rule's stop", "", text, "",
                  markdown_table(check), "", *after]
    if derived["sweep"]:
        parts += ["## EMD at equal budget: distinct ranks for A' and B'", "", markdown_table(sweep_frame(derived)), ""]
    frame = embedding_frame(summary)
    if not frame.empty:
        parts += ["## Task embeddings (Fig. 2 analogue): are the four sentiment tasks closer to each other?", "",
                  markdown_table(frame), ""]
    if derived.get("chosen_ranks"):
        agree = derived["chosen_ranks"]["all_seeds_agree"]
        parts += [f"Chosen ranks: all seeds choose the same rank in {100 * agree:.0f}% of (task, layer, module) "
                  "cells (figure `chosen_ranks`).", ""]
    parts += [f"- {paper.MOR_CLAIM}", f"- {paper.LORA_PAPER}", ""]
    return "\n".join(parts)


def _paper_scale_tables(summary: Summary, derived: Derived) -> list[str]:
    """Every recipe's median [min, max] over seeds, with the paper's own rows where it has them."""
    parts = []
    for recipe, scores in derived["scores"].items():
        if not scores:
            continue
        parts += [f"## {recipe}: median [min, max] over seeds, test x 100", "",
                  markdown_table(median_frame(summary, derived, recipe)), ""]
        if recipe in PAPER_ROWS:
            parts += ["The paper's averages:", "", markdown_table(_paper_rows(recipe, "paper")), ""]
    return parts


def write_results_markdown(summary: Summary, derived: Derived, path: str | Path) -> Path:
    return write_text(path, results_markdown(summary, derived))
