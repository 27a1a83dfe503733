"""The two CSV tables of a THINGS-fMRI subject: voxel metadata and stimulus (trial) metadata.

``sub-0X_VoxelMetadata.csv`` has one row per voxel (position, reliability, pRF fits, 0/1 ROI
columns), which become the channel coordinates of the cube (:func:`_channel_coords`);
``sub-0X_StimulusMetadata.csv`` has one row per trial (``trial_type``, ``session``,
``stimulus`` and, in the current release, ``concept``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..schema import text_coord

STIMULUS_REQUIRED = ("trial_type", "session", "stimulus")
"""StimulusMetadata columns the reader needs (``concept`` is optional)."""

TRIAL_TYPES = ("train", "test")
_META_COLUMNS = frozenset({"voxel_id", "subject_id", "voxel_x", "voxel_y", "voxel_z"})
_META_PREFIXES = ("nc_", "splithalf_", "prf-")
_NOT_COORDS = frozenset({"voxel_id", "subject_id"})
_RESERVED = frozenset({"channel", "channel_id", "roi", "roi_mask", "stimulus", "repeat"})
_CSV_ROWS = 50_000


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(path, "file", "does not exist")


def _is_meta_column(name: str) -> bool:
    return name in _META_COLUMNS or name.startswith(_META_PREFIXES)


def _shrink(chunk: pd.DataFrame) -> pd.DataFrame:
    """Downcast integer ROI-like columns (0/1 flags) so that a 200-column table stays small."""
    for name in chunk.columns:
        if not _is_meta_column(name) and chunk[name].dtype.kind in "iu":
            chunk[name] = pd.to_numeric(chunk[name], downcast="integer")
    return chunk


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
    try:
        with pd.read_csv(path, chunksize=_CSV_ROWS) as reader:
            df = pd.concat([_shrink(c) for c in reader], ignore_index=True)
    except (ValueError, UnicodeDecodeError) as e:  # ParserError, EmptyDataError
        raise InputError(path, "file", f"not a readable CSV table ({type(e).__name__})") from None
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
