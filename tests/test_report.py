"""memxr.report: one self-contained HTML page from a run folder's tables and provenance."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memxr import plots, report
from memxr.errors import InputError
from memxr.report.summary import inputs_of

PNG = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"
DPI = 50
SHA = "ab" * 32


# ---------------------------------------------------------------------------------------------
# a small run folder with every table (planted: IT and FFA significant, V1 and EVIL not)
# ---------------------------------------------------------------------------------------------


def correlations() -> pd.DataFrame:
    planted = {"V1": (0.02, 0.6), "FFA": (0.22, 0.003), "IT": (0.35, 0.0002), EVIL: (0.01, 0.7)}
    rows = []
    for subject in ("sub-01", "sub-02"):
        for roi, (r, p) in planted.items():
            for method in ("pearson", "spearman"):
                rows.append(
                    {"dataset": "things-fmri", "subject": subject, "roi": roi, "method": method,
                     "how": "mean", "r": r, "p": p / 2, "ci_low": r - 0.05, "ci_high": r + 0.05,
                     "p_fdr": p, "n": 240, "n_channels": 40, "noise_ceiling": 0.62}
                )  # fmt: skip
    return pd.DataFrame(rows)


def timecourse() -> pd.DataFrame:
    times = np.arange(0.0, 260.0, 20.0)
    rows = []
    for roi, peak in (("V1", 80.0), ("V4", 100.0), ("IT", 140.0)):
        r = 0.3 * np.exp(-(((times - peak) / 30) ** 2))
        p = np.where(r > 0.1, 0.001, 0.5)
        rows += [
            {"dataset": "tvsd", "subject": "monkeyN", "roi": roi, "method": "pearson", "time": t,
             "r": ri, "p": pi, "ci_low": ri - 0.03, "ci_high": ri + 0.03, "p_fdr": pi, "n": 200}
            for t, ri, pi in zip(times, r, p, strict=True)
        ]  # fmt: skip
    return pd.DataFrame(rows)


def models() -> pd.DataFrame:
    rows = []
    for fs, score in (("roi_IT", 0.31), ("roi_V1", 0.04)):
        for model, cv, extra in (("ridge", "grouped", 0.0), ("ridge", "random", 0.12),
                                 ("linear", "grouped", -0.02)):  # fmt: skip
            s = score + extra
            rows.append(
                {"dataset": "things-fmri", "subject": "sub-01", "feature_set": fs, "model": model,
                 "kind": "regressor", "cv": cv, "label_split": "", "n_stimuli": 240,
                 "n_folds": 5, "pearson_r": s, "spearman_rho": s, "r2": s**2, "accuracy": np.nan,
                 "roc_auc": np.nan, "metric": "pearson_r", "chance_mean": 0.001,
                 "chance_p": 0.0196, "n_permutations": 50, "noise_ceiling": 0.62,
                 "fraction_of_ceiling": s / 0.62}
            )  # fmt: skip
    rows.append(
        rows[0] | {"model": "svc", "kind": "classifier", "pearson_r": np.nan, "roc_auc": 0.66,
                   "accuracy": 0.61, "metric": "roc_auc", "chance_mean": 0.5,
                   "noise_ceiling": np.nan, "fraction_of_ceiling": np.nan}
    )  # fmt: skip
    return pd.DataFrame(rows)


def predictions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    obs = rng.uniform(0.5, 1.0, 40)
    rows = []
    for fs, model, slope in (("roi_IT", "ridge", 0.6), ("roi_V1", "linear", 0.0)):
        pred = 0.75 + slope * (obs - 0.75) + rng.normal(0, 0.03, obs.size)
        rows += [
            {"dataset": "things-fmri", "subject": "sub-01", "feature_set": fs, "model": model,
             "stimulus_id": f"im{i}.jpg", "observed": o, "predicted": p}
            for i, (o, p) in enumerate(zip(obs, pred, strict=True))
        ]  # fmt: skip
    return pd.DataFrame(rows)


def bridge_effects() -> pd.DataFrame:
    rows = []
    for species, subject, rois in (("human", "sub-01", ("FFA", "IT")), ("macaque", "monkeyN",
                                                                       ("V4", "IT"))):  # fmt: skip
        for roi in rois:
            sig = roi in ("FFA", "IT") and not (species == "macaque" and roi == "V4")
            rows.append(
                {"species": species, "subject": subject, "roi": roi, "method": "pearson",
                 "r": 0.3 if sig else 0.0, "p": 0.01, "ci_low": -0.1, "ci_high": 0.4,
                 "p_fdr": 0.01 if sig else 0.9, "n": 120, "pair": "sub-01~monkeyN"}
            )  # fmt: skip
    return pd.DataFrame(rows)


def bridge_rsa() -> pd.DataFrame:
    rows = [
        {"pair": "sub-01~monkeyN", "level": "image", "human_roi": h, "monkey_area": m,
         "rsa_r": 0.45 if (h, m) == ("IT", "IT") else 0.02, "p": 0.01,
         "p_fdr": 0.001 if (h, m) == ("IT", "IT") else 0.7, "n_items": 120}
        for h in ("V1", "IT") for m in ("V1", "IT")
    ]  # fmt: skip
    return pd.DataFrame(rows)


def bridge_decoding() -> pd.DataFrame:
    return pd.DataFrame(
        {"pair": "sub-01~monkeyN", "direction": ["monkeyN->sub-01", "sub-01->monkeyN"],
         "train_features": ["IT", "IT"], "test_features": ["IT", "IT"],
         "pearson_r": [0.21, 0.12], "spearman_rho": [0.2, 0.1], "p": [0.004, 0.08], "n": 120}
    )  # fmt: skip


TABLES = {
    "correlations": correlations,
    "timecourse": timecourse,
    "models": models,
    "predictions": predictions,
    "bridge_effects": bridge_effects,
    "bridge_rsa": bridge_rsa,
    "bridge_decoding": bridge_decoding,
}
FIGURES = ["correlations", "timecourse", "models", "predictions", "bridge_effects", "bridge_rsa"]


def provenance() -> dict:
    return {
        "spec": {"name": "memorability-demo", "datasets": {"things-fmri": ["sub-01"]}},
        "spec_hash": "0123456789abcdef",
        "versions": {"memxr": "0.1.0", "numpy": "2.4.6", "dask": "2025.1.0"},
        "created": "2026-11-26T12:00:00Z",
        "inputs": [
            {"name": "things-fmri/betas_csv/sub-01_ResponseData.h5", "size": 1234, "sha256": SHA},
            {"name": f"things/{EVIL}.csv", "size": 5, "sha256": "cd" * 32},
        ],
    }


def make_run(root: Path, names=tuple(TABLES), prov: dict | None = None) -> Path:
    (root / "tables").mkdir(parents=True)
    for name in names:
        TABLES[name]().to_csv(root / "tables" / f"{name}.csv", index=False)
    if prov is not None:
        (root / "provenance.json").write_text(json.dumps(prov))
    return root


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, str]:
    run = make_run(tmp_path_factory.mktemp("run") / "demo", prov=provenance())
    path = report.write_report(run, dpi=DPI)
    return path, path.read_text(encoding="utf-8")


def section(page: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert match, name
    return match.group(1)


def plain(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


# ---------------------------------------------------------------------------------------------
# the full report
# ---------------------------------------------------------------------------------------------


def test_report_is_one_file_with_every_figure_embedded(full):
    path, page = full
    run = path.parent
    assert path == run / "report.html"
    assert sorted(p.name for p in run.iterdir()) == [
        "figures", "provenance.json", "report.html", "tables"]  # fmt: skip
    assert sorted(p.stem for p in (run / "figures").iterdir()) == sorted(FIGURES)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(FIGURES) == page.count("data:image/png;base64,")
    files = {(run / "figures" / f"{n}.png").read_bytes() for n in FIGURES}
    for data in images:
        raw = base64.b64decode(data)
        assert raw.startswith(PNG) and raw in files
    for name in FIGURES:
        assert f'<section id="{name}">' in page
    assert '<section id="bridge_decoding">' in page  # table only


def test_report_has_no_external_resources_or_scripts(full):
    _, page = full
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    for ref in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page):
        assert ref.startswith(("data:", "#")), ref
    assert "@import" not in page and "url(" not in page


def test_report_escapes_table_and_provenance_text(full):
    _, page = full
    assert EVIL not in page
    escaped = html.escape(EVIL)
    assert page.count(f"<td>{escaped}</td>") == 4  # 2 subjects x 2 methods
    assert f"things/{escaped}.csv" in page


def test_report_key_findings_from_the_tables(full):
    _, page = full
    text = plain(section(page, "findings"))
    for subject in ("sub-01", "sub-02"):
        sentence = re.search(rf"things-fmri {subject}: FDR-significant .*?\)\.", text)
        assert sentence, text
        assert "IT (Pearson r = 0.35, p_fdr = 2.0e-04)" in sentence.group(0)
        assert "FFA (Pearson r = 0.22, p_fdr = 0.003)" in sentence.group(0)
        assert "V1" not in sentence.group(0) and "script" not in sentence.group(0)
    assert "things-fmri: significant in all 2 subjects: FFA, IT." in text
    assert "tvsd monkeyN: the IT effect peaks at 140 ms (r = 0.30" in text
    assert "best model ridge on roi_IT (concept-grouped CV): Pearson r = 0.310" in text
    assert "vs permutation chance 0.001 (p = 0.020)" in text
    assert "random-split CV gives 0.430" in text
    assert "best model svc on roi_IT (concept-grouped CV): ROC AUC = 0.660" in text
    assert "sub-01~monkeyN on 120 shared stimuli" in text
    assert "human: FFA, IT; macaque: IT" in text
    assert "strongest match IT ~ IT (rsa r = 0.45); 1 of 4" in text
    assert "best monkeyN->sub-01 (r = 0.21, p = 0.004)" in text


def test_report_summary_methods_and_provenance(full):
    _, page = full
    assert "<title>memxr report: memorability-demo</title>" in page
    summary = plain(section(page, "summary"))
    for expected in ("memorability-demo", "0123456789abcdef", "2026-11-26T12:00:00Z",
                     "things-fmri (sub-01, sub-02)", "tvsd (monkeyN)", "sub-01~monkeyN",
                     "memxr version 0.1.0", "dask 2025.1.0"):  # fmt: skip
        assert expected in summary, expected
    methods = plain(section(page, "methods"))
    for expected in ("grouped by THINGS concept", "50 permutations", "Benjamini-Hochberg",
                     "Spearman", "bootstrap", "noise ceiling".capitalize()):  # fmt: skip
        assert expected in methods, expected
    prov = section(page, "provenance")
    assert SHA in prov and "sub-01_ResponseData.h5" in prov and "1234" in prov


def test_report_tables_are_formatted(full):
    _, page = full
    corr = section(page, "correlations")
    assert '<tr class="sig"><td>things-fmri</td><td>sub-01</td><td>IT</td>' in corr
    assert '<td class="num">2.0e-04</td><td>***</td>' in corr  # p_fdr then its mark
    assert '<td class="num">240</td>' in corr and "240.0" not in corr
    tc = plain(section(page, "timecourse"))
    assert "peak_time" in tc and "first_significant_time" in tc
    assert "IT pearson 140 0.300 0.001 120 3 13" in tc  # peak, p_fdr there, onset, bins
    pred = plain(section(page, "predictions"))
    assert "roi_IT" in pred and "pearson_r" in pred
    models_html = section(page, "models")
    assert "<th>score</th>" in models_html and "<th>_score</th>" not in models_html


# ---------------------------------------------------------------------------------------------
# partial and odd run folders
# ---------------------------------------------------------------------------------------------


def test_partial_run_only_correlations(tmp_path):
    run = make_run(tmp_path / "run", names=("correlations",))
    page = report.write_report(run, title="Only correlations", dpi=DPI).read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "<h1>Only correlations</h1>" in page
    assert "No provenance.json" in page
    assert "FDR-significant memorability correlations in IT" in page
    assert '<section id="models">' not in page
    assert [p.name for p in (run / "figures").iterdir()] == ["correlations.png"]


def test_empty_run_folder_and_empty_table(tmp_path):
    page = report.write_report(tmp_path, dpi=DPI).read_text()
    assert "data:image/png" not in page and "No findings" in page
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "timecourse.csv").write_text("")
    pd.DataFrame(columns=list(correlations().columns)).to_csv(
        tmp_path / "tables" / "correlations.csv", index=False
    )
    page = report.write_report(tmp_path, dpi=DPI).read_text()
    assert page.count("data:image/png;base64,") == 2  # two "no data" figures
    assert page.count("The table is empty.") == 2


def test_bad_inputs_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="run_dir"):
        report.write_report(tmp_path / "missing")
    (tmp_path / "provenance.json").write_text("{not json")
    with pytest.raises(InputError, match=r"^provenance\.json: json: "):
        report.write_report(tmp_path)


def test_a_failing_figure_does_not_lose_the_report(tmp_path, monkeypatch, caplog):
    run = make_run(tmp_path / "run", names=("correlations", "models"))

    def broken(df):
        raise RuntimeError("boom")

    monkeypatch.setattr(plots, "model_comparison", broken)
    with caplog.at_level(logging.WARNING, logger="memxr.report"):
        page = report.write_report(run, dpi=DPI).read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "figure models failed: RuntimeError: boom" in caplog.text


def test_figures_returns_png_paths_at_the_given_dpi(tmp_path):
    run = make_run(tmp_path / "run", names=("timecourse", "bridge_rsa", "bridge_decoding"))
    paths = report.figures(run, dpi=40)
    assert list(paths) == ["timecourse", "bridge_rsa"]
    for path in paths.values():
        assert path.read_bytes().startswith(PNG)
    width = int.from_bytes(paths["timecourse"].read_bytes()[16:20], "big")  # IHDR
    assert 100 < width < 40 * 12
    big = report.figures(run, dpi=80)["timecourse"].read_bytes()
    assert int.from_bytes(big[16:20], "big") == pytest.approx(2 * width, abs=2)


def test_prediction_figure_shows_the_best_grouped_regressor(tmp_path):
    run = make_run(tmp_path / "run", names=("models", "predictions"))
    fig = report.write._prediction_figure(report.load_tables(run))
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == [
        "things-fmri · sub-01 · roi_IT · ridge"]  # fmt: skip


def test_prediction_figure_picks_each_subjects_best_regressor():
    two = pd.concat([models(), models().assign(subject="sub-02")], ignore_index=True)
    # the best of sub-02 (ridge on roi_V1, grouped) has no predictions: the next one is shown
    v1 = (two.subject == "sub-02") & (two.feature_set == "roi_V1")
    two.loc[v1, "pearson_r"] = [0.95, 0.99, 0.9]  # ridge grouped, ridge random, linear grouped
    pred = pd.concat([predictions(), predictions().assign(subject="sub-02")])
    fig = report.write._prediction_figure({"models": two, "predictions": pred})
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes]
    assert titles == [
        "things-fmri · sub-01 · roi_IT · ridge",
        "things-fmri · sub-02 · roi_V1 · linear",
    ]


def test_load_tables_keeps_text_labels(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "correlations.csv").write_text("roi,r,p_fdr\nNA,0.1,\nNone,,0.2\n")
    df = report.load_tables(tmp_path)["correlations"]
    assert df.roi.tolist() == ["NA", "None"]
    assert np.isnan(df.r[1]) and np.isnan(df.p_fdr[0])


def test_provenance_inputs_in_other_shapes():
    nested = {"inputs": {"things-fmri": [{"name": "a.h5", "size": 3, "sha256": SHA}],
                         "things": {"scores.csv": SHA}}}  # fmt: skip
    assert inputs_of(nested) == [
        {"name": "things-fmri/a.h5", "size": 3, "sha256": SHA},
        {"name": "things/scores.csv", "size": None, "sha256": SHA},
    ]
    assert inputs_of({"input_checksums": {"x.csv": SHA}}) == [
        {"name": "x.csv", "size": None, "sha256": SHA}]  # fmt: skip


def test_pipeline_shaped_provenance(tmp_path):
    prov = {
        "spec_file": "demo.yaml",
        "spec_hash": "feedbeef",
        "spec": {"name": "demo"},
        "created": "2026-11-26T12:00:00Z",
        "memxr_version": "0.1.0",
        "versions": {"memxr": "0.1.0", "zarr": "3.1.6"},
        "inputs": {"things-fmri_sub-01": [{"name": "sub-01.h5", "size": 10, "sha256": SHA}]},
        "tables": {"tables/correlations.csv": {"sha256": "cd" * 32, "size": 900}},
        "steps": {"correlations": {"key": "9" * 40, "seconds": 2.5, "finished": "t1"}},
    }
    run = make_run(tmp_path / "run", names=("correlations",), prov=prov)
    page = report.write_report(run, dpi=DPI).read_text()
    summary = plain(section(page, "summary"))
    assert "spec file demo.yaml" in summary and "zarr 3.1.6" in summary
    text = plain(section(page, "provenance"))
    assert f"things-fmri_sub-01/sub-01.h5 10 {SHA}" in text
    assert f"tables/correlations.csv 900 {'cd' * 32}" in text
    assert "correlations 999999999999 2.500 t1" in text


def test_time_courses_reported_by_their_clusters(tmp_path):
    """The time-course table and its cluster table: significance, onset and offset come from
    the family-wise cluster test, each with its family named."""
    tc = timecourse().assign(trials="single (train)", p_cluster=np.nan)
    inside = (tc.roi == "IT") & tc.time.between(100, 180)
    tc.loc[inside, "p_cluster"] = 0.004
    tc["p_cluster_family"] = "cluster-mass permutation test, family-wise over 3 feature(s)"
    clusters = pd.DataFrame(
        {"dataset": "tvsd", "subject": "monkeyN", "method": "pearson", "trials": "single (train)",
         "roi": ["IT", "V1"], "cluster": [2, 1], "sign": [1, 1], "onset": [100.0, 60.0],
         "offset": [180.0, 80.0], "n_bins": [5, 2], "mass": [20.0, 4.0],
         "p_cluster": [0.004, 0.41], "p_family": "cluster-mass permutation test"}
    )  # fmt: skip
    (tmp_path / "tables").mkdir()
    tc.to_csv(tmp_path / "tables" / "timecourse.csv", index=False)
    clusters.to_csv(tmp_path / "tables" / "timecourse_clusters.csv", index=False)
    page = report.write_report(tmp_path, dpi=DPI).read_text()
    text = plain(section(page, "timecourse_clusters"))
    assert "onset" in text and "offset" in text and "cluster-mass permutation test" in text
    findings = plain(page[: page.index('<section id="timecourse"')])
    assert "significant cluster 100-180 ms (p_cluster = 0.004)" in findings
    assert "family-wise" in plain(page)


def test_follow_up_sections_from_the_pipeline_tables(tmp_path):
    """Confounds, comparisons, latency, group rows: sections stating trials and families."""
    from memxr.pipeline.analyses import pooled_rows

    corr = correlations().assign(trials="single (train)", control="none",
                                 p_family="p_fdr: Benjamini-Hochberg over the ROIs")  # fmt: skip
    covs = corr.assign(control="covariates", covariates="low_level", covariates_matched=240,
                       covariates_missing=0,
                       r=np.where(corr.roi == "V1", 0.0, corr.r - 0.02))  # fmt: skip
    table = pd.concat([corr, covs], ignore_index=True)
    table = pd.concat([table, pooled_rows(table)], ignore_index=True)
    comp = pd.DataFrame({"dataset": "tvsd", "subject": "monkeyN", "trials": "single (train)",
                         "method": "pearson", "how": "mean", "pair": ["IT-V4", "V4-V1"],
                         "roi_a": ["IT", "V4"], "roi_b": ["V4", "V1"], "r_a": [0.1, 0.07],
                         "r_b": [0.07, 0.01], "diff": [0.03, 0.06], "ci_low": [0.01, 0.03],
                         "ci_high": [0.05, 0.09], "p": [0.004, 0.001], "p_fdr": [0.004, 0.002],
                         "n": 4800, "p_family": "p_fdr: Benjamini-Hochberg over the 2 pairs"})  # fmt: skip
    lat = pd.DataFrame({"dataset": "tvsd", "subject": "monkeyN", "roi": ["V1", "V4", "IT"],
                        "method": "pearson", "trials": "single (train)",
                        "onset": [70.0, 90.0, 120.0], "onset_low": [60.0, 80.0, 100.0],
                        "onset_high": [80.0, 100.0, 140.0], "peak": [90.0, 140.0, 180.0],
                        "peak_low": 0.0, "peak_high": 300.0, "peak_r": 0.1,
                        "p_cluster": [0.3, 0.01, 0.001], "criterion": "fraction"})  # fmt: skip
    (tmp_path / "tables").mkdir()
    for name, df in (("correlations", table), ("comparisons", comp), ("latency", lat),
                     ("timecourse", timecourse())):  # fmt: skip
        df.to_csv(tmp_path / "tables" / f"{name}.csv", index=False)
    page = report.write_report(tmp_path, dpi=DPI).read_text()
    assert {"correlations", "individuals", "timecourse"} <= {
        p.stem for p in (tmp_path / "figures").glob("*.png")
    }
    for name in ("confounds", "comparisons", "individuals", "latency"):
        text = plain(section(page, name))
        assert "Trials" in text and ("Famil" in text or "family" in text), name
    confounds = plain(section(page, "confounds"))
    assert "tables/correlations.csv (rows with control covariates" in confounds
    assert "r_covariates" in confounds
    comparisons = plain(section(page, "comparisons"))
    assert "IT > V4 > V1 supported: both steps significant." in comparisons
    findings = plain(section(page, "findings"))
    assert "V1 0.02 -> 0.00" in findings and "IT > V4 > V1 supported" in findings
    assert "pooled over individuals (random effects): V1 r = 0.02" in findings
    assert "V1 onset 70 ms [60, 80], peak 90 ms [0, 300] (no significant cluster)" in findings
    # the plain correlations section and figure show the individuals' plain rows only
    rows = plain(section(page, "correlations"))
    assert "pooled" not in rows and "covariates" not in rows.split("Table:")[1]
