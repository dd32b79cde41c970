"""`ranklab results` shows every readable record and names each one it skips."""
import json

import pytest

from ranklab.cli import main
from ranklab.train import results_table
from ranklab.train.records import RECORD_FORMAT

GOOD = {"format": RECORD_FORMAT, "method": "lora", "backbone": "tiny-random", "tasks": ["movie"], "seed": 0,
        "status": "completed", "steps": 10, "params": {"adapter_params": 100, "head_params": 10},
        "main_metrics": {"movie": "accuracy"}, "best": {"score": 0.8, "step": 10, "metrics": {"movie": {"accuracy": 0.8}}},
        "test": {"movie": {"accuracy": 0.75}}, "wall_time_s": 1.0}


@pytest.fixture
def folder(tmp_path):
    for name, content in {"good": json.dumps(GOOD), "a_list": "[1, 2]", "no_params": json.dumps(
            {k: v for k, v in GOOD.items() if k != "params"}), "garbage": "\x00\x01 not json"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "record.json").write_text(content)
    return tmp_path


def test_bad_records_are_skipped_with_a_warning_naming_them(folder):
    with pytest.warns(UserWarning) as caught:
        table = results_table(folder)
    assert list(table["run"]) == ["good"] and table["test movie/accuracy"].iloc[0] == 0.75
    skipped = " ".join(str(w.message) for w in caught)
    for name in ("a_list", "no_params", "garbage"):
        assert f"{folder / name / 'record.json'}" in skipped


def test_results_command_shows_the_rest(folder, capsys):
    with pytest.warns(UserWarning):
        assert main(["results", str(folder)]) == 0
    assert "good" in capsys.readouterr().out
