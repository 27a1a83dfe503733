"""Reader of TVSD per-trial MUA (``THINGS_MUA_trials.mat``), read once in whole time bins.

The real file holds ``ALLMUA``, un-normalised multi-unit activity per trial,
channel and 1 ms bin: 58 GB of float64 that h5py sees as (300, 1024, ~25k)
in C order, trials fastest. :func:`read_trials` never loads it: the cube's
arrays are dask graphs with one task per time bin (or per HDF5 chunk along
time): it reads the bin whole, every channel and trial (contiguous in the
file; whole chunks when the dataset is chunked), once, into a buffer its
thread reuses, and gives from it both the stimulus means and the test
repeats. Each train image has exactly one trial, so most of the cube is a
reordering: a trial-major copy of the bin with the channel mapping applied
and the cast done once, then a gather of its rows; only stimuli shown
several times (the test images) are averaged, in float64. The outputs are
cut into pieces of one bin and a block of channels, the chunks the store
writes (:func:`slab_plan`). A task holds one bin of input (1024 x trials
values, 200 MB for the real file) and one of output, whatever the number
of bins.

``ALLMAT`` has one row per trial, ``[trial_idx train_idx test_idx rep count
correct day]`` (6 columns accepted too, ``[trial_idx train_idx test_idx rep
count day]`` as in the dataset's ``norm_MUA.m``), with 1-based image indices into
``_logs/things_imgs.mat``. The recording day is the last column (what
``norm_MUA.m`` reads): it becomes the coordinates ``day`` (of each stimulus shown
on one trial: the train images) and ``repeat_day`` (of each test repeat), which
the per-day normalisation (:func:`memxr.reduce.normalize_days`) needs. ``ALLMUA`` is in
recording order: physical channel ``c`` (0-based) is recording position
``mapping[c] - 1`` of ``_logs/1024chns_mapping_*.mat``.

Examples
--------
>>> slab_plan((300, 1024, 25000), 4, n_stim=22348, chunk_bytes=64 << 20)
(1, 512)
>>> slab_plan((30, 1024, 56), 8, n_stim=40, chunk_bytes=2 << 20)
(1, 1024)
"""

from __future__ import annotations

import json
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import numpy as np
import scipy.io
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..errors import InputError
from ..schema import text_coord, validate
from .formats.hdf5 import H5Array, open_h5, scratch
from .tvsd import (
    IMGS_FILE,
    N_CHANNELS,
    NORMMUA_FILE,
    axes_of_size,
    channel_coords,
    check_unique_ids,
    cube_attrs,
    normalize_monkey,
    read_channel_stats,
    read_things_imgs,
    stimulus_coords,
)

# ----------------------------------------------------------------------
# TVSD trials: the channel mapping file and the assignment of ALLMAT trials to stimuli.


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


def trial_days(
    allmat: np.ndarray, trial_stim: np.ndarray, rep_index: np.ndarray, n_stim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Recording day (1-based; 0 = unknown) of every single-trial stimulus and test repeat.

    The day is ALLMAT's last column. A stimulus shown on several trials (a test image)
    or on none gets day 0 (its repeats carry theirs); padded repeats too.

    Examples
    --------
    >>> m = np.array([[1, 1, 0, 1, 1, 1, 2], [2, 0, 1, 1, 2, 1, 1], [3, 0, 1, 2, 3, 1, 2]])
    >>> stim = np.array([0, 1, 1])
    >>> day, rep_day = trial_days(m, stim, np.array([[1, 2]]), n_stim=2)
    >>> day.tolist(), rep_day.tolist()
    ([2, 0], [[1, 2]])
    """
    day = np.where(allmat[:, -1] > 0, allmat[:, -1], 0).astype(np.int64)
    counts = np.bincount(trial_stim, minlength=n_stim)
    single = counts[trial_stim] == 1
    stim_day = np.zeros(n_stim, dtype=np.int64)
    stim_day[trial_stim[single]] = day[single]
    rep_day = np.where(rep_index >= 0, day[np.maximum(rep_index, 0)], 0)
    return stim_day, rep_day.astype(np.int64)


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


__all__ = ["ALLMAT_COLUMNS", "read_mapping", "read_trials", "slab_plan", "trial_days"]

_TILE = 128  # trials per tile of the transposing copy (measured: 11.7 ms a bin, 19.4 at 256)


def channel_block(n_lead: int, n_channels: int, itemsize: int, chunk_bytes: int) -> int:
    """Channels per output piece of one time bin: all of them, halved until a piece of
    ``n_lead`` rows fits ``chunk_bytes`` (the same rule as the store's chunk plan for
    time-resolved cubes, so pieces are written as they are).

    Examples
    --------
    >>> channel_block(22348, 1024, 4, 64 << 20), channel_block(22348, 1024, 8, 64 << 20)
    (512, 256)
    >>> channel_block(5593, 1024, 4, 64 << 20)
    1024
    """
    c = max(1, n_channels)
    while c > 1 and n_lead * c * itemsize > chunk_bytes:
        c = -(-c // 2)
    return c


def slab_plan(
    shape: tuple[int, int, int],
    itemsize: int,
    n_stim: int,
    chunk_bytes: int,
    time_chunk: int = 1,
) -> tuple[int, int]:
    """Time bins read per task and channels per output piece, for an ALLMUA of (time,
    channel, trial) ``shape``.

    A task reads whole time bins (every channel and trial: contiguous in a C-ordered file,
    whole chunks of a file chunked along trials), one bin or one HDF5 chunk along time
    (``time_chunk``), so every byte of ``ALLMUA`` is read once. Its output is cut into
    pieces of one time bin and :func:`channel_block` channels (``itemsize`` bytes per
    value), the chunks of the store.

    Examples
    --------
    >>> slab_plan((300, 1024, 25000), 4, n_stim=22348, chunk_bytes=64 << 20)
    (1, 512)
    >>> slab_plan((300, 1024, 2000), 8, n_stim=1500, chunk_bytes=64 << 20, time_chunk=3)
    (3, 1024)
    """
    n_t, n_c, _ = shape
    t_block = max(1, min(int(time_chunk), n_t))
    return t_block, channel_block(n_stim, n_c, itemsize, chunk_bytes)


@dataclass(frozen=True, eq=False)
class _Design:
    """How the trials of a slab become stimulus means and test repeats (small arrays).

    A stimulus shown once (every train image) is its trial: its row is a reordered copy of
    the slab. Stimuli shown several times (the test images) are averaged in float64, trial
    by trial in file order (as a sparse product with weights ``1 / count`` adds them).
    """

    positions: np.ndarray  # (n_channels,) recording position of each physical channel
    single: np.ndarray  # (n_single,) stimuli shown once
    single_trial: np.ndarray  # (n_single,) their trial
    multi: np.ndarray  # (n_multi,) stimuli shown more than once
    multi_trials: np.ndarray  # (n_multi, m) their trials in file order, -1 padded
    weights: np.ndarray  # (n_multi,) 1 / count
    empty: np.ndarray  # (n_empty,) stimuli never shown: NaN
    rep_index: np.ndarray  # (n_test, R) trial of each test repeat, -1 padded
    n_stim: int
    mean_block: int  # channels per piece of the means
    rep_block: int  # channels per piece of the repeats
    dtype: np.dtype  # of the outputs

    @classmethod
    def build(cls, trial_stim, n_stim, rep_index, positions, dtype, chunk_bytes) -> _Design:
        counts = np.bincount(trial_stim, minlength=n_stim)
        order = np.argsort(trial_stim, kind="stable")  # trials grouped by stimulus, file order
        starts = np.cumsum(counts) - counts
        single = np.flatnonzero(counts == 1)
        multi = np.flatnonzero(counts > 1)
        width = int(counts.max(initial=0)) if multi.size else 0
        multi_trials = np.full((multi.size, width), -1, dtype=np.int64)
        for j, s in enumerate(multi):  # small: the test images
            multi_trials[j, : counts[s]] = order[starts[s] : starts[s] + counts[s]]
        n_c, itemsize = positions.size, np.dtype(dtype).itemsize
        lead = int(np.prod(rep_index.shape))
        return cls(
            positions=positions,
            single=single,
            single_trial=order[starts[single]],
            multi=multi,
            multi_trials=multi_trials,
            weights=1.0 / counts[multi],
            empty=np.flatnonzero(counts == 0),
            rep_index=rep_index,
            n_stim=int(n_stim),
            mean_block=channel_block(n_stim, n_c, itemsize, chunk_bytes),
            rep_block=channel_block(max(1, lead), n_c, itemsize, chunk_bytes),
            dtype=np.dtype(dtype),
        )

    def blocks(self, size: int) -> list[tuple[int, int]]:
        n = self.positions.size
        return [(c, min(c + size, n)) for c in range(0, n, size)]


def _read_band(arr: H5Array, axes: tuple[int, int, int], t0: int, t1: int) -> np.ndarray:
    """Time bins ``t0:t1`` of ALLMUA as (time, recording channel, trial), every channel and
    trial; read into a reused buffer when the file holds them in that order."""
    if axes == (0, 1, 2):
        buf = scratch("band", (t1 - t0, *arr.shape[1:]), arr.dtype)
        arr.read_into(np.s_[t0:t1], buf)
        return buf
    key: list[Any] = [slice(None)] * 3
    key[axes[0]] = slice(t0, t1)
    return np.transpose(arr[tuple(key)], axes)


def _bin_pieces(plane: np.ndarray, d: _Design) -> tuple[list, list]:
    """One time bin (recording channel, trial) -> the means (stimulus, channel, 1) and the
    repeats (repeat_stimulus, repeat, channel, 1), cut into channel pieces."""
    n_k = plane.shape[1]
    means, reps = [], []
    rep_flat = np.maximum(d.rep_index.ravel(), 0)
    rep_out = np.empty((*d.rep_index.shape, d.positions.size, 1), dtype=d.dtype)
    if d.multi.size:  # the trials of multi-trial stimuli, every channel, float64
        multi = np.take(plane, np.maximum(d.multi_trials, 0).ravel(), axis=1)
        multi = multi.astype(np.float64, copy=False).reshape(-1, *d.multi_trials.shape)
    single = _as_range(d.single)
    for c0, c1 in d.blocks(d.mean_block):
        pos = d.positions[c0:c1]
        # trial-major copy of the block's channels (mapped), cast once: every later gather
        # reads whole rows of it
        pt = scratch("transposed", (n_k, c1 - c0), d.dtype)
        for j in range(0, n_k, _TILE):
            pt[j : j + _TILE] = plane[pos, j : j + _TILE].T
        out = np.empty((d.n_stim, c1 - c0, 1), dtype=d.dtype)
        rows = out[:, :, 0]
        rows[single] = pt[d.single_trial]
        if d.multi.size:
            valid = d.multi_trials >= 0
            vals = multi[pos]  # (channel, stimulus, trial)
            acc = np.zeros((c1 - c0, d.multi.size))
            for r in range(d.multi_trials.shape[1]):  # file order, as the sparse product adds
                acc += np.where(valid[:, r], d.weights * vals[:, :, r], 0.0)
            rows[_as_range(d.multi)] = acc.T
        if d.empty.size:
            rows[d.empty] = np.nan
        means.append(out)
        if d.rep_index.size:
            rep_out[:, :, c0:c1, 0] = pt[rep_flat].reshape(*d.rep_index.shape, c1 - c0)
    if d.rep_index.size:
        rep_out[d.rep_index < 0] = np.nan
        reps = [rep_out[:, :, c0:c1] for c0, c1 in d.blocks(d.rep_block)]
        if len(reps) > 1:
            reps = [np.ascontiguousarray(r) for r in reps]
    return means, reps


def _as_range(index: np.ndarray) -> slice | np.ndarray:
    """A slice for consecutive indices (assigning to it copies once), else the indices."""
    if index.size and index[-1] - index[0] + 1 == index.size and np.all(np.diff(index) == 1):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _slab_pieces(
    arr: H5Array, axes: tuple[int, int, int], t0: int, t1: int, d: _Design
) -> dict[tuple, np.ndarray]:
    """Read time bins ``t0:t1`` once; their mean and repeat pieces by (kind, bin, block)."""
    band = _read_band(arr, axes, t0, t1)
    out = {}
    for i in range(t1 - t0):
        means, reps = _bin_pieces(band[i], d)
        out.update({("mean", i, b): m for b, m in enumerate(means)})
        out.update({("reps", i, b): r for b, r in enumerate(reps)})
    return out


def _stream(
    arr: H5Array, axes: tuple[int, int, int], t_block: int, d: _Design
) -> tuple[da.Array, da.Array | None]:
    """The lazy stimulus means and test repeats: one task per band of time bins reads it
    once and gives both, as pieces of one bin and a block of channels."""
    n_t = arr.shape[axes[0]]
    st = os.stat(arr.path)
    token = tokenize(
        arr.path, arr.name, st.st_size, st.st_mtime_ns, axes, t_block, d.positions,
        d.single_trial, d.multi_trials, d.rep_index, d.mean_block, d.rep_block, d.dtype.str,
    )  # fmt: skip
    read = "tvsd-allmua-" + token
    bands = [(t0, min(t0 + t_block, n_t)) for t0 in range(0, n_t, t_block)]
    layers = {read: {(read, i): (_slab_pieces, arr, axes, a, b, d) for i, (a, b) in enumerate(bands)}}
    times = (1,) * n_t

    def pieces(kind: str, lead: tuple[int, ...], size: int) -> da.Array:
        name = f"tvsd-{kind}-{token}"
        zeros = (0,) * len(lead)
        layers[name] = {
            (name, *zeros, b, t): (operator.getitem, (read, i), (kind, t - a, b))
            for i, (a, e) in enumerate(bands)
            for t in range(a, e)
            for b in range(len(d.blocks(size)))
        }
        graph = HighLevelGraph(dict(layers), {read: set(), name: {read}})
        chunks = (*((n,) for n in lead), tuple(c1 - c0 for c0, c1 in d.blocks(size)), times)
        return da.Array(graph, name, chunks=chunks, meta=np.empty((0,) * (len(lead) + 2), d.dtype))

    mean = pieces("mean", (d.n_stim,), d.mean_block)
    if d.rep_index.size == 0:
        return mean, None
    return mean, pieces("reps", d.rep_index.shape, d.rep_block)


def read_trials(
    monkey_dir: str | os.PathLike,
    monkey: str,
    *,
    memorability: str | os.PathLike | None = None,
    concepts: str | os.PathLike | None = None,
    checksum: bool = True,
    chunk_bytes: int = 64 << 20,
    dtype: Any = None,
) -> xr.Dataset:
    r"""Read one monkey's ``THINGS_MUA_trials.mat`` as a lazy (stimulus, channel, time) cube.

    Parameters
    ----------
    monkey_dir : str or path
        Folder with ``THINGS_MUA_trials.mat``, ``_logs/things_imgs.mat`` and one
        ``_logs/1024chns_mapping_*.mat`` (and optionally ``THINGS_normMUA.mat``,
        whose per-channel reliability, SNR and latency become coordinates).
    monkey : str
        ``"N"`` or ``"F"`` (``"monkeyN"`` etc. accepted); sets the areas.
    memorability, concepts
        THINGS tables, passed to :func:`memxr.readers.things_meta.label_stimuli`.
    checksum : bool
        Record the SHA-256 of the input files (reads each file once).
    chunk_bytes : int
        About how many bytes of ``ALLMUA`` (and of output) one task holds; a
        task's peak memory is a small multiple of it.
    dtype : numpy dtype, optional
        Dtype of the responses (e.g. ``float32`` to halve a store); default:
        that of ``ALLMUA`` (float64 for integer data).

    Returns
    -------
    xarray.Dataset
        A cube (``dataset="tvsd-trials"``): ``response`` (stimulus, channel,
        time) = mean over each stimulus's trials (NaN where ``n_repeats`` is
        0), ``response_repeats`` (repeat_stimulus, repeat, channel, time) with
        the trials of the test images (ordered by ``rep``, NaN padded),
        ``time`` = ``tb`` in ms, and the recording days ``day`` (stimulus; 0 for
        a stimulus not shown on exactly one trial) and ``repeat_day``
        (repeat_stimulus, repeat; 0 where padded). Both arrays share their read tasks.

    Raises
    ------
    InputError
        Naming the file and the field: no axis of size 1,024, ALLMUA not
        matching ``tb`` and ``ALLMAT``, bad image indices in ``ALLMAT``, a
        mapping that is not a permutation, undecodable image names.

    Examples
    --------
    A tiny folder written like MATLAB does (here by ``hdf5storage`` and scipy):
    one train image (trial 1) and one test image (trials 2 and 3), 4 time
    bins, the identity mapping, every response equal to the trial number:

    >>> import hdf5storage, os, scipy.io, tempfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "_logs"))
    >>> cell = lambda xs: np.array([[x] for x in xs], dtype=object)
    >>> imgs = lambda *xs: {"class": cell(x.split("\\")[0] for x in xs),
    ...                     "things_path": cell(xs), "local_path": cell(xs)}
    >>> hdf5storage.savemat(os.path.join(d, "_logs", "things_imgs.mat"),
    ...     {"train_imgs": imgs("dog\\dog_12s.jpg"), "test_imgs": imgs("cow\\cow_02s.jpg")},
    ...     format="7.3")
    >>> scipy.io.savemat(os.path.join(d, "_logs", "1024chns_mapping_20220105.mat"),
    ...                  {"mapping": np.arange(1.0, 1025.0)})
    >>> allmat = np.array([[1, 1, 0, 1, 1, 1, 1], [2, 0, 1, 1, 2, 1, 1], [3, 0, 1, 2, 3, 1, 1]])
    >>> allmua = np.ones((4, 1024, 1)) * np.arange(1.0, 4.0)  # time x channel x trial
    >>> hdf5storage.savemat(os.path.join(d, "THINGS_MUA_trials.mat"),
    ...     {"ALLMUA": allmua.T, "ALLMAT": allmat * 1.0, "tb": np.arange(4.0) * 10},
    ...     format="7.3")
    >>> ds = read_trials(d, "N", checksum=False, dtype="float32")
    >>> dict(ds.response.sizes), ds.n_repeats.values.tolist()
    ({'stimulus': 2, 'channel': 1024, 'time': 4}, [1, 2])
    >>> ds.response.isel(channel=0).values
    array([[1. , 1. , 1. , 1. ],
           [2.5, 2.5, 2.5, 2.5]], dtype=float32)
    >>> ds.response_repeats.isel(channel=0, time=0).values
    array([[2., 3.]], dtype=float32)
    """
    if int(chunk_bytes) <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    root = Path(monkey_dir)
    m = normalize_monkey(monkey, root)
    trials_path, imgs_path, map_path = root / TRIALS_FILE, root / IMGS_FILE, find_mapping(root)
    imgs = read_things_imgs(imgs_path)
    check_unique_ids(imgs, imgs_path)
    n_train = int((imgs["split"] == "train").sum())
    n_stim = len(imgs)
    positions = read_mapping(map_path)
    layout = read_layout(trials_path)
    trial_stim = trial_stimuli(layout.allmat, n_train, n_stim - n_train, trials_path)
    rep = layout.allmat[:, 3] if layout.allmat.shape[1] >= 7 else None
    rep_index = repeat_index(trial_stim, rep, n_train, n_stim - n_train)

    arr = H5Array(trials_path, "ALLMUA")
    out_dtype = np.dtype(dtype) if dtype is not None else arr.dtype
    if out_dtype.kind != "f":
        out_dtype = np.dtype(np.float64)
    shape = tuple(arr.shape[a] for a in layout.axes)
    t_chunk = arr.chunks[layout.axes[0]] if arr.chunks else 1
    t_block, _ = slab_plan(shape, out_dtype.itemsize, n_stim, int(chunk_bytes), t_chunk)
    design = _Design.build(trial_stim, n_stim, rep_index, positions, out_dtype, int(chunk_bytes))
    mean, reps = _stream(arr, layout.axes, t_block, design)

    files = [trials_path, imgs_path, map_path]
    stats = {}
    if (root / NORMMUA_FILE).exists():
        stats = read_channel_stats(root / NORMMUA_FILE)
        files.append(root / NORMMUA_FILE)
    data = {"response": (("stimulus", "channel", "time"), mean)}
    coords = channel_coords(m, stats)
    coords["time"] = ("time", layout.tb)
    if reps is not None:
        test_ids = imgs.loc[imgs["split"] == "test", "stimulus_id"].tolist()
        data["response_repeats"] = (("repeat_stimulus", "repeat", "channel", "time"), reps)
        coords["repeat_stimulus_id"] = ("repeat_stimulus", text_coord(test_ids))
        coords["repeat"] = ("repeat", np.arange(rep_index.shape[1], dtype=np.int64))
    n_repeats = np.bincount(trial_stim, minlength=n_stim)
    stim_coords, label_counts = stimulus_coords(imgs, n_repeats, memorability, concepts)
    coords.update(stim_coords)
    stim_day, rep_day = trial_days(layout.allmat, trial_stim, rep_index, n_stim)
    coords["day"] = ("stimulus", stim_day)
    if reps is not None:
        coords["repeat_day"] = (("repeat_stimulus", "repeat"), rep_day)
    attrs = cube_attrs("tvsd-trials", m, "MUA (not normalised)", files, root, checksum)
    attrs["labels"] = json.dumps(label_counts)
    attrs["chunk_bytes"] = int(chunk_bytes)
    return validate(xr.Dataset(data, coords=coords, attrs=attrs), name=trials_path.name)
