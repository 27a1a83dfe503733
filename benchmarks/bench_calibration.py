"""Calibration table: false-positive rates and CI coverage of every inferential output.

Runs each check of :data:`memxr.testing.CHECKS` on ``--n-sims`` simulated datasets
(concept-structured nulls with varied structures: 1-12 images per concept, unequal
concept sizes, concept-level variance in responses and memorability; r = 0.10 for most
coverage checks, each check's description names its truth) with the full settings (more
permutations and bootstrap samples than the test suite), and prints one row per check: n simulations, the false-positive rate
(``p <= .05``) or the coverage, its 95 % Clopper-Pearson interval and the verdict (pass
when the interval reaches the nominal value: FPR <= .05, coverage >= .95). The exit
code is 1 when a check fails.

Run: ``python benchmarks/bench_calibration.py [--n-sims 400] [--only correlate_p,...]
[--seed 0] [--fast]``
"""

from __future__ import annotations

import argparse
import sys
import time

from threadpoolctl import threadpool_limits

from memxr.testing import CHECKS, run_check


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sims", type=int, default=400, help="simulated datasets per check")
    ap.add_argument("--only", help="comma-separated check names (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="first seed of the simulations")
    ap.add_argument("--fast", action="store_true", help="the test suite's settings")
    args = ap.parse_args(argv)
    names = list(CHECKS) if not args.only else [s.strip() for s in args.only.split(",")]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        ap.error(f"unknown check {unknown[0]!r}; one of {', '.join(CHECKS)}")
    header = (
        f"{'check':28s} {'kind':8s} {'n':>5s} {'rate':>7s} {'95% interval':>17s}"
        f" {'nominal':>8s} {'verdict':>7s} {'s':>7s}"
    )
    print(f"settings: {'fast' if args.fast else 'full'}, first seed {args.seed}")
    print(header)
    print("-" * len(header))
    failed = 0
    start = time.perf_counter()
    with threadpool_limits(1):
        for name in names:
            res = run_check(name, args.n_sims, fast=args.fast, seed=args.seed)
            kind = "FPR" if res.kind == "fpr" else "coverage"
            bound = "<=" if res.kind == "fpr" else ">="
            print(
                f"{name:28s} {kind:8s} {res.n:5d} {res.rate:7.3f}"
                f" [{res.low:6.3f}, {res.high:6.3f}] {bound}{res.nominal:5.2f}"
                f" {res.verdict:>7s} {res.seconds:7.1f}",
                flush=True,
            )
            failed += not res.passed
    print(f"\n{len(names) - failed} of {len(names)} checks pass;"
          f" {time.perf_counter() - start:.0f} s in all")  # fmt: skip
    for name in names:
        print(f"  {name}: {CHECKS[name].description}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
