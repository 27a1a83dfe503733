"""Confounds of a memorability effect: categories as covariates, and effects within concepts.

Images of one concept share both their memorability and much of their response, so a
correlation across all images mixes two effects: concepts that are more memorable evoking
other responses (between concepts), and, among the images of one concept, the more
memorable images evoking other responses (within concepts). Two tools separate them:

- :func:`memxr.stats.one_hot` turns a label coordinate (the THINGS ``category``, say)
  into 0/1 covariates for :func:`memxr.stats.partial_correlate` (which also takes the
  coordinate's name, ``partial_correlate(x, y, "category")``), which then removes what
  the categories explain from both the responses and memorability (any other per-image
  covariates join the same matrix: :func:`memxr.stats.covariate_matrix`,
  :func:`memxr.align.join_covariates`);
- :func:`within_concept_correlate` correlates the deviations of the responses and of
  memorability from their concept means. Its null permutes memorability among the images
  of each concept only (concept means stay in place), which is exact when, within each
  concept, memorability is exchangeable among the images and independent of the responses,
  whatever the concepts' own memorability and responses; its interval deletes (jackknife)
  or resamples (bootstrap) whole concepts, which leaves every other concept's deviations
  unchanged, so each resample is the statistic recomputed exactly.

Examples
--------
>>> import numpy as np, xarray as xr
>>> rng = np.random.default_rng(0)
>>> concept = np.repeat(np.arange(40), 5)
>>> between = rng.standard_normal(40)[concept]      # concept-level memorability
>>> memo = between + rng.standard_normal(200)
>>> x = xr.DataArray(between + rng.standard_normal(200), dims="stimulus",
...                  coords={"concept": ("stimulus", concept)})
>>> float(correlate(x, memo, groups="concept", n_permutations=99, n_bootstrap=0).p)
0.01
>>> res = within_concept_correlate(x, memo, n_permutations=99, n_bootstrap=0)
>>> float(res.p) > 0.05, int(res.n_concepts)
(True, 40)
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import scipy.stats
import xarray as xr

from .correlation import METHODS, correlate
from .inputs import group_codes, group_labels, stimulus_vector
from .streaming import prepare_features

__all__ = ["within_concept_correlate"]

def within_concept_correlate(
    x: xr.DataArray,
    y: xr.DataArray | np.ndarray,
    groups: str | np.ndarray | xr.DataArray = "concept",
    method: str = "pearson",
    dim: str = "stimulus",
    n_permutations: int = 1000,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    compute: bool = False,
    *,
    return_null: bool = False,
    ci_method: str = "jackknife",
) -> xr.Dataset:
    """Correlation of ``x`` and ``y`` within concepts: of their deviations from concept means.

    Parameters
    ----------
    x : xarray.DataArray
        Neural measure with dim ``dim`` and any others; numpy- or dask-backed (the concept
        means are a lazy groupby, the result stays lazy).
    y : xarray.DataArray or array_like
        One value per stimulus (memorability); stimuli where it is NaN are dropped.
    groups : str or array_like
        Concept per stimulus (a coordinate name on ``x`` or ``y``, or labels). Unknown
        concepts (``""``) are groups of their own, so, like every concept with a single
        analysed image, they carry no within-concept information and are left out.
    method : {"pearson", "spearman"}
        Spearman ranks ``x`` and ``y`` over the analysed stimuli, then takes the
        deviations of the ranks from their concept means.
    dim, n_permutations, n_bootstrap, seed, ci, compute, return_null, ci_method
        As in :func:`memxr.stats.correlate`.

    Returns
    -------
    xarray.Dataset
        As :func:`memxr.stats.correlate`, with ``n`` (stimuli in concepts of at least two
        analysed images) and ``n_concepts``. ``p`` is the permutation p-value of
        memorability shuffled among the images of each concept (the null of no
        within-concept relation, whatever the relation between concepts); ``ci_low``,
        ``ci_high`` the concept jackknife (or concept bootstrap percentile) interval.

    Notes
    -----
    Coverage of the jackknife interval, measured by simulation (``within_concept_ci`` of
    :mod:`memxr.testing`): 95 % with 400-800 concepts (THINGS-fMRI analyses hold 720,
    TVSD 1854); with 150-300 concepts of a few images each it covers about 92-93 %, as
    :func:`memxr.stats.correlate`'s jackknife does on such data with 3 images per concept
    (each concept then contributes one or two heavy-tailed products of deviations, and
    the jackknife variance is too noisy for Student's t on K - 1 df).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(1)
    >>> concept = np.repeat(np.arange(30), 4)
    >>> memo = rng.standard_normal(30)[concept] + rng.standard_normal(120)
    >>> x = xr.DataArray(memo + rng.standard_normal(120), dims="stimulus")
    >>> res = within_concept_correlate(x, memo, groups=concept, n_permutations=199)
    >>> float(res.p), bool(0 < res.ci_low < res.r < res.ci_high)
    (0.005, True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(x, xr.DataArray):
        raise TypeError(f"x must be an xarray.DataArray, got {type(x).__name__}")
    if dim not in x.dims:
        raise ValueError(f"x has no dim {dim!r} (dims {x.dims})")
    n_all = x.sizes[dim]
    yv = stimulus_vector(y, dim, n_all, "y")
    labels = group_labels(groups, [x, y], dim, n_all)
    if labels is None:
        raise ValueError("within_concept_correlate needs groups (a concept per stimulus)")
    valid = np.flatnonzero(np.isfinite(yv))
    codes = group_codes(labels[valid])
    multi = np.bincount(codes)[codes] >= 2
    keep = valid[multi]
    codes = group_codes(codes[multi])
    n_concepts = int(codes.max()) + 1 if codes.size else 0
    if n_concepts < 3:
        raise ValueError(
            f"within_concept_correlate: {n_concepts} concept(s) with at least two analysed "
            "images; need 3"
        )
    yk = scipy.stats.rankdata(yv[keep]) if method == "spearman" else yv[keep]
    y_dev = yk - (np.bincount(codes, weights=yk) / np.bincount(codes))[codes]
    xs = prepare_features(x, dim, keep, method)  # bare, ranked for Spearman
    grouper = xr.DataArray(codes, dims=dim, name="_concept")
    means = xs.groupby(grouper).mean()
    x_dev = xs - means.isel(_concept=grouper).drop_vars("_concept", errors="ignore")
    x_dev = x_dev.assign_coords({k: v.variable for k, v in x.coords.items() if dim not in v.dims})
    res = correlate(
        x_dev.transpose(*x.dims),
        y_dev,
        method="pearson",
        dim=dim,
        n_permutations=n_permutations,
        n_bootstrap=n_bootstrap,
        groups=codes,
        seed=seed,
        ci=ci,
        compute=compute,
        return_null=return_null,
        ci_method=ci_method,
    )
    res["r"].attrs["long_name"] = f"within-concept {method} correlation"
    res["n_concepts"] = xr.DataArray(
        np.int64(n_concepts), attrs={"long_name": "concepts with at least two analysed images"}
    )
    group_name: Hashable = groups if isinstance(groups, str) else "array"
    res.attrs.update(
        method=method,
        groups=str(group_name),
        effect="within concepts (deviations from concept means)",
        permutation_scheme="y shuffled within concepts (among the images of each; concept means fixed)",
    )
    return res
