"""Cross-species decoding of memorability.

:func:`cross_decode` fits a memorability decoder on one species' own images,
maps the other species' responses into its feature space with a ridge map learnt
on the shared images (concept-grouped folds) and scores the decoded predictions;
its p-value refits the decoder on permuted memorability. Public through
:mod:`memxr.bridge`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from .. import align, models
from ..stats.kernels import pearson
from .inputs import (
    drop_repeats,
    fold_groups,
    ids_of,
    pair_name,
    recording_name,
    roi_names,
    roi_pattern,
)

__all__ = ["DECODING_COLUMNS", "DECODING_MODELS", "cross_decode"]

DECODING_COLUMNS = (
    "pair",
    "direction",
    "train_features",
    "test_features",
    "pearson_r",
    "spearman_rho",
    "p",
    "n",
)
"""Leading columns of the ``bridge_decoding`` table."""

DECODING_MODELS = ("linear", "ridge", "svr", "mlp_reg")
"""Regressors of :mod:`memxr.models` usable as the source decoder of :func:`cross_decode`."""


# ----------------------------------------------------------------------------- decoding


def _is_human(cube: xr.Dataset) -> bool:
    return cube.attrs.get("dataset") == "things-fmri"


def _pair_of(source: xr.Dataset, target: xr.Dataset) -> str:
    if _is_human(target) and not _is_human(source):
        return pair_name(target, source)
    return pair_name(source, target)


def _empty_decoding(reason: str, **attrs: Any) -> pd.DataFrame:
    out = pd.DataFrame(columns=list(DECODING_COLUMNS))
    out.attrs = {"reason": reason, **attrs}
    return out


def _matrix(features: xr.DataArray) -> np.ndarray:
    """Features as an in-memory float64 matrix (stimulus, feature)."""
    return np.asarray(features.transpose("stimulus", "feature").values, dtype=np.float64)


def _inner(groups: np.ndarray, seed: int) -> list | None:
    """Concept-grouped inner folds for choosing ridge's alpha (None: too few concepts)."""
    k = min(3, int(np.unique(groups.astype(str)).size))
    if k < 2:
        return None
    return models.make_folds(groups.size, groups, cv=k, seed=seed)[0]


def _fit_decoder(model: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int):
    """The source decoder, fit as :mod:`memxr.models` fits a fold: standardized target;
    ``ridge``'s alpha by :func:`memxr.models.ridge_cv_alpha` over inner concept folds."""
    from sklearn.preprocessing import StandardScaler

    mu, sd = float(y.mean()), float(y.std()) or 1.0
    target = (y - mu) / sd
    params: dict[str, Any] = {}
    inner = _inner(groups, seed) if model == "ridge" else None
    if inner is not None:
        scaled = StandardScaler().fit_transform(x)
        params["alpha"] = models.ridge_cv_alpha(scaled, target, inner)
    pipe = models.make_model(model, seed=seed, **params).fit(x, target)
    return lambda z: pipe.predict(z) * sd + mu


def _mapped(
    xt: np.ndarray, xs: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> np.ndarray:
    """Out-of-fold source-space features of the target images: a ridge map per fold."""
    out = np.full((xt.shape[0], xs.shape[1]), np.nan)
    for train, test in folds:
        mapper = models.make_model("ridge", seed=seed)  # alpha: efficient leave-one-out
        mapper.fit(xt[train], xs[train])
        out[test] = mapper.predict(xt[test])
    return out


def _finite_columns(mat: np.ndarray) -> np.ndarray:
    """Columns (channels) finite on every image; channels with NaN are left out."""
    return np.flatnonzero(np.isfinite(mat).all(axis=0))


def _p_greater(null: np.ndarray, observed: float) -> float:
    """``(1 + #{null >= observed}) / (1 + #null)`` over the finite null values."""
    null = null[np.isfinite(null)]
    if not null.size or not np.isfinite(observed):
        return float("nan")
    return float((1 + np.sum(null >= observed)) / (1 + null.size))


def _cov(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - a.mean()) * (b - b.mean())))


def _decoding_sets(
    source: xr.Dataset, target: xr.Dataset, disjoint_concepts: bool
) -> tuple[xr.Dataset, xr.Dataset, int]:
    """Shared labelled images of the target, and the source's own then shared images.

    The source cube returned holds its ``n_own`` labelled images that the target did
    not see first, then the shared images in the target's order, so that one
    pattern (and one PCA) covers both.
    """
    src, tgt = align.labelled(source), align.labelled(target)
    t_shared, _ = align.align_pair(tgt, src)
    seen = set(ids_of(target))
    concepts = set(np.asarray(t_shared["concept"].values).astype(str).tolist()) - {""}
    src_concepts = np.asarray(src["concept"].values).astype(str)
    own = [
        i
        for i, (s, c) in enumerate(zip(ids_of(src), src_concepts, strict=True))
        if s not in seen and not (disjoint_concepts and c in concepts)
    ]
    shared = pd.Index(ids_of(src)).get_indexer(ids_of(t_shared))
    rows = np.concatenate([np.asarray(own, dtype=np.int64), shared.astype(np.int64)])
    return t_shared, drop_repeats(src).isel(stimulus=rows), len(own)


def cross_decode(
    source: xr.Dataset,
    target: xr.Dataset,
    source_rois: Sequence[str] | str | None = None,
    target_rois: Sequence[str] | str | None = None,
    model: str = "ridge",
    n_splits: int = 5,
    n_permutations: int = 200,
    seed: int = 0,
    *,
    n_components: int | None = None,
    min_images: int = 20,
    disjoint_concepts: bool = False,
    windows: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Decode memorability from one species' responses with the other species' decoder.

    The feature spaces of the two species differ, so a decoder cannot be moved
    across as it is. Instead, for each source ROI and target ROI:

    1. a memorability decoder (``model``, :func:`memxr.models.make_model`) is fit on
       the source ROI's pattern (its channels) over the source's labelled images
       that the target did not see;
    2. on the images both saw, a ridge map from target features to source features
       is learnt in concept-grouped folds (:func:`memxr.models.make_folds`; the
       map's alpha, shared by all source features, by RidgeCV's efficient
       leave-one-out on the training fold: the map never sees memorability); the
       held-out target images are mapped into the source space and decoded by the
       source decoder (whose alpha, for ``ridge``, comes from inner concept-grouped
       folds of its own images);
    3. the pooled out-of-fold predictions are scored against memorability
       (Pearson r, Spearman rho).

    Memorability of the shared images is used nowhere before step 3. Still,
    memorability reaches the predictions through the target features alone: the
    map carries the target's memorability signal into whatever source direction
    happens to covary with it on the training images, and a decoder with no
    memorability code of its own projects it with a random sign. So ``p`` asks
    whether the *source decoder* transfers: memorability is permuted between the
    concepts of the source's own images (:func:`memxr.models.grouped_permutation`),
    the decoder refit each time (alpha chosen again) and applied to the same mapped
    features. The statistic is the covariance of the predictions (in memorability
    units) with memorability, ``p = (1 + #{cov_null >= cov}) / (1 + P)``: Pearson r
    alone cannot tell a decoder that learnt memorability from one that did not when
    the mapped features are dominated by one axis (every decoder then reaches a
    high ``|r|``, with a random sign), while a decoder fit on permuted memorability
    predicts with little spread, so its covariance stays small. ``p_target`` is the plain
    association test (predictions fixed, memorability of the shared images permuted
    between concepts); it is significant whenever the target features carry
    memorability, whatever the source, and is given for reference only.

    Parameters
    ----------
    source, target : xarray.Dataset
        Cubes; the decoder is trained on ``source`` (e.g. a TVSD monkey) and applied
        to ``target`` (e.g. an fMRI subject). A time-resolved cube is averaged over
        each area's window.
    source_rois, target_rois : str or sequence of str, optional
        ROI names; default each cube's default ROIs.
    model : str
        One of :data:`DECODING_MODELS`.
    n_splits : int
        Concept-grouped folds of the map.
    n_permutations : int
        Permutations of memorability among concepts (0: no p-values); each one
        refits the source decoder.
    seed : int
        Seeds the folds, the estimators and the permutations.
    n_components : int, optional
        Reduce each ROI's channels to their first principal components
        (:func:`memxr.features.pattern_features`; fit without memorability).
    min_images : int
        Fewest shared images and fewest source-only images for a meaningful result.
    disjoint_concepts : bool
        Also leave out of the decoder's training set the source images whose concept
        has a shared image (a stricter, across-concept generalisation).
    windows : mapping, optional
        Time windows of a time-resolved cube (default :data:`memxr.reduce.AREA_WINDOWS`).

    Returns
    -------
    pandas.DataFrame
        One row per (source ROI, target ROI): columns :data:`DECODING_COLUMNS`
        (``direction`` "<source subject>-><target subject>", ``train_features`` the
        source ROI, ``test_features`` the target ROI, ``n`` the shared images
        scored), then ``model``, ``n_train`` (source-only images of the decoder),
        ``n_splits``, ``n_permutations``, ``chance_mean`` (mean null r), ``p_target``,
        ``source_n_channels``, ``target_n_channels``. Empty, with
        ``attrs["reason"]``, when fewer than ``min_images`` images are shared or
        source-only, or the shared images span fewer concepts than ``n_splits``.
        Each ROI's pattern is loaded into memory (images x channels).

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> h = example_cube(n_stimulus=10)
    >>> m = example_cube(n_stimulus=10).assign_attrs(dataset="tvsd-normmua", subject="monkeyN")
    >>> out = cross_decode(m, h, "A", "A")
    >>> len(out), out.attrs["reason"]
    (0, 'only 10 labelled images are shared (need 20)')
    """
    if model not in DECODING_MODELS:
        raise ValueError(f"model must be one of {DECODING_MODELS}, got {model!r}")
    n_permutations = int(n_permutations)
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    direction = f"{recording_name(source)}->{recording_name(target)}"
    info = {"direction": direction, "pair": _pair_of(source, target)}
    t_sh, s_sel, n_own = _decoding_sets(source, target, disjoint_concepts)
    n_sh = t_sh.sizes["stimulus"]
    if n_sh < min_images:
        return _empty_decoding(
            f"only {n_sh} labelled images are shared (need {min_images})", **info
        )
    if n_own < min_images:
        return _empty_decoding(
            f"only {n_own} labelled images of {recording_name(source)} are not in {recording_name(target)}"
            f" (need {min_images})",
            **info,
        )
    groups = fold_groups(t_sh)
    if np.unique(groups).size < n_splits:
        return _empty_decoding(
            f"the shared images span {np.unique(groups).size} concepts, fewer than"
            f" n_splits={n_splits}",
            **info,
        )
    folds = models.make_folds(n_sh, groups, cv=int(n_splits), seed=seed)[0]
    own_groups = fold_groups(s_sel.isel(stimulus=slice(0, n_own)))
    y = np.asarray(t_sh["memorability"].values, dtype=float)
    y_own = np.asarray(s_sel["memorability"].values[:n_own], dtype=float)
    rng_own, rng_target = (np.random.default_rng(q) for q in np.random.SeedSequence(seed).spawn(2))
    own_perms = [models.grouped_permutation(own_groups, rng_own) for _ in range(n_permutations)]
    perms = [models.grouped_permutation(groups, rng_target) for _ in range(n_permutations)]
    s_rois, t_rois = roi_names(source, source_rois), roi_names(target, target_rois)
    rows = []
    t_cache: dict[str, np.ndarray] = {}
    for s_roi in s_rois:
        both = _matrix(roi_pattern(s_sel, s_roi, windows, n_components, seed))
        cols = _finite_columns(both)
        own, shared = both[:n_own, cols], both[n_own:, cols]
        decoders = [
            _fit_decoder(model, own, y_own if k < 0 else y_own[own_perms[k]], own_groups, seed)
            for k in range(-1, len(own_perms))
        ]
        for t_roi in t_rois:
            if t_roi not in t_cache:
                xt = _matrix(roi_pattern(t_sh, t_roi, windows, n_components, seed))
                t_cache[t_roi] = xt[:, _finite_columns(xt)]
            xt = t_cache[t_roi]
            mapped = _mapped(xt, shared, folds, seed)
            pred = decoders[0](mapped)
            r = float(pearson(pred, y))
            null_pred = [dec(mapped) for dec in decoders[1:]]
            null_r = np.array([float(pearson(q, y)) for q in null_pred])
            null_cov = np.array([_cov(q, y) for q in null_pred])
            null_target = np.array([float(pearson(pred, y[p])) for p in perms])
            rows.append(
                {
                    "pair": info["pair"],
                    "direction": direction,
                    "train_features": s_roi,
                    "test_features": t_roi,
                    "pearson_r": r,
                    "spearman_rho": float(scipy.stats.spearmanr(pred, y).statistic),
                    "p": _p_greater(null_cov, _cov(pred, y)),
                    "n": int(n_sh),
                    "model": model,
                    "n_train": int(n_own),
                    "n_splits": int(n_splits),
                    "n_permutations": int(n_permutations),
                    "chance_mean": float(np.nanmean(null_r)) if null_r.size else np.nan,
                    "p_target": _p_greater(null_target, r),
                    "source_n_channels": int(cols.size),
                    "target_n_channels": int(xt.shape[1]),
                }
            )
    out = pd.DataFrame(rows)
    out.attrs = {**info, "seed": int(seed), "shared_ids": ids_of(t_sh)}
    return out
