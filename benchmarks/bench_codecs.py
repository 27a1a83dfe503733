"""Codec and chunk-size measurement behind the defaults of ``memxr/store.py``.

Writes a noise-like float32 cube (like fMRI betas: Gaussian, a different scale
per voxel) of about ``--size-mb`` MB as a Zarr store with each candidate codec,
then reads it back whole, and prints the size ratio (stored / raw), write MB/s
and read MB/s (best of ``--repeat`` runs; reads hit the page cache, so they
measure Zarr's own decoding cost, which is what bounds reads here).
A second table varies the chunk size with the chosen codec.

Run: ``python benchmarks/bench_codecs.py [--size-mb 256] [--repeat 2] [--zarr-format 3]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import dask
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

MIB = 1 << 20

CODECS = {
    "none": [],
    "blosc-lz4-shuffle": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
    "blosc-lz4-bitshuffle": [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")],
    "blosc-zstd3-shuffle": [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")],
    "zstd3": [ZstdCodec(level=3)],
}


def _v2(codecs: list) -> list | None:
    """The numcodecs equivalents for Zarr format 2 (None: v2 refuses an empty list)."""
    import numcodecs

    if not codecs:
        return None

    out = []
    for c in codecs:
        if isinstance(c, BloscCodec):
            shuffle = {"shuffle": numcodecs.Blosc.SHUFFLE, "bitshuffle": numcodecs.Blosc.BITSHUFFLE}
            out.append(
                numcodecs.Blosc(
                    cname=c.cname.value, clevel=c.clevel, shuffle=shuffle[c.shuffle.value]
                )
            )
        else:
            out.append(numcodecs.Zstd(level=c.level))
    return out


def betas_like(n_stimulus: int, n_channel: int, chunk_channels: int, seed: int = 0) -> xr.Dataset:
    """A float32 (stimulus, channel) cube of Gaussian noise with a per-channel scale."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 3.0, n_channel).astype(np.float32)
    data = rng.standard_normal((n_stimulus, n_channel), dtype=np.float32) * scale
    ds = xr.Dataset({"response": (("stimulus", "channel"), data)})
    return ds.chunk({"stimulus": -1, "channel": chunk_channels})


def balanced(n: int, per_chunk: int) -> int:
    """Chunk length of at most ``per_chunk`` splitting ``n`` into equal chunks (no tiny last one)."""
    n_chunks = -(-n // max(1, per_chunk))
    return -(-n // n_chunks)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(ds: xr.Dataset, codecs: list, fmt: int, workdir: Path, repeat: int) -> dict:
    """Size ratio, write and read MB/s of one codec (best of ``repeat``)."""
    raw = ds["response"].nbytes
    chunks = tuple(c[0] for c in ds["response"].chunks)
    enc = {"response": {"compressors": codecs if fmt == 3 else _v2(codecs), "chunks": chunks}}
    best_w = best_r = float("inf")
    size = 0
    for _ in range(repeat):
        path = workdir / "bench.zarr"
        shutil.rmtree(path, ignore_errors=True)
        t0 = time.perf_counter()
        ds.to_zarr(path, mode="w", encoding=enc, zarr_format=fmt, consolidated=False)
        best_w = min(best_w, time.perf_counter() - t0)
        size = _du(path)
        t0 = time.perf_counter()
        xr.open_zarr(path, consolidated=False)["response"].data.sum().compute()
        best_r = min(best_r, time.perf_counter() - t0)
    return {
        "ratio": size / raw,
        "write": raw / MIB / best_w,
        "read": raw / MIB / best_r,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--zarr-format", type=int, choices=(2, 3), default=3)
    ap.add_argument("--chunk-mib", type=float, default=64, help="chunk size of the codec table")
    ap.add_argument(
        "--sweep-codecs",
        default="none,blosc-lz4-shuffle",
        help="comma-separated codecs of the chunk-size table",
    )
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=zarr.errors.ZarrUserWarning)

    n_stim = 8740
    n_chan = int(args.size_mb * MIB / (n_stim * 4))
    print(
        f"cube float32 ({n_stim} x {n_chan}) = {n_stim * n_chan * 4 / MIB:.0f} MiB, "
        f"zarr format {args.zarr_format}, dask threads: {dask.system.CPU_COUNT}"
    )
    with tempfile.TemporaryDirectory(prefix="memxr-bench-") as tmp:
        work = Path(tmp)
        per_chunk = balanced(n_chan, int(args.chunk_mib * MIB / (n_stim * 4)))
        ds = betas_like(n_stim, n_chan, per_chunk).persist()
        print(f"\ncodecs, chunks ({n_stim} x {per_chunk}) = {n_stim * per_chunk * 4 / MIB:.0f} MiB")
        print(f"{'codec':<22}{'ratio':>7}{'write MB/s':>12}{'read MB/s':>11}")
        for name, codecs in CODECS.items():
            m = measure(ds, codecs, args.zarr_format, work, args.repeat)
            print(f"{name:<22}{m['ratio']:>7.3f}{m['write']:>12.0f}{m['read']:>11.0f}")

        print(f"\n{'codec':<22}{'chunk MiB':>10}{'write MB/s':>12}{'read MB/s':>11}")
        for name in args.sweep_codecs.split(","):
            for mib in (16, 32, 64, 128):
                per_chunk = balanced(n_chan, int(mib * MIB / (n_stim * 4)))
                ds_c = ds.chunk({"channel": per_chunk})
                m = measure(ds_c, CODECS[name], args.zarr_format, work, args.repeat)
                size = n_stim * per_chunk * 4 / MIB
                print(f"{name:<22}{size:>10.0f}{m['write']:>12.0f}{m['read']:>11.0f}")


if __name__ == "__main__":
    main()
