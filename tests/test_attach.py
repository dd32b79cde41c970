"""attach/merge/unload/remove on tiny transformers models, and attach's error messages."""
import pytest
import torch

import ranklab
from ranklab import make_config

from .conftest import randomize_adapters

OPTIONS = {"lora": dict(r=4), "emd": dict(a=2, b=6), "dylora": dict(r_min=1, r_max=4)}


def test_summary_counts_adapter_and_head_params(tiny_roberta):
    model = tiny_roberta(hidden=32, layers=2, num_labels=3)
    summary = ranklab.attach(model, make_config("emd", a=2, b=6, modules_to_save=["classifier"]))
    assert len(summary.modules) == 4  # query and value in 2 layers
    assert all(name.endswith(("query", "value")) for name in summary.modules)
    assert summary.adapter_params == 4 * (32 * 2 + 2 * 6 + 6 * 32)
    head = model.classifier
    assert summary.head_params == sum(p.numel() for p in head.parameters()) == (32 * 32 + 32) + (32 * 3 + 3)
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == summary.trainable_params
    assert "4 modules wrapped" in str(summary)


@pytest.mark.parametrize("method", OPTIONS)
def test_only_adapter_and_head_get_gradients(method, tiny_roberta, token_batch):
    model = tiny_roberta()
    ranklab.attach(model, make_config(method, modules_to_save=["classifier"], **OPTIONS[method]))
    randomize_adapters(model)
    model.train()
    model(**token_batch, labels=torch.tensor([0, 1, 2, 0])).loss.backward()
    for name, p in model.named_parameters():
        adapter_or_head = name.startswith("classifier.") or (".query." in name or ".value." in name) and ".base." not in name
        if adapter_or_head:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name


@pytest.mark.parametrize("method", OPTIONS)
def test_merge_and_unload_gives_plain_model_with_same_logits(method, tiny_roberta, token_batch):
    model = tiny_roberta()
    ranklab.attach(model, make_config(method, **OPTIONS[method]))
    randomize_adapters(model)
    adapted = model(**token_batch).logits
    plain = ranklab.merge_and_unload(model)
    assert not ranklab.adapter_layers(plain)
    assert type(plain.roberta.encoder.layer[0].attention.self.query) is torch.nn.Linear
    torch.testing.assert_close(plain(**token_batch).logits, adapted, rtol=1e-5, atol=1e-6)
    ranklab.attach(plain, make_config(method, **OPTIONS[method]))  # attachable again


def test_merge_unmerge_model_round_trip(tiny_roberta, token_batch):
    model = tiny_roberta()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    ranklab.attach(model, make_config("emd", a=3, b=5))
    randomize_adapters(model)
    adapted = model(**token_batch).logits
    ranklab.merge_adapters(model)
    torch.testing.assert_close(model(**token_batch).logits, adapted, rtol=1e-5, atol=1e-6)
    ranklab.unmerge_adapters(model)
    ranklab.remove_adapters(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=1e-6)


def test_remove_adapters_restores_original_logits(tiny_roberta, token_batch):
    model = tiny_roberta()
    before = model(**token_batch).logits
    ranklab.attach(model, make_config("lora", r=4))
    randomize_adapters(model)
    assert not torch.allclose(model(**token_batch).logits, before)
    ranklab.remove_adapters(model)
    assert torch.equal(model(**token_batch).logits, before)


def test_regex_targets(tiny_roberta):
    model = tiny_roberta()
    summary = ranklab.attach(model, make_config("lora", r=2, target_modules=r".*layer\.1\.attention\.self\.(key|value)"))
    assert sorted(summary.modules) == [
        "roberta.encoder.layer.1.attention.self.key", "roberta.encoder.layer.1.attention.self.value"]


def test_dylora_model_samples_one_rank_per_step(tiny_roberta, token_batch):
    model = tiny_roberta()
    ranklab.attach(model, make_config("dylora", r_min=1, r_max=4))
    model.train()
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        model(**token_batch)
        ranks = {layer.last_rank for layer in ranklab.adapter_layers(model).values()}
        assert len(ranks) == 1  # every module uses the same sampled rank in a step
        seen |= ranks
    assert seen == {1, 2, 3, 4}
    model.eval()
    ranklab.set_rank(model, 2)
    model(**token_batch)
    assert {layer.last_rank for layer in ranklab.adapter_layers(model).values()} == {2}


def test_error_no_module_matched_lists_linear_names(tiny_roberta):
    with pytest.raises(ValueError, match=r"matched no nn.Linear or Conv1D module .*candidate Linear module names "
                                         r"end in: .*query.*value.*all-linear"):
        ranklab.attach(tiny_roberta(), make_config("lora", r=2, target_modules=["q_proj", "v_proj"]))


def test_error_attach_twice(tiny_roberta):
    model = tiny_roberta()
    ranklab.attach(model, make_config("lora", r=2))
    with pytest.raises(ValueError, match="already has ranklab adapters"):
        ranklab.attach(model, make_config("emd", a=2, b=2))


def test_error_rank_too_large_for_model(tiny_roberta):
    with pytest.raises(ValueError, match=r"a=40 is larger than min\(d_in, d_out\)=32"):
        ranklab.attach(tiny_roberta(hidden=32), make_config("emd", a=40, b=4))


def test_error_unknown_head(tiny_roberta):
    with pytest.raises(ValueError, match="modules_to_save entry 'score' matches no module"):
        ranklab.attach(tiny_roberta(), make_config("lora", r=2, modules_to_save=["score"]))


def test_error_set_rank_without_dylora(tiny_roberta):
    model = tiny_roberta()
    ranklab.attach(model, make_config("lora", r=2))
    with pytest.raises(ValueError, match="dylora"):
        ranklab.set_rank(model, 1)
