"""Input checks of :mod:`memxr.stats`: the analysed stimuli and their small vectors.

``y``, a shared covariate and the group labels are loaded (one value per stimulus), stimuli
where ``y`` or the shared covariate is NaN are dropped, and ``y`` and the covariate are
standardized (after ranking for Spearman), ready for the resampling tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
import xarray as xr


def _values_1d(v, dim: str, n: int, name: str) -> np.ndarray:
    """A per-stimulus vector as float64 numpy (loaded if lazy: it is small)."""
    if isinstance(v, xr.DataArray):
        if v.dims != (dim,):
            raise ValueError(f"{name} must have the single dim {dim!r}, got {v.dims}")
        v = v.values  # small: one value per stimulus
    arr = np.asarray(v, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must hold one value per {dim} ({n}), got shape {arr.shape}")
    return arr


def _group_labels(groups, sources: Sequence, dim: str, n: int) -> np.ndarray | None:
    """Group labels per stimulus from a coordinate name (on x, y or the covariate) or an array."""
    if groups is None:
        return None
    if isinstance(groups, str):
        found = [s[groups] for s in sources if isinstance(s, xr.DataArray) and groups in s.coords]
        if not found:
            raise ValueError(f"groups: no coordinate {groups!r} on x or y")
        labels = found[0]
        if labels.dims != (dim,):
            raise ValueError(f"groups: coordinate {groups!r} must lie along {dim!r}")
        labels = np.asarray(labels.values)  # small: one label per stimulus
    else:
        labels = np.asarray(groups.values if isinstance(groups, xr.DataArray) else groups)
    if labels.shape != (n,):
        raise ValueError(f"groups must hold one label per {dim} ({n}), got shape {labels.shape}")
    return labels


def group_codes(labels) -> np.ndarray:
    """Integer group codes 0..G-1; unknown labels ("", None, NaN) are groups of their own.

    The one grouping of stimuli by concept used everywhere (correlations, model folds and
    permutations, the bridge): an image of unknown concept shares its memorability with
    no other image, so it is never pooled with the other unknown ones.

    Examples
    --------
    >>> group_codes(["dog", "", "cat", "dog", "", None]).tolist()
    [0, 2, 1, 0, 3, 4]
    """
    arr = np.asarray(labels, dtype=object)
    unknown = np.array(
        [g is None or (isinstance(g, float) and g != g) or str(g) == "" for g in arr], dtype=bool
    )
    # a dict of str labels, not pandas' or numpy's string hashing, which cut at a NUL
    index: dict[str, int] = {}
    codes = np.array(
        [-1 if u else index.setdefault(str(g), len(index)) for g, u in zip(arr, unknown, strict=True)],
        dtype=np.int64,
    )
    codes[unknown] = len(index) + np.arange(int(unknown.sum()))
    return codes


def _standardize(v: np.ndarray, name: str) -> np.ndarray:
    sd = v.std()
    if not sd > 0:
        raise ValueError(f"{name} is constant over the analysed stimuli")
    return (v - v.mean()) / sd


@dataclass(frozen=True)
class _Inputs:
    """The analysed stimuli and the small per-stimulus vectors, ready for the tables."""

    n: int
    keep: np.ndarray | None  # indices of the analysed stimuli (None: all)
    y: np.ndarray  # (n,) standardized y (of its ranks for Spearman)
    c: np.ndarray | None  # (n,) standardized shared covariate
    codes: np.ndarray | None  # (n,) group codes
    feature_c: xr.DataArray | None  # covariate broadcast against x


def stimulus_inputs(x: xr.DataArray, y, covariate, groups, method: str, dim: str) -> _Inputs:
    """Check the inputs, drop stimuli with NaN y (or shared covariate), rank for Spearman."""
    if not isinstance(x, xr.DataArray):
        raise TypeError(f"x must be an xarray.DataArray, got {type(x).__name__}")
    if dim not in x.dims:
        raise ValueError(f"x has no dim {dim!r} (dims {x.dims})")
    n_all = x.sizes[dim]
    yv = _values_1d(y, dim, n_all, "y")
    labels = _group_labels(groups, [x, y, covariate], dim, n_all)
    shared, feature_c = None, None
    if isinstance(covariate, xr.DataArray) and covariate.dims != (dim,):
        if dim not in covariate.dims or not set(covariate.dims) <= set(x.dims):
            raise ValueError(f"covariate dims {covariate.dims} must include {dim!r} and lie in x's")
        if covariate.sizes[dim] != n_all:
            raise ValueError(f"covariate must hold one value per {dim} ({n_all})")
        feature_c = covariate
    elif covariate is not None:
        shared = _values_1d(covariate, dim, n_all, "covariate")
    valid = np.isfinite(yv) & (np.isfinite(shared) if shared is not None else True)
    n = int(valid.sum())
    if n < 3:
        raise ValueError(f"need at least 3 stimuli with finite y, got {n}")
    codes = None
    if labels is not None:
        codes = group_codes(labels[valid])
        if codes.max() < 1:
            raise ValueError("groups: the analysed stimuli form a single group")
    rank = scipy.stats.rankdata if method == "spearman" else np.asarray
    return _Inputs(
        n=n,
        keep=None if valid.all() else np.flatnonzero(valid),
        y=_standardize(rank(yv[valid]), "y"),
        c=None if shared is None else _standardize(rank(shared[valid]), "covariate"),
        codes=codes,
        feature_c=feature_c,
    )
