"""Pipeline steps: ingest raw files, ROI magnitudes, correlations, time courses, models, bridge, records.

Examples
--------
>>> import numpy as np
>>> from memxr.schema import example_cube
>>> cube = example_cube(n_channel=3)
>>> out = _with_definitions(cube, {"AB": ["A"]})
>>> out.roi.values.tolist(), out.roi_mask.sum("channel").values.tolist()
(['A', 'AB'], [3, 3])
>>> from memxr.stats import correlate
>>> ds = xr.Dataset({"mean": (("stimulus", "roi"), np.c_[np.arange(5.0), [1.0, 0, 2, 1, 0]])},
...                 coords={"roi": ["IT", "V1"], "memorability": ("stimulus", np.arange(5.0)),
...                         "n_channels": ("roi", [4, 2]), "ceiling_r": ("roi", [0.9, 0.5])},
...                 attrs={"dataset": "things-fmri", "subject": "sub-01"})
>>> res = correlate(ds["mean"], ds.memorability, n_permutations=0, n_bootstrap=0)
>>> rows = _correlation_rows(res, ds, "pearson", "mean")
>>> rows[["roi", "r", "n_channels"]].round(3).values.tolist()
[['IT', 1.0, 4], ['V1', -0.189, 2]]
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError
from ..provenance import __version__, file_records, file_records_async, now_utc, sha256_file
from ..readers import SOURCES
from ..schema import AREA_WINDOWS
from ..store.atomic import atomic_path
from .core import (
    Context,
    Step,
    compute,
    frame_dataset,
    store_inputs,
    versions,
    write_csv,
    write_tree,
    write_zarr,
)
from .spec import modality_of


def ingest(
    kind: str,
    input_dir: str | os.PathLike,
    recording: str,
    out: str | os.PathLike,
    *,
    memorability: str | os.PathLike | None = None,
    concepts: str | os.PathLike | None = None,
    overwrite: bool = False,
    zarr_format: int = 3,
    progress: bool = True,
    attrs: dict | None = None,
    **options: Any,
) -> Path:
    """Raw files of one recording -> a cube store; the raw files are hashed while they stream.

    The reader is the one registered for ``kind`` (:data:`memxr.readers.SOURCES`); the
    store is written by :func:`memxr.store.write_cube` with the SHA-256 of every input
    file (computed in a background thread, :func:`memxr.provenance.file_records_async`).
    ``memxr ingest`` and the pipeline's ``ingest`` steps both go through here.

    Returns
    -------
    pathlib.Path
        The store.
    """
    from ..readers import SOURCES, input_paths
    from ..store import write_cube

    ds = SOURCES[kind].read(
        input_dir,
        recording,
        memorability=memorability,
        concepts=concepts,
        checksum=False,
        **options,
    )
    ds.attrs.update(attrs or {})
    names = [r["name"] for r in json.loads(ds.attrs["inputs"])]
    paths = input_paths(names, input_dir, (memorability, concepts))
    return write_cube(
        ds,
        out,
        zarr_format=zarr_format,
        overwrite=overwrite,
        inputs=file_records_async(paths, names=names),
        progress=progress,
    )


def ingest_step(ctx: Context, step: Step) -> None:
    """Raw files -> ``stores/CUBE.zarr`` (checksums hashed while the data stream)."""
    spec, cube = ctx.spec, step.cube
    tables = {k: spec.resolve(spec.data["inputs"][k]) for k in ("memorability", "concepts")}
    source = SOURCES[cube["kind"]]
    options = {k: cube[k] for k in source.options if cube.get(k)}
    ingest(
        cube["kind"],
        spec.resolve(cube["input"]),
        cube[source.id_key],
        ctx.store(cube),
        overwrite=True,
        progress=ctx.progress,
        attrs={"spec_hash": spec.spec_hash, "pipeline_step": step.name},
        **tables,
        **options,
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
    """The cube opened lazily, normalised (time-resolved TVSD, unless ``rois.tvsd.normalize``
    is false), reliability-filtered, with the ROI unions; ROI names; settings."""
    from ..reduce import default_rois, normalize_days
    from ..reliability import select_channels
    from ..store import open_cube

    ds = open_cube(ctx.store(cube))
    dataset = str(ds.attrs.get("dataset", ""))
    rois = ctx.spec.rois(dataset)
    section = f"rois.{modality_of(dataset)}"
    if dataset == "tvsd-trials" and rois.get("normalize", False):
        if "day" not in ds.coords or "repeat_day" not in ds.coords:
            raise InputError(
                ctx.spec.path,
                f"{section}.normalize",
                f"{cube['name']}: the store has no recording days (ingested by an older "
                "memxr): ingest it again, or set normalize: false for raw MUA",
            )
        ds = normalize_days(ds, roi_windows(rois))
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

    return {**AREA_WINDOWS, **{k: tuple(v) for k, v in rois["windows"].items()}}


def _ceilings(cube: xr.Dataset, names: list[str], windows: dict | None) -> xr.Dataset:
    """Split-half reliability and noise ceiling of each ROI's mean (windowed when timed)."""
    from ..reliability import noise_ceiling

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
    """ROI mean and l2 per stimulus (windowed and per time bin for trials), ceilings.

    Time-resolved TVSD cubes are normalised per (channel, recording day) first, as the
    dataset's normMUA (:func:`memxr.reduce.normalize_days`; ``rois.tvsd.normalize: false``
    keeps raw MUA); the ``normalisation`` attribute of the output says which.
    """
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
        "units": cube.attrs.get("units", ""),
        "normalisation": cube.attrs.get("normalisation", "none"),
        **ctx.provenance(step, [step.cube]),
    }
    write_zarr(ds, ctx.path(step.outputs[0]))


def load_magnitudes(ctx: Context, cube: dict) -> xr.Dataset:
    """The magnitudes of a cube, in memory (stimuli x ROIs [x time bins]: small)."""
    from ..store.layout import quiet_zarr

    with quiet_zarr():
        ds = xr.open_zarr(ctx.path(f"magnitudes/{cube['name']}.zarr")).load()
    return ds


# ----------------------------------------------------------------------
# Pipeline steps on magnitudes and cubes: correlations, time courses, models, bridge; record.


_STATS = ["r", "p", "ci_low", "ci_high", "p_fdr"]


def _correlation_rows(
    res: xr.Dataset, ds: xr.Dataset, method: str, how: str | None
) -> pd.DataFrame:
    """Tidy rows of one :func:`memxr.stats.correlate` result over ROIs (``how``) or ROIs x time."""
    frame = res[_STATS].to_dataframe().reset_index()
    frame["dataset"] = ds.attrs.get("dataset", "")
    frame["subject"] = ds.attrs.get("subject", "")
    frame["method"] = method
    frame["n"] = int(res["n"])
    if how is None:
        return frame[["dataset", "subject", "roi", "method", "time", *_STATS, "n"]]
    frame["how"] = how
    frame["n_channels"] = ds["n_channels"].values.astype(int)
    frame["noise_ceiling"] = ds["ceiling_r"].values.astype(float)
    lead = ["dataset", "subject", "roi", "method", "how"]
    return frame[[*lead, *_STATS, "n", "n_channels", "noise_ceiling"]]


@contextlib.contextmanager
def _in_process() -> Iterator[None]:
    """Compute in this process: for small in-memory data shipping tasks costs more than it saves."""
    import dask

    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Running on a single-machine scheduler")
        yield


def _correlate_all(
    ctx: Context, step: Step, var_of: Callable[[str], str], hows: list[str], timed: bool
) -> tuple[pd.DataFrame, dict[str, xr.Dataset]]:
    """Correlations of every cube's magnitudes with memorability, per method and reduction."""
    from ..stats.correlation import correlate

    p = step.params
    rows, groups = [], {}
    for cube in _analysis_cubes(step, ctx):
        ds = load_magnitudes(ctx, cube)
        per_method = []
        for method in p["methods"]:
            per_how = []
            for how in hows:
                with _in_process():
                    res = correlate(
                        ds[var_of(how)],
                        ds["memorability"],
                        method=method,
                        n_permutations=p["n_permutations"],
                        n_bootstrap=p["n_bootstrap"],
                        groups=p["groups"],
                        seed=p["seed"],
                        compute=True,
                    )
                rows.append(_correlation_rows(res, ds, method, None if timed else how))
                per_how.append(res.drop_vars([c for c in res.coords if c not in res.dims]))
            per_method.append(xr.concat(per_how, dim="how", coords="minimal"))
        out = xr.concat(per_method, dim="method", coords="minimal")
        out = out.assign_coords(method=p["methods"], how=hows)
        out = out.assign_coords(n_channels=ds["n_channels"], ceiling_r=ds["ceiling_r"])
        out.attrs = {k: ds.attrs.get(k, "") for k in ("dataset", "subject")}
        out.attrs["params"] = json.dumps(p, sort_keys=True)
        groups[cube["name"]] = out
    return pd.concat(rows, ignore_index=True), groups


def _analysis_cubes(step: Step, ctx: Context) -> list[dict]:
    """The cube entries whose magnitudes a step reads."""
    return [c for c in ctx.spec.cubes if f"magnitudes:{c['name']}" in step.after]


def correlations_step(ctx: Context, step: Step) -> None:
    """Correlation of every ROI magnitude with memorability, per method and reduction."""
    table, groups = _correlate_all(ctx, step, lambda how: how, step.params["how"], False)
    write_tree(groups, ctx.path(step.outputs[0]), ctx.provenance(step, _analysis_cubes(step, ctx)))
    write_csv(table, ctx.path(step.outputs[1]))


def timecourse_step(ctx: Context, step: Step) -> None:
    """Correlation of every ROI's mean with memorability at every time bin."""
    table, groups = _correlate_all(ctx, step, lambda how: f"{how}_time", ["mean"], True)
    groups = {k: v.squeeze("how", drop=True) for k, v in groups.items()}
    write_tree(groups, ctx.path(step.outputs[0]), ctx.provenance(step, _analysis_cubes(step, ctx)))
    write_csv(table, ctx.path(step.outputs[1]))


def _feature_sets(ctx: Context, cube: dict, p: dict) -> dict[str, xr.DataArray]:
    """The feature sets of one cube: ROI magnitudes, and each ROI's (PCA'd) pattern."""
    from ..features import pattern_features
    from ..reduce import roi_masks
    from ..schema import text_coord

    sets: dict[str, xr.DataArray] = {}
    if "magnitude" in p["feature_sets"]:
        mag = load_magnitudes(ctx, cube)["mean"].rename(roi="feature")
        mag = mag.dropna("feature", how="all")  # an ROI left without channels
        sets["magnitude"] = mag.assign_coords(feature=text_coord(mag["feature"].values))
    if "pattern" in p["feature_sets"]:
        ds, names, rois = open_prepared(ctx, cube)
        windows = roi_windows(rois) if "time" in ds.dims else None
        for roi in names:
            n_channels = int(roi_masks(ds, [roi]).sum())
            if n_channels == 0:
                ctx.log(f"    models: {cube['name']} {roi} has no channel; no pattern features")
                continue
            n = p["pca"] and min(p["pca"], n_channels, ds.sizes["stimulus"] - 1)
            f = pattern_features(
                ds, roi, n or None, time=windows[roi] if windows else None, seed=p["seed"]
            )
            sets[f"pattern_{roi}"] = compute(ctx, f)
    return sets


def _target(sets: dict[str, xr.DataArray]) -> str | xr.DataArray:
    """Memorability, NaN (left out) for stimuli without a finite value in every feature set."""
    ref = next(iter(sets.values()))
    y = np.asarray(ref["memorability"].values, dtype=float).copy()
    for f in sets.values():
        values = np.asarray(f.values)  # in memory already: ROI magnitudes or PCA'd patterns
        y[~np.isfinite(values).reshape(values.shape[0], -1).all(axis=1)] = np.nan
    if np.array_equal(np.isnan(y), np.isnan(np.asarray(ref["memorability"].values, float))):
        return "memorability"
    return xr.DataArray(y, dims="stimulus", name="memorability")


def models_step(ctx: Context, step: Step) -> None:
    """Cross-validated models of memorability on each cube's feature sets."""
    from ..models.fit import fit_models

    p = step.params
    cv = p["cv"] if p["groups"] else ("random", p["cv"])
    tables, preds, groups = [], [], {}
    for cube in ctx.spec.cubes:
        sets = _feature_sets(ctx, cube, p)
        if not sets:
            continue
        res = fit_models(
            sets,
            _target(sets),
            models=p["models"],
            cv=cv,
            groups=p["groups"],
            n_permutations=p["n_permutations"],
            seed=p["seed"],
            client=ctx.client or False,
        )
        mag = load_magnitudes(ctx, cube)
        dataset, subject = mag.attrs.get("dataset", ""), mag.attrs.get("subject", "")
        t = res.table.copy()
        t.insert(0, "subject", subject)
        t.insert(0, "dataset", dataset)
        tables.append(t)
        preds.append(_prediction_rows(res.predictions, dataset, subject))
        tree = res.to_xarray()
        tree.attrs.update({"dataset": dataset, "subject": subject})
        groups[cube["name"]] = tree
    write_tree(groups, ctx.path(step.outputs[0]), ctx.provenance(step, ctx.spec.cubes))
    write_csv(pd.concat(tables, ignore_index=True), ctx.path(step.outputs[1]))
    write_csv(pd.concat(preds, ignore_index=True), ctx.path(step.outputs[2]))


def _prediction_rows(pred: xr.Dataset, dataset: str, subject: str) -> pd.DataFrame:
    """Tidy out-of-fold predictions: one row per feature set, model and stimulus."""
    ids = [str(s) for s in np.asarray(pred["stimulus_id"].values)]
    observed = np.asarray(pred["observed"].values, dtype=float)
    rows = []
    for fs in np.asarray(pred["feature_set"].values):
        for m in np.asarray(pred["model"].values):
            predicted = np.asarray(pred["prediction"].sel(feature_set=fs, model=m).values)
            rows.append(
                pd.DataFrame(
                    {
                        "dataset": dataset,
                        "subject": subject,
                        "feature_set": str(fs),
                        "model": str(m),
                        "stimulus_id": ids,
                        "observed": observed,
                        "predicted": predicted,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


_BRIDGE_TABLES = ("effects", "rsa", "decoding")


def _bridge_pair(ctx: Context, p: dict, human_cube: dict, monkey_cube: dict) -> dict:
    """The three bridge tables of one human-monkey pair (decoding empty when disabled)."""
    from ..bridge import DECODING_COLUMNS, bridge

    human, human_rois, _ = open_prepared(ctx, human_cube)
    monkey, monkey_rois, monkey_settings = open_prepared(ctx, monkey_cube)
    decoding = p["decoding"]
    with quiet_dask_glm():
        out = bridge(
            human,
            monkey,
            human_rois,
            monkey_rois,
            method=p["method"],
            how=p["how"],
            levels=p["rsa"]["level"],
            n_permutations=p["rsa"]["n_permutations"],
            n_bootstrap=p["n_bootstrap"],
            n_decoding_permutations=decoding["n_permutations"] if decoding["enabled"] else 0,
            max_items=p["max_items"],
            seed=p["seed"],
            windows=roi_windows(monkey_settings),
        )
    if not decoding["enabled"]:
        out["decoding"] = pd.DataFrame(columns=list(DECODING_COLUMNS))
    return out


def bridge_step(ctx: Context, step: Step) -> None:
    """Human-monkey effects, RSA and decoding for every pair of the spec."""
    from ..bridge import DECODING_COLUMNS, EFFECT_COLUMNS, RSA_COLUMNS

    p = step.params
    cubes = {c["name"]: c for c in ctx.spec.cubes}
    parts: dict[str, list[pd.DataFrame]] = {k: [] for k in _BRIDGE_TABLES}
    reasons: dict[str, dict] = {}
    for human_name, monkey_name in p["pairs"]:
        out = _bridge_pair(ctx, p, cubes[human_name], cubes[monkey_name])
        label = f"{human_name}~{monkey_name}"  # unique even for two cubes of one monkey
        for k, df in out.items():
            if len(df):
                parts[k].append(df.assign(pair=label))
            if df.attrs.get("reasons"):
                reasons.setdefault(k, {})[label] = df.attrs["reasons"]
    columns = dict(
        zip(_BRIDGE_TABLES, (EFFECT_COLUMNS, RSA_COLUMNS, DECODING_COLUMNS), strict=True)
    )
    tables = {}
    for k, frames in parts.items():
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns[k])
        table.attrs = {"reasons": reasons[k]} if k in reasons else {}
        tables[k] = table
    used = [cubes[n] for n in sorted({n for pair in p["pairs"] for n in pair})]
    write_tree(
        {k: frame_dataset(v) for k, v in tables.items()},
        ctx.path(step.outputs[0]),
        ctx.provenance(step, used),
    )
    for k, rel in zip(_BRIDGE_TABLES, step.outputs[1:], strict=True):
        write_csv(tables[k], ctx.path(rel))


@contextlib.contextmanager
def quiet_dask_glm() -> Iterator[None]:
    """Silence a deprecation notice of dask-glm's internals (not ours)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fuse_ave_width.*")
        yield


def provenance_step(ctx: Context, step: Step) -> None:
    """``provenance.json``: spec, hash, versions, checksums, the steps' keys and timings."""
    steps = {}
    for name in step.after:
        rec = ctx.state["steps"].get(name, {})
        steps[name] = {k: rec.get(k) for k in ("key", "outputs", "seconds", "finished")}
    tables = {
        p.relative_to(ctx.out).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted((ctx.out / "tables").glob("*.csv"))
    }
    inputs: dict[str, Any] = {c["name"]: store_inputs(ctx.store(c)) for c in ctx.spec.cubes}
    for key in ("memorability", "concepts"):
        path = ctx.spec.resolve(ctx.spec.data["inputs"][key])
        if path is not None:
            inputs[key] = file_records([path])
    record = {
        "spec_file": ctx.spec.path.name,
        "spec_hash": ctx.spec.spec_hash,
        "spec": ctx.spec.data,
        "created": now_utc(),
        "memxr_version": __version__,
        "versions": versions(),
        "inputs": inputs,
        "tables": tables,
        "steps": steps,
    }
    with atomic_path(ctx.path("provenance.json")) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def report_step(ctx: Context, step: Step) -> None:
    """``report.html`` and the figures, from the tables and the provenance."""
    from ..report.write import write_report

    write_report(ctx.out, title=step.params["title"])


def catalog_step(ctx: Context, step: Step) -> None:
    """Update the catalog with every cube store of the run."""
    from ..store.catalog import update_catalog

    target = Path(step.outputs[0])
    target = target if target.is_absolute() else ctx.path(step.outputs[0])
    update_catalog(target, [ctx.store(c) for c in ctx.spec.cubes])
