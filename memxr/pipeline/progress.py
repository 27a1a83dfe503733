"""Progress lines of the steps of ``memxr run``: tasks done of those submitted, elapsed, ETA.

A long step (ingesting a cube, the models of a spec) is a stream of dask tasks. While a step
runs, :func:`task_progress` prints one line every ``interval`` seconds::

    [ 9/13] models: 1840/5210 tasks (35%), 6m12s elapsed, ~11m20s to go

The counts come from the scheduler that runs the tasks:

- on a :class:`distributed.Client`, from :class:`TaskCounter`, a scheduler plugin that counts
  the tasks entering the scheduler (``released -> waiting``) and those finished
  (``processing -> memory`` or ``erred``), read by the client every ``interval`` seconds;
- without one, from :class:`LocalCounter`, a :class:`dask.callbacks.Callback` that counts the
  tasks of every computation on dask's local schedulers during the step.

The total is that of the tasks submitted so far, so a step that submits its work in rounds
(the models with early stopping) sees it grow, and the ETA (elapsed time x remaining / done)
is rough. ``memxr run`` prints these lines when stderr is a terminal, or with ``--progress``
(``--progress-interval SECONDS``, default 30).

Examples
--------
>>> import dask.array as da
>>> lines = []
>>> with task_progress(None, "sum", lines.append, interval=0.0):
...     _ = da.ones(100, chunks=10).sum().compute(scheduler="sync")
>>> lines[-1].startswith("sum: ") and "tasks" in lines[-1]
True
>>> format_seconds(3725.0), format_seconds(42.4)
('1h02m05s', '42s')
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from dask.callbacks import Callback

__all__ = ["DEFAULT_INTERVAL", "LocalCounter", "TaskCounter", "format_seconds", "task_progress"]

DEFAULT_INTERVAL = 30.0
"""Seconds between two progress lines of a step."""

PLUGIN_NAME = "memxr-task-counter"


def _scheduler_plugin_base() -> type:
    try:
        from distributed.diagnostics.plugin import SchedulerPlugin
    except ImportError:  # pragma: no cover - distributed is a dependency
        return object
    return SchedulerPlugin


class TaskCounter(_scheduler_plugin_base()):  # type: ignore[misc]
    """Scheduler plugin: tasks that entered the scheduler and tasks that finished, so far."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.added = 0
        self.done = 0

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "released" and finish == "waiting":
            self.added += 1
        elif start == "processing" and finish in ("memory", "erred"):
            self.done += 1


def scheduler_counts(dask_scheduler: Any = None) -> tuple[int, int] | None:
    """(added, done) of the scheduler's :class:`TaskCounter` (run on the scheduler)."""
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME) if dask_scheduler is not None else None
    return None if plugin is None else (int(plugin.added), int(plugin.done))


class LocalCounter(Callback):
    """Counts the tasks of the computations on dask's local schedulers while active."""

    def __init__(self) -> None:
        super().__init__()
        self.added = 0
        self.done = 0

    def _start_state(self, dsk: Any, state: dict) -> None:
        self.added += len(state["ready"]) + len(state["waiting"])

    def _posttask(self, key: Any, result: Any, dsk: Any, state: dict, worker_id: Any) -> None:
        self.done += 1


def format_seconds(seconds: float) -> str:
    """``1h02m05s``, ``3m10s`` or ``42s``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _line(label: str, added: int, done: int, elapsed: float) -> str:
    done = min(done, added)
    pct = 100.0 * done / added if added else 0.0
    eta = format_seconds(elapsed * (added - done) / done) if done else "?"
    return (
        f"{label}: {done}/{added} tasks ({pct:.0f}%), {format_seconds(elapsed)} elapsed,"
        f" ~{eta} to go"
    )


def _client_counter(client: Any, say: Callable[[str], None]) -> Callable[[], tuple[int, int]] | None:
    """A function reading the scheduler's counts (the plugin registered once per scheduler)."""
    try:
        if client.run_on_scheduler(scheduler_counts) is None:
            client.register_plugin(TaskCounter(), name=PLUGIN_NAME)
        client.run_on_scheduler(scheduler_counts)
    except Exception as e:  # noqa: BLE001 - a scheduler without memxr: no counts, no failure
        say(f"progress: no task counts from this scheduler ({type(e).__name__}: {e})")
        return None

    def read() -> tuple[int, int]:
        return client.run_on_scheduler(scheduler_counts) or (0, 0)

    return read


@contextlib.contextmanager
def task_progress(
    client: Any,
    label: str,
    say: Callable[[str], None],
    interval: float = DEFAULT_INTERVAL,
) -> Iterator[None]:
    """Print a progress line of the tasks run inside the block every ``interval`` seconds.

    Parameters
    ----------
    client : distributed.Client or None
        Counts from its scheduler (:class:`TaskCounter`); None: from dask's local schedulers
        (:class:`LocalCounter`).
    label : str
        What the lines start with (e.g. ``"[ 9/13] models"``).
    say : callable
        Where the lines go.
    interval : float
        Seconds between two lines; a line is printed only when the block has submitted
        tasks, and once more at the end when at least one line was printed (``<= 0``: only
        that last line).
    """
    counter = LocalCounter() if client is None else None
    read: Callable[[], tuple[int, int]] | None
    if counter is not None:

        def read() -> tuple[int, int]:
            return counter.added, counter.done

    else:
        read = _client_counter(client, say)
    if read is None:
        yield
        return
    base = read()
    start = time.perf_counter()
    stop = threading.Event()
    printed = [False]

    def report() -> None:
        try:
            added, done = read()
        except Exception:  # noqa: BLE001 - a closing client ends the reports
            return
        if added > base[0]:
            say(_line(label, added - base[0], done - base[1], time.perf_counter() - start))
            printed[0] = True

    def loop() -> None:
        while not stop.wait(interval):
            report()

    thread = threading.Thread(target=loop, name=f"progress {label}", daemon=True)
    with counter if counter is not None else contextlib.nullcontext():
        if interval > 0:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread.is_alive():
                thread.join()
            if printed[0] or interval <= 0:
                report()
