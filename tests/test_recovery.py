"""Planted-effect recovery at real effect sizes: synthetic raw files -> readers -> analyses.

The generator plants population correlations of ROI means with memorability at the sizes
of real data (fMRI FFA 0.20, IT 0.20, PPA 0.15, LOC 0.15, EBA 0.10; TVSD IT 0.10, V4 0.07;
V1 only 0.01, through a low-level covariate), exactly, and writes them to the truth (see
:mod:`memxr.synth.model`). To detect r = 0.1 the data sets here have 4,800-6,000 images
(few voxels and no time-resolved trials keep them fast).

Tolerance. An estimate must lie within four standard errors of the planted value, the
standard error being that of the concept-grouped bootstrap (the CI width / 3.92): images
of a concept share memorability and responses, so the bootstrap resamples concepts. Four
standard errors leave a false failure rate of 6e-5 per ROI, while an error in a planted
value of 0.05 (a fifth of FFA's) exceeds them (SE ~ 0.012 here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import memxr
from memxr.align import labelled
from memxr.features import roi_features
from memxr.models import fit_models
from memxr.readers.things_fmri import read_things_fmri
from memxr.readers.tvsd import read_normmua
from memxr.readers.tvsd_trials import read_trials
from memxr.reduce import normalize_days, window_reduce
from memxr.stats import correlate, partial_correlate
from memxr.synth import LARGE_EFFECTS, synthesize

FMRI_ROIS = ["FFA", "IT", "PPA", "LOC", "EBA", "V1"]
AREAS = ["V1", "V4", "IT"]
KW = {"n_permutations": 200, "n_bootstrap": 400, "groups": "concept", "seed": 1}
Z = 4.0  # standard errors of tolerance (see the module notes)


def _tables(raw):
    t = raw / "things"
    return {
        "memorability": t / "THINGS_Memorability_Scores.csv",
        "concepts": t / "Concept_to_category_linking.csv",
        "checksum": False,
    }


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """One subject (4,800 train images, 600 voxels) and monkey N's normMUA (6,000 images)."""
    out = tmp_path_factory.mktemp("recovery")
    truth = synthesize(
        out, scale=0.001, seed=7, subjects=("sub-01",), monkeys=("N",), trials=False,
        n_voxels=600, n_fmri_concepts=400, n_tvsd_concepts=500, n_tvsd_test=20, n_reps=6,
        n_days=4,
    )  # fmt: skip
    return out, truth


@pytest.fixture(scope="module")
def fmri(raw):
    out, _ = raw
    return labelled(read_things_fmri(out / "things-fmri/betas_csv", "sub-01", **_tables(out)))


@pytest.fixture(scope="module")
def normmua(raw):
    out, _ = raw
    return labelled(read_normmua(out / "tvsd/monkeyN", "N", **_tables(out)))


def _by_roi(res: xr.Dataset, var: str) -> dict[str, float]:
    return {str(k): float(v) for k, v in zip(res.roi.values, res[var].values, strict=True)}


def _check_recovery(res: xr.Dataset, planted: dict[str, float]) -> dict[str, float]:
    """Every ROI within Z standard errors of its planted value; returns the z-scores."""
    r, lo, hi = (_by_roi(res, v) for v in ("r", "ci_low", "ci_high"))
    z = {k: (r[k] - planted[k]) / ((hi[k] - lo[k]) / 3.92) for k in planted}
    assert all(abs(v) < Z for v in z.values()), (r, planted, z)
    return z


def test_fmri_recovers_planted_correlations(fmri, raw):
    _, truth = raw
    rois = truth["fmri"]["sub-01"]["rois"]
    x = memxr.roi_reduce(fmri, FMRI_ROIS)
    res = correlate(x, fmri.memorability, method="pearson", **KW).compute()
    _check_recovery(res, {k: rois[k]["r"] for k in FMRI_ROIS})
    r, pf = _by_roi(res, "r"), _by_roi(res, "p_fdr")
    # every planted ROI is significant after FDR, V1 (0.01, the covariate's share) is not
    assert all(pf[k] < 0.05 for k in FMRI_ROIS if k != "V1"), pf
    assert pf["V1"] > 0.05, pf
    # the planted ordering: differences of 0.05 are 3-4 standard errors of a difference here
    assert r["FFA"] > r["PPA"] > r["EBA"] > r["V1"] and r["FFA"] > r["LOC"] > r["EBA"], r
    # Spearman: for bivariate normal data rho_s = 6/pi asin(r/2)
    res = correlate(x, fmri.memorability, method="spearman", **KW).compute()
    _check_recovery(res, {k: 6 / np.pi * np.arcsin(rois[k]["r"] / 2) for k in FMRI_ROIS})


def test_tvsd_recovers_planted_correlations(normmua, raw):
    _, truth = raw
    areas = truth["tvsd"]["N"]["areas"]
    assert areas["IT"]["r"] > areas["V4"]["r"] > areas["V1"]["r"]
    x = memxr.roi_reduce(normmua, AREAS)
    res = correlate(x, normmua.memorability, method="pearson", **KW).compute()
    _check_recovery(res, {k: areas[k]["r"] for k in AREAS})
    pf = _by_roi(res, "p_fdr")
    assert pf["IT"] < 0.01 and pf["V4"] < 0.05 and pf["V1"] > 0.05, pf
    # the IT - V4 difference (0.03) is recovered too, within Z times a bound on its standard
    # error (the sum of the two standard errors: sd(a - b) <= sd(a) + sd(b))
    r, lo, hi = (_by_roi(res, v) for v in ("r", "ci_low", "ci_high"))
    se = sum((hi[k] - lo[k]) / 3.92 for k in ("IT", "V4"))
    planted = areas["IT"]["r"] - areas["V4"]["r"]
    assert abs(r["IT"] - r["V4"] - planted) < Z * se, (r, se)


def test_partial_correlation_removes_the_covariate(tmp_path):
    """A strong confound: V1 (no direct effect) correlates with memorability only through
    the low-level covariate, and the partial correlation controlling for it is ~0."""
    out = tmp_path / "raw"
    truth = synthesize(
        out, scale=0.001, seed=9, subjects=(), monkeys=("N",), trials=False,
        n_tvsd_concepts=400, n_tvsd_test=12, n_reps=6, n_days=3, covariate_r=0.3,
        tvsd_confounds={"V1": 0.5, "V4": 0.3},
    )  # fmt: skip
    areas = truth["tvsd"]["N"]["areas"]
    assert areas["V1"]["r"] == pytest.approx(0.15) and areas["V1"]["r_partial"] == pytest.approx(0)
    cube = labelled(read_normmua(out / "tvsd/monkeyN", "N", **_tables(out)))
    cov = pd.read_csv(out / "covariates.csv", index_col="image_name").low_level
    low = xr.DataArray(cov.reindex(cube.stimulus_id.values).to_numpy(), dims="stimulus")
    x = memxr.roi_reduce(cube, AREAS)
    total = correlate(x, cube.memorability, **KW).compute()
    assert float(total.p_fdr.sel(roi="V1")) < 0.01
    _check_recovery(total, {k: areas[k]["r"] for k in AREAS})
    part = partial_correlate(x, cube.memorability, low, **KW).compute()
    _check_recovery(part, {k: areas[k]["r_partial"] for k in AREAS})
    assert float(part.p_fdr.sel(roi="V1")) > 0.05
    assert float(part.p_fdr.sel(roi="IT")) < 0.05


def test_tvsd_time_course(tmp_path):
    """Machinery on small data with LARGE_EFFECTS: normalised trials give the planted time
    course (nothing before onset, IT peaking after 100 ms) and their windowed IT mean the
    planted population correlation of normMUA."""
    out = tmp_path / "raw"
    truth = synthesize(
        out, scale=0.002, seed=7, subjects=(), monkeys=("N",), n_tvsd_concepts=30, **LARGE_EFFECTS
    )
    cube = labelled(normalize_days(read_trials(out / "tvsd/monkeyN", "N", **_tables(out))))
    x = memxr.roi_reduce(cube, ["V1", "IT"])
    res = correlate(x, cube.memorability, n_permutations=200, n_bootstrap=0, seed=2).compute()
    it = res.r.sel(roi="IT")
    peak = float(it.time[int(np.argmax(it.values))])
    rise, top = truth["tvsd"]["N"]["effect_half_rise_and_peak_ms"]["IT"]
    assert rise - 30 <= peak <= 200, peak
    before = res.p_fdr.sel(roi="IT").where(res.time < 0, drop=True)
    assert (before > 0.05).all()
    assert float(res.p_fdr.sel(roi="IT").sel(time=top, method="nearest")) < 0.05
    win = window_reduce(x)
    got = correlate(win, cube.memorability, n_permutations=0, n_bootstrap=400, groups="concept")
    _check_recovery(got.compute().sel(roi=["IT"]), {"IT": truth["tvsd"]["N"]["areas"]["IT"]["r"]})


def test_decoders_beat_chance_only_with_signal(fmri):
    """At real sizes (4,800 images): FFA voxel patterns predict memorability above
    permutation chance (concept-grouped CV); V1 patterns (no direct effect) do not."""
    feats = {"FFA": roi_features(fmri, ["FFA"]), "V1": roi_features(fmri, ["V1"])}
    res = fit_models(feats, fmri.memorability, models=("linear",), cv=5, n_permutations=40,
                     seed=0, client=False)  # fmt: skip
    t = res.table.set_index("feature_set")
    assert t.loc["FFA", "chance_p"] < 0.05 and t.loc["FFA", "pearson_r"] > 0.1
    assert t.loc["V1", "chance_p"] > 0.05
    assert (res.table.cv == "grouped").all()
