"""What a cube store holds: :func:`store_info` and its text, :func:`format_info`.

Besides dims, variables, ROIs and provenance, the summary says whether the chunks are
checksummed (Zarr format 3: CRC-32C in every chunk; format 2: not) and lists what
killed or refused writes left beside the store (:func:`memxr.store.atomic.leftovers`:
partials and a lock file, with their holder and age).

Examples
--------
>>> _bytes(2048), _bytes(None)
('2.0 KB', '?')
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .access import open_raw, store_format, store_name
from .atomic import LOCKS, Holder, leftovers
from .chunks import ArrayLayout
from .layout import is_remote, is_url, local_place, open_group, protocol, url_fs

__all__ = ["format_info", "format_leftovers", "leftover_info", "store_info"]


def codec_label(codecs: Sequence[Any]) -> str:
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


def _disk_bytes(path_or_url, storage_options=None) -> int | None:
    """Bytes of every file (object) of a store; None where nothing can be listed (HTTP)."""
    if is_remote(path_or_url):
        if protocol(str(path_or_url)) not in LOCKS:  # HTTP: no listing of a folder
            return None
        fs, root = url_fs(str(path_or_url), storage_options)
        return int(fs.du(root))
    return sum(f.stat().st_size for f in Path(local_place(path_or_url)).rglob("*") if f.is_file())


def store_info(path_or_url: str | os.PathLike, storage_options: dict | None = None) -> dict:
    """What a store holds: dims, variables (dtype, shape, chunks, codec), ROIs, splits, provenance.

    The store is not validated (so that a broken store can be inspected);
    only coordinates are read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from memxr.schema import example_cube
    >>> from memxr.store import write_cube
    >>> p = write_cube(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.zarr", progress=False)
    >>> info = store_info(p)
    >>> info["dims"], info["variables"]["response"]["chunks"], info["rois"]
    ({'stimulus': 6, 'channel': 4, 'roi': 1}, [6, 4], {'A': 4})
    """
    fmt = store_format(path_or_url, storage_options)
    ds = open_raw(path_or_url, {}, storage_options, fmt)
    group = open_group(path_or_url, storage_options, zarr_format=fmt)

    def describe(name) -> dict:
        arr = group[str(name)]
        v = ds[name]
        return {
            "dims": list(v.dims),
            "dtype": _dtype_label(v.dtype),
            "shape": list(v.shape),
            "chunks": list(arr.chunks),
            "codec": codec_label(arr.compressors),
            "checksum": ArrayLayout.of(group, path_or_url, str(name)).checksummed,
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
    variables = {str(n): describe(n) for n in ds.data_vars}
    checked = [v["checksum"] for v in variables.values()]
    return {
        "store": store_name(path_or_url),
        "zarr_format": int(group.metadata.zarr_format),
        "disk_bytes": _disk_bytes(path_or_url, storage_options),
        "checksum": "crc32c" if all(checked) else "partly crc32c" if any(checked) else "none",
        "dims": {str(k): int(n) for k, n in ds.sizes.items()},
        "variables": variables,
        "coords": {
            str(n): {"dims": list(c.dims), "dtype": _dtype_label(c.dtype)}
            for n, c in ds.coords.items()
        },
        "rois": rois,
        "splits": splits,
        "attrs": {k: ds.attrs[k] for k in keys if k in ds.attrs},
        "inputs": inputs,
        "leftovers": (
            leftover_info(local_place(path_or_url)) if _has_leftovers(path_or_url) else []
        ),
    }


def _has_leftovers(path_or_url) -> bool:
    """Whether a store can have leftovers memxr knows of: local, or on an object store
    that memxr writes to (HTTP is read-only)."""
    return not is_url(path_or_url) or protocol(str(path_or_url)) in LOCKS


def leftover_info(path: str | os.PathLike) -> list[dict]:
    """:func:`memxr.store.atomic.leftovers` of a store, as plain data (for ``--json``).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / ".c.zarr.partial-0123").mkdir()
    >>> [(x["name"], x["holder"]) for x in leftover_info(d / "c.zarr")]
    [('.c.zarr.partial-0123', None)]
    """
    out = []
    for item in leftovers(path):
        holder: Holder | None = item["holder"]
        out.append(
            {
                **{k: v for k, v in item.items() if k != "holder"},
                "holder": None if holder is None else vars(holder),
            }
        )
    return out


def format_leftovers(items: Sequence[Mapping]) -> list[str]:
    """The ``partials`` lines of :func:`format_info` (one per partial or lock file).

    Examples
    --------
    >>> items = [{"name": ".c.zarr.partial-0123", "kind": "partial", "bytes": 2048,
    ...           "age": "12 min", "holder": {"host": "node1", "pid": 42,
    ...           "since": "2026-11-30T10:00:00Z", "alive": False}}]
    >>> print(format_leftovers(items)[0])
    partials   .c.zarr.partial-0123  2.0 KB  12 min old  left by pid 42 on node1 since
    2026-11-30T10:00:00Z, gone (a rerun resumes it, memxr clean removes it)
    """
    lines = []
    for i, item in enumerate(items):
        h = item.get("holder")
        then = "takes it over" if item.get("kind") == "lock" else "resumes it"
        fate = f"(a rerun {then}, memxr clean removes it)"
        if h and h.get("alive"):
            who = f"being written by {Holder(h['host'], h['pid'], h['since']).describe()}"
        elif h:
            who = f"left by {Holder(h['host'], h['pid'], h['since']).describe()}, gone {fate}"
        else:
            who = f"left by a write that is gone {fate}"
        lines.append(
            f"{'partials' if i == 0 else '':<11}{item['name']}  {_bytes(item['bytes'])}  "
            f"{item['age']} old  {who}"
        )
    return lines


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
    >>> info = {"store": "c.zarr", "zarr_format": 3, "disk_bytes": 2048, "checksum": "crc32c",
    ...         "dims": {"stimulus": 6, "channel": 4}, "coords": {},
    ...         "variables": {"response": {"dims": ["stimulus", "channel"], "dtype": "float64",
    ...                       "shape": [6, 4], "chunks": [6, 4], "codec": "none"}},
    ...         "rois": {"A": 4}, "splits": {"train": 6}, "attrs": {"dataset": "things-fmri"},
    ...         "inputs": [{"name": "a.h5", "size": 10, "sha256": "0123456789ab"}]}
    >>> print(format_info(info))
    store      c.zarr (zarr v3, 2.0 KB on disk)
    dims       stimulus=6 channel=4
    checksums  crc32c in every chunk (checked on every read)
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
    checksum = info.get("checksum")
    if checksum == "crc32c":
        lines.append(f"{'checksums':<11}crc32c in every chunk (checked on every read)")
    elif checksum is not None:
        why = "Zarr format 2 " if info["zarr_format"] == 2 else ""
        lines.append(
            f"{'checksums':<11}{checksum}: {why}chunks are not checksummed "
            "(a changed byte goes unnoticed)"
        )
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
    lines.append(f"{f'rois ({len(rois)})':<11}" + (_roi_summary(rois) or "-"))
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
    lines += format_leftovers(info.get("leftovers", []))
    return "\n".join(lines)
