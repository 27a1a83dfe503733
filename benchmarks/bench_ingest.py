"""Ingest of THINGS-fMRI and TVSD trials files: time, CPU and peak memory, as ratios.

THINGS-fMRI ``ResponseData.h5``: synthetic subjects in the real format at size S
(~2 GB: 211,339 voxels x 2,460 trials, float32) and 4S (211,339 x 9,840: the real
size of sub-01, 8.3 GB; or the real-size files of ``--fmri-dir``). TVSD
``THINGS_MUA_trials.mat``: the file of ``--tvsd-dir`` (a monkey folder), or one
synthesized at ``--tvsd-scale`` (0.25: 14 GB of float64, (300, 1024, 5,768)).
Each case is measured in a fresh process:

- ``raw``: a plain sequential h5py read of the data in ~64 MiB slabs (fMRI: rows of
  voxels; TVSD: whole time bins, as ALLMUA is laid out) - reading the bytes once;
- ``copy``: the same read, writing as many bytes as memxr's store holds to one file and
  ``fsync``-ing it (memxr's stores are made durable the same way) - the I/O floor of any
  ingest that produces that store: on virtual disks writing and flushing costs more than
  reading;
- ``memxr``: ``memxr ingest things-fmri`` / ``memxr ingest tvsd --trials --float32``
  (read, reorder, averages, Zarr write with checksums, SHA-256 of the inputs in the
  background);
- ``naive``: the whole fMRI frame into memory with pandas, then reorder and write
  (at S only: at 4S it would not fit in memory on a 24 GB machine).

fMRI runs are measured warm (the file read once before: the ratio compares
processing) and cold (the page cache dropped first, as for a fresh download; needs
root, skipped otherwise); TVSD runs cold only (the file is larger than what the page
cache keeps). Every run reports its wall time, its CPU time (user + system) and the
CPU time the rest of the machine used in the same window (the machine may be shared:
the CPU time of a run is the steadier measure).

Usage::

    python benchmarks/bench_ingest.py [--workdir DIR] [--fmri-dir DIR] [--tvsd-dir DIR]
                                      [--tvsd-scale 0.25] [--only fmri,tvsd] [--keep]

Prints a table and the ratios: memxr / raw time (target <= 1.5), peak RSS at
4S / S (target <= 1.2, and below 2.5 GB), naive / memxr peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _cache import drop_caches as _drop_caches

REAL_VOXELS = 211_339

RUNNER = textwrap.dedent(
    """
    import json, resource, sys, time
    t0 = time.perf_counter()
    exec(sys.argv[1])
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {"seconds": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime,
           "user": ru.ru_utime, "sys": ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024}
    print("RESULT " + json.dumps(out))
    """
)

RAW = """
import h5py
with h5py.File({path!r}, "r") as f:
    d = f[{name!r}]
    per = d.nbytes // d.shape[0]
    step = max(1, (64 << 20) // per)
    if d.chunks:
        step = max(d.chunks[0], step // d.chunks[0] * d.chunks[0])
    total = 0.0
    for i in range(0, d.shape[0], step):
        total += float(d[i:i + step].sum(dtype="float64"))
"""

COPY = """
import os
import h5py
with h5py.File({path!r}, "r") as f, open({out!r}, "wb") as w:
    d = f[{name!r}]
    per = d.nbytes // d.shape[0]
    step = max(1, (64 << 20) // per)
    if d.chunks:
        step = max(d.chunks[0], step // d.chunks[0] * d.chunks[0])
    left = {nbytes}
    for i in range(0, d.shape[0], step):
        block = d[i:i + step]
        data = memoryview(block).cast("B")[: max(0, min(left, block.nbytes))]
        left -= w.write(data)
    while left > 0:
        left -= w.write(memoryview(block).cast("B")[:left])
    w.flush()
    os.fsync(w.fileno())
os.remove({out!r})
"""

MEMXR_FMRI = """
from memxr.cli import main
code = main(["ingest", "things-fmri", "--input", {input!r}, "--subject", "sub-01",
             "--out", {out!r}, "--no-progress"])
assert code == 0
"""

MEMXR_TVSD = """
from memxr.cli import main
code = main(["ingest", "tvsd", "--trials", "--float32", "--input", {input!r}, "--monkey",
             "N", "--out", {out!r}, "--no-progress"])
assert code == 0
"""

NAIVE = """
import pandas as pd, numpy as np, xarray as xr
frame = pd.read_hdf({h5!r}, "ResponseData")          # whole file into memory
stim = pd.read_csv({stim!r})
values = frame.drop(columns="voxel_id").to_numpy()
train = stim.index[stim.trial_type == "train"]
test = stim[stim.trial_type == "test"].groupby("stimulus", sort=False).groups
cols = [values[:, train]] + [values[:, idx].mean(1, keepdims=True) for idx in test.values()]
cube = np.concatenate(cols, axis=1).T
ids = list(stim.stimulus[train]) + list(test)
xr.Dataset({{"response": (("stimulus", "channel"), cube)}},
           coords={{"stimulus_id": ("stimulus", np.array(ids, dtype=object))}}).to_zarr({out!r})
"""


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (from /proc/stat; 0 where missing)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:8]]
    except OSError:
        return 0.0
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def _measure(code: str, warm: Path | None, cold: bool = False) -> dict:
    if cold:
        _drop_caches()
    elif warm is not None:
        _warm(warm)
    busy = _busy_seconds()
    r = subprocess.run(
        [sys.executable, "-c", RUNNER, code], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT ") :])
    out["others_cpu"] = max(0.0, _busy_seconds() - busy - out["cpu"])
    return out


def _subject(workdir: Path, label: str, n_concepts: int, n_test: int) -> Path:
    from memxr.synth import write_things_fmri_subject

    folder = workdir / label
    if not (folder / "sub-01_ResponseData.h5").exists():
        write_things_fmri_subject(
            folder,
            "sub-01",
            n_voxels=REAL_VOXELS,
            n_concepts=n_concepts,
            n_test=n_test,
            n_sessions=12,
            dtype="float32",
            rng=0,
        )
    return folder


def _tvsd_monkey(workdir: Path, scale: float) -> Path:
    from memxr.synth.generator import synthesize

    folder = workdir / "tvsd" / "tvsd" / "monkeyN"
    if not (folder / "THINGS_MUA_trials.mat").exists():
        synthesize(workdir / "tvsd", scale=scale, subjects=(), monkeys=("N",),
                   n_timebins=300, bin_ms=1.0)  # fmt: skip
    return folder


def _store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _row(label: str, what: str, gb: float, m: dict) -> str:
    return (f"{label:>5} {what:>6} {gb:8.2f} {m['seconds']:8.1f} {m['cpu']:8.1f}"
            f" {m['others_cpu']:9.1f} {m['peak_rss_mb']:8.0f}")  # fmt: skip


def _ratio(label: str, raw: dict, mem: dict, copy: dict | None = None) -> str:
    line = (f"  {label:34s} wall {mem['seconds'] / raw['seconds']:5.2f}  (target <= 1.5)   "
            f"CPU {mem['cpu'] / raw['cpu']:5.2f}")  # fmt: skip
    if copy is not None:
        line += f"   / copy (read + write + fsync): wall {mem['seconds'] / copy['seconds']:5.2f}"
    return line


def bench_fmri(args, rows: list, ratios: list) -> None:
    # S: 180 concepts x 12 + 25 test x 12 sessions = 2,460 trials; 4S: 9,840 (the real count).
    sizes = {"S": (180, 25), "4S": (720, 100)}
    peaks, naive_s = {}, None
    for label, (n_concepts, n_test) in sizes.items():
        if label == "4S" and args.fmri_dir is not None:
            folder = args.fmri_dir
        else:
            folder = _subject(args.workdir, label, n_concepts, n_test)
        h5 = folder / "sub-01_ResponseData.h5"
        gb = h5.stat().st_size / 1e9
        raw_code = RAW.format(path=str(h5), name="ResponseData/block0_values")
        out = args.workdir / f"{label}.zarr"
        mem_code = MEMXR_FMRI.format(input=str(folder), out=str(out))
        runs = [("warm", False)] + ([("cold", True)] if _drop_caches() else [])
        for how, cold in runs:
            raw = _measure(raw_code, h5, cold)
            shutil.rmtree(out, ignore_errors=True)
            mem = _measure(mem_code, h5, cold)
            nbytes = _store_bytes(out)
            shutil.rmtree(out, ignore_errors=True)
            copy = _measure(COPY.format(path=str(h5), name="ResponseData/block0_values",
                                        out=str(args.workdir / "copy.bin"), nbytes=nbytes),
                            h5, cold)  # fmt: skip
            rows += [_row(label, "raw", gb, raw) + f"  fMRI {how}",
                     _row(label, "copy", gb, copy) + f"  fMRI {how}, {nbytes / 1e9:.2f} GB written",
                     _row(label, "memxr", gb, mem) + f"  fMRI {how}"]  # fmt: skip
            ratios.append(_ratio(f"fMRI {label} ({gb:.1f} GB) {how}", raw, mem, copy))
            peaks[label] = max(peaks.get(label, 0.0), mem["peak_rss_mb"])
        if label == "S" and not args.skip_naive:
            nout = args.workdir / f"{label}-naive.zarr"
            shutil.rmtree(nout, ignore_errors=True)
            stim = folder / "sub-01_StimulusMetadata.csv"
            naive_s = _measure(NAIVE.format(h5=str(h5), stim=str(stim), out=str(nout)), h5)
            shutil.rmtree(nout, ignore_errors=True)
            rows.append(_row(label, "naive", gb, naive_s) + "  fMRI warm")
    ratios.append(f"  fMRI peak RSS 4S / S:               {peaks['4S'] / peaks['S']:.2f}"
                  f"  (target <= 1.2; 4S peak {peaks['4S'] / 1024:.2f} GB, target < 2.5)")  # fmt: skip
    if naive_s:
        ratios.append(f"  fMRI naive / memxr peak RSS (S):    {naive_s['peak_rss_mb'] / peaks['S']:.1f}")


def bench_tvsd(args, rows: list, ratios: list) -> None:
    folder = args.tvsd_dir or _tvsd_monkey(args.workdir, args.tvsd_scale)
    path = folder / "THINGS_MUA_trials.mat"
    gb = path.stat().st_size / 1e9
    out = args.workdir / "tvsd_trials.zarr"
    shutil.rmtree(out, ignore_errors=True)
    cold = _drop_caches()
    raw = _measure(RAW.format(path=str(path), name="ALLMUA"), None, cold)
    mem = _measure(MEMXR_TVSD.format(input=str(folder), out=str(out)), None, cold)
    nbytes = _store_bytes(out)
    shutil.rmtree(out, ignore_errors=True)
    copy = _measure(COPY.format(path=str(path), name="ALLMUA", out=str(args.workdir / "copy.bin"),
                                nbytes=nbytes), None, _drop_caches())  # fmt: skip
    how = "cold" if cold else "warm"
    rows += [_row("trials", "raw", gb, raw) + f"  TVSD {how}",
             _row("trials", "copy", gb, copy) + f"  TVSD {how}, {nbytes / 1e9:.2f} GB written",
             _row("trials", "memxr", gb, mem) + f"  TVSD {how}"]  # fmt: skip
    ratios.append(_ratio(f"TVSD trials ({gb:.1f} GB) {how}", raw, mem, copy))
    ratios.append(f"  TVSD peak RSS:                      {mem['peak_rss_mb'] / 1024:.2f} GB")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "memxr-bench")
    ap.add_argument("--fmri-dir", type=Path, help="folder with a real-size sub-01 (the 4S case)")
    ap.add_argument("--tvsd-dir", type=Path, help="monkey folder with THINGS_MUA_trials.mat")
    ap.add_argument("--tvsd-scale", type=float, default=0.25, help="size of a synthesized one")
    ap.add_argument("--only", default="fmri,tvsd")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic files")
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    rows: list[str] = []
    ratios: list[str] = []
    t0, busy = time.perf_counter(), _busy_seconds()
    try:
        if "fmri" in only:
            bench_fmri(args, rows, ratios)
        if "tvsd" in only:
            bench_tvsd(args, rows, ratios)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(f"\n{'size':>5} {'run':>6} {'file GB':>8} {'wall s':>8} {'CPU s':>8}"
          f" {'others s':>9} {'peak MB':>8}")  # fmt: skip
    print("\n".join(rows))
    print("\nratios (memxr / raw read; and memxr / copy, the I/O floor)")
    print("\n".join(ratios))
    load = (_busy_seconds() - busy) / (time.perf_counter() - t0)
    print(f"\nmachine: {os.cpu_count()} cores, on average {load:.1f} of them busy during the benchmark")


if __name__ == "__main__":
    main()
