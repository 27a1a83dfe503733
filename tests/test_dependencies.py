"""The dependency policy, kept by the files that state it.

``pyproject.toml`` gives ranges whose lower bounds are the versions of ``requirements/lock.txt``
(the set `make test`, `make demo` and CI install); an upper bound only beside the upstream issue
of the break it avoids; ``environment.yml`` mirrors the ranges for conda users.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
# conda-forge numbers releases, not PyPI's re-uploads of wheels (netCDF4 1.7.5.1.post1)
CONDA_SPECS = {"netcdf4": ">=1.7.5"}


@pytest.fixture(scope="module")
def project() -> dict:
    path = REPO / "pyproject.toml"
    if not path.is_file():
        pytest.skip("not a source checkout")
    return tomllib.loads(path.read_text())["project"]


@pytest.fixture(scope="module")
def lock() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "requirements" / "lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def _requirements(project: dict) -> list[Requirement]:
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def test_lower_bounds_are_the_lock(project, lock):
    for req in _requirements(project):
        name = canonicalize_name(req.name)
        lower = [s for s in req.specifier if s.operator == ">="]
        assert not [s for s in req.specifier if s.operator in ("==", "~=", "===")], req
        assert len(lower) == 1, f"{req}: one lower bound, the locked version"
        assert name in lock, f"{name} is not in requirements/lock.txt"
        assert Version(lower[0].version) == lock[name], f"{req}: the lock has {lock[name]}"


def test_the_lock_is_within_the_ranges(project, lock):
    for req in _requirements(project):
        assert lock[canonicalize_name(req.name)] in req.specifier, req


def test_upper_bounds_name_their_upstream_issue(project):
    text = (REPO / "pyproject.toml").read_text()
    for req in _requirements(project):
        if any(s.operator in ("<", "<=", "!=") for s in req.specifier):
            line = next(i for i, t in enumerate(text.splitlines()) if f'"{req}"' in t)
            before = "\n".join(text.splitlines()[max(0, line - 3) : line + 1])
            assert re.search(r"[\w.-]+/[\w.-]+#\d+|issues/\d+", before), (
                f"{req}: an upper bound needs its upstream issue in a comment beside it"
            )


def test_environment_yml_mirrors_the_ranges(project):
    text = (REPO / "environment.yml").read_text()
    assert "not tested in ci" in text.lower()
    conda = {}
    for m in re.finditer(r"^\s+- ([A-Za-z0-9_.-]+)(\S*)", text, re.M):
        conda[canonicalize_name(m.group(1))] = m.group(2)
    for r in project["dependencies"]:
        req = Requirement(r)
        name = canonicalize_name(req.name)
        assert name in conda, f"{name} missing from environment.yml"
        spec = CONDA_SPECS.get(name, str(req.specifier))
        assert conda[name] == spec, f"{name}: {conda[name]} in environment.yml, {spec} here"
