"""Provenance: input files with checksums, the memxr version, creation times.

Names are always relative (to the input folder), never absolute, so that a
store can be shared.

Examples
--------
>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.txt").write_text("abc")
>>> file_records([d / "a.txt"], root=d)[0]["sha256"][:12]
'ba7816bf8f01'
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import mmap
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

__all__ = [
    "__version__",
    "base_attrs",
    "file_records",
    "file_records_async",
    "inputs_attr",
    "now_utc",
    "sha256_file",
]

__version__ = "0.1.0"
"""The version of memxr (also in ``pyproject.toml``), recorded in every store and run."""

_CACHE: dict[tuple[str, int, int], str] = {}
_BLOCK = 16 << 20
_WINDOW = 64 << 20  # a multiple of mmap.ALLOCATIONGRANULARITY


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, hashed straight from the page cache in mapped 64 MiB windows.

    Mapping spares copying the file into a buffer (measured 0.58 CPU s/GB against 0.69 for
    reading blocks, of which SHA-256 itself takes 0.56); one window at a time keeps the
    resident size of the process flat. Results are cached per (path, size, mtime) for the
    life of the process.
    """
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            try:
                for start in range(0, size, _WINDOW):
                    length = min(_WINDOW, size - start)
                    with mmap.mmap(f.fileno(), length, access=mmap.ACCESS_READ, offset=start) as m:
                        m.madvise(mmap.MADV_SEQUENTIAL)
                        h.update(m)
                        m.madvise(mmap.MADV_DONTNEED)  # drop the mapping's pages (not the cache)
            except (ValueError, OSError):  # not mappable (a pipe, some FUSE): read it
                h = hashlib.sha256()
                f.seek(0)
                while block := f.read(_BLOCK):
                    h.update(block)
        _CACHE[key] = h.hexdigest()
    return _CACHE[key]


def _relname(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def file_records(
    paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None, checksum: bool = True
) -> list[dict]:
    """``[{"name", "size", "sha256"}]`` for each path, names relative to ``root``.

    With ``checksum=False`` the ``sha256`` field is ``None`` (to be filled in
    later, e.g. by a background hash running while the data are streamed).
    """
    rootp = Path(root) if root is not None else None
    out = []
    for p in map(Path, paths):
        out.append(
            {
                "name": _relname(p, rootp),
                "size": p.stat().st_size,
                "sha256": sha256_file(p) if checksum else None,
            }
        )
    return out


def file_records_async(
    paths: Sequence[str | os.PathLike],
    root: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
) -> Future:
    """Start hashing ``paths`` in a background thread; the future gives :func:`file_records`.

    hashlib releases the GIL on large blocks, so hashing overlaps with the ingest that
    streams the same files. ``names`` replaces the records' names (e.g. the names a
    reader recorded, relative to its input folder); otherwise they are relative to ``root``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("abc")
    >>> file_records_async([d / "a.txt"], names=["raw/a.txt"]).result()[0]["name"]
    'raw/a.txt'
    """
    paths = list(paths)
    if names is not None and len(names) != len(paths):
        raise ValueError(f"{len(names)} names for {len(paths)} paths")

    def work() -> list[dict]:
        records = file_records(paths, root, True)
        if names is not None:
            for rec, name in zip(records, names, strict=True):
                rec["name"] = str(name)
        return records

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memxr-sha256")
    fut = pool.submit(work)
    pool.shutdown(wait=False)
    return fut


def inputs_attr(records: Sequence[dict]) -> str:
    """The ``inputs`` attribute: a JSON list of records (attrs must stay flat for netCDF)."""
    return json.dumps(list(records), sort_keys=True)


def now_utc() -> str:
    """Current time as ISO 8601 UTC, e.g. ``2026-11-26T12:00:00Z``."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def base_attrs(dataset: str, subject: str, units: str, records: Sequence[dict]) -> dict:
    """The attributes every reader sets on the cube it returns."""
    return {
        "dataset": dataset,
        "subject": subject,
        "units": units,
        "memxr_version": __version__,
        "created": now_utc(),
        "inputs": inputs_attr(records),
        "spec_hash": "",
    }

