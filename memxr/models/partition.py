"""Variance partitioning: what neural features predict of memorability beyond covariates.

:func:`variance_partition` fits three cross-validated ridge regressions of memorability, on
the neural features, on the covariates (image statistics, category dummies ...) and on both,
under the same concept-grouped folds (:func:`memxr.models.make_folds`: no concept in both a
training and a test fold), and splits the explained variance (out-of-fold ``R^2``, pooled
over the folds) into

- ``unique_neural = R2_both - R2_covariates``: what only the neural features predict;
- ``unique_covariates = R2_both - R2_neural``;
- ``shared = R2_neural + R2_covariates - R2_both``: what either predicts.

Each fit standardizes features and target on the training fold and chooses the ridge
alpha by grouped inner folds of the training concepts (:func:`ridge_cv_alpha`), as
:func:`memxr.models.fit_models` does; an alpha per target and fold, from one SVD per fold
for the observed and every permuted target.

``p_unique_neural`` tests ``unique_neural = 0`` (the neural features add nothing to the
covariates) by Freedman-Lane permutations: memorability is split into its least-squares
fit on ``[1, covariates]`` and the residual, the residual is permuted as in
:func:`memxr.stats.correlate` with concepts (concept means of the residual exchanged
among concepts, deviations shuffled within concepts; unknown concepts groups of their own)
and added back to the fit, and ``R2_both - R2_covariates`` is recomputed for every such
target with the whole procedure (folds, inner alpha search). Permuting memorability
itself would test that neither set predicts anything, not what the neural features add.
``p = (1 + #{null >= observed}) / (1 + P)`` (one-sided: unique variance is positive).

Features are loaded into memory (ridge fits need them whole): pass ROI means, reduced
patterns (:mod:`memxr.features`) or their principal components, not every voxel.

Examples
--------
>>> import numpy as np, xarray as xr
>>> rng = np.random.default_rng(0)
>>> concept = np.repeat(np.arange(60), 4)
>>> size = rng.standard_normal(240)
>>> memo = size + 0.5 * rng.standard_normal(60)[concept] + rng.standard_normal(240)
>>> neural = xr.DataArray(np.c_[size, memo - size] + rng.standard_normal((240, 2)),
...                       dims=("stimulus", "feature"))
>>> out = variance_partition(neural, memo, size, groups=concept, n_permutations=19)
>>> row = out.iloc[0]
>>> bool(row.unique_neural > 0.05), bool(row.shared > 0.05), float(row.p_unique_neural)
(True, True, 0.05)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..stats.inputs import covariate_matrix, group_codes
from ..stats.kernels import design_rows, resampling_tables
from .estimators import RIDGE_ALPHAS, ridge_cv_alpha
from .folds import make_folds

__all__ = ["variance_partition"]


def _inner_splits(codes: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    from sklearn.model_selection import GroupKFold

    k = min(3, int(np.unique(codes).size))
    if k < 2:
        return None
    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(codes.size), groups=codes))


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def _ridge_oof(
    x: np.ndarray,
    targets: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    codes: np.ndarray,
    alphas: Sequence[float],
    seed: int,
) -> np.ndarray:
    """Out-of-fold ridge predictions of every target column (alpha per column and fold)."""
    grid = np.asarray(alphas, dtype=float)
    pred = np.full(targets.shape, np.nan)
    for tr, te in folds:
        xtr, xte = _standardize(x[tr], x[te])
        mu, sd = targets[tr].mean(0), targets[tr].std(0)
        sd = np.where(sd > 0, sd, 1.0)
        ytr = (targets[tr] - mu) / sd
        inner = _inner_splits(codes[tr], seed)
        if inner is not None and grid.size > 1:
            best = np.atleast_1d(ridge_cv_alpha(xtr, ytr, inner, grid))
        else:
            best = np.full(targets.shape[1], grid[0])
        index = np.searchsorted(grid, best) if np.all(np.diff(grid) > 0) else np.array(
            [int(np.flatnonzero(grid == b)[0]) for b in best]
        )
        xm = xtr.mean(0)
        u, s, vt = np.linalg.svd(xtr - xm, full_matrices=False)
        shrink = s[:, None] / (s[:, None] ** 2 + grid[None, :])  # (r, alphas)
        uy = u.T @ (ytr - ytr.mean(0))
        coef = shrink[:, index] * uy  # (r, targets)
        fitted = (xte - xm) @ vt.T @ coef + ytr.mean(0)
        pred[te] = fitted * sd + mu
    return pred


def _r2(obs: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Out-of-fold R^2 of every column, pooled over folds (as sklearn's r2_score)."""
    ss_res = ((obs - pred) ** 2).sum(0)
    ss_tot = ((obs - obs.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - ss_res / ss_tot


def _as_matrix(features: xr.DataArray | np.ndarray, dim: str) -> np.ndarray:
    if isinstance(features, xr.DataArray):
        if dim not in features.dims:
            raise ValueError(f"features have no dim {dim!r} (dims {features.dims})")
        other = [d for d in features.dims if d != dim]
        arr = features.transpose(dim, *other).values  # ridge fits need the features whole
        return np.asarray(arr, dtype=np.float64).reshape(arr.shape[0], -1)
    arr = np.asarray(features, dtype=np.float64)
    return arr[:, None] if arr.ndim == 1 else arr.reshape(arr.shape[0], -1)


def variance_partition(
    features: xr.DataArray | np.ndarray,
    y: str | xr.DataArray | np.ndarray,
    covariates,
    *,
    groups: str | np.ndarray | xr.DataArray | None = "concept",
    cv: int | str | tuple = 5,
    n_permutations: int = 100,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    seed: int = 0,
    dim: str = "stimulus",
) -> pd.DataFrame:
    """Unique and shared cross-validated R^2 of neural features and covariates.

    Parameters
    ----------
    features : xarray.DataArray or array_like
        Neural features (``dim`` x features; any other dims are flattened into features).
    y : str, xarray.DataArray or array_like
        Memorability: a coordinate name on ``features`` or one value per stimulus.
    covariates
        Any form :func:`memxr.stats.covariate_matrix` accepts (a DataArray with a
        ``covariate`` dim, a Dataset, a DataFrame keyed by stimulus id, an array).
    groups : str, array_like or None
        Concept per stimulus (coordinate name or labels): grouped folds and permutations.
        ``None`` only with ``cv="random"`` (stimuli then resampled singly).
    cv : int, "grouped", "random" or (kind, n_folds)
        As in :func:`memxr.models.fit_models`.
    n_permutations : int
        Freedman-Lane permutations of ``p_unique_neural`` (0: none).
    alphas : sequence of float
        Ridge alpha grid (features and target standardized in each training fold).
    seed : int
        Folds, inner folds and permutations.
    dim : str
        The stimulus dim.

    Returns
    -------
    pandas.DataFrame
        One row: ``r2_neural``, ``r2_covariates``, ``r2_both``, ``unique_neural``,
        ``unique_covariates``, ``shared``, ``p_unique_neural``, ``n`` (stimuli used: finite
        target, covariates and features), ``n_features``, ``n_covariates``, ``n_folds``,
        ``cv``, ``n_permutations`` and ``p_family`` (which test ``p_unique_neural`` is).
    """
    x = _as_matrix(features, dim)
    n_all = x.shape[0]
    if isinstance(y, str):
        if not isinstance(features, xr.DataArray) or y not in features.coords:
            raise ValueError(f"y: no coordinate {y!r} on the features")
        y = features[y]
    yv = np.asarray(y.values if isinstance(y, xr.DataArray) else y, dtype=np.float64).ravel()
    if yv.size != n_all:
        raise ValueError(f"y must hold one value per {dim} ({n_all}), got {yv.size}")
    like = features if isinstance(features, xr.DataArray) else None
    cmat = covariate_matrix(covariates, like, dim)
    c = cmat.values
    labels = None
    if isinstance(groups, str):
        if like is None or groups not in like.coords:
            raise ValueError(f"groups: no coordinate {groups!r} on the features")
        labels = np.asarray(like[groups].values)
    elif groups is not None:
        labels = np.asarray(groups.values if isinstance(groups, xr.DataArray) else groups)
        if labels.shape != (n_all,):
            raise ValueError(f"groups must hold one label per {dim} ({n_all})")
    valid = np.isfinite(yv) & np.isfinite(c).all(1) & np.isfinite(x).all(1)
    x, c, yv = x[valid], c[valid], yv[valid]
    n = int(valid.sum())
    codes = group_codes(labels[valid]) if labels is not None else np.arange(n)
    folds, kind = make_folds(n, None if labels is None else labels[valid], cv, seed)
    # Freedman-Lane targets: fit on [1, c] plus the residual permuted as in correlate
    design = np.c_[np.ones(n), c]
    fitted = design @ np.linalg.lstsq(design, yv, rcond=None)[0]
    n_perm = int(n_permutations)
    tables = resampling_tables(yv, fitted, codes if labels is not None else None, None,
                               n_perm, 0, seed)  # fmt: skip
    targets = design_rows(tables, 0, n)[0][:, : 1 + n_perm]
    both = np.c_[x, c]
    r2_cov = _r2(targets, _ridge_oof(c, targets, folds, codes, alphas, seed))
    r2_both = _r2(targets, _ridge_oof(both, targets, folds, codes, alphas, seed))
    r2_neural = float(_r2(yv[:, None], _ridge_oof(x, yv[:, None], folds, codes, alphas, seed))[0])
    unique = r2_both - r2_cov
    obs = float(unique[0])
    p = float((1.0 + np.sum(unique[1:] >= obs - 1e-12)) / (1.0 + n_perm)) if n_perm else np.nan
    row = {
        "r2_neural": r2_neural,
        "r2_covariates": float(r2_cov[0]),
        "r2_both": float(r2_both[0]),
        "unique_neural": obs,
        "unique_covariates": float(r2_both[0]) - r2_neural,
        "shared": r2_neural + float(r2_cov[0]) - float(r2_both[0]),
        "p_unique_neural": p,
        "n": n,
        "n_features": int(x.shape[1]),
        "n_covariates": int(c.shape[1]),
        "n_folds": len(folds),
        "cv": kind,
        "n_permutations": n_perm,
        "p_family": "one test: unique_neural > 0 (Freedman-Lane, residual of memorability on "
        "the covariates permuted " + ("by concept" if labels is not None else "by stimulus")
        + ")",
    }
    return pd.DataFrame([row])
