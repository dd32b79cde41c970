"""Widget panels: set slider values, read the numbers and the figure the panel produced."""
import numpy as np
import pytest

from ranklab import widgets


def test_emd_panel_follows_sliders():
    panel = widgets.emd_panel(d=64, true_rank=10, decay=0.8)
    panel.controls["a"].value = 3
    panel.controls["b"].value = 7
    panel.controls["r"].value = 5
    state = panel.state
    assert state["emd_params"] == 64 * 3 + 3 * 7 + 7 * 64
    assert state["lora_params"] == 5 * (64 + 64)
    assert state["exported_rank"] == 3
    target = 0.8 ** np.arange(10)
    assert state["emd_energy_kept"] == pytest.approx(np.sum(target[:3] ** 2) / np.sum(target**2))
    # the figure shows exactly those spectra
    lines = panel.figure.axes[0].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), target)
    np.testing.assert_allclose(lines[1].get_ydata(), np.where(np.arange(10) < 3, target, 0))
    # a random B'TA' has rank min(a, b): 3 non-zero singular values, drawn as 3 bars
    assert len(panel.figure.axes[1].patches) == 3
    assert state["random_init_sigma"].min() > 1e-3


def test_emd_state_rejects_ranks_out_of_range():
    with pytest.raises(ValueError, match="a, b and r must be in 1..16"):
        widgets.emd_state(a=17, b=2, r=2, d_in=16, d_out=16)


def test_emd_panel_shows_error_instead_of_crashing():
    panel = widgets.emd_panel(d=16)
    panel.controls["a"].value = 20
    assert "must be in 1..16" in panel.summary.value
    assert panel.state["a"] != 20  # the last valid state is kept


def test_lora_panel_opens_on_a_visible_spectrum_and_explains_the_zero_init():
    panel = widgets.lora_panel(d=32)
    assert panel.state["norm"] > 0 and panel.figure.axes[0].patches  # a first-time user sees bars
    panel.controls["init_std"].value = 0.0  # LoRA's own init: B = 0, so ΔW = 0
    assert np.all(panel.state["sigma"] == 0) and panel.state["norm"] == 0
    assert "B starts at zero" in " ".join(t.get_text() for t in panel.figure.axes[0].texts)
    panel.controls["init_std"].value = 0.5
    panel.controls["r"].value = 4
    panel.controls["alpha"].value = 8.0
    state = panel.state
    assert state["scaling"] == 2.0 and len(state["sigma"]) == 4
    assert 1.0 < state["effective_rank"] <= 4.0
    heights = [bar.get_height() for bar in panel.figure.axes[0].patches]
    np.testing.assert_allclose(heights, state["sigma"])
