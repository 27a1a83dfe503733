"""Covariates and within-concept effects: partial correlation on several covariates, covariate
tables joined on image names, one-hot categories, correlations within concepts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr

from memxr.align import join_covariates
from memxr.errors import InputError
from memxr.readers.things_meta import read_image_table
from memxr.schema import example_cube
from memxr.stats import (
    correlate,
    covariate_matrix,
    one_hot,
    partial_correlate,
    within_concept_correlate,
)
from memxr.stats import correlation as stats
from memxr.stats.kernels import design_rows
from memxr.testing import (
    assert_lazy,
    lazy,
    raise_if_dask_computes,
    simulate_concepts,
    simulate_confounds,
)

FAST = {"n_permutations": 199, "n_bootstrap": 0}
RESULT = ["r", "p", "ci_low", "ci_high", "p_fdr"]


@pytest.fixture(params=["numpy", "dask"])
def backend(request) -> str:
    return request.param


def on(x: xr.DataArray, backend: str) -> xr.DataArray:
    """``x`` as given or dask-backed (its coordinates stay in memory, as a store opens them)."""
    if backend == "numpy":
        return x
    data = x.variable.chunk({"stimulus": 7})
    return xr.DataArray(data, coords=x.coords, dims=x.dims, name=x.name)


def residual(v: np.ndarray, c: np.ndarray) -> np.ndarray:
    design = np.c_[np.ones(len(c)), c]
    return v - design @ np.linalg.lstsq(design, v, rcond=None)[0]


def partial_r(x, y, c) -> float:
    return float(np.corrcoef(residual(x, c), residual(y, c))[0, 1])


# ----------------------------------------------------------------------------- covariates


def _x(n=6):
    ids = [f"img_{i:02d}.jpg" for i in range(n)]
    return xr.DataArray(np.zeros((n, 2)), dims=("stimulus", "roi"),
                        coords={"stimulus_id": ("stimulus", ids)})  # fmt: skip


def test_covariate_matrix_accepts_every_form():
    x = _x()
    a, b = np.arange(6.0), np.arange(6.0) ** 2
    one = covariate_matrix(xr.DataArray(a, dims="stimulus", name="lum"), x)
    assert one.dims == ("stimulus", "covariate") and one.covariate.values.tolist() == ["lum"]
    two = xr.DataArray(np.c_[a, b], dims=("stimulus", "covariate"),
                       coords={"covariate": ["lum", "clutter"]})  # fmt: skip
    ds = xr.Dataset({"lum": ("stimulus", a), "clutter": ("stimulus", b)})
    frame = pd.DataFrame({"lum": a, "clutter": b})
    for form in (two, ds, frame, np.c_[a, b]):
        out = covariate_matrix(form, x)
        np.testing.assert_array_equal(out.values, np.c_[a, b])
    assert covariate_matrix(frame, x).covariate.values.tolist() == ["lum", "clutter"]
    assert covariate_matrix(np.c_[a, b], x).covariate.values.tolist() == [
        "covariate_0", "covariate_1"]  # fmt: skip
    # keyed by stimulus id: reordered, missing ones NaN, extra ones ignored
    keyed = pd.DataFrame({"lum": [5.0, 1.0, 9.0], "flag": [True, False, True]},
                         index=["img_05.jpg", "img_01.jpg", "other.jpg"])  # fmt: skip
    out = covariate_matrix(keyed, x)
    np.testing.assert_array_equal(out.sel(covariate="lum").values,
                                  [np.nan, 1, np.nan, np.nan, np.nan, 5])  # fmt: skip
    assert out.sel(covariate="flag").values[5] == 1.0
    # a DataArray over other stimuli is joined on stimulus_id too
    sub = x.isel(stimulus=[4, 2])
    joined = covariate_matrix(
        two.assign_coords(stimulus_id=("stimulus", x.stimulus_id.values)), sub
    )
    np.testing.assert_array_equal(joined.values, np.c_[a, b][[4, 2]])


def test_covariate_matrix_errors():
    x = _x()
    with pytest.raises(ValueError, match="not numeric"):
        covariate_matrix(pd.DataFrame({"cat": list("abcdef")}), x)
    with pytest.raises(ValueError, match="6 stimuli"):
        covariate_matrix(pd.DataFrame({"a": np.arange(5.0)}), x)
    with pytest.raises(ValueError, match="one row per stimulus"):
        covariate_matrix(np.zeros((5, 2)), x)
    with pytest.raises(ValueError, match="repeats a stimulus id"):
        covariate_matrix(pd.DataFrame({"a": [1.0, 2.0]}, index=["img_00.jpg"] * 2), x)
    with pytest.raises(ValueError, match="dims"):
        covariate_matrix(xr.DataArray(np.zeros((6, 2)), dims=("stimulus", "other")), x)


# ----------------------------------------------------------------------------- partial


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_partial_on_several_covariates_equals_correlation_of_residuals(backend, method):
    rng = np.random.default_rng(1)
    n = 80
    c = rng.standard_normal((n, 3))
    y = c @ [1.0, -0.5, 0.3] + rng.standard_normal(n)
    xv = rng.standard_normal((n, 4, 2)) + (c @ [0.5, 1.0, 0.0])[:, None, None]
    y[3] = np.nan
    c[10, 1] = np.nan  # dropped as well
    x = xr.DataArray(xv, dims=("stimulus", "roi", "time"))
    frame = pd.DataFrame(c, columns=["a", "b", "c"])
    res = partial_correlate(on(x, backend), y, frame, method=method, compute=True, **FAST)
    ok = np.isfinite(y) & np.isfinite(c).all(1)
    rank = scipy.stats.rankdata if method == "spearman" else np.asarray
    cr = np.column_stack([rank(col) for col in c[ok].T])
    ry = residual(rank(y[ok]), cr)
    want = [np.corrcoef(residual(rank(col), cr), ry)[0, 1]
            for col in xv[ok].reshape(ok.sum(), -1).T]  # fmt: skip
    np.testing.assert_allclose(res.r.values.ravel(), want, atol=1e-10)
    assert int(res.n) == ok.sum()
    assert res.attrs["covariates"] == "a, b, c"
    assert "Freedman-Lane" in res.attrs["permutation_scheme"]


def test_partial_bootstrap_and_collinear_covariates():
    """A covariate repeated (collinear) counts once; bootstrap intervals stay finite."""
    rng = np.random.default_rng(2)
    n, concept = 90, np.repeat(np.arange(30), 3)
    c = rng.standard_normal((n, 2))
    y = c.sum(1) + rng.standard_normal(n)
    x = xr.DataArray(c.sum(1) + rng.standard_normal(n), dims="stimulus")
    dup = np.c_[c, c[:, 0] * 2.0 + 1.0]
    a = partial_correlate(x, y, c, groups=concept, n_permutations=99, n_bootstrap=199,
                          ci_method="percentile")  # fmt: skip
    b = partial_correlate(x, y, dup, groups=concept, n_permutations=99, n_bootstrap=199,
                          ci_method="percentile")  # fmt: skip
    for v in ("r", "p", "ci_low", "ci_high"):
        assert float(a[v]) == pytest.approx(float(b[v]), abs=1e-8), v
    assert np.isfinite(float(a.ci_low)) and float(a.ci_low) < float(a.r) < float(a.ci_high)


def _jackknife(x, y, c, units, ci=0.95):
    stat = lambda keep: partial_r(x[keep], y[keep], c[keep])  # noqa: E731
    z = np.arctanh([stat(units != u) for u in np.unique(units)])
    k = z.size
    se = np.sqrt((k - 1) / k * ((z - z.mean()) ** 2).sum())
    half = scipy.stats.t.ppf((1 + ci) / 2, k - 1) * se
    centre = np.arctanh(stat(np.ones(x.size, bool)))
    return np.tanh(centre - half), np.tanh(centre + half)


def test_partial_jackknife_refits_the_covariates_without_each_concept(backend):
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 7, size=25)
    concept = np.repeat(np.arange(25), sizes)
    n = concept.size
    c = rng.standard_normal((25, 2))[concept] + rng.standard_normal((n, 2))
    y = c @ [0.7, 0.3] + rng.standard_normal(n)
    xv = c @ [0.2, 0.9] + 0.3 * y + rng.standard_normal(n)
    x = xr.DataArray(xv, dims="stimulus")
    res = partial_correlate(on(x, backend), y, c, groups=concept, n_permutations=0,
                            n_bootstrap=1, compute=True)  # fmt: skip
    lo, hi = _jackknife(xv, y, c, concept)
    assert float(res.ci_low) == pytest.approx(lo, rel=1e-8)
    assert float(res.ci_high) == pytest.approx(hi, rel=1e-8)


def test_partial_freedman_lane_on_every_covariate(monkeypatch):
    rng = np.random.default_rng(4)
    n = 40
    c = rng.standard_normal((n, 2))
    y = c @ [1.0, 0.5] + rng.standard_normal(n)
    concept = np.repeat(np.arange(10), 4)
    x = xr.DataArray(rng.standard_normal((n, 2)), dims=("stimulus", "roi"))
    seen = []
    original = stats.resampling_tables

    def record(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(stats, "resampling_tables", record)
    partial_correlate(x, y, c, groups=concept, n_permutations=20, n_bootstrap=0)
    (t,) = seen
    y0 = (y - y.mean()) / y.std()
    resid = residual(y0, c)
    np.testing.assert_allclose(t.fitted, y0 - resid, atol=1e-12)
    full, _ = design_rows(t, 0, n)
    mean_of = lambda v: np.bincount(concept, weights=v) / 4  # noqa: E731
    for col in full[:, 1:21].T:  # concept means of the residual exchanged, fitted part kept
        np.testing.assert_allclose(np.sort(mean_of(col - t.fitted)), np.sort(mean_of(resid)),
                                   atol=1e-12)  # fmt: skip


def test_partial_removes_planted_confounds_and_keeps_a_real_effect():
    cube, cov = simulate_confounds(150, (2, 8), partial_r=[0.0, 0.3], n_covariates=3,
                                   confound=1.0, n_channels=2, seed=5)  # fmt: skip
    x = cube.response.rename(channel="roi")
    plain = correlate(x, cube.memorability, groups="concept", **FAST)
    part = partial_correlate(x, cube.memorability, cov, groups="concept", n_permutations=199,
                             n_bootstrap=1)  # fmt: skip
    assert cube.attrs["population_r"] == [0.5, 0.65]
    assert float(plain.r[0]) > 0.35 and float(plain.p[0]) <= 0.01  # confounded
    assert abs(float(part.r[0])) < 0.1 and float(part.p[0]) > 0.05  # its share removed
    assert float(part.ci_low[0]) <= 0.0 <= float(part.ci_high[0])
    assert float(part.p[1]) <= 0.01  # the real effect stays
    assert float(part.ci_low[1]) <= 0.3 <= float(part.ci_high[1])


def test_partial_stays_lazy_with_covariate_tables():
    cube, cov = simulate_confounds(30, 4, n_channels=6, seed=6)
    x = lazy(cube, chunk=2).response
    table = cov.to_pandas()
    table.index = cube.stimulus_id.values
    with raise_if_dask_computes():
        res = partial_correlate(x, cube.memorability, table.iloc[::-1], groups="concept",
                                n_permutations=19, n_bootstrap=1)  # fmt: skip
    assert_lazy(res[RESULT])
    eager = partial_correlate(cube.response, cube.memorability, cov, groups="concept",
                              n_permutations=19, n_bootstrap=1)  # fmt: skip
    xr.testing.assert_allclose(res.compute()[RESULT], eager[RESULT])


# ----------------------------------------------------------------------------- categories


def test_one_hot_levels_reference_and_names():
    labels = xr.DataArray(["toy", "animal", "toy", "", "food", "toy"], dims="stimulus",
                          coords={"stimulus_id": ("stimulus", list("abcdef"))},
                          name="category")  # fmt: skip
    c = one_hot(labels)
    assert c.attrs["reference"] == "toy"
    assert c.covariate.values.tolist() == ["category=(unknown)", "category=animal",
                                           "category=food"]  # fmt: skip
    assert c.sum("covariate").values.tolist() == [0, 1, 0, 1, 1, 0]
    assert c.stimulus_id.values.tolist() == list("abcdef")
    assert one_hot(labels, reference="food", prefix="cat").covariate.values.tolist()[0] == (
        "cat=(unknown)"
    )
    with pytest.raises(ValueError, match="single level"):
        one_hot(["a", "a"])
    with pytest.raises(ValueError, match="not a level"):
        one_hot(["a", "b"], reference="c")


def test_category_as_covariate_removes_a_category_effect():
    """Categories differing in memorability and in response: the category dummies explain
    the correlation away; within categories nothing is left."""
    rng = np.random.default_rng(7)
    cube = simulate_concepts(120, 4, rho=0.0, seed=7)
    concept = np.unique(cube.concept.values.astype(str), return_inverse=True)[1]
    category = rng.integers(0, 12, size=120)[concept]
    level = np.linspace(-1.5, 1.5, 12)[category]
    cube = cube.assign_coords(
        category=("stimulus", np.array([f"cat{k}" for k in category], dtype=object)),
        memorability=cube.memorability + 0.1 * level,
    )
    x = cube.response[:, 0] + xr.DataArray(level, dims="stimulus")
    plain = correlate(x, cube.memorability, groups="concept", **FAST)
    part = partial_correlate(x, cube.memorability, one_hot(cube.category), groups="concept",
                             **FAST)  # fmt: skip
    assert float(plain.r) > 0.3 and float(plain.p) <= 0.01
    assert abs(float(part.r)) < 0.1 and float(part.p) > 0.05
    assert part.attrs["covariates"].count("category=") == 11


# ----------------------------------------------------------------------------- joins


def test_read_image_table_from_csv_and_parquet(tmp_path):
    frame = pd.DataFrame({
        "file_path": ["images/aardvark/aardvark_01b.jpg", "images/bat1/bat1_02s.jpg"],
        "concept": ["aardvark", "bat1"],
        "luminance": [0.4, 0.7],
        "bright": [True, False],
    })  # fmt: skip
    frame.to_csv(tmp_path / "img.csv", index=False)
    frame.to_parquet(tmp_path / "img.parquet", index=False)
    (tmp_path / "img.tsv").write_text("image_name\tclutter\naardvark_01b.jpg\tNA\n")
    for name in ("img.csv", "img.parquet"):
        t = read_image_table(tmp_path / name)
        assert t.index.tolist() == ["aardvark_01b.jpg", "bat1_02s.jpg"], name
        assert t.columns.tolist() == ["luminance", "bright"], name
        assert t["bright"].tolist() == [1.0, 0.0] and t.attrs["dropped_columns"] == ["concept"]
    assert np.isnan(read_image_table(tmp_path / "img.tsv").loc["aardvark_01b.jpg", "clutter"])
    (tmp_path / "dup.csv").write_text("image_name,a\nx.jpg,1\nx.jpg,2\n")
    with pytest.raises(InputError, match="duplicated"):
        read_image_table(tmp_path / "dup.csv")
    (tmp_path / "nokey.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="no image key"):
        read_image_table(tmp_path / "nokey.csv")


def test_join_covariates_counts_and_feeds_partial_correlate(tmp_path):
    cube = example_cube(n_stimulus=8, n_channel=2)
    ids = cube.stimulus_id.values.tolist()
    rng = np.random.default_rng(8)
    table = pd.DataFrame({"image_name": ids[:6][::-1], "lum": rng.standard_normal(6),
                          "clutter": [1.0, np.nan, 3, 4, 5, 6]})  # fmt: skip
    table.to_parquet(tmp_path / "cov.parquet", index=False)
    cov = join_covariates(cube, tmp_path / "cov.parquet")
    assert [cov.attrs[k] for k in ("n_matched", "n_missing_value", "n_unknown")] == [5, 1, 2]
    assert cov.stimulus_id.values.tolist() == ids
    assert cov.sel(covariate="lum").values[0] == table.lum.values[5]
    only = join_covariates(cube, table.set_index("image_name"), columns=["lum"])
    assert only.covariate.values.tolist() == ["lum"] and only.attrs["n_matched"] == 6
    res = partial_correlate(cube.response, cube.memorability, cov, n_permutations=9,
                            n_bootstrap=0)  # fmt: skip
    assert int(res.n) == 5  # stimuli without every covariate are left out
    with pytest.raises(InputError, match="missing"):
        join_covariates(cube, table.set_index("image_name"), columns=["nope"])
    with pytest.raises(InputError, match="not numeric"):
        join_covariates(cube, table.set_index("image_name").assign(s="a"))


# ----------------------------------------------------------------------------- within


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_within_equals_correlation_of_deviations(backend, method):
    rng = np.random.default_rng(9)
    labels = np.array(["a"] * 5 + ["b"] * 4 + ["c"] * 1 + [""] * 3 + ["d"] * 6 + ["e"] * 3,
                      dtype=object)  # fmt: skip
    n = labels.size
    y = rng.standard_normal(n)
    y[0] = np.nan
    xv = rng.standard_normal((n, 3)) + y[:, None] * 0.5
    xv = np.nan_to_num(xv)
    x = xr.DataArray(xv, dims=("stimulus", "roi"),
                     coords={"concept": ("stimulus", labels)})  # fmt: skip
    res = within_concept_correlate(on(x, backend), y, method=method, compute=True, **FAST)
    keep = np.isfinite(y) & np.isin(labels, ["a", "b", "d", "e"])
    rank = scipy.stats.rankdata if method == "spearman" else np.asarray
    lab = labels[keep]

    def dev(v):
        means = pd.Series(v).groupby(lab).transform("mean").to_numpy()
        return v - means

    yd = dev(rank(y[keep]))
    want = [np.corrcoef(dev(rank(col)), yd)[0, 1] for col in xv[keep].T]
    np.testing.assert_allclose(res.r.values, want, atol=1e-10)
    assert int(res.n) == keep.sum() and int(res.n_concepts) == 4
    assert res.attrs["method"] == method and "within" in res.attrs["permutation_scheme"]


def test_within_separates_effects_between_and_within_concepts():
    between = simulate_concepts(120, (2, 10), rho=0.35, concept_part=1.0, seed=10)
    within = simulate_concepts(120, (2, 10), rho=0.2, concept_part=0.0, seed=11)
    assert between.attrs["within_r"] == [0.0] and within.attrs["within_r"][0] > 0.35
    kw = {"n_permutations": 199, "n_bootstrap": 1}
    b_all = correlate(between.response[:, 0], between.memorability, groups="concept", **kw)
    b_in = within_concept_correlate(between.response[:, 0], between.memorability, **kw)
    w_in = within_concept_correlate(within.response[:, 0], within.memorability, **kw)
    assert float(b_all.p) <= 0.01 and float(b_in.p) > 0.05
    truth = within.attrs["within_r"][0]
    assert float(w_in.p) <= 0.01 and float(w_in.ci_low) <= truth <= float(w_in.ci_high)


def test_within_jackknife_deletes_concepts_and_stays_lazy():
    cube = simulate_concepts(40, (1, 6), rho=0.3, n_channels=4, seed=12)
    eager = within_concept_correlate(cube.response, cube.memorability, n_permutations=49,
                                     n_bootstrap=1)  # fmt: skip
    with raise_if_dask_computes():
        res = within_concept_correlate(lazy(cube, chunk=2).response, cube.memorability,
                                       n_permutations=49, n_bootstrap=1)  # fmt: skip
    assert_lazy(res[RESULT])
    xr.testing.assert_allclose(res.compute()[RESULT], eager[RESULT])
    # reference: the deviations' correlation without each concept (singletons carry nothing)
    labels = cube.concept.values.astype(str)
    sizes = pd.Series(labels).map(pd.Series(labels).value_counts()).to_numpy()
    keep = sizes >= 2
    lab = labels[keep]
    dev = lambda v: v - pd.Series(v).groupby(lab).transform("mean").to_numpy()  # noqa: E731
    xd, yd = dev(cube.response.values[keep, 0]), dev(cube.memorability.values[keep])
    units = np.unique(lab, return_inverse=True)[1]
    z = np.arctanh([np.corrcoef(xd[units != u], yd[units != u])[0, 1]
                    for u in range(units.max() + 1)])  # fmt: skip
    k = z.size
    se = np.sqrt((k - 1) / k * ((z - z.mean()) ** 2).sum())
    half = scipy.stats.t.ppf(0.975, k - 1) * se
    centre = np.arctanh(np.corrcoef(xd, yd)[0, 1])
    assert float(eager.ci_low[0]) == pytest.approx(np.tanh(centre - half), rel=1e-8)
    assert float(eager.ci_high[0]) == pytest.approx(np.tanh(centre + half), rel=1e-8)


def test_within_errors():
    x = xr.DataArray(np.zeros(4), dims="stimulus")
    with pytest.raises(ValueError, match="needs groups"):
        within_concept_correlate(x, np.arange(4.0), groups=None)
    with pytest.raises(ValueError, match="at least two"):
        within_concept_correlate(x, np.arange(4.0), groups=np.array(["a", "a", "b", "c"]))


def test_coordinate_names_as_covariates():
    """``partial_correlate(x, y, "category")``: labels one-hot, numeric coordinates as is."""
    rng = np.random.default_rng(13)
    n = 60
    category = np.array(["a", "b", "c"] * 20, dtype=object)
    lum = rng.standard_normal(n)
    x = xr.DataArray(rng.standard_normal(n), dims="stimulus",
                     coords={"category": ("stimulus", category), "lum": ("stimulus", lum)})  # fmt: skip
    y = rng.standard_normal(n)
    c = covariate_matrix(["category", "lum"], x)
    assert c.covariate.values.tolist() == ["category=b", "category=c", "lum"]
    by_name = partial_correlate(x, y, ["category", "lum"], **FAST)
    by_matrix = partial_correlate(x, y, c, **FAST)
    assert float(by_name.r) == pytest.approx(float(by_matrix.r))
    want = partial_r(x.values, y, np.c_[category == "b", category == "c", lum].astype(float))
    assert float(by_name.r) == pytest.approx(want, abs=1e-10)
    with pytest.raises(ValueError, match="no coordinate 'size'"):
        covariate_matrix("size", x)
