"""The estimators of :func:`memxr.models.fit_models`: names, pipelines and the ridge alpha search.

:func:`make_model` builds a scikit-learn pipeline (optionally a PCA, then feature
standardization, then the named estimator) for every name of :data:`MODELS`, so that every
step that learns from the features is fit on the training fold only;
:func:`ridge_cv_alpha` chooses the ``ridge`` alpha over inner folds at the cost of one SVD
per fold (for any number of targets at once). ``logistic`` and ``sgd_*`` are dask-ml
estimators (``sgd_*`` wrapped in ``Incremental``), which keep dask-backed features lazy.

Defaults that scale
-------------------
:data:`DEFAULT_MODELS` (``ridge`` and ``linear_svc``) are what :func:`memxr.models.fit_models`
and the pipeline's ``models`` step fit unless told otherwise: both cost about one pass of
linear algebra over the training fold (an SVD for ridge, a primal liblinear solve for the
linear SVM), so that a fit of ~7,900 images x 50 features takes milliseconds where the
RBF-kernel ``svc`` takes over a second, and the kernel SVM grows about quadratically with
the images (TVSD: 22,248). ``svc`` keeps meaning the RBF-kernel SVC; ask for it by name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_MODELS",
    "LINEAR_SVC_DEFAULTS",
    "MODELS",
    "REGRESSORS",
    "RIDGE_ALPHAS",
    "make_model",
    "make_pca",
    "ridge_cv_alpha",
]

REGRESSORS = ("linear", "ridge", "svr", "mlp_reg", "sgd_reg")
"""Model names that predict memorability."""
CLASSIFIERS = ("linear_svc", "svc", "mlp_clf", "logistic", "sgd_clf")
"""Model names that predict high vs low memorability."""
MODELS = REGRESSORS + CLASSIFIERS
"""Every model name :func:`make_model` knows."""
DEFAULT_MODELS = ("ridge", "linear_svc")
"""The models fit when none are named: a regressor and a classifier that scale linearly with
the images (``ridge``: alpha from inner folds, one SVD per fold; ``linear_svc``: a linear
SVM, ``C = 1`` on standardized features)."""
LINEAR_SVC_DEFAULTS = {"C": 1.0, "dual": False, "max_iter": 5000}
"""Parameters of ``linear_svc`` unless given: the primal solver (images outnumber features),
``C = 1`` on standardized features (with thousands of images and <= 50 features the
penalty hardly matters; pass ``{"linear_svc": {"C": ...}}`` to change it)."""
DASK_READY = ("logistic", "sgd_reg", "sgd_clf")
INCREMENTAL = ("sgd_reg", "sgd_clf")
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 9))
"""The alpha grid of ``ridge`` (features and target are standardized)."""


def make_scaler(dask_input: bool):
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
    if name == "linear_svc":
        return svm.LinearSVC(**{**LINEAR_SVC_DEFAULTS, "random_state": seed, **params})
    if name in ("mlp_reg", "mlp_clf"):
        cls = neural_network.MLPRegressor if name == "mlp_reg" else neural_network.MLPClassifier
        defaults = {"hidden_layer_sizes": (32,), "alpha": 1e-2, "max_iter": 2000}
        return cls(**{**defaults, "random_state": seed, **params})
    if name == "logistic":
        from dask_ml.linear_model import LogisticRegression

        _lbfgs_without_iprint()
        return LogisticRegression(**{"solver": "lbfgs", **params})
    if name in INCREMENTAL:
        from dask_ml.wrappers import Incremental

        if name == "sgd_reg":
            inner = linear_model.SGDRegressor(**{"random_state": seed, **params})
        else:
            inner = linear_model.SGDClassifier(
                **{"loss": "log_loss", "random_state": seed, **params}
            )
        return Incremental(inner, shuffle_blocks=True, random_state=seed)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def _lbfgs_without_iprint() -> None:
    """Let dask-glm's ``lbfgs`` solver (under dask-ml's ``LogisticRegression``) run on scipy >= 1.18.

    dask-glm 0.4.0 (no release since) passes ``iprint`` to ``scipy.optimize.fmin_l_bfgs_b``,
    which ignores it since scipy 1.15 and no longer accepts it since 1.18 (scipy#24335): its
    module-level reference is replaced, once, by one that drops ``iprint`` and ``disp``.
    """
    import dask_glm.algorithms as algorithms

    original = algorithms.fmin_l_bfgs_b
    if getattr(original, "memxr_drops_iprint", False):
        return

    @functools.wraps(original)
    def fmin_l_bfgs_b(*args: Any, iprint: Any = None, disp: Any = None, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    fmin_l_bfgs_b.memxr_drops_iprint = True  # type: ignore[attr-defined]
    algorithms.fmin_l_bfgs_b = fmin_l_bfgs_b


def make_pca(n_components: int, seed: int = 0):
    """scikit-learn's PCA as memxr fits it inside training folds.

    ``svd_solver="auto"``: exact (LAPACK) for small matrices, randomized with normalised
    power iterations (LU/QR) for large ones, safe in float32 where unnormalised power
    iterations overflow; float32 input stays float32.

    Examples
    --------
    >>> make_pca(5).n_components
    5
    """
    from sklearn.decomposition import PCA

    return PCA(n_components=int(n_components), svd_solver="auto", random_state=seed)


def make_model(
    name: str,
    *,
    seed: int = 0,
    inner_cv: Any = None,
    dask_input: bool = False,
    n_components: int | None = None,
    **params: Any,
):
    """A scikit-learn pipeline: [PCA,] feature standardization, then the named estimator.

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
    n_components : int, optional
        Reduce the features to their first principal components first (:func:`make_pca`,
        a step ``pca``): fit with the pipeline, so on the training fold only.
    **params
        Passed to the estimator (for ``sgd_*``, to the wrapped SGD model).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``scale`` and ``model``, after ``pca`` with ``n_components``.

    Examples
    --------
    >>> make_model("ridge").named_steps["model"].alphas[:2]
    (0.01, 0.1)
    >>> type(make_model("logistic")[-1]).__module__
    'dask_ml.linear_model.glm'
    >>> [name for name, _ in make_model("ridge", n_components=10).steps]
    ['pca', 'scale', 'model']
    >>> type(make_model("linear_svc")[-1]).__name__, make_model("svc")[-1].kernel
    ('LinearSVC', 'rbf')
    """
    from sklearn.pipeline import Pipeline

    est = _estimator(name, seed, inner_cv, dict(params))
    steps = [("scale", make_scaler(dask_input)), ("model", est)]
    if n_components is not None:
        steps.insert(0, ("pca", make_pca(n_components, seed)))
    return Pipeline(steps)


def ridge_cv_alpha(
    x: np.ndarray,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float] = RIDGE_ALPHAS,
) -> float | np.ndarray:
    """The ridge alpha of least mean squared error over inner folds (one SVD per fold).

    Equivalent to ``GridSearchCV(Ridge(), {"alpha": alphas}, cv=splits,
    scoring="neg_mean_squared_error")`` (intercept fit, error averaged over
    folds) at the cost of one SVD per fold for the whole grid, and for every
    column of a 2-D ``y`` at once (each column gets its own alpha: the search of
    a permutation null costs one SVD per fold for all permutations).

    Parameters
    ----------
    x : numpy.ndarray
        Features (n, p) of the training fold.
    y : numpy.ndarray
        Target (n,), or targets (n, k).
    splits : sequence of (train, test)
        Inner folds, as index arrays into ``x``.
    alphas : sequence of float
        The grid; ties go to the first.

    Returns
    -------
    float, or numpy.ndarray of k floats for a 2-D ``y``

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 3)); y = x[:, 0] + 0.1 * rng.normal(size=40)
    >>> splits = [(np.arange(20, 40), np.arange(20)), (np.arange(20), np.arange(20, 40))]
    >>> ridge_cv_alpha(x, y, splits, [0.01, 100.0])
    0.01
    >>> ridge_cv_alpha(x, np.c_[y, rng.normal(size=40)], splits, [0.01, 100.0]).tolist()
    [0.01, 100.0]
    """
    grid = np.asarray(alphas, dtype=float)
    y = np.asarray(y, dtype=float)
    targets = y[:, None] if y.ndim == 1 else y
    err = np.zeros((grid.size, targets.shape[1]))
    for tr, va in splits:
        xm, ym = x[tr].mean(0), targets[tr].mean(0)
        u, sv, vt = np.linalg.svd(x[tr] - xm, full_matrices=False)
        shrink = sv[:, None] / (sv[:, None] ** 2 + grid[None, :])  # (r, n_alphas)
        uy = u.T @ (targets[tr] - ym)  # (r, k)
        xv = (x[va] - xm) @ vt.T  # (n_va, r)
        for a in range(grid.size):  # predictions of every target for this alpha
            pred = xv @ (shrink[:, a, None] * uy) + ym
            err[a] += np.mean((pred - targets[va]) ** 2, axis=0)
    best = grid[np.argmin(err, axis=0)]
    return float(best[0]) if y.ndim == 1 else best
