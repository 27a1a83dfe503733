"""The memxr cube: dimensions, coordinates, dtypes and attributes, and their check.

A *cube* is an :class:`xarray.Dataset` holding one recording (one fMRI subject or
one monkey) at the stimulus level:

``response`` (stimulus, channel[, time])
    Response per stimulus; test stimuli are averaged over their repeats.
``response_repeats`` (repeat_stimulus, repeat, channel[, time]), optional
    The repeated trials of the test stimuli, kept for reliability analyses.
    Stimuli with fewer repeats than ``repeat`` are padded with NaN; train
    stimuli (shown once) never appear here.

Coordinates
-----------
stimulus : ``stimulus_id`` (str, THINGS file name, unique, the join key),
    ``concept`` (str, "" when unknown), ``category`` (str, "" when unknown),
    ``memorability`` (float, NaN when unknown), ``split`` ("train"/"test"),
    ``n_repeats`` (int).
channel : ``channel_id`` (int: voxel id or 1-based electrode number),
    ``roi_mask`` (channel, roi) bool membership table with the ``roi`` names.
    ROIs overlap in fMRI, so membership is a table, never a single label.
time : ``time`` in ms (float).
repeat_stimulus : ``repeat_stimulus_id`` (str), matching ``stimulus_id``.
repeat : ``repeat`` (int, 0-based).

Attributes
----------
``dataset`` (one of :data:`DATASETS`), ``subject``, ``units``,
``memxr_version``, ``created`` (ISO 8601 UTC), ``inputs`` (JSON list of
``{"name", "sha256", "size"}`` with relative names), ``spec_hash`` (may be "").
Only flat coordinates are allowed (no MultiIndex), so that a store opens with
plain :func:`xarray.open_zarr`.

Examples
--------
>>> import numpy as np, xarray as xr
>>> from memxr.schema import example_cube, validate
>>> ds = example_cube(n_stimulus=4, n_channel=3)
>>> validate(ds) is ds
True
>>> validate(ds.drop_vars("stimulus_id"))
Traceback (most recent call last):
...
memxr.schema.SchemaError: cube: missing coordinate 'stimulus_id' on dim 'stimulus'
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "AREA_WINDOWS",
    "ATTRS",
    "DATASETS",
    "RELIABILITY_MEASURES",
    "STIMULUS_COORDS",
    "ReliabilityMeasure",
    "SchemaError",
    "coord_values",
    "example_cube",
    "n_test_repeats",
    "problems",
    "reliability_values",
    "spearman_brown",
    "text_coord",
    "trials_label",
    "validate",
]

DATASETS = ("things-fmri", "tvsd-normmua", "tvsd-trials")
"""Allowed values of the ``dataset`` attribute."""

STIMULUS_COORDS = {
    "stimulus_id": "U",
    "concept": "U",
    "category": "U",
    "memorability": "f",
    "split": "U",
    "n_repeats": "i",
}
"""Required coordinates on the ``stimulus`` dim and their dtype kind (``U`` = text)."""

CHANNEL_COORDS = {"channel_id": "i"}
ATTRS = ("dataset", "subject", "units", "memxr_version", "created", "inputs")
"""Required attributes of a cube."""

SPLITS = ("train", "test")

AREA_WINDOWS: dict[str, tuple[int, int]] = {"V1": (25, 125), "V4": (50, 150), "IT": (75, 175)}
"""Response windows of the TVSD areas (ms after stimulus onset, start inclusive, stop
exclusive): the windows over which the dataset's ``normMUA`` averages each area, and the
default windows of time-resolved analyses (:func:`memxr.reduce.window_reduce`)."""


@dataclass(frozen=True)
class ReliabilityMeasure:
    """The scale of one reliability measure: what a value of it means.

    ``trials`` is the number of trials whose mean the measure is the reliability of:
    ``"single"`` (one trial), ``"repeats"`` (the mean of the R repeats of the test
    images) or ``"half"`` (the mean of R/2 of them); ``percent`` says whether the
    values are percentages (of explainable variance) rather than fractions.
    """

    name: str
    trials: str
    percent: bool
    description: str


RELIABILITY_MEASURES: dict[str, ReliabilityMeasure] = {
    m.name: m
    for m in (
        ReliabilityMeasure(
            "reliability",
            "single",
            False,
            "TVSD `reliab`: correlation of single repeats across the test images, averaged "
            "over pairs of repeats (the reliability of one trial)",
        ),
        ReliabilityMeasure(
            "nc_singletrial",
            "single",
            True,
            "THINGS-fMRI noise ceiling of one trial, percent of explainable variance",
        ),
        ReliabilityMeasure(
            "nc_testset",
            "repeats",
            True,
            "THINGS-fMRI noise ceiling of the test-set mean (R = 12 repeats), percent of "
            "explainable variance",
        ),
        ReliabilityMeasure(
            "splithalf_corrected",
            "repeats",
            False,
            "THINGS-fMRI split-half correlation of the test repeats, Spearman-Brown corrected "
            "to all R repeats",
        ),
        ReliabilityMeasure(
            "splithalf_uncorrected",
            "half",
            False,
            "THINGS-fMRI split-half correlation of the test repeats (means of R/2 repeats)",
        ),
        ReliabilityMeasure(
            "split_half",
            "repeats",
            False,
            "memxr.reliability.split_half_reliability: split-half reliability of the mean of "
            "all R repeats",
        ),
    )
}
"""Every reliability measure memxr knows, with its one documented scale.

A reliability is a fraction of variance: the correlation between two independent
measurements of the same response. Measures of different trial counts are on different
scales (the mean of R trials is more reliable than one); :func:`reliability_values` puts
any of them on the single-trial scale with :func:`spearman_brown`, so that one threshold
means one thing whatever the measure."""


def spearman_brown(rho, factor):
    """Reliability of a mean of ``factor`` times as many trials (Spearman-Brown).

    ``rho_k = k rho / (1 + (k - 1) rho)`` with ``k = factor``; ``factor = 1 / R`` steps the
    reliability of an R-trial mean down to one trial,
    ``rho_1 = rho_R / (R - (R - 1) rho_R)``. NaN where the formula has no meaning
    (``1 + (k - 1) rho <= 0``, which only negative reliabilities stepped up reach).

    Parameters
    ----------
    rho : float or array_like
        Reliabilities (fractions, at most 1).
    factor : float or array_like
        Ratio of the new to the old number of trials (broadcast against ``rho``).

    Returns
    -------
    numpy.ndarray or float

    Examples
    --------
    >>> round(float(spearman_brown(0.5, 2)), 4)        # twice the trials
    0.6667
    >>> round(float(spearman_brown(0.8, 1 / 12)), 4)   # a 12-trial mean -> one trial
    0.25
    >>> float(spearman_brown(spearman_brown(0.3, 30), 1 / 30))
    0.3
    """
    rho = np.asarray(rho, dtype=float)
    k = np.asarray(factor, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = 1.0 + (k - 1.0) * rho
        out = np.where(den > 0, k * rho / np.where(den > 0, den, 1.0), np.nan)
    return out if out.ndim else float(out)


def n_test_repeats(ds: xr.Dataset | xr.DataArray) -> float:
    """R, the typical number of repeats behind a test image's response (median over them).

    From ``n_repeats`` of the stimuli whose ``split`` is ``test`` (else the size of the
    ``repeat`` dim). NaN when the cube has no repeated test images.

    Examples
    --------
    >>> cube = example_cube(n_stimulus=3)
    >>> cube["split"][:] = ["test", "test", "train"]; cube["n_repeats"][:] = [12, 11, 1]
    >>> n_test_repeats(cube)
    11.5
    """
    if {"split", "n_repeats"} <= set(ds.coords):
        split = coord_values(ds, "split").astype(str)
        n = coord_values(ds, "n_repeats").astype(float)[split == "test"]
        n = n[np.isfinite(n) & (n > 1)]
        if n.size:
            return float(np.median(n))
    if "repeat" in ds.dims and ds.sizes["repeat"] > 1:
        return float(ds.sizes["repeat"])
    return float("nan")


def reliability_values(
    ds: xr.Dataset | xr.DataArray, name: str, scale: str = "single_trial"
) -> np.ndarray:
    """One reliability value per channel from a channel coordinate, on the asked scale.

    Parameters
    ----------
    ds : xarray.Dataset or DataArray
        Carries the channel coordinate ``name`` (and ``split``/``n_repeats`` when the
        measure is of a repeat mean).
    name : str
        A key of :data:`RELIABILITY_MEASURES` (``split_half`` is computed, not a
        coordinate: see :func:`memxr.reliability.select_channels`) or any other channel
        coordinate, which has no known scale and is returned as it is with
        ``scale="native"`` only.
    scale : {"single_trial", "native"}
        ``single_trial``: the reliability of one trial (a fraction), from any known
        measure (percentages divided by 100, repeat means stepped down by
        :func:`spearman_brown` with R from :func:`n_test_repeats`). ``native``: the
        values as stored, in the measure's own units.

    Returns
    -------
    numpy.ndarray
        float, NaN where the coordinate is NaN.

    Raises
    ------
    ValueError
        For a missing coordinate, an unknown scale, a coordinate of unknown scale asked
        on the single-trial scale, or a repeat-mean measure on a cube without repeats.

    Examples
    --------
    >>> cube = example_cube(n_stimulus=2, n_channel=2).assign_coords(
    ...     nc_testset=("channel", [80.0, 20.0]))
    >>> cube["split"][:] = "test"; cube["n_repeats"][:] = 12
    >>> reliability_values(cube, "nc_testset").round(4).tolist()
    [0.25, 0.0204]
    >>> reliability_values(cube, "nc_testset", "native").tolist()
    [80.0, 20.0]
    """
    if scale not in ("single_trial", "native"):
        raise ValueError(f"scale must be 'single_trial' or 'native', got {scale!r}")
    coord = ds.coords.get(name)
    if coord is None or coord.dims != ("channel",):
        raise ValueError(f"the cube has no channel coordinate {name!r} (a reliability measure)")
    values = np.asarray(coord.values, dtype=float)  # small: one value per channel
    if scale == "native":
        return values
    measure = RELIABILITY_MEASURES.get(name)
    if measure is None:
        raise ValueError(
            f"{name!r} has no known scale; give scale='native' to compare it as it is, or use"
            f" one of {', '.join(RELIABILITY_MEASURES)}"
        )
    if measure.percent:
        values = values / 100.0
    if measure.trials == "single":
        return values
    r = n_test_repeats(ds)
    if not np.isfinite(r):
        raise ValueError(
            f"{name!r} is the reliability of a mean of repeats, but the cube says nothing of"
            " its test repeats (split/n_repeats) to step it to one trial"
        )
    trials = r if measure.trials == "repeats" else r / 2.0
    return np.asarray(spearman_brown(values, 1.0 / trials), dtype=float)


def trials_label(cube: xr.Dataset, split: str | None) -> str:
    """Which trials the responses of one split are: the ``trials`` column of the result tables.

    Train images are seen once (single trials); a test image's response is the mean of its
    R repeats (:func:`n_test_repeats`); None (every image) mixes both.

    Examples
    --------
    >>> cube = example_cube(n_stimulus=3)
    >>> cube["split"][:] = ["test", "test", "train"]; cube["n_repeats"][:] = [30, 30, 1]
    >>> trials_label(cube, "train"), trials_label(cube, "test")
    ('single (train)', 'mean of 30 (test)')
    """
    if split == "train":
        return "single (train)"
    r = n_test_repeats(cube)
    mean = f"mean of {r:g}" if np.isfinite(r) else "mean of the repeats"
    if split == "test":
        return f"{mean} (test)"
    return f"all (single train, {mean} test)"


class SchemaError(ValueError):
    """A cube does not follow the memxr schema (one line per problem)."""


def _is_text(values: np.ndarray) -> bool:
    if values.dtype.kind in "UST":  # T: numpy StringDType (what plain xr.open_zarr gives)
        return True
    if values.dtype.kind == "O":
        return all(isinstance(v, str) for v in values.ravel()[:1000])
    return False


def _kind_ok(values: np.ndarray, kind: str) -> bool:
    if kind == "U":
        return _is_text(values)
    if kind == "i":
        return values.dtype.kind in "iu"
    if kind == "f":
        return values.dtype.kind == "f"
    if kind == "b":
        return values.dtype.kind == "b"
    return True


def _coord_problems(ds: xr.Dataset, dim: str, required: dict[str, str]) -> list[str]:
    out = []
    for name, kind in required.items():
        if name not in ds.coords:
            out.append(f"missing coordinate {name!r} on dim {dim!r}")
            continue
        c = ds.coords[name]
        if c.dims != (dim,):
            out.append(f"coordinate {name!r} has dims {c.dims}, expected ({dim!r},)")
        elif not _kind_ok(np.asarray(c.values), kind):  # small: 1-D labels
            out.append(f"coordinate {name!r} has dtype {c.dtype}, expected kind {kind!r}")
    return out


def problems(ds: xr.Dataset) -> list[str]:
    """List every way in which ``ds`` departs from the cube schema.

    Parameters
    ----------
    ds : xarray.Dataset
        The candidate cube. Data variables are not loaded; only coordinates
        (which are small) are read.

    Returns
    -------
    list of str
        One message per problem; empty when ``ds`` is a valid cube.

    Examples
    --------
    >>> from memxr.schema import example_cube, problems
    >>> problems(example_cube())
    []
    """
    if not isinstance(ds, xr.Dataset):
        return [f"expected an xarray.Dataset, got {type(ds).__name__}"]
    out: list[str] = []
    if "response" not in ds.data_vars:
        out.append("missing data variable 'response'")
    else:
        r = ds["response"]
        if r.dims[:2] != ("stimulus", "channel") or r.dims[2:] not in ((), ("time",)):
            out.append(f"'response' has dims {r.dims}, expected ('stimulus', 'channel'[, 'time'])")
        if r.dtype.kind != "f":
            out.append(f"'response' has dtype {r.dtype}, expected a float dtype")
    if "stimulus" in ds.dims:
        out += _coord_problems(ds, "stimulus", STIMULUS_COORDS)
        if "stimulus_id" in ds.coords:
            ids = pd.Index(np.asarray(ds["stimulus_id"].values))
            if ids.has_duplicates:
                dup = ids[ids.duplicated()].unique()[:3].tolist()
                out.append(f"coordinate 'stimulus_id' has duplicates, e.g. {dup}")
        if "split" in ds.coords:
            bad = {str(s) for s in np.unique(np.asarray(ds["split"].values).astype(str))} - set(
                SPLITS
            )
            if bad:
                out.append(f"coordinate 'split' has values {sorted(bad)}, expected train/test")
    if "channel" in ds.dims:
        out += _coord_problems(ds, "channel", CHANNEL_COORDS)
    if "roi_mask" not in ds.coords:
        out.append("missing coordinate 'roi_mask' (channel, roi)")
    else:
        m = ds.coords["roi_mask"]
        if m.dims != ("channel", "roi"):
            out.append(f"coordinate 'roi_mask' has dims {m.dims}, expected ('channel', 'roi')")
        if m.dtype != bool:
            out.append(f"coordinate 'roi_mask' has dtype {m.dtype}, expected bool")
        if "roi" not in ds.coords or not _is_text(np.asarray(ds["roi"].values)):
            out.append("coordinate 'roi' (ROI names, text) is missing")
    if "time" in ds.dims:
        if "time" not in ds.coords or ds["time"].dtype.kind not in "fi":
            out.append("dim 'time' needs a numeric 'time' coordinate in ms")
    if "response_repeats" in ds.data_vars:
        rr = ds["response_repeats"]
        want = ("repeat_stimulus", "repeat", "channel") + (("time",) if "time" in ds.dims else ())
        if rr.dims != want:
            out.append(f"'response_repeats' has dims {rr.dims}, expected {want}")
        if "repeat_stimulus_id" not in ds.coords:
            out.append("missing coordinate 'repeat_stimulus_id' on dim 'repeat_stimulus'")
        elif "stimulus_id" in ds.coords:
            known = set(np.asarray(ds["stimulus_id"].values).tolist())
            extra = [
                s for s in np.asarray(ds["repeat_stimulus_id"].values).tolist() if s not in known
            ]
            if extra:
                out.append(f"'repeat_stimulus_id' not in 'stimulus_id': {extra[:3]}")
    for name in ds.variables:
        if isinstance(ds.indexes.get(name), pd.MultiIndex):
            out.append(f"coordinate {name!r} is a MultiIndex; only flat coordinates are allowed")
    for a in ATTRS:
        if a not in ds.attrs:
            out.append(f"missing attribute {a!r}")
    if ds.attrs.get("dataset") not in (None, *DATASETS):
        out.append(f"attribute 'dataset' is {ds.attrs['dataset']!r}, expected one of {DATASETS}")
    if "inputs" in ds.attrs:
        try:
            inputs = json.loads(ds.attrs["inputs"])
            for item in inputs:
                if str(item["name"]).startswith("/"):
                    out.append(f"attribute 'inputs' holds an absolute path {item['name']!r}")
        except (TypeError, ValueError, KeyError):
            out.append("attribute 'inputs' is not a JSON list of {name, sha256, size}")
    return out


def validate(ds: xr.Dataset, *, name: str = "cube") -> xr.Dataset:
    """Check ``ds`` against the cube schema and return it unchanged.

    Parameters
    ----------
    ds : xarray.Dataset
        The cube to check.
    name : str
        How to call the cube in the error (for example the store's path).

    Returns
    -------
    xarray.Dataset
        ``ds`` itself, so that calls can be chained.

    Raises
    ------
    SchemaError
        With one line per problem, each prefixed by ``name``.

    Examples
    --------
    >>> from memxr.schema import example_cube, validate
    >>> validate(example_cube()).sizes["stimulus"]
    6
    """
    found = problems(ds)
    if found:
        raise SchemaError("\n".join(f"{name}: {p}" for p in found))
    return ds


def text_coord(values: Iterable[str]) -> np.ndarray:
    """Labels as an object array of ``str`` (Zarr v3 refuses numpy ``<U`` as unstable).

    Examples
    --------
    >>> text_coord(["a", "bb"]).dtype
    dtype('O')
    """
    arr = np.empty(len(values := list(values)), dtype=object)
    arr[:] = [str(v) for v in values]
    return arr


def coord_values(ds: xr.Dataset | xr.DataArray, name: str) -> np.ndarray:
    """A small coordinate (labels: one per stimulus or channel) as numpy; text as objects.

    Examples
    --------
    >>> coord_values(example_cube(n_stimulus=2), "split").tolist()
    ['train', 'train']
    """
    values = np.asarray(ds[name].values)  # small: a coordinate
    return values.astype(object) if values.dtype.kind == "T" else values


def example_cube(n_stimulus: int = 6, n_channel: int = 4, seed: int = 0) -> xr.Dataset:
    """A tiny valid cube, for documentation and tests.

    Examples
    --------
    >>> example_cube(n_stimulus=2, n_channel=2)["response"].shape
    (2, 2)
    """
    rng = np.random.default_rng(seed)
    ids = [f"thing_{i:02d}s.jpg" for i in range(n_stimulus)]
    return xr.Dataset(
        {"response": (("stimulus", "channel"), rng.standard_normal((n_stimulus, n_channel)))},
        coords={
            "stimulus_id": ("stimulus", text_coord(ids)),
            "concept": ("stimulus", text_coord(["thing"] * n_stimulus)),
            "category": ("stimulus", text_coord([""] * n_stimulus)),
            "memorability": ("stimulus", rng.uniform(0.4, 1.0, n_stimulus)),
            "split": ("stimulus", text_coord(["train"] * n_stimulus)),
            "n_repeats": ("stimulus", np.ones(n_stimulus, dtype=np.int64)),
            "channel_id": ("channel", np.arange(1, n_channel + 1, dtype=np.int64)),
            "roi": ("roi", text_coord(["A"])),
            "roi_mask": (("channel", "roi"), np.ones((n_channel, 1), dtype=bool)),
        },
        attrs={
            "dataset": "things-fmri",
            "subject": "sub-00",
            "units": "a.u.",
            "memxr_version": "0",
            "created": "1970-01-01T00:00:00Z",
            "inputs": "[]",
            "spec_hash": "",
        },
    )
