"""Copies of a cube for other readers: a CF-style netCDF-4 file, or a Zarr format 2 store.

netCDF
------
:func:`export_netcdf` writes one netCDF-4 (HDF5) file that ``ncdump``,
``xarray.open_dataset(engine="netcdf4" | "h5netcdf")``, MATLAB's ``ncread`` and
the netCDF-C tools read:

* global attributes: the cube's own (already flat strings and numbers; any
  other value is written as JSON text) plus ``Conventions = "CF-1.10"``,
  ``title``, ``source = "memxr <version>"`` and a ``history`` line (newest
  first) naming the copied store and the time of the copy;
* ``long_name`` on every variable and coordinate; ``units`` on the data
  variables (the cube's ``units``), on ``time`` (``"ms"``) and on the
  dimensionless counts and scores (``"1"``); text and flag variables carry no
  ``units`` (CF gives them none);
* text coordinates as netCDF-4 variable-length strings;
* ``roi_mask`` as a byte (int8) variable with ``flag_values = 0, 1`` and
  ``flag_meanings = "outside inside"`` (netCDF has no boolean type); xarray
  also records ``dtype = "bool"`` so that it decodes the mask back to bool, and
  :func:`open_netcdf` does so whatever wrote the file;
* data variables compressed with zlib (level :data:`COMPLEVEL`, byte shuffle),
  in HDF5 chunks equal to the store's Zarr chunks: the dask array is rechunked
  to exactly those chunks, so each task writes whole HDF5 chunks, one at a
  time, and memory stays at a few chunks whatever the size of the cube;
* coordinates without ``_FillValue`` (CF: coordinates have no missing values;
  NaN memorability stays NaN).

The file is written as ``.NAME.partial-PID`` in the destination folder and
renamed into place with :func:`os.replace` once complete, so ``path`` never
holds a partial file, and nothing is left behind on failure. The write holds
the file's writer lock (:func:`memxr.store.atomic.output_lock`): a second
export to the same file is refused with one line naming the first.

Zarr format 2
-------------
:func:`export_zarr` copies a store with :func:`memxr.store.write_cube`
(``zarr_format=2`` by default): the same atomic, resumable, locked writer,
chunks of the same size as the source's. Zarr format 2 has no checksum codec
that older readers know, so the chunks of such a copy are not checksummed
(``memxr info`` says so); ``--zarr-format 3`` keeps them.

Examples
--------
>>> import tempfile, pathlib
>>> from memxr.schema import example_cube
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> nc = export_netcdf(example_cube(), d / "cube.nc", progress=False)
>>> back = open_netcdf(nc)
>>> back.attrs["Conventions"], back["roi_mask"].dtype, back["response"].attrs["units"]
('CF-1.10', dtype('bool'), 'a.u.')
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from dask.callbacks import Callback

from ..errors import InputError
from ..provenance import __version__, now_utc
from ..schema import validate
from .access import open_cube
from .atomic import atomic_path, output_lock, published
from .layout import (
    chunk_plan,
    is_remote,
    is_url,
    loaded_coords,
    local_place,
    prepare_cube,
    rechunk_to_plan,
)
from .write import write_cube

__all__ = ["COMPLEVEL", "NETCDF_ENGINES", "export_netcdf", "export_zarr", "open_netcdf"]

NETCDF_ENGINES = ("netcdf4", "h5netcdf")
"""xarray engines that write (and read) netCDF-4 files."""

COMPLEVEL = 4
"""zlib level of the data variables (1 = fastest, 9 = smallest)."""

FLAG_MEANINGS = "outside inside"
"""``flag_meanings`` of ``roi_mask`` (values 0 and 1)."""

# long_name and units (None: no units) of the cube's known variables and coordinates.
_DESCRIPTIONS: dict[str, tuple[str, str | None]] = {
    "response": ("response per stimulus (test stimuli averaged over their repeats)", None),
    "response_repeats": ("repeated trials of the test stimuli (NaN-padded)", None),
    "stimulus_id": ("THINGS image file name", None),
    "concept": ("THINGS concept of the image", None),
    "category": ("THINGS category of the concept", None),
    "memorability": ("memorability score of the image", "1"),
    "split": ("train or test stimulus", None),
    "n_repeats": ("number of presentations of the stimulus", "1"),
    "channel_id": ("voxel id or electrode number", "1"),
    "roi": ("region of interest", None),
    "roi_mask": ("membership of the channel in the region of interest", None),
    "time": ("time from stimulus onset", "ms"),
    "repeat_stimulus_id": ("THINGS image file name of the repeated stimulus", None),
    "repeat": ("repeat index", "1"),
}
_EXPORT_ATTRS = ("Conventions", "title", "source", "history")


# --------------------------------------------------------------------------- internals


def _source_cube(store_or_cube: Any) -> tuple[xr.Dataset, str]:
    """The cube (validated) and a short name for the history line."""
    if isinstance(store_or_cube, xr.Dataset):
        ds = validate(store_or_cube)
        return ds, f"{ds.attrs.get('dataset')} {ds.attrs.get('subject')} cube"
    ds = open_cube(store_or_cube)
    return ds, str(store_or_cube).rstrip("/").rsplit("/", 1)[-1]


def _store_chunks(ds: xr.Dataset) -> dict[str, tuple[int, ...]]:
    """Chunk shape of each data variable: the store's own when known, else the chunk plan."""
    plan = chunk_plan(ds)
    for name in ds.data_vars:
        var = ds[name]
        chunks = var.encoding.get("chunks") or var.encoding.get("preferred_chunks")
        if isinstance(chunks, Mapping):
            chunks = tuple(chunks.get(d, n) for d, n in var.sizes.items())
        if chunks and len(chunks) == var.ndim:
            plan[name] = tuple(
                max(1, min(int(c), n)) for c, n in zip(chunks, var.shape, strict=True)
            )
    return plan


def _flat(value: Any) -> Any:
    """An attribute value netCDF can hold: str, number or 1-D numeric array."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, str | int | float | np.integer | np.floating):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iuf":
        return value
    return json.dumps(value, default=str)


def _annotate(ds: xr.Dataset, source_name: str, path: Path) -> xr.Dataset:
    """CF attributes on the dataset, its variables and coordinates (no data touched)."""
    out = ds.copy()
    units = str(ds.attrs.get("units", ""))
    for name, var in out.variables.items():
        long_name, unit = _DESCRIPTIONS.get(str(name), (str(name).replace("_", " "), None))
        attrs = {k: _flat(v) for k, v in var.attrs.items()}
        attrs.setdefault("long_name", long_name)
        if name in ds.data_vars and units:
            attrs.setdefault("units", units)
        elif unit is not None:
            attrs.setdefault("units", unit)
        if name == "roi_mask":
            attrs.update(flag_values=np.array([0, 1], dtype=np.int8), flag_meanings=FLAG_MEANINGS)
            attrs.pop("units", None)
        var.attrs = attrs
    attrs = {k: _flat(v) for k, v in ds.attrs.items()}
    line = f"{now_utc()} memxr {__version__}: export_netcdf {source_name} -> {path.name}"
    old = str(attrs.pop("history", "")).strip()
    out.attrs = {
        "Conventions": "CF-1.10",
        "title": f"memxr cube: {ds.attrs.get('dataset')} {ds.attrs.get('subject')}",
        "source": f"memxr {__version__}",
        "history": line + ("\n" + old if old else ""),
        **{k: v for k, v in attrs.items() if k not in _EXPORT_ATTRS},
    }
    return out


def _encoding(ds: xr.Dataset, plan: Mapping[str, tuple], complevel: int) -> dict[str, dict]:
    enc: dict[str, dict] = {}
    for name, var in ds.variables.items():
        if name in ds.data_vars:
            enc[name] = {
                "zlib": True,
                "complevel": complevel,
                "shuffle": True,
                "chunksizes": plan[name],
            }
        elif var.dtype.kind == "O":
            enc[name] = {"dtype": str}
        elif var.ndim and var.size:
            enc[name] = {"zlib": True, "complevel": complevel, "_FillValue": None}
        else:
            enc[name] = {"_FillValue": None}
    return enc


class _TaskBar(Callback):
    """A tqdm bar over the dask tasks of a write (local schedulers)."""

    def __init__(self, desc: str, enabled: bool):
        super().__init__()
        self.desc, self.enabled, self.bar = desc, enabled, None

    def _start_state(self, dsk, state):
        from tqdm.auto import tqdm

        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self.bar = tqdm(
            total=total, desc=self.desc, unit="task", file=sys.stderr, disable=not self.enabled
        )

    def _posttask(self, key, result, dsk, state, worker_id):
        self.bar.update(1)

    def _finish(self, dsk, state, errored):
        self.bar.close()


# --------------------------------------------------------------------------- netCDF


def export_netcdf(
    store_or_cube: str | os.PathLike | xr.Dataset,
    path: str | os.PathLike,
    *,
    engine: str = "netcdf4",
    overwrite: bool = False,
    progress: bool = True,
    complevel: int = COMPLEVEL,
) -> Path:
    """Write a cube as one CF-style netCDF-4 file, streaming chunk by chunk, atomically.

    Parameters
    ----------
    store_or_cube : str, path or xarray.Dataset
        A store (local path or fsspec URL, opened with :func:`memxr.store.open_cube`)
        or a cube in memory or on dask.
    path : str or path
        The file to create.
    engine : {"netcdf4", "h5netcdf"}
        The xarray backend that writes the file (both write netCDF-4).
    overwrite : bool
        Replace an existing file (only once the new one is complete).
    progress : bool
        Show a progress bar over the write's dask tasks on stderr.
    complevel : int
        zlib level of the data variables (:data:`COMPLEVEL` by default).

    Returns
    -------
    pathlib.Path
        The file.

    Raises
    ------
    memxr.errors.InputError
        When ``path`` exists and ``overwrite`` is false, or ``engine`` is
        unknown (field ``--netcdf`` or ``--engine``; before any work), or the
        store does not exist.
    memxr.schema.SchemaError
        When the source is not a valid cube.

    Examples
    --------
    >>> import tempfile, pathlib, xarray as xr
    >>> from memxr.schema import example_cube
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "c.nc"
    >>> export_netcdf(example_cube(), out, engine="h5netcdf", progress=False).name
    'c.nc'
    >>> with xr.open_dataset(out, engine="netcdf4") as ds:
    ...     print(ds["roi_mask"].attrs["flag_meanings"], ds.attrs["source"].split()[0])
    outside inside memxr
    >>> export_netcdf(example_cube(), out, progress=False)
    Traceback (most recent call last):
    ...
    memxr.errors.InputError: c.nc: --netcdf: exists; pass --overwrite (overwrite=True) to replace it
    """
    if is_url(path):
        raise InputError(path, "--netcdf", "a netCDF file is written to a local folder")
    target = Path(path)
    _refuse_existing(target, "--netcdf", overwrite)
    if engine not in NETCDF_ENGINES:
        raise InputError(target, "--engine", f"is {engine!r}, expected one of {NETCDF_ENGINES}")
    cube, source_name = _source_cube(store_or_cube)
    plan = _store_chunks(cube)
    dsd = rechunk_to_plan(prepare_cube(cube), plan)
    dsd = _annotate(dsd, source_name, target)
    encoding = _encoding(dsd, plan, int(complevel))
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):  # a second writer of the file is refused
        _refuse_existing(target, "--netcdf", overwrite)  # another writer may just have finished
        with atomic_path(target) as tmp:
            job = dsd.to_netcdf(tmp, engine=engine, encoding=encoding, compute=False)
            with _TaskBar(f"writing {target.name}", progress):
                job.compute()
    return target


def _refuse_existing(target: Path | str, option: str, overwrite: bool) -> None:
    if not overwrite and published(target):
        raise InputError(target, option, "exists; pass --overwrite (overwrite=True) to replace it")


def open_netcdf(
    path: str | os.PathLike, *, engine: str = "netcdf4", chunks: Any = None
) -> xr.Dataset:
    """Open a file written by :func:`export_netcdf` as a cube (lazy, validated).

    Text coordinates come back as ``str`` objects, ``roi_mask`` as bool (also
    from a file whose reader ignored xarray's ``dtype`` marker), ``time`` as
    float ms, and ``stimulus_id`` (and ``repeat_stimulus_id``) are indexes, as
    from :func:`memxr.store.open_cube`. The export's CF attributes are kept.

    Parameters
    ----------
    path : str or path
        The netCDF file.
    engine : {"netcdf4", "h5netcdf"}
        The xarray backend that reads it.
    chunks : optional
        Dask chunks; default: the file's HDF5 chunks.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from memxr.schema import example_cube
    >>> nc = export_netcdf(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.nc",
    ...                    progress=False)
    >>> cube = open_netcdf(nc, engine="h5netcdf")
    >>> cube["response"].chunks is not None, type(cube["stimulus_id"].values[0]).__name__
    (True, 'str')
    >>> open_netcdf(nc.parent / "nope.nc")
    Traceback (most recent call last):
    ...
    memxr.errors.InputError: nope.nc: netcdf: does not exist
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "netcdf", "does not exist")
    if engine not in NETCDF_ENGINES:
        raise InputError(p, "--engine", f"is {engine!r}, expected one of {NETCDF_ENGINES}")
    try:
        ds = xr.open_dataset(
            p, engine=engine, chunks={} if chunks is None else chunks, decode_timedelta=False
        )
    except (OSError, ValueError) as e:
        raise InputError(p, "netcdf", f"is not a netCDF-4 file ({type(e).__name__})") from e
    ds = loaded_coords(ds)
    if "roi_mask" in ds.coords and ds["roi_mask"].dtype != bool:
        ds = ds.assign_coords(roi_mask=ds["roi_mask"].astype(bool))
    validate(ds, name=p.name)
    for key in ("stimulus_id", "repeat_stimulus_id"):
        if key in ds.coords and key not in ds.xindexes:
            ds = ds.set_xindex(key)
    return ds


# --------------------------------------------------------------------------- Zarr 2


def export_zarr(
    store: str | os.PathLike | xr.Dataset,
    path: str | os.PathLike,
    zarr_format: int = 2,
    overwrite: bool = False,
    *,
    progress: bool = True,
) -> Path | str:
    """Copy a store as a Zarr store of another format (2 by default, for older readers).

    The copy is made by :func:`memxr.store.write_cube` (atomic, resumable),
    with chunks of the same size as the source's data chunks. Attributes and
    provenance are kept; ``created`` is the time of the copy.

    Parameters
    ----------
    store : str, path or xarray.Dataset
        The source store (path or fsspec URL) or a cube.
    path : str or path
        The store to create: a local path or an ``s3://`` URL.
    zarr_format : {2, 3}
        Format of the copy.
    overwrite : bool
        Replace an existing store (only once the copy is complete).
    progress : bool
        Show a progress bar over regions on stderr.

    Returns
    -------
    pathlib.Path or str
        The new store (its URL for an object store).

    Examples
    --------
    >>> import tempfile, pathlib, zarr
    >>> from memxr.schema import example_cube
    >>> from memxr.store import write_cube
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> src = write_cube(example_cube(), d / "v3.zarr", progress=False)
    >>> out = export_zarr(src, d / "v2.zarr", progress=False)
    >>> zarr.open_group(out, mode="r").metadata.zarr_format
    2
    """
    place = local_place(path)
    target = str(place) if is_remote(place) else Path(place)
    _refuse_existing(target, "--zarr", overwrite)
    if zarr_format not in (2, 3):
        raise InputError(target, "--zarr-format", f"is {zarr_format!r}, expected 2 or 3")
    cube = validate(store) if isinstance(store, xr.Dataset) else open_cube(store)
    chunks = _store_chunks(cube)["response"]
    chunk_bytes = int(np.prod(chunks)) * cube["response"].dtype.itemsize
    return write_cube(
        cube,
        target,
        zarr_format=zarr_format,
        overwrite=overwrite,
        chunk_bytes=chunk_bytes,
        progress=progress,
    )
