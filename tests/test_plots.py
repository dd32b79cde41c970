"""Figure functions: assertions on the plotted data, and atomic PNG/PDF saving."""
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import ranklab
from ranklab import plots
from ranklab.inspect import (
    RankDynamics,
    RouterProbe,
    model_report,
    model_spectra,
    module_similarity,
    rank_table,
    task_embedding_points,
)
from tests.test_inspect_probes import N_TASKS, D, R, make_model


@pytest.fixture
def lora_model():
    torch.manual_seed(0)
    model = nn.Module()
    model.layer = nn.ModuleList(
        [nn.ModuleDict({"query": nn.Linear(12, 12), "value": nn.Linear(12, 12)}) for _ in range(3)])
    ranklab.attach(model, ranklab.make_config("dylora", r_max=4, target_modules=["query", "value"]))
    for layer in ranklab.adapter_layers(model).values():
        nn.init.normal_(layer.lora_B)
    return model


def test_spectra_lines_equal_spectra(lora_model):
    spectra = model_spectra(lora_model)
    fig = plots.plot_spectra(spectra)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    query_axis = next(ax for ax in fig.axes if ax.get_title() == "query")
    assert [line.get_label() for line in query_axis.lines] == ["layer 0", "layer 1", "layer 2"]
    for index, line in enumerate(query_axis.lines):
        np.testing.assert_allclose(line.get_ydata(), spectra[f"layer.{index}.query"])
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
    normalised = plots.plot_spectra(spectra, normalize=True)
    assert normalised.axes[0].lines[0].get_ydata()[0] == pytest.approx(1.0)


def test_rank_heatmap_image_equals_table(lora_model):
    report = model_report(lora_model)
    fig = plots.plot_rank_heatmap(report, "effective_rank")
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(image), rank_table(report, "effective_rank").to_numpy())
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["query", "value"]


def test_rank_dynamics_lines(lora_model):
    tracker = RankDynamics(every=1)
    for step in range(3):
        tracker(step, lora_model)
        with torch.no_grad():
            lora_model.layer[1]["value"].lora_B.mul_(0.5)
    fig = plots.plot_rank_dynamics(tracker.history, "delta_fro")
    value_axis = next(ax for ax in fig.axes if ax.get_title() == "value")
    line = value_axis.lines[1]  # layer 1
    np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2])
    expected = tracker.history.query("name == 'layer.1.value'")["delta_fro"].to_numpy()
    np.testing.assert_allclose(line.get_ydata(), expected)
    assert line.get_ydata()[1] == pytest.approx(line.get_ydata()[0] / 2)
    with pytest.raises(ValueError, match="unknown measure"):
        plots.plot_rank_dynamics(tracker.history, "nope")


def test_router_distribution_images_equal_gate_table():
    model = make_model()
    with RouterProbe(model, names=["layer.0.query", "layer.1.query"]) as probe:
        for task in range(N_TASKS):
            with ranklab.use_task(task), torch.no_grad():
                model.forward(torch.randn(1, 3, D))
    table = probe.gate_table()
    fig = plots.plot_router_distribution(table)
    axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in axes] == ["layer 0: query", "layer 1: query"]
    expected = table[table["name"] == "layer.1.query"].sort_values("task")[[f"gate_{i}" for i in range(R)]]
    np.testing.assert_allclose(np.asarray(axes[1].images[0].get_array()), expected.to_numpy())


def test_task_embedding_scatter_offsets():
    points = task_embedding_points(make_model(), seed=0)
    fig = plots.plot_task_embeddings(points)
    collections = fig.axes[0].collections
    assert len(collections) == N_TASKS * 2  # one per (task, module)
    first = points[(points["task"] == 0) & (points["name"] == "layer.1.query")]
    np.testing.assert_allclose(collections[0].get_offsets(), first[["x", "y"]].to_numpy())
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [f"task {t}" for t in range(N_TASKS)]
    with pytest.raises(ValueError, match="lacks columns"):
        plots.plot_task_embeddings(pd.DataFrame({"x": [1.0]}))


def test_similarity_heatmap(lora_model):
    grid = module_similarity(lora_model.layer[0]["query"], selector1={"rank": 2}, selector2={"rank": 4})
    fig = plots.plot_similarity(grid)
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array()), grid)


def test_save_figure_writes_png_and_pdf(tmp_path, lora_model):
    fig = plots.plot_spectra(model_spectra(lora_model))
    paths = plots.save_figure(fig, tmp_path / "sub" / "spectra")
    assert [p.name for p in paths] == ["spectra.png", "spectra.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["spectra.pdf", "spectra.png"]  # no temp left
    with pytest.raises(ValueError, match="formats"):
        plots.save_figure(fig, tmp_path / "x", formats=("jpg",))


def _pdf_fonts(path) -> set[bytes]:
    """The font subtypes a PDF declares (matplotlib writes font dictionaries uncompressed)."""
    import re

    return set(re.findall(rb"/Subtype\s*/(Type3|TrueType|Type1|Type0|CIDFontType2)", path.read_bytes()))


def test_pdf_figures_embed_truetype_fonts_not_type3(tmp_path, lora_model):
    import matplotlib

    fig = plots.plot_rank_heatmap(model_report(lora_model))
    fig.suptitle(r"effective rank $\sigma_1$ — ΔW")  # mathtext and non-ASCII glyphs too
    before = matplotlib.rcParams["pdf.fonttype"]
    pdf = next(p for p in plots.save_figure(fig, tmp_path / "fonts") if p.suffix == ".pdf")
    fonts = _pdf_fonts(pdf)
    # Type 42: simple TrueType fonts, or CIDFontType2 (TrueType outlines) for glyphs beyond Latin-1
    assert b"Type3" not in fonts and fonts & {b"TrueType", b"CIDFontType2"}, fonts
    assert b"/FontFile2" in pdf.read_bytes()  # the TrueType program is embedded, not only named
    assert matplotlib.rcParams["pdf.fonttype"] == before  # the user's settings are left alone
    # the check can fail: matplotlib's default (what save_figure overrides) writes Type 3 fonts
    with matplotlib.rc_context({"pdf.fonttype": 3}):
        fig.savefig(tmp_path / "default.pdf")
    assert b"Type3" in _pdf_fonts(tmp_path / "default.pdf")


def test_committed_pdf_figures_have_no_type3_fonts():
    from pathlib import Path

    pdfs = sorted((Path(__file__).resolve().parents[1] / "figures").glob("*.pdf"))
    assert pdfs, "no committed PDF figures found"
    type3 = [p.name for p in pdfs if b"Type3" in _pdf_fonts(p)]
    assert not type3, f"redraw with `make figures` (save_figure writes Type 42): {type3}"
