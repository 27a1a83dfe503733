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
import threading

import h5py
import numpy as np

from ...errors import InputError

__all__ = ["H5Array", "open_h5", "row_block", "scratch"]

_SCRATCH = threading.local()


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


def scratch(slot: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A per-thread scratch array for ``slot``, reused while its shape and dtype stay the same.

    Read buffers and transposition buffers of the readers' tasks live here: arrays above
    glibc's mmap threshold (32 MiB) are fresh memory maps, whose pages the kernel zeroes
    and faults in on first touch, at every allocation (measured 0.12 CPU s per GiB). A
    slot must only hold data inside one task (never an array handed back to Dask), since
    the thread's next task overwrites it.

    Examples
    --------
    >>> a = scratch("doc", (2, 3), "f4")
    >>> a is scratch("doc", (2, 3), "f4"), a is scratch("doc", (3, 2), "f4")
    (True, False)
    """
    dtype = np.dtype(dtype)
    buf = getattr(_SCRATCH, slot, None)
    if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
        buf = np.empty(shape, dtype=dtype)
        setattr(_SCRATCH, slot, buf)
    return buf
