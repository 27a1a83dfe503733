"""Reader of the THINGS-fMRI single-trial responses (the "betas_csv" release).

Per subject the release has three files in one folder:

``sub-0X_ResponseData.h5``
    A pandas fixed-format frame under the group ``ResponseData``: one row per
    voxel, a ``voxel_id`` column, then one float column per trial. Only the
    numeric blocks are read, with h5py; labels stored as pickled Python objects
    are never read (unpickling an untrusted file can execute code).
``sub-0X_VoxelMetadata.csv``
    One row per voxel: position, reliability, pRF fits and 0/1 ROI columns.
``sub-0X_StimulusMetadata.csv``
    One row per trial: ``trial_type`` (train/test), ``session``, ``stimulus``
    and, in the current release, ``concept``.

:func:`read_things_fmri` returns a lazy stimulus-level cube (see
:mod:`memxr.schema`): train images (shown once) give one row each, test images
are averaged over their repeats, and the repeats are kept in
``response_repeats``. The betas are read in blocks of whole voxel rows (a
sequential read of the file), one dask task per block.

Examples
--------
>>> from memxr.readers.things_fmri import FMRI_ROIS
>>> FMRI_ROIS["FFA"]
('lFFA', 'rFFA')
"""

from __future__ import annotations

import csv
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..errors import InputError
from ..provenance import base_attrs, file_records
from ..schema import text_coord, validate
from .formats.hdf5 import H5Array, open_h5, row_block, scratch
from .things_meta import label_stimuli

# ----------------------------------------------------------------------
# The two CSV tables of a THINGS-fMRI subject: voxel metadata and stimulus (trial) metadata.


STIMULUS_REQUIRED = ("trial_type", "session", "stimulus")
"""StimulusMetadata columns the reader needs (``concept`` is optional)."""

TRIAL_TYPES = ("train", "test")
_META_COLUMNS = frozenset({"voxel_id", "subject_id", "voxel_x", "voxel_y", "voxel_z"})
_META_PREFIXES = ("nc_", "splithalf_", "prf-")
_NOT_COORDS = frozenset({"voxel_id", "subject_id"})
_RESERVED = frozenset({"channel", "channel_id", "roi", "roi_mask", "stimulus", "repeat"})
CSV_ROWS = 50_000


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(path, "file", "does not exist")


def _is_meta_column(name: str) -> bool:
    return name in _META_COLUMNS or name.startswith(_META_PREFIXES)


def shrink_table(chunk: pd.DataFrame) -> pd.DataFrame:
    """Downcast integer ROI-like columns (0/1 flags) so that a 200-column table stays small."""
    for name in chunk.columns:
        if not _is_meta_column(name) and chunk[name].dtype.kind in "iu":
            chunk[name] = pd.to_numeric(chunk[name], downcast="integer")
    return chunk


def read_voxel_table_arrow(path: Path) -> pd.DataFrame | None:
    """The voxel table parsed by pyarrow (multi-threaded; a dependency of dask's dataframes),
    flag columns read as int8; None when pyarrow refuses the file or its columns are not
    plainly numbers and text, and pandas' parser then reads it.

    Gives the frame of the pandas path (names, values and dtypes, tested on the real-size
    tables): 0.9 s instead of 2.1 s for the 103 MB, 222-column file of a subject.
    """
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:  # pragma: no cover - installed with dask[dataframe]
        return None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            names = next(csv.reader(f))
        if len(set(names)) != len(names) or not all(names):
            return None  # duplicated or empty names: pandas' own rules apply
        flags = {n: pa.int8() for n in names if not _is_meta_column(n)}
        parse = pacsv.ParseOptions(newlines_in_values=True)
        read = pacsv.ReadOptions(block_size=16 << 20)
        try:
            table = pacsv.read_csv(
                path, read_options=read, parse_options=parse,
                convert_options=pacsv.ConvertOptions(column_types=flags),
            )  # fmt: skip
        except pa.ArrowInvalid:  # a column that is not int8 flags: infer every type
            table = pacsv.read_csv(path, read_options=read, parse_options=parse)
    except (pa.ArrowException, OSError, UnicodeDecodeError, StopIteration, csv.Error):
        return None
    plain = all(
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
        for t in table.schema.types
    )
    if table.column_names != names or not plain or table.num_rows == 0:
        return None  # text or empty columns: pandas decides their missing values
    return shrink_table(table.to_pandas())


def read_voxel_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``sub-0X_VoxelMetadata.csv``, keeping column names exactly.

    Names may contain spaces (``LO1 (prf)``) or embedded newlines
    (``glasser-p9-\\n46v``). Integer flag columns are downcast to save memory.

    Parameters
    ----------
    path : str or path
        The CSV file.

    Returns
    -------
    pandas.DataFrame
        One row per voxel, in file order.

    Raises
    ------
    InputError
        The file is missing or unreadable, or ``voxel_id`` is missing, not
        integer, or not unique.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "sub-01_VoxelMetadata.csv"
    >>> _ = p.write_text('voxel_id,voxel_x,V1,"glasser-p9-\\n46v"\\n7,3,1,0\\n9,4,0,1\\n')
    >>> df = read_voxel_metadata(p)
    >>> list(df.columns), df["voxel_id"].tolist()
    (['voxel_id', 'voxel_x', 'V1', 'glasser-p9-\\n46v'], [7, 9])
    """
    path = Path(path)
    _require_file(path)
    df = read_voxel_table_arrow(path)
    if df is None:
        try:
            with pd.read_csv(path, chunksize=CSV_ROWS) as reader:
                df = pd.concat([shrink_table(c) for c in reader], ignore_index=True)
        except (ValueError, UnicodeDecodeError) as e:  # ParserError, EmptyDataError
            raise InputError(
                path, "file", f"not a readable CSV table ({type(e).__name__})"
            ) from None
    if "voxel_id" not in df.columns:
        raise InputError(path, "voxel_id", "missing column")
    ids = df["voxel_id"]
    if ids.dtype.kind not in "iu":
        raise InputError(path, "voxel_id", f"expected integers, got dtype {ids.dtype}")
    if ids.duplicated().any():
        raise InputError(
            path, "voxel_id", f"duplicate voxel ids, e.g. {ids[ids.duplicated()].iat[0]}"
        )
    return df


def _roi_columns(df: pd.DataFrame) -> list[str]:
    """Columns that are not known metadata and hold only 0/1 values."""
    out = []
    for name in df.columns:
        vals = df[name].to_numpy()
        if not _is_meta_column(name) and vals.dtype.kind in "biuf" and np.isin(vals, (0, 1)).all():
            out.append(name)
    return out


def _channel_coords(df: pd.DataFrame) -> dict[str, tuple]:
    """``channel_id``, the ROI table and every other column as a channel coordinate."""
    rois = _roi_columns(df)
    coords: dict[str, tuple] = {
        "channel_id": ("channel", df["voxel_id"].to_numpy(dtype=np.int64)),
        "roi": ("roi", text_coord(rois)),
        "roi_mask": (("channel", "roi"), df[rois].to_numpy(dtype=bool).reshape(len(df), len(rois))),
    }
    for name in df.columns:
        if name in rois or name in _NOT_COORDS or name in _RESERVED:
            continue
        col = df[name]
        if col.dtype.kind in "biuf":
            coords[name] = ("channel", col.to_numpy())
        else:
            coords[name] = ("channel", text_coord(col.fillna("").astype(str)))
    return coords


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _integer_column(df: pd.DataFrame, name: str, path: Path, required: bool) -> pd.DataFrame:
    num = pd.to_numeric(df[name].str.strip(), errors="coerce")
    bad = num.isna().to_numpy() | (num.to_numpy() % 1 != 0)
    if bad.any():
        if not required:
            return df
        i = _first_bad(bad)
        raise InputError(path, name, f"non-integer value {df[name].iat[i]!r} at trial {i}")
    df[name] = num.to_numpy().astype(np.int64)
    return df


def read_stimulus_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``sub-0X_StimulusMetadata.csv`` (one row per trial) and check it.

    Parameters
    ----------
    path : str or path
        The CSV file.

    Returns
    -------
    pandas.DataFrame
        One row per trial in file order; ``trial_type`` is lower case
        ``train``/``test``, ``session`` is int64 (``run``, ``subject_id`` and
        ``trial_id`` too when they hold integers), text columns are str.

    Raises
    ------
    InputError
        The file is missing or unreadable, a required column (``trial_type``,
        ``session``, ``stimulus``) is missing, a trial type is unknown, a
        stimulus is empty or a session is not an integer.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "sub-01_StimulusMetadata.csv"
    >>> _ = p.write_text("trial_type,session,stimulus\\nTrain,1,dog_12s.jpg\\ntest,2,cat_01b.jpg\\n")
    >>> read_stimulus_metadata(p)[["trial_type", "session"]].to_dict("list")
    {'trial_type': ['train', 'test'], 'session': [1, 2]}
    """
    path = Path(path)
    _require_file(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(path, "file", f"not a readable CSV table ({type(e).__name__})") from None
    for name in STIMULUS_REQUIRED:
        if name not in df.columns:
            raise InputError(path, name, "missing required column")
    if len(df) == 0:
        raise InputError(path, "trial_type", "no trials")
    df["trial_type"] = df["trial_type"].str.strip().str.lower()
    bad = ~df["trial_type"].isin(TRIAL_TYPES).to_numpy()
    if bad.any():
        i = _first_bad(bad)
        raise InputError(
            path,
            "trial_type",
            f"unknown value {df['trial_type'].iat[i]!r} at trial {i} "
            f"(expected train or test; {int(bad.sum())} of {len(df)} trials affected)",
        )
    df["stimulus"] = df["stimulus"].str.strip()
    if (empty := (df["stimulus"] == "").to_numpy()).any():
        raise InputError(path, "stimulus", f"empty value at trial {_first_bad(empty)}")
    df = _integer_column(df, "session", path, required=True)
    for name in ("run", "subject_id", "trial_id"):
        if name in df.columns:
            df = _integer_column(df, name, path, required=False)
    return df


# ----------------------------------------------------------------------
# Where the betas and voxel ids are in a pandas fixed-format ``ResponseData.h5``, without pandas.


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


# ----------------------------------------------------------------------
# Trials to stimuli for THINGS-fMRI: the design and the lazy per-block averaging of the betas.


@dataclass(frozen=True)
class _Design:
    """How trials map to stimuli (all small index arrays)."""

    stimulus_ids: np.ndarray  # (n_stimulus,) str, order of first appearance
    is_test: np.ndarray  # (n_stimulus,) bool
    n_repeats: np.ndarray  # (n_stimulus,) int64
    source: np.ndarray  # (n_stimulus,) trial of each stimulus (first repeat for test ones)
    test_pos: np.ndarray  # (n_test,) stimulus position of each test stimulus
    test_trials: np.ndarray  # (n_test, R) trial indices, -1 = padding
    test_sessions: np.ndarray  # (n_test, R) sessions, -1 = padding
    concepts: pd.Series | None  # concept per stimulus from the file, if present


def _design(stim: pd.DataFrame, path: Path) -> _Design:
    """Group trials into stimuli; train stimuli are shown once, test stimuli any number of times."""
    codes, ids = pd.factorize(stim["stimulus"].to_numpy())
    n = len(ids)
    test = (stim["trial_type"] == "test").to_numpy()
    n_train = np.bincount(codes[~test], minlength=n)
    n_test = np.bincount(codes[test], minlength=n)
    both = np.flatnonzero((n_train > 0) & (n_test > 0))
    if both.size:
        raise InputError(
            path,
            "stimulus",
            f"{ids[both[0]]!r} is both a train and a test stimulus "
            f"({both.size} of {n} stimuli affected)",
        )
    dup = np.flatnonzero(n_train > 1)
    if dup.size:
        raise InputError(
            path,
            "stimulus",
            f"train stimulus {ids[dup[0]]!r} appears {n_train[dup[0]]} times; "
            f"train stimuli are shown once ({dup.size} of {n} stimuli affected)",
        )
    train_trials = np.flatnonzero(~test)
    test_trials_flat = np.flatnonzero(test)
    test_pos = np.flatnonzero(n_test > 0)
    row_of = np.full(n, -1, dtype=np.int64)
    row_of[test_pos] = np.arange(test_pos.size)
    rows = row_of[codes[test_trials_flat]]
    rank = pd.Series(rows).groupby(rows).cumcount().to_numpy()
    shape = (test_pos.size, int(n_test.max()) if test_pos.size else 0)
    trials = np.full(shape, -1, dtype=np.int64)
    trials[rows, rank] = test_trials_flat
    sessions = np.full(shape, -1, dtype=np.int64)
    sessions[rows, rank] = stim["session"].to_numpy()[test_trials_flat]
    source = np.empty(n, dtype=np.int64)
    source[codes[train_trials]] = train_trials
    if test_pos.size:
        source[test_pos] = trials[:, 0]
    concepts = None
    if "concept" in stim.columns:
        first = stim["concept"].groupby(codes).first()
        concepts = pd.Series(first.to_numpy(), index=pd.Index(ids, name="stimulus_id"))
    return _Design(
        stimulus_ids=np.asarray(ids, dtype=object),
        is_test=n_test > 0,
        n_repeats=(n_train + n_test).astype(np.int64),
        source=source,
        test_pos=test_pos,
        test_trials=trials,
        test_sessions=sessions,
        concepts=concepts,
    )


_TILE = 64


def _gather_rows(x: np.ndarray, columns: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = x[:, columns[i]]``, 64 columns at a time."""
    for j in range(0, columns.size, _TILE):
        out[j : j + _TILE] = x[:, columns[j : j + _TILE]].T


def _stimulus_block(
    x: np.ndarray,
    *,
    source: np.ndarray,
    test_trials: np.ndarray,
    test_pos: np.ndarray,
    repeats: np.ndarray | None = None,
) -> np.ndarray:
    """(voxel, trial) -> (n_stimulus, voxel): train columns, test repeats averaged.

    ``repeats`` (the :func:`_repeats_block` of ``x``, when already made) gives the test
    rows without gathering them again.
    """
    # Gather and transpose in the worker thread, so the store writes C-ordered
    # (stimulus, voxel) blocks without another copy. Tiles of 64 trials keep the
    # transposition cache-friendly, and need no temporary: np.take on x.T first copies
    # all of x.T to a C-ordered array (fresh memory each block: page faults and twice the
    # memory traffic; measured 1.4x slower in a real-size ingest).
    out = np.empty((source.size, x.shape[0]), dtype=x.dtype)
    _gather_rows(x, source, out)
    if test_pos.size:
        if repeats is None:
            repeats = _repeats_block(x, test_trials=test_trials)
        valid = test_trials >= 0
        sums = np.where(valid[:, :, None], repeats, 0.0).sum(axis=1, dtype=np.float64)
        out[test_pos] = sums / valid.sum(axis=1)[:, None]
    return out


def _repeats_block(x: np.ndarray, *, test_trials: np.ndarray) -> np.ndarray:
    """(voxel, trial) -> C-ordered (n_test, R, voxel), NaN where a stimulus has fewer repeats."""
    valid = test_trials >= 0
    flat = np.where(valid, test_trials, 0).ravel()
    out = np.empty((flat.size, x.shape[0]), dtype=x.dtype)
    _gather_rows(x, flat, out)
    out = out.reshape(*test_trials.shape, x.shape[0])
    out[~valid] = np.nan
    return out


def _block_outputs(
    h5: H5Array, voxel_axis: int, v0: int, v1: int, design: _Design
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read voxels ``v0:v1`` (every trial) once; their stimulus rows and test repeats.

    Stored voxel-major (the release), the rows are read into a buffer of the thread that
    is reused by its next block: only the two outputs are new memory.
    """
    if voxel_axis == 0:
        x = scratch("betas", (v1 - v0, h5.shape[1]), h5.dtype)
        h5.read_into(np.s_[v0:v1], x)
    else:
        x = h5[:, v0:v1].T
    repeats = _repeats_block(x, test_trials=design.test_trials) if design.test_pos.size else None
    response = _stimulus_block(
        x, source=design.source, test_trials=design.test_trials, test_pos=design.test_pos,
        repeats=repeats,
    )  # fmt: skip
    return response, repeats


def _lazy_responses(
    path: Path, layout: _Layout, design: _Design, chunk_bytes: int
) -> tuple[da.Array, da.Array]:
    """Stimulus-level (stimulus, voxel) and repeats (test stimulus, repeat, voxel) dask arrays.

    One task per block of whole voxels (aligned to any HDF5 chunking) reads it once and
    gives both; the two arrays take their blocks from it.
    """
    h5 = H5Array(path, layout.values)
    n_vox = h5.shape[layout.voxel_axis]
    n_trials = h5.shape[1 - layout.voxel_axis]
    multiple = layout.chunks[layout.voxel_axis] if layout.chunks else 1
    rows = min(n_vox, row_block(n_trials, layout.dtype.itemsize, chunk_bytes, multiple))
    starts = range(0, n_vox, rows)
    st = path.stat()
    token = tokenize(
        str(path.resolve()), layout.values, st.st_size, st.st_mtime_ns, rows,
        design.source, design.test_trials, design.test_pos,
    )  # fmt: skip
    read = "things-fmri-betas-" + token
    layers = {
        read: {
            (read, i): (_block_outputs, h5, layout.voxel_axis, v0, min(v0 + rows, n_vox), design)
            for i, v0 in enumerate(starts)
        }
    }
    voxels = tuple(min(rows, n_vox - v0) for v0 in starts)
    dtype = layout.dtype

    def part(kind: str, which: int, lead: tuple[int, ...]) -> da.Array:
        name = f"things-fmri-{kind}-{token}"
        zeros = (0,) * len(lead)
        layers[name] = {
            (name, *zeros, i): (operator.getitem, (read, i), which) for i in range(len(starts))
        }
        graph = HighLevelGraph(dict(layers), {read: set(), name: {read}})
        chunks = (*((n,) for n in lead), voxels)
        return da.Array(graph, name, chunks=chunks, meta=np.empty((0,) * (len(lead) + 1), dtype))

    response = part("response", 0, (design.stimulus_ids.size,))
    repeats = part("repeats", 1, design.test_trials.shape) if design.test_pos.size else None
    return response, repeats


__all__ = [
    "FMRI_ROIS",
    "read_stimulus_metadata",
    "read_things_fmri",
    "read_voxel_metadata",
]


FMRI_ROIS: dict[str, tuple[str, str]] = {
    name: (f"l{name}", f"r{name}")
    for name in ("FFA", "PPA", "LOC", "EBA", "OFA", "STS", "RSC", "TOS")
}
"""Bilateral ROIs: merged name -> (left, right) VoxelMetadata columns."""


def subject_label(subject: str | int) -> str:
    """Normalise a subject to ``sub-XX``.

    Examples
    --------
    >>> [subject_label(s) for s in ("sub-01", "01", "1", 1, "sub-3")]
    ['sub-01', 'sub-01', 'sub-01', 'sub-01', 'sub-03']
    """
    m = re.fullmatch(r"(?:sub-?)?(\d+)", str(subject).strip())
    if m is None:
        raise ValueError(f"subject {subject!r} is not like 'sub-01', '01' or 1")
    return f"sub-{int(m.group(1)):02d}"


def _labels(
    design: _Design, memorability: str | os.PathLike | None, concepts: str | os.PathLike | None
) -> pd.DataFrame:
    """concept, category and memorability per stimulus (from the THINGS tables when given)."""
    return label_stimuli(
        design.stimulus_ids,
        memorability=memorability,
        concepts=concepts,
        fallback_concepts=design.concepts,
    )


def _stimulus_coords(design: _Design, labels: pd.DataFrame) -> dict[str, tuple]:
    if len(labels) != design.stimulus_ids.size:
        raise ValueError(f"{len(labels)} labels for {design.stimulus_ids.size} stimuli")
    split = np.where(design.is_test, "test", "train")
    return {
        "stimulus_id": ("stimulus", text_coord(design.stimulus_ids)),
        "concept": ("stimulus", text_coord(labels["concept"].fillna(""))),
        "category": ("stimulus", text_coord(labels["category"].fillna(""))),
        "memorability": ("stimulus", labels["memorability"].to_numpy(dtype=np.float64)),
        "split": ("stimulus", text_coord(split)),
        "n_repeats": ("stimulus", design.n_repeats),
    }


def _repeat_coords(design: _Design) -> dict[str, tuple]:
    return {
        "repeat_stimulus_id": ("repeat_stimulus", text_coord(design.stimulus_ids[design.test_pos])),
        "repeat": ("repeat", np.arange(design.test_trials.shape[1], dtype=np.int64)),
        "repeat_session": (("repeat_stimulus", "repeat"), design.test_sessions),
    }


def read_things_fmri(
    input_dir: str | os.PathLike,
    subject: str | int,
    *,
    memorability: str | os.PathLike | None = None,
    concepts: str | os.PathLike | None = None,
    checksum: bool = True,
    chunk_bytes: int = 64 << 20,
) -> xr.Dataset:
    """Read one subject of the THINGS-fMRI "betas_csv" release as a lazy cube.

    Parameters
    ----------
    input_dir : str or path
        Folder with ``{subject}_ResponseData.h5``, ``{subject}_VoxelMetadata.csv``
        and ``{subject}_StimulusMetadata.csv``.
    subject : str or int
        ``"sub-01"``, ``"01"``, ``"1"`` or ``1``.
    memorability, concepts : str or path, optional
        THINGS memorability scores and concept table, passed to
        :func:`memxr.readers.things_meta.label_stimuli` to fill ``concept``,
        ``category`` and ``memorability``. Without them (and without a
        ``concept`` column in the stimulus table) these are ``""``/``""``/NaN.
    checksum : bool
        Record the SHA-256 of every input in ``attrs["inputs"]`` (reads each
        file once); with False only names and sizes are recorded.
    chunk_bytes : int
        Target size of one block of whole voxel rows (all trials).

    Returns
    -------
    xarray.Dataset
        ``response`` (stimulus, channel) in the file's float dtype, test
        stimuli averaged over their repeats; ``response_repeats``
        (repeat_stimulus, repeat, channel), NaN-padded, when there are test
        stimuli; stimulus coords ``stimulus_id, concept, category,
        memorability, split, n_repeats`` in order of first appearance;
        channel coords ``channel_id`` (voxel id), ``roi_mask`` (channel, roi)
        with every 0/1 VoxelMetadata column, and each other numeric column;
        ``repeat_stimulus_id``, ``repeat``, ``repeat_session`` (-1 = padding).
        Data variables are dask arrays: nothing of the betas is read here.
        ``attrs`` follow :mod:`memxr.schema`, plus ``n_matched``,
        ``n_missing_score`` and ``n_unknown`` from the stimulus labelling.

    Raises
    ------
    InputError
        Missing or malformed files, sizes or voxel ids that disagree between
        the three files, duplicated train stimuli, or data that could only be
        read by unpickling.

    Examples
    --------
    >>> import h5py, numpy as np, pandas as pd, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> pd.DataFrame({"voxel_id": [5, 6], "subject_id": 1, "V1": [1, 0]}).to_csv(
    ...     d / "sub-01_VoxelMetadata.csv", index=False)
    >>> pd.DataFrame({"trial_type": ["train", "test", "test"], "session": [1, 1, 2],
    ...               "stimulus": ["dog_12s.jpg", "cat_01b.jpg", "cat_01b.jpg"]}).to_csv(
    ...     d / "sub-01_StimulusMetadata.csv", index=False)
    >>> with h5py.File(d / "sub-01_ResponseData.h5", "w") as f:
    ...     f["ResponseData/block0_values"] = np.arange(6, dtype="f4").reshape(2, 3)
    ...     f["ResponseData/block1_values"] = np.array([[5], [6]])
    ...     f["ResponseData/block1_items"] = np.array([b"voxel_id"])
    >>> ds = read_things_fmri(d, 1, checksum=False)
    >>> ds["response"].values
    array([[0. , 3. ],
           [1.5, 4.5]], dtype=float32)
    >>> ds["stimulus_id"].values.tolist(), ds["n_repeats"].values.tolist()
    (['dog_12s.jpg', 'cat_01b.jpg'], [1, 2])
    >>> ds["roi_mask"].sel(roi="V1").values.tolist()
    [True, False]
    """
    root = Path(input_dir)
    try:
        subject = subject_label(subject)
    except ValueError as e:
        raise InputError(root, "subject", str(e)) from None
    h5_path = root / f"{subject}_ResponseData.h5"
    vox_path = root / f"{subject}_VoxelMetadata.csv"
    stim_path = root / f"{subject}_StimulusMetadata.csv"
    for p in (h5_path, vox_path, stim_path):
        _require_file(p)
    voxels = read_voxel_metadata(vox_path)
    stim = read_stimulus_metadata(stim_path)
    design = _design(stim, stim_path)
    names = (vox_path.name, stim_path.name)
    layout, id_field = _inspect_response(h5_path, len(voxels), len(stim), names)
    _check_ids(h5_path, id_field, layout.voxel_ids, voxels["voxel_id"].to_numpy(), vox_path.name)

    response, repeats = _lazy_responses(h5_path, layout, design, chunk_bytes)
    labels = _labels(design, memorability, concepts)
    coords = {**_stimulus_coords(design, labels), **_channel_coords(voxels)}
    data_vars = {"response": (("stimulus", "channel"), response)}
    if design.test_pos.size:
        data_vars["response_repeats"] = (("repeat_stimulus", "repeat", "channel"), repeats)
        coords.update(_repeat_coords(design))

    extra = [Path(p) for p in (memorability, concepts) if p is not None]
    records = file_records([h5_path, vox_path, stim_path, *extra], root=root, checksum=checksum)
    attrs = base_attrs("things-fmri", subject, "beta", records)
    attrs.update(
        n_matched=int(labels.attrs.get("matched", 0)),
        n_missing_score=int(labels.attrs.get("missing_score", 0)),
        n_unknown=int(labels.attrs.get("unknown", 0)),
        n_concept_mismatch=int(labels.attrs.get("concept_mismatch", 0)),
    )
    return validate(xr.Dataset(data_vars, coords=coords, attrs=attrs), name=h5_path.name)
