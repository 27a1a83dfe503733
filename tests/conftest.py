"""Shared test fixtures: paths to the read-only shared folder (skipped cleanly when absent),
and memxr processes paused at a point that needs no timing."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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


# --------------------------------------------------------------------------- processes

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
"""Environment of the memxr processes started by tests (this checkout first on the path)."""

DEADLINE = 120.0
"""Seconds a test waits for a process; only reached when something is broken."""


class PausedProcess:
    """A command whose first write to ``stream`` blocks until :meth:`resume`.

    ``stream`` ("stdout" or "stderr") is the write end of a pipe filled to capacity before
    the command starts, so the command stops at its first write there: a synchronisation
    point that depends on no timing (``memxr run`` first prints after taking the lock of
    its OUT; ``memxr ingest`` first writes its progress bar after creating its partial).
    The other stream goes to a file.
    """

    def __init__(self, argv: list[str], stream: str):
        read, write = os.pipe()
        os.set_blocking(write, False)
        for size in (65536, 4096, 1):
            with contextlib.suppress(BlockingIOError):
                while True:
                    os.write(write, b"\0" * size)
        os.set_blocking(write, True)
        self._other = tempfile.TemporaryFile()
        streams = {"stdout": write, "stderr": self._other}
        if stream == "stderr":
            streams = {"stdout": self._other, "stderr": write}
        self.proc = subprocess.Popen(argv, env=ENV, **streams)
        os.close(write)
        self.pid = self.proc.pid
        self._data = b""
        self._drain = threading.Thread(target=self._read, args=(read,), daemon=True)

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as f:
            self._data = f.read()

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        """Poll ``done()`` (on files the command writes); fail if the command ends first."""
        deadline = time.monotonic() + DEADLINE
        while not done():
            assert self.proc.poll() is None, f"ended ({self.proc.returncode}) before {what}"
            assert time.monotonic() < deadline, f"did not get to {what}"
            time.sleep(0.01)

    def resume(self) -> int:
        """Let the command write on; wait for it to end; its exit code."""
        if self._drain.ident is None:
            self._drain.start()
        code = self.proc.wait(DEADLINE)
        self._drain.join(DEADLINE)
        return code

    @property
    def text(self) -> str:
        """What the command wrote to the paused stream (after :meth:`resume`)."""
        return self._data.lstrip(b"\0").decode(errors="replace")

    @property
    def other(self) -> str:
        """What it wrote to the other stream."""
        self._other.seek(0)
        return self._other.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:  # a test failed before resuming it
            self.proc.kill()
        self.resume()
        self._other.close()


@pytest.fixture
def paused() -> Iterator[Callable[..., PausedProcess]]:
    """Start commands paused at their first write (:class:`PausedProcess`); ended after the test."""
    started: list[PausedProcess] = []

    def start(argv: list[str], stream: str = "stdout") -> PausedProcess:
        started.append(PausedProcess([str(a) for a in argv], stream))
        return started[-1]

    yield start
    for p in started:
        p.close()
