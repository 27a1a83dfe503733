"""Tests of the THINGS-fMRI "betas_csv" reader against the shared fixtures and broken copies."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import warnings
from pathlib import Path

import cloudpickle
import h5py
import numpy as np
import pandas as pd
import pytest

from memxr.errors import InputError
from memxr.readers.formats.hdf5 import H5Array
from memxr.readers.things_fmri import (
    FMRI_ROIS,
    read_stimulus_metadata,
    read_things_fmri,
    read_voxel_metadata,
)
from memxr.schema import validate
from memxr.testing import raise_if_dask_computes

SUBJECTS = ("sub-01", "sub-02")
FILES = ("ResponseData.h5", "VoxelMetadata.csv", "StimulusMetadata.csv")


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def betas_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "things-fmri" / "betas_csv"


@pytest.fixture
def sub01(betas_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the sub-01 fixture files."""
    for name in FILES:
        shutil.copyfile(betas_dir / f"sub-01_{name}", tmp_path / f"sub-01_{name}")
    return tmp_path


def _path(d: Path, name: str) -> Path:
    return d / f"sub-01_{name}"


def _raw(d: Path, subject: str = "sub-01") -> tuple[np.ndarray, np.ndarray]:
    """(voxel, trial) betas and voxel ids straight from the fixture, with h5py."""
    with h5py.File(d / f"{subject}_ResponseData.h5", "r") as f:
        return f["ResponseData/block0_values"][()], f["ResponseData/block1_values"][:, 0]


def _roi_mean(ds, roi: str) -> tuple[np.ndarray, int]:
    cols = list(FMRI_ROIS.get(roi, (roi,)))
    mask = ds["roi_mask"].sel(roi=cols).any("roi").values
    return ds["response"].values[:, mask].astype(np.float64).mean(axis=1), int(mask.sum())


def _boom(*args, **kwargs):
    raise AssertionError("the responses were read")


def _expect_error(d: Path, file: str, field: str, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        read_things_fmri(d, "sub-01", checksum=False, **kwargs)
    err = info.value
    assert err.file == file, str(err)
    assert field in err.field, str(err)
    assert "\n" not in str(err)
    return err


def _write_frame(
    path: Path,
    betas: np.ndarray,
    ids: np.ndarray,
    *,
    voxel_major: bool = True,
    swap_blocks: bool = False,
    name_ids: bool = True,
    chunks: tuple | None = None,
) -> None:
    """An HDF5 file in the pandas fixed-format layout, written with h5py (betas: voxel x trial)."""
    vals, idn = ("block1", "block0") if swap_blocks else ("block0", "block1")
    with h5py.File(path, "w") as f:
        g = f.create_group("ResponseData")
        v = g.create_dataset(
            f"{vals}_values", data=betas if voxel_major else betas.T, chunks=chunks
        )
        v.attrs["transposed"] = np.uint8(voxel_major)
        i = g.create_dataset(f"{idn}_values", data=ids[:, None] if voxel_major else ids[None, :])
        i.attrs["transposed"] = np.uint8(voxel_major)
        if name_ids:
            g[f"{idn}_items"] = np.array([b"voxel_id"])


def _tiny_dir(d: Path, betas: np.ndarray, trial_type: list, stimulus: list, **kwargs) -> Path:
    n_vox = betas.shape[0]
    ids = np.arange(10, 10 + n_vox)
    roi = (np.arange(n_vox) % 2).astype(int)
    pd.DataFrame({"voxel_id": ids, "subject_id": 1, "voxel_x": ids * 2, "V1": roi}).to_csv(
        _path(d, "VoxelMetadata.csv"), index=False
    )
    pd.DataFrame(
        {"trial_type": trial_type, "session": np.arange(len(stimulus)) + 1, "stimulus": stimulus}
    ).to_csv(_path(d, "StimulusMetadata.csv"), index=False)
    _write_frame(_path(d, "ResponseData.h5"), betas, ids, **kwargs)
    return d


# ----------------------------------------------------------------------------- truth


@pytest.mark.parametrize("subject", SUBJECTS)
def test_roi_means_match_truth(betas_dir: Path, truth: dict, subject: str) -> None:
    want = truth["fmri"][subject]
    ds = read_things_fmri(betas_dir, subject)
    validate(ds)
    ids = ds["stimulus_id"].values.tolist()
    for roi, item in want["roi_mean"].items():
        got, n = _roi_mean(ds, roi)
        assert n == item["n_voxels"], roi
        assert sorted(ids) == sorted(item["per_stimulus"]), roi
        expected = np.array([item["per_stimulus"][s] for s in ids])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=roi)
    split = ds["split"].values
    assert (split == "train").sum() == want["n_train_stimuli"]
    assert (split == "test").sum() == want["n_test_stimuli"]
    assert ds.sizes["channel"] == want["n_voxels"]
    assert ds["n_repeats"].values.sum() == want["n_trials"]
    assert set(ds["n_repeats"].values[split == "test"]) == {want["test_repeats"]}
    assert ds.sizes["repeat"] == want["test_repeats"]
    assert str(ds["response"].dtype) == want["dtype"]
    assert str(ds["response_repeats"].dtype) == want["dtype"]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_coords_and_attrs(betas_dir: Path, subject: str) -> None:
    ds = read_things_fmri(betas_dir, subject, checksum=False)
    _, ids = _raw(betas_dir, subject)
    assert ds["channel_id"].dtype == np.int64
    np.testing.assert_array_equal(ds["channel_id"].values, ids)
    assert ds["channel_id"].values[0] == (0 if subject == "sub-01" else 1000)
    stim = pd.read_csv(betas_dir / f"{subject}_StimulusMetadata.csv")
    assert ds["stimulus_id"].values.tolist() == stim["stimulus"].drop_duplicates().tolist()
    assert ds["stimulus_id"].dtype == object and ds["roi"].dtype == object
    # concept from the stimulus table, nothing else without the THINGS tables
    first = stim.drop_duplicates("stimulus").set_index("stimulus")["concept"]
    assert ds["concept"].values.tolist() == first.loc[ds["stimulus_id"].values].tolist()
    assert set(ds["category"].values) == {""}
    assert np.isnan(ds["memorability"].values).all()
    vox = pd.read_csv(betas_dir / f"{subject}_VoxelMetadata.csv")
    rois = ds["roi"].values.tolist()
    assert "LO1 (prf)" in rois and "glasser-p9-\n46v" in rois and "IT" in rois
    assert not {"voxel_x", "nc_testset", "prf-size", "subject_id"} & set(rois)
    np.testing.assert_array_equal(ds["roi_mask"].sel(roi="lFFA").values, vox["lFFA"] == 1)
    np.testing.assert_allclose(ds["prf-eccentricity"].values, vox["prf-eccentricity"])
    np.testing.assert_array_equal(ds["voxel_z"].values, vox["voxel_z"])
    assert ds.attrs["subject"] == subject and ds.attrs["units"] == "beta"
    records = json.loads(ds.attrs["inputs"])
    assert [r["name"] for r in records] == [f"{subject}_{name}" for name in FILES]
    assert all(r["sha256"] is None for r in records)
    assert (ds.attrs["n_matched"], ds.attrs["n_unknown"]) == (0, ds.sizes["stimulus"])


def test_checksums_recorded(betas_dir: Path) -> None:
    ds = read_things_fmri(betas_dir, "sub-01")
    rec = json.loads(ds.attrs["inputs"])[0]
    path = betas_dir / rec["name"]
    assert rec["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rec["size"] == path.stat().st_size


@pytest.mark.parametrize("subject", ["sub-01", "01", "1", 1])
def test_subject_spellings(betas_dir: Path, subject) -> None:
    ds = read_things_fmri(betas_dir, subject, checksum=False)
    assert ds.attrs["subject"] == "sub-01"


def test_bad_subject(betas_dir: Path) -> None:
    with pytest.raises(InputError, match="subject"):
        read_things_fmri(betas_dir, "monkeyN")


def test_labels_from_things_tables(betas_dir: Path, things_dir: Path) -> None:
    mem = things_dir / "THINGS_Memorability_Scores.csv"
    cat = things_dir / "Concept_to_category_linking.csv"
    ds = read_things_fmri(betas_dir, "sub-01", memorability=mem, concepts=cat, checksum=False)
    validate(ds)
    ids = ds["stimulus_id"].values.tolist()
    scores = pd.read_csv(mem).set_index("image_name")["cr"]
    np.testing.assert_allclose(ds["memorability"].values, scores.loc[ids].to_numpy())
    assert np.isnan(ds["memorability"].values[ids.index("goalpost_08s.jpg")])
    assert ds.attrs["n_missing_score"] == 1
    assert ds.attrs["n_matched"] == len(ids) - 1 and ds.attrs["n_unknown"] == 0
    assert ds["concept"].values[ids.index("wind_chimes_08s.jpg")] == "wind_chimes"
    assert (ds["category"].values != "").any()
    names = [r["name"] for r in json.loads(ds.attrs["inputs"])]
    assert names[3:] == [mem.name, cat.name]


# ----------------------------------------------------------------------------- values, laziness


def test_repeats_mean_equals_test_rows(betas_dir: Path) -> None:
    ds = read_things_fmri(betas_dir, "sub-01", checksum=False)
    test = ds["split"].values == "test"
    assert ds["repeat_stimulus_id"].values.tolist() == ds["stimulus_id"].values[test].tolist()
    reps = ds["response_repeats"].values
    mean = reps.astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(mean, ds["response"].values[test], rtol=1e-6, atol=1e-7)
    # the raw trials, straight from the file
    betas, _ = _raw(betas_dir)
    stim = pd.read_csv(betas_dir / "sub-01_StimulusMetadata.csv")
    first = ds["repeat_stimulus_id"].values[0]
    trials = np.flatnonzero(stim["stimulus"] == first)
    np.testing.assert_array_equal(reps[0], betas[:, trials].T)
    np.testing.assert_array_equal(ds["repeat_session"].values[0], stim["session"].values[trials])
    train = np.flatnonzero(stim["trial_type"] == "train")[5]
    row = ds["stimulus_id"].values.tolist().index(stim["stimulus"][train])
    np.testing.assert_array_equal(ds["response"].values[row], betas[:, train])


def test_float32_file_gives_float32(betas_dir: Path) -> None:
    ds = read_things_fmri(betas_dir, "sub-01", checksum=False)
    assert ds["response"].dtype == np.float32
    assert ds["response"].compute().dtype == np.float32
    assert read_things_fmri(betas_dir, "sub-02", checksum=False)["response"].dtype == np.float64


def test_building_reads_no_responses(betas_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(H5Array, "__getitem__", _boom)
    monkeypatch.setattr(H5Array, "read_into", _boom)
    with raise_if_dask_computes():
        ds = read_things_fmri(betas_dir, "sub-01", checksum=False)
    assert ds["response"].chunks is not None and ds["response_repeats"].chunks is not None


def test_one_task_per_voxel_block(betas_dir: Path) -> None:
    full = read_things_fmri(betas_dir, "sub-01", checksum=False)
    ds = read_things_fmri(betas_dir, "sub-01", checksum=False, chunk_bytes=41 * 4 * 64)
    data = ds["response"].data
    assert data.chunks[1] == (64, 64, 64, 64, 44) and data.chunks[0] == (35,)
    assert len(data.dask.layers[data.name]) == 5
    assert len(dict(data.dask)) <= 2 * 5 + 1  # reads + kernels (+ the array object)
    np.testing.assert_array_equal(data.compute(), full["response"].values)
    np.testing.assert_array_equal(ds["response_repeats"].values, full["response_repeats"].values)


def test_cube_pickles_and_computes_elsewhere(betas_dir: Path) -> None:
    ds = read_things_fmri(betas_dir, "sub-02", checksum=False, chunk_bytes=41 * 8 * 100)
    expected = ds["response"].values
    back = pickle.loads(cloudpickle.dumps(ds))
    np.testing.assert_array_equal(back["response"].values, expected)
    graph = pickle.loads(pickle.dumps(dict(ds["response"].data.__dask_graph__())))
    assert len(graph) == len(dict(ds["response"].data.__dask_graph__()))
    got = ds["response"].data.compute(scheduler="processes", num_workers=1)
    np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------------------- variants


def test_old_release_voxel_metadata(sub01: Path, betas_dir: Path) -> None:
    p = _path(sub01, "VoxelMetadata.csv")
    vox = pd.read_csv(p)
    old = vox.drop(columns=["IT", *[c for c in vox.columns if c.startswith("glasser-")]])
    assert old.shape[1] == 41
    old.to_csv(p, index=False)
    ds = read_things_fmri(sub01, "sub-01", checksum=False)
    validate(ds)
    assert ds.sizes["roi"] == 28 and "IT" not in ds["roi"].values
    new = read_things_fmri(betas_dir, "sub-01", checksum=False)
    np.testing.assert_array_equal(ds["response"].values, new["response"].values)


def test_stimulus_metadata_without_concept(sub01: Path, things_dir: Path) -> None:
    p = _path(sub01, "StimulusMetadata.csv")
    pd.read_csv(p).drop(columns="concept").to_csv(p, index=False)
    ds = read_things_fmri(sub01, "sub-01", checksum=False)
    validate(ds)
    assert set(ds["concept"].values) == {""}
    mem = things_dir / "THINGS_Memorability_Scores.csv"
    ds = read_things_fmri(sub01, "sub-01", checksum=False, memorability=mem)
    assert ds["concept"].values[0] == "biscuit"
    assert np.isfinite(ds["memorability"].values).sum() == ds.sizes["stimulus"] - 1


def test_unequal_repeats_are_padded(sub01: Path, betas_dir: Path) -> None:
    p = _path(sub01, "StimulusMetadata.csv")
    stim = pd.read_csv(p)
    stim.loc[15, "stimulus"] = "parrot_02s.jpg"  # a wind_chimes trial becomes a parrot one
    stim.to_csv(p, index=False)
    ds = read_things_fmri(sub01, "sub-01", checksum=False)
    validate(ds)
    ids = ds["repeat_stimulus_id"].values.tolist()
    assert ids == ["baton4_17s.jpg", "wind_chimes_08s.jpg", "parrot_02s.jpg"]
    assert ds.sizes["repeat"] == 4
    np.testing.assert_array_equal(ds["repeat_session"].values[1], [1, 3, -1, -1])
    np.testing.assert_array_equal(ds["repeat_session"].values[2], [1, 2, 2, 3])
    reps = ds["response_repeats"].values
    assert np.isnan(reps[1, 2:]).all() and not np.isnan(reps[1, :2]).any()
    betas, _ = _raw(betas_dir)
    rows = dict(zip(ds["stimulus_id"].values.tolist(), range(ds.sizes["stimulus"]), strict=True))
    for sid in ids:
        trials = np.flatnonzero(stim["stimulus"] == sid)
        want = betas[:, trials].astype(np.float64).mean(axis=1)
        np.testing.assert_allclose(ds["response"].values[rows[sid]], want, rtol=1e-6)
        assert ds["n_repeats"].values[rows[sid]] == trials.size


@pytest.mark.parametrize("voxel_major", [True, False])
@pytest.mark.parametrize("swap_blocks", [False, True])
def test_layouts_by_size(tmp_path: Path, voxel_major: bool, swap_blocks: bool) -> None:
    betas = np.arange(5 * 4, dtype=np.float64).reshape(5, 4)
    d = _tiny_dir(
        tmp_path,
        betas,
        ["train", "test", "train", "test"],
        ["a.jpg", "b.jpg", "c.jpg", "b.jpg"],
        voxel_major=voxel_major,
        swap_blocks=swap_blocks,
    )
    ds = read_things_fmri(d, 1, checksum=False, chunk_bytes=4 * 8 * 2)
    want = np.stack([betas[:, 0], (betas[:, 1] + betas[:, 3]) / 2, betas[:, 2]])
    np.testing.assert_array_equal(ds["response"].values, want)
    assert ds["stimulus_id"].values.tolist() == ["a.jpg", "b.jpg", "c.jpg"]
    np.testing.assert_array_equal(ds["channel_id"].values, np.arange(10, 15))
    np.testing.assert_array_equal(ds["roi_mask"].sel(roi="V1").values, np.arange(5) % 2 == 1)
    assert ds["response"].data.chunks[1] == (2, 2, 1)


@pytest.mark.parametrize("voxel_major", [True, False])
def test_square_block_uses_transposed_attr(tmp_path: Path, voxel_major: bool) -> None:
    betas = np.arange(9, dtype=np.float32).reshape(3, 3)
    d = _tiny_dir(
        tmp_path, betas, ["train"] * 3, ["a.jpg", "b.jpg", "c.jpg"], voxel_major=voxel_major
    )
    ds = read_things_fmri(d, 1, checksum=False)
    np.testing.assert_array_equal(ds["response"].values, betas.T)
    assert "response_repeats" not in ds and "repeat" not in ds.dims


def test_unnamed_integer_block_is_voxel_id(tmp_path: Path) -> None:
    betas = np.ones((3, 2))
    d = _tiny_dir(tmp_path, betas, ["train", "train"], ["a.jpg", "b.jpg"], name_ids=False)
    np.testing.assert_array_equal(read_things_fmri(d, 1)["channel_id"].values, [10, 11, 12])


def test_blocks_follow_hdf5_chunks(tmp_path: Path) -> None:
    betas = np.random.default_rng(0).standard_normal((20, 3))
    d = _tiny_dir(tmp_path, betas, ["train"] * 3, ["a.jpg", "b.jpg", "c.jpg"], chunks=(3, 3))
    ds = read_things_fmri(d, 1, checksum=False, chunk_bytes=3 * 8 * 5)
    assert ds["response"].data.chunks[1] == (3, 3, 3, 3, 3, 3, 2)  # 5 rows -> a multiple of 3
    np.testing.assert_array_equal(ds["response"].values, betas.T)


def test_metadata_readers(betas_dir: Path) -> None:
    vox = read_voxel_metadata(betas_dir / "sub-01_VoxelMetadata.csv")
    assert vox.shape == (300, 60) and "glasser-a9-\n46v" in vox.columns
    stim = read_stimulus_metadata(betas_dir / "sub-01_StimulusMetadata.csv")
    assert stim["session"].dtype == np.int64 and stim["trial_id"].tolist() == list(range(41))


def test_unknown_columns(sub01: Path) -> None:
    p = _path(sub01, "VoxelMetadata.csv")
    vox = pd.read_csv(p)
    vox["odd"] = np.arange(len(vox)) % 3  # numeric, not 0/1: a channel coord
    vox["flag"] = np.arange(len(vox)) % 2  # 0/1: a ROI
    vox["note"] = "x"
    vox.to_csv(p, index=False)
    ds = read_things_fmri(sub01, 1, checksum=False)
    assert "odd" not in ds["roi"].values and ds["roi"].values[-1] == "flag"
    np.testing.assert_array_equal(ds["odd"].values, np.arange(300) % 3)
    np.testing.assert_array_equal(ds["roi_mask"].sel(roi="flag").values, np.arange(300) % 2 == 1)
    assert set(ds["note"].values) == {"x"}


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", FILES)
def test_missing_file(sub01: Path, name: str) -> None:
    _path(sub01, name).unlink()
    _expect_error(sub01, f"sub-01_{name}", "file")


def test_not_hdf5(sub01: Path) -> None:
    _path(sub01, "ResponseData.h5").write_bytes(b"this is not HDF5\x00" * 100)
    _expect_error(sub01, "sub-01_ResponseData.h5", "file")


def test_truncated_hdf5(sub01: Path) -> None:
    p = _path(sub01, "ResponseData.h5")
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size // 2)
    _expect_error(sub01, "sub-01_ResponseData.h5", "")


def test_missing_group(sub01: Path) -> None:
    with h5py.File(_path(sub01, "ResponseData.h5"), "w") as f:
        f["Other/block0_values"] = np.zeros((300, 41), dtype="f4")
    _expect_error(sub01, "sub-01_ResponseData.h5", "ResponseData")


def test_voxel_count_differs(sub01: Path) -> None:
    p = _path(sub01, "VoxelMetadata.csv")
    pd.read_csv(p).iloc[:-1].to_csv(p, index=False)
    err = _expect_error(sub01, "sub-01_ResponseData.h5", "ResponseData/block0_values")
    assert "300 voxels" in str(err) and "299 rows" in str(err)


def test_trial_count_differs(sub01: Path) -> None:
    p = _path(sub01, "StimulusMetadata.csv")
    pd.read_csv(p).iloc[:-1].to_csv(p, index=False)
    err = _expect_error(sub01, "sub-01_ResponseData.h5", "ResponseData/block0_values")
    assert "41 trials" in str(err) and "40 rows" in str(err)


def test_voxel_id_mismatch(sub01: Path) -> None:
    p = _path(sub01, "VoxelMetadata.csv")
    vox = pd.read_csv(p)
    vox.loc[7, "voxel_id"] = 9999
    vox.to_csv(p, index=False)
    err = _expect_error(sub01, "sub-01_ResponseData.h5", "block1_values")
    assert "row 7" in str(err)


def test_duplicate_train_stimulus(sub01: Path) -> None:
    p = _path(sub01, "StimulusMetadata.csv")
    stim = pd.read_csv(p)
    stim.loc[1, "stimulus"] = stim.loc[0, "stimulus"]
    stim.to_csv(p, index=False)
    err = _expect_error(sub01, "sub-01_StimulusMetadata.csv", "stimulus")
    assert "biscuit_02s.jpg" in str(err)


def test_stimulus_both_train_and_test(sub01: Path) -> None:
    p = _path(sub01, "StimulusMetadata.csv")
    stim = pd.read_csv(p)
    stim.loc[0, "stimulus"] = "parrot_02s.jpg"
    stim.to_csv(p, index=False)
    err = _expect_error(sub01, "sub-01_StimulusMetadata.csv", "stimulus")
    assert "parrot_02s.jpg" in str(err) and "both" in str(err)


def _to_hdf(path: Path, frame: pd.DataFrame) -> None:
    pytest.importorskip("tables")
    path.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns about storing objects
        frame.to_hdf(path, key="ResponseData", mode="w", format="fixed")


def _frame(d: Path) -> tuple[pd.DataFrame, np.ndarray]:
    betas, ids = _raw(d)
    return pd.DataFrame(betas, columns=[str(i) for i in range(betas.shape[1])]), ids


def test_voxel_id_pickled(sub01: Path) -> None:
    frame, ids = _frame(sub01)
    frame.insert(0, "voxel_id", pd.Series(ids.tolist(), dtype=object))
    _to_hdf(_path(sub01, "ResponseData.h5"), frame)
    err = _expect_error(sub01, "sub-01_ResponseData.h5", "ResponseData")
    assert "unpickling" in str(err)


def test_pandas_written_file_reads(sub01: Path, betas_dir: Path) -> None:
    frame, ids = _frame(sub01)
    frame.insert(0, "voxel_id", ids)
    _to_hdf(_path(sub01, "ResponseData.h5"), frame)
    ds = read_things_fmri(sub01, "sub-01", checksum=False)
    want = read_things_fmri(betas_dir, "sub-01", checksum=False)
    np.testing.assert_array_equal(ds["response"].values, want["response"].values)


def test_responses_pickled(sub01: Path) -> None:
    frame, ids = _frame(sub01)
    frame = frame.astype(object)
    frame.insert(0, "voxel_id", ids)
    _to_hdf(_path(sub01, "ResponseData.h5"), frame)
    err = _expect_error(sub01, "sub-01_ResponseData.h5", "ResponseData/block")
    assert "unpickling" in str(err)


@pytest.mark.parametrize("column", ["trial_type", "session", "stimulus"])
def test_missing_stimulus_column(sub01: Path, column: str) -> None:
    p = _path(sub01, "StimulusMetadata.csv")
    pd.read_csv(p).drop(columns=column).to_csv(p, index=False)
    _expect_error(sub01, "sub-01_StimulusMetadata.csv", column)


def test_unknown_trial_type(sub01: Path) -> None:
    p = _path(sub01, "StimulusMetadata.csv")
    stim = pd.read_csv(p)
    stim.loc[3, "trial_type"] = "catch"
    stim.to_csv(p, index=False)
    err = _expect_error(sub01, "sub-01_StimulusMetadata.csv", "trial_type")
    assert "'catch'" in str(err) and "trial 3" in str(err)


def test_voxel_ids_only_pickled(tmp_path: Path) -> None:
    d = _tiny_dir(tmp_path, np.ones((3, 2)), ["train", "train"], ["a.jpg", "b.jpg"], name_ids=False)
    with h5py.File(_path(d, "ResponseData.h5"), "a") as f:
        del f["ResponseData/block1_values"]
        f.create_dataset("ResponseData/block1_values", shape=(1,), dtype=h5py.vlen_dtype("u1"))
    err = _expect_error(d, "sub-01_ResponseData.h5", "voxel_id")
    assert "unpickling" in str(err)


def test_response_block_without_data(tmp_path: Path) -> None:
    d = _tiny_dir(tmp_path, np.ones((3, 2)), ["train", "train"], ["a.jpg", "b.jpg"])
    with h5py.File(_path(d, "ResponseData.h5"), "a") as f:
        del f["ResponseData/block0_values"]
        f.create_dataset("ResponseData/block0_values", shape=(3, 2), dtype="f8")
    err = _expect_error(d, "sub-01_ResponseData.h5", "ResponseData/block0_values")
    assert "no data" in str(err)


def test_missing_voxel_id_column(sub01: Path) -> None:
    p = _path(sub01, "VoxelMetadata.csv")
    pd.read_csv(p).drop(columns="voxel_id").to_csv(p, index=False)
    _expect_error(sub01, "sub-01_VoxelMetadata.csv", "voxel_id")


def _pandas_voxel_table(path: Path) -> pd.DataFrame:
    """The voxel table read by pandas alone (the reference of the pyarrow path)."""
    from memxr.readers.things_fmri import CSV_ROWS, shrink_table

    with pd.read_csv(path, chunksize=CSV_ROWS) as reader:
        return pd.concat([shrink_table(c) for c in reader], ignore_index=True)


def test_voxel_table_parsed_by_pyarrow_equals_pandas(betas_dir: Path, tmp_path: Path) -> None:
    from memxr.readers.things_fmri import read_voxel_table_arrow

    path = betas_dir / "sub-01_VoxelMetadata.csv"
    fast = read_voxel_table_arrow(path)
    assert fast is not None  # numbers only: pyarrow reads it
    pd.testing.assert_frame_equal(fast, _pandas_voxel_table(path), check_exact=True)
    assert any("\n" in c for c in fast.columns)  # names with embedded newlines kept
    # a flag column with other integers, a float column with gaps: still identical
    df = pd.read_csv(path)
    df["V1"] = df["V1"] * 300
    df.loc[::3, "nc_testset"] = np.nan
    df.to_csv(tmp_path / "odd.csv", index=False)
    odd = read_voxel_table_arrow(tmp_path / "odd.csv")
    assert odd is not None
    pd.testing.assert_frame_equal(odd, _pandas_voxel_table(tmp_path / "odd.csv"), check_exact=True)
    # text columns and duplicated names are left to pandas
    df.assign(hemisphere="L").to_csv(tmp_path / "text.csv", index=False)
    assert read_voxel_table_arrow(tmp_path / "text.csv") is None
    (tmp_path / "dup.csv").write_text("voxel_id,V1,V1\n1,0,1\n")
    assert read_voxel_table_arrow(tmp_path / "dup.csv") is None
    assert read_voxel_metadata(tmp_path / "dup.csv").columns.tolist() == ["voxel_id", "V1", "V1.1"]
