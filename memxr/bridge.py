"""Human <-> monkey comparisons on the THINGS images both species saw.

Three views of one human (THINGS-fMRI) cube and one monkey (TVSD) cube, each
restricted to the stimuli the two recordings share (:func:`memxr.align.align_pair`):

- :func:`shared_effects`: the memorability effect of every human ROI and every
  monkey area on exactly the same labelled images, with the statistics of
  :func:`memxr.stats.correlate` (concept-grouped permutations and bootstrap) and
  one Benjamini-Hochberg family over all rows of the pair;
- :func:`rsa`: representational similarity: a dissimilarity matrix
  (:func:`rdm`) per human ROI and per monkey area over the shared (train) images,
  or the shared concepts, compared by the Spearman correlation of their upper
  triangles, with Mantel permutation p-values and FDR over the ROI x area matrix;
- :func:`cross_decode`: a memorability decoder fit on one species' own images
  (those the other species did not see), applied to the other species' responses
  after a linear map between the two feature spaces learnt on the shared images
  with concept-grouped cross-validation; its p-value refits the decoder on
  permuted memorability, so that it tests the decoder's transfer and not merely
  the memorability signal that the map carries over from the other species.

:func:`bridge` runs the three and returns the tidy tables of the results
contract (``bridge_effects``, ``bridge_rsa``, ``bridge_decoding``).

A time-resolved monkey cube (``tvsd-trials``) is first averaged over each
area's window (:data:`memxr.reduce.AREA_WINDOWS`: V1 25-125, V4 50-150, IT
75-175 ms), as :func:`memxr.reduce.window_reduce` does.

Memory: effects stream over the data (matrix products over stimulus chunks).
An RDM of ``n`` items holds ``n**2`` float64 values (2,000 items: 32 MB), so
:func:`rsa` subsamples to ``max_items``; :func:`cross_decode` loads each ROI's
pattern (images x channels of that ROI) into memory for scikit-learn.

Examples
--------
>>> import numpy as np
>>> from memxr.schema import example_cube
>>> human = example_cube(n_stimulus=30, n_channel=4, seed=1)
>>> monkey = example_cube(n_stimulus=30, n_channel=1, seed=2).assign_attrs(
...     dataset="tvsd-normmua", subject="monkeyN")
>>> monkey["memorability"] = human["memorability"]
>>> monkey["response"][:, 0] = human["memorability"].values
>>> eff = shared_effects(human, monkey, ["A"], ["A"], n_permutations=99, n_bootstrap=0)
>>> eff[["species", "roi", "n", "pair"]].values.tolist()
[['human', 'A', 30, 'sub-00~monkeyN'], ['macaque', 'A', 30, 'sub-00~monkeyN']]
>>> float(eff.r.iloc[1])
1.0
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from . import align, models, stats
from .features import pattern_features
from .reduce import AREA_WINDOWS, UnknownROIError, default_rois, roi_reduce, window_reduce

__all__ = [
    "DECODING_COLUMNS",
    "DECODING_MODELS",
    "EFFECT_COLUMNS",
    "METRICS",
    "RSA_COLUMNS",
    "bridge",
    "cross_decode",
    "rdm",
    "rsa",
    "shared_effects",
]

EFFECT_COLUMNS = (
    "species",
    "subject",
    "roi",
    "method",
    "r",
    "p",
    "ci_low",
    "ci_high",
    "p_fdr",
    "n",
    "pair",
)
"""Leading columns of the ``bridge_effects`` table (extra columns follow)."""

RSA_COLUMNS = ("pair", "level", "human_roi", "monkey_area", "rsa_r", "p", "p_fdr", "n_items")
"""Leading columns of the ``bridge_rsa`` table."""

DECODING_COLUMNS = (
    "pair",
    "direction",
    "train_features",
    "test_features",
    "pearson_r",
    "spearman_rho",
    "p",
    "n",
)
"""Leading columns of the ``bridge_decoding`` table."""

METRICS = ("correlation", "cosine", "euclidean", "sqeuclidean")
"""Dissimilarities understood by :func:`rdm` (as in :func:`scipy.spatial.distance.pdist`)."""

DECODING_MODELS = ("linear", "ridge", "svr", "mlp_reg")
"""Regressors of :mod:`memxr.models` usable as the source decoder of :func:`cross_decode`."""

_BLOCK_BYTES = 32 * 2**20
"""Largest block of permuted RDM entries held at once by the Mantel test."""

_TIE = 1e-12


# ----------------------------------------------------------------------------- helpers


def _subject(cube: xr.Dataset) -> str:
    return str(cube.attrs.get("subject", ""))


def _pair(human: xr.Dataset, monkey: xr.Dataset) -> str:
    return f"{_subject(human)}~{_subject(monkey)}"


def _ids(cube: xr.Dataset) -> list[str]:
    return [str(s) for s in np.asarray(cube["stimulus_id"].values).tolist()]  # small: labels


def _set_hash(ids: Sequence[str]) -> str:
    """A short hash naming a set of stimuli in a given order (equal hash = same stimuli)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _concept_groups(cube: xr.Dataset) -> np.ndarray | None:
    """Concept per stimulus for grouped statistics; unknown concepts ("") are singletons.

    None when fewer than two groups result (then the stimuli are exchangeable).
    """
    if "concept" not in cube.coords:
        return None
    concepts = np.array([str(c) for c in np.asarray(cube["concept"].values).tolist()], dtype=object)
    known = concepts != ""
    if not known.any():
        return None
    ids = np.array(_ids(cube), dtype=object)
    out = concepts.copy()
    out[~known] = np.array([f"\x00{s}" for s in ids[~known]], dtype=object)
    return out if np.unique(out.astype(str)).size > 1 else None


def _fold_groups(cube: xr.Dataset) -> np.ndarray:
    """Concept groups for folds and permutations; each image its own group when unknown."""
    groups = _concept_groups(cube)
    return np.array(_ids(cube), dtype=object) if groups is None else groups


def _names(cube: xr.Dataset, rois: Sequence[str] | str | None) -> list[str]:
    if rois is None:
        return default_rois(cube)
    return [rois] if isinstance(rois, str) else [str(r) for r in rois]


def _window(roi: str, windows: Mapping[str, tuple[float, float]]) -> tuple[float, float]:
    if roi not in windows:
        raise UnknownROIError(
            f"no time window for ROI {roi!r}; give windows={{roi: (start, stop)}} in ms"
        )
    start, stop = windows[roi]
    return float(start), float(stop)


def _roi_values(
    cube: xr.Dataset,
    rois: Sequence[str] | str | None,
    how: str,
    windows: Mapping[str, tuple[float, float]] | None,
) -> xr.DataArray:
    """(stimulus, roi) ROI reductions, averaged over each area's window when timed (lazy)."""
    out = roi_reduce(cube, _names(cube, rois), how=how)
    if "time" in out.dims:
        out = window_reduce(out, dict(AREA_WINDOWS if windows is None else windows))
    return out


def _pattern(
    cube: xr.Dataset,
    roi: str,
    windows: Mapping[str, tuple[float, float]] | None,
    n_components: int | None = None,
    seed: int = 0,
) -> xr.DataArray:
    """(stimulus, feature) channels of one ROI, over its time window when timed (lazy)."""
    time = None
    if "time" in cube.dims:
        time = _window(roi, dict(AREA_WINDOWS if windows is None else windows))
    return pattern_features(cube, roi, n_components=n_components, time=time, seed=seed)


def _drop_repeats(cube: xr.Dataset) -> xr.Dataset:
    return cube.drop_dims([d for d in ("repeat_stimulus", "repeat") if d in cube.dims])


def _of_split(cube: xr.Dataset, split: str | None) -> xr.Dataset:
    """The cube without its repeats, restricted to one split (None: all stimuli)."""
    cube = _drop_repeats(cube)
    if split is None:
        return cube
    labels = np.asarray(cube["split"].values).astype(str)  # small: one label per stimulus
    return cube.isel(stimulus=np.flatnonzero(labels == split))


def _check_scores(a: xr.Dataset, b: xr.Dataset) -> None:
    """Warn when two aligned cubes carry different memorability for the same images."""
    sa = np.asarray(a["memorability"].values, dtype=float)  # small: one score per stimulus
    sb = np.asarray(b["memorability"].values, dtype=float)
    differ = ~np.isclose(sa, sb, equal_nan=True)
    if differ.any():
        warnings.warn(
            f"memorability differs between {_subject(a)} and {_subject(b)} on {int(differ.sum())}"
            f" of {sa.size} shared images (labelled from different tables?); using"
            f" {_subject(a)}'s scores",
            stacklevel=3,
        )


# ----------------------------------------------------------------------------- effects


def shared_effects(
    human: xr.Dataset,
    monkey: xr.Dataset,
    human_rois: Sequence[str] | str | None = None,
    monkey_rois: Sequence[str] | str | None = None,
    method: str = "spearman",
    how: str = "mean",
    *,
    windows: Mapping[str, tuple[float, float]] | None = None,
    **correlate_kw: Any,
) -> pd.DataFrame:
    """Memorability effects per human ROI and per monkey area on the same shared images.

    Both cubes are restricted to their labelled stimuli (:func:`memxr.align.labelled`)
    and then to the images both saw, in the human cube's order
    (:func:`memxr.align.align_pair`). Every ROI's reduced response
    (:func:`memxr.reduce.roi_reduce`; a time-resolved monkey cube is averaged over
    each area's window first, :func:`memxr.reduce.window_reduce`) is correlated with
    memorability in one call of :func:`memxr.stats.correlate`, so all rows use the
    same stimuli, the same permutations and bootstrap draws, and one FDR family.

    Parameters
    ----------
    human, monkey : xarray.Dataset
        Cubes (:mod:`memxr.schema`), e.g. a THINGS-fMRI subject and a TVSD monkey
        (``tvsd-normmua``, or ``tvsd-trials`` with a ``time`` dim).
    human_rois, monkey_rois : str or sequence of str, optional
        ROI names (:mod:`memxr.reduce`); default each cube's default ROIs.
    method : {"spearman", "pearson"}
        Correlation method.
    how : {"mean", "l2", "sum"}
        ROI reduction.
    windows : mapping of ROI name to (start, stop) ms, optional
        Time windows of a time-resolved cube (default :data:`memxr.reduce.AREA_WINDOWS`).
    **correlate_kw
        ``n_permutations``, ``n_bootstrap``, ``seed``, ``ci``, ``groups`` for
        :func:`memxr.stats.correlate`. By default ``groups`` is the concept of each
        image when concepts are known (images of unknown concept are groups of their
        own), else None.

    Returns
    -------
    pandas.DataFrame
        One row per human ROI then per monkey area, columns :data:`EFFECT_COLUMNS`
        (``species`` "human" or "macaque"; ``p_fdr`` Benjamini-Hochberg over all rows
        of the pair), then ``how``, ``n_channels``, ``stimulus_set`` (a hash of the
        shared stimulus ids in order: equal for every row) and ``groups``.
        ``attrs``: ``stimulus_ids`` (the shared images), ``n_shared``, the
        correlation parameters.

    Raises
    ------
    ValueError
        When fewer than three labelled images are shared.

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> h = example_cube(n_stimulus=12, n_channel=2, seed=0)
    >>> m = example_cube(n_stimulus=10, n_channel=2, seed=1).assign_attrs(subject="monkeyF")
    >>> m["memorability"] = h["memorability"][:10]
    >>> eff = shared_effects(h, m, "A", "A", n_permutations=9, n_bootstrap=9)
    >>> eff.n.tolist(), eff.stimulus_set.nunique(), list(eff.columns[:4])
    ([10, 10], 1, ['species', 'subject', 'roi', 'method'])
    """
    if "time" in human.dims:
        raise ValueError("shared_effects: the human cube has a time dim; reduce it first")
    h, m = align.align_pair(align.labelled(human), align.labelled(monkey))
    n = h.sizes["stimulus"]
    if n < 3:
        raise ValueError(f"shared_effects: only {n} labelled images are shared; need at least 3")
    _check_scores(h, m)
    xh = _roi_values(h, human_rois, how, windows)
    xm = _roi_values(m, monkey_rois, how, windows)
    rows = xr.concat(
        [xr.DataArray(x.variable).rename(roi="row") for x in (xh, xm)], dim="row", join="override"
    )
    groups = _concept_groups(h)
    if "groups" in correlate_kw:
        grouping = "given"
    else:
        grouping = "none" if groups is None else "concept"
    kw = {"groups": groups, **correlate_kw, "compute": True}
    res = stats.correlate(rows, h["memorability"].values, method=method, **kw)
    ids = _ids(h)
    species = ["human"] * xh.sizes["roi"] + ["macaque"] * xm.sizes["roi"]
    out = pd.DataFrame(
        {
            "species": species,
            "subject": [_subject(human)] * xh.sizes["roi"] + [_subject(monkey)] * xm.sizes["roi"],
            "roi": [str(r) for r in np.r_[xh["roi"].values, xm["roi"].values]],
            "method": method,
            "r": res["r"].values,
            "p": res["p"].values,
            "ci_low": res["ci_low"].values,
            "ci_high": res["ci_high"].values,
            "p_fdr": res["p_fdr"].values,
            "n": int(res["n"]),
            "pair": _pair(human, monkey),
            "how": how,
            "n_channels": np.r_[xh["n_channels"].values, xm["n_channels"].values].astype(np.int64),
            "stimulus_set": _set_hash(ids),
            "groups": grouping,
        }
    )
    out.attrs = {**res.attrs, "stimulus_ids": ids, "n_shared": n, "pair": _pair(human, monkey)}
    out.attrs["groups"] = grouping
    return out


# ----------------------------------------------------------------------------- RDM


def _rdm_kernel(x, metric: str):
    """Dissimilarities between the rows of ``x`` (numpy or dask) by matrix products."""
    if metric in ("correlation", "cosine"):
        if metric == "correlation":
            x = x - x.mean(axis=1, keepdims=True)
        norm = (x * x).sum(axis=1) ** 0.5
        with np.errstate(invalid="ignore", divide="ignore"):
            u = x / norm[:, None]
        d = 1.0 - u @ u.T
        return d.clip(0.0, 2.0)
    sq = (x * x).sum(axis=1)
    d = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clip(0.0, None)
    return d**0.5 if metric == "euclidean" else d


def rdm(features: xr.DataArray, metric: str = "correlation", dim: str = "stimulus") -> xr.DataArray:
    """Representational dissimilarity matrix: dissimilarity between every pair of stimuli.

    Computed with matrix products (``X @ X.T`` over the feature axis), so a
    dask-backed input gives a lazy (blocked) result and the features are streamed
    chunk by chunk; the result itself holds ``n**2`` values (8 bytes each: 2,000
    stimuli take 32 MB, 20,000 take 3.2 GB), chunked like the stimulus axis.

    Parameters
    ----------
    features : xarray.DataArray
        Dims ``(dim, feature)`` (any name for the second dim), numpy- or dask-backed.
    metric : {"correlation", "cosine", "euclidean", "sqeuclidean"}
        As :func:`scipy.spatial.distance.pdist`: ``correlation`` is one minus the
        Pearson correlation of two stimuli's patterns across features.
    dim : str
        The stimulus dim.

    Returns
    -------
    xarray.DataArray
        Dims ``(dim, dim + "_2")``, symmetric with a zero diagonal, float64; the
        1-D coords of ``dim`` on the first dim and, suffixed ``_2``, on the second.
        NaN features, or a constant pattern with ``correlation``/``cosine``, give NaN
        in the affected rows and columns.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from scipy.spatial.distance import pdist, squareform
    >>> x = np.random.default_rng(0).normal(size=(5, 7))
    >>> d = rdm(xr.DataArray(x, dims=("stimulus", "feature")))
    >>> d.dims, bool(np.allclose(d, squareform(pdist(x, "correlation"))))
    (('stimulus', 'stimulus_2'), True)
    >>> lazy = rdm(xr.DataArray(x, dims=("stimulus", "feature")).chunk(2), "euclidean")
    >>> lazy.chunks is not None, bool(np.allclose(lazy, squareform(pdist(x))))
    (True, True)
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if features.ndim != 2 or dim not in features.dims:
        raise ValueError(f"features must have dims ({dim!r}, feature), got {features.dims}")
    other = dim + "_2"
    x = features.transpose(dim, ...).data
    lazy = isinstance(x, da.Array)
    x = x.astype(np.float64) if lazy else np.asarray(x, dtype=np.float64)
    d = _rdm_kernel(x, metric)
    if lazy:  # blocks follow the stimulus chunks; the feature chunks are summed over
        eye = da.eye(x.shape[0], chunks=max(d.chunks[0]), dtype=bool).rechunk(d.chunks)
        d = da.where(eye, 0.0, d)
    else:
        np.fill_diagonal(d, 0.0)
    coords = {}
    for name, c in features.coords.items():
        if c.dims == (dim,):  # variables, so that lazy coordinates stay lazy
            coords[name] = c.variable
            coords[f"{name}_2"] = xr.Variable((other,), c.variable.data, c.attrs)
    out = xr.DataArray(d, dims=(dim, other), coords=coords, name="rdm")
    out.attrs = {"long_name": f"{metric} dissimilarity", "metric": metric, "units": "1"}
    return out


# ----------------------------------------------------------------------------- RSA


def _subsample(n: int, max_items: int, seed: int) -> np.ndarray:
    """All items, or ``max_items`` of them drawn without replacement from ``seed`` (sorted)."""
    if n <= max_items:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_items, replace=False))


def _clean(features: xr.DataArray, zscore: bool) -> tuple[xr.DataArray, int]:
    """Drop features with NaN or no variance over the items; z-score them if asked.

    One pass over the features for their per-feature mean, sd and NaN flag (small).
    """
    mean, sd, bad = dask.compute(
        features.mean("stimulus"), features.std("stimulus"), features.isnull().any("stimulus")
    )
    mean, sd, bad = (np.asarray(a.values) for a in (mean, sd, bad))
    keep = np.flatnonzero(~bad & np.isfinite(sd) & (sd > 0))
    out = features.isel(feature=keep)
    if zscore:
        out = (out - mean[keep][None, :]) / sd[keep][None, :]
    return out, int(features.sizes["feature"] - keep.size)


def _standard_ranks(values: np.ndarray) -> np.ndarray | None:
    """Ranks standardized so that the dot product of two of them is their Spearman rho."""
    if not np.isfinite(values).all():
        return None
    r = scipy.stats.rankdata(values)
    r = r - r.mean()
    norm = np.sqrt(r @ r)
    return r / norm if norm > 0 else None


def _mantel(
    a: np.ndarray, b_full: np.ndarray, perms: np.ndarray, alternative: str
) -> tuple[np.ndarray, np.ndarray]:
    """Observed rho of each row of ``a`` with ``b`` and their Mantel permutation p-values.

    ``a`` (R, m) holds standardized ranks of R upper triangles; ``b_full`` (n, n) the
    standardized ranks of the other RDM placed symmetrically. A permutation of the
    items relabels the rows and columns of ``b`` together.
    """
    iu, ju = np.triu_indices(b_full.shape[0], k=1)
    r_obs = a @ b_full[iu, ju]
    if not perms.shape[0]:
        return r_obs, np.full(r_obs.shape, np.nan)
    exceed = np.zeros(r_obs.shape)
    step = max(1, _BLOCK_BYTES // (8 * iu.size))
    for lo in range(0, perms.shape[0], step):  # blocks of permutations, bounded memory
        p = perms[lo : lo + step]
        null = a @ b_full[p[:, iu], p[:, ju]].T  # (R, block)
        if alternative == "greater":
            exceed += (null >= (r_obs - _TIE * np.abs(r_obs))[:, None]).sum(1)
        else:
            exceed += (np.abs(null) >= (np.abs(r_obs) * (1 - _TIE))[:, None]).sum(1)
    return r_obs, (1.0 + exceed) / (1.0 + perms.shape[0])


def _rank_vectors(
    cube: xr.Dataset,
    rois: list[str],
    metric: str,
    zscore: bool,
    windows: Mapping[str, tuple[float, float]] | None,
) -> tuple[list[np.ndarray | None], list[int], list[int]]:
    """Standardized ranks of each ROI's RDM upper triangle; channels used and dropped."""
    out, used, dropped = [], [], []
    for roi in rois:
        feats, n_bad = _clean(_pattern(cube, roi, windows), zscore)
        used.append(int(feats.sizes["feature"]))
        dropped.append(n_bad)
        if feats.sizes["feature"] == 0:
            out.append(None)
            continue
        d = np.asarray(rdm(feats, metric).values)  # n x n, computed
        iu, ju = np.triu_indices(d.shape[0], k=1)
        out.append(_standard_ranks(d[iu, ju]))
    return out, used, dropped


def _symmetric(v: np.ndarray, n: int) -> np.ndarray:
    full = np.zeros((n, n))
    iu, ju = np.triu_indices(n, k=1)
    full[iu, ju] = v
    full[ju, iu] = v
    return full


def rsa(
    human: xr.Dataset,
    monkey: xr.Dataset,
    human_rois: Sequence[str] | str | None = None,
    monkey_rois: Sequence[str] | str | None = None,
    level: str = "image",
    n_permutations: int = 1000,
    seed: int = 0,
    max_items: int = 2000,
    *,
    metric: str = "correlation",
    zscore: bool = False,
    alternative: str = "greater",
    split: str | None = "train",
    min_concept_images: int = 1,
    windows: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Representational similarity between each human ROI and each monkey area.

    The cubes are aligned on the images both saw (``level="image"``) or averaged
    per concept and aligned on the concepts both saw (``level="concept"``,
    :func:`memxr.align.align_pair` with ``by="concept"``); memorability plays no
    part. Each ROI's pattern (its channels, :func:`memxr.features.pattern_features`;
    a time-resolved cube averaged over the area's window) gives an RDM
    (:func:`rdm`) over these items; each human RDM is compared with each monkey RDM
    by the Spearman correlation of their upper triangles. The p-value is a Mantel
    test: the items of the monkey RDM are relabelled by random permutations (the
    same permutations for every pair) and ``rho`` is recomputed; BH-FDR runs over
    the whole human ROI x monkey area matrix.

    Parameters
    ----------
    human, monkey : xarray.Dataset
        Cubes; a monkey cube with ``time`` is averaged per area window.
    human_rois, monkey_rois : str or sequence of str, optional
        ROI names; default each cube's default ROIs.
    level : {"image", "concept"}
        Items of the RDMs: shared images, or shared concepts (mean over their images).
    n_permutations : int
        Mantel permutations (0: no p-values).
    seed : int
        Seeds the subsample and the permutations.
    max_items : int
        When more items are shared, a subsample of this many (drawn from ``seed``,
        kept in order) is used; ``n_shared`` and ``subsampled`` record it. Memory is
        about ``(2 + (#ROIs + #areas) / 2) * max_items**2 * 8`` bytes plus 32 MB of
        permuted entries (2,000 items, 10 ROIs and 3 areas: about 0.3 GB).
    metric : str
        RDM dissimilarity (:data:`METRICS`).
    zscore : bool
        Z-score every channel across the items before the RDM (removes each
        channel's baseline and scale; the default keeps the patterns as they are, as
        :func:`scipy.spatial.distance.pdist` would see them). Channels with NaN or
        without variance over the items are left out either way (``n_dropped_*``
        columns).
    alternative : {"greater", "two-sided"}
        ``greater``: ``(1 + #{rho_perm >= rho}) / (1 + P)``; ``two-sided``: on ``|rho|``.
    split : {"train", "test"} or None
        Use only the images of this split in both cubes (default the train images,
        each shown once; see the notes); None: all shared images.
    min_concept_images : int
        ``level="concept"``: keep only the concepts averaged over at least this many
        images in both cubes (see the notes).
    windows : mapping, optional
        Time windows of a time-resolved cube (default :data:`memxr.reduce.AREA_WINDOWS`).

    Returns
    -------
    pandas.DataFrame
        One row per (human ROI, monkey area), columns :data:`RSA_COLUMNS`
        (``rsa_r`` is the Spearman rho; NaN when an RDM is undefined), then
        ``n_shared``, ``subsampled``, ``metric``, ``n_permutations``,
        ``human_n_channels``, ``monkey_n_channels``, ``n_dropped_human``,
        ``n_dropped_monkey``, ``alternative``, ``split``. ``attrs["items"]``: the item
        ids used; an empty table has ``attrs["reason"]``.

    Notes
    -----
    Items averaged over different numbers of trials or images differ in noise in
    *both* species (a test image averaged over its repeats, a concept with one image
    next to concepts with twelve), and such a shared noise structure correlates two
    RDMs without any shared representation. Compare like with like: hence
    ``split="train"`` by default, and ``min_concept_images`` at the concept level.

    Examples
    --------
    >>> import numpy as np
    >>> from memxr.schema import example_cube
    >>> h = example_cube(n_stimulus=20, n_channel=5, seed=0)
    >>> m = h.copy().assign_attrs(subject="monkeyN")
    >>> res = rsa(h, m, "A", "A", n_permutations=99)
    >>> res[["human_roi", "monkey_area", "rsa_r", "p", "n_items"]].values.tolist()
    [['A', 'A', 1.0, 0.01, 20]]
    """
    if level not in ("image", "concept"):
        raise ValueError(f"level must be 'image' or 'concept', got {level!r}")
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    if alternative not in ("greater", "two-sided"):
        raise ValueError(f"alternative must be 'greater' or 'two-sided', got {alternative!r}")
    if int(n_permutations) < 0 or int(max_items) < 3:
        raise ValueError("n_permutations must be >= 0 and max_items >= 3")
    if "time" in human.dims:
        raise ValueError("rsa: the human cube has a time dim; reduce it first")
    h, m = align.align_pair(
        _of_split(human, split),
        _of_split(monkey, split),
        by="stimulus_id" if level == "image" else level,
    )
    if level == "concept" and min_concept_images > 1:
        enough = (h["n_images"].values >= min_concept_images) & (
            m["n_images"].values >= min_concept_images
        )
        h, m = h.isel(stimulus=np.flatnonzero(enough)), m.isel(stimulus=np.flatnonzero(enough))
    n_shared = h.sizes["stimulus"]
    hr, mr = _names(h, human_rois), _names(m, monkey_rois)
    columns = list(RSA_COLUMNS)
    if n_shared < 3:
        out = pd.DataFrame(columns=columns)
        out.attrs = {
            "reason": f"only {n_shared} shared {level}s"
            + (f" of the {split} split" if split else "")
            + "; an RDM needs at least 3",
            "level": level,
        }
        return out
    keep = _subsample(n_shared, int(max_items), seed)
    h, m = h.isel(stimulus=keep), m.isel(stimulus=keep)
    n = keep.size
    a_vecs, h_used, h_drop = _rank_vectors(h, hr, metric, zscore, windows)
    b_vecs, m_used, m_drop = _rank_vectors(m, mr, metric, zscore, windows)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    perms = rng.permuted(np.tile(np.arange(n), (int(n_permutations), 1)), axis=1)
    rho = np.full((len(hr), len(mr)), np.nan)
    p = np.full((len(hr), len(mr)), np.nan)
    ok = [i for i, v in enumerate(a_vecs) if v is not None]
    if ok:
        a = np.stack([a_vecs[i] for i in ok])
        for j, b in enumerate(b_vecs):
            if b is None:
                continue
            r_obs, p_obs = _mantel(a, _symmetric(b, n), perms, alternative)
            rho[ok, j], p[ok, j] = np.clip(r_obs, -1.0, 1.0), p_obs
    p_fdr = stats.fdr(xr.DataArray(p, dims=("human_roi", "monkey_area"))).values
    rows = []
    for i, roi in enumerate(hr):
        for j, area in enumerate(mr):
            rows.append(
                {
                    "pair": _pair(human, monkey),
                    "level": level,
                    "human_roi": roi,
                    "monkey_area": area,
                    "rsa_r": rho[i, j],
                    "p": p[i, j],
                    "p_fdr": p_fdr[i, j],
                    "n_items": int(n),
                    "n_shared": int(n_shared),
                    "subsampled": bool(n < n_shared),
                    "metric": metric,
                    "n_permutations": int(n_permutations),
                    "human_n_channels": h_used[i],
                    "monkey_n_channels": m_used[j],
                    "n_dropped_human": h_drop[i],
                    "n_dropped_monkey": m_drop[j],
                    "alternative": alternative,
                    "split": split or "all",
                }
            )
    out = pd.DataFrame(rows)
    out.attrs = {"items": _ids(h), "seed": int(seed), "zscore": bool(zscore), "level": level}
    return out


# ----------------------------------------------------------------------------- decoding


def _is_human(cube: xr.Dataset) -> bool:
    return cube.attrs.get("dataset") == "things-fmri"


def _pair_of(source: xr.Dataset, target: xr.Dataset) -> str:
    if _is_human(target) and not _is_human(source):
        return _pair(target, source)
    return _pair(source, target)


def _empty_decoding(reason: str, **attrs: Any) -> pd.DataFrame:
    out = pd.DataFrame(columns=list(DECODING_COLUMNS))
    out.attrs = {"reason": reason, **attrs}
    return out


def _matrix(features: xr.DataArray) -> np.ndarray:
    """Features as an in-memory float64 matrix (stimulus, feature)."""
    return np.asarray(features.transpose("stimulus", "feature").values, dtype=np.float64)


def _inner(groups: np.ndarray, seed: int) -> list | None:
    """Concept-grouped inner folds for choosing ridge's alpha (None: too few concepts)."""
    k = min(3, int(np.unique(groups.astype(str)).size))
    if k < 2:
        return None
    return models.make_folds(groups.size, groups, cv=k, seed=seed)[0]


def _fit_decoder(model: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int):
    """The source decoder, fit as :mod:`memxr.models` fits a fold: standardized target;
    ``ridge``'s alpha by :func:`memxr.models.ridge_cv_alpha` over inner concept folds."""
    from sklearn.preprocessing import StandardScaler

    mu, sd = float(y.mean()), float(y.std()) or 1.0
    target = (y - mu) / sd
    params: dict[str, Any] = {}
    inner = _inner(groups, seed) if model == "ridge" else None
    if inner is not None:
        scaled = StandardScaler().fit_transform(x)
        params["alpha"] = models.ridge_cv_alpha(scaled, target, inner)
    pipe = models.make_model(model, seed=seed, **params).fit(x, target)
    return lambda z: pipe.predict(z) * sd + mu


def _mapped(
    xt: np.ndarray, xs: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> np.ndarray:
    """Out-of-fold source-space features of the target images: a ridge map per fold."""
    out = np.full((xt.shape[0], xs.shape[1]), np.nan)
    for train, test in folds:
        mapper = models.make_model("ridge", seed=seed)  # alpha: efficient leave-one-out
        mapper.fit(xt[train], xs[train])
        out[test] = mapper.predict(xt[test])
    return out


def _finite_columns(mat: np.ndarray) -> np.ndarray:
    """Columns (channels) finite on every image; channels with NaN are left out."""
    return np.flatnonzero(np.isfinite(mat).all(axis=0))


def _p_greater(null: np.ndarray, observed: float) -> float:
    """``(1 + #{null >= observed}) / (1 + #null)`` over the finite null values."""
    null = null[np.isfinite(null)]
    if not null.size or not np.isfinite(observed):
        return float("nan")
    return float((1 + np.sum(null >= observed)) / (1 + null.size))


def _cov(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - a.mean()) * (b - b.mean())))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _decoding_sets(
    source: xr.Dataset, target: xr.Dataset, disjoint_concepts: bool
) -> tuple[xr.Dataset, xr.Dataset, int]:
    """Shared labelled images of the target, and the source's own then shared images.

    The source cube returned holds its ``n_own`` labelled images that the target did
    not see first, then the shared images in the target's order, so that one
    pattern (and one PCA) covers both.
    """
    src, tgt = align.labelled(source), align.labelled(target)
    t_shared, _ = align.align_pair(tgt, src)
    seen = set(_ids(target))
    concepts = set(np.asarray(t_shared["concept"].values).astype(str).tolist()) - {""}
    src_concepts = np.asarray(src["concept"].values).astype(str)
    own = [
        i
        for i, (s, c) in enumerate(zip(_ids(src), src_concepts, strict=True))
        if s not in seen and not (disjoint_concepts and c in concepts)
    ]
    shared = pd.Index(_ids(src)).get_indexer(_ids(t_shared))
    rows = np.concatenate([np.asarray(own, dtype=np.int64), shared.astype(np.int64)])
    return t_shared, _drop_repeats(src).isel(stimulus=rows), len(own)


def cross_decode(
    source: xr.Dataset,
    target: xr.Dataset,
    source_rois: Sequence[str] | str | None = None,
    target_rois: Sequence[str] | str | None = None,
    model: str = "ridge",
    n_splits: int = 5,
    n_permutations: int = 200,
    seed: int = 0,
    *,
    n_components: int | None = None,
    min_images: int = 20,
    disjoint_concepts: bool = False,
    windows: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Decode memorability from one species' responses with the other species' decoder.

    The feature spaces of the two species differ, so a decoder cannot be moved
    across as it is. Instead, for each source ROI and target ROI:

    1. a memorability decoder (``model``, :func:`memxr.models.make_model`) is fit on
       the source ROI's pattern (its channels) over the source's labelled images
       that the target did not see;
    2. on the images both saw, a ridge map from target features to source features
       is learnt in concept-grouped folds (:func:`memxr.models.make_folds`; the
       map's alpha, shared by all source features, by RidgeCV's efficient
       leave-one-out on the training fold: the map never sees memorability); the
       held-out target images are mapped into the source space and decoded by the
       source decoder (whose alpha, for ``ridge``, comes from inner concept-grouped
       folds of its own images);
    3. the pooled out-of-fold predictions are scored against memorability
       (Pearson r, Spearman rho).

    Memorability of the shared images is used nowhere before step 3. Still,
    memorability reaches the predictions through the target features alone: the
    map carries the target's memorability signal into whatever source direction
    happens to covary with it on the training images, and a decoder with no
    memorability code of its own projects it with a random sign. So ``p`` asks
    whether the *source decoder* transfers: memorability is permuted between the
    concepts of the source's own images (:func:`memxr.models.grouped_permutation`),
    the decoder refit each time (alpha chosen again) and applied to the same mapped
    features. The statistic is the covariance of the predictions (in memorability
    units) with memorability, ``p = (1 + #{cov_null >= cov}) / (1 + P)``: Pearson r
    alone cannot tell a decoder that learnt memorability from one that did not when
    the mapped features are dominated by one axis (every decoder then reaches a
    high ``|r|``, with a random sign), while a decoder fit on permuted memorability
    predicts with little spread, so its covariance stays small. ``p_target`` is the plain
    association test (predictions fixed, memorability of the shared images permuted
    between concepts); it is significant whenever the target features carry
    memorability, whatever the source, and is given for reference only.

    Parameters
    ----------
    source, target : xarray.Dataset
        Cubes; the decoder is trained on ``source`` (e.g. a TVSD monkey) and applied
        to ``target`` (e.g. an fMRI subject). A time-resolved cube is averaged over
        each area's window.
    source_rois, target_rois : str or sequence of str, optional
        ROI names; default each cube's default ROIs.
    model : str
        One of :data:`DECODING_MODELS`.
    n_splits : int
        Concept-grouped folds of the map.
    n_permutations : int
        Permutations of memorability among concepts (0: no p-values); each one
        refits the source decoder.
    seed : int
        Seeds the folds, the estimators and the permutations.
    n_components : int, optional
        Reduce each ROI's channels to their first principal components
        (:func:`memxr.features.pattern_features`; fit without memorability).
    min_images : int
        Fewest shared images and fewest source-only images for a meaningful result.
    disjoint_concepts : bool
        Also leave out of the decoder's training set the source images whose concept
        has a shared image (a stricter, across-concept generalisation).
    windows : mapping, optional
        Time windows of a time-resolved cube (default :data:`memxr.reduce.AREA_WINDOWS`).

    Returns
    -------
    pandas.DataFrame
        One row per (source ROI, target ROI): columns :data:`DECODING_COLUMNS`
        (``direction`` "<source subject>-><target subject>", ``train_features`` the
        source ROI, ``test_features`` the target ROI, ``n`` the shared images
        scored), then ``model``, ``n_train`` (source-only images of the decoder),
        ``n_splits``, ``n_permutations``, ``chance_mean`` (mean null r), ``p_target``,
        ``source_n_channels``, ``target_n_channels``. Empty, with
        ``attrs["reason"]``, when fewer than ``min_images`` images are shared or
        source-only, or the shared images span fewer concepts than ``n_splits``.
        Each ROI's pattern is loaded into memory (images x channels).

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> h = example_cube(n_stimulus=10)
    >>> m = example_cube(n_stimulus=10).assign_attrs(dataset="tvsd-normmua", subject="monkeyN")
    >>> out = cross_decode(m, h, "A", "A")
    >>> len(out), out.attrs["reason"]
    (0, 'only 10 labelled images are shared (need 20)')
    """
    if model not in DECODING_MODELS:
        raise ValueError(f"model must be one of {DECODING_MODELS}, got {model!r}")
    n_permutations = int(n_permutations)
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    direction = f"{_subject(source)}->{_subject(target)}"
    info = {"direction": direction, "pair": _pair_of(source, target)}
    t_sh, s_sel, n_own = _decoding_sets(source, target, disjoint_concepts)
    n_sh = t_sh.sizes["stimulus"]
    if n_sh < min_images:
        return _empty_decoding(
            f"only {n_sh} labelled images are shared (need {min_images})", **info
        )
    if n_own < min_images:
        return _empty_decoding(
            f"only {n_own} labelled images of {_subject(source)} are not in {_subject(target)}"
            f" (need {min_images})",
            **info,
        )
    groups = _fold_groups(t_sh)
    if np.unique(groups).size < n_splits:
        return _empty_decoding(
            f"the shared images span {np.unique(groups).size} concepts, fewer than"
            f" n_splits={n_splits}",
            **info,
        )
    folds = models.make_folds(n_sh, groups, cv=int(n_splits), seed=seed)[0]
    own_groups = _fold_groups(s_sel.isel(stimulus=slice(0, n_own)))
    y = np.asarray(t_sh["memorability"].values, dtype=float)
    y_own = np.asarray(s_sel["memorability"].values[:n_own], dtype=float)
    rng_own, rng_target = (np.random.default_rng(q) for q in np.random.SeedSequence(seed).spawn(2))
    own_perms = [models.grouped_permutation(own_groups, rng_own) for _ in range(n_permutations)]
    perms = [models.grouped_permutation(groups, rng_target) for _ in range(n_permutations)]
    s_rois, t_rois = _names(source, source_rois), _names(target, target_rois)
    rows = []
    t_cache: dict[str, np.ndarray] = {}
    for s_roi in s_rois:
        both = _matrix(_pattern(s_sel, s_roi, windows, n_components, seed))
        cols = _finite_columns(both)
        own, shared = both[:n_own, cols], both[n_own:, cols]
        decoders = [
            _fit_decoder(model, own, y_own if k < 0 else y_own[own_perms[k]], own_groups, seed)
            for k in range(-1, len(own_perms))
        ]
        for t_roi in t_rois:
            if t_roi not in t_cache:
                xt = _matrix(_pattern(t_sh, t_roi, windows, n_components, seed))
                t_cache[t_roi] = xt[:, _finite_columns(xt)]
            xt = t_cache[t_roi]
            mapped = _mapped(xt, shared, folds, seed)
            pred = decoders[0](mapped)
            r = _pearson(pred, y)
            null_pred = [dec(mapped) for dec in decoders[1:]]
            null_r = np.array([_pearson(q, y) for q in null_pred])
            null_cov = np.array([_cov(q, y) for q in null_pred])
            null_target = np.array([_pearson(pred, y[p]) for p in perms])
            rows.append(
                {
                    "pair": info["pair"],
                    "direction": direction,
                    "train_features": s_roi,
                    "test_features": t_roi,
                    "pearson_r": r,
                    "spearman_rho": float(scipy.stats.spearmanr(pred, y).statistic),
                    "p": _p_greater(null_cov, _cov(pred, y)),
                    "n": int(n_sh),
                    "model": model,
                    "n_train": int(n_own),
                    "n_splits": int(n_splits),
                    "n_permutations": int(n_permutations),
                    "chance_mean": float(np.nanmean(null_r)) if null_r.size else np.nan,
                    "p_target": _p_greater(null_target, r),
                    "source_n_channels": int(cols.size),
                    "target_n_channels": int(xt.shape[1]),
                }
            )
    out = pd.DataFrame(rows)
    out.attrs = {**info, "seed": int(seed), "shared_ids": _ids(t_sh)}
    return out


# ----------------------------------------------------------------------------- all three


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """Rows of the non-empty frames; the reasons of the empty ones in ``attrs``."""
    full = [f for f in frames if len(f)]
    reasons = {
        str(f.attrs.get("direction", f.attrs.get("level", i))): f.attrs["reason"]
        for i, f in enumerate(frames)
        if not len(f) and "reason" in f.attrs
    }
    out = pd.concat(full, ignore_index=True) if full else pd.DataFrame(columns=list(columns))
    out.attrs = {"reasons": reasons} if reasons else {}
    return out


def bridge(
    human: xr.Dataset,
    monkey: xr.Dataset,
    human_rois: Sequence[str] | str | None = None,
    monkey_rois: Sequence[str] | str | None = None,
    *,
    method: str = "spearman",
    how: str = "mean",
    levels: Sequence[str] = ("image", "concept"),
    split: str | None = "train",
    n_permutations: int = 1000,
    n_bootstrap: int = 1000,
    n_decoding_permutations: int = 200,
    max_items: int = 2000,
    seed: int = 0,
    windows: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, pd.DataFrame]:
    """All three bridges of one human-monkey pair, as the tables of the results contract.

    Parameters
    ----------
    human, monkey : xarray.Dataset
        A THINGS-fMRI cube and a TVSD cube.
    human_rois, monkey_rois : str or sequence of str, optional
        ROI names; default each cube's default ROIs.
    method, how
        Of :func:`shared_effects`.
    levels : sequence of {"image", "concept"}
        RSA levels (:func:`rsa`).
    split : {"train", "test"} or None
        Images of the RSA (:func:`rsa`); effects and decoding use every shared image.
    n_permutations, n_bootstrap : int
        Resamples of the effects (and permutations of the RSA Mantel tests).
    n_decoding_permutations : int
        Permutations of :func:`cross_decode`.
    max_items, seed, windows
        Passed on.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``effects`` (:func:`shared_effects`), ``rsa`` (:func:`rsa` for each level),
        ``decoding`` (:func:`cross_decode` monkey -> human, then human -> monkey).
        A part without a meaningful result is an empty table whose
        ``attrs["reasons"]`` says why (keyed by level or direction).

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> h = example_cube(n_stimulus=8, seed=0)
    >>> m = example_cube(n_stimulus=8, seed=1).assign_attrs(dataset="tvsd-normmua",
    ...                                                   subject="monkeyF")
    >>> m["memorability"] = h["memorability"]
    >>> out = bridge(h, m, "A", "A", n_permutations=9, n_bootstrap=9, n_decoding_permutations=9)
    >>> sorted(out), len(out["effects"]), len(out["rsa"]), len(out["decoding"])
    (['decoding', 'effects', 'rsa'], 2, 1, 0)
    >>> out["rsa"].attrs["reasons"]["concept"]
    'only 1 shared concepts of the train split; an RDM needs at least 3'
    >>> out["decoding"].attrs["reasons"]["monkeyF->sub-00"]
    'only 8 labelled images are shared (need 20)'
    """
    n_shared = len(align.shared_stimuli(align.labelled(human), align.labelled(monkey)))
    if n_shared >= 3:
        effects = shared_effects(
            human,
            monkey,
            human_rois,
            monkey_rois,
            method,
            how,
            windows=windows,
            n_permutations=n_permutations,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
    else:
        effects = pd.DataFrame(columns=list(EFFECT_COLUMNS))
        effects.attrs = {"reasons": {"effects": f"only {n_shared} labelled images are shared"}}
    rsas = [
        rsa(
            human,
            monkey,
            human_rois,
            monkey_rois,
            level=level,
            n_permutations=n_permutations,
            seed=seed,
            max_items=max_items,
            split=split,
            windows=windows,
        )
        for level in levels
    ]
    for level, frame in zip(levels, rsas, strict=True):
        frame.attrs.setdefault("level", level)
    decoding = [
        cross_decode(
            src,
            tgt,
            src_rois,
            tgt_rois,
            n_permutations=n_decoding_permutations,
            seed=seed,
            windows=windows,
        )
        for src, tgt, src_rois, tgt_rois in (
            (monkey, human, monkey_rois, human_rois),
            (human, monkey, human_rois, monkey_rois),
        )
    ]
    return {
        "effects": effects,
        "rsa": _concat(rsas, RSA_COLUMNS),
        "decoding": _concat(decoding, DECODING_COLUMNS),
    }
