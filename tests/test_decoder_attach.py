"""Decoder-only models: GPT-2's Conv1D and target_modules="all-linear" (PEFT's shorthand)."""
import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

import ranklab
from ranklab import make_config
from ranklab.train.commands import config_from_args
from ranklab.cli import build_parser

from .conftest import build_tiny_decoder, build_tiny_gpt2, randomize_adapters


def peft_all_linear(model, fan_in_fan_out: bool) -> set[str]:
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", fan_in_fan_out=fan_in_fan_out))
    return {name.removeprefix("base_model.model.") for name, m in peft_model.named_modules() if hasattr(m, "lora_A")
            and hasattr(m, "base_layer")}


@pytest.mark.parametrize("build", [build_tiny_gpt2, lambda seed=0: build_tiny_decoder("llama", seed=seed),
                                   lambda seed=0: build_tiny_decoder("qwen2", seed=seed)],
                         ids=["gpt2", "llama", "qwen2"])
def test_all_linear_wraps_what_peft_wraps_and_never_the_lm_head(build):
    summary = ranklab.attach(build(seed=0), make_config("lora", r=2, target_modules="all-linear"))
    assert set(summary.modules) == peft_all_linear(build(seed=0), fan_in_fan_out=build is build_tiny_gpt2)
    assert not any(name.endswith("lm_head") for name in summary.modules)
    per_block = 4 if build is build_tiny_gpt2 else 7  # c_attn, attn.c_proj, c_fc, mlp.c_proj / q k v o gate up down
    assert len(summary.modules) == 2 * per_block


def test_all_linear_on_a_classifier_leaves_its_head_out(tiny_roberta):
    summary = ranklab.attach(tiny_roberta(), make_config("lora", r=2, target_modules=["ALL-LINEAR"]))
    assert summary.modules and not any(n.startswith("classifier") for n in summary.modules)
    assert {"query", "key", "value", "dense"} <= {n.rsplit(".", 1)[-1] for n in summary.modules}


def test_all_linear_stands_alone():
    with pytest.raises(ValueError, match="'all-linear' stands alone"):
        make_config("lora", target_modules=["all-linear", "query"])


def test_cli_target_modules_all_linear_reaches_the_adapter_config():
    args = build_parser().parse_args(["train", "--method", "emd", "--target-modules", "all-linear"])
    config = config_from_args(args)
    assert config.adapter_config().target_modules == "all-linear"


def test_gpt2_error_names_conv1d_and_the_candidates():
    with pytest.raises(ValueError, match=r"matched no nn.Linear or Conv1D module \(ranklab adapts both.*"
                                         r"candidate Conv1D/Linear module names end in: c_attn, c_fc, c_proj, lm_head"):
        ranklab.attach(build_tiny_gpt2(), make_config("lora", r=2, target_modules=["query", "value"]))


def test_gpt2_c_attn_orientation_merge_and_report():
    """ΔW of a Conv1D is (d_out x d_in) like nn.Linear's; merging it into the (d_in x d_out) weight
    gives the adapted outputs, and the report's shapes and ‖W0‖ follow the same orientation."""
    from ranklab.inspect import model_report

    model = build_tiny_gpt2()
    ranklab.attach(model, make_config("emd", a=2, b=3, target_modules=["c_attn"]))
    randomize_adapters(model, seed=3)
    layer = model.transformer.h[0].attn.c_attn
    assert (layer.d_in, layer.d_out) == (32, 96) and layer.delta_weight().shape == (96, 32)
    torch.testing.assert_close(layer.base_weight(), layer.base.weight.T)
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        plain = ranklab.merge_and_unload(model)(input_ids=ids).logits
    torch.testing.assert_close(plain, adapted, rtol=1e-5, atol=1e-6)
    model = build_tiny_gpt2()
    ranklab.attach(model, make_config("lora", r=2, target_modules=["c_attn"]))
    randomize_adapters(model, seed=3)
    report = model_report(model, top_k=2)
    assert set(report["d_out"]) == {96} and set(report["d_in"]) == {32}
    w0 = model.transformer.h[0].attn.c_attn.base.weight
    assert report["base_fro"][0] == pytest.approx(float(torch.linalg.matrix_norm(w0.double())))
    sigma = torch.linalg.svdvals(model.transformer.h[0].attn.c_attn.delta_weight().detach().double())
    assert report["sigma_1"][0] == pytest.approx(float(sigma[0]), rel=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_decoder_report_spectra_equal_svdvals_and_export_matches(family, tmp_path):
    from peft import PeftModel

    from ranklab.inspect import model_report, model_spectra

    model = build_tiny_decoder(family)
    ranklab.attach(model, make_config("emd", a=2, b=5, target_modules="all-linear"))
    randomize_adapters(model, seed=2)
    report = model_report(model)
    assert len(report) == 14 and set(report["module"]) == {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
        "mlp.down_proj"}
    layers = ranklab.adapter_layers(model)
    for name, sigma in model_spectra(model).items():
        dense = torch.linalg.svdvals(layers[name].delta_weight().detach().double()).numpy()
        assert sigma[:2] == pytest.approx(dense[:2], rel=1e-5)
    ids = torch.randint(3, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    path = ranklab.export_peft(model, tmp_path / "peft")
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        got = PeftModel.from_pretrained(build_tiny_decoder(family), str(path))(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_router_probe_leaves_padding_out_by_default():
    from ranklab.inspect import RouterProbe

    model = build_tiny_decoder("llama")
    ranklab.attach(model, make_config("mor", r=4, n_experts=3, target_modules=["gate_proj", "up_proj", "down_proj"]))
    randomize_adapters(model, seed=0)
    ids = torch.randint(3, 100, (3, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3, [1] * 2 + [0] * 6])
    with torch.no_grad(), RouterProbe(model) as probe:
        model(input_ids=ids, attention_mask=mask)
    name = next(iter(probe.layers))
    with torch.no_grad(), RouterProbe(model, mask_padding=False) as everything:
        model(ids, mask)  # positional, as transformers' forward(input_ids, attention_mask)
    assert probe.token_gates(name).shape == (15, 3) and everything.token_gates(name).shape == (24, 3)
    kept = everything.token_gates(name).reshape(3, 8, 3)[mask.bool()]
    np.testing.assert_allclose(probe.token_gates(name), kept, rtol=0, atol=0)
    with torch.no_grad(), RouterProbe(model) as probe:
        probe.token_mask = torch.ones(3, 8, dtype=torch.long)  # an explicit mask wins
        model(input_ids=ids, attention_mask=mask)
    assert probe.token_gates(name).shape == (24, 3)
