"""Building blocks of the pipeline: steps, keys, the run context, result writers, state.

Results are put into place with :mod:`memxr.store.atomic`, like every other output.

Examples
--------
>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_csv(pd.DataFrame({"roi": ["IT"], "r": [1 / 3]}), d / "tables" / "t.csv")
>>> (d / "tables" / "t.csv").read_text(), sorted(p.name for p in (d / "tables").iterdir())
('roi,r\\nIT,0.3333333333\\n', ['t.csv'])
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..provenance import __version__, now_utc
from ..store.atomic import atomic_path
from .spec import Spec, canonical_json

STATE = Path(".memxr") / "state.json"


_PACKAGES = (
    "memxr",
    "numpy",
    "pandas",
    "scipy",
    "dask",
    "distributed",
    "xarray",
    "zarr",
    "scikit-learn",
    "dask-ml",
    "h5py",
)


ANALYSIS_OUTPUTS = {
    "correlations": ["results/correlations.zarr", "tables/correlations.csv"],
    "timecourse": [
        "results/timecourse.zarr",
        "tables/timecourse.csv",
        "tables/timecourse_clusters.csv",
    ],
    "models": ["results/models.zarr", "tables/models.csv", "tables/predictions.csv"],
    "bridge": [
        "results/bridge.zarr",
        "tables/bridge_effects.csv",
        "tables/bridge_rsa.csv",
        "tables/bridge_decoding.csv",
    ],
    "comparisons": ["tables/comparisons.csv"],
    "latency": ["tables/latency.csv"],
    "variance_partition": ["tables/variance_partition.csv"],
}


def versions() -> dict[str, str]:
    """Versions of memxr and the packages its numbers depend on.

    Examples
    --------
    >>> v = versions()
    >>> sorted(k for k in v if k in ("dask", "xarray", "zarr"))
    ['dask', 'xarray', 'zarr']
    """
    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = __version__ if name == "memxr" else metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class Step:
    """One unit of the pipeline: parameters, inputs, outputs and the action.

    ``after`` names the steps whose outputs it reads; ``files`` lists raw files
    or stores (outside OUT, or URLs) that it reads; ``outputs`` are paths relative to OUT
    (or absolute, for a catalog outside it, or URLs, for stores on an object store).
    """

    name: str
    params: dict
    action: Callable[[Context, Step], None]
    after: list[str] = field(default_factory=list)
    files: list[Path | str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    cube: dict | None = None


@dataclass
class Context:
    """What every step sees: the spec, OUT, the client, the log, the keys and the state.

    ``progress``: progress bars and, every ``progress_interval`` seconds, a line of the
    running step's tasks to ``progress_log`` (default: ``log``), see
    :mod:`memxr.pipeline.progress`.
    """

    spec: Spec
    out: Path
    client: Any
    log: Callable[[str], None]
    progress: bool
    keys: dict[str, str] = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    stores: Path | str | None = None
    progress_interval: float = 30.0
    progress_log: Callable[[str], None] | None = None

    def path(self, rel: str) -> Path:
        return self.out / rel

    def store(self, cube: dict) -> Path | str:
        """The cube store of a spec cube entry (a URL for a store on an object store)."""
        if cube["kind"] == "store":
            return self.spec.resolve(cube["input"])
        return ingested_store(self.out, self.stores, cube["name"])

    def provenance(self, step: Step, cubes: list[dict]) -> dict:
        """The attrs of a result store: spec hash and a provenance JSON."""
        core = {
            "spec_hash": self.spec.spec_hash,
            "spec_name": self.spec.name,
            "step": step.name,
            "step_key": self.keys[step.name],
            "versions": versions(),
            "inputs": {c["name"]: store_inputs(self.store(c)) for c in cubes},
            "created": now_utc(),
        }
        return {"spec_hash": self.spec.spec_hash, "provenance": json.dumps(core, sort_keys=True)}


def ingested_store(out: Path, stores: Path | str | None, name: str) -> Path | str:
    """Where a run puts the store of a cube it ingests: ``STORES/NAME.zarr`` (default
    ``OUT/stores``; ``STORES`` may be an ``s3://`` URL prefix).

    Examples
    --------
    >>> ingested_store(Path("runs/x"), "s3://bucket/stores/", "sub-01")
    's3://bucket/stores/sub-01.zarr'
    >>> ingested_store(Path("runs/x"), None, "sub-01").as_posix()
    'runs/x/stores/sub-01.zarr'
    """
    if stores is not None and "://" in str(stores):
        return f"{str(stores).rstrip('/')}/{name}.zarr"
    return Path(stores if stores is not None else out / "stores") / f"{name}.zarr"


def fingerprint(paths: list[Path | str], root: Path | None = None) -> list[list]:
    """(relative name, size, mtime) of every file under ``paths``: cheap identity of inputs.

    A store given by URL counts as (URL, size, ETag) of its root metadata, which its every
    publication rewrites (:func:`memxr.store.access.store_identity`).
    """
    from ..store.access import store_identity

    rows = []
    for p in paths:
        if isinstance(p, str) and "://" in p:
            rows.append(store_identity(p))
            continue
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        base = root or (p if p.is_dir() else p.parent)
        for f in files:
            st = f.stat()
            rel = os.path.relpath(f, base)
            rows.append([Path(rel).as_posix(), st.st_size, st.st_mtime_ns])
    return rows


def step_key(step: Step, keys: dict[str, str]) -> str:
    """SHA-256 of the step's name, parameters, memxr version, upstream keys and input files."""
    desc = {
        "step": step.name,
        "params": step.params,
        "memxr": __version__,
        "after": {a: keys[a] for a in step.after},
        "files": fingerprint(step.files),
    }
    return hashlib.sha256(canonical_json(desc).encode()).hexdigest()


def text_vars(ds: xr.Dataset) -> xr.Dataset:
    """Object (text) variables as str objects, as Zarr v3 wants them."""
    from ..schema import text_coord

    for name in list(ds.variables):
        v = ds[name]
        if v.dtype.kind in "OUT":
            flat = ["" if x is None or x != x else str(x) for x in np.asarray(v.values).ravel()]
            ds[name] = v.copy(data=text_coord(flat).reshape(v.shape))
    return ds


def _checksummed(ds: xr.Dataset) -> dict:
    """Encoding of a result store's variables: small, Zstandard-compressed, CRC-32C checked.

    Result stores are small (stimuli x ROIs [x time bins]), so Zarr's own codecs are used,
    with the checksum every cube store carries (:data:`memxr.store.layout.CHECKSUM`).
    """
    from ..store.layout import coord_compressors

    return {str(name): {"compressors": coord_compressors(3)} for name in ds.variables}


def write_tree(groups: dict[str, xr.Dataset], target: Path, attrs: dict) -> None:
    """Datasets as the groups of one Zarr store (root attrs: provenance), atomically."""
    from ..store.layout import quiet_zarr

    tree = {"/": xr.Dataset(attrs=attrs)}
    for name, ds in groups.items():
        ds = text_vars(ds.drop_indexes([k for k in ds.xindexes if k not in ds.dims]))
        for v in ds.variables.values():
            v.encoding = {}
        tree[name] = ds
    encoding = {f"/{name}": _checksummed(ds) for name, ds in tree.items() if name != "/"}
    with atomic_path(target) as tmp, quiet_zarr():
        xr.DataTree.from_dict(tree).to_zarr(
            tmp, mode="w", zarr_format=3, consolidated=True, encoding=encoding
        )


def write_zarr(ds: xr.Dataset, target: Path) -> None:
    """One in-memory Dataset as a Zarr store, atomically."""
    from ..store.layout import quiet_zarr

    ds = text_vars(ds.copy())
    for v in ds.variables.values():
        v.encoding = {}
    with atomic_path(target) as tmp, quiet_zarr():
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True, encoding=_checksummed(ds))


def write_csv(df: pd.DataFrame, target: Path) -> None:
    """A tidy table as CSV (10 significant digits), atomically."""
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g")


def frame_dataset(df: pd.DataFrame) -> xr.Dataset:
    """A tidy table as a Dataset over ``row`` (its ``reasons`` attrs as JSON)."""
    ds = xr.Dataset.from_dataframe(df.reset_index(drop=True).rename_axis("row"))
    reasons = df.attrs.get("reasons")
    if reasons:
        ds.attrs["reasons"] = json.dumps(reasons, sort_keys=True)
    return ds


def store_inputs(path: Path | str) -> list[dict]:
    """The ``inputs`` records (name, size, sha256) of a cube store."""
    from ..store.layout import open_group

    try:
        return json.loads(open_group(path).attrs.get("inputs", "[]"))
    except Exception:  # noqa: BLE001 - provenance of an unreadable store is empty
        return []


def compute(ctx: Context, obj: Any) -> Any:
    """Compute a dask-backed object on the client (with a progress bar on a terminal).

    The object is persisted on the cluster and then computed, one dask collection per
    variable, rather than passed to ``client.compute`` as one collection: with
    dask/distributed >= 2025.4 that single-collection path finalizes a Dataset through
    ``HLGFinalizeCompute``, whose blockwise fusion can fuse away a variable that another
    variable is computed from (``FutureCancelledError: lost dependencies``).
    """
    if ctx.client is None:
        return obj.compute()
    obj = ctx.client.persist(obj)
    if ctx.progress:
        from distributed import progress

        progress(obj)
        print(file=sys.stderr)
    return obj.compute(scheduler=ctx.client)


def load_state(out: Path) -> dict:
    """The record of finished steps in OUT (empty when absent or unreadable)."""
    path = out / STATE
    try:
        state = json.loads(path.read_text())
        return state if isinstance(state.get("steps"), dict) else {"steps": {}}
    except (OSError, ValueError):
        return {"steps": {}}


def save_state(out: Path, state: dict) -> None:
    """Record the finished steps, atomically (after each step)."""
    with atomic_path(out / STATE) as tmp:
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
