"""Feature sets for memorability models: ROI magnitudes and multi-channel patterns.

A *feature set* is an :class:`xarray.DataArray` with dims ``(stimulus, feature)``
or ``(stimulus, feature, time)`` that keeps the cube's stimulus coordinates
(``stimulus_id``, ``concept``, ``memorability``, ...), so that
:func:`memxr.models.fit_models` finds its targets and groups on it.

- :func:`roi_features`: one feature per ROI, the ROI's mean (or sum, or
  population magnitude) response, through :func:`memxr.reduce.roi_reduce`;
- :func:`pattern_features`: every channel of one ROI, optionally reduced to
  its first principal components (scikit-learn PCA on in-memory data, a
  randomized SVD with orthonormalised power iterations on dask-backed data).

A PCA here is fit on every stimulus given. Before a cross-validated model, reduce
inside the training folds instead (:func:`memxr.models.fit_models` with
``n_components``), so that no unsupervised step sees the test folds.

Both take a ``time`` window (a ``slice`` or a ``(start, stop)`` pair in ms)
that averages a time-resolved cube over the window first; without it the
``time`` dim is kept, for time-resolved decoding.

Examples
--------
>>> from memxr.schema import example_cube
>>> cube = example_cube(n_stimulus=5, n_channel=4)
>>> roi_features(cube, "A").dims
('stimulus', 'feature')
>>> pattern_features(cube, "A", n_components=2).sizes["feature"]
2
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .reduce import roi_masks, roi_reduce
from .schema import text_coord

__all__ = ["pattern_features", "roi_features", "time_window"]

TimeWindow = slice | tuple[float, float] | None


def _window(time: TimeWindow) -> tuple[float, float] | None:
    if time is None:
        return None
    if isinstance(time, slice):
        if time.step is not None:
            raise ValueError(f"a time window has no step, got {time!r}")
        start = -np.inf if time.start is None else float(time.start)
        return start, np.inf if time.stop is None else float(time.stop)
    if isinstance(time, tuple | list) and len(time) == 2:
        return float(time[0]), float(time[1])
    raise ValueError(f"time must be a slice or a (start, stop) pair in ms, got {time!r}")


def time_window(data: xr.DataArray, time: TimeWindow) -> xr.DataArray:
    """Average ``data`` over a window of its ``time`` dim, lazily.

    Parameters
    ----------
    data : xarray.DataArray
        Anything with a ``time`` dim; returned unchanged when ``time`` is None.
    time : slice or (start, stop) or None
        The window in ms, start inclusive and stop exclusive (as
        :func:`memxr.reduce.window_reduce`); NaN bins are ignored.

    Returns
    -------
    xarray.DataArray
        Without the ``time`` dim; the window is recorded in ``attrs["time_window"]``.

    Raises
    ------
    ValueError
        When ``data`` has no ``time`` dim or the window holds no time bin.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> d = xr.DataArray(np.arange(6.0).reshape(2, 3), dims=("stimulus", "time"),
    ...                  coords={"time": [0.0, 10.0, 20.0]})
    >>> time_window(d, (10, 30)).values.tolist()
    [1.5, 4.5]
    >>> time_window(d, slice(None, 10)).values.tolist()
    [0.0, 3.0]
    """
    window = _window(time)
    if window is None:
        return data
    if "time" not in data.dims:
        raise ValueError("a time window was given but the data have no 'time' dim")
    t = np.asarray(data["time"].values, dtype=float)
    inside = np.flatnonzero((t >= window[0]) & (t < window[1]))
    if inside.size == 0:
        raise ValueError(
            f"time window {window[0]}..{window[1]} ms holds no bin (bins {t.min()}..{t.max()})"
        )
    out = data.isel(time=inside).mean("time", keep_attrs=True)
    out.attrs["time_window"] = [float(v) for v in window]
    return out


def _stimulus_first(da: xr.DataArray) -> xr.DataArray:
    rest = tuple(d for d in da.dims if d not in ("stimulus", "feature"))
    return da.transpose("stimulus", "feature", *rest)


def roi_features(
    cube: xr.Dataset,
    rois: str | list[str] | None = None,
    how: str = "mean",
    time: TimeWindow = None,
    **roi_options: Any,
) -> xr.DataArray:
    """One feature per ROI: the ROI's response magnitude per stimulus.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube (see :mod:`memxr.schema`).
    rois : str or list of str, optional
        ROI names, merges resolved as in :mod:`memxr.reduce`; default its default ROIs.
    how : {"mean", "sum", "l2"}
        Reduction over the ROI's channels (see :func:`memxr.reduce.roi_reduce`).
    time : slice or (start, stop), optional
        Average a time-resolved cube over this window (ms, stop exclusive)
        first; without it the ``time`` dim is kept.
    **roi_options
        ``definitions``, ``zscore_channels``, ``min_reliability``,
        ``reliability``: passed to :func:`memxr.reduce.roi_reduce`.

    Returns
    -------
    xarray.DataArray
        Dims ``(stimulus, feature[, time])``, ``feature`` labelled by ROI name,
        with the stimulus coords and ``n_channels`` per feature; lazy when the
        cube is dask-backed.

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_stimulus=3, n_channel=2)
    >>> f = roi_features(cube, "A")
    >>> f.feature.values.tolist(), f.shape
    (['A'], (3, 1))
    >>> bool(np.allclose(f.values[:, 0], cube.response.values.mean(1)))
    True
    """
    reduced = roi_reduce(cube, rois, how=how, **roi_options)
    out = reduced.rename(roi="feature")
    out = out.assign_coords(feature=text_coord(out["feature"].values.tolist()))
    out = time_window(out, time)
    out = _stimulus_first(out)
    out.name = f"roi_{how}"
    out.attrs.update(
        {
            "feature_kind": "roi",
            "how": how,
            "rois": text_coord(out["feature"].values.tolist()).tolist(),
            "dataset": cube.attrs.get("dataset", ""),
            "subject": cube.attrs.get("subject", ""),
        }
    )
    return out


def _pca_numpy(x: np.ndarray, n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, random_state=seed).fit(x)
    return pca.transform(x), pca.explained_variance_ratio_


def _pca_dask(x, n_components: int, seed: int):
    """Randomized PCA of a dask array (rows are observations) without loading it.

    :func:`dask.array.linalg.svd_compressed` with 4 power iterations and
    ``iterator="QR"``: each product with the data is orthonormalised (tsqr) before
    the next, so the iterations cannot overflow as the unnormalised ``(X X^T)^q X``
    does on large float32 matrices; the data are cast to float64 block by block.
    """
    import dask
    import dask.array as da

    x = x.rechunk({1: -1}).astype(np.float64)
    n = x.shape[0]
    centered = x - x.mean(axis=0)
    _, s, v = da.linalg.svd_compressed(
        centered, n_components, iterator="QR", n_power_iter=4, seed=seed
    )
    s, v, total = dask.compute(s, v, (centered**2).sum() / (n - 1))
    ratio = s**2 / (n - 1) / total
    return centered @ v.T, np.asarray(ratio)


def _pca(data: xr.DataArray, n_components: int, seed: int) -> xr.DataArray:
    """PCA over the ``feature`` dim; time bins (if any) are rows of one shared PCA."""
    n_max = min(data.sizes["stimulus"] * data.sizes.get("time", 1), data.sizes["feature"])
    if not 1 <= n_components <= n_max:
        raise ValueError(f"n_components must be between 1 and {n_max}, got {n_components}")
    has_time = "time" in data.dims
    rows = data.transpose("stimulus", *(("time",) if has_time else ()), "feature")
    x = rows.data
    shape = x.shape
    if has_time:
        if not isinstance(x, np.ndarray):
            x = x.rechunk({1: -1, 2: -1})
        x = x.reshape(shape[0] * shape[1], shape[2])
    if isinstance(x, np.ndarray):
        scores, ratio = _pca_numpy(x, n_components, seed)
    else:
        scores, ratio = _pca_dask(x, n_components, seed)
    if has_time:
        scores = scores.reshape(shape[0], shape[1], n_components).transpose(0, 2, 1)
    names = text_coord(f"PC{i + 1}" for i in range(n_components))
    stim = {k: v for k, v in data.coords.items() if v.dims == ("stimulus",)}
    coords = {**stim, "feature": names, "explained_variance_ratio": ("feature", ratio)}
    if has_time:
        coords["time"] = data["time"]
    dims = ("stimulus", "feature") + (("time",) if has_time else ())
    return xr.DataArray(scores, dims=dims, coords=coords)


def pattern_features(
    cube: xr.Dataset,
    roi: str,
    n_components: int | None = None,
    time: TimeWindow = None,
    seed: int = 0,
    var: str = "response",
    **roi_options: Any,
) -> xr.DataArray:
    """Every channel of one ROI as a feature, optionally reduced by PCA.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube (see :mod:`memxr.schema`).
    roi : str
        One ROI name (merges such as ``FFA`` = ``lFFA`` or ``rFFA`` resolved).
    n_components : int, optional
        Keep the first principal components of the ROI's channels. In-memory
        data use :class:`sklearn.decomposition.PCA`; dask-backed data a
        randomized SVD (:func:`dask.array.linalg.svd_compressed`, 4 power
        iterations orthonormalised by QR, float64) without loading the pattern
        matrix. The PCA sees no memorability, but it is fit on all stimuli given:
        before a cross-validated model, leave ``n_components`` out here and give it
        to :func:`memxr.models.fit_models`, which fits the PCA inside each training
        fold. Time bins of a time-resolved cube share one PCA.
    time : slice or (start, stop), optional
        Average a time-resolved cube over this window (ms, stop exclusive) first.
    seed : int
        Random state of the PCA.
    var : str
        Data variable of the cube.
    **roi_options
        ``definitions``, ``min_reliability``, ``reliability``: passed to
        :func:`memxr.reduce.roi_masks`.

    Returns
    -------
    xarray.DataArray
        Dims ``(stimulus, feature[, time])`` with the stimulus coords; features
        are labelled ``ch<channel_id>`` (with a ``channel_id`` coord) or
        ``PC1..PCk`` (with ``explained_variance_ratio``). Dask-backed when the
        cube is.

    Raises
    ------
    memxr.reduce.UnknownROIError
        For an ROI the cube does not define.
    ValueError
        For an ROI without channels or an impossible ``n_components``.

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_stimulus=6, n_channel=3)
    >>> pattern_features(cube, "A").feature.values.tolist()
    ['ch1', 'ch2', 'ch3']
    >>> f = pattern_features(cube, "A", n_components=2)
    >>> f.feature.values.tolist(), bool(f.explained_variance_ratio.sum() <= 1)
    (['PC1', 'PC2'], True)
    """
    if not isinstance(roi, str):
        raise TypeError(f"pattern_features takes one ROI name, got {roi!r}")
    mask = np.asarray(roi_masks(cube, [roi], **roi_options).values[:, 0])  # small: channel booleans
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        raise ValueError(f"ROI {roi!r} has no channel in this cube")
    da = cube[var].isel(channel=idx)
    da = da.drop_vars([c for c in da.coords if "channel" in da[c].dims])
    ids = np.asarray(cube["channel_id"].values)[idx] if "channel_id" in cube.coords else idx
    da = da.rename(channel="feature").assign_coords(
        feature=text_coord(f"ch{i}" for i in ids), channel_id=("feature", ids)
    )
    da = time_window(da, time)
    window = da.attrs.get("time_window")
    if n_components is not None:
        da = _pca(da, int(n_components), seed)
    out = _stimulus_first(da)
    out.name = f"pattern_{roi}"
    out.attrs = {
        "feature_kind": "pattern",
        "roi": roi,
        "n_channels": int(idx.size),
        "n_components": -1 if n_components is None else int(n_components),
        "dataset": cube.attrs.get("dataset", ""),
        "subject": cube.attrs.get("subject", ""),
        "units": cube[var].attrs.get("units", cube.attrs.get("units", "")),
    }
    if window is not None:
        out.attrs["time_window"] = window
    return out
