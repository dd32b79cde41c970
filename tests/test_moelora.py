"""moelora: N full LoRA experts and a per-token router, computed in one batched pass."""
import pytest
import torch
from torch import nn

import ranklab
from ranklab.accounting import module_params
from ranklab.adapters.lora import LoraConfig, LoraLayer
from ranklab.adapters.moelora import MoeLoraConfig, MoeLoraLayer
from ranklab.inspect import RouterProbe

from .conftest import randomize_layer


def make_layer(d_in=12, d_out=10, seed=0, randomize=True, **options):
    torch.manual_seed(seed)
    options = {"r": 3, "n_experts": 4, **options}
    layer = MoeLoraLayer(nn.Linear(d_in, d_out), MoeLoraConfig(target_modules=["x"], **options)).double()
    if randomize:  # B starts at zero, which would hide every mixing bug
        randomize_layer(layer, seed=seed + 1, std=0.5)
    return layer


def loop_reference(layer: MoeLoraLayer, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """sum_i G_i(x) s B_i A_i x with a Python loop over experts, from the raw parameter slices."""
    r = layer.config.r
    out = torch.zeros(*x.shape[:-1], layer.d_out, dtype=x.dtype)
    for i in range(layer.n_experts):
        a_i, b_i = layer.experts_A[i * r:(i + 1) * r], layer.experts_B[:, i * r:(i + 1) * r]
        out = out + gates[..., i:i + 1] * (x @ a_i.T @ b_i.T) * layer.scaling
    return out


def test_batched_forward_equals_loop_over_experts():
    layer = make_layer()
    x = torch.randn(3, 7, 12, dtype=torch.float64)
    with torch.no_grad():
        gates = torch.softmax(x @ layer.router.weight.T, dim=-1)  # the router, computed independently
        out = layer(x) - layer.base(x)
        expected = loop_reference(layer, x, gates)
    assert float(expected.abs().max()) > 0.1  # a real update, not zeros
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_top_k_keeps_k_renormalised_gates_and_zeroes_the_rest():
    layer = make_layer(n_experts=5, top_k=2)
    x = torch.randn(4, 6, 12, dtype=torch.float64)
    with RouterProbe(layer) as probe, torch.no_grad():
        out = layer.adapter_output(x)
    gates = torch.from_numpy(probe.token_gates(next(iter(probe.layers)))).double()  # what forward used
    assert gates.shape == (24, 5)
    assert bool(((gates == 0).sum(dim=-1) == 3).all())  # exactly zero, not small
    torch.testing.assert_close(gates.sum(dim=-1), torch.ones(24, dtype=torch.float64), rtol=0, atol=1e-6)
    with torch.no_grad():
        probs = torch.softmax(x @ layer.router.weight.T, dim=-1).reshape(24, 5)
        exact = layer.gates(x).reshape(24, 5)
    top = probs.topk(2, dim=-1).indices
    assert bool((exact.gather(-1, top) > 0).all())  # the kept gates are the two largest
    kept = probs.gather(-1, top)
    torch.testing.assert_close(exact.gather(-1, top), kept / kept.sum(-1, keepdim=True), rtol=0, atol=1e-12)
    torch.testing.assert_close(exact.sum(dim=-1), torch.ones(24, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(out, loop_reference(layer, x, exact.reshape(4, 6, 5)), rtol=0, atol=1e-10)


def test_one_expert_equals_plain_lora():
    layer = make_layer(n_experts=1, r=4)
    lora = LoraLayer(layer.base, LoraConfig(target_modules=["x"], r=4, alpha=layer.config.alpha)).double()
    with torch.no_grad():
        lora.lora_A.copy_(layer.experts_A)
        lora.lora_B.copy_(layer.experts_B)
        x = torch.randn(5, 12, dtype=torch.float64)
        torch.testing.assert_close(layer(x), lora(x), rtol=0, atol=1e-12)  # the one gate is exactly 1
        torch.testing.assert_close(layer.delta_weight(expert=0), lora.delta_weight(), rtol=0, atol=1e-12)


def test_factors_per_expert_and_per_gate_vector():
    layer = make_layer()
    x = torch.randn(6, 12, dtype=torch.float64)
    with torch.no_grad():
        for i in range(4):
            onehot = nn.functional.one_hot(torch.full((6,), i), 4).double()
            torch.testing.assert_close(x @ layer.delta_weight(expert=i).T, loop_reference(layer, x, onehot),
                                       rtol=0, atol=1e-10)
        g = torch.tensor([0.1, 0.4, 0.3, 0.2], dtype=torch.float64)
        mixed = sum(g[i] * layer.delta_weight(expert=i) for i in range(4))
        torch.testing.assert_close(layer.delta_weight(gates=g), mixed, rtol=0, atol=1e-12)
    assert [tuple(f.shape) for f in layer.factors(expert=2)] == [(10, 3), (3, 12)]
    assert [tuple(f.shape) for f in layer.factors(gates=g)] == [(10, 12), (12, 12)]


@pytest.mark.parametrize("d_in, d_out, r, n", [(12, 10, 3, 4), (32, 24, 2, 3), (768, 3072, 4, 8)])
def test_parameter_count(d_in, d_out, r, n):
    expected = {"experts": n * r * (d_in + d_out), "router": d_in * n}
    assert module_params("moelora", d_in, d_out, r=r, n_experts=n) == expected
    if d_in < 100:  # the real layer, not only the meta-device count
        layer = MoeLoraLayer(nn.Linear(d_in, d_out), MoeLoraConfig(r=r, n_experts=n))
        assert layer.num_adapter_params() == n * r * (d_in + d_out) + d_in * n
        assert layer.param_counts() == expected


def two_cluster_problem(seed: int, d: int = 8):
    """Two input clusters (at +-3 e_0) whose targets are two different planted rank-1 maps u_c v_c^T:
    no single linear map fits both, so the router has to send each cluster to its own expert."""
    generator = torch.Generator().manual_seed(seed)
    u, v = (nn.functional.normalize(torch.randn(2, d, generator=generator), dim=1) for _ in range(2))
    centre = torch.zeros(d)
    centre[0] = 3.0

    def batch(n: int = 64):
        cluster = torch.randint(0, 2, (n,), generator=generator)
        x = torch.where(cluster[:, None] == 0, centre, -centre) + 0.5 * torch.randn(n, d, generator=generator)
        return x, u[cluster] * (x * v[cluster]).sum(-1, keepdim=True), cluster

    return batch


def train(layer, batch, steps: int = 100) -> list[float]:
    optimizer = torch.optim.Adam(layer.adapter_parameters(), lr=3e-2)  # router + experts; W0 is frozen
    losses = []
    for _ in range(steps):
        x, y, _ = batch()
        loss = (layer(x) - layer.base(x) - y).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def cluster_gates(layer, batch) -> tuple[torch.Tensor, torch.Tensor]:
    x, _, cluster = batch(512)
    with torch.no_grad():
        gates = layer.gates(x)
    return gates[cluster == 0].mean(dim=0), gates[cluster == 1].mean(dim=0)


def test_router_learns_to_separate_two_clusters():
    torch.manual_seed(0)
    batch = two_cluster_problem(seed=0)
    layer = MoeLoraLayer(nn.Linear(8, 8), MoeLoraConfig(target_modules=["x"], r=1, n_experts=2, alpha=1.0))
    before = cluster_gates(layer, batch)
    assert max(float(g.max()) for g in before) < 0.7  # not separated by the initial router
    losses = train(layer, batch)
    assert losses[-1] < 0.01 * losses[0], (losses[0], losses[-1])
    gates0, gates1 = cluster_gates(layer, batch)
    assert int(gates0.argmax()) != int(gates1.argmax())  # each cluster on its own expert
    assert float(gates0.max()) > 0.9 and float(gates1.max()) > 0.9
    # a plain LoRA of the same total rank cannot fit both clusters: the routing is what helps
    torch.manual_seed(0)
    lora = LoraLayer(nn.Linear(8, 8), LoraConfig(target_modules=["x"], r=2, alpha=2.0))
    assert train(lora, two_cluster_problem(seed=0))[-1] > 10 * losses[-1]


def test_bad_input_fails_clearly():
    with pytest.raises(ValueError, match="r must be an int >= 1"):
        MoeLoraConfig(r=0)
    with pytest.raises(ValueError, match="n_experts must be an int >= 1"):
        MoeLoraConfig(n_experts=0)
    with pytest.raises(ValueError, match=r"top_k=4 is larger than n_experts=3; valid range is 1..3"):
        MoeLoraConfig(n_experts=3, top_k=4)
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        MoeLoraConfig(top_k=0)
    with pytest.raises(ValueError, match=r"r=8 is larger than min\(d_in, d_out\)=6"):
        MoeLoraLayer(nn.Linear(6, 16), MoeLoraConfig())
    with pytest.raises(ValueError, match="unknown moelora config keys"):
        ranklab.make_config("moelora", rank=2)
    layer = make_layer(n_experts=3, randomize=False)
    with pytest.raises(ValueError, match=r"input-dependent .*factors\(expert=i\) or factors\(gates=g\)"):
        layer.factors()
    with pytest.raises(ValueError, match="expert must be an int in 0..2"):
        layer.factors(expert=3)
    with pytest.raises(ValueError, match=r"gates must have shape \(3,\)"):
        layer.factors(gates=torch.ones(4))
    with pytest.raises(ValueError, match="give one selector"):
        layer.factors(expert=0, gates=torch.ones(3))
    with pytest.raises(ValueError, match="depend on the input and cannot merge"):
        layer.merge()
    config = ranklab.make_config("moelora", r=2, n_experts=4, top_k=3)
    assert ranklab.config_from_dict(config.to_dict()) == config
    assert (MoeLoraConfig().r, MoeLoraConfig().n_experts, MoeLoraConfig().top_k) == (8, 8, None)
