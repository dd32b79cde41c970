"""Loading saved PEFT LoRA / AdaLoRA adapters for inspection: same ΔW as before saving."""
import json
import warnings

import pytest
import torch
from peft import AdaLoraConfig, LoraConfig, get_peft_model

from ranklab.inspect import adapted_modules, model_report, module_factors
from ranklab.inspect.peft_io import load_peft_for_inspection, read_adapter_config

from .conftest import build_tiny_roberta


def deltas(model):
    """ΔW of every adapted module by name (names of a loaded model equal the original's)."""
    out = {}
    for name, module in adapted_modules(model).items():
        first, second = module_factors(module)
        out[name] = (first @ second).detach()
    return out


def randomize_lora(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)


@pytest.fixture
def saved_lora(tmp_path):
    """A LoRA adapter whose base model was itself saved locally, as a hub base would be cached."""
    build_tiny_roberta(num_labels=2).save_pretrained(tmp_path / "base")
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(tmp_path / "base")
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS"))
    randomize_lora(model)
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path, deltas(model)


def test_lora_loads_from_its_config_and_from_a_given_base(saved_lora):
    folder, expected = saved_lora
    assert read_adapter_config(folder / "adapter")["base_model_name_or_path"] == str(folder / "base")
    from_config = load_peft_for_inspection(folder / "adapter")
    from_base = load_peft_for_inspection(folder / "adapter", build_tiny_roberta(num_labels=2))
    for model in (from_config, from_base):
        got = deltas(model)
        assert sorted(got) == sorted(expected) and len(got) == 4
        for name in expected:
            torch.testing.assert_close(got[name], expected[name])
        assert not model.training
    report = model_report(from_config)
    assert list(report["method"].unique()) == ["peft_lora"] and list(report["max_rank"].unique()) == [4]


def test_adalora_keeps_its_pruned_ranks_and_its_updates(tmp_path):
    torch.manual_seed(0)
    config = AdaLoraConfig(init_r=6, target_r=2, lora_alpha=8, target_modules=["query", "value"], tinit=1,
                           tfinal=1, deltaT=1, total_step=5)
    model = get_peft_model(build_tiny_roberta(num_labels=2), config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for step in range(5):  # PEFT's recipe: backward, step, update_and_allocate, zero_grad
        ids = torch.randint(3, 100, (8, 10), generator=generator)
        model(input_ids=ids, labels=torch.randint(0, 2, (8,), generator=generator)).loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    kept = {k.split(".lora_E")[0]: sum(v) for k, v in model.peft_config["default"].rank_pattern.items()}
    assert sum(kept.values()) <= 2 * 4 < 6 * 4  # the budget shrank to target_r per module on average
    expected = deltas(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns about rank-0 modules when saving
        model.save_pretrained(tmp_path / "adapter")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_peft_for_inspection(tmp_path / "adapter", build_tiny_roberta(num_labels=2))
    assert not [w for w in caught if "rank_pattern keys" in str(w.message)]
    report = model_report(loaded).set_index("name")
    for name, module in adapted_modules(loaded).items():
        assert module.lora_E["default"].shape[0] == kept[name.removeprefix("base_model.model.")]
        torch.testing.assert_close(deltas(loaded)[name], expected[name])
        assert report.loc[name, "numerical_rank"] <= report.loc[name, "max_rank"]
    assert sorted(report["max_rank"]) == sorted(kept.values())


def test_bad_inputs_name_the_fix(tmp_path, saved_lora):
    with pytest.raises(ValueError, match="adapter_config.json"):
        load_peft_for_inspection(tmp_path / "missing")
    folder, _ = saved_lora
    config_file = folder / "adapter" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "base_model_name_or_path": None}))
    with pytest.raises(ValueError, match="pass base_model"):
        load_peft_for_inspection(folder / "adapter")
    with pytest.raises(ValueError, match="no adapted modules"):
        load_peft_for_inspection(build_tiny_roberta())
    model = load_peft_for_inspection(folder / "adapter", build_tiny_roberta(num_labels=2))
    assert load_peft_for_inspection(model) is model
    with pytest.raises(ValueError, match="base_model is only used"):
        load_peft_for_inspection(model, build_tiny_roberta())


def _point_at_the_hub(adapter):
    """Make a saved adapter name a hub base, as adapters downloaded from the hub do."""
    config_file = adapter / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = "FacebookAI/roberta-base"
    config_file.write_text(json.dumps(config))


def test_a_hub_base_that_cannot_be_fetched_is_a_clear_error_and_a_local_copy_works(saved_lora, monkeypatch):
    folder, expected = saved_lora
    _point_at_the_hub(folder / "adapter")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as error:
        load_peft_for_inspection(folder / "adapter")
    message = str(error.value)
    assert "'FacebookAI/roberta-base'" in message and "needs the Hugging Face hub" in message
    assert "base_model=" in message and "OSError" in message  # what went wrong and how to pass a local base
    local = load_peft_for_inspection(folder / "adapter", base_model=folder / "base")  # the local copy
    got = deltas(local)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name])
    with pytest.raises(ValueError, match="base model folder .* does not exist"):
        load_peft_for_inspection(folder / "adapter", base_model=folder / "nowhere")
