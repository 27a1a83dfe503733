"""Tests of memxr.readers.tvsd: things_imgs.mat and THINGS_normMUA.mat against truth.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dask
import h5py
import numpy as np
import pytest

from memxr.errors import InputError
from memxr.readers.formats.hdf5 import H5Array
from memxr.readers.tvsd import MONKEY_AREAS, normalize_monkey, read_normmua, read_things_imgs
from memxr.schema import validate

AREAS = ("V1", "V4", "IT")


def _copy_monkey(src: Path, dst: Path) -> Path:
    """A writable copy of a monkey folder (the shared fixtures are read-only)."""
    for p in src.rglob("*"):
        target = dst / p.relative_to(src)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target)
    return dst


@pytest.fixture
def tvsd_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "tvsd"


@pytest.fixture
def copy_n(tvsd_dir: Path, tmp_path: Path) -> Path:
    src = tvsd_dir / "monkeyN"
    dst = tmp_path / "monkeyN"
    dst.mkdir()
    for name in ("THINGS_normMUA.mat", "_logs/things_imgs.mat"):
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, dst / name)
    return dst


def _roi_means(ds) -> dict[str, dict[str, float]]:
    """Mean of ``response`` over each area's channels, per stimulus id."""
    ids = ds.stimulus_id.values.tolist()
    out = {}
    for area in AREAS:
        means = ds.response.where(ds.area == area).astype(np.float64).mean("channel").values
        out[area] = dict(zip(ids, means.tolist(), strict=True))
    return out


def _assert_roi_truth(ds, truth_m: dict, tol: float = 1e-6) -> None:
    got = _roi_means(ds)
    for area in AREAS:
        want = truth_m["normMUA_roi_mean"][area]
        assert set(got[area]) == set(want)
        for sid, value in want.items():
            assert got[area][sid] == pytest.approx(value, abs=tol), (area, sid)


def _raise(*args, **kwargs):
    raise AssertionError("a big array was read")


# --------------------------------------------------------------------- monkey names


@pytest.mark.parametrize(
    "given, want",
    [("N", "N"), ("n", "N"), ("monkeyN", "N"), ("MonkeyF", "F"), (" f ", "F"), ("monkeyf", "F")],
)
def test_normalize_monkey(given, want):
    assert normalize_monkey(given) == want


@pytest.mark.parametrize("bad", ["X", "monkey", "monkeyNF", "", "V1"])
def test_normalize_monkey_rejects(bad):
    with pytest.raises(InputError) as e:
        normalize_monkey(bad)
    assert e.value.field == "monkey"
    assert "\n" not in str(e.value)


def test_area_ranges_cover_every_channel_once():
    for areas in MONKEY_AREAS.values():
        covered = sorted(c for lo, hi in areas.values() for c in range(lo, hi + 1))
        assert covered == list(range(1, 1025))


# --------------------------------------------------------------------- things_imgs.mat


@pytest.mark.parametrize("monkey", ["N", "F"])
def test_things_imgs_matches_truth(tvsd_dir, truth, monkey):
    imgs = read_things_imgs(tvsd_dir / f"monkey{monkey}" / "_logs" / "things_imgs.mat")
    t = truth["tvsd"][monkey]
    train, test = imgs[imgs.split == "train"], imgs[imgs.split == "test"]
    assert train.stimulus_id.tolist() == t["train_stimuli"]
    assert test.stimulus_id.tolist() == t["test_stimuli"]
    assert train["index"].tolist() == list(range(t["n_train"]))
    assert test["index"].tolist() == list(range(t["n_test"]))
    assert list(imgs.columns) == [
        "split",
        "index",
        "stimulus_id",
        "concept",
        "things_path",
        "class",
        "local_path",
    ]
    first = imgs.iloc[0]
    sid = t["train_stimuli"][0]
    concept = sid.rsplit("_", 1)[0]
    assert first.things_path == f"{concept}/{sid}"
    assert first.concept == concept
    assert first["class"] == concept
    assert first.local_path.endswith("\\" + sid)
    assert not imgs.things_path.str.contains("\\\\", regex=False).any()


def _rewrite(f: h5py.File, name: str, data: np.ndarray, **kwargs) -> None:
    del f[name]
    f.create_dataset(name, data=data, **kwargs)


def test_things_imgs_row_cell_arrays(copy_n, truth):
    """(1, n) cell arrays and (1, len) char arrays read like (n, 1) and (len, 1)."""
    path = copy_n / "_logs" / "things_imgs.mat"
    with h5py.File(path, "r+") as f:
        for group in ("train_imgs", "test_imgs"):
            for field in ("class", "things_path", "local_path"):
                refs = f[f"{group}/{field}"][()]
                _rewrite(f, f"{group}/{field}", refs.reshape(1, -1), dtype=h5py.ref_dtype)
        cell = f["train_imgs/things_path"]
        refs = cell[()]
        codes = f[refs[0, 1]][()]
        f.create_dataset("#refs#/row_char", data=codes.reshape(1, -1))
        refs[0, 1] = f["#refs#/row_char"].ref
        cell[...] = refs
    imgs = read_things_imgs(path)
    assert (
        imgs.stimulus_id.tolist()
        == truth["tvsd"]["N"]["train_stimuli"] + truth["tvsd"]["N"]["test_stimuli"]
    )


def _bad_char(path: Path, data: np.ndarray, index: int = 3) -> None:
    """Point ``train_imgs/things_path[index]`` at a new char array ``data``."""
    with h5py.File(path, "r+") as f:
        f.create_dataset("#refs#/bad_char", data=data)
        cell = f["train_imgs/things_path"]
        refs = cell[()]
        refs.flat[index] = f["#refs#/bad_char"].ref
        cell[...] = refs


@pytest.mark.parametrize(
    "data, words",
    [
        (np.array([[100.0], [111.0], [103.0]]), "dtype float64"),
        (np.array([[0xD800], [0x0041]], dtype=np.uint16), "UTF-16"),
        (np.zeros((0, 1), dtype=np.uint16), "non-empty"),
    ],
    ids=["float-chars", "lone-surrogate", "empty"],
)
def test_things_imgs_undecodable(copy_n, data, words):
    path = copy_n / "_logs" / "things_imgs.mat"
    _bad_char(path, data)
    with pytest.raises(InputError) as e:
        read_things_imgs(path)
    msg = str(e.value)
    assert msg.startswith("things_imgs.mat: train_imgs/things_path[3]: ")
    assert words in msg and "\n" not in msg


def test_things_imgs_missing_struct(copy_n):
    path = copy_n / "_logs" / "things_imgs.mat"
    with h5py.File(path, "r+") as f:
        del f["test_imgs"]
    with pytest.raises(InputError, match=r"^things_imgs\.mat: test_imgs: no such struct$"):
        read_things_imgs(path)


# --------------------------------------------------------------------- normMUA


@pytest.mark.parametrize("monkey", ["N", "F"])
def test_normmua_area_means_match_truth(tvsd_dir, truth, monkey):
    ds = read_normmua(tvsd_dir / f"monkey{monkey}", f"monkey{monkey}", checksum=False)
    t = truth["tvsd"][monkey]
    ids = ds.stimulus_id.values.tolist()
    assert ids == t["train_stimuli"] + t["test_stimuli"]
    assert ds.split.values.tolist() == ["train"] * t["n_train"] + ["test"] * t["n_test"]
    _assert_roi_truth(ds, t)
    # the areas follow the truth's 0-based half-open ranges (F: V1, IT, V4 in channel order)
    for area, (lo, hi) in t["areas_0based_halfopen"].items():
        assert np.flatnonzero(ds.area.values == area).tolist() == list(range(lo, hi))
        roi = ds.roi_mask.sel(roi=area).values
        assert np.flatnonzero(roi).tolist() == list(range(lo, hi))
    assert ds.attrs["subject"] == f"monkey{monkey}"
    assert ds.attrs["dataset"] == "tvsd-normmua"
    assert ds.attrs["units"] == "normalised MUA (z)"


def test_normmua_channel_coords_and_repeats(tvsd_dir, truth):
    path = tvsd_dir / "monkeyN" / "THINGS_normMUA.mat"
    ds = read_normmua(tvsd_dir / "monkeyN", "N", checksum=False)
    assert ds.channel_id.values.tolist() == list(range(1, 1025))
    assert ds.array.values[[0, 63, 64, 1023]].tolist() == [1, 1, 2, 16]
    with h5py.File(path, "r") as f:
        reliab, snr, lats = f["reliab"][()], f["SNR"][()], f["lats"][()]
        snr_max, oracle = f["SNR_max"][()].ravel(), f["oracle"][()].ravel()
        reps, test = f["test_MUA_reps"][()], f["test_MUA"][()]
    np.testing.assert_allclose(ds.reliability.values, np.nanmean(reliab, axis=0))
    np.testing.assert_allclose(ds.snr.values, np.nanmean(snr, axis=0))
    np.testing.assert_allclose(ds.latency.values, np.nanmean(lats, axis=0))
    np.testing.assert_allclose(ds.snr_max.values, snr_max)
    np.testing.assert_allclose(ds.oracle.values, oracle)
    n_test, n_reps = truth["tvsd"]["N"]["n_test"], truth["tvsd"]["N"]["n_reps"]
    assert ds.response_repeats.dims == ("repeat_stimulus", "repeat", "channel")
    assert ds.response_repeats.shape == (n_test, n_reps, 1024)
    np.testing.assert_array_equal(ds.response_repeats.values, reps.transpose(1, 0, 2))
    np.testing.assert_array_equal(ds.response.values[-n_test:], test)
    assert ds.repeat_stimulus_id.values.tolist() == truth["tvsd"]["N"]["test_stimuli"]
    assert ds.n_repeats.values.tolist() == [1] * 36 + [n_reps] * n_test
    assert '"V1": [25, 125]' in ds.attrs["window_ms"]


def test_normmua_is_lazy(tvsd_dir, monkeypatch):
    monkeypatch.setattr(H5Array, "__getitem__", _raise)
    with dask.config.set(scheduler=_raise):
        ds = read_normmua(tvsd_dir / "monkeyF", "F", checksum=False)
        validate(ds)
    assert ds.response.chunks[1] == (1024,)  # whole rows
    assert ds.response.data.npartitions >= 2  # train and test blocks, nothing loaded


def test_normmua_checksums(tvsd_dir):
    ds = read_normmua(tvsd_dir / "monkeyN", "N")
    names = {r["name"]: r for r in json.loads(ds.attrs["inputs"])}
    assert set(names) == {"THINGS_normMUA.mat", "_logs/things_imgs.mat"}
    assert all(len(r["sha256"]) == 64 for r in names.values())


def test_normmua_labels_from_things_tables(tvsd_dir, things_dir):
    ds = read_normmua(
        tvsd_dir / "monkeyN",
        "N",
        memorability=things_dir / "THINGS_Memorability_Scores.csv",
        concepts=things_dir / "Concept_to_category_linking.csv",
        checksum=False,
    )
    mem = dict(zip(ds.stimulus_id.values, ds.memorability.values, strict=True))
    assert np.isnan(mem["goalpost_08s.jpg"])  # the one unscored THINGS image
    scored = [v for k, v in mem.items() if k != "goalpost_08s.jpg"]
    assert all(0.3 < v <= 1.0 for v in scored)
    assert ds.concept.values[0] == "bank"
    assert (ds.category.values != "").any()


def test_normmua_float32(copy_n, truth):
    path = copy_n / "THINGS_normMUA.mat"
    with h5py.File(path, "r+") as f:
        for name in ("train_MUA", "test_MUA"):
            _rewrite(f, name, f[name][()].astype(np.float32))
    ds = read_normmua(copy_n, "N", checksum=False)
    assert ds.response.dtype == np.float32
    _assert_roi_truth(ds, truth["tvsd"]["N"], tol=1e-5)


def test_normmua_other_orientation(copy_n, truth):
    """MATLAB-order arrays (1024 first) are recognised by their sizes."""
    path = copy_n / "THINGS_normMUA.mat"
    with h5py.File(path, "r+") as f:
        reps = f["test_MUA_reps"][()]
        for name in ("train_MUA", "test_MUA"):
            _rewrite(f, name, f[name][()].T.copy(), chunks=(256, 4))
        _rewrite(f, "test_MUA_reps", reps.transpose(2, 1, 0).copy())  # (1024, test, reps)
        _rewrite(f, "reliab", f["reliab"][()].T.copy())
    ds = read_normmua(copy_n, "N", checksum=False)
    _assert_roi_truth(ds, truth["tvsd"]["N"])
    np.testing.assert_array_equal(ds.response_repeats.values, reps.transpose(1, 0, 2))
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(ds.reliability.values, np.nanmean(f["reliab"][()], axis=1))


def _set(path: Path, edit) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


def _dup_ids(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        train, test = f["train_imgs/things_path"], f["test_imgs/things_path"]
        refs = test[()]
        refs.flat[0] = train[()].flat[5]
        test[...] = refs


@pytest.mark.parametrize(
    "target, edit, expected",
    [
        (
            "THINGS_normMUA.mat",
            lambda p: p.write_bytes(b"not hdf5 at all" * 10),
            r"^THINGS_normMUA\.mat: file: not a readable HDF5 file",
        ),
        (
            "THINGS_normMUA.mat",
            lambda p: _set(p, lambda f: f.__delitem__("train_MUA")),
            r"^THINGS_normMUA\.mat: train_MUA: no such dataset$",
        ),
        (
            "THINGS_normMUA.mat",
            lambda p: _set(p, lambda f: _rewrite(f, "train_MUA", f["train_MUA"][:35])),
            r"^THINGS_normMUA\.mat: train_MUA: has 35 stimuli but things_imgs\.mat lists 36",
        ),
        (
            "THINGS_normMUA.mat",
            lambda p: _set(p, lambda f: _rewrite(f, "test_MUA", f["test_MUA"][:, :1000])),
            r"^THINGS_normMUA\.mat: test_MUA: no axis of size 1024",
        ),
        (
            "THINGS_normMUA.mat",
            lambda p: _set(p, lambda f: _rewrite(f, "reliab", f["reliab"][:, :10])),
            r"^THINGS_normMUA\.mat: reliab: no numeric axis of size 1024",
        ),
        (
            "_logs/things_imgs.mat",
            _dup_ids,
            r"^things_imgs\.mat: things_path: duplicate stimulus ids, e\.g\. \['bank_06s\.jpg'\]$",
        ),
        (
            "_logs/things_imgs.mat",
            lambda p: p.unlink(),
            r"^things_imgs\.mat: file: does not exist$",
        ),
    ],
    ids=["not-hdf5", "no-train_MUA", "row-count", "no-1024", "bad-reliab", "dup-ids", "no-imgs"],
)
def test_normmua_bad_input(copy_n, target, edit, expected):
    edit(copy_n / target)
    with pytest.raises(InputError, match=expected) as e:
        read_normmua(copy_n, "N", checksum=False)
    assert "\n" not in str(e.value)


def test_normmua_unknown_monkey(tvsd_dir):
    with pytest.raises(InputError, match=r"^monkeyN: monkey: expected N or F"):
        read_normmua(tvsd_dir / "monkeyN", "monkeyX", checksum=False)
