"""Shared test fixtures: paths to the read-only shared folder (skipped cleanly when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
THINGS = SHARED / "data" / "things"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The raw-format fixtures written by other tools (``../shared/fixtures``)."""
    if not (FIXTURES / "truth.json").exists():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def truth(fixtures_dir: Path) -> dict:
    """The exact values a correct reader recovers from the fixtures."""
    return json.loads((fixtures_dir / "truth.json").read_text())


@pytest.fixture(scope="session")
def things_dir() -> Path:
    """The real THINGS memorability and concept tables (``../shared/data/things``)."""
    if not (THINGS / "THINGS_Memorability_Scores.csv").exists():
        pytest.skip(f"real THINGS tables not found at {THINGS}")
    return THINGS
