"""Zarr stores: round trips, chunk plan, atomic and resumable writes, lazy opens, info."""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from memxr import __version__
from memxr.errors import InputError
from memxr.provenance import file_records_async, sha256_file
from memxr.schema import SchemaError, example_cube, text_coord
from memxr.store import (
    CHUNK_BYTES,
    PROGRESS_LOG,
    REGION_CHUNKS,
    chunk_plan,
    fingerprint,
    format_info,
    leftovers,
    open_cube,
    store_info,
    write_cube,
)
from memxr.store import write as write_mod
from memxr.store.info import codec_label
from memxr.store.layout import prepare_cube, rechunk_to_plan
from memxr.testing import raise_if_dask_computes

ROIS = ["V1", "FFA", "IT"]


# --------------------------------------------------------------------------- cubes


def make_cube(
    n_stim: int = 24,
    n_chan: int = 10,
    n_time: int | None = None,
    n_test: int = 4,
    n_rep: int = 3,
    seed: int = 0,
    backend: str = "numpy",
) -> xr.Dataset:
    """A valid cube with repeats (NaN-padded), overlapping ROIs and missing labels."""
    rng = np.random.default_rng(seed)
    tdims, tshape = (("time",), (n_time,)) if n_time else ((), ())
    ids = [f"thing{i // 4}_{i % 4:02d}s.jpg" for i in range(n_stim)]
    resp = rng.standard_normal((n_stim, n_chan, *tshape)).astype(np.float32)
    reps = rng.standard_normal((n_test, n_rep, n_chan, *tshape))
    reps[0, -1] = np.nan  # the first test stimulus was shown one time fewer
    memor = rng.uniform(0.4, 1.0, n_stim)
    memor[1] = np.nan
    coords = {
        "stimulus_id": ("stimulus", text_coord(ids)),
        "concept": ("stimulus", text_coord([f"thing{i // 4}" for i in range(n_stim)])),
        "category": (
            "stimulus",
            text_coord(["", "food", "animal"] * (n_stim // 3) + [""] * (n_stim % 3)),
        ),
        "memorability": ("stimulus", memor),
        "split": ("stimulus", text_coord(["test"] * n_test + ["train"] * (n_stim - n_test))),
        "n_repeats": (
            "stimulus",
            np.array([n_rep - 1] + [n_rep] * (n_test - 1) + [1] * (n_stim - n_test)),
        ),
        "channel_id": ("channel", np.arange(1, n_chan + 1, dtype=np.int64)),
        "roi": ("roi", text_coord(ROIS)),
        "roi_mask": (("channel", "roi"), rng.random((n_chan, len(ROIS))) < 0.5),
        "repeat_stimulus_id": ("repeat_stimulus", text_coord(ids[:n_test])),
        "repeat": ("repeat", np.arange(n_rep)),
    }
    if n_time:
        coords["time"] = ("time", np.arange(n_time) * 10.0 - 100.0)
    ds = xr.Dataset(
        {
            "response": (("stimulus", "channel", *tdims), resp, {"units": "a.u."}),
            "response_repeats": (("repeat_stimulus", "repeat", "channel", *tdims), reps),
        },
        coords=coords,
        attrs={
            "dataset": "tvsd-trials" if n_time else "things-fmri",
            "subject": "N" if n_time else "sub-01",
            "units": "a.u.",
            "memxr_version": "0",
            "created": "1970-01-01T00:00:00Z",
            "inputs": json.dumps([{"name": "a/b.h5", "size": 3, "sha256": "ab" * 32}]),
            "spec_hash": "deadbeef",
        },
    )
    if backend == "dask":  # odd dask chunks, not aligned with the store's
        for name in ("response", "response_repeats"):
            ds[name] = ds[name].chunk({"channel": 3})
    return ds


CALLS: list[tuple] = []


def _block(seed, fail_at=None, sleep=0.0, block_info=None):
    """One deterministic block of noise; records each call; can sleep or fail."""
    loc = tuple(block_info[None]["chunk-location"])
    CALLS.append(loc)
    if sleep:
        time.sleep(sleep)
    if fail_at is not None and loc == tuple(fail_at):
        raise RuntimeError("injected failure")
    rng = np.random.default_rng([seed, *loc])
    return rng.random(block_info[None]["chunk-shape"], dtype=np.float32)


def lazy_cube(n_stim=40, n_chan=64, per_chunk=4, seed=0, **block_kw) -> xr.Dataset:
    """A cube whose response is generated lazily, one dask block per store chunk."""
    ds = example_cube(n_stimulus=n_stim, n_channel=n_chan)
    chunks = ((n_stim,), (per_chunk,) * (n_chan // per_chunk))
    data = da.map_blocks(
        _block, seed, **block_kw, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0), "f4")
    )
    return ds.assign(response=(("stimulus", "channel"), data))


def lazy_chunk_bytes(n_stim=40, per_chunk=4) -> int:
    """The chunk target that makes the store chunks equal the dask blocks of lazy_cube."""
    return n_stim * per_chunk * 4


def _partials(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.partial-*"))


def _slow_write(out: str) -> None:
    """Run in a subprocess: a write slow enough to be killed midway."""
    cube = lazy_cube(sleep=0.15)
    write_cube(cube, out, chunk_bytes=lazy_chunk_bytes(), progress=False)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("zarr_format", [3, 2])
@pytest.mark.parametrize("n_time", [None, 7], ids=["2d", "3d"])
@pytest.mark.parametrize("backend", ["numpy", "dask"])
def test_round_trip(tmp_path, backend, n_time, zarr_format):
    cube = make_cube(n_time=n_time, backend=backend)
    path = write_cube(
        cube, tmp_path / "c.zarr", zarr_format=zarr_format, chunk_bytes=24 * 4 * 2, progress=False
    )
    assert path == tmp_path / "c.zarr" and not _partials(path)
    back = open_cube(path)
    assert isinstance(back["response"].data, da.Array)
    for name in ("response", "response_repeats"):
        assert back[name].dtype == cube[name].dtype
        np.testing.assert_array_equal(back[name].values, cube[name].values)  # NaN == NaN here
    assert np.isnan(back["response_repeats"].values[0, -1]).all()
    assert back["response"].attrs["units"] == "a.u."
    for name, c in cube.coords.items():
        assert back[name].dims == c.dims
        np.testing.assert_array_equal(back[name].values, c.values)
    assert back["roi_mask"].dtype == bool
    assert all(type(v) is str for v in back["category"].values)
    assert back["category"].values[0] == ""
    for key in ("dataset", "subject", "units", "inputs", "spec_hash"):
        assert back.attrs[key] == cube.attrs[key]
    assert back.attrs["memxr_version"] == __version__
    assert back.attrs["created"] != cube.attrs["created"]
    assert back.attrs["created"].endswith("Z")
    # the store's chunks are the plan (several of them: the write went region by region)
    plan = chunk_plan(prepare_cube(cube), 24 * 4 * 2)
    group = zarr.open_group(path, mode="r")
    assert group["response"].chunks == plan["response"]
    assert group["response_repeats"].chunks == plan["response_repeats"]
    assert group["response"].nchunks > REGION_CHUNKS
    assert group.metadata.zarr_format == zarr_format


def test_open_cube_labels_and_index(tmp_path):
    path = write_cube(make_cube(), tmp_path / "c.zarr", progress=False)
    cube = open_cube(path)
    assert cube["stimulus_id"].dtype == object
    one = cube["response"].sel(stimulus_id="thing2_01s.jpg")
    np.testing.assert_array_equal(one.values, make_cube()["response"].values[9])
    rep = cube["response_repeats"].sel(repeat_stimulus_id="thing0_01s.jpg")
    np.testing.assert_array_equal(rep.values, make_cube()["response_repeats"].values[1])
    # a cube read back is written again unchanged (encodings and indexes do not get in the way)
    again = open_cube(write_cube(cube, tmp_path / "d.zarr", progress=False))
    xr.testing.assert_equal(again.drop_attrs(), cube.drop_attrs())


def test_plain_open_zarr_without_memxr(tmp_path):
    cube = make_cube(n_time=5)
    paths = [
        write_cube(cube, tmp_path / f"v{f}.zarr", zarr_format=f, progress=False) for f in (3, 2)
    ]
    script = (
        "import sys, json, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "import xarray as xr\n"
        "out = []\n"
        "for p in sys.argv[1:]:\n"
        "    ds = xr.open_zarr(p)\n"
        "    out.append({'ids': ds.stimulus_id.values.tolist(),\n"
        "                'str': all(type(v) is str for v in ds.stimulus_id.values.tolist()),\n"
        "                'mask_dtype': str(ds.roi_mask.dtype), 'mask': ds.roi_mask.values.tolist(),\n"
        "                'roi': ds.roi.values.tolist(), 'time': ds.time.values.tolist(),\n"
        "                'resp': ds.response.values.tolist(),\n"
        "                'reps': ds.response_repeats.values.tolist(), 'attrs': ds.attrs,\n"
        "                'coords': sorted(ds.coords)})\n"
        "assert 'memxr' not in sys.modules\n"
        "print(json.dumps(out))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    for got in json.loads(res.stdout):
        assert got["ids"] == list(cube["stimulus_id"].values) and got["str"]
        assert got["mask_dtype"] == "bool"
        assert got["mask"] == cube["roi_mask"].values.tolist()
        assert got["roi"] == ROIS and got["time"] == cube["time"].values.tolist()
        np.testing.assert_array_equal(np.array(got["resp"], "f4"), cube["response"].values)
        np.testing.assert_array_equal(np.array(got["reps"]), cube["response_repeats"].values)
        assert got["attrs"]["spec_hash"] == "deadbeef" and got["attrs"]["subject"] == "N"
        assert got["coords"] == sorted(cube.coords)


def test_open_cube_fsspec_url(tmp_path):
    cube = make_cube()
    path = write_cube(cube, tmp_path / "c.zarr", zarr_format=2, progress=False)
    back = open_cube(path.as_uri(), storage_options={"auto_mkdir": False})
    np.testing.assert_array_equal(back["response"].values, cube["response"].values)
    assert back["stimulus_id"].values.tolist() == cube["stimulus_id"].values.tolist()


def test_open_cube_http_url(tmp_path):
    cube = make_cube()
    write_cube(cube, tmp_path / "c.zarr", progress=False)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        back = open_cube(f"{url}/c.zarr", storage_options={"block_size": 0})
        np.testing.assert_array_equal(back["response"].values, cube["response"].values)
        assert store_info(f"{url}/c.zarr")["rois"] == store_info(tmp_path / "c.zarr")["rois"]
        with pytest.raises(InputError, match="nope.zarr: store: does not exist"):
            open_cube(f"{url}/nope.zarr")
    finally:
        server.shutdown()
        server.server_close()


def test_open_cube_errors(tmp_path):
    with pytest.raises(InputError, match=r"^nope.zarr: store: does not exist$"):
        open_cube(tmp_path / "nope.zarr")
    with pytest.raises(InputError, match="nope.zarr: store: does not exist"):
        open_cube((tmp_path / "nope.zarr").as_uri())
    bad = tmp_path / "bad.zarr"
    example_cube().drop_vars("memorability").to_zarr(bad, zarr_format=2)
    with pytest.raises(SchemaError, match="bad.zarr: missing coordinate 'memorability'"):
        open_cube(bad)


# --------------------------------------------------------------------------- chunk plan


def _check_aligned(ds: xr.Dataset, plan: dict) -> None:
    with raise_if_dask_computes():
        out = rechunk_to_plan(ds, plan)
    for name in ds.data_vars:
        for size, want, got in zip(ds[name].shape, plan[name], out[name].chunks, strict=True):
            assert sum(got) == size and all(c == want for c in got[:-1]) and got[-1] <= want


def test_chunk_plan_big_shapes():
    zeros = lambda shape, dt: da.zeros(shape, dtype=dt, chunks=(1000,) * len(shape))  # noqa: E731
    fmri = xr.Dataset(
        {
            "response": (("stimulus", "channel"), zeros((8740, 211339), "f4")),
            "response_repeats": (
                ("repeat_stimulus", "repeat", "channel"),
                zeros((100, 12, 211339), "f4"),
            ),
            "channel_id": ("channel", np.arange(211339)),
        }
    ).set_coords("channel_id")
    tvsd = xr.Dataset(
        {
            "response": (("stimulus", "channel", "time"), zeros((22348, 1024, 300), "f8")),
            "response_repeats": (
                ("repeat_stimulus", "repeat", "channel", "time"),
                zeros((100, 30, 1024, 300), "f8"),
            ),
        }
    )
    with raise_if_dask_computes():
        plans = [chunk_plan(fmri), chunk_plan(tvsd)]
    assert plans[0]["response"] == (8740, 1904)  # 111 chunks of 63.5 MiB
    assert plans[0]["channel_id"] == (211339,)  # coordinates: one chunk
    assert plans[1]["response"] == (22348, 256, 1)  # whole time bins, 4 channel blocks
    assert plans[1]["response_repeats"] == (100, 30, 1024, 1)
    for ds, plan in zip([fmri, tvsd], plans, strict=True):
        for name, var in ds.data_vars.items():
            chunks = plan[name]
            assert chunks[0] == var.shape[0]  # the whole stimulus axis in each chunk
            if name == "response_repeats":
                assert chunks[1] == var.shape[1]  # and every repeat
            nbytes = np.prod(chunks) * var.dtype.itemsize
            assert nbytes <= CHUNK_BYTES, (name, chunks)
            if "time" not in var.dims:
                assert CHUNK_BYTES / 2 <= nbytes and nbytes >= 50e6, (name, chunks)
            else:  # one bin of the channel block; twice the block would not fit
                assert chunks[-1] == 1 and (chunks[-2] == 1024 or 2 * nbytes > CHUNK_BYTES)
        _check_aligned(ds, plan)
    f32 = chunk_plan(tvsd.astype("f4"))
    assert f32["response"] == (22348, 512, 1) and f32["response_repeats"] == (100, 30, 1024, 1)
    # balanced: no tiny last chunk
    n_chunks = -(-211339 // 1904)
    assert 211339 - (n_chunks - 1) * 1904 > 1800


def test_chunk_plan_small_and_other_targets():
    cube = make_cube(n_time=7)
    assert chunk_plan(cube)["response"] == (24, 10, 7)  # smaller than the target: one chunk
    plan = chunk_plan(cube, target_bytes=24 * 4 * 12)  # a bin of every channel fits
    assert plan["response"] == (24, 10, 1)
    plan = chunk_plan(cube, target_bytes=24 * 4 * 4)  # halved: 10 -> 5 -> 3 channels
    assert plan["response"] == (24, 3, 1)
    plan = chunk_plan(cube, target_bytes=24 * 4 * 2)
    assert plan["response"] == (24, 2, 1)
    long = make_cube(n_time=40)  # bins under 1/8 of the target: 3 per chunk
    assert chunk_plan(long, target_bytes=24 * 4 * 10 * 8 * 3)["response"] == (24, 10, 3)


def test_misaligned_dask_chunks_are_rechunked(tmp_path):
    cube = make_cube(n_chan=23)
    cube["response"] = cube["response"].chunk({"stimulus": 5, "channel": 7})
    path = write_cube(cube, tmp_path / "c.zarr", chunk_bytes=24 * 4 * 4, progress=False)
    assert zarr.open_group(path, mode="r")["response"].chunks == (24, 4)
    np.testing.assert_array_equal(open_cube(path)["response"].values, cube["response"].values)


# --------------------------------------------------------------------------- atomic writes


def test_refuses_existing_path_before_any_work(tmp_path):
    path = tmp_path / "c.zarr"
    path.mkdir()
    with raise_if_dask_computes(), pytest.raises(InputError) as err:
        write_cube(lazy_cube(), path, progress=False)
    assert str(err.value) == "c.zarr: out: exists; pass overwrite=True"
    assert not _partials(path) and list(path.iterdir()) == []


def test_invalid_cube_refused_before_writing(tmp_path):
    with pytest.raises(SchemaError, match="missing coordinate 'split'"):
        write_cube(example_cube().drop_vars("split"), tmp_path / "c.zarr", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_failure_leaves_nothing_under_the_final_name(tmp_path):
    path = tmp_path / "c.zarr"
    with pytest.raises(RuntimeError, match="injected failure"):
        write_cube(lazy_cube(fail_at=(0, 9)), path, chunk_bytes=lazy_chunk_bytes(), progress=False)
    assert not path.exists()
    (partial,) = _partials(path)
    lines = (partial / PROGRESS_LOG).read_text().splitlines()
    assert lines[0].startswith("# memxr progress ")
    # regions finish in any order; the one holding the failed chunk 9 is never logged
    regions = [f"response|channel={a}:{a + 16}" for a in range(0, 64, 16)]
    assert set(lines[1:]) <= set(regions) - {regions[2]}
    for line in lines[1:]:  # a logged region has all its chunks on disk
        start = int(line.split("=")[1].split(":")[0])
        for i in range(start // 4, start // 4 + 4):
            assert (partial / "response" / "c" / "0" / str(i)).is_file(), line


def test_durable_write(tmp_path):
    """durable=True fsyncs every region's chunk files before logging it (same store)."""
    cube = make_cube(n_time=7)
    path = write_cube(cube, tmp_path / "c.zarr", chunk_bytes=24 * 4 * 12, durable=True, progress=False)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]
    np.testing.assert_array_equal(open_cube(path)["response"].values, cube["response"].values)


def test_overwrite_replaces_only_at_the_end(tmp_path):
    path = tmp_path / "c.zarr"
    old = lazy_cube(seed=1)
    write_cube(old, path, chunk_bytes=lazy_chunk_bytes(), progress=False)
    expected = old["response"].values
    with pytest.raises(RuntimeError, match="injected failure"):
        write_cube(
            lazy_cube(seed=2, fail_at=(0, 13)),
            path,
            overwrite=True,
            chunk_bytes=lazy_chunk_bytes(),
            progress=False,
        )
    np.testing.assert_array_equal(open_cube(path)["response"].values, expected)  # intact
    assert len(_partials(path)) == 1
    new = lazy_cube(seed=2)
    write_cube(new, path, overwrite=True, chunk_bytes=lazy_chunk_bytes(), progress=False)
    np.testing.assert_array_equal(open_cube(path)["response"].values, new["response"].values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]  # no partial, no old copy


# --------------------------------------------------------------------------- resumable writes


def _log_regions(partial: Path) -> list[str]:
    log = partial / PROGRESS_LOG
    if not log.exists():
        return []
    return [ln for ln in log.read_text().split("\n")[1:-1] if ln]


def test_resume_after_sigkill(tmp_path):
    path = tmp_path / "c.zarr"
    script = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('store_tests', sys.argv[1])\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "mod._slow_write(sys.argv[2])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, __file__, str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(_log_regions(p) for p in _partials(path)):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no region finished in 60 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not path.exists()
    (partial,) = _partials(path)
    done = _log_regions(partial)
    n_chunks, n_regions = 16, 16 // REGION_CHUNKS
    assert 1 <= len(done) < n_regions
    # the killed writer left its partial and its lock file; the system released the lock
    left = {x["name"]: x["holder"] for x in leftovers(path)}
    assert sorted(left) == [".c.zarr.lock", partial.name]
    assert {(h.pid, h.alive) for h in left.values()} == {(proc.pid, False)}

    CALLS.clear()
    cube = lazy_cube()
    write_cube(cube, path, chunk_bytes=lazy_chunk_bytes(), progress=False)
    assert len(CALLS) == n_chunks - REGION_CHUNKS * len(done)  # finished regions skipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]  # lock taken over, removed

    ref = write_cube(cube, tmp_path / "ref.zarr", chunk_bytes=lazy_chunk_bytes(), progress=False)
    a, b = xr.open_zarr(path), xr.open_zarr(ref)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert {k: v for k, v in a.attrs.items() if k != "created"} == {
        k: v for k, v in b.attrs.items() if k != "created"
    }


def test_stale_partial_with_other_fingerprint_is_discarded(tmp_path):
    path = tmp_path / "c.zarr"
    with pytest.raises(RuntimeError):
        write_cube(lazy_cube(fail_at=(0, 9)), path, chunk_bytes=lazy_chunk_bytes(), progress=False)
    (stale,) = _partials(path)
    other = lazy_cube().assign_attrs(subject="sub-02")
    CALLS.clear()
    write_cube(other, path, chunk_bytes=lazy_chunk_bytes(), progress=False)
    assert len(CALLS) == 16  # nothing reused
    assert not stale.exists() and not _partials(path)
    assert open_cube(path).attrs["subject"] == "sub-02"


def test_fingerprint_covers_content_but_not_creation_time():
    ds = prepare_cube(make_cube())
    plan = chunk_plan(ds)
    fp = fingerprint(ds, plan, 3)
    assert fingerprint(ds.assign_attrs(created="2000-01-01T00:00:00Z"), plan, 3) == fp
    assert fingerprint(ds, plan, 2) != fp
    assert fingerprint(ds.assign_attrs(subject="x"), plan, 3) != fp
    assert fingerprint(ds, chunk_plan(ds, 400), 3) != fp
    ids = ds["stimulus_id"].values.copy()
    ids[0] = "other.jpg"
    assert fingerprint(ds.assign_coords(stimulus_id=("stimulus", ids)), plan, 3) != fp
    mask = ~ds["roi_mask"].values
    assert fingerprint(ds.assign_coords(roi_mask=(("channel", "roi"), mask)), plan, 3) != fp


# --------------------------------------------------------------------------- memory, progress


def test_peak_memory_stays_flat(tmp_path):
    n_stim, n_chan, per_chunk = 2000, 25600, 512  # 205 MB of float32, 4 MB chunks
    cube = lazy_cube(n_stim=n_stim, n_chan=n_chan, per_chunk=per_chunk)
    nbytes = cube["response"].nbytes
    tracemalloc.start()
    try:
        write_cube(
            cube,
            tmp_path / "big.zarr",
            chunk_bytes=lazy_chunk_bytes(n_stim, per_chunk),
            progress=False,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert nbytes > 200e6
    assert peak < nbytes / 5, f"peak {peak / 1e6:.0f} MB for {nbytes / 1e6:.0f} MB of data"
    np.testing.assert_array_equal(
        open_cube(tmp_path / "big.zarr")["response"][:, -per_chunk:].values,
        cube["response"][:, -per_chunk:].values,
    )


def test_progress_bar_on_stderr(tmp_path, capfd):
    write_cube(make_cube(), tmp_path / "c.zarr", chunk_bytes=24 * 4 * 4, progress=True)
    out, err = capfd.readouterr()
    assert out == "" and "region" in err and "c.zarr" in err


# --------------------------------------------------------------------------- provenance, info


def test_inputs_future_and_store_info(tmp_path):
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    (raw / "sub" / "a.h5").write_bytes(b"x" * 1000)
    (raw / "b.csv").write_text("voxel_id\n1\n")
    files = [raw / "sub" / "a.h5", raw / "b.csv"]
    cube = make_cube(n_time=7)
    path = write_cube(
        cube,
        tmp_path / "c.zarr",
        inputs=file_records_async(files, root=raw),
        chunk_bytes=24 * 4 * 12,
        progress=False,
    )
    records = json.loads(open_cube(path).attrs["inputs"])
    assert [r["name"] for r in records] == ["sub/a.h5", "b.csv"]
    assert [r["sha256"] for r in records] == [sha256_file(f) for f in files]

    info = store_info(path)
    assert info["store"] == "c.zarr" and info["zarr_format"] == 3
    assert info["dims"] == {
        "stimulus": 24,
        "channel": 10,
        "time": 7,
        "roi": 3,
        "repeat_stimulus": 4,
        "repeat": 3,
    }
    resp = info["variables"]["response"]
    assert resp == {
        "dims": ["stimulus", "channel", "time"],
        "dtype": "float32",
        "shape": [24, 10, 7],
        "chunks": [24, 10, 1],
        "codec": "crc32c",
        "checksum": True,
    }
    assert info["variables"]["response_repeats"]["dtype"] == "float64"
    assert info["coords"]["stimulus_id"]["dtype"] == "str"
    mask = cube["roi_mask"].values
    assert info["rois"] == {r: int(mask[:, i].sum()) for i, r in enumerate(ROIS)}
    assert info["splits"] == {"test": 4, "train": 20}
    assert info["attrs"]["dataset"] == "tvsd-trials" and info["attrs"]["subject"] == "N"
    assert info["attrs"]["memxr_version"] == __version__
    assert info["inputs"][0] == {
        "name": "sub/a.h5",
        "size": 1000,
        "sha256": records[0]["sha256"][:12],
    }
    assert info["disk_bytes"] > cube["response"].nbytes
    json.dumps(info)  # `memxr info --json`

    text = format_info(info)
    assert "response (stimulus, channel, time) float32 [24 x 10 x 7] chunks 24 x 10 x 1" in text
    assert "V1 (" in text and "train 20" in text and "test 4" in text
    assert f"sub/a.h5  1.0 KB  sha256 {records[0]['sha256'][:12]}" in text
    assert "subject: N" in text


def test_absolute_input_names_refused(tmp_path):
    bad = [{"name": str(tmp_path / "a.h5"), "size": 1, "sha256": "0" * 64}]
    with pytest.raises(InputError, match="c.zarr: inputs: absolute name 'a.h5'"):
        write_cube(example_cube(), tmp_path / "c.zarr", inputs=bad, progress=False)
    assert not (tmp_path / "c.zarr").exists()


def test_codec_labels_match_between_formats():
    import numcodecs
    from zarr.codecs import BloscCodec, ZstdCodec

    v3 = codec_label([BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")])
    v2 = codec_label([numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)])
    assert v3 == v2 == "blosc(cname=lz4, clevel=5, shuffle=shuffle)"
    assert (
        codec_label([ZstdCodec(level=3)])
        == codec_label([numcodecs.Zstd(level=3)])
        == "zstd(level=3)"
    )
    assert codec_label(()) == "none"


def test_inputs_as_list_or_kept_from_the_cube(tmp_path):
    """A plain list of records works too; without any, the cube's own ``inputs`` are kept."""
    recs = [{"name": "x.h5", "size": 2, "sha256": "f" * 64}]
    p1 = write_cube(example_cube(), tmp_path / "a.zarr", inputs=recs, progress=False)
    assert json.loads(open_cube(p1).attrs["inputs"]) == recs
    p2 = write_cube(make_cube(), tmp_path / "b.zarr", progress=False)
    assert open_cube(p2).attrs["inputs"] == make_cube().attrs["inputs"]


def test_reader_chunks_kept_when_they_fit():
    """Dask chunks that already follow the policy are kept (no rechunk copy before writing)."""
    import dask.array as da_

    ds = make_cube(n_stim=24, n_chan=40)
    ds["response"] = ds.response.copy(data=da_.from_array(ds.response.values, chunks=(24, 9)))
    target = 24 * 10 * 4  # the policy alone would choose 10 channels per chunk
    assert chunk_plan(ds, target)["response"] == (24, 9)
    ds["response"] = ds.response.chunk({"channel": 3})  # too small: the policy decides
    assert chunk_plan(ds, target)["response"] == (24, 10)
    ds["response"] = ds.response.chunk({"stimulus": 12, "channel": 9})  # stimulus split: refused
    assert chunk_plan(ds, target)["response"] == (24, 10)


def test_regions_written_on_a_dask_client(tmp_path):
    """On a Dask client the regions are computed there and logged here as they finish."""
    from distributed import Client, LocalCluster

    cube = lazy_cube()
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as lc,
        Client(lc),
    ):
        logged = []
        real = write_mod._compute_stores
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(
                write_mod,
                "_compute_stores",
                lambda stores, done: real(stores, lambda n, r: (logged.append(r), done(n, r))),
            )
            path = write_cube(cube, tmp_path / "c.zarr", chunk_bytes=lazy_chunk_bytes(), progress=False)
    assert sorted(r["channel"].start for r in logged) == [0, 16, 32, 48]
    np.testing.assert_array_equal(open_cube(path)["response"].values, cube["response"].values)
