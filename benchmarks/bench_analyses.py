"""Analyses over Zarr cubes: ROI reduction, time-resolved correlation map, model grid.

Prints ratios (not asserted anywhere):

1. ROI reduction (6 overlapping ROIs, mean) over a >= 2 GB fMRI-like cube
   (8,740 stimuli x 61,440 channels, float32) vs a cold read of the store's
   chunk files with plain ``open().read()`` (target <= 1.3).
2. Time-resolved correlation map (every channel x time bin against
   memorability) over a >= 2 GB TVSD-like cube (5,000 x 1,024 x 100, float32)
   vs a cold read of its bytes (target <= 1.5), in two chunk layouts: 64 channels
   x 50 bins, and whole time bins (what ``memxr ingest`` writes); and the price of
   each layout for reading one area (256 channels) in a 100 ms window.
3. A concept-grouped CV model grid (feature sets x models x folds, with label
   permutations) on a 2-worker LocalCluster vs the same grid sequentially with
   plain scikit-learn in one process (target speedup >= 1.7).

Every timing shows the CPU time of this process and that of the other processes in the
same window (the machine may be shared: CPU times are the steadier measure). Cold means
the page cache is dropped before each timed read (needs root:
``/proc/sys/vm/drop_caches``); where that is refused, every run is warm and
the script says so.

Usage::

    python benchmarks/bench_analyses.py [--workdir DIR] [--keep] [--only roi,map,models]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from _cache import drop_caches

import memxr
from memxr.schema import text_coord


def read_files(store: Path) -> tuple[float, int]:
    """Seconds to read every file of a store once, and the bytes read."""
    t0 = time.perf_counter()
    n = 0
    for root, _, files in os.walk(store):
        for name in files:
            with open(os.path.join(root, name), "rb", buffering=0) as f:
                while block := f.read(16 << 20):
                    n += len(block)
    return time.perf_counter() - t0, n


def _labels(n: int, rng: np.random.Generator) -> dict:
    concepts = [f"concept{i // 12:04d}" for i in range(n)]
    mem = np.repeat(rng.uniform(0.5, 0.95, n // 12 + 1), 12)[:n] + rng.normal(0, 0.05, n)
    return {
        "stimulus_id": (
            "stimulus",
            text_coord([f"{c}_{i % 12:02d}s.jpg" for i, c in enumerate(concepts)]),
        ),
        "concept": ("stimulus", text_coord(concepts)),
        "category": ("stimulus", text_coord([""] * n)),
        "memorability": ("stimulus", mem),
        "split": ("stimulus", text_coord(["train"] * n)),
        "n_repeats": ("stimulus", np.ones(n, dtype=np.int64)),
    }


def _attrs(dataset: str) -> dict:
    return {"dataset": dataset, "subject": "bench", "units": "a.u.", "memxr_version": memxr.__version__,
            "created": "", "inputs": "[]", "spec_hash": ""}  # fmt: skip


def fmri_like(path: Path, n_stim: int = 8740, n_chan: int = 61440) -> Path:
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    coords = _labels(n_stim, rng)
    rois = ["lFFA", "rFFA", "lPPA", "rPPA", "V1", "IT"]
    mask = rng.random((n_chan, len(rois))) < 0.2
    mask[:, 4] = ~mask[:, :4].any(1)  # every channel in some ROI
    resp = da.random.RandomState(1).standard_normal((n_stim, n_chan), chunks=(n_stim, 2048))
    ds = xr.Dataset(
        {"response": (("stimulus", "channel"), resp.astype(np.float32))},
        coords={
            **coords,
            "channel_id": ("channel", np.arange(n_chan, dtype=np.int64)),
            "roi": text_coord(rois),
            "roi_mask": (("channel", "roi"), mask),
        },  # fmt: skip
        attrs=_attrs("things-fmri"),
    )
    return memxr.write_cube(ds, path, progress=False)


def _cpu() -> float:
    """CPU seconds of this process so far (user + system, every thread)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _busy() -> float:
    """CPU seconds the whole machine has been busy (from /proc/stat; 0 where missing)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:8]]
    except OSError:
        return 0.0
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


class _Timed:
    """Wall time, this process's CPU time and the other processes' CPU time of a block."""

    def __enter__(self):
        self.t, self.c, self.b = time.perf_counter(), _cpu(), _busy()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t
        self.cpu = _cpu() - self.c
        self.others = max(0.0, _busy() - self.b - self.cpu)

    def __str__(self) -> str:
        return f"{self.wall:6.2f} s  (CPU {self.cpu:5.2f} s; other processes {self.others:5.1f} s)"


def tvsd_like(path: Path, n_stim: int = 5000, n_time: int = 100, chunks=(5000, 64, 50)) -> Path:
    if path.exists():
        return path
    rng = np.random.default_rng(2)
    coords = _labels(n_stim, rng)
    mask = np.zeros((1024, 3), dtype=bool)
    mask[:512, 0], mask[512:768, 1], mask[768:, 2] = True, True, True
    resp = da.random.RandomState(3).standard_normal((n_stim, 1024, n_time), chunks=chunks)
    ds = xr.Dataset(
        {"response": (("stimulus", "channel", "time"), resp.astype(np.float32))},
        coords={
            **coords,
            "channel_id": ("channel", np.arange(1, 1025, dtype=np.int64)),
            "time": np.arange(n_time, dtype=float) * 3 - 100,
            "roi": text_coord(["V1", "V4", "IT"]),
            "roi_mask": (("channel", "roi"), mask),
        },  # fmt: skip
        attrs=_attrs("tvsd-trials"),
    )
    return memxr.write_cube(ds, path, progress=False)


def bench_roi(workdir: Path) -> None:
    store = fmri_like(workdir / "fmri_like.zarr")
    cold = drop_caches()
    with _Timed() as read:
        t_read, nbytes = read_files(store)
    drop_caches()
    with _Timed() as roi, dask.config.set(scheduler="threads"):
        cube = memxr.open_cube(store)
        memxr.roi_reduce(cube, ["FFA", "PPA", "lFFA", "V1", "IT", "rPPA"]).compute()
    drop_caches()
    with _Timed() as zread, dask.config.set(scheduler="threads"):
        xr.open_zarr(store)["response"].data.sum().compute()
    print(f"\n[1] ROI reduction, {nbytes / 1e9:.2f} GB store ({'cold' if cold else 'warm'} cache)")
    print(f"    zarr read + sum (xarray)    {zread}")
    print(f"    read of the store's bytes   {read}  {nbytes / 1e9 / read.wall:.2f} GB/s")
    print(f"    memxr.roi_reduce (6 ROIs)   {roi}")
    print(f"    ratio roi_reduce / read      {roi.wall / read.wall:6.2f}  (target <= 1.3)"
          f"   CPU {roi.cpu / read.cpu:5.2f}")  # fmt: skip
    print(f"    ratio roi_reduce / zarr read {roi.wall / zread.wall:6.2f}")


def bench_map(workdir: Path) -> None:
    from memxr.stats import correlation_map

    layouts = {
        "chunks of 64 channels x 50 bins": tvsd_like(workdir / "tvsd_like.zarr"),
        "whole time bins (as ingested)": tvsd_like(workdir / "tvsd_bins.zarr", chunks=(5000, 1024, 1)),
    }  # fmt: skip
    for title, store in layouts.items():
        cold = drop_caches()
        with _Timed() as read:
            _, nbytes = read_files(store)
        print(f"\n[2] Time-resolved correlation map, {nbytes / 1e9:.2f} GB store, {title} "
              f"({'cold' if cold else 'warm'} cache)")  # fmt: skip
        print(f"    read of the store's bytes     {read}  {nbytes / 1e9 / read.wall:.2f} GB/s")
        for n_perm in (0, 20):
            drop_caches()
            with _Timed() as run:
                res = correlation_map(memxr.open_cube(store), n_permutations=n_perm, n_bootstrap=0)
                res.r.compute() if n_perm == 0 else res.compute()
            print(f"    correlation map, {n_perm:3d} perms  {run}  ratio to read "
                  f"{run.wall / read.wall:5.2f}" + ("  (target <= 1.5)" if n_perm == 0 else ""))  # fmt: skip
        # the price of whole-bin chunks: one area (256 channels) in a 100 ms window
        drop_caches()
        with _Timed() as window:
            cube = memxr.open_cube(store)
            cube["response"].isel(channel=slice(768, 1024), time=slice(58, 92)).mean().compute()
        print(f"    one area x 100 ms window      {window}  ratio to read {window.wall / read.wall:5.2f}")


def bench_models() -> None:
    from distributed import Client, LocalCluster

    from memxr.models import fit_models

    rng = np.random.default_rng(5)
    n = int(os.environ.get("MEMXR_BENCH_N", 1200))
    concepts = np.repeat(np.arange(n // 12), 12)
    mem = np.repeat(rng.normal(size=n // 12), 12) + rng.normal(0, 0.5, n)
    feats = {}
    for k in range(4):
        x = rng.standard_normal((n, 40)) + 0.3 * (k + 1) / 4 * mem[:, None]
        feats[f"set{k}"] = xr.DataArray(
            x,
            dims=("stimulus", "feature"),
            coords={
                "stimulus_id": ("stimulus", [f"s{i}" for i in range(n)]),
                "concept": ("stimulus", [f"c{c}" for c in concepts]),
            },  # fmt: skip
        )
    y = xr.DataArray(
        mem, dims="stimulus", coords={"stimulus_id": ("stimulus", [f"s{i}" for i in range(n)])}
    )
    grid = {"models": ("ridge", "svr", "svc", "mlp_reg"), "cv": 5, "n_permutations": 4, "seed": 0}
    t0 = time.perf_counter()
    seq = fit_models(feats, y, client=False, **grid)
    t_seq = time.perf_counter() - t0
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as lc,
        Client(lc) as client,
    ):
        t0 = time.perf_counter()
        par = fit_models(feats, y, client=client, **grid)
        t_par = time.perf_counter() - t0
    same = np.allclose(
        seq.table.select_dtypes("number").fillna(0), par.table.select_dtypes("number").fillna(0)
    )
    n_tasks = 4 * 4 * 5 * (1 + grid["n_permutations"])
    print(f"\n[3] Model grid: 4 feature sets x 4 models x 5 grouped folds x (1 + 4 permutations) "
          f"= {n_tasks} fits, {n} stimuli")  # fmt: skip
    print(f"    sequential scikit-learn      {t_seq:6.2f} s")
    print(f"    2-worker LocalCluster        {t_par:6.2f} s  (identical results: {same})")
    print(f"    speedup                      {t_seq / t_par:6.2f}  (target >= 1.7)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "memxr-bench-analyses"
    )
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="roi,map,models")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    try:
        if "roi" in only:
            bench_roi(args.workdir)
        if "map" in only:
            bench_map(args.workdir)
        if "models" in only:
            bench_models()
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
