"""Where the betas and voxel ids are in a pandas fixed-format ``ResponseData.h5``, without pandas.

The frame is stored as ``blockN_values`` datasets (one per dtype) with their column names in
``blockN_items``. The 2-D float block whose sizes fit (voxels, trials) either way holds the
betas; the ``voxel_id`` column is found by name, or as a lone integer column when the names
are pickled. Only attributes and the (small) voxel ids are read, and nothing stored as pickled
Python objects is ever read (unpickling an untrusted file can execute code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from ._fmri_meta import _require_file
from ._h5 import open_h5

GROUP = "ResponseData"
"""HDF5 group (pandas key) holding the response frame."""

_BLOCK_VALUES = re.compile(r"block(\d+)_values")


@dataclass(frozen=True)
class _Layout:
    """Where the betas and voxel ids are in ``ResponseData.h5``."""

    values: str  # dataset name of the float block
    voxel_axis: int  # 0: stored (voxel, trial); 1: stored (trial, voxel)
    voxel_ids: np.ndarray
    chunks: tuple[int, ...] | None
    dtype: np.dtype


def _is_pickled(d: h5py.Dataset) -> bool:
    """Object (VLArray) nodes hold pickled Python objects: never read them."""
    return d.dtype.kind == "O" or h5py.check_vlen_dtype(d.dtype) is not None


def _transposed(d: h5py.Dataset) -> bool:
    return bool(d.attrs.get("transposed", False))


def _items(grp: h5py.Group, i: int) -> list[str] | None:
    """Column names of block ``i`` when stored as plain strings, else None (pickled or absent)."""
    d = grp.get(f"block{i}_items")
    if not isinstance(d, h5py.Dataset) or d.dtype.kind != "S" or d.ndim != 1:
        return None
    return [b.decode("utf-8", "replace") for b in d[()]]  # small


def _blocks(grp: h5py.Group) -> dict[int, h5py.Dataset]:
    out = {}
    for name, node in grp.items():
        m = _BLOCK_VALUES.fullmatch(name)
        if m and isinstance(node, h5py.Dataset):
            out[int(m.group(1))] = node
    return dict(sorted(out.items()))


def _orientation(d: h5py.Dataset, n_voxels: int, n_trials: int) -> int | None:
    """Voxel axis of a 2-D block whose sizes fit (n_voxels, n_trials) either way, else None."""
    a, b = d.shape
    fits = [(a, b) == (n_voxels, n_trials), (a, b) == (n_trials, n_voxels)]
    if all(fits):  # square: pandas stores (rows, columns) when ``transposed``
        return 0 if _transposed(d) else 1
    return 0 if fits[0] else 1 if fits[1] else None


def _size_error(path: Path, d: h5py.Dataset, n_vox: int, n_trials: int, names: tuple) -> InputError:
    a, b = d.shape
    vax = 0 if b == n_trials else 1 if a == n_trials else (0 if _transposed(d) else 1)
    got_vox, got_trials = d.shape[vax], d.shape[1 - vax]
    if got_vox != n_vox:
        msg = f"{got_vox} voxels but {names[0]} has {n_vox} rows"
    else:
        msg = f"{got_trials} trials but {names[1]} has {n_trials} rows"
    return InputError(path, d.name.lstrip("/"), f"shape {d.shape}: {msg}")


def _find_values(path: Path, blocks: dict, n_vox: int, n_trials: int, names: tuple) -> int:
    """Index of the float response block."""
    floats = {i: d for i, d in blocks.items() if d.dtype.kind == "f" and d.ndim == 2}
    for i, d in floats.items():
        if _orientation(d, n_vox, n_trials) is not None:
            return i
    if floats:
        i = max(floats, key=lambda k: floats[k].size)
        raise _size_error(path, floats[i], n_vox, n_trials, names)
    pickled = [d for d in blocks.values() if _is_pickled(d)]
    if pickled:
        raise InputError(
            path,
            pickled[0].name.lstrip("/"),
            "responses stored as pickled Python objects; reading them would need unpickling",
        )
    raise InputError(path, GROUP, "no 2-D float block of responses")


def _id_column(d: h5py.Dataset, n_items: int, col: int, n_vox: int) -> np.ndarray | None:
    """Column ``col`` of an (n_vox, n_items) block stored either way, or None if sizes differ."""
    if d.ndim != 2:
        return None
    if d.shape == (n_vox, n_items) and (_transposed(d) or d.shape[0] != d.shape[1]):
        return d[:, col]  # small: one id per voxel
    if d.shape == (n_items, n_vox):
        return d[col, :]  # small
    return None


def _find_voxel_ids(
    path: Path, grp: h5py.Group, blocks: dict, skip: int, n_vox: int
) -> tuple[str, np.ndarray]:
    """``(field, ids)`` of the ``voxel_id`` column, read without unpickling."""
    unnamed = []
    for i, d in blocks.items():
        if i == skip:
            continue
        field = d.name.lstrip("/")
        items = _items(grp, i)
        if items is not None and "voxel_id" in items:
            if _is_pickled(d):
                raise InputError(
                    path,
                    field,
                    "voxel_id stored as pickled Python objects; reading it would need unpickling",
                )
            ids = _id_column(d, len(items), items.index("voxel_id"), n_vox)
            if ids is None or d.dtype.kind not in "iuf":
                raise InputError(
                    path, field, f"voxel_id block has shape {d.shape}, dtype {d.dtype}"
                )
            return field, ids
        if items is None and d.dtype.kind in "iu" and d.ndim == 2 and 1 in d.shape:
            unnamed.append((i, d))
    if len(unnamed) == 1:  # labels pickled, but a lone integer column: the voxel ids
        _, d = unnamed[0]
        ids = _id_column(d, 1, 0, n_vox)
        if ids is not None:
            return d.name.lstrip("/"), ids
    if any(_is_pickled(d) for i, d in blocks.items() if i != skip):
        raise InputError(
            path,
            f"{GROUP}/voxel_id",
            "voxel ids only stored as pickled Python objects; reading them would need unpickling",
        )
    raise InputError(path, f"{GROUP}/voxel_id", "no integer voxel_id column")


def _check_extent(path: Path, f: h5py.File, d: h5py.Dataset) -> None:
    """A contiguous dataset must lie inside the file (catches truncated copies without reading)."""
    if d.chunks is not None or f.userblock_size:
        return
    offset = d.id.get_offset()
    if offset is None:
        raise InputError(path, d.name.lstrip("/"), "no data stored")
    if offset + d.id.get_storage_size() > path.stat().st_size:
        raise InputError(
            path, d.name.lstrip("/"), "data extend past the end of the file (truncated)"
        )


def _inspect_response(path: Path, n_vox: int, n_trials: int, names: tuple) -> tuple[_Layout, str]:
    """Locate the response block and voxel ids; returns the layout and the ids field name.

    Only attributes and the (small) voxel ids are read.
    """
    _require_file(path)
    with open_h5(path) as f:
        grp = f.get(GROUP)
        if not isinstance(grp, h5py.Group):
            raise InputError(path, GROUP, "no such group (expected a pandas fixed-format frame)")
        blocks = _blocks(grp)
        i = _find_values(path, blocks, n_vox, n_trials, names)
        values = blocks[i]
        _check_extent(path, f, values)
        field, ids = _find_voxel_ids(path, grp, blocks, i, n_vox)
        return _Layout(
            values=values.name,
            voxel_axis=_orientation(values, n_vox, n_trials),
            voxel_ids=np.asarray(ids),
            chunks=values.chunks,
            dtype=values.dtype,
        ), field


def _check_ids(path: Path, field: str, ids: np.ndarray, expected: np.ndarray, csv: str) -> None:
    if ids.dtype.kind == "f" and not np.all(np.isfinite(ids) & (ids % 1 == 0)):
        raise InputError(path, field, "voxel ids are not integers")
    diff = np.flatnonzero(ids.astype(np.int64) != expected)
    if diff.size:
        k = int(diff[0])
        raise InputError(
            path,
            field,
            f"voxel ids differ from {csv} voxel_id at {diff.size} of {ids.size} rows, "
            f"first at row {k}: {int(ids[k])} vs {int(expected[k])}",
        )
