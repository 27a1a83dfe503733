"""Ingest of a THINGS-fMRI ResponseData.h5: time and peak memory, as ratios.

Writes synthetic subjects in the real format at size S (default ~2 GB:
211,339 voxels x 2,460 trials, float32) and 4S (211,339 x 9,840: the real
size of sub-01, 8.3 GB), then measures, each in a fresh process:

- ``raw``: a plain sequential h5py read of the betas in 64 MiB row blocks
  (the floor: reading the bytes once);
- ``memxr``: ``memxr ingest things-fmri`` (read, train/test reorder, test
  averaging, Zarr write, SHA-256 of the inputs in the background);
- ``naive``: the whole frame into memory with pandas, then reorder and write
  (at S only: at 4S it would not fit in memory on a 24 GB machine).

Each run is measured twice: warm (the file read once before, so it comes from
the page cache and the ratio compares processing) and cold (the page cache
dropped first, as for a fresh download on disk; needs root, skipped otherwise).

Usage::

    python benchmarks/bench_ingest.py [--workdir DIR] [--gb 2] [--keep]

Prints a table and the ratios: memxr / raw time (target <= 1.5), peak RSS at
4S / S (target <= 1.2, and below 2.5 GB), naive / memxr peak RSS.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _cache import drop_caches as _drop_caches

REAL_VOXELS = 211_339

RUNNER = textwrap.dedent(
    """
    import json, resource, sys, time
    t0 = time.perf_counter()
    exec(sys.argv[1])
    out = {"seconds": time.perf_counter() - t0,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("RESULT " + json.dumps(out))
    """
)

RAW = """
import h5py
with h5py.File({path!r}, "r") as f:
    d = f["ResponseData/block0_values"]
    rows = max(1, (64 << 20) // (d.shape[1] * d.dtype.itemsize))
    total = 0.0
    for i in range(0, d.shape[0], rows):
        total += float(d[i:i + rows].sum(dtype="float64"))
"""

MEMXR = """
from memxr.cli import main
code = main(["ingest", "things-fmri", "--input", {input!r}, "--subject", "sub-01",
             "--out", {out!r}, "--no-progress"])
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


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def _measure(code: str, warm: Path, cold: bool = False) -> dict:
    if cold:
        _drop_caches()
    else:
        _warm(warm)
    r = subprocess.run(
        [sys.executable, "-c", RUNNER, code], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "memxr-bench")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic files")
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    # S: 180 concepts x 12 + 25 test x 12 sessions = 2,460 trials; 4S: 9,840 (the real count).
    sizes = {"S": (180, 25), "4S": (720, 100)}
    rows, cold_rows = [], []
    for label, (n_concepts, n_test) in sizes.items():
        folder = _subject(args.workdir, label, n_concepts, n_test)
        h5 = folder / "sub-01_ResponseData.h5"
        gb = h5.stat().st_size / 1e9
        raw = _measure(RAW.format(path=str(h5)), h5)
        out = args.workdir / f"{label}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        mem = _measure(MEMXR.format(input=str(folder), out=str(out)), h5)
        if _drop_caches():
            raw_c = _measure(RAW.format(path=str(h5)), h5, cold=True)
            shutil.rmtree(out, ignore_errors=True)
            mem_c = _measure(MEMXR.format(input=str(folder), out=str(out)), h5, cold=True)
            cold_rows.append((label, raw_c, mem_c))
        naive = None
        if label == "S" and not args.skip_naive:
            nout = args.workdir / f"{label}-naive.zarr"
            shutil.rmtree(nout, ignore_errors=True)
            stim = folder / "sub-01_StimulusMetadata.csv"
            naive = _measure(NAIVE.format(h5=str(h5), stim=str(stim), out=str(nout)), h5)
            shutil.rmtree(nout, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        rows.append((label, gb, raw, mem, naive))

    print(f"\n{'size':>4} {'file GB':>8} {'raw s':>7} {'memxr s':>8} {'naive s':>8}"
          f" {'raw MB':>8} {'memxr MB':>9} {'naive MB':>9}")  # fmt: skip
    for label, gb, raw, mem, naive in rows:
        ns = f"{naive['seconds']:8.1f}" if naive else f"{'-':>8}"
        nm = f"{naive['peak_rss_mb']:9.0f}" if naive else f"{'-':>9}"
        print(f"{label:>4} {gb:8.2f} {raw['seconds']:7.1f} {mem['seconds']:8.1f} {ns}"
              f" {raw['peak_rss_mb']:8.0f} {mem['peak_rss_mb']:9.0f} {nm}")  # fmt: skip
    (_, _, raw_s, mem_s, naive_s), (_, _, raw_4, mem_4, _) = rows
    print("\nratios")
    for label, raw, mem in (("S", raw_s, mem_s), ("4S", raw_4, mem_4)):
        print(f"  ingest time / plain h5py read ({label}):  {mem['seconds'] / raw['seconds']:.2f}"
              "  (target <= 1.5)")  # fmt: skip
    print(f"  peak RSS 4S / S:                     {mem_4['peak_rss_mb'] / mem_s['peak_rss_mb']:.2f}"
          f"  (target <= 1.2; 4S peak {mem_4['peak_rss_mb'] / 1024:.2f} GB, target < 2.5)")  # fmt: skip
    for label, raw_c, mem_c in cold_rows:
        print(f"  cold cache ({label}): plain read {raw_c['seconds']:.1f} s, memxr {mem_c['seconds']:.1f} s,"
              f" ratio {mem_c['seconds'] / raw_c['seconds']:.2f}")  # fmt: skip
    if naive_s:
        print(f"  naive / memxr peak RSS (S):          "
              f"{naive_s['peak_rss_mb'] / mem_s['peak_rss_mb']:.1f}"
              f"  (naive time / memxr time {naive_s['seconds'] / mem_s['seconds']:.2f})")  # fmt: skip
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
