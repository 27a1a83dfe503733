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
>>> ds = xr.Dataset({"mean": (("stimulus", "roi"), np.c_[np.arange(5.0), [1.0, 0, 2, 1, 0]]),
...                  "reliability_single": ("roi", [0.2, 0.05])},
...                 coords={"roi": ["IT", "V1"], "memorability": ("stimulus", np.arange(5.0)),
...                         "n_channels": ("roi", [4, 2])},
...                 attrs={"dataset": "things-fmri", "subject": "sub-01"})
>>> res = correlate(ds["mean"], ds.memorability, n_permutations=0, n_bootstrap=0)
>>> rows = correlation_rows(res, ds, "pearson", "mean", "train", 0.45)
>>> rows[["roi", "r", "n_channels", "noise_ceiling", "trials"]].round(3).values.tolist()
[['IT', 1.0, 4, 0.3, 'single (train)'], ['V1', -0.189, 2, 0.15, 'single (train)']]
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
from ..reliability import MEMORABILITY_RELIABILITY
from ..schema import AREA_WINDOWS, trials_label
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
    from ..reduce import day_constants, default_rois, normalize_days
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
        windows = roi_windows(rois)
        # the constants first (one pass over the repeats): in the same graph as the
        # normalised cube, every repeat chunk would wait in memory for them
        constants = compute(ctx, day_constants(ds, windows))
        ds = normalize_days(ds, windows, constants)
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


_RELIABILITY_VARS = ["reliability_single", "reliability_repeats", "test_repeats"]


def _ceilings(cube: xr.Dataset, names: list[str], windows: dict | None) -> xr.Dataset:
    """Split-half reliability of each ROI's mean (windowed when timed), on both scales.

    ``reliability_single``: of one trial (the train images' responses);
    ``reliability_repeats``: of the mean of the ``test_repeats`` repeats (the test images').
    The ceiling on r(ROI, memorability) is drawn from them with the memorability
    reliability by the steps that correlate (:func:`ceiling_of`).
    """
    from ..reliability import noise_ceiling

    if "response_repeats" not in cube.data_vars:
        nan = xr.DataArray(np.full(len(names), np.nan), dims="roi")
        return xr.Dataset({k: nan for k in _RELIABILITY_VARS})
    if windows is None:
        nc = noise_ceiling(cube, names)
        return nc[_RELIABILITY_VARS].drop_vars(list(nc.coords))
    parts = []
    times = np.asarray(cube["time"].values, dtype=float)
    for roi in names:
        start, stop = windows[roi]
        inside = np.flatnonzero((times >= start) & (times < stop))
        rep = cube["response_repeats"].isel(time=inside).mean("time")
        sub = xr.Dataset({"response_repeats": rep}, coords={"roi_mask": cube["roi_mask"]})
        nc = noise_ceiling(sub, [roi])
        parts.append(nc[_RELIABILITY_VARS].drop_vars(list(nc.coords)))
    return xr.concat(parts, dim="roi")


def ceiling_of(ds: xr.Dataset, split: str, memorability_reliability: float) -> np.ndarray:
    """Ceiling on r(ROI response, memorability) per ROI for the responses of one split.

    ``sqrt(reliability x memorability reliability)`` with the reliability of one trial
    (train images) or of the mean of the repeats (test images); NaN where negative or
    unknown.
    """
    rel = ds["reliability_single" if split == "train" else "reliability_repeats"].values
    rel = np.asarray(rel, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(rel >= 0, rel, np.nan) * float(memorability_reliability))


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


def correlation_rows(
    res: xr.Dataset,
    ds: xr.Dataset,
    method: str,
    how: str | None,
    split: str = "train",
    memorability_reliability: float = MEMORABILITY_RELIABILITY,
) -> pd.DataFrame:
    """Tidy rows of one :func:`memxr.stats.correlate` result over ROIs (``how``) or ROIs x time.

    The leading columns are the results contract's; then ``trials`` (which responses:
    single train trials or test-set means), ``p_family`` (the family of ``p_fdr``) and,
    per ROI, the reliability on the scale of the responses and the memorability
    reliability behind ``noise_ceiling``.
    """
    frame = res[_STATS].to_dataframe().reset_index()
    frame["dataset"] = ds.attrs.get("dataset", "")
    frame["subject"] = ds.attrs.get("subject", "")
    frame["method"] = method
    frame["n"] = int(res["n"])
    frame["trials"] = trials_label(ds, split)
    if how is None:
        n_roi = res.sizes.get("roi", 1)
        frame["p_family"] = (
            f"p_fdr: Benjamini-Hochberg over the {n_roi} ROIs x {res.sizes.get('time', 1)} time"
            " bins of this cube, method and split"
        )
        return frame[["dataset", "subject", "roi", "method", "time", *_STATS, "n", "trials",
                      "p_family"]]  # fmt: skip
    frame["how"] = how
    frame["n_channels"] = ds["n_channels"].values.astype(int)
    frame["noise_ceiling"] = ceiling_of(ds, split, memorability_reliability)
    frame["p_family"] = (
        f"p_fdr: Benjamini-Hochberg over the {len(frame)} ROIs of this cube, method, how"
        " and split"
    )
    reliability = "reliability_single" if split == "train" else "reliability_repeats"
    frame["neural_reliability"] = np.asarray(ds[reliability].values, dtype=float)
    frame["memorability_reliability"] = float(memorability_reliability)
    lead = ["dataset", "subject", "roi", "method", "how"]
    rest = ["trials", "p_family", "neural_reliability", "memorability_reliability"]
    return frame[[*lead, *_STATS, "n", "n_channels", "noise_ceiling", *rest]]


def split_rows(ds: xr.Dataset, split: str) -> np.ndarray:
    """Indices of the stimuli of one split (train or test)."""
    from ..schema import coord_values

    return np.flatnonzero(coord_values(ds, "split").astype(str) == split)


@contextlib.contextmanager
def in_process() -> Iterator[None]:
    """Compute in this process: for small in-memory data shipping tasks costs more than it saves."""
    import dask

    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Running on a single-machine scheduler")
        yield


def correlate_all(
    ctx: Context, step: Step, var_of: Callable[[str], str], hows: list[str], timed: bool
) -> tuple[pd.DataFrame, dict[str, xr.Dataset], pd.DataFrame]:
    """Correlations of every cube's magnitudes with memorability, per method, reduction and
    split (train and test images apart); for time courses, cluster-mass tests over time."""
    from ..stats import cluster_table, cluster_test
    from ..stats.correlation import correlate

    p = step.params
    mem_rel = p.get("memorability_reliability", MEMORABILITY_RELIABILITY)
    rows, groups, clusters = [], {}, []
    for cube in analysis_cubes(step, ctx):
        ds = load_magnitudes(ctx, cube)
        per_split, splits = [], []
        for split in p["splits"]:
            part = ds.isel(stimulus=split_rows(ds, split))
            if int(np.isfinite(part["memorability"].values).sum()) < 3:
                ctx.log(f"    {step.name}: {cube['name']} has fewer than 3 labelled {split} images")
                continue
            per_method = []
            for method in p["methods"]:
                per_how = []
                for how in hows:
                    with in_process():
                        res = correlate(
                            part[var_of(how)],
                            part["memorability"],
                            method=method,
                            n_permutations=p["n_permutations"],
                            n_bootstrap=p["n_bootstrap"],
                            groups=p["groups"],
                            seed=p["seed"],
                            compute=True,
                            return_null=timed,
                        )
                    table = correlation_rows(
                        res, part, method, None if timed else how, split, mem_rel
                    )
                    if timed and p["n_permutations"]:
                        found = cluster_test(res, threshold=p["cluster_threshold"])
                        res = res.assign(p_cluster=found["p_cluster"], cluster=found["cluster"])
                        res.attrs["p_cluster_family"] = found.attrs["p_family"]
                        key = ["roi", "time"]
                        extra = found[["p_cluster", "cluster"]].to_dataframe().reset_index()
                        table = table.merge(extra[key + ["p_cluster", "cluster"]], on=key)
                        table["p_cluster_family"] = found.attrs["p_family"]
                        info = {
                            "dataset": ds.attrs.get("dataset", ""),
                            "subject": ds.attrs.get("subject", ""),
                            "method": method,
                            "trials": trials_label(part, split),
                        }
                        found_rows = cluster_table(found)
                        clusters.append(found_rows.assign(**info)[list(info) + list(found_rows)])
                    rows.append(table)
                    res = res.drop_vars(["r_null"], errors="ignore")
                    per_how.append(res.drop_vars([c for c in res.coords if c not in res.dims]))
                per_method.append(xr.concat(per_how, dim="how", coords="minimal"))
            out = xr.concat(per_method, dim="method", coords="minimal")
            per_split.append(out.assign_coords(method=p["methods"], how=hows))
            splits.append(split)
        if not per_split:
            continue
        out = xr.concat(per_split, dim="split", coords="minimal", join="outer")
        out = out.assign_coords(
            split=splits,
            trials=("split", [trials_label(ds, s) for s in splits]),
            n_channels=ds["n_channels"],
        )
        for s in splits:
            out[f"ceiling_r_{s}"] = ("roi", ceiling_of(ds, s, mem_rel))
        out.attrs = {k: ds.attrs.get(k, "") for k in ("dataset", "subject")}
        out.attrs["params"] = json.dumps(p, sort_keys=True)
        groups[cube["name"]] = out
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    clusters = [c for c in clusters if len(c)]  # a cube without clusters adds no row
    found = pd.concat(clusters, ignore_index=True) if clusters else pd.DataFrame()
    return table, groups, found


def analysis_cubes(step: Step, ctx: Context) -> list[dict]:
    """The cube entries whose magnitudes a step reads."""
    return [c for c in ctx.spec.cubes if f"magnitudes:{c['name']}" in step.after]


def timecourse_step(ctx: Context, step: Step) -> None:
    """Correlation of every ROI's mean with memorability at every time bin, and clusters.

    Cluster-mass permutation tests over time (:func:`memxr.stats.cluster_test`) from the
    same permutations, family-wise over the ROIs and bins of a cube, method and split;
    every cluster with its onset and offset in ``tables/timecourse_clusters.csv``.
    """
    table, groups, clusters = correlate_all(ctx, step, lambda how: f"{how}_time", ["mean"], True)
    groups = {k: v.squeeze("how", drop=True) for k, v in groups.items()}
    write_tree(groups, ctx.path(step.outputs[0]), ctx.provenance(step, analysis_cubes(step, ctx)))
    write_csv(table, ctx.path(step.outputs[1]))
    if clusters.empty:
        clusters = pd.DataFrame(columns=CLUSTER_COLUMNS)
    write_csv(clusters, ctx.path(step.outputs[2]))


CLUSTER_COLUMNS = ["dataset", "subject", "method", "trials", "roi", "cluster", "sign", "onset",
                   "offset", "n_bins", "mass", "p_cluster", "p_family"]  # fmt: skip
"""Columns of ``tables/timecourse_clusters.csv``."""


def feature_sets(ctx: Context, cube: dict, p: dict) -> tuple[dict[str, xr.DataArray], dict]:
    """The feature sets of one cube: ROI magnitudes (in memory), and each ROI's pattern (its
    channels, still lazy: :func:`split_in_memory` loads one split's rows at a time; their
    PCA is fit inside the training folds), and the PCA size of each."""
    from ..features import pattern_features
    from ..reduce import roi_masks
    from ..schema import text_coord

    sets: dict[str, xr.DataArray] = {}
    pcs: dict[str, int | None] = {}
    if "magnitude" in p["feature_sets"]:
        mag = load_magnitudes(ctx, cube)["mean"].rename(roi="feature")
        mag = mag.dropna("feature", how="all")  # an ROI left without channels
        sets["magnitude"] = mag.assign_coords(feature=text_coord(mag["feature"].values))
        pcs["magnitude"] = None
    if "pattern" in p["feature_sets"]:
        ds, names, rois = open_prepared(ctx, cube)
        windows = roi_windows(rois) if "time" in ds.dims else None
        for roi in names:
            n_channels = int(roi_masks(ds, [roi]).sum())
            if n_channels == 0:
                ctx.log(f"    models: {cube['name']} {roi} has no channel; no pattern features")
                continue
            f = pattern_features(ds, roi, None, time=windows[roi] if windows else None)
            sets[f"pattern_{roi}"] = f
            pcs[f"pattern_{roi}"] = p["pca"] and min(p["pca"], n_channels)
    return sets, pcs


def model_target(sets: dict[str, xr.DataArray], ctx: Context | None = None) -> str | xr.DataArray:
    """Memorability, NaN (left out) for stimuli without a finite value in every feature set.

    Lazy feature sets are checked by one pass each (on the client of ``ctx``), so that the
    sets can then be loaded and fit one at a time on the same stimuli.
    """
    from ..models.task import is_dask

    ref = next(iter(sets.values()))
    y = np.asarray(ref["memorability"].values, dtype=float).copy()
    for f in sets.values():
        ok = np.isfinite(f)
        rest = [d for d in f.dims if d != "stimulus"]
        ok = ok.all(rest) if rest else ok
        if is_dask(ok.data):
            ok = compute(ctx, ok) if ctx is not None else ok.compute()
        y[~np.asarray(ok.values, dtype=bool)] = np.nan
    if np.array_equal(np.isnan(y), np.isnan(np.asarray(ref["memorability"].values, float))):
        return "memorability"
    return xr.DataArray(y, dims="stimulus", name="memorability")


def split_in_memory(ctx: Context, part: dict[str, xr.DataArray]) -> dict[str, xr.DataArray]:
    """The lazy feature sets of one split computed, one after the other.

    Patterns are loaded split by split, never for every stimulus: a whole THINGS-fMRI
    subject's patterns (7 ROIs, 181,508 voxels x 8,740 stimuli, 6.3 GB of float32) in memory
    beside their train rows was twice what the models step needs (the client of
    ``memxr run`` reached 19.9 GB and was killed on a 24 GB machine).
    """
    from ..models.task import is_dask

    return {k: compute(ctx, v) if is_dask(v.data) else v for k, v in part.items()}


def model_split(sets: dict[str, xr.DataArray], split: str, cv: Any, groups: Any) -> tuple:
    """The feature sets restricted to one split's images with a memorability score, or a
    reason why it cannot be fit.

    Images without a score are left out here, before the patterns are loaded, rather than
    by :func:`memxr.models.fit_models` (which would copy every feature set without them).
    """
    from ..stats.inputs import group_codes

    ref = next(iter(sets.values()))
    keep = split_rows(ref, split)
    labelled = np.isfinite(np.asarray(ref["memorability"].values, dtype=float)[keep])
    part = {k: v.isel(stimulus=keep[labelled]) for k, v in sets.items()}
    k = cv[1] if isinstance(cv, tuple) else cv
    if groups and "concept" in ref.coords:
        concepts = np.asarray(ref["concept"].values, dtype=object)[keep][labelled]
        n_groups = np.unique(group_codes(concepts)).size
    else:
        n_groups = int(labelled.sum())
    if n_groups < max(k, 3) or labelled.sum() < 2 * k:
        return None, f"{int(labelled.sum())} labelled {split} images in {n_groups} groups"
    return part, ""


def models_step(ctx: Context, step: Step) -> None:
    """Cross-validated models of memorability on each cube's feature sets, per split.

    The train images (single trials) and the test images (means of their repeats) are
    fit apart (``trials`` column); the PCA of pattern features is fit inside each
    training fold. ``noise_ceiling`` is ``sqrt(memorability reliability)``, the ceiling
    any prediction has on r(prediction, memorability) (the reliability of a model's
    combination of channels is not measured).
    """
    from ..models.fit import combine_results, fit_models

    p = step.params
    cv = p["cv"] if p["groups"] else ("random", p["cv"])
    mem_rel = p.get("memorability_reliability", MEMORABILITY_RELIABILITY)
    tables, preds, groups = [], [], {}
    for cube in ctx.spec.cubes:
        sets, pcs = feature_sets(ctx, cube, p)
        if not sets:
            continue
        mag = load_magnitudes(ctx, cube)
        dataset, subject = mag.attrs.get("dataset", ""), mag.attrs.get("subject", "")
        for split in p["splits"]:
            part, why = model_split(sets, split, cv, p["groups"])
            if part is None:
                ctx.log(f"    models: {cube['name']} {split}: too few images to fit ({why})")
                continue
            unlabelled = split_rows(next(iter(sets.values())), split).size - next(
                iter(part.values())
            ).sizes["stimulus"]
            target = model_target(part, ctx)
            fits = []
            for name, features in part.items():  # one feature set in memory at a time
                one = split_in_memory(ctx, {name: features})
                fits.append(
                    fit_models(
                        one,
                        target,
                        models=p["models"],
                        cv=cv,
                        groups=p["groups"],
                        n_permutations=p["n_permutations"],
                        early_stop=p.get("early_stop", 0),
                        seed=p["seed"],
                        client=ctx.client or False,
                        noise_ceiling=float(np.sqrt(mem_rel)),
                        n_components={name: pcs.get(name)},
                    )
                )
                del one
            res = combine_results(fits)
            trials = trials_label(mag, split)
            t = res.table.copy()
            if "n_dropped" in t:  # images of the split without a score: left out above
                t["n_dropped"] += unlabelled
            t.insert(0, "subject", subject)
            t.insert(0, "dataset", dataset)
            t["trials"] = trials
            t["ceiling_basis"] = f"memorability reliability {mem_rel:g}"
            tables.append(t)
            preds.append(_prediction_rows(res.predictions, dataset, subject).assign(trials=trials))
            tree = res.to_xarray()
            tree.attrs.update({"dataset": dataset, "subject": subject, "trials": trials})
            groups[f"{cube['name']}/{split}"] = tree
            del part, res  # this split's patterns: not held while the next one loads
    write_tree(groups, ctx.path(step.outputs[0]), ctx.provenance(step, ctx.spec.cubes))
    write_csv(pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(),
              ctx.path(step.outputs[1]))  # fmt: skip
    write_csv(pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(),
              ctx.path(step.outputs[2]))  # fmt: skip


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


def _bridge_pair(ctx: Context, p: dict, human_of: tuple, monkey_of: tuple, cache: dict) -> dict:
    """The three bridge tables of one human-monkey pair (decoding empty when disabled);
    the cubes as :func:`open_prepared` gives them, opened once for all their pairs so that
    ``cache`` reuses their per-ROI work (:func:`memxr.bridge.bridge`)."""
    from ..bridge import DECODING_COLUMNS, bridge

    human, human_rois, _ = human_of
    monkey, monkey_rois, monkey_settings = monkey_of
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
            disjoint_concepts=decoding["disjoint_concepts"],
            decoding_components=decoding["n_components"],
            max_items=p["max_items"],
            seed=p["seed"],
            windows=roi_windows(monkey_settings),
            cache=cache,
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
    opened: dict[str, tuple] = {}  # each cube opened once, kept while the step runs
    cache: dict = {}  # per-cube RDMs and PCA scores shared by the pairs (small)
    for human_name, monkey_name in p["pairs"]:
        for name in (human_name, monkey_name):
            if name not in opened:
                opened[name] = open_prepared(ctx, cubes[name])
        out = _bridge_pair(ctx, p, opened[human_name], opened[monkey_name], cache)
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
    covariates = ctx.spec.data["inputs"].get("covariates")
    if covariates is not None:
        inputs["covariates"] = file_records([ctx.spec.resolve(covariates["path"])])
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
