"""Parameter budgets from shapes, checked by hand and against the real layers."""
import pytest
from torch import nn

from ranklab import available_methods, get_method
from ranklab.accounting import budget, module_params, paper_budgets, target_shapes


def test_hand_computed_counts():
    # LoRA r=8 on a 768 x 768 projection: 8 * 768 + 768 * 8
    assert module_params("lora", 768, 768, r=8) == {"A": 6144, "B": 6144}
    # RoBERTa-base query+value, 12 layers: 24 modules * 12,288
    assert budget("lora", target_shapes("roberta-base", ["query", "value"]), r=8)["total"] == 294_912
    # EMD a=4, b=12 on 1024 x 1024: 4*1024 + 12*4 + 1024*12
    assert sum(module_params("emd", 1024, 1024, a=4, b=12).values()) == 4096 + 48 + 12288
    # rank router r=16, 7 tasks, 768 x 768: A, B, E (7 x 768), gate Linear(768 -> 16) with bias
    assert module_params("rank_router", 768, 768, r=16, n_tasks=7) == {
        "A": 12288, "B": 12288, "task_embeddings": 5376, "router": 12304,
    }
    # MoR r=32, 8 experts, 768 -> 3072: A, B, lambdas 8 * (32 + 3072), token router 768 x 8
    assert module_params("mor", 768, 3072, r=32, n_experts=8) == {
        "A": 24576, "B": 98304, "lambdas": 24832, "router": 6144,
    }
    # MoE-LoRA, 8 experts of rank 4 on 768 -> 3072: 8 * 4 * (768 + 3072) + router 768 * 8
    assert module_params("moelora", 768, 3072, r=4, n_experts=8) == {"experts": 122880, "router": 6144}


def test_target_shapes():
    assert target_shapes("llama-7b", ["up_proj", "down_proj"]) == [(4096, 11008)] * 32 + [(11008, 4096)] * 32
    assert len(target_shapes("roberta-large", ["query", "value"])) == 48
    with pytest.raises(ValueError, match="unknown target 'qkv'; known: query"):
        target_shapes("roberta-base", ["qkv"])
    with pytest.raises(ValueError, match="unknown backbone 'gpt2'; known: roberta-base"):
        target_shapes("gpt2", ["query"])


def test_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="unknown method 'fourierft'"):
        module_params("fourierft", 8, 8)
    with pytest.raises(ValueError, match="unknown moelora config keys"):
        module_params("moelora", 8, 8, rank=2)
    with pytest.raises(ValueError, match="r=16 is larger than min"):
        module_params("lora", 8, 8, r=16)


# every registered method (the toy one too) and every example config it offers, on a 20 -> 12 module
CASES = [pytest.param(config, id=f"{config.method}-{i}") for method in available_methods()
         for i, config in enumerate(get_method(method)[0].examples())]


@pytest.mark.parametrize("config", CASES)
def test_counts_agree_with_real_layers(config):
    options = {k: v for k, v in config.to_dict().items() if k != "method"}
    layer = get_method(config.method)[1](nn.Linear(20, 12), config)
    assert sum(module_params(config.method, 20, 12, **options).values()) == layer.num_adapter_params()


def test_paper_budgets_split_lora_and_router_parts():
    rows = {(r["method"], r["options"].get("r")): r for r in paper_budgets(n_tasks=7)}
    lora16 = rows[("lora", 16)]["params"]
    router = rows[("rank_router", 16)]
    assert lora16 == 2 * rows[("lora", 8)]["params"] == 589_824
    assert router["lora_part"] == lora16  # the rank router's factors are a LoRA r=16
    assert router["other_part"] == 24 * (7 * 768 + 768 * 16 + 16)
    mor = rows[("mor", 32)]
    assert mor["lora_part"] == rows[("moelora", 4)]["lora_part"]  # rank 32 shared vs 8 experts of rank 4
    # lambdas 8 * (32 + d_out) and router d_in * 8: 64 up-type modules (4096 -> 11008), 32 down_proj
    lambdas = 64 * 8 * (32 + 11008) + 32 * 8 * (32 + 4096)
    assert mor["other_part"] == lambdas + 64 * 4096 * 8 + 32 * 11008 * 8
