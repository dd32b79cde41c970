"""Rank-dynamics callback."""
import numpy as np
import pytest
import torch
from torch import nn

import ranklab
from ranklab.inspect import RankDynamics, module_spectrum, rank_measures


def _model():
    torch.manual_seed(0)
    model = nn.Module()
    model.layer = nn.ModuleList([nn.ModuleDict({"query": nn.Linear(10, 10)}) for _ in range(2)])
    ranklab.attach(model, ranklab.make_config("lora", r=3, target_modules=["query"]))
    return model


def test_records_every_n_steps_with_true_measures():
    model = _model()
    tracker = RankDynamics(every=2)
    layers = list(ranklab.adapter_layers(model).values())
    expected = {}
    for step in range(5):
        tracker(step, model) if step % 2 else tracker.on_step(step, model)  # both entry points
        if step % 2 == 0:
            expected[step] = rank_measures(module_spectrum(layers[1]))
            last_sigma = module_spectrum(layers[0]).numpy()
        with torch.no_grad():  # a fake optimiser step: B grows one column per step
            for layer in layers:
                layer.lora_B[:, step % 3] += torch.randn(10)
    history = tracker.history
    assert sorted(set(history["step"])) == [0, 2, 4]
    assert len(history) == 3 * 2 and list(history["layer"][:2]) == [0, 1]
    for step, measures in expected.items():
        row = history[(history["step"] == step) & (history["name"] == "layer.1.query")].iloc[0]
        for key, value in measures.items():
            assert row[key] == pytest.approx(value)
    assert history["effective_rank"].iloc[0] == 0.0  # zero-initialised B
    steps, sigma = tracker.spectra("layer.0.query")
    assert steps.tolist() == [0, 2, 4] and sigma.shape == (3, 3)
    np.testing.assert_allclose(sigma[-1], last_sigma, rtol=1e-6)


def test_selector_and_errors():
    torch.manual_seed(0)
    model = nn.Module()
    model.lin = nn.Linear(6, 6)
    ranklab.attach(model, ranklab.make_config("dylora", r_max=4, target_modules=["lin"]))
    nn.init.normal_(model.lin.lora_B)
    tracker = RankDynamics(every=1, selector={"rank": 2})
    tracker(0, model)
    assert tracker.history["numerical_rank"].tolist() == [2]
    with pytest.raises(ValueError, match="every"):
        RankDynamics(every=0)
    with pytest.raises(ValueError, match="no records"):
        tracker.spectra("nope")
    assert RankDynamics().history.empty


def test_task_routed_and_token_routed_layers_are_recorded_per_task_and_per_expert():
    from ranklab import plots
    from tests.conftest import randomize_adapters

    torch.manual_seed(0)
    model = nn.Module()
    model.layer = nn.ModuleList([nn.ModuleDict({"query": nn.Linear(10, 10)}) for _ in range(2)])
    ranklab.attach(model, ranklab.make_config("rank_router", r=4, n_tasks=3, selection="soft", target_modules=["query"]))
    randomize_adapters(model)
    tracker = RankDynamics(every=1)
    tracker.record(0, model)  # no use_task needed: one row per task
    history = tracker.history
    assert len(history) == 2 * 3 and sorted(set(history["task"])) == [0, 1, 2] and history["expert"].isna().all()
    layer = ranklab.adapter_layers(model)["layer.1.query"]
    assert np.allclose(tracker.spectra("layer.1.query", task=2)[1][0], module_spectrum(layer, task=2).numpy())
    labels = [line.get_label() for line in plots.plot_rank_dynamics(history).axes[0].lines]
    assert labels == [f"layer {i}, task {t}" for i in (0, 1) for t in (0, 1, 2)]

    mor = nn.Module()
    mor.layer = nn.ModuleList([nn.ModuleDict({"query": nn.Linear(10, 10)})])
    ranklab.attach(mor, ranklab.make_config("mor", r=4, n_experts=3, target_modules=["query"]))
    tracker = RankDynamics(every=1)
    tracker.record(0, mor)
    assert list(tracker.history["expert"]) == [0, 1, 2] and tracker.history["task"].isna().all()
