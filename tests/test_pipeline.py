"""``memxr run`` end to end on tiny synthetic data: outputs, planted effects, caching, CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from memxr.cli import EXIT_BUSY, main
from memxr.pipeline import plan, run, versions
from memxr.pipeline.spec import load_spec
from memxr.provenance import sha256_file
from memxr.store.atomic import FileLock
from memxr.testing import write_spec

# Leading columns of each table, as the results contract orders them.
COLUMNS = {
    "correlations": "dataset subject roi method how r p ci_low ci_high p_fdr n n_channels"
    " noise_ceiling",
    "timecourse": "dataset subject roi method time r p ci_low ci_high p_fdr n",
    "models": "dataset subject feature_set model kind cv",
    "predictions": "dataset subject feature_set model stimulus_id observed predicted",
    "bridge_effects": "species subject roi method r p ci_low ci_high p_fdr n pair",
    "bridge_rsa": "pair level human_roi monkey_area rsa_r p p_fdr n_items",
    "bridge_decoding": "pair direction train_features test_features pearson_r spearman_rho p n",
}
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
STEPS = [
    "ingest:sub-01",
    "ingest:monkeyN",
    "magnitudes:sub-01",
    "magnitudes:monkeyN",
    "correlations",
    "timecourse",
    "models",
    "bridge",
    "provenance",
    "report",
    "catalog",
]




@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Synthetic raw files (one subject, one monkey with trials) at scale 0.002, with large
    effects (99 images: the machinery is tested here; inference at real sizes in
    test_recovery)."""
    from memxr.synth import LARGE_EFFECTS, synthesize

    folder = tmp_path_factory.mktemp("pipeline")
    synthesize(
        folder / "raw", scale=0.002, seed=0, subjects=("sub-01",), monkeys=("N",), **LARGE_EFFECTS
    )
    return folder


@pytest.fixture(scope="module")
def client():
    from memxr.pipeline.cluster import cluster_client

    with cluster_client(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def first(work, client) -> tuple[Path, list[str]]:
    lines: list[str] = []
    out = run(write_spec(work), out=work / "out", client=client, log=lines.append)
    return out, lines


def _ran(lines: list[str]) -> list[str]:
    return [ln.split(" run  ")[1] for ln in lines if " run  " in ln]


def _skipped(lines: list[str]) -> list[str]:
    return [ln.split(" skip ")[1].removesuffix(" (cached)") for ln in lines if " skip " in ln]


def test_plan_lists_the_steps(work):
    steps = plan(load_spec(write_spec(work, "plan.yaml")), work / "plan-out")
    assert [s.name for s in steps] == STEPS
    assert steps[-1].outputs == ["stores/catalog.tsv"]


def test_first_run_writes_every_output(first):
    out, lines = first
    assert _ran(lines) == STEPS
    assert any(ln.startswith("dashboard: http") for ln in lines)
    for name, columns in COLUMNS.items():
        table = pd.read_csv(out / "tables" / f"{name}.csv")
        assert list(table.columns[: len(columns.split())]) == columns.split(), name
        if name != "bridge_decoding":  # decoding is disabled in this spec
            assert len(table) > 0, name
    for name in ("correlations", "timecourse", "models", "bridge"):
        assert (out / "results" / f"{name}.zarr").is_dir()
    for meta in [*(out / "results").rglob("zarr.json"), *(out / "magnitudes").rglob("zarr.json")]:
        node = json.loads(meta.read_text())
        if node.get("node_type") == "array":  # every chunk of a result ends with its CRC-32C
            assert node["codecs"][-1]["name"] == "crc32c", meta
    assert {p.name for p in (out / "figures").glob("*.png")} >= {"correlations.png"}
    html = (out / "report.html").read_text()
    assert "<h1>tiny run</h1>" in html and "data:image/png;base64," in html
    assert not list(out.rglob(".*.partial-*")), "temporary files left behind"


def test_planted_effects(first):
    out, _ = first
    table = pd.read_csv(out / "tables" / "correlations.csv")
    assert set(table.control) == {"none", "within_concept"}  # no covariates in this spec
    table = table[table.control == "none"]  # the plain correlations
    assert set(table.trials) == {"single (train)", "mean of 3 (test)"}
    corr = table[table.trials == "single (train)"]
    r = corr[(corr.method == "pearson") & (corr.how == "mean")].set_index(["subject", "roi"]).r
    # planted (LARGE_EFFECTS): fMRI FFA 0.75, IT 0.7, V1 0.01; monkey IT 0.75, V4 0.45, V1 0.01
    assert r["sub-01", "FFA"] > r["sub-01", "V1"] + 0.3
    assert r["sub-01", "IT"] > r["sub-01", "V1"] + 0.3
    assert r["monkeyN", "IT"] > r["monkeyN", "V4"] > r["monkeyN", "V1"]
    assert (
        corr.set_index(["subject", "roi", "method", "how"]).loc[
            ("sub-01", "FFA", "spearman", "mean"), "p_fdr"
        ]
        < 0.05
    )
    # train images (single trials) and test images (means of 3 repeats) apart, never pooled
    assert set(corr.n) == {95} and set(table[table.trials != "single (train)"].n) == {4}
    assert set(corr[corr.roi == "V1"].n_channels) == {55, 512}
    tc = pd.read_csv(out / "tables" / "timecourse.csv")
    tc = tc[tc.trials == "single (train)"]
    it = tc[tc.roi == "IT"].set_index("time").r
    assert it.loc[100:180].mean() > 0.3 > it.loc[:0].abs().mean()
    clusters = pd.read_csv(out / "tables" / "timecourse_clusters.csv")
    first_it = clusters[(clusters.roi == "IT") & (clusters.sign == 1)].sort_values("mass").iloc[-1]
    assert 80 <= first_it.onset <= 130 and first_it.offset >= 170
    assert first_it.p_cluster == clusters.p_cluster.min()
    assert tc.p_cluster_family.str.contains("family-wise over 3 feature").all()
    models = pd.read_csv(out / "tables" / "models.csv")
    ridge = models.set_index(["subject", "feature_set", "model"])
    assert ridge.loc[("sub-01", "magnitude", "ridge"), "pearson_r"] > 0.5
    preds = pd.read_csv(out / "tables" / "predictions.csv")
    assert len(preds) == 2 * 95 and preds.observed.between(0, 1).all()
    assert set(models.trials) == {"single (train)"}  # 4 test images: too few to fit apart
    effects = pd.read_csv(out / "tables" / "bridge_effects.csv")
    assert set(effects.pair) == {"sub-01~monkeyN"} and set(effects.species) == {"human", "macaque"}
    assert effects.groupby("trials").n.unique().to_dict() == {
        "mean of 3 (test)": [4],
        "single (train)": [95],
    }


def test_ceilings_on_the_scale_of_the_trials_analysed(first, work):
    """The ceiling of a train row is that of one trial, of a test row that of the mean of the
    repeats, both with the memorability reliability: sqrt(rel_k x rel_m)."""
    out, _ = first
    corr = pd.read_csv(out / "tables" / "correlations.csv")
    corr = corr[corr.control == "none"]
    assert set(corr.memorability_reliability) == {0.45}
    expected = (corr.neural_reliability.clip(lower=0) * 0.45) ** 0.5
    pd.testing.assert_series_equal(corr.noise_ceiling, expected, check_names=False, atol=1e-9)
    rel = corr.set_index(["subject", "roi", "method", "how", "trials"]).neural_reliability
    single = rel.xs("single (train)", level="trials")
    test = rel.xs("mean of 3 (test)", level="trials")
    assert (test > single).all()
    np.testing.assert_allclose(test, 3 * single / (1 + 2 * single), rtol=0.05)
    assert corr.p_family.str.startswith("p_fdr: Benjamini-Hochberg over the 3 ROIs").all()


def test_provenance(first, work):
    out, _ = first
    prov = json.loads((out / "provenance.json").read_text())
    spec = load_spec(work / "tiny.yaml")
    assert prov["spec_hash"] == spec.spec_hash and prov["spec"] == spec.data
    assert set(versions()) <= set(prov["versions"])
    assert {
        "memxr",
        "numpy",
        "dask",
        "distributed",
        "xarray",
        "zarr",
        "scikit-learn",
        "dask-ml",
    } <= set(prov["versions"])
    raw = work / "raw" / "things-fmri" / "betas_csv" / "sub-01_ResponseData.h5"
    records = {r["name"]: r for r in prov["inputs"]["sub-01"]}
    assert records["sub-01_ResponseData.h5"]["sha256"] == sha256_file(raw)
    assert all(not r["name"].startswith("/") for rs in prov["inputs"].values() for r in rs)
    table = out / "tables" / "correlations.csv"
    assert prov["tables"]["tables/correlations.csv"]["sha256"] == sha256_file(table)
    assert set(prov["steps"]) == set(STEPS[:-3])
    for name in ("correlations", "models", "bridge"):
        tree = xr.open_datatree(out / "results" / f"{name}.zarr", engine="zarr")
        assert tree.attrs["spec_hash"] == spec.spec_hash
        inner = json.loads(tree.attrs["provenance"])
        assert inner["step"] == name and inner["versions"]["dask"] == versions()["dask"]
        assert inner["inputs"]["sub-01"][0]["sha256"]
    cube = xr.open_zarr(out / "stores" / "sub-01.zarr")
    assert cube.attrs["spec_hash"] == spec.spec_hash
    mags = xr.open_zarr(out / "magnitudes" / "monkeyN.zarr")
    assert set(mags.data_vars) >= {
        "mean",
        "l2",
        "mean_time",
        "l2_time",
        "reliability_single",
        "reliability_repeats",
    }
    assert mags.attrs["normalisation"].startswith("per (channel, recording day)")
    assert mags.attrs["units"] == "z"
    catalog = pd.read_csv(out / "stores" / "catalog.tsv", sep="\t")
    assert sorted(catalog.name) == ["monkeyN", "sub-01"]


def test_open_prepared_normalises_trials(first, work):
    """Time-resolved TVSD cubes reach every analysis normalised per day, unless the spec says
    ``rois.tvsd.normalize: false`` (raw MUA, as stored)."""
    from memxr.pipeline.core import Context
    from memxr.pipeline.steps import open_prepared
    from memxr.testing import spec_dict

    out, _ = first
    raw = xr.open_zarr(out / "stores" / "monkeyN.zarr")
    for normalize in (True, False):
        data = spec_dict()
        data["rois"]["tvsd"] = {"normalize": normalize}
        path = work / "normalize.yaml"
        path.write_text(yaml.safe_dump(data))
        spec = load_spec(path)
        ctx = Context(spec, out, None, lambda _: None, False)
        cube = next(c for c in spec.cubes if c["name"] == "monkeyN")
        ds, names, _ = open_prepared(ctx, cube)
        assert names == ["V1", "V4", "IT"]
        same = np.allclose(ds.response.values, raw.response.values, equal_nan=True)
        assert same != normalize
        assert (ds.attrs["units"] == "z") == normalize


def test_rerun_skips_everything(first, work, client):
    out, _ = first
    before = {p: p.stat().st_mtime_ns for p in (out / "tables").glob("*.csv")}
    lines: list[str] = []
    run(work / "tiny.yaml", out=out, client=client, log=lines.append)
    assert _ran(lines) == [] and _skipped(lines) == STEPS
    assert before == {p: p.stat().st_mtime_ns for p in (out / "tables").glob("*.csv")}


def test_changed_parameter_recomputes_only_its_dependents(first, work, client):
    out, _ = first
    copy = work / "out-changed"
    shutil.copytree(out, copy)
    spec = write_spec(work, "changed.yaml", correlation={"n_permutations": 99})
    lines: list[str] = []
    run(spec, out=copy, client=client, log=lines.append)
    assert _ran(lines) == ["correlations", "provenance", "report"]
    assert _skipped(lines) == [s for s in STEPS if s not in _ran(lines)]
    old = pd.read_csv(out / "tables" / "correlations.csv")
    new = pd.read_csv(copy / "tables" / "correlations.csv")
    pd.testing.assert_series_equal(old.r, new.r)
    assert old.p.min() == pytest.approx(1 / 50) and new.p.min() == pytest.approx(1 / 100)
    prov = json.loads((copy / "provenance.json").read_text())
    assert prov["spec_hash"] == load_spec(spec).spec_hash
    # an upstream change (the fMRI ROIs) reaches the magnitudes and everything after them
    spec = write_spec(work, "rois.yaml", correlation={"n_permutations": 99})
    data = yaml.safe_load(spec.read_text())
    data["rois"]["things-fmri"]["names"] = ["FFA", "V1"]
    del data["analyses"]["models"], data["analyses"]["bridge"]
    spec.write_text(yaml.safe_dump(data))
    lines = []
    run(spec, out=copy, client=client, log=lines.append)
    assert _ran(lines) == ["magnitudes:sub-01", "correlations", "provenance", "report"]
    assert not (copy / "tables" / "models.csv").exists()
    assert not (copy / "results" / "bridge.zarr").exists()
    corr = pd.read_csv(copy / "tables" / "correlations.csv")
    assert sorted(set(corr[corr.subject == "sub-01"].roi)) == ["FFA", "V1"]


def test_missing_output_is_rebuilt(first, work, client):
    out, _ = first
    copy = work / "out-missing"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "results" / "correlations.zarr")
    lines: list[str] = []
    run(work / "tiny.yaml", out=copy, client=client, log=lines.append)
    assert _ran(lines) == ["correlations"]
    assert (copy / "results" / "correlations.zarr").is_dir()
    assert _tables(copy) == _tables(out)


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "tables").glob("*.csv"))}


def test_cli_run(first, work, capsys):
    out, _ = first
    code = main(["run", str(work / "tiny.yaml"), "--out", str(out), "--workers", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "dashboard: http" in printed
    assert all(f"skip {s} (cached)" in printed for s in STEPS)


def test_two_concurrent_runs(first, work, client, paused):
    """The issue's finding 1: a second `memxr run` on one --out while the first runs is
    refused with one line naming the first and touches nothing; the first's tables are
    right and nothing is left behind."""
    out, _ = first
    twice = work / "out-twice"
    shutil.copytree(out, twice)
    for folder in ("results", "tables"):  # the analyses run again, ingests stay cached
        shutil.rmtree(twice / folder)
    argv = [sys.executable, "-m", "memxr.cli", "run", work / "tiny.yaml", "--out", twice,
            "--scheduler", client.scheduler.address]  # fmt: skip
    a = paused(argv, "stdout")  # stops at its first line, printed holding the lock of OUT

    def holds() -> bool:
        h = FileLock(twice).holder()
        return h is not None and h.pid == a.pid and h.alive

    a.wait_until(holds, "the lock of OUT")
    before = _files(work)
    b = subprocess.run(
        [str(x) for x in argv], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert b.returncode == EXIT_BUSY and b.stdout == ""
    assert b.stderr.startswith(
        f"memxr: error: out-twice: out: being written by pid {a.pid} on "
        f"{socket.gethostname()} since 20"
    )
    assert b.stderr.count("\n") == 1
    assert _files(work) == before  # the second run touched nothing
    assert a.resume() == 0
    assert "run  models" in a.text and "skip ingest:sub-01 (cached)" in a.text
    assert _tables(twice) == _tables(out)
    assert not [p for p in work.rglob("*") if ".partial-" in p.name or p.name.endswith(".lock")]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_cli_run_bad_spec(work, capsys):
    spec = write_spec(work, "bad.yaml", models={"cv": "five"})
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "memxr: error: bad.yaml: analyses.models.cv: expected int, got 'five'"
    assert not (Path("runs") / "tiny").exists()


def test_store_input_unions_and_reliability_filter(first, work, client):
    out, _ = first
    store = out / "stores" / "sub-01.zarr"
    spec = {
        "name": "stores",
        "inputs": {"cubes": [{"name": "s1", "kind": "store", "input": str(store)}]},
        "rois": {
            "things-fmri": {
                "names": ["FFA", "ventral"],
                "definitions": {"ventral": ["FFA", "PPA"]},
                "reliability": {"by": "nc_testset", "threshold": 40.0},
            }
        },
        "analyses": {
            "correlation": {
                "methods": ["pearson"],
                "how": ["mean"],
                "n_permutations": 9,
                "n_bootstrap": 0,
            }
        },
    }
    path = work / "stores.yaml"
    path.write_text(yaml.safe_dump(spec))
    lines: list[str] = []
    result = run(path, out=work / "out-stores", client=client, log=lines.append)
    assert _ran(lines) == ["magnitudes:s1", "correlations", "provenance", "report", "catalog"]
    corr = pd.read_csv(result / "tables" / "correlations.csv")
    corr = corr[(corr.trials == "single (train)") & (corr.control == "none")].set_index("roi")
    cube = xr.open_zarr(store)
    nc = cube["nc_testset"].values >= 40.0
    names = [str(r) for r in cube["roi"].values]
    mask = cube["roi_mask"].values
    ffa = mask[:, names.index("lFFA")] | mask[:, names.index("rFFA")]
    ppa = mask[:, names.index("lPPA")] | mask[:, names.index("rPPA")]
    assert corr.loc["FFA", "n_channels"] == (ffa & nc).sum() > 0
    assert corr.loc["ventral", "n_channels"] == ((ffa | ppa) & nc).sum()
    assert corr.loc["FFA", "r"] > 0.5
    catalog = pd.read_csv(result / "stores" / "catalog.tsv", sep="\t")
    assert catalog.name.tolist() == ["sub-01"]


def test_models_load_patterns_one_split_at_a_time(first, work):
    """The models step keeps ROI patterns lazy until a split is fit, and then loads only that
    split's rows (a real-size THINGS-fMRI subject's patterns of every stimulus beside their
    train rows did not fit the client of a 24 GB machine)."""
    from memxr.models.task import is_dask
    from memxr.pipeline.core import Context
    from memxr.pipeline.steps import feature_sets, model_split, split_in_memory, split_rows
    from memxr.testing import spec_dict

    out, _ = first
    path = work / "patterns.yaml"
    path.write_text(yaml.safe_dump(spec_dict()))
    spec = load_spec(path)
    ctx = Context(spec, out, None, lambda _: None, False)
    cube = next(c for c in spec.cubes if c["name"] == "sub-01")
    p = {"feature_sets": ["magnitude", "pattern"], "pca": 5}
    sets, pcs = feature_sets(ctx, cube, p)
    patterns = [k for k in sets if k.startswith("pattern_")]
    assert patterns and all(is_dask(sets[k].data) for k in patterns)
    assert not is_dask(sets["magnitude"].data)
    train = split_rows(sets["magnitude"], "train")
    mem = np.asarray(sets["magnitude"]["memorability"].values, dtype=float).copy()
    mem[train[0]] = np.nan  # an image without a score: left out before loading
    sets["magnitude"] = sets["magnitude"].assign_coords(memorability=("stimulus", mem))
    part, why = model_split(sets, "train", 3, "concept")
    assert part is not None, why
    loaded = split_in_memory(ctx, part)
    train = train[np.isfinite(mem[train])]
    for k in patterns:
        assert not is_dask(loaded[k].data)
        assert loaded[k].sizes["stimulus"] == train.size < sets[k].sizes["stimulus"]
        eager = sets[k].compute().isel(stimulus=train)
        np.testing.assert_array_equal(loaded[k].values, eager.values)
    assert all(is_dask(sets[k].data) for k in patterns)  # the full sets stay lazy


def test_model_target_leaves_out_stimuli_with_missing_features():
    from memxr.pipeline.steps import model_target

    mem = ("stimulus", [0.5, 0.6, np.nan, 0.8])
    a = xr.DataArray(np.ones((4, 2)), dims=("stimulus", "feature"), coords={"memorability": mem})
    assert model_target({"a": a}) == "memorability"
    b = a.copy(data=np.array([[1.0, 1], [np.nan, 1], [1, 1], [1, 1]]))
    y = model_target({"a": a, "b": b})
    assert np.isnan(y.values).tolist() == [False, True, True, False]


@pytest.mark.parametrize("progress", [False, True])
def test_compute_keeps_variables_that_feed_others(client, progress):
    """A Dataset whose variable feeds another through blockwise layers (the noise ceiling of
    the magnitudes step is sqrt of the reliability) comes back whole from the cluster."""
    import dask.array as da
    import numpy as np

    from memxr.pipeline.core import Context, compute

    x = xr.DataArray(da.ones((4, 3), chunks=(2, 3)), dims=("a", "b"))
    rel = (x + 3).transpose("b", "a")
    ds = xr.Dataset({"reliability": rel, "ceiling_r": np.sqrt(rel)})
    ctx = Context(spec=None, out=Path("."), client=client, log=print, progress=progress)
    box: dict = {}

    def work():
        try:
            box["out"] = compute(ctx, ds)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(120)  # a progress bar on a cancelled future never returns
    if "error" in box:
        raise box["error"]
    assert "out" in box, "compute did not return"
    out = box["out"]
    assert out.reliability.shape == (3, 4) and float(out.reliability.max()) == 4.0
    np.testing.assert_array_equal(out.ceiling_r.values, np.full((3, 4), 2.0))


def test_progress_lines_of_a_long_step(work, client):
    """With progress on, a running step prints lines of its tasks (done/total, elapsed,
    ETA) at intervals, counted by the scheduler; without it, nothing but the step lines."""
    import re

    from memxr.testing import spec_dict

    spec = spec_dict("progress")
    spec["inputs"]["cubes"] = spec["inputs"]["cubes"][:1]
    spec["analyses"] = {"models": {"models": ["ridge", "linear_svc"], "cv": 3,
                                   "n_permutations": 39, "early_stop": 0}}  # fmt: skip
    path = work / "progress.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    lines: list[str] = []
    run(path, out=work / "progress-out", client=client, log=lines.append, progress=True,
        progress_interval=0.05)  # fmt: skip
    pattern = re.compile(r"^\[ ?\d+/\d+\] models: (\d+)/(\d+) tasks \(\d+%\), \S+ elapsed, ~\S+ to go$")
    found = [pattern.match(ln) for ln in lines]
    counts = [(int(m.group(1)), int(m.group(2))) for m in found if m]
    assert counts, lines
    assert counts[-1][0] == counts[-1][1] > 0  # the last line: every task done
    quiet: list[str] = []
    run(path, out=work / "progress-quiet", client=client, log=quiet.append, progress=False,
        progress_interval=0.05)  # fmt: skip
    assert not [ln for ln in quiet if " tasks (" in ln]


def test_progress_without_a_distributed_client():
    """Without a client the lines come from dask's local callbacks."""
    import time

    import dask.array as da

    from memxr.pipeline.progress import task_progress

    def slow(block):
        time.sleep(0.01)
        return block

    import re
    import warnings

    lines: list[str] = []
    with task_progress(None, "[ 1/1] local", lines.append, interval=0.05), \
            warnings.catch_warnings():  # fmt: skip
        warnings.filterwarnings("ignore", message="Running on a single-machine scheduler")
        da.ones(400, chunks=10).map_blocks(slow).sum().compute(scheduler="sync")
    assert len(lines) >= 2 and all(ln.startswith("[ 1/1] local: ") for ln in lines)
    done, total = map(int, re.match(r".*: (\d+)/(\d+) tasks", lines[-1]).groups())
    assert done == total >= 40, lines[-1]
