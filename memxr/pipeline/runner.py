"""Planning and running the steps of a spec (see :mod:`memxr.pipeline`).

Examples
--------
>>> _inside(__import__("pathlib").Path("/a/b/c"), __import__("pathlib").Path("/a"))
True
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..provenance import now_utc
from ..readers import SOURCES
from ..store.atomic import output_lock, published, remove_path
from .analyses import (
    comparisons_step,
    correlations_step,
    latency_step,
    variance_partition_step,
)
from .core import (
    ANALYSIS_OUTPUTS,
    Context,
    Step,
    ingested_store,
    load_state,
    save_state,
    step_key,
)
from .spec import Spec, load_spec
from .steps import (
    bridge_step,
    catalog_step,
    ingest_step,
    magnitudes_step,
    models_step,
    provenance_step,
    report_step,
    timecourse_step,
)

RETRIES = 2


def _raw_files(spec: Spec, cube: dict) -> list[Path]:
    """The raw files an ingest step reads (for its key)."""
    source = SOURCES[cube["kind"]]
    files = source.fingerprint_paths(spec.resolve(cube["input"]), cube[source.id_key])
    tables = [spec.resolve(spec.data["inputs"][k]) for k in ("memorability", "concepts")]
    return files + [t for t in tables if t is not None]


def _dataset_of(spec: Spec, cube: dict) -> str:
    """The ``dataset`` of a cube entry (read from the store for ``kind: store``)."""
    known = spec.dataset_of(cube)
    if known is not None:
        return known
    from ..store.layout import open_group

    path = spec.resolve(cube["input"])
    try:
        return str(open_group(path).attrs["dataset"])
    except Exception as e:  # noqa: BLE001 - any unreadable store is one error
        raise InputError(
            path, "dataset", f"cube {cube['name']!r}: not a readable cube store"
        ) from e


def plan(
    spec: Spec, out: str | os.PathLike, stores: str | os.PathLike | None = None
) -> list[Step]:
    """The steps a run of ``spec`` into ``out`` consists of, in order.

    ``stores`` is where the ingested cube stores go (default ``out/stores``; a folder or
    an ``s3://`` URL prefix).

    Examples
    --------
    >>> import pathlib, tempfile, yaml
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "s.yaml").write_text(yaml.safe_dump({"name": "s", "inputs": {"cubes": [
    ...     {"name": "m", "kind": "tvsd", "input": "m", "monkey": "N"}]},
    ...     "analyses": {"correlation": {}}}))
    >>> [s.name for s in plan(load_spec(d / "s.yaml", check_files=False), d / "out")]
    ['ingest:m', 'magnitudes:m', 'correlations', 'provenance', 'report', 'catalog']
    """
    datasets = {c["name"]: _dataset_of(spec, c) for c in spec.cubes}
    # what each cube's store depends on: its ingest step, or the files of a given store
    source: dict[str, tuple[list[str], list[Path]]] = {}
    steps: list[Step] = []
    for cube in spec.cubes:
        name = cube["name"]
        if cube["kind"] == "store":
            source[name] = ([], [spec.resolve(cube["input"])])
            continue
        source[name] = ([f"ingest:{name}"], [])
        steps.append(
            Step(
                f"ingest:{name}",
                params={k: cube[k] for k in ("kind", "subject", "monkey", "dtype")},
                action=ingest_step,
                files=_raw_files(spec, cube),
                outputs=[_store_output(out, stores, name)],
                cube=cube,
            )
        )
    for cube in spec.cubes:
        name = cube["name"]
        rois = dict(spec.rois(datasets[name]))
        if datasets[name] != "tvsd-trials":
            rois.pop("windows")  # only time-resolved cubes use them
            rois.pop("normalize", None)
        steps.append(
            Step(
                f"magnitudes:{name}",
                params={"rois": rois, "noise_ceiling": {"n_splits": 20, "seed": 0}},
                action=magnitudes_step,
                after=source[name][0],
                files=source[name][1],
                outputs=[f"magnitudes/{name}.zarr"],
                cube=cube,
            )
        )
    analyses = _analysis_steps(spec, datasets, source)
    steps += analyses
    return steps + _record_steps(spec, Path(out), [s.name for s in steps], analyses)


def _store_output(out, stores, name: str) -> str:
    """The output of an ingest step: relative to OUT by default, else absolute or a URL."""
    if stores is None:
        return f"stores/{name}.zarr"
    store = ingested_store(Path(out), stores, name)
    return store if isinstance(store, str) else str(Path(store).resolve())


def _analysis_steps(
    spec: Spec, datasets: dict[str, str], source: dict[str, tuple[list[str], list[Path]]]
) -> list[Step]:
    """The analysis steps the spec asks for, with what each reads."""
    a = spec.analyses
    mags = [f"magnitudes:{c['name']}" for c in spec.cubes]
    timed = [f"magnitudes:{n}" for n, d in datasets.items() if d == "tvsd-trials"]

    def reads(names):  # (steps, files) behind the cube stores of these cubes
        return [s for n in names for s in source[n][0]], [f for n in names for f in source[n][1]]

    steps = []
    mem = {"memorability_reliability": spec.data["inputs"]["memorability_reliability"]}
    cov = spec.data["inputs"]["covariates"]
    covariates = {"covariates": None if cov is None else {k: cov[k] for k in ("columns", "key")}}
    cov_files = [] if cov is None else [spec.resolve(cov["path"])]
    if a["correlation"] is not None:
        steps.append(Step("correlations", {**a["correlation"], **mem, **covariates},
                          correlations_step, after=mags, files=cov_files))  # fmt: skip
    if a["comparisons"] is not None:
        steps.append(Step("comparisons", a["comparisons"], comparisons_step, after=mags))
    if a["latency"] is not None and timed:
        steps.append(Step("latency", a["latency"], latency_step, after=timed))
    if a["variance_partition"] is not None:
        steps.append(Step("variance_partition", {**a["variance_partition"], **covariates},
                          variance_partition_step, after=mags, files=cov_files))  # fmt: skip
    if a["timecourse"] is not None and timed:
        steps.append(Step("timecourse", a["timecourse"], timecourse_step, after=timed))
    if a["models"] is not None:
        after, files = reads(list(datasets))
        params = {**a["models"], **mem, "rois": spec.data["rois"]}
        steps.append(Step("models", params, models_step, after=mags + after, files=files))
    if a["bridge"] is not None:
        after, files = reads(sorted({n for pair in a["bridge"]["pairs"] for n in pair}))
        params = {**a["bridge"], "rois": spec.data["rois"]}
        steps.append(Step("bridge", params, bridge_step, after=after, files=files))
    for step in steps:
        step.outputs = list(ANALYSIS_OUTPUTS[step.name])
    return steps


def _record_steps(spec: Spec, out: Path, before: list[str], analyses: list[Step]) -> list[Step]:
    """provenance.json, the report and the catalog."""
    title = spec.data["report"]["title"] or f"memxr: {spec.name}"
    catalog = _catalog_path(spec, out)
    rel = os.path.relpath(catalog, out.resolve()) if _inside(catalog, out) else str(catalog)
    stores = [f"ingest:{c['name']}" for c in spec.cubes if c["kind"] != "store"]
    given = [spec.resolve(c["input"]) for c in spec.cubes if c["kind"] == "store"]
    return [
        Step(
            "provenance",
            {"spec_hash": spec.spec_hash},
            provenance_step,
            after=before,
            outputs=["provenance.json"],
        ),
        Step(
            "report",
            {"title": title},
            report_step,
            after=[s.name for s in analyses] + ["provenance"],
            outputs=["report.html"],
        ),
        Step("catalog", {"catalog": rel}, catalog_step, after=stores, files=given, outputs=[rel]),
    ]


def _catalog_path(spec: Spec, out: Path) -> Path:
    """Where the catalog goes: the spec's ``catalog`` or ``OUT/stores/catalog.tsv``."""
    given = spec.data.get("catalog")
    return spec.resolve(given) if given else (out / "stores" / "catalog.tsv").resolve()


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies inside ``folder``."""
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _outputs_exist(ctx: Context, step: Step) -> bool:
    """Whether every output of a step exists (a store on an object store: is published)."""
    return all(
        published(o) if "://" in o else (Path(o) if Path(o).is_absolute() else ctx.path(o)).exists()
        for o in step.outputs
    )


def _lost_worker_errors() -> tuple[type[BaseException], ...]:
    """Errors of a computation that lost a worker or data held by one."""
    import asyncio
    import concurrent.futures

    from distributed import KilledWorker
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    return (
        KilledWorker,
        FutureCancelledError,
        CommClosedError,
        concurrent.futures.CancelledError,
        asyncio.CancelledError,
    )


def _execute(ctx: Context, step: Step, index: str) -> None:
    """Run one step unless its key and outputs say it is done; record it."""
    key = step_key(step, ctx.keys)
    ctx.keys[step.name] = key
    rec = ctx.state["steps"].get(step.name)
    if rec and rec.get("key") == key and _outputs_exist(ctx, step):
        ctx.log(f"{index} skip {step.name} (cached)")
        return
    ctx.log(f"{index} run  {step.name}")
    t0 = time.perf_counter()
    for attempt in range(RETRIES + 1):
        try:
            with _watched(ctx, f"{index} {step.name}"):
                step.action(ctx, step)
            break
        except _lost_worker_errors() as e:
            if attempt == RETRIES:
                raise
            ctx.log(
                f"{index} retry {step.name}: a worker or its data was lost ({type(e).__name__})"
            )
    seconds = round(time.perf_counter() - t0, 3)
    ctx.state["steps"][step.name] = {
        "key": key,
        "outputs": step.outputs,
        "seconds": seconds,
        "finished": now_utc(),
        "spec_hash": ctx.spec.spec_hash,
    }
    save_state(ctx.out, ctx.state)
    ctx.log(f"{index} done {step.name} in {seconds:.2f} s")


def _watched(ctx: Context, label: str) -> contextlib.AbstractContextManager:
    """Progress lines of a step's tasks when progress is on (:mod:`memxr.pipeline.progress`)."""
    from .progress import task_progress

    if not ctx.progress:
        return contextlib.nullcontext()
    say = ctx.progress_log or ctx.log
    return task_progress(ctx.client, label, say, ctx.progress_interval)


def _clean_disabled(ctx: Context, steps: list[Step]) -> None:
    """Remove the outputs of analyses that the spec no longer asks for."""
    planned = {s.name for s in steps}
    for name, outputs in ANALYSIS_OUTPUTS.items():
        if name in planned:
            continue
        for rel in outputs:
            if ctx.path(rel).exists():
                remove_path(ctx.path(rel))
        ctx.state["steps"].pop(name, None)


def run(
    spec_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    scheduler: str | None = None,
    cluster: str | None = "local",
    workers: int | None = None,
    *,
    client: Any = None,
    threads_per_worker: int = 1,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    stores: str | os.PathLike | None = None,
    progress_interval: float = 30.0,
) -> Path:
    """Run a pipeline spec: every step not already cached, on a Dask cluster.

    Parameters
    ----------
    spec_path : path
        The YAML spec (validated first: :func:`memxr.pipeline.spec.load_spec`).
    out : path, optional
        Output folder; default ``runs/<spec name>`` in the current folder.
    scheduler : str, optional
        Address (``tcp://...``) or scheduler file of a running Dask scheduler.
    cluster : {"local", "slurm"}
        Cluster to start when no scheduler (nor ``client``) is given.
    workers : int, optional
        Workers of the started cluster (default 2).
    client : distributed.Client, optional
        Use this client (nothing is started or closed).
    threads_per_worker : int
        Threads of each started worker.
    progress : bool, optional
        Progress of the steps (default: when stderr is a terminal): every
        ``progress_interval`` seconds a line of the running step's tasks, done of those
        submitted, elapsed time and a rough ETA (:mod:`memxr.pipeline.progress`), and
        progress bars of the dask computations.
    log : callable, optional
        Where the step lines go (default: print to stdout); the progress lines go there too
        when given, else to stderr.
    stores : str or path, optional
        Where the cube stores the run ingests go: a folder, or an ``s3://`` URL prefix
        (``memxr run --stores``); default ``out/stores``. OUT itself (tables, result
        stores, figures, report, provenance, the run's state) is a local folder.
    progress_interval : float
        Seconds between two progress lines of a step.

    Returns
    -------
    pathlib.Path
        The output folder, with ``tables/``, ``results/``, ``figures/``,
        ``report.html`` and ``provenance.json``.

    Raises
    ------
    memxr.pipeline.spec.SpecError
        For an invalid spec, before anything runs.
    memxr.store.atomic.OutputLockedError
        When another run is writing ``out`` (one line naming it; ``out`` is untouched).

    Notes
    -----
    The whole run holds the writer lock of ``out`` (:func:`memxr.store.atomic.output_lock`:
    ``.NAME.lock`` beside it, released by the operating system if the run is killed, so
    a rerun takes over and resumes from the cached steps).
    """

    if out is not None and "://" in str(out):
        raise InputError(
            str(out), "--out", "a run folder is local; put the cube stores it ingests on "
            "object storage with --stores URL"
        )
    spec = load_spec(spec_path)
    out_dir = Path(out) if out is not None else Path("runs") / spec.name
    say = log or (lambda msg: print(msg, flush=True))
    progress_log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    steps = plan(spec, out_dir, stores)
    with output_lock(out_dir):  # one run per OUT: a second one is refused, OUT untouched
        _run_locked(
            spec,
            steps,
            out_dir,
            say,
            stores=stores,
            client=client,
            cluster=cluster,
            scheduler=scheduler,
            workers=workers,
            threads_per_worker=threads_per_worker,
            progress=progress,
            progress_interval=float(progress_interval),
            progress_log=progress_log,
        )
    return out_dir


def _run_locked(
    spec: Spec,
    steps: list[Step],
    out_dir: Path,
    say: Callable[[str], None],
    *,
    client: Any,
    cluster: str | None,
    scheduler: str | None,
    workers: int | None,
    threads_per_worker: int,
    progress: bool | None,
    stores: str | os.PathLike | None = None,
    progress_interval: float = 30.0,
    progress_log: Callable[[str], None] | None = None,
) -> None:
    """The body of :func:`run`, holding the writer lock of OUT."""
    from .cluster import cluster_client, dashboard_link

    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"memxr run {spec.name} (spec {spec.spec_hash[:12]}) -> {out_dir}")
    if client is not None:
        ctx_client = contextlib.nullcontext(client)
    else:
        ctx_client = cluster_client(cluster, scheduler, workers, threads_per_worker)
    t0 = time.perf_counter()
    with ctx_client as c:
        say(f"dashboard: {dashboard_link(c) or 'not available'}")
        ctx = Context(
            spec=spec,
            out=out_dir,
            client=c,
            log=say,
            progress=sys.stderr.isatty() if progress is None else bool(progress),
            state=load_state(out_dir),
            stores=stores if stores is None or "://" in str(stores) else Path(stores),
            progress_interval=progress_interval,
            progress_log=progress_log,
        )
        _clean_disabled(ctx, steps)
        with _as_default(c):
            for i, step in enumerate(steps, 1):
                _execute(ctx, step, f"[{i:>2}/{len(steps)}]")
    say(f"finished in {time.perf_counter() - t0:.1f} s: {out_dir / 'report.html'}")


@contextlib.contextmanager
def _as_default(client: Any) -> Iterator[None]:
    """Make ``client`` the scheduler of every dask computation in the block."""
    import dask

    with dask.config.set(scheduler="dask.distributed"), client.as_current():
        yield
