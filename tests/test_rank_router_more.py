"""rank_router with MoRE's released code (NLPfreshman0/MoRE, peft/tuners/lora/layer.py ``Linear``):
gate init, fixed per-rank scaling, chosen-only straight-through, contrastive loss through the
hidden states.  Each reference below is written from that code's formulas, independently of ranklab."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ranklab
from ranklab.adapters.rank_router import MORE_OPTIONS, RankRouterConfig, RankRouterLayer


def more_layer(d_in=16, d_out=12, r=8, n_tasks=3, seed=0, **overrides):
    torch.manual_seed(seed)
    config = RankRouterConfig(target_modules=["x"], r=r, n_tasks=n_tasks, alpha=32.0, **{**MORE_OPTIONS, **overrides})
    layer = RankRouterLayer(nn.Linear(d_in, d_out), config).double()
    with torch.no_grad():  # B starts at zero; random values make every term visible
        layer.lora_B.normal_()
    return layer


def more_reference(layer, x, task):
    """MoRE's gated branch: softmax gate on E[t], straight-through argmax, ranks 0..k with A's rows
    and B's columns scaled by (i+1)/r, the update times z_k and alpha / r."""
    r = layer.config.r
    logits = torch.softmax(layer.gate(layer.task_embedding[task]), dim=-1)
    k = int(torch.argmax(logits))
    one_hot = torch.zeros_like(logits)
    one_hot[k] = 1.0
    approximated = logits - logits.detach() + one_hot
    factors = torch.arange(1, r + 1, dtype=x.dtype) / r
    lora_A = layer.lora_A[:k + 1] * factors[:k + 1, None]
    lora_B = layer.lora_B[:, :k + 1] * factors[None, :k + 1]
    return (x @ lora_A.T) @ lora_B.T * approximated[k] * (layer.config.alpha / r), k


def test_more_gate_init_matches_the_released_code():
    layer = more_layer(d_in=512, d_out=64, r=8, n_tasks=8)
    bound = math.sqrt(6 / 512)  # kaiming_uniform_(mode="fan_in", nonlinearity="relu"): U(-sqrt(6/fan_in), +)
    weight = layer.gate.weight.detach()
    assert weight.abs().max() <= bound and weight.abs().max() > 0.95 * bound
    assert weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.05)
    bias = layer.gate.bias.detach()  # nn.Linear's default bias: U(-1/sqrt(fan_in), +)
    assert bias.abs().max() <= 1 / math.sqrt(512)
    assert layer.task_embedding.detach().std().item() == pytest.approx(0.01, rel=0.05)  # N(0, 0.01)
    assert layer.task_embedding.detach().mean().abs().item() < 1e-3


def test_more_forward_and_gradients_equal_the_released_code():
    layer = more_layer().eval()  # eval: no dropout, so both sides see the same x
    x = torch.randn(4, 5, 16, dtype=torch.double)
    for task in range(3):
        for p in layer.parameters():
            p.grad = None
        with ranklab.use_task(task):
            ours = layer(x) - layer.base(x)
        reference, k = more_reference(layer, x, task)
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-10)
        assert layer.chosen_rank(task) == k + 1
        ours.pow(2).sum().backward()
        grads = [p.grad.clone() for p in (layer.lora_A, layer.lora_B, layer.gate.weight, layer.task_embedding)]
        for p in layer.parameters():
            p.grad = None
        more_reference(layer, x, task)[0].pow(2).sum().backward()
        expected = [layer.lora_A.grad, layer.lora_B.grad, layer.gate.weight.grad, layer.task_embedding.grad]
        torch.testing.assert_close(grads, expected, rtol=1e-10, atol=1e-10)
        assert grads[2].abs().sum() > 0  # chosen-only straight-through: the gate learns through p_k
        # the per-rank factors are in the static update too: s * sum_{i<=k} ((i+1)/r)^2 B_i A_i
        weights = ((torch.arange(k + 1, dtype=x.dtype) + 1) / 8) ** 2 * (32.0 / 8)
        dense = (layer.lora_B[:, :k + 1] * weights) @ layer.lora_A[:k + 1]
        torch.testing.assert_close(layer.delta_weight(task=task), dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("detach", [True, False])
def test_contrastive_loss_reaches_the_hidden_states_only_as_in_more(detach):
    layer = more_layer(contrastive_detach=detach).train()  # train: dropout 0.1 on the update's input
    x = torch.randn(4, 5, 16, dtype=torch.double, requires_grad=True)
    with ranklab.use_task(1):
        layer(x)
    loss = layer.contrastive_loss()
    x_norm = F.normalize(x[:, 0, :], dim=1)  # MoRE: before the dropout, first token
    task_norm = F.normalize(layer.task_embedding, dim=1)
    expected = F.cross_entropy(x_norm @ task_norm.T / 0.05, torch.full((4,), 1))
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    assert layer.extra_loss().item() == pytest.approx(0.1 * loss.item())  # weight 0.1, one module
    loss.backward()
    if detach:
        assert x.grad is None
    else:
        assert x.grad[:, 0].abs().sum() > 0 and x.grad[:, 1:].abs().sum() == 0


def test_more_options_are_valid_and_named_on_a_typo():
    config = RankRouterConfig(n_tasks=2, **MORE_OPTIONS)
    assert ranklab.config_from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="rank_scaling must be one of 'none', 'linear'"):
        RankRouterConfig(n_tasks=2, rank_scaling="log")
    with pytest.raises(ValueError, match="gate_init must be one of 'full', 'random', 'more'"):
        RankRouterConfig(n_tasks=2, gate_init="kaiming")
