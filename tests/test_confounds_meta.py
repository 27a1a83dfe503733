"""Random-effects meta-analysis across individuals (random_effects, pool_effects)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.stats

from memxr.stats import correlate, pool_effects, random_effects
from memxr.testing import simulate_concepts

R = np.array([0.05, 0.21, 0.12, -0.02, 0.15])
N = np.array([300, 800, 500, 400, 650])


def test_dersimonian_laird_and_hksj_by_hand():
    z, v = np.arctanh(R), 1 / (N - 3)
    w = 1 / v
    mu_fe = (w * z).sum() / w.sum()
    q = (w * (z - mu_fe) ** 2).sum()
    tau2 = max(0.0, (q - 4) / (w.sum() - (w**2).sum() / w.sum()))
    ws = 1 / (v + tau2)
    mu = (ws * z).sum() / ws.sum()
    qh = (ws * (z - mu) ** 2).sum() / 4
    se = np.sqrt(max(qh, 1.0) / ws.sum())
    half = scipy.stats.t.ppf(0.975, 4) * se
    out = random_effects(R, N, method="DL")
    assert out["tau2"] == pytest.approx(tau2) and out["Q"] == pytest.approx(q)
    assert out["r"] == pytest.approx(np.tanh(mu))
    assert out["ci_low"] == pytest.approx(np.tanh(mu - half))
    assert out["ci_high"] == pytest.approx(np.tanh(mu + half))
    assert out["p"] == pytest.approx(2 * scipy.stats.t.sf(abs(mu) / se, 4))
    assert out["I2"] == pytest.approx(max(0, (q - 4) / q))
    assert out["Q_p"] == pytest.approx(scipy.stats.chi2.sf(q, 4))
    assert out["n_same_sign"] == 4 and out["sign_consistency"] == pytest.approx(0.8)
    assert out["k"] == 5 and out["n"] == N.sum()
    normal = random_effects(R, N, method="DL", ci_method="z")
    assert normal["se_z"] == pytest.approx(np.sqrt(1 / ws.sum()))
    assert normal["ci_high"] - normal["ci_low"] < out["ci_high"] - out["ci_low"]


def test_reml_maximizes_the_restricted_likelihood():
    z, v = np.arctanh(R), 1 / (N - 3)

    def neg_reml(tau2):
        w = 1 / (v + tau2)
        mu = (w * z).sum() / w.sum()
        return 0.5 * (np.log(v + tau2).sum() + np.log(w.sum()) + (w * (z - mu) ** 2).sum())

    best = scipy.optimize.minimize_scalar(neg_reml, bounds=(0, 1), method="bounded",
                                          options={"xatol": 1e-12})  # fmt: skip
    assert random_effects(R, N)["tau2"] == pytest.approx(best.x, abs=1e-7)
    # homogeneous individuals: tau2 = 0, I2 = 0
    same = random_effects([0.1, 0.1, 0.1], [1000, 1000, 1000])
    assert same["tau2"] == 0.0 and same["I2"] == 0.0 and same["Q"] == pytest.approx(0.0)


def test_one_individual_standard_errors_and_errors():
    one = random_effects([0.2], [100])
    assert one["r"] == pytest.approx(0.2) and np.isnan(one["ci_low"]) and one["k"] == 1
    se = random_effects(R, se=1 / np.sqrt(N - 3))
    assert se["r"] == pytest.approx(random_effects(R, N)["r"])
    assert np.isnan(se["n"])
    with pytest.raises(ValueError, match="se or n"):
        random_effects(R)
    with pytest.raises(ValueError, match="method"):
        random_effects(R, N, method="ML")


def test_pool_effects_appends_group_rows():
    effects = pd.DataFrame({
        "subject": [f"s{i}" for i in range(5)] * 2,
        "roi": ["IT"] * 5 + ["V1"] * 5,
        "r": np.r_[R, R / 5],
        "n": np.r_[N, N],
    })  # fmt: skip
    z = np.arctanh(effects.r)
    half = scipy.stats.norm.ppf(0.975) / np.sqrt(effects.n - 3)
    effects["ci_low"], effects["ci_high"] = np.tanh(z - half), np.tanh(z + half)
    pooled = pool_effects(effects, by="roi")
    assert pooled.roi.tolist() == ["IT", "V1"] and (pooled.subject == "pooled").all()
    by_n = pool_effects(effects, by="roi", se_from="n")
    np.testing.assert_allclose(pooled.r, by_n.r)  # intervals of 1/sqrt(n - 3): same se
    assert pooled.r.iloc[0] == pytest.approx(random_effects(R, N)["r"])
    table = pd.concat([effects, pooled], ignore_index=True)
    assert len(table) == 12 and table.r.notna().all()
    assert {"tau2", "I2", "Q", "sign_consistency", "pi_low"} <= set(pooled.columns)
    assert len(pool_effects(effects)) == 1
    with pytest.raises(ValueError, match="no column"):
        pool_effects(effects.drop(columns="ci_low"))


def test_pooled_interval_covers_the_population_value():
    """Six simulated individuals around r = 0.15 (heterogeneous): the pooled interval from
    their concept-jackknife intervals covers 0.15, and excludes 0."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        rho = float(np.tanh(np.arctanh(0.15) + 0.03 * rng.standard_normal()))
        cube = simulate_concepts(120, (1, 12), rho=rho, seed=100 + i)
        res = correlate(cube.response[:, 0], cube.memorability, groups="concept",
                        n_permutations=0, n_bootstrap=1)  # fmt: skip
        rows.append({"subject": f"sub-{i}", "r": float(res.r), "n": int(res.n),
                     "ci_low": float(res.ci_low), "ci_high": float(res.ci_high)})  # fmt: skip
    pooled = pool_effects(pd.DataFrame(rows)).iloc[0]
    assert pooled.ci_low <= 0.15 <= pooled.ci_high
    assert pooled.ci_low > 0 and pooled.p < 0.05 and pooled.n_same_sign == 6


def test_pool_effects_keeps_a_group_column_named_method():
    effects = pd.DataFrame({"subject": ["s1", "s2", "s3"] * 2, "roi": "IT",
                            "method": ["pearson"] * 3 + ["spearman"] * 3,
                            "r": [0.1, 0.12, 0.09, 0.11, 0.1, 0.08], "n": 900})  # fmt: skip
    pooled = pool_effects(effects, by=["roi", "method"], se_from="n")
    assert pooled.method.tolist() == ["pearson", "spearman"]
    assert pooled.meta_method.str.contains("REML").all()


def test_identity_scale_pools_effects_as_given():
    # differences of correlations (or latencies): no Fisher transform, se on their scale
    d, se = np.array([0.12, 0.05, 0.09, 0.15]), np.array([0.03, 0.04, 0.02, 0.05])
    v = se**2
    w = 1 / v
    mu_fe = (w * d).sum() / w.sum()
    q = (w * (d - mu_fe) ** 2).sum()
    tau2 = max(0.0, (q - 3) / (w.sum() - (w**2).sum() / w.sum()))
    ws = 1 / (v + tau2)
    mu = (ws * d).sum() / ws.sum()
    hk = np.sqrt(max((ws * (d - mu) ** 2).sum() / 3, 1.0) / ws.sum())
    out = random_effects(d, se=se, method="DL", scale="identity")
    assert out["r"] == pytest.approx(mu) and out["z"] == pytest.approx(mu)
    assert out["ci_low"] == pytest.approx(mu - scipy.stats.t.ppf(0.975, 3) * hk)
    assert out["p"] == pytest.approx(2 * scipy.stats.t.sf(abs(mu) / hk, 3))
    # effects beyond |1| are fine on this scale (ms), and se is required
    ms = random_effects([95.0, 110.0, 102.0], se=[5.0, 6.0, 4.0], scale="identity")
    assert 95 < ms["r"] < 110 and ms["k"] == 3
    with pytest.raises(ValueError, match="needs se"):
        random_effects([95.0, 110.0], [100, 100], scale="identity")
    with pytest.raises(ValueError, match="scale"):
        random_effects([0.1, 0.2], [100, 100], scale="log")
    table = pd.DataFrame({"subject": ["a", "b", "c", "d"], "diff": d,
                          "lo": d - 1.959964 * se, "hi": d + 1.959964 * se})  # fmt: skip
    pooled = pool_effects(table, r="diff", ci_columns=("lo", "hi"), scale="identity",
                          method="DL")  # fmt: skip
    assert pooled["diff"].iloc[0] == pytest.approx(mu)
    assert pooled["p"].iloc[0] == pytest.approx(out["p"], rel=1e-5)
