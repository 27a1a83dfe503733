"""Layout of a cube's Zarr store: chunk policy, codecs, preparation and fingerprint.

What :func:`memxr.store.write_cube` stores, decided before anything is written:
the chunk shape of every variable (:func:`chunk_plan`; the policy and the
measurements behind it are described in :mod:`memxr.store`), the codecs of the
variables (:func:`compressors`: no compression, and in Zarr format 3 a CRC-32C
checksum at the end of every chunk, :data:`CHECKSUM`), the cube as it is stored
(coordinates in memory, text as ``str``) and the :func:`fingerprint` naming a
partial store.

Examples
--------
>>> import dask.array as da, xarray as xr
>>> ds = xr.Dataset({"response": (("stimulus", "channel"), da.zeros((10, 4), dtype="f4"))})
>>> chunk_plan(ds, target_bytes=80)["response"]
(10, 2)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import InputError
from ..provenance import __version__, now_utc
from ..schema import text_coord

__all__ = [
    "CHECKSUM",
    "CHUNK_BYTES",
    "CODEC",
    "PROGRESS_LOG",
    "chunk_plan",
    "compressors",
    "coord_compressors",
    "STORAGE_DEFAULTS",
    "fingerprint",
    "is_remote",
    "is_url",
    "local_place",
    "open_args",
    "open_group",
    "protocol",
    "remote_errors",
    "fs_options",
    "url_fs",
    "zarr_format_of",
]

CHUNK_BYTES = 64 << 20
"""Default target size of a chunk (bytes); see :mod:`memxr.store` for why."""

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

CHECKSUM = "crc32c"
"""The checksum codec ending the codecs of every variable of a Zarr format 3 store.

Zarr v3's ``crc32c`` codec appends the CRC-32C of the encoded chunk to the chunk (4
bytes), so any reader checks it (zarr-python raises on a mismatch); memxr writes the
chunks of data variables itself with it (:mod:`memxr.store.chunks`, at the pace of the
disk) and names the store, the variable and the chunk of a bad one. Zarr format 2 has no
such codec that older readers know: its chunks are not checksummed.
"""

PROGRESS_LOG = "memxr-progress.log"
"""Name of the progress log inside a partial store (removed when complete)."""

_WHOLE_DIMS_SPLIT = ("channel", "time")


# --------------------------------------------------------------------------- places


def is_url(path_or_url: str | os.PathLike) -> bool:
    """Whether a store is given by an fsspec URL (``s3://``, ``http://``, ``file://``...)."""
    return isinstance(path_or_url, str) and "://" in path_or_url


def is_remote(path_or_url: str | os.PathLike) -> bool:
    """Whether a store is reached through fsspec (a URL other than ``file://``).

    Examples
    --------
    >>> is_remote("s3://bucket/c.zarr"), is_remote("file:///data/c.zarr"), is_remote("c.zarr")
    (True, False, False)
    """
    return is_url(path_or_url) and not str(path_or_url).startswith("file://")


def local_place(path_or_url: str | os.PathLike) -> str | os.PathLike:
    """A ``file://`` URL as the local path it names; anything else as it is.

    Examples
    --------
    >>> local_place("file:///data/c.zarr"), local_place("s3://bucket/c.zarr")
    ('/data/c.zarr', 's3://bucket/c.zarr')
    """
    if is_url(path_or_url) and str(path_or_url).startswith("file://"):
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem._strip_protocol(str(path_or_url))
    return path_or_url


def protocol(url: str) -> str:
    """The protocol of a URL (``s3``), ``file`` for a local path.

    Examples
    --------
    >>> protocol("s3://bucket/c.zarr"), protocol("stores/c.zarr")
    ('s3', 'file')
    """
    return str(url).split("://", 1)[0] if is_url(url) else "file"


STORAGE_DEFAULTS: dict[str, dict] = {"s3": {"use_listings_cache": False}}
"""fsspec options memxr gives a protocol unless the caller gives them.

s3fs keeps the listings it has read for the life of a file-system object (one per set of
options, shared by the whole process): a store published by another process after a
listing was read would look absent. memxr reads what is there at the time of each call.
Credentials and the endpoint come from the usual places of the object store's client
(for S3: ``AWS_*`` variables, ``~/.aws``, ``AWS_ENDPOINT_URL_S3``), never from memxr.
"""


def fs_options(url: str | os.PathLike, given: dict | None = None) -> dict:
    """The fsspec options of a URL: :data:`STORAGE_DEFAULTS` of its protocol, then ``given``.

    Examples
    --------
    >>> fs_options("s3://bucket/c.zarr", {"anon": True})
    {'use_listings_cache': False, 'anon': True}
    >>> fs_options("https://host/c.zarr")
    {}
    """
    return {**STORAGE_DEFAULTS.get(protocol(os.fspath(url)), {}), **(given or {})}


def url_fs(url: str, given: dict | None = None) -> tuple[Any, str]:
    """The fsspec file system of a URL and the URL's path in it (no trailing slash).

    Raises
    ------
    memxr.errors.InputError
        When no installed package handles the URL's protocol (``s3://`` needs s3fs:
        ``pip install memxr[s3]``).
    """
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url, **fs_options(url, given))
    except (ImportError, ValueError) as e:
        hint = "; pip install memxr[s3]" if protocol(url) == "s3" else ""
        raise InputError(
            url.rstrip("/").rsplit("/", 1)[-1],
            "store",
            f"cannot open {protocol(url)}:// URLs: {' '.join(str(e).split())[:200]}{hint}",
        ) from e
    return fs, root.rstrip("/")


def remote_errors() -> tuple[type[BaseException], ...]:
    """Errors of reaching a store by URL: refused credentials or requests, no connection.

    botocore's (S3: no credentials found, a request refused) when it is installed,
    aiohttp's (HTTP), and the ``PermissionError`` and ``ConnectionError`` fsspec raises.
    Their messages name no credential.
    """
    kinds: list[type[BaseException]] = [PermissionError, ConnectionError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        kinds += [BotoCoreError, ClientError]
    except ImportError:  # no S3 support installed
        pass
    try:
        from aiohttp import ClientError as HTTPError

        kinds.append(HTTPError)
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        pass
    return tuple(kinds)


def open_args(path_or_url: str | os.PathLike, storage_options: dict | None = None) -> tuple:
    """Where zarr/xarray open a store, and the keyword arguments they take for it.

    ``file://`` URLs are opened as the local paths they name: zarr >= 3.2 opens them as
    local stores and refuses ``storage_options`` (zarr-python#3679), which only matter for
    remote file systems anyway. Other URLs get :func:`fs_options` (the defaults of
    their protocol, then the given ones).

    Examples
    --------
    >>> open_args("file:///data/c.zarr", {"anon": True})
    ('/data/c.zarr', {})
    >>> open_args("s3://bucket/c.zarr", {"anon": True})
    ('s3://bucket/c.zarr', {'storage_options': {'use_listings_cache': False, 'anon': True}})
    >>> open_args("c.zarr")
    ('c.zarr', {})
    """
    location = os.fspath(local_place(path_or_url))
    if is_remote(path_or_url):
        return location, {"storage_options": fs_options(path_or_url, storage_options) or None}
    return location, {}


def zarr_format_of(path_or_url: str | os.PathLike, given: dict | None = None) -> int | None:
    """The Zarr format of a remote store from one request (None: no store there).

    Without it zarr looks for the metadata of both formats (four requests or more per
    open); with it, one. Local stores are not probed (None).
    """
    if not is_remote(path_or_url):
        return None
    fs, root = url_fs(str(path_or_url), given)
    for fmt, name in ((3, "zarr.json"), (2, ".zgroup")):
        try:
            fs.info(f"{root}/{name}")  # other errors than absence: raised (host unreachable)
            return fmt
        except FileNotFoundError:
            continue
    return None


def open_group(
    path_or_url: str | os.PathLike, storage_options: dict | None = None, mode: str = "r", **kw
) -> Any:
    """``zarr.open_group`` of a local store or a URL (with its fsspec options)."""
    import zarr

    location, kwargs = open_args(path_or_url, storage_options)
    return zarr.open_group(location, mode=mode, **kwargs, **kw)


# --------------------------------------------------------------------------- codecs


def compressors(zarr_format: int = 3, codec: str = CODEC, checksum: bool = True) -> Any:
    """The ``compressors`` encoding (bytes-to-bytes codecs) of a codec name for a Zarr format.

    Parameters
    ----------
    zarr_format : {2, 3}
        Zarr v3 takes ``zarr.codecs`` objects, v2 the numcodecs equivalents.
    codec : str
        ``"none"``, ``"blosc-lz4-shuffle"``, ``"blosc-lz4-bitshuffle"``,
        ``"blosc-zstd3-shuffle"`` or ``"zstd3"``.
    checksum : bool
        End Zarr v3 codecs with :data:`CHECKSUM` (ignored for v2).

    Returns
    -------
    list or None
        ``None`` for no codec at all (an empty list is refused by Zarr v2).

    Examples
    --------
    >>> compressors(3)
    [Crc32cCodec()]
    >>> compressors(2) is None, compressors(2, "zstd3")
    (True, [Zstd(level=3)])
    """
    if zarr_format == 3:
        from zarr.codecs import Crc32cCodec

        tail = [Crc32cCodec()] if checksum else []
        return [*_compression(3, codec), *tail] or None
    return _compression(2, codec) or None


def coord_compressors(zarr_format: int = 3) -> Any:
    """The ``compressors`` encoding of coordinates: Zarr's default, checksummed in v3.

    Coordinates are small, except the (channel x roi) ``roi_mask`` of fMRI cubes, which
    Zstandard shrinks many times; in Zarr format 2 they keep Zarr's default (None here:
    give no ``compressors`` encoding).

    Examples
    --------
    >>> coord_compressors(3)
    [ZstdCodec(level=0, checksum=False), Crc32cCodec()]
    >>> coord_compressors(2) is None
    True
    """
    if zarr_format != 3:
        return None
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return [ZstdCodec(level=0), Crc32cCodec()]


def _compression(zarr_format: int, codec: str) -> list:
    """The compression codec of a name, as a list (empty for ``"none"``)."""
    if codec == "none":
        return []
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
    """Zarr chunk shape of one data variable (see the chunk policy in :mod:`memxr.store`)."""
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
            out[a], out[b] = _time_bins(na, nb, cells)
    return tuple(out[d] for d in dims)


def _time_bins(n_channel: int, n_time: int, cells: int) -> tuple[int, int]:
    """Chunk lengths (channel, time) of a time-resolved variable holding at most ``cells``.

    Whole time bins: every channel, halved until one bin fits (so channel blocks stay
    aligned with arrays of 64 electrodes); one bin per chunk, or as many bins as reach an
    eighth of the target when a bin of every channel is smaller than that.

    Examples
    --------
    >>> _time_bins(1024, 300, 64 * 2**20 // (22348 * 4)), _time_bins(1024, 300, 40)
    ((512, 1), (32, 1))
    >>> _time_bins(1024, 300, 64 * 2**20 // (200 * 4))
    (1024, 10)
    """
    c = n_channel
    while c > 1 and c > cells:
        c = -(-c // 2)
    if c < n_channel:
        return c, 1
    return c, _balanced(n_time, max(1, cells // 8 // n_channel))


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
    (22348, 256, 1)
    """
    plan = {}
    for name, var in ds.variables.items():
        if name in ds.data_vars:
            kept = _fitting_dask_chunks(var, target_bytes)
            plan[name] = kept or _var_chunks(var.dims, var.shape, var.dtype.itemsize, target_bytes)
        else:
            plan[name] = tuple(max(1, s) for s in var.shape)
    return plan


def rechunk_to_plan(ds: xr.Dataset, plan: Mapping[str, tuple]) -> xr.Dataset:
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


def loaded_coords(ds: xr.Dataset, max_bytes: int | None = None) -> xr.Dataset:
    """Coordinates in memory, text as Python ``str`` (bytes, numpy and StringDType text
    decoded); coordinates larger than ``max_bytes`` stay as they are."""
    coords = {}
    for name, c in ds.coords.items():
        if max_bytes is not None and c.nbytes > max_bytes:
            continue
        vals = np.asarray(c.values)  # small: coordinates
        if vals.dtype.kind in "USTO":
            vals = _decode_text(vals)
        coords[name] = c.copy(data=vals)
    return ds.assign_coords(coords)


def prepare_cube(ds: xr.Dataset) -> xr.Dataset:
    """Coordinates loaded (text as object str), no encodings, flat indexes, fresh attrs."""
    ds = ds.copy()
    extra = [n for n in ds.xindexes if n not in ds.dims]
    if extra:
        ds = ds.drop_indexes(extra)
    ds = loaded_coords(ds)
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
    >>> ds = prepare_cube(example_cube())
    >>> fingerprint(ds, chunk_plan(ds), 3) == fingerprint(ds, chunk_plan(ds), 2)
    False
    """
    desc = {
        "zarr_format": zarr_format,
        "codec": CODEC,
        "checksum": CHECKSUM if zarr_format == 3 else None,
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


# --------------------------------------------------------------------------- notices


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    """Silence Zarr's notices that consolidated metadata is not in the v3 spec (xarray uses
    it) and that the progress log is not part of the hierarchy."""
    with warnings.catch_warnings():
        for message in (".*not part in the Zarr format 3", f"Object at {PROGRESS_LOG}"):
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield
