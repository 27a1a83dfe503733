"""Reliability of the responses from their repeats, and the channels reliable enough to keep.

- :func:`split_half_reliability`: split-half reliability of each channel from
  ``response_repeats`` (NaN padding, odd and uneven repeat counts handled per element),
  on the scale of any number of trials;
- :func:`noise_ceiling`: the same for each ROI's mean response, stepped to the trials
  behind the analysed responses, and the ceiling it puts on r(neural, memorability)
  together with the reliability of the memorability scores;
- :func:`select_channels`: keep the channels whose reliability (a channel coordinate, or
  the split-half reliability) reaches a threshold, on one named scale.

Scales
------
A reliability is the correlation between two independent measurements of a response, a
fraction of its variance. The mean of ``k`` trials is more reliable than one trial
(Spearman-Brown, :func:`memxr.schema.spearman_brown`): ``rho_k = k rho_1 / (1 + (k - 1)
rho_1)``. The train images are each seen once, so correlations and models over them use
single trials (``k = 1``); the test images are means of their R repeats (R = 12 in
THINGS-fMRI, 30 in TVSD). A ceiling is drawn over the responses analysed, so the
reliability must be on their scale: ``n_trials=1`` for train images, ``"repeats"`` for the
test-set means. Every measure has one documented scale
(:data:`memxr.schema.RELIABILITY_MEASURES`).

The ceiling on r(neural, memorability) is ``sqrt(rel_neural * rel_memorability)``: the
memorability scores are themselves an average over raters, only moderately reliable
(:data:`MEMORABILITY_RELIABILITY`).

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
from .schema import AREA_WINDOWS, reliability_values, spearman_brown
from .stats.kernels import pearson

__all__ = [
    "MEMORABILITY_RELIABILITY",
    "noise_ceiling",
    "select_channels",
    "split_half_reliability",
]

MEMORABILITY_RELIABILITY = 0.45
"""Default reliability of the THINGS memorability scores (a fraction of variance).

Kramer, Hebart, Baker & Bainbridge (2023, Science Advances) estimate how consistent the
corrected-recognition scores of the THINGS images are across raters by splitting the
raters into halves and correlating the two halves' scores across images; this split-half
consistency is about 0.45 (the "split-half ceiling" quoted in ``DATA_FORMATS.md``, against
which image-only models reaching Spearman 0.22-0.30 are compared). A correlation between
two independent measurements of the same quantity is a reliability, so 0.45 is taken as
the reliability of the scores, and the ceiling it alone puts on any correlation with
memorability is ``sqrt(0.45) = 0.67``, not 0.45.

Why this and not another value: 0.45 is the only published estimate for these scores.
If it is the consistency of half the raters (not stepped up to all of them), the
scores analysed here, which average all raters, are more reliable:
``2 * 0.45 / 1.45 = 0.62``; the ceiling would then be higher by ``sqrt(0.62 / 0.45)``,
about 1.17 times, and the fractions of ceiling lower. Pass
``memorability_reliability`` (argument, or the spec key
``analyses.<analysis>.memorability_reliability``) to use another estimate; 1.0 gives the
ceiling of the neural responses alone.
"""


def _check_memorability_reliability(value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"memorability_reliability must be a reliability in (0, 1], got {value!r}"
        )
    return value


def _single_from_halves(r: np.ndarray, ka: np.ndarray, kb: np.ndarray) -> np.ndarray:
    """Single-trial reliability from the correlation of two means of ``ka`` and ``kb`` trials.

    With signal variance ``s`` and trial noise ``n`` (``lam = n / s``), two half means of
    ``ka`` and ``kb`` trials correlate as ``r = 1 / sqrt((1 + lam / ka) (1 + lam / kb))``;
    solved for ``lam``, ``rho_1 = 1 / (1 + lam)``. For ``ka == kb == k`` this is
    Spearman-Brown from ``k`` trials to one; with uneven halves (an odd number of repeats)
    it is exact where ``2 r / (1 + r)`` is not. Non-positive ``r`` (no measurable signal)
    continue the formula with ``k = sqrt(ka kb)``.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        a = 1.0 / (ka * kb)
        b = 1.0 / ka + 1.0 / kb
        c = 1.0 - 1.0 / np.where(r > 0, r, 1.0) ** 2
        lam = (-b + np.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)
        positive = 1.0 / (1.0 + lam)
        k = np.sqrt(ka * kb)
        other = r / (k - (k - 1.0) * r)
    return np.where(r > 0, positive, other)


def _split_half_kernel(x: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Single-trial split-half reliability of ``x`` (..., stimulus, repeat) and its repeats.

    ``perms`` (split, stimulus, repeat) holds one random order of the repeats per split
    and stimulus. In each split, the first half (rounded down) of the finite repeats (in
    that order) of every element forms half A, the rest half B (so NaN padding and odd
    counts are handled per element); each half is averaged, the half means are
    correlated across stimuli (those with both halves), and the correlation is turned
    into a single-trial reliability by :func:`_single_from_halves` with the harmonic mean
    half sizes (the noise of a mean of ``k`` trials is ``n / k``, so it averages as
    ``1 / k``). Returns shape ``x.shape[:-2] + (2,)``: the mean over splits of the
    single-trial reliability, and the harmonic mean number of repeats of the stimuli
    with at least two (the ``R`` of their per-stimulus means).
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    lead = (1,) * (x.ndim - 2)
    total = np.zeros(x.shape[:-2])
    count = np.zeros(x.shape[:-2])
    n_valid = np.isfinite(x).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        both = n_valid >= 2
        inv = np.where(both, 1.0 / np.maximum(n_valid, 1), 0.0)
        n_all = both.sum(-1) / inv.sum(-1)
    for perm in perms:
        xp = np.take_along_axis(x, perm.reshape(lead + perm.shape), axis=-1)
        valid = np.isfinite(xp)
        rank = np.cumsum(valid, axis=-1, dtype=np.int32)
        half = rank[..., -1:] // 2
        in_a = valid & (rank <= half)
        in_b = valid & (rank > half)
        ka, kb = in_a.sum(-1), in_b.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_a = np.where(in_a, xp, 0).sum(-1, dtype=np.float64) / ka
            mean_b = np.where(in_b, xp, 0).sum(-1, dtype=np.float64) / kb
            r = pearson(mean_a, mean_b)
            use = (ka > 0) & (kb > 0)
            n_use = use.sum(-1)
            ka_eff = n_use / np.where(use, 1.0 / np.maximum(ka, 1), 0.0).sum(-1)
            kb_eff = n_use / np.where(use, 1.0 / np.maximum(kb, 1), 0.0).sum(-1)
            rho1 = _single_from_halves(r, ka_eff, kb_eff)
        ok = np.isfinite(rho1)
        total += np.where(ok, rho1, 0.0)
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        single = np.where(count > 0, total / count, np.nan)
    return np.stack([single, np.where(count > 0, n_all, np.nan)], axis=-1)


def _n_trials(n_trials: int | str | None) -> float | None:
    """``n_trials`` as a count, or None for the mean of all repeats ("repeats")."""
    if n_trials is None or (isinstance(n_trials, str) and n_trials == "repeats"):
        return None
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | float | np.integer):
        raise ValueError(f"n_trials must be a number of trials or 'repeats', got {n_trials!r}")
    if not n_trials >= 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials!r}")
    return float(n_trials)


def _scale_name(n_trials: float | None) -> str:
    if n_trials is None:
        return "mean of the repeats"
    return "single trial" if n_trials == 1 else f"mean of {n_trials:g} trials"


def _split_half(repeats: xr.DataArray, n_splits: int, seed: int) -> tuple[xr.DataArray, ...]:
    """Single-trial split-half reliability and repeat count of a (repeat_stimulus, repeat,
    ...) array, lazily (one task per block of the other dims)."""
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1, got {n_splits}")
    core = ["repeat_stimulus", "repeat"]
    if repeats.chunks is not None:
        repeats = repeats.chunk({d: -1 for d in core})
    shape = (n_splits, repeats.sizes["repeat_stimulus"], repeats.sizes["repeat"])
    perms = np.argsort(np.random.default_rng(seed).random(shape), axis=-1)
    drop = [c for c in repeats.coords if set(repeats[c].dims) & set(core)]
    both = xr.apply_ufunc(
        _split_half_kernel,
        repeats.drop_vars(drop),
        kwargs={"perms": perms},
        input_core_dims=[core],
        output_core_dims=[["_part"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"_part": 2}},
    )
    return both.isel(_part=0, drop=True), both.isel(_part=1, drop=True)


def _stepped(single: xr.DataArray, trials: xr.DataArray | float) -> xr.DataArray:
    """Spearman-Brown from one trial to ``trials``, lazily."""
    return xr.apply_ufunc(spearman_brown, single, trials, dask="parallelized",
                          output_dtypes=[np.float64])  # fmt: skip


def _reliability(
    repeats: xr.DataArray, n_splits: int, seed: int, n_trials: int | str | None
) -> xr.DataArray:
    trials = _n_trials(n_trials)
    single, n_all = _split_half(repeats, n_splits, seed)
    out = _stepped(single, n_all if trials is None else trials)
    out.attrs = {
        "long_name": f"split-half reliability of the {_scale_name(trials)}",
        "units": "1",
        "scale": _scale_name(trials),
        "n_trials": "repeats" if trials is None else trials,
        "n_splits": int(n_splits),
        "seed": int(seed),
    }
    return out.rename("split_half_reliability")


def _repeats(cube: xr.Dataset) -> xr.DataArray:
    if "response_repeats" not in cube.data_vars:
        raise ValueError("the cube has no 'response_repeats' (repeated test trials)")
    return cube["response_repeats"]


def split_half_reliability(
    cube: xr.Dataset, n_splits: int = 20, seed: int = 0, *, n_trials: int | str = "repeats"
) -> xr.DataArray:
    """Split-half reliability of each channel from the repeated test trials, on a named scale.

    For each of ``n_splits`` random splits, the repeats of every test stimulus
    are divided into two halves (among its non-NaN repeats, so NaN padding is
    ignored; with an odd count the halves differ by one), each half is averaged,
    and the two half-means are correlated (Pearson) across test stimuli. The
    correlation of two means of ``k_a`` and ``k_b`` trials is solved for the
    single-trial reliability (exact for uneven halves; Spearman-Brown for even
    ones), averaged over splits, and stepped by Spearman-Brown to ``n_trials``.
    With signal variance ``s2`` across stimuli and noise variance ``n2`` per
    trial, the expected value is ``s2 / (s2 + n2 / k)`` for ``k = n_trials``.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube with ``response_repeats`` (repeat_stimulus, repeat, channel[, time]).
    n_splits : int
        Number of random splits averaged.
    seed : int
        Seed of the random splits (the same for every channel).
    n_trials : int or "repeats"
        The scale: the reliability of the mean of this many trials. ``"repeats"``
        (default, as before): of the per-stimulus mean of all its repeats (the test
        images' responses; ``R`` is the harmonic mean of the repeat counts). ``1``: of
        a single trial (the train images' responses).

    Returns
    -------
    xarray.DataArray
        Dims (channel[, time]); dask-backed (one task per channel block, the
        repeat axes in memory) when the repeats are. NaN where fewer than three
        stimuli have both halves. ``attrs["scale"]`` names the scale.

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
    >>> rel.dims, bool((rel > 0.98).all()), rel.attrs["scale"]
    (('channel',), True, 'mean of the repeats')
    >>> bool((split_half_reliability(cube, n_splits=5, n_trials=1) < rel).all())
    True
    """
    return _reliability(_repeats(cube), n_splits, seed, n_trials)


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
    *,
    n_trials: int | str = 1,
    memorability_reliability: float = MEMORABILITY_RELIABILITY,
) -> xr.Dataset:
    """Reliability of each ROI's mean response, and the ceiling on r(ROI, memorability).

    Each repeat is first averaged over the ROI's channels (NaN channels ignored, as
    :func:`memxr.reduce.roi_reduce` does), then the split-half procedure of
    :func:`split_half_reliability` gives the reliability of that ROI mean, stepped to
    ``n_trials``: the trials behind the responses that are correlated with memorability.
    The ceiling on a correlation between two measurements is the square root of the
    product of their reliabilities, so the highest r(ROI response, memorability) that
    noise allows is ``sqrt(reliability * memorability_reliability)``.

    Changed: the ceiling used to be ``sqrt(reliability of the R-repeat mean)`` alone, the
    ceiling on correlations with the test-set means, drawn over correlations of single
    train trials and as if memorability were measured without error. Pass
    ``n_trials="repeats", memorability_reliability=1.0`` for that old number.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube with ``response_repeats`` and ``roi_mask``.
    rois : str or sequence of str, optional
        ROI names (see :mod:`memxr.reduce`); default the cube's default ROIs.
    n_splits, seed : int
        As in :func:`split_half_reliability`.
    n_trials : int or "repeats"
        Trials behind the analysed responses: 1 (default) for the train images (each
        seen once), ``"repeats"`` for the test images (means of their R repeats).
    memorability_reliability : float
        Reliability of the memorability scores, in (0, 1]; default
        :data:`MEMORABILITY_RELIABILITY` (0.45, Kramer et al. 2023; see there).

    Returns
    -------
    xarray.Dataset
        Dims (roi[, time]) with ``n_channels`` per ROI and the variables

        ``reliability``
            Reliability of the ROI mean of ``n_trials`` trials (a fraction of variance).
        ``reliability_single``, ``reliability_repeats``
            The same for one trial and for the mean of the repeats; ``test_repeats`` is R
            (the harmonic mean of the repeat counts).
        ``ceiling_r``
            ``sqrt(reliability * memorability_reliability)``; NaN where the reliability
            is negative.

        ``attrs``: ``n_trials``, ``scale``, ``memorability_reliability``, ``n_splits``,
        ``seed``, ``subject``.

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
    >>> sorted(nc.data_vars), int(nc.n_channels[0]), nc.attrs["scale"]
    (['ceiling_r', 'reliability', 'reliability_repeats', 'reliability_single', 'test_repeats'], 3, 'single trial')
    >>> bool(np.allclose(nc.ceiling_r ** 2, nc.reliability * 0.45))
    True
    >>> test = noise_ceiling(cube, ["A"], n_splits=5, n_trials="repeats")
    >>> bool(test.reliability > nc.reliability)
    True
    """
    mem = _check_memorability_reliability(memorability_reliability)
    trials = _n_trials(n_trials)
    single, n_all = _split_half(_roi_mean_repeats(cube, rois), n_splits, seed)
    repeats = _stepped(single, n_all)
    rel = repeats if trials is None else _stepped(single, trials)
    rel.attrs = {
        "long_name": f"split-half reliability of the ROI mean ({_scale_name(trials)})",
        "units": "1",
        "scale": _scale_name(trials),
    }
    single.attrs = {"long_name": "split-half reliability of the ROI mean (one trial)", "units": "1"}
    repeats.attrs = {
        "long_name": "split-half reliability of the ROI mean (mean of the repeats)",
        "units": "1",
    }
    n_all.attrs = {"long_name": "repeats per test image (harmonic mean)", "units": "1"}
    ceiling = np.sqrt(rel.where(rel >= 0) * mem)
    ceiling.attrs = {
        "long_name": "ceiling on r(ROI response, memorability): "
        "sqrt(reliability x memorability reliability)",
        "units": "1",
    }
    out = xr.Dataset(
        {
            "reliability": rel,
            "reliability_single": single,
            "reliability_repeats": repeats,
            "test_repeats": n_all,
            "ceiling_r": ceiling,
        }
    )
    out.attrs = {
        "n_trials": "repeats" if trials is None else trials,
        "scale": _scale_name(trials),
        "memorability_reliability": mem,
        "n_splits": int(n_splits),
        "seed": int(seed),
        "subject": cube.attrs.get("subject", ""),
    }
    return out


SCALES = ("single_trial", "native")
"""Scales of a channel-selection threshold: the reliability of one trial (a fraction,
any measure converted to it), or the measure's own units."""

_AUTO_ORDER = (
    "reliability",
    "nc_singletrial",
    "nc_testset",
    "splithalf_corrected",
    "split_half",
)


def _time_windows(cube: xr.Dataset, rep: xr.DataArray, window) -> list[tuple[np.ndarray, tuple]]:
    """(channel indices, (start, stop) ms) pairs covering every channel of a timed cube.

    ``"area"``: the channels of each area of :data:`memxr.schema.AREA_WINDOWS` (by their
    ROI column) over its response window, every other channel from 0 ms on (never the
    pre-stimulus bins); a pair: that window for all; None: every bin.
    """
    n = rep.sizes["channel"]
    if window is None:
        return [(np.arange(n), (-np.inf, np.inf))]
    if not (isinstance(window, str) and window == "area"):
        start, stop = (float(v) for v in window)
        return [(np.arange(n), (start, stop))]
    left = np.ones(n, dtype=bool)
    out = []
    names = [str(r) for r in np.asarray(cube["roi"].values)] if "roi" in cube.coords else []
    mask = np.asarray(cube["roi_mask"].values, dtype=bool) if names else np.zeros((n, 0), bool)
    for area, win in AREA_WINDOWS.items():
        if area in names:
            members = mask[:, names.index(area)] & left
            if members.any():
                out.append((np.flatnonzero(members), (float(win[0]), float(win[1]))))
                left &= ~members
    if left.any():
        out.append((np.flatnonzero(left), (0.0, np.inf)))
    return out


def _split_half_score(
    cube: xr.Dataset, window, n_splits: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split-half reliability of every channel, of one trial and of the mean of its repeats
    (time-averaged over the channel's window when timed)."""
    rep = _repeats(cube)
    single = np.full(rep.sizes["channel"], np.nan)
    repeats = np.full(rep.sizes["channel"], np.nan)
    if "time" in rep.dims:
        t = np.asarray(rep["time"].values, dtype=float)
        parts = []
        for idx, (start, stop) in _time_windows(cube, rep, window):
            inside = np.flatnonzero((t >= start) & (t < stop))
            if inside.size == 0:
                raise ValueError(f"window {start:g}..{stop:g} ms holds no time bin")
            parts.append((idx, rep.isel(channel=idx, time=inside).mean("time")))
    else:
        parts = [(np.arange(rep.sizes["channel"]), rep)]
    for idx, part in parts:
        one, n_all = _split_half(part, n_splits, seed)
        one, mean = xr.Dataset({"one": one, "mean": _stepped(one, n_all)}).compute().values()
        single[idx], repeats[idx] = one.values, mean.values
    return single, repeats


def select_channels(
    cube: xr.Dataset,
    threshold: float,
    by: str = "auto",
    *,
    scale: str | None = None,
    window: str | tuple[float, float] | None = "area",
    n_splits: int = 20,
    seed: int = 0,
) -> xr.Dataset:
    """Keep the channels whose reliability reaches ``threshold`` on a named scale.

    Every reliability measure has one scale (:data:`memxr.schema.RELIABILITY_MEASURES`):
    TVSD ``reliability`` is a single-trial correlation, THINGS-fMRI ``nc_testset`` the
    percentage of explainable variance of the 12-trial test mean, ``split_half`` the
    reliability of the mean of the repeats. A threshold names its scale (``scale``), and
    ``by="auto"`` compares only on the single-trial scale, whichever measure it finds,
    so one threshold keeps equally reliable channels in every dataset.

    Changed: ``auto`` used to compare the threshold with whatever measure came first in
    its own units (0.3 on ``nc_testset``, a percentage, kept almost every voxel), and
    split-half reliabilities of time-resolved cubes averaged every time bin, the
    pre-stimulus ones included.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube.
    threshold : float
        Minimum reliability kept (``>=``) on the ``scale``. Channels with NaN are dropped.
    by : str
        A measure of :data:`memxr.schema.RELIABILITY_MEASURES`: a channel coordinate
        (``reliability``, ``nc_singletrial``, ``nc_testset``, ``splithalf_corrected``,
        ``splithalf_uncorrected``) or ``split_half`` (computed from ``response_repeats``
        with :func:`split_half_reliability`; this reads the repeats, never the
        response); any other channel coordinate (``scale="native"`` only); or ``"auto"``:
        the first of ``reliability``, ``nc_singletrial``, ``nc_testset``,
        ``splithalf_corrected``, ``split_half`` that the cube has.
    scale : {"single_trial", "native"}, optional
        ``single_trial``: the threshold is a single-trial reliability (a fraction; the
        measure is converted with :func:`memxr.schema.reliability_values`).
        ``native``: the measure's own units (``nc_testset`` in percent, e.g. 20).
        Default: ``single_trial`` with ``by="auto"`` (which refuses ``native``), else
        ``native``.
    window : "area", (float, float) or None
        For ``split_half`` on a cube with ``time``, the bins averaged before the
        reliability is computed: ``"area"`` (default) each area's response window
        (:data:`memxr.schema.AREA_WINDOWS`; channels of no such area from 0 ms on),
        ``(start, stop)`` ms (stop exclusive) for every channel, None every bin.
    n_splits, seed : int
        For ``split_half``.

    Returns
    -------
    xarray.Dataset
        The cube restricted to the kept channels (response still lazy), with
        attributes ``channel_selection_by``, ``channel_selection_scale``,
        ``channel_selection_threshold``, ``n_channels_kept`` and
        ``n_channels_total``; for ``split_half`` the computed values are kept as the
        channel coordinate ``split_half`` (reliability of the mean of the repeats, its
        scale in :data:`memxr.schema.RELIABILITY_MEASURES`).

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_channel=4).assign_coords(
    ...     reliability=("channel", [0.1, 0.5, 0.7, float("nan")]))
    >>> out = select_channels(cube, 0.4)
    >>> out.channel_id.values.tolist(), out.attrs["channel_selection_by"]
    ([2, 3], 'reliability')
    >>> fmri = example_cube(n_channel=2).assign_coords(nc_testset=("channel", [60.0, 10.0]))
    >>> fmri["split"][:2] = "test"; fmri["n_repeats"][:2] = 12
    >>> select_channels(fmri, 0.1).attrs["channel_selection_scale"]   # 60 % of 12 trials
    'single_trial'
    >>> select_channels(fmri, 50, by="nc_testset").channel_id.values.tolist()
    [1]
    """
    if scale is not None and scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if by == "auto":
        if scale == "native":
            raise ValueError(
                "by='auto' compares on the single-trial scale only (its measures have different"
                " units); name the measure (by=...) to use its native scale"
            )
        have = [
            b
            for b in _AUTO_ORDER
            if (b in cube.coords and cube[b].dims == ("channel",))
            or (b == "split_half" and "response_repeats" in cube.data_vars)
        ]
        if not have:
            raise ValueError(
                "cannot select channels: the cube has no reliability channel coordinate"
                f" ({', '.join(_AUTO_ORDER[:-1])}) and no 'response_repeats'"
            )
        by, scale = have[0], "single_trial"
    scale = scale or "native"
    if by == "split_half":
        single, repeats = _split_half_score(cube, window, n_splits, seed)
        score = single if scale == "single_trial" else repeats
    else:
        score = reliability_values(cube, by, scale)
    if scale == "single_trial" and not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(
            f"threshold {threshold!r} is not a single-trial reliability (between -1 and 1);"
            f" for {by!r} in its own units give scale='native'"
        )
    keep = np.flatnonzero(np.nan_to_num(score, nan=-np.inf) >= threshold)
    out = cube
    if by == "split_half":  # on its one documented scale: the mean of the repeats
        out = out.assign_coords(split_half=("channel", repeats))
    out = out.isel(channel=keep)
    out.attrs = {
        **cube.attrs,
        "channel_selection_by": by,
        "channel_selection_scale": scale,
        "channel_selection_threshold": float(threshold),
        "n_channels_kept": int(keep.size),
        "n_channels_total": int(score.size),
    }
    return out
