"""The memxr command: ingest of every format, info, validate, and bad input.

Every bad input must give one line on stderr naming the file and the field, a
non-zero exit code, and no store (nor partial store) at the output path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import xarray as xr

from memxr.cli import main

FMRI = "things-fmri/betas_csv"


@pytest.fixture()
def fmri_copy(fixtures_dir, tmp_path) -> Path:
    out = tmp_path / "fmri"
    shutil.copytree(fixtures_dir / FMRI, out)
    for f in out.iterdir():
        f.chmod(0o644)
    return out


@pytest.fixture()
def monkey_copy(fixtures_dir, tmp_path) -> Path:
    out = tmp_path / "monkeyN"
    shutil.copytree(fixtures_dir / "tvsd/monkeyN", out)
    for f in out.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    return out


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def _no_store(out: Path):
    assert not out.exists(), f"{out} was left behind"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.partial")]
    assert not leftovers, leftovers


def test_ingest_fmri_with_labels(fixtures_dir, things_dir, truth, tmp_path, capsys):
    out = tmp_path / "sub-01.zarr"
    argv = ["ingest", "things-fmri", "--input", fixtures_dir / FMRI, "--subject", "sub-01"]
    argv += ["--memorability", things_dir / "THINGS_Memorability_Scores.csv"]
    argv += ["--concepts", things_dir / "Concept_to_category_linking.csv", "--out", out]
    code, err = _run(argv + ["--no-progress"], capsys)
    assert code == 0, err
    ds = xr.open_zarr(out)
    assert ds.sizes["stimulus"] == 35 and ds.sizes["channel"] == 300
    ids = [str(s) for s in ds.stimulus_id.values.tolist()]
    mem = dict(zip(ids, ds.memorability.values, strict=True))
    assert np.isnan(mem["goalpost_08s.jpg"]) and 0.3 < mem["kayak_01b.jpg"] <= 1.0
    inputs = json.loads(ds.attrs["inputs"])
    assert [r["name"] for r in inputs][:3] == [
        "sub-01_ResponseData.h5",
        "sub-01_VoxelMetadata.csv",
        "sub-01_StimulusMetadata.csv",
    ]
    assert all(len(r["sha256"]) == 64 for r in inputs)
    # the ROI means of the store equal the truth
    import memxr

    ffa = memxr.roi_reduce(memxr.open_cube(out), "FFA").compute()
    want = truth["fmri"]["sub-01"]["roi_mean"]["FFA"]["per_stimulus"]
    got = dict(zip(ids, ffa.values[:, 0].tolist(), strict=True))
    assert all(abs(got[k] - v) < 1e-6 for k, v in want.items())

    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "things-fmri" in text and "lFFA (12)" in text and "sha256" in text
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["attrs"]["subject"] == "sub-01"
    assert main(["validate", str(out)]) == 0
    assert "valid things-fmri cube" in capsys.readouterr().out


@pytest.mark.parametrize("trials", [False, True])
def test_ingest_tvsd_without_labels(fixtures_dir, truth, tmp_path, capsys, trials):
    out = tmp_path / "n.zarr"
    argv = ["ingest", "tvsd", "--input", fixtures_dir / "tvsd/monkeyN", "--monkey", "N"]
    argv += ["--out", out, "--no-progress"] + (["--trials"] if trials else [])
    code, err = _run(argv, capsys)
    assert code == 0, err
    ds = xr.open_zarr(out)
    assert ds.attrs["dataset"] == ("tvsd-trials" if trials else "tvsd-normmua")
    assert np.isnan(ds.memorability.values).all()
    assert ("time" in ds.dims) is trials
    assert ds.sizes["channel"] == 1024


def test_overwrite_and_zarr2(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "f.zarr"
    base = [
        "ingest",
        "tvsd",
        "--input",
        fixtures_dir / "tvsd/monkeyF",
        "--monkey",
        "F",
        "--out",
        out,
    ]
    assert _run(base + ["--no-progress"], capsys)[0] == 0
    code, err = _run(base, capsys)
    assert code == 2 and "f.zarr: --out: exists" in err and len(err.strip().splitlines()) == 1
    code, err = _run(base + ["--overwrite", "--zarr-format", "2", "--no-progress"], capsys)
    assert code == 0, err
    assert (out / ".zgroup").exists() or (out / ".zmetadata").exists()


def _garbage(p: Path):
    p.write_bytes(b"this is not an HDF5 file at all" * 10)


def _truncate(p: Path):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _drop_group(p: Path):
    with h5py.File(p, "a") as f:
        f.move("ResponseData", "Other")


def _drop_voxel_row(d: Path):
    meta = d / "sub-01_VoxelMetadata.csv"
    df = pd.read_csv(meta)
    df.iloc[:-1].to_csv(meta, index=False)


def _drop_trial_row(d: Path):
    meta = d / "sub-01_StimulusMetadata.csv"
    df = pd.read_csv(meta)
    df.iloc[:-1].to_csv(meta, index=False)


def _duplicate_train(d: Path):
    meta = d / "sub-01_StimulusMetadata.csv"
    df = pd.read_csv(meta)
    train = df.index[df.trial_type == "train"]
    df.loc[train[1], ["stimulus", "concept"]] = df.loc[train[0], ["stimulus", "concept"]].values
    df.to_csv(meta, index=False)


def _pickled_voxel_ids(d: Path):
    """Rewrite ResponseData with an object voxel_id column: pandas pickles it."""
    h5 = d / "sub-01_ResponseData.h5"
    with h5py.File(h5, "r") as f:
        values = f["ResponseData/block0_values"][()]  # small: fixture
        ids = f["ResponseData/block1_values"][()].ravel()  # small: fixture
    frame = pd.DataFrame(values, columns=[str(i) for i in range(values.shape[1])])
    frame.insert(0, "voxel_id", pd.Series(ids.astype(object), dtype=object))
    h5.unlink()
    frame.to_hdf(h5, key="ResponseData", mode="w", format="fixed")


def _no_1024(d: Path):
    with h5py.File(d / "THINGS_MUA_trials.mat", "a") as f:
        data = f["ALLMUA"][:, :1000, :]
        del f["ALLMUA"]
        f["ALLMUA"] = data


def _mapping_not_perm(d: Path):
    m = next((d / "_logs").glob("1024chns_mapping_*.mat"))
    mapping = scipy.io.loadmat(m)["mapping"]
    mapping[0, 1] = mapping[0, 0]
    scipy.io.savemat(m, {"mapping": mapping})


def _bad_name(d: Path):
    with h5py.File(d / "_logs/things_imgs.mat", "a") as f:
        target = f[f["train_imgs/things_path"][0, 0]]
        target[...] = 0xD800  # lone surrogates: not UTF-16


FMRI_CASES = {
    "not-hdf5": (lambda d: _garbage(d / "sub-01_ResponseData.h5"), "sub-01_ResponseData.h5"),
    "truncated": (lambda d: _truncate(d / "sub-01_ResponseData.h5"), "sub-01_ResponseData.h5"),
    "no-group": (lambda d: _drop_group(d / "sub-01_ResponseData.h5"), "ResponseData"),
    "voxel-count": (_drop_voxel_row, "VoxelMetadata"),
    "trial-count": (_drop_trial_row, "StimulusMetadata"),
    "duplicate-stimulus": (_duplicate_train, "stimulus"),
    "pickled-labels": (_pickled_voxel_ids, "unpickl"),
    "missing-file": (lambda d: (d / "sub-01_VoxelMetadata.csv").unlink(), "VoxelMetadata"),
}

TVSD_CASES = {
    "no-1024-axis": (_no_1024, "ALLMUA"),
    "mapping-not-permutation": (_mapping_not_perm, "mapping"),
    "undecodable-name": (_bad_name, "things_imgs.mat"),
}


@pytest.mark.parametrize("case", sorted(FMRI_CASES))
def test_bad_fmri_input(case, fmri_copy, tmp_path, capsys):
    edit, expected = FMRI_CASES[case]
    edit(fmri_copy)
    out = tmp_path / "out.zarr"
    argv = ["ingest", "things-fmri", "--input", fmri_copy, "--subject", "sub-01", "--out", out]
    code, err = _run(argv + ["--no-progress"], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memxr: error: "), err
    assert expected in lines[0] and ": " in lines[0]
    _no_store(out)


@pytest.mark.parametrize("case", sorted(TVSD_CASES))
def test_bad_tvsd_input(case, monkey_copy, tmp_path, capsys):
    edit, expected = TVSD_CASES[case]
    edit(monkey_copy)
    out = tmp_path / "out.zarr"
    argv = ["ingest", "tvsd", "--input", monkey_copy, "--monkey", "N", "--trials", "--out", out]
    code, err = _run(argv + ["--no-progress"], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err
    _no_store(out)


def test_unknown_monkey_and_subject(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "x.zarr"
    argv = [
        "ingest",
        "tvsd",
        "--input",
        fixtures_dir / "tvsd/monkeyN",
        "--monkey",
        "Q",
        "--out",
        out,
    ]
    code, err = _run(argv, capsys)
    assert code == 2 and "monkey" in err
    _no_store(out)
    argv = ["ingest", "things-fmri", "--input", fixtures_dir / FMRI, "--subject", "sub-07"]
    code, err = _run(argv + ["--out", out], capsys)
    assert code == 2 and "sub-07" in err
    _no_store(out)


def test_output_exists_untouched(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "exists.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = [
        "ingest",
        "tvsd",
        "--input",
        fixtures_dir / "tvsd/monkeyN",
        "--monkey",
        "N",
        "--out",
        out,
    ]
    code, err = _run(argv, capsys)
    assert code == 2 and "exists" in err
    assert (out / "keep.txt").read_text() == "mine"


def test_validate_rejects_non_cube(tmp_path, capsys):
    store = tmp_path / "other.zarr"
    xr.Dataset({"x": ("a", np.arange(3.0))}).to_zarr(store)
    code, err = _run(["validate", store], capsys)
    assert code == 2 and "missing data variable 'response'" in err
    code, err = _run(["info", tmp_path / "nothing.zarr"], capsys)
    assert code == 2 and "does not exist" in err


def test_unknown_roi_is_a_clean_error(fixtures_dir, tmp_path):
    import memxr
    from memxr.reduce import UnknownROIError

    out = tmp_path / "f.zarr"
    assert main(["ingest", "tvsd", "--input", str(fixtures_dir / "tvsd/monkeyF"), "--monkey", "F",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    with pytest.raises(UnknownROIError, match="unknown ROI 'FFA'"):
        memxr.roi_reduce(memxr.open_cube(out), "FFA")


def test_console_script_exit_code(tmp_path):
    """The installed entry point exits non-zero on bad input."""
    r = subprocess.run(
        [sys.executable, "-m", "memxr.cli", "info", str(tmp_path / "missing.zarr")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_synth_then_ingest_every_format(tmp_path, capsys):
    """`memxr synth` then `memxr ingest` on all formats: stores that validate and open plainly."""
    raw = tmp_path / "raw"
    assert main(["synth", str(raw), "--scale", "0.001", "--seed", "3"]) == 0
    tables = ["--memorability", str(raw / "things/THINGS_Memorability_Scores.csv"),
              "--concepts", str(raw / "things/Concept_to_category_linking.csv")]  # fmt: skip
    jobs = {
        "fmri.zarr": [
            "things-fmri",
            "--input",
            str(raw / "things-fmri/betas_csv"),
            "--subject",
            "sub-02",
        ],
        "n.zarr": ["tvsd", "--input", str(raw / "tvsd/monkeyN"), "--monkey", "N"],
        "f_trials.zarr": [
            "tvsd",
            "--input",
            str(raw / "tvsd/monkeyF"),
            "--monkey",
            "F",
            "--trials",
        ],
    }
    for name, args in jobs.items():
        out = tmp_path / name
        assert main(["ingest", *args, *tables, "--out", str(out), "--no-progress"]) == 0
        assert main(["validate", str(out)]) == 0
        ds = xr.open_zarr(out)
        assert np.isfinite(ds.memorability.values).sum() >= ds.sizes["stimulus"] - 1
    assert xr.open_zarr(tmp_path / "f_trials.zarr").sizes["time"] >= 30
    capsys.readouterr()


def test_run_progress_flags(tmp_path, capsys, monkeypatch):
    """``memxr run --progress`` / ``--no-progress`` / default (None: when stderr is a
    terminal) and ``--progress-interval`` reach the runner; a non-positive interval is a
    clean error."""
    import memxr.pipeline

    seen = {}
    monkeypatch.setattr(memxr.pipeline, "run", lambda spec, **kw: seen.update(kw))
    spec = str(tmp_path / "s.yaml")
    for flags, expected in (([], None), (["--progress"], True), (["--no-progress"], False)):
        assert main(["run", spec, *flags]) == 0
        assert seen["progress"] is expected and seen["progress_interval"] == 30.0
    assert main(["run", spec, "--progress", "--progress-interval", "2.5"]) == 0
    assert seen["progress_interval"] == 2.5
    assert main(["run", spec, "--progress-interval", "0"]) == 2
    assert "--progress-interval: must be > 0" in capsys.readouterr().err
