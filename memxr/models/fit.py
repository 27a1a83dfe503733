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

Classifiers (high vs low memorability): ``linear_svc`` (LinearSVC, primal solver, ``C = 1``
on standardized features), ``svc`` (SVC with its RBF kernel), ``mlp_clf``
(MLPClassifier), ``logistic`` (dask-ml ``LogisticRegression(solver="lbfgs")``),
``sgd_clf`` (dask-ml ``Incremental`` around SGDClassifier, logistic loss).
Labels come from the training fold only: above its median (``split="median"``),
or its extremes (``split="quantile"``, ``q=(0.25, 0.75)``: at or below the
lower quantile, at or above the upper one; the middle is left out of training
and test). Test stimuli are labelled with the training-fold thresholds.

Without ``models``, ``ridge`` and ``linear_svc`` are fit (:data:`DEFAULT_MODELS`): both scale
linearly with the images, where the RBF-kernel ``svc`` grows about quadratically (one fit on
7,900 images x 50 features: milliseconds against over a second; ``benchmarks/bench_models.py``).

Every model standardizes the features inside its pipeline, fit on the training
fold only; with ``n_components`` a PCA of the features comes first in that pipeline
(scikit-learn's, exact or randomized with normalised power iterations), so no
unsupervised step sees the test fold either.

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
the stimuli are permuted. The p-value is that of Pearson r (regressors) or ROC
AUC (classifiers): ``(1 + #{null >= observed}) / (1 + n_permutations)``, or,
with ``early_stop = h`` (default 10), the sequential Monte Carlo p-value of
Besag & Clifford (1991, :func:`sequential_p`): the permutations (drawn as above,
in a fixed order) are fit in rounds, and a row stops at the permutation that
brings its ``h``-th null score at or above the observed one, the ``l``-th, with
``p = h / l``; a row that never gets there runs all ``n_permutations`` and gets
the full test's p-value. The p-value stays valid; a stopped row has ``p >= h /
n_permutations`` (0.1 with the defaults: no decision at 0.05 changes), and a
null row stops after about ``h / p`` permutations (33 of 100 on average, 56 of
1000). ``n_permutations`` in the table is the number behind each row's p-value,
``stopped_early`` says whether it stopped, ``early_stop`` gives ``h`` (0: off).
``chance_p_fdr`` adjusts the p-values (Benjamini-Hochberg) over every row of the
call (feature sets x models [x time bins]), the family named in ``p_family``.

Distribution
------------
Scikit-learn models run one task per (feature set, model, time bin, fold) and block
of up to 20 targets (observed and permuted), round by round
(:mod:`memxr.models.execution`), on the active :class:`distributed.Client` (or in-process on
dask's synchronous scheduler without one); the tasks are pure functions of their
inputs, so the numbers are identical either way, and do not depend on the rounds.
On a client the features, the permuted targets, the groups and the folds are
scattered to the workers once and the tasks refer to them by key (no data in the
task graphs), and the PCA of each training fold is fit once by a task of its own
and reused by every target fit on that fold. dask-ml's own estimators
(``logistic``; ``sgd_*`` on dask-backed features) are distributed algorithms
themselves: their folds run from the calling process and each fit is a dask
computation on the cluster, streaming dask-backed features chunk by chunk
(``sgd_*``: ``partial_fit`` over row chunks, ``epochs`` passes; for pattern
matrices larger than memory). ``logistic`` persists its scaled training rows in
the cluster's memory, since dask-glm passes over them at every iteration.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..schema import text_coord
from .estimators import DEFAULT_MODELS
from .execution import default_client, run_rounds
from .folds import split_labels
from .inputs import prepare_run
from .scoring import prediction_table, sequential_p, summarize
from .task import FitOptions

__all__ = ["EARLY_STOP", "ModelResults", "combine_results", "fit_models", "sequential_p"]

EARLY_STOP = 10
"""Default ``early_stop`` of :func:`fit_models`: a row's permutations stop at its 10th null
score at or above the observed one (Besag & Clifford 1991 suggest h = 10 to 20)."""

logger = logging.getLogger(__name__)


@dataclass
class ModelResults:
    """Scores, out-of-fold predictions and permutation nulls of :func:`fit_models`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per feature set x model (x time bin): ``feature_set, model,
        kind, cv, n_stimuli, n_dropped, n_folds[, time], pearson_r,
        spearman_rho, r2, accuracy, roc_auc, metric, label_split, chance_mean,
        chance_p, n_permutations, stopped_early, early_stop, noise_ceiling,
        fraction_of_ceiling, chance_p_fdr, p_family, n_components``. ``metric`` names the
        score behind ``chance_*`` and ``fraction_of_ceiling``; ``n_permutations`` is the
        number of permutations behind the row's ``chance_p`` and ``chance_mean``.
    predictions : xarray.Dataset or None
        ``prediction`` (memorability for regressors, class for classifiers),
        ``decision`` (classifier score), ``label`` (class of each test
        stimulus, NaN when left out) over ``(feature_set, model, stimulus[,
        time])``, with ``observed`` memorability and the ``fold`` of each stimulus.
    null : xarray.DataArray
        The permutation scores, ``(feature_set, model[, time], permutation)``; NaN after the
        permutation at which a row's sequential test stopped.
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


def combine_results(results: Sequence[ModelResults]) -> ModelResults:
    """Fits of disjoint feature sets on the same stimuli, folds and permutations as one.

    :func:`fit_models` called once per feature set with the same target, ``cv``, ``groups``
    and ``seed`` draws the same folds and permutations for each, so the rows equal those of
    one call over every set; only the Benjamini-Hochberg adjustment spans the call, and it
    is applied again here over every row (``chance_p_fdr``, ``p_family``). Lets a caller hold
    one feature set in memory at a time.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> sets = {k: xr.DataArray(rng.normal(size=(30, 2)), dims=("stimulus", "feature"))
    ...         for k in ("a", "b")}
    >>> y = rng.normal(size=30)
    >>> kw = dict(models=("ridge",), cv="random", n_permutations=9, client=False)
    >>> one = fit_models(sets, y, **kw)
    >>> apart = combine_results([fit_models({k: v}, y, **kw) for k, v in sets.items()])
    >>> bool(np.allclose(one.table.chance_p_fdr, apart.table.chance_p_fdr))
    True
    """
    from ..stats.kernels import fdr_kernel

    results = list(results)
    if len(results) == 1:
        return results[0]
    table = pd.concat([r.table for r in results], ignore_index=True)
    if len(table):
        table["chance_p_fdr"] = fdr_kernel(table["chance_p"].to_numpy(float), 1)
        timed = "time" in table
        table["p_family"] = (
            "chance_p_fdr: Benjamini-Hochberg over the "
            f"{int(np.isfinite(table['chance_p']).sum())} feature set x model"
            + (" x time bin" if timed else "")
            + " rows of this fit"
        )
    null = xr.concat([r.null for r in results], dim="feature_set", join="outer")
    preds = [r.predictions for r in results if r.predictions is not None]
    predictions = (
        xr.concat(preds, dim="feature_set", data_vars="minimal", coords="minimal",
                  compat="override", join="outer")
        if preds else None
    )  # fmt: skip
    return ModelResults(table, predictions, null, dict(results[0].params))


def _components(n_components: Any, names: list[str]) -> dict[str, int | None]:
    """The in-fold PCA size of every feature set (None: no PCA)."""
    if n_components is None or isinstance(n_components, Mapping):
        given = dict(n_components or {})
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"n_components names unknown feature sets {unknown}")
    else:
        given = dict.fromkeys(names, n_components)
    out: dict[str, int | None] = {}
    for name in names:
        value = given.get(name)
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ValueError(f"n_components must be a positive int, got {value!r} for {name!r}")
        out[name] = None if value is None else int(value)
    return out


def fit_models(
    features: Mapping[str, xr.DataArray] | xr.DataArray,
    y: str | xr.DataArray | np.ndarray = "memorability",
    models: Sequence[str] = DEFAULT_MODELS,
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
    n_components: int | Mapping[str, int | None] | None = None,
    early_stop: int | None = EARLY_STOP,
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
        Names from :data:`MODELS`; default :data:`DEFAULT_MODELS` (``ridge``,
        ``linear_svc``), which scale linearly with the images.
    cv : int, "grouped", "random" or (kind, n_folds)
        Number of concept-grouped folds (default 5); ``"random"`` for
        shuffled KFold, labelled ``cv="random"`` in the results.
    groups : str, array or None
        The grouping of stimuli: a coordinate name (``"concept"``) or an array.
    n_permutations : int
        Permutations of the target for the chance level and p-value (0: none): the most a
        row runs with ``early_stop``.
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
        Ceiling on the Pearson r of the predictions with memorability, one for all or
        per feature set: for the responses analysed (single trials of the train images,
        or test-set means) and the memorability scores' own reliability (see
        :func:`memxr.reliability.noise_ceiling`). Gives the ``fraction_of_ceiling``
        column (regressors).
    model_params : dict of str to dict, optional
        Estimator parameters per model name (e.g. ``{"svr": {"C": 10}}``).
    epochs : int
        Passes over the training data of ``sgd_*`` models.
    n_components : int or dict of str to int, optional
        Reduce the features to this many principal components inside each training fold
        (one for all feature sets, or per feature set; capped at the features and
        training stimuli of the fold). The feature sets are then loaded into memory
        (float32 stays float32). The PCA of each training fold is fit once and used for
        every target fit on that fold.
    early_stop : int or None
        ``h`` of the sequential p-value (:func:`sequential_p`): a row stops permuting at
        its ``h``-th null score at or above the observed one, with ``p = h / l`` after
        ``l`` permutations; None or 0 runs all ``n_permutations`` for every row.

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
    run = prepare_run(features, y, models, cv, groups, n_permutations, seed)
    split_labels(np.arange(4.0), np.arange(4.0), split, q)  # check split and q up front
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if early_stop is not None and (isinstance(early_stop, bool) or int(early_stop) < 0):
        raise ValueError(f"early_stop must be None or an int >= 0, got {early_stop!r}")
    h = int(early_stop or 0)
    pcs = _components(n_components, list(run.sets))
    opts = FitOptions(
        seed=int(seed),
        split=split,
        q=(float(q[0]), float(q[1])),
        grouped=run.kind == "grouped",
        params={k: dict(v) for k, v in (model_params or {}).items()},
        epochs=int(epochs),
        n_components=pcs,
    )
    client = default_client() if client is None else (client or None)
    outs, null, stopped, fold_of = run_rounds(run, opts, client, h)
    table, null = summarize(run, outs, null, stopped, fold_of, noise_ceiling, split, h)
    table["n_components"] = [-1 if pcs[f] is None else int(pcs[f]) for f in table["feature_set"]]
    preds = prediction_table(run, outs, fold_of) if keep_predictions else None
    params = {
        "models": run.models,
        "cv": run.kind,
        "n_folds": run.n_folds,
        "groups": groups if isinstance(groups, str) or groups is None else "array",
        "n_permutations": run.n_perm,
        "early_stop": h,
        "p_value": "sequential (Besag & Clifford 1991)" if h else "(1 + g) / (1 + n)",
        "permutation": "concept blocks" if run.kind == "grouped" else "stimuli",
        "seed": int(seed),
        "split": split,
        "q": [float(v) for v in q],
        "target": run.y_name,
        "n_dropped": run.n_dropped,
        "model_params": {k: {p: repr(v) for p, v in d.items()} for k, d in opts.params.items()},
        "epochs": int(epochs),
        "n_components": {k: (-1 if v is None else int(v)) for k, v in pcs.items()},
    }
    return ModelResults(table=table, predictions=preds, null=null, params=params)
