"""Zarr stores of cubes: atomic, resumable writes; lazy opens; a summary of what a store holds.

Chunk policy
------------
Every data variable keeps its leading axes whole in each chunk (``stimulus`` for
``response``; ``repeat_stimulus`` and ``repeat`` for ``response_repeats``) and is
split along ``channel`` (and ``time`` for time-resolved cubes) into chunks of
about ``target_bytes`` (64 MiB by default, :data:`CHUNK_BYTES`):

* an ROI reduction or a statistic along the stimulus axis (correlation with
  memorability, split-half reliability) reads each chunk once, whole, and needs
  no other chunk to finish a channel;
* the split is *balanced*: ``n`` equal chunks of at most the target rather than
  full chunks plus a tiny last one (an uncompressed edge chunk is stored at full
  size, so a ragged split wastes disk: measured 1.25x for 4.0002 chunks);
* a time-resolved cube is chunked in whole time bins: every channel (halved
  until one bin fits the target, which keeps channel blocks aligned with the
  64-electrode arrays) and one bin per chunk (several when a bin of every
  channel is under an eighth of the target). That is how the raw trials file
  is laid out (a bin of every channel and trial is contiguous, or whole HDF5
  chunks), so the ingest reads each byte once and writes each chunk whole;
  a whole-cube pass (maps, ROI reductions, normalisation) reads each chunk
  once. The price is paid by a time window of one area, which reads the
  window's bins of every channel of its blocks (see *Time-resolved chunks*);
* dask chunks are rechunked to the Zarr chunks exactly before writing
  (``to_zarr`` refuses dask chunks straddling Zarr chunks); coordinates are
  small and stored as one chunk each.

For THINGS-fMRI (8,740 x 211,339 float32) this gives 111 chunks of
8,740 x 1,904 (63.5 MiB); for a TVSD time-resolved cube (22,348 x 1,024 x 300)
600 chunks of 22,348 x 512 x 1 (43.7 MiB) in float32, 1,200 of 22,348 x 256 x 1
in float64.
Why 64 MiB (``benchmarks/bench_codecs.py``: 256 MiB float32 cube, 2 cores, warm
page cache, no compression, best of 3): reads ran at 2.5-2.7 GB/s with 15-28 MiB
chunks, 1.7 GB/s with 51 MiB and 1.3 GB/s with 128 MiB chunks (glibc serves
allocations above its 32 MiB mmap threshold with fresh pages, faulted in on each
read), writes at 1.3-1.55 GB/s for every size. 64 MiB is kept as the default to
stay in the 50-200 MB range that bounds the number of chunks, files and dask
tasks (about 860 instead of 1,700 for one 55 GB trial cube) and keeps memory per
task predictable; a store meant for repeated whole scans can be written with
``chunk_bytes=28 << 20`` instead.

Writing
-------
:func:`write_cube` writes into a hidden sibling ``.NAME.partial-FINGERPRINT``
(same folder, so the final :func:`os.replace` is atomic), region by region (a
region is up to :data:`REGION_CHUNKS` chunks), appending each finished region
to a progress log. Killed and rerun with the same cube, it skips the finished
regions. The fingerprint covers everything that determines the store except
the data values themselves (dims, sizes, dtypes, chunks, codec, Zarr format,
attributes but ``created``, coordinate values): rewriting a cube whose data
changed but nothing else requires removing the partial first.

One writer per output: the whole write holds the store's writer lock
(:func:`output_lock`, ``.NAME.lock`` beside it, released by the operating system
when the writer dies), as do exports, catalog updates and ``memxr run`` on its
OUT. A second writer is refused with one line naming the holder
(:class:`OutputLockedError`: host, pid, since) and touches nothing; the partial
of a dead writer is resumed by the next one. :func:`leftovers` lists what killed
writes left beside an output, :func:`clean` removes it (``memxr info``,
``memxr clean``).

Object storage
--------------
A store can live on S3 (``s3://bucket/prefix/NAME.zarr``, with ``pip install memxr[s3]``):
:func:`write_cube`, :func:`open_cube`, :func:`store_info`, :func:`validate_store`, the
exports and the catalog take such URLs. Credentials and the endpoint come from where any
S3 client finds them (``AWS_*`` variables, ``~/.aws``, ``AWS_ENDPOINT_URL_S3``) or from
``storage_options`` given in Python; memxr never writes them anywhere. The writer lock
there is a lease object written with conditional requests
(:class:`~memxr.store.atomic.LeaseLock`), and a store is published by its root metadata,
written last: before that, a reader of its URL finds no store (see
:mod:`memxr.store.write` for what a reader sees when, and how a killed write resumes).
Chunk objects carry the same CRC-32C as local chunk files; a missing one is named (one
``HEAD`` per chunk read).

Checksums
---------
In Zarr format 3 every chunk ends with its CRC-32C (:data:`CHECKSUM`, Zarr's
``crc32c`` codec, so any Zarr reader checks it). memxr writes data chunks with
their checksum at the disk's pace (:class:`~memxr.store.chunks.ChunkWriter`), writes
every chunk (so a missing one is an error, not NaN), and a bad chunk raises
:class:`ChunkError` naming the store, the variable and the chunk key, in the
computation that reads it. :func:`validate_store` with ``deep=True`` reads every
chunk (``memxr validate --deep``) and compares the raw inputs with their recorded
SHA-256. Zarr format 2 copies carry no checksums (``memxr info`` says so).

Examples
--------
>>> import tempfile, pathlib
>>> from memxr.schema import example_cube
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> path = write_cube(example_cube(), d / "cube.zarr", progress=False)
>>> cube = open_cube(path)
>>> float(cube["response"].sel(stimulus_id="thing_01s.jpg")[0].round(3))
-0.536
>>> print(format_info(store_info(path)).splitlines()[0])
store      cube.zarr (zarr v3, ...)

Modules: :mod:`.layout` (chunk plan, codecs, fingerprint), :mod:`.write`, :mod:`.access`
(opening local paths and fsspec URLs), :mod:`.chunks` (chunks written with their checksum,
verified and named when bad), :mod:`.validate` (deep validation), :mod:`.info` (what a
store holds and what is left beside it), :mod:`.atomic` (the one way files and folders
are put into place: writer lock, partial, rename), :mod:`.catalog` (a table of stores)
and :mod:`.export` (netCDF-4 and Zarr 2 copies).

May import: numpy, pandas, xarray, dask, zarr, fsspec, :mod:`memxr.schema`,
:mod:`memxr.errors` and :mod:`memxr.provenance`; never readers or analyses.
"""

from .access import open_cube
from .atomic import OutputLockedError, clean, leftovers, output_lock
from .chunks import ChunkError
from .info import format_info, store_info
from .layout import (
    CHECKSUM,
    CHUNK_BYTES,
    CODEC,
    PROGRESS_LOG,
    chunk_plan,
    compressors,
    fingerprint,
)
from .validate import StoreReport, validate_store
from .write import REGION_CHUNKS, write_cube

__all__ = [
    "CHECKSUM",
    "CHUNK_BYTES",
    "CODEC",
    "PROGRESS_LOG",
    "REGION_CHUNKS",
    "ChunkError",
    "OutputLockedError",
    "StoreReport",
    "chunk_plan",
    "clean",
    "compressors",
    "fingerprint",
    "format_info",
    "leftovers",
    "open_cube",
    "output_lock",
    "store_info",
    "validate_store",
    "write_cube",
]
