"""Catalog of stores: rows by name, atomic TSV, cheap content checksums."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memxr.errors import InputError
from memxr.schema import SchemaError, example_cube
from memxr.store import catalog, open_cube, store_info, write_cube
from memxr.store.catalog import COLUMNS, read_catalog, store_checksum, update_catalog

METADATA = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}


def _store(path: Path, seed: int = 0, zarr_format: int = 3, **attrs) -> Path:
    cube = example_cube(n_channel=4, seed=seed)
    cube.attrs.update(attrs)
    return write_cube(cube, path, zarr_format=zarr_format, progress=False)


def test_add_two_stores_and_read_back_with_pandas(tmp_path):
    stores = tmp_path / "stores"
    a = _store(stores / "things-fmri_sub-01.zarr", subject="sub-01", spec_hash="abc123")
    b_cube = example_cube(n_stimulus=5, n_channel=4)
    b_cube.attrs.update(dataset="tvsd-normmua", subject="monkeyN", spec_hash="")
    b = write_cube(b_cube, stores / "tvsd_monkeyN_normmua.zarr", zarr_format=2, progress=False)
    catalog = stores / "catalog.tsv"
    table = update_catalog(catalog, [b, a])  # written sorted by name
    assert table["name"].tolist() == ["things-fmri_sub-01", "tvsd_monkeyN_normmua"]
    plain = pd.read_csv(catalog, sep="\t")
    assert tuple(plain.columns) == COLUMNS and len(plain) == 2
    row = plain.iloc[0]
    assert row["dataset"] == "things-fmri" and row["subject"] == "sub-01"
    assert row["shape"] == "stimulus=6 channel=4 roi=1"
    assert row["spec_hash"] == "abc123" and row["path"] == "things-fmri_sub-01.zarr"
    assert row["created"] == open_cube(a).attrs["created"]
    assert row["checksum"] == store_checksum(a) and len(row["checksum"]) == 64
    assert plain.iloc[1]["dataset"] == "tvsd-normmua" and plain.iloc[1]["shape"].startswith(
        "stimulus=5 "
    )
    assert pd.isna(plain.iloc[1]["spec_hash"])  # "" in the file: empty for pandas
    back = read_catalog(catalog)
    assert back["spec_hash"].tolist() == ["abc123", ""]  # read_catalog keeps text
    pd.testing.assert_frame_equal(back, table)
    lines = catalog.read_text().splitlines()
    assert lines[0] == "\t".join(COLUMNS) and len(lines) == 3
    assert all(line.count("\t") == len(COLUMNS) - 1 for line in lines)
    # paths are relative to the catalog: the catalog resolves its stores anywhere
    assert (catalog.parent / back["path"][1]).resolve() == b.resolve()
    assert not list(stores.glob(".catalog.tsv.partial-*"))


def test_replace_by_name_and_relative_paths(tmp_path):
    catalog = tmp_path / "catalogs" / "catalog.tsv"
    first = _store(tmp_path / "old" / "x.zarr", seed=0)
    other = _store(tmp_path / "old" / "y.zarr", seed=1)
    update_catalog(catalog, [first, other])
    newer = _store(tmp_path / "new" / "x.zarr", seed=2, subject="sub-02")
    table = update_catalog(catalog, newer)
    assert table["name"].tolist() == ["x", "y"]
    x = table.set_index("name").loc["x"]
    assert x["path"] == "../new/x.zarr" and x["subject"] == "sub-02"
    assert x["checksum"] == store_checksum(newer) != store_checksum(first)
    assert table.set_index("name").loc["y", "path"] == "../old/y.zarr"
    pd.testing.assert_frame_equal(read_catalog(catalog), table)
    # the same stores again: the catalog does not change
    before = catalog.read_bytes()
    update_catalog(catalog, [newer, other])
    assert catalog.read_bytes() == before


def test_nothing_written_on_bad_input(tmp_path):
    catalog = tmp_path / "catalog.tsv"
    good = _store(tmp_path / "a.zarr")
    update_catalog(catalog, [good])
    before = catalog.read_bytes()
    with pytest.raises(InputError, match=r"^nope.zarr: store: does not exist$"):
        update_catalog(catalog, [_store(tmp_path / "b.zarr"), tmp_path / "nope.zarr"])
    bad = tmp_path / "bad.zarr"
    example_cube().drop_vars("memorability").to_zarr(bad, zarr_format=2)
    with pytest.raises(SchemaError, match="missing coordinate 'memorability'"):
        update_catalog(catalog, [bad])
    twin = _store(tmp_path / "elsewhere" / "a.zarr")
    with pytest.raises(InputError, match=r"^a.zarr: name: same name as"):
        update_catalog(catalog, [good, twin])
    assert catalog.read_bytes() == before
    assert sorted(p.name for p in tmp_path.glob(".catalog*")) == []
    broken = tmp_path / "broken.tsv"
    broken.write_text("name\tdataset\nx\tthings-fmri\n")
    with pytest.raises(InputError, match=r"^broken.tsv: subject: missing column$"):
        update_catalog(broken, [good])
    with pytest.raises(InputError, match=r"^none.tsv: catalog: does not exist$"):
        read_catalog(tmp_path / "none.tsv")


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_checksum_changes_with_data_not_with_reading(tmp_path, zarr_format):
    path = _store(tmp_path / "c.zarr", seed=0, zarr_format=zarr_format)
    first = store_checksum(path)
    cube = open_cube(path)  # reading (lazy, then values) leaves it unchanged
    values = cube["response"].values
    store_info(path)
    assert store_checksum(path) == first
    # a copy has the same checksum
    copy = shutil.copytree(path, tmp_path / "copy.zarr")
    assert store_checksum(copy) == first and store_checksum(copy, full=True) == store_checksum(
        path, full=True
    )
    # new data written by memxr: new checksum (shapes and file sizes are the same)
    new = example_cube(n_channel=4, seed=1)
    path = write_cube(new, path, zarr_format=zarr_format, overwrite=True, progress=False)
    assert not np.array_equal(open_cube(path)["response"].values, values)
    assert store_checksum(path) != first
    # a missing chunk changes it
    second = store_checksum(path)
    files = sorted((path / "response").rglob("*"))
    next(p for p in files if p.is_file() and p.name not in METADATA).unlink()
    assert store_checksum(path) != second


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_checksum_samples_large_arrays(tmp_path, monkeypatch):
    cube = example_cube(n_stimulus=100, n_channel=200)  # one 160 kB chunk of float64
    path = write_cube(cube, tmp_path / "c.zarr", progress=False)
    chunk = path / "response" / "c" / "0" / "0"
    assert chunk.stat().st_size == 160_000 + 4  # and its CRC-32C
    small = store_checksum(path)
    _flip(chunk, 80_000)  # an array below WHOLE_ARRAY_BYTES is hashed whole
    assert store_checksum(path) != small
    monkeypatch.setattr(catalog, "WHOLE_ARRAY_BYTES", 100_000)  # now response is sampled
    sampled, full = store_checksum(path), store_checksum(path, full=True)
    assert sampled not in (small, full)
    _flip(chunk, 100_000)  # between the two samples: only the full checksum sees it
    assert store_checksum(path) == sampled and store_checksum(path, full=True) != full
    _flip(chunk, 160_000 - 10)  # in the last 32 KiB
    assert store_checksum(path) != sampled
    before = store_checksum(path)
    mask = path / "roi_mask" / "c" / "0" / "0"  # coordinates: still hashed whole
    _flip(mask, mask.stat().st_size // 2)
    assert store_checksum(path) != before


def test_checksum_errors(tmp_path):
    with pytest.raises(InputError, match=r"^nope.zarr: store: does not exist$"):
        store_checksum(tmp_path / "nope.zarr")
    plain = tmp_path / "plain.zarr"
    example_cube().to_zarr(plain, zarr_format=3, consolidated=False)
    with pytest.raises(InputError, match=r"^plain.zarr: store: has no consolidated metadata"):
        store_checksum(plain)
