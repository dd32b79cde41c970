# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -kernelspec,-jupytext.text_representation.jupytext_version,-jupytext.text_representation.format_version
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 07 · Adapters side by side: compare, follow through training, merge
#
# Two LoRA adapters trained on different tasks from the same base: how alike are their updates,
# module by module? How did one of them move over its training? And when PEFT merges the two,
# what does the merged adapter keep of what you asked for? Everything is computed exactly from
# the adapters' factors (no d x d product), and the same functions read your own PEFT folders
# (`ranklab compare`, `ranklab checkpoints`, `ranklab merge-audit` on the command line).
#
# The notebook trains its two small demo adapters first (about a minute on 2 CPU cores), on two
# synthetic token tasks that the base has never seen: the second reverses the first's labels, so
# the two updates should pull in different directions.

# %% tags=["parameters"]
smoke = False          # True: tiny random backbone and a few steps (used by the test suite)
seed = 0
output_dir = "outputs"  # where this notebook writes its adapters, checkpoints and figures

# %%
# %matplotlib inline
from pathlib import Path

import pandas as pd
import torch
from IPython.display import display
from peft import LoraConfig, get_peft_model

from ranklab.backbones import load_backbone
from ranklab.compat import quiet_peft
from ranklab.inspect.checkpoints import checkpoint_drift, drift_figure
from ranklab.inspect.compare import compare_adapters, layer_summary
from ranklab.inspect.merge import merge_audit, reload_check
from ranklab.plots import plot_heatmap_panels, plot_lines, save_figure
from ranklab.train.synthetic import token_batch

output = Path(output_dir)  # figures: 07_*.png / .pdf
work = output / "07_adapters"  # adapters, checkpoints and merges
work.mkdir(parents=True, exist_ok=True)
backbone = "tiny-random" if smoke else "minilm-l6"
steps, save_every = (6, 2) if smoke else (40, 10)
batch_size, length = (4, 12) if smoke else (16, 32)


def train(model, adapter: str, flip: bool, checkpoints: Path | None = None) -> list[float]:
    """The usual PEFT loop on one adapter; ``flip`` reverses the task's labels (the second task);
    ``checkpoints``: save the adapter every ``save_every`` steps as checkpoint-<step>/."""
    model.set_adapter(adapter)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    vocab_size = model.get_input_embeddings().num_embeddings
    losses = []
    model.train()
    for step in range(1, steps + 1):
        batch = token_batch(generator, vocab_size, batch_size, length)
        if flip:
            batch["labels"] = 1 - batch["labels"]
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if checkpoints is not None and step % save_every == 0:
            model.save_pretrained(checkpoints / f"checkpoint-{step}", selected_adapters=[adapter])
    return losses


# %% [markdown]
# ## 1. Two adapters, two tasks
# One PEFT model holds both adapters (`first`, `second`), each trained on its own task; `first`
# saves a checkpoint every few steps, as the Hugging Face Trainer's `save_steps` would.

# %%
base, _ = load_backbone(backbone, 2, seed=seed)
# No task_type: the classification head stays frozen, since PEFT cannot merge adapters that each
# train their own head (`modules_to_save`); all that differs between the two is their LoRA update.
config = dict(r=8, lora_alpha=16, target_modules=["query", "value"])
torch.manual_seed(seed)  # the adapters' own initialisation: the same numbers on every run
with quiet_peft():  # PEFT's own deprecation warning about transformers, nothing to act on here
    model = get_peft_model(base, LoraConfig(**config), adapter_name="first")
    model.add_adapter("second", LoraConfig(**config))
losses = {"first": train(model, "first", flip=False, checkpoints=work / "first-run"),
          "second": train(model, "second", flip=True)}
for name, values in losses.items():
    print(f"{name}: loss {values[0]:.3f} -> {sum(values[-3:]) / 3:.3f} over {steps} steps")
folders = {}
for name in ("first", "second"):  # PEFT writes an adapter not named "default" to a subfolder of its name
    model.save_pretrained(work / "saved", selected_adapters=[name])
    folders[name] = work / "saved" / name

# %% [markdown]
# ## 2. How alike are the two updates?
# Per module: the cosine of the two updates ⟨ΔW_a, ΔW_b⟩_F / (‖ΔW_a‖ ‖ΔW_b‖) (1: the same
# direction, 0: unrelated, −1: opposite) and the subspace similarity φ of their top singular
# vectors at their ranks (1: one column space holds the other). The heatmaps show φ per layer.

# %%
frame = compare_adapters([folders["first"], folders["second"]])
display(frame[["module", "cosine", "relative_distance", "phi", "rank_a", "rank_b"]].round(4))
display(layer_summary(frame).drop(columns=["a", "b"]).round(4))
shared = frame[frame["only_in"] == ""]
tables = {measure: shared.pivot_table(index="layer", columns="module_type", values=measure)
          for measure in ("phi", "cosine")}
fig = plot_heatmap_panels(tables, "first vs second, per layer and module", panel_width=4.2, fmt=".2f", fontsize=9,
                          cmap="cividis", xrotation=0)
save_figure(fig, output / "07_compare")
fig

# %% [markdown]
# ## 3. How did `first` move over its training?
# Read from its saved `checkpoint-<step>/` folders afterwards: each checkpoint's effective rank,
# and its similarity to the final adapter (cosine per layer). A rank that settles early and a
# similarity that reaches 1 only at the end say the update kept turning until the last step.

# %%
ranks, drift = checkpoint_drift(work / "first-run")
display(drift.pivot_table(index="step", columns="against", values="cosine", aggfunc="mean").round(4))
fig = drift_figure(ranks, drift)
save_figure(fig, output / "07_drift")
fig

# %% [markdown]
# ## 4. Merge the two and see what the merge kept
# PEFT's `add_weighted_adapter` makes the merge; the audit sets each module's merged update
# against the intended 0.5·ΔW_first + 0.5·ΔW_second. `cat` stacks the factors and is exact;
# `linear` combines A and B separately, so it adds cross terms B_first A_second nobody asked for
# (PEFT issue #3013): the relative error below is their size. Then the merged folder is saved,
# reloaded with PEFT and its logits compared.

# %%
rows, merged_spectra = [], {}
inputs = {"input_ids": torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(seed))}
for combination in ("cat", "linear"):
    audit = merge_audit(model, ["first", "second"], [0.5, 0.5], combination, merged=f"merged_{combination}")
    after = audit["after"]
    check = reload_check(model, f"merged_{combination}", str(work / f"merged_{combination}"), inputs)
    rows.append({"combination": combination, "mean relative error": after["relative error"].mean(),
                 "largest relative error": after["relative error"].max(),
                 "merged rank (median)": after["merged rank"].median(), "reloads": check["reloads"],
                 "max logit difference": check.get("max logit difference")})
    merged_spectra[combination] = after.set_index("module")["spectrum"]
display(pd.DataFrame(rows).round(6))

# %% [markdown]
# The spectra of one module before and after: each adapter's own, and what the two merges hold.
# Two nearly unrelated updates (cosine near 0 above) at weight 0.5 each: their intended sum spreads
# over every direction of both, with smaller values, and `cat` holds exactly that (rank up to
# 8 + 8). `linear` has rank at most 8 and values as large as one adapter's own: the cross terms.

# %%
module = merged_spectra["cat"].index[0]
row = shared[shared["module"] == module.removeprefix("base_model.model.")].iloc[0]
lines = [{"x": list(range(1, len(values) + 1)), "y": values, "label": label, "style": style}
         for label, values, style in (("first", row["spectrum_a"], "o-"), ("second", row["spectrum_b"], "s-"),
                                      ("cat merge (0.5, 0.5)", merged_spectra["cat"][module], "^--"),
                                      ("linear merge (0.5, 0.5)", merged_spectra["linear"][module], "v:"))]
fig = plot_lines(lines, xlabel="k (singular value index)", ylabel="σ_k of ΔW", yscale="log", figsize=(7, 4),
                 title=f"before and after the merge: {module.removeprefix('base_model.model.')}")
save_figure(fig, output / "07_merge_spectra")
fig
