"""What the reproduction protocol needs from training: length-grouped batches, MoRE's sampling,
fixed validation subsets and full test splits, predictions in row order, the step-0 callback,
and the task-embedding study's permutation test."""
from itertools import combinations

import numpy as np
import pytest
import torch

from ranklab.data import MultiTaskSampler
from ranklab.data.multitask import length_grouped_batches
from ranklab.experiments.results.embedding_study import group_test, study
from ranklab.train import TrainConfig, train
from ranklab.train.evaluation import predict_tasks
from ranklab.train.synthetic import synthetic_task, tiny_roberta
from ranklab.train.tasks import epoch_plan


def test_length_grouped_batches_cover_every_row_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, 2000)
    order = rng.permutation(2000).tolist()
    batches = length_grouped_batches(order, lengths, 16, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(2000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    plain = sum(len(b) * lengths[order[i:i + 16]].max() for i, b in zip(range(0, 2000, 16), batches))
    assert padded < 0.75 * plain  # grouped batches pad far less than random ones
    assert batches != sorted(batches, key=lambda b: -lengths[b].max())  # the batch order stays random


def test_epoch_plan_groups_by_length_deterministically():
    config = TrainConfig(batch_size=8, group_by_length=True, seed=3)
    lengths = [np.arange(100) % 37]
    first, again = epoch_plan([100], config, 0, lengths), epoch_plan([100], config, 0, lengths)
    assert first == again and first != epoch_plan([100], config, 1, lengths)
    assert sorted(i for _, b in first for i in b) == list(range(100))
    with pytest.raises(ValueError, match="lengths"):
        epoch_plan([100], config, 0)
    multi = epoch_plan([50, 30], TrainConfig(batch_size=8, group_by_length=True, sampling="softmax", tasks=["a", "b"]),
                       0, [np.arange(50), np.arange(30)])
    assert all(len(set(np.arange(50 if t == 0 else 30)[b] // 8)) <= 2 for t, b in multi)  # neighbours in length


def test_softmax_sampling_is_mores_near_uniform_rule():
    sizes = [8051, 2373, 2738, 2331, 4305, 4128, 1701]
    probs = np.array(list(MultiTaskSampler(sizes, 16, strategy="softmax").probabilities.values()))
    expected = np.exp(np.array(sizes) / sum(sizes))
    np.testing.assert_allclose(probs, expected / expected.sum())
    assert probs.max() / probs.min() < np.e  # near uniform, unlike proportional sampling
    proportional = np.array(list(MultiTaskSampler(sizes, 16).probabilities.values()))
    assert proportional.max() / proportional.min() > 4


def test_validation_subset_is_the_same_for_every_seed_and_test_is_complete(tmp_path):
    from ranklab.backbones import load_backbone
    from ranklab.data import write_glue_fixture
    from ranklab.train.tasks import prepare_tasks

    from ranklab.data import load_task

    write_glue_fixture(tmp_path / "glue", ["sst2"], rows=200)
    full_test = len(load_task("sst2", data_dir=tmp_path / "glue")["test"])
    _, tokenizer = load_backbone("tiny-random", 2)
    seen = []
    for seed in (1, 2):
        config = TrainConfig(tasks=["sst2"], data_dir=str(tmp_path / "glue"), max_eval=10, max_train=20, seed=seed)
        (task,), _ = prepare_tasks(config, tokenizer)
        seen.append((list(task.validation["input_ids"]), list(task.train["input_ids"]), len(task.test)))
    assert seen[0][0] == seen[1][0] and len(seen[0][0]) == 10  # one validation subset for all seeds
    assert seen[0][1] != seen[1][1]  # the training subset follows the seed
    assert seen[0][2] == full_test > 10  # the full test split (the fixture's GLUE validation file), uncapped


def test_predictions_come_back_in_row_order():
    torch.manual_seed(0)
    model = tiny_roberta(2).eval()
    task = synthetic_task(n_train=8, n_eval=37)
    for i, row in enumerate(task.test):  # rows of different lengths, so sorting reorders them
        row["input_ids"] = row["input_ids"][: 3 + i % 9] + [2]
        row["attention_mask"] = [1] * len(row["input_ids"])
    def pad(rows):  # pad id 1, as tiny RoBERTa's
        width = max(len(r["input_ids"]) for r in rows)
        ids = [r["input_ids"] + [1] * (width - len(r["input_ids"])) for r in rows]
        mask = [r["attention_mask"] + [0] * (width - len(r["attention_mask"])) for r in rows]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
                "labels": torch.tensor([r["label"] for r in rows])}

    outputs, labels = predict_tasks(model, [task], pad, split="test", batch_size=5)[task.name]
    with torch.no_grad():
        one_by_one = [model(input_ids=torch.tensor([r["input_ids"]])).logits[0].numpy() for r in task.test]
    np.testing.assert_allclose(outputs, np.stack(one_by_one), rtol=1e-5, atol=1e-5)
    assert labels.tolist() == [r["label"] for r in task.test]


def test_callbacks_see_the_initial_model_once(tmp_path):
    steps = []
    config = TrainConfig(method="lora", adapter={"r": 2}, tasks=["synthetic"], max_steps=4, eval_every=2, quiet=True,
                         output=str(tmp_path / "run"), batch_size=8)
    train(config, tasks=[synthetic_task()], model_fn=tiny_roberta, callbacks=[lambda s, m: steps.append(s)])
    assert steps == [0, 1, 2, 3, 4]


def test_sentiment_group_test_finds_a_planted_cluster_and_not_noise():
    names = ["movie", "amazon", "tweet", "nyt", "trec", "sms_spam", "bbc"]
    rng = np.random.default_rng(0)
    shared = rng.normal(size=64)
    tables = {}
    for seed in (1, 2, 3):
        for module in ("query", "value"):
            table = rng.normal(size=(7, 64))
            table[:4] += 2.5 * shared  # the four sentiment tasks share a direction
            tables[(seed, module)] = table
    planted = study(tables, names)
    assert planted["test"]["p_value"] == pytest.approx(1 / 35) and planted["test"]["statistic"] > 0.3
    assert len(planted["points"]) == 7 * 2 * 3
    noise = study({k: rng.normal(size=(7, 64)) for k in tables}, names)
    assert noise["test"]["p_value"] > 1 / 35
    matrix = np.eye(7)
    assert group_test(matrix, [0, 1, 2, 3])["n_arrangements"] == len(list(combinations(range(7), 4)))
    with pytest.raises(ValueError, match="a group needs"):
        group_test(matrix, [0])
