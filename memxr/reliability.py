"""Reliability of the responses from their repeats, and the channels reliable enough to keep.

- :func:`split_half_reliability`: Spearman-Brown corrected split-half reliability of each
  channel from ``response_repeats`` (NaN padding and odd repeat counts handled per element);
- :func:`noise_ceiling`: the same for each ROI's mean response, and the ceiling
  ``sqrt(reliability)`` it puts on correlations with that response;
- :func:`select_channels`: keep the channels whose reliability (a channel coordinate, or the
  split-half reliability) reaches a threshold.

Everything stays lazy on the responses: one task per channel block, the repeat axes in memory.

Examples
--------
>>> from memxr.schema import example_cube
>>> cube = example_cube(n_channel=3).assign_coords(reliability=("channel", [0.2, 0.6, 0.9]))
>>> select_channels(cube, 0.5).channel_id.values.tolist()
[2, 3]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .reduce import roi_masks
from .stats.kernels import pearson

__all__ = ["noise_ceiling", "select_channels", "split_half_reliability"]


def _split_half_kernel(x: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Spearman-Brown split-half reliability of ``x`` (..., stimulus, repeat).

    ``perms`` (split, stimulus, repeat) holds one random order of the repeats
    per split and stimulus. In each split, the first half of the finite repeats
    (in that order) of every element forms half A, the rest half B (so NaN
    padding and odd counts are handled per element); each half is averaged, the
    halves are correlated across stimuli and the correlation ``r`` is stepped up
    to the full number of repeats by ``2 r / (1 + r)``. The mean over splits is
    returned with shape ``x.shape[:-2]``.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    lead = (1,) * (x.ndim - 2)
    total = np.zeros(x.shape[:-2])
    count = np.zeros(x.shape[:-2])
    for perm in perms:
        xp = np.take_along_axis(x, perm.reshape(lead + perm.shape), axis=-1)
        valid = np.isfinite(xp)
        rank = np.cumsum(valid, axis=-1, dtype=np.int32)
        half = rank[..., -1:] // 2
        in_a = valid & (rank <= half)
        in_b = valid & (rank > half)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_a = np.where(in_a, xp, 0).sum(-1, dtype=np.float64) / in_a.sum(-1)
            mean_b = np.where(in_b, xp, 0).sum(-1, dtype=np.float64) / in_b.sum(-1)
            r = pearson(mean_a, mean_b)
            sb = 2.0 * r / (1.0 + r)
        ok = np.isfinite(sb)
        total += np.where(ok, sb, 0.0)
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _split_half(repeats: xr.DataArray, n_splits: int, seed: int) -> xr.DataArray:
    """Split-half reliability of a (repeat_stimulus, repeat, ...) array, lazily."""
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1, got {n_splits}")
    core = ["repeat_stimulus", "repeat"]
    if repeats.chunks is not None:
        repeats = repeats.chunk({d: -1 for d in core})
    shape = (n_splits, repeats.sizes["repeat_stimulus"], repeats.sizes["repeat"])
    perms = np.argsort(np.random.default_rng(seed).random(shape), axis=-1)
    drop = [c for c in repeats.coords if set(repeats[c].dims) & set(core)]
    out = xr.apply_ufunc(
        _split_half_kernel,
        repeats.drop_vars(drop),
        kwargs={"perms": perms},
        input_core_dims=[core],
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    out.attrs = {
        "long_name": "split-half reliability (Spearman-Brown corrected)",
        "units": "1",
        "n_splits": int(n_splits),
        "seed": int(seed),
    }
    return out.rename("split_half_reliability")


def _repeats(cube: xr.Dataset) -> xr.DataArray:
    if "response_repeats" not in cube.data_vars:
        raise ValueError("the cube has no 'response_repeats' (repeated test trials)")
    return cube["response_repeats"]


def split_half_reliability(cube: xr.Dataset, n_splits: int = 20, seed: int = 0) -> xr.DataArray:
    """Split-half reliability of each channel from the repeated test trials.

    For each of ``n_splits`` random splits, the repeats of every test stimulus
    are divided into two halves (among its non-NaN repeats, so NaN padding is
    ignored), each half is averaged, and the two half-means are correlated
    (Pearson) across test stimuli; the correlation is Spearman-Brown corrected
    to the full number of repeats, ``2 r / (1 + r)``, and averaged over splits.
    With signal variance ``s2`` across stimuli and noise variance ``n2`` per
    repeat, the expected value is ``s2 / (s2 + n2 / R)`` for ``R`` repeats.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube with ``response_repeats`` (repeat_stimulus, repeat, channel[, time]).
    n_splits : int
        Number of random splits averaged.
    seed : int
        Seed of the random splits (the same for every channel).

    Returns
    -------
    xarray.DataArray
        Dims (channel[, time]); dask-backed (one task per channel block, the
        repeat axes in memory) when the repeats are. NaN where fewer than three
        stimuli have both halves.

    Examples
    --------
    >>> import numpy as np
    >>> from memxr.schema import example_cube
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.standard_normal((40, 1, 2))
    >>> reps = signal + 0.1 * rng.standard_normal((40, 6, 2))
    >>> cube = example_cube(n_stimulus=40, n_channel=2)
    >>> cube["response_repeats"] = (("repeat_stimulus", "repeat", "channel"), reps)
    >>> cube = cube.assign_coords(repeat_stimulus_id=("repeat_stimulus", cube.stimulus_id.values))
    >>> rel = split_half_reliability(cube, n_splits=5)
    >>> rel.dims, bool((rel > 0.98).all())
    (('channel',), True)
    """
    return _split_half(_repeats(cube), n_splits, seed)


def _roi_mean_repeats(cube: xr.Dataset, rois: Sequence[str] | str | None) -> xr.DataArray:
    """Mean of the repeats over each ROI's channels (NaN channels ignored), lazily."""
    rep = _repeats(cube)
    mask = roi_masks(cube, rois)
    weights = mask.astype(rep.dtype if rep.dtype.kind == "f" else np.float64)
    data = rep.drop_vars([c for c in rep.coords if "channel" in rep[c].dims and c != "channel"])
    total = xr.dot(data.fillna(0), weights, dim="channel")
    count = xr.dot(data.notnull().astype(weights.dtype), weights, dim="channel")
    out = total / count.where(count > 0)
    order = ("repeat_stimulus", "repeat", "roi") + tuple(
        d for d in out.dims if d not in ("repeat_stimulus", "repeat", "roi")
    )
    out = out.transpose(*order)
    return out.assign_coords(n_channels=("roi", mask.sum("channel").values.astype(np.int64)))


def noise_ceiling(
    cube: xr.Dataset,
    rois: Sequence[str] | str | None = None,
    n_splits: int = 20,
    seed: int = 0,
) -> xr.Dataset:
    """Reliability of each ROI's mean response, and the ceiling it puts on correlations.

    Each repeat is first averaged over the ROI's channels (NaN channels
    ignored, as :func:`memxr.reduce.roi_reduce` does), then the split-half
    procedure of :func:`split_half_reliability` is applied to that ROI mean.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube with ``response_repeats`` and ``roi_mask``.
    rois : str or sequence of str, optional
        ROI names (see :mod:`memxr.reduce`); default the cube's default ROIs.
    n_splits, seed : int
        As in :func:`split_half_reliability`.

    Returns
    -------
    xarray.Dataset
        Dims (roi[, time]) with ``n_channels`` per ROI and two variables:

        ``reliability``
            The Spearman-Brown corrected split-half reliability of the
            ROI-mean response (a fraction of variance, the ceiling on R^2).
        ``ceiling_r``
            ``sqrt(reliability)``, the highest Pearson correlation any
            predictor can reach with the ROI-mean response; NaN where the
            reliability is negative.

    Examples
    --------
    >>> import numpy as np
    >>> from memxr.schema import example_cube
    >>> rng = np.random.default_rng(0)
    >>> reps = rng.standard_normal((30, 1, 1)) + rng.standard_normal((30, 4, 3))
    >>> cube = example_cube(n_stimulus=30, n_channel=3)
    >>> cube["response_repeats"] = (("repeat_stimulus", "repeat", "channel"), reps)
    >>> cube = cube.assign_coords(repeat_stimulus_id=("repeat_stimulus", cube.stimulus_id.values))
    >>> nc = noise_ceiling(cube, ["A"], n_splits=5)
    >>> sorted(nc.data_vars), int(nc.n_channels[0])
    (['ceiling_r', 'reliability'], 3)
    >>> bool(np.allclose(nc.ceiling_r ** 2, nc.reliability))
    True
    """
    rel = _split_half(_roi_mean_repeats(cube, rois), n_splits, seed)
    rel.attrs["long_name"] = "split-half reliability of the ROI mean (Spearman-Brown corrected)"
    ceiling = np.sqrt(rel.where(rel >= 0))
    ceiling.attrs = {
        "long_name": "noise ceiling on the Pearson correlation (sqrt of reliability)",
        "units": "1",
    }
    out = xr.Dataset({"reliability": rel, "ceiling_r": ceiling})
    out.attrs = {
        "n_splits": int(n_splits),
        "seed": int(seed),
        "subject": cube.attrs.get("subject", ""),
    }
    return out


_AUTO_ORDER = ("reliability", "nc_testset", "split_half")


def _channel_score(
    cube: xr.Dataset, by: str, window: tuple[float, float] | None, n_splits: int, seed: int
) -> np.ndarray:
    """One reliability value per channel, from a channel coordinate or computed."""
    if by != "split_half":
        coord = cube.coords.get(by)
        if coord is None or coord.dims != ("channel",):
            raise ValueError(f"the cube has no channel coordinate {by!r} to select channels by")
        return np.asarray(coord.values, dtype=float)
    rep = _repeats(cube)
    if "time" in rep.dims:
        if window is not None:
            rep = rep.sel(time=slice(*window))
        rep = rep.mean("time")
    sub = xr.Dataset({"response_repeats": rep})
    return np.asarray(split_half_reliability(sub, n_splits, seed).values, dtype=float)


def select_channels(
    cube: xr.Dataset,
    threshold: float,
    by: str = "auto",
    *,
    window: tuple[float, float] | None = None,
    n_splits: int = 20,
    seed: int = 0,
) -> xr.Dataset:
    """Keep the channels whose reliability reaches ``threshold``.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube.
    threshold : float
        Minimum reliability kept (``>=``), in the units of the chosen measure:
        ``nc_testset`` is in percent (e.g. 20), TVSD ``reliability`` and
        ``split_half`` are correlations (e.g. 0.4). Channels with NaN are dropped.
    by : str
        ``"reliability"`` (TVSD channel coordinate), ``"nc_testset"`` (fMRI,
        percent), ``"split_half"`` (computed from ``response_repeats`` with
        :func:`split_half_reliability`; this reads the repeats, never the
        response), any other channel coordinate name (e.g.
        ``"splithalf_corrected"``), or ``"auto"``: the first of
        ``reliability``, ``nc_testset``, ``split_half`` that the cube has.
    window : (float, float), optional
        For ``split_half`` on a cube with ``time``: the repeats are averaged
        over ``window[0] <= time <= window[1]`` ms (default all times) before
        the reliability is computed.
    n_splits, seed : int
        For ``split_half``.

    Returns
    -------
    xarray.Dataset
        The cube restricted to the kept channels (response still lazy), with
        attributes ``channel_selection_by``, ``channel_selection_threshold``,
        ``n_channels_kept`` and ``n_channels_total``; for ``split_half`` the
        computed values are kept as the channel coordinate ``split_half``.

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_channel=4).assign_coords(
    ...     reliability=("channel", [0.1, 0.5, 0.7, float("nan")]))
    >>> out = select_channels(cube, 0.4)
    >>> out.channel_id.values.tolist(), out.attrs["channel_selection_by"]
    ([2, 3], 'reliability')
    """
    if by == "auto":
        have = [
            b
            for b in _AUTO_ORDER
            if (b in cube.coords and cube[b].dims == ("channel",))
            or (b == "split_half" and "response_repeats" in cube.data_vars)
        ]
        if not have:
            raise ValueError(
                "cannot select channels: the cube has no 'reliability' or 'nc_testset' channel"
                " coordinate and no 'response_repeats'"
            )
        by = have[0]
    score = _channel_score(cube, by, window, n_splits, seed)
    keep = np.flatnonzero(score >= threshold)
    out = cube
    if by == "split_half":
        out = out.assign_coords(split_half=("channel", score))
    out = out.isel(channel=keep)
    out.attrs = {
        **cube.attrs,
        "channel_selection_by": by,
        "channel_selection_threshold": float(threshold),
        "n_channels_kept": int(keep.size),
        "n_channels_total": int(score.size),
    }
    return out
