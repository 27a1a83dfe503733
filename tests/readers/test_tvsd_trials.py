"""Tests of memxr.readers.tvsd_trials: THINGS_MUA_trials.mat against truth.json."""

from __future__ import annotations

import shutil
from pathlib import Path

import dask
import h5py
import numpy as np
import pytest
import scipy.io

from memxr.errors import InputError
from memxr.readers.formats.hdf5 import H5Array
from memxr.readers.tvsd import read_normmua
from memxr.readers.tvsd_trials import read_mapping, read_trials, repeat_index, slab_plan
from memxr.schema import validate

AREAS = ("V1", "V4", "IT")
MAPPING = "_logs/1024chns_mapping_20220105.mat"
FILES = ("THINGS_MUA_trials.mat", "_logs/things_imgs.mat", MAPPING)


@pytest.fixture
def src(fixtures_dir: Path) -> Path:
    return fixtures_dir / "tvsd" / "monkeyN"


@pytest.fixture
def copy_n(src: Path, tmp_path: Path) -> Path:
    """A writable copy of monkey N's trial files (without normMUA)."""
    dst = tmp_path / "monkeyN"
    for name in FILES:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def reference(fixtures_dir: Path):
    """The fixture's cube, computed once."""
    ds = read_trials(fixtures_dir / "tvsd" / "monkeyN", "N", checksum=False)
    return ds.compute()


def _window_means(ds, window_ms: dict) -> dict[str, dict[str, float]]:
    keys = [f"{s}:{i}" for s, i in zip(ds.split.values, ds.stimulus_id.values, strict=True)]
    out = {}
    for area in AREAS:
        lo, hi = window_ms[area]
        in_window = (ds.time >= lo) & (ds.time < hi)
        r = ds.response.where(ds.area == area, drop=True).where(in_window, drop=True)
        out[area] = dict(zip(keys, r.mean(["channel", "time"]).values.tolist(), strict=True))
    return out


def _assert_window_truth(ds, truth: dict, tol: float = 1e-6) -> None:
    t = truth["tvsd"]["N"]["trials"]
    got = _window_means(ds, t["window_ms"])
    for area in AREAS:
        want = t["window_mean"][area]
        assert set(got[area]) == set(want)
        for key, value in want.items():
            assert got[area][key] == pytest.approx(value, rel=tol, abs=tol), (area, key)


def _assert_same(ds, ref) -> None:
    np.testing.assert_allclose(ds.response.values, ref.response.values, rtol=1e-12)
    np.testing.assert_allclose(ds.response_repeats.values, ref.response_repeats.values, rtol=1e-12)


def _raise(*args, **kwargs):
    raise AssertionError("a big array was read")


def _rewrite(f: h5py.File, name: str, data: np.ndarray, **kwargs) -> None:
    del f[name]
    f.create_dataset(name, data=data, **kwargs)


# --------------------------------------------------------------------- values


def test_window_means_match_truth(reference, truth):
    t = truth["tvsd"]["N"]
    assert reference.sizes["time"] == t["trials"]["n_timebins"]
    assert [reference.time.values[0], reference.time.values[-1]] == t["trials"]["tb_ms"]
    assert reference.stimulus_id.values.tolist() == t["train_stimuli"] + t["test_stimuli"]
    _assert_window_truth(reference, truth)
    assert reference.attrs["dataset"] == "tvsd-trials"
    assert reference.attrs["subject"] == "monkeyN"
    assert reference.response.dims == ("stimulus", "channel", "time")


def test_mapping_and_repeats_by_hand(src, reference):
    """Physical channel c is recording position mapping[c]-1; repeats follow the rep column."""
    mapping = scipy.io.loadmat(src / MAPPING)["mapping"].ravel().astype(int)
    with h5py.File(src / "THINGS_MUA_trials.mat", "r") as f:
        raw = f["ALLMUA"][()]  # (time, recording channel, trial), 12 MB
        allmat = f["ALLMAT"][()].T.astype(int)
    n_train = 36
    for test_idx in (1, 3):
        rows = allmat[allmat[:, 2] == test_idx]
        rows = rows[np.argsort(rows[:, 3], kind="stable")]
        trials = rows[:, 0] - 1
        got = reference.response_repeats.isel(repeat_stimulus=test_idx - 1).values
        for r, k in enumerate(trials):
            np.testing.assert_array_equal(got[r], raw[:, mapping - 1, k].T)
        mean = reference.response.isel(stimulus=n_train + test_idx - 1).values
        np.testing.assert_allclose(mean, raw[:, mapping - 1][:, :, trials].mean(-1).T)
    k = int(allmat[allmat[:, 1] == 7, 0][0]) - 1
    np.testing.assert_array_equal(reference.response.values[6], raw[:, mapping - 1, k].T)
    assert reference.n_repeats.values.tolist() == [1] * 36 + [5] * 4


def test_read_mapping_fixture(src, tmp_path):
    m = read_mapping(src / MAPPING)
    assert sorted(m.tolist()) == list(range(1024))
    assert m[0] == 664  # the file's first entry, 665, made 0-based
    hdf5storage = pytest.importorskip("hdf5storage")
    v73 = tmp_path / "1024chns_mapping_v73.mat"
    hdf5storage.savemat(str(v73), {"mapping": (m + 1.0)[None, :]}, format="7.3")
    np.testing.assert_array_equal(read_mapping(v73), m)


@pytest.mark.parametrize("chunk_bytes", [4 << 20, 400_000], ids=["time-slabs", "channel-blocks"])
def test_small_chunks_same_values(fixtures_dir, reference, chunk_bytes):
    ds = read_trials(
        fixtures_dir / "tvsd" / "monkeyN", "N", checksum=False, chunk_bytes=chunk_bytes
    )
    assert max(ds.response.data.chunks[2]) < 30 or max(ds.response.data.chunks[1]) < 1024
    _assert_same(ds, reference)


def test_allmua_transposed(copy_n, reference, truth):
    """ALLMUA as (trials, 1024, tb) and ALLMAT as (trials, 7), contiguous, give the same cube."""
    with h5py.File(copy_n / "THINGS_MUA_trials.mat", "r+") as f:
        _rewrite(f, "ALLMUA", f["ALLMUA"][()].transpose(2, 1, 0).copy())
        _rewrite(f, "ALLMAT", f["ALLMAT"][()].T.copy())
    ds = read_trials(copy_n, "N", checksum=False, chunk_bytes=1 << 20)
    _assert_same(ds, reference)
    _assert_window_truth(ds, truth)
    assert "reliability" in reference.coords and "reliability" not in ds.coords  # no normMUA


def test_allmua_chunked_gzip(copy_n, reference):
    """An ALLMUA chunked and gzipped with another chunk shape gives the same cube."""
    with h5py.File(copy_n / "THINGS_MUA_trials.mat", "r+") as f:
        data = f["ALLMUA"][()]
        _rewrite(f, "ALLMUA", data, chunks=(3, 256, 16), compression="gzip", shuffle=True)
    ds = read_trials(copy_n, "N", checksum=False, chunk_bytes=2 << 20)
    (read,) = [k for k in ds.response.data.dask.layers if k.startswith("tvsd-allmua-")]
    bands = [task[3:5] for task in ds.response.data.dask.layers[read].values()]
    assert sorted(bands) == [(t, min(t + 3, 30)) for t in range(0, 30, 3)]  # whole HDF5 chunks
    assert set(ds.response.data.chunks[2]) == {1}  # pieces of one time bin
    _assert_same(ds, reference)


def test_allmat_six_columns(copy_n, reference):
    """6 ALLMAT columns: same means; repeats then follow trial order."""
    with h5py.File(copy_n / "THINGS_MUA_trials.mat", "r+") as f:
        allmat = f["ALLMAT"][()]
        _rewrite(f, "ALLMAT", np.delete(allmat, 5, axis=0))  # drop `correct`
    ds = read_trials(copy_n, "N", checksum=False)
    np.testing.assert_allclose(ds.response.values, reference.response.values, rtol=1e-12)
    reps = ds.response_repeats.values
    np.testing.assert_allclose(
        np.sort(reps, axis=1), np.sort(reference.response_repeats.values, axis=1)
    )
    test_rows = allmat.T[allmat[2] == 1]
    first = int(test_rows[0, 0]) - 1  # the first trial of test image 1 comes first
    with h5py.File(copy_n / "THINGS_MUA_trials.mat", "r") as f:
        raw = f["ALLMUA"][:, :, first]
    mapping = read_mapping(copy_n / MAPPING)
    np.testing.assert_array_equal(reps[0, 0], raw[:, mapping].T)


def test_recording_days(src, reference):
    """``day`` of each train stimulus and ``repeat_day`` of each test repeat: ALLMAT's last
    column, read by hand here; 0 for test stimuli and padding."""
    with h5py.File(src / "THINGS_MUA_trials.mat", "r") as f:
        allmat = f["ALLMAT"][()].T  # small: trials x 7
    train, test = allmat[allmat[:, 1] > 0], allmat[allmat[:, 2] > 0]
    n_train = int(train[:, 1].max())
    day = reference.day.values
    assert day.dtype == np.int64 and (day[n_train:] == 0).all()
    np.testing.assert_array_equal(day[train[:, 1].astype(int) - 1], train[:, 6])
    rep_day = reference.repeat_day.values
    assert reference.repeat_day.dims == ("repeat_stimulus", "repeat")
    for i in range(rep_day.shape[0]):
        rows = test[test[:, 2] == i + 1]
        rows = rows[np.argsort(rows[:, 3])]
        n = len(rows)
        np.testing.assert_array_equal(rep_day[i, :n], rows[:, 6])
        assert (rep_day[i, n:] == 0).all()


def test_recording_days_six_columns(copy_n, reference):
    """The 6-column ALLMAT of norm_MUA.m's comment ends with the day too."""
    with h5py.File(copy_n / "THINGS_MUA_trials.mat", "r+") as f:
        _rewrite(f, "ALLMAT", np.delete(f["ALLMAT"][()], 5, axis=0))
    ds = read_trials(copy_n, "N", checksum=False)
    np.testing.assert_array_equal(ds.day.values, reference.day.values)
    np.testing.assert_array_equal(np.sort(ds.repeat_day.values, 1),
                                  np.sort(reference.repeat_day.values, 1))  # fmt: skip


def test_dtype_float32_and_reliability(fixtures_dir, reference, tmp_path, src):
    dst = tmp_path / "monkeyN"
    for name in (*FILES, "THINGS_normMUA.mat"):
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, dst / name)
    ds = read_trials(dst, "N", checksum=False, dtype="float32")
    assert ds.response.dtype == np.float32 and ds.response_repeats.dtype == np.float32
    np.testing.assert_allclose(ds.response.values, reference.response.values, rtol=1e-6)
    norm = read_normmua(dst, "N", checksum=False)
    np.testing.assert_array_equal(ds.reliability.values, norm.reliability.values)


def test_is_lazy_and_shares_reads(fixtures_dir, monkeypatch):
    monkeypatch.setattr(H5Array, "__getitem__", _raise)
    monkeypatch.setattr(H5Array, "read_into", _raise)
    with dask.config.set(scheduler=_raise):
        ds = read_trials(
            fixtures_dir / "tvsd" / "monkeyN", "N", checksum=False, chunk_bytes=1 << 20
        )
        validate(ds)
    reads = {k for k in ds.response.data.dask.layers if k.startswith("tvsd-allmua-")}
    assert len(reads) == 1
    assert reads <= set(ds.response_repeats.data.dask.layers)


def _previous(raw, allmat, mapping, n_stim, n_train, dtype):
    """The previous implementation: a sparse product with weights 1 / count for the means,
    a take along trials for the repeats (whole ALLMUA in memory: small files only)."""
    from scipy import sparse

    trial_stim = np.where(allmat[:, 1] > 0, allmat[:, 1] - 1, n_train + allmat[:, 2] - 1)
    rep_index = repeat_index(trial_stim, allmat[:, 3], n_train, n_stim - n_train)
    block = raw[:, mapping - 1]  # (time, physical channel, trial)
    n_t, n_c, n_k = block.shape
    counts = np.bincount(trial_stim, minlength=n_stim)
    weights = 1.0 / counts[trial_stim]
    onehot = sparse.csr_matrix((weights, (trial_stim, np.arange(n_k))), shape=(n_stim, n_k))
    mean = np.asarray(onehot @ block.reshape(n_t * n_c, n_k).T)
    mean = mean.reshape(n_stim, n_t, n_c).transpose(0, 2, 1).astype(dtype)
    mean[counts == 0] = np.nan
    flat = rep_index.ravel()
    reps = np.take(block, np.maximum(flat, 0), axis=2).astype(dtype)
    reps[:, :, flat < 0] = np.nan
    return mean, reps.reshape(n_t, n_c, *rep_index.shape).transpose(2, 3, 1, 0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("odd_design", [False, True], ids=["real-design", "shown-twice-never"])
def test_bit_identical_to_previous_implementation(copy_n, src, dtype, odd_design):
    """Means and repeats equal the previous sparse-product implementation bit for bit, also
    for a train image shown twice and one never shown, and with channel pieces."""
    path = copy_n / "THINGS_MUA_trials.mat"
    if odd_design:
        with h5py.File(path, "r+") as f:
            m = f["ALLMAT"][()]
            train = np.flatnonzero(m[1] > 0)
            m[1, train[1]] = m[1, train[0]]  # shown twice; its old image never
            f["ALLMAT"][...] = m
    with h5py.File(path, "r") as f:
        raw, allmat = f["ALLMUA"][()], f["ALLMAT"][()].T.astype(np.int64)
    mapping = scipy.io.loadmat(src / MAPPING)["mapping"].ravel().astype(int)
    mean, reps = _previous(raw, allmat, mapping, 40, 36, dtype)
    for chunk_bytes in (64 << 20, 40 * 256 * np.dtype(dtype).itemsize):
        ds = read_trials(copy_n, "N", checksum=False, dtype=dtype, chunk_bytes=chunk_bytes)
        got_mean, got_reps = ds.response.values, ds.response_repeats.values
        assert got_mean.dtype == dtype and got_reps.dtype == dtype
        np.testing.assert_array_equal(got_mean, mean)
        np.testing.assert_array_equal(got_reps, reps)
        assert np.isnan(got_mean).any() == odd_design


# --------------------------------------------------------------------- helpers


def test_slab_plan_bounds():
    """Whole time bins are read (all channels: never a channel cut of a chunk spanning them);
    output pieces are halved along channels until they fit the chunk size."""
    real = (300, 1024, 25000)
    for itemsize, chunk_bytes, channels in ((4, 64 << 20, 512), (8, 64 << 20, 256),
                                            (4, 16 << 20, 128), (4, 256 << 20, 1024)):  # fmt: skip
        t, c = slab_plan(real, itemsize, n_stim=22348, chunk_bytes=chunk_bytes)
        assert (t, c) == (1, channels)
        assert 22348 * c * itemsize <= chunk_bytes < 22348 * 2 * c * itemsize or c == 1024
    assert slab_plan((300, 1024, 2000), 8, n_stim=1500, chunk_bytes=64 << 20, time_chunk=3) == (3, 1024)
    assert slab_plan((30, 1024, 56), 8, n_stim=40, chunk_bytes=1 << 30) == (1, 1024)
    assert slab_plan((30, 1024, 56), 8, n_stim=40, chunk_bytes=100) == (1, 1)


def test_repeat_index_orders_and_pads():
    stim = np.array([5, 6, 5, 7, 6, 5])
    rep = np.array([3, 1, 1, 1, 2, 2])
    got = repeat_index(stim, rep, first=5, n=3)
    assert got.tolist() == [[2, 5, 0], [1, 4, -1], [3, -1, -1]]
    assert repeat_index(stim, None, first=5, n=3).tolist() == [[0, 2, 5], [1, 4, -1], [3, -1, -1]]


# --------------------------------------------------------------------- bad input


def _edit_trials(path: Path, edit) -> None:
    with h5py.File(path / "THINGS_MUA_trials.mat", "r+") as f:
        edit(f)


def _allmat(f: h5py.File, row: int, col: int, value: float) -> None:
    m = f["ALLMAT"][()]
    m[col, row] = value
    f["ALLMAT"][...] = m


def _mapping(values: np.ndarray):
    return lambda d: scipy.io.savemat(d / MAPPING, {"mapping": values})


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda d: _edit_trials(d, lambda f: _rewrite(f, "ALLMUA", f["ALLMUA"][:, :1000, :])),
            r"^THINGS_MUA_trials\.mat: ALLMUA: no axis of size 1024 \(shape \(30, 1000, 56\)\)$",
        ),
        (
            _mapping(np.r_[1.0, np.arange(1.0, 1024.0)]),
            r"^1024chns_mapping_20220105\.mat: mapping: mapping is not a permutation of 1\.\.1024",
        ),
        (
            _mapping(np.arange(1.0, 1000.0)),
            r"^1024chns_mapping_20220105\.mat: mapping: mapping is not a permutation",
        ),
        (
            lambda d: (d / MAPPING).write_bytes(b"MATLAB 5.0 MAT-file garbage" * 9),
            r"^1024chns_mapping_20220105\.mat: file: not a readable MATLAB file",
        ),
        (
            lambda d: shutil.copyfile(d / MAPPING, d / "_logs" / "1024chns_mapping_2023.mat"),
            r"^_logs: 1024chns_mapping_\*\.mat: expected exactly one channel mapping file",
        ),
        (
            lambda d: _edit_trials(d, lambda f: _allmat(f, 0, 1, 3)),
            r"^THINGS_MUA_trials\.mat: ALLMAT: trial 1 \(train_idx 3, test_idx 2\): exactly one",
        ),
        (
            lambda d: _edit_trials(d, lambda f: _allmat(f, 1, 1, 37)),
            r"^THINGS_MUA_trials\.mat: ALLMAT: trial 2 \(train_idx 37, test_idx 0\): train_idx beyond",
        ),
        (
            lambda d: _edit_trials(d, lambda f: _rewrite(f, "tb", np.arange(29.0))),
            r"^THINGS_MUA_trials\.mat: ALLMUA: shape \(30, 1024, 56\) does not match len\(tb\)=29",
        ),
        (
            lambda d: _edit_trials(d, lambda f: f.__delitem__("ALLMAT")),
            r"^THINGS_MUA_trials\.mat: ALLMAT: no such dataset$",
        ),
        (
            lambda d: (d / "THINGS_MUA_trials.mat").write_bytes(b"\0" * 2048),
            r"^THINGS_MUA_trials\.mat: file: not a readable HDF5 file",
        ),
    ],
    ids=[
        "no-1024",
        "mapping-duplicate",
        "mapping-short",
        "mapping-garbage",
        "two-mappings",
        "train-and-test",
        "index-beyond",
        "tb-length",
        "no-ALLMAT",
        "not-hdf5",
    ],
)
def test_bad_input(copy_n, edit, expected):
    edit(copy_n)
    with pytest.raises(InputError, match=expected) as e:
        read_trials(copy_n, "N", checksum=False)
    assert "\n" not in str(e.value)


def test_unknown_monkey(copy_n):
    with pytest.raises(InputError, match=r"^monkeyN: monkey: expected N or F"):
        read_trials(copy_n, "K", checksum=False)
