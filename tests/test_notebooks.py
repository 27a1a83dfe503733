"""The example notebooks: committed without outputs, and they run top to bottom on the demo stores.

The demo stores are built once per module (synthetic raw files -> Zarr cubes, a few seconds,
at the plain sizes of the demo's scale rather than the demo's own, larger sizes)
in a temporary folder that ``MEMXR_DEMO_STORES`` points the notebooks at. Each notebook runs
in a fresh ``python3`` kernel of this interpreter with ``notebooks/`` as working directory;
any error in a cell fails the test.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPECTED = ("01_fmri_cube.ipynb", "02_tvsd_time_resolved.ipynb", "03_cross_species.ipynb")
CELL_TIMEOUT = 120  # seconds per cell

# Lines that a correct run prints (checks of the analyses, not just "no error").
EXPECTED_OUTPUT = {
    "01_fmri_cube.ipynb": ["FFA mean equal: True"],
    "02_tvsd_time_resolved.ipynb": ["first bin with p_fdr < 0.05"],
    "03_cross_species.ipynb": ["same order: True", "same memorability: True"],
}


def _ids(path: Path) -> str:
    return path.name


def test_expected_notebooks_exist():
    assert set(EXPECTED) <= {p.name for p in PATHS}


@pytest.mark.parametrize("path", PATHS, ids=_ids)
def test_committed_notebook_has_no_outputs(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} keep outputs or execution counts; strip them"
    )


def _kernel_manager_class():
    """A kernel manager that starts the built-in ``python3`` kernel of this interpreter.

    Kernel specs installed in user or system folders may point at another Python without
    memxr; the built-in spec of ipykernel always runs ``sys.executable``.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return KernelSpecManager(kernel_dirs=[])

    return ThisPythonKernelManager


@pytest.fixture(scope="module")
def demo_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo stores, built once in a temporary folder."""
    pytest.importorskip("nbclient", reason="nbclient is not installed (pip install nbclient)")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install ipykernel)")
    from memxr.demo import run_demo

    out = tmp_path_factory.mktemp("notebooks") / "demo"
    with contextlib.redirect_stdout(io.StringIO()):
        run_demo(out, sizes={})  # the plain sizes of the demo's scale: a quick smoke test
    stores = out / "stores"
    assert (stores / "things-fmri_sub-01.zarr").is_dir()
    return stores


def _text(nb) -> str:
    """Everything the executed notebook printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            elif "data" in output:
                parts.append(output["data"].get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("path", PATHS, ids=_ids)
def test_notebook_runs(path: Path, demo_stores: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        kernel_manager_class=_kernel_manager_class(),
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env={**os.environ, "MEMXR_DEMO_STORES": str(demo_stores)})

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code)
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors
    text = _text(nb)
    # the notebook used the stores built here, not a folder of its own
    assert f"demo stores in {demo_stores.resolve()}" in text
    for line in EXPECTED_OUTPUT.get(path.name, []):
        assert line in text, f"{path.name}: expected output {line!r} missing"
    figures = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert figures, f"{path.name}: no figure was drawn"
