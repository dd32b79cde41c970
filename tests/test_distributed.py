"""`accelerate launch --multi_gpu --num_processes 2` on a machine without a GPU: two CPU processes
(gloo).  The same global batches, steps and schedule as one process, one writer, consistent
per-step choices across processes, and resume after a kill.  Run with `make test-dist` (CI does)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .distributed_jobs import run_job

pytestmark = pytest.mark.distributed
ROOT = Path(__file__).resolve().parents[1]
PORT = iter(range(29600, 29700))


def launch(args: list[str], expect_ok: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(next(PORT)), *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_jobs(jobs: list[dict], folder: Path, **kwargs) -> subprocess.CompletedProcess:
    path = folder / f"jobs-{len(list(folder.glob('jobs-*')))}.json"
    path.write_text(json.dumps(jobs))
    return launch([str(ROOT / "tests" / "distributed_jobs.py"), str(path)], **kwargs)


def logs(out: Path) -> list[dict]:
    return [json.loads((out / "logs" / f"proc{k}.json").read_text()) for k in range(2)]


def assert_same_run(two: dict, one: dict, tol: float = 1e-4) -> None:
    """Same steps, evaluation points and schedule; metrics equal within float-reduction noise."""
    a, b = two["record"], one["record"]
    assert (a["steps"], a["total_steps"], a["steps_per_epoch"]) == (b["steps"], b["total_steps"], b["steps_per_epoch"])
    assert [e["step"] for e in a["evals"]] == [e["step"] for e in b["evals"]]
    for x, y in zip(a["evals"], b["evals"]):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=tol, abs=tol)
        assert x["score"] == pytest.approx(y["score"], abs=0.03)  # a borderline example may flip
    for task, metrics in b["test"].items():
        for name, value in metrics.items():
            assert a["test"][task][name] == pytest.approx(value, abs=0.03)


JOBS = {
    "lora": dict(method="lora", adapter={"r": 4}, max_steps=8),
    "lora_accum": dict(method="lora", adapter={"r": 4}, max_steps=8, accum=2),
    "router": dict(method="rank_router", adapter={"r": 4, "contrastive_weight": 0.1}, n_tasks=2, max_steps=8),
    "dylora": dict(method="dylora", adapter={"r_max": 4}, max_steps=8, accum=2),
    "adalora": dict(method="adalora", adapter={"init_r": 6, "target_r": 2}, max_steps=12),
}


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    run_jobs([{**job, "out": str(folder / name)} for name, job in JOBS.items()], folder)
    return folder


@pytest.mark.parametrize("name", ["lora", "lora_accum", "router"])
def test_two_processes_equal_one_process_with_the_same_global_batch(name, two_process_runs, tmp_path):
    two = logs(two_process_runs / name)
    assert [p["world"] for p in two] == [2, 2]
    one = run_job({**JOBS[name], "accum": 1, "out": str(tmp_path / name)})  # one process, no accumulation
    assert one["world"] == 1
    assert_same_run(two[0], one)


@pytest.mark.parametrize("name", list(JOBS))
def test_only_the_main_process_writes_the_run_folder(name, two_process_runs):
    run = two_process_runs / name / "run"
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert files == ["adapter", *sorted(f"adapter/{f}" for f in os.listdir(run / "adapter")), "checkpoint.pt",
                     "predictions.json", "record.json"]
    assert not [f for f in files if Path(f).name.startswith(".")]  # no temporary or partial file left
    record = json.loads((run / "record.json").read_text())
    assert record["status"] == "completed" and record == logs(two_process_runs / name)[0]["record"] | {
        "adapter_path": "adapter", "predictions_path": "predictions.json"}
    predictions = json.loads((run / "predictions.json").read_text())  # gathered once: one row per test example
    for task, rows in predictions["tasks"].items():
        assert len(rows["predicted"]) == len(rows["labels"]) > 0


def test_every_process_sees_the_same_task_and_choices_at_every_step(two_process_runs):
    router = logs(two_process_runs / "router")
    assert router[0]["tasks"] == router[1]["tasks"] and set(router[0]["tasks"]) == {0, 1}
    dylora = logs(two_process_runs / "dylora")
    assert dylora[0]["dylora_rank"] == dylora[1]["dylora_rank"] and len(set(dylora[0]["dylora_rank"])) > 1
    assert len(dylora[0]["tasks"]) == 2 * 8  # two micro-batches per step, one rank per step
    adalora = logs(two_process_runs / "adalora")
    assert adalora[0]["adalora_total"] == adalora[1]["adalora_total"]
    assert adalora[0]["adalora_total"][-1] < adalora[0]["adalora_total"][0]  # the budget shrank


def test_resume_of_a_killed_two_process_run_equals_an_uninterrupted_one(two_process_runs, tmp_path):
    job = {**JOBS["lora"], "eval_every": 2, "out": str(tmp_path / "killed")}
    killed = run_jobs([{**job, "crash_at": 5}], tmp_path, expect_ok=False)
    assert killed.returncode != 0 and (tmp_path / "killed" / "run" / "checkpoint.pt").is_file()
    run_jobs([{**job, "resume": True}], tmp_path)
    run_jobs([{**job, "out": str(tmp_path / "whole")}], tmp_path)
    resumed, whole = logs(tmp_path / "killed")[0]["record"], logs(tmp_path / "whole")[0]["record"]
    assert resumed["evals"] == whole["evals"] and resumed["test"] == whole["test"]


def test_reproduce_smoke_under_two_processes(tmp_path):
    launch(["-m", "ranklab.cli", "reproduce", "--scale", "smoke", "--recipes", "single_task",
            "--results", str(tmp_path / "results"), "--figures", str(tmp_path / "figures")])
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert "RESULTS.md" in written and "single_task_results.png" in written
    assert not [n for n in written if n.startswith(".")]
    summary = json.loads((tmp_path / "figures" / "results_summary.json").read_text())
    seeds = summary["seeds"]["single_task"]  # the smoke scale's 4 methods x its reported seeds
    assert len(seeds) == 2 and len(summary["runs"]) == 4 * len(seeds) and all(r["steps"] > 0 for r in summary["runs"])


def test_causal_lm_mor_under_two_processes_equals_one_process(tmp_path):
    """Decoder-only (tiny GPT-2), MoR's token router on the FFN Conv1Ds, completion loss: two
    processes train and evaluate the same run as one process (same global batch).  trec_lm's
    completions all have two tokens, so the per-token weighting across processes is tested in
    test_train_causal_lm.py, not here."""
    args = ["train", "--objective", "causal-lm", "--task", "trec_lm", "--backbone", "tiny-gpt2", "--method", "mor",
            "--target-modules", "c_fc,c_proj", "--max-steps", "6", "--eval-every", "3", "--batch-size", "16",
            "--max-train", "128", "--max-eval", "64", "--max-test", "64", "--lr", "1e-2", "--warmup-ratio", "0",
            "--quiet"]
    launch(["-m", "ranklab.cli", *args, "--output", str(tmp_path / "two")])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "ranklab.cli", *args, "--output", str(tmp_path / "one")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two, one = (json.loads((tmp_path / name / "record.json").read_text()) for name in ("two", "one"))
    assert two["steps"] == one["steps"] == 6
    for x, y in zip(two["evals"], one["evals"], strict=True):
        assert x["step"] == y["step"]
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4)
        assert x["metrics"]["trec_lm"]["loss"] == pytest.approx(y["metrics"]["trec_lm"]["loss"], rel=1e-4)
    assert two["test"]["trec_lm"]["loss"] == pytest.approx(one["test"]["trec_lm"]["loss"], rel=1e-4)
    assert not [p.name for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]  # nothing half-written


EXIT_SCRIPT = """
import torch, torch.distributed as dist
from ranklab.distributed import is_main_process
is_main_process()  # ranklab's first use of Accelerate's state: creates the gloo process group
tensor = torch.ones(4)
for _ in range(20):
    dist.all_reduce(tensor)
assert tensor[0].item() == 2 ** 20
"""


def test_processes_exit_without_aborting(tmp_path):
    """Without ranklab's exit hook (ranklab.distributed.destroy_process_group_at_exit) the gloo
    process group outlived the interpreter and this script aborted with "terminate called without
    an active exception" in 4 of 10 torchrun runs (a bare all_reduce script: 24 of 30): ten clean
    runs in a row would happen by chance less than once in 100 without the hook."""
    script = tmp_path / "exit_check.py"
    script.write_text(EXIT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for _ in range(10):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--master_port", str(next(PORT)), str(script)]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "terminate called" not in result.stderr, result.stderr[-2000:]
