"""Trainer: learns, repeats itself with a seed, resumes exactly, stops on NaN, runs multi-task."""
import json

import pytest
import torch

import ranklab
from ranklab.cli import main
from ranklab.train import NonFiniteLossError, TrainConfig, results_table, train
from ranklab.train.checkpoint import load_checkpoint
from ranklab.train.plateau import plateau_stop
from ranklab.train.synthetic import synthetic_rows, synthetic_task, tiny_roberta


def run(tmp_path=None, data=None, callbacks=(), model_fn=tiny_roberta, **options):
    settings = dict(method="lora", adapter={"r": 4}, tasks=["synthetic"], epochs=2, lr=1e-2,
                    batch_size=16, quiet=True)
    settings.update(options)
    if tmp_path is not None:
        settings["output"] = str(tmp_path)
    config = TrainConfig(**settings)
    return train(config, tasks=data or [synthetic_task()], model_fn=model_fn, callbacks=callbacks)


def test_learns_a_separable_task_and_writes_its_record(tmp_path):
    result = run(tmp_path / "lora", epochs=8)
    scores = [e["score"] for e in result.record["evals"]]
    assert len(scores) == 8 and scores[0] < 0.7  # starts near chance
    assert result.best["score"] >= 0.8
    assert result.record["test"]["synthetic"]["accuracy"] >= 0.75
    record = json.loads((tmp_path / "lora" / "record.json").read_text())
    assert record["status"] == "completed" and record["steps"] == 8 * 16 == record["total_steps"]
    assert record["params"]["adapter_params"] == 2 * 2 * (4 * 32 + 32 * 4)  # 2 layers x (query, value)
    assert record["params"]["head_params"] > 0 and record["versions"]["ranklab"] == ranklab.__version__
    # the saved adapter reproduces the best model's logits on a fresh backbone
    torch.manual_seed(0)
    fresh = ranklab.load_adapters(tiny_roberta(2), tmp_path / "lora" / "adapter").eval()
    batch = torch.tensor([row["input_ids"] for row in synthetic_rows(8, seed=5)])
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=batch).logits, result.model(input_ids=batch).logits)


def test_same_seed_same_metrics_other_seed_differs():
    first, second = run(seed=3), run(seed=3)
    other = run(seed=4)
    assert first.record["evals"] == second.record["evals"]
    assert first.record["evals"] != other.record["evals"]


class Crash(Exception):
    pass


def crash_at(step):
    def callback(current, model):
        if current == step:
            raise Crash
    return callback


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    options = dict(method="dylora", adapter={"r_min": 1, "r_max": 4}, max_steps=30, eval_every=10)
    full = run(tmp_path / "full", **options)
    with pytest.raises(Crash):
        run(tmp_path / "crashed", callbacks=[crash_at(25)], **options)
    assert load_checkpoint(tmp_path / "crashed")["step"] == 20
    with pytest.raises(ValueError, match="resume"):
        run(tmp_path / "crashed", **options)
    resumed = run(tmp_path / "crashed", resume=True, **options)
    assert resumed.record["evals"] == full.record["evals"]
    assert resumed.record["best"] == full.record["best"] and resumed.record["test"] == full.record["test"]
    with pytest.raises(ValueError, match="differs in"):
        run(tmp_path / "crashed", resume=True, **{**options, "lr": 0.5})


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def poisoned(num_labels):
        model = tiny_roberta(num_labels)

        def hook(module, inputs, output):
            if module.training:
                calls["n"] += 1
                if calls["n"] >= 8:
                    return output * float("nan")
        model.classifier.register_forward_hook(hook)
        return model

    with pytest.raises(NonFiniteLossError, match="step 8"):
        run(tmp_path, model_fn=poisoned, max_steps=20, eval_every=5)
    state = load_checkpoint(tmp_path)
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["trainable"].values())


def test_multi_task_run_has_per_task_heads_and_metrics(tmp_path):
    tasks = [synthetic_task("two", 2, signal=0.9, seed=0), synthetic_task("three", 3, n_train=160, signal=0.9, seed=10)]
    result = run(tmp_path, data=tasks, tasks=["two", "three"], epochs=6, lr=3e-2)
    heads = result.model.classifier.heads
    assert [h.out_proj.out_features for h in heads] == [2, 3]
    last = result.record["evals"][-1]["metrics"]
    assert set(last) == {"two", "three"} and set(result.record["test"]) == {"two", "three"}
    assert result.record["steps"] == 6 * (16 + 10)
    assert result.best["score"] == pytest.approx(
        (result.best["metrics"]["two"]["accuracy"] + result.best["metrics"]["three"]["accuracy"]) / 2)
    assert result.best["score"] > 0.65  # mean of 2- and 3-class chance is 0.42
    assert result.best["metrics"]["two"]["accuracy"] > 0.6 and result.best["metrics"]["three"]["accuracy"] > 0.45


def test_bad_configs_name_the_valid_choices():
    with pytest.raises(ValueError, match="valid methods"):
        TrainConfig(method="nope")
    with pytest.raises(ValueError, match="valid keys"):
        TrainConfig(method="lora", adapter={"a": 4})
    with pytest.raises(ValueError, match="valid keys"):
        TrainConfig(method="adalora", adapter={"r": 4})


def test_cli_results_table_and_bad_flag_combination(tmp_path, capsys):
    run(tmp_path / "runs" / "a", epochs=1)
    run(tmp_path / "runs" / "b", epochs=1, method="emd", adapter={"a": 2, "b": 6})
    table = results_table(tmp_path / "runs")
    assert list(table["run"]) == ["a", "b"] and list(table["method"]) == ["lora", "emd"]
    assert main(["results", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "synthetic/accuracy" in out and "emd" in out
    assert main(["train", "--method", "lora", "--a", "4", "--task", "movie", "--quiet"]) == 2
    assert "valid keys" in capsys.readouterr().err


@pytest.mark.parametrize("method, adapter", [
    ("rank_router", {"r": 4, "contrastive_weight": 0.1}),
    ("mor", {"r": 4, "n_experts": 2}),
])
def test_multi_task_adapters_get_their_task_and_extra_loss(method, adapter, tiny_bert, monkeypatch):
    _, layer_class = ranklab.get_method(method)
    seen = []
    original = layer_class.extra_loss

    def spy(self):
        seen.append(ranklab.current_task())
        return original(self)
    monkeypatch.setattr(layer_class, "extra_loss", spy)
    tasks = [synthetic_task("two", 2, n_train=32, seed=0), synthetic_task("three", 3, n_train=32, seed=10)]
    result = run(data=tasks, tasks=["two", "three"], method=method, adapter=adapter, max_steps=6,
                 model_fn=lambda n: tiny_bert(num_labels=n))
    assert result.record["adapter_config"]["n_tasks"] == 2  # sized from the run
    assert set(result.record["evals"][-1]["metrics"]) == {"two", "three"}
    n_layers = len(ranklab.adapter_layers(result.model))
    assert len(seen) == 6 * n_layers and set(seen) == {0, 1}  # every step, inside use_task


def test_adapters_per_step_hook_runs_after_every_optimizer_step(monkeypatch):
    """The trainer's after-step hook (AdaLoRA's update_and_allocate) serves ranklab adapters too."""
    from ranklab.adapters import LoraLayer

    calls = []

    def record_step(self, step):
        calls.append((self.module_name, step, self.lora_B.grad is not None))  # before zero_grad
    monkeypatch.setattr(LoraLayer, "after_optimizer_step", record_step, raising=False)
    result = run(max_steps=5)
    n_layers = len(ranklab.adapter_layers(result.model))
    assert sorted(step for _, step, _ in calls) == sorted(list(range(1, 6)) * n_layers)
    assert all(has_grad for _, _, has_grad in calls)


def test_runtime_is_chosen_by_method():
    from ranklab.train.runtime import AdaLoraRuntime, AdapterRuntime, runtime_for

    assert type(runtime_for(TrainConfig(method="adalora"))) is AdaLoraRuntime
    for method in ranklab.available_methods():
        options = {k: v for k, v in ranklab.get_method(method)[0].example().to_dict().items() if k != "method"}
        assert type(runtime_for(TrainConfig(method=method, adapter=options))) is AdapterRuntime


def test_token_batch_is_seeded_and_carries_its_signal():
    from ranklab.train.synthetic import token_batch

    first = token_batch(torch.Generator().manual_seed(0), vocab_size=3000, batch_size=64, length=40)
    again = token_batch(torch.Generator().manual_seed(0), vocab_size=3000, batch_size=64, length=40)
    assert all(torch.equal(first[k], again[k]) for k in first) and first["input_ids"].shape == (64, 40)
    upper = (first["input_ids"] >= 2000).float().mean(dim=1)  # share of tokens in the upper half of the ids
    assert upper[first["labels"] == 1].mean() > 0.75 > 0.25 > upper[first["labels"] == 0].mean()
    with pytest.raises(ValueError, match="first_token < vocab_size"):
        token_batch(torch.Generator(), vocab_size=500)


def test_init_from_starts_with_another_runs_adapter_but_its_own_head(tmp_path):
    """LoRA's MNLI-initialised MRPC: the second run's adapter starts at the first run's best adapter
    (bit for bit), its head (other labels) starts fresh; other methods or shapes are refused."""
    from safetensors.torch import load_file

    run(tmp_path / "source", epochs=2, data=[synthetic_task(num_classes=3)])
    saved = load_file(str(tmp_path / "source" / "adapter" / "adapter_model.safetensors"))
    start = {}

    def initial(step, model):
        if step == 0:
            start.update({k: v.clone() for k, v in ranklab.saving.adapter_state_dict(model).items()})

    result = run(tmp_path / "target", epochs=1, callbacks=[initial], init_from=str(tmp_path / "source" / "adapter"))
    adapter_keys = [k for k in saved if "lora_" in k]
    assert adapter_keys and all(torch.equal(start[k], saved[k]) for k in adapter_keys)
    assert saved["classifier.out_proj.weight"].shape[0] == 3 and start["classifier.out_proj.weight"].shape[0] == 2
    assert result.record["config"]["init_from"] == str(tmp_path / "source" / "adapter")
    with pytest.raises(ValueError, match="holds 'lora' adapters; this model's are 'emd'"):
        run(method="emd", adapter={"a": 2, "b": 4}, init_from=str(tmp_path / "source" / "adapter"))
    with pytest.raises(ValueError, match=r"do not fit this model: .*saved \(4, 32\) vs model \(8, 32\)"):
        run(adapter={"r": 8}, init_from=str(tmp_path / "source" / "adapter"))
    with pytest.raises(ValueError, match="AdaLoRA runs start from its own init"):
        TrainConfig(method="adalora", init_from=str(tmp_path))


def test_warmup_steps_override_the_ratio(monkeypatch):
    from ranklab.train import trainer as trainer_module

    optimizers, rates = [], []
    original = trainer_module.Trainer.__init__

    def keep_optimizer(self, *args, **kwargs):
        original(self, *args, **kwargs)
        optimizers.append(self.optimizer)

    monkeypatch.setattr(trainer_module.Trainer, "__init__", keep_optimizer)
    run(epochs=1, max_steps=6, warmup_steps=4, warmup_ratio=0.0, lr=1e-2,
        callbacks=[lambda step, model: rates.append(optimizers[0].param_groups[0]["lr"])])
    # the rate after each step: linear warmup over 4 steps, then linear decay to 0 at step 6
    assert rates[1:] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 5e-3, 0.0])
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 0"):
        TrainConfig(warmup_steps=-1)


def test_a_run_that_dies_while_saving_says_so_and_resumes(tmp_path, monkeypatch, capsys):
    """A save that fails (e.g. safetensors on tied tensors) leaves status "failed" with the reason,
    never "running"; the protocol counts it as not done and --resume finishes it from its checkpoint."""
    from ranklab.experiments.run.runner import run_status
    import ranklab.train.runtime as runtime

    def tied_tensors(*args, **kwargs):
        raise RuntimeError("Some tensors share memory, this will lead to duplicate memory on disk")

    monkeypatch.setattr(runtime, "save_adapters", tied_tensors)
    folder = tmp_path / "runs" / "tied"
    with pytest.raises(RuntimeError, match="share memory"):
        run(folder, epochs=1)
    record = json.loads((folder / "record.json").read_text())
    assert record["status"] == "failed" and record["failed_at_step"] == record["total_steps"] == 16
    assert record["error"].startswith("RuntimeError: Some tensors share memory")
    assert run_status(folder, needs_analysis=False) == "todo"
    assert main(["results", str(tmp_path / "runs")]) == 0
    assert "tied: failed: RuntimeError: Some tensors share memory" in capsys.readouterr().out
    monkeypatch.undo()
    resumed = run(folder, epochs=1, resume=True)
    record = json.loads((folder / "record.json").read_text())
    assert record["status"] == "completed" and "error" not in record and (folder / "adapter").is_dir()
    assert record["evals"] == resumed.record["evals"] and len(record["evals"]) == 1  # not trained again


def test_records_name_the_hardware_and_the_precision_used(tmp_path, monkeypatch):
    from ranklab.hardware import describe

    monkeypatch.setenv("RANKLAB_BF16", "off")
    record = run(tmp_path / "run", epochs=1).record
    hardware = record["hardware"]
    assert hardware["precision"] == "fp32" and hardware["native_bf16"] is False and hardware["bf16_forced_off"]
    assert hardware["threads"] == torch.get_num_threads() and hardware["cpu"]
    assert hardware["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "RANKLAB_BF16=off" in describe(hardware) and describe(hardware).endswith("fp32")


def _plateau_stop(scores, patience, min_delta):
    """The rule written out: evals since the score last rose by more than min_delta."""
    reference, bad = None, 0
    for n, score in enumerate(scores, 1):
        if reference is None or score > reference + min_delta:
            reference, bad = score, 0
        else:
            bad += 1
        if bad >= patience:
            return n
    return None


def test_patience_counts_only_gains_above_min_delta():
    """A plateau rule: gains within min_delta do not reset patience.  The full run's scores say
    where each rule must stop; the trainer stops there, and its best model is the best eval's."""
    full = run(max_steps=64, eval_every=4, seed=1)
    scores = [e["score"] for e in full.record["evals"]]
    stops = {}
    for min_delta, patience in ((0.0, 12), (0.05, 12), (1.0, 2)):
        expected = _plateau_stop(scores, patience, min_delta)
        ruled = run(max_steps=64, eval_every=4, seed=1, patience=patience, min_delta=min_delta)
        assert ruled.record["stopped_early"] is (expected is not None)
        assert ruled.record["steps"] == 4 * (expected or 16)
        assert ruled.record["evals"] == full.record["evals"][:expected]  # the same run until it stops
        assert ruled.best["score"] == max(scores[:expected])
        # the library's replay of the rule (the convergence check's) stops the full curve at the same evaluation
        replayed = plateau_stop(full.record["evals"], patience, min_delta, full.record["selectable_from"])
        assert replayed == (None if expected is None else expected - 1)
        stops[min_delta] = expected
    assert stops[1.0] == 3  # no accuracy can rise by more than 1: the first eval plus patience
    with pytest.raises(ValueError, match="min_delta must be >= 0"):
        TrainConfig(min_delta=-0.1)
