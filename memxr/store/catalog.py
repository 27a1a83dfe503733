"""A catalog of stores: one tab-separated line per store, by default ``stores/catalog.tsv``.

Columns (:data:`COLUMNS`):

``name``
    The store's folder name without ``.zarr`` (the key: a store of the same
    name replaces the line).
``dataset``, ``subject``, ``spec_hash``, ``created``
    The store's attributes.
``shape``
    Its dimensions, ``dim=size`` separated by spaces (e.g.
    ``stimulus=8740 channel=211339 repeat_stimulus=100 repeat=12 roi=30``).
``checksum``
    :func:`store_checksum`: metadata, files and sizes, coordinates and a sample
    of the data, read in a bounded time whatever the size of the store.
``path``
    The store relative to the catalog's folder (POSIX separators), so that a
    folder of stores and its catalog can be moved or shared together; a store on an
    object store by its URL.

The file is plain TSV with a header (``pandas.read_csv(path, sep="\\t")``,
spreadsheets, ``cut``); :func:`update_catalog` rewrites it atomically
(temporary sibling, then :func:`os.replace`).

Examples
--------
>>> import tempfile, pathlib
>>> from memxr.schema import example_cube
>>> from memxr.store import write_cube
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> store = write_cube(example_cube(), d / "things-fmri_sub-00.zarr", progress=False)
>>> table = update_catalog(d / "catalog.tsv", [store])
>>> table.loc[0, ["name", "shape", "path"]].tolist()
['things-fmri_sub-00', 'stimulus=6 channel=4 roi=1', 'things-fmri_sub-00.zarr']
>>> read_catalog(d / "catalog.tsv")["checksum"][0] == store_checksum(store)
True
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError
from .access import open_cube
from .atomic import atomic_path, output_lock, published
from .layout import is_remote, local_place, url_fs

__all__ = [
    "CATALOG_WAIT",
    "COLUMNS",
    "SAMPLE_BYTES",
    "WHOLE_ARRAY_BYTES",
    "read_catalog",
    "store_checksum",
    "update_catalog",
]

COLUMNS = ("name", "dataset", "subject", "shape", "checksum", "spec_hash", "path", "created")
"""Columns of a catalog, in order."""

CATALOG_WAIT = 120.0
"""Seconds an update waits for another update of the same catalog (two runs sharing one)."""

_CONSOLIDATED = (".zmetadata", "zarr.json")  # Zarr format 2, then 3
WHOLE_ARRAY_BYTES = 64 << 20
"""Arrays of at most this many bytes on disk are hashed whole by :func:`store_checksum`."""
SAMPLE_BYTES = 32 << 10
"""Bytes hashed at each end of a chunk file of a larger array."""
_BLOCK = 16 << 20
_VERSION = b"memxr store checksum 1\n"


# --------------------------------------------------------------------------- checksum


class _Tree:
    """The files of a store, local or on an object store: names, sizes and bytes."""

    def __init__(self, path: str | os.PathLike):
        self.remote = is_remote(path)
        if self.remote:
            self.fs, self.root = url_fs(str(path))
            self.name = str(path)
        else:
            self.root = Path(local_place(path))
            self.name = self.root

    def exists(self) -> bool:
        return published(self.name) if self.remote else self.root.is_dir()

    def files(self) -> list[tuple[str, Any, int]]:
        """Every file as (relative POSIX name, its path, size), sorted by name."""
        if self.remote:
            found = self.fs.find(self.root, detail=True)
            n = len(self.root) + 1
            return sorted((p[n:], p, int(info["size"])) for p, info in found.items())
        root = self.root
        files = [(p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file()]
        return [(name, p, p.stat().st_size) for name, p in sorted(files)]

    def read(self, name: str) -> bytes | None:
        """A file of the store by its relative name (None when absent)."""
        try:
            if self.remote:
                return self.fs.cat_file(f"{self.root}/{name}")
            return (self.root / name).read_bytes()  # small: metadata
        except FileNotFoundError:
            return None

    def hash_file(self, h, path: Any, size: int, whole: bool) -> None:
        if self.remote:
            if whole or size <= 2 * SAMPLE_BYTES:
                for start in range(0, size, _BLOCK):
                    h.update(self.fs.cat_file(path, start=start, end=min(start + _BLOCK, size)))
                return
            h.update(self.fs.cat_file(path, start=0, end=SAMPLE_BYTES))
            h.update(self.fs.cat_file(path, start=size - SAMPLE_BYTES, end=size))
            return
        with open(path, "rb") as f:
            if whole or size <= 2 * SAMPLE_BYTES:
                while block := f.read(_BLOCK):
                    h.update(block)
                return
            h.update(f.read(SAMPLE_BYTES))
            f.seek(size - SAMPLE_BYTES)
            h.update(f.read(SAMPLE_BYTES))


def _consolidated(tree: _Tree) -> bytes:
    """Bytes of the store's consolidated metadata (``.zmetadata`` or the root ``zarr.json``)."""
    for name in _CONSOLIDATED:
        data = tree.read(name)
        if data is not None and (name == ".zmetadata" or b'"consolidated_metadata"' in data):
            return data
    raise InputError(
        tree.name, "store", "has no consolidated metadata (.zmetadata or zarr.json)"
    )


def store_checksum(path: str | os.PathLike, *, full: bool = False) -> str:
    """SHA-256 of a store's metadata, its files and sizes, and a bounded sample of its bytes.

    What it covers, in this order:

    1. the consolidated metadata, byte for byte: every array's dims, shape,
       dtype, chunk shape, codecs and fill value, and every attribute
       (``created``, ``spec_hash``, ``inputs`` with the SHA-256 of the raw files);
    2. the relative name and size of every file, sorted by name (a missing,
       extra or resized chunk changes the checksum);
    3. the bytes of every array of at most :data:`WHOLE_ARRAY_BYTES` on disk,
       whole: all coordinates (labels, memorability, ROI masks) and small cubes;
    4. for larger arrays (the data variables of real cubes), the first and
       last :data:`SAMPLE_BYTES` of each chunk file: with chunks holding the
       whole stimulus axis, the first and last stimuli of every channel block,
       and, in a Zarr format 3 store, the CRC-32C that ends every chunk (so a
       rewrite of any value, which rewrites its chunk's checksum, is seen; a
       byte damaged on disk is not, but its checksum then fails on every read
       and in ``memxr validate --deep``).

    So a rewrite with other data, labels or attributes changes the checksum,
    whatever its timing; a copy (``cp -r``, ``rsync``, a download) keeps it,
    and so does opening or reading the store.

    Why it is cheap: what is read is bounded by the coordinates plus 64 KiB
    per chunk, whatever the size of the data: for a 55 GB time-resolved
    store of ~1,000 chunks, ~65 MB instead of 55 GB. The price: a change of a
    large array that spares both ends of every chunk it touches (one value in
    the middle of a chunk, edited in place) is not seen. memxr never edits a
    store in place; ``full=True`` hashes every byte of every file (its value
    differs from the cheap one), to check a copy byte for byte.

    The same store gives the same checksum on a local disk and on an object store
    (``s3://``: object names, sizes and byte ranges read through fsspec).

    Parameters
    ----------
    path : str or path
        A Zarr store (format 2 or 3) with consolidated metadata: a local path or a URL
        of an object store.
    full : bool
        Hash every byte of every file.

    Returns
    -------
    str
        64 hexadecimal digits.

    Raises
    ------
    memxr.errors.InputError
        When the store does not exist or has no consolidated metadata.

    Examples
    --------
    >>> import tempfile, pathlib, shutil
    >>> from memxr.schema import example_cube
    >>> from memxr.store import write_cube
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> a = write_cube(example_cube(), d / "a.zarr", progress=False)
    >>> b = shutil.copytree(a, d / "b.zarr")
    >>> store_checksum(a) == store_checksum(b), store_checksum(a) == store_checksum(a, full=True)
    (True, False)
    """
    tree = _Tree(path)
    if not tree.exists():
        raise InputError(tree.name, "store", "does not exist")
    h = hashlib.sha256(_VERSION + (b"full\n" if full else b""))
    meta = _consolidated(tree)
    h.update(f"{len(meta)}\n".encode() + meta)
    files = tree.files()
    array_bytes: dict[str, int] = {}
    for name, _, size in files:
        array = name.split("/", 1)[0] if "/" in name else ""
        array_bytes[array] = array_bytes.get(array, 0) + size
    for name, f, size in files:
        h.update(f"{name}\t{size}\n".encode("utf-8", "surrogateescape"))
        array = name.split("/", 1)[0] if "/" in name else ""
        tree.hash_file(h, f, size, whole=full or array_bytes[array] <= WHOLE_ARRAY_BYTES)
    return h.hexdigest()


# --------------------------------------------------------------------------- catalog


def _store_name(path: Path | str) -> str:
    name = str(path).rstrip("/").rsplit("/", 1)[-1] if is_remote(path) else Path(path).name
    return name[: -len(".zarr")] if name.endswith(".zarr") else name


def _relative(store: Path | str, folder: Path) -> str:
    if is_remote(store):  # a store on an object store: its URL
        return str(store)
    try:
        return Path(os.path.relpath(store.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return store.resolve().as_posix()


def _row(store: Path | str, folder: Path) -> dict[str, str]:
    """The catalog line of one store (the store is opened and validated; data not read)."""
    cube = open_cube(store)
    a = cube.attrs
    return {
        "name": _store_name(store),
        "dataset": str(a.get("dataset", "")),
        "subject": str(a.get("subject", "")),
        "shape": " ".join(f"{d}={n}" for d, n in cube.sizes.items()),
        "checksum": store_checksum(store),
        "spec_hash": str(a.get("spec_hash", "")),
        "path": _relative(store, folder),
        "created": str(a.get("created", "")),
    }


def _same(a: Path | str, b: Path | str) -> bool:
    if is_remote(a) or is_remote(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def read_catalog(path: str | os.PathLike) -> pd.DataFrame:
    """Read a catalog: one row per store, every column as text (``""`` when empty).

    Raises
    ------
    memxr.errors.InputError
        When the file does not exist or lacks a column of :data:`COLUMNS`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "catalog.tsv"
    >>> _ = p.write_text("name\\tdataset\\n")
    >>> read_catalog(p)
    Traceback (most recent call last):
    ...
    memxr.errors.InputError: catalog.tsv: subject: missing column
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "catalog", "does not exist")
    table = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    for col in COLUMNS:
        if col not in table.columns:
            raise InputError(p, col, "missing column")
    extra = [c for c in table.columns if c not in COLUMNS]
    return table[[*COLUMNS, *extra]]


def update_catalog(
    catalog_path: str | os.PathLike, store_paths: Iterable[str | os.PathLike] | str | os.PathLike
) -> pd.DataFrame:
    """Add stores to a catalog, replacing the lines of stores of the same name.

    Every store is opened and checked (:func:`memxr.store.open_cube`) before
    the catalog is touched; the catalog is then rewritten atomically, sorted by
    name. A missing catalog is created. Reading, merging and writing hold the
    catalog's writer lock, so two runs updating one catalog at once both keep
    their lines (the second waits up to :data:`CATALOG_WAIT` seconds).

    Parameters
    ----------
    catalog_path : str or path
        The TSV file (e.g. ``stores/catalog.tsv``).
    store_paths : path or iterable of paths
        Stores to add or refresh: local paths, or URLs of an object store (listed by
        their URL in the ``path`` column).

    Returns
    -------
    pandas.DataFrame
        The whole catalog as written.

    Raises
    ------
    memxr.errors.InputError
        When a store does not exist, two given stores have the same name, or
        the existing catalog is malformed (nothing is written).
    memxr.schema.SchemaError
        When a store does not hold a valid cube (nothing is written).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from memxr.schema import example_cube
    >>> from memxr.store import write_cube
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> s = write_cube(example_cube(), d / "stores" / "x.zarr", progress=False)
    >>> update_catalog(d / "catalog.tsv", s)["path"].tolist()
    ['stores/x.zarr']
    """
    catalog = Path(catalog_path)
    if isinstance(store_paths, str | os.PathLike):
        store_paths = [store_paths]
    rows: dict[str, dict[str, str]] = {}
    seen: dict[str, Path] = {}
    for store in (s if is_remote(s) else Path(s) for s in store_paths):
        row = _row(store, catalog.parent)
        if row["name"] in seen and _same(seen[row["name"]], store) is False:
            raise InputError(store, "name", f"same name as {seen[row['name']]}")
        seen[row["name"]] = store
        rows[row["name"]] = row
    catalog.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(catalog, wait=CATALOG_WAIT):  # read, merge and write as one
        old = read_catalog(catalog) if catalog.exists() else pd.DataFrame(columns=list(COLUMNS))
        kept = old[~old["name"].isin(list(rows))]
        new = pd.DataFrame(list(rows.values()), columns=list(COLUMNS))
        table = pd.concat([kept, new]) if len(kept) else new
        table = table.fillna("").sort_values("name", kind="stable").reset_index(drop=True)
        with atomic_path(catalog) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                table.to_csv(f, sep="\t", index=False, lineterminator="\n")
    return table
