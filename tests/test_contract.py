"""The adapter contract, checked for every registered method and every example config it offers.

Each promise is checked on an nn.Linear and on GPT-2's Conv1D (which stores W0 transposed, d_in x
d_out; a non-square one, so a wrong orientation cannot pass), and on a tiny RoBERTa and a tiny
GPT-2 causal LM (every Conv1D through target_modules="all-linear").

A new method registers itself and declares its capabilities; these tests then cover it with no
edit here (tests/toy_method.py proves it).  What each capability promises is written beside its
name in ranklab/adapters/base.py.
"""
import contextlib

import pytest
import torch
from peft import PeftModel
from torch import nn

import ranklab
from ranklab.accounting import module_params
from ranklab.adapters.base import EXPERT_ROUTED, MERGEABLE, MERGEABLE_PER_TASK, RANK_SLICEABLE, TASK_ROUTED
from ranklab.inspect import RouterProbe, module_spectrum

from .conftest import build_tiny_gpt2, build_tiny_roberta, randomize_adapters, randomize_layer

CASES = [
    pytest.param(method, index, id=f"{method}-{index}")
    for method in ranklab.available_methods()
    for index in range(len(ranklab.get_method(method)[0].examples()))
]
KINDS = ["linear", "conv1d"]
# model name -> (builder, target_modules override)
MODELS = {"roberta": (build_tiny_roberta, None), "gpt2": (build_tiny_gpt2, "all-linear")}


def example(method: str, index: int, **overrides) -> ranklab.AdapterConfig:
    config = ranklab.get_method(method)[0].examples()[index]
    return type(config).from_dict({**config.to_dict(), **overrides})


def static_selectors(layer) -> list[dict]:
    """The selectors under which a layer's update is one fixed matrix (empty: input-dependent)."""
    caps = layer.capabilities
    if MERGEABLE_PER_TASK in caps:
        return [{"task": t} for t in range(layer.n_tasks)]
    if RANK_SLICEABLE in caps:
        return [{"rank": b} for b in layer.ranks]
    return [{}] if MERGEABLE in caps else []


@contextlib.contextmanager
def selected(model: nn.Module, selector: dict):
    """Run forward passes under a selector: the task in use_task, the rank through set_rank."""
    if "rank" in selector:
        ranklab.set_rank(model, selector["rank"])
    with ranklab.use_task(selector.get("task", 0)) if "task" in selector else contextlib.nullcontext():
        yield


def forward_context(layer_or_model) -> contextlib.AbstractContextManager:
    layers = ranklab.adapter_layers(layer_or_model) or {"": layer_or_model}
    routed = any(TASK_ROUTED in la.capabilities for la in layers.values())
    return ranklab.use_task(0) if routed else contextlib.nullcontext()


def base_module(kind: str) -> nn.Module:
    """A 32-in base map: nn.Linear 32 -> 32, or a Conv1D 32 -> 24 (weight stored 32 x 24)."""
    if kind == "conv1d":
        from transformers.pytorch_utils import Conv1D

        conv = Conv1D(24, 32)
        nn.init.normal_(conv.weight, std=0.2)
        nn.init.normal_(conv.bias, std=0.2)
        return conv
    return nn.Linear(32, 32)


def single_layer(method: str, index: int, seed: int = 0, kind: str = "linear"):
    torch.manual_seed(seed)
    config = example(method, index, target_modules=["x"])
    layer = ranklab.get_method(method)[1](base_module(kind).double(), config).double().eval()
    randomize_layer(layer, seed=seed, std=0.3)
    return layer


def adapted_model(build, method: str, index: int, randomize: bool = True, target_modules=None):
    model = build(seed=0)
    overrides = {"target_modules": target_modules} if target_modules else {}
    ranklab.attach(model, example(method, index, **overrides))
    if randomize:
        randomize_adapters(model, seed=1)
    return model.eval()


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method,index", CASES)
def test_zero_init_leaves_logits_unchanged(method, index, model_name, token_batch):
    build, targets = MODELS[model_name]
    expected = build(seed=0)(**token_batch).logits
    model = adapted_model(build, method, index, randomize=False, target_modules=targets)
    with forward_context(model):
        torch.testing.assert_close(model(**token_batch).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method,index", CASES)
def test_delta_weight_equals_output_change(method, index, kind):
    layer = single_layer(method, index, kind=kind)
    assert layer.delta_weight(**(static_selectors(layer) or [{"expert": 0}])[0]).shape == (layer.d_out, 32)
    x = torch.randn(3, 5, 32, dtype=torch.double)
    for selector in static_selectors(layer):
        with selected(layer, selector) if "task" in selector else contextlib.nullcontext():
            if "rank" in selector:
                layer.set_rank(selector["rank"])
            change = layer(x) - layer.base(x)
        torch.testing.assert_close(change, x @ layer.delta_weight(**selector).T, rtol=1e-9, atol=1e-9)
    if EXPERT_ROUTED in layer.capabilities:  # per token: the update of that token's gate vector
        with RouterProbe(layer) as probe:
            change = layer(x) - layer.base(x)
        gates = torch.from_numpy(probe.token_gates(next(iter(probe.layers)))).double()
        flat_x, flat_change = x.reshape(-1, 32), change.reshape(-1, layer.d_out)
        for n in range(flat_x.shape[0]):
            delta = layer.delta_weight(gates=gates[n])
            torch.testing.assert_close(flat_change[n], delta @ flat_x[n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method,index", CASES)
def test_merge_unmerge_round_trip(method, index, kind):
    layer = single_layer(method, index, kind=kind)
    x = torch.randn(6, 32, dtype=torch.double)
    weight = layer.base.weight.clone()
    selectors = static_selectors(layer)
    for selector in selectors:
        with selected(layer, selector) if "task" in selector else contextlib.nullcontext():
            if "rank" in selector:
                layer.set_rank(selector["rank"])
            before = layer(x)
            layer.merge(**selector)
            torch.testing.assert_close(layer.base(x), before, rtol=1e-10, atol=1e-10)
        layer.unmerge()
        torch.testing.assert_close(layer.base.weight, weight, rtol=0, atol=1e-12)
    if not selectors:  # input-dependent updates refuse to merge, with a clear message
        with pytest.raises(ValueError, match="cannot merge"):
            layer.merge()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method,index", CASES)
def test_factored_spectra_equal_svdvals(method, index, kind):
    layer = single_layer(method, index, kind=kind)
    selectors = static_selectors(layer)
    if EXPERT_ROUTED in layer.capabilities:
        selectors += [{"expert": i} for i in range(layer.n_experts)]
    assert selectors, f"{method} offers no selector with a fixed update"
    for selector in selectors:
        with torch.no_grad():
            dense = torch.linalg.svdvals(layer.delta_weight(**selector))
            ours = module_spectrum(layer, **selector)
        k = min(len(dense), len(ours))
        torch.testing.assert_close(ours[:k], dense[:k], rtol=1e-5, atol=1e-8 * float(dense[0]))
        assert torch.all(dense[k:] <= 1e-8 * float(dense[0]))


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method,index", CASES)
def test_save_load_round_trip(method, index, model_name, token_batch, tmp_path):
    build, targets = MODELS[model_name]
    model = adapted_model(build, method, index, target_modules=targets)
    with forward_context(model):
        expected = model(**token_batch).logits
    ranklab.save_adapters(model, tmp_path / "set")
    loaded = ranklab.load_adapters(build(seed=0), tmp_path / "set").eval()
    assert ranklab.summarize(loaded).adapter_params == ranklab.summarize(model).adapter_params
    with forward_context(loaded):
        torch.testing.assert_close(loaded(**token_batch).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method,index", CASES)
def test_peft_export_gives_same_logits(method, index, model_name, token_batch, tmp_path):
    build, targets = MODELS[model_name]
    model = adapted_model(build, method, index, target_modules=targets)
    layer = next(iter(ranklab.adapter_layers(model).values()))
    selectors = static_selectors(layer)
    if not selectors:
        with pytest.raises(ValueError, match="no static LoRA export"):
            ranklab.export_peft(model, tmp_path / "peft")
        return
    for i, selector in enumerate(selectors[:3]):
        with selected(model, selector):
            expected = model(**token_batch).logits
        path = ranklab.export_peft(model, tmp_path / f"peft{i}", **selector)
        peft_model = PeftModel.from_pretrained(build(seed=0), str(path)).eval()
        torch.testing.assert_close(peft_model(**token_batch).logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method,index", CASES)
def test_accounting_is_derived_from_the_layer(method, index):
    config = example(method, index)
    options = {k: v for k, v in config.to_dict().items() if k != "method"}
    parts = module_params(method, 32, 24, **options)
    layer = ranklab.get_method(method)[1](nn.Linear(32, 24), config)
    assert sum(parts.values()) == layer.num_adapter_params() > 0
    assert parts == layer.param_counts()
