"""Introspection on the real multi-task methods (rank_router, mor)."""
import numpy as np
import pytest
import torch
from torch import nn

import ranklab
from ranklab.inspect import (
    RouterProbe,
    model_report,
    module_spectrum,
    router_summary,
    task_embedding_points,
)

D = 12


def _model(method, **options):
    torch.manual_seed(0)
    model = nn.Module()
    model.layer = nn.ModuleList(
        [nn.ModuleDict({"query": nn.Linear(D, D), "value": nn.Linear(D, D)}) for _ in range(2)])
    ranklab.attach(model, ranklab.make_config(method, **options))
    for layer in ranklab.adapter_layers(model).values():
        for name, p in layer.named_parameters():
            if not name.startswith("base.") and "B" in name:
                nn.init.normal_(p)
    return model


def _forward(model, x):
    for block in model.layer:
        x = block["query"](x) + block["value"](x)
    return x


def test_rank_router_spectrum_report_and_summary():
    model = _model("rank_router", r=6, n_tasks=3, selection="soft", gate_init="random")
    layer = model.layer[1]["value"]
    for task in range(3):
        dense = layer.delta_weight(task=task).detach().double()
        sigma = torch.linalg.svdvals(dense)
        fast = module_spectrum(layer, task=task).double()
        torch.testing.assert_close(fast, sigma[: len(fast)], rtol=1e-5, atol=1e-5 * sigma[0].item())
    report = model_report(model, task=1)
    assert len(report) == 4 and set(report["method"]) == {"rank_router"}
    summary = router_summary(model, tasks=[0, 1, 2])
    assert summary["chosen_rank"].tolist() == [6] * 12  # soft selection uses every rank
    with RouterProbe(model) as probe:
        for task in range(3):
            with ranklab.use_task(task), torch.no_grad():
                _forward(model, torch.randn(2, 4, D))
    table = probe.gate_table()
    row = table[(table["name"] == "layer.1.value") & (table["task"] == 2)].iloc[0]
    np.testing.assert_allclose(row[[f"gate_{i}" for i in range(6)]].to_numpy(dtype=float),
                               layer.gate_probs(2).numpy(), rtol=1e-6)
    points = task_embedding_points(model, method="pca")
    assert len(points) == 6 and set(points["name"]) == {"layer.1.query", "layer.1.value"}


def test_prefix_router_reports_chosen_rank():
    model = _model("rank_router", r=5, n_tasks=2, selection="prefix", gate_init="random")
    report = model_report(model, task=0)
    chosen = {n: m.chosen_rank(0) for n, m in ranklab.adapter_layers(model).items()}
    assert dict(zip(report["name"], report["max_rank"])) == chosen


def test_mor_token_router_per_expert_and_router_averaged():
    model = _model("mor", r=4, n_experts=3, router="token")
    layer = model.layer[0]["query"]
    with torch.no_grad():
        layer.lambda_A.normal_()
        layer.lambda_B.normal_()
    for expert in range(3):
        sigma = torch.linalg.svdvals(layer.delta_weight(expert=expert).detach().double())
        fast = module_spectrum(layer, expert=expert).double()
        torch.testing.assert_close(fast, sigma[: len(fast)], rtol=1e-5, atol=1e-5 * sigma[0].item())
    with RouterProbe(model) as probe, torch.no_grad():
        _forward(model, torch.randn(2, 5, D))
    assert probe.token_gates("layer.0.query").shape == (10, 3)
    gates = probe.mean_gates()
    report = model_report(model, per_module={n: {"gates": g} for n, g in gates.items()})
    row = report.set_index("name").loc["layer.0.query"]
    dense = layer.delta_weight(gates=gates["layer.0.query"]).detach().double()
    assert row["delta_fro"] == pytest.approx(torch.linalg.matrix_norm(dense).item(), rel=1e-5)
    with pytest.raises(ValueError, match="input-dependent"):
        model_report(model)
    with pytest.raises(ValueError, match="per_module names"):
        model_report(model, per_module={"nope": {}})
