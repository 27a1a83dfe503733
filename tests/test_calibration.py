"""Calibration of every inferential output under concept-structured nulls (fast version).

Each check simulates datasets with varied concept structures (1-12 images per concept,
unequal concept sizes, concept-level variance in responses and memorability), runs one
analysis per dataset and counts false positives (``p <= .05``) or intervals covering the
population correlation (r = 0.10, the real TVSD IT effect). A check passes when the 95 %
Clopper-Pearson interval of the rate reaches the nominal value (FPR <= .05, coverage
>= .95). The negative controls show that these tolerances fail broken procedures. The
full version, with more simulations and permutations: ``benchmarks/bench_calibration.py``.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from memxr.stats import correlate
from memxr.testing import (
    CHECKS,
    binomial_interval,
    concept_sizes,
    run_check,
    simulate_concepts,
    simulate_species,
)

# simulations per check: about two minutes of CPU in all (one BLAS thread)
N_SIMS = {
    "correlate_p": 200,
    "correlate_ci": 120,
    "correlation_map_fwer": 100,
    "timecourse_cluster_fwer": 100,
    "fit_models_p": 40,
    "fit_models_sequential_p": 40,
    "cross_decode_p_source_null": 80,
    "cross_decode_p_target_null": 50,
    "rsa_mantel_p": 60,
    "shared_effects_p": 60,
    "partial_correlate_p": 200,
    "partial_correlate_ci": 100,
    "within_concept_p": 200,
    "within_concept_ci": 80,
    "compare_p": 150,
    "compare_ci": 100,
    "latency_onset_ci": 80,
    "latency_peak_ci": 60,
    "meta_p": 40,
    "meta_ci": 30,
    "meta_diff_p": 100,
    "meta_diff_ci": 100,
    "meta_onset_ci": 60,
    "variance_partition_p": 100,
}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Many tiny fits: BLAS threads only add contention."""
    with threadpool_limits(1):
        yield


def test_every_check_has_a_size():
    assert set(N_SIMS) == set(CHECKS)


@pytest.mark.parametrize("name", list(N_SIMS))
def test_calibrated(name):
    res = run_check(name, N_SIMS[name], fast=True, seed=20_000)
    assert res.passed, (
        f"{name}: {res.count}/{res.n} = {res.rate:.3f}, 95% interval [{res.low:.3f},"
        f" {res.high:.3f}], nominal {res.nominal}"
    )


def test_binomial_interval():
    assert binomial_interval(0, 10)[0] == 0.0 and binomial_interval(10, 10)[1] == 1.0
    low, high = binomial_interval(29, 60)
    assert 0.35 < low < 0.36 and 0.61 < high < 0.62  # 29 of 60: far above .05


# ----------------------------------------------------------------------------- controls


def _rate(replicate, n):
    hits = sum(replicate(seed) for seed in range(n))
    return hits, binomial_interval(hits, n)


def test_negative_control_image_permutations_fail_the_fpr_check():
    """Permuting images while concepts carry both memorability and the response: the check
    flags the false-positive rate (and the concept-grouped test on the same data passes)."""

    def shuffled(seed, groups=None):
        cube = simulate_concepts(40, 8, memorability_concept_share=0.7,
                                 neural_concept_share=0.7, seed=seed)  # fmt: skip
        res = correlate(cube.response[:, 0], cube.memorability, groups=groups,
                        n_permutations=99, n_bootstrap=0, seed=seed)  # fmt: skip
        return float(res.p) <= 0.05

    hits, (low, _) = _rate(shuffled, 60)
    assert low > 0.05, f"{hits}/60 false positives should fail the check"
    hits, (low, _) = _rate(lambda s: shuffled(s, "concept"), 60)
    assert low <= 0.05


def test_negative_control_image_bootstrap_fails_the_coverage_check():
    """A bootstrap of images ignores the concept structure: its intervals are too narrow."""

    def covers(seed, groups=None):
        cube = simulate_concepts(60, 8, rho=0.1, memorability_concept_share=0.7,
                                 neural_concept_share=0.7, seed=seed)  # fmt: skip
        res = correlate(cube.response[:, 0], cube.memorability, groups=groups,
                        n_permutations=0, n_bootstrap=199, seed=seed)  # fmt: skip
        return float(res.ci_low) <= 0.1 <= float(res.ci_high)

    hits, (_, high) = _rate(covers, 60)
    assert high < 0.95, f"{hits}/60 covered: the check must fail image-level intervals"


# ----------------------------------------------------------------------------- simulations


def test_simulations_have_the_structure_they_claim():
    rng = np.random.default_rng(0)
    sizes = concept_sizes(400, (1, 12), rng)
    assert sizes.min() == 1 and sizes.max() == 12 and len(set(sizes.tolist())) == 12
    cube = simulate_concepts(3000, 4, rho=0.3, n_channels=2, memorability_concept_share=0.6,
                             neural_concept_share=0.4, seed=1)  # fmt: skip
    x, m = cube.response.values[:, 0], cube.memorability.values
    assert np.corrcoef(x, m)[0, 1] == pytest.approx(0.3, abs=0.03)
    codes = np.unique(cube.concept.values, return_inverse=True)[1]
    for values, share in ((m, 0.6), (x, 0.4)):  # share of variance at the concept level
        z = (values - values.mean()) / values.std()
        means = (np.bincount(codes, weights=z) / np.bincount(codes))[codes]
        # 4 images per concept: var(means) = s + (1 - s) / 4, var(z - means) = 3 (1 - s) / 4
        assert np.var(means) - np.var(z - means) / 3 == pytest.approx(share, abs=0.05)
    timed = simulate_concepts(30, 3, times=np.arange(20.0), smoothness=5, seed=2)
    series = timed.response.values[:, 0, :]
    lag1 = np.mean([np.corrcoef(series[:, t], series[:, t + 1])[0, 1] for t in range(19)])
    assert lag1 > 0.6  # neighbouring bins correlated
    human, monkey = simulate_species(10, 20, 3, monkey_code=1.0, seed=3)
    assert set(human.stimulus_id.values) < set(monkey.stimulus_id.values)
    code = np.abs(
        np.corrcoef(monkey.response.values.T, monkey.memorability.values)[-1, :-1]
    ).max()
    assert code > 0.3
