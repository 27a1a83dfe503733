"""Statistics of neural measures against memorability, streamed over the stimulus axis.

Three layers, as in xskillscore: numpy kernels (:mod:`.kernels`, arrays in, arrays out),
the streaming pass over xarray/dask data and its input checks (:mod:`.streaming`,
:mod:`.inputs`), and the public xarray functions (:mod:`.correlation`): :func:`correlate`,
:func:`partial_correlate`, :func:`correlation_map`, :func:`fdr`.

May import: numpy, scipy, pandas, xarray, dask and :mod:`memxr.schema`; never readers,
stores, models, pipeline, report or the command line.
"""

from .correlation import METHODS, correlate, correlation_map, fdr, partial_correlate

__all__ = ["METHODS", "correlate", "correlation_map", "fdr", "partial_correlate"]
