"""The example notebook runs from top to bottom, offline, and shows what it says it shows."""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


def test_the_example_notebook_runs_and_shows_its_grids(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [base64.b64decode(out["data"]["image/png"]) for cell in notebook.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert len(images) == 2 and all(image.startswith(b"\x89PNG") for image in images)  # both grids
    saved = next(out for cell in notebook.cells[::-1] if cell.cell_type == "code"
                 for out in cell.get("outputs", []) if "text/plain" in out.get("data", {}))
    assert "heads.head__class0.png" in saved["data"]["text/plain"]
    assert list((tmp_path / "lightning_logs").glob("version_*/images/manifest.csv"))  # ran where it was told
