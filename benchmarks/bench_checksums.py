"""What CRC-32C checksums in every chunk cost: write and read GB/s with and without them.

Writes a float32 (stimulus x channel) cube of noise, chunks of ``--stimuli`` x
``--chunk-channels`` (default 8192 x 2048 = 64 MiB), in two memory layouts of the dask
blocks: ``blocks`` (one contiguous array per chunk, as a reader produces them) and
``views`` (column slices of one array, as ``Dataset.chunk`` of an in-memory cube gives
them; ``benchmarks/bench_codecs.py`` writes those). Each layout is written eight ways:

* ``zarr none`` / ``zarr crc32c``: ``xarray.to_zarr`` with no codec / with Zarr v3's
  ``crc32c`` codec encoded by zarr-python, with xarray's defaults (which leave out chunks
  holding only fill values, so every chunk is first compared with the fill value);
* the same with ``write_empty_chunks=True`` (``, all chunks``);
* ``ChunkWriter none`` / ``ChunkWriter crc32c``: :class:`memxr.store.chunks.ChunkWriter`
  alone (``dask.array.store`` into an array zarr created), which writes every chunk with
  one ``writev`` of the chunk's own buffer and, with the codec, its 4 checksum bytes (the
  CRC computed in the Dask thread): the cost of the checksum itself;
* ``memxr v3 crc32c``: :func:`memxr.store.write_cube` (that writer, region by region, with
  a progress log, coordinates, metadata and the final rename), Zarr format 3;
* ``memxr v2 none``: the same in Zarr format 2, which has no checksum.

Then reads stores whole (``xarray.open_zarr``, and :func:`memxr.store.open_cube`, which
names bad chunks) and prints GB/s (best of ``--repeat``) and CPU seconds per GB (all
threads of this process: less sensitive to other programs on the machine than wall
time). Writes go to the page cache unless ``--sync`` adds an ``os.sync()`` to each write
(then they wait for the disk). It also prints the versions, the CRC-32C implementation
of each library, and the speed of the two steps of zarr-python's encoder on one chunk
(it runs them on Zarr's single event-loop thread).

Run: ``python benchmarks/bench_checksums.py [--chunks 8] [--repeat 3] [--sync] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

from memxr.schema import example_cube
from memxr.store import open_cube, write_cube
from memxr.store.chunks import ArrayLayout, ChunkWriter

GB = 1e9


def noise_cube(n_stimulus: int, chunk_channels: int, n_chunks: int, layout: str) -> xr.Dataset:
    """A valid cube whose float32 response is held in memory as ``blocks`` or ``views``."""
    n_channel = chunk_channels * n_chunks
    chunks = ((n_stimulus,), (chunk_channels,) * n_chunks)

    def block(block_info=None):
        rng = np.random.default_rng(block_info[None]["chunk-location"][1])
        return rng.standard_normal(block_info[None]["chunk-shape"], dtype=np.float32)

    data = da.map_blocks(block, chunks=chunks, dtype=np.float32)
    if layout == "views":
        data = da.from_array(data.compute(), chunks=chunks)
    base = example_cube(n_stimulus=n_stimulus, n_channel=1)
    ds = base.drop_vars(["response", "channel_id", "roi_mask"]).assign(
        response=(("stimulus", "channel"), data)
    )
    ds = ds.assign_coords(
        channel_id=("channel", np.arange(1, n_channel + 1)),
        roi_mask=(("channel", "roi"), np.ones((n_channel, 1), dtype=bool)),
    )
    return ds.persist()


def crc_implementations() -> dict[str, str]:
    """Which CRC-32C code zarr-python's codec and numcodecs' CRC32C use here."""
    import google_crc32c

    out = {
        "zarr.codecs.Crc32cCodec": f"google_crc32c {importlib.metadata.version('google-crc32c')}"
        f" ({google_crc32c.implementation} implementation)",
    }
    if importlib.util.find_spec("google_crc32c") is not None:
        out["numcodecs.CRC32C"] = "google_crc32c (same library)"
    elif importlib.util.find_spec("crc32c") is not None:
        out["numcodecs.CRC32C"] = "crc32c (deprecated by numcodecs 0.16.4)"
    else:
        out["numcodecs.CRC32C"] = "not available"
    return out


def encoder_parts(chunk: np.ndarray, repeat: int) -> dict[str, float]:
    """GB/s of the two steps of zarr-python's crc32c encoder on one chunk (best of repeat)."""
    import google_crc32c

    raw = chunk.reshape(-1).view(np.uint8)
    best = {"google_crc32c.value (GIL held)": np.inf, "numpy.append (copy)": np.inf}
    for _ in range(repeat):
        t0 = time.perf_counter()
        google_crc32c.value(raw)
        best["google_crc32c.value (GIL held)"] = min(
            best["google_crc32c.value (GIL held)"], time.perf_counter() - t0
        )
        t0 = time.perf_counter()
        out = np.append(raw, np.zeros(4, np.uint8))
        best["numpy.append (copy)"] = min(best["numpy.append (copy)"], time.perf_counter() - t0)
        del out
    return {k: raw.nbytes / v / GB for k, v in best.items()}


def _timed(fn: Callable[[], object], sync: bool) -> tuple[float, float]:
    """Wall and CPU seconds of fn (plus os.sync when asked)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    if sync:
        os.sync()
    return time.perf_counter() - t0, time.process_time() - c0


def measure(ds: xr.Dataset, work: Path, repeat: int, sync: bool) -> list[dict]:
    """Write (and read) the cube each way; best of ``repeat``."""
    from zarr.codecs import Crc32cCodec

    nbytes = ds["response"].nbytes
    chunk = tuple(c[0] for c in ds["response"].chunks)
    chunk_bytes = int(np.prod(chunk)) * 4

    def to_zarr(codecs, all_chunks):
        def write(path):
            ds.to_zarr(
                path,
                mode="w",
                zarr_format=3,
                consolidated=False,
                encoding={"response": {"chunks": chunk, "compressors": codecs}},
                **({"write_empty_chunks": True} if all_chunks else {}),
            )

        return write

    def memxr(fmt):
        def write(path):
            write_cube(ds, path, zarr_format=fmt, chunk_bytes=chunk_bytes, progress=False)

        return write

    def writer(codecs):  # the chunk writer alone, into an array zarr created
        def write(path):
            arr = ds["response"]
            zarr.create_array(
                path, shape=arr.shape, chunks=chunk, dtype=arr.dtype, compressors=codecs
            )
            da.store(arr.data, ChunkWriter(ArrayLayout.open(path, "")), lock=False)

        return write

    def read_xr(path):
        xr.open_zarr(path, consolidated=False)["response"].data.sum().compute()

    def read_memxr(path):
        open_cube(path)["response"].data.sum().compute()

    crc = [Crc32cCodec()]
    ways = [
        ("zarr none", to_zarr(None, False), []),
        ("zarr crc32c", to_zarr(crc, False), []),
        ("zarr none, all chunks", to_zarr(None, True), [("open_zarr", read_xr)]),
        ("zarr crc32c, all chunks", to_zarr(crc, True), [("open_zarr", read_xr)]),
        ("ChunkWriter none", writer(None), []),
        ("ChunkWriter crc32c", writer(crc), []),
        ("memxr v3 crc32c", memxr(3), [("open_zarr", read_xr), ("open_cube", read_memxr)]),
        ("memxr v2 none", memxr(2), [("open_cube", read_memxr)]),
    ]
    rows = []
    for name, write, reads in ways:
        path = work / "bench.zarr"
        best_w, cpu_w = np.inf, np.inf
        best_r = {r: np.inf for r, _ in reads}
        for _ in range(repeat):
            shutil.rmtree(path, ignore_errors=True)
            if sync:
                os.sync()
            wall, cpu = _timed(lambda p=path, w=write: w(p), sync)
            best_w, cpu_w = min(best_w, wall), min(cpu_w, cpu)
            for rname, read in reads:
                wall, _ = _timed(lambda p=path, r=read: r(p), False)
                best_r[rname] = min(best_r[rname], wall)
        rows.append(
            {
                "way": name,
                "write": nbytes / best_w / GB,
                "cpu": cpu_w / (nbytes / GB),
                "reads": {r: nbytes / t / GB for r, t in best_r.items()},
            }
        )
        shutil.rmtree(path, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stimuli", type=int, default=8192)
    ap.add_argument("--chunk-channels", type=int, default=2048)
    ap.add_argument("--chunks", type=int, default=8, help="chunks in the cube")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sync", action="store_true", help="wait for the disk after each write")
    ap.add_argument("--workdir", type=Path, help="folder for the stores (default: a temp dir)")
    ap.add_argument("--layouts", default="blocks,views", help="memory layouts of the blocks")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)

    versions = {p: importlib.metadata.version(p) for p in ("zarr", "numcodecs", "xarray", "dask")}
    print(", ".join(f"{k} {v}" for k, v in versions.items()))
    for lib, impl in crc_implementations().items():
        print(f"CRC-32C of {lib}: {impl}")
    chunk_mib = args.stimuli * args.chunk_channels * 4 / 2**20
    print(
        f"cube float32 {args.stimuli} x {args.chunk_channels * args.chunks} "
        f"({args.stimuli * args.chunk_channels * args.chunks * 4 / GB:.2f} GB), "
        f"{args.chunks} chunks of {args.stimuli} x {args.chunk_channels} ({chunk_mib:.0f} MiB), "
        f"dask threads {dask.system.CPU_COUNT}, writes {'synced' if args.sync else 'to page cache'}"
    )
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    for layout in args.layouts.split(","):
        ds = noise_cube(args.stimuli, args.chunk_channels, args.chunks, layout)
        if layout == args.layouts.split(",")[0]:
            first = ds["response"].data.blocks[0, 0].compute()
            print("\nzarr-python's crc32c encoder, one chunk:")
            for part, rate in encoder_parts(first, args.repeat).items():
                print(f"  {part:<32}{rate:6.2f} GB/s")
        with tempfile.TemporaryDirectory(prefix="memxr-bench-", dir=args.workdir) as tmp:
            rows = measure(ds, Path(tmp), args.repeat, args.sync)
        print(f"\n{layout:<8}{'way':<26}{'write GB/s':>11}{'CPU s/GB':>10}   read GB/s")
        for r in rows:
            reads = ", ".join(f"{v:.2f} ({k})" for k, v in r["reads"].items())
            print(f"{'':<8}{r['way']:<26}{r['write']:>11.2f}{r['cpu']:>10.2f}   {reads}")
        del ds


if __name__ == "__main__":
    main()
