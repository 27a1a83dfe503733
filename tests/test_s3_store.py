"""Stores on S3: ingest, publication, leases, checksums and a pipeline run, against a real
S3-compatible server (moto's) started on loopback by these tests.

Credentials and the endpoint reach memxr only as they reach any S3 client: ``AWS_*``
variables (``AWS_ENDPOINT_URL_S3`` for the server). Processes are synchronised through
pipes and objects, never through sleeps, except where a lease must expire (its time is set
to about a second with ``MEMXR_LEASE_SECONDS``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from memxr.cli import EXIT_BAD_INPUT, EXIT_BUSY, main
from memxr.errors import InputError
from memxr.pipeline import run
from memxr.schema import example_cube
from memxr.store import ChunkError, open_cube, store_info, validate_store, write_cube
from memxr.store.atomic import LeaseLock, OutputLockedError, leftovers, published
from memxr.store.catalog import read_catalog, store_checksum
from memxr.synth import synthesize
from memxr.testing import spec_dict

s3fs = pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed")
ThreadedMotoServer = pytest.importorskip(
    "moto.server", reason="moto[server] (a test dependency) is not installed"
).ThreadedMotoServer

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 120  # seconds: only reached when something is broken (as in conftest.py)
BUCKET = "memxr-test"
SECRET = "s3cr3t-never-in-any-output-0123456789"  # noqa: S105 - a test value


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[s3fs.S3FileSystem]:
    """A moto S3 server on 127.0.0.1 (a free port), its endpoint and test credentials in the
    environment as for any S3 client, one bucket; a file system reading it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    home = tmp_path_factory.mktemp("aws")
    env = {
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "memxr-test",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"),  # none: nothing of the machine's ~/.aws
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem(use_listings_cache=False)
        fs.mkdir(BUCKET)
        try:
            yield fs
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


def _env(**extra: str) -> dict[str, str]:
    """The environment of a memxr process: this checkout first, the S3 settings of now."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _memxr(*args, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memxr.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(**extra),
        timeout=DEADLINE,
    )


def _objects(fs: s3fs.S3FileSystem, prefix: str) -> list[str]:
    """Every object of the bucket whose key starts with ``prefix``."""
    keys = (p.removeprefix(f"{BUCKET}/") for p in fs.find(BUCKET))
    return sorted(k for k in keys if k.startswith(prefix))


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """Synthetic raw files: one fMRI subject, one monkey with trials (scale 0.002)."""
    folder = tmp_path_factory.mktemp("s3raw")
    synthesize(folder / "raw", scale=0.002, seed=0, subjects=("sub-01",), monkeys=("N",))
    return folder


def _ingest_args(raw: Path, out) -> list[str]:
    things = raw / "raw" / "things"
    return [
        "ingest", "things-fmri", "--input", raw / "raw" / "things-fmri" / "betas_csv",
        "--subject", "sub-01", "--memorability", things / "THINGS_Memorability_Scores.csv",
        "--concepts", things / "Concept_to_category_linking.csv", "--out", out,
        "--no-progress",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ingested(s3, raw) -> tuple[str, Path]:
    """``memxr ingest`` of one subject into S3 and into a local folder (the reference)."""
    url = f"s3://{BUCKET}/stores/things-fmri_sub-01.zarr"
    local = raw / "stores" / "things-fmri_sub-01.zarr"
    for out in (url, local):
        res = _memxr(*_ingest_args(raw, out))
        assert res.returncode == 0, res.stderr[-2000:]
        assert res.stdout == f"wrote {out}\n"
        assert SECRET not in res.stdout + res.stderr
    return url, local


# --------------------------------------------------------------------------- ingest and read


PLAIN_READER = """
import json, sys, warnings
warnings.simplefilter("ignore")
import xarray as xr
ds = xr.open_zarr(sys.argv[1], consolidated=True, zarr_format=3)
out = {
    "response": ds["response"].values.tolist(),
    "ids": [str(v) for v in ds["stimulus_id"].values],
    "mask": ds["roi_mask"].values.tolist(),
    "attrs": {k: str(v) for k, v in ds.attrs.items()},
    "chunks": [list(c) for c in ds["response"].chunks],
}
assert "memxr" not in sys.modules, "memxr was imported"
print(json.dumps(out))
"""


def test_ingest_to_s3_read_by_plain_xarray(s3, ingested):
    url, local = ingested
    objects = _objects(s3, "stores/")
    assert "stores/things-fmri_sub-01.zarr/zarr.json" in objects
    assert not [o for o in objects if ".partial-" in o or o.endswith(".lock")]  # all cleared
    res = subprocess.run(
        [sys.executable, "-c", PLAIN_READER, url],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=DEADLINE,
        cwd=local.parent,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout)
    ref = open_cube(local)
    np.testing.assert_array_equal(np.array(got["response"]), ref["response"].values)
    assert got["ids"] == [str(v) for v in ref["stimulus_id"].values]
    assert got["mask"] == ref["roi_mask"].values.tolist()
    assert got["attrs"]["inputs"] == ref.attrs["inputs"]  # sizes and SHA-256 of the raw files
    assert got["chunks"] == [list(c) for c in ref["response"].chunks]
    cube = open_cube(url)
    xr.testing.assert_identical(cube.drop_attrs(), ref.drop_attrs())
    # each chunk object holds exactly the bytes of the local chunk file (values + CRC-32C)
    for key in ("response/c/0/0", "response_repeats/c/0/0/0"):
        assert s3.cat_file(f"{url.removeprefix('s3://')}/{key}") == (local / key).read_bytes()


class _Requests(logging.Handler):
    """The requests the S3 server answers (its request log), while installed."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> list[str]:
        log = logging.getLogger("werkzeug")
        log.addHandler(self)
        log.setLevel(logging.INFO)
        return self.lines

    def __exit__(self, *exc) -> None:
        log = logging.getLogger("werkzeug")
        log.removeHandler(self)
        log.setLevel(logging.ERROR)


def test_open_asks_for_the_metadata_of_one_format_only(s3, ingested):
    """zarr asks for the metadata of both formats unless told the format: memxr tells it."""
    url, _ = ingested
    with _Requests() as lines:
        cube = open_cube(url)
    requests = [ln.split('"')[1] for ln in lines if '"' in ln]
    assert requests and all("things-fmri_sub-01.zarr" in r for r in requests)
    for name in (".zgroup", ".zattrs", ".zmetadata", ".zarray"):
        assert not [r for r in requests if name in r], requests
    assert not [r for r in requests if "list-type" in r or "prefix=" in r], requests  # no listing
    paths = [r.split()[1].split("?")[0] for r in requests]
    # how often zarr asks for the (small) root metadata and each coordinate varies with its
    # version (3 on zarr 3.1, 5 on zarr 3.4): bounded loosely, the point being no listing above
    root = [p for p in paths if p.endswith("sub-01.zarr/zarr.json")]
    assert len(root) <= 8, requests
    rest = [p for p in paths if not p.endswith("sub-01.zarr/zarr.json")]
    assert max(rest.count(p) for p in set(rest)) <= 4, requests
    with _Requests() as lines:
        cube["response"].isel(channel=slice(0, 1)).compute()
    requests = [ln.split('"')[1] for ln in lines if '"' in ln]
    key = "things-fmri_sub-01.zarr/response/c/0/0"
    methods = [r.split()[0] for r in requests if key in r]
    # the chunk is read once; HEADs (memxr's presence check, s3fs's own on newer s3fs) are small
    assert methods.count("GET") == 1 and set(methods) == {"GET", "HEAD"}, requests


def test_info_validate_and_export_on_s3(s3, ingested, tmp_path, capsys):
    url, local = ingested
    assert main(["info", url]) == 0
    text = capsys.readouterr().out
    assert text.startswith("store      things-fmri_sub-01.zarr (zarr v3, ")
    assert "? on disk" not in text and "crc32c in every chunk" in text
    info = store_info(url)
    assert info["leftovers"] == [] and info["disk_bytes"] == sum(
        s3.du(url.removeprefix("s3://"), total=False).values()
    )
    assert main(["validate", "--deep", url]) == 0
    out = capsys.readouterr().out
    assert "every checksum checked" in out
    report = validate_store(url, deep=True)
    assert report.ok and report.chunks == validate_store(local, deep=True).chunks
    nc = tmp_path / "c.nc"
    assert main(["export", url, "--netcdf", str(nc), "--no-progress"]) == 0
    v2 = f"s3://{BUCKET}/exports/sub-01-v2.zarr"
    assert main(["export", str(local), "--zarr", v2, "--no-progress"]) == 0
    capsys.readouterr()
    back = open_cube(v2)
    np.testing.assert_array_equal(back["response"].values, open_cube(local)["response"].values)
    assert store_info(v2)["zarr_format"] == 2
    assert main(["export", url, "--netcdf", f"s3://{BUCKET}/c.nc"]) == EXIT_BAD_INPUT
    assert "c.nc: --netcdf: a netCDF file is written to a local folder" in capsys.readouterr().err
    # the same store checksum whatever holds the bytes: a copy of the local store on S3
    s3.put(str(local), f"{BUCKET}/copies/sub-01.zarr", recursive=True)
    assert store_checksum(f"s3://{BUCKET}/copies/sub-01.zarr") == store_checksum(local)


def test_missing_store_and_unreadable_credentials_are_one_line(s3, ingested):
    res = _memxr("info", f"s3://{BUCKET}/stores/nope.zarr")
    assert res.returncode == EXIT_BAD_INPUT
    assert res.stderr == "memxr: error: nope.zarr: store: does not exist\n"
    # no credentials anywhere: refused before any request, one line
    env = {k: v for k, v in _env().items() if not k.startswith("AWS_") or "ENDPOINT" in k}
    env.update(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    for argv in (["info", ingested[0]], ["validate", "--deep", ingested[0]]):
        res = subprocess.run(
            [sys.executable, "-m", "memxr.cli", *argv],
            capture_output=True, text=True, env=env, timeout=DEADLINE,
        )  # fmt: skip
        assert res.returncode == EXIT_BAD_INPUT, res.stderr
        assert res.stderr == (
            "memxr: error: things-fmri_sub-01.zarr: store: cannot be reached: "
            "Unable to locate credentials\n"
        )


# --------------------------------------------------------------------------- publication


def test_reader_sees_nothing_until_publication_and_a_killed_ingest_resumes(
    s3, raw, ingested, paused
):
    """A store being written does not exist for any reader (no metadata under its name);
    its lease refuses a second writer, naming the first; once the killed writer's lease has
    expired the next ingest takes it over and resumes the partial."""
    url = f"s3://{BUCKET}/stores/paused.zarr"
    settings = [f"{k}={v}" for k, v in _env(MEMXR_LEASE_SECONDS="1.5").items()]
    argv = ["env", *settings, sys.executable, "-m", "memxr.cli", *map(str, _ingest_args(raw, url))]
    argv.remove("--no-progress")  # the first progress bar write is where it pauses
    first = paused(argv, "stderr")

    def logged() -> bool:
        return any(o.endswith("memxr-progress.log") for o in _objects(s3, "stores/.paused"))

    first.wait_until(logged, "its progress log")
    objects = _objects(s3, "stores/")
    assert "stores/.paused.zarr.lock" in objects
    assert not [o for o in objects if o.startswith("stores/paused.zarr/")]  # nothing there
    with pytest.raises((FileNotFoundError, OSError, KeyError)):
        xr.open_zarr(url, consolidated=True, zarr_format=3)
    with pytest.raises(InputError, match=r"^paused.zarr: store: does not exist$"):
        open_cube(url)
    res = _memxr("info", url)
    assert res.returncode == EXIT_BAD_INPUT
    assert f"being written by pid {first.pid} on {socket.gethostname()}" in res.stdout
    second = _memxr(*_ingest_args(raw, url))
    assert second.returncode == EXIT_BUSY
    assert second.stderr.startswith(
        f"memxr: error: paused.zarr: out: being written by pid {first.pid} on "
    )
    first.proc.kill()  # SIGKILL: the lease stays until it expires
    first.proc.wait(DEADLINE)
    holder = LeaseLock(url).holder()
    assert holder is not None and holder.pid == first.pid
    deadline = time.monotonic() + DEADLINE
    while LeaseLock(url).holder().alive:  # the lease time of the dead writer: 1.5 s
        assert time.monotonic() < deadline
        time.sleep(0.2)
    left = {x["kind"]: x for x in leftovers(url)}
    assert set(left) == {"partial", "lock"} and not left["lock"]["holder"].alive
    third = _memxr(*_ingest_args(raw, url))
    assert third.returncode == 0, third.stderr
    assert _objects(s3, "stores/.paused") == []  # partial published, lease removed
    xr.testing.assert_identical(open_cube(url).drop_attrs(), open_cube(ingested[1]).drop_attrs())


def _counting_cube(fail_after: int | None, counter: list) -> xr.Dataset:
    """A cube whose ``response`` is computed block by block (counted), failing after some."""
    cube = example_cube(n_stimulus=6, n_channel=24, seed=5)
    values = cube["response"].values

    def block(x, block_info=None):
        counter.append(block_info[None]["chunk-location"])
        if fail_after is not None and len(counter) > fail_after:
            raise RuntimeError("the writer fails")
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return values[r0:r1, c0:c1]

    data = da.map_blocks(block, da.zeros((6, 24), chunks=(6, 2)), dtype=values.dtype)
    return cube.assign(response=(("stimulus", "channel"), data))


def test_a_failed_write_is_resumed_and_published_whole(s3):
    url = f"s3://{BUCKET}/resume/c.zarr"
    counter: list = []
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError):
        write_cube(_counting_cube(5, counter), url, chunk_bytes=96, progress=False)
    objects = _objects(s3, "resume/")
    chunks = [o for o in objects if o.startswith("resume/c.zarr/")]
    # 12 chunks of 2 channels in regions of 4: the first region is done, the second failed
    assert chunks and all(o.startswith("resume/c.zarr/response/c/0/") for o in chunks)
    assert not published(url) and not [o for o in objects if o.endswith(".lock")]
    with pytest.raises(InputError, match="does not exist"):
        open_cube(url)
    kinds = sorted(x["kind"] for x in leftovers(url))
    assert kinds == ["partial", "unpublished"]
    counter.clear()
    with dask.config.set(scheduler="synchronous"):
        write_cube(_counting_cube(None, counter), url, chunk_bytes=96, progress=False)
    assert len(counter) == 12 - 4  # the logged region is not written again
    cube = open_cube(url)
    np.testing.assert_array_equal(cube["response"].values, example_cube(6, 24, seed=5)["response"])
    assert validate_store(url, deep=True).ok
    assert _objects(s3, "resume/.c.zarr") == [] and leftovers(url) == []
    with pytest.raises(InputError, match="c.zarr: out: exists; pass overwrite=True"):
        write_cube(example_cube(), url, progress=False)
    other = example_cube(n_stimulus=5, n_channel=3, seed=9)
    write_cube(other, url, overwrite=True, progress=False)  # another plan: no old chunk stays
    np.testing.assert_array_equal(open_cube(url)["response"].values, other["response"].values)
    assert not [o for o in _objects(s3, "resume/c.zarr/response/") if o.endswith("/1")]
    assert validate_store(url, deep=True).ok


def test_clean_removes_what_a_failed_write_left(s3, capsys):
    url = f"s3://{BUCKET}/clean/c.zarr"
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError):
        write_cube(_counting_cube(5, []), url, chunk_bytes=96, progress=False)
    assert main(["info", url]) == EXIT_BAD_INPUT
    out = capsys.readouterr().out
    assert out.startswith("partials   .c.zarr.partial-") and "\n           c.zarr " in out
    assert main(["clean", url]) == 0
    assert "2 leftovers of killed writes removed" in capsys.readouterr().out
    assert _objects(s3, "clean/") == []


# --------------------------------------------------------------------------- leases


def test_lease_refuses_renews_takes_over_and_is_lost(s3, monkeypatch):
    monkeypatch.setenv("MEMXR_LEASE_SECONDS", "1")
    url = f"s3://{BUCKET}/leases/c.zarr"
    key = f"{BUCKET}/leases/.c.zarr.lock"
    first = LeaseLock(url)
    first.acquire()
    try:
        time.sleep(2.5)  # beyond the lease time: renewed by the heartbeat meanwhile
        with pytest.raises(OutputLockedError, match=f"being written by pid {os.getpid()}"):
            LeaseLock(url).acquire()
        first.verify()
        # another writer replaces the lease (as after an expiry): the holder finds out
        s3.pipe_file(key, json.dumps({"host": "elsewhere", "pid": 7, "since": "x"}).encode())
        deadline = time.monotonic() + DEADLINE
        while first._lost is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(InputError, match="the writer lock was lost"):
            first.verify()
    finally:
        first.release()
    assert s3.exists(key)  # a lost lease is not deleted: it is the other writer's
    # a lease not renewed (its writer died) expires and is taken over with If-Match
    dead = {"host": "gone", "pid": 9, "since": "2026-01-01T00:00:00Z", "lease": 1}
    s3.pipe_file(key, json.dumps(dead).encode())
    with pytest.raises(OutputLockedError, match="pid 9 on gone"):
        LeaseLock(url).acquire()
    time.sleep(2.1)  # Last-Modified has a resolution of one second
    assert not LeaseLock(url).holder().alive
    taker = LeaseLock(url)
    holder = taker.acquire()
    assert holder.pid == os.getpid() and LeaseLock(url).holder().pid == os.getpid()
    taker.release()
    assert not s3.exists(key)


# --------------------------------------------------------------------------- checksums


def test_bad_chunks_on_s3_are_named(s3, capsys):
    url = f"s3://{BUCKET}/bad/c.zarr"
    write_cube(example_cube(n_stimulus=6, n_channel=8), url, chunk_bytes=96, progress=False)
    chunk = f"{BUCKET}/bad/c.zarr/response/c/0/1"
    raw = bytearray(s3.cat_file(chunk))
    raw[3] ^= 1
    s3.pipe_file(chunk, bytes(raw))
    s3.rm_file(f"{BUCKET}/bad/c.zarr/response/c/0/2")
    cube = open_cube(url)
    with pytest.raises(ChunkError, match=r"c.zarr: response: chunk c/0/1: checksum mismatch"):
        cube["response"].isel(channel=slice(2, 4)).compute()
    with pytest.raises(ChunkError, match=r"c.zarr: response: chunk c/0/2: missing$"):
        cube["response"].isel(channel=slice(4, 6)).compute()  # Zarr alone would read NaN
    assert main(["validate", "--deep", url]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("c.zarr: response: chunk c/0/1: checksum mismatch (stored ")
    assert err[1] == "c.zarr: response: chunk c/0/2: missing"
    assert err[2] == "memxr: error: c.zarr: validate: 2 problems (listed above)"


# --------------------------------------------------------------------------- pipeline


def _spec(raw: Path, name: str, store_input: str) -> Path:
    spec = spec_dict(name=name, title="s3 run")
    spec["inputs"]["cubes"].append({"name": "given", "kind": "store", "input": store_input})
    spec["analyses"].update(models=None, timecourse=None)
    spec["analyses"]["correlation"].update(n_permutations=19, n_bootstrap=19)
    spec["analyses"]["bridge"]["pairs"] = [["given", "monkeyN"]]
    path = raw / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_pipeline_with_stores_on_s3_gives_the_local_tables(s3, raw, ingested, capsys):
    """Inputs on S3 (a ``kind: store`` URL) and the ingested stores on S3 (``--stores``):
    the same tables as a run with everything local; a rerun skips every step."""
    from memxr.pipeline.cluster import cluster_client

    url, local = ingested
    stores = f"s3://{BUCKET}/runs/stores"
    with cluster_client(workers=2) as client:
        lines: list[str] = []
        out_s3 = run(
            _spec(raw, "on-s3", url), out=raw / "out-s3", stores=stores, client=client,
            log=lines.append,
        )  # fmt: skip
        out_local = run(_spec(raw, "local", str(local)), out=raw / "out-local", client=client)
        again: list[str] = []
        run(_spec(raw, "on-s3", url), out=out_s3, stores=stores, client=client, log=again.append)
    roots = [o for o in _objects(s3, "runs/stores/") if o.count("/") == 3]
    assert [o for o in roots if o.endswith("/zarr.json")] == [
        "runs/stores/monkeyN.zarr/zarr.json", "runs/stores/sub-01.zarr/zarr.json",
    ]  # fmt: skip
    assert not (out_s3 / "stores" / "sub-01.zarr").exists()
    tables = sorted(p.name for p in (out_local / "tables").glob("*.csv"))
    assert tables == sorted(p.name for p in (out_s3 / "tables").glob("*.csv"))
    assert "correlations.csv" in tables and "bridge_rsa.csv" in tables
    for name in tables:
        a = pd.read_csv(out_s3 / "tables" / name)
        b = pd.read_csv(out_local / "tables" / name)
        pd.testing.assert_frame_equal(a, b)
    assert [ln for ln in again if "] run " in ln] == []  # all cached, stores found on S3
    assert any("skip ingest:sub-01 (cached)" in ln for ln in again)
    catalog = read_catalog(out_s3 / "stores" / "catalog.tsv")
    assert sorted(catalog["path"]) == [
        f"{stores}/monkeyN.zarr", f"{stores}/sub-01.zarr", url,
    ]  # fmt: skip
    for path in [*out_s3.rglob("*.json"), *out_s3.rglob("*.tsv"), *out_s3.rglob("*.html")]:
        assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in "\n".join(lines)
    assert main(["run", str(_spec(raw, "x", url)), "--out", "s3://b/run"]) == EXIT_BAD_INPUT
    assert "run: --out: a run folder is local" in capsys.readouterr().err
