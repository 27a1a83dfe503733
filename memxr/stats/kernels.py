"""NumPy kernels of :mod:`memxr.stats` (arrays in, arrays out).

- :func:`resampling_tables` draws the permutation and bootstrap tables from a seed (one entry per
  stimulus or group and resample), and :func:`design_rows` generates any row block of the
  resampled design from them, so the design never exists whole;
- :func:`common_sums` sums the design's ``y`` side, :func:`finalize_kernel` turns the
  one-pass sums into the observed, permutation and bootstrap correlations, ``p`` and the CI
  (from the bootstrap, or from the delete-one-unit jackknife: the per-unit sums are columns
  of the same design, :func:`jackknife_units`); :func:`partial_from_sums` is the (partial)
  correlation of those sums on any number of shared covariates,
  :func:`resampled_correlations` and :func:`jackknife_correlations` give every resampled
  correlation for statistics built on them (differences of correlations, latencies);
- :func:`rank_kernel` ranks for Spearman, :func:`fdr_kernel` adjusts p-values
  (Benjamini-Hochberg, NaN left out of the family).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.stats

BLOCK_BYTES = 32 * 2**20
"""Largest (stimuli or features) x design-columns float64 block of the streaming pass."""

_TIE = 1e-12
"""Relative tolerance under which a permutation correlation counts as tied with the observed."""

MAX_UNITS = 200
"""Most jackknife units: beyond it, whole groups (or stimuli) are merged into this many."""


@dataclass(frozen=True, eq=False)
class Tables:
    """Everything the resampled design depends on (small: one entry per stimulus or group)."""

    y: np.ndarray  # (n,) standardized y: the observed column and the bootstrap's y
    fitted: np.ndarray  # (n,) part of y that the permutations keep in place
    group_mean: np.ndarray  # (G,) group means of the permuted part y - fitted
    deviation: np.ndarray  # (n,) deviations of the permuted part from its group mean
    group: np.ndarray  # (n,) group code of each stimulus, 0..G-1
    group_perm: np.ndarray  # (P, G) group g receives the mean of group group_perm[p, g]
    within: np.ndarray | None  # (P, n) within-group permutation; None if all groups singletons
    counts: np.ndarray  # (B, G) bootstrap draw count of each group
    c: np.ndarray | None  # (n, k) standardized covariates shared by all features
    unit: np.ndarray | None = None  # (n,) jackknife unit of each stimulus, 0..K-1

    @property
    def n_perm(self) -> int:
        return self.group_perm.shape[0]

    @property
    def n_boot(self) -> int:
        return self.counts.shape[0]

    @property
    def n_units(self) -> int:
        return 0 if self.unit is None else int(self.unit.max()) + 1

    @property
    def n_cov(self) -> int:
        """Shared covariates (columns of ``c``)."""
        return 0 if self.c is None else int(self.c.shape[1])

    @property
    def widths(self) -> tuple[int, int, int, int]:
        """Column counts of the [y, permutations, w*y], [1, w], [c_j, w*c_j for each
        covariate j] and the jackknife [U, U*y, U*c_j ...] blocks of the design (U: unit
        indicators)."""
        nw = 1 + self.n_boot
        nc = nw * self.n_cov
        nk = self.n_units * (2 + self.n_cov)
        return 1 + self.n_perm + self.n_boot, nw, nc, nk


def jackknife_units(
    group: np.ndarray | None, n: int, seed: int, max_units: int = MAX_UNITS
) -> np.ndarray:
    """The unit of each stimulus for a delete-one-unit jackknife.

    Units are independent: the groups themselves (concepts), or, beyond ``max_units``
    groups, random unions of whole groups (about equally many per unit); without groups,
    random blocks of stimuli. Deleting a union of independent groups is as valid as
    deleting one, and the jackknife variance needs no more than a few hundred units.

    Examples
    --------
    >>> jackknife_units(np.array([0, 0, 1, 2, 2]), 5, seed=0).tolist()
    [0, 0, 1, 2, 2]
    >>> u = jackknife_units(None, 1000, seed=0, max_units=10)
    >>> np.bincount(u).tolist()
    [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    if group is None:
        k = min(int(n), int(max_units))
        return (rng.permutation(n) % k).astype(np.int64)
    group = np.asarray(group)
    n_groups = int(group.max()) + 1
    if n_groups <= max_units:
        return group.astype(np.int64)
    to_unit = rng.permutation(n_groups) % int(max_units)
    return to_unit[group].astype(np.int64)


def pearson(x: np.ndarray, y: np.ndarray, min_n: int = 3) -> np.ndarray:
    """Pearson r along the last axis over the pairs where both values are finite.

    NaN where fewer than ``min_n`` pairs are finite or either side is constant; a float
    (0-d array) for 1-D inputs.

    Examples
    --------
    >>> float(pearson(np.array([1.0, 2, 3, np.nan]), np.array([2.0, 4, 7, 1])))
    0.9933992677987828
    >>> float(pearson(np.ones(5), np.arange(5.0)))
    nan
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(ok, x, 0.0).sum(-1) / n
        my = np.where(ok, y, 0.0).sum(-1) / n
        dx = np.where(ok, x - mx[..., None], 0.0)
        dy = np.where(ok, y - my[..., None], 0.0)
        r = (dx * dy).sum(-1) / np.sqrt((dx * dx).sum(-1) * (dy * dy).sum(-1))
    return np.where(n >= min_n, r, np.nan)


def resampling_tables(
    y: np.ndarray,
    fitted: np.ndarray,
    group: np.ndarray | None,
    c: np.ndarray | None,
    n_perm: int,
    n_boot: int,
    seed: int,
    block_bytes: int = BLOCK_BYTES,
    jackknife: bool = False,
) -> Tables:
    """Draw the permutation and bootstrap tables from ``seed`` (independent streams).

    ``block_bytes`` bounds the memory of the within-group shuffles; the tables do not depend
    on it. ``jackknife`` adds the jackknife units (:func:`jackknife_units`). ``c`` holds the
    standardized shared covariates, one column each (a 1-D ``c`` is one covariate).
    """
    n = y.size
    if c is not None:
        c = np.asarray(c, dtype=np.float64).reshape(n, -1)
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
        step = max(1, block_bytes // (16 * n))
        for lo in range(0, n_perm, step):  # blocks of permutations, bounded memory
            keys = group[base] + rng_perm.random((min(step, n_perm - lo), n))
            within[lo : lo + step, base] = base[np.argsort(keys, axis=-1)]
    counts = rng_boot.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    return Tables(
        y=y,
        fitted=fitted,
        group_mean=group_mean,
        deviation=part - group_mean[group],
        group=group,
        group_perm=group_perm,
        within=within,
        counts=counts.astype(np.min_scalar_type(n_groups)),
        c=c,
        unit=jackknife_units(None if n_groups == n and sizes.max() == 1 else group, n, seed)
        if jackknife
        else None,
    )


def design_rows(t: Tables, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start:stop`` of the design: ``[y, z_1..z_P, w*y, 1, w, (c_j, w*c_j)_j, U, U*y,
    (U*c_j)_j]`` and ``[1, w, U]`` (``c_j``: covariate j; ``U``: jackknife unit indicators,
    when the tables have units).

    Examples
    --------
    >>> t = resampling_tables(np.array([-1.0, 0, 1]), np.zeros(3), None, None, 2, 1, seed=0)
    >>> m, w = design_rows(t, 0, 3)
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
    c = None if t.c is None else t.c[start:stop]
    if c is not None:
        parts += [omega * c[:, j, None] for j in range(t.n_cov)]
    if t.unit is not None:
        u = np.zeros((stop - start, t.n_units))
        u[np.arange(stop - start), t.unit[start:stop]] = 1.0
        parts += [u, u * y]
        if c is not None:
            parts += [u * c[:, j, None] for j in range(t.n_cov)]
        omega = np.concatenate([omega, u], axis=1)
    return np.concatenate(parts, axis=1), omega


def unit_sums(t: Tables) -> list[np.ndarray]:
    """Per jackknife unit: stimuli, sums of ``y`` and ``y**2`` (and, with covariates, the
    sums of ``c_j`` (k, K), ``c_j c_l`` (k, k, K) and ``c_j y`` (k, K)): the ``y`` side of the
    delete-one-unit correlations."""
    k = t.n_units
    out = [np.bincount(t.unit, minlength=k).astype(float)]
    out += [np.bincount(t.unit, weights=v, minlength=k) for v in (t.y, t.y * t.y)]
    if t.c is not None:
        kc = t.n_cov
        per = lambda v: np.bincount(t.unit, weights=v, minlength=k)  # noqa: E731
        ucc = np.empty((kc, kc, k))
        for j in range(kc):
            for m in range(j, kc):
                ucc[j, m] = ucc[m, j] = per(t.c[:, j] * t.c[:, m])
        out += [
            np.stack([per(t.c[:, j]) for j in range(kc)]),
            ucc,
            np.stack([per(t.c[:, j] * t.y) for j in range(kc)]),
        ]
    return out


def common_sums(t: Tables, block_bytes: int = BLOCK_BYTES) -> dict[str, np.ndarray]:
    """Sums of the design that do not involve ``x`` (y side and shared covariate side):
    ``sw``, ``sy``, ``syy`` (columns) and, with ``k`` covariates, ``sc`` (k, [1, w]), ``scc``
    (k, k, [1, w]) and ``scy`` (k, [y, z, w*y])."""
    nz, nw, nc, nk = t.widths
    n, k = t.y.size, t.n_cov
    out = {"sw": np.zeros(nw), "sc": np.zeros((k, nw)), "scc": np.zeros((k, k, nw))}
    out |= {"sy": np.zeros(nz), "syy": np.zeros(nz), "scy": np.zeros((k, nz))}
    step = max(1, block_bytes // (8 * (nz + nw + nc + nk + t.n_units + k * k)))
    for start in range(0, n, step):  # blocks of stimuli, bounded memory
        stop = min(n, start + step)
        m, omega = design_rows(t, start, stop)
        omega = omega[:, :nw]
        zcols = m[:, :nz]
        y = t.y[start:stop, None]
        zeta = np.concatenate(
            [zcols[:, : 1 + t.n_perm], np.broadcast_to(y, (stop - start, t.n_boot))], axis=1
        )
        out["sw"] += omega.sum(0)
        out["sy"] += zcols.sum(0)
        out["syy"] += (zcols * zeta).sum(0)
        if t.c is not None:
            c = t.c[start:stop]
            out["sc"] += c.T @ omega
            cc = (c[:, :, None] * c[:, None, :]).reshape(stop - start, k * k)
            out["scc"] += (cc.T @ omega).reshape(k, k, nw)
            out["scy"] += c.T @ zcols
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


def _pinv(m: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of symmetric (..., k, k) matrices (a covariate constant in a
    resample, or collinear covariates, then contribute nothing)."""
    if m.shape[-1] == 1:
        scale = np.abs(m).max() if m.size else 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.abs(m) > 1e-12 * scale, 1.0 / m, 0.0)
    return np.linalg.pinv(m, rcond=1e-10, hermitian=True)


def covariate_inverse(sw, sc, scc) -> np.ndarray:
    """Pseudo-inverse (..., L, k, k) of the covariates' centred cross-products (times
    ``sw**2``) from the sums of :func:`partial_from_sums` (columns last)."""
    sw, sc, scc = (np.asarray(a, dtype=np.float64) for a in (sw, sc, scc))
    ccc = sw[..., None, None, :] * scc - sc[..., :, None, :] * sc[..., None, :, :]
    return _pinv(np.moveaxis(ccc, -1, -3))


def partial_from_sums(sw, sx, sxx, sy, syy, sxy, cov=None, inv=None) -> np.ndarray:
    """Weighted (partial) Pearson correlations from weighted sums, columns on the last axis.

    ``sw, sx, sxx, sy, syy, sxy`` are the sums of the weights, ``w x``, ``w x**2``, ``w y``,
    ``w y**2`` and ``w x y`` (broadcast together). ``cov`` holds, for ``k`` covariates, the
    sums ``sc`` (..., k, L) of ``w c_j``, ``scc`` (..., k, k, L) of ``w c_j c_l``, ``sxc``
    (..., k, L) of ``w x c_j`` and ``scy`` (..., k, L) of ``w c_j y``; the result is then the
    correlation of the weighted least-squares residuals of ``x`` and ``y`` on ``[1, c]``
    (collinear covariates count once). ``inv`` may hold :func:`covariate_inverse` of the
    same sums, computed once for columns that share their weights.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, y, c = rng.standard_normal((3, 50))
    >>> sums = [np.array([v]) for v in (50.0, x.sum(), x @ x, y.sum(), y @ y, x @ y)]
    >>> bool(np.isclose(partial_from_sums(*sums)[0], np.corrcoef(x, y)[0, 1]))
    True
    >>> cov = [np.array([[c.sum()]]), np.array([[[c @ c]]]), np.array([[x @ c]]),
    ...        np.array([[c @ y]])]
    >>> res = lambda v: v - np.polyval(np.polyfit(c, v, 1), c)
    >>> bool(np.isclose(partial_from_sums(*sums, cov)[0], np.corrcoef(res(x), res(y))[0, 1]))
    True
    """
    if cov is None:
        return _corr(sw, sx, sy, sxx, syy, sxy)
    sc, scc, sxc, scy = (np.asarray(a, dtype=np.float64) for a in cov)
    sw, sx, sxx, sy, syy, sxy = (np.asarray(a, dtype=np.float64) for a in (sw, sx, sxx, sy, syy, sxy))
    # centred cross-products, times sw (the factor cancels in the correlation)
    cxy, cxx, cyy = sw * sxy - sx * sy, sw * sxx - sx * sx, sw * syy - sy * sy
    cxc = sw[..., None, :] * sxc - sx[..., None, :] * sc
    ccy = sw[..., None, :] * scy - sc * sy[..., None, :]
    cxc, ccy = np.moveaxis(cxc, -1, -2), np.moveaxis(ccy, -1, -2)  # (..., L, k)
    if inv is None:
        inv = covariate_inverse(sw, sc, scc)  # (..., L, k, k)
    ax = np.einsum("...k,...kl->...l", cxc, inv)
    num = cxy - (ax * ccy).sum(-1)
    vx = cxx - (ax * cxc).sum(-1)
    vy = cyy - (np.einsum("...k,...kl->...l", ccy, inv) * ccy).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / np.sqrt(np.clip(vx, 0, None) * np.clip(vy, 0, None))


def resampled_correlations(sw, sx, sxx, sy, syy, sxy, *cov, n_perm: int) -> np.ndarray:
    """The observed, ``P`` permutation and ``B`` bootstrap correlations (last axis, in that
    order) from the one-pass sums of :func:`finalize_kernel` (``cov``: its covariate sums)."""
    inv = None
    if cov:  # the inverse once per weight column [1, w], then expanded like the sums
        inv = covariate_inverse(sw, cov[0], cov[1])
        inv = np.moveaxis(_expand(np.moveaxis(inv, -3, -1), n_perm), -1, -3)
    sw, sx, sxx = (_expand(np.asarray(a, dtype=np.float64), n_perm) for a in (sw, sx, sxx))
    sy, syy, sxy = (np.asarray(a, dtype=np.float64) for a in (sy, syy, sxy))
    c = None
    if cov:
        sc, scc, sxc, scy = cov
        sc, scc, sxc = (_expand(np.asarray(a, dtype=np.float64), n_perm) for a in (sc, scc, sxc))
        c = (sc, scc, sxc, np.asarray(scy, dtype=np.float64))
    return np.clip(partial_from_sums(sw, sx, sxx, sy, syy, sxy, c, inv), -1.0, 1.0)


def jackknife_correlations(totals: list, jack: list, n_cov: bool) -> np.ndarray:
    """The correlation without each jackknife unit (last axis: units).

    ``totals`` are the full-sample sums ``sw, sx, sxx, sy, syy, sxy`` (and, with covariates,
    ``sc, scc, sxc, scy`` with their covariate axes); ``jack`` the x-side unit sums ``ux, uxx,
    uxy[, uxc]`` then the y-side ``un, uy, uyy[, uc, ucc, ucy]`` (last axis: units).
    """
    nx = 4 if n_cov else 3
    xs, ys = jack[:nx], jack[nx:]
    n, sx, sxx, sy, syy, sxy = (np.asarray(t, dtype=np.float64)[..., None] for t in totals[:6])
    un, uy, uyy = ys[:3]
    ux, uxx, uxy = xs[:3]
    cov = None
    if n_cov:
        sc, scc, sxc, scy = (np.asarray(t, dtype=np.float64)[..., None] for t in totals[6:10])
        uc, ucc, ucy = ys[3:6]
        cov = (sc - uc, scc - ucc, sxc - xs[3], scy - ucy)
    r = partial_from_sums(n - un, sx - ux, sxx - uxx, sy - uy, syy - uyy, sxy - uxy, cov)
    return np.clip(r, -1.0, 1.0)


def jackknife_interval(obs, deleted, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """``tanh(atanh(r) +- t_{K-1} se)`` from the ``K`` delete-one-unit correlations.

    ``se**2 = (K - 1) / K sum (z_k - mean z)**2`` with ``z_k = atanh(r_k)`` (last axis of
    ``deleted``: units).

    Examples
    --------
    >>> lo, hi = jackknife_interval(np.array(0.3), np.array([0.25, 0.3, 0.35, 0.3]), 0.95)
    >>> bool(lo < 0.3 < hi)
    True
    """
    k = deleted.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.arctanh(np.clip(deleted, -1 + 1e-12, 1 - 1e-12))
        se = np.sqrt((k - 1) / k * ((z - z.mean(-1, keepdims=True)) ** 2).sum(-1))
        centre = np.arctanh(np.clip(obs, -1 + 1e-12, 1 - 1e-12))
        half = scipy.stats.t.ppf((1 + ci) / 2, k - 1) * se
        return np.tanh(centre - half), np.tanh(centre + half)


def finalize_kernel(
    sw,
    sx,
    sxx,
    sy,
    syy,
    sxy,
    *rest,
    n_perm: int,
    ci: float,
    keep_null: bool = False,
    n_cov: int = -1,
):
    """Observed, permutation and bootstrap correlations -> ``r, p, ci_low, ci_high``.

    Inputs end with the design-columns axis: ``[1, w]`` for ``sw, sx, sxx`` (and the
    covariates' ``sc, scc, sxc``), ``[y, z_1..z_P, w*y]`` for ``sy, syy, sxy`` (and ``scy``);
    the covariate sums carry their covariate axes before it (see
    :func:`partial_from_sums`). ``rest`` holds the covariates' four sums when ``n_cov`` is 4
    (``-1``: all of ``rest``), then, for the jackknife interval, the unit sums of
    :func:`jackknife_correlations` (their last axis: units); without them the interval is
    the bootstrap's percentile interval. ``keep_null`` adds a fifth output, the ``P``
    permutation correlations (last axis), for statistics built on the same permutations
    (cluster tests over time).

    Examples
    --------
    >>> x, y = np.array([0.0, 1, 3]), np.array([-1.0, 0, 1])
    >>> r, p, lo, hi = finalize_kernel([3], [x.sum()], [x @ x], [0], [2], [x @ y],
    ...                                 n_perm=0, ci=0.95)
    >>> round(float(r), 4), bool(np.isnan(p))
    (0.982, True)
    """
    n_cov = len(rest) if n_cov < 0 else n_cov
    cov, jack = rest[:n_cov], rest[n_cov:]
    r = resampled_correlations(sw, sx, sxx, sy, syy, sxy, *cov, n_perm=n_perm)
    obs = r[..., 0]
    missing = np.isnan(obs)
    perm = r[..., 1 : n_perm + 1]
    boot = r[..., n_perm + 1 :]
    if n_perm:
        extreme = np.abs(perm) >= (np.abs(obs) * (1 - _TIE))[..., None]
        p = np.where(missing, np.nan, (1.0 + extreme.sum(-1)) / (1.0 + n_perm))
    else:
        p = np.full(obs.shape, np.nan)
    if jack:
        totals = [np.asarray(a, dtype=np.float64)[..., 0] for a in (sw, sx, sxx, sy, syy, sxy)]
        totals += [np.asarray(a, dtype=np.float64)[..., 0] for a in cov]
        deleted = jackknife_correlations(totals, [np.asarray(a, dtype=np.float64) for a in jack],
                                         bool(cov))  # fmt: skip
        lo, hi = jackknife_interval(obs, deleted, ci)
        lo, hi = np.where(missing, np.nan, lo), np.where(missing, np.nan, hi)
    elif boot.shape[-1]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanquantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=-1)
        lo, hi = np.where(missing, np.nan, lo), np.where(missing, np.nan, hi)
    else:
        lo = hi = np.full(obs.shape, np.nan)
    if keep_null:
        return obs, p, lo, hi, np.where(missing[..., None], np.nan, perm)
    return obs, p, lo, hi


def contract_block(x: np.ndarray, m: np.ndarray, axis: int) -> np.ndarray:
    """One block's ``tensordot`` of ``x`` with the design rows ``m`` over ``axis``, that axis
    kept with length 1 (the partial sum of one chunk), in one BLAS thread.

    Dask runs one task per core already: OpenBLAS's own threads (as many again) would spin
    against them (measured: a third of the map's time in ``exec_blas``).

    Examples
    --------
    >>> contract_block(np.ones((3, 2)), np.arange(6.0).reshape(3, 2), axis=0)
    array([[[6., 9.],
            [6., 9.]]])
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return np.expand_dims(np.tensordot(x, m, axes=(axis, 0)), axis)


PAIR_ROWS = 256
"""Stimuli per tile of :func:`contract_pair_block`: a tile and its square stay in cache."""


def contract_pair_block(
    x: np.ndarray, m: np.ndarray, w: np.ndarray, x0: np.ndarray | None = None, *, axis: int
) -> np.ndarray:
    """One block's sums of ``x - x0`` against the design ``m`` and of ``(x - x0)**2``
    against ``w``.

    Returns ``[(x - x0) . m, (x - x0)**2 . w]`` over ``axis`` (concatenated along a last
    axis; ``axis`` kept with length 1): one pass over the block, tile by tile of stimuli,
    each tile cast to float64, shifted by ``x0`` (a row of the features, length 1 along
    ``axis``; default 0) and squared in cache (no block-sized copy), in one BLAS thread (see
    :func:`contract_block`).

    Examples
    --------
    >>> x = np.arange(6.0).reshape(3, 2)
    >>> contract_pair_block(x, np.ones((3, 1)), np.ones((3, 1)), axis=0)[0].tolist()
    [[6.0, 20.0], [9.0, 35.0]]
    >>> contract_pair_block(x, np.ones((3, 1)), np.ones((3, 1)), x[:1], axis=0)[0].tolist()
    [[6.0, 20.0], [6.0, 20.0]]
    """
    from threadpoolctl import threadpool_limits

    xm = np.moveaxis(x, axis, 0)
    shift = None if x0 is None else np.moveaxis(np.asarray(x0, dtype=np.float64), axis, 0)
    s1 = np.zeros((*xm.shape[1:], m.shape[1]))
    s2 = np.zeros((*xm.shape[1:], w.shape[1]))
    with threadpool_limits(limits=1, user_api="blas"):
        for r in range(0, xm.shape[0], PAIR_ROWS):
            tile = np.array(xm[r : r + PAIR_ROWS], dtype=np.float64)
            if shift is not None:
                tile -= shift
            s1 += np.tensordot(tile, m[r : r + PAIR_ROWS], axes=(0, 0))
            np.multiply(tile, tile, out=tile)
            s2 += np.tensordot(tile, w[r : r + PAIR_ROWS], axes=(0, 0))
    return np.expand_dims(np.concatenate([s1, s2], axis=-1), axis)


def rank_kernel(a: np.ndarray) -> np.ndarray:
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


def fdr_kernel(p: np.ndarray, n_core: int) -> np.ndarray:
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
