"""Notebooks run from a fresh kernel, as a learner runs them (nbclient, ipykernel):

* an exercise's notebook (``npformer exercise start ID --notebook``): as written, its last cell
  reports "not started"; with the reference answer in the stub's cell, it passes;
* docs/walkthrough.py, converted by jupytext from its "percent" format, top to bottom.

The kernel is this interpreter's (ipykernel's own ``python3``), so it imports the npformer
that the tests run. Where CI runs (CI=true) a missing nbclient is a failure, not a skip.
"""
import os
from pathlib import Path

import pytest

from npformer.cli import main
from npformer.exercise import files

ROOT = Path(__file__).resolve().parents[2]
if os.environ.get("CI") == "true":
    import jupytext
    import nbclient
    import nbformat
else:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    jupytext = pytest.importorskip("jupytext")
    pytest.importorskip("ipykernel")


def execute(nb, folder: Path, timeout: int = 300):
    """Run every cell of ``nb`` in a fresh kernel started in ``folder``; the notebook, with outputs."""
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute()
    return nb


def printed(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.fixture
def notebook(tmp_path, capsys):
    assert main(["exercise", "start", "relu", "--notebook", "--dir", str(tmp_path)]) == 0
    assert "relu.ipynb" in capsys.readouterr().out
    return tmp_path / "relu.ipynb"


def test_the_notebook_is_the_task_the_stub_and_the_check(notebook):
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    task, stub, grade = nb.cells
    assert task.cell_type == "markdown" and "derivations.md#relu" in task.source
    assert stub.source == files.template("relu").rstrip("\n")
    assert grade.source.endswith("check('relu', {'relu_backward': relu_backward})")


def test_a_stub_reports_not_started_and_the_answer_passes(notebook, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    nb = execute(nbformat.read(notebook, as_version=4), notebook.parent)
    assert "relu: NOT STARTED" in printed(nb.cells[2])
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[1].source = files.reference_text("relu")
    nb = execute(nb, notebook.parent)
    assert "relu: PASSED" in printed(nb.cells[2])


def test_a_second_start_keeps_the_learners_notebook(notebook, capsys):
    notebook.write_text(notebook.read_text().replace("NotImplementedError", "NotImplementedError  # mine"))
    assert main(["exercise", "start", "relu", "--notebook", "--dir", str(notebook.parent)]) == 2
    assert "exists" in capsys.readouterr().err and "# mine" in notebook.read_text()
    assert main(["exercise", "start", "relu", "--notebook", "--staged", "--dir", str(notebook.parent)]) == 2


def test_the_walkthrough_runs_as_a_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")   # pictures to files, no window
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = jupytext.read(ROOT / "docs" / "walkthrough.py")
    nb = execute(nb, tmp_path, timeout=600)
    text = "".join(printed(c) for c in nb.cells if c.cell_type == "code")
    assert "gradient check 'encoder layer': passed" in text
    assert "planted bug 'layernorm without gamma': caught" in text
    assert any((tmp_path / "runs" / "walkthrough").glob("*.png"))
