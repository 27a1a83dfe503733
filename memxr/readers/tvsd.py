"""Readers of the THINGS Ventral Stream Spiking Dataset (TVSD): image lists and normMUA.

Two macaques (``monkeyN``, ``monkeyF``) with 1,024 electrodes on 16 Utah
arrays over V1, V4 and IT. :func:`read_things_imgs` reads the image lists of
``_logs/things_imgs.mat``; :func:`read_normmua` returns the lazy cube of the
window-averaged, normalised multi-unit activity ``THINGS_normMUA.mat``. The
per-trial, per-time-bin file is read by :func:`memxr.readers.tvsd_trials.read_trials`.

All MATLAB v7.3 arrays are identified by their sizes (1,024 channels, the
number of images), never by position, so both orientations are accepted.

Examples
--------
>>> normalize_monkey("monkeyF")
'F'
>>> MONKEY_AREAS["F"]["IT"]
(513, 832)
>>> area_labels("F")[[0, 600, 900]].tolist()
['V1', 'IT', 'V4']
>>> import pandas as pd
>>> check_unique_ids(pd.DataFrame({"stimulus_id": ["a.jpg", "a.jpg"]}), "things_imgs.mat")
Traceback (most recent call last):
...
memxr.errors.InputError: things_imgs.mat: things_path: duplicate stimulus ids, e.g. ['a.jpg']
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import dask.array as da
import h5py
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from ..errors import InputError
from ..provenance import base_attrs, file_records
from ..schema import AREA_WINDOWS, text_coord, validate
from .formats.hdf5 import H5Array, open_h5, row_block
from .things_meta import label_stimuli

# ----------------------------------------------------------------------
# Image lists of the TVSD: decoding ``_logs/things_imgs.mat`` (MATLAB v7.3 cell arrays).


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


__all__ = [
    "MONKEY_AREAS",
    "N_CHANNELS",
    "ROIS",
    "area_labels",
    "normalize_monkey",
    "read_normmua",
    "read_things_imgs",
]

N_CHANNELS = 1024
"""Electrodes per monkey (16 Utah arrays of 64)."""

CHANNELS_PER_ARRAY = 64

MONKEY_AREAS: dict[str, dict[str, tuple[int, int]]] = {
    "N": {"V1": (1, 512), "V4": (513, 768), "IT": (769, 1024)},
    "F": {"V1": (1, 512), "V4": (833, 1024), "IT": (513, 832)},
}
"""1-based inclusive channel ranges of each area, after the channel mapping."""

ROIS = ("V1", "V4", "IT")
"""ROI names of a TVSD cube, in the order of its ``roi`` coordinate."""


NORMMUA_FILE = "THINGS_normMUA.mat"
IMGS_FILE = os.path.join("_logs", "things_imgs.mat")

# channel coordinate -> normMUA key; each reduced to one value per channel
CHANNEL_STATS = {
    "reliability": "reliab",
    "snr": "SNR",
    "snr_max": "SNR_max",
    "latency": "lats",
    "oracle": "oracle",
}

_BLOCK_BYTES = 64 << 20


def normalize_monkey(monkey: str, file: str | os.PathLike = "<argument>") -> str:
    """The monkey's letter, ``"N"`` or ``"F"``, from any usual spelling.

    Parameters
    ----------
    monkey : str
        ``"N"``, ``"n"``, ``"monkeyN"``, ``"MonkeyF"``...
    file : str or path
        What to name in the error (e.g. the monkey's folder).

    Raises
    ------
    InputError
        For anything that names neither monkey.

    Examples
    --------
    >>> normalize_monkey("monkeyN"), normalize_monkey("f")
    ('N', 'F')
    >>> normalize_monkey("X")
    Traceback (most recent call last):
    ...
    memxr.errors.InputError: <argument>: monkey: expected N or F (or monkeyN, monkeyF), got 'X'
    """
    key = str(monkey).strip()
    if key.lower().startswith("monkey"):
        key = key[len("monkey") :]
    key = key.upper()
    if key not in MONKEY_AREAS:
        raise InputError(file, "monkey", f"expected N or F (or monkeyN, monkeyF), got {monkey!r}")
    return key


def area_labels(monkey: str) -> np.ndarray:
    """Area name of each of the 1,024 channels (object array of ``str``).

    Examples
    --------
    >>> area_labels("N")[[0, 511, 512, 1023]].tolist()
    ['V1', 'V1', 'V4', 'IT']
    """
    out = np.empty(N_CHANNELS, dtype=object)
    for area, (lo, hi) in MONKEY_AREAS[normalize_monkey(monkey)].items():
        out[lo - 1 : hi] = area
    return out


# --------------------------------------------------------------------- shared cube parts


def axes_of_size(shape: Sequence[int], size: int) -> list[int]:
    """Axes of ``shape`` that have length ``size``.

    Examples
    --------
    >>> axes_of_size((30, 1024, 56), 1024)
    [1]
    """
    return [i for i, s in enumerate(shape) if s == size]


def lazy_rows(arr: H5Array, target_bytes: int = _BLOCK_BYTES) -> da.Array:
    """A dask array over ``arr`` in blocks of whole rows (axis 0) of about ``target_bytes``.

    Blocks are whole multiples of the HDF5 chunk along axis 0 when the dataset
    is chunked, so no HDF5 chunk is read by two tasks.

    Examples
    --------
    >>> import h5py, os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "x.h5")
    >>> with h5py.File(p, "w") as f:
    ...     _ = f.create_dataset("x", data=np.ones((10, 4)), chunks=(2, 4))
    >>> lazy_rows(H5Array(p, "x"), target_bytes=100).chunks
    ((2, 2, 2, 2, 2), (4,))
    """
    n_cols = int(np.prod(arr.shape[1:], dtype=np.int64))
    rows = row_block(n_cols, arr.dtype.itemsize, target_bytes, arr.chunks[0] if arr.chunks else 1)
    rows = min(rows, max(1, arr.shape[0]))
    st = os.stat(arr.path)
    name = "h5-" + tokenize(arr.path, arr.name, st.st_size, st.st_mtime_ns, rows)
    meta = np.empty((0,) * arr.ndim, dtype=arr.dtype)
    return da.from_array(arr, chunks=(rows, *arr.shape[1:]), name=name, meta=meta, fancy=False)


def _per_channel(values: np.ndarray, path: os.PathLike, field: str) -> np.ndarray:
    """Mean over every axis but the (last) one of size 1,024, ignoring NaN."""
    axes = axes_of_size(values.shape, N_CHANNELS)
    if not axes or values.dtype.kind not in "fiub":
        raise InputError(
            path, field, f"no numeric axis of size {N_CHANNELS} (shape {values.shape})"
        )
    flat = np.moveaxis(values.astype(np.float64), axes[-1], -1).reshape(-1, N_CHANNELS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels stay NaN
        return np.nanmean(flat, axis=0)


def read_channel_stats(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Per-channel reliability, SNR, latency and oracle from ``THINGS_normMUA.mat``.

    Each statistic present in the file is averaged (ignoring NaN) over its
    other axes (repeat pairs, days): ``reliability`` from ``reliab``, ``snr``
    from ``SNR``, ``snr_max``, ``latency`` from ``lats``, ``oracle``.
    """
    out = {}
    with open_h5(path) as f:
        for coord, key in CHANNEL_STATS.items():
            if key in f and isinstance(f[key], h5py.Dataset):
                out[coord] = _per_channel(f[key][()], path, key)  # small
    return out


def channel_coords(monkey: str, stats: Mapping[str, np.ndarray]) -> dict:
    """Coordinates on ``channel`` (and ``roi``) for a TVSD cube."""
    ch = np.arange(1, N_CHANNELS + 1, dtype=np.int64)
    areas = area_labels(monkey)
    mask = np.stack([areas == r for r in ROIS], axis=1)
    coords = {
        "channel_id": ("channel", ch),
        "area": ("channel", text_coord(areas)),
        "array": ("channel", (ch - 1) // CHANNELS_PER_ARRAY + 1),
        "roi": ("roi", text_coord(ROIS)),
        "roi_mask": (("channel", "roi"), mask),
    }
    coords.update({k: ("channel", np.asarray(v, dtype=np.float64)) for k, v in stats.items()})
    return coords


def stimulus_coords(
    imgs: pd.DataFrame,
    n_repeats: np.ndarray,
    memorability: str | os.PathLike | None,
    concepts: str | os.PathLike | None,
) -> tuple[dict, dict]:
    """Coordinates on ``stimulus`` (labels joined by :func:`label_stimuli`) and match counts."""
    ids = imgs["stimulus_id"].tolist()
    labels = label_stimuli(
        ids,
        memorability=memorability,
        concepts=concepts,
        fallback_concepts=imgs["concept"].tolist(),
    )
    coords = {
        "stimulus_id": ("stimulus", text_coord(ids)),
        "concept": ("stimulus", text_coord(labels["concept"].fillna("").tolist())),
        "category": ("stimulus", text_coord(labels["category"].fillna("").tolist())),
        "memorability": ("stimulus", labels["memorability"].to_numpy(dtype=np.float64)),
        "split": ("stimulus", text_coord(imgs["split"].tolist())),
        "n_repeats": ("stimulus", np.asarray(n_repeats, dtype=np.int64)),
    }
    return coords, {k: int(v) for k, v in labels.attrs.items()}


def cube_attrs(
    dataset: str,
    monkey: str,
    units: str,
    files: Sequence[Path],
    root: Path,
    checksum: bool,
) -> dict:
    """Attributes of a TVSD cube: provenance, areas and per-area windows (JSON)."""
    attrs = base_attrs(
        dataset, f"monkey{monkey}", units, file_records(files, root=root, checksum=checksum)
    )
    attrs["areas"] = json.dumps({k: list(v) for k, v in MONKEY_AREAS[monkey].items()})
    attrs["window_ms"] = json.dumps({k: list(v) for k, v in AREA_WINDOWS.items()})
    return attrs


# --------------------------------------------------------------------- normMUA


def _stimulus_rows(path: Path, field: str, n_rows: int, block_bytes: int) -> da.Array:
    """``train_MUA``/``test_MUA`` as a lazy (stimulus, channel) array, either orientation."""
    arr = H5Array(path, field)
    if arr.ndim != 2:
        raise InputError(path, field, f"expected 2 dimensions, got shape {arr.shape}")
    ch = axes_of_size(arr.shape, N_CHANNELS)
    if not ch:
        raise InputError(path, field, f"no axis of size {N_CHANNELS} (shape {arr.shape})")
    stim = 0 if ch[-1] == 1 else 1
    if arr.shape[stim] != n_rows:
        raise InputError(
            path,
            field,
            f"has {arr.shape[stim]} stimuli but things_imgs.mat lists {n_rows} (shape {arr.shape})",
        )
    x = lazy_rows(arr, block_bytes)
    return x if stim == 0 else x.T


def _repeat_axes(shape: tuple[int, ...], n_test: int) -> tuple[int, int, int] | None:
    """(stimulus, repeat, channel) axes of ``test_MUA_reps``, or None if not found."""
    ch = axes_of_size(shape, N_CHANNELS)
    if len(shape) != 3 or not ch:
        return None
    c = 2 if 2 in ch else ch[0]
    rest = [a for a in range(3) if a != c and shape[a] == n_test]
    if not rest:
        return None
    s = min(rest, key=lambda a: abs(a - c))  # ties: the axis next to the channels
    r = ({0, 1, 2} - {c, s}).pop()
    return s, r, c


def _repeats(path: Path, n_test: int, block_bytes: int) -> da.Array:
    arr = H5Array(path, "test_MUA_reps")
    axes = _repeat_axes(arr.shape, n_test)
    if axes is None:
        raise InputError(
            path,
            "test_MUA_reps",
            f"expected axes of sizes {n_test} (test images), repeats and {N_CHANNELS}, "
            f"got shape {arr.shape}",
        )
    return da.transpose(lazy_rows(arr, block_bytes), axes)


def _as_float(x: da.Array) -> da.Array:
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def read_normmua(
    monkey_dir: str | os.PathLike,
    monkey: str,
    *,
    memorability: str | os.PathLike | None = None,
    concepts: str | os.PathLike | None = None,
    checksum: bool = True,
) -> xr.Dataset:
    r"""Read one monkey's ``THINGS_normMUA.mat`` as a lazy cube.

    Parameters
    ----------
    monkey_dir : str or path
        Folder with ``THINGS_normMUA.mat`` and ``_logs/things_imgs.mat``.
    monkey : str
        ``"N"`` or ``"F"`` (``"monkeyN"`` etc. accepted); sets the areas.
    memorability, concepts
        THINGS tables, passed to :func:`memxr.readers.things_meta.label_stimuli`.
    checksum : bool
        Record the SHA-256 of the input files in ``attrs["inputs"]``.

    Returns
    -------
    xarray.Dataset
        A cube (``dataset="tvsd-normmua"``): ``response`` (stimulus, channel),
        train images then test images, dask-backed in blocks of whole rows;
        ``response_repeats`` (repeat_stimulus, repeat, channel) when the file
        has ``test_MUA_reps``. Channel coordinates ``channel_id`` (1-1024),
        ``area``, ``array`` (1-16), ``roi_mask`` (V1, V4, IT) and, when present,
        ``reliability``, ``snr``, ``snr_max``, ``latency``, ``oracle``.
        Building it reads no response data.

    Raises
    ------
    InputError
        Naming the file and the field: missing keys, arrays without a
        1,024 axis, row counts that differ from the image lists, duplicate
        stimulus ids, undecodable image names, an unknown monkey.

    Examples
    --------
    A tiny folder written like MATLAB does (here by ``hdf5storage``): two train
    images and one test image, each channel's response equal to its index
    plus 1000 per image:

    >>> import hdf5storage, os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "_logs"))
    >>> cell = lambda xs: np.array([[x] for x in xs], dtype=object)
    >>> imgs = lambda *xs: {"class": cell(x.split("\\")[0] for x in xs),
    ...                     "things_path": cell(xs), "local_path": cell(xs)}
    >>> hdf5storage.savemat(os.path.join(d, "_logs", "things_imgs.mat"),
    ...     {"train_imgs": imgs("dog\\dog_12s.jpg", "cat\\cat_01b.jpg"),
    ...      "test_imgs": imgs("cow\\cow_02s.jpg")}, format="7.3")
    >>> mua = np.arange(1024.0) + 1000 * np.arange(3)[:, None]  # stimulus x channel
    >>> hdf5storage.savemat(os.path.join(d, "THINGS_normMUA.mat"),
    ...     {"train_MUA": mua[:2].T, "test_MUA": mua[2:].T}, format="7.3")  # MATLAB [1024 x n]
    >>> ds = read_normmua(d, "N", checksum=False)
    >>> ds.stimulus_id.values.tolist(), ds.split.values.tolist()
    (['dog_12s.jpg', 'cat_01b.jpg', 'cow_02s.jpg'], ['train', 'train', 'test'])
    >>> ds.response.where(ds.area == "IT").mean("channel").values
    array([ 895.5, 1895.5, 2895.5])
    """
    root = Path(monkey_dir)
    m = normalize_monkey(monkey, root)
    mua_path, imgs_path = root / NORMMUA_FILE, root / IMGS_FILE
    imgs = read_things_imgs(imgs_path)
    check_unique_ids(imgs, imgs_path)
    n_train = int((imgs["split"] == "train").sum())
    n_test = len(imgs) - n_train
    with open_h5(mua_path) as f:
        has_reps = "test_MUA_reps" in f
    train = _stimulus_rows(mua_path, "train_MUA", n_train, _BLOCK_BYTES)
    test = _stimulus_rows(mua_path, "test_MUA", n_test, _BLOCK_BYTES)
    data = {"response": (("stimulus", "channel"), _as_float(da.concatenate([train, test])))}
    coords = channel_coords(m, read_channel_stats(mua_path))
    n_rep = 1
    if has_reps:
        reps = _as_float(_repeats(mua_path, n_test, _BLOCK_BYTES))
        n_rep = reps.shape[1]
        data["response_repeats"] = (("repeat_stimulus", "repeat", "channel"), reps)
        test_ids = imgs.loc[imgs["split"] == "test", "stimulus_id"].tolist()
        coords["repeat_stimulus_id"] = ("repeat_stimulus", text_coord(test_ids))
        coords["repeat"] = ("repeat", np.arange(n_rep, dtype=np.int64))
    n_repeats = np.where(imgs["split"] == "train", 1, n_rep)
    stim_coords, label_counts = stimulus_coords(imgs, n_repeats, memorability, concepts)
    coords.update(stim_coords)
    attrs = cube_attrs(
        "tvsd-normmua", m, "normalised MUA (z)", [mua_path, imgs_path], root, checksum
    )
    attrs["labels"] = json.dumps(label_counts)
    return validate(xr.Dataset(data, coords=coords, attrs=attrs), name=str(mua_path.name))
