"""memxr.stats: correlations against scipy, numpy == dask, laziness, resampling behaviour, FDR."""

from __future__ import annotations

import itertools

import dask
import numpy as np
import pytest
import scipy.stats
import xarray as xr

from memxr.schema import example_cube, text_coord
from memxr.stats import (
    cluster_table,
    cluster_test,
    correlate,
    correlation_map,
    fdr,
    partial_correlate,
)
from memxr.stats import correlation as stats
from memxr.stats.kernels import design_rows

FAST = {"n_permutations": 200, "n_bootstrap": 200}
VARS = ("r", "p", "ci_low", "ci_high", "p_fdr")


@pytest.fixture(params=["numpy", "dask"])
def backend(request) -> str:
    return request.param


def on(x: xr.DataArray, backend: str, **chunks) -> xr.DataArray:
    """``x`` as given (numpy) or dask-backed with small chunks along every dim."""
    if backend == "numpy":
        return x
    return x.chunk({"stimulus": 7, **chunks})


def no_compute():
    """Fail if dask computes anything inside the block."""

    def scheduler(*args, **kwargs):
        raise RuntimeError("dask computed while the result should stay lazy")

    return dask.config.set(scheduler=scheduler)


def features(x: np.ndarray) -> np.ndarray:
    """(stimulus, ...) -> (stimulus, n_features)."""
    return x.reshape(x.shape[0], -1)


def residual(v: np.ndarray, c: np.ndarray) -> np.ndarray:
    design = np.c_[np.ones(len(c)), c]
    return v - design @ np.linalg.lstsq(design, v, rcond=None)[0]


def assert_same(a: xr.Dataset, b: xr.Dataset) -> None:
    for v in VARS:
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=1e-10, atol=1e-12, err_msg=v)
    assert int(a.n) == int(b.n)


# ---------------------------------------------------------------------------------------------
# point estimates against scipy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("other", [(), (3,), (2, 4)], ids=["1d", "roi", "roi-time"])
def test_pearson_matches_scipy(backend, other):
    rng = np.random.default_rng(3)
    n = 37
    y = rng.standard_normal(n)
    y[[2, 11]] = np.nan
    xv = rng.standard_normal((n, *other)) + 0.4 * np.nan_to_num(y).reshape((n,) + (1,) * len(other))
    dims = ("stimulus", "roi", "time")[: 1 + len(other)]
    x = on(xr.DataArray(xv, dims=dims), backend)
    res = correlate(x, y, n_permutations=0, n_bootstrap=0, compute=True)
    ok = np.isfinite(y)
    want = [scipy.stats.pearsonr(col, y[ok])[0] for col in features(xv[ok]).T]
    np.testing.assert_allclose(res.r.values.ravel(), want, rtol=0, atol=1e-10)
    assert res.r.dims == dims[1:]
    assert int(res.n) == n - 2
    assert np.isnan(res.p.values).all() and np.isnan(res.ci_low.values).all()


def test_spearman_matches_scipy_with_ties(backend):
    rng = np.random.default_rng(4)
    n = 41
    y = np.round(rng.standard_normal(n), 1)  # ties in y
    y[5] = np.nan
    xv = np.round(rng.standard_normal((n, 3, 2)) + np.nan_to_num(y)[:, None, None], 0)  # many ties
    x = on(xr.DataArray(xv, dims=("stimulus", "roi", "time")), backend, roi=1)
    res = correlate(x, y, method="spearman", n_permutations=0, n_bootstrap=0, compute=True)
    ok = np.isfinite(y)
    want = [scipy.stats.spearmanr(col, y[ok])[0] for col in features(xv[ok]).T]
    np.testing.assert_allclose(res.r.values.ravel(), want, rtol=0, atol=1e-10)
    assert res.attrs["method"] == "spearman"


def test_y_as_dataarray_and_large_offset():
    """A coordinate as y; a large mean in x does not spoil the one-pass sums."""
    ds = example_cube(n_stimulus=30, n_channel=5, seed=2)
    x = ds.response + 1e6
    res = correlate(x, ds.memorability, n_permutations=0, n_bootstrap=0)
    want = [scipy.stats.pearsonr(c, ds.memorability.values)[0] for c in x.values.T]
    np.testing.assert_allclose(res.r.values, want, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# numpy and dask, laziness, streaming
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_numpy_and_dask_identical(method):
    rng = np.random.default_rng(5)
    n = 48
    y = rng.standard_normal(n)
    y[7] = np.nan
    x = xr.DataArray(rng.standard_normal((n, 5, 3)), dims=("stimulus", "channel", "time"))
    groups = np.repeat(np.arange(12), 4)
    kw = {"method": method, "groups": groups, **FAST}
    eager = correlate(x, y, **kw)
    lazy = correlate(x.chunk({"stimulus": 5, "channel": 2}), y, **kw)
    assert lazy.r.chunks is not None
    assert_same(lazy.compute(), eager)
    np.testing.assert_array_equal(lazy.p.values, eager.p.values)


def test_building_the_result_computes_nothing():
    rng = np.random.default_rng(6)
    ds = example_cube(n_stimulus=24, n_channel=6, seed=6)
    ds["response"] = (("stimulus", "channel", "time"), rng.standard_normal((24, 6, 3)))
    ds = ds.assign_coords(concept=("stimulus", text_coord(f"c{i // 3}" for i in range(24))))
    lazy = ds.copy()  # data lazy, labels in memory (as a store opens)
    lazy["response"] = ds.response.chunk({"stimulus": 5, "channel": 2})
    cov_t = xr.DataArray(rng.standard_normal((24, 3)), dims=("stimulus", "time")).chunk(
        {"stimulus": 4}
    )
    with no_compute():
        outs = [
            correlation_map(lazy, method="spearman", groups="concept", **FAST),
            correlate(lazy.response, lazy.memorability, **FAST),
            partial_correlate(lazy.response, lazy.memorability, rng.standard_normal(24), **FAST),
            partial_correlate(lazy.response, lazy.memorability, cov_t, **FAST),
        ]
        adjusted = fdr(outs[0].p, dims="channel")
    for out in outs:
        assert all(out[v].chunks is not None for v in VARS)
    assert adjusted.chunks is not None
    eager = correlation_map(ds, method="spearman", groups="concept", **FAST)
    assert_same(outs[0].compute(), eager)


def test_streaming_over_many_feature_chunks(monkeypatch):
    rng = np.random.default_rng(7)
    n, n_chan = 60, 40
    y = rng.standard_normal(n)
    xv = rng.standard_normal((n, n_chan, 4)) + 0.3 * y[:, None, None]
    x = xr.DataArray(xv, dims=("stimulus", "channel", "time"))
    eager = correlate(x, y, **FAST)

    def graph_size(chunk_channels: int) -> int:
        lazy = correlate(x.chunk({"stimulus": 15, "channel": chunk_channels}), y, **FAST)
        (opt,) = dask.optimize(lazy)
        assert_same(opt.compute(), eager)
        return len(dict(lazy.__dask_graph__()))

    small, large = graph_size(8), graph_size(2)  # 5 and 20 channel chunks, 4 stimulus chunks
    n_blocks = 4 * 20
    assert large < 25 * n_blocks  # a bounded number of tasks per block of x
    assert large < 4.5 * small  # grows linearly with the number of blocks

    # a tiny block budget forces x and the design into many small blocks: same numbers
    # design columns: y and 200 permutations, the unit weight, and for the jackknife's 60
    # units (one per stimulus: fewer than 200) U and U*y on x and U on x**2
    monkeypatch.setattr(stats, "BLOCK_BYTES", 8 * (1 + 200 + 1 + 3 * 60) * 6)
    lazy = correlate(x.chunk(), y, **FAST)
    assert max(lazy.r.chunks[0]) * max(lazy.r.chunks[1]) <= 6
    assert_same(lazy.compute(), eager)


# ---------------------------------------------------------------------------------------------
# permutation p-values
# ---------------------------------------------------------------------------------------------


def test_permutation_p_uniform_under_null_and_tiny_for_planted_effect():
    rng = np.random.default_rng(8)
    n = 80
    y = rng.standard_normal(n)
    null = xr.DataArray(rng.standard_normal((n, 200)), dims=("stimulus", "feature"))
    p = correlate(null, y, n_permutations=400, n_bootstrap=0).p.values
    assert 0.02 <= np.mean(p < 0.05) <= 0.09
    assert 0.4 < p.mean() < 0.6
    assert np.allclose(p * 401, np.round(p * 401))  # (1 + count) / (1 + P)

    strong = xr.DataArray(y + 0.5 * rng.standard_normal(n), dims="stimulus")
    res = correlate(strong, y, n_permutations=400, n_bootstrap=0)
    assert float(res.p) == pytest.approx(1 / 401)


def test_permutation_p_matches_exact_enumeration():
    rng = np.random.default_rng(9)
    y = rng.standard_normal(6)
    x = y + 1.2 * rng.standard_normal(6)
    r = np.corrcoef(x, y)[0, 1]
    perms = np.array(list(itertools.permutations(range(6))))
    r_all = np.array([np.corrcoef(x, y[q])[0, 1] for q in perms])
    exact = np.mean(np.abs(r_all) >= np.abs(r) - 1e-12)
    res = correlate(xr.DataArray(x, dims="stimulus"), y, n_permutations=3000, n_bootstrap=0)
    assert 0.05 < exact < 0.95
    assert float(res.p) == pytest.approx(exact, abs=0.03)


# ---------------------------------------------------------------------------------------------
# bootstrap confidence intervals
# ---------------------------------------------------------------------------------------------


def planted(rng: np.random.Generator, n: int, rho: float, n_features: int = 1):
    y = rng.standard_normal(n)
    e = rng.standard_normal((n, n_features))
    x = rho * y[:, None] + np.sqrt(1 - rho**2) * e
    return xr.DataArray(x, dims=("stimulus", "feature")), y


@pytest.mark.parametrize("ci_method", ["jackknife", "percentile"])
def test_bootstrap_ci_covers_the_true_correlation(ci_method):
    rng = np.random.default_rng(10)
    rho, hits = 0.5, 0
    for _ in range(40):
        x, y = planted(rng, 60, rho)
        res = correlate(x, y, n_permutations=0, n_bootstrap=300, seed=int(rng.integers(1000)),
                        ci_method=ci_method)  # fmt: skip
        lo, hi = float(res.ci_low[0]), float(res.ci_high[0])
        assert lo <= float(res.r[0]) <= hi
        hits += lo <= rho <= hi
    assert hits >= 34  # >= 85% of 40 at ci=0.95


def test_bootstrap_ci_narrows_with_n_and_ci():
    rng = np.random.default_rng(11)
    widths = {}
    for n in (40, 400):
        x, y = planted(rng, n, 0.3, n_features=20)
        res = correlate(x, y, n_permutations=0, n_bootstrap=300)
        widths[n] = float((res.ci_high - res.ci_low).mean())
    assert widths[400] < 0.45 * widths[40]
    narrow = correlate(x, y, n_permutations=0, n_bootstrap=300, ci=0.5)
    assert float((narrow.ci_high - narrow.ci_low).mean()) < 0.5 * widths[400]


# ---------------------------------------------------------------------------------------------
# concept-grouped resampling
# ---------------------------------------------------------------------------------------------


def clustered(rng: np.random.Generator, n_groups=12, size=8, n_features=100):
    """x and y both driven by independent concept effects: no true association."""
    concept = np.repeat([f"c{g}" for g in range(n_groups)], size)
    y = np.repeat(rng.standard_normal(n_groups), size) + 0.3 * rng.standard_normal(n_groups * size)
    xv = np.repeat(rng.standard_normal((n_groups, n_features)), size, axis=0)
    xv = xv + 0.3 * rng.standard_normal(xv.shape)
    x = xr.DataArray(xv, dims=("stimulus", "feature"), coords={"concept": ("stimulus", concept)})
    return x, y, concept


def test_grouped_resampling_is_more_conservative():
    rng = np.random.default_rng(12)
    x, y, concept = clustered(rng)
    plain = correlate(x, y, n_permutations=300, n_bootstrap=200)
    grouped = correlate(x, y, groups="concept", n_permutations=300, n_bootstrap=200)
    assert np.mean(plain.p.values < 0.05) > 0.3  # a stimulus shuffle is far too liberal here
    assert np.mean(grouped.p.values < 0.05) <= 0.1  # concept-level resampling keeps the size
    assert (grouped.p > plain.p).mean() > 0.9
    width = lambda res: float((res.ci_high - res.ci_low).mean())  # noqa: E731
    assert width(grouped) > 1.8 * width(plain)
    assert grouped.attrs["groups"] == "concept"
    np.testing.assert_array_equal(plain.r.values, grouped.r.values)
    by_array = correlate(x, y, groups=concept, n_permutations=300, n_bootstrap=200)
    np.testing.assert_array_equal(by_array.p.values, grouped.p.values)


def test_grouped_tables_resample_whole_groups():
    rng = np.random.default_rng(13)
    group = rng.permutation(np.repeat(np.arange(5), [1, 2, 3, 4, 6]))
    y = rng.standard_normal(group.size)
    t = stats.resampling_tables(y - y.mean(), np.zeros(group.size), group, None, 50, 40, seed=1)
    full, omega = design_rows(t, 0, group.size)
    w = omega[:, 1:]
    for g in range(5):  # bootstrap weights constant within a group, whole groups drawn
        assert (w[group == g] == w[group == g][0]).all()
    assert (t.counts.sum(1) == 5).all()
    for q in t.within:  # within-group shuffles are permutations inside each group
        assert sorted(q) == list(range(group.size))
        assert (group[q] == group).all()
    assert 0.2 < np.mean(t.within == np.arange(group.size)) < 0.45  # 5 groups / 16: 0.31
    assert len({tuple(q[group == 4]) for q in t.within}) > 30  # many orders of the 6-group
    z = full[:, 1:51]  # permuted y: multiset of group means and of deviations preserved
    mean_of = lambda v: np.bincount(group, weights=v) / np.bincount(group)  # noqa: E731
    for col in z.T:
        np.testing.assert_allclose(np.sort(mean_of(col)), np.sort(mean_of(y - y.mean())))
    # restricting the rows reproduces the same design (the dask path generates it per chunk)
    np.testing.assert_array_equal(design_rows(t, 3, 9)[0], full[3:9])


# ---------------------------------------------------------------------------------------------
# FDR
# ---------------------------------------------------------------------------------------------


def test_fdr_matches_scipy(backend):
    rng = np.random.default_rng(14)
    pv = rng.uniform(0, 1, (3, 4, 5)) ** 3
    p = on(xr.DataArray(pv, dims=("stimulus", "roi", "time")), backend)
    np.testing.assert_allclose(
        fdr(p).values, scipy.stats.false_discovery_control(pv.ravel()).reshape(pv.shape)
    )
    per_family = fdr(p, dims=["roi", "time"]).values
    for i in range(3):
        np.testing.assert_allclose(
            per_family[i], scipy.stats.false_discovery_control(pv[i].ravel()).reshape(4, 5)
        )
    pv[1, 2, 3] = pv[0, 0, 0] = np.nan
    out = fdr(on(xr.DataArray(pv, dims=("stimulus", "roi", "time")), backend)).values
    ok = np.isfinite(pv)
    np.testing.assert_allclose(out[ok], scipy.stats.false_discovery_control(pv[ok]))
    assert np.isnan(out[~ok]).all()
    with pytest.raises(ValueError, match="no dims"):
        fdr(p, dims="channel")


def test_p_fdr_over_all_other_dims():
    rng = np.random.default_rng(15)
    y = rng.standard_normal(50)
    x = xr.DataArray(rng.standard_normal((50, 4, 6)), dims=("stimulus", "roi", "time"))
    x[:, 0, :3] += y[:, None]
    res = correlate(x, y, **FAST)
    want = scipy.stats.false_discovery_control(res.p.values.ravel()).reshape(4, 6)
    np.testing.assert_allclose(res.p_fdr.values, want)
    assert (res.p_fdr >= res.p).all()


# ---------------------------------------------------------------------------------------------
# missing values
# ---------------------------------------------------------------------------------------------


def test_nan_in_x_propagates_to_its_feature_only(backend):
    rng = np.random.default_rng(16)
    n = 40
    y = rng.standard_normal(n)
    y[0] = np.nan
    xv = rng.standard_normal((n, 4)) + 0.5 * np.nan_to_num(y)[:, None]
    xv[10, 1] = np.nan  # an analysed stimulus: feature 1 becomes NaN
    xv[0, 2] = np.nan  # a stimulus dropped for its NaN y: no effect
    x = xr.DataArray(xv, dims=("stimulus", "roi"), coords={"roi": text_coord("abcd")})
    res = correlate(on(x, backend), y, compute=True, **FAST)
    for v in VARS:
        assert np.isnan(res[v].sel(roi="b")), v
        assert np.isfinite(res[v].sel(roi=["a", "c", "d"])).all(), v
    ok = np.isfinite(y)
    np.testing.assert_allclose(
        res.r.sel(roi="c"), scipy.stats.pearsonr(xv[ok, 2], y[ok])[0], atol=1e-10
    )
    rest = correlate(x.sel(roi=["a", "c", "d"]), y, **FAST)
    for v in VARS:  # the other features are untouched, FDR family = the finite p-values
        np.testing.assert_allclose(res[v].sel(roi=["a", "c", "d"]).values, rest[v].values)
    assert res.attrs["x_nan_policy"] == "propagate"


# ---------------------------------------------------------------------------------------------
# partial correlation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_partial_equals_correlation_of_residuals(backend, method):
    rng = np.random.default_rng(17)
    n = 45
    c = rng.standard_normal(n)
    y = c + rng.standard_normal(n)
    y[4] = np.nan
    c[9] = np.nan  # dropped as well
    xv = rng.standard_normal((n, 3, 2)) + np.nan_to_num(c)[:, None, None]
    x = xr.DataArray(xv, dims=("stimulus", "roi", "time"))
    res = partial_correlate(on(x, backend), y, c, method=method, compute=True, **FAST)
    ok = np.isfinite(y) & np.isfinite(c)
    rank = scipy.stats.rankdata if method == "spearman" else np.asarray
    ry = residual(rank(y[ok]), rank(c[ok]))
    want = [np.corrcoef(residual(rank(col), rank(c[ok])), ry)[0, 1] for col in features(xv[ok]).T]
    np.testing.assert_allclose(res.r.values.ravel(), want, atol=1e-10)
    assert int(res.n) == ok.sum()
    assert "Freedman-Lane" in res.attrs["permutation_scheme"]


def test_partial_with_a_broadcast_covariate(backend):
    rng = np.random.default_rng(18)
    n = 40
    y = rng.standard_normal(n)
    cv = rng.standard_normal((n, 3)) + y[:, None]
    xv = rng.standard_normal((n, 2, 3)) + cv[:, None, :]
    x = xr.DataArray(xv, dims=("stimulus", "roi", "time"))
    cov = xr.DataArray(cv, dims=("stimulus", "time"))
    res = partial_correlate(on(x, backend), y, on(cov, backend), compute=True, **FAST)
    want = np.array(
        [
            [
                np.corrcoef(residual(xv[:, i, j], cv[:, j]), residual(y, cv[:, j]))[0, 1]
                for j in range(3)
            ]
            for i in range(2)
        ]
    )
    np.testing.assert_allclose(res.r.values, want, atol=1e-10)
    assert res.r.dims == ("roi", "time")
    assert np.isfinite(res.p).all() and (res.ci_low <= res.r).all()


def test_partial_removes_a_confound():
    rng = np.random.default_rng(19)
    n = 120
    v1 = rng.standard_normal(n)  # drives both the response and memorability
    memo = v1 + 0.5 * rng.standard_normal(n)
    confounded = v1 + 0.5 * rng.standard_normal(n)
    direct = v1 + 0.8 * (memo - v1) + 0.5 * rng.standard_normal(n)  # a true extra effect
    x = xr.DataArray(np.c_[confounded, direct], dims=("stimulus", "roi"))
    plain = correlate(x, memo, **FAST)
    part = partial_correlate(x, memo, v1, **FAST)
    assert (plain.r > 0.6).all() and (plain.p < 0.01).all()
    assert abs(float(part.r[0])) < 0.2 and float(part.p[0]) > 0.05
    assert float(part.ci_low[0]) < 0 < float(part.ci_high[0])
    assert float(part.r[1]) > 0.4 and float(part.p[1]) < 0.01


def test_partial_permutes_the_residual_of_y(monkeypatch):
    """Freedman-Lane: permuted y = fitted part on [1, c] + a permutation of the residual."""
    rng = np.random.default_rng(22)
    n = 30
    c = rng.standard_normal(n)
    y = c + rng.standard_normal(n)
    x = xr.DataArray(rng.standard_normal((n, 2)), dims=("stimulus", "roi"))
    seen = []
    original = stats.resampling_tables

    def record(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(stats, "resampling_tables", record)
    partial_correlate(x, y, c, n_permutations=20, n_bootstrap=0)
    (t,) = seen
    y0 = (y - y.mean()) / y.std()
    resid = residual(y0, c)
    np.testing.assert_allclose(t.fitted, y0 - resid, atol=1e-12)
    full, _ = design_rows(t, 0, n)
    for col in full[:, 1:21].T:
        np.testing.assert_allclose(np.sort(col - t.fitted), np.sort(resid), atol=1e-12)
        assert not np.allclose(col, y0)


# ---------------------------------------------------------------------------------------------
# correlation maps, attrs, errors
# ---------------------------------------------------------------------------------------------


def test_correlation_map_keeps_channel_coords(backend):
    rng = np.random.default_rng(20)
    ds = example_cube(n_stimulus=36, n_channel=6, seed=20)
    m = ds.memorability.values
    resp = rng.standard_normal((36, 6, 4))
    resp[:, :2, 2:] += 10 * m[:, None, None]  # channels 0-1 encode memorability late
    ds["response"] = (("stimulus", "channel", "time"), resp)
    ds = ds.assign_coords(time=[0.0, 50.0, 100.0, 150.0], area=("channel", text_coord("VVVIII")))
    if backend == "dask":
        ds["response"] = ds.response.chunk({"stimulus": 9, "channel": 4})
    res = correlation_map(ds, **FAST).compute()
    assert res.r.dims == ("channel", "time")
    assert res.area.values.tolist() == list("VVVIII")
    assert res.channel_id.values.tolist() == list(range(1, 7))
    assert res.time.values.tolist() == [0.0, 50.0, 100.0, 150.0]
    want = [scipy.stats.pearsonr(col, m)[0] for col in features(resp).T]
    np.testing.assert_allclose(res.r.values.ravel(), want, atol=1e-10)
    assert (res.p_fdr.isel(channel=[0, 1], time=[2, 3]) < 0.05).all()
    want_fdr = scipy.stats.false_discovery_control(res.p.values.ravel()).reshape(6, 4)
    np.testing.assert_allclose(res.p_fdr.values, want_fdr)


def test_attrs_seed_and_errors():
    rng = np.random.default_rng(21)
    y = rng.standard_normal(30)
    x = xr.DataArray(rng.standard_normal((30, 3)) + y[:, None] * 0.2, dims=("stimulus", "roi"))
    a = correlate(x, y, seed=3, **FAST)
    assert a.attrs == {
        "method": "pearson",
        "dim": "stimulus",
        "n_permutations": 200,
        "n_bootstrap": 200,
        "groups": "none",
        "permutation_scheme": "shuffle of stimuli",
        "seed": 3,
        "ci": 0.95,
        "ci_method": "jackknife",
        "x_nan_policy": "propagate",
        "p_family": "p_fdr: Benjamini-Hochberg over every feature (all dims but 'stimulus')"
        " of this call",
    }
    assert_same(correlate(x, y, seed=3, **FAST), a)
    b = correlate(x, y, seed=4, **FAST)
    assert not np.array_equal(a.p.values, b.p.values)
    np.testing.assert_array_equal(a.ci_low.values, b.ci_low.values)  # jackknife: no draws
    pa, pb = (correlate(x, y, seed=s, ci_method="percentile", **FAST) for s in (3, 4))
    assert not np.array_equal(pa.ci_low.values, pb.ci_low.values)
    np.testing.assert_array_equal(a.r.values, b.r.values)
    x_t = x.rename(stimulus="image")
    np.testing.assert_allclose(correlate(x_t, y, dim="image", **FAST).r.values, a.r.values)
    with pytest.raises(ValueError, match="method"):
        correlate(x, y, method="kendall")
    with pytest.raises(ValueError, match="one value per stimulus"):
        correlate(x, y[:-1])
    with pytest.raises(ValueError, match="no coordinate 'concept'"):
        correlate(x, y, groups="concept")
    with pytest.raises(ValueError, match="ci"):
        correlate(x, y, ci=95)
    with pytest.raises(ValueError, match="no dim"):
        correlate(x, y, dim="time")
    with pytest.raises(ValueError, match="constant"):
        correlate(x, np.ones(30))
    with pytest.raises(ValueError, match="single group"):
        correlate(x, y, groups=np.zeros(30))
    with pytest.raises(TypeError, match="unexpected"):
        partial_correlate(x, y, y, n_perm=10)


# ----------------------------------------------------------------------------- clusters


def test_return_null_gives_the_permutations_behind_p(backend):
    rng = np.random.default_rng(30)
    y = rng.standard_normal(50)
    x = xr.DataArray(rng.standard_normal((50, 2, 4)), dims=("stimulus", "roi", "time"))
    x = x.chunk({"roi": 1}) if backend == "dask" else x
    groups = np.repeat(np.arange(10), 5)
    res = correlate(x, y, n_permutations=99, n_bootstrap=0, groups=groups, return_null=True)
    assert res.r_null.dims == ("roi", "time", "permutation")
    null, r = res.r_null.values, res.r.values
    p = (1 + (np.abs(null) >= np.abs(r)[..., None] * (1 - 1e-12)).sum(-1)) / 100
    np.testing.assert_allclose(res.p.values, p)
    plain = correlate(x, y, n_permutations=99, n_bootstrap=0, groups=groups)
    np.testing.assert_array_equal(plain.p.values, res.p.values)
    assert "r_null" not in plain


def test_cluster_test_finds_a_planted_interval_and_nothing_else():
    rng = np.random.default_rng(31)
    n, t = 120, np.arange(-50.0, 250.0, 10.0)
    y = rng.standard_normal(n)
    # smooth noise over time (neighbouring bins correlated), a planted effect in IT 100-180 ms
    noise = rng.standard_normal((n, 2, t.size + 4))
    x = (noise[..., :-4] + noise[..., 1:-3] + noise[..., 2:-2] + noise[..., 3:-1]) / 2
    inside = (t >= 100) & (t <= 180)
    x[:, 1, inside] += 0.5 * y[:, None]
    da_ = xr.DataArray(x, dims=("stimulus", "roi", "time"), coords={"roi": ["V1", "IT"], "time": t})
    res = correlate(da_, y, n_permutations=199, n_bootstrap=0, return_null=True)
    out = cluster_test(res)
    assert out.p_cluster.dims == ("roi", "time") and out.attrs["n_permutations"] == 199
    assert "2 feature(s) (roi) x 30 time bins" in out.attrs["p_family"]
    table = cluster_table(out)
    sig = table[table.p_cluster < 0.05]
    assert sig.roi.tolist() == ["IT"] and sig.sign.tolist() == [1]
    assert 90 <= sig.onset.iloc[0] <= 110 and 170 <= sig.offset.iloc[0] <= 190
    assert (out.p_cluster.sel(roi="V1").fillna(1) > 0.05).all()
    # every bin of a cluster carries the cluster's p; bins outside clusters are NaN
    ids = out.cluster.values
    assert np.isnan(out.p_cluster.values[ids == 0]).all()
    with pytest.raises(ValueError, match="return_null"):
        cluster_test(correlate(da_, y, n_permutations=9, n_bootstrap=0))


def test_cluster_masses_by_hand():
    from memxr.stats.clusters import _runs

    z = np.array([[0.0, 2.0, 3.0, -2.5, np.nan, 2.0], [2.0, 2.0, 0.0, 0.0, 0.0, 0.0]])
    ids, mass, rows = _runs(z, 1.96)
    assert ids.tolist() == [[0, 1, 1, 2, 0, 3], [4, 4, 0, 0, 0, 0]]
    np.testing.assert_allclose(mass, [5.0, 2.5, 2.0, 4.0])
    assert rows.tolist() == [0, 0, 0, 1]



# ----------------------------------------------------------------------------- jackknife


def _jackknife_reference(x, y, units, ci=0.95, c=None):
    """Delete-one-unit jackknife of Fisher's z with Student's t, unit by unit."""
    def corr(a, b):
        return np.corrcoef(a, b)[0, 1]

    def stat(keep):
        if c is None:
            return corr(x[keep], y[keep])
        rxy, rxc, ryc = corr(x[keep], y[keep]), corr(x[keep], c[keep]), corr(y[keep], c[keep])
        return (rxy - rxc * ryc) / np.sqrt((1 - rxc**2) * (1 - ryc**2))

    z = np.array([np.arctanh(stat(units != u)) for u in np.unique(units)])
    k = z.size
    se = np.sqrt((k - 1) / k * ((z - z.mean()) ** 2).sum())
    half = scipy.stats.t.ppf((1 + ci) / 2, k - 1) * se
    centre = np.arctanh(stat(np.ones(x.size, bool)))
    return np.tanh(centre - half), np.tanh(centre + half)


def test_jackknife_interval_deletes_one_concept_at_a_time(backend):
    rng = np.random.default_rng(40)
    sizes = rng.integers(1, 9, size=30)
    concept = np.repeat(np.arange(30), sizes)
    n = concept.size
    y = rng.standard_normal(30)[concept] + rng.standard_normal(n)
    xv = 0.3 * y[:, None] + rng.standard_normal(30)[concept][:, None] + rng.standard_normal((n, 3))
    x = xr.DataArray(xv, dims=("stimulus", "roi"))
    x = x.chunk({"stimulus": 25}) if backend == "dask" else x
    res = correlate(x, y, groups=concept, n_permutations=0, n_bootstrap=1, compute=True)
    assert res.attrs["ci_method"] == "jackknife"
    for j in range(3):
        lo, hi = _jackknife_reference(xv[:, j], y, concept)
        assert float(res.ci_low[j]) == pytest.approx(lo, rel=1e-8)
        assert float(res.ci_high[j]) == pytest.approx(hi, rel=1e-8)
    # a shared covariate: the jackknife of the partial correlation
    c = rng.standard_normal(n) + 0.5 * y
    part = partial_correlate(x, y, c, groups=concept, n_permutations=0, n_bootstrap=1,
                             compute=True)  # fmt: skip
    lo, hi = _jackknife_reference(xv[:, 0], y, concept, c=c)
    assert float(part.ci_low[0]) == pytest.approx(lo, rel=1e-8)
    assert float(part.ci_high[0]) == pytest.approx(hi, rel=1e-8)
    # percentile: the concept bootstrap as before
    pct = correlate(x, y, groups=concept, n_permutations=0, n_bootstrap=99,
                    ci_method="percentile", compute=True)  # fmt: skip
    assert pct.attrs["ci_method"] == "percentile" and np.isfinite(pct.ci_low).all()
    with pytest.raises(ValueError, match="ci_method"):
        correlate(x, y, ci_method="bca")


def test_jackknife_units_merge_whole_concepts_beyond_the_limit():
    from memxr.stats.kernels import jackknife_units

    concept = np.repeat(np.arange(500), 3)
    units = jackknife_units(concept, concept.size, seed=1)
    assert units.max() + 1 == 200
    # every concept lies in one unit
    assert all(np.unique(units[concept == g]).size == 1 for g in range(500))
    counts = np.bincount(np.unique(np.c_[concept, units], axis=0)[:, 1])
    assert counts.min() >= 2 and counts.max() <= 3
