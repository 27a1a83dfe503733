"""The package's layout: rooms by flow, their import contracts, privacy of underscore names."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import memxr

PKG = Path(memxr.__file__).resolve().parent
REPO = PKG.parent
ROOMS = ("bridge", "models", "pipeline", "readers", "report", "stats", "store", "synth")


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [exe, "--no-logo", "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def pyproject() -> Path:
    path = REPO / "pyproject.toml"
    if not path.is_file():
        pytest.skip("not a source checkout (no pyproject.toml beside the package)")
    return path


def test_import_contracts_are_kept(pyproject):
    out = _lint_imports(REPO, REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("stats/kernels.py", "from ..pipeline import run", "Rooms by flow"),
        ("store/info.py", "from .. import reduce", "Rooms by flow"),
        ("synth/fmri.py", "from ..readers.things_fmri import subject_label", "Synthetic data"),
    ],
)
def test_a_deliberate_violation_breaks_the_contract(pyproject, tmp_path, module, line, contract):
    shutil.copytree(PKG, tmp_path / "memxr", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(pyproject, tmp_path / "pyproject.toml")
    target = tmp_path / "memxr" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    out = _lint_imports(tmp_path, tmp_path)
    assert out.returncode != 0, out.stdout
    assert f"{contract}" in out.stdout and "BROKEN" in out.stdout, out.stdout


def _underscore_imports(root: Path) -> list[str]:
    """``from X import _name`` (any depth) where X is another module of the package."""
    found = []
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        package = parts[:-1] if parts[-1] != "__init__" else parts
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{f.relative_to(root.parent)}:{node.lineno} {alias.name}")
                if any(p.startswith("_") and not p.startswith("__") for p in target.split(".")):
                    found.append(f"{f.relative_to(root.parent)}:{node.lineno} {target}")
    return found


def test_no_module_imports_another_modules_underscore_names():
    assert _underscore_imports(PKG) == []


def test_the_top_level_shows_the_flow():
    entries = sorted(p.name for p in PKG.iterdir() if p.name != "__pycache__")
    rooms = [p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()]
    assert sorted(rooms) == sorted(ROOMS)
    assert len(entries) <= 20, entries


@pytest.mark.parametrize("room", [*ROOMS, "readers.formats"])
def test_every_room_says_what_it_is_and_what_it_may_import(room):
    mod = importlib.import_module(f"memxr.{room}")
    assert mod.__doc__ and "May import" in mod.__doc__
    if room != "readers.formats":
        assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("memxr.spec", "memxr.pipeline.spec"),
        ("memxr.cluster", "memxr.pipeline.cluster"),
        ("memxr.catalog", "memxr.store.catalog"),
        ("memxr.export", "memxr.store.export"),
        ("memxr.plots", "memxr.report.plots"),
    ],
)
def test_former_module_paths_still_import(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_documented_entry_points():
    from memxr.export import export_netcdf
    from memxr.spec import load_spec

    from memxr.bridge import cross_decode
    from memxr.cli import main
    from memxr.models import fit_models
    from memxr.readers.things_fmri import read_things_fmri
    from memxr.stats import correlate
    from memxr.store import open_cube, write_cube

    assert all(callable(f) for f in (cross_decode, main, export_netcdf, fit_models, load_spec))
    assert all(callable(f) for f in (read_things_fmri, correlate, open_cube, write_cube))
    for name in memxr.__all__:
        assert getattr(memxr, name) is not None


def test_version_matches_the_installed_metadata():
    from importlib.metadata import version

    assert memxr.__version__ == version("memxr")
