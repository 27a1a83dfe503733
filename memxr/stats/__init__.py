"""Statistics of neural measures against memorability, streamed over the stimulus axis.

Three layers, as in xskillscore: numpy kernels (:mod:`.kernels`, arrays in, arrays out),
the streaming pass over xarray/dask data and its input checks (:mod:`.streaming`,
:mod:`.inputs`: :func:`covariate_matrix`, :func:`one_hot`), and the public xarray functions
(:mod:`.correlation`): :func:`correlate`, :func:`partial_correlate` (on any number of
covariates), :func:`correlation_map`, :func:`fdr`; family-wise cluster-mass tests over time
from the same permutations (:mod:`.clusters`): :func:`cluster_test`, :func:`cluster_table`.
Built on the same one-pass sums: effects within concepts (:mod:`.confounds`:
:func:`within_concept_correlate`), differences of two ROIs' correlations on the same images
(:mod:`.compare`: :func:`compare_correlations`, :func:`comparison_table`), onset and peak
latencies with bootstrap intervals (:mod:`.latency`: :func:`latency`, :func:`onset_peak`);
and the group level, random-effects pooling of individuals' correlations (:mod:`.meta`:
:func:`random_effects`, :func:`pool_effects`). Variance partitioning, a model fit, lives in
:func:`memxr.models.variance_partition`; per-image covariate tables are joined onto cubes by
:func:`memxr.align.join_covariates`.

May import: numpy, scipy, pandas, xarray, dask and :mod:`memxr.schema`; never readers,
stores, models, pipeline, report or the command line.
"""

from .clusters import cluster_table, cluster_test
from .compare import compare_correlations, comparison_table
from .confounds import within_concept_correlate
from .correlation import METHODS, correlate, correlation_map, fdr, partial_correlate
from .inputs import covariate_matrix, one_hot
from .latency import latency, onset_peak
from .meta import META_METHODS, pool_effects, random_effects

__all__ = [
    "METHODS",
    "META_METHODS",
    "cluster_table",
    "cluster_test",
    "compare_correlations",
    "comparison_table",
    "correlate",
    "correlation_map",
    "covariate_matrix",
    "fdr",
    "latency",
    "one_hot",
    "onset_peak",
    "partial_correlate",
    "pool_effects",
    "random_effects",
    "within_concept_correlate",
]
