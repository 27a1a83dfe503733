"""netCDF and Zarr 2 exports: CF attributes, round trips through both engines, streaming, atomicity."""

from __future__ import annotations

import json
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import dask.array as da
import netCDF4
import numpy as np
import pytest
import xarray as xr
import zarr

from memxr import __version__
from memxr.cli import main
from memxr.errors import InputError
from memxr.schema import SchemaError, example_cube, text_coord
from memxr.store import open_cube, write_cube
from memxr.store.export import FLAG_MEANINGS, export_netcdf, export_zarr, open_netcdf

ENGINES = ["netcdf4", "h5netcdf"]
ROIS = ["V1", "FFA", "IT"]
CUBE_ATTRS = ("dataset", "subject", "units", "memxr_version", "inputs", "spec_hash", "n_matched")


def make_cube(n_time: int | None = None, n_stim: int = 12, n_chan: int = 10) -> xr.Dataset:
    """A cube with NaN-padded repeats, overlapping ROIs, empty labels and a NaN score."""
    rng = np.random.default_rng(1)
    n_test, n_rep = 3, 2
    tdims, tshape = (("time",), (n_time,)) if n_time else ((), ())
    ids = [f"thing{i // 3}_{i % 3:02d}s.jpg" for i in range(n_stim)]
    reps = rng.standard_normal((n_test, n_rep, n_chan, *tshape))
    reps[0, -1] = np.nan
    memor = rng.uniform(0.4, 1.0, n_stim)
    memor[2] = np.nan
    coords = {
        "stimulus_id": ("stimulus", text_coord(ids)),
        "concept": ("stimulus", text_coord([f"thing{i // 3}" for i in range(n_stim)])),
        "category": ("stimulus", text_coord(["", "food é", "animal"] * (n_stim // 3))),
        "memorability": ("stimulus", memor),
        "split": ("stimulus", text_coord(["test"] * n_test + ["train"] * (n_stim - n_test))),
        "n_repeats": ("stimulus", np.array([1] + [2] * (n_test - 1) + [1] * (n_stim - n_test))),
        "channel_id": ("channel", np.arange(1, n_chan + 1, dtype=np.int64)),
        "reliability": ("channel", rng.uniform(-0.2, 0.9, n_chan)),
        "roi": ("roi", text_coord(ROIS)),
        "roi_mask": (("channel", "roi"), rng.random((n_chan, len(ROIS))) < 0.5),
        "repeat_stimulus_id": ("repeat_stimulus", text_coord(ids[:n_test])),
        "repeat": ("repeat", np.arange(n_rep)),
    }
    if n_time:
        coords["time"] = ("time", np.arange(n_time) * 10.0 - 100.0)
    return xr.Dataset(
        {
            "response": (
                ("stimulus", "channel", *tdims),
                rng.standard_normal((n_stim, n_chan, *tshape)).astype(np.float32),
            ),
            "response_repeats": (("repeat_stimulus", "repeat", "channel", *tdims), reps),
        },
        coords=coords,
        attrs={
            "dataset": "tvsd-trials" if n_time else "things-fmri",
            "subject": "monkeyN" if n_time else "sub-01",
            "units": "a.u.",
            "memxr_version": "0",
            "created": "1970-01-01T00:00:00Z",
            "inputs": json.dumps([{"name": "a/b.h5", "size": 3, "sha256": "ab" * 32}]),
            "spec_hash": "deadbeef",
            "n_matched": 11,
        },
    )


@pytest.fixture(params=[None, 4], ids=["2d", "time"])
def store(request, tmp_path) -> Path:
    """A v3 store of several chunks per variable."""
    cube = make_cube(n_time=request.param)
    return write_cube(cube, tmp_path / "src.zarr", chunk_bytes=12 * 4 * 4, progress=False)


def _partials(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.partial-*"))


# --------------------------------------------------------------------------- netCDF


@pytest.mark.parametrize("writer", ENGINES)
def test_netcdf_round_trip_through_both_engines(store, tmp_path, writer):
    src = open_cube(store)
    out = export_netcdf(store, tmp_path / "c.nc", engine=writer, progress=False)
    assert out == tmp_path / "c.nc" and not _partials(out)
    for reader in ENGINES:
        with xr.open_dataset(out, engine=reader) as plain:
            for name in ("response", "response_repeats"):
                assert plain[name].dtype == src[name].dtype
                np.testing.assert_array_equal(plain[name].values, src[name].values)
            assert plain["roi_mask"].dtype == bool  # xarray's own marker
            np.testing.assert_array_equal(plain["roi_mask"].values, src["roi_mask"].values)
            assert plain["stimulus_id"].values.tolist() == src["stimulus_id"].values.tolist()
        back = open_netcdf(out, engine=reader)
        assert isinstance(back["response"].data, da.Array)
        for name, c in src.coords.items():
            assert back[name].dims == c.dims, name
            np.testing.assert_array_equal(back[name].values, c.values)
            assert back[name].dtype == c.dtype, name
        assert back["category"].values.tolist()[:3] == ["", "food é", "animal"]
        assert np.isnan(back["memorability"].values[2])
        assert np.isnan(back["response_repeats"].values[0, -1]).all()
        xr.testing.assert_equal(back["response"].drop_attrs(), src["response"].drop_attrs())
        for key in CUBE_ATTRS + ("created",):
            assert back.attrs[key] == src.attrs[key], key
        assert back["response"].sel(stimulus_id="thing1_01s.jpg").shape == src["response"].shape[1:]
        if "time" in src.dims:
            assert back["time"].dtype == np.float64 and back["time"].attrs["units"] == "ms"


def test_netcdf_cf_attributes_on_disk(store, tmp_path):
    out = export_netcdf(store, tmp_path / "c.nc", progress=False)
    src = open_cube(store)
    with netCDF4.Dataset(out) as nc:
        assert nc.data_model == "NETCDF4"
        assert nc.Conventions == "CF-1.10"
        assert nc.source == f"memxr {__version__}"
        assert nc.title == f"memxr cube: {src.attrs['dataset']} {src.attrs['subject']}"
        assert nc.history.endswith(f"memxr {__version__}: export_netcdf src.zarr -> c.nc")
        assert nc.spec_hash == "deadbeef" and int(nc.n_matched) == 11
        for name, var in nc.variables.items():
            assert var.long_name, name
        assert nc["response"].units == "a.u." and nc["response_repeats"].units == "a.u."
        assert nc["memorability"].units == "1" and nc["channel_id"].units == "1"
        assert nc["reliability"].long_name == "reliability"
        # text as variable-length strings; the mask as bytes with CF flags
        for name in ("stimulus_id", "concept", "category", "split", "roi", "repeat_stimulus_id"):
            assert nc[name].dtype is str, name
        mask = nc["roi_mask"]
        assert mask.dtype == np.int8 and "units" not in mask.ncattrs()
        assert mask.flag_values.tolist() == [0, 1] and mask.flag_meanings == FLAG_MEANINGS
        np.testing.assert_array_equal(mask[:], src["roi_mask"].values.astype("i1"))
        # zlib, shuffle, HDF5 chunks equal to the store's chunks; no fill on coordinates
        group = zarr.open_group(store, mode="r")
        for name in ("response", "response_repeats"):
            filters = nc[name].filters()
            assert filters["zlib"] and filters["shuffle"] and filters["complevel"] == 4
            assert tuple(nc[name].chunking()) == group[name].chunks
            assert group[name].nchunks > 1
        assert "_FillValue" not in nc["memorability"].ncattrs()
        if "time" in nc.variables:
            assert nc["time"].units == "ms" and "_FillValue" not in nc["time"].ncattrs()
            np.testing.assert_array_equal(nc["time"][:], [-100.0, -90.0, -80.0, -70.0])


def test_ncdump_reads_the_file(tmp_path):
    ncdump = shutil.which("ncdump")
    if ncdump is None:
        pytest.skip("ncdump not on PATH (Debian package netcdf-bin)")
    cube = make_cube(n_time=3)
    out = export_netcdf(cube, tmp_path / "c.nc", progress=False)
    res = subprocess.run([ncdump, "-h", str(out)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    for line in (
        "float response(stimulus, channel, time) ;",
        "string stimulus_id(stimulus) ;",
        "byte roi_mask(channel, roi) ;",
        'roi_mask:flag_meanings = "outside inside" ;',
        'time:units = "ms" ;',
        ':Conventions = "CF-1.10" ;',
        ':subject = "monkeyN" ;',
    ):
        assert line in res.stdout, line
    res = subprocess.run([ncdump, "-v", "roi,time", str(out)], capture_output=True, text=True)
    assert 'roi = "V1", "FFA", "IT" ;' in res.stdout and "time = -100, -90, -80 ;" in res.stdout


def test_open_netcdf_decodes_a_bare_byte_mask(tmp_path):
    cube = make_cube()
    out = export_netcdf(cube, tmp_path / "c.nc", progress=False)
    with netCDF4.Dataset(out, "r+") as nc:  # as written by a tool that knows no xarray marker
        nc["roi_mask"].delncattr("dtype")
    with xr.open_dataset(out) as plain:
        assert plain["roi_mask"].dtype == np.int8
    back = open_netcdf(out)
    assert back["roi_mask"].dtype == bool
    np.testing.assert_array_equal(back["roi_mask"].values, cube["roi_mask"].values)


def test_existing_file_refused_then_replaced(tmp_path):
    out = tmp_path / "c.nc"
    out.write_text("keep me")
    with pytest.raises(InputError, match=r"^c.nc: --netcdf: exists; pass --overwrite"):
        export_netcdf(make_cube(), out, progress=False)
    assert out.read_text() == "keep me"
    with pytest.raises(InputError, match=r"^c.nc: --engine: is 'scipy'"):
        export_netcdf(make_cube(), out, engine="scipy", overwrite=True, progress=False)
    assert out.read_text() == "keep me"
    export_netcdf(make_cube(), out, overwrite=True, progress=False)
    assert open_netcdf(out).attrs["subject"] == "sub-01" and not _partials(out)


def _fail_at(x, block_info=None):
    if block_info[None]["chunk-location"][1] == 2:
        raise RuntimeError("injected failure")
    return x


def test_failure_leaves_no_file(tmp_path):
    cube = make_cube()
    data = da.from_array(cube["response"].values, chunks=(12, 2)).map_blocks(_fail_at, dtype="f4")
    cube = cube.assign(response=(cube["response"].dims, data))
    out = tmp_path / "c.nc"
    with pytest.raises(RuntimeError, match="injected failure"):
        export_netcdf(cube, out, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SchemaError):
        export_netcdf(cube.drop_vars("memorability"), out, progress=False)
    with pytest.raises(InputError, match="nope.zarr: store: does not exist"):
        export_netcdf(tmp_path / "nope.zarr", out, progress=False)
    assert list(tmp_path.iterdir()) == []
    # the same file, after the failure, in the same process (same temporary name)
    export_netcdf(make_cube(), out, progress=False)
    assert list(tmp_path.iterdir()) == [out]
    np.testing.assert_array_equal(open_netcdf(out)["response"].values, make_cube()["response"])


def _ramp(block_info=None):
    """A compressible block whose values say where it sits in the cube."""
    shape, loc = block_info[None]["chunk-shape"], block_info[None]["chunk-location"]
    start = block_info[None]["array-location"][1][0]
    row = np.arange(start, start + shape[1], dtype=np.float32)
    return np.broadcast_to(row + loc[1] * 0.5, shape).copy()


def test_netcdf_export_streams_with_bounded_memory(tmp_path):
    n_stim, n_chan, per = 1000, 50_000, 2_000  # 200 MB of float32 in 25 chunks of 8 MB
    data = da.map_blocks(
        _ramp, chunks=((n_stim,), (per,) * (n_chan // per)), dtype="f4", meta=np.empty((0, 0), "f4")
    )
    cube = example_cube(n_stimulus=n_stim, n_channel=n_chan)
    cube = cube.assign(response=(("stimulus", "channel"), data))
    cube["response"].encoding["chunks"] = (n_stim, per)  # as opened from a store
    tracemalloc.start()
    try:
        out = export_netcdf(cube, tmp_path / "big.nc", complevel=1, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data.nbytes == 200_000_000
    assert peak < 60e6, f"peak {peak / 1e6:.0f} MB for a 200 MB cube"
    with netCDF4.Dataset(out) as nc:
        assert tuple(nc["response"].chunking()) == (n_stim, per)
        np.testing.assert_array_equal(nc["response"][5, 4_000:4_003], [4001.0, 4002.0, 4003.0])
        assert float(nc["response"][999, n_chan - 1]) == n_chan - 1 + 24 * 0.5


def test_progress_bar_on_stderr(tmp_path, capfd):
    export_netcdf(make_cube(), tmp_path / "c.nc")
    assert "writing c.nc" in capfd.readouterr().err
    export_netcdf(make_cube(), tmp_path / "d.nc", progress=False)
    assert "writing" not in capfd.readouterr().err


# --------------------------------------------------------------------------- Zarr 2


def test_export_zarr_format_2(store, tmp_path):
    src = open_cube(store)
    out = export_zarr(store, tmp_path / "v2.zarr", progress=False)
    group = zarr.open_group(out, mode="r")
    assert group.metadata.zarr_format == 2 and (out / ".zmetadata").exists()
    assert group["response"].chunks == zarr.open_group(store, mode="r")["response"].chunks
    back = open_cube(out)
    xr.testing.assert_equal(back.drop_attrs(), src.drop_attrs())
    for key in CUBE_ATTRS:
        assert back.attrs[key] == src.attrs[key], key
    with pytest.raises(InputError, match=r"^v2.zarr: --zarr: exists; pass --overwrite"):
        export_zarr(store, out, progress=False)
    with pytest.raises(InputError, match=r"^v4.zarr: --zarr-format: is 4"):
        export_zarr(store, tmp_path / "v4.zarr", zarr_format=4, progress=False)


# --------------------------------------------------------------------------- CLI


def test_cli_export(tmp_path, capsys):
    src = write_cube(make_cube(n_time=2), tmp_path / "s.zarr", progress=False)
    nc = tmp_path / "s.nc"
    argv = ["export", str(src), "--netcdf", str(nc), "--engine", "h5netcdf", "--no-progress"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == f"wrote {nc}"
    np.testing.assert_array_equal(open_netcdf(nc)["response"].values, open_cube(src)["response"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "memxr: error: s.nc: --netcdf: exists; pass --overwrite (overwrite=True) to replace it\n"
    )
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    v2 = tmp_path / "s2.zarr"
    assert main(["export", str(src), "--zarr", str(v2), "--zarr-format", "2", "--no-progress"]) == 0
    assert zarr.open_group(v2, mode="r").metadata.zarr_format == 2
    capsys.readouterr()
    bad = [
        (["export", str(tmp_path / "nope.zarr"), "--netcdf", str(tmp_path / "n.nc")], "nope.zarr"),
        (
            ["export", str(src), "--zarr", str(tmp_path / "z.zarr"), "--engine", "netcdf4"],
            "--engine",
        ),
        (
            ["export", str(src), "--netcdf", str(tmp_path / "m.nc"), "--zarr-format", "2"],
            "--zarr-format",
        ),
    ]
    for args, word in bad:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and word in err and err.startswith("memxr: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nc", "s.zarr", "s2.zarr"]
