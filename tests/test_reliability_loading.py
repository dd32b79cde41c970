"""Loading never corrupts a model: damaged files, wrong keys and wrong shapes leave it bit-identical."""
import pytest
import torch
from safetensors.torch import load_file, save_file

import ranklab
from ranklab.saving import WEIGHTS_NAME, AdapterLoadError

from .conftest import randomize_adapters


def snapshot(model):
    return ({n: p.detach().clone() for n, p in model.state_dict().items()},
            {n: p.requires_grad for n, p in model.named_parameters()},
            {k: v for k, v in model.__dict__.items() if k.startswith("ranklab")},
            [type(m).__name__ for m in model.modules()])


def assert_unchanged(model, before):
    state, flags, attributes, kinds = snapshot(model)
    assert kinds == before[3] and attributes == before[2] and flags == before[1]
    assert state.keys() == before[0].keys()
    assert all(torch.equal(state[k], before[0][k]) for k in state)


@pytest.fixture
def saved(tiny_roberta, tmp_path):
    model = tiny_roberta(seed=0)
    ranklab.attach(model, ranklab.make_config("lora", r=4, modules_to_save=["classifier"]))
    randomize_adapters(model, seed=1)
    return ranklab.save_adapters(model, tmp_path / "set")


def fresh(tiny_roberta):
    model = tiny_roberta(seed=0)
    for p in model.roberta.embeddings.parameters():  # flags a user set: a failed load must keep them
        p.requires_grad_(False)
    return model


@pytest.mark.parametrize("damage", ["truncate", "empty", "random", "missing"])
def test_damaged_weights_file_leaves_the_model_untouched(damage, saved, tiny_roberta):
    weights = saved / WEIGHTS_NAME
    data = weights.read_bytes()
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes({"truncate": data[: len(data) // 2], "empty": b"",
                             "random": bytes(torch.randint(0, 256, (len(data),)).tolist())}[damage])
    model = fresh(tiny_roberta)
    before = snapshot(model)
    with pytest.raises(AdapterLoadError, match="save the adapters again"):
        ranklab.load_adapters(model, saved)
    assert_unchanged(model, before)


def test_shape_mismatch_restores_requires_grad_flags(saved, tiny_roberta):
    model = tiny_roberta(hidden=16)
    model.classifier.requires_grad_(False)
    before = snapshot(model)
    with pytest.raises(ValueError, match="do not fit this model"):
        ranklab.load_adapters(model, saved)
    assert_unchanged(model, before)  # attach froze everything; the flags are back as they were


def drop_a_lora_a(state, tiny_roberta):
    key = next(k for k in state if k.endswith("lora_A"))
    del state[key]
    return f"missing .*{key}"


def add_a_base_weight(state, tiny_roberta):
    key = "roberta.embeddings.word_embeddings.weight"  # would overwrite the frozen base
    state[key] = torch.zeros_like(tiny_roberta(seed=0).state_dict()[key])
    return f"unexpected .*{key}"


@pytest.mark.parametrize("change", [drop_a_lora_a, add_a_base_weight])
def test_missing_and_unexpected_keys_are_named(change, saved, tiny_roberta):
    state = load_file(str(saved / WEIGHTS_NAME))
    message = change(state, tiny_roberta)
    save_file(state, str(saved / WEIGHTS_NAME))
    model = fresh(tiny_roberta)
    before = snapshot(model)
    with pytest.raises(AdapterLoadError, match=message):
        ranklab.load_adapters(model, saved)
    assert_unchanged(model, before)


def test_damaged_config_file_is_a_clear_error(saved, tiny_roberta):
    (saved / "ranklab_config.json").write_text("{not json")
    model = fresh(tiny_roberta)
    before = snapshot(model)
    with pytest.raises(AdapterLoadError, match="ranklab_config.json is damaged"):
        ranklab.load_adapters(model, saved)
    assert_unchanged(model, before)


def test_successful_load_still_works(saved, tiny_roberta, token_batch):
    model = ranklab.load_adapters(tiny_roberta(seed=0), saved)
    assert len(ranklab.adapter_layers(model)) == 4
