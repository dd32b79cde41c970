"""Compression: truncate each module to its energy rank, export a PEFT LoRA with a rank_pattern,
report the accuracy change.  The exported folder loads in PEFT with the truncated model's logits."""
import contextlib
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from peft import AdaLoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

import ranklab
from ranklab.cli import main
from ranklab.compression import compress_adapter, evaluate, truncate
from ranklab.inspect import energy_rank, module_spectrum

from .conftest import randomize_adapters

CONFIG = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=32, pad_token_id=0)


def classifier(seed: int = 0) -> LlamaForSequenceClassification:
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(LlamaConfig(num_labels=3, **CONFIG))


def batches(n: int = 3, seed: int = 1, causal: bool = False) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1, 64, (8, 10), generator=generator)
        labels = ids.clone() if causal else torch.randint(0, 3, (8,), generator=generator)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def load_peft(base, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(base, str(path)).eval()


@pytest.fixture
def emd_model():
    model = classifier()
    ranklab.attach(model, ranklab.make_config("emd", a=4, b=8, target_modules=["q_proj", "v_proj"],
                                              modules_to_save=["score"]))
    randomize_adapters(model, std=0.3)
    return model


@pytest.mark.parametrize("tau", [0.5, 0.9])
def test_export_loads_in_peft_with_the_truncated_models_logits(tmp_path, emd_model, tau):
    result = compress_adapter(emd_model, tmp_path / "compressed", tau=tau)
    peft = load_peft(classifier(), tmp_path / "compressed")
    truncated = result.apply(emd_model)
    for batch in batches():
        torch.testing.assert_close(logits(peft, batch), logits(truncated, batch), atol=1e-5, rtol=1e-5)
    layers = ranklab.adapter_layers(emd_model)
    for _, row in result.table.iterrows():
        sigma = module_spectrum(layers[row["name"]]).detach().double().numpy()
        assert row["rank_after"] == energy_rank(sigma, tau) and row["rank_before"] == 4  # EMD a=4: rank min(a, b)
        peft_layer = peft.base_model.model.get_submodule(row["name"])
        assert peft_layer.lora_A["default"].weight.shape[0] == row["rank_after"]  # the per-module rank_pattern
        # Eckart-Young: the truncated update is the best rank-k one, its error the dropped energy
        delta = layers[row["name"]].delta_weight().detach().double()
        kept = result.modules[row["name"]]
        error = torch.linalg.matrix_norm(delta - (kept.left @ kept.right).double()) ** 2
        assert float(error) == pytest.approx(float((sigma[row["rank_after"]:] ** 2).sum()), rel=1e-4, abs=1e-9)
    assert result.table["rank_after"].sum() < result.table["rank_before"].sum()


def test_tau_one_changes_nothing(tmp_path, emd_model):
    data = batches()
    result = compress_adapter(emd_model, tmp_path / "all", tau=1.0, eval_batches=data)
    assert (result.table["rank_after"] == result.table["rank_before"]).all()
    peft = load_peft(classifier(), tmp_path / "all")
    for batch in data:
        torch.testing.assert_close(logits(peft, batch), logits(emd_model, batch), atol=1e-5, rtol=1e-5)
    assert result.metrics["change"]["accuracy"] == 0.0 and abs(result.metrics["change"]["loss"]) < 1e-5


def test_the_reported_accuracy_and_loss_change_are_measured_on_the_data(emd_model):
    data = batches()
    result = compress_adapter(emd_model, tau=0.5, eval_batches=data)
    for model, key in ((emd_model, "before"), (result.apply(emd_model), "after")):
        out = torch.cat([logits(model, b) for b in data])
        labels = torch.cat([b["labels"] for b in data])
        assert result.metrics[key]["loss"] == pytest.approx(float(F.cross_entropy(out, labels)), rel=1e-5)
        assert result.metrics[key]["accuracy"] == pytest.approx(float((out.argmax(-1) == labels).float().mean()))
    change = result.metrics["change"]
    assert change["loss"] == pytest.approx(result.metrics["after"]["loss"] - result.metrics["before"]["loss"])
    assert result.metrics["before"]["loss"] != result.metrics["after"]["loss"]


def test_causal_lm_accuracy_is_next_token_accuracy():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    data = batches(causal=True)
    data[0]["labels"][:, :4] = -100  # a masked prompt
    got = evaluate(model, data)
    correct = counted = 0
    for batch in data:
        predicted, target = logits(model, batch)[:, :-1].argmax(-1), batch["labels"][:, 1:]
        keep = target != -100
        correct, counted = correct + int((predicted == target)[keep].sum()), counted + int(keep.sum())
    assert got["accuracy"] == pytest.approx(correct / counted) and counted == 3 * 8 * 9 - 8 * 3


def test_a_peft_adalora_model_and_its_saved_folder_compress_alike(tmp_path):
    model = get_peft_model(classifier(), AdaLoraConfig(init_r=6, target_r=3, lora_alpha=8, total_step=10, tinit=1,
                                                       tfinal=2, target_modules=["q_proj", "v_proj"],
                                                       task_type="SEQ_CLS"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    for step, batch in enumerate(batches(10, seed=3)):
        model(**batch).loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(tmp_path / "adalora")
    from_model = compress_adapter(model, tmp_path / "from_model", tau=0.8)
    peft = load_peft(classifier(), tmp_path / "from_model")
    truncated = from_model.apply(model)
    for batch in batches():
        torch.testing.assert_close(logits(peft, batch), logits(truncated, batch), atol=1e-5, rtol=1e-5)
    from_folder = truncate(tmp_path / "adalora", tau=0.8)  # no base model needed
    assert from_folder.table["rank_after"].tolist() == from_model.table["rank_after"].tolist()
    for name, module in from_model.modules.items():
        other = from_folder.modules[name]
        torch.testing.assert_close(other.left @ other.right, module.left @ module.right, atol=1e-6, rtol=1e-5)
    assert set(from_folder.heads) == set(from_model.heads) and from_folder.heads  # the trained head goes along


def test_one_task_of_a_rank_router_exports_to_a_plain_backbone(tmp_path):
    model = classifier()
    ranklab.attach(model, ranklab.make_config("rank_router", r=6, n_tasks=2, selection="soft",
                                              target_modules=["q_proj", "v_proj"]))
    randomize_adapters(model, std=0.3)
    model.ranklab_task_names = ["a", "b"]
    data = batches()
    result = compress_adapter(model, tmp_path / "task_b", tau=0.9, eval_batches=data, task="b")
    peft = load_peft(classifier(), tmp_path / "task_b")
    with ranklab.use_task(1):
        expected = [logits(result.apply(model), b) for b in data]
    for batch, want in zip(data, expected):
        torch.testing.assert_close(logits(peft, batch), want, atol=1e-5, rtol=1e-5)
    assert set(result.metrics) == {"before", "after", "change"}


def test_cli_compresses_a_folder_and_bad_input_is_clear(tmp_path, emd_model):
    ranklab.export_peft(emd_model, tmp_path / "peft")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["compress", str(tmp_path / "peft"), "--output", str(tmp_path / "small"), "--tau", "0.5"]) == 0
    assert "adapter parameters" in out.getvalue()
    peft = load_peft(classifier(), tmp_path / "small")  # compressed from the folder alone, head included
    reference = truncate(emd_model, tau=0.5).apply(emd_model)
    for batch in batches():
        torch.testing.assert_close(logits(peft, batch), logits(reference, batch), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="tau must be in"):
        truncate(emd_model, tau=0.0)
    with pytest.raises(ValueError, match="needs the model"):
        compress_adapter(tmp_path / "peft", eval_batches=batches())
    with pytest.raises(ValueError, match="no adapted modules"):
        truncate(classifier())
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["compress", str(tmp_path / "nothing"), "--output", str(tmp_path / "x")]) == 2
    assert "does not exist" in err.getvalue()


def test_a_ranklab_train_run_folder_is_read_through_its_adapter(tmp_path):
    """`ranklab train --output RUN` saves the adapter in RUN/adapter: inspect and compress accept RUN
    itself and read exactly what they read from RUN/adapter (head included)."""
    from ranklab.inspect.audit import audit_adapter
    from ranklab.train import TrainConfig, train
    from ranklab.train.synthetic import synthetic_task, tiny_roberta

    task = synthetic_task("toy", num_classes=3, n_train=32, n_eval=16, seed=0)
    config = TrainConfig(method="emd", adapter={"a": 2, "b": 6}, tasks=["toy"], batch_size=8, max_steps=4,
                         eval_every=4, lr=1e-2, quiet=True, output=str(tmp_path / "run"))
    train(config, tasks=[task], model_fn=lambda n: tiny_roberta(n, dropout=0.0))
    run, adapter = tmp_path / "run", tmp_path / "run" / "adapter"
    from_run, from_adapter = audit_adapter(run), audit_adapter(adapter)
    assert from_run.path == adapter and not from_run.report.empty
    columns = ["name", "sigma_1", "effective_rank"]
    assert from_run.report[columns].equals(from_adapter.report[columns])
    with contextlib.redirect_stdout(io.StringIO()):
        for source, out in ((run, "a"), (adapter, "b")):
            assert main(["compress", str(source), "--output", str(tmp_path / out), "--tau", "0.9"]) == 0
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == (tmp_path / "b" / "adapter_model.safetensors").read_bytes()
    (adapter / "ranklab_config.json").unlink()  # a run folder without a saved adapter: the usual clear error
    with pytest.raises(ValueError, match="is not a saved adapter"):
        audit_adapter(run)
