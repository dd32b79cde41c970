"""Router probes, task embeddings and their 2-D projection, on fake routers with the router contract.

The contract (shared with ranklab.adapters.rank_router / mor): a router layer passes its gates
through a ``hook_gates`` HookPoint each forward; task-level routers also have gate_probs(task),
chosen_rank(task) and task_embeddings().
"""
import numpy as np
import pytest
import torch
from torch import nn

import ranklab
from ranklab.adapters.base import AdapterConfig, AdapterLayer, HookPoint
from ranklab.inspect import (
    RouterProbe,
    last_layer_names,
    project_2d,
    router_layers,
    router_summary,
    task_embedding_points,
    task_embeddings,
)

D, R, N_TASKS, N_EXPERTS = 8, 4, 4, 3


class FakeTaskRouter(AdapterLayer):
    """delta = B diag(p_t) A x with p_t = softmax(gate(E[t])): a minimal soft rank router."""

    def __init__(self, base: nn.Linear, n_tasks: int = N_TASKS, r: int = R) -> None:
        super().__init__(base, AdapterConfig(target_modules=["x"]), "fake")
        self.A = nn.Parameter(torch.randn(r, self.d_in))
        self.B = nn.Parameter(torch.randn(self.d_out, r))
        self.E = nn.Parameter(torch.randn(n_tasks, self.d_in))
        self.gate = nn.Linear(self.d_in, r)
        self.hook_gates = HookPoint()

    def gate_probs(self, task: int) -> torch.Tensor:
        return torch.softmax(self.gate(self.E[task]), dim=-1).detach()

    def chosen_rank(self, task: int) -> int:
        return int(self.gate_probs(task).argmax()) + 1

    def task_embeddings(self) -> torch.Tensor:
        return self.E.detach()

    def adapter_output(self, x):
        task = ranklab.current_task(required_by="FakeTaskRouter")
        p = self.hook_gates(torch.softmax(self.gate(self.E[task]), dim=-1))
        return ((x @ self.A.T) * p) @ self.B.T

    def factors(self, task=None):
        task = ranklab.current_task(required_by="FakeTaskRouter") if task is None else task
        return [self.B * self.gate_probs(task), self.A]


class FakeTokenRouter(nn.Module):
    """A plain module with the token-router contract: gates (batch, seq, n_experts) through hook_gates."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(D, N_EXPERTS)
        self.hook_gates = HookPoint()

    def forward(self, x):
        gates = self.hook_gates(torch.softmax(self.router(x), dim=-1))
        return x + gates.sum(-1, keepdim=True)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query = FakeTaskRouter(nn.Linear(D, D))
        self.value = FakeTaskRouter(nn.Linear(D, D))
        self.mix = FakeTokenRouter()

    def forward(self, x):
        return self.mix(self.query(x) + self.value(x))


def make_model(n_layers: int = 2) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Module()
    model.layer = nn.ModuleList([Block() for _ in range(n_layers)])
    model.forward = lambda x: model.layer[1](model.layer[0](x))
    return model


def test_records_task_gates_per_task():
    model = make_model()
    assert len(router_layers(model)) == 6
    with RouterProbe(model) as probe:
        for task, repeats in ((0, 2), (2, 3)):
            for _ in range(repeats):
                with ranklab.use_task(task), torch.no_grad():
                    model.forward(torch.randn(2, 5, D))
    table = probe.gate_table(by="task")
    query = table[table["name"] == "layer.1.query"].set_index("task")
    assert list(query.index) == [0, 2]
    assert list(query["n_samples"]) == [2, 3]
    for task in (0, 2):
        expected = model.layer[1].query.gate_probs(task).numpy()
        got = query.loc[task, [f"gate_{i}" for i in range(R)]].to_numpy(dtype=float)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert set(table["layer"]) == {0, 1} and "query" in set(table["module"])
    by_call = probe.gate_table(by="call")
    assert sorted(by_call[by_call["name"] == "layer.0.value"]["call"]) == [0, 1, 2, 3, 4]


def test_token_gates_and_padding_mask():
    model = make_model()
    x = torch.randn(2, 5, D)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    seen = []  # an independent hook on the same HookPoint: the gates the layer really used
    handle = model.layer[0].mix.hook_gates.register_forward_hook(lambda m, args, out: seen.append(out))
    with RouterProbe(model, names=["layer.0.mix"]) as probe:
        with ranklab.use_task(1), torch.no_grad():
            model.forward(x)
            expected = seen[0]
            probe.token_mask = mask
            model.forward(x)
    handle.remove()
    tokens = probe.token_gates("layer.0.mix")
    assert tokens.shape == (10 + 8, N_EXPERTS)  # all tokens, then only the 8 real ones
    np.testing.assert_allclose(tokens[:10], expected.reshape(10, N_EXPERTS).numpy())
    np.testing.assert_allclose(tokens[10:], expected[mask.bool()].numpy())
    table = probe.gate_table()
    assert table["task"].tolist() == [1] and table["n_samples"].tolist() == [18]
    np.testing.assert_allclose(table[[f"gate_{i}" for i in range(N_EXPERTS)]].to_numpy()[0], tokens.mean(0), rtol=1e-6)
    np.testing.assert_allclose(probe.mean_gates()["layer.0.mix"].numpy(), tokens.mean(0), rtol=1e-6)


def _hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hooks_removed_also_when_forward_raises():
    model = make_model()
    with RouterProbe(model) as probe:
        assert _hook_count(model) == 6
    assert _hook_count(model) == 0
    with pytest.raises(ValueError, match="needs a task id"):
        with RouterProbe(model) as probe:
            model.forward(torch.randn(1, 3, D))  # no use_task: the fake router raises
    assert _hook_count(model) == 0
    assert probe.records == []  # the failing forward recorded nothing stale
    with pytest.raises(ValueError, match="nothing recorded"):
        probe.gate_table()


def test_probe_errors():
    with pytest.raises(ValueError, match="no router layers"):
        RouterProbe(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="router layers: layer.0.query"):
        RouterProbe(make_model(), names=["nope"])


def test_router_summary_static():
    model = make_model()
    summary = router_summary(model, tasks=[0, 1, 2, 3])
    assert len(summary) == 4 * 4  # query and value of two layers (the token router has no tasks)
    row = summary[(summary["name"] == "layer.0.value") & (summary["task"] == 3)].iloc[0]
    assert row["chosen_rank"] == model.layer[0].value.chosen_rank(3)
    np.testing.assert_allclose(row[[f"gate_{i}" for i in range(R)]].to_numpy(dtype=float),
                               model.layer[0].value.gate_probs(3).numpy(), rtol=1e-6)


def test_task_embeddings_and_projection():
    model = make_model()
    table = task_embeddings(model.layer[1].query)
    np.testing.assert_array_equal(table, model.layer[1].query.E.detach().double().numpy())
    assert last_layer_names(model) == ["layer.1.query", "layer.1.value"]
    points = task_embedding_points(model, seed=0)  # 2 modules x 4 tasks = 8 points -> t-SNE
    assert len(points) == 8 and set(points["method"]) == {"tsne"}
    assert points["task"].tolist() == [0, 1, 2, 3] * 2
    again = task_embedding_points(model, seed=0)
    np.testing.assert_allclose(points[["x", "y"]], again[["x", "y"]])  # seeded
    few = task_embedding_points(model, names=["layer.0.query"])  # 4 points -> PCA fallback
    assert set(few["method"]) == {"pca"}
    table_0 = task_embeddings(model.layer[0].query)
    centred = table_0 - table_0.mean(0)
    # PCA: coordinates on the top-2 principal axes (up to sign)
    _, _, vh = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(few[["x", "y"]].to_numpy()), np.abs(centred @ vh[:2].T), atol=1e-10)
    with pytest.raises(ValueError, match="modules with task embeddings"):
        task_embedding_points(model, names=["layer.0.mix"])


def test_project_2d_rules():
    points = np.random.default_rng(0).normal(size=(12, 5))
    coords, used = project_2d(points, method="tsne", perplexity=3.0)
    assert coords.shape == (12, 2) and used == "tsne"
    with pytest.raises(ValueError, match="perplexity"):
        project_2d(points, method="tsne", perplexity=20.0)
    with pytest.raises(ValueError, match="method"):
        project_2d(points, method="umap")
    coords, used = project_2d(points[:2], method="auto")
    assert used == "pca" and coords.shape == (2, 2)
