"""Checksums in every chunk: the bytes written, bad chunks named on read and by deep validation."""

from __future__ import annotations

import json
import pickle
import shutil
import tracemalloc
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from memxr.cli import main
from memxr.provenance import file_records
from memxr.schema import example_cube, text_coord
from memxr.store import ChunkError, open_cube, store_info, validate_store, write_cube
from memxr.store.chunks import ArrayLayout, ChunkWriter, chunk_problem, decode_problem, read_raw
from memxr.store.info import format_info
from memxr.store.layout import compressors


def cube(n_stim: int = 100, n_chan: int = 10, n_time: int | None = None, seed: int = 0):
    """A valid cube with repeats; float32 response, float64 repeats."""
    ds = example_cube(n_stimulus=n_stim, n_channel=n_chan, seed=seed)
    rng = np.random.default_rng(seed)
    if n_time:
        resp = rng.standard_normal((n_stim, n_chan, n_time)).astype("f4")
        ds = ds.assign(response=(("stimulus", "channel", "time"), resp))
        ds = ds.assign_coords(time=("time", np.arange(n_time) * 10.0))
    else:
        ds = ds.assign(response=ds.response.astype("f4"))
    reps = rng.standard_normal((30, 2, n_chan, *((n_time,) if n_time else ())))
    reps[0, 1] = np.nan
    dims = ("repeat_stimulus", "repeat", "channel", *(("time",) if n_time else ()))
    ds = ds.assign(response_repeats=(dims, reps))
    return ds.assign_coords(
        repeat_stimulus_id=("repeat_stimulus", text_coord(list(ds.stimulus_id.values[:30]))),
        repeat=("repeat", np.arange(2)),
    )


def write(tmp_path: Path, ds=None, fmt: int = 3, name: str = "c.zarr") -> Path:
    ds = cube() if ds is None else ds
    per_chunk = 3  # channels per chunk (of one time bin): several chunks, a short edge chunk
    nbytes = ds.sizes["stimulus"] * per_chunk * 4
    return write_cube(ds, tmp_path / name, zarr_format=fmt, chunk_bytes=nbytes, progress=False)


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- the bytes


@pytest.mark.parametrize("fmt", [3, 2])
@pytest.mark.parametrize("n_time", [None, 7], ids=["2d", "3d"])
def test_chunk_files_are_those_zarr_writes(tmp_path, fmt, n_time):
    """memxr's writer (one writev per chunk) stores exactly the bytes zarr-python stores,
    edge chunks (padded with the fill value) included, and reads back to the values."""
    ds = cube(n_time=n_time)
    path = write(tmp_path, ds, fmt)
    group = zarr.open_group(path, mode="r")
    ref = tmp_path / "ref.zarr"
    edges = []
    for name in ("response", "response_repeats"):
        arr = group[name]
        zarr.create_array(
            ref,
            name=name,
            shape=arr.shape,
            chunks=arr.chunks,
            dtype=arr.dtype,
            fill_value=arr.fill_value,
            compressors=compressors(fmt),
            zarr_format=fmt,
            config={"write_empty_chunks": True},
        )[...] = ds[name].values
        layout = ArrayLayout.of(group, path, name)
        assert layout.raw and layout.checksummed == (fmt == 3)
        assert layout.n_chunks > 1
        edges.append(any(n % c for n, c in zip(arr.shape, arr.chunks, strict=True)))
        for index in layout.indices():
            key = layout.key(index)
            assert (path / name / key).read_bytes() == (ref / name / key).read_bytes(), key
            assert (path / name / key).stat().st_size == layout.encoded_size
    assert any(edges)  # a short edge chunk, padded like zarr pads it
    back = open_cube(path)
    for name in ("response", "response_repeats"):
        np.testing.assert_array_equal(back[name].values, ds[name].values)


def test_every_coordinate_chunk_is_checksummed(tmp_path):
    path = write(tmp_path)
    group = zarr.open_group(path, mode="r")
    for name, _ in group.arrays():
        layout = ArrayLayout.of(group, path, name)
        assert layout.checksummed, name
        for index in layout.indices():  # every chunk written, also those all fill value
            assert chunk_problem(layout, read_raw(layout, layout.key(index))) is None, name
    assert json.loads((path / "category" / "zarr.json").read_text())["codecs"][-1] == {
        "name": "crc32c"
    }


def test_writer_goes_through_zarr_for_compressed_chunks(tmp_path):
    path = tmp_path / "z.zarr"
    arr = zarr.create_array(
        path,
        shape=(4, 10),
        chunks=(4, 3),
        dtype="f8",
        fill_value=np.nan,
        compressors=[zarr.codecs.ZstdCodec(level=1), zarr.codecs.Crc32cCodec()],
    )
    x = da.from_array(np.arange(40.0).reshape(4, 10), chunks=(4, 3))
    layout = ArrayLayout.open(path, "")
    assert not layout.raw and layout.checksummed and layout.encoded_size is None
    da.store(x, ChunkWriter(layout), lock=False)
    np.testing.assert_array_equal(arr[:], x.compute())
    key = layout.key((0, 1))
    data = bytearray(read_raw(layout, key))
    data[3] ^= 1
    (path / key).write_bytes(bytes(data))
    assert chunk_problem(layout, bytes(data)).startswith("checksum mismatch")
    assert decode_problem(layout, (0, 1)).startswith("does not decode (ValueError")


# --------------------------------------------------------------------------- bad chunks


def test_flipped_byte(tmp_path, capsys):
    """The issue's finding 2: one byte changed inside a chunk of `response`."""
    path = write(tmp_path)
    good = open_cube(path)["response"].values
    flip(path / "response" / "c" / "0" / "2", 100)
    cube_ = open_cube(path)  # opens: coordinates are intact
    np.testing.assert_array_equal(cube_["response"][:, :6].values, good[:, :6])  # other chunks
    with pytest.raises(ChunkError) as err:
        cube_["response"].mean().compute()
    assert str(err.value).startswith(
        "c.zarr: response: chunk c/0/2: checksum mismatch (stored "
    )
    assert err.value.__cause__ is None  # read straight from the file, checksum verified
    with pytest.raises(ChunkError) as through_zarr:  # blocks of several chunks: Zarr decodes
        open_cube(path, chunks={"channel": 6})["response"].mean().compute()
    assert str(through_zarr.value) == str(err.value)
    assert isinstance(through_zarr.value.__cause__, ValueError)  # Zarr's own error kept
    report = validate_store(path, deep=True)
    assert not report.ok and report.problems == [str(err.value)]
    assert main(["validate", str(path)]) == 0  # without --deep: metadata and coordinates only
    capsys.readouterr()
    assert main(["validate", "--deep", str(path)]) == 2
    out, err_text = capsys.readouterr()
    assert out == ""
    assert err_text.splitlines() == [
        str(err.value),
        "memxr: error: c.zarr: validate: 1 problem (listed above)",
    ]


def test_truncated_chunks(tmp_path, capsys):
    """The issue's finding 2: chunk files cut short (an interrupted copy, a full disk)."""
    path = write(tmp_path)
    size = (path / "response" / "c" / "0" / "1").stat().st_size
    for key in ("1", "3"):
        f = path / "response" / "c" / "0" / key
        f.write_bytes(f.read_bytes()[:250])
    with pytest.raises(ChunkError, match=rf"^c.zarr: response: chunk c/0/[13]: truncated \(250 of {size} bytes\)$"):  # fmt: skip
        _ = open_cube(path)["response"].values
    report = validate_store(path, deep=True)
    assert report.problems == [
        f"c.zarr: response: chunk c/0/{k}: truncated (250 of {size} bytes)" for k in (1, 3)
    ]
    assert main(["validate", "--deep", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == report.problems and lines[2].endswith("2 problems (listed above)")


def test_missing_chunk_is_an_error_not_nan(tmp_path):
    path = write(tmp_path)
    (path / "response_repeats" / "c" / "0" / "0" / "1").unlink()
    with pytest.raises(ChunkError, match="^c.zarr: response_repeats: chunk c/0/0/1: missing$"):
        _ = open_cube(path)["response_repeats"].values
    assert validate_store(path, deep=True).problems == [
        "c.zarr: response_repeats: chunk c/0/0/1: missing"
    ]


def test_bad_coordinate_chunk_named_when_opening(tmp_path):
    path = write(tmp_path)
    flip(path / "memorability" / "c" / "0", 20)
    with pytest.raises(ChunkError, match=r"^c.zarr: memorability: chunk c/0: checksum mismatch"):
        open_cube(path)
    with pytest.raises(ChunkError, match="memorability"):
        validate_store(path)
    flip(path / "response" / "c" / "0" / "1", 20)
    problems = validate_store(path, deep=True).problems  # every bad chunk, one line each
    assert [p.split(": checksum mismatch")[0] for p in problems] == [
        "c.zarr: memorability: chunk c/0",
        "c.zarr: response: chunk c/0/1",
    ]


def test_zarr2_sizes_only(tmp_path, capsys):
    """Zarr format 2 has no checksum: a truncated chunk is still named, info says so."""
    path = write(tmp_path, fmt=2)
    info = store_info(path)
    assert info["checksum"] == "none" and not info["variables"]["response"]["checksum"]
    assert "checksums  none: Zarr format 2 chunks are not checksummed" in format_info(info)
    report = validate_store(path, deep=True)
    assert report.ok and report.unchecksummed and "no checksums" in report.summary()[1]
    f = path / "response" / "0.1"
    f.write_bytes(f.read_bytes()[:-8])
    with pytest.raises(ChunkError, match=r"^c.zarr: response: chunk 0.1: truncated \(\d+ of \d+"):
        _ = open_cube(path)["response"].values
    assert validate_store(path, deep=True).problems[0].startswith(
        "c.zarr: response: chunk 0.1: truncated"
    )


def test_chunk_error_survives_pickling():
    e = ChunkError("/data/c.zarr", "response", "c/0/3", "missing")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is ChunkError and str(back) == str(e) == "c.zarr: response: chunk c/0/3: missing"


def test_deep_validation_and_reads_on_a_dask_client(tmp_path):
    """On a cluster of worker processes: deep validation runs there, and a bad chunk read by
    a worker reaches the client as the same one-line error."""
    from distributed import Client, LocalCluster, get_task_stream

    path = write(tmp_path)
    flip(path / "response" / "c" / "0" / "0", 5)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None)
        as cluster,
        Client(cluster),
        get_task_stream() as stream,
    ):
        report = validate_store(path, deep=True)
        with pytest.raises(ChunkError, match="^c.zarr: response: chunk c/0/0: checksum mismatch"):
            open_cube(path)["response"].sum().compute()
    assert len(report.problems) == 1
    assert report.problems[0].startswith("c.zarr: response: chunk c/0/0: checksum mismatch")
    ran = [str(t["key"]) for t in stream.data]
    assert any("check-response" in k for k in ran), ran  # the chunks were read on the worker


def test_deep_validation_reads_in_bounded_memory(tmp_path):
    n_stim, n_chan, per_chunk = 500, 20000, 500  # 40 MB of float32 in 1 MB chunks
    ds = example_cube(n_stimulus=n_stim, n_channel=n_chan)
    ds = ds.assign(
        response=ds.response.astype("f4").chunk({"channel": per_chunk})
    )
    path = write_cube(ds, tmp_path / "big.zarr", chunk_bytes=n_stim * per_chunk * 4, progress=False)
    tracemalloc.start()
    try:
        with dask.config.set(scheduler="threads", num_workers=2):
            report = validate_store(path, deep=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok and report.bytes > 40e6 and report.chunks > 40
    assert peak < 12e6, f"peak {peak / 1e6:.0f} MB reading {report.bytes / 1e6:.0f} MB"


# --------------------------------------------------------------------------- inputs


def test_inputs_compared_with_the_raw_files(tmp_path, capsys):
    raw, tables = tmp_path / "raw", tmp_path / "tables"
    (raw / "sub").mkdir(parents=True)
    tables.mkdir()
    (raw / "sub" / "a.h5").write_bytes(b"x" * 1000)
    (tables / "scores.csv").write_text("image,cr\n")
    records = file_records([raw / "sub" / "a.h5"], root=raw) + file_records(
        [tables / "scores.csv"], root=tables
    )
    path = write_cube(example_cube(), tmp_path / "c.zarr", inputs=records, progress=False)
    report = validate_store(path, deep=True, inputs=[raw, tables])
    assert report.ok and report.inputs_checked == ["sub/a.h5", "scores.csv"]
    report = validate_store(path, deep=True, inputs=raw)
    assert report.ok and report.inputs_absent == ["scores.csv"]
    assert "not found there: scores.csv" in report.summary()[-1]
    (raw / "sub" / "a.h5").write_bytes(b"x" * 999 + b"y")  # same size, other bytes
    assert main(["validate", "--deep", str(path), "--inputs", str(raw), "--inputs", str(tables)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("c.zarr: inputs: sub/a.h5: sha256 ") and "differs from the recorded" in err[0]
    (raw / "sub" / "a.h5").write_bytes(b"x" * 10)
    assert validate_store(path, inputs=raw).problems == [
        "c.zarr: inputs: sub/a.h5: size 10 differs from the recorded 1000"
    ]
    assert main(["validate", str(path), "--inputs", str(raw)]) == 2
    assert "--inputs: applies to --deep only" in capsys.readouterr().err


def test_store_info_and_a_copy_with_checksums(tmp_path):
    path = write(tmp_path)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy)
    assert validate_store(copy, deep=True).ok
    xr.testing.assert_identical(open_cube(copy).drop_attrs(), open_cube(path).drop_attrs())
    text = format_info(store_info(path))
    assert "checksums  crc32c in every chunk (checked on every read)" in text
    assert "codec crc32c" in text


def test_deep_validation_over_http(tmp_path):
    """Chunks of a store served over HTTP are read through fsspec and checked the same way."""
    import functools
    import http.server
    import threading

    path = write(tmp_path)
    flip(path / "response" / "c" / "0" / "1", 30)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/c.zarr"
        report = validate_store(url, deep=True)
        (problem,) = report.problems
        assert problem.startswith("c.zarr: response: chunk c/0/1: checksum mismatch")
        with pytest.raises(ChunkError, match="^c.zarr: response: chunk c/0/1: checksum mismatch"):
            open_cube(url)["response"].values.sum()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("n_time", [None, 7], ids=["2d", "3d"])
def test_blocks_of_one_chunk_read_straight_from_files(tmp_path, monkeypatch, n_time):
    """Default blocks (one chunk each, edge chunks included) are read from their files with
    their checksum verified, and equal what Zarr decodes; v2 copies go through Zarr."""
    import memxr.store.chunks as chunks_module

    calls = []
    real = chunks_module.read_chunk
    monkeypatch.setattr(
        chunks_module, "read_chunk", lambda layout, i: calls.append(i) or real(layout, i)
    )
    ds = cube(n_time=n_time)
    path = write(tmp_path, ds)
    opened = open_cube(path)
    for name in ("response", "response_repeats"):
        ref = xr.open_zarr(path)[name].values
        np.testing.assert_array_equal(opened[name].values, ref)
        np.testing.assert_array_equal(ref, ds[name].values)
    n_blocks = sum(opened[n].data.npartitions for n in ("response", "response_repeats"))
    assert len(calls) == n_blocks
    calls.clear()
    v2 = write(tmp_path, ds, fmt=2, name="v2.zarr")
    np.testing.assert_array_equal(open_cube(v2)["response"].values, ds["response"].values)
    assert calls == []
