"""TVSD trials: the channel mapping file and the assignment of ALLMAT trials to stimuli.

``ALLMAT`` has one row per trial, ``[trial_idx train_idx test_idx rep count correct day]``
(1-based; 6 columns in some versions), in either orientation; ``mapping`` gives the
1-based recording position of each physical channel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from ..errors import InputError
from ._h5 import open_h5
from .tvsd import (
    N_CHANNELS,
    axes_of_size,
)

__all__ = [
    "ALLMAT_COLUMNS",
    "TrialLayout",
    "find_mapping",
    "read_layout",
    "read_mapping",
    "repeat_index",
    "trial_stimuli",
]


TRIALS_FILE = "THINGS_MUA_trials.mat"
MAPPING_GLOB = "1024chns_mapping_*.mat"
ALLMAT_COLUMNS = ("trial_idx", "train_idx", "test_idx", "rep", "count", "correct", "day")
"""Columns of ``ALLMAT`` (a 6-column variant shares the first three)."""


def _load_mapping(path: str | os.PathLike) -> np.ndarray:
    """The raw ``mapping`` variable of a MATLAB v5 file (or of a v7.3 one, via h5py)."""
    try:
        mat = scipy.io.loadmat(os.fspath(path), variable_names=["mapping"])
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        with open_h5(path) as f:
            if "mapping" not in f or not isinstance(f["mapping"], h5py.Dataset):
                raise InputError(path, "mapping", "no such variable") from None
            return np.asarray(f["mapping"][()])  # small
    except (OSError, ValueError, TypeError) as e:
        raise InputError(
            path, "file", f"not a readable MATLAB file ({e.__class__.__name__})"
        ) from None
    if "mapping" not in mat:
        raise InputError(path, "mapping", "no such variable")
    return np.asarray(mat["mapping"])


def read_mapping(path: str | os.PathLike) -> np.ndarray:
    """0-based recording position of each physical channel, from a ``mapping`` file.

    The file is MATLAB v5 (read with :func:`scipy.io.loadmat`); a v7.3 (HDF5)
    file is read with h5py.

    Raises
    ------
    InputError
        If the file is unreadable, has no ``mapping``, or ``mapping`` is not a
        permutation of 1..1024.

    Examples
    --------
    >>> import os, tempfile, scipy.io
    >>> p = os.path.join(tempfile.mkdtemp(), "1024chns_mapping_x.mat")
    >>> scipy.io.savemat(p, {"mapping": np.arange(1024, 0, -1.0)})
    >>> read_mapping(p)[:3].tolist()
    [1023, 1022, 1021]
    >>> scipy.io.savemat(p, {"mapping": np.ones(1024)})
    >>> read_mapping(p)
    Traceback (most recent call last):
    ...
    memxr.errors.InputError: 1024chns_mapping_x.mat: mapping: mapping is not a permutation of 1..1024 (...)
    """
    values = _load_mapping(path).ravel()
    ok = values.size == N_CHANNELS and values.dtype.kind in "fiu"
    if ok:
        ints = np.rint(values.astype(np.float64))
        ok = bool(np.all(ints == values)) and np.array_equal(
            np.sort(ints), np.arange(1, N_CHANNELS + 1)
        )
    if not ok:
        detail = f"{values.size} values" if values.size != N_CHANNELS else "duplicates or gaps"
        raise InputError(path, "mapping", f"mapping is not a permutation of 1..1024 ({detail})")
    return ints.astype(np.int64) - 1


def find_mapping(root: Path) -> Path:
    """The single ``_logs/1024chns_mapping_*.mat`` of a monkey folder."""
    found = sorted((root / "_logs").glob(MAPPING_GLOB))
    if len(found) != 1:
        names = [p.name for p in found]
        raise InputError(
            root / "_logs",
            MAPPING_GLOB,
            f"expected exactly one channel mapping file, found {names}",
        )
    return found[0]


# --------------------------------------------------------------------- trial table


@dataclass(frozen=True)
class TrialLayout:
    """Where things are in ``ALLMUA`` and what each trial showed."""

    axes: tuple[int, int, int]  # (time, channel, trial) axes of ALLMUA as h5py sees it
    tb: np.ndarray  # time of each bin, ms
    allmat: np.ndarray  # (n_trials, 6 or 7) int64


def _allmat_rows(allmat: np.ndarray, n_trials: int) -> np.ndarray | None:
    """ALLMAT as (n_trials, n_cols), or None if it has no such orientation."""
    if allmat.ndim != 2:
        return None
    if allmat.shape[1] == n_trials and allmat.shape[0] in (6, 7):
        return allmat.T
    if allmat.shape[0] == n_trials and allmat.shape[1] in (6, 7):
        return allmat
    return None


def read_layout(path: Path) -> TrialLayout:
    """Identify the axes of ``ALLMUA`` by size and read ``tb`` and ``ALLMAT`` (small)."""
    with open_h5(path) as f:
        for key in ("ALLMUA", "ALLMAT", "tb"):
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise InputError(path, key, "no such dataset")
        shape = tuple(f["ALLMUA"].shape)
        tb = np.asarray(f["tb"][()], dtype=np.float64).ravel()  # small
        allmat = np.asarray(f["ALLMAT"][()])  # small
    if len(shape) != 3:
        raise InputError(path, "ALLMUA", f"expected 3 dimensions, got shape {shape}")
    ch = axes_of_size(shape, N_CHANNELS)
    if not ch:
        raise InputError(path, "ALLMUA", f"no axis of size {N_CHANNELS} (shape {shape})")
    c = 1 if 1 in ch else ch[0]
    r0, r1 = (a for a in range(3) if a != c)
    for t, k in ((r0, r1), (r1, r0)):
        rows = _allmat_rows(allmat, shape[k])
        if shape[t] == tb.size and rows is not None:
            return TrialLayout((t, c, k), tb, _integers(rows, path))
    raise InputError(
        path,
        "ALLMUA",
        f"shape {shape} does not match len(tb)={tb.size}, {N_CHANNELS} channels "
        f"and the trials of ALLMAT (shape {allmat.shape}, 6 or 7 columns)",
    )


def _integers(rows: np.ndarray, path: Path) -> np.ndarray:
    if rows.dtype.kind not in "fiu":
        raise InputError(path, "ALLMAT", f"is not numeric (dtype {rows.dtype})")
    values = rows[:, :3].astype(np.float64)
    if not np.all(np.isfinite(values)) or np.any(values != np.rint(values)):
        raise InputError(path, "ALLMAT", "trial and image indices must be integers")
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(rows.astype(np.float64), nan=-1).astype(np.int64)


def trial_stimuli(allmat: np.ndarray, n_train: int, n_test: int, path: Path) -> np.ndarray:
    """0-based stimulus (train images, then test images) of each trial.

    Examples
    --------
    >>> m = np.array([[1, 2, 0, 1, 1, 1, 1], [2, 0, 1, 1, 1, 1, 1], [3, 0, 1, 2, 1, 1, 1]])
    >>> trial_stimuli(m, n_train=3, n_test=1, path=Path("x.mat")).tolist()
    [1, 3, 3]
    """
    train, test = allmat[:, 1], allmat[:, 2]
    checks = (
        ((train > 0) == (test > 0)) | (train < 0) | (test < 0),
        train > n_train,
        test > n_test,
    )
    what = (
        "exactly one of train_idx and test_idx must be non-zero",
        f"train_idx beyond the {n_train} train images of things_imgs.mat",
        f"test_idx beyond the {n_test} test images of things_imgs.mat",
    )
    for bad, msg in zip(checks, what, strict=True):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                path, "ALLMAT", f"trial {i + 1} (train_idx {train[i]}, test_idx {test[i]}): {msg}"
            )
    return np.where(train > 0, train - 1, n_train + test - 1).astype(np.int64)


def repeat_index(trial_stim: np.ndarray, rep: np.ndarray | None, first: int, n: int) -> np.ndarray:
    """(n, max_repeats) trial positions of stimuli ``first..first+n-1``, -1 where padded.

    Repeats are ordered by ``rep`` when given, else by trial order.

    Examples
    --------
    >>> repeat_index(np.array([0, 2, 1, 2, 1]), np.array([1, 2, 2, 1, 1]), first=1, n=2).tolist()
    [[4, 2], [3, 1]]
    """
    trials = np.flatnonzero((trial_stim >= first) & (trial_stim < first + n))
    stim = trial_stim[trials] - first
    keys = (trials,) if rep is None else (trials, rep[trials])
    order = np.lexsort((*keys, stim))
    trials, stim = trials[order], stim[order]
    counts = np.bincount(stim, minlength=n)
    rank = np.arange(trials.size) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((n, int(counts.max(initial=0))), -1, dtype=np.int64)
    out[stim, rank] = trials
    return out


# --------------------------------------------------------------------- streamed slabs
