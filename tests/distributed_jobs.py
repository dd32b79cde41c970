"""Training jobs for tests/test_distributed.py, run in one process or as several:

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_jobs.py JOBS.json

(without a GPU ranklab runs those processes on the CPU).  Each job trains a tiny RoBERTa on
synthetic tasks and writes, per process, what the process saw (task of every training forward,
DyLoRA's rank, AdaLoRA's total rank after every step) to
``<job out>/logs/proc<k>.json`` - outside the run folder, whose files only the main process writes.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import ranklab
from ranklab.train import TrainConfig, train
from ranklab.train.synthetic import synthetic_task, tiny_roberta


def job_tasks(n_tasks: int) -> list:
    return [synthetic_task(f"t{i}", num_classes=2 + i, n_train=96, n_eval=40, seed=10 * i) for i in range(n_tasks)]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    out = Path(job["out"])
    tasks = job_tasks(job.get("n_tasks", 1))
    seen: dict[str, list] = {"tasks": [], "dylora_rank": [], "adalora_total": []}

    def model_fn(num_labels: int):
        model = tiny_roberta(num_labels, dropout=0.0)
        model.register_forward_pre_hook(
            lambda module, args: seen["tasks"].append(ranklab.current_task()) if module.training else None)
        return model

    def after_step(step: int, model) -> None:
        dylora = [la for la in ranklab.adapter_layers(model).values() if hasattr(la, "train_rank")]
        if dylora:
            seen["dylora_rank"].append(dylora[0].train_rank)
        if job["method"] == "adalora":
            from ranklab.train.adalora import rank_snapshot

            seen["adalora_total"].append(rank_snapshot(model, step)["total"])
        if step == job.get("crash_at"):
            os._exit(3)  # a kill: no clean-up, no final save

    config = TrainConfig(method=job["method"], adapter=job.get("adapter", {}), tasks=[t.name for t in tasks],
                         batch_size=job.get("batch_size", 16), max_steps=job["max_steps"],
                         eval_every=job.get("eval_every", 4), lr=job.get("lr", 1e-2), seed=job.get("seed", 0),
                         gradient_accumulation_steps=job.get("accum", 1), sampling="uniform", quiet=True,
                         output=str(out / "run"), resume=job.get("resume", False), warmup_ratio=0.0,
                         mixed_precision=job.get("mixed_precision", "no"))
    result = train(config, tasks=tasks, model_fn=model_fn, callbacks=[after_step])
    from accelerate import PartialState

    state = PartialState()
    summary = {"process": state.process_index, "world": state.num_processes, "record": result.record, **seen}
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"proc{state.process_index}.json").write_text(json.dumps(summary, default=float))
    return summary


if __name__ == "__main__":
    for job in json.loads(Path(sys.argv[1]).read_text()):
        run_job(job)
