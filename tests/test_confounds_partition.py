"""Variance partitioning of memorability between neural features and covariates."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from memxr.models import make_folds, variance_partition
from memxr.testing import simulate_confounds


def test_r2_matches_scikit_learn_with_a_fixed_alpha():
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cube, cov = simulate_confounds(60, 4, partial_r=0.3, n_channels=3, seed=1)
    x = cube.response.rename(channel="feature")
    out = variance_partition(x, "memorability", cov, cv=4, n_permutations=0, alphas=[3.0],
                             seed=2).iloc[0]  # fmt: skip
    y = cube.memorability.values
    folds, _ = make_folds(y.size, cube.concept.values, 4, seed=2)

    def r2(features):
        pred = np.empty_like(y)
        for tr, te in folds:
            ytr = (y[tr] - y[tr].mean()) / y[tr].std()
            model = make_pipeline(StandardScaler(), Ridge(alpha=3.0)).fit(features[tr], ytr)
            pred[te] = model.predict(features[te]) * y[tr].std() + y[tr].mean()
        return r2_score(y, pred)

    both = np.c_[x.values, cov.values]
    assert out.r2_neural == pytest.approx(r2(x.values), abs=1e-10)
    assert out.r2_covariates == pytest.approx(r2(cov.values), abs=1e-10)
    assert out.r2_both == pytest.approx(r2(both), abs=1e-10)
    assert out.unique_neural == pytest.approx(out.r2_both - out.r2_covariates)
    assert out.shared == pytest.approx(out.r2_neural + out.r2_covariates - out.r2_both)
    assert np.isnan(out.p_unique_neural) and out.n_folds == 4 and out.cv == "grouped"


def test_planted_unique_neural_share_and_its_null():
    real, cov = simulate_confounds(150, (2, 8), partial_r=0.4, n_channels=4, confound=1.0,
                                   seed=3)  # fmt: skip
    out = variance_partition(real.response.rename(channel="feature"), "memorability", cov,
                             n_permutations=49, seed=3).iloc[0]  # fmt: skip
    assert out.unique_neural > 0.05 and out.p_unique_neural <= 0.02
    assert out.shared > 0.05 and out.r2_covariates > 0.2
    null, cov0 = simulate_confounds(150, (2, 8), partial_r=0.0, n_channels=4, confound=1.0,
                                    seed=4)  # fmt: skip
    out0 = variance_partition(null.response.rename(channel="feature"), "memorability", cov0,
                              n_permutations=49, seed=4).iloc[0]  # fmt: skip
    assert abs(out0.unique_neural) < 0.03 and out0.p_unique_neural > 0.05
    assert out0.r2_neural > 0.1 and out0.shared > 0.1  # the neural features carry the confound
    assert "Freedman-Lane" in out0.p_family


def test_missing_values_arrays_and_errors():
    cube, cov = simulate_confounds(40, 3, n_channels=2, seed=5)
    x = cube.response.rename(channel="feature")
    memo = cube.memorability.values.copy()
    memo[:3] = np.nan
    cvals = cov.values.copy()
    cvals[5, 0] = np.nan
    out = variance_partition(x.values, memo, cvals, groups=cube.concept.values, cv=3,
                             n_permutations=9).iloc[0]  # fmt: skip
    assert out.n == cube.sizes["stimulus"] - 4 and out.n_covariates == 2
    random = variance_partition(x, "memorability", cov, groups=None, cv="random",
                                n_permutations=9).iloc[0]  # fmt: skip
    assert random.cv == "random" and "by stimulus" in random.p_family
    with pytest.raises(ValueError, match="no coordinate"):
        variance_partition(x, "nope", cov)
    with pytest.raises(ValueError, match="grouped cross-validation needs groups"):
        variance_partition(x, "memorability", cov, groups=None)
    with pytest.raises(ValueError, match="one value per"):
        variance_partition(x, memo[:-1], cov)
    assert isinstance(cov, xr.DataArray)
