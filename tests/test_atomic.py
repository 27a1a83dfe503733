"""Writer locks, leftovers and clean: one writer per output, with real processes.

Processes are synchronised through pipes and files, never through sleeps: a writer is
held inside its lock by a pipe filled to capacity before it starts (the ``paused``
fixture of conftest.py: its first write to that pipe, made after taking the lock, blocks
until the test reads), and a process that only holds a lock says so on its stdout.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from memxr.cli import EXIT_BUSY
from memxr.errors import InputError
from memxr.pipeline import ingest
from memxr.schema import example_cube
from memxr.store import PROGRESS_LOG, open_cube, validate_store, write_cube
from memxr.store.atomic import (
    FileLock,
    OutputLockedError,
    atomic_path,
    clean,
    leftovers,
    lock_path,
    output_lock,
)
from memxr.store.export import export_netcdf
from memxr.store.info import format_info, store_info
from memxr.synth import synthesize

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
DEADLINE = 120  # seconds: only reached when something is broken (as in conftest.py)

HOLD = (
    "import sys\n"
    "from memxr.store.atomic import FileLock\n"
    "FileLock(sys.argv[1]).acquire()\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
)


def _listing(folder: Path) -> dict[str, int]:
    """Every file and folder under ``folder`` with its size (what a writer may touch)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1)
        for p in sorted(folder.rglob("*"))
    }


@contextlib.contextmanager
def holder(target: Path) -> Iterator[subprocess.Popen]:
    """A process holding the lock of ``target`` until its stdin closes or it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line == "locked\n", proc.stderr.read()
        yield proc
    finally:
        proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()


def holds(target: Path, pid: int) -> bool:
    h = FileLock(target).holder()
    return h is not None and h.pid == pid and h.alive


# --------------------------------------------------------------------------- the lock


def test_second_writer_refused_with_the_holder(tmp_path):
    target = tmp_path / "c.zarr"
    with holder(target) as proc:
        before = _listing(tmp_path)
        with pytest.raises(OutputLockedError) as err:
            write_cube(example_cube(), target, progress=False)
        host = socket.gethostname()
        assert str(err.value).startswith(
            f"c.zarr: out: being written by pid {proc.pid} on {host} since 20"
        )
        assert "\n" not in str(err.value)
        assert _listing(tmp_path) == before == {".c.zarr.lock": before[".c.zarr.lock"]}
        h = FileLock(target).holder()
        assert (h.pid, h.host, h.alive) == (proc.pid, host, True)


def test_lock_of_a_killed_holder_is_taken_over(tmp_path):
    target = tmp_path / "c.zarr"
    with holder(target) as proc:
        (item,) = leftovers(target)
        assert item["kind"] == "lock" and item["holder"].alive
        with pytest.raises(OutputLockedError, match=f"pid {proc.pid}"):
            clean(target)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (item,) = leftovers(target)  # the lock file stays, its holder is gone
    assert item["holder"].pid == proc.pid and not item["holder"].alive
    write_cube(example_cube(), target, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]


def test_mutual_exclusion_across_processes(tmp_path):
    """Two processes increment a counter under the lock 200 times each: no update is lost,
    although every release removes the lock file that the other may have just opened."""
    counter = tmp_path / "n.txt"
    counter.write_text("0")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from memxr.store.atomic import FileLock\n"
        "p = Path(sys.argv[1])\n"
        "for _ in range(200):\n"
        "    lock = FileLock(p)\n"
        "    lock.acquire(wait=60)\n"
        "    p.write_text(str(int(p.read_text()) + 1))\n"
        "    lock.release()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(counter)], env=ENV) for _ in range(2)
    ]
    assert [p.wait(timeout=DEADLINE) for p in procs] == [0, 0]
    assert counter.read_text() == "400"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.txt"]


def test_reentrant_in_a_thread_exclusive_between_threads(tmp_path):
    target = tmp_path / "t.csv"
    with output_lock(target):
        with atomic_path(target) as tmp:  # the caller's lock is enough
            tmp.write_text("a\n")
        errors = []
        thread = threading.Thread(target=lambda: errors.append(_try_lock(target)))
        thread.start()
        thread.join()
        assert isinstance(errors[0], OutputLockedError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def _try_lock(target: Path) -> BaseException | None:
    try:
        with output_lock(target):
            return None
    except OutputLockedError as e:
        return e


def test_atomic_path_removes_partials_of_killed_writers(tmp_path):
    target = tmp_path / "t.csv"
    (tmp_path / ".t.csv.partial-99999").write_text("half")
    (tmp_path / ".t.csv.partial-old-99998").mkdir()
    with atomic_path(target) as tmp:
        tmp.write_text("whole\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_export_refused_while_the_file_is_written(tmp_path):
    target = tmp_path / "c.nc"
    with holder(target) as proc:
        with pytest.raises(OutputLockedError, match=f"c.nc: out: being written by pid {proc.pid}"):
            export_netcdf(example_cube(), target, progress=False)
    assert not target.exists()


def test_unusable_lock_file_is_one_line(tmp_path):
    (tmp_path / ".c.zarr.lock").mkdir()  # as a read-only folder would, the open fails
    with pytest.raises(InputError) as err:
        write_cube(example_cube(), tmp_path / "c.zarr", progress=False)
    assert str(err.value) == "c.zarr: out: cannot create its lock file .c.zarr.lock: Is a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.zarr.lock"]


def test_lock_path_of_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert lock_path(".") == tmp_path.parent / f".{tmp_path.name}.lock"


# --------------------------------------------------------------------------- leftovers, clean


def test_info_lists_leftovers_and_clean_removes_them(tmp_path, capsys):
    from memxr.cli import main

    target = tmp_path / "c.zarr"
    write_cube(example_cube(), target, progress=False)
    partial = tmp_path / ".c.zarr.partial-45d7e581a895076e"
    partial.mkdir()
    (partial / "zarr.json").write_text("{}")
    with holder(target) as proc:
        text = format_info(store_info(target))
        line = re.escape(f" old  being written by pid {proc.pid} on {socket.gethostname()} since ")
        assert re.search(rf"\npartials   \.c\.zarr\.partial-45d7e581a895076e  2 B  \d+ s{line}20", text), text
        assert main(["clean", str(target)]) == EXIT_BUSY
        assert "c.zarr: out: being written by pid" in capsys.readouterr().err
        assert partial.exists()
    info = store_info(target)
    assert [(x["name"], x["kind"], x["holder"]["alive"]) for x in info["leftovers"]] == [
        (".c.zarr.partial-45d7e581a895076e", "partial", False),
        (".c.zarr.lock", "lock", False),
    ]
    text = format_info(info)
    assert "45d7e581a895076e  2 B" in text and ", gone (a rerun resumes it, memxr clean" in text
    assert ", gone (a rerun takes it over, memxr clean removes it)" in text  # the lock file
    assert main(["clean", str(target)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"removed {partial}",
        f"removed {tmp_path / '.c.zarr.lock'}",
        f"{target}: 2 leftovers of killed writes removed",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]
    assert main(["clean", str(target)]) == 0
    assert capsys.readouterr().out == f"{target}: nothing to remove\n"


def test_info_of_a_missing_store_lists_its_partial(tmp_path, capsys):
    from memxr.cli import main

    (tmp_path / ".c.zarr.partial-0123").mkdir()
    assert main(["info", str(tmp_path / "c.zarr")]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("partials   .c.zarr.partial-0123") and "does not exist" in err


def test_clean_inside_a_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "results" / ".models.zarr.partial-12345").mkdir(parents=True)
    (run / "tables" / ".t.csv.partial-12345").parent.mkdir()
    (run / "tables" / ".t.csv.partial-12345").write_text("half")
    (run / "tables" / "t.csv").write_text("whole")
    (run / "stores").mkdir()
    with holder(run / "stores" / "s.zarr"):  # a live write inside is kept
        (run / "stores" / ".s.zarr.partial-abc").mkdir()
        removed = clean(run)
        assert sorted(p.name for p in removed) == [".models.zarr.partial-12345", ".t.csv.partial-12345"]  # fmt: skip
        assert (run / "stores" / ".s.zarr.partial-abc").exists()
    clean(run)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "run", "run/results", "run/stores", "run/tables", "run/tables/t.csv"
    ]  # fmt: skip


# --------------------------------------------------------------------------- two ingests


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    synthesize(folder, scale=0.001, seed=0, subjects=("sub-01",), monkeys=())
    return folder


def _ingest_argv(raw: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "memxr.cli", "ingest", "things-fmri",
        "--input", str(raw / "things-fmri" / "betas_csv"), "--subject", "sub-01",
        "--memorability", str(raw / "things" / "THINGS_Memorability_Scores.csv"),
        "--concepts", str(raw / "things" / "Concept_to_category_linking.csv"),
        "--out", str(out),
    ]  # fmt: skip


def test_two_concurrent_ingests(raw, tmp_path, paused):
    """The issue's finding 1: a second `memxr ingest` on one --out while the first writes is
    refused with one line naming the first and touches nothing; the first's store is right
    and nothing is left beside it."""
    out = tmp_path / "stores" / "c.zarr"
    first = paused(_ingest_argv(raw, out), "stderr")  # stops at its progress bar

    def logged() -> bool:  # the progress log is the last file written before the bar
        logs = list(out.parent.glob(f".c.zarr.partial-*/{PROGRESS_LOG}"))
        return holds(out, first.pid) and bool(logs) and logs[0].read_text().endswith("\n")

    first.wait_until(logged, "its progress log")
    before = _listing(tmp_path)
    second = subprocess.run(
        _ingest_argv(raw, out), capture_output=True, text=True, env=ENV, timeout=DEADLINE
    )
    assert second.returncode == EXIT_BUSY
    assert second.stderr.startswith(
        f"memxr: error: c.zarr: out: being written by pid {first.pid} on "
        f"{socket.gethostname()} since 20"
    )
    assert second.stderr.count("\n") == 1 and second.stdout == ""
    assert _listing(tmp_path) == before  # the second touched nothing
    assert first.resume() == 0
    assert "writing c.zarr" in first.text and first.other == f"wrote {out}\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["c.zarr"]  # no partial, no lock
    things = raw / "things"
    ref = ingest(
        "things-fmri",
        raw / "things-fmri" / "betas_csv",
        "sub-01",
        tmp_path / "ref.zarr",
        memorability=things / "THINGS_Memorability_Scores.csv",
        concepts=things / "Concept_to_category_linking.csv",
        progress=False,
    )
    a, b = open_cube(out), open_cube(ref)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.attrs["inputs"] == b.attrs["inputs"]
    assert validate_store(out, deep=True).ok
    np.testing.assert_array_equal(a["response"].values, b["response"].values)
