"""Differences of dependent correlations (compare_correlations): values, resampling, planted
differences and equal pairs, laziness."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from memxr.stats import compare_correlations, comparison_table
from memxr.testing import assert_lazy, raise_if_dask_computes, simulate_concepts

VARS = ["r_a", "r_b", "diff", "ci_low", "ci_high", "p", "p_fdr"]


def _rois(seed=0, n_concepts=80, rho=(0.3, 0.05, 0.3), shared_noise=0.5, times=None):
    cube = simulate_concepts(n_concepts, (2, 8), rho=list(rho), n_channels=len(rho),
                             shared_noise=shared_noise, times=times, seed=seed)  # fmt: skip
    names = ["IT", "V1", "V4", "LO"][: len(rho)]
    return cube.response.rename(channel="roi").assign_coords(roi=names), cube


def test_values_and_jackknife_by_hand():
    x, cube = _rois(1, n_concepts=30)
    y = cube.memorability.values
    res = compare_correlations(x, y, [("IT", "V1")], groups=cube.concept.values)
    xa, xb = x.sel(roi="IT").values, x.sel(roi="V1").values
    ra, rb = scipy.stats.pearsonr(xa, y)[0], scipy.stats.pearsonr(xb, y)[0]
    assert float(res.r_a[0]) == pytest.approx(ra, abs=1e-10)
    assert float(res.r_b[0]) == pytest.approx(rb, abs=1e-10)
    assert float(res["diff"][0]) == pytest.approx(ra - rb, abs=1e-10)
    concept = cube.concept.values.astype(str)
    units = np.unique(concept)
    d = np.array([np.corrcoef(xa[concept != u], y[concept != u])[0, 1]
                  - np.corrcoef(xb[concept != u], y[concept != u])[0, 1] for u in units])  # fmt: skip
    k = d.size
    se = np.sqrt((k - 1) / k * ((d - d.mean()) ** 2).sum())
    half = scipy.stats.t.ppf(0.975, k - 1) * se
    assert float(res.ci_low[0]) == pytest.approx(ra - rb - half, rel=1e-8)
    assert float(res.ci_high[0]) == pytest.approx(ra - rb + half, rel=1e-8)
    p = 2 * scipy.stats.t.sf(abs(ra - rb) / se, k - 1)
    assert float(res.p[0]) == pytest.approx(p, rel=1e-8)


def test_planted_difference_found_and_equal_pair_not():
    x, cube = _rois(2, n_concepts=150, rho=(0.35, 0.0, 0.35))
    for ci_method in ("jackknife", "percentile"):
        res = compare_correlations(x, cube.memorability, [("IT", "V1"), ("IT", "V4")],
                                   groups="concept", ci_method=ci_method, n_bootstrap=499)  # fmt: skip
        it_v1, it_v4 = res.sel(pair="IT-V1"), res.sel(pair="IT-V4")
        assert float(it_v1.p) <= 0.01 and float(it_v1.p_fdr) <= 0.05, ci_method
        assert float(it_v1.ci_low) <= 0.35 <= float(it_v1.ci_high), ci_method
        assert float(it_v4.p) > 0.05 and float(it_v4.ci_low) < 0 < float(it_v4.ci_high), ci_method
        # the interval excludes 0 where p < 0.05 (the same resampling gives both)
        sig = (res.ci_low > 0) | (res.ci_high < 0)
        assert ((res.p < 0.05) == sig).all()


def test_permuting_y_would_not_test_equality():
    """Both ROIs code memorability equally: a permutation of y rejects r_a = r_b = 0, the
    difference test does not reject r_a = r_b."""
    x, cube = _rois(3, n_concepts=150, rho=(0.3, 0.3), shared_noise=0.0)
    res = compare_correlations(x, cube.memorability, groups="concept")
    assert float(res.p[0]) > 0.05
    assert res.attrs["test"].startswith("delete-one-concept jackknife")


def test_default_pairs_time_bins_table_and_family():
    x, cube = _rois(4, n_concepts=40, rho=(0.3, 0.0, 0.1), times=[0.0, 10.0, 20.0])
    res = compare_correlations(x, cube.memorability, groups="concept")
    assert res.pair.values.tolist() == ["IT-V1", "IT-V4", "V1-V4"]
    assert res["diff"].dims == ("pair", "time")
    assert res.roi_a.values.tolist() == ["IT", "IT", "V1"]
    assert "3" in res.attrs["p_family"] and "time" in res.attrs["p_family"]
    table = comparison_table(res)
    assert len(table) == 9
    assert table.columns.tolist()[:4] == ["pair", "roi_a", "roi_b", "time"]
    assert (table.p_family == res.attrs["p_family"]).all()
    one = res.isel(time=1)
    single = compare_correlations(x.isel(time=1), cube.memorability, groups="concept")
    np.testing.assert_allclose(single["diff"].values, one["diff"].values, atol=1e-12)


def test_lazy_and_identical_to_numpy():
    x, cube = _rois(5, n_concepts=30, rho=(0.3, 0.1, 0.2, 0.0))
    eager = compare_correlations(x, cube.memorability, groups="concept", ci_method="percentile",
                                 n_bootstrap=99)  # fmt: skip
    chunked = xr.DataArray(x.variable.chunk({"stimulus": 25, "roi": 2}), coords=x.coords)
    with raise_if_dask_computes():
        res = compare_correlations(chunked, cube.memorability, groups="concept",
                                   ci_method="percentile", n_bootstrap=99)  # fmt: skip
    assert_lazy(res[VARS])
    xr.testing.assert_allclose(res.compute()[VARS], eager[VARS])


def test_spearman_and_errors():
    x, cube = _rois(6, n_concepts=30)
    res = compare_correlations(x, cube.memorability, [("IT", "V1")], method="spearman")
    want = scipy.stats.spearmanr(x.sel(roi="IT"), cube.memorability)[0]
    assert float(res.r_a[0]) == pytest.approx(want, abs=1e-10)
    with pytest.raises(ValueError, match="not one of"):
        compare_correlations(x, cube.memorability, [("IT", "FFA")])
    with pytest.raises(ValueError, match="itself"):
        compare_correlations(x, cube.memorability, [("IT", "IT")])
    with pytest.raises(ValueError, match="ci_method"):
        compare_correlations(x, cube.memorability, ci_method="bca")
    with pytest.raises(ValueError, match="name the dim"):
        compare_correlations(x.rename(roi="region"), cube.memorability)
