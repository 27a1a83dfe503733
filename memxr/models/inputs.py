"""The inputs of :func:`memxr.models.fit_models`, checked and prepared for the tasks.

Feature sets, target and groups are checked against each other, stimuli without a target are
dropped, and the folds and permuted targets of one run are drawn (:func:`prepare_run`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..stats.inputs import group_codes
from .estimators import MODELS
from .folds import cv_kind, grouped_permutations, make_folds

logger = logging.getLogger(__name__)


def _as_feature_sets(features: Mapping[str, xr.DataArray] | xr.DataArray) -> dict:
    if isinstance(features, xr.DataArray):
        features = {str(features.name or "features"): features}
    if not isinstance(features, Mapping) or not features:
        raise TypeError("features must be a DataArray or a non-empty dict of DataArrays")
    out = {}
    for name, da in features.items():
        if not isinstance(da, xr.DataArray):
            raise TypeError(f"feature set {name!r} is a {type(da).__name__}, not a DataArray")
        if da.dims == ("stimulus",):
            da = da.expand_dims("feature", axis=1)
        extra = set(da.dims) - {"stimulus", "feature", "time"}
        if "stimulus" not in da.dims or "feature" not in da.dims or extra:
            raise ValueError(
                f"feature set {name!r} has dims {da.dims}; expected (stimulus, feature[, time])"
            )
        rest = ("time",) if "time" in da.dims else ()
        out[str(name)] = da.transpose("stimulus", "feature", *rest)
    timed = {n for n, d in out.items() if "time" in d.dims}
    if timed and len(timed) != len(out):
        raise ValueError(
            f"feature sets {sorted(timed)} are time-resolved and the others are not; "
            "fit them in separate calls"
        )
    ref = next(iter(out.values()))
    for name, da in out.items():
        if da.sizes["stimulus"] != ref.sizes["stimulus"]:
            raise ValueError(f"feature set {name!r} has another number of stimuli than the first")
        if "stimulus_id" in da.coords and "stimulus_id" in ref.coords:
            if not np.array_equal(da["stimulus_id"].values, ref["stimulus_id"].values):
                raise ValueError(f"feature set {name!r} holds other stimuli (stimulus_id)")
        if timed and not np.array_equal(da["time"].values, ref["time"].values):
            raise ValueError(f"feature set {name!r} has other time bins than the first")
    return out


def _target(y: Any, ref: xr.DataArray) -> tuple[np.ndarray, str]:
    if isinstance(y, str):
        if y not in ref.coords:
            raise ValueError(f"no coordinate {y!r} on the features to use as target")
        return np.asarray(ref[y].values, dtype=float), y
    if isinstance(y, xr.DataArray):
        name = str(y.name or "memorability")
        if "stimulus_id" in y.coords and "stimulus_id" in ref.coords:
            s = pd.Series(np.asarray(y.values, dtype=float), index=y["stimulus_id"].values)
            return s.reindex(ref["stimulus_id"].values).to_numpy(dtype=float), name
        y = y.values
    else:
        name = "memorability"
    arr = np.asarray(y, dtype=float).ravel()
    if arr.size != ref.sizes["stimulus"]:
        raise ValueError(f"y has {arr.size} values for {ref.sizes['stimulus']} stimuli")
    return arr, name


def _groups(groups: Any, ref: xr.DataArray) -> np.ndarray | None:
    if groups is None:
        return None
    if isinstance(groups, str):
        if groups not in ref.coords:
            raise ValueError(
                f"no coordinate {groups!r} on the features to group by; pass groups=None "
                "with cv='random' for ungrouped folds"
            )
        groups = ref[groups].values
    arr = np.asarray(groups.values if isinstance(groups, xr.DataArray) else groups, dtype=object)
    if arr.shape != (ref.sizes["stimulus"],):
        raise ValueError(f"groups has shape {arr.shape}, expected ({ref.sizes['stimulus']},)")
    return arr


def check_finite(name: str, x: np.ndarray) -> None:
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"feature set {name!r}: {int(bad.sum())} stimuli have NaN or infinite features; "
            "drop or fill them first"
        )


@dataclass
class ModelRun:
    """The prepared inputs of one :func:`fit_models` call."""

    sets: dict[str, xr.DataArray]
    models: list[str]
    y: np.ndarray  # observed target of the kept stimuli
    y_name: str
    y_perms: list[np.ndarray]  # observed first, then the permuted targets
    codes: np.ndarray | None  # group codes (grouped CV only)
    folds: list[tuple[np.ndarray, np.ndarray]]
    kind: str
    n_folds: int
    n_dropped: int
    times: np.ndarray | None

    @property
    def time_idx(self) -> list[int]:
        return [-1] if self.times is None else list(range(self.times.size))

    @property
    def n_perm(self) -> int:
        return len(self.y_perms) - 1


def prepare_run(features, y, models, cv, groups, n_permutations, seed) -> ModelRun:
    sets = _as_feature_sets(features)
    models = [models] if isinstance(models, str) else list(models)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"unknown model(s) {unknown or 'none given'}; known: {', '.join(MODELS)}")
    if int(n_permutations) < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    ref = next(iter(sets.values()))
    y_all, y_name = _target(y, ref)
    kind, n_folds = cv_kind(cv)
    labels = _groups(groups, ref) if kind == "grouped" else None
    keep = np.flatnonzero(np.isfinite(y_all))
    n_dropped = int(y_all.size - keep.size)
    if n_dropped:
        logger.info("dropped %d of %d stimuli with NaN %s", n_dropped, y_all.size, y_name)
        sets = {k: v.isel(stimulus=keep) for k, v in sets.items()}
        labels = None if labels is None else labels[keep]
    folds, kind = make_folds(keep.size, labels, (kind, n_folds), seed)
    codes = None if labels is None else group_codes(labels)
    rng = np.random.default_rng(seed)
    y_obs = y_all[keep]
    if codes is not None:
        perms = list(grouped_permutations(codes, rng, int(n_permutations)))
    else:
        perms = [rng.permutation(keep.size) for _ in range(int(n_permutations))]
    times = np.asarray(ref["time"].values, dtype=float) if "time" in ref.dims else None
    return ModelRun(
        sets=sets,
        models=models,
        y=y_obs,
        y_name=y_name,
        y_perms=[y_obs] + [y_obs[p] for p in perms],
        codes=codes,
        folds=folds,
        kind=kind,
        n_folds=n_folds,
        n_dropped=n_dropped,
        times=times,
    )
