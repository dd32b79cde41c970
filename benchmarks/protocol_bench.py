"""The embedded protocol's training throughput: ranklab's trainer against the Hugging Face Trainer
+ PEFT doing the same work, and the speed-ups measured before choosing them (length-grouped
batches, bf16 autocast with eager attention, two runs side by side).  Real MiniLM-L6 and the
offline movie task (no hub needed), with the embedded scale's own settings.

Every comparison alternates its two sides (A B A B ...) and reports the median ratio with the
interquartile range of the per-pair ratios (see bench.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Callable

import torch

from ranklab.compat import quiet_peft
from ranklab.train import TrainConfig, train

STEPS, BATCH, LENGTH, TASK = 40, 16, 32, "movie"


def protocol_settings() -> dict:
    """The embedded scale's precision and attention (bf16 + eager where bf16 is native)."""
    from ranklab.experiments.protocol.recipes import get_scale

    train = get_scale("embedded").train
    return {k: train[k] for k in ("mixed_precision", "attn_implementation")}


def protocol_config(**overrides) -> TrainConfig:
    """One single-task run of the embedded protocol, cut to STEPS steps, no evaluation."""
    settings = dict(method="lora", adapter={"r": 8, "alpha": 16.0}, tasks=[TASK], backbone="minilm-l6", lr=3e-3,
                    batch_size=BATCH, max_steps=STEPS, max_length=LENGTH, group_by_length=True, eval_every=10_000,
                    eval_test=False, quiet=True, max_eval=16, warmup_ratio=0.06, **protocol_settings())
    settings.update(overrides)
    return TrainConfig(**settings)


def ranklab_run(**overrides) -> Callable[[], None]:
    config = protocol_config(**overrides)
    train(config)  # warm-up: data cached, tokenised once in this process

    def run() -> None:
        train(config)
    return run


def hf_trainer_run(group_by_length: bool) -> Callable[[], None]:
    """The same work through transformers.Trainer + PEFT LoRA: model, data, batch, steps, lr."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from ranklab.backbones import load_backbone
    from ranklab.data import load_task, tokenize_task

    settings = protocol_settings()
    _, tokenizer = load_backbone("minilm-l6", 2)
    data = tokenize_task(load_task(TASK), tokenizer, TASK, max_length=LENGTH)["train"]
    output = tempfile.mkdtemp(prefix="ranklab-bench-")

    def run() -> None:  # the same precision and attention kernel as the protocol
        model, _ = load_backbone("minilm-l6", 2, attn_implementation=settings["attn_implementation"])
        with quiet_peft():
            model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                                     modules_to_save=["classifier"]))
        args = TrainingArguments(output_dir=output, per_device_train_batch_size=BATCH, max_steps=STEPS,
                                 learning_rate=3e-3, warmup_steps=0.06, weight_decay=0.01, logging_strategy="no",
                                 save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                                 bf16=settings["mixed_precision"] == "bf16",
                                 train_sampling_strategy="group_by_length" if group_by_length else "random",
                                 dataloader_num_workers=0, seed=0)
        Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer)).train()
    run()  # warm-up
    return run


WORKER = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[2])
from protocol_bench import protocol_config
from ranklab.train import train
config = protocol_config()
train(config)
start = time.perf_counter()
train(config)
print(time.perf_counter() - start)
"""


def threads_comparison() -> tuple[float, float]:
    """Seconds per run: two runs side by side with 1 thread each (the slower one's time / 2) vs one
    run with 2 threads.  Fresh processes (thread counts are per process); each worker warms up
    first and times its second run, so the two timed runs overlap."""
    here = os.path.dirname(os.path.abspath(__file__))

    def launch(threads: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", WORKER, str(threads), here], stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.DEVNULL)

    def seconds(process: subprocess.Popen) -> float:
        return float(process.communicate()[0].strip().splitlines()[-1])
    two_threads = seconds(launch(2))
    pair = [launch(1), launch(1)]
    side_by_side = max(seconds(p) for p in pair) / 2
    return side_by_side, two_threads
