"""Input checks of :mod:`memxr.stats`: the analysed stimuli and their small vectors.

``y``, the shared covariates and the group labels are loaded (one value per stimulus),
stimuli where ``y`` or a shared covariate is NaN are dropped, and ``y`` and every covariate
are standardized (after ranking for Spearman), ready for the resampling tables.
:func:`covariate_matrix` brings covariates given in any of the accepted forms (a
per-stimulus DataArray, one with a ``covariate`` dim, a Dataset, a pandas DataFrame) to one
(stimulus, covariate) array; :func:`one_hot` encodes a label (the category) as 0/1
covariates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

COVARIATE_DIM = "covariate"
"""The dim that lists covariates in :func:`covariate_matrix`."""


def stimulus_vector(v, dim: str, n: int, name: str) -> np.ndarray:
    """A per-stimulus vector as float64 numpy (loaded if lazy: it is small)."""
    if isinstance(v, xr.DataArray):
        if v.dims != (dim,):
            raise ValueError(f"{name} must have the single dim {dim!r}, got {v.dims}")
        v = v.values  # small: one value per stimulus
    arr = np.asarray(v, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must hold one value per {dim} ({n}), got shape {arr.shape}")
    return arr


def group_labels(groups, sources: Sequence, dim: str, n: int) -> np.ndarray | None:
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


def _numeric(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == bool:
        return arr.astype(np.float64)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == object):
        raise ValueError(
            f"covariate {name!r} is not numeric (dtype {arr.dtype}); encode labels with "
            "memxr.stats.one_hot"
        )
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"covariate {name!r} is not numeric; encode labels with memxr.stats.one_hot"
        ) from None


def _frame_rows(frame: pd.DataFrame, x: xr.DataArray | None, dim: str, n: int) -> pd.DataFrame:
    """The rows of a covariate table in the order of ``x``'s stimuli."""
    keyed = not isinstance(frame.index, pd.RangeIndex)
    if keyed and x is not None and "stimulus_id" in x.coords and x["stimulus_id"].dims == (dim,):
        index = frame.index.astype(str)
        if index.has_duplicates:
            raise ValueError("covariates: the table repeats a stimulus id")
        ids = np.asarray(x["stimulus_id"].values).astype(str)
        return frame.set_axis(index).reindex(ids)
    if len(frame) != n:
        raise ValueError(
            f"covariates: a table of {len(frame)} rows for {n} stimuli (index it by "
            "stimulus_id to join it on x's stimulus_id coordinate)"
        )
    return frame


def _ids(a, dim: str) -> np.ndarray | None:
    if isinstance(a, xr.DataArray | xr.Dataset) and "stimulus_id" in a.coords:
        if a["stimulus_id"].dims == (dim,):
            # via object: a StringDType coordinate (read from Zarr v3) does not cast to "U"
            return np.asarray(a["stimulus_id"].values, dtype=object).astype(str)
    return None


def _by_stimulus_id(covariates, x: xr.DataArray | None, dim: str):
    """Covariates with other stimuli (by ``stimulus_id``) than ``x``: as a keyed table."""
    mine, theirs = _ids(covariates, dim), _ids(x, dim)
    if mine is None or theirs is None or np.array_equal(mine, theirs):
        return covariates
    matrix = covariate_matrix(covariates.drop_vars("stimulus_id"), None, dim)
    return pd.DataFrame(
        matrix.values, index=pd.Index(mine), columns=matrix[COVARIATE_DIM].values.tolist()
    )


def _from_coords(names: list[str], x: xr.DataArray | None, dim: str) -> xr.DataArray:
    """Coordinates of ``x`` as covariates: numeric ones as they are, labels one-hot."""
    parts = []
    for name in names:
        if x is None or name not in x.coords or x[name].dims != (dim,):
            raise ValueError(f"covariates: no coordinate {name!r} along {dim!r} on x")
        coord = x[name]
        if np.issubdtype(coord.dtype, np.number) or coord.dtype == bool:
            col = coord.astype(np.float64).drop_vars(list(coord.coords))
            parts.append(col.expand_dims({COVARIATE_DIM: [name]}, axis=1))
        else:
            parts.append(one_hot(coord, dim=dim).drop_vars(
                [c for c in coord.coords if c != COVARIATE_DIM], errors="ignore"))  # fmt: skip
    return xr.concat(parts, COVARIATE_DIM) if len(parts) > 1 else parts[0]


def covariate_matrix(
    covariates, x: xr.DataArray | None = None, dim: str = "stimulus"
) -> xr.DataArray:
    """Covariates as one (``dim``, ``covariate``) float64 array, in ``x``'s stimulus order.

    Parameters
    ----------
    covariates : str, list of str, xarray.DataArray, xarray.Dataset, pandas.DataFrame or array_like
        Names of coordinates of ``x`` along ``dim`` (numeric ones taken as they are,
        labels such as ``"category"`` encoded by :func:`one_hot`); one value per
        stimulus (a single covariate); a DataArray with dims
        (``dim``, ``covariate``); a Dataset whose variables along ``dim`` are the
        covariates; a DataFrame with one numeric column per covariate, either in the
        stimuli's order (a default ``RangeIndex``) or indexed by stimulus id (joined on
        ``x``'s ``stimulus_id`` coordinate; stimuli missing from it get NaN); or a 2-D
        array (stimuli x covariates). Booleans count as 0/1. DataArrays and Datasets whose
        ``stimulus_id`` differs from ``x``'s are joined on it too.
    x : xarray.DataArray, optional
        The neural measure the covariates go with (its size along ``dim`` and its
        ``stimulus_id`` coordinate).
    dim : str
        The stimulus dim.

    Returns
    -------
    xarray.DataArray
        Dims (``dim``, ``covariate``), the covariate names as the ``covariate`` coordinate.

    Raises
    ------
    ValueError
        For a non-numeric column (encode labels with :func:`memxr.stats.one_hot`), a
        length that does not match ``x`` or a table repeating a stimulus id.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> x = xr.DataArray(np.zeros((3, 2)), dims=("stimulus", "roi"),
    ...                  coords={"stimulus_id": ("stimulus", ["a.jpg", "b.jpg", "c.jpg"])})
    >>> table = pd.DataFrame({"size": [2.0, 1.0], "bright": [True, False]},
    ...                      index=["b.jpg", "a.jpg"])
    >>> c = covariate_matrix(table, x)
    >>> c.dims, c.covariate.values.tolist(), c.values.tolist()
    (('stimulus', 'covariate'), ['size', 'bright'], [[1.0, 0.0], [2.0, 1.0], [nan, nan]])
    """
    n = None if x is None else x.sizes[dim]
    if isinstance(covariates, str) or (
        isinstance(covariates, list | tuple) and covariates and all(isinstance(c, str) for c in covariates)
    ):
        return _from_coords([covariates] if isinstance(covariates, str) else list(covariates), x, dim)
    covariates = _by_stimulus_id(covariates, x, dim)
    if isinstance(covariates, pd.Series):
        covariates = covariates.to_frame()
    if isinstance(covariates, pd.DataFrame):
        frame = _frame_rows(covariates, x, dim, n if n is not None else len(covariates))
        names = [str(c) for c in frame.columns]
        cols = [_numeric(frame[c].to_numpy(), str(c)) for c in frame.columns]
        data = np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))
    elif isinstance(covariates, xr.Dataset):
        names, cols = [], []
        for name, v in covariates.data_vars.items():
            if v.dims != (dim,):
                raise ValueError(f"covariate {name!r} must have the single dim {dim!r}")
            names.append(str(name))
            cols.append(_numeric(v.values, str(name)))
        data = np.stack(cols, axis=1) if cols else np.zeros((covariates.sizes.get(dim, 0), 0))
    elif isinstance(covariates, xr.DataArray):
        if covariates.dims == (dim,):
            names = [str(covariates.name or "covariate")]
            data = _numeric(covariates.values, names[0])[:, None]
        elif set(covariates.dims) == {dim, COVARIATE_DIM}:
            arr = covariates.transpose(dim, COVARIATE_DIM)
            names = (
                [str(v) for v in arr[COVARIATE_DIM].values]
                if COVARIATE_DIM in arr.coords
                else [f"covariate_{j}" for j in range(arr.sizes[COVARIATE_DIM])]
            )
            data = _numeric(arr.values, "covariates")
        else:
            raise ValueError(
                f"covariates: a DataArray needs dims ({dim!r},) or ({dim!r}, "
                f"{COVARIATE_DIM!r}), got {covariates.dims}"
            )
    else:
        data = _numeric(covariates, "covariates")
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2:
            raise ValueError(f"covariates: expected stimuli x covariates, got {data.shape}")
        names = [f"covariate_{j}" for j in range(data.shape[1])]
    if n is not None and data.shape[0] != n:
        raise ValueError(f"covariates must hold one row per {dim} ({n}), got {data.shape[0]}")
    if len(set(names)) != len(names):
        raise ValueError(f"covariates: repeated names {names}")
    return xr.DataArray(data, dims=(dim, COVARIATE_DIM), coords={COVARIATE_DIM: names})


UNKNOWN_LEVEL = "(unknown)"
"""Level of :func:`one_hot` for empty or missing labels."""


def _label(v: object) -> str:
    if v is None or (isinstance(v, float) and v != v) or str(v) == "":
        return UNKNOWN_LEVEL
    return str(v)


def one_hot(
    labels: xr.DataArray | np.ndarray | pd.Series | list,
    *,
    prefix: str | None = None,
    reference: str | None = None,
    dim: str = "stimulus",
) -> xr.DataArray:
    """0/1 covariates, one per level of a label (e.g. the category), but the reference.

    Parameters
    ----------
    labels : xarray.DataArray or array_like
        One label per stimulus, e.g. ``cube.category``. Empty or missing labels form a
        level of their own, ``"(unknown)"``.
    prefix : str, optional
        Prefix of the covariate names (``"category=animal"``); default: the name of
        ``labels`` (``"label"`` without one).
    reference : str, optional
        The level left out (the intercept stands for it): default the most frequent one
        (ties: the first in sorted order).
    dim : str
        The stimulus dim.

    Returns
    -------
    xarray.DataArray
        Dims (``dim``, ``covariate``), float64 0/1, one column per level but the reference,
        in sorted order; ``attrs["reference"]``. Coordinates of ``labels`` along ``dim``
        (``stimulus_id``) are kept. Pass it (or a :func:`xarray.concat` of it with other
        covariates along ``covariate``) to :func:`memxr.stats.partial_correlate`.

    Examples
    --------
    >>> c = one_hot(xr.DataArray(["toy", "animal", "toy", ""], dims="stimulus",
    ...                          name="category"))
    >>> c.covariate.values.tolist(), c.attrs["reference"]
    (['category=(unknown)', 'category=animal'], 'toy')
    >>> c.values.tolist()
    [[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    """
    if isinstance(labels, xr.DataArray):
        if labels.dims != (dim,):
            raise ValueError(f"one_hot: labels must have the single dim {dim!r}, got {labels.dims}")
        values = np.asarray(labels.values, dtype=object)
        name = prefix or str(labels.name or "label")
        coords = {k: v.variable for k, v in labels.coords.items() if v.dims == (dim,)}
    else:
        values = np.asarray(pd.Series(labels).to_numpy(), dtype=object)
        name = prefix or str(getattr(labels, "name", None) or "label")
        coords = {}
    text = np.array([_label(v) for v in values], dtype=object)
    levels, counts = np.unique(text.astype(str), return_counts=True)
    if levels.size < 2:
        raise ValueError(f"one_hot: a single level {levels.tolist()}; nothing to encode")
    ref = str(levels[np.argmax(counts)]) if reference is None else str(reference)
    if ref not in levels:
        raise ValueError(f"one_hot: reference {ref!r} is not a level ({levels.tolist()})")
    kept = [str(v) for v in levels if v != ref]
    data = (text.astype(str)[:, None] == np.array(kept)[None, :]).astype(np.float64)
    return xr.DataArray(
        data,
        dims=(dim, COVARIATE_DIM),
        coords={**coords, COVARIATE_DIM: [f"{name}={v}" for v in kept]},
        name="covariates",
        attrs={"reference": ref, "encoded": name},
    )


@dataclass(frozen=True)
class _Inputs:
    """The analysed stimuli and the small per-stimulus vectors, ready for the tables."""

    n: int
    keep: np.ndarray | None  # indices of the analysed stimuli (None: all)
    y: np.ndarray  # (n,) standardized y (of its ranks for Spearman)
    c: np.ndarray | None  # (n, k) standardized shared covariates
    codes: np.ndarray | None  # (n,) group codes
    feature_c: xr.DataArray | None  # covariate broadcast against x
    covariate_names: tuple[str, ...] = ()


def is_broadcast(covariate, x: xr.DataArray, dim: str) -> bool:
    """A DataArray covariate over ``dim`` and some of ``x``'s other dims (one per feature)."""
    return (
        isinstance(covariate, xr.DataArray)
        and covariate.dims != (dim,)
        and COVARIATE_DIM not in covariate.dims
    )


def stimulus_inputs(x: xr.DataArray, y, covariate, groups, method: str, dim: str) -> _Inputs:
    """Check the inputs, drop stimuli with NaN y (or shared covariate), rank for Spearman."""
    if not isinstance(x, xr.DataArray):
        raise TypeError(f"x must be an xarray.DataArray, got {type(x).__name__}")
    if dim not in x.dims:
        raise ValueError(f"x has no dim {dim!r} (dims {x.dims})")
    n_all = x.sizes[dim]
    yv = stimulus_vector(y, dim, n_all, "y")
    sources = [x, y] + ([covariate] if isinstance(covariate, xr.DataArray) else [])
    labels = group_labels(groups, sources, dim, n_all)
    shared, feature_c, names = None, None, ()
    if is_broadcast(covariate, x, dim):
        if dim not in covariate.dims or not set(covariate.dims) <= set(x.dims):
            raise ValueError(f"covariate dims {covariate.dims} must include {dim!r} and lie in x's")
        if covariate.sizes[dim] != n_all:
            raise ValueError(f"covariate must hold one value per {dim} ({n_all})")
        feature_c = covariate
    elif covariate is not None:
        matrix = covariate_matrix(covariate, x, dim)
        shared, names = matrix.values, tuple(matrix[COVARIATE_DIM].values.tolist())
        if not names:
            raise ValueError("covariates: none given")
    valid = np.isfinite(yv) & (np.isfinite(shared).all(1) if shared is not None else True)
    n = int(valid.sum())
    if n < 3:
        raise ValueError(f"need at least 3 stimuli with finite y, got {n}")
    codes = None
    if labels is not None:
        codes = group_codes(labels[valid])
        if codes.max() < 1:
            raise ValueError("groups: the analysed stimuli form a single group")
    rank = scipy.stats.rankdata if method == "spearman" else np.asarray
    c = None
    if shared is not None:
        c = np.stack(
            [
                _standardize(rank(shared[valid, j]), f"covariate {name!r}")
                for j, name in enumerate(names)
            ],
            axis=1,
        )
    return _Inputs(
        n=n,
        keep=None if valid.all() else np.flatnonzero(valid),
        y=_standardize(rank(yv[valid]), "y"),
        c=c,
        codes=codes,
        feature_c=feature_c,
        covariate_names=names,
    )
