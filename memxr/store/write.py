""":func:`write_cube`: a cube into a Zarr store, atomically and resumably, region by region.

One writer at a time: the store's writer lock (:func:`memxr.store.atomic.output_lock`) is
held from before anything is touched until the store is in place, so a second writer of
the same store is refused with one line naming the holder, and a partial whose writer died
is resumed by the next one. The chunks of data variables are written with their checksum
by :class:`memxr.store.chunks.ChunkWriter`.

On an object store (``s3://`` URLs)
------------------------------------
An object store has no rename, so a store is published by its metadata instead:

1. the writer takes the store's lease (:class:`memxr.store.atomic.LeaseLock`);
2. the metadata, the coordinates and the progress log go under the partial prefix
   ``.NAME.partial-FINGERPRINT/`` beside the store; the data chunks go straight to their
   final keys under ``NAME/``, each one object with its CRC-32C. After each region the
   progress log object is rewritten whole (a ``PUT`` replaces an object whole, so the log
   is never torn), only once every chunk of the region is stored;
3. when every region is done: the lease is verified, the consolidated metadata are
   written into the partial, and the partial's objects are copied on the server under
   ``NAME/``, the root ``zarr.json`` (format 2: ``.zgroup``, then ``.zmetadata``) last
   (:func:`memxr.store.atomic.publish`); the partial and the lease are removed.

What a reader of ``s3://.../NAME.zarr`` sees: before step 3 ends, no metadata at all
under ``NAME/`` (only data chunk objects, which no Zarr reader opens without metadata):
zarr, xarray and memxr say the store does not exist. From the last ``PUT`` of step 3 on,
the complete store. A killed writer leaves its partial, the chunks of its finished
regions and its lease; the next write of the same cube takes the lease over once it has
expired and resumes from the log. ``overwrite=True`` removes the old store (its root
metadata first) when the write starts: unlike a local store, which stays readable until
the new one replaces it, a store on an object store does not exist during its rewrite.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

import dask
import dask.array as da
import dask.base
import xarray as xr
import zarr
from dask.callbacks import Callback

from ..errors import InputError
from ..provenance import inputs_attr, now_utc
from ..schema import validate
from .atomic import (
    OutputLock,
    fsync_path,
    output_lock,
    partial_path,
    publish,
    published,
    remove_path,
    remove_stale,
)
from .chunks import ArrayLayout, ChunkWriter
from .layout import (
    CHUNK_BYTES,
    PROGRESS_LOG,
    chunk_plan,
    compressors,
    coord_compressors,
    fingerprint,
    is_remote,
    local_place,
    open_args,
    open_group,
    prepare_cube,
    quiet_zarr,
    rechunk_to_plan,
    url_fs,
)

__all__ = ["REGION_CHUNKS", "write_cube"]

REGION_CHUNKS = 4
"""Chunks per region: the unit of work, of the progress log and of resumption."""


# --------------------------------------------------------------------------- regions


def _regions(dims: Sequence[str], shape: Sequence[int], chunks: Sequence[int]) -> Iterator[dict]:
    """Regions of up to REGION_CHUNKS chunks, grouped along the innermost split dim."""
    split = [(d, n, c) for d, n, c in zip(dims, shape, chunks, strict=True) if c < n]
    if not split:
        yield {dims[0]: slice(0, shape[0])} if dims else {}
        return
    *outer, (last, n_last, c_last) = split
    step = c_last * REGION_CHUNKS
    outer_ranges = [[(s, min(s + c, n)) for s in range(0, n, c)] for _, n, c in outer]
    for combo in _product(outer_ranges):
        for s in range(0, n_last, step):
            region = {d: slice(a, b) for (d, _, _), (a, b) in zip(outer, combo, strict=True)}
            region[last] = slice(s, min(s + step, n_last))
            yield region


def _product(ranges: list[list]) -> Iterator[tuple]:
    if not ranges:
        yield ()
        return
    for first in ranges[0]:
        for rest in _product(ranges[1:]):
            yield (first, *rest)


def _region_key(name: str, region: Mapping[str, slice]) -> str:
    return name + "|" + ",".join(f"{d}={s.start}:{s.stop}" for d, s in region.items())


def _fsync_region(store: Path, name: str, region: Mapping[str, slice]) -> None:
    """Make the chunk files of a finished region durable (before logging it)."""
    arr = zarr.open_array(store / name, mode="r")
    dims = _array_dims(arr)
    grid = [range(0, 1)] * len(arr.shape)
    for i, d in enumerate(dims):
        c = arr.chunks[i]
        if d in region:
            grid[i] = range(region[d].start // c, -(-region[d].stop // c))
        else:
            grid[i] = range(0, -(-arr.shape[i] // c))
    folders = set()
    for idx in _product([list(g) for g in grid]):
        f = store / name / arr.metadata.encode_chunk_key(tuple(idx))
        fsync_path(f)
        folders.add(f.parent)
    for folder in folders:
        fsync_path(folder)


def _array_dims(arr: zarr.Array) -> list[str]:
    if arr.metadata.zarr_format == 3 and arr.metadata.dimension_names:
        return list(arr.metadata.dimension_names)
    return list(arr.attrs.get("_ARRAY_DIMENSIONS", []))


# --------------------------------------------------------------------------- write


def _resolve_inputs(inputs: Sequence[dict] | Future | None, target: Path) -> str | None:
    if inputs is None:
        return None
    records = inputs.result() if isinstance(inputs, Future) else inputs
    out = []
    for r in records:
        if not isinstance(r, Mapping) or not {"name", "size", "sha256"} <= set(r):
            raise InputError(target, "inputs", f"record {r!r} lacks name/size/sha256")
        if os.path.isabs(str(r["name"])):
            raise InputError(target, "inputs", f"absolute name {Path(r['name']).name!r}")
        out.append({"name": str(r["name"]), "size": int(r["size"]), "sha256": r["sha256"]})
    return inputs_attr(out)


class _Log:
    """The progress log of a partial: a local file appended to, or an object rewritten."""

    def __init__(self, tmp: Path | str):
        self.remote = is_remote(tmp)
        if self.remote:
            self.fs, root = url_fs(str(tmp))
            self.path: Path | str = f"{root}/{PROGRESS_LOG}"
        else:
            self.path = Path(tmp) / PROGRESS_LOG
        self.lines: list[str] = []

    def read(self, fp: str) -> set[str] | None:
        """Finished region keys, or None when the log is missing or for another fingerprint."""
        try:
            text = self.fs.cat_file(self.path).decode() if self.remote else self.path.read_text()
        except FileNotFoundError:
            return None
        lines = text.split("\n")
        if not lines or lines[0] != f"# memxr progress {fp}":
            return None
        self.lines = lines[:-1]
        return {ln for ln in lines[1:-1] if ln}  # a torn last line (no newline) is not finished

    def create(self, fp: str) -> None:
        self.lines = [f"# memxr progress {fp}"]
        if self.remote:
            self.fs.pipe_file(self.path, self._text())
            return
        with open(self.path, "w") as f:
            f.write(self._text().decode())
            f.flush()
            os.fsync(f.fileno())

    def _text(self) -> bytes:
        return "".join(f"{ln}\n" for ln in self.lines).encode()

    def append(self, line: str, durable: bool = False) -> None:
        """Record a finished region (a log object is rewritten whole: never torn)."""
        self.lines.append(line)
        if self.remote:
            self.fs.pipe_file(self.path, self._text())
            return
        with open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()
            if durable:
                os.fsync(f.fileno())

    def remove(self) -> None:
        if self.remote:
            self.fs.rm_file(self.path)
        else:
            self.path.unlink()


def _start(
    tmp: Path | str, dsd: xr.Dataset, plan: Mapping, zarr_format: int, fp: str, target
) -> tuple[set[str], _Log]:
    """Open or create the partial store; return the regions already finished and the log."""
    log = _Log(tmp)
    done = log.read(fp)
    if done is not None:
        return done, log
    remove_path(tmp)
    if is_remote(target):  # chunks of an unfinished write (or the store being overwritten)
        remove_path(target)
    # Metadata and coordinates only: data variables stand in as never-computed dask arrays.
    meta = dsd.copy()
    for name in dsd.data_vars:
        var = dsd[name].variable
        meta[name] = var.copy(data=da.empty(var.shape, dtype=var.dtype, chunks=plan[name]))
    encoding: dict[str, dict] = {n: {"chunks": plan[n]} for n in dsd.variables}
    for n in dsd.data_vars:  # None (Zarr v2): no compressor at all
        encoding[n]["compressors"] = compressors(zarr_format)
    if coord_compressors(zarr_format) is not None:  # None: Zarr's default
        for n in dsd.coords:
            encoding[n]["compressors"] = coord_compressors(zarr_format)
    location, kwargs = open_args(tmp)
    meta.to_zarr(
        location,
        mode="w",
        compute=False,
        encoding=encoding,
        zarr_format=zarr_format,
        consolidated=False,
        write_empty_chunks=True,  # every chunk on disk: a missing one is an error
        **kwargs,
    )
    log.create(fp)
    return set(), log


def _name_of(tmp: Path | str) -> str:
    return str(tmp).rstrip("/").rsplit("/", 1)[-1].split(".partial-")[0].lstrip(".")


def _write_regions(
    tmp: Path | str,
    dsd: xr.Dataset,
    plan: Mapping,
    done: set[str],
    progress: bool,
    durable: bool = False,
    *,
    log: _Log,
    target: Path | str,
    lock: OutputLock | None = None,
) -> None:
    """Write every unfinished region of every data variable in one computation.

    All regions of all variables form one graph, so a task of the cube that feeds several
    of them (one read of a raw slab giving the stimulus means and the repeats) runs once,
    and both cores stay busy across region boundaries. Each region is appended to the
    progress log as soon as its last chunk is written (in the order they finish).
    """
    from tqdm.auto import tqdm

    todo = [
        (name, region)
        for name in dsd.data_vars
        for region in _regions(dsd[name].dims, dsd[name].shape, plan[name])
    ]
    total = len(todo)
    todo = [(n, r) for n, r in todo if _region_key(str(n), r) not in done]
    bar = tqdm(
        total=total,
        initial=total - len(todo),
        disable=not progress,
        file=sys.stderr,
        desc=f"writing {_name_of(tmp)}",
        unit="region",
    )
    dest = str(target) if is_remote(tmp) else None  # chunks go straight to the final keys
    writers = {
        str(n): ChunkWriter(ArrayLayout.open(tmp, str(n)), dest=dest) for n in dsd.data_vars
    }
    with bar:

        def finished(name: str, region: Mapping[str, slice]) -> None:
            if durable and not is_remote(tmp):
                _fsync_region(tmp, name, region)
            if lock is not None:
                lock.verify()  # a lost lease: another writer may own the store now
            log.append(_region_key(name, region), durable)
            bar.update(1)

        stores = []
        for name, region in todo:
            var = dsd[name]
            sel = tuple(
                region.get(d, slice(0, n)) for d, n in zip(var.dims, var.shape, strict=True)
            )
            stored = da.store(
                var.data[sel], writers[str(name)], regions=sel, lock=False, compute=False
            )
            stores.append((stored, str(name), region))
        _compute_stores(stores, finished)


def _compute_stores(stores: list[tuple], finished) -> None:
    """Compute the store tasks of every region together, calling ``finished(name, region)``
    in this thread as each region completes (on a Dask client too)."""
    if not stores:
        return
    scheduler = dask.base.get_scheduler()
    client = getattr(scheduler, "__self__", None)
    if client is not None and hasattr(client, "compute") and hasattr(client, "gather"):
        from distributed import as_completed

        futures = client.compute([s for s, _, _ in stores])
        region_of = {
            f.key: (name, region) for f, (_, name, region) in zip(futures, stores, strict=True)
        }
        try:
            for future in as_completed(futures):
                future.result()
                finished(*region_of[future.key])
        finally:
            client.cancel(futures)
        return
    # A region is done when every output key of its store collection is (one Delayed key on
    # older dask, the chunk keys of an Array on dask >= 2025.4).
    from dask.core import flatten

    remaining = [set(flatten(s.__dask_keys__())) for s, _, _ in stores]
    regions_of: dict = {}
    for i, keys in enumerate(remaining):
        for key in keys:
            regions_of.setdefault(key, []).append(i)

    done = [False] * len(stores)

    def posttask(key, result, dsk, state, worker_id) -> None:
        for i in regions_of.get(key, ()):
            remaining[i].discard(key)
            if not remaining[i] and not done[i]:
                done[i] = True
                finished(*stores[i][1:])

    with Callback(posttask=posttask):
        dask.compute(*(s for s, _, _ in stores))
    for i in range(len(stores)):
        if not done[i]:  # keys not seen by the callback (none, or fused away): done too
            finished(*stores[i][1:])


def _finish(
    tmp: Path | str,
    target: Path | str,
    zarr_format: int,
    inputs_json: str | None,
    durable: bool,
    lock: OutputLock | None = None,
) -> None:
    group = open_group(tmp, mode="r+", zarr_format=zarr_format)
    attrs = {"created": now_utc()}
    if inputs_json is not None:
        attrs["inputs"] = inputs_json
    group.attrs.update(attrs)
    zarr.consolidate_metadata(group.store, zarr_format=zarr_format)
    if lock is not None:
        lock.verify()  # publish only while holding the lock (a lost one keeps the log)
    _Log(tmp).remove()
    publish(tmp, target, durable=durable)


def write_cube(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    zarr_format: int = 3,
    overwrite: bool = False,
    inputs: Sequence[dict] | Future | None = None,
    chunk_bytes: int | None = None,
    progress: bool = True,
    durable: bool = False,
) -> Path | str:
    """Write a cube as a Zarr store, atomically and resumably.

    Parameters
    ----------
    ds : xarray.Dataset
        A cube following :mod:`memxr.schema` (numpy- or dask-backed). Only one
        region (a few chunks) is computed at a time, so memory stays flat.
    path : str or path
        The store to create: a local path, or an ``s3://`` URL (published by its
        metadata, see *On an object store* in :mod:`memxr.store.write`).
    zarr_format : {3, 2}
        Zarr format; 2 for older readers (zarr-python 2, older xarray).
    overwrite : bool
        Replace an existing store; the old one is kept until the new one is
        complete.
    inputs : list of dict or concurrent.futures.Future, optional
        Provenance records ``{"name", "size", "sha256"}`` (names relative), or a
        future giving them (:func:`memxr.provenance.file_records_async`: hashing
        runs while the data are written). Stored as ``attrs["inputs"]``; when not
        given, the cube's own ``inputs`` attribute is kept.
    chunk_bytes : int, optional
        Target chunk size (default :data:`CHUNK_BYTES`).
    progress : bool
        Show a progress bar over regions on stderr.
    durable : bool
        Also survive a power loss or an operating-system crash: every region's
        chunk files are fsynced before the region is logged as done. Without it
        (the default) a write killed by a signal (SIGKILL, the OOM killer)
        still resumes exactly, because the operating system keeps what was
        written; waiting for the disk after each region would make an ingest
        disk-bound (measured: 2 GB in 28 s instead of a few seconds).

    Returns
    -------
    pathlib.Path or str
        The store (its URL for a store on an object store).

    Raises
    ------
    memxr.errors.InputError
        When ``path`` exists and ``overwrite`` is false (before any work).
    memxr.schema.SchemaError
        When ``ds`` is not a valid cube.

    Notes
    -----
    The store is built in ``.NAME.partial-FINGERPRINT`` beside ``path`` and
    renamed into place only when complete, so ``path`` never holds a half
    store. The whole write holds the store's writer lock (``.NAME.lock`` beside
    it, released by the operating system if the writer dies). After a crash or
    an error, the same call resumes: regions listed in the partial's progress
    log are not computed again. A partial with another fingerprint (another
    cube, chunking or format) is removed. In Zarr format 3 every chunk ends
    with its CRC-32C, and every chunk is written (also one holding only fill
    values), so a missing chunk is an error rather than NaN. The data values
    are not part of the fingerprint: to rewrite a cube whose values changed but
    nothing else, remove its partial first.

    Examples
    --------
    >>> import tempfile, pathlib, xarray as xr
    >>> from memxr.schema import example_cube
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "c.zarr"
    >>> write_cube(example_cube(), out, zarr_format=2, progress=False).name
    'c.zarr'
    >>> xr.open_zarr(out).attrs["dataset"]
    'things-fmri'
    >>> write_cube(example_cube(), out, progress=False)
    Traceback (most recent call last):
    ...
    memxr.errors.InputError: c.zarr: out: exists; pass overwrite=True
    """
    place = local_place(path)
    target: Path | str = str(place).rstrip("/") if is_remote(place) else Path(place)
    _refuse_existing(target, overwrite)
    if zarr_format not in (2, 3):
        raise InputError(target, "zarr_format", f"is {zarr_format!r}, expected 2 or 3")
    dsd = prepare_cube(ds)
    validate(dsd, name=f"cube for {_name_of(target)}")
    plan = chunk_plan(dsd, CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes))
    dsd = rechunk_to_plan(dsd, plan)
    fp = fingerprint(dsd, plan, zarr_format)
    if not is_remote(target):
        target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target) as lock:
        _refuse_existing(target, overwrite)  # again: another writer may have just finished
        tmp = partial_path(target, fp[:16])
        remove_stale(target, keep=tmp)
        with quiet_zarr():
            done, log = _start(tmp, dsd, plan, zarr_format, fp, target)
            _write_regions(
                tmp, dsd, plan, done, progress, durable, log=log, target=target, lock=lock
            )
            inputs_json = _resolve_inputs(inputs, target)
            _finish(tmp, target, zarr_format, inputs_json, durable, lock)
    return target


def _refuse_existing(target: Path | str, overwrite: bool) -> None:
    if not overwrite and published(target):
        raise InputError(target, "out", "exists; pass overwrite=True")
