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
- private numpy kernels (arrays in, arrays out): ``_tables``, ``_design_rows``,
  ``_finalize_kernel``, ``_rank_kernel``, ``_fdr_kernel``;
- public xarray wrappers: :func:`correlate`, :func:`partial_correlate`,
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
- confidence intervals are percentile bootstrap intervals of the correlation (weights are
  bootstrap draw counts, so each resample is a weighted correlation of the same data);
- with ``groups`` (for example the THINGS ``concept``: images of one concept share
  memorability), the bootstrap draws whole groups with replacement, and the permutations are
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

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

__all__ = ["METHODS", "correlate", "correlation_map", "fdr", "partial_correlate"]

METHODS = ("pearson", "spearman")
"""Correlation methods understood by :func:`correlate`."""

_BLOCK_BYTES = 32 * 2**20
"""Largest (stimuli or features) x design-columns float64 block of the streaming pass."""

_RANK_BYTES = 128 * 2**20
"""Largest block holding a whole stimulus axis, for the rank transform."""

_TIE = 1e-12
"""Relative tolerance under which a permutation correlation counts as tied with the observed."""

_COL = "_memxr_col"
_W = "_memxr_w"  # columns [1, w_1 .. w_B]: unit weight, then the bootstrap weights
_Z = "_memxr_z"  # columns [y, z_1 .. z_P, w_1 y .. w_B y]

_PERMUTATION_SCHEME = {
    False: "shuffle of stimuli",
    True: "group means shuffled among groups, deviations shuffled within groups",
}


# -------------------------------------------------------------------------------------------------
# numpy kernels
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Tables:
    """Everything the resampled design depends on (small: one entry per stimulus or group)."""

    y: np.ndarray  # (n,) standardized y: the observed column and the bootstrap's y
    fitted: np.ndarray  # (n,) part of y that the permutations keep in place
    group_mean: np.ndarray  # (G,) group means of the permuted part y - fitted
    deviation: np.ndarray  # (n,) deviations of the permuted part from its group mean
    group: np.ndarray  # (n,) group code of each stimulus, 0..G-1
    group_perm: np.ndarray  # (P, G) group g receives the mean of group group_perm[p, g]
    within: np.ndarray | None  # (P, n) within-group permutation; None if all groups singletons
    counts: np.ndarray  # (B, G) bootstrap draw count of each group
    c: np.ndarray | None  # (n,) standardized covariate shared by all features

    @property
    def n_perm(self) -> int:
        return self.group_perm.shape[0]

    @property
    def n_boot(self) -> int:
        return self.counts.shape[0]

    @property
    def widths(self) -> tuple[int, int, int]:
        """Column counts of the [y, permutations, w*y], [1, w] and [c, w*c] blocks."""
        nw = 1 + self.n_boot
        return 1 + self.n_perm + self.n_boot, nw, nw if self.c is not None else 0


def _tables(
    y: np.ndarray,
    fitted: np.ndarray,
    group: np.ndarray | None,
    c: np.ndarray | None,
    n_perm: int,
    n_boot: int,
    seed: int,
) -> _Tables:
    """Draw the permutation and bootstrap tables from ``seed`` (independent streams)."""
    n = y.size
    rng_perm, rng_boot = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    group = np.arange(n) if group is None else np.asarray(group)
    n_groups = int(group.max()) + 1
    sizes = np.bincount(group, minlength=n_groups)
    part = y - fitted
    group_mean = np.bincount(group, weights=part, minlength=n_groups) / sizes
    itype = np.int32 if max(n, n_groups) < 2**31 else np.int64
    group_perm = rng_perm.permuted(np.tile(np.arange(n_groups, dtype=itype), (n_perm, 1)), axis=1)
    within = None
    if sizes.max() > 1 and n_perm:
        # sort the stimuli by (group, random key): a random order inside each group
        base = np.argsort(group, kind="stable")
        within = np.empty((n_perm, n), dtype=itype)
        step = max(1, _BLOCK_BYTES // (16 * n))
        for lo in range(0, n_perm, step):  # blocks of permutations, bounded memory
            keys = group[base] + rng_perm.random((min(step, n_perm - lo), n))
            within[lo : lo + step, base] = base[np.argsort(keys, axis=-1)]
    counts = rng_boot.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    return _Tables(
        y=y,
        fitted=fitted,
        group_mean=group_mean,
        deviation=part - group_mean[group],
        group=group,
        group_perm=group_perm,
        within=within,
        counts=counts.astype(np.min_scalar_type(n_groups)),
        c=c,
    )


def _design_rows(t: _Tables, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start:stop`` of the design: ``[y, z_1..z_P, w*y, 1, w, c, w*c]`` and ``[1, w]``.

    Examples
    --------
    >>> t = _tables(np.array([-1.0, 0, 1]), np.zeros(3), None, None, 2, 1, seed=0)
    >>> m, w = _design_rows(t, 0, 3)
    >>> m.shape, w.shape, sorted(m[:, 1]) == [-1.0, 0.0, 1.0]
    ((3, 6), (3, 2), True)
    """
    g = t.group[start:stop]
    y = t.y[start:stop, None]
    z = t.fitted[start:stop, None] + t.group_mean[t.group_perm[:, g]].T
    if t.within is not None:
        z = z + t.deviation[t.within[:, start:stop]].T
    w = t.counts[:, g].T.astype(np.float64)
    omega = np.concatenate([np.ones_like(y), w], axis=1)
    parts = [y, z, w * y, omega]
    if t.c is not None:
        parts.append(omega * t.c[start:stop, None])
    return np.concatenate(parts, axis=1), omega


def _common_sums(t: _Tables) -> dict[str, np.ndarray]:
    """Sums of the design that do not involve ``x`` (y side and shared covariate side)."""
    nz, nw, nc = t.widths
    n = t.y.size
    out = {k: np.zeros(nw) for k in ("sw", "sc", "scc")}
    out |= {k: np.zeros(nz) for k in ("sy", "syy", "scy")}
    step = max(1, _BLOCK_BYTES // (8 * (nz + nw + nc)))
    for start in range(0, n, step):  # blocks of stimuli, bounded memory
        stop = min(n, start + step)
        m, omega = _design_rows(t, start, stop)
        zcols = m[:, :nz]
        y = t.y[start:stop, None]
        zeta = np.concatenate(
            [zcols[:, : 1 + t.n_perm], np.broadcast_to(y, (stop - start, t.n_boot))], axis=1
        )
        out["sw"] += omega.sum(0)
        out["sy"] += zcols.sum(0)
        out["syy"] += (zcols * zeta).sum(0)
        if t.c is not None:
            c = t.c[start:stop, None]
            wc = m[:, nz + nw :]
            out["sc"] += wc.sum(0)
            out["scc"] += (wc * c).sum(0)
            out["scy"] += (zcols * c).sum(0)
    return out


def _expand(a: np.ndarray, n_perm: int) -> np.ndarray:
    """Columns [1, w_1..w_B] -> [1 (observed), 1 x P (permutations), w_1..w_B]."""
    idx = np.concatenate([np.zeros(n_perm + 1, dtype=np.intp), np.arange(1, a.shape[-1])])
    return a[..., idx]


def _corr(sw, sa, sb, saa, sbb, sab) -> np.ndarray:
    """Weighted Pearson correlation from weighted sums (all broadcast together)."""
    cov = sw * sab - sa * sb
    var = (sw * saa - sa * sa) * (sw * sbb - sb * sb)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(var)


def _finalize_kernel(sw, sx, sxx, sy, syy, sxy, *cov, n_perm: int, ci: float):
    """Observed, permutation and bootstrap correlations -> ``r, p, ci_low, ci_high``.

    Inputs end with the design-columns axis: ``[1, w]`` for ``sw, sx, sxx`` (and the
    covariate's ``sc, scc, sxc``), ``[y, z_1..z_P, w*y]`` for ``sy, syy, sxy`` (and ``scy``).

    Examples
    --------
    >>> x, y = np.array([0.0, 1, 3]), np.array([-1.0, 0, 1])
    >>> r, p, lo, hi = _finalize_kernel([3], [x.sum()], [x @ x], [0], [2], [x @ y],
    ...                                 n_perm=0, ci=0.95)
    >>> round(float(r), 4), bool(np.isnan(p))
    (0.982, True)
    """
    sw, sx, sxx = (_expand(np.asarray(a, dtype=np.float64), n_perm) for a in (sw, sx, sxx))
    sy, syy, sxy = (np.asarray(a, dtype=np.float64) for a in (sy, syy, sxy))
    r = _corr(sw, sx, sy, sxx, syy, sxy)
    if cov:
        sc, scc, sxc, scy = cov
        sc, scc, sxc = (_expand(np.asarray(a, dtype=np.float64), n_perm) for a in (sc, scc, sxc))
        rxc = _corr(sw, sx, sc, sxx, scc, sxc)
        ryc = _corr(sw, sy, sc, syy, scc, scy)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (r - rxc * ryc) / np.sqrt((1 - rxc**2) * (1 - ryc**2))
    r = np.clip(r, -1.0, 1.0)
    obs = r[..., 0]
    missing = np.isnan(obs)
    perm = r[..., 1 : n_perm + 1]
    boot = r[..., n_perm + 1 :]
    if n_perm:
        extreme = np.abs(perm) >= (np.abs(obs) * (1 - _TIE))[..., None]
        p = np.where(missing, np.nan, (1.0 + extreme.sum(-1)) / (1.0 + n_perm))
    else:
        p = np.full(obs.shape, np.nan)
    if boot.shape[-1]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanquantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=-1)
        lo, hi = np.where(missing, np.nan, lo), np.where(missing, np.nan, hi)
    else:
        lo = hi = np.full(obs.shape, np.nan)
    return obs, p, lo, hi


def _rank_kernel(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis; a slice holding NaN becomes all NaN."""
    return scipy.stats.rankdata(a, axis=-1).astype(np.float64)


def _bh_nan(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg along the last axis over the finite values only (NaN stays NaN)."""
    order = np.argsort(p, axis=-1)  # NaN sorts last
    ps = np.take_along_axis(p, order, axis=-1)
    m = np.isfinite(p).sum(-1, keepdims=True)
    q = np.where(np.isnan(ps), np.inf, ps * m / np.arange(1, p.shape[-1] + 1))
    q = np.minimum.accumulate(q[..., ::-1], axis=-1)[..., ::-1]
    out = np.empty_like(q)
    np.put_along_axis(out, order, np.minimum(q, 1.0), axis=-1)
    out[np.isnan(p)] = np.nan
    return out


def _fdr_kernel(p: np.ndarray, n_core: int) -> np.ndarray:
    """Benjamini-Hochberg over the last ``n_core`` axes (scipy's when no value is NaN)."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0 or n_core == 0:
        return p.copy()
    flat = p.reshape(p.shape[: p.ndim - n_core] + (-1,))
    finite = flat[~np.isnan(flat)]
    if np.any((finite < 0) | (finite > 1)):
        raise ValueError("p-values must lie between 0 and 1")
    if finite.size == flat.size:
        out = scipy.stats.false_discovery_control(flat, axis=-1)
    else:
        out = _bh_nan(flat)
    return out.reshape(p.shape)


# -------------------------------------------------------------------------------------------------
# xarray / dask helpers
# -------------------------------------------------------------------------------------------------


def _values_1d(v, dim: str, n: int, name: str) -> np.ndarray:
    """A per-stimulus vector as float64 numpy (loaded if lazy: it is small)."""
    if isinstance(v, xr.DataArray):
        if v.dims != (dim,):
            raise ValueError(f"{name} must have the single dim {dim!r}, got {v.dims}")
        v = v.values  # small: one value per stimulus
    arr = np.asarray(v, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must hold one value per {dim} ({n}), got shape {arr.shape}")
    return arr


def _group_labels(groups, sources: Sequence, dim: str, n: int) -> np.ndarray | None:
    """Group labels per stimulus from a coordinate name (on x, y or the covariate) or an array."""
    if groups is None:
        return None
    if isinstance(groups, str):
        found = [s[groups] for s in sources if isinstance(s, xr.DataArray) and groups in s.coords]
        if not found:
            raise ValueError(f"groups: no coordinate {groups!r} on x or y")
        labels = found[0]
        if labels.dims != (dim,):
            raise ValueError(f"groups: coordinate {groups!r} must lie along {dim!r}")
        labels = np.asarray(labels.values)  # small: one label per stimulus
    else:
        labels = np.asarray(groups.values if isinstance(groups, xr.DataArray) else groups)
    if labels.shape != (n,):
        raise ValueError(f"groups must hold one label per {dim} ({n}), got shape {labels.shape}")
    return labels


def _standardize(v: np.ndarray, name: str) -> np.ndarray:
    sd = v.std()
    if not sd > 0:
        raise ValueError(f"{name} is constant over the analysed stimuli")
    return (v - v.mean()) / sd


def _feature_chunks(a: xr.DataArray, dim: str, limit: int) -> dict[Hashable, int]:
    """Chunk sizes that keep at most ``limit`` features (non-``dim`` elements) per block."""
    out: dict[Hashable, int] = {}
    budget = max(1, limit)
    for d in reversed([d for d in a.dims if d != dim]):
        current = max(a.chunksizes[d])
        new = min(current, budget)
        if new < current:
            out[d] = new
        budget = max(1, budget // new)
    return out


def _rank(a: xr.DataArray, dim: str) -> xr.DataArray:
    """Average ranks along ``dim`` (the whole axis in one chunk, features split to fit)."""
    if a.chunks is not None:
        chunks = _feature_chunks(a, dim, _RANK_BYTES // (8 * a.sizes[dim]))
        a = a.chunk({**chunks, dim: -1})
    out = xr.apply_ufunc(
        _rank_kernel,
        a,
        input_core_dims=[[dim]],
        output_core_dims=[[dim]],
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    return out.transpose(*a.dims)


def _prepare(a: xr.DataArray, dim: str, keep: np.ndarray | None, method: str) -> xr.DataArray:
    """Bare float64 data of the analysed stimuli, ranked for Spearman, shifted by its first row.

    The shift (exact for correlations) keeps the one-pass sums free of cancellation when a
    feature's mean is large compared with its spread.
    """
    bare = xr.DataArray(a.variable).astype(np.float64)
    if keep is not None:
        bare = bare.isel({dim: keep})
    if method == "spearman":
        bare = _rank(bare, dim)
    return bare - bare.isel({dim: 0})


def _plan(a: xr.DataArray, dim: str, n_cols: int) -> xr.DataArray:
    """Rechunk so that blocks of (features or stimuli) x design columns stay small."""
    limit = max(1, _BLOCK_BYTES // (8 * n_cols))
    chunks: dict[Hashable, int] = _feature_chunks(a, dim, limit)
    if max(a.chunksizes[dim]) > limit:
        chunks[dim] = limit
    return a.chunk(chunks) if chunks else a


def _design_dask(t: _Tables, chunks: Sequence[int]) -> tuple[da.Array, da.Array]:
    """The design as dask arrays whose blocks are generated per stimulus chunk of ``x``."""
    tables = dask.delayed(t, traverse=False)
    nz, nw, nc = t.widths
    full, weights = [], []
    start = 0
    for size in chunks:  # one task per stimulus chunk
        block = dask.delayed(_design_rows, pure=True, nout=2)(tables, start, start + size)
        full.append(da.from_delayed(block[0], (size, nz + nw + nc), dtype=np.float64))
        weights.append(da.from_delayed(block[1], (size, nw), dtype=np.float64))
        start += size
    return da.concatenate(full, axis=0), da.concatenate(weights, axis=0)


def _contract(a: xr.DataArray, m: da.Array, dim: str, col: str) -> xr.DataArray:
    """``sum over dim of a * m[:, k]`` for every column k: one streaming matrix product.

    Each (stimulus chunk, feature chunk) block is multiplied with the matching rows of ``m``
    and the partial products are summed over the stimulus chunks (a tree reduction), so the
    pass reads every block of ``a`` once and holds no whole axis of it.
    """
    data = da.tensordot(a.data, m, axes=(a.get_axis_num(dim), 0))
    return xr.DataArray(data, dims=[d for d in a.dims if d != dim] + [col])


def _cols(s: xr.DataArray, start: int, stop: int, name: str) -> xr.DataArray:
    return s.isel({_COL: slice(start, stop)}).rename({_COL: name})


# -------------------------------------------------------------------------------------------------
# public API
# -------------------------------------------------------------------------------------------------


def _check_args(method: str, n_permutations: int, n_bootstrap: int, ci: float) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, v in (("n_permutations", n_permutations), ("n_bootstrap", n_bootstrap)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci!r}")


@dataclass(frozen=True)
class _Inputs:
    """The analysed stimuli and the small per-stimulus vectors, ready for the tables."""

    n: int
    keep: np.ndarray | None  # indices of the analysed stimuli (None: all)
    y: np.ndarray  # (n,) standardized y (of its ranks for Spearman)
    c: np.ndarray | None  # (n,) standardized shared covariate
    codes: np.ndarray | None  # (n,) group codes
    feature_c: xr.DataArray | None  # covariate broadcast against x


def _inputs(x: xr.DataArray, y, covariate, groups, method: str, dim: str) -> _Inputs:
    """Check the inputs, drop stimuli with NaN y (or shared covariate), rank for Spearman."""
    if not isinstance(x, xr.DataArray):
        raise TypeError(f"x must be an xarray.DataArray, got {type(x).__name__}")
    if dim not in x.dims:
        raise ValueError(f"x has no dim {dim!r} (dims {x.dims})")
    n_all = x.sizes[dim]
    yv = _values_1d(y, dim, n_all, "y")
    labels = _group_labels(groups, [x, y, covariate], dim, n_all)
    shared, feature_c = None, None
    if isinstance(covariate, xr.DataArray) and covariate.dims != (dim,):
        if dim not in covariate.dims or not set(covariate.dims) <= set(x.dims):
            raise ValueError(f"covariate dims {covariate.dims} must include {dim!r} and lie in x's")
        if covariate.sizes[dim] != n_all:
            raise ValueError(f"covariate must hold one value per {dim} ({n_all})")
        feature_c = covariate
    elif covariate is not None:
        shared = _values_1d(covariate, dim, n_all, "covariate")
    valid = np.isfinite(yv) & (np.isfinite(shared) if shared is not None else True)
    n = int(valid.sum())
    if n < 3:
        raise ValueError(f"need at least 3 stimuli with finite y, got {n}")
    codes = None
    if labels is not None:
        codes = pd.factorize(labels[valid], use_na_sentinel=False)[0]
        if codes.max() < 1:
            raise ValueError("groups: the analysed stimuli form a single group")
    rank = scipy.stats.rankdata if method == "spearman" else np.asarray
    return _Inputs(
        n=n,
        keep=None if valid.all() else np.flatnonzero(valid),
        y=_standardize(rank(yv[valid]), "y"),
        c=None if shared is None else _standardize(rank(shared[valid]), "covariate"),
        codes=codes,
        feature_c=feature_c,
    )


def _sums(xs: xr.DataArray, cs: xr.DataArray | None, t: _Tables, dim: str) -> list[xr.DataArray]:
    """Arguments of :func:`_finalize_kernel`: lazy x-side sums and the small y-side sums."""
    nz, nw, nc = t.widths
    full, omega = _design_dask(t, xs.chunksizes[dim])
    s1 = _contract(xs, full, dim, _COL)
    col = {"sw": _W, "sc": _W, "scc": _W, "sy": _Z, "syy": _Z, "scy": _Z}
    common = {k: xr.DataArray(v, dims=col[k]) for k, v in _common_sums(t).items()}
    args = [
        common["sw"],
        _cols(s1, nz, nz + nw, _W),
        _contract(xs * xs, omega, dim, _W),
        common["sy"],
        common["syy"],
        _cols(s1, 0, nz, _Z),
    ]
    if t.c is not None:
        args += [common["sc"], common["scc"], _cols(s1, nz + nw, nz + nw + nc, _W), common["scy"]]
    elif cs is not None:
        s3 = _contract(cs, full, dim, _COL)
        args += [
            _cols(s3, nz, nz + nw, _W),
            _contract(cs * cs, omega, dim, _W),
            _contract(xs * cs, omega, dim, _W),
            _cols(s3, 0, nz, _Z),
        ]
    return args


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
) -> xr.Dataset:
    _check_args(method, n_permutations, n_bootstrap, ci)
    inp = _inputs(x, y, covariate, groups, method, dim)
    # Freedman-Lane: with a shared covariate, permute the residual of y on [1, c].
    fitted = (inp.y @ inp.c / inp.n) * inp.c if inp.c is not None else np.zeros(inp.n)
    t = _tables(inp.y, fitted, inp.codes, inp.c, int(n_permutations), int(n_bootstrap), seed)

    xs = _prepare(x, dim, inp.keep, method)
    cs = None if inp.feature_c is None else _prepare(inp.feature_c, dim, inp.keep, method)
    lazy = xs.chunks is not None or (cs is not None and cs.chunks is not None)
    # numpy inputs take the same blocked pass (the design never exists whole), computed below
    xs = _plan(xs if xs.chunks is not None else xs.chunk(), dim, sum(t.widths))
    if cs is not None:
        cs = cs.chunk({d: xs.chunksizes[d] for d in cs.dims})
    args = _sums(xs, cs, t, dim)
    r, p, lo, hi = xr.apply_ufunc(
        _finalize_kernel,
        *args,
        input_core_dims=[[a.dims[-1]] for a in args],
        output_core_dims=[[], [], [], []],
        dask="parallelized",
        output_dtypes=[np.float64] * 4,
        kwargs={"n_perm": int(n_permutations), "ci": float(ci)},
    )
    order = [d for d in x.dims if d != dim]
    r, p, lo, hi = (a.transpose(*order) for a in (r, p, lo, hi))
    ds = xr.Dataset(
        {
            "r": r.assign_attrs(long_name=f"{method} correlation"),
            "p": p.assign_attrs(long_name="two-sided permutation p-value"),
            "ci_low": lo.assign_attrs(long_name=f"lower {ci:g} percentile bootstrap bound"),
            "ci_high": hi.assign_attrs(long_name=f"upper {ci:g} percentile bootstrap bound"),
            "p_fdr": fdr(p).assign_attrs(long_name="Benjamini-Hochberg adjusted p-value"),
            "n": xr.DataArray(np.int64(inp.n), attrs={"long_name": f"{dim}s used"}),
        }
    )
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
        "x_nan_policy": "propagate",
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
        Resample counts (0 skips the p-values or the confidence intervals).
    groups : str, array_like or None
        Name of a coordinate along ``dim`` (e.g. ``"concept"``) or one label per stimulus:
        permutations and bootstrap then resample whole groups (see the module notes).
    seed : int
        Seed of the permutations and bootstrap draws; results do not depend on chunking.
    ci : float
        Coverage of the percentile bootstrap interval.
    compute : bool
        Compute a dask-backed result before returning it.

    Returns
    -------
    xarray.Dataset
        ``r``, ``p`` (two-sided permutation p-value, ``(1 + #{|r_perm| >= |r|}) / (1 + P)``),
        ``ci_low``, ``ci_high``, ``p_fdr`` (Benjamini-Hochberg across all other dims of ``x``)
        and ``n`` (stimuli used); dims of ``x`` without ``dim`` and its coords there.
        Lazy when ``x`` is dask-backed and ``compute`` is false. The attrs record the
        parameters.

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
    )


def partial_correlate(
    x: xr.DataArray,
    y: xr.DataArray | np.ndarray,
    covariate: xr.DataArray | np.ndarray,
    method: str = "pearson",
    dim: str = "stimulus",
    **kw,
) -> xr.Dataset:
    """Correlation of ``x`` and ``y`` controlling for a covariate (e.g. the mean V1 response).

    The result is the correlation of the least-squares residuals of ``x`` and ``y`` on
    ``[1, covariate]`` along ``dim`` (of their ranks for Spearman), computed from the same
    one-pass sums as :func:`correlate` (no residual array is formed), with weighted residuals
    for each bootstrap resample.

    Parameters
    ----------
    x, y, method, dim
        As in :func:`correlate`.
    covariate : xarray.DataArray or array_like
        One value per stimulus, or a DataArray with ``dim`` and some of ``x``'s other dims
        (broadcast against ``x``, e.g. a time-resolved V1 response). Stimuli where a
        one-dimensional covariate is NaN are dropped; NaN in a broadcast covariate propagates.
    **kw
        ``n_permutations``, ``n_bootstrap``, ``groups``, ``seed``, ``ci``, ``compute``.

    Returns
    -------
    xarray.Dataset
        As :func:`correlate`. Permutations (Freedman-Lane) permute the residual of ``y`` on
        ``[1, covariate]`` and add it back to the fitted part; with a broadcast covariate
        (whose residual of ``y`` differs per feature) ``y`` itself is permuted. The partial
        correlation is then recomputed in each permutation.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(2)
    >>> v1 = rng.standard_normal(60)
    >>> memo = v1 + 0.5 * rng.standard_normal(60)
    >>> it = xr.DataArray(v1 + 0.5 * rng.standard_normal(60), dims="stimulus")
    >>> float(correlate(it, memo, n_permutations=0, n_bootstrap=0).r) > 0.6
    True
    >>> res = partial_correlate(it, memo, v1, n_permutations=99, n_bootstrap=0)
    >>> abs(float(res.r)) < 0.2, float(res.p) > 0.05
    (True, True)
    """
    if covariate is None:
        raise ValueError("covariate must not be None; use correlate")
    ds = _run(x, y, covariate, method=method, dim=dim, **_run_kwargs(kw))
    ds.attrs["covariate"] = str(getattr(covariate, "name", None) or "array")
    ds.attrs["permutation_scheme"] += (
        "; Freedman-Lane (residual of y on the covariate)"
        if not (isinstance(covariate, xr.DataArray) and covariate.dims != (dim,))
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
        ``ci``, ``compute``.

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
        _fdr_kernel,
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
