"""Cube preparation shared by the human <-> monkey comparisons of :mod:`memxr.bridge`.

Names of subjects and pairs, stimulus ids and their hash, concept groups, the ROI
values and channel patterns of a cube (over each area's time window when the cube
is time-resolved), split selection and a check of the memorability of aligned cubes.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..features import pattern_features
from ..reduce import UnknownROIError, default_rois, roi_masks, roi_reduce, window_reduce
from ..schema import AREA_WINDOWS, coord_values
from ..stats.inputs import group_codes


def recording_name(cube: xr.Dataset) -> str:
    return str(cube.attrs.get("subject", ""))


def pair_name(human: xr.Dataset, monkey: xr.Dataset) -> str:
    return f"{recording_name(human)}~{recording_name(monkey)}"


def ids_of(cube: xr.Dataset) -> list[str]:
    return [str(s) for s in np.asarray(cube["stimulus_id"].values).tolist()]  # small: labels


def set_hash(ids: Sequence[str]) -> str:
    """A short hash naming a set of stimuli in a given order (equal hash = same stimuli)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def concept_groups(cube: xr.Dataset) -> np.ndarray | None:
    """Concept per stimulus for grouped statistics; unknown concepts ("") stay "", which
    every grouping treats as a group of its own (:func:`memxr.stats.inputs.group_codes`).

    None when fewer than two groups result (then the stimuli are exchangeable).
    """
    if "concept" not in cube.coords:
        return None
    concepts = np.array([str(c) for c in np.asarray(cube["concept"].values).tolist()], dtype=object)
    if not (concepts != "").any():
        return None
    return concepts if group_codes(concepts).max() >= 1 else None


def fold_groups(cube: xr.Dataset) -> np.ndarray:
    """Concept groups for folds and permutations; each image its own group when unknown."""
    groups = concept_groups(cube)
    return np.array(ids_of(cube), dtype=object) if groups is None else groups


def roi_names(cube: xr.Dataset, rois: Sequence[str] | str | None) -> list[str]:
    if rois is None:
        return default_rois(cube)
    return [rois] if isinstance(rois, str) else [str(r) for r in rois]


def rois_with_channels(cube: xr.Dataset, rois: Sequence[str]) -> list[str]:
    """The ROIs of ``rois`` with at least one channel in ``cube`` (a reliability filter can
    leave an area without any)."""
    counts = np.asarray(roi_masks(cube, list(rois)).values).sum(axis=0)  # small: booleans
    return [r for r, n in zip(rois, counts, strict=True) if n > 0]


def roi_channels(cube: xr.Dataset, rois: Sequence[str]) -> xr.Dataset:
    """The cube restricted to the channels of any of ``rois`` (lazy; order kept).

    Select before grouping or subsetting stimuli: a per-concept mean or a row subset of the
    whole cube costs every chunk an ROI touches in full (an fMRI ROI's voxels are spread
    over many voxel chunks), of the selection only the ROIs' channels. The whole cube when
    no ROI has a channel.
    """
    used = np.flatnonzero(np.asarray(roi_masks(cube, list(rois)).values).any(axis=1))
    return cube.isel(channel=used) if used.size else cube


def _window(roi: str, windows: Mapping[str, tuple[float, float]]) -> tuple[float, float]:
    if roi not in windows:
        raise UnknownROIError(
            f"no time window for ROI {roi!r}; give windows={{roi: (start, stop)}} in ms"
        )
    start, stop = windows[roi]
    return float(start), float(stop)


def roi_values(
    cube: xr.Dataset,
    rois: Sequence[str] | str | None,
    how: str,
    windows: Mapping[str, tuple[float, float]] | None,
) -> xr.DataArray:
    """(stimulus, roi) ROI reductions, averaged over each area's window when timed (lazy)."""
    out = roi_reduce(cube, roi_names(cube, rois), how=how)
    if "time" in out.dims:
        out = window_reduce(out, dict(AREA_WINDOWS if windows is None else windows))
    return out


def roi_pattern(
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


def reuse(
    cache: MutableMapping | None, cube: xr.Dataset, key: tuple, compute: Callable[[], Any]
) -> Any:
    """``compute()``, or what it gave for this very ``cube`` object and ``key`` before.

    The bridge of one human with several monkeys (and of one monkey with several humans)
    recomputes per-cube results on the same items: an ROI's RDM over the same subsampled
    images, a target ROI's per-fold PCA. ``cache`` (a dict the caller keeps across the
    calls; None: no reuse) holds them keyed by the cube's identity (the entry keeps the
    cube alive, so that identity is never reused) and by ``key``, which must name every
    other input of ``compute``.

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> cube, cache, calls = example_cube(n_stimulus=4), {}, []
    >>> def f():
    ...     calls.append(1)
    ...     return 42
    >>> reuse(cache, cube, ("x",), f), reuse(cache, cube, ("x",), f), len(calls)
    (42, 42, 1)
    >>> reuse(cache, cube.copy(), ("x",), f), len(calls)  # another cube object: computed
    (42, 2)
    """
    if cache is None:
        return compute()
    k = (id(cube), *key)
    hit = cache.get(k)
    if hit is not None and hit[0] is cube:
        return hit[1]
    value = compute()
    cache[k] = (cube, value)
    return value


def windows_key(windows: Mapping[str, tuple[float, float]] | None) -> tuple | None:
    """Hashable form of a time-window mapping (for :func:`reuse` keys)."""
    if windows is None:
        return None
    return tuple(sorted((str(k), tuple(float(x) for x in v)) for k, v in windows.items()))


def drop_repeats(cube: xr.Dataset) -> xr.Dataset:
    return cube.drop_dims([d for d in ("repeat_stimulus", "repeat") if d in cube.dims])


def of_split(cube: xr.Dataset, split: str | None) -> xr.Dataset:
    """The cube without its repeats, restricted to one split (None: all stimuli)."""
    cube = drop_repeats(cube)
    if split is None:
        return cube
    labels = coord_values(cube, "split").astype(str)  # small: one label per stimulus
    return cube.isel(stimulus=np.flatnonzero(labels == split))


def check_scores(a: xr.Dataset, b: xr.Dataset) -> None:
    """Warn when two aligned cubes carry different memorability for the same images."""
    sa = np.asarray(a["memorability"].values, dtype=float)  # small: one score per stimulus
    sb = np.asarray(b["memorability"].values, dtype=float)
    differ = ~np.isclose(sa, sb, equal_nan=True)
    if differ.any():
        warnings.warn(
            f"memorability differs between {recording_name(a)} and {recording_name(b)} on {int(differ.sum())}"
            f" of {sa.size} shared images (labelled from different tables?); using"
            f" {recording_name(a)}'s scores",
            stacklevel=3,
        )
