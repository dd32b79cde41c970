"""Hugging Face Trainer integration: the real transformers.Trainer on tiny Llama models from configs.

PEFT AdaLoRA's ranks shrink to target_r's budget only with the callback (peft#1801), which calls
update_and_allocate while the gradients are still there; RankDynamics works as a Trainer
callback; ranklab's multi-task adapters get their task ids and extra losses in RanklabTrainer.
"""
import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, Trainer, TrainerCallback
from transformers import TrainingArguments

import ranklab
from ranklab.inspect import RankDynamics, model_spectra, spectrum_gap
from ranklab.integrations import RankDynamicsCallback, RanklabTrainer, adalora_model, kept_ranks

VOCAB, LENGTH = 48, 10
N_MODULES = 4  # q_proj and v_proj of 2 layers


def llama_config(**overrides) -> LlamaConfig:
    options = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaConfig(**{**options, **overrides})


def causal_lm(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config())


def classifier(seed: int = 0, num_labels: int = 2) -> LlamaForSequenceClassification:
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(llama_config(num_labels=num_labels))


def counting_rows(n: int, seed: int = 0) -> list[dict]:
    """Arithmetic sequences mod VOCAB: a causal LM can learn to continue them."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        start, step = torch.randint(3, VOCAB, (1,), generator=generator).item(), torch.randint(1, 4, (1,), generator=generator).item()
        ids = [3 + (start + step * t) % (VOCAB - 3) for t in range(LENGTH)]
        rows.append({"input_ids": ids, "attention_mask": [1] * LENGTH, "labels": ids})
    return rows


def task_rows(n: int, seed: int = 0) -> list[dict]:
    """Two classification tasks on the same tokens: task 0 asks 'first half of the vocabulary?',
    task 1 the opposite, so the task id is needed to classify."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        ids = torch.randint(3, VOCAB, (LENGTH,), generator=generator).tolist()
        task = i % 2
        low = int(sum(t < VOCAB // 2 for t in ids) > LENGTH // 2)
        rows.append({"input_ids": ids, "attention_mask": [1] * LENGTH, "labels": low if task == 0 else 1 - low,
                     "task_id": task})
    return rows


def training_args(tmp_path, steps: int, **overrides) -> TrainingArguments:
    options = dict(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8,
                   learning_rate=1e-2, logging_steps=5, report_to=[], use_cpu=True, save_strategy="no",
                   disable_tqdm=True, seed=0, data_seed=0)
    return TrainingArguments(**{**options, **overrides})


def adalora(steps: int, total_step: int | None = None, tfinal: int = 4, seed: int = 0):
    from peft import AdaLoraConfig, get_peft_model

    config = AdaLoraConfig(init_r=6, target_r=2, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                           total_step=total_step or steps, tinit=2, tfinal=tfinal, task_type="CAUSAL_LM")
    return get_peft_model(causal_lm(seed), config)


# --- PEFT AdaLoRA under the plain Trainer -----------------------------------------------------------
def test_adalora_ranks_shrink_to_the_budget_under_the_plain_trainer(tmp_path):
    steps = 20
    model = adalora(steps)
    callback = RankDynamicsCallback(every=5)
    trainer = Trainer(model=model, args=training_args(tmp_path, steps), train_dataset=Dataset.from_list(counting_rows(160)),
                      callbacks=[callback])
    trainer.train()
    kept = kept_ranks(adalora_model(model))
    assert len(kept) == N_MODULES and sum(kept.values()) == 2 * N_MODULES  # target_r x modules
    assert callback.budget_totals[0] == (1, 6 * N_MODULES) and callback.budget_totals[-1] == (steps, 2 * N_MODULES)
    totals = [total for _, total in callback.budget_totals]
    assert totals == sorted(totals, reverse=True) and len(set(totals)) > 2  # shrinking in steps, never growing
    # the spectra (from the factors) agree: each module's update has exactly the rank it kept
    final = callback.history[callback.history["step"] == steps].set_index("name")["numerical_rank"]
    budget = callback.budget_history[callback.budget_history["step"] == steps].set_index("name")["rank"]
    assert final.to_dict() == budget.to_dict() and set(final.index) == set(model_spectra(model))
    # on_log put the numbers into the Trainer's logs
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged[-1]["adalora/budget"] == 2 * N_MODULES and logged[-1]["adalora/target_budget"] == 2 * N_MODULES
    assert logged[0]["adalora/budget"] > logged[-1]["adalora/budget"]
    assert logged[-1]["rank/numerical_total"] == 2 * N_MODULES and 1 <= logged[-1]["rank/effective_mean"] <= 2


def test_without_the_callback_the_plain_trainer_never_prunes(tmp_path):
    """The symptom of peft#1801: nothing calls update_and_allocate, every module keeps init_r."""
    model = adalora(10)
    Trainer(model=model, args=training_args(tmp_path, 10), train_dataset=Dataset.from_list(counting_rows(80))).train()
    assert sum(kept_ranks(adalora_model(model)).values()) == 6 * N_MODULES


def test_update_and_allocate_runs_after_the_optimizer_step_with_the_gradients(tmp_path):
    steps = 6
    model = adalora(steps, tfinal=2)
    tuner = adalora_model(model)
    calls = []
    original = tuner.update_and_allocate

    def spy(global_step):
        grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n and p.grad is not None]
        calls.append((global_step, bool(grads) and all(float(g.abs().sum()) > 0 for g in grads)))
        return original(global_step)

    tuner.update_and_allocate = spy
    args = training_args(tmp_path, steps, gradient_accumulation_steps=2, per_device_train_batch_size=4)
    Trainer(model=model, args=args, train_dataset=Dataset.from_list(counting_rows(64)),
            callbacks=[RankDynamicsCallback(every=2)]).train()
    # once per optimizer step (not per micro-batch), steps counted from 0, gradients not yet zeroed
    assert calls == [(step, True) for step in range(steps)]


def test_a_schedule_that_cannot_reach_the_budget_warns(tmp_path):
    model = adalora(6, total_step=100)
    with pytest.warns(UserWarning, match="total_step=6"):
        Trainer(model=model, args=training_args(tmp_path, 6), train_dataset=Dataset.from_list(counting_rows(48)),
                callbacks=[RankDynamicsCallback()]).train()


def test_adalora_injected_without_its_tuner_is_a_clear_error():
    from peft import AdaLoraConfig, inject_adapter_in_model

    model = inject_adapter_in_model(AdaLoraConfig(init_r=4, target_r=2, target_modules=["q_proj"], total_step=10),
                                    causal_lm())
    with pytest.raises(ValueError, match="get_peft_model"):
        adalora_model(model)


# --- RankDynamics as a Trainer callback; metrics reaching trackers ----------------------------------
def peft_lora():
    from peft import LoraConfig, get_peft_model

    return get_peft_model(causal_lm(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))


def test_rank_dynamics_works_as_a_trainer_callback(tmp_path):
    model = peft_lora()
    tracker = RankDynamics(every=2)
    Trainer(model=model, args=training_args(tmp_path, 4), train_dataset=Dataset.from_list(counting_rows(32)),
            callbacks=[tracker]).train()
    history = tracker.history
    assert sorted(set(history["step"])) == [0, 2, 4] and set(history["name"]) == set(model_spectra(model))
    assert (history[history["step"] == 0]["numerical_rank"] == 0).all()  # B = 0 at the start
    for name, sigma in model_spectra(model).items():
        assert spectrum_gap(tracker.spectra(name)[1][-1], sigma) < 1e-6


def test_rank_dynamics_warns_that_it_does_not_allocate_adalora(tmp_path):
    with pytest.warns(UserWarning, match="RankDynamicsCallback"):
        Trainer(model=adalora(4, tfinal=1), args=training_args(tmp_path, 2), callbacks=[RankDynamics(every=1)],
                train_dataset=Dataset.from_list(counting_rows(16))).train()


class LogRecorder(TrainerCallback):
    """Stands in for a report_to tracker: it sees the logs dict when its turn comes."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


@pytest.mark.parametrize("first", [False, True])
def test_attach_to_puts_the_metrics_in_front_of_trackers(tmp_path, first):
    recorder, callback = LogRecorder(), RankDynamicsCallback(every=1)
    trainer = Trainer(model=peft_lora(), args=training_args(tmp_path, 2, logging_steps=1), callbacks=[recorder, callback],
                      train_dataset=Dataset.from_list(counting_rows(16)))
    if first:
        callback.attach_to(trainer)
    trainer.train()
    seen = [log for log in recorder.logs if "loss" in log]
    assert len(seen) == 2 and all(("rank/effective_mean" in log) == first for log in seen)
    assert all("rank/effective_mean" in h for h in trainer.state.log_history if "loss" in h)  # always in the history


# --- ranklab's multi-task adapters in RanklabTrainer ---------------------------------------------------
def router_model(contrastive_weight: float = 0.1):
    model = classifier()
    ranklab.attach(model, ranklab.make_config("rank_router", r=4, n_tasks=2, contrastive_weight=contrastive_weight,
                                              target_modules=["q_proj", "v_proj"], modules_to_save=["score"]))
    model.ranklab_task_names = ["low", "high"]
    return model


def mixed_batch():
    rows = task_rows(6)
    rows[4]["task_id"] = 0  # 4 of task 0, 2 of task 1, interleaved
    return {"input_ids": torch.tensor([r["input_ids"] for r in rows]),
            "attention_mask": torch.tensor([r["attention_mask"] for r in rows]),
            "labels": torch.tensor([r["labels"] for r in rows]), "task_id": torch.tensor([r["task_id"] for r in rows])}


def by_hand(model, batch):
    """Σ_t share_t (cross-entropy_t + extra_t), one forward per task inside use_task."""
    total, tasks = 0.0, batch["task_id"]
    for task in tasks.unique().tolist():
        rows = (tasks == task).nonzero().flatten()
        with ranklab.use_task(task):
            out = model(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows],
                        labels=batch["labels"][rows])
            extra = sum(loss for layer in ranklab.adapter_layers(model).values() if (loss := layer.extra_loss()) is not None)
        total = total + (out.loss + extra) * len(rows) / len(tasks)
    return total


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_mixed_batch_trains_each_task_with_its_extra_loss(tmp_path):
    model = router_model()
    trainer = RanklabTrainer(model=model, args=training_args(tmp_path, 1), train_dataset=Dataset.from_list(task_rows(8)))
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which we skip here
    loss = trainer.training_step(model, mixed_batch())
    ours = grads(model)
    model.zero_grad()
    expected = by_hand(model, mixed_batch())
    expected.backward()
    assert abs(float(loss.detach()) - float(expected.detach())) < 1e-6
    reference = grads(model)
    assert set(ours) == set(reference) and any("task_embedding" in n for n in ours)  # the contrastive loss reached E
    assert all(torch.allclose(ours[n], reference[n], atol=1e-7) for n in ours)


def test_prediction_on_a_mixed_batch_keeps_the_row_order(tmp_path):
    model = router_model().eval()
    trainer = RanklabTrainer(model=model, args=training_args(tmp_path, 1), train_dataset=Dataset.from_list(task_rows(8)))
    batch = mixed_batch()
    loss, logits, labels = trainer.prediction_step(model, dict(batch), prediction_loss_only=False)
    expected = torch.empty_like(logits)
    for task in (0, 1):
        rows = (batch["task_id"] == task).nonzero().flatten()
        with torch.no_grad(), ranklab.use_task(task):
            expected[rows] = model(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows]).logits
    assert torch.allclose(logits, expected, atol=1e-6) and torch.equal(labels, batch["labels"])
    with torch.no_grad():
        plain = by_hand(router_model(contrastive_weight=0.0).eval(), batch)  # evaluation loss: no extra loss
    assert abs(float(loss) - float(plain)) < 1e-6


def test_task_routed_adapters_need_a_task_column_or_a_default(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "task_id"} for r in task_rows(8)]
    with pytest.raises(ValueError, match="task_id"):
        RanklabTrainer(model=router_model(), args=training_args(tmp_path, 1), train_dataset=Dataset.from_list(rows))
    trainer = RanklabTrainer(model=router_model(), args=training_args(tmp_path, 1), default_task="high",
                             train_dataset=Dataset.from_list(rows))
    assert trainer.default_task == 1
    trainer.train()


def test_ranklab_trainer_logs_extra_loss_ranks_per_task_and_gates(tmp_path):
    model = router_model()
    callback = RankDynamicsCallback(every=3)
    trainer = RanklabTrainer(model=model, args=training_args(tmp_path, 6, logging_steps=3, per_device_train_batch_size=4),
                             train_dataset=Dataset.from_list(task_rows(32)), callbacks=[callback])
    assert trainer.callback_handler.callbacks[0] is callback  # ahead of any report_to tracker
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all(h["extra_loss"] > 0 for h in logged)
    assert all({"router/chosen_rank/low", "router/chosen_rank/high", "router/entropy"} <= set(h) for h in logged)
    assert all(0 < h["router/entropy"] <= h["router/entropy_max"] for h in logged)
    history = callback.history
    assert sorted(set(history["task"].dropna())) == [0, 1] and sorted(set(history["step"])) == [0, 3, 6]
    layer = next(iter(ranklab.adapter_layers(model).values()))
    assert not layer.hook_gates._forward_hooks  # gate hooks removed at the end of training


def test_dylora_keeps_its_sampled_rank_across_accumulated_micro_batches(tmp_path):
    model = classifier()
    ranklab.attach(model, ranklab.make_config("dylora", r_max=8, target_modules=["q_proj", "v_proj"],
                                              modules_to_save=["score"]))
    layer = next(iter(ranklab.adapter_layers(model).values()))
    ranks, steps = [], []
    layer.register_forward_hook(lambda module, args, out: ranks.append(module.last_rank) if module.training else None)
    layer.after_optimizer_step = steps.append  # the trainer's per-step hook reaches every layer
    rows = [{k: v for k, v in r.items() if k != "task_id"} for r in task_rows(48)]
    args = training_args(tmp_path, 6, gradient_accumulation_steps=2, per_device_train_batch_size=4)
    RanklabTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows)).train()
    assert len(ranks) == 12 and all(ranks[i] == ranks[i + 1] for i in range(0, 12, 2))
    assert len(set(ranks)) > 1 and steps == [1, 2, 3, 4, 5, 6]


def test_trl_sft_trainer_routes_tasks_with_gradient_checkpointing(tmp_path):
    trl = pytest.importorskip("trl")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ranklab.context import current_task
    from ranklab.integrations import with_ranklab

    words = ["[PAD]", "[BOS]", "[EOS]"] + [f"w{i}" for i in range(VOCAB - 3)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[PAD]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", eos_token="[EOS]")
    model = causal_lm()
    ranklab.attach(model, ranklab.make_config("rank_router", r=4, n_tasks=2, contrastive_weight=0.1,
                                              target_modules=["q_proj", "v_proj"]))
    text = [{"text": " ".join(f"w{(s + (t + 1) * j) % 40}" for j in range(8)), "task_id": t}
            for s in range(12) for t in (0, 1)]
    seen = []
    layer = next(iter(ranklab.adapter_layers(model).values()))
    layer.register_forward_hook(lambda module, args, out: seen.append(current_task()))
    args = trl.SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
                         logging_steps=3, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
                         gradient_checkpointing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' own deprecation notices
        trainer = with_ranklab(trl.SFTTrainer)(model=model, args=args, train_dataset=Dataset.from_list(text),
                                               processing_class=tokenizer)
        trainer.train()
    assert set(seen) == {0, 1}  # forward and checkpointed recomputation both ran inside a task
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and logged[-1]["extra_loss"] > 0


def test_the_example_trains_a_tiny_llama_and_shrinks_adalora_to_its_budget(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "hf_trainer_adalora.py"
    spec = importlib.util.spec_from_file_location("hf_trainer_adalora", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.main(steps=20, output_dir=str(tmp_path / "out"), plots=str(tmp_path / "figs"))
    assert out["initial_budget"] == 8 * 8 and out["budget"] == out["target_budget"] == 2 * 8
    assert out["losses"][-1] < out["losses"][0]
    assert (tmp_path / "figs" / "adalora_numerical_rank.pdf").is_file()


def test_gate_monitor_counts_training_tokens_without_padding():
    from ranklab.inspect import RouterProbe
    from ranklab.integrations import GateMonitor

    model = classifier()
    ranklab.attach(model, ranklab.make_config("mor", r=4, n_experts=3, target_modules=["q_proj"],
                                              modules_to_save=["score"]))
    ids = torch.randint(3, VOCAB, (3, LENGTH), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0  # padding the gates must not count
    monitor = GateMonitor(model)
    model.eval()
    model(input_ids=ids, attention_mask=mask)  # evaluation: not a training statistic
    assert monitor.metrics() == {}
    model.train()
    with RouterProbe(model) as probe:
        probe.token_mask = mask
        model(input_ids=ids, attention_mask=mask)
    metrics = monitor.metrics()
    names = list(probe.layers)
    gates = [probe.token_gates(n) for n in names]
    assert all(len(g) == int(mask.sum()) for g in gates)
    entropy = np.mean([float(-(g * np.log(g)).sum(1).mean()) for g in gates])
    assert metrics["router/entropy"] == pytest.approx(entropy, rel=1e-5)
    assert metrics["router/max_load"] == pytest.approx(np.mean([g.mean(0).max() for g in gates]), rel=1e-5)
    assert metrics["router/entropy_max"] == pytest.approx(np.log(3))
    monitor.reset()
    assert monitor.metrics() == {}
    monitor.remove()
    model(input_ids=ids, attention_mask=mask)
    assert monitor.metrics() == {}
