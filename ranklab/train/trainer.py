"""One trainer for single- and multi-task runs, on Hugging Face Accelerate.

Each batch holds one task; its forward runs inside ``ranklab.use_task(t)`` so routers and the
per-task heads see the task.  Evaluation (every epoch or every N steps) picks the best model on
the mean of the tasks' main metrics, saves a checkpoint, and may stop early.  A run folder holds
``record.json``, ``checkpoint.pt`` (last eval) and ``adapter/`` (best weights).
"""
from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch import nn

from ..atomic import write_json
from ..context import continuing_step, use_task
from ..distributed import cpu_processes, destroy_process_group_at_exit, micro_batches, share
from ..hardware import hardware_info
from .checkpoint import (
    CHECKPOINT_NAME,
    check_output_folder,
    load_checkpoint,
    load_trainable_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state,
)
from .config import TrainConfig
from .causal_lm import completion_loss, completion_predictions
from .evaluation import evaluate_tasks, predict_tasks, predicted_labels, task_metrics
from .plateau import plateau_update
from .records import ADAPTER_DIR, PREDICTIONS_FORMAT, PREDICTIONS_NAME, RECORD_FORMAT, RECORD_NAME, package_versions
from .runtime import MethodRuntime, runtime_for
from .setup import optimizer_groups, task_loss
from .tasks import TaskData, check_objective, collate, epoch_plan, prepare_tasks
from .tracking import Tracker

Callback = Callable[[int, nn.Module], Any]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped and its last good checkpoint remains."""


@dataclass
class RunResult:
    record: dict[str, Any]
    model: nn.Module
    tasks: list[TaskData]
    output: Path | None
    collator: Callable | None = None  # batches the tasks' rows (for further evaluation or probing)

    @property
    def best(self) -> dict[str, Any]:
        return self.record["best"]


def train(config: TrainConfig, *, tasks: Sequence[TaskData] | None = None,
          model_fn: Callable[[int], nn.Module] | None = None, collator: Callable | None = None,
          callbacks: Sequence[Callback] = ()) -> RunResult:
    """Run ``config``.  By default tasks and backbone come from their names (ranklab.data and
    ranklab.backbones); tests and notebooks may pass prepared ``tasks`` and ``model_fn(num_labels)``.
    Callbacks are called as ``callback(step, model)`` once with step 0 before the first step of a
    new run (the initial adapter) and after every optimizer step."""
    from accelerate.utils import set_seed

    set_seed(config.seed)
    if tasks is None:
        from ..backbones import load_backbone
        from ..data import get_task

        check_objective(config)  # before any loading
        num_labels = None if config.causal_lm else get_task(config.tasks[0]).num_labels
        model, tokenizer = load_backbone(config.backbone, num_labels, seed=config.seed,
                                         attn_implementation=config.attn_implementation, objective=config.objective)
        tasks, collator = prepare_tasks(config, tokenizer)
    else:
        if model_fn is None:
            raise ValueError("give model_fn(num_labels) together with tasks")
        if [t.name for t in tasks] != list(config.tasks):
            raise ValueError(f"tasks {[t.name for t in tasks]} differ from config.tasks {config.tasks}")
        wrong = [t.name for t in tasks if t.objective != config.objective]
        if wrong:
            raise ValueError(f"tasks {wrong} are not {config.objective} tasks (TaskData.objective); "
                             f"set TrainConfig.objective to match")
        model = model_fn(tasks[0].num_labels)
        if collator is None and config.causal_lm:  # rows of different lengths: pad them (right, labels -100)
            from ..data.completion import CompletionCollator

            collator = CompletionCollator(getattr(getattr(model, "config", None), "pad_token_id", None) or 0)
    return Trainer(config, model, list(tasks), collator, callbacks).fit()


def _allow_new_precision(mixed_precision: str) -> None:
    """Accelerate keeps one precision per Python process; a notebook that trains in fp32 and then
    in bf16 needs it set again (its internal reset; the process group, if any, is kept)."""
    from accelerate.state import AcceleratorState

    current = AcceleratorState._shared_state.get("_mixed_precision")
    if current is not None and str(current) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


class Trainer:
    def __init__(self, config: TrainConfig, model: nn.Module, tasks: list[TaskData],
                 collator: Callable | None = None, callbacks: Sequence[Callback] = ()) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.config, self.tasks, self.collator, self.callbacks = config, tasks, collator, list(callbacks)
        self.output = Path(config.output) if config.output else None
        _allow_new_precision(config.mixed_precision)
        destroy_process_group_at_exit()
        # several processes: a multi-task step leaves the other tasks' heads unused, which DDP must allow
        ddp = DistributedDataParallelKwargs(find_unused_parameters=len(tasks) > 1)
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision, kwargs_handlers=[ddp],
                                       cpu=cpu_processes(), **Tracker.accelerator_options(config))
        created = self.output is not None and not self.output.exists()
        self._check_output()
        try:
            self._setup(model, tasks)
        except Exception:
            if created and self.accelerator.is_main_process and not any(self.output.iterdir()):
                self.output.rmdir()  # refused before any work (no module matched, ...): leave nothing behind
            raise

    def _setup(self, model: nn.Module, tasks: list[TaskData]) -> None:
        """Method, optimizer, schedule and the run's record (anything refused here leaves no folder)."""
        from transformers import get_linear_schedule_with_warmup

        config = self.config
        self.sizes = [len(t.train) for t in tasks]
        self.steps_per_epoch = len(self._plan(0))
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.runtime: MethodRuntime = runtime_for(config)
        model = self.runtime.setup(model, [t.num_labels for t in tasks], self.total_steps)
        if config.init_from:  # another run's adapter weights (its head stays behind: other labels)
            self.runtime.init_from(config.init_from)
        optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay), lr=config.lr)
        warmup = config.warmup_steps if config.warmup_steps is not None else int(config.warmup_ratio * self.total_steps)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, warmup, self.total_steps * self.accelerator.num_processes)  # accelerate steps it per process
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.step, self.bad_evals, self.stopped_early, self.elapsed = 0, 0, False, 0.0
        self.plateau_score: float | None = None  # the score that last reset patience
        self.best_state: dict[str, torch.Tensor] | None = None
        self.loss_sum, self.loss_count = 0.0, 0
        self.record = self._new_record(self.runtime.adapter_config, self.runtime.params)
        self.tracker = Tracker(config, self.accelerator, self.runtime)

    # --- set-up -----------------------------------------------------------------------------
    @property
    def unwrapped(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def _check_output(self) -> None:
        if self.output is None:
            if self.config.resume:
                raise ValueError("resume needs an output folder")
            return
        check_output_folder(self.output)
        ours = [self.output / CHECKPOINT_NAME, self.output / RECORD_NAME]
        if any(p.exists() for p in ours) and not (self.config.resume or self.config.overwrite):
            raise ValueError(f"{self.output} already holds a run; pass resume (--resume) to continue it "
                             "or overwrite (--overwrite) to start again")
        if self.config.overwrite and self.accelerator.is_main_process:
            for path in ours + [self.output / PREDICTIONS_NAME]:
                path.unlink(missing_ok=True)
            shutil.rmtree(self.output / ADAPTER_DIR, ignore_errors=True)
        self.accelerator.wait_for_everyone()  # no process starts while the main one clears the folder

    def _plan(self, epoch: int) -> list[tuple[int, list[int]]]:
        """Global batches: every process walks the same plan and takes its share of each batch."""
        lengths = [t.train_lengths() for t in self.tasks] if self.config.group_by_length else None
        return epoch_plan(self.sizes, self.config, epoch, lengths)

    def _new_record(self, adapter_config: dict[str, Any], params: dict[str, int]) -> dict[str, Any]:
        c = self.config
        return {
            "format": RECORD_FORMAT, "status": "running", "method": c.method, "adapter_config": adapter_config,
            "config": c.to_dict(), "backbone": c.backbone, "tasks": [t.name for t in self.tasks], "seed": c.seed,
            "main_metrics": {t.name: t.main_metric for t in self.tasks},
            "train_sizes": dict(zip([t.name for t in self.tasks], self.sizes)),
            "validation_sizes": {t.name: len(t.validation) for t in self.tasks},  # a score's standard error
            "params": params, "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "evals": [], "best": None, "test": None, "rank_history": [], "steps": 0,
            "selectable_from": self.runtime.selectable_from,  # evaluations before it are never the best
            "stopped_early": False, "wall_time_s": 0.0, "versions": package_versions(),
            "hardware": hardware_info(str(self.accelerator.mixed_precision)),
        }

    # --- one step ---------------------------------------------------------------------------
    def _forward_loss(self, task_id: int, rows: list[int]) -> torch.Tensor:
        task = self.tasks[task_id]
        inputs, labels = collate([task.train[i] for i in rows], self.collator, task.is_regression)
        inputs, labels = send_to_device(inputs, self.accelerator.device), labels.to(self.accelerator.device)
        with use_task(task_id):
            logits = self.model(**inputs).logits
            if task.is_causal_lm:  # per-token mean of this micro-batch; weighted by tokens in _train_step
                loss = completion_loss(logits, labels)
            else:
                loss = task_loss(logits, labels, task.is_regression)
            extra = self.runtime.extra_loss()
            if extra is not None:
                loss = loss + extra
        if not torch.isfinite(loss.detach()):
            saved = self.output is not None and (self.output / CHECKPOINT_NAME).is_file()
            where = f" (last good checkpoint: {self.output / CHECKPOINT_NAME})" if saved else " (no checkpoint saved yet)"
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {self.step + 1} on task {task.name!r}; stopping{where}. "
                "Lower the learning rate or enable gradient clipping (max_grad_norm).")
        return loss

    def _train_step(self, task_id: int, indices: list[int]) -> float:
        """One optimizer step on the global batch ``indices`` (this process's share, in micro-batches)."""
        world = self.accelerator.num_processes
        mine = share(indices, self.accelerator.process_index, world)
        steps = self.config.gradient_accumulation_steps
        if self.tasks[task_id].is_causal_lm:  # weights by target tokens: the step's loss is a per-token mean
            sizes = self.tasks[task_id].target_counts()
            chunks = micro_batches(mine, int(sizes[indices].sum()), world, steps, sizes=sizes)
        else:
            chunks = micro_batches(mine, len(indices), world, steps)
        total = 0.0
        for i, (rows, weight) in enumerate(chunks):
            last = i == len(chunks) - 1  # gradients are averaged over processes once, after the last
            same_step = continuing_step() if i > 0 else contextlib.nullcontext()
            with same_step, contextlib.nullcontext() if last else self.accelerator.no_sync(self.model):
                loss = self._forward_loss(task_id, rows or indices[:1])
                self.accelerator.backward(loss * weight if weight != 1.0 else loss)
            total += float(loss.detach()) * weight
        if world > 1:  # the global batch's mean loss, for the record (each process holds its share)
            total = float(self.accelerator.reduce(torch.tensor(total, device=self.accelerator.device), "mean"))
        if self.config.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.runtime.after_optimizer_step(self.step + 1)  # before zero_grad: AdaLoRA reads the gradients
        self.optimizer.zero_grad(set_to_none=True)
        return total

    # --- evaluation -------------------------------------------------------------------------
    def evaluate(self, split: str = "validation") -> dict[str, dict[str, float]]:
        """Metrics per task on ``split`` (tasks without that split are left out)."""
        return evaluate_tasks(self.model, self.tasks, self.collator, split, self.config.eval_batch_size,
                              self.accelerator.device, accelerator=self.accelerator)

    def _score(self, metrics: dict[str, dict[str, float]]) -> float:
        return float(np.mean([metrics[t.name][t.main_metric] for t in self.tasks]))

    def _eval_and_checkpoint(self, position: tuple[int, int]) -> None:
        with self.tracker.watching_gates(self.unwrapped):  # token routers' gates on validation tokens
            metrics = self.evaluate("validation")
        score = self._score(metrics)
        entry = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                 "train_loss": self.loss_sum / max(self.loss_count, 1), "metrics": metrics, "score": score}
        if self.runtime.has_ranks:
            entry["total_rank"] = self._record_rank()["total"]
        self.record["evals"].append(entry)
        self.tracker.log_eval(self.step, entry, self.unwrapped)
        self.loss_sum, self.loss_count = 0.0, 0
        best = self.record["best"]
        selectable = self.step >= self.runtime.selectable_from
        if selectable and (best is None or score > best["score"]):
            self.record["best"] = {"step": self.step, "score": score, "metrics": metrics}
            self.best_state = trainable_state(self.unwrapped)
        # patience counts evaluations since the best score last rose by more than min_delta (a plateau
        # rule: gains within the validation score's noise do not keep a run going)
        if selectable:
            self.plateau_score, self.bad_evals = plateau_update(self.plateau_score, self.bad_evals, score,
                                                                self.config.min_delta)
        self.stopped_early = self.config.patience is not None and self.bad_evals >= self.config.patience
        self._save_checkpoint(position)
        self.bar.set_postfix(loss=f"{entry['train_loss']:.4f}", score=f"{score:.4f}")

    # --- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, position: tuple[int, int]) -> None:
        if self.output is None:
            return
        from accelerate.utils import gather_object

        rngs = gather_object([rng_state()]) if self.accelerator.num_processes > 1 else None  # a collective
        if not self.accelerator.is_main_process:
            return
        self.record["steps"], self.record["wall_time_s"] = self.step, self._wall_time()
        state = {
            "config": self.config.to_dict(), "step": self.step, "position": position,
            "trainable": trainable_state(self.unwrapped), "best_state": self.best_state,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(), "rng_per_process": rngs, "record": self.record, "bad_evals": self.bad_evals,
            "plateau_score": self.plateau_score,
            "stopped_early": self.stopped_early, "elapsed": self._wall_time(),
            "runtime": self.runtime.state(),
        }
        save_checkpoint(self.output, state)
        write_json(self.output / RECORD_NAME, self.record)

    def _resume(self) -> tuple[int, int]:
        state = load_checkpoint(self.output) if self.config.resume else None
        if state is None:
            return 0, 0
        differ = self.config.same_run(TrainConfig.from_dict(state["config"]))
        if differ:
            raise ValueError(f"cannot resume: the checkpoint's config differs in {differ}")
        load_trainable_state(self.unwrapped, state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.runtime.load_state(state.get("runtime", state.get("allocator")))  # older checkpoints: "allocator"
        self.step, self.best_state, self.record = state["step"], state["best_state"], state["record"]
        for key in ("error", "failed_at_step"):  # a failed run tried again: it is running now
            self.record.pop(key, None)
        self.record["status"] = "running"
        self.bad_evals, self.stopped_early, self.elapsed = state["bad_evals"], state["stopped_early"], state["elapsed"]
        self.plateau_score = state.get("plateau_score", (self.record.get("best") or {}).get("score"))
        per_process = state.get("rng_per_process")
        same_world = per_process is not None and len(per_process) == self.accelerator.num_processes
        set_rng_state(per_process[self.accelerator.process_index] if same_world else state["rng"])
        return tuple(state["position"])

    def _wall_time(self) -> float:
        return self.elapsed + (time.perf_counter() - self.started)

    # --- the loop ---------------------------------------------------------------------------
    def fit(self) -> RunResult:
        try:
            return self._fit()
        except Exception as error:
            self._record_failure(error)
            raise

    def _record_failure(self, error: Exception) -> None:
        """A run that dies (in training, evaluation or while saving) leaves a record saying so and
        why, never one that says "running"; its checkpoint stays, so ``resume`` tries again from it."""
        if self.output is None or not self.accelerator.is_main_process:
            return
        self.record.update(status="failed", error=f"{type(error).__name__}: {error}", failed_at_step=self.step)
        try:
            write_json(self.output / RECORD_NAME, self.record)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass

    def _fit(self) -> RunResult:
        from tqdm.auto import tqdm

        self.started = time.perf_counter()
        epoch, skip = self._resume()
        if self.runtime.has_ranks and not self.record["rank_history"]:  # the starting budget, for plots
            self.record["rank_history"].append(self.runtime.rank_snapshot(0))
            self.tracker.log_budget(0, self.record["rank_history"][0])
        quiet = self.config.quiet or not self.accelerator.is_local_main_process
        self.bar = tqdm(total=self.total_steps, initial=self.step, disable=quiet, dynamic_ncols=True,
                        desc=f"{self.config.method} {','.join(self.config.tasks)}")
        self.model.train()
        if self.step == 0:
            for callback in self.callbacks:  # the initial state (not again when resuming)
                callback(0, self.unwrapped)
        with self.bar:
            while self.step < self.total_steps and not self.stopped_early:
                self._run_epoch(epoch, skip)
                epoch, skip = epoch + 1, 0
            if not self.record["evals"] or self.record["evals"][-1]["step"] != self.step:
                self._eval_and_checkpoint((epoch, skip))
        return self._finish()

    def _run_epoch(self, epoch: int, skip: int) -> None:
        plan = self._plan(epoch)
        every = self.config.eval_every
        for b in range(skip, len(plan)):
            loss = self._train_step(*plan[b])
            self.step += 1
            self.loss_sum, self.loss_count = self.loss_sum + loss, self.loss_count + 1
            self.bar.update(1)
            if self.step % 10 == 0:
                self.bar.set_postfix(loss=f"{self.loss_sum / self.loss_count:.4f}")
            self.tracker.log_step(self.step, loss, self.scheduler)
            for callback in self.callbacks:
                callback(self.step, self.unwrapped)
            if self.runtime.has_ranks and self.step % self.config.rank_every == 0:
                self._record_rank()
            last_in_epoch = b + 1 == len(plan)
            position = (epoch + 1, 0) if last_in_epoch else (epoch, b + 1)
            if (every and self.step % every == 0) or (not every and last_in_epoch) or self.step == self.total_steps:
                self._eval_and_checkpoint(position)
            if self.step >= self.total_steps or self.stopped_early:
                return

    def _record_rank(self) -> dict[str, Any]:
        """Append the runtime's rank pattern (AdaLoRA's) at this step to the record (once per step)."""
        history = self.record["rank_history"]
        if not history or history[-1]["step"] != self.step:
            history.append(self.runtime.rank_snapshot(self.step))
            self.tracker.log_budget(self.step, history[-1])
        return history[-1]

    def _predictions_file(self, outputs: dict[str, tuple[np.ndarray, np.ndarray]], split: str) -> dict[str, Any]:
        by_name = {t.name: t for t in self.tasks}

        def predicted(name: str, p: np.ndarray, y: np.ndarray) -> np.ndarray:
            if by_name[name].is_causal_lm:  # gold class where the completion is exact, else -1
                return completion_predictions(p, y)
            return predicted_labels(p, by_name[name].is_regression)

        return {"format": PREDICTIONS_FORMAT, "split": split, "tasks": {
            name: {"predicted": predicted(name, p, y).tolist(), "labels": y.tolist()}
            for name, (p, y) in outputs.items()}}

    def _finish(self) -> RunResult:
        model = self.unwrapped
        if self.best_state is not None:
            load_trainable_state(model, self.best_state)
        record = self.record
        predictions = None
        if self.config.eval_test and any(t.test is not None for t in self.tasks):
            outputs = predict_tasks(self.model, self.tasks, self.collator, "test", self.config.eval_batch_size,
                                    self.accelerator.device, accelerator=self.accelerator)
            record["test"] = task_metrics(self.tasks, outputs)
            predictions = self._predictions_file(outputs, "test")
            self.tracker.log_metrics(self.step, "test", record["test"])
        record.update(status="completed", steps=self.step, stopped_early=self.stopped_early,
                      wall_time_s=self._wall_time())
        if self.output is not None and self.accelerator.is_main_process:
            self.runtime.save(self.output / ADAPTER_DIR, extra={"tasks": record["tasks"], "best": record["best"]})
            record["adapter_path"] = ADAPTER_DIR
            if predictions is not None:  # per-example test predictions, for paired comparisons
                write_json(self.output / PREDICTIONS_NAME, predictions)
                record["predictions_path"] = PREDICTIONS_NAME
            write_json(self.output / RECORD_NAME, record)
        self.tracker.close()
        if self.accelerator.device.type != "cpu":
            # device memory back before the next run of this process; on a CPU Python's own gc frees
            # it, and free_memory's forced gc.collect cost 0.18 s a run (60% of a tiny test run)
            self.accelerator.free_memory()
        return RunResult(record=record, model=model.eval(), tasks=self.tasks, output=self.output,
                         collator=self.collator)

