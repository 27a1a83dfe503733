"""The tasks of :func:`memxr.models.fit_models`: one model on one fold for a block of targets.

:func:`fit_fold` fits one model on one training fold and predicts its test fold;
:func:`fit_block` does so for a block of targets (the observed one and permutations) of one
(feature set, model, time bin, fold), the unit of work sent to a worker; :func:`fold_components`
projects every stimulus on the principal components of one fold's training rows, once per
fold rather than once per permutation (the PCA does not see the target). Every task is a pure
function of its inputs, so it gives the same numbers in-process, on a distributed client or
from the calling process with dask-backed features (dask-ml models).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .estimators import (
    CLASSIFIERS,
    DASK_READY,
    INCREMENTAL,
    RIDGE_ALPHAS,
    make_model,
    make_pca,
    make_scaler,
    ridge_cv_alpha,
)
from .folds import split_labels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldTask:
    feature_set: str
    model: str
    time: int  # index of the time bin, -1 without a time dim
    perm: int  # -1 for the observed targets
    fold: int


@dataclass(frozen=True)
class FitOptions:
    seed: int
    split: str
    q: tuple[float, float]
    grouped: bool
    params: Mapping[str, Mapping[str, Any]]
    epochs: int
    n_components: Mapping[str, int | None] | None = None  # PCA per feature set, in-fold


def is_dask(x: Any) -> bool:
    return hasattr(x, "dask") and hasattr(x, "chunks")


def to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.compute() if is_dask(x) else x)


def _drop_empty_chunks(x: Any) -> Any:
    rows = tuple(c for c in x.chunks[0] if c > 0)
    return x.rechunk({0: rows}) if rows != x.chunks[0] else x


def _rows(x: Any, idx: np.ndarray) -> Any:
    if is_dask(x):
        return _drop_empty_chunks(x[idx])
    return x[idx]


def _as_target(y: np.ndarray, like: Any) -> Any:
    if is_dask(like):
        import dask.array as da

        return da.from_array(y, chunks=(like.chunks[0],))
    return y


def _inner_cv(groups: np.ndarray | None, train: np.ndarray, seed: int) -> Any:
    if groups is None:
        return None
    from sklearn.model_selection import GroupKFold

    g = groups[train]
    k = min(3, int(np.unique(g).size))
    if k < 2:
        return None
    return list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(train, groups=g))


def _scores_out(pipe: Any, x: Any) -> np.ndarray:
    if hasattr(pipe, "decision_function"):
        return to_numpy(pipe.decision_function(x)).ravel()
    return to_numpy(pipe.predict_proba(x))[:, 1]


def _fit_steps(pipe: Any, x_tr: Any, t_tr: Any, name: str, epochs: int) -> None:
    """Fit the dask-ml steps one by one, so that the scaled training rows are reused."""
    scale, model = pipe.named_steps["scale"], pipe.named_steps["model"]
    if "pca" in pipe.named_steps:
        x_tr = pipe.named_steps["pca"].fit_transform(x_tr)
    scaled = scale.fit(x_tr).transform(x_tr)
    if name == "logistic" and is_dask(scaled):
        scaled = scaled.persist()  # dask-glm passes over the training rows at every iteration
    extra = {"classes": [0, 1]} if name == "sgd_clf" else {}
    model.fit(scaled, t_tr, **extra)
    if name in INCREMENTAL:  # further passes of partial_fit over the row chunks
        for _ in range(1, epochs):
            model.partial_fit(scaled, t_tr, **extra)


@dataclass(frozen=True)
class Block:
    """A unit of work: one model on one fold of one feature set (and time bin) for a block of
    targets, ``perms`` (-1 the observed target, ``p >= 0`` the ``p``-th permutation)."""

    feature_set: str
    model: str
    time: int
    fold: int
    perms: tuple[int, ...]


def fold_components(
    x: np.ndarray, time: int, folds: list, fold: int, n_components: int, seed: int
) -> np.ndarray:
    """Every stimulus's features on the principal components of one fold's training rows.

    The PCA of :func:`make_pca`, fit on the training rows of ``folds[fold]`` only (of time bin
    ``time`` when >= 0), then applied to all rows; ``n_components`` is capped at the features
    and training rows. What the ``pca`` step of :func:`make_model` computes inside the fold,
    computed once for all the targets fit on that fold.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(10, 4))
    >>> folds = [(np.arange(6), np.arange(6, 10))]
    >>> fold_components(x, -1, folds, 0, 2, 0).shape
    (10, 2)
    """
    if time >= 0:
        x = x[:, :, time]
    train = folds[fold][0]
    k = int(min(n_components, x.shape[1], len(train)))
    return make_pca(k, seed).fit(x[train]).transform(x)


def fit_block(
    x: Any,
    y_all: np.ndarray,
    groups: np.ndarray | None,
    folds: list,
    block: Block,
    opts: FitOptions,
    prepared: bool = False,
) -> list[tuple[FoldTask, dict[str, np.ndarray]]]:
    """Fit a block of targets on one fold: the outputs of :func:`fit_fold` for each.

    ``y_all`` holds the observed target in row 0 and permutation ``p`` in row ``p + 1``;
    ``prepared``: ``x`` is already this block's (stimulus, feature) matrix (its time bin, or
    its fold's principal components from :func:`fold_components`). Nested parallelism
    (joblib) stays inside the task.
    """
    import joblib

    train, test = folds[block.fold]
    out = []
    with joblib.parallel_config(backend="sequential"):
        for p in block.perms:
            task = FoldTask(block.feature_set, block.model, block.time, p, block.fold)
            res = fit_fold(x, y_all[p + 1], groups, train, test, task, opts, prepared=prepared)
            out.append((task, res))
    return out


def fit_fold(
    x: Any,
    y: np.ndarray,
    groups: np.ndarray | None,
    train: np.ndarray,
    test: np.ndarray,
    task: FoldTask,
    opts: FitOptions,
    *,
    prepared: bool = False,
) -> dict[str, np.ndarray]:
    """Fit one model on one training fold; out-of-fold outputs for the test fold.

    ``prepared``: ``x`` is already the (stimulus, feature) matrix to fit (time bin taken,
    principal components of the training rows computed), so no PCA is fit here.
    """
    n_comp = None
    if not prepared:
        if task.time >= 0:
            x = x[:, :, task.time]
        n_comp = (opts.n_components or {}).get(task.feature_set)
    if n_comp is not None:  # the PCA is fit on the training rows, which are in memory
        x = to_numpy(x)
        n_comp = int(min(n_comp, x.shape[1], len(train)))
    if is_dask(x):
        x = x.rechunk({1: -1})
    name = task.model
    params = dict(opts.params.get(name, {}))
    classifier = name in CLASSIFIERS
    n_test = len(test)
    out = {
        "prediction": np.full(n_test, np.nan),
        "decision": np.full(n_test, np.nan),
        "label": np.full(n_test, np.nan),
    }
    y_tr, y_te = y[train], y[test]
    if classifier:
        lab_tr, lab_te, _ = split_labels(y_tr, y_te, opts.split, opts.q)
        keep_tr, keep_te = np.isfinite(lab_tr), np.isfinite(lab_te)
        train, target = train[keep_tr], lab_tr[keep_tr].astype(np.int64)
        out["label"] = lab_te
        if np.unique(target).size < 2:
            logger.warning("%s: one class only in training fold %d; no prediction", name, task.fold)
            return out
    else:
        keep_te = np.ones(n_test, dtype=bool)
        mu, sd = float(np.mean(y_tr)), float(np.std(y_tr)) or 1.0
        target = (y_tr - mu) / sd
    x_tr = _rows(x, train)
    if name == "ridge" and opts.grouped and "alpha" not in params:
        inner = _inner_cv(groups, train, opts.seed)
        if inner is not None:  # alpha from folds of training concepts, on scaled features
            rows = to_numpy(x_tr)
            if n_comp is not None:
                rows = make_pca(n_comp, opts.seed).fit_transform(rows)
            scaled = make_scaler(False).fit_transform(rows)
            params["alpha"] = ridge_cv_alpha(
                scaled, target, inner, params.pop("alphas", RIDGE_ALPHAS)
            )
    pipe = make_model(
        name, seed=opts.seed, dask_input=is_dask(x), n_components=n_comp, **params
    )
    t_tr = _as_target(target, x_tr)
    if name in DASK_READY:
        _fit_steps(pipe, x_tr, t_tr, name, opts.epochs)
    else:
        pipe.fit(x_tr, t_tr)
    sel = test[keep_te]
    if sel.size:
        x_te = _rows(x, sel)
        pred = to_numpy(pipe.predict(x_te)).ravel().astype(float)
        if classifier:
            out["decision"][keep_te] = _scores_out(pipe, x_te)
        else:
            pred = pred * sd + mu
        out["prediction"][keep_te] = pred
    return out

