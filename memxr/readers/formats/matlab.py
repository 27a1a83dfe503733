"""Write MATLAB v7.3 MAT-files with h5py, in the layout MATLAB and hdf5storage use.

A v7.3 MAT-file is HDF5 with a 512-byte user block whose first 128 bytes are
the MATLAB header (text, subsystem offset, version ``0x0200``, endian ``IM``).
Each variable carries a ``MATLAB_class`` attribute; MATLAB is column-major, so
an array that MATLAB calls [m x n] is stored (and read by h5py) as (n, m).
Char arrays are ``uint16`` UTF-16 code units with ``MATLAB_int_decode = 2``; a
cell array is an array of HDF5 object references into the ``#refs#`` group;
a struct is a group with a ``MATLAB_fields`` attribute (variable-length arrays
of single characters). Big arrays are created empty with :func:`create_double`
and filled by the caller in blocks.

Examples
--------
>>> import os, tempfile, numpy as np, hdf5storage
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "x.mat")
>>> with mat_file(path) as f:
...     _ = write_double(f, "tb", np.arange(3.0)[:, None])
...     write_cellstr_struct(f, "imgs", {"class": ["cat", "dog"]})
>>> d = hdf5storage.loadmat(path)
>>> d["tb"].ravel().tolist(), str(d["imgs"]["class"][0][0, 1][0, 0])
([0.0, 1.0, 2.0], 'dog')
>>> tmp.cleanup()
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence

import h5py
import numpy as np

__all__ = ["create_double", "mat_file", "write_cellstr_struct", "write_double"]

USERBLOCK = 512


def header(platform: str = "memxr.synth", when: float | None = None) -> bytes:
    """The 128-byte MATLAB 7.3 header placed at the start of the user block.

    Examples
    --------
    >>> h = header(when=0)
    >>> len(h), h[:19], h[-4:]
    (128, b'MATLAB 7.3 MAT-file', b'\\x00\\x02IM')
    """
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(when))
    text = f"MATLAB 7.3 MAT-file, Platform: {platform}, Created on: {stamp} HDF5 schema 1.00 ."
    return text.encode("ascii")[:116].ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"


@contextlib.contextmanager
def mat_file(path: str | os.PathLike, when: float | None = None) -> Iterator[h5py.File]:
    """Create a v7.3 MAT-file: an h5py file with the MATLAB user block written on close."""
    f = h5py.File(path, "w", userblock_size=USERBLOCK)
    try:
        yield f
    finally:
        f.close()
    with open(path, "r+b") as raw:
        raw.write(header(when=when))


def _class(obj: h5py.HLObject, cls: str) -> None:
    obj.attrs.create("MATLAB_class", np.bytes_(cls))


def write_double(f: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
    """A small ``double`` variable, given in h5py order (MATLAB dims reversed)."""
    d = f.create_dataset(name, data=np.asarray(data, dtype=np.float64))
    _class(d, "double")
    return d


def create_double(
    f: h5py.Group, name: str, shape: tuple[int, ...], chunks=None, compression=None
) -> h5py.Dataset:
    """An empty ``double`` variable of h5py ``shape``, to be filled in blocks."""
    d = f.create_dataset(
        name, shape=shape, dtype=np.float64, chunks=chunks, compression=compression
    )
    _class(d, "double")
    return d


class _Refs:
    """The ``#refs#`` group: named like hdf5storage (hex counter, ``a`` = canonical empty)."""

    def __init__(self, f: h5py.File):
        self.group = f.require_group("#refs#")
        if "a" not in self.group:
            e = self.group.create_dataset("a", data=np.zeros(2, dtype=np.uint64))
            _class(e, "canonical empty")
            e.attrs.create("MATLAB_empty", np.uint8(1))
        self.count = 10 + len(self.group)

    def char(self, text: str) -> h5py.Reference:
        """A ``char`` variable in ``#refs#`` and a reference to it.

        Written with h5py's low-level API (the same objects as ``create_dataset`` and
        ``attrs.create`` make, three times faster: names lists hold tens of thousands).
        """
        codes = np.frombuffer(text.encode("utf-16-le"), dtype="<u2").reshape(-1, 1)
        name = f"{self.count:x}".encode()
        self.count += 1
        dsid = h5py.h5d.create(
            self.group.id, name, h5py.h5t.STD_U16LE, h5py.h5s.create_simple(codes.shape)
        )
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(codes))
        scalar = h5py.h5s.create(h5py.h5s.SCALAR)
        for key, value in _CHAR_ATTRS:
            attr = h5py.h5a.create(dsid, key, h5py.h5t.py_create(value.dtype), scalar)
            attr.write(np.asarray(value))
        return h5py.h5r.create(self.group.id, name, h5py.h5r.OBJECT)


_CHAR_ATTRS = (
    (b"H5PATH", np.bytes_("/#refs#")),
    (b"MATLAB_class", np.bytes_("char")),
    (b"MATLAB_int_decode", np.int64(2)),
)


def write_cellstr_struct(
    f: h5py.File, name: str, fields: Mapping[str, Sequence[str]], block: int = 4096
) -> None:
    """A 1x1 struct whose fields are 1xN cell arrays of char (h5py shape (N, 1)).

    Strings are written ``block`` at a time, so memory stays small for long lists.
    """
    refs = _Refs(f)
    g = f.create_group(name)
    _class(g, "struct")
    vlen = h5py.vlen_dtype(np.dtype("S1"))
    names = np.empty(len(fields), dtype=object)
    names[:] = [np.array(list(k), dtype="S1") for k in fields]
    g.attrs.create("MATLAB_fields", names, dtype=vlen)
    for field, values in fields.items():
        d = g.create_dataset(field, shape=(len(values), 1), dtype=h5py.ref_dtype)
        for start in range(0, len(values), block):
            chunk = values[start : start + block]
            d[start : start + len(chunk), 0] = np.array(
                [refs.char(s) for s in chunk], dtype=h5py.ref_dtype
            )
        d.attrs.create("H5PATH", np.bytes_(f"/{name}"))
        _class(d, "cell")
