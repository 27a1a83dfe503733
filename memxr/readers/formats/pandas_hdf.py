"""Write a pandas fixed-format HDF5 frame with h5py, so its values can be filled in blocks.

pandas ``to_hdf(..., format="fixed")`` goes through PyTables and needs the whole
frame in memory. This module writes the same layout with h5py alone: PyTables
node attributes (``CLASS``, ``VERSION``, ``TITLE``, ``FLAVOR``, ``transposed``
as an HDF5 bitfield, strings NUL-terminated UTF-8), the pandas group attributes
(``pandas_type``, ``nblocks``, ``axis0_variety``...) and the labels. Labels that
pandas stores as Python objects (a mixed or object ``Index``) are a PyTables
``VLArray`` of ``ObjectAtom``: one row holding ``pickle.dumps(labels,
HIGHEST_PROTOCOL)`` as variable-length ``uint8``, exactly as PyTables writes it.
This module only writes pickles; it never loads one.

The value blocks are created empty (contiguous, row = frame row), and the
caller writes them in row blocks, so memory does not depend on the frame size.

Examples
--------
>>> import os, tempfile, h5py, numpy as np
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "x.h5")
>>> with h5py.File(path, "w") as f:
...     vals, ids = create_response_frame(f, "ResponseData", 3, 2, "float32", "voxel_id")
...     vals[:] = np.arange(6, dtype="float32").reshape(3, 2)
...     ids[:, 0] = [7, 8, 9]
>>> with h5py.File(path, "r") as f:
...     f["ResponseData/block0_values"][()].tolist(), f["ResponseData"].attrs["pandas_type"]  # small
([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], np.bytes_(b'frame'))

pandas itself reads the result (``tests/test_synth.py`` checks it).
>>> tmp.cleanup()
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import h5py
import numpy as np

__all__ = ["create_response_frame", "pickled_labels"]


def _str_type(n: int, utf8: bool = True) -> h5py.h5t.TypeID:
    t = h5py.h5t.C_S1.copy()
    t.set_size(max(1, n))
    t.set_strpad(h5py.h5t.STR_NULLTERM)
    t.set_cset(h5py.h5t.CSET_UTF8 if utf8 else h5py.h5t.CSET_ASCII)
    return t


def _set_str(obj: h5py.HLObject, name: str, value: str, utf8: bool = True) -> None:
    """A PyTables string attribute (an empty string has a null dataspace)."""
    raw = value.encode("utf-8")
    t = _str_type(len(raw), utf8)
    space = h5py.h5s.create(h5py.h5s.SCALAR if raw else h5py.h5s.NULL)
    if h5py.h5a.exists(obj.id, name.encode()):
        h5py.h5a.delete(obj.id, name.encode())
    attr = h5py.h5a.create(obj.id, name.encode(), t, space)
    if raw:
        attr.write(np.array(raw, dtype=f"S{len(raw)}"), mtype=t)


def _set_bool(obj: h5py.HLObject, name: str, value: bool) -> None:
    """A PyTables boolean attribute: an 8-bit HDF5 bitfield."""
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    if h5py.h5a.exists(obj.id, name.encode()):
        h5py.h5a.delete(obj.id, name.encode())
    attr = h5py.h5a.create(obj.id, name.encode(), h5py.h5t.STD_B8LE, space)
    attr.write(np.array(int(value), dtype="u1"), mtype=h5py.h5t.STD_B8LE)


def _node_attrs(obj: h5py.HLObject, cls: str, version: str) -> None:
    _set_str(obj, "CLASS", cls)
    _set_str(obj, "TITLE", "")
    _set_str(obj, "VERSION", version)


def _array(group: h5py.Group, name: str, shape, dtype, data=None) -> h5py.Dataset:
    """A PyTables ``Array`` node (contiguous)."""
    d = group.create_dataset(name, shape=shape, dtype=dtype, data=data)
    _node_attrs(d, "ARRAY", "2.4")
    _set_str(d, "FLAVOR", "numpy")
    _set_bool(d, "transposed", True)
    return d


def _string_array(group: h5py.Group, name: str, values: list[bytes]) -> h5py.Dataset:
    """A PyTables string ``Array`` (NUL-terminated, as PyTables writes it)."""
    size = max(len(v) for v in values)
    t = _str_type(size, utf8=False)
    space = h5py.h5s.create_simple((len(values),))
    dsid = h5py.h5d.create(group.id, name.encode(), t, space)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(values, dtype=f"S{size}"), mtype=t)
    d = h5py.Dataset(dsid)
    _node_attrs(d, "ARRAY", "2.4")
    _set_str(d, "FLAVOR", "numpy")
    _set_bool(d, "transposed", True)
    return d


def pickled_labels(labels: Sequence) -> bytes:
    """The bytes PyTables' ``ObjectAtom`` stores for an object ``Index``.

    Examples
    --------
    >>> pickled_labels(["voxel_id", 0])[:2]
    b'\\x80\\x05'
    """
    arr = np.empty(len(labels), dtype=object)
    arr[:] = list(labels)
    return pickle.dumps(arr, pickle.HIGHEST_PROTOCOL)


def _object_labels(group: h5py.Group, name: str, labels: Sequence) -> None:
    """Labels as a PyTables ``VLArray`` of ``ObjectAtom`` (one pickled row)."""
    raw = np.frombuffer(pickled_labels(labels), dtype=np.uint8)
    d = group.create_dataset(
        name, shape=(1,), maxshape=(None,), chunks=(65536,), dtype=h5py.vlen_dtype(np.uint8)
    )
    d[0] = raw
    _node_attrs(d, "VLARRAY", "1.4")
    _set_str(d, "PSEUDOATOM", "object")
    _index_attrs(d, "object")


def _index_attrs(d: h5py.Dataset, kind: str) -> None:
    _set_str(d, "kind", kind)
    _set_str(d, "name", "N.", utf8=False)  # pickle of None, as PyTables stores it
    _set_bool(d, "transposed", True)


def create_response_frame(
    f: h5py.File, key: str, n_rows: int, n_values: int, dtype, id_column: str
) -> tuple[h5py.Dataset, h5py.Dataset]:
    """Create a frame ``[id_column, 0, 1, ..., n_values-1]`` with a ``RangeIndex``.

    Parameters
    ----------
    f : h5py.File
        Open for writing (becomes a PyTables-compatible file).
    key : str
        The pandas key (group name), e.g. ``"ResponseData"``.
    n_rows, n_values : int
        Frame rows and number of value columns.
    dtype : str or numpy.dtype
        Dtype of the value block (``float32`` or ``float64``).
    id_column : str
        Name of the leading ``int64`` column.

    Returns
    -------
    (values, ids) : h5py.Dataset
        ``block0_values`` (n_rows, n_values) and ``block1_values`` (n_rows, 1), both
        empty, to be filled by the caller (in row blocks for big frames).
    """
    _set_str(f, "CLASS", "GROUP")
    _set_str(f, "PYTABLES_FORMAT_VERSION", "2.1")
    _set_str(f, "TITLE", "")
    _set_str(f, "VERSION", "1.0")
    g = f.create_group(key)
    _node_attrs(g, "GROUP", "1.0")
    for name in ("axis0", "axis1", "block0_items", "block1_items"):
        _set_str(g, f"{name}_variety", "regular")
    _set_str(g, "encoding", "UTF-8")
    _set_str(g, "errors", "strict")
    g.attrs.create("nblocks", np.int64(2))
    g.attrs.create("ndim", np.int64(2))
    _set_str(g, "pandas_type", "frame")
    trials = range(n_values)
    _object_labels(g, "axis0", [id_column, *trials])
    axis1 = _array(g, "axis1", (n_rows,), np.int64)
    for start in range(0, n_rows, 1 << 20):
        stop = min(n_rows, start + (1 << 20))
        axis1[start:stop] = np.arange(start, stop, dtype=np.int64)
    _index_attrs(axis1, "integer")
    _object_labels(g, "block0_items", list(trials))
    values = _array(g, "block0_values", (n_rows, n_values), np.dtype(dtype))
    name = id_column.encode("utf-8")
    items = _string_array(g, "block1_items", [name])
    _index_attrs(items, "string")
    _set_str(items, "nan_rep", "")
    ids = _array(g, "block1_values", (n_rows, 1), np.int64)
    return values, ids
