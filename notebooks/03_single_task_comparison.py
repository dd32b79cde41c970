# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Single-task comparison: LoRA, EMD, DyLoRA, AdaLoRA
#
# Seed paper 1 compares its Enhanced Matrix Decomposition (EMD) with LoRA at the same budget
# (Table 1, top: RoBERTa-large on GLUE) and with DyLoRA and AdaLoRA (Table 2). Here the same
# recipe runs at the **embedded** scale — MiniLM-L6 on offline real tasks, on a CPU — and our
# numbers are put beside the paper's. Finished runs are reused: if `make reproduce` already ran,
# this notebook trains nothing.
#
# | label | method | budget per 384 x 384 module |
# |---|---|---|
# | LoRA r=8 | `lora` | 8 (384 + 384) = 6,144 |
# | EMD a=4, b=12 | `emd` | 384·4 + 4·12 + 12·384 = 6,192 |
# | DyLoRA r<=8 | `dylora` | 6,144, trained at random ranks 1..8 |
# | AdaLoRA 12->8 | PEFT `adalora` | starts at rank 12, prunes to an average of 8 |

# %% tags=["parameters"]
smoke = False              # True: tiny model on synthetic tasks (used by the test suite)
seed = 0
output_dir = "outputs"     # where this notebook writes its figures
results_dir = "../results" # run folders shared with `make reproduce` (finished runs are reused)
scale = "embedded"         # "embedded" (CPU, offline) or "paper" (RoBERTa on GLUE, needs the hub and a GPU)

# %%
# %matplotlib inline
from pathlib import Path

from IPython.display import Markdown, display

from ranklab.experiments import figures as figs
from ranklab.experiments import tables
from ranklab.experiments.recipes import get_scale, recipe_runs
from ranklab.experiments.runner import collect, run_recipes
from ranklab.plots import save_figure

scale = "smoke" if smoke else scale
output = Path(output_dir)
output.mkdir(parents=True, exist_ok=True)
print(get_scale(scale).description)

# %% [markdown]
# ## 1. The runs
# One run per method and task. Every run is a `TrainConfig`; printing them shows exactly what
# will be trained.

# %%
runs = recipe_runs(["single_task"], scale, seed)
for run in runs:
    c = run.config
    print(f"{run.run_id:45s} {c.method:8s} {c.adapter}  lr={c.lr} epochs={c.epochs} max_train={c.max_train}")

# %% [markdown]
# ## 2. Train (or reuse finished runs)
# At the embedded scale this takes a few minutes on a laptop CPU; each run's record, adapter
# weights and analysis land in `results_dir`.

# %%
run_recipes(["single_task"], scale, results_dir, seed)
summary = collect(scale, results_dir, seed, names=["single_task"])

# %% [markdown]
# ## 3. Our numbers beside the paper's
# Main metric x 100 on each task's test split. The paper's columns are its GLUE averages with
# RoBERTa: a different backbone, different tasks and a much larger budget, so compare the
# ordering of the methods, not the values.

# %%
display(Markdown(tables.results_markdown(summary)))
fig = figs.fig_results(summary, "single_task")
save_figure(fig, output / "03_single_task_results")
fig

# %% [markdown]
# ## 4. How much rank did each method use?
# Effective rank (Roy & Vetterli) of every ΔW, computed exactly from the factors. EMD's update
# has rank at most min(a, b) = 4; LoRA's at most 8.

# %%
fig = figs.fig_effective_rank(summary)
save_figure(fig, output / "03_effective_rank")
fig

# %% [markdown]
# ## 5. One DyLoRA adapter, every rank — and AdaLoRA's budget
# DyLoRA trains with a random rank each step, so the same adapter can be evaluated at every
# rank b. AdaLoRA prunes singular values during training toward its target budget.

# %%
fig = figs.fig_dylora_curve(summary)
save_figure(fig, output / "03_dylora_rank_curve")
fig

# %%
fig = figs.fig_adalora_budget(summary)
save_figure(fig, output / "03_adalora_rank_budget")
fig
