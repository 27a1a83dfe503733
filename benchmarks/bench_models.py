"""Models at real size: the old defaults against the new, per fit, per permutation test, per spec.

Old defaults: ``models: [ridge, svc]`` (RBF-kernel SVC; the TVSD spec also fit dask-ml's
``logistic``), all ``n_permutations`` for every row, the PCA of pattern features refit at
every fit. New defaults: ``models: [ridge, linear_svc]``, sequential p-values
(``early_stop: 10``, Besag & Clifford 1991), the PCA fit once per training fold.

Random data at the shapes of the shipped specs, timed in CPU seconds of this process (one
BLAS thread; CPU time rather than wall time, so that other jobs on the machine do not count):

- THINGS-fMRI: 7,900 train images x 50 features (the PCA size of the patterns), 720
  concepts;
- TVSD: 22,248 train images x 50 features, 1,854 concepts of 12 images;
- a TVSD pattern: 22,248 images x 512 channels (V1 of a monkey), reduced to 50 principal
  components inside each training fold.

Printed: one fit (4/5 of the images, 5-fold grouped CV) of each model; one permutation test
(``fit_models`` with 5 folds and 100 permutations of one feature set: the observed fit and
the permutations of every fold), measured for the new defaults and, unless ``--run-old``,
extrapolated for the old ones from the fits measured (number of fits x seconds per fit: the
old code ran one fit per target and fold); and the CPU-hours of each shipped spec's models
step from these numbers. The sequential test's permutation count depends on the data: on
random data it is what a null row costs; a row with a real effect runs all 100.

Run: ``PYTHONPATH=. python benchmarks/bench_models.py [--quick] [--run-old]``
(``--quick``: a tenth of the images, for a smoke test).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from memxr.models import fit_models, make_folds, make_pca
from memxr.models.task import FitOptions, FoldTask, fit_fold, fold_components
from memxr.schema import text_coord
from memxr.stats.inputs import group_codes

FOLDS, PERMS = 5, 100
TARGETS = FOLDS * (PERMS + 1)  # fits of one model on one feature set: 505

SHAPES = {  # name: (images, features, concepts, PCA components or None)
    "things 7,900 x 50": (7_900, 50, 720, None),
    "tvsd 22,248 x 50": (22_248, 50, 1_854, None),
    "tvsd pattern 22,248 x 512 -> 50 PCs": (22_248, 512, 1_854, 50),
}


def _data(n: int, p: int, n_concepts: int, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    dtype = np.float32 if p > 100 else np.float64  # patterns are stored as float32
    return xr.DataArray(
        rng.standard_normal((n, p)).astype(dtype),
        dims=("stimulus", "feature"),
        coords={
            "concept": ("stimulus", text_coord(f"c{i % n_concepts}" for i in range(n))),
            "memorability": ("stimulus", rng.standard_normal(n)),
        },
    )


def _seconds(fn: Callable[[], object], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def one_fit(x: xr.DataArray, model: str, n_components: int | None, pca_inside: bool) -> float:
    """Seconds of one fit and prediction of ``model`` on the first fold, as ``fit_models``
    runs it (:func:`memxr.models.task.fit_fold`: labels or standardized target from the
    training fold, ridge alpha from inner folds of its concepts); with ``pca_inside`` the PCA
    is fit inside the fit (the old code, at every fit), else once beforehand (the new)."""
    values = x.values
    y = x.memorability.values
    codes = group_codes(x.concept.values)
    folds = make_folds(len(y), x.concept.values, FOLDS, 0)[0]
    train, test = folds[0]
    comps = {"x": n_components} if (n_components and pca_inside) else None
    prepared = False
    if n_components and not pca_inside:  # the new code: components computed once per fold
        values, prepared = fold_components(values, -1, folds, 0, n_components, 0), True
    opts = FitOptions(seed=0, split="median", q=(0.25, 0.75), grouped=True, params={},
                      epochs=1, n_components=comps)  # fmt: skip
    task = FoldTask("x", model, -1, -1, 0)

    def fit() -> None:
        fit_fold(values, y, codes, train, test, task, opts, prepared=prepared)

    repeat = 1 if model in ("svc", "logistic") else 3
    return _seconds(fit, repeat)


def pca_seconds(x: xr.DataArray, n_components: int) -> float:
    (train, _), *_ = make_folds(x.sizes["stimulus"], x.concept.values, FOLDS, 0)[0]
    return _seconds(lambda: make_pca(n_components).fit(x.values[train]).transform(x.values), 2)


def permutation_test(x: xr.DataArray, models: tuple, early_stop: int | None,
                     n_components: int | None) -> tuple[float, dict]:  # fmt: skip
    """Seconds of one fit_models call (5 folds, 100 permutations) and permutations per row."""
    t = time.process_time()
    res = fit_models({"x": x}, "memorability", models=models, cv=FOLDS, n_permutations=PERMS,
                     early_stop=early_stop, client=False, keep_predictions=False,
                     n_components=n_components)  # fmt: skip
    seconds = time.process_time() - t
    return seconds, dict(zip(res.table.model, res.table.n_permutations, strict=True))


def _fmt(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the images")
    ap.add_argument("--run-old", action="store_true",
                    help="run the old permutation tests instead of extrapolating (hours)")  # fmt: skip
    args = ap.parse_args(argv)
    scale = 0.1 if args.quick else 1.0
    fits: dict[str, dict[str, float]] = {}
    tests: dict[str, dict[str, object]] = {}
    print(f"CPU seconds, one BLAS thread; {FOLDS} grouped folds, {PERMS} permutations"
          f"{' (quick: a tenth of the images)' if args.quick else ''}\n")  # fmt: skip
    print(f"{'shape':38s} {'old svc':>10s} {'new linear_svc':>15s} {'ridge':>8s}"
          f" {'logistic':>9s} {'fold PCA':>9s}")  # fmt: skip
    with threadpool_limits(1):
        for name, (n, p, n_concepts, comps) in SHAPES.items():
            x = _data(int(n * scale), p, max(FOLDS, int(n_concepts * scale)))
            f = {
                "svc": one_fit(x, "svc", comps, pca_inside=True),
                "linear_svc": one_fit(x, "linear_svc", comps, pca_inside=False),
                "ridge_old": one_fit(x, "ridge", comps, pca_inside=True),
                "ridge": one_fit(x, "ridge", comps, pca_inside=False),
                "logistic": one_fit(x, "logistic", comps, pca_inside=True),
                "pca": pca_seconds(x, comps) if comps else 0.0,
            }
            fits[name] = f
            print(f"{name:38s} {_fmt(f['svc']):>10s} {_fmt(f['linear_svc']):>15s}"
                  f" {_fmt(f['ridge']):>8s} {_fmt(f['logistic']):>9s}"
                  f" {_fmt(f['pca']) if comps else '-':>9s}", flush=True)  # fmt: skip
        print(f"\none permutation test: fit_models on one feature set, {FOLDS} folds,"
              f" {PERMS} permutations (random data: a null row)")  # fmt: skip
        print(f"{'shape':38s} {'old ridge+svc':>16s} {'new ridge+linear_svc':>21s}"
              f" {'speed-up':>9s}  permutations run (new)")  # fmt: skip
        for name, (n, p, n_concepts, comps) in SHAPES.items():
            x = _data(int(n * scale), p, max(FOLDS, int(n_concepts * scale)))
            f = fits[name]
            if args.run_old:
                old, _ = permutation_test(x, ("ridge", "svc"), None, comps)
                old_text = _fmt(old)
            else:  # the old code: one fit (with its PCA) per target and fold
                old = TARGETS * (f["svc"] + f["ridge_old"])
                old_text = f"~{_fmt(old)}"
            new, used = permutation_test(x, ("ridge", "linear_svc"), 10, comps)
            tests[name] = {"old": old, "new": new, "used": used}
            runs = ", ".join(f"{m} {k}" for m, k in used.items())
            print(f"{name:38s} {old_text:>16s} {_fmt(new):>21s} {old / new:8.0f}x  {runs}",
                  flush=True)  # fmt: skip
    _specs(fits, tests)
    return 0


def _specs(fits: dict, tests: dict) -> None:
    """CPU-hours of the models step of each shipped spec, from the numbers above."""
    things, tvsd, pattern = (fits[k] for k in SHAPES)
    t_things, t_tvsd, t_pattern = (tests[k] for k in SHAPES)

    def new_worst(f: dict, sets: int, pca: bool) -> float:  # no row stops: 101 targets
        return sets * (TARGETS * (f["ridge"] + f["linear_svc"]) + (FOLDS * f["pca"] if pca else 0))

    # things_fmri.yaml: 3 subjects x 8 feature sets (magnitude + 7 ROI patterns), all timed
    # at 7,900 x 50 (the patterns' own PCA on their voxels, refit at every old fit, not counted)
    old_things = 3 * 8 * TARGETS * (things["svc"] + things["ridge_old"])
    new_things_worst = 3 * new_worst(things, 8, False)
    new_things_null = 3 * 8 * t_things["new"]
    # tvsd.yaml: 4 cubes (normMUA and trials of 2 monkeys) x (magnitude + 3 area patterns);
    # old models ridge, svc, logistic with the PCA refit at every fit; patterns timed at 512
    old_fit_mag = tvsd["svc"] + tvsd["ridge_old"] + tvsd["logistic"]
    old_fit_pat = pattern["svc"] + pattern["ridge_old"] + pattern["logistic"]
    old_tvsd = 4 * TARGETS * (old_fit_mag + 3 * old_fit_pat)
    new_tvsd_worst = 4 * (new_worst(tvsd, 1, False) + new_worst(pattern, 3, True))
    new_tvsd_null = 4 * (t_tvsd["new"] + 3 * t_pattern["new"])
    print("\nCPU-hours of the models step of each shipped spec (train images; the 100 test"
          " images add little)")  # fmt: skip
    print(f"{'spec':16s} {'old defaults':>13s} {'new, no row stops':>18s}"
          f" {'new, null rows':>15s}")  # fmt: skip
    for spec, old, worst, null in (
        ("things_fmri", old_things, new_things_worst, new_things_null),
        ("tvsd", old_tvsd, new_tvsd_worst, new_tvsd_null),
    ):
        print(f"{spec:16s} {old / 3600:12.2f}h {worst / 3600:17.3f}h {null / 3600:14.3f}h")
    print(f"{'cross_species':16s} {'no models step (its decoding is closed-form ridge)':>48s}")


if __name__ == "__main__":
    sys.exit(main())
