"""Cross-species decoding of memorability.

:func:`cross_decode` fits a memorability decoder on one species' own images (of concepts
the other species' shared images do not show), maps the other species' responses into
its feature space with a ridge map learnt on the shared images (concept-grouped folds)
and scores the decoded predictions. Its p-value is an intersection-union test of the two
ways the decoder can fail to transfer (see :func:`cross_decode`), each with a scale-free
statistic. Public through :mod:`memxr.bridge`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from .. import align, models
from ..schema import trials_label
from ..stats.inputs import group_codes
from ..stats.kernels import fdr_kernel, pearson
from .inputs import (
    drop_repeats,
    fold_groups,
    ids_of,
    of_split,
    pair_name,
    recording_name,
    reuse,
    roi_names,
    roi_pattern,
    rois_with_channels,
    set_hash,
    windows_key,
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


def _matrix(features: xr.DataArray, reduced: bool = False) -> np.ndarray:
    """Features as an in-memory matrix (stimulus, feature): float64, or with ``reduced``
    (a PCA comes first) float32 when the cube is (half the memory of a whole-brain ROI;
    the randomized PCA works in the data's precision and its scores are cast to float64)."""
    values = features.transpose("stimulus", "feature").data
    keep32 = reduced and np.dtype(values.dtype) == np.float32
    return np.asarray(values if keep32 else values.astype(np.float64))


def _inner(groups: np.ndarray, seed: int) -> list | None:
    """Concept-grouped inner folds for choosing ridge's alpha (None: too few concepts)."""
    k = min(3, int(group_codes(groups).max()) + 1)
    if k < 2:
        return None
    return models.make_folds(groups.size, groups, cv=k, seed=seed)[0]


def _ridge_decoders(x: np.ndarray, targets: np.ndarray, groups: np.ndarray, seed: int):
    """Ridge decoders of every column of ``targets`` at once, as :mod:`memxr.models` fits one.

    Standardized features; each column standardized, with its own alpha chosen over inner
    concept-grouped folds (:func:`memxr.models.ridge_cv_alpha`: one SVD per fold for every
    column, so that each permuted target gets its alpha chosen exactly as the observed
    one). Returns a function mapping features (m, p) to predictions (m, columns).
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    mu, sd = targets.mean(0), targets.std(0)
    t = (targets - mu) / np.where(sd > 0, sd, 1.0)
    inner = _inner(groups, seed)
    if inner is not None:
        alphas = np.atleast_1d(models.ridge_cv_alpha(xs, t, inner))
    else:  # a single concept: the efficient leave-one-out of RidgeCV, per column
        from sklearn.linear_model import RidgeCV

        cv = RidgeCV(alphas=models.RIDGE_ALPHAS, alpha_per_target=True).fit(xs, t)
        alphas = np.broadcast_to(np.asarray(cv.alpha_, dtype=float), (t.shape[1],))
    u, sv, vt = np.linalg.svd(xs - xs.mean(0), full_matrices=False)
    ut = u.T @ (t - t.mean(0))
    coef = np.empty((xs.shape[1], t.shape[1]))
    for a in np.unique(alphas):
        cols = np.flatnonzero(alphas == a)
        coef[:, cols] = vt.T @ ((sv / (sv**2 + a))[:, None] * ut[:, cols])

    def predict(z: np.ndarray) -> np.ndarray:
        return (scaler.transform(z) - xs.mean(0)) @ coef * sd + mu

    return predict


def _other_decoders(
    model: str, x: np.ndarray, targets: np.ndarray, groups: np.ndarray, seed: int
):
    """One decoder of another :data:`DECODING_MODELS` per column of ``targets`` (refit)."""
    fitted = []
    for k in range(targets.shape[1]):
        y = targets[:, k]
        mu, sd = float(y.mean()), float(y.std()) or 1.0
        pipe = models.make_model(model, seed=seed).fit(x, (y - mu) / sd)
        fitted.append((pipe, mu, sd))

    def predict(z: np.ndarray) -> np.ndarray:
        return np.stack([pipe.predict(z) * sd + mu for pipe, mu, sd in fitted], axis=1)

    return predict


def _target_folds(
    xt: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    n_components: int | None,
) -> list[tuple]:
    """Per fold, the ridge map's own steps fitted on the target's training images: its PCA
    (when asked) and standardization, with the transformed training and test features.

    They do not depend on the source area mapped to, so one target ROI's are fitted once
    and shared by every source area (at real size the PCA of a whole-brain fMRI ROI is
    most of the decoding's time). Without a PCA nothing is kept: the standardized copies
    of every voxel would be as large as the patterns for every fold.
    """
    out = []
    for train, test in folds:
        k = None if n_components is None else int(min(n_components, xt.shape[1], train.size))
        mapper = models.make_model("ridge", seed=seed, n_components=k)  # alpha: efficient LOO
        if k is None:
            out.append((train, test, None, None, mapper))
            continue
        pca, scale = mapper.named_steps["pca"], mapper.named_steps["scale"]
        pca.set_params(copy=False)  # centre the fold's own copy in place (memory of an ROI)
        f_train = np.asarray(pca.fit_transform(xt[train]), dtype=np.float64)
        f_test = np.asarray(pca.transform(xt[test]), dtype=np.float64)
        f_train, f_test = scale.fit_transform(f_train), scale.transform(f_test)
        out.append((train, test, f_train, f_test, mapper[-1]))
    return out


def _mapped(
    xt: np.ndarray | None, n: int, xs: np.ndarray, prepared: list[tuple]
) -> np.ndarray:
    """Out-of-fold source-space features of the ``n`` target images: a ridge map per fold
    (with the target's PCA, when asked, fit inside the fold; :func:`_target_folds`). The
    target's patterns ``xt`` are needed only without a PCA (None otherwise)."""
    from sklearn.base import clone

    out = np.full((n, xs.shape[1]), np.nan)
    for train, test, f_train, f_test, mapper in prepared:
        if f_train is None:  # the whole pipeline on every channel
            fitted = clone(mapper).fit(xt[train], xs[train])
            out[test] = fitted.predict(xt[test]).reshape(test.size, -1)
        else:
            fitted = clone(mapper).fit(f_train, xs[train])
            out[test] = fitted.predict(f_test).reshape(test.size, -1)
    return out


def _finite_columns(mat: np.ndarray) -> np.ndarray:
    """Columns (channels) finite on every image; channels with NaN are left out."""
    return np.flatnonzero(np.isfinite(mat).all(axis=0))


def _p_greater(null: np.ndarray, observed: float) -> float:
    """``(1 + #{null >= observed}) / (1 + #null)`` over the finite null values."""
    null = null[np.isfinite(null)]
    if not null.size or not np.isfinite(observed):
        return float("nan")
    return float((1 + np.sum(null >= observed - 1e-12 * abs(observed))) / (1 + null.size))


def _columns_r(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of every column of ``pred`` (n, k) with ``y`` (n,)."""
    return np.asarray(pearson(pred.T, np.broadcast_to(y, (pred.shape[1], y.size))), dtype=float)


def _decoding_sets(
    source: xr.Dataset, target: xr.Dataset, disjoint_concepts: bool, split: str | None
) -> tuple[xr.Dataset, xr.Dataset, int]:
    """Shared labelled images of the target, and the source's own then shared images.

    Both cubes are first restricted to the ``split`` (None: every image). The source cube
    returned holds its ``n_own`` labelled images that the target did not see (and, with
    ``disjoint_concepts``, of no concept among the shared images) first, then the shared
    images in the target's order.
    """
    src, tgt = align.labelled(of_split(source, split)), align.labelled(of_split(target, split))
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
    disjoint_concepts: bool = True,
    split: str | None = "train",
    windows: Mapping[str, tuple[float, float]] | None = None,
    cache: MutableMapping | None = None,
) -> pd.DataFrame:
    """Decode memorability from one species' responses with the other species' decoder.

    The feature spaces of the two species differ, so a decoder cannot be moved
    across as it is. Instead, for each source ROI and target ROI:

    1. a memorability decoder (``model``, :func:`memxr.models.make_model`) is fit on
       the source ROI's pattern (its channels) over the source's labelled images
       that the target did not see, of concepts that none of the shared images shows
       (``disjoint_concepts``): a decoder that learnt each concept's memorability from
       its other images would otherwise "decode" the shared images by recognising
       their concepts;
    2. on the images both saw, a ridge map from target features to source features
       is learnt in concept-grouped folds (:func:`memxr.models.make_folds`; the
       map's alpha, shared by all source features, by RidgeCV's efficient
       leave-one-out on the training fold: the map never sees memorability); the
       held-out target images are mapped into the source space and decoded by the
       source decoder (whose alpha, for ``ridge``, comes from inner concept-grouped
       folds of its own images);
    3. the pooled out-of-fold predictions are scored against memorability
       (Pearson r, Spearman rho).

    Memorability of the shared images is used nowhere before step 3. The decoder
    transfers only if both hold: the source decoder reads memorability from the source
    responses, and the target responses, mapped, carry it along the decoder's axis.
    Each failure is a null hypothesis with its own exact permutation test on the same
    scale-free statistic, Pearson r of predictions and memorability:

    - ``p_source`` (the decoder learnt nothing): memorability is permuted between the
      concepts of the source's own images (:func:`memxr.models.grouped_permutation`),
      and the decoder refit each time exactly as the observed one (``ridge``: alpha
      chosen again by the same inner folds, all permutations in one SVD per fold) and
      applied to the same mapped features;
    - ``p_target`` (the target responses carry no memorability along that axis): the
      predictions fixed, memorability of the shared images permuted between concepts.

    ``p = max(p_source, p_target)`` (an intersection-union test): under either null it
    is a valid p-value, so its false-positive rate is at most nominal whichever way the
    transfer fails. (The earlier statistic, the covariance of predictions with
    memorability, was not calibrated: a decoder refit on permuted memorability picks a
    much larger alpha and predicts with little spread, so the test degenerated into a
    test of the sign of r.) ``p_fdr`` adjusts ``p`` over the rows of the call
    (Benjamini-Hochberg; ``p_family`` names the family).

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
        Permutations of each test (0: no p-values); ``p_source`` refits the source
        decoder for each.
    seed : int
        Seeds the folds, the estimators and the permutations.
    n_components : int, optional
        Reduce each ROI's channels to their first principal components: the source's
        PCA fit on the decoder's own images, the target's inside each fold of the map
        (no PCA ever sees held-out images).
    min_images : int
        Fewest shared images and fewest source-only images for a meaningful result.
    disjoint_concepts : bool
        Train the decoder only on source images whose concept has no shared image
        (default; False: every source-only image, for comparison).
    split : {"train", "test"} or None
        Use only the images of this split in both cubes: the train images (single
        trials, default) or the test images (means of their repeats; few); None: all
        (mixing single trials and repeat means).
    windows : mapping, optional
        Time windows of a time-resolved cube (default :data:`memxr.reduce.AREA_WINDOWS`).
    cache : dict, optional
        Kept by the caller across calls on the same cube objects (one human with several
        monkeys): with ``n_components``, a target ROI's per-fold PCA scores on the same
        shared images are computed once (:func:`memxr.bridge.inputs.reuse`; small: images
        x components per fold). The results are those without it.

    Returns
    -------
    pandas.DataFrame
        One row per (source ROI, target ROI): columns :data:`DECODING_COLUMNS`
        (``direction`` "<source subject>-><target subject>", ``train_features`` the
        source ROI, ``test_features`` the target ROI, ``n`` the shared images
        scored, ``p`` the intersection-union p-value), then ``p_source``, ``p_target``,
        ``p_fdr``, ``p_family``, ``trials``, ``model``, ``n_train`` (source-only images of
        the decoder), ``disjoint_concepts``, ``n_splits``, ``n_permutations``,
        ``chance_mean`` (mean r of the refit decoders), ``source_n_channels``,
        ``target_n_channels``. Empty, with ``attrs["reason"]``, when fewer than
        ``min_images`` images are shared or source-only, or the shared images span fewer
        concepts than ``n_splits``. Each ROI's pattern is loaded into memory (images x
        channels).

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> h = example_cube(n_stimulus=10)
    >>> m = example_cube(n_stimulus=10).assign_attrs(dataset="tvsd-normmua", subject="monkeyN")
    >>> out = cross_decode(m, h, "A", "A")
    >>> len(out), out.attrs["reason"]
    (0, 'only 10 labelled images of the train split are shared (need 20)')
    """
    if model not in DECODING_MODELS:
        raise ValueError(f"model must be one of {DECODING_MODELS}, got {model!r}")
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    n_permutations = int(n_permutations)
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    direction = f"{recording_name(source)}->{recording_name(target)}"
    info = {"direction": direction, "pair": _pair_of(source, target)}
    t_sh, s_sel, n_own = _decoding_sets(source, target, disjoint_concepts, split)
    n_sh = t_sh.sizes["stimulus"]
    where = f" of the {split} split" if split else ""
    if n_sh < min_images:
        return _empty_decoding(
            f"only {n_sh} labelled images{where} are shared (need {min_images})", **info
        )
    if n_own < min_images:
        other = " (of other concepts)" if disjoint_concepts else ""
        return _empty_decoding(
            f"only {n_own} labelled images{where} of {recording_name(source)} are not in"
            f" {recording_name(target)}{other} (need {min_images})",
            **info,
        )
    groups = fold_groups(t_sh)
    n_groups = int(group_codes(groups).max()) + 1
    if n_groups < n_splits:
        return _empty_decoding(
            f"the shared images span {n_groups} concepts, fewer than"
            f" n_splits={n_splits}",
            **info,
        )
    folds = models.make_folds(n_sh, groups, cv=int(n_splits), seed=seed)[0]
    own_groups = fold_groups(s_sel.isel(stimulus=slice(0, n_own)))
    y = np.asarray(t_sh["memorability"].values, dtype=float)
    y_own = np.asarray(s_sel["memorability"].values[:n_own], dtype=float)
    rng_own, rng_target = (np.random.default_rng(q) for q in np.random.SeedSequence(seed).spawn(2))
    own_perms = models.grouped_permutations(own_groups, rng_own, n_permutations)
    perms = models.grouped_permutations(groups, rng_target, n_permutations)
    targets = np.stack([y_own] + [y_own[p] for p in own_perms], axis=1)
    s_rois = rois_with_channels(s_sel, roi_names(source, source_rois))
    t_rois = rois_with_channels(t_sh, roi_names(target, target_rois))
    if not s_rois or not t_rois:
        return _empty_decoding("no ROI with channels on one side (reliability filter?)", **info)
    trials = trials_label(target, split)
    rows = []
    # the target ROIs' per-fold scores, for every source area and (with a cache) every call;
    # without a PCA they hold the patterns themselves: for this call only
    t_store = cache if cache is not None and n_components is not None else {}
    t_key = ("decoding target", set_hash(ids_of(t_sh)), seed, n_splits, windows_key(windows))

    def prepare_target(t_roi: str) -> tuple:
        xt = _matrix(roi_pattern(t_sh, t_roi, windows), reduced=n_components is not None)
        cols = _finite_columns(xt)
        if cols.size < xt.shape[1]:  # a copy only when a channel must go
            xt = xt[:, cols]
        # with a PCA only the per-fold scores are kept, not the patterns
        kept = None if n_components is not None else xt
        return kept, xt.shape[1], _target_folds(xt, folds, seed, n_components)

    for s_roi in s_rois:
        both = _matrix(roi_pattern(s_sel, s_roi, windows), reduced=n_components is not None)
        cols = _finite_columns(both)
        own, shared = both[:n_own, cols], both[n_own:, cols]
        del both
        if n_components is not None:  # the source PCA sees the decoder's images only
            pca = models.make_pca(min(n_components, own.shape[1], own.shape[0]), seed).fit(own)
            own = np.asarray(pca.transform(own), dtype=np.float64)
            shared = np.asarray(pca.transform(shared), dtype=np.float64)
        if model == "ridge":
            decode = _ridge_decoders(own, targets, own_groups, seed)
        else:
            decode = _other_decoders(model, own, targets, own_groups, seed)
        for t_roi in t_rois:
            xt, n_t_channels, prepared = reuse(
                t_store,
                target,
                (*t_key, t_roi, n_components),
                lambda t_roi=t_roi: prepare_target(t_roi),
            )
            mapped = _mapped(xt, n_sh, shared, prepared)
            preds = decode(mapped)
            pred = preds[:, 0]
            r = float(pearson(pred, y))
            null_r = _columns_r(preds[:, 1:], y) if n_permutations else np.zeros(0)
            null_target = _columns_r(y[perms].T, pred) if n_permutations else np.zeros(0)
            p_source, p_target = _p_greater(null_r, r), _p_greater(null_target, r)
            rows.append(
                {
                    "pair": info["pair"],
                    "direction": direction,
                    "train_features": s_roi,
                    "test_features": t_roi,
                    "pearson_r": r,
                    "spearman_rho": float(scipy.stats.spearmanr(pred, y).statistic),
                    "p": max(p_source, p_target),
                    "n": int(n_sh),
                    "p_source": p_source,
                    "p_target": p_target,
                    "trials": trials,
                    "model": model,
                    "n_train": int(n_own),
                    "disjoint_concepts": bool(disjoint_concepts),
                    "n_splits": int(n_splits),
                    "n_permutations": int(n_permutations),
                    "chance_mean": float(np.nanmean(null_r)) if null_r.size else np.nan,
                    "source_n_channels": int(cols.size),
                    "target_n_channels": int(n_t_channels),
                }
            )
    out = with_fdr(pd.DataFrame(rows), f"the {len(rows)} ROI pairs of {direction}")
    out.attrs = {**info, "seed": int(seed), "shared_ids": ids_of(t_sh)}
    return out


def with_fdr(table: pd.DataFrame, family: str) -> pd.DataFrame:
    """``p_fdr`` (Benjamini-Hochberg of ``p`` over every row) and ``p_family`` naming them,
    placed after ``p_target``."""
    if table.empty:
        return table
    out = table.drop(columns=["p_fdr", "p_family"], errors="ignore")
    at = list(out.columns).index("p_target") + 1 if "p_target" in out else len(out.columns)
    out.insert(at, "p_fdr", fdr_kernel(out["p"].to_numpy(float), 1))
    out.insert(at + 1, "p_family", f"p_fdr: Benjamini-Hochberg over {family}")
    return out
