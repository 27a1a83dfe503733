"""Pattern and magnitude models of memorability under cross-validation grouped by concept.

:func:`fit_models` fits every (feature set x model) under the same folds, with permutation
chance levels (sequential p-values that stop early for clearly null rows), on the active
Dask client. The modules: :mod:`.estimators` (names, pipelines,
the ridge alpha search), :mod:`.folds` (folds, training-fold labels, permutations),
:mod:`.task` (one fit on one fold), :mod:`.inputs` (checked inputs), :mod:`.execution`
(where the tasks run), :mod:`.scoring` (scores from the pooled out-of-fold outputs) and
:mod:`.fit` (the public function). :func:`variance_partition` (:mod:`.partition`) splits
the cross-validated ridge R^2 of memorability into what neural features and covariates
predict uniquely and jointly.

May import: numpy, pandas, xarray, dask, distributed, scikit-learn, dask-ml,
:mod:`memxr.schema` and :mod:`memxr.stats`; never readers, stores, pipeline, report or the
command line.
"""

from .estimators import (
    CLASSIFIERS,
    DEFAULT_MODELS,
    MODELS,
    REGRESSORS,
    RIDGE_ALPHAS,
    make_model,
    make_pca,
    ridge_cv_alpha,
)
from .fit import EARLY_STOP, ModelResults, combine_results, fit_models, sequential_p
from .folds import grouped_permutation, grouped_permutations, make_folds, split_labels
from .partition import variance_partition

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_MODELS",
    "EARLY_STOP",
    "MODELS",
    "REGRESSORS",
    "RIDGE_ALPHAS",
    "ModelResults",
    "combine_results",
    "fit_models",
    "grouped_permutation",
    "grouped_permutations",
    "make_folds",
    "make_model",
    "make_pca",
    "ridge_cv_alpha",
    "sequential_p",
    "split_labels",
    "variance_partition",
]
