"""ROI definitions, reductions of a cube over the channels of each ROI, TVSD normalisation.

ROIs overlap (a voxel can be in FFA and in IT), so a reduction is a product
of the response with a channel x ROI weight table built from ``roi_mask``,
not a groupby over a single label: one lazy matrix product covers every ROI
in one pass over the data, chunk by chunk.

ROI names
---------
- bilateral fMRI ROIs ``FFA, PPA, LOC, EBA, OFA, STS, RSC, TOS`` are the union of
  their left and right columns (``lFFA`` or ``rFFA``);
- every ``roi`` of the cube is valid as itself (``lFFA``, ``IT``, ``V1``,
  ``glasser-H``; TVSD ``V1``, ``V4``, ``IT``);
- user-defined unions: ``definitions={"IT_glasser": GLASSER_IT}`` (any
  columns or names above), in code or in a pipeline spec.

A reliability filter (``min_reliability``) keeps only the channels whose
reliability coordinate reaches a threshold: on the single-trial scale unless the
coordinate is named (then in its own units; see :data:`memxr.schema.RELIABILITY_MEASURES`).

Time-resolved TVSD cubes hold raw MUA; :func:`normalize_days` z-scores them per
(channel, recording day) against that day's test trials, as the dataset's
``normMUA`` (the normalisation the pipeline applies before ROI magnitudes).

Examples
--------
>>> from memxr.schema import example_cube
>>> cube = example_cube(n_stimulus=3, n_channel=4)
>>> roi_reduce(cube, ["A"]).dims
('stimulus', 'roi')
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as dask_array
import numpy as np
import xarray as xr

from .schema import AREA_WINDOWS, reliability_values, text_coord

__all__ = [
    "AREA_WINDOWS",
    "BILATERAL",
    "GLASSER_IT",
    "NORMALISATION",
    "UnknownROIError",
    "day_constants",
    "default_rois",
    "normalize_days",
    "roi_masks",
    "roi_reduce",
    "weight_blocks",
    "window_reduce",
    "zscore",
]

BILATERAL = ("FFA", "PPA", "LOC", "EBA", "OFA", "STS", "RSC", "TOS")
"""fMRI ROIs defined by merging a left (``l``) and a right (``r``) column."""

GLASSER_IT = tuple(
    f"glasser-{p}" for p in ("TE1p", "TE2p", "FFC", "VVC", "VMV2", "VMV3", "PHA1", "PHA2", "PHA3")
)
"""The glasser parcels whose union the THINGS-fMRI example code calls IT."""


_DEFAULT_EXTRA = ("V1", "V4", "IT")
RELIABILITY_COORDS = (
    "reliability",
    "nc_singletrial",
    "nc_testset",
    "splithalf_corrected",
    "splithalf_uncorrected",
)
"""Reliability channel coordinates a filter without a named coordinate looks for, in order."""


class UnknownROIError(ValueError):
    """An ROI name that the cube does not define."""


def _columns(cube: xr.Dataset | xr.DataArray) -> list[str]:
    if "roi_mask" not in cube.coords:
        raise UnknownROIError("the cube has no 'roi_mask' coordinate")
    return [str(r) for r in np.asarray(cube["roi"].values)]


def _definition(
    name: str, columns: Sequence[str], definitions: Mapping[str, Sequence[str]], _seen=()
) -> list[str]:
    if name in definitions:
        if name in _seen:
            raise UnknownROIError(f"ROI {name!r} is defined in terms of itself")
        out: list[str] = []
        for part in definitions[name]:
            out += _definition(part, columns, definitions, (*_seen, name))
        return out
    if name in columns:
        return [name]
    if name in BILATERAL:
        parts = [c for c in (f"l{name}", f"r{name}") if c in columns]
        if parts:
            return parts
    known = default_rois_from(columns) + list(definitions)
    raise UnknownROIError(
        f"unknown ROI {name!r}; this cube defines {', '.join(known) or 'none'}"
        f" (and any of its {len(columns)} roi columns)"
    )


def default_rois_from(columns: Sequence[str]) -> list[str]:
    """The ROIs analysed by default given the cube's ROI columns.

    Examples
    --------
    >>> default_rois_from(["V1", "lFFA", "rFFA", "IT", "glasser-H"])
    ['FFA', 'V1', 'IT']
    """
    cols = set(columns)
    out = [b for b in BILATERAL if f"l{b}" in cols or f"r{b}" in cols]
    return out + [c for c in _DEFAULT_EXTRA if c in cols]


def default_rois(cube: xr.Dataset | xr.DataArray) -> list[str]:
    """The ROIs analysed by default: bilateral merges present, then V1, V4, IT."""
    return default_rois_from(_columns(cube))


def _reliable(cube: xr.Dataset | xr.DataArray, min_reliability: float | None, coord: str | None):
    if min_reliability is None:
        return None
    if coord:  # a named coordinate: the threshold is in its own units
        if coord not in cube.coords:
            raise UnknownROIError(f"no reliability coordinate {coord!r} to filter on")
        values = reliability_values(cube, coord, "native")
    else:  # the first one found: on the single-trial scale, whichever it is
        names = [c for c in RELIABILITY_COORDS if c in cube.coords]
        if not names:
            raise UnknownROIError(
                f"no reliability coordinate ({', '.join(RELIABILITY_COORDS)}) to filter on"
            )
        values = reliability_values(cube, names[0], "single_trial")
    return np.nan_to_num(values, nan=-np.inf) >= min_reliability


def roi_masks(
    cube: xr.Dataset | xr.DataArray,
    rois: Sequence[str] | str | None = None,
    *,
    definitions: Mapping[str, Sequence[str]] | None = None,
    min_reliability: float | None = None,
    reliability: str | None = None,
) -> xr.DataArray:
    """Boolean (channel, roi) membership for the requested ROI names.

    Parameters
    ----------
    cube : xarray.Dataset or DataArray
        Anything carrying the ``roi_mask`` coordinate.
    rois : str or sequence of str, optional
        ROI names; default :func:`default_rois` plus the names in ``definitions``.
    definitions : mapping of str to sequence of str, optional
        Unions: each name is the union of the listed columns/ROIs.
    min_reliability : float, optional
        Keep only channels whose reliability is at least this value: a single-trial
        reliability (a fraction, whichever measure is found: see
        :func:`memxr.schema.reliability_values`) unless ``reliability`` names the
        coordinate, whose own units it then takes.
    reliability : str, optional
        The reliability coordinate (default: the first of :data:`RELIABILITY_COORDS`
        present, converted to the single-trial scale).

    Raises
    ------
    UnknownROIError
        For a name the cube does not define.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> c = xr.Dataset(coords={"roi": ["lFFA", "rFFA", "V1"],
    ...     "roi_mask": (("channel", "roi"), np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], bool)),
    ...     "reliability": ("channel", [0.9, 0.1, 0.5])})
    >>> roi_masks(c, ["FFA", "lFFA"]).sum("channel").values.tolist()
    [2, 1]
    >>> roi_masks(c, ["FFA"], min_reliability=0.3).sum("channel").values.tolist()
    [1]
    >>> roi_masks(c, ["ventral"], definitions={"ventral": ["FFA", "V1"]}).sum().item()
    3
    """
    definitions = dict(definitions or {})
    columns = _columns(cube)
    if rois is None:
        names = default_rois(cube) + [d for d in definitions if d not in columns]
    else:
        names = [rois] if isinstance(rois, str) else list(rois)
    if not names:
        raise UnknownROIError("no ROI requested and the cube defines no default ROI")
    membership = np.asarray(cube["roi_mask"].values, dtype=bool)  # small: channel x roi
    cols = {c: i for i, c in enumerate(columns)}
    out = np.zeros((membership.shape[0], len(names)), dtype=bool)
    for j, name in enumerate(names):
        for col in _definition(name, columns, definitions):
            out[:, j] |= membership[:, cols[col]]
    keep = _reliable(cube, min_reliability, reliability)
    if keep is not None:
        out &= keep[:, None]
    return xr.DataArray(out, dims=("channel", "roi"), coords={"roi": text_coord(names)})


def zscore(da: xr.DataArray, dim: str = "stimulus") -> xr.DataArray:
    """Z-score along ``dim`` (per channel and time bin), lazily; NaN ignored.

    Examples
    --------
    >>> import xarray as xr
    >>> zscore(xr.DataArray([[1.0], [3.0]], dims=("stimulus", "channel"))).values.ravel().tolist()
    [-1.0, 1.0]
    """
    mean = da.mean(dim, skipna=True)
    std = da.std(dim, skipna=True)
    out = (da - mean) / std.where(std > 0)
    out.attrs = {**da.attrs, "zscored_along": dim}
    return out


TILE_ROWS = 512
"""Stimuli per tile of the ROI kernel: the tile's float64 copy (a few MB) stays in cache."""


def block_sums(x: np.ndarray, w: np.ndarray, square: bool) -> np.ndarray:
    """One (stimulus, channel[, time]) block -> stacked ROI sums and valid counts.

    Returns (2, stimulus, 1, [time,] roi). The block is cast to float64 (and squared, in
    its own dtype, for ``l2``) one tile of stimuli at a time, right before its matrix
    product with the weights, in one BLAS thread (Dask's threads already use the cores):
    no block-sized float64 copy, no pass over the block to look for NaN. A NaN in the
    block shows in the sums, and only then are they recomputed with NaN left out.
    """
    from threadpoolctl import threadpool_limits

    xt = np.moveaxis(x, 1, -1)  # (stimulus, [time,] channel): a view
    total = np.empty((*xt.shape[:-1], w.shape[1]), dtype=w.dtype)
    with threadpool_limits(limits=1, user_api="blas"):
        for r in range(0, xt.shape[0], TILE_ROWS):
            tile = xt[r : r + TILE_ROWS]
            if square:
                tile = tile * tile
            np.matmul(tile.astype(w.dtype), w, out=total[r : r + TILE_ROWS])
        if np.isnan(total).any():  # rare: NaN in the block (or inf - inf)
            if square:
                xt = xt * xt
            nan = np.isnan(xt)
            total = np.where(nan, 0, xt) @ w
            count = (~nan).astype(w.dtype) @ w
        else:
            count = np.broadcast_to(w.sum(axis=0), total.shape)
    return np.expand_dims(np.stack([total, count]), 2)


SCATTER_BYTES = 2**20
"""Weight tables larger than this (a whole-brain fMRI cube has ~200,000 voxels: ~10 MB for
a few ROIs) are scattered to the workers of an active distributed client, not embedded in
the graph of the reduction."""


def weight_blocks(w: np.ndarray, channel_chunks: tuple) -> dask_array.Array:
    """The channel x ROI weight table as a dask array chunked like the channels.

    When the dask scheduler in effect is a distributed client and the table is larger than
    :data:`SCATTER_BYTES`, the table is scattered to the workers once and the graph refers
    to it by key (no "large graph" of embedded data); otherwise it is embedded.

    Examples
    --------
    >>> weight_blocks(np.ones((4, 2)), (2, 2)).chunks
    ((2, 2), (2,))
    """
    chunks = (channel_chunks, -1)
    if w.nbytes > SCATTER_BYTES:
        try:
            from dask.base import get_scheduler
            from distributed import get_client

            client = get_client()
        except (ImportError, ValueError):
            client = None
        if client is not None and getattr(get_scheduler(), "__self__", None) is client:
            future = client.scatter([w], hash=False)[0]
            return dask_array.from_delayed(future, w.shape, dtype=w.dtype).rechunk(chunks)
    return dask_array.from_array(w, chunks=chunks)


def _sums(data: xr.DataArray, weights: xr.DataArray, square: bool):
    """ROI sums and valid-channel counts of ``data`` in one pass over its chunks."""
    dims = [d for d in data.dims if d != "channel"]
    data = data.transpose("stimulus", "channel", ...)
    x = data.data
    # float64 sums whatever the data dtype: float32 accumulation would make the result
    # depend (at ~1e-8) on how the channels are chunked.
    w = weights.transpose("channel", "roi").values.astype(np.float64)
    if isinstance(x, dask_array.Array):
        wd = weight_blocks(w, x.chunks[1])
        ind = "sc" + "t" * (x.ndim - 2)
        parts = dask_array.blockwise(
            block_sums, "qsc" + ind[2:] + "r", x, ind, wd, "cr",
            new_axes={"q": 2}, adjust_chunks={"c": 1}, square=square,
            dtype=w.dtype, meta=np.empty((0,) * (x.ndim + 2), w.dtype),
        )  # fmt: skip
        both = parts.sum(axis=2)
    else:
        both = block_sums(np.asarray(x), w, square)[:, :, 0]
    coords = {k: v for k, v in data.coords.items() if "channel" not in v.dims}
    coords["roi"] = weights["roi"]
    out_dims = (*dims[:1], *dims[1:], "roi")
    total = xr.DataArray(both[0], dims=out_dims, coords=coords)
    count = xr.DataArray(both[1], dims=out_dims, coords=coords)
    return total, count


def roi_reduce(
    cube: xr.Dataset,
    rois: Sequence[str] | str | None = None,
    how: str = "mean",
    var: str = "response",
    *,
    definitions: Mapping[str, Sequence[str]] | None = None,
    zscore_channels: bool = False,
    min_reliability: float | None = None,
    reliability: str | None = None,
) -> xr.DataArray:
    """Reduce the response over the channels of each ROI, lazily.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube with dims (stimulus, channel[, time]) and its ``roi_mask``.
    rois : str or sequence of str, optional
        ROI names (see module docs); default :func:`default_rois`.
    how : {"mean", "sum", "l2"}
        ``mean`` over the ROI's channels (NaN channels ignored); ``sum``;
        ``l2`` the population response magnitude (Jaegle et al. 2019): the
        Euclidean norm of the ROI's response vector divided by the square root
        of its channel count, so ROIs of different sizes compare.
    var : str
        Data variable to reduce.
    definitions, min_reliability, reliability
        ROI unions and reliability filter, as in :func:`roi_masks`.
    zscore_channels : bool
        Z-score each channel (and time bin) across stimuli first.

    Returns
    -------
    xarray.DataArray
        Dims (stimulus, roi[, time]) with the stimulus coords kept and a
        ``n_channels`` coord per ROI; dask-backed when the cube is.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_stimulus=2, n_channel=2)
    >>> cube["response"][:] = [[1.0, 3.0], [2.0, np.nan]]
    >>> roi_reduce(cube, "A").values.ravel().tolist()
    [2.0, 2.0]
    >>> roi_reduce(cube, "A", how="sum").values.ravel().tolist()
    [4.0, 2.0]
    """
    if how not in ("mean", "sum", "l2"):
        raise ValueError(f"how must be 'mean', 'sum' or 'l2', got {how!r}")
    if not isinstance(cube, xr.Dataset):
        raise TypeError("roi_reduce needs the cube (a Dataset with its roi_mask), not a DataArray")
    da = cube[var]
    mask = roi_masks(
        cube,
        rois,
        definitions=definitions,
        min_reliability=min_reliability,
        reliability=reliability,
    )
    weights = mask.astype(da.dtype if da.dtype.kind == "f" else np.float64)
    # Drop the channel coords so xr.dot contracts cleanly; keep stimulus/time coords.
    data = da.drop_vars([c for c in da.coords if "channel" in da[c].dims and c != "channel"])
    if zscore_channels:
        data = zscore(data, "stimulus")
    total, count = _sums(data, weights, square=how == "l2")
    if how == "sum":
        out = total
    else:
        out = total / count.where(count > 0)
        if how == "l2":
            out = np.sqrt(out)
    first = [d for d in ("stimulus", "roi") if d in out.dims]
    out = out.transpose(*first, ...)
    out = out.assign_coords(n_channels=("roi", mask.sum("channel").values.astype(np.int64)))
    out.name = f"roi_{how}"
    out.attrs = {
        "long_name": f"ROI {how} of {var}",
        "units": "z" if zscore_channels else (da.attrs.get("units") or cube.attrs.get("units", "")),
        "how": how,
        "zscored": int(zscore_channels),
        "min_reliability": "" if min_reliability is None else float(min_reliability),
    }
    return out


def window_reduce(
    da: xr.DataArray,
    windows: Mapping[str, tuple[float, float]] | None = None,
    dim: str = "time",
) -> xr.DataArray:
    """Average a time-resolved ROI reduction in a time window per ROI.

    Parameters
    ----------
    da : xarray.DataArray
        Dims (stimulus, roi, time), e.g. from :func:`roi_reduce`.
    windows : mapping of ROI name to (start, stop) in ms, optional
        Start inclusive, stop exclusive; default :data:`AREA_WINDOWS`
        (V1 25-125, V4 50-150, IT 75-175 ms). An ROI without a window raises.

    Returns
    -------
    xarray.DataArray
        Dims (stimulus, roi), lazy when ``da`` is; the windows are recorded in
        the ``window_start``/``window_stop`` coords.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(2 * 1 * 4.0).reshape(2, 1, 4), dims=("stimulus", "roi", "time"),
    ...                   coords={"roi": ["IT"], "time": [0.0, 80.0, 120.0, 180.0]})
    >>> window_reduce(da).values.ravel().tolist()
    [1.5, 5.5]
    """
    windows = dict(AREA_WINDOWS if windows is None else windows)
    rois = [str(r) for r in np.asarray(da["roi"].values)]
    missing = [r for r in rois if r not in windows]
    if missing:
        raise UnknownROIError(
            f"no time window for ROI(s) {missing}; give windows={{roi: (start, stop)}}"
        )
    t = np.asarray(da[dim].values, dtype=float)
    w = np.zeros((len(rois), t.size))
    for i, r in enumerate(rois):
        start, stop = windows[r]
        inside = (t >= start) & (t < stop)
        if not inside.any():
            raise UnknownROIError(f"the window {start}-{stop} ms of {r!r} holds no time bin")
        w[i, inside] = 1.0 / inside.sum()
    weights = xr.DataArray(w, dims=("roi", dim), coords={"roi": da["roi"].values})
    out = xr.dot(da.drop_vars([c for c in da.coords if dim in da[c].dims]), weights, dim=dim)
    out = out.transpose("stimulus", "roi", ...)
    out = out.assign_coords(
        window_start=("roi", [windows[r][0] for r in rois]),
        window_stop=("roi", [windows[r][1] for r in rois]),
    )
    out.name = da.name
    out.attrs = {**da.attrs, "time_window": "per ROI, start inclusive, stop exclusive (ms)"}
    return out


# ----------------------------------------------------------------------
# TVSD trials: the per-day normalisation of the dataset's normMUA.

NORMALISATION = (
    "per (channel, recording day): minus the mean and divided by the sd (ddof 1) of the "
    "raw values of that day's test trials in the time bins of the channel's area window "
    "(start <= t < stop); test stimuli: the mean of their normalised repeats"
)
"""What :func:`normalize_days` does, as recorded in the ``normalisation`` attribute."""


def _channel_windows(cube: xr.Dataset, windows: Mapping[str, tuple[float, float]] | None):
    """(channel, time) bool: the time bins of each channel's area window."""
    windows = dict(AREA_WINDOWS if windows is None else {**AREA_WINDOWS, **windows})
    if "area" not in cube.coords:
        raise UnknownROIError("the cube has no channel coordinate 'area' (a TVSD cube has)")
    areas = [str(a) for a in np.asarray(cube["area"].values)]  # small: one per channel
    missing = sorted(set(areas) - set(windows))
    if missing:
        raise UnknownROIError(f"no time window for area(s) {missing}; give windows={{area: ...}}")
    t = np.asarray(cube["time"].values, dtype=float)
    mask = np.zeros((len(areas), t.size), dtype=bool)
    for area in set(areas):
        start, stop = windows[area]
        inside = (t >= start) & (t < stop)
        if not inside.any():
            raise UnknownROIError(f"the window {start}-{stop} ms of {area!r} holds no time bin")
        mask[np.asarray(areas) == area] = inside
    return xr.DataArray(mask, dims=("channel", "time"))


def _one_hot(days: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(..., len(values)) float indicators of ``days == value``."""
    return (np.asarray(days)[..., None] == values).astype(np.float64)


def _day_index(day: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Position of each recording day in ``days`` (-1: no day or a day without constants)."""
    day = np.asarray(day)
    pos = np.searchsorted(days, day)
    pos = np.clip(pos, 0, max(len(days) - 1, 0))
    ok = (day > 0) & (len(days) > 0) & (days[pos] == day if len(days) else False)
    return np.where(ok, pos, -1)


def _z_block(x: np.ndarray, day: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """One block z-scored: ``day`` (the block's leading axes) indexes the rows of the
    (days, channels) constants (-1: NaN); the channel axis follows the day axes; the
    result in float64 (two gathers of the constants, the rest in place)."""
    nan = np.full((1, mean.shape[1]), np.nan)
    mean = np.concatenate([mean, nan])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(sd > 0, 1.0 / sd, np.nan)
    inv = np.concatenate([inv, nan])
    idx = np.where(day >= 0, day, len(mean) - 1)
    extra = (1,) * (x.ndim - idx.ndim - 1)
    out = x.astype(np.float64)
    out -= mean[idx].reshape(*idx.shape, -1, *extra)
    out *= inv[idx].reshape(*idx.shape, -1, *extra)
    return out


def _take_rows(rows: np.ndarray, where: np.ndarray) -> np.ndarray:
    return rows[where]


def _z_scored(
    a: xr.DataArray, day: np.ndarray, mean: Any, sd: Any, lead: tuple[str, ...]
) -> xr.DataArray:
    """``a`` (dims ``lead``, channel, others) z-scored per (day, channel), block by block."""
    rest = [d for d in a.dims if d not in (*lead, "channel")]
    a = a.transpose(*lead, "channel", *rest)
    if not isinstance(a.data, dask_array.Array):
        out = _z_block(np.asarray(a.data), day, np.asarray(mean), np.asarray(sd))
        return a.copy(data=out)
    x = a.data
    nl = len(lead)
    idx = tuple(range(x.ndim))
    d = dask_array.from_array(day, chunks=x.chunks[:nl])
    n_days = mean.shape[0]
    mean = dask_array.asarray(mean).rechunk((n_days, x.chunks[nl]))
    sd = dask_array.asarray(sd).rechunk((n_days, x.chunks[nl]))
    k = x.ndim  # the days' index: contracted (one chunk, concatenated)
    out = dask_array.blockwise(
        _z_block, idx, x, idx, d, idx[:nl], mean, (k, nl), sd, (k, nl),
        dtype=np.float64, concatenate=True,
    )  # fmt: skip
    return a.copy(data=out)


def day_constants(
    cube: xr.Dataset, windows: Mapping[str, tuple[float, float]] | None = None
) -> xr.Dataset:
    """Mean and sd of each (channel, recording day) over that day's test trials, lazily.

    The constants of the dataset's ``norm_MUA.m``: over the raw values of the test
    trials recorded on the day, in every time bin of the channel's area window.

    Parameters
    ----------
    cube : xarray.Dataset
        A time-resolved TVSD cube (``tvsd-trials``) with ``response_repeats``, the
        ``repeat_day`` coordinate and the channel coordinate ``area``.
    windows : mapping of area to (start, stop) in ms, optional
        Overrides of :data:`AREA_WINDOWS` (start inclusive, stop exclusive).

    Returns
    -------
    xarray.Dataset
        ``mean`` and ``sd`` (ddof 1) with dims (recording_day, channel), float64,
        and ``n`` (values pooled); NaN where a day has fewer than two values.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> reps = np.arange(8.0).reshape(2, 2, 1, 2)  # 2 test images x 2 repeats, 2 time bins
    >>> cube = xr.Dataset({"response_repeats": (("repeat_stimulus", "repeat", "channel",
    ...     "time"), reps)}, coords={"time": [30.0, 80.0], "area": ("channel", ["V1"]),
    ...     "repeat_day": (("repeat_stimulus", "repeat"), [[1, 2], [1, 2]])})
    >>> c = day_constants(cube)
    >>> c["mean"].values.ravel().tolist(), c["n"].values.ravel().tolist()
    ([2.5, 4.5], [4.0, 4.0])
    >>> np.round(c["sd"].values.ravel(), 4).tolist()  # of 0, 1, 4, 5 and of 2, 3, 6, 7
    [2.3805, 2.3805]
    """
    if "response_repeats" not in cube.data_vars or "repeat_day" not in cube.coords:
        raise ValueError(
            "normalising per day needs 'response_repeats' and the 'repeat_day' coordinate "
            "(a tvsd-trials cube read by this memxr version)"
        )
    rep = cube["response_repeats"]
    rep = rep.drop_vars([c for c in rep.coords if c not in rep.dims or c == "time"])
    window = _channel_windows(cube, windows)
    rep_day = np.asarray(cube["repeat_day"].values)  # small: test images x repeats
    days = np.unique(rep_day[rep_day > 0])
    hot = xr.DataArray(
        _one_hot(rep_day, days), dims=("repeat_stimulus", "repeat", "recording_day")
    )
    x = rep.astype(np.float64)
    valid = (x.notnull() & window).astype(np.float64)
    x = x.fillna(0.0) * valid
    core = ["repeat_stimulus", "repeat", "time"]
    with warnings.catch_warnings():  # the one-hot days meet each time chunk
        warnings.simplefilter("ignore", dask_array.PerformanceWarning)
        n = xr.dot(valid, hot, dim=core)
        s1 = xr.dot(x, hot, dim=core)
        s2 = xr.dot(x * x, hot, dim=core)
    mean = s1 / n.where(n > 0)
    var = (s2 - n * mean**2) / (n - 1).where(n > 1)
    sd = np.sqrt(var.clip(min=0))
    out = xr.Dataset({"mean": mean, "sd": sd.where(sd > 0), "n": n})
    return out.transpose("recording_day", "channel").assign_coords(recording_day=days)


def normalize_days(
    cube: xr.Dataset,
    windows: Mapping[str, tuple[float, float]] | None = None,
    constants: xr.Dataset | None = None,
) -> xr.Dataset:
    """A time-resolved TVSD cube normalised per (channel, recording day), as ``normMUA``.

    The dataset's own normalisation (``norm_MUA.m``; ``DATA_FORMATS.md`` section 2):
    each channel is z-scored, day by day, against that day's test trials: minus the
    mean and divided by the standard deviation (ddof 1) of all raw values of the
    day's test trials in the time bins of the channel's area window
    (:func:`day_constants`). Every time bin of every trial recorded that day is
    normalised with the same two constants, so the window mean of a normalised
    train stimulus is its ``train_MUA`` value. The per-(channel, day) mean subsumes
    any baseline (pre-stimulus) subtraction, which the dataset does not do (its
    baseline, ``tb <= 0``, serves only its SNR); no trial-wise baseline is removed.
    One difference: memxr's windows include their start and exclude their stop,
    ``norm_MUA.m`` the reverse (one 1-ms bin at each end).

    Train stimuli (one trial) are normalised with the constants of their ``day``;
    test stimuli become the mean of their normalised repeats (``response_repeats``,
    normalised with each repeat's ``repeat_day``); a stimulus with neither is NaN.

    Parameters
    ----------
    cube : xarray.Dataset
        A ``tvsd-trials`` cube (dims stimulus, channel, time) with ``response_repeats``,
        ``day``, ``repeat_day`` and the channel coordinate ``area``.
    windows : mapping of area to (start, stop) in ms, optional
        Overrides of :data:`AREA_WINDOWS`.
    constants : xarray.Dataset, optional
        The :func:`day_constants` of ``cube`` (and ``windows``), computed beforehand. With
        lazy constants, one graph needs every chunk of ``response_repeats`` for the
        constants and again for the normalised repeats, so all of them stay in memory until
        the constants are done (3.7 GB of float32 for a real TVSD monkey, which a worker
        spills to disk); computing the constants first reads the repeats twice instead.

    Returns
    -------
    xarray.Dataset
        The cube with ``response`` and ``response_repeats`` normalised (same dtype,
        lazily: nothing is computed), ``units`` ``"z"`` and a ``normalisation``
        attribute.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_stimulus=3, n_channel=1).expand_dims(time=[80.0], axis=2)
    >>> cube["response"][:] = [[[5.0]], [[7.0]], [[0.0]]]
    >>> cube = cube.assign_coords(day=("stimulus", [1, 1, 0]), area=("channel", ["IT"]))
    >>> cube["response_repeats"] = (("repeat_stimulus", "repeat", "channel", "time"),
    ...                             [[[[4.0]], [[8.0]]]])
    >>> cube = cube.assign_coords(repeat_stimulus_id=("repeat_stimulus", ["thing_02s.jpg"]),
    ...                           repeat_day=(("repeat_stimulus", "repeat"), [[1, 1]]))
    >>> out = normalize_days(cube)
    >>> np.round(out.response.values.ravel(), 3).tolist()
    [-0.354, 0.354, 0.0]
    """
    const = day_constants(cube, windows) if constants is None else constants
    days = np.asarray(const["recording_day"].values)
    resp = cube["response"]
    stim_day = np.asarray(cube["day"].values) if "day" in cube.coords else None
    if stim_day is None:
        raise ValueError("normalising per day needs the stimulus coordinate 'day'")
    # The constants are small (days x channels): each block of the cube is normalised on
    # its own with them (one task per block, whatever the chunking).
    mean = const["mean"].transpose("recording_day", "channel").data
    sd = const["sd"].transpose("recording_day", "channel").data
    train = _z_scored(resp, _day_index(stim_day, days), mean, sd, ("stimulus",))
    rep = cube["response_repeats"]
    rep_day = _day_index(np.asarray(cube["repeat_day"].values), days)
    reps = _z_scored(rep, rep_day, mean, sd, ("repeat_stimulus", "repeat"))
    test_mean = reps.mean("repeat", skipna=True)
    ids = [str(s) for s in np.asarray(cube["stimulus_id"].values)]
    rep_ids = [str(s) for s in np.asarray(cube["repeat_stimulus_id"].values)]
    position = {s: i for i, s in enumerate(rep_ids)}
    is_test = np.array([stim_day[i] <= 0 and s in position for i, s in enumerate(ids)])
    known = (stim_day > 0) | is_test
    order = resp.dims
    train = train.transpose(*order)
    shape = (-1, *([1] * (len(order) - 1)))
    test = test_mean.rename(repeat_stimulus="stimulus").transpose(*order)
    where = np.array([position.get(s, 0) for s in ids])
    if isinstance(test.data, dask_array.Array):
        # the test rows (a hundred) in the blocks of the train data, placed by one gather
        # per block: no block of the whole cube is built and cut again
        x = train.data
        idx = tuple(range(x.ndim))
        test_rows = test.data.astype(x.dtype).rechunk((-1, *x.chunks[1:]))
        rows_at = dask_array.from_array(where, chunks=(x.chunks[0],))
        test_full = dask_array.blockwise(
            _take_rows, idx, test_rows, (x.ndim, *idx[1:]), rows_at, (0,),
            dtype=x.dtype, concatenate=True,
        )  # fmt: skip
        data = dask_array.where(
            dask_array.from_array(is_test.reshape(shape), chunks=(resp.chunks[0], *[1] * (len(order) - 1))),
            test_full, x,
        )  # fmt: skip
        data = dask_array.where(known.reshape(shape), data, np.nan)
    else:
        data = np.where(is_test.reshape(shape), np.asarray(test.data)[where], np.asarray(train.data))
        data = np.where(known.reshape(shape), data, np.nan)
    response = resp.copy(data=data.astype(resp.dtype))
    units = {"units": "z", "normalisation": NORMALISATION}
    response.attrs = {**resp.attrs, **units}
    repeats = rep.copy(data=reps.transpose(*rep.dims).data.astype(rep.dtype))
    repeats.attrs = {**rep.attrs, **units}
    out = cube.assign(response=response, response_repeats=repeats)
    out.attrs = {**cube.attrs, **units}
    return out
