"""Save/load adapter sets, PEFT equivalence of lora, and export to PEFT's LoRA format."""
import json

import pytest
import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model

import ranklab
from ranklab import make_config
from ranklab.saving import CONFIG_NAME, WEIGHTS_NAME

from .conftest import randomize_adapters

EXPORTABLE = {"lora": dict(r=4), "emd": dict(a=2, b=6), "emd_wide": dict(a=6, b=2), "dylora": dict(r_min=1, r_max=4)}


def adapted(tiny_roberta, method, seed=0, **overrides):
    model = tiny_roberta(seed=seed)
    options = {**EXPORTABLE.get(method, {}), **overrides}
    ranklab.attach(model, make_config(method.replace("_wide", ""), modules_to_save=["classifier"], **options))
    randomize_adapters(model, seed=seed + 1)
    with torch.no_grad():  # a trained head differs from the base model's
        model.classifier.out_proj.bias.add_(0.5)
    return model


@pytest.mark.parametrize("method", ["lora", "emd", "dylora"])
def test_save_load_round_trip(method, tiny_roberta, token_batch, tmp_path):
    model = adapted(tiny_roberta, method)
    expected = model(**token_batch).logits
    path = ranklab.save_adapters(model, tmp_path / "set")
    meta = json.loads((path / CONFIG_NAME).read_text())
    assert meta["ranklab_version"] == ranklab.__version__ and meta["config"]["method"] == method
    assert sorted(p.name for p in path.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    fresh = tiny_roberta(seed=0)
    ranklab.load_adapters(fresh, path)
    torch.testing.assert_close(fresh(**token_batch).logits, expected, rtol=0, atol=0)


def test_save_replaces_atomically(tiny_roberta, tmp_path):
    model = adapted(tiny_roberta, "lora")
    ranklab.save_adapters(model, tmp_path / "set")
    ranklab.save_adapters(model, tmp_path / "set")
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no temp or old folders left


def test_load_into_different_shapes_fails_clearly(tiny_roberta, tmp_path):
    path = ranklab.save_adapters(adapted(tiny_roberta, "lora"), tmp_path / "set")
    smaller = tiny_roberta(hidden=16)
    with pytest.raises(ValueError, match=r"do not fit this model: .*saved \(32, 32\) vs model \(16, 16\)"):
        ranklab.load_adapters(smaller, path)
    assert not ranklab.adapter_layers(smaller)  # the failed load left the model as it was


def test_load_unknown_method_fails_clearly(tiny_roberta, tmp_path):
    path = ranklab.save_adapters(adapted(tiny_roberta, "lora"), tmp_path / "set")
    meta = json.loads((path / CONFIG_NAME).read_text())
    meta["config"]["method"] = "fourierft"
    (path / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown method 'fourierft'; registered methods: .*emd"):
        ranklab.load_adapters(tiny_roberta(), path)


def test_load_from_non_adapter_folder(tiny_roberta, tmp_path):
    with pytest.raises(ValueError, match="not a ranklab adapter folder"):
        ranklab.load_adapters(tiny_roberta(), tmp_path)


def test_lora_matches_peft_given_same_weights(tiny_roberta, token_batch):
    ours = adapted(tiny_roberta, "lora", alpha=8.0)
    reference = get_peft_model(tiny_roberta(seed=0), PeftLoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    peft_layers = {n.replace("base_model.model.", ""): m for n, m in reference.named_modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}
    layers = ranklab.adapter_layers(ours)
    assert sorted(peft_layers) == sorted(layers)
    with torch.no_grad():
        for name, layer in layers.items():
            peft_layers[name].lora_A["default"].weight.copy_(layer.lora_A)
            peft_layers[name].lora_B["default"].weight.copy_(layer.lora_B)
        ours.classifier.load_state_dict(reference.base_model.model.classifier.state_dict())
    reference.eval()
    torch.testing.assert_close(ours(**token_batch).logits, reference(**token_batch).logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method,selector", [("lora", {}), ("emd", {}), ("emd_wide", {}), ("dylora", {"rank": 3}), ("dylora", {})])
def test_export_to_peft_gives_same_logits(method, selector, tiny_roberta, token_batch, tmp_path):
    model = adapted(tiny_roberta, method)
    if selector:
        ranklab.set_rank(model, selector["rank"])
    expected = model(**token_batch).logits
    path = ranklab.export_peft(model, tmp_path / "peft", **selector)
    peft_model = PeftModel.from_pretrained(tiny_roberta(seed=0), str(path)).eval()
    torch.testing.assert_close(peft_model(**token_batch).logits, expected, rtol=1e-5, atol=1e-5)
    ranks = {m.lora_A["default"].weight.shape[0] for m in peft_model.modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}
    expected_rank = {"lora": 4, "emd": 2, "emd_wide": 2, "dylora": selector.get("rank", 4)}[method]
    assert ranks == {expected_rank}


def test_export_without_adapters_is_a_clear_error(tiny_roberta, tmp_path):
    with pytest.raises(ValueError, match="has no ranklab adapters to export"):
        ranklab.export_peft(tiny_roberta(), tmp_path / "peft")
