"""Property-based checks over random shapes, ranks and methods (hypothesis), and a fuzz test of
load_adapters with mutated files: after every failure the model is bit-identical."""
import contextlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn

import ranklab
from ranklab.adapters.base import MERGEABLE_PER_TASK, RANK_SLICEABLE
from ranklab.inspect import module_spectrum
from ranklab.saving import WEIGHTS_NAME, AdapterLoadError

from .conftest import randomize_adapters, randomize_layer
from .test_reliability_loading import assert_unchanged, snapshot

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def layer_case(draw):
    """A method, a module shape and ranks that fit it."""
    d_in, d_out = draw(st.integers(2, 24)), draw(st.integers(2, 24))
    limit = min(d_in, d_out)
    rank = st.integers(1, limit)
    method = draw(st.sampled_from(["lora", "emd", "dylora", "rank_router", "mor", "mor_task"]))
    options = {
        "lora": lambda: dict(r=draw(rank)),
        "emd": lambda: dict(a=draw(rank), b=draw(rank)),
        "dylora": lambda: dict(r_max=draw(rank)),
        "rank_router": lambda: dict(r=draw(rank), n_tasks=draw(st.integers(1, 3)),
                                    selection=draw(st.sampled_from(["prefix", "soft"]))),
        "mor": lambda: dict(r=draw(rank), n_experts=draw(st.integers(1, 4))),
        "mor_task": lambda: dict(r=draw(rank), n_experts=draw(st.integers(1, 4)), router="task",
                                 n_tasks=draw(st.integers(1, 3))),
    }[method]()
    return method.replace("_task", ""), d_in, d_out, options, draw(st.integers(0, 2**16))


def build(method, d_in, d_out, options, seed):
    torch.manual_seed(seed)
    config = ranklab.make_config(method, target_modules=["x"], **options)
    layer = ranklab.get_method(method)[1](nn.Linear(d_in, d_out).double(), config).double().eval()
    randomize_layer(layer, seed=seed, std=0.5)
    return layer


def selector_of(layer, seed):
    if MERGEABLE_PER_TASK in layer.capabilities:
        return {"task": seed % layer.n_tasks}
    if RANK_SLICEABLE in layer.capabilities:
        return {"rank": layer.ranks[seed % len(layer.ranks)]}
    return {}


@contextlib.contextmanager
def under(layer, selector):
    if "rank" in selector:
        layer.set_rank(selector["rank"])
    with ranklab.use_task(selector["task"]) if "task" in selector else contextlib.nullcontext():
        yield


@PROPERTY
@given(layer_case())
def test_delta_weight_merge_and_spectra(case):
    method, d_in, d_out, options, seed = case
    layer = build(*case)
    x = torch.randn(5, d_in, dtype=torch.double, generator=torch.Generator().manual_seed(seed))
    if not layer.mergeable:  # the token router: per expert, the spectrum is still exact
        for expert in range(layer.n_experts):
            dense = torch.linalg.svdvals(layer.delta_weight(expert=expert).detach())
            ours = module_spectrum(layer, expert=expert).detach()
            torch.testing.assert_close(ours, dense[: len(ours)], rtol=1e-6, atol=1e-9 * float(dense[0]) + 1e-12)
        return
    selector = selector_of(layer, seed)
    with under(layer, selector), torch.no_grad():
        change = layer(x) - layer.base(x)
        delta = layer.delta_weight(**selector)
        torch.testing.assert_close(change, x @ delta.T, rtol=1e-8, atol=1e-8)
        weight = layer.base.weight.clone()
        before = layer(x)
        layer.merge(**selector)
        torch.testing.assert_close(layer(x), before, rtol=1e-8, atol=1e-8)
        layer.unmerge()
        torch.testing.assert_close(layer.base.weight, weight, rtol=0, atol=1e-10)
        dense = torch.linalg.svdvals(delta)
        ours = module_spectrum(layer, **selector)
        torch.testing.assert_close(ours, dense[: len(ours)], rtol=1e-6, atol=1e-9 * float(dense[0]) + 1e-12)
        assert torch.all(dense[len(ours):] <= 1e-8 * float(dense[0]) + 1e-12)


@st.composite
def model_case(draw):
    method = draw(st.sampled_from(["lora", "emd", "dylora", "rank_router", "mor"]))
    options = {"lora": dict(r=draw(st.integers(1, 8))), "emd": dict(a=draw(st.integers(1, 8)), b=draw(st.integers(1, 8))),
               "dylora": dict(r_max=draw(st.integers(1, 8))), "rank_router": dict(r=draw(st.integers(1, 8)), n_tasks=2),
               "mor": dict(r=draw(st.integers(1, 8)), n_experts=draw(st.integers(1, 3)))}[method]
    targets = draw(st.sampled_from([["query", "value"], ["key"], ["dense"]]))
    return method, options, targets, draw(st.integers(0, 1000))


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=model_case())
def test_save_load_and_export_give_the_same_logits(case, tiny_roberta, token_batch, tmp_path_factory):
    method, options, targets, seed = case
    model = tiny_roberta(seed=0)
    ranklab.attach(model, ranklab.make_config(method, target_modules=targets, **options))
    randomize_adapters(model, seed=seed)
    model.eval()
    folder = tmp_path_factory.mktemp("set")
    task = ranklab.use_task(seed % 2) if method == "rank_router" else contextlib.nullcontext()
    with torch.no_grad(), task:
        expected = model(**token_batch).logits
        loaded = ranklab.load_adapters(tiny_roberta(seed=0), ranklab.save_adapters(model, folder / "set")).eval()
        torch.testing.assert_close(loaded(**token_batch).logits, expected, rtol=0, atol=0)
    if method == "mor":
        return  # input-dependent: no static export
    selector = {"task": seed % 2} if method == "rank_router" else {}
    path = ranklab.export_peft(model, folder / "peft", **selector)
    peft_model = PeftModel.from_pretrained(tiny_roberta(seed=0), str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(peft_model(**token_batch).logits, expected, rtol=1e-5, atol=1e-5)


MUTATIONS = ["truncate", "flip", "drop_key", "add_key", "int_dtype", "wrong_shape"]


@pytest.fixture(scope="module")
def saved_set(tmp_path_factory):
    from .conftest import build_tiny_roberta

    model = build_tiny_roberta(seed=0)
    ranklab.attach(model, ranklab.make_config("emd", a=2, b=3, modules_to_save=["classifier"]))
    randomize_adapters(model, seed=3)
    return ranklab.save_adapters(model, tmp_path_factory.mktemp("fuzz") / "set")


def mutate(path, mutation, rng):
    weights = path / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    if mutation == "truncate":
        weights.write_bytes(bytes(data[: int(rng.integers(0, len(data)))]))
        return
    if mutation == "flip":
        for i in rng.integers(0, min(len(data), 200), size=4):  # the header: where a flip breaks parsing
            data[int(i)] ^= 0xFF
        weights.write_bytes(bytes(data))
        return
    state = load_file(str(weights))
    key = sorted(state)[int(rng.integers(len(state)))]
    if mutation == "drop_key":
        del state[key]
    elif mutation == "add_key":
        state["roberta.encoder.layer.0.output.dense.weight"] = torch.zeros(32, 64)
    elif mutation == "int_dtype":
        state[key] = state[key].to(torch.int32)
    else:
        state[key] = torch.zeros(*[s + 1 for s in state[key].shape])
    save_file(state, str(weights))


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("draw", range(3))
def test_fuzzed_files_never_change_the_model(mutation, draw, saved_set, tiny_roberta, tmp_path):
    import shutil

    import numpy as np

    copy = shutil.copytree(saved_set, tmp_path / "set")
    mutate(copy, mutation, np.random.default_rng(100 * draw + MUTATIONS.index(mutation)))
    model = tiny_roberta(seed=0)
    before = snapshot(model)
    try:
        ranklab.load_adapters(model, copy)
    except AdapterLoadError:
        assert_unchanged(model, before)
    else:  # a flip that only touched tensor values loads: that is a valid file
        assert mutation == "flip" and ranklab.adapter_layers(model)
