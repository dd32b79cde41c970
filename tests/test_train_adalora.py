"""AdaLoRA through PEFT: the budget shrinks toward target_r, regulariser added, resume is exact."""
import json

import pytest
import torch

from ranklab.train import TrainConfig, train
from ranklab.train.adalora import AdaLoraOptions, orth_loss
from ranklab.train.synthetic import synthetic_task, tiny_roberta

OPTIONS = {"init_r": 6, "target_r": 2, "tinit_ratio": 0.1, "tfinal_ratio": 0.2}
N_MODULES = 4  # 2 layers x (query, value)


def run(output=None, callbacks=(), **extra):
    settings = dict(method="adalora", adapter=dict(OPTIONS), tasks=["synthetic"], max_steps=40, eval_every=10,
                    lr=1e-2, batch_size=16, quiet=True, output=output)
    settings.update(extra)
    return train(TrainConfig(**settings), tasks=[synthetic_task()], model_fn=tiny_roberta, callbacks=callbacks)


def test_rank_pattern_shrinks_to_the_target_budget(tmp_path):
    totals = []
    result = run(tmp_path, callbacks=[lambda step, model: totals.append(
        sum(int((p != 0).sum()) for n, p in model.named_parameters() if ".lora_E." in n))])
    history = result.record["rank_history"]
    assert [h["step"] for h in history] == [0, 10, 20, 30, 40]
    assert len(history[-1]["per_module"]) == N_MODULES
    # totals[0] is the initial state (callbacks also see step 0; PEFT starts E at 0), totals[s] step s
    assert totals[0] == 0 and history[0]["total"] == 6 * N_MODULES and totals[2] == 6 * N_MODULES  # full budget at first
    assert [h["total"] for h in history[1:]] == sorted((h["total"] for h in history[1:]), reverse=True)
    assert 6 * N_MODULES > history[1]["total"] > history[-1]["total"]  # shrinking during training
    assert history[-1]["total"] <= 2 * N_MODULES  # at the target budget in the final phase
    assert totals[-1] <= 2 * N_MODULES  # the masks really zero the pruned singular values
    assert [e["total_rank"] for e in result.record["evals"]] == [h["total"] for h in history[1:]]
    params = result.record["params"]
    assert params["adapter_params"] == N_MODULES * (6 * 32 + 6 + 32 * 6)  # A, E, B at init_r
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "ADALORA" and saved["total_step"] == 40


def test_rank_pattern_is_recorded_between_evaluations():
    result = run(rank_every=5, eval_every=20)
    history = result.record["rank_history"]
    assert [h["step"] for h in history] == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    at_step = {h["step"]: h["total"] for h in history}
    assert [e["total_rank"] for e in result.record["evals"]] == [at_step[20], at_step[40]]
    assert history[0]["total"] > history[3]["total"] > history[-1]["total"]  # pruned gradually
    with pytest.raises(ValueError, match="rank_every must be >= 1"):
        TrainConfig(method="adalora", rank_every=0)


def test_orthogonal_regulariser_matches_peft(tmp_path):
    result = run(max_steps=10, eval_every=10)
    model = result.model
    batch = {"input_ids": torch.tensor([[0, 7, 9, 2]]), "labels": torch.tensor([1])}
    plain = model.base_model.model(**batch).loss  # the HF model's own loss
    with_reg = model.base_model(**batch).loss  # AdaLoraModel.forward adds the regulariser
    torch.testing.assert_close(with_reg - plain, orth_loss(model))
    assert orth_loss(model) > 0


def test_resume_equals_uninterrupted(tmp_path):
    full = run(tmp_path / "full")

    def crash(step, model):
        if step == 25:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", callbacks=[crash])
    resumed = run(tmp_path / "cut", resume=True)
    assert resumed.record["evals"] == full.record["evals"]
    assert resumed.record["rank_history"] == full.record["rank_history"]


def test_options_are_validated():
    with pytest.raises(ValueError, match="target_r"):
        AdaLoraOptions(init_r=4, target_r=8)
    with pytest.raises(ValueError, match="sum below 1"):
        AdaLoraOptions(tinit_ratio=0.5, tfinal_ratio=0.5)
    assert AdaLoraOptions().schedule(100) == (10, 20)  # tinit, tfinal from the run's total steps
    with pytest.raises(ValueError, match="2 steps are too few .*tinit 0, tfinal 1"):  # PEFT would never score
        AdaLoraOptions(tinit_ratio=0.1, tfinal_ratio=0.52).schedule(2)
    assert AdaLoraOptions(tinit_ratio=0.1, tfinal_ratio=0.52).schedule(3) == (0, 1)


def test_schedule_steps_finishes_the_budget_before_a_plateau_stop(tmp_path):
    # the schedule spans 20 of 60 steps: rank at target_r from step 20 - tfinal 4 = 16 on, and no
    # evaluation before that (more rank than compared) becomes the best checkpoint
    adapter = {**OPTIONS, "schedule_steps": 20}
    result = run(tmp_path, adapter=adapter, max_steps=60, eval_every=5, lr=1e-2)
    history = {h["step"]: h["total"] for h in result.record["rank_history"]}
    assert all(total <= 2 * N_MODULES for step, total in history.items() if step >= 16)
    assert history[10] > 2 * N_MODULES  # still shrinking inside the schedule
    assert result.record["best"]["step"] >= 16
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["total_step"] == 20
    assert AdaLoraOptions(**adapter).final_budget_step(60) == 16
    with pytest.raises(ValueError, match="exceeds the run's 10 steps"):
        run(adapter=adapter, max_steps=10, eval_every=5)
    with pytest.raises(ValueError, match="schedule_steps must be"):
        AdaLoraOptions(schedule_steps=1)


def test_patience_waits_for_the_final_budget():
    # evaluations every 2 steps, patience 1 and a min_delta no gain can reach: a run counting its
    # evaluations inside the schedule would stop at step 4; it stops at the first bad one after 16
    adapter = {**OPTIONS, "schedule_steps": 20}
    result = run(adapter=adapter, max_steps=60, eval_every=2, patience=1, min_delta=10.0)
    assert result.record["steps"] == 18
    assert result.record["best"]["step"] == 16
    # replayed from the record (the convergence check): the same stop, evaluations before the budget ignored
    from ranklab.train.plateau import plateau_stop

    evals = result.record["evals"]
    assert result.record["selectable_from"] == 16
    assert evals[plateau_stop(evals, 1, 10.0, result.record["selectable_from"])]["step"] == 18
    assert evals[plateau_stop(evals, 1, 10.0)]["step"] == 4  # ignoring the budget would stop inside the schedule
