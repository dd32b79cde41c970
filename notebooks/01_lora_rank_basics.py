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
# # 01 · LoRA rank basics
#
# A LoRA adapter adds a low-rank update to a frozen layer: $y = W_0 x + s\,BAx$ with
# $A \in \mathbb{R}^{r\times d}$, $B \in \mathbb{R}^{d\times r}$ and $s = \alpha / r$.
# Here we plant an update $\Delta W^{*}$ of **known rank 4** into a toy 64 × 64 layer and watch
# what the rank $r$, the scale $\alpha$ and the initialisation do to what the adapter learns.
# Everything runs in seconds on a laptop CPU.

# %% tags=["parameters"]
smoke = False          # True: a few steps only (used by the test suite)
seed = 0
output_dir = "outputs"     # where this notebook writes its figures

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ranklab import widgets
from ranklab.experiments import fit_planted
from ranklab.inspect import effective_rank, energy_rank, stable_rank
from ranklab.plots import save_figure

steps = 40 if smoke else 400
Path(output_dir).mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. The rank r: too small, just right, more than needed
# The planted update has singular values $0.7^k$ for $k = 0..3$ and nothing else. A LoRA of rank
# $r$ can represent at most $r$ of them; extra rank should stay unused (singular values near 0).

# %%
ranks = [1, 2, 4, 8, 16]
fits = {r: fit_planted("lora", steps=steps, true_rank=4, decay=0.7, seed=seed, r=r, alpha=r) for r in ranks}
rows = []
for r, fit in fits.items():
    sigma = fit.learned_sigma
    rows.append((r, fit.losses[-1], effective_rank(sigma), stable_rank(sigma), energy_rank(sigma, 0.99)))
print(f"{'r':>3} {'final loss':>11} {'eff. rank':>9} {'stable':>7} {'energy99':>8}")
for r, loss, erank, srank, k in rows:
    print(f"{r:>3} {loss:11.2e} {erank:9.2f} {srank:7.2f} {k:8d}")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
planted = fits[4].planted_sigma
k = np.arange(1, 9)
ax.plot(np.arange(1, 5), planted, "o-", color="0.3", lw=5, alpha=0.35, label="planted ΔW* (rank 4)")
for i, (r, fit) in enumerate(fits.items()):
    sigma = np.zeros(8)
    sigma[: min(8, len(fit.learned_sigma))] = fit.learned_sigma[:8]
    # small sideways offsets: the r >= 4 curves coincide with the planted spectrum
    ax.plot(k + (i - 2) * 0.06, sigma, "o--", markersize=4, label=f"LoRA r={r}")
ax.set(xlabel="k (singular value index)", ylabel="σ_k of the learned ΔW", xticks=k,
       title="Learned spectra: r < 4 cuts the planted spectrum off, r ≥ 4 recovers it")
ax.legend(fontsize=8)
save_figure(fig, Path(output_dir) / "01_rank_spectra");  # ";": show the figure, not the list of files written

# %% [markdown]
# With $r < 4$ the adapter keeps the largest singular values (the best rank-$r$ approximation);
# with $r \ge 4$ it recovers all four and leaves the spare directions near zero: the
# **effective rank** (Roy & Vetterli: $\exp$ of the entropy of $\sigma/\sum\sigma$) stays near
# the planted one's, whatever $r$ we allowed.
#
# Real adapters are not this clean. A trained LoRA r=8 on real text has no planted rank to find:
# its spectrum falls off gradually, with a long tail of small directions, and the rank measures
# that agree here then disagree (the effective rank counts the tail, the stable rank hardly does).
# Notebook 03, section 1, shows them side by side on the committed runs, and its panel draws any
# trained module's spectrum with the four measures marked.

# %% [markdown]
# ## 2. The scale α: how far each step moves ΔW
# With Adam, each step changes A and B by about the learning rate, so ΔW = s·BA moves in steps
# proportional to $s = \alpha/r$: α acts like a multiplier on the learning rate. Too small is
# slow (α = 1); a wide middle range converges alike (α = 8 and 64 overlap); far too large
# (α = 1024) overshoots, and the loss stalls orders of magnitude higher for most of the run.

# %%
alphas = [1, 8, 64, 1024]
fig, ax = plt.subplots(figsize=(6, 3.5))
for alpha in alphas:
    fit = fit_planted("lora", steps=steps, true_rank=4, decay=0.7, seed=seed, r=8, alpha=alpha, lr=3e-3)
    ax.semilogy(fit.losses, label=f"α={alpha} (s={alpha / 8:g})")
ax.set(xlabel="step", ylabel="loss", title="LoRA r=8: the scale sets the pace")
ax.legend()
save_figure(fig, Path(output_dir) / "01_alpha_losses");  # ";": show the figure, not the list of files written

# %% [markdown]
# ## 3. Initialisation: B = 0 makes ΔW start at exactly zero
# LoRA initialises $A$ like `nn.Linear` and $B$ at zero, so the adapted model starts as the
# base model. The panel opens with a non-zero $B$ (std 0.3) so you can see what a random start
# looks like: its spectrum is spread over all $r$ directions. Move "B init std" to 0 for LoRA's
# own start (every bar disappears), and move r and α to see the scaling $s = \alpha/r$ at work.

# %%
panel = widgets.lora_panel(d=64)
panel

# %%
zero = widgets.lora_state(r=8, alpha=16, init_std=0.0, d=64)
print("LoRA's zero init: σ_1..σ_4 =", zero["sigma"][:4], "→ ‖ΔW‖_F =", zero["norm"])
