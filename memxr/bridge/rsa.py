"""Representational similarity between human ROIs and monkey areas.

:func:`rdm` builds a dissimilarity matrix by matrix products (lazy on dask input);
:func:`rsa` compares the RDMs of every human ROI with those of every monkey area
over the shared images or concepts, by the Spearman correlation of their upper
triangles, with Mantel permutation p-values (images relabelled within the concept
structure) and FDR over the ROI x area matrix.
Public through :mod:`memxr.bridge`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from .. import align, models, stats
from ..schema import trials_label
from .inputs import (
    fold_groups,
    ids_of,
    of_split,
    pair_name,
    reuse,
    roi_channels,
    roi_names,
    roi_pattern,
    rois_with_channels,
    set_hash,
    windows_key,
)

__all__ = ["METRICS", "RSA_COLUMNS", "rdm", "rsa"]

RSA_COLUMNS = ("pair", "level", "human_roi", "monkey_area", "rsa_r", "p", "p_fdr", "n_items")
"""Leading columns of the ``bridge_rsa`` table."""

METRICS = ("correlation", "cosine", "euclidean", "sqeuclidean")
"""Dissimilarities understood by :func:`rdm` (as in :func:`scipy.spatial.distance.pdist`)."""

_BLOCK_BYTES = 32 * 2**20
"""Largest block of permuted RDM entries held at once by the Mantel test."""

_TIE = 1e-12


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


PERSIST_BYTES = 2 << 30
"""ROI patterns of the RSA items up to this size are persisted (in the workers' memory or
this process's), so that the cube is read once for them, not once per pass."""


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


def _rank_vector(
    cube: xr.Dataset,
    roi: str,
    metric: str,
    zscore: bool,
    windows: Mapping[str, tuple[float, float]] | None,
) -> tuple[np.ndarray | None, int, int]:
    """Standardized ranks of one ROI's RDM upper triangle; channels used and dropped."""
    pattern = roi_pattern(cube, roi, windows)
    if pattern.chunks is not None and pattern.nbytes <= PERSIST_BYTES:
        # read once for the channel statistics and the RDM (a subsample of rows still
        # reads whole chunks: at real size up to 7 GB per ROI and pass)
        pattern = pattern.persist()
    feats, n_bad = _clean(pattern, zscore)
    if feats.sizes["feature"] == 0:
        return None, 0, n_bad
    d = np.asarray(rdm(feats, metric).values)  # n x n, computed
    iu, ju = np.triu_indices(d.shape[0], k=1)
    return _standard_ranks(d[iu, ju]), int(feats.sizes["feature"]), n_bad


def _rank_vectors(
    cube: xr.Dataset,
    rois: list[str],
    metric: str,
    zscore: bool,
    windows: Mapping[str, tuple[float, float]] | None,
    cache: MutableMapping | None = None,
    owner: xr.Dataset | None = None,
    key: tuple = (),
) -> tuple[list[np.ndarray | None], list[int], list[int]]:
    """Standardized ranks of each ROI's RDM upper triangle; channels used and dropped.

    An ROI left without channels (e.g. by a reliability filter) gives None (NaN rows).
    With a ``cache``, each ROI's result is reused for the cube ``owner`` that ``cube`` was
    cut from and ``key`` (:func:`memxr.bridge.inputs.reuse`).
    """
    out, used, dropped = [], [], []
    filled = set(rois_with_channels(cube, rois))
    for roi in rois:
        if roi not in filled:
            vec, n_used, n_bad = None, 0, 0
        else:
            vec, n_used, n_bad = reuse(
                cache,
                owner if owner is not None else cube,
                (*key, roi, metric, bool(zscore), windows_key(windows)),
                lambda roi=roi: _rank_vector(cube, roi, metric, zscore, windows),
            )
        out.append(vec)
        used.append(n_used)
        dropped.append(n_bad)
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
    cache: MutableMapping | None = None,
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
    the whole human ROI x monkey area matrix (``p_family``).

    A Mantel test is exact only when the relabelling leaves the null distribution of
    one RDM unchanged (Guillot & Rousset 2013). Images of one concept resemble each
    other in both species, so a free shuffle of images breaks a structure the two RDMs
    share under the null and the test is far too liberal. At the image level the
    permutations therefore keep the concept partition
    (:func:`memxr.models.grouped_permutation` with ``pool_unique=False``: images
    shuffled within their concept, concepts of equal size exchanged), and ``rsa_r`` is
    tested against the similarity that concept membership alone gives; at the concept
    level the concepts are shuffled freely.

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
    cache : dict, optional
        Kept by the caller across calls on the same cube objects (one human with several
        monkeys): an ROI's rank-transformed RDM over the same items is computed once
        (:func:`memxr.bridge.inputs.reuse`; about ``4 * max_items**2`` bytes per ROI and
        level). The results are those without it.

    Returns
    -------
    pandas.DataFrame
        One row per (human ROI, monkey area), columns :data:`RSA_COLUMNS`
        (``rsa_r`` is the Spearman rho; NaN when an RDM is undefined), then
        ``p_family``, ``trials``, ``permutation``, ``n_shared``, ``subsampled``,
        ``metric``, ``n_permutations``, ``human_n_channels``, ``monkey_n_channels``,
        ``n_dropped_human``, ``n_dropped_monkey``, ``alternative``, ``split``. ``attrs["items"]``: the item
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
    hr, mr = roi_names(human, human_rois), roi_names(monkey, monkey_rois)
    h, m = align.align_pair(  # the ROIs' channels first: concept means of them only
        of_split(roi_channels(human, hr), split),
        of_split(roi_channels(monkey, mr), split),
        by="stimulus_id" if level == "image" else level,
    )
    if level == "concept" and min_concept_images > 1:
        enough = (h["n_images"].values >= min_concept_images) & (
            m["n_images"].values >= min_concept_images
        )
        h, m = h.isel(stimulus=np.flatnonzero(enough)), m.isel(stimulus=np.flatnonzero(enough))
    n_shared = h.sizes["stimulus"]
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
    items = ("rsa", level, split, set_hash(ids_of(h)))  # the items name each cube's RDMs
    a_vecs, h_used, h_drop = _rank_vectors(h, hr, metric, zscore, windows, cache, human, items)
    b_vecs, m_used, m_drop = _rank_vectors(m, mr, metric, zscore, windows, cache, monkey, items)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    if level == "image":  # relabel within the concept structure (see the notes)
        concepts = fold_groups(h)
        perms = models.grouped_permutations(concepts, rng, int(n_permutations), pool_unique=False)
        scheme = "images within concepts, concepts of equal size exchanged"
    else:
        perms = rng.permuted(np.tile(np.arange(n), (int(n_permutations), 1)), axis=1)
        scheme = "concepts shuffled"
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
    family = (
        f"p_fdr: Benjamini-Hochberg over the {int(np.isfinite(p).sum())} human ROI x monkey"
        f" area pairs at the {level} level"
    )
    h_trials, m_trials = trials_label(human, split), trials_label(monkey, split)
    trials = h_trials if h_trials == m_trials else f"{h_trials} / {m_trials}"
    rows = []
    for i, roi in enumerate(hr):
        for j, area in enumerate(mr):
            rows.append(
                {
                    "pair": pair_name(human, monkey),
                    "level": level,
                    "human_roi": roi,
                    "monkey_area": area,
                    "rsa_r": rho[i, j],
                    "p": p[i, j],
                    "p_fdr": p_fdr[i, j],
                    "n_items": int(n),
                    "p_family": family,
                    "trials": trials,
                    "permutation": scheme,
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
    out.attrs = {"items": ids_of(h), "seed": int(seed), "zscore": bool(zscore), "level": level}
    return out
