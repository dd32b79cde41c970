"""VeRA: frozen random projections shared by every layer (model-level state), trained vectors.

The shared pair is saved once (or rebuilt from its seed), exported to PEFT's own VeRA with the same
logits, counted once, read back by `ranklab inspect`, and stays one tensor pair through .to(),
.double(), deepcopy and training.
"""
import contextlib
import copy
import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

import ranklab
from ranklab.accounting import budget, target_shapes
from ranklab.attach import shared_state
from ranklab.cli import main
from ranklab.inspect.adapter_files import read_adapter
from ranklab.train import TrainConfig, train
from ranklab.train.synthetic import synthetic_task, tiny_roberta

from .conftest import build_tiny_roberta, randomize_adapters

TARGETS = ["query", "value", "intermediate.dense"]  # 32 -> 32 and 32 -> 64: the pair is sized to the largest


def vera_model(seed=0, **options):
    model = build_tiny_roberta(seed=0)
    ranklab.attach(model, ranklab.make_config("vera", target_modules=TARGETS, **{"r": 6, **options}))
    randomize_adapters(model, seed=seed)
    return model.eval()


def test_projections_live_once_on_the_model_and_every_layer_uses_them():
    model = vera_model()
    shared = shared_state(model)
    layers = ranklab.adapter_layers(model)
    assert len(layers) == 6 and all(layer.shared is shared for layer in layers.values())
    assert shared.vera_A.shape == (6, 32) and shared.vera_B.shape == (64, 6)  # max d_in, max d_out
    assert [n for n, _ in model.named_buffers() if "vera_" in n] == ["ranklab_shared.vera_A", "ranklab_shared.vera_B"]
    assert not any("vera_A" in n for n, _ in model.named_parameters())  # frozen: never trained
    ranklab.remove_adapters(model)
    assert shared_state(model) is None and not any("ranklab_shared" in k for k in model.state_dict())


def test_double_and_deepcopy_keep_the_tie():
    model = vera_model()
    batch = torch.randint(0, 50, (2, 7))
    expected = model(input_ids=batch).logits.double()
    model.double()
    shared = shared_state(model)
    assert shared.vera_A.dtype == torch.float64
    for layer in ranklab.adapter_layers(model).values():
        assert layer.shared is shared and layer.shared.vera_A.data_ptr() == shared.vera_A.data_ptr()
    torch.testing.assert_close(model(input_ids=batch).logits, expected, rtol=1e-5, atol=1e-6)
    twin = copy.deepcopy(model)
    twin_shared = shared_state(twin)
    assert twin_shared is not shared
    assert all(layer.shared is twin_shared for layer in ranklab.adapter_layers(twin).values())


@pytest.mark.parametrize("save_projection", [True, False])
def test_saved_once_or_rebuilt_from_the_seed(save_projection, tmp_path):
    model = vera_model(save_projection=save_projection, projection_seed=3)
    ranklab.save_adapters(model, tmp_path / "set")
    weights = load_file(str(tmp_path / "set" / "adapter_model.safetensors"))
    projections = sorted(k for k in weights if "vera_A" in k or "vera_B" in k)
    assert projections == (["ranklab_shared.vera_A", "ranklab_shared.vera_B"] if save_projection else [])
    meta = json.loads((tmp_path / "set" / "ranklab_config.json").read_text())
    assert meta["module_shapes"]["roberta.encoder.layer.0.intermediate.dense"] == [32, 64]  # [d_in, d_out]
    loaded = ranklab.load_adapters(build_tiny_roberta(seed=0), tmp_path / "set").eval()
    assert torch.equal(shared_state(loaded).vera_A, shared_state(model).vera_A)
    batch = torch.randint(0, 50, (2, 7))
    torch.testing.assert_close(loaded(input_ids=batch).logits, model(input_ids=batch).logits, rtol=0, atol=0)


def test_another_seed_gives_other_projections():
    assert not torch.equal(shared_state(vera_model(projection_seed=1)).vera_A,
                           shared_state(vera_model(projection_seed=2)).vera_A)


@pytest.mark.parametrize("save_projection", [True, False])
def test_export_to_peft_vera_gives_equal_logits(save_projection, tmp_path):
    model = vera_model(save_projection=save_projection)
    batch = torch.randint(0, 50, (3, 9))
    path = ranklab.export_peft(model, tmp_path / "peft")
    peft_config = json.loads((path / "adapter_config.json").read_text())
    assert peft_config["peft_type"] == "VERA" and peft_config["save_projection"] is save_projection
    # PEFT warns that it relies on its PRNG when the pair is not saved
    with pytest.warns(UserWarning) if not save_projection else contextlib.nullcontext():
        peft_model = PeftModel.from_pretrained(build_tiny_roberta(seed=0), str(path)).eval()
    torch.testing.assert_close(peft_model(input_ids=batch).logits, model(input_ids=batch).logits, rtol=0, atol=1e-6)
    peft_shared = peft_model.base_model.vera_A["default"]
    assert torch.equal(peft_shared, shared_state(model).vera_A)  # PEFT regenerates the same pair from the seed


def test_accounting_counts_the_shared_pair_once():
    # VeRA's paper, Table 2: RoBERTa-base, r = 1024 on query and value: 0.043M trainable parameters
    parts = budget("vera", target_shapes("roberta-base", ["query", "value"]), r=1024)
    assert parts["total"] == 24 * (1024 + 768) == 43_008
    assert parts["shared_frozen"] == 1024 * 768 * 2  # one A (1024 x 768) and one B (768 x 1024) for 24 modules
    model = vera_model()
    summary = ranklab.summarize(model)
    assert summary.adapter_params == 6 * 6 + 4 * 32 + 2 * 64  # d (r) per layer, b (d_out) per layer
    shapes = [(32, 32)] * 4 + [(32, 64)] * 2
    assert budget("vera", shapes, r=6) == {"d": 36, "b": 256, "total": 292, "shared_frozen": 6 * 32 + 64 * 6}
    assert summary.shared_frozen == 6 * 32 + 64 * 6 and "shared, frozen" in str(summary)


def test_inspect_reads_the_folder_with_its_recorded_shapes(tmp_path, capsys):
    model = vera_model()
    ranklab.save_adapters(model, tmp_path / "set")
    saved = read_adapter(tmp_path / "set")
    for name, layer in ranklab.adapter_layers(model).items():
        torch.testing.assert_close(saved.modules[name].layer.delta_weight(), layer.delta_weight(), rtol=0, atol=0)
    assert main(["inspect", str(tmp_path / "set")]) == 0
    assert "intermediate.dense" in capsys.readouterr().out
    meta_file = tmp_path / "set" / "ranklab_config.json"
    meta = json.loads(meta_file.read_text())
    del meta["module_shapes"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="records no module_shapes; save the adapters again"):
        read_adapter(tmp_path / "set")


def test_training_moves_the_vectors_and_leaves_the_projections(tmp_path):
    config = TrainConfig(method="vera", adapter={"r": 16, "target_modules": ["query", "value"]}, tasks=["synthetic"],
                         max_steps=20, lr=2e-2, batch_size=16, quiet=True, output=str(tmp_path / "run"))
    torch.manual_seed(0)
    untouched = build_tiny_roberta(seed=0)
    ranklab.attach(untouched, ranklab.make_config("vera", r=16, target_modules=["query", "value"]))
    result = train(config, tasks=[synthetic_task()], model_fn=tiny_roberta)
    assert result.record["status"] == "completed"
    trained = shared_state(result.model)
    assert torch.equal(trained.vera_A.cpu(), shared_state(untouched).vera_A)  # frozen, the seed's pair
    layer = next(iter(ranklab.adapter_layers(result.model).values()))
    assert layer.vera_lambda_b.abs().max() > 0  # b started at 0 and learnt
    assert read_adapter(tmp_path / "run").modules  # the run folder's adapter reads back


def test_bad_options_name_the_problem():
    with pytest.raises(ValueError, match="save_projection must be true or false"):
        ranklab.make_config("vera", save_projection="no")
    with pytest.raises(ValueError, match="r must be an int >= 1"):
        ranklab.make_config("vera", r=0)
    with pytest.raises(ValueError, match="unknown vera config keys"):
        ranklab.make_config("vera", rank=4)
