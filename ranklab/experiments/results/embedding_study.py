"""The task-embedding study (seed paper 1's Fig. 2 at several seeds, with a test and controls).

From the last layer's task-embedding tables (query and value modules) of every seed of a run
label, this computes:

- ``tsne_points``: one t-SNE of all tables together (tasks x modules x seeds points, each row
  L2-normalised, so distances follow the cosine), coloured by task in the figure;
- ``cosine_matrix``: the tasks x tasks cosine similarity, averaged over seeds and modules;
- ``group_test``: an exact permutation test of "the tasks in ``group`` are closer to each other
  than to the rest": the statistic is the mean cosine within the group minus the mean cosine
  between the group and the rest; its p-value is the share of the C(n, k) same-size task sets
  whose statistic is at least as large (smallest possible p: 1 / C(n, k)).

Controls: the same for the tables at initialisation and for a run without the contrastive loss.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Sequence

import numpy as np

SENTIMENT_TASKS = ("movie", "amazon", "tweet", "nyt")


def _normalise(table: np.ndarray) -> np.ndarray:
    table = np.asarray(table, dtype=float)
    return table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)


def cosine_matrix(tables: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over tables (seeds x modules) of the task x task cosine similarity."""
    return np.mean([_normalise(t) @ _normalise(t).T for t in tables], axis=0)


def group_statistic(matrix: np.ndarray, group: Sequence[int]) -> float:
    """Mean cosine within ``group`` (distinct pairs) minus the mean cosine between group and rest."""
    inside = list(group)
    rest = [i for i in range(len(matrix)) if i not in inside]
    within = [matrix[i, j] for i, j in combinations(inside, 2)]
    between = [matrix[i, j] for i in inside for j in rest]
    return float(np.mean(within) - np.mean(between))


def group_test(matrix: np.ndarray, group: Sequence[int]) -> dict[str, float]:
    """The statistic of ``group`` and its exact permutation p-value over all same-size task sets."""
    n, k = len(matrix), len(group)
    if not 2 <= k < n:
        raise ValueError(f"a group needs 2..{n - 1} of the {n} tasks, got {k}")
    observed = group_statistic(matrix, group)
    null = [group_statistic(matrix, g) for g in combinations(range(n), k)]
    p = float(np.mean([v >= observed - 1e-12 for v in null]))
    return {"statistic": observed, "p_value": p, "n_arrangements": len(null), "smallest_p": 1 / len(null)}


def tsne_points(tables: dict[tuple[int, str], np.ndarray], seed: int = 0) -> list[dict[str, Any]]:
    """One 2-D projection of every (seed, module) table's rows: x, y, task, seed, module."""
    from ...inspect import project_2d

    keys = sorted(tables)
    stacked = np.concatenate([_normalise(tables[k]) for k in keys])
    coords, used = project_2d(stacked, method="auto", seed=seed)
    rows, i = [], 0
    for run_seed, module in keys:
        for task in range(len(tables[(run_seed, module)])):
            rows.append({"x": round(float(coords[i, 0]), 4), "y": round(float(coords[i, 1]), 4), "task": task,
                         "seed": run_seed, "module": module, "method": used})
            i += 1
    return rows


def study(tables: dict[tuple[int, str], np.ndarray], task_names: Sequence[str],
          group: Sequence[str] = SENTIMENT_TASKS) -> dict[str, Any]:
    """Points, cosine matrix and (when the group's tasks are present) the permutation test."""
    matrix = cosine_matrix(list(tables.values()))
    result: dict[str, Any] = {"points": tsne_points(tables), "cosine": np.round(matrix, 4).tolist(),
                              "seeds": sorted({s for s, _ in tables}), "modules": sorted({m for _, m in tables})}
    members = [task_names.index(t) for t in group if t in task_names]
    if len(members) == len(group) and len(group) < len(task_names):
        result["group"] = list(group)
        result["test"] = group_test(matrix, members)
    return result


def neighbour_test(points: Sequence[dict[str, Any]], n_perm: int = 2000, seed: int = 0) -> dict[str, float]:
    """Does each task have a region of its own in the map, across seeds?  The share of points whose
    nearest point from another seed (Euclidean, in the 2-D map the figure shows; a seed's own query
    and value rows often sit together and would say nothing about the task) is of the same task,
    against the share expected by chance, with a permutation p-value: task labels shuffled within
    each (seed, module) table ``n_perm`` times (add-one corrected)."""
    xy = np.array([[p["x"], p["y"]] for p in points], dtype=float)
    tasks = np.array([p["task"] for p in points])
    seeds = np.array([p["seed"] for p in points])
    tables = [np.flatnonzero((seeds == s) & (np.array([p["module"] for p in points]) == m))
              for s, m in dict.fromkeys((p["seed"], p["module"]) for p in points)]
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    distance[seeds[:, None] == seeds[None]] = np.inf
    nearest = distance.argmin(1)

    def share(labels: np.ndarray) -> float:
        return float(np.mean(labels[nearest] == labels))

    observed = share(tasks)
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(n_perm):
        shuffled = tasks.copy()
        for rows in tables:
            shuffled[rows] = rng.permutation(tasks[rows])
        null.append(share(shuffled))
    others = seeds[:, None] != seeds[None]
    chance = float(np.mean([np.mean(tasks[others[i]] == tasks[i]) for i in range(len(tasks))]))
    return {"same_task": observed, "chance": chance,
            "p_value": (1 + sum(v >= observed - 1e-12 for v in null)) / (n_perm + 1)}


def regions_sentence(tests: dict[str, dict[str, float]], titles: dict[str, str], alpha: float = 0.05) -> str:
    """One sentence on what the maps show: which panels give tasks regions of their own."""
    own = [titles[k] for k, t in tests.items() if t["p_value"] < alpha and t["same_task"] >= 0.5]
    parts = "; ".join(f"{titles[k]}: {100 * t['same_task']:.0f}% (chance {100 * t['chance']:.0f}%, "
                      + ("p < 0.001" if t["p_value"] < 0.001 else f"p = {t['p_value']:.3f}") + ")" for k, t in tests.items())
    head = ("Tasks occupy regions of their own in: " + ", ".join(own) if own else
            "No panel shows each task in a region of its own")
    return f"{head}. Points whose nearest point from another seed is the same task: {parts}."
