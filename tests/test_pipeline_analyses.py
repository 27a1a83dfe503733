"""The follow-up analyses of ``memxr run``: covariates, within-concept and pooled rows,
comparisons, latency and variance partitioning, on small synthetic data with a strong
low-level confound of V1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from memxr.pipeline import run
from memxr.pipeline.analyses import (
    COMPARISON_COLUMNS,
    LATENCY_COLUMNS,
    VARIANCE_PARTITION_COLUMNS,
    pooled_comparison_rows,
    pooled_latency_rows,
    pooled_rows,
)
from memxr.pipeline.spec import SpecError, load_spec
from memxr.testing import spec_dict

# V1 carries memorability only through the covariate: r(V1, memo) = 0.9 x 0.5, partial 0
CONFOUND = {
    "covariate_r": 0.5,
    "fmri_confounds": {"V1": 0.9, "hV4": 0.1},
    "tvsd_confounds": {"V1": 0.9, "V4": 0.1},
}


def _spec(**changes) -> dict:
    spec = spec_dict("followups", title="follow-ups")
    spec["inputs"]["covariates"] = {"path": "raw/covariates.csv", "columns": ["low_level"]}
    spec["analyses"] = {
        "correlation": {"n_permutations": 49, "n_bootstrap": 49, "how": ["mean"]},
        "comparisons": {"n_bootstrap": 0},
        "latency": {"n_permutations": 99, "n_bootstrap": 99},
        "variance_partition": {"cv": 3, "n_permutations": 9},
    }
    for section, value in changes.items():
        spec["analyses"][section] = value
    return spec


def _write(folder: Path, spec: dict, name: str = "followups.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from memxr.synth import LARGE_EFFECTS, synthesize

    folder = tmp_path_factory.mktemp("followups")
    synthesize(
        folder / "raw", scale=0.002, seed=1, subjects=("sub-01",), monkeys=("N",),
        n_fmri_concepts=20, n_tvsd_concepts=20, **LARGE_EFFECTS, **CONFOUND,
    )  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def client():
    from memxr.pipeline.cluster import cluster_client

    with cluster_client(workers=1) as c:
        yield c


@pytest.fixture(scope="module")
def first(work, client) -> tuple[Path, list[str]]:
    lines: list[str] = []
    out = run(_write(work, _spec()), out=work / "out", client=client, log=lines.append)
    return out, lines


def _table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / f"{name}.csv")


def test_tables_and_report(first):
    out, _ = first
    for name, columns in (("comparisons", COMPARISON_COLUMNS), ("latency", LATENCY_COLUMNS),
                          ("variance_partition", VARIANCE_PARTITION_COLUMNS)):  # fmt: skip
        table = _table(out, name)
        assert list(table.columns[: len(columns)]) == columns, name
        assert len(table) > 0, name
    corr = _table(out, "correlations")
    assert set(corr.control) == {"none", "covariates", "within_concept"}
    assert set(corr.trials) == {"single (train)", "mean of 3 (test)"}
    cov = corr[corr.control == "covariates"]
    assert set(cov.covariates) == {"low_level"}
    assert (cov.covariates_missing == 0).all() and (cov.covariates_matched >= cov.n).all()
    assert corr.p_family.notna().all()
    html = (out / "report.html").read_text()
    for section in ("confounds", "comparisons", "latency", "variance_partition"):
        assert f'id="{section}"' in html, section


def test_partial_correlation_removes_the_covariate(first):
    out, _ = first
    corr = _table(out, "correlations")
    corr = corr[(corr.trials == "single (train)") & (corr.method == "pearson")]
    r = corr.set_index(["subject", "roi", "control"]).r
    for subject in ("sub-01", "monkeyN"):
        plain, partial = r[subject, "V1", "none"], r[subject, "V1", "covariates"]
        assert plain > 0.25, subject  # planted 0.45, all through the covariate
        assert abs(partial) < plain - 0.2, subject
        assert r[subject, "IT", "covariates"] > 0.4, subject  # a direct effect stays


def test_it_v1_difference(first):
    out, _ = first
    comp = _table(out, "comparisons").set_index(["subject", "pair"])
    for subject in ("sub-01", "monkeyN"):
        row = comp.loc[(subject, "IT-V1")]
        assert row["diff"] > 0 and row["p"] < 0.05 and row["ci_low"] > 0, subject
    assert "pairs of this cube and split" in comp.p_family.iloc[0]
    assert set(comp.loc["monkeyN"].index) == {"IT-V4", "V4-V1", "IT-V1"}


def test_latency_covers_planted_onsets(first, work):
    out, _ = first
    truth = json.loads((work / "raw" / "truth.json").read_text())
    planted = truth["tvsd"]["N"]["effect_half_rise_and_peak_ms"]
    lat = _table(out, "latency")
    lat = lat[lat.trials == "single (train)"].set_index("roi")
    assert set(lat.index) == {"V1", "V4", "IT"}
    for area in ("V4", "IT"):  # V1 has no planted effect of its own (only the covariate's)
        onset, peak = planted[area]
        row = lat.loc[area]
        assert row.p_cluster < 0.05, area
        assert row.onset_low - 10 <= onset <= row.onset_high + 10, area  # a 10 ms bin each side
        assert row.peak_low - 10 <= peak <= row.peak_high + 10, area
    assert lat.loc["V4", "onset"] < lat.loc["IT", "onset"]
    assert lat.onset.notna().all() and (lat.onset_low <= lat.onset_high).all()


def test_variance_partition(first):
    out, _ = first
    vp = _table(out, "variance_partition")
    assert set(vp.subject) == {"sub-01", "monkeyN"}
    assert (vp.r2_both >= vp.r2_covariates - 0.1).all()
    assert set(vp.covariates) == {"low_level"}


def test_changed_comparison_reruns_only_it(first, work, client):
    lines: list[str] = []
    spec = _spec(comparisons={"n_bootstrap": 0, "pairs": [["IT", "V1"]]})
    run(_write(work, spec), out=work / "out", client=client, log=lines.append)
    ran = [ln.split(" run  ")[1] for ln in lines if " run  " in ln]
    assert ran == ["comparisons", "provenance", "report"]
    comp = _table(work / "out", "comparisons")
    assert set(comp.pair) == {"IT-V1"}


def test_pooled_rows():
    rng = np.random.default_rng(0)
    rows = []
    for subject in ("s1", "s2", "s3"):
        for roi, r in (("IT", 0.2), ("V1", 0.0)):
            rr = r + 0.02 * rng.standard_normal()
            rows.append({"dataset": "things-fmri", "subject": subject, "roi": roi,
                         "method": "pearson", "how": "mean", "trials": "single (train)",
                         "control": "none", "r": rr, "ci_low": rr - 0.06,
                         "ci_high": rr + 0.06, "n": 8000})  # fmt: skip
    rows.append(dict(rows[0], dataset="tvsd", subject="monkeyN"))  # one monkey: not pooled
    pooled = pooled_rows(pd.DataFrame(rows)).set_index("roi")
    assert list(pooled.index) == ["IT", "V1"] and set(pooled.subject) == {"pooled"}
    assert set(pooled.method) == {"pearson"} and set(pooled.how) == {"mean"}
    assert pooled.loc["IT", "p_fdr"] < 0.05 and pooled.loc["V1", "p"] > 0.05
    assert (pooled.k == 3).all() and "random effects" in pooled.p_family.iloc[0]
    assert pooled_rows(pd.DataFrame(rows[:2])).empty


def _bad(work: Path, spec: dict, check_files: bool = True) -> str:
    path = _write(work, spec, "bad.yaml")
    with pytest.raises(SpecError) as e:
        load_spec(path, check_files=check_files)
    return str(e.value)


def test_spec_errors(work):
    spec = _spec()
    spec["inputs"]["covariates"] = "raw/nothing.csv"
    assert _bad(work, spec) == "bad.yaml: inputs.covariates.path: no such file: raw/nothing.csv"
    spec["inputs"]["covariates"] = {"path": "raw/covariates.csv", "columns": ["low_levl"]}
    assert _bad(work, spec) == (
        "bad.yaml: inputs.covariates.columns[0]: 'low_levl' in raw/covariates.csv: no such "
        "column (did you mean 'low_level'?)"
    )
    spec["inputs"]["covariates"] = {"path": "raw/covariates.csv", "columns": ["concept"]}
    assert _bad(work, spec).endswith("'concept' in raw/covariates.csv: is not numeric")
    spec["inputs"]["covariates"] = {"path": "raw/covariates.csv", "colums": ["low_level"]}
    assert "unknown key 'colums' (did you mean 'columns'?)" in _bad(work, spec)
    del spec["inputs"]["covariates"]
    assert _bad(work, spec) == (
        "bad.yaml: analyses.variance_partition: needs covariates: give inputs.covariates "
        "(or control_category: true)"
    )
    bad_pair = _spec(comparisons={"pairs": [["IT", "IT"]]})
    assert "comparisons.pairs[0]: a pair of two different ROIs" in _bad(work, bad_pair)
    ok = load_spec(_write(work, _spec()))
    assert ok.data["inputs"]["covariates"]["columns"] == ["low_level"]
    assert ok.data["analyses"]["correlation"]["control_category"] is False


def test_step_keys_follow_the_covariates(work):
    """The correlations and variance partition keys change with the covariate table and its
    columns; the other steps' do not."""
    import shutil

    from memxr.pipeline import plan
    from memxr.pipeline.core import step_key

    def keys(spec: dict) -> dict[str, str]:
        steps = plan(load_spec(_write(work, spec, "keys.yaml")), work / "keys-out")
        done: dict[str, str] = {}
        for step in steps:
            done[step.name] = step_key(step, done)
        return done

    shutil.copy(work / "raw" / "covariates.csv", work / "raw" / "covariates_copy.csv")
    base = _spec()
    base["inputs"]["covariates"]["path"] = "raw/covariates_copy.csv"
    first = keys(base)
    more = _spec()
    more["inputs"]["covariates"] = {"path": "raw/covariates_copy.csv",
                                    "columns": ["low_level", "half_a"]}  # fmt: skip
    second = keys(more)
    changed = {k for k in first if first[k] != second[k]}
    assert changed == {"correlations", "variance_partition", "provenance", "report"}
    with open(work / "raw" / "covariates_copy.csv", "a") as f:
        f.write("\n")
    third = keys(base)
    assert third["correlations"] != first["correlations"]
    assert third["comparisons"] == first["comparisons"] and third["latency"] == first["latency"]


def test_pooled_comparison_rows():
    from memxr.stats import random_effects

    rows = []
    diffs = {"IT-V1": [0.18, 0.15, 0.21], "FFA-PPA": [0.02, -0.03, 0.01]}
    for pair, values in diffs.items():
        a, b = pair.split("-")
        for i, d in enumerate(values):
            rows.append({"dataset": "things-fmri", "subject": f"sub-0{i + 1}", "method": "pearson",
                         "how": "mean", "trials": "single (train)", "pair": pair, "roi_a": a,
                         "roi_b": b, "r_a": 0.2 + 0.01 * i, "r_b": 0.2 + 0.01 * i - d,
                         "diff": d, "ci_low": d - 0.04 - 0.01 * i, "ci_high": d + 0.04 + 0.01 * i,
                         "p": 0.01, "n": 8000})  # fmt: skip
    rows.append(dict(rows[0], dataset="tvsd", subject="monkeyN"))  # one monkey: no group row
    table = pd.DataFrame(rows)
    pooled = pooled_comparison_rows(table).set_index("pair")
    assert set(pooled.index) == {"IT-V1", "FFA-PPA"} and set(pooled.subject) == {"pooled"}
    part = table[(table.pair == "IT-V1") & (table.dataset == "things-fmri")]
    se = (part.ci_high - part.ci_low) / (2 * 1.959963984540054)
    want = random_effects(part["diff"], se=se, scale="identity")
    got = pooled.loc["IT-V1"]
    assert got["diff"] == pytest.approx(want["r"]) and got["p"] == pytest.approx(want["p"])
    assert got["ci_low"] == pytest.approx(want["ci_low"]) and got["k"] == 3
    assert got["r_a"] == pytest.approx(np.tanh(np.arctanh(part.r_a).mean()))
    assert got["p_fdr"] < 0.05 and pooled.loc["FFA-PPA", "p"] > 0.05
    assert "pooled pairs" in got["p_family"]


def test_pooled_latency_rows():
    t = pd.DataFrame({"dataset": "tvsd-trials", "subject": ["monkeyN", "monkeyF", "monkeyN"],
                      "roi": ["IT", "IT", "V4"], "method": "pearson",
                      "trials": "single (train)", "onset": [98.0, 106.0, 80.0],
                      "onset_low": [90.0, 96.0, 70.0], "onset_high": [106.0, 116.0, 90.0],
                      "peak": [150.0, np.nan, 120.0], "peak_low": [140.0, np.nan, 110.0],
                      "peak_high": [160.0, np.nan, 130.0], "n": 22248})  # fmt: skip
    pooled = pooled_latency_rows(t)
    assert len(pooled) == 1  # V4 has one monkey
    row = pooled.iloc[0]
    assert row.roi == "IT" and row.subject == "pooled" and row.k == 2
    assert 98 < row.onset < 106 and row.onset_low < 90 and row.onset_high > 116
    assert np.isnan(row.peak)  # one monkey with a peak: not pooled
    assert "no test" in row.p_family
