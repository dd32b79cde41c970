"""RESULTS.md from a results summary: the protocol, the learning-rate search, results with 95%
intervals and the papers' averages beside, the claims with their verdicts, the EMD sweep and
the task-embedding study."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import write_text
from . import paper
from .claims import claims_for
from .derived import CHANCE_MCC, collapsed_seeds, runs_of

Summary = dict[str, Any]
Derived = dict[str, Any]


def recipe_runs(summary: Summary, recipe: str) -> list[dict[str, Any]]:
    return runs_of(summary, recipe)


def markdown_table(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = [f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)
                 for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interval(cell: dict[str, Any] | None) -> str:
    return "-" if not cell else f"{cell['mean']:.2f} [{cell['low']:.2f}, {cell['high']:.2f}]"


def results_frame(summary: Summary, derived: Derived, recipe: str) -> pd.DataFrame:
    """One row per label: mean [95% interval] per task and on average, params, seeds, lr."""
    rows = []
    for label, scores in derived["scores"].get(recipe, {}).items():
        run = runs_of(summary, recipe, label)[0]
        collapsed = [s for s in collapsed_seeds(summary, recipe, label) if s in scores["seeds"]]
        row = {"method": label, **{g: interval(c) for g, c in scores["scores"].items()},
               "adapter params": run["params"].get("adapter_params", 0), "lr": f"{run['lr']:g}",
               "seeds": len(scores["seeds"]), "seeds at chance": f"{len(collapsed)} of {len(scores['seeds'])}"}
        rows.append(row)
    return pd.DataFrame(rows)


def spread(cell: dict[str, Any] | None) -> str:
    return "-" if not cell else f"{cell['median']:.2f} [{cell['min']:.2f}, {cell['max']:.2f}]"


def median_frame(summary: Summary, derived: Derived, recipe: str) -> pd.DataFrame:
    """The paper scale's table: one row per label, median [min, max] over seeds per task and on average."""
    rows = []
    for label, scores in derived["scores"].get(recipe, {}).items():
        run = runs_of(summary, recipe, label)[0]
        rows.append({"method": label, **{g: spread(c) for g, c in scores["scores"].items()},
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


def claims_frame(derived: Derived, recipe: str | None = None, summary: Summary | None = None) -> pd.DataFrame:
    """The claims table (optionally only one recipe's claims).  With ``summary``: how many seeds of
    each side were at chance (a majority-class collapse), which a difference may come from."""
    rows = []
    for c in derived["claims"]:
        if recipe is not None and c["recipe"] != recipe:
            continue
        row = {"claim": c["text"], "B - A": f"{c['b']} − {c['a']}",
               "paper Δ": "-" if c["paper_difference"] is None else f"{c['paper_difference']:+.2f}",
               "our Δ [95% CI]": f"{c['difference']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]",
               "MDE": f"{c['minimal_detectable_effect']:.2f}", "seeds x test examples":
               f"{c['n_seeds']} x {c['n_examples']:,}"}
        if summary is not None:
            count = {side: len([s for s in collapsed_seeds(summary, c["recipe"], c[side]) if s in c["seeds"]])
                     for side in ("a", "b")}
            row["seeds at chance (B / A)"] = f"{count['b']} / {count['a']}"
        rows.append({**row, "verdict": f"**{c['verdict']}**"})
    return pd.DataFrame(rows)


def tuning_frame(summary: Summary) -> pd.DataFrame | None:
    tuning = summary.get("tuning")
    if not tuning:
        return None
    rates = [f"{lr:g}" for lr in tuning["grid"]]
    rows = [{"method": key, **{f"lr {r}": 100 * scores.get(r, float("nan")) for r in rates},
             "chosen": f"{tuning['chosen'][key]:g}"} for key, scores in tuning["scores"].items()]
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


def _declared(scale: str | None = None) -> str:
    lines = ["Declared before the runs (`ranklab/experiments/claims.py`); each is B − A on the mean of the "
             "recipe's tasks' main metric x 100, full test splits, two-level paired bootstrap (seeds, then "
             "examples), 95% interval; MDE: the smallest true difference this design detects with 80% power; "
             "reproduced = interval above 0, contradicted = below 0, otherwise inconclusive.", ""]
    lines += [f"- `{c.key}`: {c.text} ({c.b} vs {c.a}; {c.source})" for c in claims_for(scale)]
    return "\n".join(lines)


def _hardware_text(hardware: dict[str, int] | None) -> list[str]:
    """Where the runs were trained: CPU, its bf16 support, PyTorch's kernel level, threads, precision."""
    if not hardware:
        return ["Hardware: not recorded in this summary (its runs were trained before records named the "
                "machine; the precision is in the description above).", ""]
    return ["Hardware (runs): " + "; ".join(f"{text} ({n})" for text, n in hardware.items()) + ".", ""]


def _sessions_text(sessions: list[dict[str, Any]]) -> list[str]:
    """Wall time of the `ranklab reproduce` sessions that trained these results."""
    full = [s for s in sessions if not s.get("quick")]
    if not full:
        return []
    total, search = sum(s["total_s"] for s in full), sum(s.get("search_s", 0.0) for s in full)
    trained = sum(s.get("runs_trained", 0) + s.get("search_runs_trained", 0) for s in full)
    jobs = sorted({s.get("jobs", 1) for s in full})
    return [f"Protocol wall time: {total / 60:.1f} min in {len(full)} session(s) of `ranklab reproduce` "
            f"({search / 60:.1f} min learning-rate search, {(total - search) / 60:.1f} min reported runs; "
            f"{trained} runs trained, {'/'.join(map(str, jobs))} side by side).", ""]


def results_markdown(summary: Summary, derived: Derived) -> str:
    scale = summary["scale"]
    wall = sum(r["wall_time_s"] for r in summary["runs"])
    parts = [f"# ranklab results ({scale} scale)", "", summary["description"], "",
             f"{len(summary['runs'])} reported runs ({wall / 60:.0f} min of training and evaluation, "
             f"{wall / len(summary['runs']):.0f} s per run on average).", ""]
    parts += _hardware_text(summary.get("hardware"))
    parts += _sessions_text(summary.get("sessions") or [])
    tuning = tuning_frame(summary)
    if tuning is not None:
        seeds = summary["tuning"]["seeds"]
        parts += [f"## Learning-rate search (validation only, tuning seed{'s' if len(seeds) > 1 else ''} "
                  f"{', '.join(str(s) for s in seeds)}, never reported)", "",
                  f"Rule: {summary['tuning']['rule']}. Best validation score x 100 per rate:", "",
                  markdown_table(tuning), ""]
    if derived["claims"]:
        parts += ["## The papers' claims", "", _declared(scale), "", markdown_table(claims_frame(derived, summary=summary)),
                  "", f"Seeds at chance: runs whose test predictions have a Matthews correlation below {CHANCE_MCC:g} "
                  "with the labels on at least half of their tasks (a majority-class collapse: a constant "
                  "prediction has MCC 0). A difference between a side that collapsed and one that did not "
                  "measures training stability at the chosen rate, not what the method can learn.", ""]
    if scale == "paper":
        parts += _paper_scale_tables(summary, derived)
    for recipe in ("single_task", "multi_task") if scale != "paper" else ():
        if derived["scores"].get(recipe):
            parts += [f"## {recipe.replace('_', '-')}: mean over seeds [95% interval], test x 100", "",
                      markdown_table(results_frame(summary, derived, recipe)), "",
                      "The papers' averages (GLUE with RoBERTa: other backbone, tasks and budget; compare "
                      "orderings, not values):", "", markdown_table(_paper_rows(recipe)), ""]
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
