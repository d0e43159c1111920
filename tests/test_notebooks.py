"""Both notebooks execute top to bottom without an error (nbclient, a kernel of this venv).

They use the real checkpoints when ``models/`` has them and the tiny random models otherwise.
The kernel is a kernelspec written to a temporary folder that points at this interpreter
(``sys.executable -m ipykernel_launcher``) and comes first on ``JUPYTER_PATH``, so the run
does not depend on any kernel installed for the user or the system.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "grounded-sam-test"


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "grounded-sam tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return KERNEL


@pytest.mark.parametrize(
    "name, min_images",
    [("quickstart.ipynb", 5), ("auto_labeling.ipynb", 2)],
)
def test_notebook_executes(kernel, name, min_images):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError with the cell and traceback on any error

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= min_images, f"{name}: the overlays were not displayed"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Real checkpoints" in text or "TINY RANDOM" in text  # says which models it used


@pytest.mark.parametrize("name", ["quickstart.ipynb", "auto_labeling.ipynb"])
def test_stored_outputs_are_captioned_as_random_weight_outputs(name):
    """The notebooks are stored with the outputs of the tiny random models (so they show
    something when opened online), and say so before the first output."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{name} is stored without its outputs"
    first_output = next(i for i, c in enumerate(nb.cells) if c.get("outputs"))
    captions = [
        c.source
        for c in nb.cells[:first_output]
        if c.cell_type == "markdown" and "random weights" in c.source
    ]
    assert captions, f"{name}: no caption saying the stored outputs come from random weights"
    stored = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "TINY RANDOM" in stored  # the outputs are the tiny models', as the caption says
