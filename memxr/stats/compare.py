"""Differences of dependent correlations: is memorability coded more strongly in IT than in V1?

Two ROIs (or areas) measured on the same images give two correlations with memorability,
``r_a`` and ``r_b``, that share ``y`` and usually each other's noise: they are dependent,
and their difference needs a test of its own. :func:`compare_correlations` reports, for
named pairs of ROIs, ``r_a``, ``r_b``, ``diff = r_a - r_b``, a confidence interval of the
difference and a p-value of ``H0: rho_a = rho_b``.

Why not permute memorability? Permuting ``y`` (by concept) makes both correlations zero in
every permutation: its null is ``rho_a = rho_b = 0``, and two ROIs that both code
memorability equally (say ``r = 0.15`` each) would be "different" at a rate far above the
level whenever their noise differs. The test here resamples concepts instead, which keeps
whatever both ROIs share with memorability and with each other:

- ``ci_method="jackknife"`` (default, as :func:`memxr.stats.correlate`): delete one concept
  (beyond 200 concepts, one of 200 random unions of whole concepts) at a time, recompute
  both correlations, and take the spread of the deleted differences ``d_k`` as the standard
  error of ``diff``, ``se**2 = (K - 1) / K sum (d_k - mean d)**2``. The interval is
  ``diff +- t_{K-1} se`` and ``p = 2 P(T_{K-1} >= |diff| / se)`` (the interval excludes 0
  exactly when ``p < 1 - ci``);
- ``ci_method="percentile"``: the percentile interval of ``n_bootstrap`` concept-bootstrap
  differences, and the test inversion ``p = min(1, 2 min(1 + #{d_b <= 0}, 1 + #{d_b >= 0})
  / (B + 1))``.

Both are valid under ``rho_a = rho_b`` whatever the ROIs' noise and their correlation with
each other, asymptotically in the number of concepts; the calibration checks of
:mod:`memxr.testing` (``compare_p``, ``compare_ci``) measure them on concept-structured
simulations with two correlated ROIs of equal (0.15) and unequal correlations. (A
permutation that swaps the two ROIs' standardized responses within each concept would be
exact, but only under the stronger null that the two ROIs are exchangeable, which two
areas of different noise and concept structure are not.)

The one-pass sums of :func:`memxr.stats.correlate` (streamed over the stimulus axis, lazy
on dask input) give both correlations and every resample of them.

Examples
--------
>>> import numpy as np, xarray as xr
>>> rng = np.random.default_rng(0)
>>> y = rng.standard_normal(300)
>>> shared = rng.standard_normal(300)
>>> x = xr.DataArray(np.c_[0.6 * y + shared, 0.1 * y + shared, 0.6 * y + shared],
...                  dims=("stimulus", "roi"), coords={"roi": ["IT", "V1", "V4"]})
>>> res = compare_correlations(x, y, pairs=[("IT", "V1"), ("IT", "V4")])
>>> res.pair.values.tolist()
['IT-V1', 'IT-V4']
>>> bool(res.p.sel(pair="IT-V1") < 0.001), bool(res.p.sel(pair="IT-V4") > 0.05)
(True, True)
>>> comparison_table(res).columns.tolist()[:6]
['pair', 'roi_a', 'roi_b', 'r_a', 'r_b', 'diff']
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from .correlation import CI_METHODS, METHODS, fdr
from .inputs import stimulus_inputs
from .kernels import (
    BLOCK_BYTES,
    jackknife_correlations,
    resampled_correlations,
    resampling_tables,
)
from .streaming import core_dims, plan_blocks, prepare_features, stream_sums

__all__ = ["compare_correlations", "comparison_table", "difference_kernel"]

PAIR_DIM = "pair"
"""The dim of the pairs in :func:`compare_correlations`."""


def difference_kernel(*sums: np.ndarray, n_args: int, ci: float, jackknife: bool):
    """``r_a, r_b, diff, ci_low, ci_high, p`` from the one-pass sums of two features.

    ``sums`` holds ``n_args`` arrays for feature ``a`` then as many for ``b``: ``sw, sx,
    sxx, sy, syy, sxy`` over the columns ``[observed, bootstrap...]`` (no permutations)
    and, with ``jackknife``, the unit sums of :func:`memxr.stats.kernels.jackknife_correlations`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y, xa, xb = rng.standard_normal((3, 20))
    >>> one = lambda x: [np.array([v]) for v in (20.0, x.sum(), x @ x, y.sum(), y @ y, x @ y)]
    >>> ra, rb, d, lo, hi, p = difference_kernel(*one(xa), *one(xb), n_args=6, ci=0.95,
    ...                                          jackknife=False)
    >>> bool(np.isclose(d, np.corrcoef(xa, y)[0, 1] - np.corrcoef(xb, y)[0, 1]))
    True
    """
    a = [np.asarray(v, dtype=np.float64) for v in sums[:n_args]]
    b = [np.asarray(v, dtype=np.float64) for v in sums[n_args:]]
    ra_all = resampled_correlations(*a[:6], n_perm=0)
    rb_all = resampled_correlations(*b[:6], n_perm=0)
    ra, rb = ra_all[..., 0], rb_all[..., 0]
    d = ra - rb
    missing = np.isnan(d)
    nan = np.full(d.shape, np.nan)
    lo, hi, p = nan, nan.copy(), nan.copy()
    if jackknife and n_args > 6:
        deleted = []
        for s in (a, b):
            totals = [v[..., 0] for v in s[:6]]
            deleted.append(jackknife_correlations(totals, s[6:], False))
        dk = deleted[0] - deleted[1]
        k = dk.shape[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            se = np.sqrt((k - 1) / k * ((dk - dk.mean(-1, keepdims=True)) ** 2).sum(-1))
            half = scipy.stats.t.ppf((1 + ci) / 2, k - 1) * se
            tstat = np.abs(d) / se
        lo, hi = d - half, d + half
        p = np.where(se > 0, 2 * scipy.stats.t.sf(tstat, k - 1), np.where(d == 0, 1.0, 0.0))
    elif ra_all.shape[-1] > 1:
        boot = ra_all[..., 1:] - rb_all[..., 1:]
        n_boot = boot.shape[-1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanquantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=-1)
        below = 1.0 + (boot <= 0).sum(-1)
        above = 1.0 + (boot >= 0).sum(-1)
        p = np.minimum(1.0, 2 * np.minimum(below, above) / (n_boot + 1.0))
    out = [ra, rb, d, lo, hi, p]
    return tuple(np.where(missing, np.nan, v) for v in out)


def _pairs(labels: Sequence, pairs) -> list[tuple[Hashable, Hashable]]:
    known = list(labels)
    if pairs is None:
        return list(itertools.combinations(known, 2))
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"pairs: each pair names two labels, got {pair!r}")
        a, b = pair
        for v in (a, b):
            if v not in known:
                raise ValueError(f"pairs: {v!r} is not one of {known}")
        if a == b:
            raise ValueError(f"pairs: {a!r} paired with itself")
        out.append((a, b))
    if not out:
        raise ValueError("pairs: none given")
    return out


def _along(x: xr.DataArray, along: str | None, dim: str) -> str:
    if along is not None:
        if along not in x.dims:
            raise ValueError(f"x has no dim {along!r} (dims {x.dims})")
        return along
    for name in ("roi", "area", "channel"):
        if name in x.dims:
            return name
    raise ValueError(f"name the dim of the ROIs: along=... (dims {x.dims})")


def compare_correlations(
    x: xr.DataArray,
    y: xr.DataArray | np.ndarray,
    pairs: Sequence[tuple[Hashable, Hashable]] | None = None,
    *,
    along: str | None = None,
    method: str = "pearson",
    dim: str = "stimulus",
    groups: str | np.ndarray | xr.DataArray | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    ci_method: str = "jackknife",
    compute: bool = False,
) -> xr.Dataset:
    """Difference of the correlations of two ROIs with ``y`` on the same stimuli, per pair.

    Parameters
    ----------
    x : xarray.DataArray
        Neural measure with dims ``dim``, ``along`` (ROIs or areas) and any others (time
        bins: one comparison per bin); numpy- or dask-backed. NaN propagates.
    y : xarray.DataArray or array_like
        One value per stimulus (memorability); stimuli where it is NaN are dropped.
    pairs : sequence of (a, b), optional
        Labels along ``along``; ``diff = r_a - r_b``. Default: every pair, in order.
    along : str, optional
        The dim of the ROIs (default: the first of ``roi``, ``area``, ``channel``).
    method : {"pearson", "spearman"}
        As in :func:`memxr.stats.correlate`.
    dim : str
        The stimulus dim.
    groups : str or array_like, optional
        Concept per stimulus (a coordinate name or labels): the jackknife deletes, the
        bootstrap draws whole concepts. Without it, stimuli are resampled singly.
    n_bootstrap : int
        Bootstrap samples of ``ci_method="percentile"`` (0: no interval and no ``p``).
    seed : int
        Seed of the jackknife units (beyond 200 concepts) and of the bootstrap.
    ci : float
        Coverage of the interval.
    ci_method : {"jackknife", "percentile"}
        See the module notes: both give the interval and ``p`` by the same resampling.
    compute : bool
        Compute a dask-backed result before returning it.

    Returns
    -------
    xarray.Dataset
        Dim ``pair`` (labels ``"a-b"``, coords ``<along>_a``, ``<along>_b``) and the other
        dims of ``x``: ``r_a``, ``r_b``, ``diff``, ``ci_low``, ``ci_high`` (interval of
        ``diff``), ``p`` (of ``rho_a = rho_b``), ``p_fdr`` (Benjamini-Hochberg over every
        pair and bin of this call, ``attrs["p_family"]`` says so) and ``n``. Lazy when
        ``x`` is dask-backed and ``compute`` is false. :func:`comparison_table` makes it a
        table.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if ci_method not in CI_METHODS:
        raise ValueError(f"ci_method must be one of {CI_METHODS}, got {ci_method!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci!r}")
    if not isinstance(x, xr.DataArray):
        raise TypeError(f"x must be an xarray.DataArray, got {type(x).__name__}")
    along = _along(x, along, dim)
    labels = x[along].values.tolist() if along in x.coords else list(range(x.sizes[along]))
    chosen = _pairs(labels, pairs)
    inp = stimulus_inputs(x, y, None, groups, method, dim)
    jack = ci_method == "jackknife"
    t = resampling_tables(inp.y, np.zeros(inp.n), inp.codes, None, 0,
                          0 if jack else int(n_bootstrap), seed, jackknife=jack)  # fmt: skip
    used = sorted({labels.index(v) for pair in chosen for v in pair})
    sub = x.isel({along: used})
    xs = prepare_features(sub, dim, inp.keep, method)
    lazy = xs.chunks is not None
    n_cols = sum(t.widths) + t.n_units
    xs = plan_blocks(xs if lazy else xs.chunk(), dim, n_cols, BLOCK_BYTES)
    args, _ = stream_sums(xs, None, t, dim, BLOCK_BYTES)
    position = {labels[i]: j for j, i in enumerate(used)}

    def member(k: int) -> list[xr.DataArray]:
        idx = xr.DataArray([position[p[k]] for p in chosen], dims=PAIR_DIM)
        return [a.isel({along: idx}) if along in a.dims else a for a in args]

    first, second = member(0), member(1)
    outs = xr.apply_ufunc(
        difference_kernel,
        *first,
        *second,
        input_core_dims=[core_dims(a) for a in first + second],
        output_core_dims=[[]] * 6,
        dask="parallelized",
        output_dtypes=[np.float64] * 6,
        kwargs={"n_args": len(first), "ci": float(ci), "jackknife": jack},
    )
    order = [PAIR_DIM] + [d for d in x.dims if d not in (dim, along)]
    ra, rb, d, lo, hi, p = (v.transpose(*order) for v in outs)
    names = [f"{a}-{b}" for a, b in chosen]
    ci_name = "jackknife (t)" if jack else "percentile bootstrap"
    ds = xr.Dataset(
        {
            "r_a": ra.assign_attrs(long_name=f"{method} correlation of {along} a"),
            "r_b": rb.assign_attrs(long_name=f"{method} correlation of {along} b"),
            "diff": d.assign_attrs(long_name="r_a - r_b"),
            "ci_low": lo.assign_attrs(long_name=f"lower {ci:g} {ci_name} bound of diff"),
            "ci_high": hi.assign_attrs(long_name=f"upper {ci:g} {ci_name} bound of diff"),
            "p": p.assign_attrs(long_name="two-sided p-value of rho_a = rho_b"),
            "p_fdr": fdr(p).assign_attrs(long_name="Benjamini-Hochberg adjusted p-value"),
            "n": xr.DataArray(np.int64(inp.n), attrs={"long_name": f"{dim}s used"}),
        },
        coords={
            PAIR_DIM: names,
            f"{along}_a": (PAIR_DIM, np.array([a for a, _ in chosen], dtype=object)),
            f"{along}_b": (PAIR_DIM, np.array([b for _, b in chosen], dtype=object)),
        },
    )
    keep = {k: v.variable for k, v in x.coords.items() if dim not in v.dims and along not in v.dims}
    ds = ds.assign_coords(keep)
    others = [str(v) for v in order[1:]]
    ds.attrs = {
        "method": method,
        "dim": dim,
        "along": along,
        "groups": groups if isinstance(groups, str) else ("none" if groups is None else "array"),
        "ci": float(ci),
        "ci_method": ci_method,
        "n_bootstrap": int(n_bootstrap) if not jack else 0,
        "seed": int(seed),
        "test": (
            "delete-one-concept jackknife of r_a - r_b, t on K - 1 df"
            if jack
            else "concept bootstrap of r_a - r_b, percentile interval, p by test inversion"
        ),
        "p_family": f"p_fdr: Benjamini-Hochberg over every pair ({len(chosen)})"
        + (f" x {', '.join(others)}" if others else "")
        + " of this call",
    }
    return ds.compute() if compute or not lazy else ds


def comparison_table(res: xr.Dataset) -> pd.DataFrame:
    """One row per pair (and bin) of a :func:`compare_correlations` result.

    Returns
    -------
    pandas.DataFrame
        ``pair``, ``<along>_a``, ``<along>_b``, the other dims of the result, ``r_a``,
        ``r_b``, ``diff``, ``ci_low``, ``ci_high``, ``p``, ``p_fdr``, ``n`` and ``p_family``.
    """
    along = res.attrs["along"]
    cols = ["r_a", "r_b", "diff", "ci_low", "ci_high", "p", "p_fdr"]
    frame = res[cols].to_dataframe().reset_index()
    frame["n"] = int(res["n"])
    frame["p_family"] = res.attrs["p_family"]
    dims = [d for d in res["diff"].dims if d != PAIR_DIM]
    first = [PAIR_DIM, f"{along}_a", f"{along}_b", *dims]
    rest = [c for c in frame.columns if c not in first and c not in cols + ["n", "p_family"]]
    return frame[[*first, *cols, "n", "p_family", *rest]]
