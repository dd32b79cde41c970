"""rank_router: task-specific rank allocation (each rank an expert), routed by ranklab.use_task."""
import numpy as np
import pytest
import torch
from peft import PeftModel
from torch import nn

import ranklab
from ranklab import make_config
from ranklab.inspect import RouterProbe
from ranklab.adapters.rank_router import (
    RankRouterConfig,
    RankRouterLayer,
    chosen_ranks,
    contrastive_loss,
)

from .conftest import randomize_adapters, randomize_layer


def make_layer(d_in=12, d_out=10, seed=0, randomize=True, **options):
    torch.manual_seed(seed)
    options = {"r": 6, "n_tasks": 3, **options}
    layer = RankRouterLayer(nn.Linear(d_in, d_out), RankRouterConfig(target_modules=["x"], **options))
    if randomize:
        randomize_layer(layer, seed=seed + 1, std=0.5)
    return layer


def test_config_validation_names_choices():
    with pytest.raises(ValueError, match="selection must be one of 'prefix', 'soft', 'topk'"):
        RankRouterConfig(n_tasks=2, selection="hard")
    with pytest.raises(ValueError, match="needs n_tasks"):
        RankRouterConfig()
    with pytest.raises(ValueError, match="top_k=5 must be in 1..r=4"):
        RankRouterConfig(n_tasks=2, r=4, top_k=5, selection="topk")
    with pytest.raises(ValueError, match="contrastive_temperature must be > 0"):
        RankRouterConfig(n_tasks=2, contrastive_temperature=0.0)
    with pytest.raises(ValueError, match=r"r=16 is larger than min\(d_in, d_out\)=8"):
        RankRouterLayer(nn.Linear(8, 32), RankRouterConfig(n_tasks=2))
    config = make_config("rank_router", n_tasks=3, selection="topk", top_k=3, contrastive_weight=0.1)
    assert ranklab.config_from_dict(config.to_dict()) == config


def test_forward_needs_a_valid_task():
    layer = make_layer()
    x = torch.randn(2, 5, 12)
    with pytest.raises(ValueError, match="use_task"):
        layer(x)
    with ranklab.use_task(3), pytest.raises(ValueError, match=r"task must be an int in 0..2"):
        layer(x)


@pytest.mark.parametrize("selection", ["prefix", "soft", "topk"])
def test_forward_equals_factors_per_task(selection):
    layer = make_layer(selection=selection, top_k=3)
    x = torch.randn(4, 5, 12)
    for task in range(3):
        with ranklab.use_task(task), RouterProbe(layer) as probe:
            out = layer(x) - layer.base(x)
        torch.testing.assert_close(out, x @ layer.delta_weight(task=task).T, rtol=1e-5, atol=1e-6)
        [record] = probe.records  # one forward, one gate vector, with its task
        assert record["task"] == task and record["gates"].shape == (1, 6)
        np.testing.assert_allclose(record["gates"][0], layer.gate_probs(task).numpy(), rtol=1e-6)
        assert abs(float(record["gates"].sum()) - 1.0) < 1e-6
        rank = layer.factors(task=task)[1].shape[0]
        assert rank == layer.chosen_rank(task)
        if selection == "prefix":
            assert rank == int(layer.gate_probs(task).argmax()) + 1
            torch.testing.assert_close(layer.factors(task=task)[1], layer.lora_A[:rank])
        else:
            assert rank == {"soft": 6, "topk": 3}[selection]


@pytest.mark.parametrize("straight_through", ["all", "chosen"])
def test_straight_through_gradients_reach_the_gate(straight_through):
    layer = make_layer(straight_through=straight_through, gate_init="random")
    x = torch.randn(4, 5, 12)
    with ranklab.use_task(1):
        layer(x).pow(2).sum().backward()
    assert float(layer.gate.weight.grad.abs().sum()) > 0
    assert float(layer.gate.bias.grad.abs().sum()) > 0
    assert float(layer.task_embedding.grad[1].abs().sum()) > 0
    assert float(layer.task_embedding.grad[[0, 2]].abs().sum()) == 0  # other tasks untouched
    # the forward value is the plain prefix: ranks above k get no gradient in A
    k = layer.chosen_rank(1)
    assert float(layer.lora_A.grad[k:].abs().sum()) == 0 and float(layer.lora_A.grad[:k].abs().sum()) > 0


def test_router_learns_different_ranks_for_two_tasks():
    """Task 0's planted update has rank 1, task 1's has rank 4 and shares task 0's direction."""
    torch.manual_seed(0)
    d, r = 16, 8
    base = nn.Linear(d, d)
    u, v = torch.randn(d, 4) * 2 / d**0.5, torch.randn(4, d) / d**0.5
    targets = [u[:, :1] @ v[:1], u @ v]
    layer = RankRouterLayer(base, RankRouterConfig(target_modules=["x"], r=r, n_tasks=2, alpha=r))
    assert [layer.chosen_rank(t) for t in range(2)] == [r, r]  # gate_init="full"
    optimizer = torch.optim.Adam(layer.adapter_parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for step in range(300):
        task = step % 2
        x = torch.randn(64, d, generator=generator)
        with torch.no_grad():
            y = base(x) + x @ targets[task].T
        with ranklab.use_task(task):
            loss = (layer(x) - y).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ranks = [layer.chosen_rank(t) for t in range(2)]
    assert ranks[0] < ranks[1] and ranks[1] >= 4, ranks
    with torch.no_grad():
        for task in range(2):
            error = (layer.delta_weight(task=task) - targets[task]).norm() / targets[task].norm()
            assert float(error) < 0.1, (task, float(error))


def test_contrastive_loss_separates_task_embeddings():
    torch.manual_seed(0)
    n_tasks, d = 3, 12
    layer = make_layer(d_in=d, n_tasks=n_tasks, randomize=False, contrastive_weight=0.1)
    centers = torch.randn(n_tasks, d) * 2
    generator = torch.Generator().manual_seed(0)

    def batch(task):
        return centers[task] + torch.randn(16, 4, d, generator=generator)

    def accuracy():
        x = torch.cat([batch(t)[:, 0] for t in range(n_tasks)])
        labels = torch.arange(n_tasks).repeat_interleave(16)
        scores = nn.functional.normalize(x, dim=-1) @ nn.functional.normalize(layer.task_embeddings(), dim=-1).T
        return float((scores.argmax(-1) == labels).float().mean())

    before = accuracy()
    optimizer = torch.optim.Adam([layer.task_embedding], lr=0.05)
    for step in range(60):
        task = step % n_tasks
        with ranklab.use_task(task):
            layer(batch(task))
        loss = layer.extra_loss()
        torch.testing.assert_close(loss, 0.1 * layer.contrastive_loss())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = accuracy()
    assert before < 0.7 and after >= 0.95, (before, after)


def test_extra_loss_is_weighted_mean_over_modules(tiny_roberta, token_batch):
    model = tiny_roberta()
    ranklab.attach(model, make_config("rank_router", r=4, n_tasks=2, contrastive_weight=0.1))
    layers = ranklab.adapter_layers(model)
    assert make_config("rank_router", r=4, n_tasks=2).contrastive_weight == 0.0
    with pytest.raises(ValueError, match="no rank_router layer has run"):
        contrastive_loss(model)
    with ranklab.use_task(1):
        model(**token_batch)
    total = sum(layer.extra_loss() for layer in layers.values())
    torch.testing.assert_close(total, 0.1 * contrastive_loss(model))
    assert all(layer.n_modules == 4 for layer in layers.values())
    assert set(chosen_ranks(model, 0)) == set(layers)


def routed_model(tiny_roberta, seed=0, **options):
    model = tiny_roberta(seed=seed)
    options = {"r": 6, "n_tasks": 3, "modules_to_save": ["classifier"], **options}
    ranklab.attach(model, make_config("rank_router", **options))
    randomize_adapters(model, seed=seed + 3, std=0.5)
    return model


@pytest.mark.parametrize("selection", ["prefix", "topk"])
def test_merge_per_task_equals_routed(selection, tiny_roberta, token_batch):
    model = routed_model(tiny_roberta, selection=selection, top_k=2)
    for task in range(3):
        with torch.no_grad(), ranklab.use_task(task):
            routed = model(**token_batch).logits
            ranklab.merge_adapters(model, task=task)
            merged = model(**token_batch).logits
            ranklab.unmerge_adapters(model)
            again = model(**token_batch).logits
        torch.testing.assert_close(merged, routed, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(again, routed, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(tiny_roberta, token_batch, tmp_path):
    model = routed_model(tiny_roberta)
    path = ranklab.save_adapters(model, tmp_path / "set")
    fresh = ranklab.load_adapters(tiny_roberta(seed=0), path)
    for task in range(3):
        with torch.no_grad(), ranklab.use_task(task):
            torch.testing.assert_close(fresh(**token_batch).logits, model(**token_batch).logits, rtol=0, atol=0)


def test_export_peft_per_task_equals_routed(tiny_roberta, token_batch, tmp_path):
    model = routed_model(tiny_roberta)
    ranks = [sorted(set(chosen_ranks(model, task).values())) for task in range(3)]
    assert any(len(r) > 1 for r in ranks)  # modules choose different ranks: rank_pattern is exercised
    for task in range(3):
        path = ranklab.export_peft(model, tmp_path / f"peft{task}", task=task)
        peft_model = PeftModel.from_pretrained(tiny_roberta(seed=0), str(path)).eval()
        with torch.no_grad(), ranklab.use_task(task):
            expected = model(**token_batch).logits
            got = peft_model(**token_batch).logits
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_plain_training_loop_with_extra_loss(tiny_roberta):
    """Multi-task steps on a tiny RoBERTa: one task per batch, loss + sum of extra_loss()."""
    model = tiny_roberta(num_labels=2)
    ranklab.attach(model, make_config("rank_router", r=4, n_tasks=2, contrastive_weight=0.1,
                                      modules_to_save=["classifier"]))
    generator = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(3, 100, (8, 10), generator=generator),
                "labels": torch.randint(0, 2, (8,), generator=generator)} for _ in range(2)]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    model.train()
    losses = []
    for step in range(30):
        task = step % 2
        with ranklab.use_task(task):
            loss = model(**batches[task]).loss
        extra = sum(e for layer in ranklab.adapter_layers(model).values() if (e := layer.extra_loss()) is not None)
        optimizer.zero_grad()
        (loss + extra).backward()
        optimizer.step()
        losses.append(loss.item())
    assert isinstance(extra, torch.Tensor) and extra.item() > 0
    assert losses[-2] + losses[-1] < 0.5 * (losses[0] + losses[1]), losses


def test_probe_sees_no_gates_from_a_merged_router(tiny_roberta, token_batch):
    """Gates come from hook points in the forward pass: a merged layer skips its router, so a probe
    records nothing (no stale state to filter)."""
    model = tiny_roberta()
    ranklab.attach(model, make_config("rank_router", r=4, n_tasks=2))
    with torch.no_grad(), ranklab.use_task(0):
        model(**token_batch)
        ranklab.merge_adapters(model, task=0)
        with RouterProbe(model) as probe:
            model(**token_batch)
    assert probe.records == []
