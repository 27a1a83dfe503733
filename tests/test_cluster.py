"""Clients from configuration, and the pipeline on a real scheduler with worker processes.

The real-cluster tests start ``dask scheduler`` and two ``dask worker`` processes, run the
same spec as on a local cluster and compare the tables byte for byte, then run it again while
one worker is killed with SIGKILL in the middle of the models step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memxr.errors import InputError
from memxr.pipeline import run
from memxr.pipeline.cluster import cluster_client, dashboard_link, get_client, slurm_cluster
from memxr.testing import write_spec

DASK = Path(sys.executable).parent / "dask"


# ----------------------------------------------------------------------------- clients


def test_local_client_runs_tasks_and_has_a_dashboard():
    with cluster_client(workers=1, processes=False) as client:
        assert client.submit(sum, [1, 2, 3]).result() == 6
        assert len(client.scheduler_info()["workers"]) == 1
        assert dashboard_link(client).startswith("http://")
    assert client.status == "closed"


def test_bad_configuration():
    with pytest.raises(ValueError, match="cluster must be 'local' or 'slurm', got 'pbs'"):
        get_client(cluster="pbs")
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        get_client(workers=0)
    with pytest.raises(InputError, match=r"^127\.0\.0\.1:1: scheduler: cannot connect: "):
        get_client(scheduler="tcp://127.0.0.1:1", timeout="1s")


def test_slurm_job_script():
    pytest.importorskip("dask_jobqueue")
    with slurm_cluster(
        2,
        "8GB",
        queue="short",
        account="lab",
        walltime="01:30:00",
        job_extra_directives=["--gres=gpu:1"],
    ) as cluster:
        script = cluster.job_script()
    directives = [ln for ln in script.splitlines() if ln.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH -J dask-worker",
        "#SBATCH -p short",
        "#SBATCH -A lab",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=8G",
        "#SBATCH -t 01:30:00",
        "#SBATCH --gres=gpu:1",
    ]
    command = script.strip().splitlines()[-1]
    assert "distributed.cli.dask_worker tcp://" in command
    assert "--nthreads 2" in command and "--memory-limit" in command


# ----------------------------------------------------------------------------- real cluster


def _spec(folder: Path) -> Path:
    changes = {
        "correlation": {"n_permutations": 19, "n_bootstrap": 19},
        "timecourse": {"n_permutations": 9},
        "models": {"cv": 3, "n_permutations": 5},
        "bridge": {"n_bootstrap": 9, "rsa": {"level": "concept", "n_permutations": 9}},
    }
    return write_spec(folder, "cluster.yaml", name="cluster", title=None, **changes)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from memxr.synth import synthesize

    folder = tmp_path_factory.mktemp("cluster")
    synthesize(folder / "raw", scale=0.002, seed=0, subjects=("sub-01",), monkeys=("N",))
    _spec(folder)
    return folder


@pytest.fixture(scope="module")
def local_tables(work) -> dict[str, bytes]:
    out = run(work / "cluster.yaml", out=work / "local", workers=2, log=lambda _: None)
    return _tables(out)


@pytest.fixture(scope="module")
def scheduler(work):
    """A scheduler and two single-threaded worker processes (no nanny: SIGKILL ends a worker)."""
    if not DASK.exists():
        pytest.skip(f"no dask command beside {sys.executable}")
    sched_file = work / "scheduler.json"
    logs = work / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    files = []

    def start(name: str, args: str) -> None:
        files.append(open(logs / f"{name}.log", "w"))  # closed in the finally below
        cmd = [str(DASK), *(a.format(file=sched_file) for a in args.split())]
        procs.append(subprocess.Popen(cmd, stdout=files[-1], stderr=subprocess.STDOUT))

    try:
        start(
            "scheduler",
            "scheduler --host 127.0.0.1 --port 0 --dashboard-address 127.0.0.1:0"
            " --scheduler-file {file}",
        )
        _wait(lambda: _address(sched_file) is not None, "the scheduler file")
        for i in range(2):
            start(
                f"w{i}",
                f"worker --scheduler-file {{file}} --nthreads 1 --no-nanny --name w{i}"
                " --memory-limit 2GB",
            )
        address = _address(sched_file)
        with get_client(scheduler=address) as observer:
            _wait(lambda: len(observer.scheduler_info()["workers"]) == 2, "two workers")
        yield {"address": address, "file": sched_file, "workers": procs[1:]}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
        for f in files:
            f.close()


def _address(sched_file: Path) -> str | None:
    """The scheduler address in its file, None until the file is written completely."""
    try:
        return json.loads(sched_file.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


def _wait(condition, what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"no {what} after {timeout} s")
        time.sleep(0.05)


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "tables").glob("*.csv"))}


def test_scheduler_address_gives_the_same_tables(work, scheduler, local_tables):
    lines: list[str] = []
    out = run(
        work / "cluster.yaml", out=work / "remote", scheduler=scheduler["address"], log=lines.append
    )
    assert lines[1].startswith("dashboard: http://127.0.0.1:")
    assert len(local_tables) == 8  # with timecourse_clusters.csv
    assert _tables(out) == local_tables
    assert all(p.poll() is None for p in scheduler["workers"]), "the workers keep running"


def test_killed_worker_gives_the_same_tables(work, scheduler, local_tables):
    """SIGKILL one worker while it runs a task of the models step: the run still succeeds."""
    out = work / "killed"
    state = out / ".memxr" / "state.json"
    victim = scheduler["workers"][1]
    killed = threading.Event()

    def models_started() -> bool:
        try:
            return "timecourse" in json.loads(state.read_text())["steps"]
        except (OSError, ValueError):
            return False

    def killer(observer) -> None:
        address = next(
            a for a, w in observer.scheduler_info()["workers"].items() if w["name"] == "w1"
        )
        while not killed.is_set() and not finished.is_set():
            if models_started() and observer.processing(workers=[address])[address]:
                os.kill(victim.pid, signal.SIGKILL)
                killed.set()
            time.sleep(0.01)

    finished = threading.Event()
    with get_client(scheduler=scheduler["file"]) as observer:
        thread = threading.Thread(target=killer, args=(observer,), daemon=True)
        thread.start()
        try:
            lines: list[str] = []
            run(work / "cluster.yaml", out=out, scheduler=str(scheduler["file"]), log=lines.append)
        finally:
            finished.set()
            thread.join(timeout=10)
        assert killed.is_set(), "the worker was not killed during the run"
        assert victim.wait(timeout=10) == -signal.SIGKILL
        _wait(lambda: len(observer.scheduler_info()["workers"]) == 1, "removal of the worker")
    assert _tables(out) == local_tables
