"""Interactive panels for choosing ranks (a, b for EMD, r for LoRA).

Each panel is a pure function ``*_state(...) -> dict`` (the numbers) plus a thin ipywidgets
wiring that redraws a matplotlib figure from that state.  Tests drive the panels by setting
widget values and read ``panel.state`` and ``panel.figure``.

The EMD panel answers: for a planted update ΔW* with a chosen spectrum, what can an EMD of ranks
(a, b) represent, at what parameter cost, compared with a LoRA of rank r?  By Eckart-Young the
best rank-k approximation keeps the top k singular values, and B'·T·A' has rank <= min(a, b).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .accounting import module_params
from .inspect import effective_rank, spectrum_from_factors, stable_rank


def planted_spectrum(true_rank: int, decay: float) -> np.ndarray:
    """Singular values of the planted update: decay**k for k < true_rank."""
    return decay ** np.arange(true_rank, dtype=float)


def emd_state(a: int, b: int, r: int, d_in: int = 384, d_out: int = 384, true_rank: int = 12,
              decay: float = 0.8, seed: int = 0) -> dict[str, Any]:
    """Numbers shown by the EMD panel; all exact, no training."""
    if min(a, b, r) < 1 or max(a, b, r) > min(d_in, d_out):
        raise ValueError(f"a, b and r must be in 1..{min(d_in, d_out)}, got a={a}, b={b}, r={r}")
    target = planted_spectrum(true_rank, decay)
    emd_rank, lora_rank = min(a, b), r
    emd_fit = np.where(np.arange(true_rank) < emd_rank, target, 0.0)
    lora_fit = np.where(np.arange(true_rank) < lora_rank, target, 0.0)
    generator = torch.Generator().manual_seed(seed)
    random_factors = [torch.randn(d_out, b, generator=generator), torch.randn(b, a, generator=generator),
                      torch.randn(a, d_in, generator=generator)]
    random_sigma = spectrum_from_factors(random_factors).numpy()
    energy = float(np.sum(target**2))
    return {
        "a": a, "b": b, "r": r,
        "emd_params": sum(module_params("emd", d_in, d_out, a=a, b=b).values()),
        "lora_params": sum(module_params("lora", d_in, d_out, r=r).values()),
        "exported_rank": emd_rank,
        "target_sigma": target,
        "emd_sigma": emd_fit,
        "lora_sigma": lora_fit,
        "random_init_sigma": random_sigma,
        "emd_energy_kept": float(np.sum(emd_fit**2)) / energy,
        "lora_energy_kept": float(np.sum(lora_fit**2)) / energy,
        "emd_effective_rank": effective_rank(emd_fit),
        "emd_stable_rank": stable_rank(emd_fit),
        "random_init_effective_rank": effective_rank(random_sigma),
    }


def emd_figure(state: dict[str, Any]) -> Figure:
    """Left: planted spectrum and what EMD(a, b) / LoRA(r) keep.  Right: a random B'TA'."""
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    k = np.arange(1, len(state["target_sigma"]) + 1)
    left.plot(k, state["target_sigma"], "o-", color="0.6", label="planted ΔW*")
    left.plot(k, state["emd_sigma"], "s--", label=f"best EMD a={state['a']}, b={state['b']} "
              f"({state['emd_params']:,} params)")
    left.plot(k, state["lora_sigma"], "^:", label=f"best LoRA r={state['r']} ({state['lora_params']:,} params)")
    left.set(xlabel="k (singular value index)", ylabel="σ_k",
             title=f"best fits; exported LoRA rank = min(a, b) = {state['exported_rank']}")
    left.legend(fontsize=8)
    sigma = state["random_init_sigma"]
    right.bar(np.arange(1, len(sigma) + 1), sigma, color="tab:purple")
    right.set(xlabel="k (singular value index)", ylabel="σ_k", title=f"a random B'·T·A' (not trained): rank "
              f"{len(sigma)}, effective rank {state['random_init_effective_rank']:.2f}")
    for axes in (left, right):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def lora_state(r: int, alpha: float, init_std: float = 0.0, d: int = 64, seed: int = 0) -> dict[str, Any]:
    """Spectrum of s·B·A at initialisation: zero when B starts at 0 (LoRA's choice)."""
    if not 1 <= r <= d:
        raise ValueError(f"r must be in 1..{d}, got {r}")
    generator = torch.Generator().manual_seed(seed)
    A = torch.empty(r, d).uniform_(-1 / d**0.5, 1 / d**0.5, generator=generator)
    B = torch.randn(d, r, generator=generator) * init_std
    sigma = spectrum_from_factors([B * (alpha / r), A]).numpy()
    return {"r": r, "alpha": alpha, "scaling": alpha / r, "sigma": sigma,
            "effective_rank": effective_rank(sigma), "norm": float(np.sqrt(np.sum(sigma**2)))}


def lora_figure(state: dict[str, Any]) -> Figure:
    figure = Figure(figsize=(5, 3.4), layout="constrained")
    axes = figure.subplots()
    sigma = state["sigma"]
    axes.bar(np.arange(1, len(sigma) + 1), sigma)
    axes.set(xlabel="k (singular value index)", ylabel="σ_k of s·B·A at initialisation",
             title=f"r={state['r']}, α={state['alpha']:g}, s={state['scaling']:.2f}: "
             f"effective rank {state['effective_rank']:.2f}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not np.any(sigma > 0):  # LoRA's own start: say why the plot is empty
        axes.text(0.5, 0.5, "ΔW = 0: B starts at zero (LoRA's init),\nso every singular value is 0.\n"
                  "Raise 'B init std' to see a non-zero start.", transform=axes.transAxes, ha="center", va="center")
    return figure


class Panel:
    """Sliders -> ``state_fn(**values)`` -> ``figure_fn(state)`` shown in an Output widget."""

    def __init__(self, controls: dict[str, Any], state_fn: Callable[..., dict], figure_fn: Callable[[dict], Figure],
                 summary_keys: dict[str, str] | tuple[str, ...] = ()) -> None:
        import ipywidgets

        self.controls, self.state_fn, self.figure_fn = controls, state_fn, figure_fn
        # state key -> the label shown beside its number
        self.summary_keys = summary_keys if isinstance(summary_keys, dict) else {k: k for k in summary_keys}
        self.output = ipywidgets.Output()
        self.summary = ipywidgets.HTML()
        self.widget = ipywidgets.VBox([ipywidgets.HBox(list(controls.values())), self.summary, self.output])
        for control in controls.values():
            control.observe(lambda change: self.update(), names="value")
        self.state: dict[str, Any] = {}
        self.figure: Figure | None = None
        self.update()

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def update(self) -> None:
        from IPython.display import display

        try:
            self.state = self.state_fn(**self.values())
        except ValueError as error:  # e.g. a rank larger than the layer: say so in the panel
            self.summary.value = f"<b style='color:#b00'>{error}</b>"
            return
        self.figure = self.figure_fn(self.state)
        self.summary.value = " &nbsp;|&nbsp; ".join(f"{label}: <b>{_fmt(self.state[k])}</b>"
                                                   for k, label in self.summary_keys.items())
        self.output.clear_output(wait=True)
        with self.output:
            display(self.figure)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _fmt(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}" if isinstance(value, float) else str(value)


def emd_panel(d: int = 384, true_rank: int = 12, decay: float = 0.8) -> Panel:
    """Sliders for a, b and r on a d x d layer with a planted rank-``true_rank`` update."""
    import ipywidgets

    def slider(name: str, value: int) -> Any:
        return ipywidgets.IntSlider(value=value, min=1, max=32, description=name, continuous_update=False)

    controls = {"a": slider("a", 4), "b": slider("b", 12), "r": slider("r", 8)}
    return Panel(controls, lambda a, b, r: emd_state(a, b, r, d, d, true_rank, decay), emd_figure,
                 {"emd_params": "EMD params", "lora_params": "LoRA params", "exported_rank": "exported rank",
                  "emd_energy_kept": "energy kept by EMD", "lora_energy_kept": "energy kept by LoRA",
                  "emd_effective_rank": "effective rank of the best EMD fit"})


def lora_panel(d: int = 64, init_std: float = 0.3) -> Panel:
    """Sliders for r, alpha and B's init scale.  It opens at a non-zero B (``init_std``) so the plot
    shows a spectrum; 0 is LoRA's own zero init (the figure then says why it is empty)."""
    import ipywidgets

    controls = {
        "r": ipywidgets.IntSlider(value=8, min=1, max=d, description="r", continuous_update=False),
        "alpha": ipywidgets.FloatSlider(value=16.0, min=1.0, max=64.0, step=1.0, description="alpha", continuous_update=False),
        "init_std": ipywidgets.FloatSlider(value=init_std, min=0.0, max=1.0, step=0.05, description="B init std",
                                           continuous_update=False),
    }
    return Panel(controls, lambda r, alpha, init_std: lora_state(r, alpha, init_std, d), lora_figure,
                 {"scaling": "scaling s = α/r", "effective_rank": "effective rank", "norm": "‖ΔW‖_F"})
