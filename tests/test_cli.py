"""`ranklab train` flags are generated from TrainConfig and every method's config fields."""
import dataclasses

import pytest

from ranklab.cli import build_parser, main
from ranklab.train import TrainConfig
from ranklab.train.commands import config_from_args, method_config_classes


def parse(*argv: str) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *argv]))


@pytest.mark.parametrize("argv, expected", [
    ([], TrainConfig()),
    (["--method", "emd", "--a", "4", "--b", "12", "--task", "movie", "--backbone", "minilm-l6", "--output", "runs/emd"],
     TrainConfig(method="emd", adapter={"a": 4, "b": 12}, output="runs/emd")),
    (["--method", "dylora", "--r-min", "2", "--r-max", "6", "--lr", "1e-3", "--epochs", "2", "--seed", "3"],
     TrainConfig(method="dylora", adapter={"r_min": 2, "r_max": 6}, lr=1e-3, epochs=2, seed=3)),
    (["--method", "rank_router", "--r", "16", "--selection", "soft", "--task", "movie,trec", "--sampling", "uniform",
      "--option", "contrastive_weight=0.1"],
     TrainConfig(method="rank_router", adapter={"r": 16, "selection": "soft", "contrastive_weight": 0.1},
                 tasks=["movie", "trec"], sampling="uniform")),
    (["--method", "mor", "--n-experts", "4", "--r", "8", "--target-modules", "query,key,value", "--quiet"],
     TrainConfig(method="mor", adapter={"n_experts": 4, "r": 8, "target_modules": ["query", "key", "value"]},
                 quiet=True)),
    (["--method", "adalora", "--init-r", "12", "--target-r", "8", "--max-steps", "50", "--resume", "--output", "o"],
     TrainConfig(method="adalora", adapter={"init_r": 12, "target_r": 8}, max_steps=50, resume=True, output="o")),
    (["--method", "lora", "--r", "4", "--alpha", "8", "--dropout", "0.1", "--max-train", "100", "--max-eval", "50",
      "--patience", "2", "--eval-every", "10", "--mixed-precision", "bf16", "--weight-decay", "0.1",
      "--warmup-ratio", "0.1", "--batch-size", "8", "--max-length", "64", "--data-dir", "d", "--cache-dir", "c"],
     TrainConfig(method="lora", adapter={"r": 4, "alpha": 8.0, "dropout": 0.1}, max_train=100, max_eval=50, patience=2,
                 eval_every=10, mixed_precision="bf16", weight_decay=0.1, warmup_ratio=0.1, batch_size=8,
                 max_length=64, data_dir="d", cache_dir="c")),
])
def test_command_lines_give_the_same_config_as_before(argv, expected):
    assert parse(*argv) == expected


def test_every_train_config_field_has_a_flag_with_its_default():
    parsed = build_parser().parse_args(["train", "--no-eval-test", "--max-grad-norm", "none", "--rank-every", "5",
                                        "--eval-batch-size", "16", "--temperature", "3", "--head-module", "head"])
    config = config_from_args(parsed)
    assert (config.eval_test, config.max_grad_norm, config.rank_every) == (False, None, 5)
    assert (config.eval_batch_size, config.temperature, config.head_module) == (16, 3.0, "head")
    defaults = config_from_args(build_parser().parse_args(["train"]))
    assert defaults == TrainConfig()  # no default copied by hand can drift
    flagged = {a.dest for a in _train_parser()._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} - flagged == {"adapter"}


def _train_parser():
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return subparsers.choices["train"]


def test_help_shows_defaults_and_every_methods_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.0005)" in text and "(default: minilm-l6)" in text
    assert "--a A" in text and "[emd: 8]" in text and "--init-r" in text  # EMD's and AdaLoRA's own options
    assert "--k K Rank of the toy update. [toy: 4]" in text  # the toy method of tests/toy_method.py
    # every method's r: its own help text and its default, read from the registry (no list here)
    for method, config_class in method_config_classes().items():
        fields = {f.name: f for f in dataclasses.fields(config_class)}
        if "r" in fields:
            own = config_class.option_help.get("r", fields["r"].metadata["help"])
            assert f"{own} [" in text and f"{method}: {fields['r'].default}" in text


def test_a_shared_option_shows_each_methods_meaning(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    alpha = text[text.rindex("--alpha ALPHA"):text.rindex("--dropout DROPOUT")]
    assert "s = alpha / r_ref" in alpha and "[emd: 16.0]" in alpha  # EMD's own meaning of alpha
    assert "s = alpha / rank." in alpha and "lora: 16.0" in alpha
    start = text.rindex("--r R ")
    r = text[start:text.index("--", start + 5)]
    assert "Rank of the update. [lora: 8" in r and "Rank of the shared A and B. [mor: 32]" in r


@pytest.mark.parametrize("argv, message", [
    (["--method", "emd", "--r", "4"], "unknown emd config keys ['r']; valid keys: ['a', 'alpha', 'b'"),
    (["--method", "nope"], "invalid choice: 'nope' (choose from 'adalora', 'dylora', 'emd', 'lora'"),
    (["--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
    (["--sampling", "random"], "invalid choice: 'random'"),
])
def test_bad_input_is_one_line_with_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        code = main(["train", *argv])
        raise SystemExit(code)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
