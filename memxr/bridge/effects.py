"""The memorability effect of every human ROI and monkey area on the shared images, and
:func:`bridge`, which runs the three comparisons of :mod:`memxr.bridge` for one pair.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from .. import align, stats
from ..schema import trials_label
from .decoding import DECODING_COLUMNS, cross_decode, with_fdr
from .inputs import (
    check_scores,
    concept_groups,
    ids_of,
    of_split,
    pair_name,
    recording_name,
    roi_values,
    set_hash,
)
from .rsa import RSA_COLUMNS, rsa

__all__ = ["EFFECT_COLUMNS", "bridge", "shared_effects"]

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


# ----------------------------------------------------------------------------- effects


def shared_effects(
    human: xr.Dataset,
    monkey: xr.Dataset,
    human_rois: Sequence[str] | str | None = None,
    monkey_rois: Sequence[str] | str | None = None,
    method: str = "spearman",
    how: str = "mean",
    *,
    split: str | None = "train",
    windows: Mapping[str, tuple[float, float]] | None = None,
    **correlate_kw: Any,
) -> pd.DataFrame:
    """Memorability effects per human ROI and per monkey area on the same shared images.

    Both cubes are restricted to the images of ``split`` and their labelled stimuli
    (:func:`memxr.align.labelled`), then to the images both saw, in the human cube's
    order (:func:`memxr.align.align_pair`). Train images (each seen once: single trials)
    and test images (means of their repeats, far less noisy) are never pooled: call once
    per split (:func:`bridge` does). Every ROI's reduced response
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
    split : {"train", "test"} or None
        The images analysed: ``train`` (default), ``test``, or None for all of them
        (mixing single trials and repeat means; changed: this was the only behaviour).
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
        of the pair and split, named in ``p_family``), then ``p_family``, ``trials``
        (e.g. "single (train)", "mean of 12 (test)": of each row's own species),
        ``split`` (train, test or all), ``how``,
        ``n_channels``, ``stimulus_set`` (a hash of the shared stimulus ids in order:
        equal for every row) and ``groups``.
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
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    h, m = align.align_pair(
        align.labelled(of_split(human, split)), align.labelled(of_split(monkey, split))
    )
    n = h.sizes["stimulus"]
    if n < 3:
        where = f" {split}" if split else ""
        raise ValueError(
            f"shared_effects: only {n} labelled{where} images are shared; need at least 3"
        )
    check_scores(h, m)
    xh = roi_values(h, human_rois, how, windows)
    xm = roi_values(m, monkey_rois, how, windows)
    rows = xr.concat(
        [xr.DataArray(x.variable).rename(roi="row") for x in (xh, xm)], dim="row", join="override"
    )
    groups = concept_groups(h)
    if "groups" in correlate_kw:
        grouping = "given"
    else:
        grouping = "none" if groups is None else "concept"
    kw = {"groups": groups, **correlate_kw, "compute": True}
    # The ROI values are small (ROIs x shared images): reduce them from the cubes on the
    # scheduler in effect, then resample them in this process. Sent to a distributed
    # scheduler, the permutation and bootstrap tables travel inside the graph (36 MB for
    # 8,740 shared images and 1,000 permutations).
    rows = rows.compute()
    with dask.config.set(scheduler="threads"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Running on a single-machine scheduler")
        res = stats.correlate(rows, h["memorability"].values, method=method, **kw)
    ids = ids_of(h)
    species = ["human"] * xh.sizes["roi"] + ["macaque"] * xm.sizes["roi"]
    out = pd.DataFrame(
        {
            "species": species,
            "subject": [recording_name(human)] * xh.sizes["roi"] + [recording_name(monkey)] * xm.sizes["roi"],
            "roi": [str(r) for r in np.r_[xh["roi"].values, xm["roi"].values]],
            "method": method,
            "r": res["r"].values,
            "p": res["p"].values,
            "ci_low": res["ci_low"].values,
            "ci_high": res["ci_high"].values,
            "p_fdr": res["p_fdr"].values,
            "n": int(res["n"]),
            "pair": pair_name(human, monkey),
            "p_family": f"p_fdr: Benjamini-Hochberg over the {len(species)} ROIs and areas of"
            f" the pair on its shared {split or 'all'} images",
            "trials": [trials_label(human, split)] * xh.sizes["roi"]
            + [trials_label(monkey, split)] * xm.sizes["roi"],
            "split": split or "all",
            "how": how,
            "n_channels": np.r_[xh["n_channels"].values, xm["n_channels"].values].astype(np.int64),
            "stimulus_set": set_hash(ids),
            "groups": grouping,
        }
    )
    out.attrs = {**res.attrs, "stimulus_ids": ids, "n_shared": n, "pair": pair_name(human, monkey)}
    out.attrs["groups"] = grouping
    out.attrs["split"] = split or "all"
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
    disjoint_concepts: bool = True,
    decoding_components: int | None = None,
    max_items: int = 2000,
    seed: int = 0,
    windows: Mapping[str, tuple[float, float]] | None = None,
    cache: MutableMapping | None = None,
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
        Images of the RSA (:func:`rsa`) and of the decoding (:func:`cross_decode`). The
        effects are computed on the train images and, apart, on the test images (the
        high-SNR check; empty with a reason when fewer than 3 are shared), labelled by
        their ``trials`` column; None computes them once on every shared image.
    n_permutations, n_bootstrap : int
        Resamples of the effects (and permutations of the RSA Mantel tests).
    n_decoding_permutations : int
        Permutations of :func:`cross_decode`.
    disjoint_concepts : bool
        :func:`cross_decode`: train the decoders on images of concepts the shared images
        do not show.
    decoding_components : int, optional
        :func:`cross_decode`'s ``n_components``: PCA of each side (fit inside the training
        images) before its ridge maps. None keeps every channel: exact, but at real size
        a whole-brain fMRI ROI (45,000 voxels, 8,000 images) costs about a minute of
        decomposition per fold and ROI pair; the pipeline's default is 100.
    max_items, seed, windows
        Passed on.
    cache : dict, optional
        Kept by the caller across the pairs of one run (:func:`rsa`, :func:`cross_decode`):
        with the same cube objects, each human ROI's RDMs and per-fold PCA are computed
        once for all its monkeys (and each monkey area's for all its humans). Same results.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``effects`` (:func:`shared_effects`, train then test rows), ``rsa`` (:func:`rsa`
        for each level), ``decoding`` (:func:`cross_decode` monkey -> human, then human
        -> monkey; ``p_fdr`` over every row of both directions, ``p_family``).
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
    >>> out["effects"].trials.unique().tolist(), out["effects"].attrs["reasons"]
    (['single (train)'], {'effects test': 'only 0 labelled test images are shared'})
    >>> out["rsa"].attrs["reasons"]["concept"]
    'only 1 shared concepts of the train split; an RDM needs at least 3'
    >>> out["decoding"].attrs["reasons"]["monkeyF->sub-00"]
    'only 8 labelled images of the train split are shared (need 20)'
    """
    effect_parts, reasons = [], {}
    for part in ("train", "test") if split is not None else (None,):
        n_shared = len(
            align.shared_stimuli(
                align.labelled(of_split(human, part)), align.labelled(of_split(monkey, part))
            )
        )
        if n_shared < 3:
            reasons[f"effects {part or 'all'}"] = (
                f"only {n_shared} labelled {part or ''} images are shared".replace("  ", " ")
            )
            continue
        effect_parts.append(
            shared_effects(
                human,
                monkey,
                human_rois,
                monkey_rois,
                method,
                how,
                split=part,
                windows=windows,
                n_permutations=n_permutations,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
        )
    if effect_parts:
        effects = pd.concat(effect_parts, ignore_index=True)
        effects.attrs = {"reasons": reasons} if reasons else {}
    else:
        effects = pd.DataFrame(columns=list(EFFECT_COLUMNS))
        effects.attrs = {"reasons": reasons}
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
            cache=cache,
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
            n_components=decoding_components,
            disjoint_concepts=disjoint_concepts,
            split=split,
            windows=windows,
            cache=cache,
        )
        for src, tgt, src_rois, tgt_rois in (
            (monkey, human, monkey_rois, human_rois),
            (human, monkey, human_rois, monkey_rois),
        )
    ]
    decoded = _concat(decoding, DECODING_COLUMNS)
    if len(decoded):
        reasons_dec = decoded.attrs
        decoded = with_fdr(decoded, f"the {len(decoded)} decoding rows of the pair (both directions)")
        decoded.attrs = reasons_dec
    return {"effects": effects, "rsa": _concat(rsas, RSA_COLUMNS), "decoding": decoded}
