"""--report-to tensorboard: the event file holds loss, metrics, effective ranks, gate entropy, AdaLoRA budget."""
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ranklab.inspect import model_report, RouterProbe
from ranklab.train import TrainConfig, train
from ranklab.train.synthetic import synthetic_completion_task, synthetic_task, tiny_roberta
from ranklab.train.tracking import effective_ranks, entropy, gate_entropies, tracking_dir

from .conftest import build_tiny_decoder


def scalars(output) -> dict[str, dict[int, float]]:
    events = EventAccumulator(str(tracking_dir(output)))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def run(tmp_path, method, adapter, tasks, model_fn, **options):
    config = TrainConfig(method=method, adapter=adapter, tasks=[t.name for t in tasks], max_steps=8, eval_every=4,
                         batch_size=16, lr=1e-2, log_every=2, quiet=True, output=str(tmp_path / method),
                         report_to="tensorboard", **options)
    return train(config, tasks=tasks, model_fn=model_fn)


def test_event_file_holds_loss_metrics_and_effective_ranks(tmp_path):
    result = run(tmp_path, "emd", {"a": 2, "b": 6, "modules_to_save": ["classifier"]}, [synthetic_task(n_train=128)],
                 lambda n: tiny_roberta(n, dropout=0.0))
    logged = scalars(tmp_path / "emd")
    assert sorted(logged["train/loss"]) == [2, 4, 6, 8] and all(np.isfinite(list(logged["train/loss"].values())))
    assert sorted(logged["train/lr"]) == [2, 4, 6, 8]
    for entry in result.record["evals"]:  # the same numbers as the record
        assert logged["eval/synthetic/accuracy"][entry["step"]] == pytest.approx(entry["metrics"]["synthetic"]["accuracy"])
        assert logged["eval/score"][entry["step"]] == pytest.approx(entry["score"])
    assert logged["test/synthetic/accuracy"][8] == pytest.approx(result.record["test"]["synthetic"]["accuracy"])
    report = model_report(result.model)  # best = last eval here: the logged ranks are the final model's
    assert result.record["best"]["step"] == 8
    for name, rank in zip(report["name"], report["effective_rank"]):
        assert logged[f"effective_rank/{name}"][8] == pytest.approx(rank, rel=1e-5)
    assert logged["effective_rank/mean"][8] == pytest.approx(report["effective_rank"].mean(), rel=1e-5)


def test_token_router_gate_entropy_skips_padding(tmp_path):
    task = synthetic_completion_task()
    result = run(tmp_path, "mor", {"r": 4, "n_experts": 3, "target_modules": ["gate_proj", "up_proj", "down_proj"]},
                 [task], lambda n: build_tiny_decoder("llama", seed=0), objective="causal-lm")
    logged = scalars(tmp_path / "mor")
    gates = [t for t in logged if t.startswith("gate_entropy/") and t != "gate_entropy/mean"]
    assert len(gates) == 6  # 2 layers x 3 FFN modules
    assert all(0 < v[8] <= np.log(3) + 1e-6 for v in (logged[t] for t in gates))
    # recompute one module's entropy over the validation tokens, padding left out by RouterProbe
    model, rows = result.model, task.validation
    batch = result.collator([rows[i] for i in range(len(rows))])
    with RouterProbe(model) as probe:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    name = gates[0].removeprefix("gate_entropy/")
    assert probe.token_gates(name).shape[0] == int(batch["attention_mask"].sum())
    best = result.record["best"]["step"]  # the returned model holds the best evaluation's weights
    assert logged[gates[0]][best] == pytest.approx(float(entropy(probe.token_gates(name)).mean()), rel=1e-4)
    assert "effective_rank/mean" in logged  # router-averaged ΔW per module


def test_task_router_entropy_and_adalora_budget(tmp_path):
    tasks = [synthetic_task("a", n_train=64), synthetic_task("b", n_train=64, seed=3)]
    result = run(tmp_path, "rank_router", {"r": 4, "modules_to_save": ["classifier"]}, tasks,
                 lambda n: tiny_roberta(n, dropout=0.0))
    logged = scalars(tmp_path / "rank_router")
    expected = gate_entropies(result.model, None)
    assert {f"gate_entropy/{k.split('/', 1)[1]}" for k in expected} <= set(logged) and len(expected) == 4 * 2 + 1
    ada = run(tmp_path, "adalora", {"init_r": 4, "target_r": 2, "tinit_ratio": 0.0, "tfinal_ratio": 0.25},
              [synthetic_task(n_train=128)], lambda n: tiny_roberta(n, dropout=0.0), rank_every=2)
    logged = scalars(tmp_path / "adalora")
    history = {h["step"]: h["total"] for h in ada.record["rank_history"]}
    assert logged["adalora/total_rank"] == pytest.approx(history) and history[0] == 16 and history[8] == 8
    assert any(t.startswith("adalora/rank/") for t in logged) and "effective_rank/mean" in logged


def test_effective_ranks_per_task_for_routers():
    from ranklab import attach, make_config

    model = tiny_roberta(2, dropout=0.0)
    attach(model, make_config("rank_router", r=4, n_tasks=2))
    ranks = effective_ranks(model)
    assert len([k for k in ranks if k.endswith("/task0")]) == 4 and "effective_rank/mean" in ranks


def test_unknown_tracker_and_missing_output_are_clear_errors():
    with pytest.raises(ValueError, match="unknown tracker 'wandb' for report_to; valid trackers: tensorboard"):
        TrainConfig(report_to="wandb", output="x")
    with pytest.raises(ValueError, match="report_to='tensorboard' writes into the run folder: give an output folder"):
        TrainConfig(report_to="tensorboard")
