"""When does the memorability effect start and peak? Onset and peak latencies per area.

:func:`latency` correlates every time bin of every area's response with memorability,
finds the area's effect with the cluster-mass test (:func:`memxr.stats.cluster_test`: the
cluster of largest mass, its sign and family-wise ``p_cluster``), and measures its latency
with a fixed criterion applied alike to the observed time course and to each of
``n_bootstrap`` concept-bootstrap time courses (concepts drawn with replacement, every
correlation recomputed with the draw counts as weights):

- peak: the time bin of the largest correlation of the effect's sign (``sign * r``) within
  the search window (default: the whole time axis);
- onset, ``criterion="fraction"`` (default): the time at which ``sign * r`` last rises
  through ``fraction`` (default 0.5) of its peak value before the peak, interpolated
  linearly between the two bins around the crossing (the time axis' start when it never
  falls below). A fraction of the peak is a property of the time course's shape: unlike
  a fixed threshold it does not move earlier when the effect is larger or the data are
  more numerous, and it is defined in every resample;
- onset, ``criterion="threshold"``: the first bin of the run of bins with ``sign * z >=
  threshold`` (``z = r / sd``, the cluster test's standardization, ``sd`` from the
  observed permutations) that contains the peak: the cluster's own onset. In a
  resample whose peak does not reach the threshold it is undefined (NaN; the interval
  uses the other resamples, ``n_defined`` counts them). Cluster onsets are descriptive
  (Sassenhagen & Draschkow 2019): prefer the fraction criterion for inference.

The intervals are percentile intervals of the bootstrap latencies. The cluster's
``p_cluster`` says whether there is an effect at all; a latency of an area without one is
a latency of noise.

Examples
--------
>>> import numpy as np, xarray as xr
>>> rng = np.random.default_rng(0)
>>> times = 10.0 * np.arange(30)
>>> profile = np.clip((times - 100) / 50, 0, 1) * (times <= 250)   # rises from 100 ms
>>> y = rng.standard_normal(300)
>>> x = rng.standard_normal((300, 1, 30)) + 0.8 * y[:, None, None] * profile
>>> x = xr.DataArray(x, dims=("stimulus", "area", "time"),
...                  coords={"area": ["IT"], "time": times})
>>> res = latency(x, y, n_permutations=99, n_bootstrap=199)
>>> float(res.p_cluster.sel(area="IT")) <= 0.01
True
>>> bool(100 <= res.onset.sel(area="IT") <= 150), bool(150 <= res.peak.sel(area="IT") <= 250)
(True, True)
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from .clusters import cluster_test
from .correlation import METHODS
from .inputs import stimulus_inputs
from .kernels import BLOCK_BYTES, resampled_correlations, resampling_tables
from .streaming import core_dims, plan_blocks, prepare_features, stream_sums

__all__ = ["CRITERIA", "latency", "onset_peak"]

CRITERIA = ("fraction", "threshold")
"""Onset criteria of :func:`latency`."""

_COLS = "_memxr_resample"


def onset_peak(
    r: np.ndarray,
    times: np.ndarray,
    sign: np.ndarray | float = 1.0,
    *,
    criterion: str = "fraction",
    fraction: float = 0.5,
    threshold: float = 1.96,
    sd: np.ndarray | None = None,
    window: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Onset and peak times of time courses ``r`` (last axis: time), by a fixed criterion.

    Parameters
    ----------
    r : numpy.ndarray
        Correlations (..., T).
    times : numpy.ndarray
        The T bin times, increasing.
    sign : float or numpy.ndarray
        Sign of the effect (+1 or -1), broadcast against ``r[..., 0]``.
    criterion : {"fraction", "threshold"}
        See the module notes.
    fraction : float
        Fraction of the peak of the ``fraction`` criterion.
    threshold, sd : float, numpy.ndarray
        The ``threshold`` criterion: bins with ``sign * r / sd >= threshold`` (``sd``
        broadcast against ``r``).
    window : numpy.ndarray of bool, optional
        The bins where the peak is searched (default all).

    Returns
    -------
    onset, peak : numpy.ndarray
        Times, shape ``r.shape[:-1]`` (NaN where undefined).

    Examples
    --------
    >>> t = np.arange(6) * 10.0
    >>> onset_peak(np.array([0.0, 0.1, 0.3, 0.4, 0.3, 0.0]), t)  # half the peak at 15 ms
    (array(15.), array(30.))
    """
    r = np.asarray(r, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    n_t = r.shape[-1]
    s = np.asarray(sign, dtype=np.float64)[..., None] * r
    searched = np.where(np.isfinite(s), s, -np.inf)
    if window is not None:
        searched = np.where(np.asarray(window, dtype=bool), searched, -np.inf)
    ok = np.isfinite(searched).any(-1)
    ip = np.argmax(searched, axis=-1)
    peak = np.where(ok, times[ip], np.nan)
    idx = np.arange(n_t)
    before = idx < ip[..., None]
    s_fin = np.where(np.isfinite(s), s, -np.inf)
    if criterion == "fraction":
        level = fraction * np.take_along_axis(s_fin, ip[..., None], -1)
        below = before & (s_fin < level)
        j = np.where(below.any(-1), (np.where(below, idx, -1)).max(-1), -1)
        jj, kk = np.clip(j, 0, n_t - 1), np.clip(j + 1, 0, n_t - 1)
        sj = np.take_along_axis(s_fin, jj[..., None], -1)[..., 0]
        sk = np.take_along_axis(s_fin, kk[..., None], -1)[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(np.isfinite(sj) & (sk > sj), (level[..., 0] - sj) / (sk - sj), 1.0)
        frac = np.clip(frac, 0.0, 1.0)
        onset = np.where(j < 0, times[0], times[jj] + frac * (times[kk] - times[jj]))
    elif criterion == "threshold":
        if sd is None:
            raise ValueError("the threshold criterion needs sd")
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(np.asarray(sd) > 0, s_fin / np.asarray(sd), 0.0)
        above = z >= threshold
        reached = np.take_along_axis(above, ip[..., None], -1)[..., 0]
        gap = before & ~above
        j = np.where(gap.any(-1), np.where(gap, idx, -1).max(-1), -1)
        onset = np.where(reached, times[np.clip(j + 1, 0, n_t - 1)], np.nan)
    else:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    return np.where(ok, onset, np.nan), peak


def _resampled(*sums: np.ndarray, n_perm: int) -> np.ndarray:
    return resampled_correlations(*sums, n_perm=n_perm)


def latency(
    x: xr.DataArray,
    y: xr.DataArray | np.ndarray,
    *,
    time: str = "time",
    dim: str = "stimulus",
    method: str = "pearson",
    groups: str | np.ndarray | xr.DataArray | None = None,
    criterion: str = "fraction",
    fraction: float = 0.5,
    threshold: float = 1.96,
    window: tuple[float, float] | None = None,
    n_permutations: int = 1000,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> xr.Dataset:
    """Onset and peak latency of the memorability effect per area, with bootstrap intervals.

    Parameters
    ----------
    x : xarray.DataArray
        Time courses (dims ``dim``, ``time`` and the areas or ROIs, e.g. ROI means:
        every P + B resampled time course of every feature is held in memory); numpy- or
        dask-backed (one streaming pass over it).
    y : xarray.DataArray or array_like
        One value per stimulus (memorability).
    time, dim : str
        The time and stimulus dims.
    method : {"pearson", "spearman"}
        As in :func:`memxr.stats.correlate`.
    groups : str or array_like, optional
        Concept per stimulus: permutations and bootstrap resample whole concepts.
    criterion : {"fraction", "threshold"}
        Onset criterion (module notes).
    fraction : float
        Fraction of the peak defining the onset (``criterion="fraction"``).
    threshold : float
        Cluster-forming threshold of the cluster test, and the onset threshold of
        ``criterion="threshold"``.
    window : (float, float), optional
        Times between which the peak is searched (inclusive); default the whole axis.
    n_permutations, n_bootstrap : int
        Permutations of the cluster test, bootstrap samples of the intervals.
    seed : int
        Seed of both.
    ci : float
        Coverage of the percentile intervals.

    Returns
    -------
    xarray.Dataset
        Over the dims of ``x`` but ``dim`` and ``time`` (computed): ``onset``,
        ``onset_low``, ``onset_high``, ``peak``, ``peak_low``, ``peak_high`` (times),
        ``peak_r`` (the correlation at the peak), ``sign`` (of the effect: the largest
        cluster's, else of the largest ``|r|``), ``p_cluster`` (family-wise p of the
        largest cluster, NaN without one), ``n_defined`` (resamples with a defined onset);
        ``r`` (the observed time courses); attrs: the criterion, ``p_family``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if not isinstance(x, xr.DataArray):
        raise TypeError(f"x must be an xarray.DataArray, got {type(x).__name__}")
    if time not in x.dims:
        raise ValueError(f"x has no dim {time!r} (dims {x.dims})")
    if int(n_bootstrap) < 1 or int(n_permutations) < 1:
        raise ValueError("latency needs n_permutations >= 1 and n_bootstrap >= 1")
    x = x.sortby(time) if time in x.coords else x
    times = np.asarray(x[time].values if time in x.coords else np.arange(x.sizes[time]), float)
    inp = stimulus_inputs(x, y, None, groups, method, dim)
    n_perm, n_boot = int(n_permutations), int(n_bootstrap)
    t = resampling_tables(inp.y, np.zeros(inp.n), inp.codes, None, n_perm, n_boot, seed)
    xs = prepare_features(x, dim, inp.keep, method)
    xs = plan_blocks(xs if xs.chunks is not None else xs.chunk(), dim, sum(t.widths), BLOCK_BYTES)
    args, _ = stream_sums(xs, None, t, dim, BLOCK_BYTES)
    r_all = xr.apply_ufunc(
        _resampled,
        *args,
        input_core_dims=[core_dims(a) for a in args],
        output_core_dims=[[_COLS]],
        dask="parallelized",
        output_dtypes=[np.float64],
        kwargs={"n_perm": n_perm},
        dask_gufunc_kwargs={"output_sizes": {_COLS: 1 + n_perm + n_boot}},
    )
    others = [d for d in x.dims if d not in (dim, time)]
    r_all = r_all.transpose(*others, time, _COLS).compute()
    coords = {k: v.variable for k, v in x.coords.items() if dim not in v.dims}
    obs = r_all.isel({_COLS: 0}).drop_vars(_COLS, errors="ignore")
    null = r_all.isel({_COLS: slice(1, 1 + n_perm)}).rename({_COLS: "permutation"})
    boot = r_all.isel({_COLS: slice(1 + n_perm, None)}).values  # (..., T, B)
    res = xr.Dataset({"r": obs, "r_null": null}).assign_coords(coords)
    clusters = cluster_test(res, dim=time, threshold=threshold)
    r_np = obs.values
    with np.errstate(invalid="ignore"):
        every = np.concatenate([r_np[..., None], null.values], axis=-1)
        sd = np.nanstd(every, axis=-1)
    ids = clusters["cluster"].transpose(*others, time).values
    pcl = clusters["p_cluster"].transpose(*others, time).values
    z = clusters["z"].transpose(*others, time).values
    flat_ids = ids.reshape(-1, times.size)
    flat_z = np.abs(np.nan_to_num(z.reshape(-1, times.size)))
    flat_r = r_np.reshape(-1, times.size)
    flat_p = pcl.reshape(-1, times.size)
    n_feat = flat_r.shape[0]
    sign = np.ones(n_feat)
    p_best = np.full(n_feat, np.nan)
    for i in range(n_feat):
        labels = np.unique(flat_ids[i][flat_ids[i] > 0])
        if labels.size:
            mass = [flat_z[i][flat_ids[i] == k].sum() for k in labels]
            best = labels[int(np.argmax(mass))]
            inside = flat_ids[i] == best
            sign[i] = np.sign(np.nanmean(flat_r[i][inside])) or 1.0
            p_best[i] = flat_p[i][inside][0]
        elif np.isfinite(flat_r[i]).any():
            sign[i] = np.sign(flat_r[i][np.nanargmax(np.abs(flat_r[i]))]) or 1.0
    shape = r_np.shape[:-1]
    sign = sign.reshape(shape)
    win = None
    if window is not None:
        lo_t, hi_t = (float(v) for v in window)
        win = (times >= lo_t) & (times <= hi_t)
        if not win.any():
            raise ValueError(f"window {window} holds no time bin")
    kw = {"criterion": criterion, "fraction": fraction, "threshold": threshold, "window": win}
    onset, peak = onset_peak(r_np, times, sign, sd=sd, **kw)
    b_on, b_peak = onset_peak(np.moveaxis(boot, -1, -2), times, sign[..., None],
                              sd=sd[..., None, :], **kw)  # fmt: skip
    q = [(1 - ci) / 2, (1 + ci) / 2]
    defined = np.isfinite(b_on).sum(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        on_lo, on_hi = np.nanquantile(b_on, q, axis=-1)
        pk_lo, pk_hi = np.nanquantile(b_peak, q, axis=-1)
    ip = np.argmin(np.abs(times[None, :] - np.nan_to_num(peak).reshape(-1, 1)), axis=-1)
    at_peak = flat_r[np.arange(n_feat), ip].reshape(shape)
    peak_r = np.where(np.isfinite(peak), at_peak, np.nan)

    def var(a, name, units=True):
        attrs = {"long_name": name}
        if units and time in x.coords and "units" in x[time].attrs:
            attrs["units"] = x[time].attrs["units"]
        return (others, np.asarray(a), attrs)

    out = xr.Dataset(
        {
            "onset": var(onset, f"onset ({criterion} criterion)"),
            "onset_low": var(on_lo, f"lower {ci:g} percentile bootstrap bound of onset"),
            "onset_high": var(on_hi, f"upper {ci:g} percentile bootstrap bound of onset"),
            "peak": var(peak, "peak time"),
            "peak_low": var(pk_lo, f"lower {ci:g} percentile bootstrap bound of peak"),
            "peak_high": var(pk_hi, f"upper {ci:g} percentile bootstrap bound of peak"),
            "peak_r": var(peak_r, f"{method} correlation at the peak", False),
            "sign": var(sign.astype(np.int64), "sign of the effect", False),
            "p_cluster": var(p_best, "family-wise p of the largest cluster", False),
            "n_defined": var(defined.astype(np.int64), "bootstrap samples with an onset", False),
            "r": obs.assign_attrs(long_name=f"{method} correlation"),
        }
    )
    out = out.assign_coords(coords)
    out.attrs = {
        "criterion": criterion,
        "fraction": float(fraction),
        "threshold": float(threshold),
        "window": "all" if window is None else f"{window[0]:g} to {window[1]:g}",
        "n_permutations": n_perm,
        "n_bootstrap": n_boot,
        "seed": int(seed),
        "ci": float(ci),
        "groups": groups if isinstance(groups, str) else ("none" if groups is None else "array"),
        "p_family": clusters.attrs["p_family"],
        "interval": "percentile of concept-bootstrap latencies (same criterion, same sign)",
    }
    return out
