"""Plain Hugging Face Trainer + PEFT AdaLoRA + ranklab's callback on a tiny Llama-style LM (CPU, ~10 s).

    python examples/hf_trainer_adalora.py [--steps 60] [--plots figs/]

Without the callback the Trainer never calls AdaLoRA's update_and_allocate and every module keeps
init_r (peft#1801); with it the total rank shrinks to target_r x modules.  The model is built from
a LlamaConfig (no download); the data are arithmetic sequences it can learn to continue.
"""
from __future__ import annotations

import argparse

import torch
from datasets import Dataset
from peft import AdaLoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from ranklab.integrations import RankDynamicsCallback, kept_ranks

VOCAB, LENGTH = 64, 16


def sequences(n: int, seed: int = 0) -> Dataset:
    """Token t+1 = token t + step (mod the vocabulary), step in 1..3: learnable from context."""
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, VOCAB, (n, 1), generator=generator)
    steps = torch.randint(1, 4, (n, 1), generator=generator)
    ids = ((starts + steps * torch.arange(LENGTH)) % VOCAB).tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids, "attention_mask": [[1] * LENGTH] * n})


def main(steps: int = 60, init_r: int = 8, target_r: int = 2, output_dir: str = "outputs/hf_trainer_adalora",
         plots: str | None = None, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=LENGTH)
    adalora = AdaLoraConfig(init_r=init_r, target_r=target_r, lora_alpha=16, task_type="CAUSAL_LM",
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                            total_step=steps, tinit=steps // 10, tfinal=steps // 5)  # total_step = the run's steps
    model = get_peft_model(LlamaForCausalLM(config), adalora)
    callback = RankDynamicsCallback(every=max(1, steps // 10))
    args = TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=16, learning_rate=2e-2,
                             logging_steps=max(1, steps // 6), report_to=[], use_cpu=True, save_strategy="no",
                             disable_tqdm=True, seed=seed)
    trainer = Trainer(model=model, args=args, train_dataset=sequences(steps * 16, seed), callbacks=[callback])
    callback.attach_to(trainer)  # first in line, so report_to trackers get the rank metrics too
    trainer.train()
    ranks = kept_ranks(model.base_model)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result = {"kept_ranks": ranks, "budget": sum(ranks.values()), "target_budget": target_r * len(ranks),
              "initial_budget": init_r * len(ranks), "losses": losses, "callback": callback}
    if plots:
        save_plots(callback, plots)
    return result


def save_plots(callback: RankDynamicsCallback, folder: str) -> None:
    from ranklab.plots import plot_rank_dynamics, save_figure

    for measure in ("numerical_rank", "effective_rank"):
        save_figure(plot_rank_dynamics(callback.history, measure), f"{folder}/adalora_{measure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--plots", default=None, help="folder for rank-dynamics figures (PNG + PDF)")
    options = parser.parse_args()
    torch.set_num_threads(2)
    out = main(steps=options.steps, plots=options.plots)
    print(f"loss {out['losses'][0]:.3f} -> {out['losses'][-1]:.3f}")
    print(f"total rank {out['initial_budget']} -> {out['budget']} (target_r x modules = {out['target_budget']})")
    for name, rank in out["kept_ranks"].items():
        print(f"  {name:<40} {rank}")
