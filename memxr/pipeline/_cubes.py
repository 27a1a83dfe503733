"""Pipeline steps on cubes: ingest raw files, reduce ROIs to magnitudes.

Examples
--------
>>> import numpy as np
>>> from memxr.schema import example_cube
>>> cube = example_cube(n_channel=3)
>>> out = _with_definitions(cube, {"AB": ["A"]})
>>> out.roi.values.tolist(), out.roi_mask.sum("channel").values.tolist()
(['A', 'AB'], [3, 3])
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import InputError
from ..provenance import file_records
from ..spec import Spec, modality_of
from ._core import Context, Step, compute, write_zarr


def _records_future(paths: list[Path], names: list[str]) -> Future:
    """SHA-256 records of the raw files, computed in the background, with relative names."""

    def work():
        return [dict(r, name=n) for r, n in zip(file_records(paths), names, strict=True)]

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memxr-sha256")
    fut = pool.submit(work)
    pool.shutdown(wait=False)
    return fut


def _read_raw(spec: Spec, cube: dict) -> tuple[xr.Dataset, Path]:
    """The lazy cube of a raw cube entry, and its input folder."""
    tables = {k: spec.resolve(spec.data["inputs"][k]) for k in ("memorability", "concepts")}
    root = spec.resolve(cube["input"])
    if cube["kind"] == "things-fmri":
        from ..readers.things_fmri import read_things_fmri

        ds = read_things_fmri(root, cube["subject"], checksum=False, **tables)
    elif cube["kind"] == "tvsd":
        from ..readers.tvsd import read_normmua

        ds = read_normmua(root, cube["monkey"], checksum=False, **tables)
    else:
        from ..readers.tvsd_trials import read_trials

        extra = {"dtype": cube["dtype"]} if cube["dtype"] else {}
        ds = read_trials(root, cube["monkey"], checksum=False, **tables, **extra)
    return ds, root


def ingest_step(ctx: Context, step: Step) -> None:
    """Raw files -> ``stores/CUBE.zarr`` (checksums hashed while the data stream)."""
    from ..store import write_cube

    ds, root = _read_raw(ctx.spec, step.cube)
    names = [r["name"] for r in json.loads(ds.attrs["inputs"])]
    tables = [ctx.spec.resolve(ctx.spec.data["inputs"][k]) for k in ("memorability", "concepts")]
    by_name = {t.name: t for t in tables if t is not None}
    paths = [root / n if (root / n).exists() else by_name.get(n, root / n) for n in names]
    ds.attrs["spec_hash"] = ctx.spec.spec_hash
    ds.attrs["pipeline_step"] = step.name
    write_cube(
        ds,
        ctx.store(step.cube),
        overwrite=True,
        inputs=_records_future(paths, names),
        progress=ctx.progress,
    )


def _with_definitions(cube: xr.Dataset, definitions: dict) -> xr.Dataset:
    """The cube with one more ``roi_mask`` column per ROI union of the spec."""
    from ..reduce import roi_masks
    from ..schema import text_coord

    if not definitions:
        return cube
    extra = roi_masks(cube, list(definitions), definitions=definitions)
    old = [str(r) for r in np.asarray(cube["roi"].values)]
    keep = [i for i, r in enumerate(old) if r not in definitions]
    mask = np.concatenate(
        [np.asarray(cube["roi_mask"].values)[:, keep], np.asarray(extra.values)], axis=1
    )  # small: channel x roi booleans
    names = [old[i] for i in keep] + list(definitions)
    on_roi = [n for n, v in cube.coords.items() if "roi" in v.dims]
    out = cube.drop_vars(on_roi)
    return out.assign_coords(roi=text_coord(names), roi_mask=(("channel", "roi"), mask))


def open_prepared(ctx: Context, cube: dict) -> tuple[xr.Dataset, list[str], dict]:
    """The cube opened lazily, reliability-filtered, with the ROI unions; ROI names; settings."""
    from ..align import select_channels
    from ..reduce import default_rois
    from ..store import open_cube

    ds = open_cube(ctx.store(cube))
    dataset = str(ds.attrs.get("dataset", ""))
    rois = ctx.spec.rois(dataset)
    section = f"rois.{modality_of(dataset)}"
    rel = rois["reliability"]
    if rel is not None:
        try:
            ds = select_channels(ds, rel["threshold"], rel["by"])
        except ValueError as e:
            raise InputError(
                ctx.spec.path, f"{section}.reliability", f"{cube['name']}: {e}"
            ) from None
    ds = _with_definitions(ds, rois["definitions"])
    names = list(rois["names"] or default_rois(ds))
    names += [d for d in rois["definitions"] if d not in names and not rois["names"]]
    return ds, names, rois


def roi_windows(rois: dict) -> dict[str, tuple[float, float]]:
    """Time window (ms) of every ROI of a modality: the defaults and the spec's."""
    from ..reduce import AREA_WINDOWS

    return {**AREA_WINDOWS, **{k: tuple(v) for k, v in rois["windows"].items()}}


def _ceilings(cube: xr.Dataset, names: list[str], windows: dict | None) -> xr.Dataset:
    """Split-half reliability and noise ceiling of each ROI's mean (windowed when timed)."""
    from ..align import noise_ceiling

    if "response_repeats" not in cube.data_vars:
        nan = xr.DataArray(np.full(len(names), np.nan), dims="roi")
        return xr.Dataset({"reliability": nan, "ceiling_r": nan})
    if windows is None:
        nc = noise_ceiling(cube, names)
        return nc[["reliability", "ceiling_r"]].drop_vars(list(nc.coords))
    parts = []
    times = np.asarray(cube["time"].values, dtype=float)
    for roi in names:
        start, stop = windows[roi]
        inside = np.flatnonzero((times >= start) & (times < stop))
        rep = cube["response_repeats"].isel(time=inside).mean("time")
        sub = xr.Dataset({"response_repeats": rep}, coords={"roi_mask": cube["roi_mask"]})
        nc = noise_ceiling(sub, [roi])
        parts.append(nc[["reliability", "ceiling_r"]].drop_vars(list(nc.coords)))
    return xr.concat(parts, dim="roi")


def magnitudes_step(ctx: Context, step: Step) -> None:
    """ROI mean and l2 per stimulus (windowed and per time bin for trials), ceilings."""
    from ..reduce import roi_reduce, window_reduce

    cube, names, rois = open_prepared(ctx, step.cube)
    timed = "time" in cube.dims
    windows = {r: roi_windows(rois)[r] for r in names} if timed else None
    data = {}
    for how in ("mean", "l2"):
        red = roi_reduce(cube, names, how)
        if timed:
            data[f"{how}_time"] = red
            data[how] = window_reduce(red, windows)
        else:
            data[how] = red
    ds = xr.Dataset(data)
    ds = ds.drop_indexes([k for k in ds.xindexes if k not in ds.dims])
    ds = ds.assign(_ceilings(cube, names, windows).assign_coords(roi=ds["roi"]))
    ds = compute(ctx, ds)
    ds.attrs = {
        "dataset": cube.attrs.get("dataset", ""),
        "subject": cube.attrs.get("subject", ""),
        "cube": step.cube["name"],
        **ctx.provenance(step, [step.cube]),
    }
    write_zarr(ds, ctx.path(step.outputs[0]))


def load_magnitudes(ctx: Context, cube: dict) -> xr.Dataset:
    """The magnitudes of a cube, in memory (stimuli x ROIs [x time bins]: small)."""
    from .._store_layout import _quiet_zarr

    with _quiet_zarr():
        ds = xr.open_zarr(ctx.path(f"magnitudes/{cube['name']}.zarr")).load()
    return ds
