"""Memorability models on neural features, with concept-grouped cross-validation.

Each feature set (``(stimulus, feature[, time])``, see :mod:`memxr.features`)
is fit by each model in cross-validation; scores are computed on the pooled
out-of-fold predictions with scikit-learn and SciPy on NumPy arrays, and
compared with a permutation null built inside the same cross-validation.

Models
------
Regressors (predict memorability): ``linear`` (LinearRegression), ``ridge``
(alpha chosen inside the training fold: by inner folds of its concepts with
grouped CV, :func:`ridge_cv_alpha`; by RidgeCV's leave-one-out with random
CV), ``svr`` (SVR), ``mlp_reg`` (MLPRegressor), ``sgd_reg`` (dask-ml
``Incremental`` around SGDRegressor).
The target is standardized on the training fold, predictions are returned in
memorability units.

Classifiers (high vs low memorability): ``svc`` (SVC), ``mlp_clf``
(MLPClassifier), ``logistic`` (dask-ml ``LogisticRegression(solver="lbfgs")``),
``sgd_clf`` (dask-ml ``Incremental`` around SGDClassifier, logistic loss).
Labels come from the training fold only: above its median (``split="median"``),
or its extremes (``split="quantile"``, ``q=(0.25, 0.75)``: at or below the
lower quantile, at or above the upper one; the middle is left out of training
and test). Test stimuli are labelled with the training-fold thresholds.

Every model standardizes the features inside its pipeline, fit on the training
fold only.

Cross-validation
----------------
``GroupKFold`` by concept by default (stimuli of unknown concept, ``""``, are
groups of their own); ``cv="random"`` asks for a plain shuffled ``KFold``, and
every result row then says ``cv="random"``. Stimuli with NaN memorability are
dropped first (their count is the ``n_dropped`` column).

Scores
------
Regressors: Pearson r, Spearman rho and R^2 of the pooled out-of-fold
predictions against the observed memorability. Classifiers: accuracy of the
pooled out-of-fold classes; ROC AUC of the decision values (``decision_function``
or ``predict_proba``) per test fold, averaged over folds (decision values of
different fold models do not share a scale).

Permutations
------------
The null distribution refits the whole cross-validation on permuted targets.
With grouped CV whole concepts trade their memorability values: concepts of
the same size exchange their blocks of values (shuffled within the block), so
the concept structure of the target is kept; concepts whose size no other
concept shares are pooled and shuffled at the stimulus level. With random CV
the stimuli are permuted. The p-value is ``(1 + #{null >= observed}) / (1 +
n_permutations)`` of Pearson r (regressors) or ROC AUC (classifiers).

Distribution
------------
Scikit-learn models run one task per (feature set, model, time bin,
permutation, fold) through joblib's ``dask`` backend on the active
:class:`distributed.Client` (or sequentially in-process without one); the
tasks are pure functions of their inputs, so the numbers are identical either
way. dask-ml's own estimators (``logistic``; ``sgd_*`` on dask-backed
features) are distributed algorithms themselves: their folds run from the
calling process and each fit is a dask computation on the cluster, streaming
dask-backed features chunk by chunk (``sgd_*``: ``partial_fit`` over row
chunks, ``epochs`` passes; for pattern matrices larger than memory).
``logistic`` persists its scaled training rows in the cluster's memory, since
dask-glm passes over them at every iteration.

Examples
--------
>>> import numpy as np, xarray as xr
>>> rng = np.random.default_rng(0)
>>> mem = np.repeat(rng.normal(size=12), 3) + 0.3 * rng.normal(size=36)
>>> X = xr.DataArray(mem[:, None] + 0.5 * rng.normal(size=(36, 2)), dims=("stimulus", "feature"),
...                  coords={"concept": ("stimulus", np.repeat([f"c{i}" for i in range(12)], 3)),
...                          "memorability": ("stimulus", mem)})
>>> res = fit_models({"roi": X}, "memorability", models=("linear",), cv=3,
...                  n_permutations=9, client=False)
>>> row = res.table.iloc[0]
>>> row.cv, int(row.n_folds), bool(row.pearson_r > 0.5), float(row.chance_p)
('grouped', 3, True, 0.1)
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .schema import text_coord

__all__ = [
    "CLASSIFIERS",
    "MODELS",
    "REGRESSORS",
    "ModelResults",
    "fit_models",
    "grouped_permutation",
    "make_folds",
    "make_model",
    "ridge_cv_alpha",
    "split_labels",
]

logger = logging.getLogger(__name__)

REGRESSORS = ("linear", "ridge", "svr", "mlp_reg", "sgd_reg")
"""Model names that predict memorability."""
CLASSIFIERS = ("svc", "mlp_clf", "logistic", "sgd_clf")
"""Model names that predict high vs low memorability."""
MODELS = REGRESSORS + CLASSIFIERS
"""Every model name :func:`make_model` knows."""
_DASK_READY = ("logistic", "sgd_reg", "sgd_clf")
_INCREMENTAL = ("sgd_reg", "sgd_clf")
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 9))
"""The alpha grid of ``ridge`` (features and target are standardized)."""
_CHUNK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------- models


def _scaler(dask_input: bool):
    if dask_input:
        from dask_ml.preprocessing import StandardScaler
    else:
        from sklearn.preprocessing import StandardScaler
    return StandardScaler()


def _estimator(name: str, seed: int, inner_cv: Any, params: dict) -> Any:
    from sklearn import linear_model, neural_network, svm

    if name == "linear":
        return linear_model.LinearRegression(**params)
    if name == "ridge":
        if "alpha" in params:
            return linear_model.Ridge(**params)
        return linear_model.RidgeCV(
            alphas=params.pop("alphas", RIDGE_ALPHAS), cv=inner_cv, **params
        )
    if name == "svr":
        return svm.SVR(**params)
    if name == "svc":
        return svm.SVC(**{"random_state": seed, **params})
    if name in ("mlp_reg", "mlp_clf"):
        cls = neural_network.MLPRegressor if name == "mlp_reg" else neural_network.MLPClassifier
        defaults = {"hidden_layer_sizes": (32,), "alpha": 1e-2, "max_iter": 2000}
        return cls(**{**defaults, "random_state": seed, **params})
    if name == "logistic":
        from dask_ml.linear_model import LogisticRegression

        return LogisticRegression(**{"solver": "lbfgs", **params})
    if name in _INCREMENTAL:
        from dask_ml.wrappers import Incremental

        if name == "sgd_reg":
            inner = linear_model.SGDRegressor(**{"random_state": seed, **params})
        else:
            inner = linear_model.SGDClassifier(
                **{"loss": "log_loss", "random_state": seed, **params}
            )
        return Incremental(inner, shuffle_blocks=True, random_state=seed)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def make_model(
    name: str,
    *,
    seed: int = 0,
    inner_cv: Any = None,
    dask_input: bool = False,
    **params: Any,
):
    """A scikit-learn pipeline: feature standardization then the named estimator.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`.
    seed : int
        Random state of the estimators that have one.
    inner_cv : int, iterable of (train, test) or None
        ``ridge`` only: the inner cross-validation of
        :class:`~sklearn.linear_model.RidgeCV` choosing alpha (None: its
        efficient leave-one-out). With an ``alpha`` parameter, ``ridge`` is a
        plain :class:`~sklearn.linear_model.Ridge` (as :func:`fit_models` uses
        it after choosing alpha by grouped inner folds).
    dask_input : bool
        Standardize with dask-ml's scaler, which keeps dask arrays lazy.
    **params
        Passed to the estimator (for ``sgd_*``, to the wrapped SGD model).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``scale`` and ``model``.

    Examples
    --------
    >>> make_model("ridge").named_steps["model"].alphas[:2]
    (0.01, 0.1)
    >>> type(make_model("logistic")[-1]).__module__
    'dask_ml.linear_model.glm'
    """
    from sklearn.pipeline import Pipeline

    est = _estimator(name, seed, inner_cv, dict(params))
    return Pipeline([("scale", _scaler(dask_input)), ("model", est)])


# ------------------------------------------------------------------- labels and folds


def split_labels(
    y_train: np.ndarray,
    y_test: np.ndarray,
    split: str = "median",
    q: tuple[float, float] = (0.25, 0.75),
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """High (1) / low (0) memorability labels with thresholds from the training fold only.

    Parameters
    ----------
    y_train, y_test : numpy.ndarray
        Memorability of the training and test stimuli.
    split : {"median", "quantile"}
        ``median``: 1 above the training median, else 0. ``quantile``: 0 at or
        below the training ``q[0]`` quantile, 1 at or above ``q[1]``, NaN
        (left out) in between.
    q : (float, float)
        Quantiles of the ``quantile`` split.

    Returns
    -------
    labels_train, labels_test : numpy.ndarray
        Float arrays of 0, 1 and NaN.
    thresholds : (float, float)
        The (low, high) thresholds used (equal for the median split).

    Examples
    --------
    >>> tr, te, thr = split_labels(np.array([1., 2., 3., 4.]), np.array([2.4, 2.6, 9.]))
    >>> te.tolist(), thr
    ([0.0, 1.0, 1.0], (2.5, 2.5))
    >>> split_labels(np.arange(5.), np.array([0.5, 2., 3.5]), "quantile", (0.25, 0.75))[1]
    array([ 0., nan,  1.])
    """
    y_train = np.asarray(y_train, dtype=float)
    y_test = np.asarray(y_test, dtype=float)
    if split == "median":
        thr = float(np.median(y_train))

        def lab(v):
            return (v > thr).astype(float)

        return lab(y_train), lab(y_test), (thr, thr)
    if split == "quantile":
        lo_q, hi_q = (float(v) for v in q)
        if not 0 < lo_q < hi_q < 1:
            raise ValueError(f"q must be two quantiles 0 < low < high < 1, got {q!r}")
        lo, hi = (float(v) for v in np.quantile(y_train, [lo_q, hi_q]))

        def lab(v):
            return np.where(v >= hi, 1.0, np.where(v <= lo, 0.0, np.nan))

        return lab(y_train), lab(y_test), (lo, hi)
    raise ValueError(f"split must be 'median' or 'quantile', got {split!r}")


def _group_codes(groups: np.ndarray) -> np.ndarray:
    """Integer group codes; unknown labels ("" or None) become groups of their own."""
    labels = np.asarray(groups, dtype=object)
    unknown = np.array([g is None or (isinstance(g, float) and g != g) or g == "" for g in labels])
    codes = pd.factorize(pd.Series(labels.astype(str)))[0].astype(np.int64)
    if unknown.any():
        codes[unknown] = codes.max(initial=-1) + 1 + np.arange(unknown.sum())
    return codes


def make_folds(
    n: int,
    groups: np.ndarray | None = None,
    cv: int | str = 5,
    seed: int = 0,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Cross-validation folds: concept-grouped by default, random only on request.

    Parameters
    ----------
    n : int
        Number of stimuli.
    groups : array of str or int, optional
        Concept per stimulus (``""`` = unknown, a group of its own); required
        unless ``cv`` is ``"random"`` or ``("random", k)``.
    cv : int, "grouped", "random", or (str, int)
        Number of grouped folds, or the kind of CV with 5 folds, or a
        ``(kind, n_folds)`` pair.
    seed : int
        Shuffles the groups (grouped) or stimuli (random) before splitting.

    Returns
    -------
    folds : list of (train, test)
        Sorted integer index arrays.
    kind : str
        ``"grouped"`` or ``"random"``.

    Examples
    --------
    >>> folds, kind = make_folds(6, np.array(list("aabbcc")), cv=3)
    >>> kind, [t.tolist() for _, t in folds]
    ('grouped', [[4, 5], [2, 3], [0, 1]])
    >>> make_folds(6, cv=("random", 2))[1]
    'random'
    """
    from sklearn.model_selection import GroupKFold, KFold

    kind, k = _cv_kind(cv)
    if kind == "random":
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(n)))
    else:
        if groups is None:
            raise ValueError(
                "grouped cross-validation needs groups (a concept per stimulus); "
                "pass cv='random' to split stimuli at random instead"
            )
        codes = _group_codes(groups)
        n_groups = int(np.unique(codes).size)
        if n_groups < k:
            raise ValueError(f"{k} grouped folds need at least {k} concepts, got {n_groups}")
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(n), groups=codes))
    return [(np.sort(tr), np.sort(te)) for tr, te in folds], kind


def _cv_kind(cv: int | str | tuple) -> tuple[str, int]:
    if isinstance(cv, tuple) and len(cv) == 2:
        kind, k = cv
    elif isinstance(cv, str):
        kind, k = cv, 5
    elif isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        kind, k = "grouped", int(cv)
    else:
        raise ValueError(f"cv must be an int, 'grouped', 'random' or (kind, n_folds), got {cv!r}")
    if kind not in ("grouped", "random") or int(k) < 2:
        raise ValueError(f"cv must be 'grouped' or 'random' with at least 2 folds, got {cv!r}")
    return kind, int(k)


def grouped_permutation(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An index permutation that moves memorability between whole concepts.

    ``y[p]`` gives each concept the values of another concept of the same size
    (in shuffled order); concepts whose size no other concept has are pooled
    and shuffled at the stimulus level.

    Parameters
    ----------
    groups : array
        Concept (or integer group code) per stimulus.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    numpy.ndarray
        Indices ``p`` with ``sorted(p) == range(n)``.

    Examples
    --------
    >>> g = np.array([0, 0, 1, 1, 2, 2])
    >>> p = grouped_permutation(g, np.random.default_rng(1))
    >>> sorted(p.tolist()) == list(range(6)), all(len(set(g[p][g == c])) == 1 for c in (0, 1, 2))
    (True, True)
    """
    codes = pd.factorize(pd.Series(np.asarray(groups).astype(str)))[0]
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    members = np.split(order, bounds)
    by_size: dict[int, list[int]] = defaultdict(list)
    for g, m in enumerate(members):
        by_size[len(m)].append(g)
    perm = np.empty(len(codes), dtype=np.intp)
    pooled: list[np.ndarray] = []
    for size in sorted(by_size):
        gs = by_size[size]
        if len(gs) < 2:
            pooled.extend(members[g] for g in gs)
            continue
        for dst, src in zip(gs, rng.permutation(gs), strict=True):
            perm[members[dst]] = rng.permutation(members[src])
    if pooled:
        idx = np.concatenate(pooled)
        perm[idx] = rng.permutation(idx)
    return perm


def ridge_cv_alpha(
    x: np.ndarray,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float] = RIDGE_ALPHAS,
) -> float:
    """The ridge alpha of least mean squared error over inner folds (one SVD per fold).

    Equivalent to ``GridSearchCV(Ridge(), {"alpha": alphas}, cv=splits,
    scoring="neg_mean_squared_error")`` (intercept fit, error averaged over
    folds) at the cost of one SVD per fold for the whole grid.

    Parameters
    ----------
    x : numpy.ndarray
        Features (n, p) of the training fold.
    y : numpy.ndarray
        Target (n,).
    splits : sequence of (train, test)
        Inner folds, as index arrays into ``x``.
    alphas : sequence of float
        The grid; ties go to the first.

    Returns
    -------
    float

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 3)); y = x[:, 0] + 0.1 * rng.normal(size=40)
    >>> splits = [(np.arange(20, 40), np.arange(20)), (np.arange(20), np.arange(20, 40))]
    >>> ridge_cv_alpha(x, y, splits, [0.01, 100.0])
    0.01
    """
    grid = np.asarray(alphas, dtype=float)
    err = np.zeros(grid.size)
    for tr, va in splits:
        xm, ym = x[tr].mean(0), y[tr].mean()
        u, sv, vt = np.linalg.svd(x[tr] - xm, full_matrices=False)
        shrink = sv[:, None] / (sv[:, None] ** 2 + grid[None, :])  # (k, n_alphas)
        coef = vt.T @ (shrink * (u.T @ (y[tr] - ym))[:, None])  # (p, n_alphas)
        pred = (x[va] - xm) @ coef + ym
        err += np.mean((pred - y[va][:, None]) ** 2, axis=0)
    return float(grid[int(np.argmin(err))])


# ---------------------------------------------------------------------- one fold


@dataclass(frozen=True)
class _Task:
    feature_set: str
    model: str
    time: int  # index of the time bin, -1 without a time dim
    perm: int  # -1 for the observed targets
    fold: int


@dataclass(frozen=True)
class _Options:
    seed: int
    split: str
    q: tuple[float, float]
    grouped: bool
    params: Mapping[str, Mapping[str, Any]]
    epochs: int


def _is_dask(x: Any) -> bool:
    return hasattr(x, "dask") and hasattr(x, "chunks")


def _to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.compute() if _is_dask(x) else x)


def _drop_empty_chunks(x: Any) -> Any:
    rows = tuple(c for c in x.chunks[0] if c > 0)
    return x.rechunk({0: rows}) if rows != x.chunks[0] else x


def _rows(x: Any, idx: np.ndarray) -> Any:
    if _is_dask(x):
        return _drop_empty_chunks(x[idx])
    return x[idx]


def _as_target(y: np.ndarray, like: Any) -> Any:
    if _is_dask(like):
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
        return _to_numpy(pipe.decision_function(x)).ravel()
    return _to_numpy(pipe.predict_proba(x))[:, 1]


def _fit_steps(pipe: Any, x_tr: Any, t_tr: Any, name: str, epochs: int) -> None:
    """Fit the dask-ml steps one by one, so that the scaled training rows are reused."""
    scale, model = pipe.named_steps["scale"], pipe.named_steps["model"]
    scaled = scale.fit(x_tr).transform(x_tr)
    if name == "logistic" and _is_dask(scaled):
        scaled = scaled.persist()  # dask-glm passes over the training rows at every iteration
    extra = {"classes": [0, 1]} if name == "sgd_clf" else {}
    model.fit(scaled, t_tr, **extra)
    if name in _INCREMENTAL:  # further passes of partial_fit over the row chunks
        for _ in range(1, epochs):
            model.partial_fit(scaled, t_tr, **extra)


def _fit_fold(
    x: Any,
    y: np.ndarray,
    groups: np.ndarray | None,
    train: np.ndarray,
    test: np.ndarray,
    task: _Task,
    opts: _Options,
) -> dict[str, np.ndarray]:
    """Fit one model on one training fold; out-of-fold outputs for the test fold."""
    if task.time >= 0:
        x = x[:, :, task.time]
    if _is_dask(x):
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
            scaled = _scaler(False).fit_transform(_to_numpy(x_tr))
            params["alpha"] = ridge_cv_alpha(
                scaled, target, inner, params.pop("alphas", RIDGE_ALPHAS)
            )
    pipe = make_model(name, seed=opts.seed, dask_input=_is_dask(x), **params)
    t_tr = _as_target(target, x_tr)
    if name in _DASK_READY:
        _fit_steps(pipe, x_tr, t_tr, name, opts.epochs)
    else:
        pipe.fit(x_tr, t_tr)
    sel = test[keep_te]
    if sel.size:
        x_te = _rows(x, sel)
        pred = _to_numpy(pipe.predict(x_te)).ravel().astype(float)
        if classifier:
            out["decision"][keep_te] = _scores_out(pipe, x_te)
        else:
            pred = pred * sd + mu
        out["prediction"][keep_te] = pred
    return out


def _run_task(x, y, groups, train, test, task: _Task, opts: _Options):
    """One joblib task: nested parallelism stays inside the task."""
    import joblib

    with joblib.parallel_config(backend="sequential"):
        return task, _fit_fold(x, y, groups, train, test, task, opts)


# ---------------------------------------------------------------------- scores


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _regression_scores(obs: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr
    from sklearn.metrics import r2_score

    ok = np.isfinite(pred)
    o, p = obs[ok], pred[ok]
    r = _pearson(o, p)
    rho = float(spearmanr(o, p).statistic) if np.isfinite(r) else float("nan")
    return {
        "pearson_r": r,
        "spearman_rho": rho,
        "r2": float(r2_score(o, p)) if o.size > 1 else float("nan"),
        "n_stimuli": int(ok.sum()),
    }


def _fold_auc(label: np.ndarray, decision: np.ndarray, fold: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    aucs = []
    for f in np.unique(fold[fold >= 0]):
        m = (fold == f) & np.isfinite(label) & np.isfinite(decision)
        if np.unique(label[m]).size == 2:
            aucs.append(roc_auc_score(label[m], decision[m]))
    return float(np.mean(aucs)) if aucs else float("nan")


def _classification_scores(
    label: np.ndarray, pred: np.ndarray, decision: np.ndarray, fold: np.ndarray
) -> dict[str, float]:
    ok = np.isfinite(label) & np.isfinite(pred)
    return {
        "accuracy": float(np.mean(pred[ok] == label[ok])) if ok.any() else float("nan"),
        "roc_auc": _fold_auc(label, decision, fold),
        "n_stimuli": int(ok.sum()),
    }


def _primary(model: str) -> str:
    return "roc_auc" if model in CLASSIFIERS else "pearson_r"


# ---------------------------------------------------------------------- results


@dataclass
class ModelResults:
    """Scores, out-of-fold predictions and permutation nulls of :func:`fit_models`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per feature set x model (x time bin): ``feature_set, model,
        kind, cv, n_stimuli, n_dropped, n_folds[, time], pearson_r,
        spearman_rho, r2, accuracy, roc_auc, metric, label_split, chance_mean,
        chance_p, n_permutations, noise_ceiling, fraction_of_ceiling``. ``metric`` names
        the score behind ``chance_*`` and ``fraction_of_ceiling``.
    predictions : xarray.Dataset or None
        ``prediction`` (memorability for regressors, class for classifiers),
        ``decision`` (classifier score), ``label`` (class of each test
        stimulus, NaN when left out) over ``(feature_set, model, stimulus[,
        time])``, with ``observed`` memorability and the ``fold`` of each stimulus.
    null : xarray.DataArray
        The permutation scores, ``(feature_set, model[, time], permutation)``.
    params : dict
        The settings of the run (JSON-serializable).
    """

    table: pd.DataFrame
    predictions: xr.Dataset | None
    null: xr.DataArray
    params: dict = field(default_factory=dict)

    def to_xarray(self) -> xr.Dataset:
        """Everything as one Dataset: table columns over ``(feature_set, model[, time])``.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> x = xr.DataArray(np.random.default_rng(0).normal(size=(12, 2)),
        ...                  dims=("stimulus", "feature"))
        >>> res = fit_models(x, np.arange(12.0), models=("linear",), cv="random",
        ...                  n_permutations=0, client=False)
        >>> sorted(res.to_xarray()["pearson_r"].dims)
        ['feature_set', 'model']
        """
        index = ["feature_set", "model"] + (["time"] if "time" in self.table else [])
        ds = self.table.set_index(index).to_xarray()
        for name in list(ds.variables):
            if ds[name].dtype == object:
                ds[name] = ds[name].copy(
                    data=text_coord(ds[name].values.ravel()).reshape(ds[name].shape)
                )
        ds = ds.assign_coords(
            feature_set=text_coord(ds.feature_set.values), model=text_coord(ds.model.values)
        )
        ds["null"] = self.null
        if self.predictions is not None:
            ds = xr.merge([ds, self.predictions], compat="override", join="outer")
        ds.attrs = {"memxr_step": "fit_models", "params": json.dumps(self.params)}
        return ds


# ---------------------------------------------------------------------- inputs


def _as_feature_sets(features: Mapping[str, xr.DataArray] | xr.DataArray) -> dict:
    if isinstance(features, xr.DataArray):
        features = {str(features.name or "features"): features}
    if not isinstance(features, Mapping) or not features:
        raise TypeError("features must be a DataArray or a non-empty dict of DataArrays")
    out = {}
    for name, da in features.items():
        if not isinstance(da, xr.DataArray):
            raise TypeError(f"feature set {name!r} is a {type(da).__name__}, not a DataArray")
        if da.dims == ("stimulus",):
            da = da.expand_dims("feature", axis=1)
        extra = set(da.dims) - {"stimulus", "feature", "time"}
        if "stimulus" not in da.dims or "feature" not in da.dims or extra:
            raise ValueError(
                f"feature set {name!r} has dims {da.dims}; expected (stimulus, feature[, time])"
            )
        rest = ("time",) if "time" in da.dims else ()
        out[str(name)] = da.transpose("stimulus", "feature", *rest)
    timed = {n for n, d in out.items() if "time" in d.dims}
    if timed and len(timed) != len(out):
        raise ValueError(
            f"feature sets {sorted(timed)} are time-resolved and the others are not; "
            "fit them in separate calls"
        )
    ref = next(iter(out.values()))
    for name, da in out.items():
        if da.sizes["stimulus"] != ref.sizes["stimulus"]:
            raise ValueError(f"feature set {name!r} has another number of stimuli than the first")
        if "stimulus_id" in da.coords and "stimulus_id" in ref.coords:
            if not np.array_equal(da["stimulus_id"].values, ref["stimulus_id"].values):
                raise ValueError(f"feature set {name!r} holds other stimuli (stimulus_id)")
        if timed and not np.array_equal(da["time"].values, ref["time"].values):
            raise ValueError(f"feature set {name!r} has other time bins than the first")
    return out


def _target(y: Any, ref: xr.DataArray) -> tuple[np.ndarray, str]:
    if isinstance(y, str):
        if y not in ref.coords:
            raise ValueError(f"no coordinate {y!r} on the features to use as target")
        return np.asarray(ref[y].values, dtype=float), y
    if isinstance(y, xr.DataArray):
        name = str(y.name or "memorability")
        if "stimulus_id" in y.coords and "stimulus_id" in ref.coords:
            s = pd.Series(np.asarray(y.values, dtype=float), index=y["stimulus_id"].values)
            return s.reindex(ref["stimulus_id"].values).to_numpy(dtype=float), name
        y = y.values
    else:
        name = "memorability"
    arr = np.asarray(y, dtype=float).ravel()
    if arr.size != ref.sizes["stimulus"]:
        raise ValueError(f"y has {arr.size} values for {ref.sizes['stimulus']} stimuli")
    return arr, name


def _groups(groups: Any, ref: xr.DataArray) -> np.ndarray | None:
    if groups is None:
        return None
    if isinstance(groups, str):
        if groups not in ref.coords:
            raise ValueError(
                f"no coordinate {groups!r} on the features to group by; pass groups=None "
                "with cv='random' for ungrouped folds"
            )
        groups = ref[groups].values
    arr = np.asarray(groups.values if isinstance(groups, xr.DataArray) else groups, dtype=object)
    if arr.shape != (ref.sizes["stimulus"],):
        raise ValueError(f"groups has shape {arr.shape}, expected ({ref.sizes['stimulus']},)")
    return arr


def _default_client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _runs_in_caller(model: str, dask_backed: bool) -> bool:
    return model == "logistic" or (model in _INCREMENTAL and dask_backed)


def _dask_rows(x: np.ndarray):
    import dask
    import dask.array as da

    row_bytes = max(1, x[0].nbytes)
    rows = int(min(len(x), max(1, _CHUNK_BYTES // row_bytes)))
    arr = da.from_array(x, chunks=(rows,) + x.shape[1:])
    return dask.persist(arr)[0] if _default_client() is not None else x


def _check_finite(name: str, x: np.ndarray) -> None:
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"feature set {name!r}: {int(bad.sum())} stimuli have NaN or infinite features; "
            "drop or fill them first"
        )


# ---------------------------------------------------------------------- driver


@dataclass
class _Run:
    """The prepared inputs of one :func:`fit_models` call."""

    sets: dict[str, xr.DataArray]
    models: list[str]
    y: np.ndarray  # observed target of the kept stimuli
    y_name: str
    y_perms: list[np.ndarray]  # observed first, then the permuted targets
    codes: np.ndarray | None  # group codes (grouped CV only)
    folds: list[tuple[np.ndarray, np.ndarray]]
    kind: str
    n_folds: int
    n_dropped: int
    times: np.ndarray | None

    @property
    def time_idx(self) -> list[int]:
        return [-1] if self.times is None else list(range(self.times.size))

    @property
    def n_perm(self) -> int:
        return len(self.y_perms) - 1


def _prepare(features, y, models, cv, groups, n_permutations, seed) -> _Run:
    sets = _as_feature_sets(features)
    models = [models] if isinstance(models, str) else list(models)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"unknown model(s) {unknown or 'none given'}; known: {', '.join(MODELS)}")
    if int(n_permutations) < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    ref = next(iter(sets.values()))
    y_all, y_name = _target(y, ref)
    kind, n_folds = _cv_kind(cv)
    labels = _groups(groups, ref) if kind == "grouped" else None
    keep = np.flatnonzero(np.isfinite(y_all))
    n_dropped = int(y_all.size - keep.size)
    if n_dropped:
        logger.info("dropped %d of %d stimuli with NaN %s", n_dropped, y_all.size, y_name)
        sets = {k: v.isel(stimulus=keep) for k, v in sets.items()}
        labels = None if labels is None else labels[keep]
    folds, kind = make_folds(keep.size, labels, (kind, n_folds), seed)
    codes = None if labels is None else _group_codes(labels)
    rng = np.random.default_rng(seed)
    y_obs = y_all[keep]
    perms = [
        grouped_permutation(codes, rng) if codes is not None else rng.permutation(keep.size)
        for _ in range(int(n_permutations))
    ]
    times = np.asarray(ref["time"].values, dtype=float) if "time" in ref.dims else None
    return _Run(
        sets=sets,
        models=models,
        y=y_obs,
        y_name=y_name,
        y_perms=[y_obs] + [y_obs[p] for p in perms],
        codes=codes,
        folds=folds,
        kind=kind,
        n_folds=n_folds,
        n_dropped=n_dropped,
        times=times,
    )


def _numpy_set(name: str, da: xr.DataArray, cache: dict) -> np.ndarray:
    if name not in cache:
        x = _to_numpy(da.data).astype(np.float64, copy=False)
        _check_finite(name, x)
        cache[name] = x
    return cache[name]


def _plan(run: _Run, opts: _Options) -> tuple[list, list]:
    """Task arguments: for joblib (scikit-learn models) and for the caller (dask-ml models)."""
    import joblib

    in_memory: dict[str, np.ndarray] = {}
    lazy: dict[str, Any] = {}
    pool, caller = [], []
    for name, da in run.sets.items():
        backed = _is_dask(da.data)
        for m in run.models:
            here = _runs_in_caller(m, backed)
            if here:
                if name not in lazy:
                    lazy[name] = da.data if backed else _dask_rows(_numpy_set(name, da, in_memory))
                x = lazy[name]
            else:
                x = _numpy_set(name, da, in_memory)
            for t in run.time_idx:
                for p, y in enumerate(run.y_perms):
                    for k, (tr, te) in enumerate(run.folds):
                        args = (x, y, run.codes, tr, te, _Task(name, m, t, p - 1, k), opts)
                        if here:
                            caller.append(args)
                        else:
                            pool.append(joblib.delayed(_run_task)(*args))
    return pool, caller


def _parallel(calls: list, client: Any) -> list:
    import joblib

    if not calls:
        return []
    if client is None:
        return joblib.Parallel(n_jobs=1)(calls)
    with joblib.parallel_backend("dask", client=client):
        return joblib.Parallel()(calls)


def _run_in_caller(calls: list, client: Any) -> list:
    from contextlib import nullcontext

    if not calls:
        return []
    ctx = client.as_current() if client is not None else nullcontext()
    with ctx, warnings.catch_warnings():
        # dask-glm internals, not ours: deprecated config key and scipy option
        warnings.filterwarnings("ignore", message=".*fuse_ave_width.*")
        warnings.filterwarnings("ignore", message=".*`disp` and `iprint`.*")
        return [(c[-2], _fit_fold(*c)) for c in calls]


def _assemble(results: list, n: int, folds: list) -> tuple[dict, np.ndarray]:
    """Out-of-fold arrays per (feature set, model, time bin, permutation); fold per stimulus."""
    fold_of = np.full(n, -1, dtype=np.int64)
    for k, (_, te) in enumerate(folds):
        fold_of[te] = k
    outs: dict[tuple, dict[str, np.ndarray]] = {}
    for task, res in results:
        key = (task.feature_set, task.model, task.time, task.perm)
        slot = outs.setdefault(key, {k: np.full(n, np.nan) for k in res})
        te = folds[task.fold][1]
        for k, v in res.items():
            slot[k][te] = v
    return outs, fold_of


def fit_models(
    features: Mapping[str, xr.DataArray] | xr.DataArray,
    y: str | xr.DataArray | np.ndarray = "memorability",
    models: Sequence[str] = ("ridge", "svc"),
    cv: int | str | tuple = 5,
    groups: str | np.ndarray | None = "concept",
    n_permutations: int = 100,
    seed: int = 0,
    client: Any = None,
    keep_predictions: bool = True,
    *,
    split: str = "median",
    q: tuple[float, float] = (0.25, 0.75),
    noise_ceiling: float | Mapping[str, float] | None = None,
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    epochs: int = 5,
) -> ModelResults:
    """Cross-validated memorability models on feature sets, with permutation chance levels.

    Parameters
    ----------
    features : DataArray or dict of str to DataArray
        Feature sets ``(stimulus, feature[, time])`` over the same stimuli
        (from :mod:`memxr.features`); a time dim fits each time bin apart.
        Dask-backed sets stay lazy for ``logistic`` and ``sgd_*``; the other
        models compute them into memory.
    y : str, DataArray or array
        The target: a coordinate name on the features (``"memorability"``),
        a DataArray (aligned by ``stimulus_id`` when both carry it) or an array.
    models : sequence of str
        Names from :data:`MODELS`.
    cv : int, "grouped", "random" or (kind, n_folds)
        Number of concept-grouped folds (default 5); ``"random"`` for
        shuffled KFold, labelled ``cv="random"`` in the results.
    groups : str, array or None
        The grouping of stimuli: a coordinate name (``"concept"``) or an array.
    n_permutations : int
        Permutations of the target for the chance level and p-value (0: none).
    seed : int
        Seeds the folds, the permutations and the estimators.
    client : distributed.Client, False or None
        Where the scikit-learn tasks run: the given client; None, the active
        client if any (else sequentially); False, sequentially in-process.
        The dask-ml models compute with the dask scheduler in effect (dask-glm
        picks up the active client by itself).
    keep_predictions : bool
        Keep the out-of-fold predictions (``ModelResults.predictions``).
    split : {"median", "quantile"}
        How classifiers label stimuli (see :func:`split_labels`).
    q : (float, float)
        Quantiles of ``split="quantile"``.
    noise_ceiling : float or dict of str to float, optional
        Ceiling of Pearson r, one for all or per feature set; gives the
        ``fraction_of_ceiling`` column (regressors).
    model_params : dict of str to dict, optional
        Estimator parameters per model name (e.g. ``{"svr": {"C": 10}}``).
    epochs : int
        Passes over the training data of ``sgd_*`` models.

    Returns
    -------
    ModelResults

    Raises
    ------
    ValueError
        For unknown models, grouped folds without groups, fewer concepts than
        folds, NaN features, or feature sets over different stimuli.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = xr.DataArray(np.random.default_rng(1).normal(size=(20, 3)),
    ...                  dims=("stimulus", "feature"),
    ...                  coords={"memorability": ("stimulus", np.r_[np.nan, np.ones(19)])})
    >>> res = fit_models(x, "memorability", ("linear",), cv="random", n_permutations=0,
    ...                  client=False)
    >>> int(res.table.n_dropped[0]), res.table.cv[0]
    (1, 'random')
    """
    run = _prepare(features, y, models, cv, groups, n_permutations, seed)
    split_labels(np.arange(4.0), np.arange(4.0), split, q)  # check split and q up front
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    opts = _Options(
        seed=int(seed),
        split=split,
        q=(float(q[0]), float(q[1])),
        grouped=run.kind == "grouped",
        params={k: dict(v) for k, v in (model_params or {}).items()},
        epochs=int(epochs),
    )
    client = _default_client() if client is None else (client or None)
    pool, caller = _plan(run, opts)
    results = _parallel(pool, client) + _run_in_caller(caller, client)
    outs, fold_of = _assemble(results, run.y.size, run.folds)
    table, null = _summarize(run, outs, fold_of, noise_ceiling, split)
    preds = _predictions(run, outs, fold_of) if keep_predictions else None
    params = {
        "models": run.models,
        "cv": run.kind,
        "n_folds": run.n_folds,
        "groups": groups if isinstance(groups, str) or groups is None else "array",
        "n_permutations": run.n_perm,
        "permutation": "concept blocks" if run.kind == "grouped" else "stimuli",
        "seed": int(seed),
        "split": split,
        "q": [float(v) for v in q],
        "target": run.y_name,
        "n_dropped": run.n_dropped,
        "model_params": {k: {p: repr(v) for p, v in d.items()} for k, d in opts.params.items()},
        "epochs": int(epochs),
    }
    return ModelResults(table=table, predictions=preds, null=null, params=params)


def _ceiling(noise_ceiling: Any, name: str) -> float:
    if noise_ceiling is None:
        return float("nan")
    if isinstance(noise_ceiling, Mapping):
        return float(noise_ceiling.get(name, float("nan")))
    return float(noise_ceiling)


def _scores(out: dict[str, np.ndarray], y: np.ndarray, model: str, fold_of: np.ndarray) -> dict:
    if model in CLASSIFIERS:
        return _classification_scores(out["label"], out["prediction"], out["decision"], fold_of)
    return _regression_scores(y, out["prediction"])


def _chance(null: np.ndarray, observed: float) -> dict[str, Any]:
    finite = null[np.isfinite(null)]
    if not finite.size:
        return {"chance_mean": float("nan"), "chance_p": float("nan"), "n_permutations": 0}
    p = (1 + np.sum(finite >= observed)) / (1 + finite.size) if np.isfinite(observed) else np.nan
    return {
        "chance_mean": float(finite.mean()),
        "chance_p": float(p),
        "n_permutations": int(finite.size),
    }


_SCORES = ("pearson_r", "spearman_rho", "r2", "accuracy", "roc_auc")


def _summarize(
    run: _Run, outs: dict, fold_of: np.ndarray, noise_ceiling: Any, split: str
) -> tuple[pd.DataFrame, xr.DataArray]:
    rows = []
    null = np.full((len(run.sets), len(run.models), len(run.time_idx), run.n_perm), np.nan)
    for i, name in enumerate(run.sets):
        ceiling = _ceiling(noise_ceiling, name)
        for j, m in enumerate(run.models):
            metric, regressor = _primary(m), m in REGRESSORS
            for ti, t in enumerate(run.time_idx):
                scores = _scores(outs[(name, m, t, -1)], run.y, m, fold_of)
                for p in range(run.n_perm):
                    perm = _scores(outs[(name, m, t, p)], run.y_perms[p + 1], m, fold_of)
                    null[i, j, ti, p] = perm[metric]
                row = {
                    "feature_set": name,
                    "model": m,
                    "kind": "regressor" if regressor else "classifier",
                    "cv": run.kind,
                    "n_stimuli": scores["n_stimuli"],
                    "n_dropped": run.n_dropped,
                    "n_folds": run.n_folds,
                }
                if run.times is not None:
                    row["time"] = float(run.times[t])
                row.update({k: scores.get(k, float("nan")) for k in _SCORES})
                row["metric"] = metric
                row["label_split"] = "" if regressor else split
                row.update(_chance(null[i, j, ti], scores[metric]))
                row["noise_ceiling"] = ceiling if regressor else float("nan")
                row["fraction_of_ceiling"] = scores[metric] / ceiling if regressor else float("nan")
                rows.append(row)
    timed = run.times is not None
    dims = ("feature_set", "model") + (("time",) if timed else ()) + ("permutation",)
    coords = {
        "feature_set": text_coord(run.sets),
        "model": text_coord(run.models),
        "permutation": np.arange(run.n_perm),
    }
    if timed:
        coords["time"] = run.times
    data = null if timed else null[:, :, 0]
    return pd.DataFrame(rows), xr.DataArray(data, dims=dims, coords=coords, name="null")


def _predictions(run: _Run, outs: dict, fold_of: np.ndarray) -> xr.Dataset:
    timed = run.times is not None
    shape = (len(run.sets), len(run.models), run.y.size) + ((run.times.size,) if timed else ())
    data = {k: np.full(shape, np.nan) for k in ("prediction", "decision", "label")}
    for i, name in enumerate(run.sets):
        for j, m in enumerate(run.models):
            for t in run.time_idx:
                for k, arr in data.items():
                    arr[(i, j, slice(None)) + ((t,) if timed else ())] = outs[(name, m, t, -1)][k]
    dims = ("feature_set", "model", "stimulus") + (("time",) if timed else ())
    first = next(iter(run.sets.values()))
    stim = {k: v.variable for k, v in first.coords.items() if v.dims == ("stimulus",)}
    coords = {"feature_set": text_coord(run.sets), "model": text_coord(run.models), **stim}
    if timed:
        coords["time"] = run.times
    ds = xr.Dataset({k: (dims, v) for k, v in data.items()}, coords=coords)
    ds["observed"] = ("stimulus", run.y, {"long_name": run.y_name})
    ds["fold"] = ("stimulus", fold_of)
    ds["prediction"].attrs["long_name"] = "out-of-fold prediction (memorability or class)"
    ds["decision"].attrs["long_name"] = "out-of-fold classifier score (higher = more memorable)"
    ds["label"].attrs["long_name"] = "class of the test stimulus from training-fold thresholds"
    return ds
