"""Decoder-only models: GPT-2's Conv1D and target_modules="all-linear" (PEFT's shorthand)."""
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
