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
# # 06 · Inspect your own PEFT adapter
#
# You trained a LoRA or AdaLoRA adapter with Hugging Face PEFT and saved it with
# `save_pretrained`. How much of its rank does it really use? This notebook gives it the same
# report as ranklab's own adapters:
#
# 1. a table with one row per adapted module: kept ranks, top singular values, effective rank;
# 2. the spectrum of $\Delta W$ in every layer;
# 3. an effective-rank heatmap, layer × module;
# 4. the subspace similarity of the LoRA paper between two layers and between two adapters;
# 5. a check that ranklab's spectrum is the exact spectrum of PEFT's own $\Delta W$.
#
# Set `adapter_path` to your adapter folder (the one holding `adapter_config.json`). Left at
# `None`, the notebook first trains two small adapters of its own (LoRA and AdaLoRA) on the
# embedded MiniLM backbone, offline, saves them and loads them back exactly as you would.

# %% tags=["parameters"]
smoke = False          # True: tiny random backbone and 3 training steps (used by the test suite)
seed = 0
output_dir = "outputs"     # where this notebook writes its figures, the report and the demo adapters
adapter_path = None        # your PEFT adapter folder, e.g. "my-lora"; None: train two demo adapters
base_model_path = None     # a local folder with the adapter's base model (None: the one its config names)

# %%
# %matplotlib inline
import warnings
from pathlib import Path

import pandas as pd
import torch

from ranklab.atomic import write_text
from ranklab.inspect import (
    RankDynamics, adapted_modules, check_against_dense, model_report, model_spectra, module_similarity,
    module_spectrum, rank_table, spectrum_gap,
)
from ranklab.inspect.peft_io import load_peft_for_inspection, read_adapter_config
from ranklab.plots import plot_rank_dynamics, plot_rank_heatmap, plot_similarity, plot_spectra, save_figure

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing")  # a transformers notice PEFT triggers
torch.manual_seed(seed)
output = Path(output_dir)
output.mkdir(parents=True, exist_ok=True)
adapters = {}              # label -> a PEFT model in eval mode; everything below inspects these

# %% [markdown]
# ## 1. Your adapter
# `adapter_config.json` names the base model the adapter was trained on
# (`base_model_name_or_path`, a hub id or a local folder) and its `task_type`.
# `load_peft_for_inspection` loads that base with the matching class (as PEFT's
# `AutoPeftModelFor...` do) and puts the adapter on it. If the base is on the hub and the hub is
# not reachable, you get a message saying so: set `base_model_path` to a local copy of the base
# (or pass a model you loaded: `load_peft_for_inspection(adapter_path, base_model=my_base)`). For a large
# base add e.g. `torch_dtype=torch.bfloat16`: the spectra are computed in float32 anyway.

# %%
if adapter_path is not None:
    config = read_adapter_config(adapter_path)
    ranks = ("init_r", "target_r") if config.get("peft_type") == "ADALORA" else ("r",)
    for key in ("peft_type", "task_type", "base_model_name_or_path", *ranks, "lora_alpha", "target_modules"):
        print(f"{key:>24}: {config.get(key)}")
    adapters["yours"] = load_peft_for_inspection(adapter_path, base_model=base_model_path)

# %% [markdown]
# ## 2. No adapter at hand? Train two
# Skipped when `adapter_path` is set. We wrap the embedded all-MiniLM-L6-v2 (BERT, 6 layers,
# hidden 384) twice with PEFT, on the attention `query` and `value` projections:
# - **LoRA** with $r = 8$: $\Delta W = \frac{\alpha}{r} B A$;
# - **AdaLoRA** starting at rank 12 and pruning to an average of 4 per module:
#   $\Delta W = \frac{\alpha}{\text{ranknum}} P\,\mathrm{diag}(E)\,Q$, where PEFT stores $P$, $E$,
#   $Q$ as `lora_B`, `lora_E`, `lora_A`. Every step, `update_and_allocate` scores each of the
#   triplets and zeroes the least important ones in $E$, so ranks move between modules.
#
# The data are random token batches with a learnable rule (class $c$ draws most of its tokens
# from its own half of the vocabulary): enough to move the adapters away from initialisation.
# Use your real training data for a real adapter.

# %%
from peft import AdaLoraConfig, LoraConfig, get_peft_model

from ranklab.backbones import load_backbone
from ranklab.train.synthetic import token_batch

backbone = "tiny-random" if smoke else "minilm-l6"
steps = 3 if smoke else 50
batch_size, length = (4, 12) if smoke else (16, 32)


def train(model, lr: float, callback=None) -> list[float]:
    """The usual PEFT loop; AdaLoRA also needs update_and_allocate after each optimiser step."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    vocab_size = model.get_input_embeddings().num_embeddings
    losses = []
    model.train()
    for step in range(steps):
        loss = model(**token_batch(generator, vocab_size, batch_size, length)).loss
        loss.backward()
        optimizer.step()
        if hasattr(model.base_model, "update_and_allocate"):  # AdaLoRA only (peft#1801)
            model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
        losses.append(loss.item())
        if callback is not None:
            callback(step + 1, model)
    return losses


# %% [markdown]
# First LoRA. `task_type="SEQ_CLS"` tells PEFT to train and save the classification head too,
# and tells the loader which model class to rebuild.

# %%
if adapter_path is None:
    base, tokenizer = load_backbone(backbone, 2, seed=seed)
    lora_config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], task_type="SEQ_CLS")
    lora = get_peft_model(base, lora_config)
    lora.print_trainable_parameters()
    losses = train(lora, lr=2e-3)
    print(f"LoRA loss: first step {losses[0]:.3f}, last 5 steps {sum(losses[-5:]) / len(losses[-5:]):.3f}")

# %% [markdown]
# Then AdaLoRA, with `RankDynamics` recording every module's spectrum during training (pass it
# as a callback to your own loop the same way). AdaLoRA's schedule: full budget for `tinit`
# steps, a cubic decrease to `target_r` per module on average, then `tfinal` steps at the final
# budget. A module can lose all its ranks. The numerical rank starts at 0 because PEFT
# initialises $E$ at zero (so $\Delta W = 0$, like LoRA's $B = 0$).

# %%
if adapter_path is None:
    base, _ = load_backbone(backbone, 2, seed=seed)
    adalora_config = AdaLoraConfig(
        init_r=12, target_r=4, lora_alpha=16, target_modules=["query", "value"], task_type="SEQ_CLS",
        total_step=steps, tinit=steps // 5, tfinal=steps // 5, deltaT=1,
    )
    adalora = get_peft_model(base, adalora_config)
    dynamics = RankDynamics(every=max(1, steps // 10))
    dynamics.record(0, adalora)
    losses = train(adalora, lr=2e-3, callback=dynamics)
    print(f"AdaLoRA loss (PEFT adds its orthogonality regulariser): first step {losses[0]:.3f}, "
          f"last 5 steps {sum(losses[-5:]) / len(losses[-5:]):.3f}")
    fig = plot_rank_dynamics(dynamics.history, "numerical_rank")
    save_figure(fig, output / "06_adalora_rank_dynamics")
    display(fig)

# %% [markdown]
# Save both and load them back, as you would load your own: `save_pretrained` writes
# `adapter_config.json` and the adapter weights; `load_peft_for_inspection(path, base_model=base)`
# is `PeftModel.from_pretrained(base, path)`. (PEFT warns on loading an AdaLoRA that it ignored
# its `rank_pattern`; it does not ignore it, it shrinks every module to its kept rank, so the
# loader hides that warning.) The tiny test backbone has no name, so it must be passed; MiniLM's
# folder is recorded in the config and read from there, the path your own adapter takes.
# transformers then reports the `classifier` as newly initialised: that is the base model alone;
# PEFT next loads the trained head saved with the adapter (`modules_to_save`).

# %%
if adapter_path is None:
    for label, trained in {"lora": lora, "adalora": adalora}.items():
        folder = output / f"06_{label}_adapter"
        with warnings.catch_warnings():  # PEFT mistakes rank-0 (fully pruned) AdaLoRA tensors for unsharded ones
            warnings.filterwarnings("ignore", message=".*invalid shape")
            trained.save_pretrained(folder)
        base_name = read_adapter_config(folder)["base_model_name_or_path"]
        fresh_base = None if base_name else load_backbone(backbone, 2, seed=seed)[0]
        adapters[label] = load_peft_for_inspection(folder, base_model=fresh_base)
        before, after = model_spectra(trained), model_spectra(adapters[label])
        change = max(spectrum_gap(before[n], after[n]) for n in before)
        print(f"{label}: saved to {folder}, base {base_name or '(passed in)'}, "
              f"largest change of a singular value after loading: {change:.1e}")

# %% [markdown]
# ## 3. The report: one row per adapted module
# - `ranks`: inner dimension of the factors, i.e. the rank the adapter can use (for a loaded
#   AdaLoRA, the rank it kept; 0 means the module was pruned entirely);
# - `sigma_k`: the largest singular values of $\Delta W$, computed from the factors;
# - `effective_rank`: Roy & Vetterli's $\exp(-\sum_k p_k \log p_k)$ with $p_k = \sigma_k / \sum\sigma$;
#   `stable_rank` $= \sum\sigma^2/\sigma_1^2$; `energy_rank`: how many $\sigma_k$ hold 90 % of
#   $\|\Delta W\|_F^2$; `numerical_rank`: how many exceed $10^{-6}\sigma_1$;
# - `relative_delta` $= \|\Delta W\|_F / \|W_0\|_F$: how far the adapter moved the frozen weight.

# %%
if not adapters:
    raise ValueError("no adapter to inspect: set adapter_path, or leave it None for the demo adapters")
report = pd.concat([model_report(model).assign(adapter=label) for label, model in adapters.items()],
                   ignore_index=True)
write_text(output / "06_report.csv", report.to_csv(index=False))
columns = ["adapter", "layer", "module", "ranks", "params", "sigma_1", "sigma_2", "effective_rank",
           "stable_rank", "energy_rank", "numerical_rank", "relative_delta"]
report[columns].round(4)

# %% [markdown]
# The ranks each adapter kept, layer × module. LoRA uses the same $r$ everywhere; AdaLoRA moves
# its budget towards the modules whose triplets scored as most important.

# %%
pd.concat({label: rank_table(report[report["adapter"] == label], "max_rank") for label in adapters}, axis=1)

# %% [markdown]
# ## 4. Spectra, layer by layer
# One panel per module type, one line per layer. A spectrum that drops fast means the adapter
# uses fewer directions than it was given.

# %%
for label, model in adapters.items():
    fig = plot_spectra(model_spectra(model), log=True)
    fig.suptitle(f"{label}: singular values of ΔW")
    save_figure(fig, output / f"06_spectra_{label}")
    display(fig)

# %% [markdown]
# AdaLoRA's `lora_E` is often read as "the singular values", but that holds only when $P$ and
# $Q$ are orthonormal; AdaLoRA pushes them there with a regulariser, never exactly. The factored
# SVD gives the true values. After the full demo run the two agree to a few per cent; after the
# 3 steps of the smoke run (or with a small `orth_reg_weight`) they are far apart.

# %%
for label, model in adapters.items():
    rows = report[report["adapter"] == label].sort_values("numerical_rank", ascending=False)
    module = adapted_modules(model)[rows["name"].iloc[0]]  # the module that kept the most ranks
    if hasattr(module, "lora_E"):
        adapter = module.active_adapters[0]
        e_scaled = module.lora_E[adapter].detach().abs().flatten() * module.scaling[adapter] / (
            module.ranknum[adapter] + 1e-5)
        print(f"{label} {rows['name'].iloc[0]}")
        print("  |E| * scaling / ranknum:", ", ".join(f"{v:.3g}" for v in e_scaled.sort(descending=True).values))
        print("  true singular values:   ", ", ".join(f"{v:.3g}" for v in module_spectrum(module)))

# %% [markdown]
# ## 5. Effective rank, layer × module

# %%
labelled = report.assign(module=report["adapter"] + " · " + report["module"])
fig = plot_rank_heatmap(labelled, "effective_rank")
save_figure(fig, output / "06_effective_rank")
fig

# %% [markdown]
# ## 6. Subspace similarity
# The LoRA paper compares the top-$i$ right singular directions $U_1$ of one update with the
# top-$j$ directions $U_2$ of another: $\phi(i, j) = \|U_1[:, :i]^\top U_2[:, :j]\|_F^2 / \min(i, j)$,
# between 0 (orthogonal) and 1 (one subspace contains the other). Two random subspaces of a
# $d$-dimensional space give about $\max(i, j) / d$.
#
# First, within one adapter: the same module type in its first and its last layer.

# %%
def usable(label: str) -> pd.DataFrame:
    """Report rows of one adapter whose ΔW is not zero (a zero update has no directions)."""
    return report[(report["adapter"] == label) & (report["numerical_rank"] > 0)]


first_label, first_model = next(iter(adapters.items()))
rows = usable(first_label)
rows = rows[rows["module"] == rows["module"].iloc[0]]
name_a, name_b = rows["name"].iloc[0], rows["name"].iloc[-1]
modules = adapted_modules(first_model)
grid = module_similarity(modules[name_a], modules[name_b])
d_in = int(rows["d_in"].iloc[0])
k = min(grid.shape)
print(f"phi({k}, {k}) = {grid[k - 1, k - 1]:.3f}; random subspaces: about {k / d_in:.3f}")
fig = plot_similarity(grid, title=f"{first_label}: {rows['module'].iloc[0]}, layer "
                      f"{rows['layer'].iloc[0]} vs {rows['layer'].iloc[-1]}",
                      xlabel=f"j (layer {rows['layer'].iloc[-1]})", ylabel=f"i (layer {rows['layer'].iloc[0]})")
save_figure(fig, output / "06_similarity_layers")
fig

# %% [markdown]
# Then between two adapters on the same module (with the demo: LoRA vs AdaLoRA, on the module
# where both kept the most rank). Adapters trained for a few steps from independent random
# initialisations stay close to the random baseline; adapters that learned the same thing share
# their top directions.

# %%
if len(adapters) >= 2:
    (label_1, model_1), (label_2, model_2) = list(adapters.items())[:2]
    both = usable(label_1).merge(usable(label_2), on="name", suffixes=("_1", "_2"))
    both = both.assign(shared=both[["numerical_rank_1", "numerical_rank_2"]].min(axis=1))
    row = both.sort_values("shared", ascending=False).iloc[0]
    grid = module_similarity(adapted_modules(model_1)[row["name"]], adapted_modules(model_2)[row["name"]])
    k = min(grid.shape)
    print(f"{row['name']}\nphi({k}, {k}) = {grid[k - 1, k - 1]:.3f}; random subspaces: about {k / d_in:.3f}")
    fig = plot_similarity(grid, title=f"{label_1} vs {label_2}: layer {row['layer_1']} {row['module_1']}",
                          xlabel=f"j ({label_2})", ylabel=f"i ({label_1})")
    save_figure(fig, output / "06_similarity_adapters")
    display(fig)

# %% [markdown]
# ## 7. Check: the factored spectrum is PEFT's own ΔW's
# ranklab never forms the dense $d \times d$ update: it takes the factors, orthonormalises the
# outer ones (QR) and computes the SVD of a small core. Here we compare that with
# `torch.linalg.svdvals` of PEFT's `get_delta_weight` for one module of each adapter.

# %%
for label, model in adapters.items():
    name = usable(label)["name"].iloc[0]
    module = adapted_modules(model)[name]
    check = check_against_dense(module)
    print(f"{label} {name}\n  {check['factored']} factored vs {check['dense']} dense singular values: max relative "
          f"difference {check['max_relative_difference']:.1e}; largest of the other "
          f"{check['dense'] - check['factored']}: {check['largest_other']:.1e} of sigma_1")
    assert check["max_relative_difference"] < 1e-4 and check["largest_other"] < 1e-4

# %% [markdown]
# ## Next
# - Run it on your adapter: `papermill 06_inspect_your_peft_adapter.ipynb out.ipynb -p adapter_path my-adapter`.
# - `outputs/06_report.csv` holds the full table (all columns) for your own analysis.
# - Record `RankDynamics` while you train (as above) to see when the ranks settle. With the
#   Hugging Face `Trainer`, use `ranklab.integrations.RankDynamicsCallback`: it also calls AdaLoRA's
#   `update_and_allocate`, which the Trainer never does (`examples/hf_trainer_adalora.py`).
# - No base model at hand? `ranklab inspect my-adapter/` reads the adapter file alone (same
#   spectra and ranks as here); `--base DIR` adds the columns that need $W_0$.
# - Not covered: DoRA (its column rescaling makes ΔW not a low-rank product; ranklab says so) and
#   LoRA on convolutions or embeddings (not matrices; those modules are skipped).
