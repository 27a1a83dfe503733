"""Tests of memxr.synth: formats (as pandas, hdf5storage, scipy and h5py see them), planted
effects, determinism and flat memory, at tiny scales."""

from __future__ import annotations

import filecmp
import json
import tracemalloc
from pathlib import Path

import h5py
import hdf5storage
import numpy as np
import pandas as pd
import pytest
import scipy.io

from memxr.readers.formats.pandas_hdf import create_response_frame
from memxr.schema import AREA_WINDOWS
from memxr.synth import (
    REAL_SIZES,
    InfeasibleTarget,
    Model,
    Stimuli,
    sizes,
    synthesize,
    write_things_fmri_subject,
    write_tvsd_monkey,
)
from memxr.synth.model import Moments, partial, solve
from memxr.synth.tvsd import AREAS

SEED = 3


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> tuple[Path, dict]:
    """Scale 0.001 with generated names: 3 subjects, 2 monkeys, trials."""
    out = tmp_path_factory.mktemp("gen")
    return out, synthesize(out, scale=0.001, seed=SEED)


@pytest.fixture(scope="module")
def real(tmp_path_factory, things_dir) -> tuple[Path, dict]:
    """Scale 0.001 with the real THINGS names and scores."""
    out = tmp_path_factory.mktemp("real")
    return out, synthesize(out, scale=0.001, things_dir=things_dir, subjects=("sub-01",))


def _betas(out: Path) -> Path:
    return out / "things-fmri" / "betas_csv"


def _monkey(out: Path, m: str = "N") -> Path:
    return out / "tvsd" / f"monkey{m}"


def _scores(out: Path) -> pd.Series:
    table = pd.read_csv(out / "things" / "THINGS_Memorability_Scores.csv")
    return table.set_index("image_name")["cr"]


def _layout(path: Path) -> list[tuple]:
    """Every object's kind, dtype class, layout, and every attribute's HDF5 type and space."""
    out = []

    def attrs(name, oid):
        for i in range(h5py.h5a.get_num_attrs(oid)):
            a = h5py.h5a.open(oid, index=i)
            t = a.get_type()
            key = [
                name,
                a.get_name().decode(),
                t.get_class(),
                a.get_space().get_simple_extent_type(),
            ]
            if t.get_class() == h5py.h5t.STRING:
                key += [t.get_strpad(), t.get_cset()]
            out.append(tuple(key))

    def visit(name, obj):
        attrs(name, obj.id)
        if isinstance(obj, h5py.Dataset):
            out.append(
                (name, obj.id.get_type().get_class(), obj.id.get_create_plist().get_layout())
            )

    with h5py.File(path, "r") as f:
        attrs("/", f.id)
        f.visititems(visit)
    return out


# -- sizes ---------------------------------------------------------------------------------


def test_sizes_policy():
    tiny = sizes(0.001)
    assert (tiny["n_voxels"], tiny["n_fmri_concepts"], tiny["n_fmri_test"]) == (300, 8, 4)
    assert (tiny["n_sessions"], tiny["n_reps"]) == (3, 3)
    assert (tiny["n_timebins"], tiny["bin_ms"]) == (30, 10.0)
    assert tiny["n_channels"] == 1024 and tiny["n_days"] <= tiny["n_reps"]
    full = sizes(1.0)
    assert full["n_voxels"] == 211_339 and full["n_tvsd_concepts"] == 1854
    assert full["n_fmri_concepts"] * 12 + full["n_fmri_test"] * full["n_sessions"] == 9840
    assert (full["n_timebins"], full["bin_ms"]) == (300, 1.0)
    for scale in (0.001, 0.05, 0.2, 0.5, 1.0):
        s = sizes(scale)
        assert s["n_timebins"] * s["bin_ms"] == 300  # tb spans -100..~199 ms
    assert sizes(0.01, n_voxels=1234, n_reps=5)["n_voxels"] == 1234
    with pytest.raises(ValueError, match="unknown keys"):
        sizes(0.01, n_voxel=5)
    with pytest.raises(ValueError, match="1024"):
        sizes(0.01, n_channels=512)
    assert REAL_SIZES["n_channels"] == 1024


# -- fMRI ----------------------------------------------------------------------------------


def test_fmri_files_shapes_and_pandas(gen):
    out, truth = gen
    d = _betas(out)
    for sub in ("sub-01", "sub-02", "sub-03"):
        for kind in ("ResponseData.h5", "VoxelMetadata.csv", "StimulusMetadata.csv"):
            assert (d / f"{sub}_{kind}").exists()
    stim = pd.read_csv(d / "sub-01_StimulusMetadata.csv")
    assert list(stim.columns) == [
        "trial_type", "session", "run", "subject_id", "trial_id", "stimulus", "concept",
    ]  # fmt: skip
    assert len(stim) == 8 * 12 + 4 * 3 == truth["fmri"]["sub-01"]["n_trials"]
    counts = stim.groupby(["trial_type", "stimulus"]).size()
    assert set(counts["train"]) == {1} and set(counts["test"]) == {3}
    assert (stim.groupby("session").trial_type.nunique() == 2).all()  # interleaved
    with h5py.File(d / "sub-01_ResponseData.h5", "r") as f:
        values = f["ResponseData/block0_values"]
        assert values.shape == (300, len(stim)) and values.dtype == np.float32
        assert values.chunks is None  # contiguous: voxel rows are sequential
        h5_values = values[()]
        ids = f["ResponseData/block1_values"][:, 0]
    df = pd.read_hdf(d / "sub-01_ResponseData.h5", "ResponseData")
    assert list(df.columns) == ["voxel_id", *range(len(stim))]
    np.testing.assert_array_equal(df.drop(columns="voxel_id").to_numpy(), h5_values)
    np.testing.assert_array_equal(df["voxel_id"].to_numpy(), ids)
    meta = pd.read_csv(d / "sub-01_VoxelMetadata.csv")
    np.testing.assert_array_equal(meta["voxel_id"].to_numpy(), ids)


def test_fmri_float64_and_voxel_ids(tmp_path):
    t = write_things_fmri_subject(
        tmp_path, "sub-02", n_voxels=300, n_concepts=2, n_test=2, n_sessions=3,
        dtype="float64", voxel_id_start=1000, block_rows=100,
    )  # fmt: skip
    df = pd.read_hdf(tmp_path / "sub-02_ResponseData.h5", "ResponseData")
    assert t["dtype"] == "float64" and df[0].dtype == np.float64
    assert df["voxel_id"].iloc[0] == 1000 and df.shape == (300, 1 + 2 * 12 + 2 * 3)
    assert (pd.read_csv(tmp_path / "sub-02_StimulusMetadata.csv").subject_id == 2).all()


def test_voxel_metadata_columns(gen):
    out, truth = gen
    meta = pd.read_csv(_betas(out) / "sub-01_VoxelMetadata.csv")
    assert meta.shape == (300, 222)
    head = ["voxel_id", "subject_id", "voxel_x", "voxel_y", "voxel_z", "nc_singletrial"]
    assert list(meta.columns[:6]) == head
    rois = ["V1", "V2", "V3", "hV4", "VO1", "VO2", "LO1 (prf)", "LO2 (prf)", "TO1", "TO2", "V3b"]
    rois += ["V3a", *(f"{h}{r}" for r in "EBA FFA OFA STS PPA RSC TOS LOC".split() for h in "lr")]
    assert list(meta.columns[13:42]) == [*rois, "IT"]
    for col in [*rois, "IT"]:
        assert meta[col].isin([0, 1]).all() and meta[col].sum() > 0, col
    assert "glasser-p9-\n46v" in meta.columns and "glasser-a9-\n46v" in meta.columns
    it_cols = [f"glasser-{p}" for p in "TE1p TE2p FFC VVC VMV2 VMV3 PHA1 PHA2 PHA3".split()]
    np.testing.assert_array_equal(meta[it_cols].any(axis=1).astype(int), meta["IT"])
    category = [c for c in meta.columns[25:41]]
    assert (meta[category].sum(axis=1) > 1).any()  # category ROIs overlap
    assert meta.filter(like="glasser-").sum(axis=1).eq(1).all()  # one parcel per voxel
    assert truth["fmri"]["sub-01"]["n_roi_voxels"]["V1"] == meta["V1"].sum()


def test_fmri_layout_matches_pandas_fixture(tmp_path, fixtures_dir):
    fixture = fixtures_dir / "things-fmri" / "betas_csv" / "sub-01_ResponseData.h5"
    mine = tmp_path / "x.h5"
    with h5py.File(mine, "w") as f:
        create_response_frame(f, "ResponseData", 300, 41, "float32", "voxel_id")
    assert _layout(mine) == _layout(fixture)
    with h5py.File(mine, "r") as a, h5py.File(fixture, "r") as b:
        for name in ("axis0", "block0_items"):  # the same pickled labels, byte for byte
            assert bytes(a[f"ResponseData/{name}"][0]) == bytes(b[f"ResponseData/{name}"][0])


def _tolerance(n: int) -> float:
    """Four standard errors of a correlation near 0.2 over ``n`` images of 12-image concepts.

    The sampling variance of r is about (1 - r^2)^2 / n times a design effect
    1 + (k - 1) icc_x icc_y for concepts of k images (intra-concept correlations of the
    response and of memorability of at most 0.35 and 0.2 here: 1.8); four of them leave
    a false failure rate below 1e-4 per ROI.
    """
    return 4 * np.sqrt(1.8 / n)


def _roi_columns(meta: pd.DataFrame, roi: str) -> np.ndarray:
    cols = [roi] if roi in meta else [f"l{roi}", f"r{roi}"]
    return meta[cols].any(axis=1).to_numpy()


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> tuple[Path, dict]:
    """4,800 train images, few voxels, normMUA only: planted effects measurable in the files."""
    out = tmp_path_factory.mktemp("many")
    return out, synthesize(
        out, scale=0.001, seed=11, subjects=("sub-01",), monkeys=("N",), trials=False,
        n_fmri_concepts=400, n_tvsd_concepts=400, n_tvsd_test=12, n_reps=6, n_days=3,
    )  # fmt: skip


def test_fmri_planted_population_correlations(many):
    """Every ROI mean (overlapping ROIs included: FFA voxels are IT voxels) has the planted
    correlations with the scores and the covariate; the truth's identities hold."""
    out, truth = many
    d = _betas(out)
    meta = pd.read_csv(d / "sub-01_VoxelMetadata.csv")
    stim = pd.read_csv(d / "sub-01_StimulusMetadata.csv")
    with h5py.File(d / "sub-01_ResponseData.h5", "r") as f:
        values = f["ResponseData/block0_values"][()]  # 300 x 4812
    train = (stim.trial_type == "train").to_numpy()
    images = stim.stimulus[train]
    mem = _scores(out).reindex(images).to_numpy()
    low = pd.read_csv(out / "covariates.csv", index_col="image_name").low_level
    low = low.reindex(images).to_numpy()
    ok = np.isfinite(mem)
    rois = truth["fmri"]["sub-01"]["rois"]
    model = truth["model"]
    assert set(rois) >= {"FFA", "PPA", "LOC", "EBA", "IT", "V1", "hV4"}
    tol = _tolerance(int(ok.sum()))
    for roi in ("FFA", "IT", "PPA", "LOC", "EBA", "V1", "hV4", "VO2"):
        x = values[_roi_columns(meta, roi)][:, train].mean(0)
        t = rois[roi]
        assert abs(np.corrcoef(x[ok], mem[ok])[0, 1] - t["r"]) < tol, roi
        assert abs(np.corrcoef(x, low)[0, 1] - t["r_covariate"]) < tol, roi
    for roi, target in model["effects"]["fmri"].items():
        assert rois[roi]["r"] == pytest.approx(target, abs=1e-9) == rois[roi]["r_target"]
    for roi, target in model["confounds"]["fmri"].items():
        assert rois[roi]["r_covariate"] == pytest.approx(target, abs=1e-9)
    r_mem = model["memorability"]["reliability"]
    for t in rois.values():
        assert t["ceiling"] == pytest.approx(np.sqrt(t["reliability"] * r_mem))
        assert t["r"] == pytest.approx(t["r_noise_free"] * t["ceiling"])
        cov = model["covariate"]["r_memorability"]
        assert t["r_partial"] == pytest.approx(partial(t["r"], t["r_covariate"], cov))
    # V1 has no direct effect: its correlation is the covariate's share only
    assert rois["V1"]["r_partial"] == pytest.approx(0.0, abs=1e-9)
    assert rois["V1"]["r"] == pytest.approx(0.01, abs=1e-9)


def test_fmri_overlap_gets_no_borrowed_effect(tmp_path):
    """FFA voxels are IT voxels (by their parcels), yet FFA at 0 and IT at 0.3 both hold: an
    ROI's planted correlation is that of its own mean, whatever ROIs its voxels are also in."""
    kw = dict(n_voxels=600, n_concepts=4, n_test=2, n_sessions=3, rng=2)
    t = write_things_fmri_subject(
        tmp_path, "sub-01", model=Model(fmri_effects={"IT": 0.3, "FFA": 0.0}), **kw
    )
    rois = t["rois"]
    assert rois["IT"]["r"] == pytest.approx(0.3, abs=1e-9)
    assert rois["FFA"]["r"] == pytest.approx(0.0, abs=1e-9)
    assert rois["V1"]["r"] == pytest.approx(0.01, abs=1e-9)  # the default confound only


def test_test_repeats_differ(gen):
    out, _ = gen
    d = _betas(out)
    stim = pd.read_csv(d / "sub-01_StimulusMetadata.csv")
    cols = stim.index[stim.stimulus == stim.stimulus[stim.trial_type == "test"].iloc[0]]
    with h5py.File(d / "sub-01_ResponseData.h5", "r") as f:
        v = f["ResponseData/block0_values"][:, cols.to_numpy()]  # small
    assert not np.allclose(v[:, 0], v[:, 1])
    assert np.corrcoef(v[:, 0], v[:, 1])[0, 1] > 0.05  # but share an image response


# -- TVSD ----------------------------------------------------------------------------------


def test_tvsd_shapes(gen):
    out, truth = gen
    for m in ("N", "F"):
        t = truth["tvsd"][m]
        n_train, n_test, reps, n_tb = t["n_train"], t["n_test"], t["n_reps"], t["n_timebins"]
        assert (n_train, n_test, reps, n_tb) == (96, 4, 3, 30)
        with h5py.File(_monkey(out, m) / "THINGS_normMUA.mat", "r") as f:
            assert f.userblock_size == 512
            shapes = {k: f[k].shape for k in f}
            assert all(f[k].attrs["MATLAB_class"] == b"double" for k in f)
        days = t["n_days"]
        assert shapes == {
            "train_MUA": (n_train, 1024), "test_MUA": (n_test, 1024),
            "test_MUA_reps": (reps, n_test, 1024), "SNR": (days, 1024), "SNR_max": (1, 1024),
            "lats": (days, 1024), "reliab": (reps * (reps - 1) // 2, 1024),
            "oracle": (1, 1024), "tb": (n_tb, 1),
        }  # fmt: skip
        with h5py.File(_monkey(out, m) / "THINGS_MUA_trials.mat", "r") as f:
            n = n_train + n_test * reps
            assert f["ALLMUA"].shape == (n_tb, 1024, n) and f["ALLMUA"].dtype == np.float64
            assert f["ALLMUA"].chunks[:2] == (1, 1024)  # slabs of time bins read whole chunks
            assert f["ALLMAT"].shape == (7, n)
            np.testing.assert_array_equal(f["tb"][:, 0], -100 + 10.0 * np.arange(30))
        head = (_monkey(out, m) / "THINGS_normMUA.mat").read_bytes()[:128]
        assert head.startswith(b"MATLAB 7.3 MAT-file") and head[-4:] == b"\x00\x02IM"


def test_allmat_semantics(gen):
    out, truth = gen
    with h5py.File(_monkey(out) / "THINGS_MUA_trials.mat", "r") as f:
        m = f["ALLMAT"][()].T  # small
    np.testing.assert_array_equal(m[:, 0], np.arange(1, len(m) + 1))
    train, test = m[m[:, 1] > 0], m[m[:, 2] > 0]
    assert len(train) + len(test) == len(m) and (train[:, 2] == 0).all()
    assert sorted(train[:, 1]) == list(range(1, 97))
    assert not np.array_equal(train[:, 1], np.sort(train[:, 1]))  # shuffled
    for i in range(1, 5):
        assert sorted(test[test[:, 2] == i, 3]) == [1, 2, 3]
    assert set(m[:, 4]) == {1, 2, 3, 4} and (m[:, 5] == 1).all()
    assert set(m[:, 6]) == set(range(1, truth["tvsd"]["N"]["n_days"] + 1))


def test_matlab_files_read_by_hdf5storage_and_scipy(gen):
    out, _ = gen
    imgs = hdf5storage.loadmat(str(_monkey(out) / "_logs" / "things_imgs.mat"))
    paths = [str(c[0, 0]) for c in imgs["train_imgs"]["things_path"][0][0]]
    classes = [str(c[0, 0]) for c in imgs["train_imgs"]["class"][0][0]]
    assert len(paths) == 96 and all("\\" in p for p in paths)
    assert [p.split("\\")[0] for p in paths] == classes
    assert len(imgs["test_imgs"]["things_path"][0][0]) == 4
    norm = hdf5storage.loadmat(str(_monkey(out) / "THINGS_normMUA.mat"))
    with h5py.File(_monkey(out) / "THINGS_normMUA.mat", "r") as f:
        np.testing.assert_array_equal(norm["train_MUA"], f["train_MUA"][()].T)  # MATLAB order
        np.testing.assert_array_equal(norm["test_MUA_reps"], f["test_MUA_reps"][()].T)
    mua = hdf5storage.loadmat(str(_monkey(out) / "THINGS_MUA_trials.mat"))
    assert mua["ALLMAT"].shape == (108, 7) and mua["ALLMUA"].shape == (108, 1024, 30)
    mapping = scipy.io.loadmat(_monkey(out) / "_logs" / "1024chns_mapping_20220105.mat")["mapping"]
    assert mapping.shape == (1, 1024)
    np.testing.assert_array_equal(np.sort(mapping.ravel()), np.arange(1, 1025))
    assert not np.array_equal(mapping.ravel(), np.arange(1, 1025))


def test_matlab_layout_matches_hdf5storage_fixture(gen, fixtures_dir):
    out, _ = gen

    def shape(path):  # one entry per kind of object (the #refs# strings differ in number)
        return {(n.split("/")[0] if n.startswith("#refs#/") and n != "#refs#/a" else n, *r)
                for n, *r in _layout(path)}  # fmt: skip

    logs = "_logs/things_imgs.mat"
    assert shape(_monkey(out) / logs) == shape(fixtures_dir / "tvsd" / "monkeyN" / logs)
    fixture = {n for n, *_ in _layout(fixtures_dir / "tvsd" / "monkeyN" / "THINGS_normMUA.mat")}
    assert {n for n, *_ in _layout(_monkey(out) / "THINGS_normMUA.mat")} == fixture


def _window_means(mdir: Path, monkey: str) -> tuple[np.ndarray, np.ndarray]:
    """Window mean per physical channel and trial from ALLMUA (recording order) and ALLMAT."""
    mapping = scipy.io.loadmat(mdir / "_logs" / "1024chns_mapping_20220105.mat")["mapping"]
    with h5py.File(mdir / "THINGS_MUA_trials.mat", "r") as f:
        phys = f["ALLMUA"][()][:, mapping.ravel().astype(int) - 1, :]  # small test file
        allmat, tb = f["ALLMAT"][()].T, f["tb"][:, 0]
    win = np.empty((1024, phys.shape[2]))
    for area, (lo, hi) in AREAS[monkey].items():
        start, end = AREA_WINDOWS[area]
        win[lo:hi] = phys[(tb >= start) & (tb < end), lo:hi].mean(0)
    return win, allmat


def _dataset_normalisation(mdir: Path, monkey: str) -> tuple[np.ndarray, np.ndarray]:
    """normMUA computed from ALLMUA as the dataset's norm_MUA.m does: per (channel, day) the
    mean and sd (ddof 1) of all values of that day's test trials in the area's window bins."""
    mapping = scipy.io.loadmat(mdir / "_logs" / "1024chns_mapping_20220105.mat")["mapping"]
    with h5py.File(mdir / "THINGS_MUA_trials.mat", "r") as f:
        phys = f["ALLMUA"][()][:, mapping.ravel().astype(int) - 1, :]  # small test file
        allmat, tb = f["ALLMAT"][()].T, f["tb"][:, 0]
    day, test = allmat[:, 6], allmat[:, 2] > 0
    norm = np.empty((1024, phys.shape[2]))
    for area, (lo, hi) in AREAS[monkey].items():
        start, end = AREA_WINDOWS[area]
        x = phys[(tb >= start) & (tb < end), lo:hi]  # (bins, channels, trials)
        for d in np.unique(day):
            pool = np.moveaxis(x[:, :, test & (day == d)], 1, 0).reshape(hi - lo, -1)
            mean, sd = pool.mean(1, keepdims=True), pool.std(1, ddof=1, keepdims=True)
            norm[lo:hi, day == d] = (x[:, :, day == d].mean(0) - mean) / sd
    return norm, allmat


@pytest.mark.parametrize("monkey", ["N", "F"])
def test_normmua_is_normalised_trials(gen, monkey):
    out, _ = gen
    mdir = _monkey(out, monkey)
    norm, allmat = _dataset_normalisation(mdir, monkey)
    train, test = allmat[:, 1] > 0, allmat[:, 2] > 0
    with h5py.File(mdir / "THINGS_normMUA.mat", "r") as f:
        train_mua, reps = f["train_MUA"][()], f["test_MUA_reps"][()]  # small
        test_mua = f["test_MUA"][()]
    np.testing.assert_allclose(
        train_mua[allmat[train, 1].astype(int) - 1], norm[:, train].T, atol=1e-9
    )
    rows = allmat[test]
    np.testing.assert_allclose(
        reps[rows[:, 3].astype(int) - 1, rows[:, 2].astype(int) - 1], norm[:, test].T, atol=1e-9
    )
    np.testing.assert_allclose(test_mua, reps.mean(0))


def test_raw_trials_carry_offsets_and_day_drifts(gen):
    """Raw window means: channel offsets far larger than the image signal, and days differ."""
    out, _ = gen
    win, allmat = _window_means(_monkey(out), "N")
    offsets = win.mean(1)
    assert offsets.std() > 2 * np.median(win.std(1))
    day = allmat[:, 6]
    by_day = np.stack([win[:, day == d].mean(1) for d in np.unique(day)])
    assert np.median(np.abs(np.diff(by_day, axis=0))) > 0.2 * np.median(win.std(1))


def test_tvsd_planted_population_correlations(many):
    """The mean of train_MUA over an area's channels has the planted correlations."""
    out, truth = many
    mdir = _monkey(out)
    imgs = hdf5storage.loadmat(str(mdir / "_logs" / "things_imgs.mat"))
    names = [str(c[0, 0]).split("\\")[1] for c in imgs["train_imgs"]["things_path"][0][0]]
    with h5py.File(mdir / "THINGS_normMUA.mat", "r") as f:
        train = f["train_MUA"][()]  # 4800 x 1024
    mem = _scores(out).reindex(names).to_numpy()
    low = pd.read_csv(out / "covariates.csv", index_col="image_name").low_level
    low = low.reindex(names).to_numpy()
    ok = np.isfinite(mem)
    areas = truth["tvsd"]["N"]["areas"]
    tol = _tolerance(int(ok.sum()))
    for area, (lo, hi) in AREAS["N"].items():
        x = train[:, lo:hi].mean(1)
        assert abs(np.corrcoef(x[ok], mem[ok])[0, 1] - areas[area]["r"]) < tol, area
        assert abs(np.corrcoef(x, low)[0, 1] - areas[area]["r_covariate"]) < tol, area
    for area, target in truth["model"]["effects"]["tvsd"].items():
        assert areas[area]["r"] == pytest.approx(target, abs=1e-9)
    assert areas["V1"]["r_partial"] == pytest.approx(0.0, abs=1e-9)
    assert areas["IT"]["r"] > areas["V4"]["r"] > areas["V1"]["r"]


def test_tvsd_time_course(tmp_path):
    """The memorability effect in ALLMUA rises after ~100 ms in IT, not before 50 ms."""
    t = synthesize(
        tmp_path, scale=0.001, seed=5, subjects=(), monkeys=("N",), n_tvsd_concepts=30,
        tvsd_effects={"IT": 0.7, "V4": 0.3}, memorability_split_half=0.9,
    )  # fmt: skip
    assert t["tvsd"]["N"]["areas"]["IT"]["r"] == pytest.approx(0.7)
    mdir = _monkey(tmp_path)
    imgs = hdf5storage.loadmat(str(mdir / "_logs" / "things_imgs.mat"))
    names = [str(c[0, 0]).split("\\")[1] for c in imgs["train_imgs"]["things_path"][0][0]]
    mapping = scipy.io.loadmat(mdir / "_logs" / "1024chns_mapping_20220105.mat")["mapping"]
    lo, hi = AREAS["N"]["IT"]
    it_rec = np.sort(mapping.ravel()[lo:hi].astype(int) - 1)
    with h5py.File(mdir / "THINGS_MUA_trials.mat", "r") as f:
        allmat, tb = f["ALLMAT"][()].T, f["tb"][:, 0]
        train = allmat[:, 1] > 0
        it = f["ALLMUA"][:, it_rec, :][:, :, train].mean(1)  # (time, trials), small
    mem = _scores(tmp_path).reindex([names[int(j) - 1] for j in allmat[train, 1]]).to_numpy()
    ok = np.isfinite(mem)

    def r(values):
        return np.corrcoef(values[ok], mem[ok])[0, 1]

    early, late = r(it[tb < 50].mean(0)), r(it[(tb >= 150) & (tb < 200)].mean(0))
    assert late > 0.3 and late > abs(early) + 0.2


def test_tvsd_errors(tmp_path):
    with pytest.raises(ValueError, match="monkey"):
        write_tvsd_monkey(tmp_path, "X", n_concepts=1, n_test=4, n_reps=3)
    with pytest.raises(ValueError, match="n_days"):
        write_tvsd_monkey(tmp_path, "N", n_concepts=1, n_test=4, n_reps=3, n_days=4)
    with pytest.raises(ValueError, match="unknown area"):
        write_tvsd_monkey(tmp_path, "N", n_concepts=1, n_test=4, n_reps=3,
                          model=Model(tvsd_effects={"FFA": 0.1}))  # fmt: skip
    with pytest.raises(InfeasibleTarget, match="sqrt"):
        write_tvsd_monkey(tmp_path, "N", n_concepts=1, n_test=4, n_reps=3,
                          model=Model(tvsd_effects={"IT": 0.85}))  # fmt: skip
    with pytest.raises(ValueError, match="unknown fMRI ROI"):
        write_things_fmri_subject(tmp_path, "sub-01", n_voxels=300, n_concepts=1, n_test=2,
                                  n_sessions=3, model=Model(fmri_effects={"XYZ": 0.1}))  # fmt: skip


# -- names and tables ----------------------------------------------------------------------


def test_generated_tables_have_the_real_quirks(gen):
    out, truth = gen
    concepts = (out / "things" / "Concept_to_category_linking.csv").read_bytes()
    assert concepts.startswith(
        b"\xef\xbb\xbfconcept,category,category_label,CR,dim_based_typ,beh_typ,,,\r\n"
    )
    lines = concepts.decode("utf-8-sig").split("\r\n")
    assert lines[-1] == "" and all(line.endswith(",,,") for line in lines[:-1])
    assert any(",0,NA," in line for line in lines)
    table = pd.read_csv(out / "things" / "Concept_to_category_linking.csv", encoding="utf-8-sig",
                        keep_default_na=False)  # fmt: skip
    assert "NA" in set(table.category_label) and table.shape[1] == 9
    scores = (out / "things" / "THINGS_Memorability_Scores.csv").read_bytes()
    assert scores.startswith(b"image_nr,image_name,file_path,cr\r\n")
    mem = pd.read_csv(out / "things" / "THINGS_Memorability_Scores.csv")
    nan_image = truth["memorability"]["nan_image"]
    assert mem.cr.isna().sum() == 1 and mem.loc[mem.cr.isna(), "image_name"].item() == nan_image
    assert mem.cr.min() >= 0.385 and mem.cr.max() <= 1.0 and 0.75 < mem.cr.mean() < 0.83
    concept = mem.file_path.str.split("/").str[1]
    assert (mem.file_path == "images/" + concept + "/" + mem.image_name).all()
    assert mem.image_name.str.fullmatch(r".+_\d\d[a-z]\.jpg").all()
    stim = pd.read_csv(_betas(out) / "sub-01_StimulusMetadata.csv")
    assert nan_image in set(stim.stimulus)  # the NaN path is exercised


def test_generated_names_look_like_things():
    s = Stimuli.generate(300, seed=1)
    assert len(set(s.concepts)) == 300
    assert any("_" in c for c in s.concepts) and any(c[-1].isdigit() for c in s.concepts)
    assert all(c.replace("_", "").isalnum() and c == c.lower() for c in s.concepts)
    for c in s.concepts[:20]:
        assert all(img.startswith(c + "_") for img in s.images[c])
    table = pd.DataFrame(
        [(c, s.memorability[i]) for c in s.concepts for i in s.images[c]], columns=["c", "cr"]
    ).dropna()
    means = table.groupby("c").cr.mean()
    within = table.cr - table.c.map(means)
    assert means.std() > 0.025 and 0.05 < within.std() < 0.09  # concept effect + image noise


def test_real_names(real, things_dir):
    out, truth = real
    assert truth["names"] == "real" and truth["memorability"]["nan_image"] == "goalpost_08s.jpg"
    for name in ("THINGS_Memorability_Scores.csv", "Concept_to_category_linking.csv"):
        assert filecmp.cmp(out / "things" / name, things_dir / name, shallow=False)
    stim = pd.read_csv(_betas(out) / "sub-01_StimulusMetadata.csv")
    assert "goalpost_08s.jpg" in set(stim.stimulus)
    scores = _scores(out)
    assert stim.stimulus.isin(scores.index).all()
    imgs = hdf5storage.loadmat(str(_monkey(out) / "_logs" / "things_imgs.mat"))
    paths = {str(c[0, 0]) for c in imgs["train_imgs"]["things_path"][0][0]}
    assert "goalpost\\goalpost_08s.jpg" in paths
    shared = {p.split("\\")[1] for p in paths} & set(stim.stimulus)
    assert len(shared) >= 12 * 8  # fMRI and TVSD share their train images


# -- determinism and memory ----------------------------------------------------------------


def test_deterministic(gen, tmp_path):
    out, truth = gen
    again = synthesize(tmp_path / "a", scale=0.001, seed=SEED, subjects=("sub-02",), monkeys=("F",))
    assert json.dumps(again["tvsd"]["F"], sort_keys=True) == json.dumps(
        truth["tvsd"]["F"], sort_keys=True
    )
    for rel in (
        "things-fmri/betas_csv/sub-02_VoxelMetadata.csv",
        "things/THINGS_Memorability_Scores.csv",
    ):
        assert filecmp.cmp(out / rel, tmp_path / "a" / rel, shallow=False)
    checks = [("things-fmri/betas_csv/sub-02_ResponseData.h5", "ResponseData/block0_values"),
              ("tvsd/monkeyF/THINGS_MUA_trials.mat", "ALLMUA"),
              ("tvsd/monkeyF/THINGS_normMUA.mat", "train_MUA")]  # fmt: skip
    other = synthesize(
        tmp_path / "b", scale=0.001, seed=SEED + 1, subjects=("sub-02",), monkeys=("F",)
    )
    assert other["seed"] == SEED + 1
    for rel, name in checks:
        with h5py.File(out / rel) as a, h5py.File(tmp_path / "a" / rel) as b:
            with h5py.File(tmp_path / "b" / rel) as c:
                np.testing.assert_array_equal(a[name][()], b[name][()])
                assert not np.array_equal(a[name][()], c[name][()])


def test_block_size_does_not_change_values(tmp_path):
    kw = dict(n_voxels=300, n_concepts=2, n_test=2, n_sessions=3, rng=7)
    write_things_fmri_subject(tmp_path / "a", "sub-01", block_rows=64, **kw)
    write_things_fmri_subject(tmp_path / "b", "sub-01", **kw)
    tv = dict(n_concepts=2, n_test=4, n_reps=3, n_timebins=30, bin_ms=10, rng=7)
    write_tvsd_monkey(tmp_path / "a", "N", block_trials=16, block_rows=5, **tv)
    write_tvsd_monkey(tmp_path / "b", "N", **tv)
    checks = [("sub-01_ResponseData.h5", "ResponseData/block0_values"),
              ("THINGS_MUA_trials.mat", "ALLMUA"), ("THINGS_normMUA.mat", "train_MUA")]  # fmt: skip
    for rel, name in checks:
        with h5py.File(tmp_path / "a" / rel) as a, h5py.File(tmp_path / "b" / rel) as b:
            np.testing.assert_array_equal(a[name][()], b[name][()])
    assert filecmp.cmp(
        tmp_path / "a" / "sub-01_VoxelMetadata.csv", tmp_path / "b" / "sub-01_VoxelMetadata.csv"
    )


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_size(tmp_path):
    def fmri(n):
        return lambda: write_things_fmri_subject(
            tmp_path / f"f{n}", "sub-01", n_voxels=n, n_concepts=30, n_test=4, n_sessions=3,
            dtype="float64", block_rows=64,
        )  # fmt: skip

    small, big = _peak(fmri(300)), _peak(fmri(2000))
    whole = 2000 * (30 * 12 + 4 * 3) * 8  # the big array, 6 MB
    assert big - small < whole / 4, (small, big)

    def tvsd(n):
        return lambda: write_tvsd_monkey(
            tmp_path / f"t{n}", "N", n_concepts=n, n_test=4, n_reps=3, n_timebins=30, bin_ms=10,
            block_trials=16, block_rows=16,
        )  # fmt: skip

    small, big = _peak(tvsd(3)), _peak(tvsd(16))
    whole = 30 * 1024 * (16 * 12 + 12) * 8  # ALLMUA, 50 MB
    assert big - small < whole / 10, (small, big)


# -- round trip through the readers ------------------------------------------------------


def test_readers_read_synthetic_data(real):
    fmri = pytest.importorskip("memxr.readers.things_fmri")
    tvsd = pytest.importorskip("memxr.readers.tvsd")
    trials = pytest.importorskip("memxr.readers.tvsd_trials")
    out, _ = real
    tables = {
        "memorability": out / "things" / "THINGS_Memorability_Scores.csv",
        "concepts": out / "things" / "Concept_to_category_linking.csv",
    }
    d = _betas(out)
    cube = fmri.read_things_fmri(d, "sub-01", checksum=False, **tables)
    stim = pd.read_csv(d / "sub-01_StimulusMetadata.csv")
    with h5py.File(d / "sub-01_ResponseData.h5", "r") as f:
        values = f["ResponseData/block0_values"][()]  # small
    expected = pd.DataFrame(values.T).groupby(stim.stimulus.to_numpy()).mean()
    ids = cube.stimulus_id.values
    np.testing.assert_allclose(cube.response.values, expected.loc[ids].to_numpy(), rtol=1e-5)
    assert np.isnan(cube.memorability.values[list(ids).index("goalpost_08s.jpg")])

    mdir = _monkey(out)
    norm = tvsd.read_normmua(mdir, "N", checksum=False, **tables)
    with h5py.File(mdir / "THINGS_normMUA.mat", "r") as f:
        rows = np.concatenate([f["train_MUA"][()], f["test_MUA"][()]])  # small
    np.testing.assert_allclose(norm.response.values, rows)
    scores = _scores(out).reindex(norm.stimulus_id.values).to_numpy()
    np.testing.assert_array_equal(norm.memorability.values, scores)

    cube = trials.read_trials(mdir, "N", checksum=False, **tables)
    win, allmat = _window_means(mdir, "N")
    train = allmat[:, 1] > 0
    it_lo, it_hi = AREAS["N"]["IT"]
    time = cube.time.values
    got = cube.response.values[: int(train.sum()), it_lo:it_hi][..., (time >= 75) & (time < 175)]
    order = np.argsort(allmat[train, 1])
    np.testing.assert_allclose(got.mean(-1), win[it_lo:it_hi, train][:, order].T)


# -- the planted model ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solver_meets_targets(seed):
    """Random moments (several days, offsets): the solved loadings give the targets."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    m = Moments(
        p=rng.dirichlet(np.ones(n)), P=rng.uniform(0.5, 1.5, n), D=rng.normal(0, 0.02, n),
        Pb=rng.uniform(0.5, 1.5, n), Gb=rng.normal(0, 0.02, n), O=rng.uniform(0.5, 2, n),
        V=float(rng.uniform(0, 0.3)), Osig=0.5,
    )  # fmt: skip
    rel, kappa = 0.62, 0.13
    for rho, c in [(0.1, None), (None, 0.2), (0.07, 0.1), (-0.2, 0.05), (0.0, 0.3), (0.3, 0.0)]:
        theta = solve(m, rho, c, rel, kappa)
        s = m.stats(theta, rel, kappa)
        if rho is not None:
            assert s["r"] == pytest.approx(rho, abs=1e-9)
        else:
            assert theta[0] == 0.0
        if c is not None:
            assert s["r_covariate"] == pytest.approx(c, abs=1e-9)
        else:
            assert theta[1] == 0.0
    with pytest.raises(InfeasibleTarget):
        solve(m, 0.8, None, rel, kappa)  # above sqrt(0.62)


def test_model_checks_and_scale():
    assert Model(effect_scale=2).effects("tvsd") == {"IT": 0.2, "V4": 0.14}
    assert Model(effect_scale=2).confounds("tvsd") == {"V1": 0.1, "V4": 0.1}
    for bad in ({"memorability_split_half": 1.2}, {"covariate_r": 0.9},
                {"fmri_effects": {"FFA": 1.5}}, {"effect_scale": -1}):  # fmt: skip
        with pytest.raises(ValueError):
            Model(**bad)


def test_memorability_model_statistics():
    """Over the real-size universe: split-half reliability, concept share, covariate r."""
    s = Stimuli.generate(1854, seed=4)
    lat = s.latents
    ok = np.isfinite(lat.z.to_numpy())
    half = np.corrcoef(lat.half_a[ok], lat.half_b[ok])[0, 1]
    n = int(ok.sum())  # ~26,000 images: standard errors ~0.01
    assert abs(half - 0.45) < 0.03
    assert abs(np.corrcoef(lat.z[ok], lat.M[ok])[0, 1] - np.sqrt(2 * 0.45 / 1.45)) < 0.02
    assert abs(np.corrcoef(lat.L[ok], lat.z[ok])[0, 1] - 0.10) < 4 / np.sqrt(n) * 1.5
    cr = pd.Series([s.memorability[i] for i in lat.index], index=lat.index).dropna()
    assert 0.16 < _icc(cr, lat.concept.reindex(cr.index)) < 0.24  # 0.20 (real table: 0.195)
    assert cr.between(0.385, 1.0).all() and abs(cr.mean() - 0.79) < 0.01
    assert (cr.round(9) == cr).all()


def _icc(values: pd.Series, groups: pd.Series) -> float:
    """One-way intra-class correlation: the share of variance common to a group."""
    g = values.groupby(groups)
    k = g.size().mean()
    msb = (g.size() * (g.mean() - values.mean()) ** 2).sum() / (g.ngroups - 1)
    msw = ((values - g.transform("mean")) ** 2).sum() / (len(values) - g.ngroups)
    return float((msb - msw) / (msb + (k - 1) * msw))


def test_real_scores_drive_true_memorability(things_dir):
    s = Stimuli.from_things(things_dir, seed=1)
    lat = s.latents.dropna(subset=["z"])
    real = pd.read_csv(things_dir / "THINGS_Memorability_Scores.csv").set_index("image_name").cr
    z = (real - real.mean()) / real.std(ddof=0)
    np.testing.assert_allclose(lat.z, z.reindex(lat.index), atol=1e-12)
    assert abs(np.corrcoef(lat.z, lat.M)[0, 1] - np.sqrt(2 * 0.45 / 1.45)) < 0.02
    assert np.isfinite(s.latents.loc["goalpost_08s.jpg", "M"])


def test_covariates_file(gen):
    out, truth = gen
    cov = pd.read_csv(out / "covariates.csv")
    assert list(cov.columns) == list(truth["covariates"]["columns"])
    stim = pd.read_csv(_betas(out) / "sub-01_StimulusMetadata.csv")
    assert set(stim.stimulus) <= set(cov.image_name)
    assert cov.image_name.is_monotonic_increasing and cov.image_name.is_unique
    scores = _scores(out).reindex(cov.image_name)
    ok = scores.notna().to_numpy()
    mem = truth["model"]["memorability"]
    expected = np.clip(mem["mean"] + mem["sd"] * cov.memorability_z[ok], mem["low"], mem["high"])
    np.testing.assert_allclose(scores[ok], expected, atol=1e-8)
