"""Opening cube stores: local paths and fsspec URLs, lazily, with one-line errors.

The dask arrays of a store's variables read their chunks through
:func:`memxr.store.chunks.read_block`: a chunk that fails its checksum, is truncated or
is missing raises :class:`memxr.store.chunks.ChunkError` naming the store, the variable
and the chunk key, in whichever computation first reads it.

Examples
--------
>>> store_name("https://host/data/cube.zarr/"), is_url("cube.zarr")
('cube.zarr', False)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize

from ..errors import InputError
from ..schema import validate
from .chunks import ArrayLayout, first_problem, read_block
from .layout import (
    is_remote,
    is_url,
    loaded_coords,
    open_args,
    open_group,
    protocol,
    quiet_zarr,
    url_fs,
    zarr_format_of,
)

__all__ = ["open_cube", "store_format", "store_identity"]

_COORD_LOAD_BYTES = 256 << 20


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
        raise InputError(store_name(url), "store", f"cannot open {protocol}:// URLs: {e}") from e


def store_format(path_or_url, storage_options=None) -> int | None:
    """The Zarr format of a store on an object store (one or two ``HEAD`` requests), None
    for a local or HTTP one; a URL with no store there raises a one-line "does not exist".

    Passed on to every open, it spares zarr looking for the metadata of both formats (four
    requests per open without it). A store on an object store that is being written has no
    metadata yet under its name (see :mod:`memxr.store.write`): it does not exist.
    """
    if not is_remote(path_or_url) or protocol(str(path_or_url)) in ("http", "https"):
        return None  # HTTP: fsspec reports an unreachable host as a missing file; zarr probes
    _check_protocol(path_or_url)
    try:
        fmt = zarr_format_of(path_or_url, storage_options)
    except _remote_errors() as e:
        raise InputError(store_name(path_or_url), "store", f"cannot be read: {e}") from e
    if fmt is None:
        raise InputError(store_name(path_or_url), "store", "does not exist")
    return fmt


def store_identity(url: str, storage_options: dict | None = None) -> list:
    """[URL, size, ETag] of the root metadata of a store on an object store: what changes
    when the store is published again (cheap: one ``HEAD``; a one-line error when absent).

    The root metadata hold the store's ``created`` attribute, so every publication gives
    another ETag (``Last-Modified`` where a file system has no ETag).
    """
    fs, root = url_fs(url, storage_options)
    for name in ("zarr.json", ".zmetadata"):
        try:
            info = fs.info(f"{root}/{name}")
            break
        except FileNotFoundError:
            continue
    else:
        raise InputError(store_name(url), "store", "does not exist")
    tag = info.get("ETag") or info.get("LastModified") or info.get("mtime")
    return [url, int(info.get("size") or 0), str(tag)]


def open_raw(path_or_url, chunks, storage_options, zarr_format: int | None = None) -> xr.Dataset:
    """``xr.open_zarr`` with one-line errors for a missing or unreadable store."""
    if not is_url(path_or_url) and not Path(path_or_url).exists():
        raise InputError(path_or_url, "store", "does not exist")
    location, kwargs = open_args(path_or_url, storage_options)
    if is_url(path_or_url):
        _check_protocol(path_or_url)
    if zarr_format is None:
        zarr_format = store_format(path_or_url, storage_options)
    if zarr_format is not None:
        kwargs["zarr_format"] = zarr_format
    try:
        with quiet_zarr():
            return xr.open_zarr(location, chunks=chunks, **kwargs)
    except (FileNotFoundError, KeyError) as e:
        raise InputError(store_name(path_or_url), "store", "does not exist") from e
    except (zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError) as e:
        raise InputError(store_name(path_or_url), "store", "is not a Zarr store") from e
    except _remote_errors() as e:
        raise InputError(store_name(path_or_url), "store", f"cannot be read: {e}") from e
    except ValueError as e:  # a coordinate read at opening (an index) did not decode
        raise _explained(path_or_url, storage_options, e) from e


def store_name(path_or_url) -> str:
    return str(path_or_url).rstrip("/").rsplit("/", 1)[-1]


def _explained(path_or_url, storage_options, error: BaseException) -> BaseException:
    """The bad chunk behind an error of reading small arrays (coordinates), or the error."""
    location, kwargs = open_args(path_or_url, storage_options)
    try:
        group = zarr.open_group(location, mode="r", **kwargs)
        layouts = [
            ArrayLayout.of(group, path_or_url, name, storage_options)
            for name, arr in sorted(group.arrays())
            if arr.nbytes <= _COORD_LOAD_BYTES
        ]
    except Exception:  # noqa: BLE001 - nothing to add to the original error
        return error
    return first_problem(layouts) or error


def _direct(var: xr.Variable, layout: ArrayLayout) -> bool:
    """Whether a variable's chunk files can be read as they are (see
    :func:`memxr.store.chunks.read_block`): raw checksummed chunks of a local store, and
    values that xarray does not decode (no scale, offset or a fill value other than NaN)."""
    if is_url(layout.store) or not (layout.raw and layout.checksummed):
        return False
    if var.dtype != layout.dtype or {"scale_factor", "add_offset"} & set(var.encoding):
        return False
    fill = var.encoding.get("_FillValue")
    return fill is None or (var.dtype.kind == "f" and bool(np.isnan(fill)))


def _checked_dask(
    ds: xr.Dataset, path_or_url, chunks: Any, storage_options: dict | None, zarr_format=None
) -> xr.Dataset:
    """Data variables (and coordinates too large to load) as dask arrays reading each chunk
    through :func:`memxr.store.chunks.read_block`."""
    group = open_group(path_or_url, storage_options, zarr_format=zarr_format)
    stamp = None if is_url(path_or_url) else os.stat(path_or_url).st_mtime_ns
    lazy = list(ds.data_vars) + [n for n, c in ds.coords.items() if c.nbytes > _COORD_LOAD_BYTES]
    out = ds.copy()
    for name in lazy:
        var = ds[name].variable
        preferred = var.encoding.get("preferred_chunks") or {}
        if chunks is None or (isinstance(chunks, dict) and not chunks):
            spec: Any = dict(preferred)
        elif isinstance(chunks, dict):
            spec = {**preferred, **{d: c for d, c in chunks.items() if d in var.dims}}
        else:
            spec = chunks
        layout = ArrayLayout.of(group, path_or_url, str(name), storage_options)
        token = tokenize(os.fspath(path_or_url), stamp, str(name), spec)
        getitem = functools.partial(read_block, layout=layout, direct=_direct(var, layout))
        chunked = var.chunk(
            spec,
            name=f"{store_name(path_or_url)}-{name}-{token}",
            from_array_kwargs={"getitem": getitem},
        )
        if name in ds.data_vars:
            out[name] = chunked
        else:
            out = out.assign_coords({name: chunked})
    return out


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
    >>> from memxr.store import write_cube
    >>> p = write_cube(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.zarr", progress=False)
    >>> cube = open_cube(p.as_uri())
    >>> cube["response"].chunks is not None, type(cube["stimulus_id"].values[0]).__name__
    (True, 'str')
    >>> open_cube(p.parent / "nope.zarr")
    Traceback (most recent call last):
    ...
    memxr.errors.InputError: nope.zarr: store: does not exist
    """
    fmt = store_format(path_or_url, storage_options)
    ds = open_raw(path_or_url, None, storage_options, fmt)
    try:
        ds = loaded_coords(ds, _COORD_LOAD_BYTES)
    except ValueError as e:
        raise _explained(path_or_url, storage_options, e) from e
    ds = _checked_dask(ds, path_or_url, chunks, storage_options, fmt)
    validate(ds, name=str(path_or_url))
    for key in ("stimulus_id", "repeat_stimulus_id"):
        if key in ds.coords and key not in ds.xindexes:
            ds = ds.set_xindex(key)
    return ds
