"""The package's import contract: cheap import, every public name resolves."""

import subprocess
import sys

import grounded_sam as gs


def test_all_lists_exactly_the_lazy_exports():
    assert set(gs.__all__) - {"__version__"} == set(gs._EXPORTS)


def test_every_public_name_resolves():
    for name in gs.__all__:
        assert getattr(gs, name) is not None


def test_import_loads_no_heavy_library():
    code = (
        "import sys, grounded_sam;"
        "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'gradio', 'segment_anything')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
