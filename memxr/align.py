"""Stimulus labels, stimuli shared between cubes, and reliability from the repeats.

Three jobs that sit between the readers and the analyses:

- :func:`attach_labels` joins a cube with the THINGS stimulus table (concept,
  category, memorability) on ``stimulus_id``; stimuli without a score stay in
  the cube with a NaN memorability, and :func:`labelled` selects the scored
  ones for one analysis.
- :func:`shared_stimuli` and :func:`align_pair` restrict two recordings (an fMRI
  subject and a monkey, say) to the images both saw, in the same order, or
  average each cube per concept and keep the concepts both saw.
- :func:`split_half_reliability`, :func:`noise_ceiling` and
  :func:`select_channels` measure how repeatable the responses are from
  ``response_repeats`` and keep the reliable channels.

Everything stays lazy on the responses: only the (small) coordinates are read
while building the result.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from memxr.schema import example_cube
>>> cube = example_cube(n_stimulus=3, n_channel=2)
>>> table = pd.DataFrame({"concept": ["thing", "thing"], "category": ["toy", "toy"],
...                       "memorability": [0.9, np.nan]},
...                      index=["thing_00s.jpg", "thing_01s.jpg"])
>>> out = attach_labels(cube, table)
>>> out.memorability.values.tolist()
[0.9, nan, nan]
>>> labelled(out).stimulus_id.values.tolist()
['thing_00s.jpg']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError
from .reduce import roi_masks
from .schema import text_coord, validate

__all__ = [
    "align_pair",
    "attach_labels",
    "dropna_memorability",
    "labelled",
    "noise_ceiling",
    "select_channels",
    "shared_stimuli",
    "split_half_reliability",
]

_STIMULUS_DIMS = ("stimulus", "repeat_stimulus", "repeat")


# ----------------------------------------------------------------------------- labels


def _labels(ds: xr.Dataset, name: str) -> np.ndarray:
    """A 1-D coordinate as a numpy array (coordinates are small); StringDType as object."""
    values = np.asarray(ds[name].values)
    return values.astype(object) if values.dtype.kind == "T" else values


def _text(value: object) -> str:
    """A table cell as a label: missing -> "", whole floats without ".0"."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _table_source(table: pd.DataFrame) -> str:
    return str(table.attrs.get("source", "stimulus table"))


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    """The stimulus table indexed by a unique ``stimulus_id``, or an InputError."""
    src = _table_source(table)
    if not isinstance(table, pd.DataFrame):
        raise InputError(src, "table", f"expected a pandas DataFrame, got {type(table).__name__}")
    if "stimulus_id" in table.columns:
        table = table.set_index("stimulus_id")
    if "memorability" not in table.columns:
        raise InputError(src, "memorability", "column missing from the stimulus table")
    index = table.index.astype(str)
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()[:3].tolist()
        raise InputError(src, "stimulus_id", f"duplicated ids in the stimulus table, e.g. {dup}")
    table = table.copy()
    table.index = index
    return table


def attach_labels(cube: xr.Dataset, table: pd.DataFrame) -> xr.Dataset:
    """Join a cube with the stimulus table on ``stimulus_id``.

    Sets the ``memorability`` coordinate from the table, and ``concept`` and
    ``category`` where the table gives them. No stimulus is dropped.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube (see :mod:`memxr.schema`); its data are not read.
    table : pandas.DataFrame
        Indexed by stimulus id (or with a ``stimulus_id`` column), with a
        ``memorability`` column and optionally ``concept`` and ``category``,
        as :func:`memxr.readers.things_meta.stimulus_table` returns it. A
        ``source`` entry in ``table.attrs`` names it in error messages.

    Returns
    -------
    xarray.Dataset
        The cube with the labels set, still valid. Stimuli absent from the
        table get a NaN memorability and keep their concept and category
        (likewise where the table's concept or category is empty). Attributes
        ``n_matched`` (in the table with a finite score), ``n_missing_score``
        (in the table without a score) and ``n_unknown`` (not in the table)
        add up to the number of stimuli.

    Raises
    ------
    memxr.errors.InputError
        When the table has no ``memorability`` column or repeats an id.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from memxr.schema import example_cube
    >>> table = pd.DataFrame({"concept": ["thing"] * 2, "category": ["toy", np.nan],
    ...                       "memorability": [0.8, np.nan]},
    ...                      index=["thing_00s.jpg", "thing_01s.jpg"])
    >>> out = attach_labels(example_cube(n_stimulus=3), table)
    >>> [out.attrs[k] for k in ("n_matched", "n_missing_score", "n_unknown")]
    [1, 1, 1]
    >>> out.category.values.tolist()
    ['toy', '', '']
    """
    table = _check_table(table)
    ids = pd.Index(_labels(cube, "stimulus_id").astype(str))
    pos = table.index.get_indexer(ids)
    found = pos >= 0
    score = np.full(ids.size, np.nan)
    score[found] = pd.to_numeric(table["memorability"], errors="coerce").to_numpy(float)[pos[found]]
    coords: dict[str, tuple[str, np.ndarray]] = {"memorability": ("stimulus", score)}
    for name in ("concept", "category"):
        if name not in table.columns:
            continue
        old = [_text(v) for v in _labels(cube, name)] if name in cube.coords else [""] * ids.size
        col = table[name].to_numpy(object)
        new = [_text(col[p]) if p >= 0 else "" for p in pos]
        coords[name] = ("stimulus", text_coord([n or o for n, o in zip(new, old, strict=True)]))
    out = cube.assign_coords(coords)
    n_matched = int(np.isfinite(score).sum())
    out.attrs = {
        **cube.attrs,
        "n_matched": n_matched,
        "n_missing_score": int(found.sum()) - n_matched,
        "n_unknown": int((~found).sum()),
    }
    return validate(out)


def _subset(cube: xr.Dataset, positions: np.ndarray) -> xr.Dataset:
    """The stimuli at ``positions`` (in that order), with their repeats."""
    out = cube.isel(stimulus=np.asarray(positions, dtype=np.int64))
    if "repeat_stimulus" in out.dims and "repeat_stimulus_id" in out.coords:
        kept = set(_labels(out, "stimulus_id").tolist())
        rep = [i for i, s in enumerate(_labels(out, "repeat_stimulus_id").tolist()) if s in kept]
        out = out.isel(repeat_stimulus=np.asarray(rep, dtype=np.int64))
    return out


def labelled(cube: xr.Dataset) -> xr.Dataset:
    """The stimuli that have a finite memorability score.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube, usually from :func:`attach_labels`.

    Returns
    -------
    xarray.Dataset
        The scored stimuli in their original order (and the repeats of those
        that were tested), lazily; attribute ``n_unlabelled_dropped``.

    Examples
    --------
    >>> import numpy as np
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_stimulus=3)
    >>> cube["memorability"][:] = [0.5, np.nan, 0.7]
    >>> labelled(cube).sizes["stimulus"], labelled(cube).attrs["n_unlabelled_dropped"]
    (2, 1)
    """
    keep = np.flatnonzero(np.isfinite(_labels(cube, "memorability").astype(float)))
    out = _subset(cube, keep)
    out.attrs = {**cube.attrs, "n_unlabelled_dropped": int(cube.sizes["stimulus"] - keep.size)}
    return out


dropna_memorability = labelled
"""Alias of :func:`labelled`."""


# ----------------------------------------------------------------------------- pairs


def shared_stimuli(a: xr.Dataset, b: xr.Dataset) -> list[str]:
    """Stimulus ids present in both cubes, in the order of ``a``.

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> a, b = example_cube(n_stimulus=4), example_cube(n_stimulus=3)
    >>> shared_stimuli(a.isel(stimulus=[3, 1, 0]), b)
    ['thing_01s.jpg', 'thing_00s.jpg']
    """
    in_b = set(_labels(b, "stimulus_id").astype(str).tolist())
    return [s for s in _labels(a, "stimulus_id").astype(str).tolist() if s in in_b]


def _shared_concepts(a: xr.Dataset, b: xr.Dataset) -> list[str]:
    """Non-empty concepts present in both cubes, in the order first seen in ``a``."""
    in_b = set(_labels(b, "concept").astype(str).tolist())
    seen = dict.fromkeys(c for c in _labels(a, "concept").astype(str).tolist() if c)
    return [c for c in seen if c in in_b]


def _by_concept(cube: xr.Dataset, concepts: Sequence[str]) -> xr.Dataset:
    """The cube averaged per concept (flox groupby, lazily), one row per concept."""
    labels = text_coord(concepts)
    if not len(labels):  # nothing shared: an empty cube with the same variables
        empty = cube.drop_dims([d for d in _STIMULUS_DIMS[1:] if d in cube.dims])
        empty = empty.isel(stimulus=np.zeros(0, dtype=np.int64))
        return empty.assign_coords(n_images=("stimulus", np.zeros(0, dtype=np.int64)))
    response = cube["response"].assign_coords(concept=("stimulus", _labels(cube, "concept")))
    keep = [c for c in response.coords if c != "concept" and "stimulus" in response[c].dims]
    grouped = (
        response.drop_vars(keep)
        .groupby(concept=xr.groupers.UniqueGrouper(labels=labels))
        .mean()
        .rename({"concept": "stimulus"})
        .drop_vars("stimulus")
    )
    meta = pd.DataFrame(
        {
            "concept": _labels(cube, "concept").astype(str),
            "category": [_text(v) for v in _labels(cube, "category")],
            "memorability": _labels(cube, "memorability").astype(float),
            "test": _labels(cube, "split").astype(str) == "test",
            "n_repeats": _labels(cube, "n_repeats").astype(np.int64),
        }
    )
    meta = meta[meta["concept"].isin(set(concepts))]
    per = meta.groupby("concept", sort=False).agg(
        category=("category", lambda s: next((c for c in s if c), "")),
        memorability=("memorability", "mean"),
        test=("test", "all"),
        n_repeats=("n_repeats", "sum"),
        n_images=("concept", "size"),
    )
    per = per.reindex(list(concepts))
    base = cube.drop_dims([d for d in _STIMULUS_DIMS if d in cube.dims])
    out = base.assign(response=grouped.transpose("stimulus", *cube["response"].dims[1:]))
    out = out.assign_coords(
        stimulus_id=("stimulus", labels),
        concept=("stimulus", labels),
        category=("stimulus", text_coord(per["category"].tolist())),
        memorability=("stimulus", per["memorability"].to_numpy(float)),
        split=("stimulus", text_coord(np.where(per["test"], "test", "train").tolist())),
        n_repeats=("stimulus", per["n_repeats"].to_numpy(np.int64)),
        n_images=("stimulus", per["n_images"].to_numpy(np.int64)),
    )
    out["response"].attrs = dict(cube["response"].attrs)
    out.attrs = dict(cube.attrs)
    return out


def align_pair(
    a: xr.Dataset, b: xr.Dataset, by: str = "stimulus_id"
) -> tuple[xr.Dataset, xr.Dataset]:
    """Restrict two cubes to what both saw, in the same order.

    Parameters
    ----------
    a, b : xarray.Dataset
        Two cubes, for example an fMRI subject and a monkey.
    by : {"stimulus_id", "concept"}
        ``stimulus_id`` keeps the images (THINGS file names) in both cubes, in
        the order of ``a``, with their repeats. ``concept`` first averages each
        cube's response over the images of each concept (a lazy groupby with
        the shared concepts as expected groups) and keeps the concepts in
        both, in the order first seen in ``a``.

    Returns
    -------
    (xarray.Dataset, xarray.Dataset)
        Valid cubes with the same ``stimulus_id`` sequence; attributes
        ``aligned_by`` and ``n_shared``. For ``by="concept"`` each row of
        ``stimulus`` is a concept: ``stimulus_id`` and ``concept`` are the
        concept name, ``memorability`` the mean of its images' scores
        (NaN-skipping), ``category`` its first non-empty category, ``split``
        "test" when all its images are test images, ``n_images`` the number
        of images averaged (an unweighted mean of their responses),
        ``n_repeats`` the number of trials behind them; ``response_repeats``
        is dropped.

    Examples
    --------
    >>> from memxr.schema import example_cube, text_coord
    >>> a = example_cube(n_stimulus=4).isel(stimulus=[2, 0, 1])
    >>> b = example_cube(n_stimulus=3, n_channel=2)
    >>> a2, b2 = align_pair(a, b)
    >>> b2.stimulus_id.values.tolist()
    ['thing_02s.jpg', 'thing_00s.jpg', 'thing_01s.jpg']
    >>> a3, b3 = align_pair(a, b, by="concept")
    >>> a3.stimulus_id.values.tolist(), int(a3.n_images[0])
    (['thing'], 3)
    """
    if by == "stimulus_id":
        ids = shared_stimuli(a, b)
        index_a = pd.Index(_labels(a, "stimulus_id").astype(str))
        index_b = pd.Index(_labels(b, "stimulus_id").astype(str))
        a_sub = _subset(a, index_a.get_indexer(ids))
        b_sub = _subset(b, index_b.get_indexer(ids))
    elif by == "concept":
        concepts = _shared_concepts(a, b)
        a_sub, b_sub = _by_concept(a, concepts), _by_concept(b, concepts)
        ids = concepts
    else:
        raise ValueError(f"by must be 'stimulus_id' or 'concept', got {by!r}")
    for out, cube in ((a_sub, a), (b_sub, b)):
        out.attrs = {**cube.attrs, "aligned_by": by, "n_shared": len(ids)}
    return validate(a_sub), validate(b_sub)


# ----------------------------------------------------------------------------- repeats


def _pearson_last(x: np.ndarray, y: np.ndarray, min_n: int = 3) -> np.ndarray:
    """Pearson r along the last axis over the pairs where both are finite."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(ok, x, 0.0).sum(-1) / n
        my = np.where(ok, y, 0.0).sum(-1) / n
        dx = np.where(ok, x - mx[..., None], 0.0)
        dy = np.where(ok, y - my[..., None], 0.0)
        r = (dx * dy).sum(-1) / np.sqrt((dx * dx).sum(-1) * (dy * dy).sum(-1))
    return np.where(n >= min_n, r, np.nan)


def _split_half_kernel(x: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Spearman-Brown split-half reliability of ``x`` (..., stimulus, repeat).

    ``perms`` (split, stimulus, repeat) holds one random order of the repeats
    per split and stimulus. In each split, the first half of the finite repeats
    (in that order) of every element forms half A, the rest half B (so NaN
    padding and odd counts are handled per element); each half is averaged, the
    halves are correlated across stimuli and the correlation ``r`` is stepped up
    to the full number of repeats by ``2 r / (1 + r)``. The mean over splits is
    returned with shape ``x.shape[:-2]``.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    lead = (1,) * (x.ndim - 2)
    total = np.zeros(x.shape[:-2])
    count = np.zeros(x.shape[:-2])
    for perm in perms:
        xp = np.take_along_axis(x, perm.reshape(lead + perm.shape), axis=-1)
        valid = np.isfinite(xp)
        rank = np.cumsum(valid, axis=-1, dtype=np.int32)
        half = rank[..., -1:] // 2
        in_a = valid & (rank <= half)
        in_b = valid & (rank > half)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_a = np.where(in_a, xp, 0).sum(-1, dtype=np.float64) / in_a.sum(-1)
            mean_b = np.where(in_b, xp, 0).sum(-1, dtype=np.float64) / in_b.sum(-1)
            r = _pearson_last(mean_a, mean_b)
            sb = 2.0 * r / (1.0 + r)
        ok = np.isfinite(sb)
        total += np.where(ok, sb, 0.0)
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _split_half(repeats: xr.DataArray, n_splits: int, seed: int) -> xr.DataArray:
    """Split-half reliability of a (repeat_stimulus, repeat, ...) array, lazily."""
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1, got {n_splits}")
    core = ["repeat_stimulus", "repeat"]
    if repeats.chunks is not None:
        repeats = repeats.chunk({d: -1 for d in core})
    shape = (n_splits, repeats.sizes["repeat_stimulus"], repeats.sizes["repeat"])
    perms = np.argsort(np.random.default_rng(seed).random(shape), axis=-1)
    drop = [c for c in repeats.coords if set(repeats[c].dims) & set(core)]
    out = xr.apply_ufunc(
        _split_half_kernel,
        repeats.drop_vars(drop),
        kwargs={"perms": perms},
        input_core_dims=[core],
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    out.attrs = {
        "long_name": "split-half reliability (Spearman-Brown corrected)",
        "units": "1",
        "n_splits": int(n_splits),
        "seed": int(seed),
    }
    return out.rename("split_half_reliability")


def _repeats(cube: xr.Dataset) -> xr.DataArray:
    if "response_repeats" not in cube.data_vars:
        raise ValueError("the cube has no 'response_repeats' (repeated test trials)")
    return cube["response_repeats"]


def split_half_reliability(cube: xr.Dataset, n_splits: int = 20, seed: int = 0) -> xr.DataArray:
    """Split-half reliability of each channel from the repeated test trials.

    For each of ``n_splits`` random splits, the repeats of every test stimulus
    are divided into two halves (among its non-NaN repeats, so NaN padding is
    ignored), each half is averaged, and the two half-means are correlated
    (Pearson) across test stimuli; the correlation is Spearman-Brown corrected
    to the full number of repeats, ``2 r / (1 + r)``, and averaged over splits.
    With signal variance ``s2`` across stimuli and noise variance ``n2`` per
    repeat, the expected value is ``s2 / (s2 + n2 / R)`` for ``R`` repeats.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube with ``response_repeats`` (repeat_stimulus, repeat, channel[, time]).
    n_splits : int
        Number of random splits averaged.
    seed : int
        Seed of the random splits (the same for every channel).

    Returns
    -------
    xarray.DataArray
        Dims (channel[, time]); dask-backed (one task per channel block, the
        repeat axes in memory) when the repeats are. NaN where fewer than three
        stimuli have both halves.

    Examples
    --------
    >>> import numpy as np
    >>> from memxr.schema import example_cube
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.standard_normal((40, 1, 2))
    >>> reps = signal + 0.1 * rng.standard_normal((40, 6, 2))
    >>> cube = example_cube(n_stimulus=40, n_channel=2)
    >>> cube["response_repeats"] = (("repeat_stimulus", "repeat", "channel"), reps)
    >>> cube = cube.assign_coords(repeat_stimulus_id=("repeat_stimulus", cube.stimulus_id.values))
    >>> rel = split_half_reliability(cube, n_splits=5)
    >>> rel.dims, bool((rel > 0.98).all())
    (('channel',), True)
    """
    return _split_half(_repeats(cube), n_splits, seed)


def _roi_mean_repeats(cube: xr.Dataset, rois: Sequence[str] | str | None) -> xr.DataArray:
    """Mean of the repeats over each ROI's channels (NaN channels ignored), lazily."""
    rep = _repeats(cube)
    mask = roi_masks(cube, rois)
    weights = mask.astype(rep.dtype if rep.dtype.kind == "f" else np.float64)
    data = rep.drop_vars([c for c in rep.coords if "channel" in rep[c].dims and c != "channel"])
    total = xr.dot(data.fillna(0), weights, dim="channel")
    count = xr.dot(data.notnull().astype(weights.dtype), weights, dim="channel")
    out = total / count.where(count > 0)
    order = ("repeat_stimulus", "repeat", "roi") + tuple(
        d for d in out.dims if d not in ("repeat_stimulus", "repeat", "roi")
    )
    out = out.transpose(*order)
    return out.assign_coords(n_channels=("roi", mask.sum("channel").values.astype(np.int64)))


def noise_ceiling(
    cube: xr.Dataset,
    rois: Sequence[str] | str | None = None,
    n_splits: int = 20,
    seed: int = 0,
) -> xr.Dataset:
    """Reliability of each ROI's mean response, and the ceiling it puts on correlations.

    Each repeat is first averaged over the ROI's channels (NaN channels
    ignored, as :func:`memxr.reduce.roi_reduce` does), then the split-half
    procedure of :func:`split_half_reliability` is applied to that ROI mean.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube with ``response_repeats`` and ``roi_mask``.
    rois : str or sequence of str, optional
        ROI names (see :mod:`memxr.reduce`); default the cube's default ROIs.
    n_splits, seed : int
        As in :func:`split_half_reliability`.

    Returns
    -------
    xarray.Dataset
        Dims (roi[, time]) with ``n_channels`` per ROI and two variables:

        ``reliability``
            The Spearman-Brown corrected split-half reliability of the
            ROI-mean response (a fraction of variance, the ceiling on R^2).
        ``ceiling_r``
            ``sqrt(reliability)``, the highest Pearson correlation any
            predictor can reach with the ROI-mean response; NaN where the
            reliability is negative.

    Examples
    --------
    >>> import numpy as np
    >>> from memxr.schema import example_cube
    >>> rng = np.random.default_rng(0)
    >>> reps = rng.standard_normal((30, 1, 1)) + rng.standard_normal((30, 4, 3))
    >>> cube = example_cube(n_stimulus=30, n_channel=3)
    >>> cube["response_repeats"] = (("repeat_stimulus", "repeat", "channel"), reps)
    >>> cube = cube.assign_coords(repeat_stimulus_id=("repeat_stimulus", cube.stimulus_id.values))
    >>> nc = noise_ceiling(cube, ["A"], n_splits=5)
    >>> sorted(nc.data_vars), int(nc.n_channels[0])
    (['ceiling_r', 'reliability'], 3)
    >>> bool(np.allclose(nc.ceiling_r ** 2, nc.reliability))
    True
    """
    rel = _split_half(_roi_mean_repeats(cube, rois), n_splits, seed)
    rel.attrs["long_name"] = "split-half reliability of the ROI mean (Spearman-Brown corrected)"
    ceiling = np.sqrt(rel.where(rel >= 0))
    ceiling.attrs = {
        "long_name": "noise ceiling on the Pearson correlation (sqrt of reliability)",
        "units": "1",
    }
    out = xr.Dataset({"reliability": rel, "ceiling_r": ceiling})
    out.attrs = {
        "n_splits": int(n_splits),
        "seed": int(seed),
        "subject": cube.attrs.get("subject", ""),
    }
    return out


_AUTO_ORDER = ("reliability", "nc_testset", "split_half")


def _channel_score(
    cube: xr.Dataset, by: str, window: tuple[float, float] | None, n_splits: int, seed: int
) -> np.ndarray:
    """One reliability value per channel, from a channel coordinate or computed."""
    if by != "split_half":
        coord = cube.coords.get(by)
        if coord is None or coord.dims != ("channel",):
            raise ValueError(f"the cube has no channel coordinate {by!r} to select channels by")
        return np.asarray(coord.values, dtype=float)
    rep = _repeats(cube)
    if "time" in rep.dims:
        if window is not None:
            rep = rep.sel(time=slice(*window))
        rep = rep.mean("time")
    sub = xr.Dataset({"response_repeats": rep})
    return np.asarray(split_half_reliability(sub, n_splits, seed).values, dtype=float)


def select_channels(
    cube: xr.Dataset,
    threshold: float,
    by: str = "auto",
    *,
    window: tuple[float, float] | None = None,
    n_splits: int = 20,
    seed: int = 0,
) -> xr.Dataset:
    """Keep the channels whose reliability reaches ``threshold``.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube.
    threshold : float
        Minimum reliability kept (``>=``), in the units of the chosen measure:
        ``nc_testset`` is in percent (e.g. 20), TVSD ``reliability`` and
        ``split_half`` are correlations (e.g. 0.4). Channels with NaN are dropped.
    by : str
        ``"reliability"`` (TVSD channel coordinate), ``"nc_testset"`` (fMRI,
        percent), ``"split_half"`` (computed from ``response_repeats`` with
        :func:`split_half_reliability`; this reads the repeats, never the
        response), any other channel coordinate name (e.g.
        ``"splithalf_corrected"``), or ``"auto"``: the first of
        ``reliability``, ``nc_testset``, ``split_half`` that the cube has.
    window : (float, float), optional
        For ``split_half`` on a cube with ``time``: the repeats are averaged
        over ``window[0] <= time <= window[1]`` ms (default all times) before
        the reliability is computed.
    n_splits, seed : int
        For ``split_half``.

    Returns
    -------
    xarray.Dataset
        The cube restricted to the kept channels (response still lazy), with
        attributes ``channel_selection_by``, ``channel_selection_threshold``,
        ``n_channels_kept`` and ``n_channels_total``; for ``split_half`` the
        computed values are kept as the channel coordinate ``split_half``.

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_channel=4).assign_coords(
    ...     reliability=("channel", [0.1, 0.5, 0.7, float("nan")]))
    >>> out = select_channels(cube, 0.4)
    >>> out.channel_id.values.tolist(), out.attrs["channel_selection_by"]
    ([2, 3], 'reliability')
    """
    if by == "auto":
        have = [
            b
            for b in _AUTO_ORDER
            if (b in cube.coords and cube[b].dims == ("channel",))
            or (b == "split_half" and "response_repeats" in cube.data_vars)
        ]
        if not have:
            raise ValueError(
                "cannot select channels: the cube has no 'reliability' or 'nc_testset' channel"
                " coordinate and no 'response_repeats'"
            )
        by = have[0]
    score = _channel_score(cube, by, window, n_splits, seed)
    keep = np.flatnonzero(score >= threshold)
    out = cube
    if by == "split_half":
        out = out.assign_coords(split_half=("channel", score))
    out = out.isel(channel=keep)
    out.attrs = {
        **cube.attrs,
        "channel_selection_by": by,
        "channel_selection_threshold": float(threshold),
        "n_channels_kept": int(keep.size),
        "n_channels_total": int(score.size),
    }
    return out
