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

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "AREA_WINDOWS",
    "ATTRS",
    "DATASETS",
    "STIMULUS_COORDS",
    "SchemaError",
    "coord_values",
    "example_cube",
    "problems",
    "text_coord",
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
