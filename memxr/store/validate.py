""":func:`validate_store`: is a store a valid cube, are all its chunks intact, its inputs the same?

Three depths:

* always: the store opens as a cube that passes :func:`memxr.schema.validate` (what
  :func:`memxr.store.open_cube` checks: metadata, coordinates, attributes);
* ``deep=True``: every chunk of every array is read, one at a time per task (memory
  stays at a chunk per thread or worker), in parallel on the active Dask client if there
  is one (else on Dask's threads), and checked: present, of the right size, its CRC-32C
  matching (:func:`memxr.store.chunks.chunk_problem`); chunks of compressed arrays are
  also decoded. Every bad chunk is one line of the report;
* ``inputs=DIR`` (or a list of folders): the raw files named in the store's ``inputs``
  attribute (names relative to the folder they were read from) are looked up under each
  folder in turn and their size and SHA-256 compared with the recorded ones (files found
  nowhere are listed as not compared).

Examples
--------
>>> import pathlib, tempfile
>>> from memxr.schema import example_cube
>>> from memxr.store import write_cube
>>> p = write_cube(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.zarr", progress=False)
>>> report = validate_store(p, deep=True)
>>> report.ok, report.chunks, report.problems
(True, 10, [])
>>> chunk = p / "response" / "c" / "0" / "0"
>>> _ = chunk.write_bytes(chunk.read_bytes()[:-10])
>>> print("\\n".join(validate_store(p, deep=True).problems))
c.zarr: response: chunk c/0/0: truncated (186 of 196 bytes)
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..provenance import sha256_file
from .access import open_cube, store_format
from .chunks import ArrayLayout, ChunkError, chunk_problem, decode_problem, read_raw
from .layout import open_group

__all__ = ["StoreReport", "validate_store"]

_BATCH_BYTES = 64 << 20
"""Chunks of small arrays are checked together up to this many bytes per task."""


@dataclass
class StoreReport:
    """What :func:`validate_store` found.

    Attributes
    ----------
    store : str
        The store, as given.
    dataset : str
        Its ``dataset`` attribute.
    sizes : dict
        Its dimensions.
    deep : bool
        Whether every chunk was read.
    problems : list of str
        One line per bad chunk or changed input file (empty when all is well).
    chunks, bytes : int
        Chunks and bytes read (deep).
    unchecksummed : list of str
        Arrays whose chunks carry no checksum (Zarr format 2): sizes checked only.
    absent : int
        Chunks absent from arrays without checksums (Zarr reads them as fill values).
    inputs_checked : list of str
        Raw files whose size and SHA-256 were compared.
    inputs_absent : list of str
        Raw files named in the store but found in none of the given folders.
    inputs_dir : str, optional
        The folders searched (None: inputs not compared).
    """

    store: str
    dataset: str | None
    sizes: dict
    deep: bool = False
    problems: list[str] = field(default_factory=list)
    chunks: int = 0
    bytes: int = 0
    unchecksummed: list[str] = field(default_factory=list)
    absent: int = 0
    inputs_checked: list[str] = field(default_factory=list)
    inputs_absent: list[str] = field(default_factory=list)
    inputs_dir: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def summary(self) -> list[str]:
        """The lines ``memxr validate`` prints after the problems."""
        lines = [f"{self.store}: valid {self.dataset} cube {dict(self.sizes)}"]
        if not self.deep:
            lines.append(
                f"{self.store}: metadata and coordinates checked; "
                "--deep reads every data chunk and checks its checksum"
            )
        if self.deep:
            if self.unchecksummed:
                checked = "sizes checked, no checksums (Zarr format 2)"
            else:
                checked = "every checksum checked"
            lines.append(
                f"{self.store}: {self.chunks} chunks ({self.bytes / 1e9:.2f} GB) read, {checked}"
                + (f"; {self.absent} absent chunks read as fill values" if self.absent else "")
            )
        if self.inputs_dir is None:
            if self.deep:
                lines.append(f"{self.store}: inputs not compared (pass --inputs DIR)")
        else:
            n = len(self.inputs_checked)
            text = f"{self.store}: inputs: {n} compared (size, sha256) in {self.inputs_dir}"
            if self.inputs_absent:
                text += f"; not found there: {', '.join(self.inputs_absent)}"
            lines.append(text)
        return lines


def _check_batch(layout: ArrayLayout, indices: Sequence[tuple[int, ...]]) -> list[tuple]:
    """(array, key, problem or None, bytes read, absent) for chunks of one array, one by one."""
    out = []
    for index in indices:
        key = layout.key(index)
        data = read_raw(layout, key)
        problem = chunk_problem(layout, data)
        if problem is None and data is not None and not layout.raw:
            problem = decode_problem(layout, index)
        out.append((layout.name, key, problem, 0 if data is None else len(data), data is None))
        del data
    return out


def _check_input(path: Path, record: Mapping) -> str | None:
    """What differs between a raw file and its record (None: size and SHA-256 match)."""
    size = path.stat().st_size
    if record.get("size") is not None and size != int(record["size"]):
        return f"size {size} differs from the recorded {record['size']}"
    digest = sha256_file(path)
    if record.get("sha256") and digest != record["sha256"]:
        return f"sha256 {digest[:12]} differs from the recorded {str(record['sha256'])[:12]}"
    return None


def _tasks(layouts: Sequence[ArrayLayout]) -> list:
    """Delayed checks: one per chunk of a big array, batches of chunks of small ones."""
    import dask

    tasks = []
    for layout in layouts:
        chunk_bytes = max(1, layout.encoded_size or layout.dtype.itemsize * math.prod(layout.chunks))
        per_task = max(1, _BATCH_BYTES // chunk_bytes)
        indices = list(layout.indices())
        for i in range(0, len(indices), per_task):
            batch = indices[i : i + per_task]
            key = f"check-{layout.name}-{uuid.uuid4().hex}"  # read again at every validation
            tasks.append(dask.delayed(_check_batch)(layout, batch, dask_key_name=key))
    return tasks


def validate_store(
    path_or_url: str | os.PathLike,
    *,
    deep: bool = False,
    inputs: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    storage_options: dict | None = None,
) -> StoreReport:
    """Check a store: a valid cube, and with ``deep=True`` every chunk intact.

    Parameters
    ----------
    path_or_url : str or path
        The store (local path or fsspec URL).
    deep : bool
        Read every chunk of every array and check its presence, size and checksum (see
        the module docstring); in parallel on the active Dask client if there is one.
    inputs : str, path or list of them, optional
        Folders of the raw files: compare them with the store's ``inputs`` records
        (relative names, sizes, SHA-256); each name is looked up in the folders in turn.
    storage_options : dict, optional
        fsspec options of a URL.

    Returns
    -------
    StoreReport
        ``report.ok`` is False when a chunk or an input is bad; ``report.problems``
        has one line for each.

    Raises
    ------
    memxr.errors.InputError
        When the store does not exist or ``inputs`` is not a folder.
    memxr.store.chunks.ChunkError
        When a coordinate chunk needed to open the store is bad and ``deep`` is false
        (with ``deep`` it is listed with every other bad chunk).
    memxr.schema.SchemaError
        When the store is not a valid cube.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from memxr.schema import example_cube
    >>> from memxr.store import write_cube
    >>> p = write_cube(example_cube(), pathlib.Path(tempfile.mkdtemp()) / "c.zarr",
    ...                progress=False)
    >>> print(validate_store(p).summary()[0])
    /...c.zarr: valid things-fmri cube {'stimulus': 6, 'channel': 4, 'roi': 1}
    """
    import dask

    folders = [] if inputs is None else [inputs] if isinstance(inputs, str | os.PathLike) else inputs
    folders = [Path(f) for f in folders]
    for folder in folders:
        if not folder.is_dir():
            raise InputError(folder, "--inputs", "is not a folder")
    try:
        cube = open_cube(path_or_url, storage_options=storage_options)
        attrs, sizes = cube.attrs, {str(k): int(v) for k, v in cube.sizes.items()}
    except ChunkError:  # a bad coordinate chunk: deep validation lists it with all others
        if not deep:
            raise
        fmt = store_format(path_or_url, storage_options)
        attrs, sizes = dict(open_group(path_or_url, storage_options, zarr_format=fmt).attrs), {}
    report = StoreReport(
        store=os.fspath(path_or_url), dataset=attrs.get("dataset"), sizes=sizes, deep=deep
    )
    work: list = []
    if deep:
        fmt = store_format(path_or_url, storage_options)
        group = open_group(path_or_url, storage_options, zarr_format=fmt)
        layouts = [
            ArrayLayout.of(group, path_or_url, name, storage_options)
            for name, _ in sorted(group.arrays())
        ]
        report.unchecksummed = [la.name for la in layouts if not la.checksummed]
        work += _tasks(layouts)
    records: list[tuple[str, Path, Mapping]] = []
    if folders:
        report.inputs_dir = ", ".join(map(str, folders))
        for r in _records(attrs.get("inputs")):
            found = [f / str(r["name"]) for f in folders if (f / str(r["name"])).is_file()]
            if found:
                records.append((str(r["name"]), found[0], r))
            else:
                report.inputs_absent.append(str(r["name"]))
        work += [
            dask.delayed(_check_input)(path, r, dask_key_name=f"sha256-{uuid.uuid4().hex}")
            for _, path, r in records
        ]
    results = dask.compute(*work) if work else ()
    n_chunk_tasks = len(results) - len(records)
    for batch in results[:n_chunk_tasks]:
        for variable, key, problem, nbytes, absent in batch:
            report.chunks += 1
            report.bytes += nbytes
            report.absent += bool(absent and problem is None)
            if problem is not None:
                report.problems.append(str(ChunkError(path_or_url, variable, key, problem)))
    for (name, _, _), problem in zip(records, results[n_chunk_tasks:], strict=True):
        report.inputs_checked.append(name)
        if problem is not None:
            report.problems.append(str(InputError(path_or_url, "inputs", f"{name}: {problem}")))
    return report


def _records(attr: object) -> list[Mapping]:
    try:
        records = json.loads(attr) if isinstance(attr, str) else []
    except ValueError:
        return []
    return [r for r in records if isinstance(r, Mapping) and "name" in r]
