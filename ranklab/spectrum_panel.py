"""Real adapters' rank on screen: one trained module's spectrum with its four rank measures marked.

``spectrum_state`` (pure numbers) and ``spectrum_figure`` draw one ΔW's normalised singular values
σ_k / σ_1 with the effective rank (Roy & Vetterli: exp of the entropy of σ / Σσ), the stable rank
(Σσ² / σ_1²), the energy rank at τ (smallest k keeping τ of Σσ²) and the numerical rank (σ_k >
tol · σ_1), and a sentence on why they differ for this spectrum.  ``spectrum_panel(summary)`` picks
the run (method, task, seed), layer and module from a results summary whose report rows keep
their whole spectrum (``spectrum``; runs analysed with analysis format 4 or later).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from .inspect import effective_rank, energy_rank, numerical_rank, stable_rank
from .widgets import Panel

MEASURES = {"numerical": "#000000", "effective": "#0072B2", "energy": "#E69F00", "stable": "#009E73"}


def spectrum_state(sigma: Sequence[float], tau: float = 0.9, tol: float = 1e-3) -> dict[str, Any]:
    """The four measures of one spectrum and a sentence on why they disagree."""
    s = np.sort(np.asarray(sigma, dtype=float))[::-1]
    if len(s) == 0 or s[0] <= 0:
        raise ValueError("the spectrum is empty or zero: nothing to measure")
    state = {"sigma": s, "normalised": s / s[0], "tau": tau, "tol": tol,
             "numerical": numerical_rank(s, tol), "effective": effective_rank(s), "energy": energy_rank(s, tau),
             "stable": stable_rank(s), "share_1": float(s[0] ** 2 / np.sum(s**2))}
    state["sentence"] = _why(state)
    return state


def _why(state: dict[str, Any]) -> str:
    """Why the measures differ here: each weighs the tail of the spectrum differently."""
    n, eff, stable, energy = state["numerical"], state["effective"], state["stable"], state["energy"]
    return (f"All {n} directions above {state['tol']:g}·σ_1 count for the numerical rank ({n}); the effective rank "
            f"({eff:.2f}) weighs them by σ itself, so a long tail of small values still adds; the stable rank "
            f"({stable:.2f}) weighs by σ², so the top direction, which holds {100 * state['share_1']:.0f}% of the "
            f"energy, dominates; the energy rank ({energy}) counts the directions needed for {100 * state['tau']:.0f}% "
            f"of Σσ². The effective rank is never below the stable one (Σσ²/σ_1² <= Σσ/σ_1 <= exp H), and the "
            f"longer the tail, the further apart all four sit.")


def spectrum_figure(state: dict[str, Any], title: str = "") -> Figure:
    fig = Figure(figsize=(7.2, 3.9), layout="constrained")
    ax = fig.add_subplot()
    k = np.arange(1, len(state["sigma"]) + 1)
    ax.bar(k, state["normalised"], color="#999999", label="σ_k / σ_1")
    for (name, colour), style in zip(MEASURES.items(), ("-", "--", "-.", ":")):
        value = state[name]
        text = f"{name} rank {value:.2f}" if isinstance(value, float) else f"{name} rank {value}"
        ax.axvline(value, color=colour, linestyle=style, linewidth=1.6, label=text)
    ax.axhline(state["tol"], color="black", linewidth=0.6, linestyle=":")
    ax.set(xlabel="k (singular value index)", ylabel="σ_k / σ_1", title=title or "spectrum of ΔW", ylim=(0, 1.05))
    ax.set_xticks(k if len(k) <= 32 else k[::4])
    ax.legend(fontsize=8, loc="upper right")
    return fig


def report_spectra(summary: dict[str, Any]) -> dict[tuple, list[float]]:
    """(method label, task, seed, layer, module) -> spectrum, for every reported run whose report
    rows keep their spectrum."""
    out = {}
    for run in summary.get("runs", []):
        for row in (run.get("analysis") or {}).get("report", []):
            if row.get("spectrum") and run["recipe"] != "continuation":
                task = "+".join(run["tasks"]) if row.get("task") is None else run["tasks"][row["task"]]
                out[(run["label"], task, run["seed"], row.get("layer"), row.get("module"))] = row["spectrum"]
    return out


def spectrum_panel(summary: dict[str, Any]) -> Panel:
    """Dropdowns for method, task, seed, layer and module, and sliders for τ and the tolerance."""
    import ipywidgets

    spectra = report_spectra(summary)
    if not spectra:
        raise ValueError("this results summary keeps no spectra (its runs were analysed before analysis format 4); "
                         "retrain or re-analyse them (ranklab reproduce recomputes a stale analysis)")
    keys = list(spectra)

    def choice(name: str, i: int) -> Any:
        options = list(dict.fromkeys(k[i] for k in keys))
        return ipywidgets.Dropdown(options=options, value=options[0], description=name)

    controls = {"method": choice("method", 0), "task": choice("task", 1), "seed": choice("seed", 2),
                "layer": choice("layer", 3), "module": choice("module", 4),
                "tau": ipywidgets.FloatSlider(value=0.9, min=0.5, max=0.99, step=0.01, description="τ (energy)",
                                              continuous_update=False),
                "tol": ipywidgets.FloatLogSlider(value=1e-3, base=10, min=-6, max=-1, description="tol (numerical)",
                                                 continuous_update=False)}

    def state(method: str, task: str, seed: int, layer: Any, module: str, tau: float, tol: float) -> dict[str, Any]:
        key = (method, task, seed, layer, module)
        if key not in spectra:
            raise ValueError(f"no run of {method} on {task} at seed {seed} has layer {layer} {module}")
        out = spectrum_state(spectra[key], tau, tol)
        out["title"] = f"{method}, {task}, seed {seed}: layer {layer} {module}"
        return out

    return Panel(controls, state, lambda s: spectrum_figure(s, s["title"]),
                 {"effective": "effective", "stable": "stable", "energy": "energy", "numerical": "numerical",
                  "sentence": "why"})
