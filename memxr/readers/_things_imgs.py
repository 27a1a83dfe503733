"""Image lists of the TVSD: decoding ``_logs/things_imgs.mat`` (MATLAB v7.3 cell arrays).

The structs ``train_imgs`` and ``test_imgs`` hold cell arrays of UTF-16 char
arrays (object references into ``#refs#``), as rows or columns; every string is
decoded and checked, and a bad one is reported by file and field.
:func:`memxr.readers.tvsd.read_normmua` and
:func:`memxr.readers.tvsd_trials.read_trials` order their stimuli by these lists.

Examples
--------
>>> import pandas as pd
>>> check_unique_ids(pd.DataFrame({"stimulus_id": ["a.jpg", "a.jpg"]}), "things_imgs.mat")
Traceback (most recent call last):
...
memxr.errors.InputError: things_imgs.mat: things_path: duplicate stimulus ids, e.g. ['a.jpg']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import InputError
from ._h5 import open_h5

__all__ = ["IMG_FIELDS", "SPLIT_GROUPS", "check_unique_ids", "read_things_imgs"]

IMG_FIELDS = ("class", "things_path", "local_path")
SPLIT_GROUPS = {"train": "train_imgs", "test": "test_imgs"}


def _decode_char(f: h5py.File, ref: Any, path: os.PathLike, field: str) -> str:
    """Decode one MATLAB char array (an object reference into ``#refs#``)."""
    try:
        obj = f[ref]
    except (ValueError, KeyError, TypeError):
        raise InputError(path, field, "is not a valid reference to a char array") from None
    if not isinstance(obj, h5py.Dataset):
        raise InputError(path, field, "does not point to a char array")
    if obj.dtype != np.uint16:
        raise InputError(path, field, f"is not a uint16 char array (dtype {obj.dtype})")
    if obj.size == 0 or sum(s > 1 for s in obj.shape) > 1:
        raise InputError(path, field, f"is not a non-empty char vector (shape {obj.shape})")
    codes = obj[()]  # small
    try:
        return codes.astype("<u2").tobytes().decode("utf-16-le")
    except UnicodeDecodeError as e:
        raise InputError(path, field, f"is not valid UTF-16 ({e.reason})") from None


def _cell_strings(f: h5py.File, group: str, name: str, path: os.PathLike) -> list[str]:
    """Decode a MATLAB cell array of strings, (n, 1) or (1, n)."""
    field = f"{group}/{name}"
    if field not in f or not isinstance(f[field], h5py.Dataset):
        raise InputError(path, field, "no such cell array")
    cell = f[field]
    if cell.dtype != h5py.ref_dtype:
        raise InputError(path, field, f"is not a cell array of references (dtype {cell.dtype})")
    if sum(s > 1 for s in cell.shape) > 1:
        raise InputError(path, field, f"is not a vector cell array (shape {cell.shape})")
    refs = cell[()].ravel()  # small
    return [_decode_char(f, r, path, f"{field}[{i}]") for i, r in enumerate(refs)]


def read_things_imgs(path: str | os.PathLike) -> pd.DataFrame:
    r"""Read the train and test image lists of ``_logs/things_imgs.mat``.

    Parameters
    ----------
    path : str or path
        The MATLAB v7.3 file, with structs ``train_imgs`` and ``test_imgs``
        whose cell-array fields ``class``, ``things_path``, ``local_path`` hold
        UTF-16 char arrays.

    Returns
    -------
    pandas.DataFrame
        One row per image, train images first, with columns ``split``
        ("train"/"test"), ``index`` (0-based position within the split),
        ``stimulus_id`` (file name), ``concept`` (THINGS folder of the image),
        ``things_path`` (forward slashes), ``class`` and ``local_path``.

    Raises
    ------
    InputError
        Naming the file and the field (e.g. ``train_imgs/things_path[3]``) for
        a missing struct or field, fields of unequal lengths, or a string that
        cannot be decoded.

    Examples
    --------
    A file written like MATLAB does (here by ``hdf5storage``):

    >>> import hdf5storage, os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "things_imgs.mat")
    >>> cell = lambda xs: np.array([[x] for x in xs], dtype=object)
    >>> def struct(*paths):
    ...     return {"class": cell(x.split("\\")[0] for x in paths), "things_path": cell(paths),
    ...             "local_path": cell("C:\\things\\" + x for x in paths)}
    >>> hdf5storage.savemat(p, {"train_imgs": struct("dog\\dog_12s.jpg", "baton4\\baton4_03s.jpg"),
    ...                         "test_imgs": struct("cat\\cat_01b.jpg")}, format="7.3")
    >>> read_things_imgs(p)[["split", "index", "stimulus_id", "concept", "things_path"]]
       split  index     stimulus_id concept              things_path
    0  train      0     dog_12s.jpg     dog          dog/dog_12s.jpg
    1  train      1  baton4_03s.jpg  baton4  baton4/baton4_03s.jpg
    2   test      0     cat_01b.jpg     cat          cat/cat_01b.jpg
    """
    frames = []
    with open_h5(path) as f:
        for split, group in SPLIT_GROUPS.items():
            if group not in f or not isinstance(f[group], h5py.Group):
                raise InputError(path, group, "no such struct")
            cols = {name: _cell_strings(f, group, name, path) for name in IMG_FIELDS}
            sizes = {name: len(v) for name, v in cols.items()}
            if len(set(sizes.values())) > 1:
                raise InputError(path, group, f"fields have different lengths {sizes}")
            frames.append(_imgs_frame(split, cols))
    return pd.concat(frames, ignore_index=True)


def _imgs_frame(split: str, cols: Mapping[str, list[str]]) -> pd.DataFrame:
    things = [p.replace("\\", "/") for p in cols["things_path"]]
    posix = [PurePosixPath(p) for p in things]
    folders = [p.parent.name for p in posix]
    return pd.DataFrame(
        {
            "split": split,
            "index": np.arange(len(things), dtype=np.int64),
            "stimulus_id": [p.name for p in posix],
            "concept": [d or c for d, c in zip(folders, cols["class"], strict=True)],
            "things_path": things,
            "class": list(cols["class"]),
            "local_path": list(cols["local_path"]),
        }
    )


def check_unique_ids(imgs: pd.DataFrame, path: os.PathLike) -> None:
    """Raise :class:`InputError` if a stimulus id is listed twice (train and test together)."""
    ids = pd.Index(imgs["stimulus_id"])
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique()[:3].tolist()
        raise InputError(path, "things_path", f"duplicate stimulus ids, e.g. {dup}")
