"""Spectra from factors equal the dense SVD, for every method and for PEFT LoRA / AdaLoRA."""
import numpy as np
import pytest
import torch
from torch import nn

import ranklab
from ranklab.adapters.base import chain
from ranklab.inspect import (
    base_weight,
    factored_svd,
    model_factors,
    model_spectra,
    module_factors,
    module_spectrum,
    module_svd,
)


def _check(factors, dtype):
    """Factored spectrum == svdvals(dense) to 1e-5 relative; the dense rest is ~0."""
    factors = [f.to(dtype) for f in factors]
    fast = factored_svd(factors).S
    dense = torch.linalg.svdvals(chain(factors))
    q = len(fast)
    scale = dense[0]
    torch.testing.assert_close(fast, dense[:q], rtol=1e-5, atol=1e-5 * scale.item())
    assert torch.all(dense[q:] <= 1e-5 * scale)
    assert fast.dtype == dtype


def _layer(method, d_in=40, d_out=24, **options):
    torch.manual_seed(0)
    config = ranklab.make_config(method, target_modules=["lin"], **options)
    model = nn.Module()
    model.lin = nn.Linear(d_in, d_out)
    ranklab.attach(model, config)
    layer = model.lin
    for p in layer.adapter_parameters():  # B starts at zero: make every factor random
        nn.init.normal_(p)
    return layer


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lora_and_emd_spectra_match_dense(dtype):
    _check(_layer("lora", r=6).factors(), dtype)
    emd = _layer("emd", a=3, b=7)
    assert len(emd.factors()) == 3  # T is inside the chain
    _check(emd.factors(), dtype)
    _check(_layer("emd", a=9, b=2).factors(), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dylora_spectrum_at_every_rank(dtype):
    layer = _layer("dylora", r_min=1, r_max=8)
    for rank in range(1, 9):
        factors = layer.factors(rank=rank)
        _check(factors, dtype)
        assert len(factored_svd(factors).S) == rank
    # module_spectrum passes the selector through
    torch.testing.assert_close(module_spectrum(layer, rank=3), factored_svd(layer.factors(rank=3)).S)


def test_singular_vectors_reconstruct_delta():
    layer = _layer("emd", a=4, b=6)
    svd = module_svd(layer)
    dense = layer.delta_weight().detach()
    torch.testing.assert_close(svd.U @ torch.diag(svd.S) @ svd.V.T, dense, rtol=1e-4, atol=1e-4)
    eye = torch.eye(len(svd.S))
    torch.testing.assert_close(svd.U.T @ svd.U, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(svd.V.T @ svd.V, eye, atol=1e-5, rtol=0)


def test_wide_rank_and_single_factor():
    torch.manual_seed(1)
    # bond wider than the output: QR gives a square Q, still exact
    _check([torch.randn(5, 9, dtype=torch.float64), torch.randn(9, 30, dtype=torch.float64)], torch.float64)
    dense = torch.randn(7, 5, dtype=torch.float64)
    torch.testing.assert_close(factored_svd([dense]).S, torch.linalg.svdvals(dense))
    with pytest.raises(ValueError, match="do not chain"):
        factored_svd([torch.randn(4, 3), torch.randn(2, 4)])
    with pytest.raises(ValueError, match="empty"):
        factored_svd([])


def test_zero_update_has_zero_spectrum():
    torch.manual_seed(0)
    model = nn.Module()
    model.lin = nn.Linear(10, 6)
    ranklab.attach(model, ranklab.make_config("lora", r=3, target_modules=["lin"]))
    assert torch.all(module_spectrum(model.lin) == 0)


def test_bad_selector_names_valid_ones():
    layer = _layer("lora", r=2)
    with pytest.raises(ValueError, match="lora factors"):
        module_factors(layer, rank=2)
    with pytest.raises(ValueError, match="not an adapted module"):
        module_factors(nn.Linear(3, 3))


def _tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    return BertModel(config)


def test_peft_lora_factors_match_get_delta_weight():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_tiny_bert(), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                    init_lora_weights=False))
    names = [name for name, _ in model_factors(model)]
    assert len(names) == 4 and all(n.endswith(("query", "value")) for n in names)
    for name, factors in model_factors(model):
        module = model.get_submodule(name)
        expected = module.get_delta_weight("default").detach()
        torch.testing.assert_close(chain(factors).detach(), expected, rtol=1e-6, atol=1e-7)
        _check(factors, torch.float64)
    with pytest.raises(ValueError, match="adapters: default"):
        module_factors(module, adapter="other")


def test_peft_adalora_factors_match_get_delta_weight():
    from peft import AdaLoraConfig, get_peft_model

    config = AdaLoraConfig(init_r=6, target_r=3, target_modules=["query", "value"], total_step=10)
    model = get_peft_model(_tiny_bert(), config)
    torch.manual_seed(2)
    for name, module in model.named_modules():
        if hasattr(module, "lora_E") and "default" in module.lora_E:
            for p in (module.lora_A["default"], module.lora_B["default"], module.lora_E["default"]):
                nn.init.normal_(p)
            module.lora_E["default"].data[::2] = 0.0  # as if AdaLoRA pruned half the ranks
    spectra = model_spectra(model)
    assert len(spectra) == 4
    for name, factors in model_factors(model):
        module = model.get_submodule(name)
        torch.testing.assert_close(chain(factors).detach(), module.get_delta_weight("default").detach(),
                                   rtol=1e-6, atol=1e-7)
        assert (spectra[name] > 1e-6 * spectra[name][0]).sum() == 3  # pruned ranks vanish


def test_peft_fan_in_fan_out_conv1d():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    base = GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    model = get_peft_model(base, LoraConfig(r=3, target_modules=["c_attn"], fan_in_fan_out=True,
                                            init_lora_weights=False))
    (name, factors), = list(model_factors(model))
    module = model.get_submodule(name)
    # ΔW is (d_out x d_in) as for nn.Linear; PEFT's get_delta_weight is in Conv1D's (d_in x d_out) layout
    assert chain(factors).shape == (48, 16)
    torch.testing.assert_close(chain(factors).detach(), module.get_delta_weight("default").detach().T)
    assert base_weight(module).shape == (48, 16)


def test_spectrum_gap_pads_pruned_ranks_with_zeros():
    from ranklab.inspect import spectrum_gap

    assert spectrum_gap(np.array([3.0, 2.0]), np.array([3.0, 2.0, 0.5])) == 0.5
    assert spectrum_gap(np.array([]), np.array([])) == 0.0
    assert spectrum_gap(np.array([1.0]), np.array([0.25])) == 0.75


def test_check_against_dense_on_ranklab_and_peft_layers():
    from peft import LoraConfig, get_peft_model

    from ranklab.inspect import check_against_dense

    torch.manual_seed(0)
    layer = ranklab.get_method("emd")[1](nn.Linear(20, 16).double(), ranklab.make_config("emd", a=3, b=5)).double()
    nn.init.normal_(layer.emd_B)
    check = check_against_dense(layer)
    assert (check["factored"], check["dense"]) == (3, 16)
    assert check["max_relative_difference"] < 1e-10 and check["largest_other"] < 1e-10
    model = get_peft_model(nn.Sequential(nn.Linear(12, 10)), LoraConfig(r=4, target_modules=["0"]))
    nn.init.normal_(model.base_model.model[0].lora_B["default"].weight)
    check = check_against_dense(model.base_model.model[0])
    assert (check["factored"], check["dense"]) == (4, 10) and check["max_relative_difference"] < 1e-5
