"""Stores shared over HTTP (and other fsspec URLs): plain xarray, `memxr info`, `memxr validate`."""

from __future__ import annotations

import functools
import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest
import xarray as xr

from memxr.cli import main
from memxr.errors import InputError
from memxr.schema import example_cube
from memxr.store import open_cube, store_info, write_cube

FORMATS = [3, 2]
INPUTS = [{"name": "sub-01_ResponseData.h5", "size": 1234, "sha256": "0123456789ab" + "f" * 52}]


def _cube() -> xr.Dataset:
    cube = example_cube(n_stimulus=8, n_channel=5, seed=3)
    cube.attrs.update(inputs=json.dumps(INPUTS), spec_hash="cafe01", subject="sub-01")
    return cube


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files only: no directory listings (a consolidated store needs none), no log."""

    requests: list[str] = []

    def list_directory(self, path):
        self.send_error(404, "no listing")
        return None

    def log_message(self, *args):
        pass

    def log_request(self, code="-", size="-"):
        type(self).requests.append(f"{self.command} {self.path} {code}")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A folder with v3.zarr and v2.zarr served on 127.0.0.1 (any free port)."""
    root = tmp_path_factory.mktemp("served")
    for f in FORMATS:
        write_cube(_cube(), root / f"v{f}.zarr", zarr_format=f, progress=False)
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


PLAIN_READER = """
import json, sys, warnings
warnings.simplefilter("ignore")
import xarray as xr
out = {}
for url in sys.argv[1:]:
    ds = xr.open_zarr(url, consolidated=True)
    out[url] = {
        "response": ds["response"].values.tolist(),
        "ids": [str(v) for v in ds["stimulus_id"].values],
        "mask": ds["roi_mask"].values.tolist(),
        "mask_dtype": str(ds["roi_mask"].dtype),
        "memorability": ds["memorability"].values.tolist(),
        "attrs": {k: (v if isinstance(v, str) else str(v)) for k, v in ds.attrs.items()},
        "chunks": [list(c) for c in ds["response"].chunks],
    }
assert "memxr" not in sys.modules, "memxr was imported"
print(json.dumps(out))
"""


def test_plain_xarray_reads_the_store_over_http(served):
    root, base = served
    urls = [f"{base}/v{f}.zarr" for f in FORMATS]
    _Handler.requests.clear()
    res = subprocess.run(
        [sys.executable, "-c", PLAIN_READER, *urls],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root.parent,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    cube = _cube()
    got = json.loads(res.stdout)
    for url in urls:
        g = got[url]
        np.testing.assert_array_equal(np.array(g["response"]), cube["response"].values)
        assert g["ids"] == cube["stimulus_id"].values.tolist()
        assert g["mask_dtype"] == "bool" and g["mask"] == cube["roi_mask"].values.tolist()
        np.testing.assert_allclose(g["memorability"], cube["memorability"].values)
        assert json.loads(g["attrs"]["inputs"]) == INPUTS
        assert g["attrs"]["spec_hash"] == "cafe01" and g["attrs"]["dataset"] == "things-fmri"
        assert g["chunks"] == [[8], [5]]
    # consolidated metadata: one metadata read per store, chunks, and no directory listing
    assert "GET /v3.zarr/zarr.json 200" in _Handler.requests
    assert "GET /v2.zarr/.zmetadata 200" in _Handler.requests
    assert "GET /v3.zarr/response/c/0/0 200" in _Handler.requests
    assert all(r.endswith((" 200", " 404")) for r in _Handler.requests)
    assert not [r for r in _Handler.requests if r.split()[1].endswith(".zarr/")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_info_over_http(served, fmt, capsys):
    root, base = served
    assert main(["info", f"{base}/v{fmt}.zarr"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"store      v{fmt}.zarr (zarr v{fmt}, ? on disk)\n")
    assert "dims       stimulus=8 channel=5 roi=1\n" in out
    assert "subject: sub-01" in out and "spec_hash: cafe01" in out
    assert "inputs     sub-01_ResponseData.h5  1.2 KB  sha256 0123456789ab" in out
    assert main(["info", f"{base}/v{fmt}.zarr", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    local = store_info(root / f"v{fmt}.zarr")
    for key in ("dims", "variables", "coords", "rois", "splits", "attrs", "inputs", "zarr_format"):
        assert info[key] == local[key], key


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_validate_and_open_cube_over_http(served, fmt, capsys):
    _, base = served
    url = f"{base}/v{fmt}.zarr"
    assert main(["validate", url]) == 0
    assert capsys.readouterr().out == (
        f"{url}: valid things-fmri cube {{'stimulus': 8, 'channel': 5, 'roi': 1}}\n"
        f"{url}: metadata and coordinates checked; "
        "--deep reads every data chunk and checks its checksum\n"
    )
    cube = open_cube(url)
    assert type(cube["stimulus_id"].values[0]) is str
    np.testing.assert_array_equal(
        cube["response"].sel(stimulus_id="thing_03s.jpg").values, _cube()["response"].values[3]
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_urls_are_one_line_errors(served, capsys):
    _, base = served
    cases = [
        (f"{base}/nope.zarr", "memxr: error: nope.zarr: store: does not exist\n"),
        (f"{base}/", "store: does not exist\n"),
        (f"http://127.0.0.1:{_free_port()}/x.zarr", "x.zarr: store: cannot be read: "),
        ("nosuchproto://x.zarr", "x.zarr: store: cannot open nosuchproto:// URLs"),
    ]
    for url, message in cases:
        for command in ("info", "validate"):
            assert main([command, url]) == 2, (command, url)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and message in err, (command, url, err)
    with pytest.raises(InputError, match=r"^nope.zarr: store: does not exist$"):
        open_cube(f"{base}/nope.zarr")


@pytest.mark.parametrize("fmt", FORMATS)
def test_memory_and_file_urls(served, fmt, capsys):
    root, _ = served
    fs = fsspec.filesystem("memory")
    fs.put(str(root / f"v{fmt}.zarr"), f"/memxr-test/v{fmt}.zarr", recursive=True)
    try:
        url = f"memory://memxr-test/v{fmt}.zarr"
        cube = open_cube(url)
        np.testing.assert_array_equal(cube["response"].values, _cube()["response"].values)
        assert main(["validate", url]) == 0 and main(["info", url]) == 0
        assert "dims       stimulus=8 channel=5 roi=1" in capsys.readouterr().out
        assert main(["validate", "memory://memxr-test/nope.zarr"]) == 2
        assert "nope.zarr: store: does not exist" in capsys.readouterr().err
    finally:
        fs.rm("/memxr-test", recursive=True)
    uri = (root / f"v{fmt}.zarr").as_uri()
    assert main(["validate", uri]) == 0 and main(["info", uri]) == 0
    assert f"(zarr v{fmt}" in capsys.readouterr().out


def test_export_from_an_http_url(served, tmp_path, capsys):
    _, base = served
    out = tmp_path / "copy.nc"
    url = f"{base}/v3.zarr"
    assert main(["export", url, "--netcdf", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["response"].values, _cube()["response"].values)
        assert ds.attrs["history"].endswith("export_netcdf v3.zarr -> copy.nc")
        assert ds.attrs["spec_hash"] == "cafe01"
