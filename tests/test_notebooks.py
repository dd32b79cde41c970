"""Every notebook runs top to bottom in smoke mode, is stored without outputs, and its
.ipynb matches its jupytext (py:percent) source."""
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs_and_matches_its_source(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} holds outputs"
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "smoke = False" in parameters[0].source
    source = jupytext.read(path.with_suffix(".py"))
    code = lambda nb: [c.source for c in nb.cells if c.cell_type == "code"]  # noqa: E731
    assert code(notebook) == code(source), f"run `jupytext --sync {path.with_suffix('.py').name}`"


def _outputs(cell) -> list:
    return cell.get("outputs", []) if cell.cell_type == "code" else []


def displayed_images(notebook) -> int:
    return sum("image/png" in out.get("data", {}) for cell in notebook.cells for out in _outputs(cell))


def warning_boxes(notebook) -> list[str]:
    """stderr text that holds a warning or an error (what JupyterLab shows as a pink box)."""
    found = []
    for cell in notebook.cells:
        for out in _outputs(cell):
            text = out.get("text", "") if out.get("name") == "stderr" else ""
            if "Warning" in text or "Error" in text or out.get("output_type") == "error":
                found.append(text[:300] or out.get("ename", "error"))
    return found


@pytest.mark.timeout(900)  # a hung kernel (e.g. nbclient with widgets) fails this test, not the whole CI run
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode_and_shows_what_it_saves(path, tmp_path):
    papermill.execute_notebook(  # execution_timeout: a cell that hangs fails with the cell named
        str(path), str(tmp_path / path.name), cwd=str(tmp_path), kernel_name="python3", progress_bar=False,
        execution_timeout=300,
        parameters={"smoke": True, "seed": 0, "output_dir": str(tmp_path / "outputs"),
                    "results_dir": str(tmp_path / "results")},  # ignored by notebooks without runs
    )
    saved = sorted(p.stem for p in (tmp_path / "outputs").glob("*.png"))
    assert saved, "the notebook saved no figure"
    executed = nbformat.read(tmp_path / path.name, as_version=4)
    # every figure the notebook saves (and announces in its text) is also shown: none "saved but not shown"
    assert displayed_images(executed) >= len(saved), f"saved {saved} but displayed {displayed_images(executed)}"
    assert not warning_boxes(executed), warning_boxes(executed)
