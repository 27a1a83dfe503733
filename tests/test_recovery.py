"""Planted-effect recovery: synthetic raw files -> readers -> analyses find what was planted.

The generator plants memorability gains per ROI/area (fMRI FFA 0.6, PPA 0.5,
IT 0.5, LOC 0.4, EBA 0.3, V1 0; TVSD IT 0.6, V4 0.25, V1 0) and a TVSD time
course rising after ~100 ms. The analyses must recover the ordering, cover the
population correlation with their CIs, leave zero-gain ROIs non-significant
after FDR, and decode above permutation chance only where signal was planted.
"""

from __future__ import annotations

import numpy as np
import pytest

import memxr
from memxr.align import labelled
from memxr.features import roi_features
from memxr.models import fit_models
from memxr.readers.things_fmri import read_things_fmri
from memxr.readers.tvsd import read_normmua
from memxr.readers.tvsd_trials import read_trials
from memxr.reduce import window_reduce
from memxr.stats import correlate
from memxr.synth import synthesize

FMRI_ROIS = ["FFA", "PPA", "IT", "LOC", "EBA", "V1"]
KW = {"n_permutations": 400, "n_bootstrap": 400, "groups": "concept", "seed": 1}


def _tables(raw):
    t = raw / "things"
    return {
        "memorability": t / "THINGS_Memorability_Scores.csv",
        "concepts": t / "Concept_to_category_linking.csv",
    }


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("recovery")
    truth = synthesize(
        out,
        scale=0.002,
        seed=7,
        subjects=("sub-01",),
        monkeys=("N",),
        n_fmri_concepts=30,
        n_tvsd_concepts=30,
    )
    return out, truth


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """The population correlation: the same generator on ten times more images."""
    out = tmp_path_factory.mktemp("population")
    synthesize(out, scale=0.002, seed=99, subjects=("sub-01",), monkeys=(), n_fmri_concepts=300)
    cube = labelled(read_things_fmri(out / "things-fmri/betas_csv", "sub-01", **_tables(out)))
    x = memxr.roi_reduce(cube, FMRI_ROIS)
    res = correlate(x, cube.memorability, method="pearson", n_permutations=0, n_bootstrap=0)
    return res.r.compute()


@pytest.fixture(scope="module")
def fmri(raw):
    out, _ = raw
    return labelled(read_things_fmri(out / "things-fmri/betas_csv", "sub-01", **_tables(out)))


def test_fmri_roi_ordering_and_fdr(fmri, raw):
    _, truth = raw
    gains = truth["fmri"]["sub-01"]["planted_gain"]
    planted = {"FFA": gains["lFFA"], "PPA": gains["lPPA"], "IT": gains["IT"],
               "LOC": gains["lLOC"], "EBA": gains["lEBA"], "V1": gains["V1"]}  # fmt: skip
    for method in ("pearson", "spearman"):
        res = correlate(memxr.roi_reduce(fmri, FMRI_ROIS), fmri.memorability, method=method, **KW)
        res = res.compute()
        r = {str(k): float(v) for k, v in zip(res.roi.values, res.r.values, strict=True)}
        pf = {str(k): float(v) for k, v in zip(res.roi.values, res.p_fdr.values, strict=True)}
        # the ordering follows the plant: strongest > weakest > zero
        assert r["FFA"] > r["EBA"] > r["V1"]
        order = np.corrcoef(
            np.argsort(np.argsort([r[k] for k in FMRI_ROIS])),
            np.argsort(np.argsort([planted[k] for k in FMRI_ROIS])),
        )[0, 1]
        assert order > 0.7, (method, r)
        # every planted ROI is significant after FDR, the zero-gain ROI is not
        assert all(pf[k] < 0.05 for k in FMRI_ROIS if planted[k] > 0), pf
        assert pf["V1"] > 0.05, pf


def test_fmri_ci_cover_population(fmri, population):
    res = correlate(memxr.roi_reduce(fmri, FMRI_ROIS), fmri.memorability, method="pearson", **KW)
    res = res.compute()
    covered = (res.ci_low <= population) & (population <= res.ci_high)
    assert int(covered.sum()) >= len(FMRI_ROIS) - 1, (
        res.ci_low.values,
        population.values,
        res.ci_high.values,
    )


def test_tvsd_areas(raw):
    out, _ = raw
    cube = labelled(read_normmua(out / "tvsd/monkeyN", "N", **_tables(out)))
    res = correlate(memxr.roi_reduce(cube, ["V1", "V4", "IT"]), cube.memorability, **KW).compute()
    r = dict(zip(res.roi.values.tolist(), res.r.values.tolist(), strict=True))
    assert r["IT"] > r["V4"] > r["V1"]
    assert float(res.p_fdr.sel(roi="IT")) < 0.01
    assert float(res.p_fdr.sel(roi="V1")) > 0.05


def test_tvsd_time_course(raw):
    out, truth = raw
    cube = labelled(read_trials(out / "tvsd/monkeyN", "N", **_tables(out)))
    x = memxr.roi_reduce(cube, ["V1", "IT"])
    res = correlate(x, cube.memorability, n_permutations=200, n_bootstrap=0, seed=2).compute()
    it = res.r.sel(roi="IT")
    peak = float(it.time[int(np.argmax(it.values))])
    rise, top = truth["tvsd"]["N"]["effect_half_rise_and_peak_ms"]["IT"]
    assert rise - 30 <= peak <= 200, peak
    before = res.p_fdr.sel(roi="IT").where(res.time < 0, drop=True)
    assert (before > 0.05).all()
    assert float(res.p_fdr.sel(roi="IT").sel(time=top, method="nearest")) < 0.05
    # the windowed IT magnitude recovers the normMUA-style effect
    win = window_reduce(x)
    assert float(correlate(win, cube.memorability, n_permutations=0, n_bootstrap=0).r.sel(roi="IT")) > 0.3


def test_decoders_beat_chance_only_with_signal(fmri):
    feats = {
        "FFA": roi_features(fmri, ["FFA"]),
        "V1": roi_features(fmri, ["V1"]),
    }
    res = fit_models(feats, fmri.memorability, models=("linear",), cv=5, n_permutations=40,
                     seed=0, client=False)  # fmt: skip
    t = res.table.set_index("feature_set")
    assert t.loc["FFA", "chance_p"] < 0.05 and t.loc["FFA", "pearson_r"] > 0.3
    assert t.loc["V1", "chance_p"] > 0.05
    assert (res.table.cv == "grouped").all()
