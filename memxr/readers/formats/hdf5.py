"""Lazy, picklable access to HDF5 datasets (h5py only, no unpickling of labels).

:class:`H5Array` opens the file on each read, so a dask array built on it can
be sent to distributed workers, and no file handle outlives a read.

Examples
--------
>>> import h5py, numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "x.h5")
>>> with h5py.File(path, "w") as f:
...     _ = f.create_dataset("g/x", data=np.arange(12.0).reshape(3, 4))
>>> a = H5Array(path, "g/x")
>>> a.shape, str(a.dtype)
((3, 4), 'float64')
>>> a[1:, ::2]
array([[ 4.,  6.],
       [ 8., 10.]])
>>> import dask.array as da
>>> float(da.from_array(a, chunks=(1, 4)).sum().compute())
66.0
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from ...errors import InputError

__all__ = ["H5Array", "H5Columns", "open_h5", "row_block"]


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 (or MATLAB v7.3) file read-only, or raise a one-line :class:`InputError`."""
    if not os.path.exists(path):
        raise InputError(path, "file", "does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise InputError(
            path, "file", f"not a readable HDF5 file ({e.__class__.__name__})"
        ) from None


class H5Array:
    """A read-only, array-like view of one HDF5 dataset, reopened per read.

    Parameters
    ----------
    path : str
        The HDF5 file.
    name : str
        The dataset inside the file.
    """

    def __init__(self, path: str | os.PathLike, name: str):
        self.path = os.fspath(path)
        self.name = name
        with open_h5(self.path) as f:
            if name not in f or not isinstance(f[name], h5py.Dataset):
                raise InputError(self.path, name, "no such dataset")
            d = f[name]
            if d.dtype.kind not in "fiub":
                raise InputError(self.path, name, f"is not numeric (dtype {d.dtype})")
            self.shape = tuple(d.shape)
            self.dtype = d.dtype
            self.chunks = d.chunks
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        with h5py.File(self.path, "r") as f:
            return f[self.name][key]

    def read_into(self, key, out: np.ndarray) -> np.ndarray:
        """Read ``self[key]`` into ``out`` (a C-contiguous array of that shape and dtype).

        Reading into a buffer kept between reads spares faulting in fresh pages for every
        block (large arrays are fresh memory maps).
        """
        with h5py.File(self.path, "r") as f:
            f[self.name].read_direct(out, key)
        return out

    def __reduce__(self):
        return (H5Array, (self.path, self.name))

    def __repr__(self) -> str:
        return f"H5Array({os.path.basename(self.path)!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"


class H5Columns:
    """A 2-D dataset restricted to some positions along one axis, read with one selection.

    Reading ``d[rows, cols]`` for a sorted list of columns is barely slower than
    reading the whole rows, so a small part of a big block (the repeated test
    trials of an fMRI file) need not read the whole block.

    Examples
    --------
    >>> import h5py, numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.h5")
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("x", data=np.arange(12.0).reshape(3, 4))
    >>> H5Columns(path, "x", [3, 1], axis=1)[0:2, :]
    array([[3., 1.],
           [7., 5.]])
    """

    def __init__(self, path: str | os.PathLike, name: str, index, axis: int = 1):
        base = H5Array(path, name)
        self.path, self.name, self.axis = base.path, name, int(axis)
        self.index = np.asarray(index, dtype=np.int64)
        self._sorted = np.unique(self.index)
        self._take = np.searchsorted(self._sorted, self.index)
        shape = list(base.shape)
        shape[self.axis] = self.index.size
        self.shape, self.dtype, self.ndim = tuple(shape), base.dtype, len(shape)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        sel = list(key)
        sel[self.axis] = self._sorted
        with h5py.File(self.path, "r") as f:
            data = f[self.name][tuple(sel)] if self._sorted.size else np.empty(
                tuple(0 if i == self.axis else len(range(*k.indices(n)))
                      for i, (k, n) in enumerate(zip(key, self.shape, strict=True))),
                self.dtype,
            )  # fmt: skip
        data = np.take(data, self._take, axis=self.axis)
        inner = [slice(None)] * self.ndim
        inner[self.axis] = key[self.axis]
        return data[tuple(inner)]

    def __reduce__(self):
        return (H5Columns, (self.path, self.name, self.index, self.axis))


def row_block(n_cols: int, itemsize: int, target_bytes: int = 64 << 20, multiple: int = 1) -> int:
    """Rows per block so that a block of ``n_cols`` items is about ``target_bytes``.

    Examples
    --------
    >>> row_block(9840, 4, 64 << 20)
    1705
    >>> row_block(9840, 4, 64 << 20, multiple=1000)
    1000
    """
    rows = max(1, target_bytes // max(1, n_cols * itemsize))
    if multiple > 1:
        rows = max(multiple, rows // multiple * multiple)
    return int(rows)
