"""Task embeddings of router layers and their 2-D projection (t-SNE, as in seed paper 1's figure).

A rank router holds one task embedding table E (n_tasks x d_in) per adapted module, read with
the layer's ``task_embeddings()``.  The paper's t-SNE figure plots the last layer's E: only
n_tasks points per module.  t-SNE needs more points than its perplexity, so:

- ``task_embedding_points`` stacks the tables of several modules (default: every router module
  of the last layer, e.g. query and value -> 2 * n_tasks points), each point keeping its task and
  module labels;
- the perplexity adapts to the number of points: min(30, max(1, (n - 1) / 3));
- with fewer than ``MIN_TSNE_POINTS`` points t-SNE is meaningless and PCA is used instead
  (method="auto"); the ``method`` column says which projection was used.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from .factors import layer_index, short_module_name

MIN_TSNE_POINTS = 5


def task_embedding_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules whose ``task_embeddings()`` returns a table, by qualified name.

    Layers that have the method but no table (MoR's token router raises ValueError) are left out.
    """
    found = {}
    for name, module in model.named_modules():
        if callable(getattr(module, "task_embeddings", None)):
            try:
                module.task_embeddings()
            except ValueError:
                continue
            found[name] = module
    return found


def task_embeddings(module: nn.Module) -> np.ndarray:
    """One layer's task embedding table as a (n_tasks, d) float64 array."""
    if not callable(getattr(module, "task_embeddings", None)):
        raise ValueError(f"{type(module).__name__} has no task_embeddings(); use a rank_router layer")
    with torch.no_grad():
        table = module.task_embeddings()
    return table.detach().cpu().double().numpy()


def last_layer_names(model: nn.Module) -> list[str]:
    """Names of the task-embedding modules in the highest-numbered layer."""
    layers = task_embedding_layers(model)
    if not layers:
        raise ValueError("model has no modules with task embeddings (method rank_router)")
    indexed = {n: layer_index(n) for n in layers}
    top = max((i for i in indexed.values() if i is not None), default=None)
    return [n for n, i in indexed.items() if i == top]


def project_2d(points: np.ndarray, method: str = "auto", perplexity: float | None = None, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, d) -> ((n, 2), method used); method 'tsne', 'pca' or 'auto' (t-SNE if enough points)."""
    if method not in ("auto", "tsne", "pca"):
        raise ValueError(f"method must be one of 'auto', 'tsne', 'pca', got {method!r}")
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if n < 2:
        raise ValueError(f"need at least 2 points to project, got {n}")
    if method == "auto":
        method = "tsne" if n >= MIN_TSNE_POINTS else "pca"
    if method == "pca":
        centred = points - points.mean(axis=0)
        _, _, vh = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ vh[:2].T
        if coords.shape[1] < 2:  # a 1-D cloud: pad the second axis
            coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        return coords, "pca"
    from sklearn.manifold import TSNE  # imported late: sklearn is slow to import

    perplexity = min(30.0, max(1.0, (n - 1) / 3)) if perplexity is None else perplexity
    if not 0 < perplexity < n:
        raise ValueError(f"perplexity must be in (0, {n}) for {n} points, got {perplexity}")
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(points), "tsne"


def task_embedding_points(
    model: nn.Module, names: list[str] | None = None, method: str = "auto",
    perplexity: float | None = None, seed: int = 0,
) -> pd.DataFrame:
    """2-D points of stacked task embeddings: columns x, y, task, name, layer, module, method.

    ``names`` defaults to the last layer's router modules (the paper's figure); all chosen
    tables must share their width d.
    """
    layers = task_embedding_layers(model)
    names = last_layer_names(model) if names is None else list(names)
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ValueError(f"no task embeddings in {unknown}; modules with task embeddings: {', '.join(layers)}")
    tables = {n: task_embeddings(layers[n]) for n in names}
    widths = {t.shape[1] for t in tables.values()}
    if len(widths) > 1:
        raise ValueError(f"task embeddings of {names} have different widths {sorted(widths)}; pick modules of one width")
    coords, used = project_2d(np.concatenate(list(tables.values())), method, perplexity, seed)
    rows = [
        {"task": t, "name": n, "layer": layer_index(n), "module": short_module_name(n)}
        for n, table in tables.items() for t in range(len(table))
    ]
    frame = pd.DataFrame(rows)
    frame.insert(0, "x", coords[:, 0])
    frame.insert(1, "y", coords[:, 1])
    frame["method"] = used
    return frame


def last_layer_tables(model: nn.Module) -> dict[str, np.ndarray]:
    """The last layer's task-embedding tables by module name (e.g. query, value)."""
    layers = task_embedding_layers(model)
    return {short_module_name(n).rsplit(".", 1)[-1]: task_embeddings(layers[n]) for n in last_layer_names(model)}
