"""mor: Mixture of Ranks, shared A and B with per-expert scaling vectors, one batched pass."""
import numpy as np
import pytest
import torch
from peft import PeftModel
from torch import nn

import ranklab
from ranklab import make_config
from ranklab.inspect import RouterProbe
from ranklab.adapters.lora import LoraConfig, LoraLayer
from ranklab.adapters.mor import MorConfig, MorLayer, mor_loop_reference

from .conftest import randomize_adapters, randomize_layer


def make_layer(d_in=12, d_out=10, seed=0, randomize=True, **options):
    torch.manual_seed(seed)
    options = {"r": 4, "n_experts": 3, **options}
    layer = MorLayer(nn.Linear(d_in, d_out), MorConfig(target_modules=["x"], **options))
    if randomize:
        randomize_layer(layer, seed=seed + 1, std=0.5)
    return layer


def test_config_validation_names_choices():
    with pytest.raises(ValueError, match="router must be one of 'token', 'task'"):
        MorConfig(router="layer")
    with pytest.raises(ValueError, match="router='task' needs n_tasks"):
        MorConfig(router="task")
    with pytest.raises(ValueError, match="n_experts must be an int >= 1"):
        MorConfig(n_experts=0)
    with pytest.raises(ValueError, match=r"r=32 is larger than min\(d_in, d_out\)=16"):
        MorLayer(nn.Linear(16, 64), MorConfig())
    config = make_config("mor", r=8, n_experts=4, router="task", n_tasks=3)
    assert ranklab.config_from_dict(config.to_dict()) == config
    assert MorConfig().r == 32 and MorConfig().n_experts == 8


def test_token_router_equals_mor_loop_reference():
    layer = make_layer().double()  # float64 so that 1e-6 measures the algebra, not round-off
    x = torch.randn(3, 7, 12, dtype=torch.float64)
    with RouterProbe(layer) as probe:
        out = layer.adapter_output(x)
        with ranklab.use_task(2):
            layer(x[:, :2])
    gates = torch.softmax(x @ layer.router.weight.T, dim=-1)
    torch.testing.assert_close(out, mor_loop_reference(layer, x, gates), rtol=0, atol=1e-6)
    first, second = probe.records
    assert first["task"] is None and first["gates"].shape == (3 * 7, 3) and first["per_token"]
    np.testing.assert_allclose(first["gates"], gates.detach().reshape(-1, 3).numpy(), rtol=1e-6)
    assert second["task"] == 2 and second["gates"].shape == (3 * 2, 3)
    torch.testing.assert_close(layer(x), layer.base(x) + out)


def test_gradients_match_mor_loop_reference():
    layer = make_layer()
    x = torch.randn(2, 5, 12)
    target = torch.randn(2, 5, 10)
    ((layer(x) - layer.base(x) - target) ** 2).sum().backward()
    fast = [p.grad.clone() for p in layer.adapter_parameters()]
    layer.zero_grad()
    gates = torch.softmax(layer.router(x), dim=-1)
    ((mor_loop_reference(layer, x, gates) - target) ** 2).sum().backward()
    for got, p in zip(fast, layer.adapter_parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-5, atol=1e-5)


def test_all_lambdas_one_equals_lora():
    layer = make_layer(n_experts=5)
    with torch.no_grad():
        layer.lambda_A.fill_(1.0)
        layer.lambda_B.fill_(1.0)
    lora = LoraLayer(layer.base, LoraConfig(target_modules=["x"], r=4, alpha=layer.config.alpha))
    with torch.no_grad():
        lora.lora_A.copy_(layer.mor_A)
        lora.lora_B.copy_(layer.mor_B)
    x = torch.randn(3, 6, 12)
    torch.testing.assert_close(layer(x), lora(x), rtol=1e-5, atol=1e-6)
    fresh = make_layer(randomize=False)  # lambdas start at 1
    assert bool((fresh.lambda_A == 1).all() and (fresh.lambda_B == 1).all())


def test_factors_per_expert_and_gates():
    layer = make_layer().double()
    x = torch.randn(4, 12, dtype=torch.float64)
    for i in range(3):
        onehot = torch.nn.functional.one_hot(torch.tensor([i] * 4), 3).double()
        torch.testing.assert_close(x @ layer.delta_weight(expert=i).T, mor_loop_reference(layer, x, onehot), atol=1e-6, rtol=0)
    g = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    mixed = sum(g[i] * layer.delta_weight(expert=i) for i in range(3))
    torch.testing.assert_close(layer.delta_weight(gates=g), mixed, rtol=1e-5, atol=1e-6)
    assert [f.shape for f in layer.factors(gates=g)] == [(10, 4), (4, 12)]
    with pytest.raises(ValueError, match=r"input-dependent .*factors\(expert=i\) or factors\(gates=g\)"):
        layer.factors()
    with pytest.raises(ValueError, match="expert must be an int in 0..2"):
        layer.factors(expert=3)
    with pytest.raises(ValueError, match=r"gates must have shape \(3,\)"):
        layer.factors(gates=torch.ones(4))


def test_token_router_does_not_merge_or_export(tiny_roberta, tmp_path):
    model = tiny_roberta()
    ranklab.attach(model, make_config("mor", r=4, n_experts=2))
    layer = next(iter(ranklab.adapter_layers(model).values()))
    assert layer.mergeable is False
    with pytest.raises(ValueError, match="depend on the input and cannot merge"):
        layer.merge()
    with pytest.raises(ValueError, match="input-dependent"):
        ranklab.export_peft(model, tmp_path / "peft")
    with pytest.raises(ValueError, match="router='token' has no tasks"):
        layer.task_embeddings()


def task_model(tiny_roberta, seed=0, **options):
    model = tiny_roberta(seed=seed)
    options = {"r": 4, "n_experts": 3, "router": "task", "n_tasks": 2, "modules_to_save": ["classifier"], **options}
    ranklab.attach(model, make_config("mor", **options))
    randomize_adapters(model, seed=seed + 3, std=0.5)
    return model


def test_task_router_merges_and_exports_per_task(tiny_roberta, token_batch, tmp_path):
    model = task_model(tiny_roberta)
    layer = next(iter(ranklab.adapter_layers(model).values()))
    assert layer.mergeable and layer.task_embeddings().shape == (2, 32)
    for task in range(2):
        with torch.no_grad(), ranklab.use_task(task), RouterProbe(model) as probe:
            routed = model(**token_batch).logits
            gates = probe.mean_gates(task)[next(iter(ranklab.adapter_layers(model)))]
            torch.testing.assert_close(gates, layer.gate_probs(task).float())
            ranklab.merge_adapters(model, task=task)
            merged = model(**token_batch).logits
            ranklab.unmerge_adapters(model)
        torch.testing.assert_close(merged, routed, rtol=1e-5, atol=1e-5)
        path = ranklab.export_peft(model, tmp_path / f"peft{task}", task=task)
        peft_model = PeftModel.from_pretrained(tiny_roberta(seed=0), str(path)).eval()
        with torch.no_grad():
            torch.testing.assert_close(peft_model(**token_batch).logits, routed, rtol=1e-5, atol=1e-5)
    with ranklab.use_task(0), torch.no_grad():
        logits0 = model(**token_batch).logits
    assert float((logits0 - routed).abs().max()) > 1e-4  # the two tasks really differ


@pytest.mark.parametrize("router", ["token", "task"])
def test_save_load_round_trip(router, tiny_roberta, token_batch, tmp_path):
    model = task_model(tiny_roberta, router=router)
    path = ranklab.save_adapters(model, tmp_path / "set")
    fresh = ranklab.load_adapters(tiny_roberta(seed=0), path)
    with torch.no_grad(), ranklab.use_task(1):
        torch.testing.assert_close(fresh(**token_batch).logits, model(**token_batch).logits, rtol=0, atol=0)


def test_plain_training_loop_trains_lambdas_and_router():
    torch.manual_seed(0)
    layer = make_layer(randomize=False, n_experts=4)
    target = torch.randn(10, 2) @ torch.randn(2, 12) * 0.3  # rank 2 <= r
    optimizer = torch.optim.Adam(layer.adapter_parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        x = torch.randn(32, 12, generator=generator)
        loss = (layer(x) - layer.base(x) - x @ target.T).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])
    assert float((layer.lambda_A.detach() - 1).abs().max()) > 1e-3 and float((layer.lambda_B.detach() - 1).abs().max()) > 1e-3
    assert layer.router.weight.grad is not None and float(layer.router.weight.grad.abs().sum()) > 0
