"""Correlations between neural measures and memorability along the stimulus dim.

Every statistic here is computed in one streaming pass over the data: the sums, sums of squares
and cross-products that a correlation needs are matrix products over the stimulus axis, which
Dask evaluates chunk by chunk. With ``n`` stimuli, ``P`` permutations and ``B`` bootstrap samples
the (stimulus x columns) design holds the observed response ``y``, its ``P`` permuted versions,
the ``B`` bootstrap weight vectors ``w`` and the products ``w * y``; one product
``x^T @ design`` and one ``(x^2)^T @ [1, w]`` give, for every channel, ROI and time bin, the
observed correlation, the ``P`` permutation correlations and the ``B`` bootstrap correlations.
The design never exists whole: its rows are generated per stimulus chunk from small integer
tables (permutation indices and bootstrap counts, one entry per stimulus or concept and
resample) drawn once from ``seed``, so numpy and dask inputs give identical numbers. Blocks are
sized so that (stimuli or features) x design columns stay near 32 MiB; numpy inputs take the
same blocked pass and come back computed.

Layers
------
- private numpy kernels (arrays in, arrays out), in ``memxr.stats.kernels``: ``resampling_tables``,
  ``_design_rows``, ``finalize_kernel``, ``_rank_kernel``, ``fdr_kernel``;
- the streaming pass over xarray/dask data (``memxr.stats.streaming``) and the input checks
  (``memxr.stats.inputs``);
- public xarray wrappers, here: :func:`correlate`, :func:`partial_correlate`,
  :func:`correlation_map`, :func:`fdr` (dask ``tensordot`` over the stimulus axis for the
  sums, ``xr.apply_ufunc`` for ranks, the final per-feature statistics and FDR).

Missing values
--------------
- stimuli where ``y`` (or a one-dimensional covariate) is NaN are dropped for the analysis;
  ``n`` reports how many stimuli were used;
- NaN in ``x`` propagates: a feature (channel, ROI, time bin) with a NaN among the analysed
  stimuli gets NaN ``r``, ``p`` and CI, and is left out of the FDR family (its ``p_fdr`` is
  NaN). Drop such stimuli beforehand (``x.dropna(...)``) to use the remaining ones.

Resampling
----------
- p-values are two-sided permutation p-values, ``(1 + #{|r_perm| >= |r|}) / (1 + P)``;
- confidence intervals (``ci_method="jackknife"``, the default) come from the
  delete-one-group jackknife: the correlation without each concept (or, beyond 200
  concepts, without each of 200 random unions of whole concepts; without groups, each of up
  to 200 random blocks of stimuli) gives pseudo-values of Fisher's z, whose spread gives
  the standard error, and the interval is ``tanh(atanh(r) +- t_{K-1} se)`` for K units.
  The per-unit sums are columns of the same one-pass design. On concept-structured data
  with tens to a few hundred concepts it keeps its coverage where the percentile
  interval of the concept bootstrap (``ci_method="percentile"``; weights are bootstrap
  draw counts, so each resample is a weighted correlation of the same data) covers
  about 92-94 % instead of 95 % (see the calibration checks of :mod:`memxr.testing`);
- with ``groups`` (for example the THINGS ``concept``: images of one concept share
  memorability), the jackknife deletes and the bootstrap draws whole groups, and the
  permutations are
  two-level: the group means of ``y`` are shuffled among the groups and the within-group
  deviations are shuffled within each group. Under the null (``x`` independent of ``y``, groups
  exchangeable) every such ``y`` is as likely as the observed one, so the p-value keeps its size
  when both ``x`` and ``y`` cluster by group, where a plain shuffle of stimuli is far too
  liberal (exact for equal group sizes, approximate otherwise);
- Spearman correlations rank ``x`` and ``y`` once on the analysed stimuli (average ranks for
  ties) and then use the Pearson machinery; permutations of ranks are exact, bootstrap
  resamples reweight these ranks rather than re-ranking each resample.

Examples
--------
>>> import numpy as np, xarray as xr
>>> rng = np.random.default_rng(0)
>>> y = rng.standard_normal(40)
>>> x = xr.DataArray(np.c_[y + rng.standard_normal(40), rng.standard_normal(40)],
...                  dims=("stimulus", "roi"), coords={"roi": ["IT", "V1"]})
>>> res = correlate(x, y, n_permutations=99, n_bootstrap=99)
>>> sorted(res.data_vars)
['ci_high', 'ci_low', 'n', 'p', 'p_fdr', 'r']
>>> float(res.p.sel(roi="IT"))
0.01
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .inputs import covariate_matrix, is_broadcast, stimulus_inputs
from .kernels import BLOCK_BYTES, fdr_kernel, finalize_kernel, resampling_tables
from .streaming import core_dims, plan_blocks, prepare_features, stream_sums

__all__ = ["METHODS", "correlate", "correlation_map", "fdr", "partial_correlate"]

METHODS = ("pearson", "spearman")
"""Correlation methods understood by :func:`correlate`."""

_CI_NAMES = {
    "jackknife": "jackknife (Fisher z, t) interval",
    "percentile": "percentile bootstrap",
}

_PERMUTATION_SCHEME = {
    False: "shuffle of stimuli",
    True: "group means shuffled among groups, deviations shuffled within groups",
}


CI_METHODS = ("jackknife", "percentile")
"""Confidence intervals of :func:`correlate`: delete-one-concept jackknife of Fisher's z
with Student's t (default), or the percentile interval of the concept bootstrap."""


def _check_args(method: str, n_permutations: int, n_bootstrap: int, ci: float) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, v in (("n_permutations", n_permutations), ("n_bootstrap", n_bootstrap)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci!r}")


def _run(
    x: xr.DataArray,
    y,
    covariate,
    *,
    method: str,
    dim: str,
    n_permutations: int,
    n_bootstrap: int,
    groups,
    seed: int,
    ci: float,
    compute: bool,
    return_null: bool = False,
    ci_method: str = "jackknife",
) -> xr.Dataset:
    _check_args(method, n_permutations, n_bootstrap, ci)
    if ci_method not in CI_METHODS:
        raise ValueError(f"ci_method must be one of {CI_METHODS}, got {ci_method!r}")
    inp = stimulus_inputs(x, y, covariate, groups, method, dim)
    if ci_method == "jackknife" and inp.feature_c is not None:
        ci_method = "percentile"  # a covariate per feature: its unit sums are not streamed
    jack = ci_method == "jackknife" and int(n_bootstrap) > 0
    # Freedman-Lane: with shared covariates, permute the residual of y on [1, c].
    fitted = np.zeros(inp.n)
    if inp.c is not None:
        fitted = inp.c @ np.linalg.lstsq(inp.c, inp.y, rcond=None)[0]
    t = resampling_tables(
        inp.y,
        fitted,
        inp.codes,
        inp.c,
        int(n_permutations),
        0 if jack else int(n_bootstrap),
        seed,
        block_bytes=BLOCK_BYTES,
        jackknife=jack,
    )

    xs = prepare_features(x, dim, inp.keep, method)
    cs = None if inp.feature_c is None else prepare_features(inp.feature_c, dim, inp.keep, method)
    lazy = xs.chunks is not None or (cs is not None and cs.chunks is not None)
    # numpy inputs take the same blocked pass (the design never exists whole), computed below
    n_cols = sum(t.widths) + t.n_units
    xs = plan_blocks(xs if xs.chunks is not None else xs.chunk(), dim, n_cols, BLOCK_BYTES)
    if cs is not None:
        cs = cs.chunk({d: xs.chunksizes[d] for d in cs.dims})
    args, n_cov = stream_sums(xs, cs, t, dim, BLOCK_BYTES)
    keep_null = bool(return_null) and int(n_permutations) > 0
    outs = xr.apply_ufunc(
        finalize_kernel,
        *args,
        input_core_dims=[core_dims(a) for a in args],
        output_core_dims=[[], [], [], []] + ([["permutation"]] if keep_null else []),
        dask="parallelized",
        output_dtypes=[np.float64] * (5 if keep_null else 4),
        kwargs={
            "n_perm": int(n_permutations),
            "ci": float(ci),
            "keep_null": keep_null,
            "n_cov": n_cov,
        },
        dask_gufunc_kwargs=(
            {"output_sizes": {"permutation": int(n_permutations)}} if keep_null else None
        ),
    )
    order = [d for d in x.dims if d != dim]
    r, p, lo, hi = (a.transpose(*order) for a in outs[:4])
    ds = xr.Dataset(
        {
            "r": r.assign_attrs(long_name=f"{method} correlation"),
            "p": p.assign_attrs(long_name="two-sided permutation p-value"),
            "ci_low": lo.assign_attrs(long_name=f"lower {ci:g} {_CI_NAMES[ci_method]} bound"),
            "ci_high": hi.assign_attrs(long_name=f"upper {ci:g} {_CI_NAMES[ci_method]} bound"),
            "p_fdr": fdr(p).assign_attrs(long_name="Benjamini-Hochberg adjusted p-value"),
            "n": xr.DataArray(np.int64(inp.n), attrs={"long_name": f"{dim}s used"}),
        }
    )
    if keep_null:
        null = outs[4].transpose(*order, "permutation")
        ds["r_null"] = null.assign_attrs(long_name=f"{method} correlation under each permutation")
    ds = ds.assign_coords({k: v.variable for k, v in x.coords.items() if dim not in v.dims})
    ds.attrs = {
        "method": method,
        "dim": dim,
        "n_permutations": int(n_permutations),
        "n_bootstrap": int(n_bootstrap),
        "groups": groups if isinstance(groups, str) else ("none" if groups is None else "array"),
        "permutation_scheme": _PERMUTATION_SCHEME[inp.codes is not None],
        "seed": int(seed),
        "ci": float(ci),
        "ci_method": ci_method,
        "x_nan_policy": "propagate",
        "p_family": "p_fdr: Benjamini-Hochberg over every feature (all dims but "
        f"{dim!r}) of this call",
    }
    return ds.compute() if compute or not lazy else ds


def correlate(
    x: xr.DataArray,
    y: xr.DataArray | np.ndarray,
    method: str = "pearson",
    dim: str = "stimulus",
    n_permutations: int = 1000,
    n_bootstrap: int = 1000,
    groups: str | np.ndarray | xr.DataArray | None = None,
    seed: int = 0,
    ci: float = 0.95,
    compute: bool = False,
    *,
    return_null: bool = False,
    ci_method: str = "jackknife",
) -> xr.Dataset:
    """Correlation of every feature of ``x`` with ``y`` along ``dim``, with resampled statistics.

    Parameters
    ----------
    x : xarray.DataArray
        Neural measure with dim ``dim`` and any others (roi, channel, time); numpy- or
        dask-backed. NaN propagates to the feature's results (see the module notes).
    y : xarray.DataArray or array_like
        One value per stimulus (e.g. ``cube.memorability``); stimuli where it is NaN are
        dropped. It is loaded into memory (it is small).
    method : {"pearson", "spearman"}
        Spearman ranks ``x`` and ``y`` along ``dim`` (average ranks for ties).
    dim : str
        The dim to correlate along.
    n_permutations, n_bootstrap : int
        Permutations of the p-values, and bootstrap samples of the percentile interval
        (``ci_method="percentile"``); 0 skips the p-values or the confidence intervals
        (with either ``ci_method``).
    groups : str, array_like or None
        Name of a coordinate along ``dim`` (e.g. ``"concept"``) or one label per stimulus:
        permutations and bootstrap then resample whole groups (see the module notes).
    seed : int
        Seed of the permutations and bootstrap draws; results do not depend on chunking.
    ci : float
        Coverage of the confidence interval.
    compute : bool
        Compute a dask-backed result before returning it.
    ci_method : {"jackknife", "percentile"}
        ``jackknife`` (default): delete-one-group jackknife of Fisher's z with Student's t
        (see the module notes: it keeps its coverage with few concepts, where the
        percentile interval of the concept bootstrap is too narrow); ``percentile``: the
        percentile interval of ``n_bootstrap`` concept bootstrap samples (the former
        default).
    return_null : bool
        Also return ``r_null``, the correlation under each of the permutations (a
        ``permutation`` dim), for family-wise statistics built on the same permutations
        (:func:`memxr.stats.cluster_test`).

    Returns
    -------
    xarray.Dataset
        ``r``, ``p`` (two-sided permutation p-value, ``(1 + #{|r_perm| >= |r|}) / (1 + P)``),
        ``ci_low``, ``ci_high``, ``p_fdr`` (Benjamini-Hochberg across all other dims of ``x``;
        ``attrs["p_family"]`` says so) and ``n`` (stimuli used); dims of ``x`` without
        ``dim`` and its coords there. Lazy when ``x`` is dask-backed and ``compute`` is
        false. The attrs record the parameters.

    Examples
    --------
    >>> import numpy as np, scipy.stats, xarray as xr
    >>> rng = np.random.default_rng(1)
    >>> y = rng.standard_normal(30)
    >>> x = xr.DataArray(np.c_[y + rng.standard_normal(30), rng.standard_normal(30)],
    ...                  dims=("stimulus", "roi"), coords={"roi": ["IT", "V1"]})
    >>> res = correlate(x, y, method="spearman", n_permutations=199, n_bootstrap=199)
    >>> bool(np.isclose(res.r.sel(roi="IT"), scipy.stats.spearmanr(x[:, 0], y)[0]))
    True
    >>> float(res.p.sel(roi="IT")), bool(res.ci_low.sel(roi="IT") > 0)
    (0.005, True)
    >>> int(res.n), res.attrs["method"]
    (30, 'spearman')
    """
    return _run(
        x,
        y,
        None,
        method=method,
        dim=dim,
        n_permutations=n_permutations,
        n_bootstrap=n_bootstrap,
        groups=groups,
        seed=seed,
        ci=ci,
        compute=compute,
        return_null=return_null,
        ci_method=ci_method,
    )


def partial_correlate(
    x: xr.DataArray,
    y: xr.DataArray | np.ndarray,
    covariates: str | list[str] | xr.DataArray | xr.Dataset | pd.DataFrame | np.ndarray,
    method: str = "pearson",
    dim: str = "stimulus",
    **kw,
) -> xr.Dataset:
    """Correlation of ``x`` and ``y`` controlling for covariates (e.g. the mean V1 response,
    image statistics, category).

    The result is the correlation of the least-squares residuals of ``x`` and ``y`` on
    ``[1, covariates]`` along ``dim`` (of their ranks for Spearman, every covariate ranked
    too), computed from the same one-pass sums as :func:`correlate` (no residual array is
    formed: the sums of ``x`` times each covariate are columns of the same design), with
    weighted residuals for each bootstrap resample and each jackknife deletion (the
    covariate fit is redone without each unit).

    Parameters
    ----------
    x, y, method, dim
        As in :func:`correlate`.
    covariates : str, list of str, xarray.DataArray, xarray.Dataset, pandas.DataFrame or array_like
        Shared by all features: names of coordinates of ``x`` (numeric ones as they are,
        labels such as ``"category"`` one-hot encoded by :func:`memxr.stats.one_hot`); one
        value per stimulus; a DataArray with dims (``dim``, ``covariate``); a Dataset of
        per-stimulus variables; a DataFrame of numeric columns in the stimuli's order or
        indexed by stimulus id (joined on ``x``'s ``stimulus_id``); a 2-D array (see
        :func:`memxr.stats.covariate_matrix`). Stimuli where any shared covariate is NaN
        are dropped. Or one covariate broadcast per feature: a
        DataArray with ``dim`` and some of ``x``'s other dims (e.g. a time-resolved V1
        response); NaN in it propagates.
    **kw
        ``n_permutations``, ``n_bootstrap``, ``groups``, ``seed``, ``ci``, ``compute``,
        ``return_null``, ``ci_method`` (the jackknife needs covariates shared by all
        features; a broadcast covariate gets the percentile interval).

    Returns
    -------
    xarray.Dataset
        As :func:`correlate`; ``attrs["covariates"]`` names the covariates. Permutations
        (Freedman-Lane) permute the residual of ``y`` on ``[1, covariates]`` with the
        scheme of :func:`correlate` (with ``groups``: the concept means of the residual
        exchanged among concepts, the deviations within concepts; unknown concepts groups
        of their own) and add it back to the fitted part; the partial correlation is then
        recomputed in each permutation. With a broadcast covariate (whose residual of ``y``
        differs per feature) ``y`` itself is permuted.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> rng = np.random.default_rng(2)
    >>> v1, size = rng.standard_normal((2, 60))
    >>> memo = v1 + size + 0.5 * rng.standard_normal(60)
    >>> it = xr.DataArray(v1 + size + 0.5 * rng.standard_normal(60), dims="stimulus")
    >>> float(correlate(it, memo, n_permutations=0, n_bootstrap=0).r) > 0.6
    True
    >>> res = partial_correlate(it, memo, v1, n_permutations=99, n_bootstrap=0)
    >>> float(res.r) > 0.4
    True
    >>> both = pd.DataFrame({"v1": v1, "size": size})
    >>> res = partial_correlate(it, memo, both, n_permutations=99, n_bootstrap=0)
    >>> abs(float(res.r)) < 0.2, float(res.p) > 0.05, res.attrs["covariates"]
    (True, True, 'v1, size')
    """
    if covariates is None:
        raise ValueError("covariates must not be None; use correlate")
    ds = _run(x, y, covariates, method=method, dim=dim, **_run_kwargs(kw))
    broadcast = is_broadcast(covariates, x, dim)
    if broadcast:
        names = str(getattr(covariates, "name", None) or "array")
    else:
        names = ", ".join(covariate_matrix(covariates, x, dim)["covariate"].values.tolist())
    ds.attrs["covariates"] = names
    ds.attrs["covariate"] = names  # the former attribute name
    ds.attrs["permutation_scheme"] += (
        "; Freedman-Lane (residual of y on the covariates)"
        if not broadcast
        else "; y permuted, covariate broadcast per feature"
    )
    ds["r"].attrs["long_name"] = f"partial {method} correlation"
    return ds


def _run_kwargs(kw: dict) -> dict:
    defaults = {
        "n_permutations": 1000,
        "n_bootstrap": 1000,
        "groups": None,
        "seed": 0,
        "ci": 0.95,
        "compute": False,
        "return_null": False,
        "ci_method": "jackknife",
    }
    unknown = set(kw) - set(defaults)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
    return defaults | kw


def correlation_map(
    cube: xr.Dataset,
    y: str | xr.DataArray | np.ndarray = "memorability",
    method: str = "pearson",
    var: str = "response",
    **kw,
) -> xr.Dataset:
    """Correlation of every channel (and time bin) of a cube's response with ``y``, in one pass.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube (dims stimulus, channel[, time]).
    y : str or array_like
        A stimulus coordinate name (default ``memorability``) or one value per stimulus.
    method : {"pearson", "spearman"}
        As in :func:`correlate`.
    var : str
        The data variable to correlate.
    **kw
        ``n_permutations``, ``n_bootstrap``, ``groups`` (e.g. ``"concept"``), ``seed``,
        ``ci``, ``compute``, ``return_null``, ``ci_method``.

    Returns
    -------
    xarray.Dataset
        As :func:`correlate` with dims (channel[, time]) and the channel coords
        (``channel_id``, ``area``, ``roi_mask`` ...); p_fdr over every channel and time bin.

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_stimulus=20, n_channel=3)
    >>> cube["response"][:, 0] = cube.memorability * 2 + 1
    >>> res = correlation_map(cube, n_permutations=99, n_bootstrap=50)
    >>> res.r.dims, res.channel_id.values.tolist(), float(res.r[0])
    (('channel',), [1, 2, 3], 1.0)
    """
    if var not in cube.data_vars:
        raise ValueError(f"cube has no data variable {var!r}")
    target = cube[y] if isinstance(y, str) else y
    return _run(cube[var], target, None, method=method, dim="stimulus", **_run_kwargs(kw))


def fdr(p: xr.DataArray, dims: str | Sequence[Hashable] | None = None) -> xr.DataArray:
    """Benjamini-Hochberg adjusted p-values over ``dims`` (all dims by default).

    Each combination of the remaining dims is a separate family. NaN p-values are left out
    of their family and stay NaN. Uses :func:`scipy.stats.false_discovery_control`; dask-backed
    input stays lazy (the family dims are brought into one chunk).

    Parameters
    ----------
    p : xarray.DataArray
        p-values in [0, 1].
    dims : str or sequence of str, optional
        Dims over which one family of tests extends.

    Returns
    -------
    xarray.DataArray
        Adjusted p-values, same dims and coords as ``p``.

    Examples
    --------
    >>> import xarray as xr
    >>> p = xr.DataArray([[0.01, 0.04], [0.03, 0.5]], dims=("roi", "time"))
    >>> fdr(p).values.round(3).tolist()
    [[0.04, 0.053], [0.053, 0.5]]
    >>> fdr(p, dims="time").values.round(3).tolist()
    [[0.02, 0.04], [0.06, 0.5]]
    """
    if dims is None:
        family = list(p.dims)
    else:
        family = [dims] if isinstance(dims, str) else list(dims)
    missing = [d for d in family if d not in p.dims]
    if missing:
        raise ValueError(f"fdr: p has no dims {missing} (dims {p.dims})")
    if p.chunks is not None and family:
        p = p.chunk({d: -1 for d in family})
    out = xr.apply_ufunc(
        fdr_kernel,
        p,
        input_core_dims=[family],
        output_core_dims=[family],
        dask="parallelized",
        output_dtypes=[np.float64],
        kwargs={"n_core": len(family)},
        keep_attrs=False,
    )
    out = out.transpose(*p.dims)
    out.name = "p_fdr"
    out.attrs = {"long_name": "Benjamini-Hochberg adjusted p-value"}
    return out
