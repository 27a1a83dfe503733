"""Calibration of memxr's inferential outputs by simulation under concept-structured nulls.

Every p-value memxr reports should reject a true null at most as often as its level, and
every confidence interval should cover the population value at least as often as its
coverage, on data structured like the real ones: images nested in concepts, memorability
and responses both carrying concept-level variance, unequal concept sizes. Each check of
:data:`CHECKS` draws such a dataset from a seed (with a varied structure: number of
concepts, 1 to 12 images per concept or a constant number, concept shares of variance),
runs one analysis and says whether the p-value reached the level (a false positive) or
the interval covered the truth. :func:`run_check` repeats it over seeds and compares the
rate with its nominal value through a 95 % Clopper-Pearson interval:

- a false-positive rate passes when the interval reaches down to the level (``low <=
  0.05``: the data do not show a rate above nominal);
- a coverage passes when the interval reaches up to the coverage (``high >= 0.95``).

A false positive is ``p <= 0.05``; the permutation counts are chosen so that ``0.05 (P +
1)`` is an integer, where an exact permutation test rejects with probability exactly
0.05 (with ``p < 0.05`` it would be 0.04 and a slightly liberal test could hide).

The simulations come from :func:`memxr.testing.simulate_concepts` and
:func:`memxr.testing.simulate_species`. The fast versions run in the test suite
(``tests/test_calibration.py``); ``benchmarks/bench_calibration.py`` runs them with more
simulations and permutations and prints the table.

Examples
--------
>>> res = run_check("correlate_p", n_sims=20, fast=True)
>>> res.kind, res.n, res.nominal
('fpr', 20, 0.05)
>>> binomial_interval(5, 100)
(0.016431..., 0.112834...)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.stats
import xarray as xr

from .testing import simulate_concepts, simulate_species

__all__ = [
    "ALPHA",
    "CHECKS",
    "COVERAGE",
    "Check",
    "CheckResult",
    "binomial_interval",
    "run_check",
]

ALPHA = 0.05
"""Level of every test checked (a false positive is ``p <= ALPHA``)."""

COVERAGE = 0.95
"""Coverage of every confidence interval checked."""

REAL_EFFECT = 0.1
"""The population correlation of the coverage checks: TVSD r(IT, memorability) = 0.10."""


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a binomial proportion ``k / n``."""
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(scipy.stats.beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(scipy.stats.beta.ppf(1 - a, k + 1, n - k))
    return low, high


@dataclass(frozen=True)
class Check:
    """One calibration check: what it measures and one simulated replicate of it."""

    name: str
    kind: str  # "fpr" or "coverage"
    description: str
    replicate: Callable[[int, bool], bool]

    @property
    def nominal(self) -> float:
        return ALPHA if self.kind == "fpr" else COVERAGE


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`run_check`: the rate, its interval and the verdict."""

    check: str
    kind: str
    n: int
    count: int
    rate: float
    low: float
    high: float
    nominal: float
    seconds: float

    @property
    def passed(self) -> bool:
        if self.kind == "fpr":
            return self.low <= self.nominal
        return self.high >= self.nominal

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "FAIL"


# ----------------------------------------------------------------------------- structures


def _structure(seed: int) -> dict:
    """A varied concept structure drawn from ``seed``: sizes, shares, number of concepts."""
    rng = np.random.default_rng([seed, 7919])
    sizes = [(1, 12), (1, 4), (2, 12), 3, 12, 1][int(rng.integers(6))]
    return {
        "images_per_concept": sizes,
        "memorability_concept_share": float(rng.uniform(0.2, 0.8)),
        "neural_concept_share": float(rng.uniform(0.2, 0.8)),
        "n_concepts": int(rng.integers(40, 90)),
    }


def _perms(fast: bool, full: int = 199) -> int:
    return 99 if fast else full


def _features(cube: xr.Dataset) -> xr.DataArray:
    return cube["response"].rename(channel="feature")


# ----------------------------------------------------------------------------- replicates


def _correlate_p(seed: int, fast: bool) -> bool:
    from .stats import correlate

    cube = simulate_concepts(seed=seed, **_structure(seed))
    method = ("pearson", "spearman")[seed % 2]
    res = correlate(cube.response[:, 0], cube.memorability, method=method, groups="concept",
                    n_permutations=_perms(fast), n_bootstrap=0, seed=seed)  # fmt: skip
    return bool(float(res.p) <= ALPHA)


def _correlate_ci(seed: int, fast: bool) -> bool:
    from .stats import correlate

    structure = _structure(seed) | {"n_concepts": 150 + seed % 151}
    cube = simulate_concepts(seed=seed, rho=REAL_EFFECT, **structure)
    res = correlate(cube.response[:, 0], cube.memorability, groups="concept", n_permutations=0,
                    n_bootstrap=299 if fast else 999, seed=seed)  # fmt: skip
    return bool(float(res.ci_low) <= REAL_EFFECT <= float(res.ci_high))


def _correlation_map_fwer(seed: int, fast: bool) -> bool:
    from .stats import correlation_map

    cube = simulate_concepts(seed=seed, n_channels=8, **_structure(seed))
    res = correlation_map(cube, groups="concept", n_permutations=399 if fast else 999,
                          n_bootstrap=0, seed=seed)  # fmt: skip
    return bool((res.p_fdr.values <= ALPHA).any())


def _cluster_fwer(seed: int, fast: bool) -> bool:
    from .stats import cluster_test, correlate

    times = np.arange(-50.0, 250.0, 10.0 if fast else 5.0)
    cube = simulate_concepts(seed=seed, n_channels=3, times=times, smoothness=4 if fast else 8,
                             **_structure(seed))  # fmt: skip
    res = correlate(cube.response, cube.memorability, groups="concept",
                    n_permutations=_perms(fast), n_bootstrap=0, seed=seed, return_null=True)  # fmt: skip
    out = cluster_test(res)
    return bool((out.p_cluster.fillna(1.0).values <= ALPHA).any())


def _fit_models_p(seed: int, fast: bool) -> bool:
    from .models import fit_models

    cube = simulate_concepts(seed=seed, n_channels=4, **_structure(seed))
    model = ("ridge", "linear")[seed % 2] if fast else "ridge"
    res = fit_models(_features(cube), "memorability", models=(model,), cv=3 if fast else 5,
                     n_permutations=19 if fast else 39, seed=seed, client=False,
                     keep_predictions=False)  # fmt: skip
    return bool(float(res.table.chance_p.iloc[0]) <= ALPHA)


def _species(seed: int, **kw) -> tuple[xr.Dataset, xr.Dataset]:
    s = _structure(seed)
    return simulate_species(
        n_shared_concepts=int(s["n_concepts"]) // 2 + 15,
        n_own_concepts=int(s["n_concepts"]) // 2 + 25,
        images_per_concept=s["images_per_concept"],
        concept_share=s["neural_concept_share"],
        seed=seed,
        **kw,
    )


def _decode_p(seed: int, fast: bool, **codes: float) -> bool:
    from .bridge import cross_decode

    human, monkey = _species(seed, **codes)
    out = cross_decode(monkey, human, "A", "A", n_permutations=_perms(fast), seed=seed,
                       min_images=10)  # fmt: skip
    if out.empty:
        raise RuntimeError(f"cross_decode gave no row: {out.attrs.get('reason')}")
    return bool(float(out.p.iloc[0]) <= ALPHA)


def _decode_source_null(seed: int, fast: bool) -> bool:
    return _decode_p(seed, fast, human_code=0.6, monkey_code=0.0)


def _decode_target_null(seed: int, fast: bool) -> bool:
    return _decode_p(seed, fast, human_code=0.0, monkey_code=0.6)


def _rsa_p(seed: int, fast: bool) -> bool:
    from .bridge import rsa

    human, monkey = _species(seed, shared_representation=False)
    out = rsa(human, monkey, "A", "A", level="image", n_permutations=_perms(fast), seed=seed,
              max_items=400)  # fmt: skip
    return bool(float(out.p.iloc[0]) <= ALPHA)


def _shared_effects_p(seed: int, fast: bool) -> bool:
    from .bridge import shared_effects

    human, monkey = _species(seed)
    out = shared_effects(human, monkey, "A", "A", method=("pearson", "spearman")[seed % 2],
                         n_permutations=_perms(fast), n_bootstrap=0, seed=seed)  # fmt: skip
    return bool(float(out.loc[out.species == "macaque", "p"].iloc[0]) <= ALPHA)


CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check("correlate_p", "fpr", "correlate: permutation p (Pearson/Spearman, concepts)",
              _correlate_p),
        Check("correlate_ci", "coverage", "correlate: jackknife 95% CI, r = 0.10, 150-300 concepts",
              _correlate_ci),
        Check("correlation_map_fwer", "fpr", "correlation_map: any p_fdr of 8 null channels",
              _correlation_map_fwer),
        Check("timecourse_cluster_fwer", "fpr",
              "cluster_test: any cluster of 3 ROIs x 30-60 bins", _cluster_fwer),
        Check("fit_models_p", "fpr", "fit_models: chance_p (grouped CV, concept permutations)",
              _fit_models_p),
        Check("cross_decode_p_source_null", "fpr",
              "cross_decode: p when the monkey decoder learns nothing", _decode_source_null),
        Check("cross_decode_p_target_null", "fpr",
              "cross_decode: p when the human responses carry no memorability",
              _decode_target_null),
        Check("rsa_mantel_p", "fpr", "rsa: Mantel p, species share only concept structure",
              _rsa_p),
        Check("shared_effects_p", "fpr", "shared_effects: p of the macaque area", _shared_effects_p),
    )
}  # fmt: skip
"""Every calibration check, by name."""


def run_check(name: str, n_sims: int, *, fast: bool = True, seed: int = 0) -> CheckResult:
    """Run ``n_sims`` replicates of a check (seeds ``seed .. seed + n_sims - 1``).

    Parameters
    ----------
    name : str
        A key of :data:`CHECKS`.
    n_sims : int
        Simulated datasets.
    fast : bool
        The test-suite settings (fewer permutations and bootstrap samples); False: the
        benchmark's.
    seed : int
        First seed: other seeds give other datasets and structures.

    Returns
    -------
    CheckResult
    """
    check = CHECKS[name]
    start = time.perf_counter()
    hits = sum(check.replicate(int(seed) + i, fast) for i in range(int(n_sims)))
    low, high = binomial_interval(hits, int(n_sims))
    return CheckResult(
        check=name,
        kind=check.kind,
        n=int(n_sims),
        count=int(hits),
        rate=hits / int(n_sims),
        low=low,
        high=high,
        nominal=check.nominal,
        seconds=time.perf_counter() - start,
    )
