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
# # 02 · Enhanced Matrix Decomposition (EMD)
#
# Zhang et al. (2025) add a small core between LoRA's factors so the two sides can have
# different ranks: $\Delta W = s\,B' T A'$ with $A' \in \mathbb{R}^{a\times d}$,
# $T \in \mathbb{R}^{b\times a}$, $B' \in \mathbb{R}^{d\times b}$.
# Cost: $d\,a + a\,b + b\,d$ parameters. The product has rank at most $\min(a, b)$, so a
# trained EMD exports exactly to a plain LoRA of rank $\min(a, b)$.

# %% tags=["parameters"]
smoke = False
seed = 0
output_dir = "outputs"     # where this notebook writes its figures

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ranklab import widgets
from ranklab.experiments import fit_planted
from ranklab.inspect import effective_rank
from ranklab.plots import save_figure

steps = 40 if smoke else 400
Path(output_dir).mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Choose a, b and r interactively
# The panel plants an update with a decaying spectrum on a 384 × 384 layer (MiniLM's width)
# and shows, exactly and without training, what the best EMD(a, b) and the best LoRA(r) can keep
# (Eckart–Young), their parameter counts, and the spectrum of a randomly initialised B'·T·A'.

# %%
panel = widgets.emd_panel(d=384, true_rank=12, decay=0.8)
panel

# %%
# The paper's budget: a + b = 16 costs about what LoRA r = 8 costs.
for a, b in [(8, 8), (4, 12), (12, 4), (2, 14)]:
    state = widgets.emd_state(a, b, 8, 384, 384)
    print(f"a={a:2d} b={b:2d}: {state['emd_params']:,} params (LoRA r=8: {state['lora_params']:,}), "
          f"exported rank {state['exported_rank']}, energy kept {state['emd_energy_kept']:.3f}")

# %% [markdown]
# ## 2. Training EMD on a planted update
# Same toy as notebook 01: a planted rank-4 update. Unequal ranks still learn it as long as
# $\min(a, b) \ge 4$; with $\min(a, b) < 4$ EMD keeps the top singular values, like a LoRA of
# that rank.

# %%
settings = [(8, 8), (4, 12), (12, 4), (2, 14)]
fig, ax = plt.subplots(figsize=(6.5, 3.8))
k = np.arange(1, 9)
for i, (a, b) in enumerate(settings):
    fit = fit_planted("emd", steps=steps, true_rank=4, decay=0.7, seed=seed, a=a, b=b)
    sigma = np.zeros(8)
    sigma[: min(8, len(fit.learned_sigma))] = fit.learned_sigma[:8]
    # small sideways offsets: the three min(a, b) >= 4 curves coincide with the planted spectrum
    ax.plot(k + (i - 1.5) * 0.07, sigma, "o--", markersize=4,
            label=f"a={a}, b={b}: loss {fit.losses[-1]:.1e}, eff. rank {effective_rank(fit.learned_sigma):.2f}")
ax.plot(np.arange(1, 5), fit.planted_sigma, "o-", color="0.3", lw=5, alpha=0.35, label="planted (rank 4)")
ax.set(xlabel="k (singular value index)", ylabel="σ_k of the learned ΔW", xticks=k,
       title="EMD spectra after training: a=2 keeps only the top 2")
ax.legend(fontsize=7)
save_figure(fig, Path(output_dir) / "02_emd_spectra");  # ";": show the figure, not the list of files written

# %% [markdown]
# ## 3. Export to a plain LoRA
# `lora_factors()` folds the core $T$ into the wider side: $B = s B' T$, $A = A'$ when $a \le b$
# ($B' T$ keeps $B'$'s $d_\text{out}$ rows and $a$ columns), $B = s B'$, $A = T A'$ otherwise;
# either way the exported rank is $\min(a, b)$.
# The exported pair reproduces ΔW exactly.

# %%
layer = fit_planted("emd", steps=steps, true_rank=4, decay=0.7, seed=seed, a=4, b=12).layer
lora_B, lora_A = layer.lora_factors()
print("exported LoRA shapes:", tuple(lora_B.shape), tuple(lora_A.shape))
print("max |B A - ΔW| =", float((lora_B @ lora_A - layer.delta_weight()).detach().abs().max()))
