"""Zarr stores of cubes: atomic, resumable writes; lazy opens; a summary of what a store holds.

Chunk policy
------------
Every data variable keeps its leading axes whole in each chunk (``stimulus`` for
``response``; ``repeat_stimulus`` and ``repeat`` for ``response_repeats``) and is
split along ``channel`` (and ``time`` for time-resolved cubes) into chunks of
about ``target_bytes`` (64 MiB by default, :data:`CHUNK_BYTES`):

* an ROI reduction or a statistic along the stimulus axis (correlation with
  memorability, split-half reliability) reads each chunk once, whole, and needs
  no other chunk to finish a channel;
* the split is *balanced*: ``n`` equal chunks of at most the target rather than
  full chunks plus a tiny last one (an uncompressed edge chunk is stored at full
  size, so a ragged split wastes disk: measured 1.25x for 4.0002 chunks);
* a time-resolved cube splits channel and time about equally (the squarest
  split among those filling at least 90 % of the target), so a time window
  and an ROI both read a bounded number of chunks;
* dask chunks are rechunked to the Zarr chunks exactly before writing
  (``to_zarr`` refuses dask chunks straddling Zarr chunks); coordinates are
  small and stored as one chunk each.

For THINGS-fMRI (8,740 x 211,339 float32) this gives 111 chunks of
8,740 x 1,904 (63.5 MiB); for a TVSD time-resolved cube (22,348 x 1,024 x 300
float64) 864 chunks of 22,348 x 19 x 19 (61.6 MiB).
Why 64 MiB (``benchmarks/bench_codecs.py``: 256 MiB float32 cube, 2 cores, warm
page cache, no compression, best of 3): reads ran at 2.5-2.7 GB/s with 15-28 MiB
chunks, 1.7 GB/s with 51 MiB and 1.3 GB/s with 128 MiB chunks (glibc serves
allocations above its 32 MiB mmap threshold with fresh pages, faulted in on each
read), writes at 1.3-1.55 GB/s for every size. 64 MiB is kept as the default to
stay in the 50-200 MB range that bounds the number of chunks, files and dask
tasks (about 860 instead of 1,700 for one 55 GB trial cube) and keeps memory per
task predictable; a store meant for repeated whole scans can be written with
``chunk_bytes=28 << 20`` instead.

Writing
-------
:func:`write_cube` writes into a hidden sibling ``.NAME.partial-FINGERPRINT``
(same folder, so the final :func:`os.replace` is atomic), region by region (a
region is up to :data:`REGION_CHUNKS` chunks), appending each finished region
to a progress log. Killed and rerun with the same cube, it skips the finished
regions. The fingerprint covers everything that determines the store except
the data values themselves (dims, sizes, dtypes, chunks, codec, Zarr format,
attributes but ``created``, coordinate values): rewriting a cube whose data
changed but nothing else requires removing the partial first.

Examples
--------
>>> import tempfile, pathlib
>>> from memxr.schema import example_cube
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> path = write_cube(example_cube(), d / "cube.zarr", progress=False)
>>> cube = open_cube(path)
>>> float(cube["response"].sel(stimulus_id="thing_01s.jpg")[0].round(3))
-0.536
>>> print(format_info(store_info(path)).splitlines()[0])
store      cube.zarr (zarr v3, ...)
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from ._version import __version__
from .errors import InputError
from .provenance import inputs_attr, now_utc
from .schema import text_coord, validate

__all__ = [
    "CHUNK_BYTES",
    "CODEC",
    "REGION_CHUNKS",
    "chunk_plan",
    "compressors",
    "fingerprint",
    "format_info",
    "open_cube",
    "store_info",
    "write_cube",
]

CHUNK_BYTES = 64 << 20
"""Default target size of a chunk (bytes); see the module docstring for why."""

# Codec of the data variables, chosen by benchmarks/bench_codecs.py (noise-like
# float32 cube of 256 MiB, like fMRI betas, as 5 chunks of 8,740 x 1,536 = 51 MiB,
# zarr v3, 2 cores, best of 3, warm page cache):
#
#   codec                  ratio  write MB/s  read MB/s
#   none                   1.000        1272       1221
#   blosc-lz4-shuffle      0.960         660        822
#   blosc-lz4-bitshuffle   0.933         579        722
#   blosc-zstd3-shuffle    0.910         315        564
#   zstd3                  0.930         315        373
#
# Betas and MUA are noisy floats: the best codec saves 4-9 % of the disk, while
# reads (bound by Zarr's own decoding here, not by the disk) run 1.5-3x slower
# and writes 2-4x slower (lz4 is also 1.5-2x slower at 15, 28 and 128 MiB chunks).
# A smooth, time-resolved float64 cube (random walk + noise) gave the same
# picture (ratios 0.89-0.96, no read gain). Hence no compression; the other
# codecs remain available by name (see `compressors`).
CODEC = "none"

REGION_CHUNKS = 4
"""Chunks per region: the unit of work, of the progress log and of resumption."""

PROGRESS_LOG = "memxr-progress.log"
"""Name of the progress log inside a partial store (removed when complete)."""

_WHOLE_DIMS_SPLIT = ("channel", "time")
_COORD_LOAD_BYTES = 256 << 20


# --------------------------------------------------------------------------- codecs


def compressors(zarr_format: int = 3, codec: str = CODEC) -> Any:
    """The ``compressors`` encoding of a codec name for a Zarr format.

    Parameters
    ----------
    zarr_format : {2, 3}
        Zarr v3 takes ``zarr.codecs`` objects, v2 the numcodecs equivalents.
    codec : str
        ``"none"``, ``"blosc-lz4-shuffle"``, ``"blosc-lz4-bitshuffle"``,
        ``"blosc-zstd3-shuffle"`` or ``"zstd3"``.

    Returns
    -------
    list or None
        ``None`` for no compression (an empty list is refused by Zarr v2).

    Examples
    --------
    >>> compressors(3) is None
    True
    >>> compressors(2, "zstd3")
    [Zstd(level=3)]
    """
    if codec == "none":
        return None
    if zarr_format == 3:
        from zarr.codecs import BloscCodec, ZstdCodec

        v3 = {
            "blosc-lz4-shuffle": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
            "blosc-lz4-bitshuffle": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
            "blosc-zstd3-shuffle": lambda: BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
            "zstd3": lambda: ZstdCodec(level=3),
        }
        make = v3
    else:
        import numcodecs

        sh, bit = numcodecs.Blosc.SHUFFLE, numcodecs.Blosc.BITSHUFFLE
        make = {
            "blosc-lz4-shuffle": lambda: numcodecs.Blosc(cname="lz4", clevel=5, shuffle=sh),
            "blosc-lz4-bitshuffle": lambda: numcodecs.Blosc(cname="lz4", clevel=5, shuffle=bit),
            "blosc-zstd3-shuffle": lambda: numcodecs.Blosc(cname="zstd", clevel=3, shuffle=sh),
            "zstd3": lambda: numcodecs.Zstd(level=3),
        }
    if codec not in make:
        raise ValueError(f"unknown codec {codec!r}; one of none, {', '.join(make)}")
    return [make[codec]()]


# --------------------------------------------------------------------------- chunk plan


def _balanced(n: int, at_most: int) -> int:
    """Length of equal chunks splitting ``n`` into the fewest chunks of at most ``at_most``."""
    n, at_most = max(1, n), max(1, at_most)
    n_chunks = -(-n // at_most)
    return -(-n // n_chunks)


def _var_chunks(dims: Sequence[str], shape: Sequence[int], itemsize: int, target: int) -> tuple:
    """Zarr chunk shape of one data variable (see the module docstring)."""
    sizes = dict(zip(dims, shape, strict=True))
    split = [d for d in _WHOLE_DIMS_SPLIT if d in sizes]
    lead = itemsize * math.prod(max(1, s) for d, s in sizes.items() if d not in split)
    cells = max(1, target // lead)  # (channel, time) cells per chunk
    out = {d: max(1, s) for d, s in sizes.items()}
    if len(split) == 1:
        out[split[0]] = _balanced(sizes[split[0]], cells)
    elif len(split) == 2:
        (a, na), (b, nb) = ((d, max(1, sizes[d])) for d in split)
        if na * nb > cells:
            out[a], out[b] = _split_two(na, nb, cells)
    return tuple(out[d] for d in dims)


def _split_two(na: int, nb: int, cells: int) -> tuple[int, int]:
    """Balanced chunk lengths along two dims holding at most ``cells`` cells.

    Among the splits filling at least 90 % of the best fill, the squarest.
    """
    options = set()
    for k in range(1, min(nb, cells) + 1):
        tb = _balanced(nb, k)
        options.add((_balanced(na, cells // tb), tb))
    best = max(ta * tb for ta, tb in options)
    good = [o for o in options if o[0] * o[1] >= 0.9 * best]
    return min(good, key=lambda o: (abs(math.log(o[0] / o[1])), -o[0] * o[1]))


def _fitting_dask_chunks(var: xr.Variable, target: int) -> tuple[int, ...] | None:
    """The variable's own dask chunks when they already follow the policy, else None.

    They do when every dim but ``channel``/``time`` is whole, the chunks are
    regular (equal but for a smaller last one) and a chunk holds between half
    of and 1.25 times the target. Keeping them avoids a rechunk (a full copy
    of every block) between a reader and the store.
    """
    if not isinstance(var.data, da.Array):
        return None
    out = []
    for d, n, c in zip(var.dims, var.shape, var.data.chunks, strict=True):
        if d not in _WHOLE_DIMS_SPLIT and len(c) > 1:
            return None
        if len(c) > 1 and (len(set(c[:-1])) > 1 or c[-1] > c[0]):
            return None
        out.append(max(1, c[0]) if c else max(1, n))
    nbytes = var.dtype.itemsize * math.prod(out)
    return tuple(out) if target // 2 <= nbytes <= target + target // 4 else None


def chunk_plan(ds: xr.Dataset, target_bytes: int = CHUNK_BYTES) -> dict[str, tuple[int, ...]]:
    """Zarr chunk shape of every variable of a cube (nothing is computed).

    Data variables keep every dim whole except ``channel`` and ``time``, which
    are split into balanced chunks of about ``target_bytes`` (dask chunks that
    already do so, at half to 1.25 times the target, are kept as they are);
    coordinates are one chunk each.

    Parameters
    ----------
    ds : xarray.Dataset
        The cube (numpy- or dask-backed; only shapes and dtypes are used).
    target_bytes : int
        Target size of a chunk; chunks are at most this size unless the
        whole leading axes alone are larger.

    Returns
    -------
    dict
        Variable name -> chunk shape (one length per dim).

    Examples
    --------
    >>> import dask.array as da, xarray as xr
    >>> ds = xr.Dataset({"response": (("stimulus", "channel"),
    ...                               da.zeros((8740, 211339), dtype="f4"))})
    >>> chunk_plan(ds)["response"]
    (8740, 1904)
    >>> ds3 = xr.Dataset({"response": (("stimulus", "channel", "time"),
    ...                                da.zeros((22348, 1024, 300), dtype="f8"))})
    >>> chunk_plan(ds3)["response"]
    (22348, 19, 19)
    """
    plan = {}
    for name, var in ds.variables.items():
        if name in ds.data_vars:
            kept = _fitting_dask_chunks(var, target_bytes)
            plan[name] = kept or _var_chunks(var.dims, var.shape, var.dtype.itemsize, target_bytes)
        else:
            plan[name] = tuple(max(1, s) for s in var.shape)
    return plan


def _rechunked(ds: xr.Dataset, plan: Mapping[str, tuple]) -> xr.Dataset:
    """Data variables as dask arrays whose chunks are exactly the Zarr chunks."""
    out = ds.copy()
    for name in ds.data_vars:
        var = ds[name].variable
        if isinstance(var.data, da.Array):
            data = var.data.rechunk(plan[name])
        else:
            data = da.from_array(np.asarray(var.data), chunks=plan[name], name=False)
        out[name] = var.copy(data=data)
    return out


# --------------------------------------------------------------------------- preparation


def _decode_text(values: np.ndarray) -> np.ndarray:
    flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.ravel()]
    return text_coord(flat).reshape(values.shape)


def _prepared(ds: xr.Dataset) -> xr.Dataset:
    """Coordinates loaded (text as object str), no encodings, flat indexes, fresh attrs."""
    ds = ds.copy()
    extra = [n for n in ds.xindexes if n not in ds.dims]
    if extra:
        ds = ds.drop_indexes(extra)
    coords = {}
    for name, c in ds.coords.items():
        vals = np.asarray(c.values)  # small: coordinates
        if vals.dtype.kind in "USTO":
            vals = _decode_text(vals)
        coords[name] = c.copy(data=vals)
    ds = ds.assign_coords(coords)
    for var in ds.variables.values():
        var.encoding = {}
    ds.attrs = {**ds.attrs, "memxr_version": __version__}
    ds.attrs.setdefault("created", now_utc())
    ds.attrs.setdefault("inputs", "[]")
    return ds


def _coord_digest(values: np.ndarray) -> bytes:
    h = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
    if values.dtype.kind == "O":
        h.update("\x00".join(map(str, values.ravel())).encode("utf-8", "surrogatepass"))
    else:
        h.update(np.ascontiguousarray(values).tobytes())
    return h.digest()


def fingerprint(ds: xr.Dataset, plan: Mapping[str, tuple], zarr_format: int) -> str:
    """Hash of everything that determines a store's content except the data values.

    ``ds`` must be prepared (coordinates in memory, see :func:`write_cube`).

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> ds = _prepared(example_cube())
    >>> fingerprint(ds, chunk_plan(ds), 3) == fingerprint(ds, chunk_plan(ds), 2)
    False
    """
    desc = {
        "zarr_format": zarr_format,
        "codec": CODEC,
        "sizes": {str(k): int(v) for k, v in ds.sizes.items()},
        "vars": {
            str(n): [list(v.dims), v.dtype.str, list(v.attrs.items())]
            for n, v in ds.variables.items()
        },
        "data_vars": sorted(map(str, ds.data_vars)),
        "plan": {str(k): list(v) for k, v in plan.items()},
        "attrs": {k: v for k, v in ds.attrs.items() if k != "created"},
    }
    h = hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode())
    for name in sorted(map(str, ds.coords)):
        h.update(name.encode() + _coord_digest(np.asarray(ds.coords[name].values)))
    return h.hexdigest()


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


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
        _fsync(f)
        folders.add(f.parent)
    for folder in folders:
        _fsync(folder)


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


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    """Silence Zarr's notices that consolidated metadata is not in the v3 spec (xarray uses
    it) and that the progress log is not part of the hierarchy."""
    with warnings.catch_warnings():
        for message in (".*not part in the Zarr format 3", f"Object at {PROGRESS_LOG}"):
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


def _clean_stale(parent: Path, name: str, keep: Path) -> None:
    for p in parent.glob(f".{glob.escape(name)}.partial-*"):
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)


def _read_log(log: Path, fp: str) -> set[str] | None:
    """Finished region keys, or None when the log is missing or for another fingerprint."""
    if not log.exists():
        return None
    lines = log.read_text().split("\n")
    if not lines or lines[0] != f"# memxr progress {fp}":
        return None
    return {ln for ln in lines[1:-1] if ln}  # a torn last line (no newline) is not finished


def _start(tmp: Path, dsd: xr.Dataset, plan: Mapping, zarr_format: int, fp: str) -> set[str]:
    """Open or create the partial store; return the regions already finished."""
    log = tmp / PROGRESS_LOG
    done = _read_log(log, fp) if tmp.exists() else None
    if done is not None:
        return done
    shutil.rmtree(tmp, ignore_errors=True)
    # Metadata and coordinates only: data variables stand in as never-computed dask arrays.
    meta = dsd.copy()
    for name in dsd.data_vars:
        var = dsd[name].variable
        meta[name] = var.copy(data=da.empty(var.shape, dtype=var.dtype, chunks=plan[name]))
    comp = compressors(zarr_format)
    encoding = {
        n: {"chunks": plan[n], **({"compressors": comp} if n in dsd.data_vars else {})}
        for n in dsd.variables
    }
    meta.to_zarr(
        tmp, mode="w", compute=False, encoding=encoding, zarr_format=zarr_format, consolidated=False
    )
    with open(log, "w") as f:
        f.write(f"# memxr progress {fp}\n")
        f.flush()
        os.fsync(f.fileno())
    return set()


def _write_regions(
    tmp: Path,
    dsd: xr.Dataset,
    plan: Mapping,
    zarr_format: int,
    done: set[str],
    progress: bool,
    durable: bool = False,
) -> None:
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
        desc=f"writing {tmp.name.split('.partial-')[0].lstrip('.')}",
        unit="region",
    )
    with bar, open(tmp / PROGRESS_LOG, "a") as log:
        for name, region in todo:
            part = dsd[[name]].isel(region)
            part = part.drop_vars(list(part.coords))
            part.attrs = {}
            part.to_zarr(
                tmp, region=dict(region), mode="r+", zarr_format=zarr_format, consolidated=False
            )
            if durable:
                _fsync_region(tmp, str(name), region)
            log.write(_region_key(str(name), region) + "\n")
            log.flush()
            if durable:
                os.fsync(log.fileno())
            bar.update(1)


def _finish(tmp: Path, target: Path, zarr_format: int, inputs_json: str | None) -> None:
    group = zarr.open_group(tmp, mode="r+", zarr_format=zarr_format)
    attrs = {"created": now_utc()}
    if inputs_json is not None:
        attrs["inputs"] = inputs_json
    group.attrs.update(attrs)
    zarr.consolidate_metadata(tmp, zarr_format=zarr_format)
    (tmp / PROGRESS_LOG).unlink()
    for meta in ("zarr.json", ".zmetadata", ".zattrs", ".zgroup"):
        if (tmp / meta).exists():
            _fsync(tmp / meta)
    _fsync(tmp)
    if target.exists() or target.is_symlink():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)
            raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        os.replace(tmp, target)
    _fsync(target.parent)


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
) -> Path:
    """Write a cube as a Zarr store, atomically and resumably.

    Parameters
    ----------
    ds : xarray.Dataset
        A cube following :mod:`memxr.schema` (numpy- or dask-backed). Only one
        region (a few chunks) is computed at a time, so memory stays flat.
    path : str or path
        The store to create.
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
    pathlib.Path
        The store.

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
    store. After a crash or an error, the same call resumes: regions listed in
    the partial's progress log are not computed again. A partial with another
    fingerprint (another cube, chunking or format) is removed. The data values
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
    target = Path(path)
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise InputError(target, "out", "exists; pass overwrite=True")
    if zarr_format not in (2, 3):
        raise InputError(target, "zarr_format", f"is {zarr_format!r}, expected 2 or 3")
    dsd = _prepared(ds)
    validate(dsd, name=f"cube for {target.name}")
    plan = chunk_plan(dsd, CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes))
    dsd = _rechunked(dsd, plan)
    fp = fingerprint(dsd, plan, zarr_format)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial-{fp[:16]}"
    _clean_stale(target.parent, target.name, keep=tmp)
    with _quiet_zarr():
        done = _start(tmp, dsd, plan, zarr_format, fp)
        _write_regions(tmp, dsd, plan, zarr_format, done, progress, durable)
        _finish(tmp, target, zarr_format, _resolve_inputs(inputs, target))
    return target


# --------------------------------------------------------------------------- open


def _is_url(path_or_url: str | os.PathLike) -> bool:
    return isinstance(path_or_url, str) and "://" in path_or_url


def _remote_errors() -> tuple[type[BaseException], ...]:
    """Errors of an unreachable host or a refused request (aiohttp's when fsspec uses it)."""
    try:
        from aiohttp import ClientError
    except ImportError:  # pragma: no cover - aiohttp comes with fsspec's HTTP support
        return (OSError,)
    return (OSError, ClientError)


def _check_protocol(url: str) -> None:
    """One-line error for a URL protocol that fsspec does not know or cannot load."""
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as e:
        raise InputError(_name(url), "store", f"cannot open {protocol}:// URLs: {e}") from e


def _open_raw(path_or_url, chunks, storage_options) -> xr.Dataset:
    """``xr.open_zarr`` with one-line errors for a missing or unreadable store."""
    if not _is_url(path_or_url) and not Path(path_or_url).exists():
        raise InputError(path_or_url, "store", "does not exist")
    kwargs = {"storage_options": storage_options} if _is_url(path_or_url) else {}
    if _is_url(path_or_url):
        _check_protocol(path_or_url)
    try:
        with _quiet_zarr():
            return xr.open_zarr(os.fspath(path_or_url), chunks=chunks, **kwargs)
    except (FileNotFoundError, KeyError) as e:
        raise InputError(_name(path_or_url), "store", "does not exist") from e
    except (zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError) as e:
        raise InputError(_name(path_or_url), "store", "is not a Zarr store") from e
    except _remote_errors() as e:
        raise InputError(_name(path_or_url), "store", f"cannot be read: {e}") from e


def _name(path_or_url) -> str:
    return str(path_or_url).rstrip("/").rsplit("/", 1)[-1]


def open_cube(
    path_or_url: str | os.PathLike,
    *,
    chunks: Any = None,
    storage_options: dict | None = None,
) -> xr.Dataset:
    """Open a cube store lazily (dask), with decoded labels and a ``stimulus_id`` index.

    Parameters
    ----------
    path_or_url : str or path
        A local store or an fsspec URL (``file://``, ``http://``, ``s3://`` ...).
    chunks : optional
        Dask chunks; default: the store's own chunks.
    storage_options : dict, optional
        Passed to fsspec for URLs.

    Returns
    -------
    xarray.Dataset
        The cube, validated; coordinates in memory (text as ``str``), data lazy.
        ``.sel(stimulus_id=...)`` works (and ``repeat_stimulus_id`` when present).

    Raises
    ------
    memxr.errors.InputError
        When the store does not exist.
    memxr.schema.SchemaError
        When the store does not hold a valid cube (the message names the store).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from memxr.schema import example_cube
    >>> p = write_cube(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.zarr", progress=False)
    >>> cube = open_cube(p.as_uri())
    >>> cube["response"].chunks is not None, type(cube["stimulus_id"].values[0]).__name__
    (True, 'str')
    >>> open_cube(p.parent / "nope.zarr")
    Traceback (most recent call last):
    ...
    memxr.errors.InputError: nope.zarr: store: does not exist
    """
    ds = _open_raw(path_or_url, {} if chunks is None else chunks, storage_options)
    coords = {}
    for name, c in ds.coords.items():
        if c.nbytes > _COORD_LOAD_BYTES:
            continue
        vals = np.asarray(c.values)  # small: coordinates
        if vals.dtype.kind in "USTO":
            vals = _decode_text(vals)
        coords[name] = c.copy(data=vals)
    ds = ds.assign_coords(coords)
    validate(ds, name=str(path_or_url))
    for key in ("stimulus_id", "repeat_stimulus_id"):
        if key in ds.coords and key not in ds.xindexes:
            ds = ds.set_xindex(key)
    return ds


# --------------------------------------------------------------------------- info


def _codec_label(codecs: Sequence[Any]) -> str:
    if not codecs:
        return "none"
    labels = []
    shuffles = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}
    for c in codecs:
        if hasattr(c, "get_config"):
            cfg = dict(c.get_config())
            name = str(cfg.pop("id"))
        else:
            d = c.to_dict()
            name, cfg = str(d["name"]), dict(d.get("configuration") or {})
        keep = {k: cfg[k] for k in ("cname", "clevel", "level", "shuffle") if k in cfg}
        if isinstance(keep.get("shuffle"), int):
            keep["shuffle"] = shuffles.get(keep["shuffle"], keep["shuffle"])
        inner = ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in keep.items())
        labels.append(f"{name}({inner})" if inner else name)
    return "+".join(labels)


def _dtype_label(dtype: np.dtype) -> str:
    return "str" if dtype.kind in "OTU" else str(dtype)


def _disk_bytes(path_or_url) -> int | None:
    if _is_url(path_or_url):
        return None
    return sum(f.stat().st_size for f in Path(path_or_url).rglob("*") if f.is_file())


def store_info(path_or_url: str | os.PathLike, storage_options: dict | None = None) -> dict:
    """What a store holds: dims, variables (dtype, shape, chunks, codec), ROIs, splits, provenance.

    The store is not validated (so that a broken store can be inspected);
    only coordinates are read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from memxr.schema import example_cube
    >>> p = write_cube(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.zarr", progress=False)
    >>> info = store_info(p)
    >>> info["dims"], info["variables"]["response"]["chunks"], info["rois"]
    ({'stimulus': 6, 'channel': 4, 'roi': 1}, [6, 4], {'A': 4})
    """
    ds = _open_raw(path_or_url, {}, storage_options)
    kwargs = {"storage_options": storage_options} if _is_url(path_or_url) else {}
    group = zarr.open_group(os.fspath(path_or_url), mode="r", **kwargs)

    def describe(name) -> dict:
        arr = group[str(name)]
        v = ds[name]
        return {
            "dims": list(v.dims),
            "dtype": _dtype_label(v.dtype),
            "shape": list(v.shape),
            "chunks": list(arr.chunks),
            "codec": _codec_label(arr.compressors),
        }

    rois: dict[str, int] = {}
    if "roi_mask" in ds.coords and "roi" in ds.coords:
        counts = np.asarray(ds["roi_mask"].sum("channel").values)  # small: one count per ROI
        rois = {str(r): int(n) for r, n in zip(ds["roi"].values, counts, strict=True)}
    splits: dict[str, int] = {}
    if "split" in ds.coords:
        split = [str(v) for v in np.asarray(ds["split"].values).ravel()]  # small: labels
        labels, counts = np.unique(np.asarray(split, dtype=object), return_counts=True)
        splits = {str(k): int(n) for k, n in zip(labels, counts, strict=True)}
    try:
        records = json.loads(ds.attrs.get("inputs", "[]"))
    except (TypeError, ValueError):
        records = []
    inputs = [
        {
            "name": str(r.get("name")),
            "size": r.get("size"),
            "sha256": (r.get("sha256") or "")[:12],
        }
        for r in records
        if isinstance(r, Mapping)
    ]
    keys = ("dataset", "subject", "units", "memxr_version", "created", "spec_hash")
    return {
        "store": _name(path_or_url),
        "zarr_format": int(group.metadata.zarr_format),
        "disk_bytes": _disk_bytes(path_or_url),
        "dims": {str(k): int(n) for k, n in ds.sizes.items()},
        "variables": {str(n): describe(n) for n in ds.data_vars},
        "coords": {
            str(n): {"dims": list(c.dims), "dtype": _dtype_label(c.dtype)}
            for n, c in ds.coords.items()
        },
        "rois": rois,
        "splits": splits,
        "attrs": {k: ds.attrs[k] for k in keys if k in ds.attrs},
        "inputs": inputs,
    }


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _roi_summary(rois: Mapping[str, int], most: int = 40) -> str:
    """ROI names with channel counts: the non-empty ones first, long lists cut."""
    names = [r.replace("\n", "\\n") for r in rois]
    shown = [f"{n} ({c})" for n, c in zip(names, rois.values(), strict=True) if c][:most]
    empty = sum(1 for c in rois.values() if not c)
    rest = sum(1 for c in rois.values() if c) - len(shown)
    tail = [f"+{rest} more"] if rest else []
    tail += [f"{empty} empty"] if empty else []
    return ", ".join(shown) + (f" ... ({', '.join(tail)})" if tail else "")


def format_info(info: dict) -> str:
    """Human-readable text of :func:`store_info` (what ``memxr info STORE`` prints).

    Examples
    --------
    >>> info = {"store": "c.zarr", "zarr_format": 3, "disk_bytes": 2048,
    ...         "dims": {"stimulus": 6, "channel": 4}, "coords": {},
    ...         "variables": {"response": {"dims": ["stimulus", "channel"], "dtype": "float64",
    ...                       "shape": [6, 4], "chunks": [6, 4], "codec": "none"}},
    ...         "rois": {"A": 4}, "splits": {"train": 6}, "attrs": {"dataset": "things-fmri"},
    ...         "inputs": [{"name": "a.h5", "size": 10, "sha256": "0123456789ab"}]}
    >>> print(format_info(info))
    store      c.zarr (zarr v3, 2.0 KB on disk)
    dims       stimulus=6 channel=4
    variables  response (stimulus, channel) float64 [6 x 4] chunks 6 x 4 (0.0 MB) codec none
    rois (1)   A (4)
    splits     train 6
    attrs      dataset: things-fmri
    inputs     a.h5  10 B  sha256 0123456789ab
    """
    lines = [
        f"{'store':<11}{info['store']} (zarr v{info['zarr_format']}, "
        f"{_bytes(info.get('disk_bytes'))} on disk)",
        f"{'dims':<11}" + " ".join(f"{k}={v}" for k, v in info["dims"].items()),
    ]
    for i, (name, v) in enumerate(info["variables"].items()):
        itemsize = np.dtype(v["dtype"]).itemsize if v["dtype"] != "str" else 8
        mb = math.prod(v["chunks"]) * itemsize / 1e6
        lines.append(
            f"{'variables' if i == 0 else '':<11}{name} ({', '.join(v['dims'])}) {v['dtype']} "
            f"[{' x '.join(map(str, v['shape']))}] chunks {' x '.join(map(str, v['chunks']))} "
            f"({mb:.1f} MB) codec {v['codec']}"
        )
    if info.get("coords"):
        lines.append(
            f"{'coords':<11}"
            + ", ".join(f"{n} ({', '.join(c['dims'])})" for n, c in info["coords"].items())
        )
    rois = info.get("rois", {})
    lines.append(
        f"{f'rois ({len(rois)})':<11}" + (_roi_summary(rois) or "-")
    )
    lines.append(
        f"{'splits':<11}" + (", ".join(f"{k} {n}" for k, n in info["splits"].items()) or "-")
    )
    for i, (k, v) in enumerate(info.get("attrs", {}).items()):
        lines.append(f"{'attrs' if i == 0 else '':<11}{k}: {v}")
    if not info.get("inputs"):
        lines.append(f"{'inputs':<11}-")
    for i, r in enumerate(info.get("inputs", [])):
        size = _bytes(r["size"]) if isinstance(r.get("size"), int) else "?"
        lines.append(
            f"{'inputs' if i == 0 else '':<11}{r['name']}  {size}  sha256 {r['sha256'] or '-'}"
        )
    return "\n".join(lines)
