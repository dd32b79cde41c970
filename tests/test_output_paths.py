"""Output paths of `inspect`, `compress` and `reproduce`: bad ones are refused in one line before
any work, and nothing that was there is changed (checked by hashing every file before and after)."""
import contextlib
import hashlib
import io
import json
from pathlib import Path

import pytest

import ranklab
from ranklab.cli import main
from ranklab.output_paths import check_output_file, check_output_folder

from .conftest import randomize_adapters
from .test_compression import classifier

UNWRITABLE = Path("/proc/ranklab-cannot-write-here")  # not even root can create files in /proc


def tree_hash(root: Path) -> dict[str, str]:
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """A PEFT LoRA folder (EMD exported) and a 2-task rank_router folder (ranklab's own format)."""
    root = tmp_path_factory.mktemp("adapters")
    model = classifier()
    ranklab.attach(model, ranklab.make_config("emd", a=2, b=4, target_modules=["q_proj", "v_proj"]))
    randomize_adapters(model, std=0.3)
    ranklab.export_peft(model, root / "peft")
    router = classifier()
    ranklab.attach(router, ranklab.make_config("rank_router", r=4, n_tasks=2, selection="soft",
                                               target_modules=["q_proj", "v_proj"]))
    randomize_adapters(router, std=0.3)
    ranklab.save_adapters(router, root / "router")
    return root


def refused(code: int, err: str, *words: str) -> None:
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)


def test_compress_never_overwrites_what_is_there(adapters, tmp_path):
    source = adapters / "peft"
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    before = {p: tree_hash(p) for p in (source, kept)}
    refused(*run("compress", str(source), "--output", str(kept))[::2], "not empty", "--overwrite")
    refused(*run("compress", str(source), "--output", str(source))[::2], "is the input")
    refused(*run("compress", str(source), "--output", str(source), "--overwrite")[::2], "is the input")
    refused(*run("compress", str(source), "--output", str(source / "inside"))[::2], "is the input")
    file = tmp_path / "result.txt"
    file.write_text("a file")
    refused(*run("compress", str(source), "--output", str(file))[::2], "is a file")
    refused(*run("compress", str(source), "--output", str(file / "below"))[::2], "which is a file")
    refused(*run("compress", str(source), "--output", str(UNWRITABLE / "x"))[::2], "cannot write")
    assert {p: tree_hash(p) for p in (source, kept)} == before
    assert file.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["kept", "result.txt"]
    code, out, _ = run("compress", str(source), "--output", str(kept), "--overwrite")  # asked for: replaced
    assert code == 0 and "wrote a PEFT LoRA" in out and not (kept / "notes.txt").exists()
    assert (kept / "adapter_model.safetensors").is_file()


def test_compress_of_a_multi_task_adapter_says_to_pass_task(adapters, tmp_path):
    refused(*run("compress", str(adapters / "router"), "--output", str(tmp_path / "one"))[::2], "--task", "0..1")
    assert run("compress", str(adapters / "router"), "--output", str(tmp_path / "one"), "--task", "1")[0] == 0


def test_inspect_outputs_are_checked_before_the_audit(adapters, tmp_path):
    source = adapters / "peft"
    file = tmp_path / "exists.csv"
    file.write_text("old")
    refused(*run("inspect", str(source), "--csv", str(file))[::2], "exists", "--overwrite")
    refused(*run("inspect", str(source), "--csv", str(file / "below.csv"))[::2], "which is a file")
    refused(*run("inspect", str(source), "--csv", str(tmp_path))[::2], "is a folder")
    refused(*run("inspect", str(source), "--plots", str(file))[::2], "is a file")
    refused(*run("inspect", str(source), "--plots", str(source))[::2], "is the input")
    refused(*run("inspect", str(source), "--csv", str(source / "report.csv"))[::2], "is the input")
    assert file.read_text() == "old"
    code, out, _ = run("inspect", str(source), "--csv", str(file), "--overwrite", "--plots", str(tmp_path / "plots"))
    assert code == 0 and file.read_text().startswith("name,") and any((tmp_path / "plots").glob("*.png"))


def test_a_peft_config_that_is_not_an_object_is_one_line(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(["peft_type", "LORA"]))
    refused(*run("inspect", str(folder))[::2], "JSON list")


@pytest.mark.parametrize("option", ["--results", "--figures"])
def test_reproduce_refuses_an_output_below_a_file_before_any_progress_bar(tmp_path, option):
    file = tmp_path / "file"
    file.write_text("x")
    code, out, err = run("reproduce", "--scale", "smoke", option, str(file / "below"))
    refused(code, err, option, "which is a file")
    assert out == ""  # nothing printed first: the error is the last and only line
    code, out, err = run("reproduce", "--scale", "smoke", "--miniature", option, str(file / "below"))
    refused(code, err, option)
    refused(*run("reproduce", "--scale", "smoke", option, str(UNWRITABLE / "r"))[::2], "cannot write")


def test_the_checks_themselves(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("a")
    assert check_output_folder(tmp_path / "new" / "deeper") == (tmp_path / "new" / "deeper").resolve()
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert check_output_folder(tmp_path / "full", "--results", allow_existing=True) == (tmp_path / "full").resolve()
    with pytest.raises(ValueError, match="not empty"):
        check_output_folder(tmp_path / "full")
    assert check_output_file(tmp_path / "full" / "a", "--csv", overwrite=True)
    with pytest.raises(ValueError, match="exists"):
        check_output_file(tmp_path / "full" / "a", "--csv")
