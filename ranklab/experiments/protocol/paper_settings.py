"""The papers' and official scripts' hyperparameters, per task, as data (cited file by file).

Every value below was read from the named file of the named repository (snapshots read for this
module: microsoft/LoRA c4593f0, huawei-noah/Efficient-NLP bb44348, QingruZhang/AdaLoRA d10f5eb,
NLPfreshman0/MoRE b31d8fe).  Global batch = number of GPUs in the script x
``per_device_train_batch_size``.  Where no source says, the value is marked DECISION with why.
``docs/paper_scale.md`` puts these tables beside the sources item by item.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# GLUE train rows (nyu-mll/glue on the Hugging Face hub); ranklab holds 10% (at most 5,000 rows) of
# each out as its validation split (ranklab.data.glue), so a run trains on ``ranklab_train_size``.
GLUE_TRAIN_SIZES = {"mnli": 392_702, "sst2": 67_349, "mrpc": 3_668, "cola": 8_551, "qnli": 104_743,
                    "qqp": 363_846, "rte": 2_490, "stsb": 5_749}


def ranklab_train_size(task: str) -> int:
    """Training rows of a GLUE task after ranklab's held-out validation slice (same rule as data.glue)."""
    from ...data.glue import HELD_OUT_FRACTION, HELD_OUT_MAX

    n = GLUE_TRAIN_SIZES[task]
    return n - min(max(int(round(HELD_OUT_FRACTION * n)), 1), HELD_OUT_MAX)


@dataclass(frozen=True)
class TaskSetting:
    """One task's optimisation in a script: peak rate, global batch, epochs, max length."""

    lr: float
    batch_size: int
    epochs: int
    max_length: int
    init_from_mnli: bool = False  # the script loads the MNLI-trained adapter first (``--lora_path``)


# --- Table 1 (top): LoRA's official RoBERTa-large GLUE scripts -----------------------------------
# microsoft/LoRA examples/NLU/roberta_large_<task>.sh: 8 GPUs, --lora_r 8 --lora_alpha 16, query and
# value (the scripts' model), --weight_decay 0.1 --warmup_ratio 0.06, AdamW with linear decay (the HF
# Trainer's default), --evaluation_strategy epoch; MRPC, RTE and STS-B pass
# --lora_path ./roberta_large_lora_mnli.bin (the MNLI adapter; the head is not in that file).
LORA_COMMON = {"r": 8, "alpha": 16.0, "target_modules": ["query", "value"], "weight_decay": 0.1,
               "warmup_ratio": 0.06}
LORA_ROBERTA_LARGE = {
    "mnli": TaskSetting(3e-4, 8 * 4, 10, 128),
    "sst2": TaskSetting(4e-4, 8 * 8, 10, 512),
    "mrpc": TaskSetting(3e-4, 8 * 4, 20, 512, init_from_mnli=True),
    "cola": TaskSetting(3e-4, 8 * 4, 20, 128),
    "qnli": TaskSetting(2e-4, 8 * 4, 10, 512),
    "qqp": TaskSetting(3e-4, 8 * 4, 20, 512),
    "rte": TaskSetting(4e-4, 8 * 8, 20, 512, init_from_mnli=True),
    "stsb": TaskSetting(3e-4, 8 * 4, 10, 128, init_from_mnli=True),
}

# --- Table 2: DyLoRA's official RoBERTa-base GLUE scripts ------------------------------------------
# huawei-noah/Efficient-NLP DyLoRA/examples/NLU/roberta_base_<task>.sh (the code of the DyLoRA paper;
# KD-NLP, the repository named in the issue, holds no DyLoRA folder in its snapshot).  They equal
# microsoft/LoRA examples/NLU/roberta_base_<task>.sh except --lora_path (roberta_base_mnli_DyLoRA.bin)
# and RTE's per-device batch (16 here, 32 in LoRA's).  Common: --lora_r 8 --lora_alpha 16,
# --weight_decay 0.1 --warmup_ratio 0.06; 8 GPUs except CoLA (2).  The rank is drawn every step
# (run_glue.py ``callback_step``: ``set_rank(randint(0, r), frozen=True)``).
DYLORA_COMMON = {"r_min": 1, "r_max": 8, "frozen": True, "alpha": 16.0, "target_modules": ["query", "value"],
                 "weight_decay": 0.1, "warmup_ratio": 0.06}
DYLORA_ROBERTA_BASE = {
    "mnli": TaskSetting(5e-4, 8 * 16, 30, 512),
    "sst2": TaskSetting(5e-4, 8 * 16, 60, 512),
    "mrpc": TaskSetting(4e-4, 8 * 16, 30, 512, init_from_mnli=True),
    "cola": TaskSetting(4e-4, 2 * 32, 80, 512),
    "qnli": TaskSetting(4e-4, 8 * 32, 25, 512),
    "qqp": TaskSetting(5e-4, 8 * 16, 25, 512),
    "rte": TaskSetting(5e-4, 8 * 16, 80, 512, init_from_mnli=True),
    "stsb": TaskSetting(4e-4, 8 * 16, 40, 512, init_from_mnli=True),
}


# --- Table 2: AdaLoRA's official GLUE scripts (DeBERTa-v3-base), adapted to RoBERTa-base ----------
@dataclass(frozen=True)
class AdaLoraScript:
    """QingruZhang/AdaLoRA NLU/scripts/run_debertav3_<task>.sh (1 GPU): optimisation and schedule."""

    lr: float
    batch_size: int
    epochs: int
    max_length: int
    alpha: float  # --lora_alpha
    lora_r: int  # --lora_r (starting rank)
    target_rank: int  # --target_rank
    orth_reg: float  # --reg_orth_coef
    init_warmup: int  # --init_warmup (steps before the budget shrinks)
    final_warmup: int  # --final_warmup (last steps at the final budget)
    mask_interval: int  # --mask_interval (steps between reallocations)
    warmup_steps: int | None  # --warmup_steps (None: --warmup_ratio 0.1, MRPC)
    weight_decay: float
    cls_dropout: float  # DeBERTa's head dropout; not applied to RoBERTa (see adalora_options)
    eval_steps: int  # --eval_steps (validation every this many steps)

    def script_total_steps(self, task: str) -> int:
        """The script's optimizer steps: epochs x batches of the full GLUE train split."""
        return self.epochs * math.ceil(GLUE_TRAIN_SIZES[task] / self.batch_size)


# Common to every script: --beta1 0.85 --beta2 0.85, --lora_module
# query,key,value,intermediate,layer.output,attention.output (DeBERTa's names), --lora_type svd.
ADALORA_DEBERTA_V3_BASE = {
    "mnli": AdaLoraScript(5e-4, 32, 7, 256, 16, 3, 1, 0.1, 8000, 50000, 100, 1000, 0.0, 0.15, 3000),
    "sst2": AdaLoraScript(8e-4, 32, 24, 128, 16, 2, 1, 0.1, 6000, 22000, 100, 1000, 0.01, 0.0, 3000),
    "mrpc": AdaLoraScript(1e-3, 32, 30, 320, 32, 2, 1, 0.1, 600, 1800, 1, None, 0.01, 0.0, 300),
    "cola": AdaLoraScript(8e-4, 32, 25, 64, 32, 3, 1, 0.1, 800, 3500, 10, 100, 0.0, 0.10, 100),
    "qnli": AdaLoraScript(5e-4, 32, 5, 512, 32, 2, 1, 0.1, 2000, 8000, 100, 500, 0.01, 0.1, 1000),
    "stsb": AdaLoraScript(2.2e-3, 32, 25, 128, 32, 2, 1, 0.3, 800, 2000, 10, 100, 0.1, 0.2, 100),
}
ADALORA_TARGET_R = 8  # DECISION: the other Table 2 methods' rank (r = 8 on query and value): equal final budget


def adalora_options(task: str) -> dict:
    """AdaLoRA's script for ``task`` adapted to RoBERTa-base (query, value) at the r = 8 budget.

    Kept from the script: rate, batch, epochs, max length, alpha, orthogonal-regulariser weight,
    beta1 = beta2 = 0.85, reallocation interval, LR warmup, weight decay, and the budget schedule
    as shares of the script's own total steps (so it spans the same part of training on ranklab's
    slightly smaller train split).  Changed (DECISION): modules query, value instead of DeBERTa's
    six (the modules of the methods it is compared with in Table 2); target rank 8 instead of 1 and
    starting rank 8 x (lora_r / target_rank) of the script (2x, 3x for CoLA); no cls_dropout
    (a DeBERTa run_glue option; RoBERTa's head keeps its hidden dropout 0.1).
    """
    script = ADALORA_DEBERTA_V3_BASE[task]
    total = script.script_total_steps(task)
    return {"init_r": ADALORA_TARGET_R * script.lora_r // script.target_rank, "target_r": ADALORA_TARGET_R,
            "alpha": float(script.alpha), "target_modules": ["query", "value"],
            "tinit_ratio": round(script.init_warmup / total, 4), "tfinal_ratio": round(script.final_warmup / total, 4),
            "delta_t": script.mask_interval, "orth_reg_weight": script.orth_reg, "beta1": 0.85, "beta2": 0.85}


def adalora_train(task: str) -> dict:
    """The TrainConfig fields of AdaLoRA's script for ``task``."""
    script = ADALORA_DEBERTA_V3_BASE[task]
    warmup = {"warmup_steps": script.warmup_steps} if script.warmup_steps is not None else {"warmup_ratio": 0.1}
    return {"lr": script.lr, "batch_size": script.batch_size, "epochs": script.epochs, "eval_every": script.eval_steps,
            "max_length": script.max_length, "weight_decay": script.weight_decay, **warmup}


# --- Table 1 (bottom) and the ablations: MoRE's released multi-task code --------------------------
# NLPfreshman0/MoRE script/finetune_more.sh: --lora_rank 8 --lora_alpha 32 --learning_rate 3e-4
# --weight_decay 0.01 --warmup_steps 500 --max_length 128 --per_device_train_batch_size 32 on 2 GPUs
# (deepspeed --include localhost:0,1) --eval_steps 1000; finetune.py: lora_dropout=0.1;
# data/multi_task_sample.py ``MultiTaskDataLoader``: task i drawn with p = softmax(n_i / N), one task
# per batch, total steps = sum(n_i) x 10 / (batch x GPUs) (num_epochs = 10 in the loader).
# DECISION: global batch 64 of one task (MoRE's two GPUs each draw their own task for their 32),
# 10 epochs of ranklab's sampler (an epoch has sum ceil(n_i / 64) batches: MoRE's step count).
MORE_TRAIN = {"lr": 3e-4, "weight_decay": 0.01, "warmup_steps": 500, "max_length": 128, "batch_size": 64,
              "epochs": 10, "eval_every": 1000, "sampling": "softmax"}
MORE_ADAPTER = {"alpha": 32.0, "dropout": 0.1, "target_modules": ["query", "value"]}
# DECISION: query and value (the released code adapts T5's q k v o wi wo; the seed paper's 0.24M for
# LoRA r = 8 on RoBERTa-base is within 20% of query+value's 0.29M and far from all six's 1.3M).

# --- MoR (Tang et al. 2024, arXiv 2410.13408) ------------------------------------------------------
# From DESIGN.md (the MoR paper's setting): 8 experts, shared rank 32, the FFN modules of LLaMA-7B.
# Not reachable here: MoR's code and its training section (the seed holds the abstract; the arXiv
# HTML is stored only as its first page), so its rate, epochs, data and alpha are not cited.
MOR_ADAPTER = {"n_experts": 8, "r": 32, "target_modules": ["gate_proj", "up_proj", "down_proj"]}
# DECISION (MoR's training not reachable): MoRE's multi-task optimisation (rate, warmup, sampling,
# batch), one epoch (LLM instruction tuning runs 1-3; 10 on a 7B model is ~80 GPU-hours per run),
# max length 256 (prompt and answer), alpha = 2r (the common LLaMA LoRA choice).
MOR_TRAIN = {**MORE_TRAIN, "epochs": 1, "max_length": 256}
MOR_EXPERTS = (1, 2, 4, 8, 16)  # DECISION: Fig. 5's axis (experts) around the paper's best, 8
MOR_RANKS = (8, 16, 32, 64)  # DECISION: Fig. 4's ranks (E1R8 ...) around the paper's best, 32
