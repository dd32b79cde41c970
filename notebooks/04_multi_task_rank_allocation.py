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
# # 04 · Multi-task rank allocation: each rank is an expert
#
# Seed paper 1 (multi-task part; its longer version is MoRE) gives every adapted module one
# LoRA of maximum rank 16 shared by all tasks, a learned **task embedding** per task, and a
# gate that picks, per task, how many ranks to use (`selection="prefix"`: ranks 0..k, so low
# ranks are shared). The gate learns through a straight-through estimator; a contrastive loss
# keeps the task embeddings apart. We compare it with LoRA r=8 and r=16 and with MoR on three
# offline tasks (seed Table 1 bottom), then look inside: the gate distributions per task, the
# chosen ranks per layer, and the t-SNE of the last layer's task embeddings (the paper's Fig. 2).

# %% tags=["parameters"]
smoke = False
seed = 0
output_dir = "outputs"
results_dir = "../results"
scale = "embedded"

# %%
# %matplotlib inline
from pathlib import Path

import pandas as pd
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
# ## 1. Train the four multi-task runs (finished runs are reused)
# One shared adapted encoder, one classification head per task; each batch holds one task and
# the trainer sets its id once (`ranklab.use_task`), which the routers read.

# %%
runs = recipe_runs(["multi_task"], scale, seed)
for run in runs:
    print(f"{run.label:20s} {run.config.method:12s} {run.config.adapter} tasks={run.config.tasks}")
run_recipes(["multi_task"], scale, results_dir, seed)
summary = collect(scale, results_dir, seed, names=["multi_task"])

# %% [markdown]
# ## 2. Per-task results beside the paper's

# %%
display(Markdown(tables.results_markdown(summary)))
fig = figs.fig_results(summary, "multi_task")
save_figure(fig, output / "04_multi_task_results")
fig

# %% [markdown]
# ## 3. Which ranks does each task use?
# The gate probability per rank, per task, in the last layer, and the rank each task chose in
# every layer. Different tasks choosing different ranks is the method's point; all tasks
# choosing the maximum means the budget was not the bottleneck at this scale.

# %%
fig = figs.fig_router_distribution(summary)
save_figure(fig, output / "04_router_distribution")
fig

# %%
fig = figs.fig_chosen_ranks(summary)
save_figure(fig, output / "04_chosen_ranks")
router_run = next(r for r in summary["runs"] if r["method"] == "rank_router")
table = pd.DataFrame(router_run["analysis"]["router"])
table["task"] = [router_run["tasks"][t] for t in table["task"]]
table.pivot_table(index="layer", columns=["module", "task"], values="chosen_rank")

# %% [markdown]
# ## 4. The last layer's task embeddings (the paper's Fig. 2)
# t-SNE of the task embeddings of the last layer's routers (query and value modules stacked);
# with only a few points it falls back to PCA and says so in the title.

# %%
fig = figs.fig_task_embeddings(summary)
save_figure(fig, output / "04_task_embeddings")
fig
