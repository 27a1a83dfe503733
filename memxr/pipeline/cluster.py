"""A Dask client from configuration: a local cluster, a running scheduler, or SLURM.

Three ways to get workers, chosen by :func:`get_client` (or the context manager
:func:`cluster_client`, which also shuts down what it started):

``scheduler="tcp://HOST:PORT"`` (or the path of a scheduler file)
    Connect to a scheduler that is already running (``dask scheduler`` plus
    ``dask worker`` processes started by hand, on one machine or many). Nothing
    is started or stopped by memxr.
``cluster="local"`` (default)
    A :class:`distributed.LocalCluster` on this machine: ``workers`` worker
    processes (default 2) of ``threads_per_worker`` threads, dashboard on a
    free port.
``cluster="slurm"``
    A :class:`dask_jobqueue.SLURMCluster` (optional dependency
    ``dask-jobqueue``): each worker is one SLURM job of ``threads_per_worker``
    cores and ``memory_limit`` memory; extra keywords (``queue``, ``account``,
    ``walltime``, ``job_extra_directives``, ...) go to ``SLURMCluster``.
    :func:`slurm_cluster` builds it without submitting anything, so that the job
    script can be inspected (``cluster.job_script()``).

``memxr run SPEC --scheduler ADDRESS | --cluster local|slurm --workers N`` uses these.

Examples
--------
>>> with cluster_client(workers=1, processes=False) as client:  # doctest: +SKIP
...     print(dashboard_link(client))
http://127.0.0.1:.../status
>>> get_client(cluster="pbs")
Traceback (most recent call last):
...
ValueError: cluster must be 'local' or 'slurm', got 'pbs'
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = [
    "CLUSTERS",
    "close_client",
    "cluster_client",
    "dashboard_link",
    "get_client",
    "slurm_cluster",
]

CLUSTERS = ("local", "slurm")
"""Kinds of cluster :func:`get_client` can start."""

DEFAULT_WORKERS = 2
"""Workers started when none are asked for."""

DEFAULT_SLURM_MEMORY = "4GiB"
"""Memory of one SLURM worker job when neither the call nor the dask config gives one."""

_OWNED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> cluster it started


def _check(cluster: str | None, workers: int | None, threads_per_worker: int) -> str:
    cluster = cluster or "local"
    if cluster not in CLUSTERS:
        raise ValueError(f"cluster must be 'local' or 'slurm', got {cluster!r}")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if int(threads_per_worker) < 1:
        raise ValueError(f"threads_per_worker must be a positive integer, got {threads_per_worker}")
    return cluster


def slurm_cluster(
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    **kw: Any,
):
    """A SLURM cluster object (no job is submitted until it is scaled).

    Parameters
    ----------
    threads_per_worker : int
        Cores of each worker job (``#SBATCH --cpus-per-task``), one worker
        process per job.
    memory_limit : str, int or "auto"
        Memory of each job (``#SBATCH --mem``); ``"auto"``: the
        ``jobqueue.slurm.memory`` dask config value, else
        :data:`DEFAULT_SLURM_MEMORY`.
    **kw
        Passed to :class:`dask_jobqueue.SLURMCluster` (``queue``, ``account``,
        ``walltime``, ``job_extra_directives``, ``job_script_prologue``,
        ``local_directory``, ``interface`` ...).

    Returns
    -------
    dask_jobqueue.SLURMCluster

    Raises
    ------
    ImportError
        When dask-jobqueue is not installed (``pip install 'memxr[slurm]'``).

    Examples
    --------
    >>> with slurm_cluster(2, "8GB", walltime="01:00:00") as c:  # doctest: +SKIP
    ...     print(c.job_script())
    #!/usr/bin/env bash
    #SBATCH -J dask-worker
    #SBATCH -n 1
    #SBATCH --cpus-per-task=2
    #SBATCH --mem=8G
    #SBATCH -t 01:00:00
    ...
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "cluster='slurm' needs dask-jobqueue: pip install 'memxr[slurm]'"
            " (or pip install dask-jobqueue==0.9.0)"
        ) from e
    import dask

    if memory_limit in (None, "auto"):
        memory_limit = dask.config.get("jobqueue.slurm.memory", None) or DEFAULT_SLURM_MEMORY
    scheduler_options = {"dashboard_address": ":0", **kw.pop("scheduler_options", {})}
    options = {"processes": 1, **kw}
    return SLURMCluster(
        cores=int(threads_per_worker),
        memory=memory_limit,
        scheduler_options=scheduler_options,
        **options,
    )


def _connect(address: str, timeout: str):
    """A client of a running scheduler, by address or scheduler file (one-line error if none)."""
    from distributed import Client

    try:
        if "://" not in address and Path(address).is_file():
            return Client(scheduler_file=address, timeout=timeout)
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise InputError(address, "scheduler", f"cannot connect: {e}") from None


def get_client(
    cluster: str | None = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    timeout: str = "30s",
    **kw: Any,
):
    """A :class:`distributed.Client` on a running scheduler, a local cluster or SLURM.

    Parameters
    ----------
    cluster : {"local", "slurm"} or None
        What to start when no ``scheduler`` is given (None means local).
    scheduler : str, optional
        Address of a running scheduler (``tcp://127.0.0.1:8786``) or the path of
        a scheduler file (``dask scheduler --scheduler-file``); then
        ``cluster``, ``workers`` and the rest are ignored.
    timeout : str
        How long to try to reach that scheduler.
    workers : int, optional
        Worker processes (local) or worker jobs (SLURM); default 2.
    threads_per_worker : int
        Threads of each worker (cores of each SLURM job).
    memory_limit : str, int or "auto"
        Memory limit of each worker (``"auto"``: the machine's memory shared
        among the local workers; see :func:`slurm_cluster` for SLURM).
    **kw
        Passed to :class:`distributed.LocalCluster` (e.g. ``processes=False``)
        or to :func:`slurm_cluster`.

    Returns
    -------
    distributed.Client
        Set as the default scheduler of dask. Close it with :func:`close_client`
        (which also shuts down a cluster started here), or use
        :func:`cluster_client`.

    Raises
    ------
    ValueError
        For an unknown ``cluster`` or a non-positive ``workers``.
    memxr.errors.InputError
        When no scheduler answers at ``scheduler``.
    """
    from distributed import Client

    kind = _check(cluster, workers, threads_per_worker)
    if scheduler:
        return _connect(str(scheduler), timeout)
    n = DEFAULT_WORKERS if workers is None else int(workers)
    if kind == "slurm":
        made = slurm_cluster(threads_per_worker, memory_limit, **kw)
        made.scale(jobs=n)
    else:
        from distributed import LocalCluster

        options = {"dashboard_address": ":0", "processes": True, **kw}
        made = LocalCluster(
            n_workers=n,
            threads_per_worker=int(threads_per_worker),
            memory_limit=memory_limit,
            **options,
        )
    try:
        client = Client(made)
    except BaseException:
        made.close()
        raise
    _OWNED[client] = made
    return client


def close_client(client) -> None:
    """Close a client from :func:`get_client` and the cluster it started (if any)."""
    made = _OWNED.pop(client, None)
    with contextlib.suppress(Exception):
        client.close()
    if made is not None:
        with contextlib.suppress(Exception):
            made.close()


@contextlib.contextmanager
def cluster_client(
    cluster: str | None = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    **kw: Any,
) -> Iterator[Any]:
    """:func:`get_client` as a context manager: ``with cluster_client() as client:``.

    On exit the client is closed, and the cluster too when it was started here
    (a scheduler given by address keeps running).

    Examples
    --------
    >>> with cluster_client(workers=1, processes=False) as client:
    ...     int(client.submit(sum, [1, 2]).result())
    3
    """
    client = get_client(cluster, scheduler, workers, threads_per_worker, memory_limit, **kw)
    try:
        yield client
    finally:
        close_client(client)


def dashboard_link(client) -> str:
    """The URL of the client's dashboard, or ``""`` when the scheduler serves none.

    Examples
    --------
    >>> with cluster_client(workers=1, processes=False) as client:
    ...     dashboard_link(client).startswith("http")
    True
    """
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return ""
        return str(client.dashboard_link)
    except Exception:  # noqa: BLE001 - a missing dashboard is not an error
        return ""
