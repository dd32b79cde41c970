"""Adapter layers on a bare nn.Linear: exact deltas, merge, parameter counts, DyLoRA ranks."""
import pytest
import torch
from torch import nn

import ranklab
from ranklab.adapters import DyLoraLayer, EmdLayer, LoraLayer, make_config

METHODS = {
    "lora": dict(r=4),
    "emd": dict(a=3, b=6),
    "dylora": dict(r_min=1, r_max=5),
}


def make_layer(method, d_in=12, d_out=10, seed=0, randomize=True, **extra):
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out).double()
    config = make_config(method, target_modules=["x"], **{**METHODS[method], **extra})
    _, layer_class = ranklab.get_method(method)
    layer = layer_class(base, config).double()
    if randomize:  # B starts at zero; give every factor values so deltas are non-trivial
        with torch.no_grad():
            for p in layer.adapter_parameters():
                p.normal_()
    return layer.eval()


def test_lora_scaling_and_params():
    layer = make_layer("lora", d_in=12, d_out=10, alpha=8.0)
    assert layer.scaling == 8.0 / 4
    assert layer.num_adapter_params() == 4 * 12 + 10 * 4
    assert not any(p.requires_grad for p in layer.base.parameters())


@pytest.mark.parametrize("a,b", [(2, 7), (7, 2), (4, 4)])
def test_emd_param_count_and_scaling(a, b):
    layer = make_layer("emd", d_in=12, d_out=10, a=a, b=b, alpha=16.0)
    assert layer.num_adapter_params() == 12 * a + a * b + b * 10
    assert layer.scaling == pytest.approx(16.0 / ((a + b) / 2))
    assert isinstance(layer, EmdLayer)


def test_emd_equal_ranks_scales_like_lora():
    assert make_config("emd", a=8, b=8, alpha=16).scaling == 16 / 8
    assert make_config("emd", a=4, b=12, alpha=16, r_ref=2.0).scaling == 8.0


@pytest.mark.parametrize("a,b", [(2, 7), (7, 2)])
def test_emd_lora_export_has_rank_min_ab(a, b):
    layer = make_layer("emd", a=a, b=b)
    lora_B, lora_A = layer.lora_factors()
    assert lora_A.shape == (min(a, b), 12) and lora_B.shape == (10, min(a, b))
    torch.testing.assert_close(lora_B @ lora_A, layer.delta_weight(), rtol=1e-10, atol=1e-10)


def test_dylora_evaluates_at_every_rank():
    layer = make_layer("dylora", alpha=4.0)
    x = torch.randn(3, 12, dtype=torch.double)
    for rank in range(1, 6):
        layer.set_rank(rank)
        A, B = layer.lora_A[:rank], layer.lora_B[:, :rank]
        expected = layer.base(x) + (4.0 / rank) * x @ A.T @ B.T
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(layer.delta_weight(rank=rank), (4.0 / rank) * B @ A)
    with pytest.raises(ValueError, match="1..5"):
        layer.set_rank(6)


def test_dylora_training_samples_ranks_in_range():
    layer = make_layer("dylora", randomize=False).train()
    torch.manual_seed(0)
    seen = set()
    for _ in range(60):
        layer(torch.randn(2, 12, dtype=torch.double))
        seen.add(layer.last_rank)
    assert seen == {1, 2, 3, 4, 5}


def _official_dylora_delta(x, A, B, alpha, index, frozen):
    """The official code's forward (huawei-noah/Efficient-NLP DyLoRA/loralib: ``dynamic`` on A.T and B
    with rank index ``index`` = b - 1, each scaled by sqrt(r / b), then alpha / r), written out here."""
    r = A.shape[0]

    def dynamic(inputs):  # columns 0..index of inputs (A.T or B); the earlier ones detached if frozen
        kept = torch.cat([inputs[:, :index].detach(), inputs[:, index:index + 1]], 1) if frozen else inputs[:, :index + 1]
        return kept * (r / (index + 1)) ** 0.5

    return (x @ dynamic(A.T)) @ dynamic(B).T * (alpha / r)


@pytest.mark.parametrize("frozen", [False, True])
def test_dylora_training_step_matches_the_official_code(frozen):
    """Values and gradients of one training forward at rank b equal the official code's; with
    frozen=True only row b of A and column b of B get a gradient."""
    layer = make_layer("dylora", alpha=16.0, frozen=frozen).train()
    x = torch.randn(4, 12, dtype=torch.double)
    for b in (1, 3, 5):
        layer.train_rank = b
        for p in layer.adapter_parameters():
            p.grad = None
        layer.adapter_output(x).pow(2).sum().backward()
        ours = [layer.lora_A.grad.clone(), layer.lora_B.grad.clone()]
        A = layer.lora_A.detach().clone().requires_grad_()
        B = layer.lora_B.detach().clone().requires_grad_()
        reference = _official_dylora_delta(x, A, B, 16.0, b - 1, frozen)
        torch.testing.assert_close(layer.adapter_output(x), reference, rtol=1e-10, atol=1e-10)
        reference.pow(2).sum().backward()
        torch.testing.assert_close(ours, [A.grad, B.grad], rtol=1e-10, atol=1e-10)
        trained_rows = (ours[0].abs().sum(1) > 0).nonzero().flatten().tolist()
        trained_cols = (ours[1].abs().sum(0) > 0).nonzero().flatten().tolist()
        assert trained_rows == trained_cols == ([b - 1] if frozen else list(range(b)))
    layer.eval()  # evaluation never detaches: frozen only changes training
    torch.testing.assert_close(layer.delta_weight(rank=3), (16.0 / 3) * layer.lora_B[:, :3] @ layer.lora_A[:3])
    with pytest.raises(ValueError, match="frozen must be True or False"):
        make_config("dylora", frozen="yes")


def test_isinstance_of_registered_classes():
    assert ranklab.get_method("lora")[1] is LoraLayer
    assert ranklab.get_method("dylora")[1] is DyLoraLayer


@pytest.mark.parametrize(
    "method,options,message",
    [
        ("lora", dict(r=0), "r must be"),
        ("emd", dict(a=0, b=4), "a must be"),
        ("dylora", dict(r_min=5, r_max=2), "r_min=5 must be <= r_max=2"),
        ("lora", dict(r=4, alpha=-1), "alpha must be"),
        ("lora", dict(r=4, rank=3), "valid keys"),
    ],
)
def test_bad_configs(method, options, message):
    with pytest.raises(ValueError, match=message):
        make_config(method, **options)


@pytest.mark.parametrize("method,options,name", [("lora", dict(r=11), "r=11"), ("emd", dict(a=2, b=11), "b=11"),
                                                 ("dylora", dict(r_max=11), "r_max=11")])
def test_rank_larger_than_layer(method, options, name):
    config = make_config(method, target_modules=["x"], **options)
    with pytest.raises(ValueError, match=rf"{name} is larger than min\(d_in, d_out\)=10.*1..10"):
        ranklab.get_method(method)[1](nn.Linear(12, 10), config, module_name="x")


def test_unknown_method_lists_registered():
    with pytest.raises(ValueError, match="registered methods: .*dylora, emd, lora"):
        make_config("lokr", r=4)


def test_config_round_trip():
    config = make_config("emd", a=4, b=12, alpha=32, target_modules=["query"], modules_to_save=["classifier"])
    again = ranklab.config_from_dict(config.to_dict())
    assert again == config and again.to_dict()["method"] == "emd"
