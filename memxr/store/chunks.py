"""Chunks of a store: written with their checksum, verified when read, named when bad.

Checksums
---------
In a Zarr format 3 store every chunk ends with the CRC-32C of its bytes (Zarr's
``crc32c`` codec, :data:`memxr.store.layout.CHECKSUM`), so any Zarr reader detects a
changed byte. memxr adds three things:

* **writing at the disk's pace** (:class:`ChunkWriter`): zarr-python 3.1 encodes a
  checksummed chunk by copying it whole into a new buffer with the checksum appended
  (``numpy.append``: for a 64 MiB chunk a fresh allocation, faulted in page by page, and a
  copy), on its single event-loop thread, holding the GIL while it computes the CRC (the
  C ``google-crc32c`` releases it only for ``bytes``). memxr writes the chunk's own
  buffer and the 4 checksum bytes with one ``os.writev``: no copy, and the CRC (hardware
  CRC-32C, several GB/s) runs in the Dask thread that computed the chunk. The bytes on
  disk are exactly those zarr writes (tested); other codec chains (compression) go
  through zarr itself. ``benchmarks/bench_checksums.py`` measures them (float32 chunks of
  8,192 x 2,048 = 64 MiB, zarr 3.1.6, numcodecs 0.16.6, google-crc32c 1.9.0 C; 2 cores
  shared with other work, so wall times vary; CPU time per GB written is steadier):

  ========================================  ==========  ==========
  chunks written by                         CPU s/GB    GB/s
  ========================================  ==========  ==========
  zarr-python, no codec                     0.28-0.31   1.4-3.5
  zarr-python, ``crc32c`` codec             0.49-0.85   0.4-0.8
  :class:`ChunkWriter`, no codec            0.26        1.7
  :class:`ChunkWriter`, ``crc32c``          0.39        2.1
  ========================================  ==========  ==========

  and :func:`memxr.store.write_cube` went from 0.41 GB/s (0.83 CPU s/GB) without
  checksums before to 1.1 GB/s (0.44 CPU s/GB) with them; reads stayed within the noise
  (0.4-0.6 GB/s, bound by Zarr's own decoding);
* **errors that say where** (:func:`read_block`, used by :func:`memxr.store.open_cube`):
  a chunk that fails to decode is diagnosed from its raw bytes and the error names the
  store, the variable and the chunk key (:class:`ChunkError`): ``checksum mismatch``,
  ``truncated (250 of 40004 bytes)``, ``missing``;
* **missing chunks are errors**: Zarr reads an absent chunk as fill values, silently.
  memxr writes every chunk (also those holding only fill values), so in a checksummed
  array an absent chunk is reported, not read as NaN: a local store checks that the
  chunk file exists before reading it; a store reached by URL (S3, HTTP) asks for the
  chunk's metadata first (one ``HEAD`` request per chunk read, beside the ``GET`` of up
  to 64 MiB).

On an object store (S3) :class:`ChunkWriter` puts each chunk as one object holding the
same bytes as a local chunk file (values, then their CRC-32C) at its final key; the
store becomes visible only when its metadata is published
(:func:`memxr.store.atomic.publish`).

Zarr format 2 stores (for older readers) have no checksum: a truncated uncompressed
chunk is still named (its size is wrong), a changed byte goes unnoticed.

Examples
--------
>>> import pathlib, tempfile, zarr
>>> from memxr.schema import example_cube
>>> from memxr.store import write_cube
>>> p = write_cube(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.zarr", progress=False)
>>> layout = ArrayLayout.open(p, "response")
>>> layout.checksummed, layout.encoded_size, layout.key((0, 0))
(True, 196, 'c/0/0')
>>> chunk = p / "response" / "c" / "0" / "0"
>>> raw = bytearray(chunk.read_bytes()); raw[7] ^= 1; _ = chunk.write_bytes(raw)
>>> chunk_problem(layout, read_raw(layout, "c/0/0"))
'checksum mismatch (stored ..., computed ...)'
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import InputError
from .layout import is_remote, is_url, open_args, url_fs

__all__ = [
    "ArrayLayout",
    "ChunkError",
    "ChunkWriter",
    "chunk_problem",
    "read_block",
    "read_chunk",
    "read_raw",
]


class ChunkError(InputError):
    """A chunk of a store is bad: one line naming the store, the variable and the chunk key.

    Examples
    --------
    >>> raise ChunkError("stores/c.zarr", "response", "c/0/3", "truncated (250 of 40004 bytes)")
    Traceback (most recent call last):
    ...
    memxr.store.chunks.ChunkError: c.zarr: response: chunk c/0/3: truncated (250 of 40004 bytes)
    """

    def __init__(self, store: str | os.PathLike, variable: str, key: str, problem: str):
        self.store, self.variable, self.key, self.problem = str(store), variable, key, problem
        super().__init__(store, variable, f"chunk {key}: {problem}")

    def __reduce__(self):  # pickled between Dask workers and the client
        return type(self), (self.store, self.variable, self.key, self.problem)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class ArrayLayout:
    """Where and how the chunks of one array of a store are stored (small, picklable).

    Attributes
    ----------
    store : str
        The store (local path or fsspec URL).
    name : str
        The array (a variable of the cube).
    meta : zarr array metadata
        Zarr format 2 or 3.
    storage_options : dict, optional
        fsspec options of a URL store.
    """

    store: str
    name: str
    meta: Any
    storage_options: dict | None = field(default=None, compare=False)

    @classmethod
    def open(
        cls, store: str | os.PathLike, name: str, storage_options: dict | None = None
    ) -> ArrayLayout:
        """The layout of array ``name`` of a store."""
        location, kwargs = open_args(store, storage_options)
        arr = zarr.open_array(location, path=str(name), mode="r", **kwargs)
        return cls(os.fspath(store), str(name), arr.metadata, storage_options)

    @classmethod
    def of(
        cls, group: zarr.Group, store: str | os.PathLike, name: str, storage_options=None
    ) -> ArrayLayout:
        """The layout of array ``name`` of an open group."""
        return cls(os.fspath(store), str(name), group[str(name)].metadata, storage_options)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.meta.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.meta.chunks)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta.dtype.to_native_dtype())

    @property
    def grid(self) -> tuple[int, ...]:
        """Chunks along each dimension."""
        return tuple(-(-s // c) if s else 0 for s, c in zip(self.shape, self.chunks, strict=True))

    @property
    def n_chunks(self) -> int:
        return math.prod(self.grid)

    @property
    def checksummed(self) -> bool:
        """Whether each chunk ends with its CRC-32C (Zarr v3 ``crc32c`` as the last codec)."""
        if self.meta.zarr_format != 3:
            return False
        codecs = self.meta.codecs
        return bool(codecs) and type(codecs[-1]).__name__ == "Crc32cCodec"

    @property
    def raw(self) -> bool:
        """Whether a chunk is its values' bytes (C order, little-endian), plus the checksum."""
        if self.dtype.kind in "OTUS" or self.dtype.byteorder == ">":
            return False
        if self.meta.zarr_format == 2:
            return not self.meta.compressor and not self.meta.filters and self.meta.order == "C"
        names = [type(c).__name__ for c in self.meta.codecs]
        if names not in (["BytesCodec"], ["BytesCodec", "Crc32cCodec"]):
            return False
        endian = self.meta.codecs[0].endian
        return endian is None or getattr(endian, "value", endian) == "little"

    @property
    def encoded_size(self) -> int | None:
        """Bytes of every chunk file when that is fixed (raw chunks), else None."""
        if not self.raw:
            return None
        return math.prod(self.chunks) * self.dtype.itemsize + (4 if self.checksummed else 0)

    def key(self, index: Sequence[int]) -> str:
        """The store key of a chunk (e.g. ``c/0/3`` in Zarr v3, ``0.3`` in v2)."""
        return self.meta.encode_chunk_key(tuple(int(i) for i in index))

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Every chunk index, in C order."""
        return itertools.product(*(range(n) for n in self.grid))

    def covering(self, selection: Sequence[slice]) -> Iterator[tuple[int, ...]]:
        """The indices of the chunks a selection (one slice per dimension) reads."""
        ranges = []
        for sel, n, c in zip(selection, self.shape, self.chunks, strict=True):
            start, stop, _ = sel.indices(n) if isinstance(sel, slice) else (sel, sel + 1, 1)
            ranges.append(range(start // c, -(-stop // c)) if stop > start else range(0))
        return itertools.product(*ranges)

    def local_path(self, key: str) -> Path:
        """The file of a chunk of a local store."""
        return Path(self.store) / self.name / key

    def remote_path(self, key: str, store: str | None = None) -> tuple[Any, str]:
        """The file system of a store reached by URL and the path of a chunk in it."""
        fs, root = url_fs(store or self.store, self.storage_options)
        return fs, f"{root}/{self.name}/{key}" if self.name else f"{root}/{key}"


# --------------------------------------------------------------------------- checking


def read_raw(layout: ArrayLayout, key: str) -> bytes | None:
    """The stored bytes of a chunk (None when absent), local or through fsspec."""
    if not is_url(layout.store):
        try:
            return layout.local_path(key).read_bytes()
        except FileNotFoundError:
            return None
    fs, path = layout.remote_path(key)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def chunk_problem(layout: ArrayLayout, data: bytes | None) -> str | None:
    """What is wrong with the stored bytes of a chunk (None: nothing found).

    An absent chunk is a problem in checksummed arrays (memxr writes every chunk of
    them); elsewhere Zarr reads it as fill values. The size is checked where it is fixed
    (uncompressed chunks), the checksum where there is one.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from memxr.schema import example_cube
    >>> from memxr.store import write_cube
    >>> p = write_cube(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.zarr",
    ...                progress=False)
    >>> layout = ArrayLayout.open(p, "response")
    >>> good = read_raw(layout, "c/0/0")
    >>> chunk_problem(layout, good), chunk_problem(layout, good[:50]), chunk_problem(layout, None)
    (None, 'truncated (50 of 196 bytes)', 'missing')
    """
    if data is None:
        return "missing" if layout.checksummed else None
    problem = _size_problem(layout, len(data))
    if problem is None and layout.checksummed:
        if len(data) < 4:
            return f"truncated ({len(data)} bytes, less than its checksum)"
        body = np.frombuffer(data, np.uint8)[:-4]
        problem = _checksum_problem(int.from_bytes(data[-4:], "little"), body)
    return problem


def _size_problem(layout: ArrayLayout, size: int) -> str | None:
    """Whether ``size`` bytes can be the chunk (checked where chunks have a fixed size)."""
    expected = layout.encoded_size
    if expected is None or size == expected:
        return None
    if size < expected:
        return f"truncated ({size} of {expected} bytes)"
    return f"wrong size ({size} bytes, expected {expected})"


def _checksum_problem(stored: int, body: Any) -> str | None:
    """Whether ``stored`` is the CRC-32C of the bytes of ``body``."""
    import google_crc32c

    computed = google_crc32c.value(body)
    if stored != computed:
        return f"checksum mismatch (stored {stored:08x}, computed {computed:08x})"
    return None


def read_chunk(layout: ArrayLayout, index: Sequence[int]) -> np.ndarray:
    """One chunk of a raw array of a local store, read from its file into a new array.

    The values go straight from the file into the array (one ``preadv`` with the 4
    checksum bytes beside them: no decoding pipeline, no copy), and the checksum is
    verified; an edge chunk comes back whole (as stored, padded). Raises
    :class:`ChunkError` for a missing, truncated or changed chunk, with the messages of
    :func:`chunk_problem`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from memxr.schema import example_cube
    >>> from memxr.store import write_cube
    >>> p = write_cube(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.zarr",
    ...                progress=False)
    >>> layout = ArrayLayout.open(p, "response")
    >>> read_chunk(layout, (0, 0)).shape == layout.chunks
    True
    >>> (p / "response" / "c" / "0" / "0").write_bytes(b"short")
    5
    >>> read_chunk(layout, (0, 0))
    Traceback (most recent call last):
    ...
    memxr.store.chunks.ChunkError: c.zarr: response: chunk c/0/0: truncated (5 of 196 bytes)
    """
    key = layout.key(index)
    try:
        fd = os.open(layout.local_path(key), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ChunkError(layout.store, layout.name, key, "missing") from None
    try:
        problem = _size_problem(layout, os.fstat(fd).st_size)
        if problem is not None:
            raise ChunkError(layout.store, layout.name, key, problem)
        out = np.empty(layout.chunks, dtype=layout.dtype)
        body = memoryview(out.reshape(-1).view(np.uint8))
        tail = bytearray(4 if layout.checksummed else 0)
        try:
            _read_all(fd, [body, memoryview(tail)])
        except EOFError:
            raise ChunkError(layout.store, layout.name, key, "truncated while read") from None
    finally:
        os.close(fd)
    if layout.checksummed:
        problem = _checksum_problem(int.from_bytes(tail, "little"), out.reshape(-1).view(np.uint8))
        if problem is not None:
            raise ChunkError(layout.store, layout.name, key, problem)
    return out


def _read_all(fd: int, parts: list[memoryview]) -> None:
    """``os.preadv`` from the start of the file until every byte of ``parts`` is filled."""
    views = [p for p in parts if len(p)]
    offset = 0
    while views:
        n = os.preadv(fd, views, offset)
        if n == 0:
            raise EOFError("file shorter than its size")  # changed while being read
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


def _one_chunk(layout: ArrayLayout, selection: tuple) -> tuple[int, ...] | None:
    """The index of the chunk a selection is exactly (up to the array's edge), else None."""
    if len(selection) != len(layout.shape):
        return None
    index = []
    for sel, n, c in zip(selection, layout.shape, layout.chunks, strict=True):
        if not isinstance(sel, slice):
            return None
        start, stop, step = sel.indices(n)
        if step != 1 or start % c or stop != min(start + c, n):
            return None
        index.append(start // c)
    return tuple(index)


def decode_problem(layout: ArrayLayout, index: Sequence[int]) -> str | None:
    """Whether a chunk decodes through Zarr (for codecs whose size and bytes say too little)."""
    location, kwargs = open_args(layout.store, layout.storage_options)
    try:
        arr = zarr.open_array(location, path=layout.name, mode="r", **kwargs)
        arr.get_block_selection(tuple(index))
    except Exception as e:  # noqa: BLE001 - any failure to decode is the finding
        return f"does not decode ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
    return None


def read_block(
    a: Any,
    b: tuple,
    asarray: bool = True,
    lock: Any = None,
    *,
    layout: ArrayLayout,
    direct: bool = False,
) -> Any:
    """Dask's ``getter`` for a variable of a store, naming the chunk that fails to decode.

    Used as ``getitem`` of the dask arrays of :func:`memxr.store.open_cube`. With
    ``direct`` (a raw array of a local store whose values need no decoding) a block that
    is one chunk is read straight from its file (:func:`read_chunk`: 4-5 times faster
    than Zarr's pipeline, which decodes into one buffer and copies into another). Other
    blocks go through Zarr: in a checksummed array a missing chunk raises (Zarr would read
    fill values): a local store's chunk file is looked for, a remote store's chunk is asked
    for its metadata (``HEAD``). Any error while decoding is diagnosed from the raw bytes
    of the chunks read, and a bad one raises :class:`ChunkError` (the original error is
    kept as its cause).
    """
    from dask.array.core import getter

    selection = b if isinstance(b, tuple) else (b,)
    if direct and layout.checksummed and (index := _one_chunk(layout, selection)) is not None:
        chunk = read_chunk(layout, index)
        edge = tuple(slice(0, s.indices(n)[1] - s.indices(n)[0]) for s, n in zip(selection, layout.shape, strict=True))  # fmt: skip
        return chunk[edge]
    if layout.checksummed and len(selection) == len(layout.shape):
        for index in layout.covering(selection):
            key = layout.key(index)
            if is_remote(layout.store):
                fs, path = layout.remote_path(key)
                try:
                    fs.info(path)  # other errors than absence (credentials...) are raised
                    present = True
                except FileNotFoundError:
                    present = False
            else:
                present = layout.local_path(key).exists()
            if not present:
                raise ChunkError(layout.store, layout.name, key, "missing")
    try:
        return getter(a, b, asarray=asarray, lock=lock)
    except Exception as e:
        if len(selection) == len(layout.shape):
            for index in layout.covering(selection):
                key = layout.key(index)
                problem = chunk_problem(layout, read_raw(layout, key))
                if problem is not None:
                    raise ChunkError(layout.store, layout.name, key, problem) from e
        raise


def first_problem(layouts: Sequence[ArrayLayout]) -> ChunkError | None:
    """The first bad chunk of some (small) arrays, read whole: to explain a failed open."""
    for layout in layouts:
        for index in layout.indices():
            key = layout.key(index)
            problem = chunk_problem(layout, read_raw(layout, key))
            if problem is None and not layout.raw:
                problem = decode_problem(layout, index)
            if problem is not None:
                return ChunkError(layout.store, layout.name, key, problem)
    return None


# --------------------------------------------------------------------------- writing


def _write_all(fd: int, parts: list[memoryview]) -> None:
    """``os.writev`` until every byte of ``parts`` is written."""
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


class ChunkWriter:
    """A target for :func:`dask.array.store` writing whole chunks of one array of a store.

    Each assignment ``writer[selection] = block`` must cover exactly one chunk (an edge
    chunk may be short: it is padded with the fill value, as Zarr does). Raw chunks
    (:attr:`ArrayLayout.raw`) are written directly: the block's own buffer and, in a
    checksummed array, its CRC-32C, in one ``os.writev`` (no copy). Other codecs go
    through Zarr. Every chunk is written, also one holding only fill values.

    Parameters
    ----------
    layout : ArrayLayout
        The array (its metadata already written).
    dest : str, optional
        Where the chunk objects go when the store is on an object store: the store's
        final URL, while ``layout`` is read from its partial (see
        :func:`memxr.store.write_cube`). Default: the layout's own store. Chunks are put
        through fsspec as whole objects, with the same bytes as a local chunk file; only
        raw chunks (:attr:`ArrayLayout.raw`: the codecs memxr writes) are written there.

    Examples
    --------
    >>> import pathlib, tempfile, numpy as np, zarr, dask.array as da
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.zarr"
    >>> _ = zarr.create_array(p, shape=(2, 5), chunks=(2, 2), dtype="f4",
    ...                       compressors=[zarr.codecs.Crc32cCodec()], fill_value=np.nan)
    >>> x = da.arange(10, dtype="f4", chunks=2).reshape(2, 5).rechunk((2, 2))
    >>> da.store(x, ChunkWriter(ArrayLayout.open(p, "")), lock=False)
    >>> zarr.open_array(p, mode="r")[:].tolist()
    [[0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0, 9.0]]
    """

    def __init__(self, layout: ArrayLayout, dest: str | None = None):
        self.remote = is_remote(layout.store)
        if is_url(layout.store) and not self.remote:
            raise InputError(layout.store, "out", "give a file:// store as a local path")
        if self.remote and not layout.raw:
            raise InputError(
                layout.store, layout.name, "compressed chunks are written to local stores only"
            )
        self.layout = layout
        self.dest = dest or layout.store
        self.dtype = layout.dtype
        self.shape = layout.shape  # dask.array.store checks it

    def _index(self, selection: tuple) -> tuple[int, ...]:
        index = []
        for sel, n, c in zip(selection, self.layout.shape, self.layout.chunks, strict=True):
            start, stop, step = sel.indices(n)
            if step != 1 or start % c or stop != min(start + c, n):
                raise ValueError(
                    f"{self.layout.name}: selection {selection} is not one chunk of {c}"
                )
            index.append(start // c)
        return tuple(index)

    def __setitem__(self, selection: tuple, value: Any) -> None:
        selection = selection if isinstance(selection, tuple) else (selection,)
        index = self._index(selection)
        if not self.layout.raw:
            arr = zarr.open_array(
                self.layout.store,
                path=self.layout.name,
                mode="r+",
                config={"write_empty_chunks": True},
            )
            arr[selection] = value
            return
        block = np.asarray(value, dtype=self.dtype)
        if block.shape != self.layout.chunks:  # an edge chunk: padded, as Zarr stores it
            full = np.full(self.layout.chunks, self.layout.meta.fill_value, dtype=self.dtype)
            full[tuple(slice(0, s) for s in block.shape)] = block
            block = full
        data = np.ascontiguousarray(block, dtype=self.dtype.newbyteorder("<")).reshape(-1)
        parts = [data.view(np.uint8)]
        if self.layout.checksummed:
            import google_crc32c

            parts.append(memoryview(google_crc32c.value(parts[0]).to_bytes(4, "little")))
        if self.remote:  # one object: PUT requests take one body
            fs, path = self.layout.remote_path(self.layout.key(index), self.dest)
            fs.pipe_file(path, b"".join(parts))
            return
        path = self.layout.local_path(self.layout.key(index))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, parts)
        finally:
            os.close(fd)
