"""The CLI checks its input before spending any work: one line naming what is valid, exit code 2."""
import subprocess
import sys

import pytest

from ranklab.cli import main
from ranklab.train import NonFiniteLossError, TrainConfig, train
from ranklab.train.synthetic import synthetic_task, tiny_roberta

from .test_data_offline import synthetic  # noqa: F401  (synthetic wheels in a private cache)


def run_cli(argv, capsys):
    try:
        code = main(["train", "--quiet", *argv])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("make_argv, message", [
    (lambda tmp: ["--output", str(tmp / "file.txt" / "run")], "which is a file"),  # under a file
    (lambda tmp: ["--output", str(tmp / "file.txt")], "is a file, not a folder"),
    (lambda tmp: ["--output", "/proc/ranklab-cannot-write-here"], "cannot write in"),
    (lambda tmp: ["--cache-dir", str(tmp / "file.txt")], "--cache-dir"),
    (lambda tmp: ["--batch-size", "8", "--gradient-accumulation-steps", "3"], "does not split into 3 equal"),
    (lambda tmp: ["--data-dir", str(tmp / "nonexistent")], "is not a folder"),
    (lambda tmp: ["--threads", "-1"], "threads must be >= 1"),
    (lambda tmp: ["--lr", "inf"], "lr must be a finite number"),
    (lambda tmp: ["--lr", "nan"], "lr must be a finite number"),
])
def test_bad_input_fails_before_any_work(make_argv, message, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("not a folder")
    code, err = run_cli(make_argv(tmp_path), capsys)
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_resume_from_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    config = dict(method="lora", adapter={"r": 4}, tasks=["synthetic"], max_steps=4, eval_every=2, lr=1e-2,
                  batch_size=16, quiet=True, output=str(tmp_path / "run"))
    train(TrainConfig(**config), tasks=[synthetic_task()], model_fn=tiny_roberta)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(ValueError, match="checkpoint .* is damaged .*--overwrite"):
        train(TrainConfig(**{**config, "resume": True}), tasks=[synthetic_task()], model_fn=tiny_roberta)
    err = subprocess.run([sys.executable, "-m", "ranklab.cli", "train", "--resume", "--output", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300).stderr  # refused before any loading
    assert "is damaged" in err and len(err.strip().splitlines()) == 1


def test_nan_message_names_no_checkpoint_that_does_not_exist(tmp_path):
    def poisoned(num_labels):
        model = tiny_roberta(num_labels)
        model.classifier.register_forward_hook(lambda m, i, out: out * float("nan") if m.training else None)
        return model
    config = TrainConfig(method="lora", adapter={"r": 4}, tasks=["synthetic"], max_steps=4, quiet=True,
                         output=str(tmp_path / "run"))
    with pytest.raises(NonFiniteLossError) as error:
        train(config, tasks=[synthetic_task()], model_fn=poisoned)
    assert "no checkpoint saved yet" in str(error.value) and "last good checkpoint" not in str(error.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_refused_run_leaves_no_output_folder_behind(synthetic, tmp_path, capsys):  # noqa: F811
    """--target-modules matching nothing is refused after the model is built: exit 2, one line, and
    the output folder the run would have created does not exist (an existing one is kept as it was)."""
    out = tmp_path / "run"
    code, err = run_cli(["--backbone", "tiny-random", "--task", "movie", "--max-steps", "2", "--output", str(out),
                         "--target-modules", "no_such_module"], capsys)
    assert code == 2 and "no_such_module" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    code, _ = run_cli(["--backbone", "tiny-random", "--task", "movie", "--max-steps", "2", "--output", str(kept),
                       "--target-modules", "no_such_module"], capsys)
    assert code == 2 and kept.is_dir()


def test_results_on_a_file_or_an_empty_folder_says_so_on_stderr(tmp_path, capsys):
    (tmp_path / "record.json").write_text("{}")
    for target, message, expected in ((tmp_path / "record.json", "is a file", 2),
                                      (tmp_path / "missing", "no folder", 2),
                                      (tmp_path / "empty", "no results records", 1)):
        (tmp_path / "empty").mkdir(exist_ok=True)
        try:
            code = main(["results", str(target)])
        except SystemExit as stop:
            code = stop.code
        captured = capsys.readouterr()
        assert code == expected and message in captured.err and captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1


def test_accumulation_steps_must_divide_the_batch():
    with pytest.raises(ValueError, match=r"batch_size 8 does not split into 3 equal micro-batches .* \[1, 2, 4, 8\]"):
        TrainConfig(batch_size=8, gradient_accumulation_steps=3)
    assert TrainConfig(batch_size=12, gradient_accumulation_steps=3).gradient_accumulation_steps == 3
