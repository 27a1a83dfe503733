"""Run every benchmark script of this folder (``bench_*.py``), one after the other.

Each script runs in its own process (so peak-memory figures are its own) and prints its
own table of ratios; this runner adds a summary line per script (exit code, wall time).
Benchmarks write gigabytes of synthetic data at real sizes and take minutes to hours;
they are not part of ``make test``.

Usage::

    python benchmarks/run_all.py [--only ingest,analyses] [--list] [--workdir DIR]

``make bench`` runs them all. ``--workdir`` is passed to the scripts that take one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> dict[str, Path]:
    """Benchmark scripts by short name (``bench_ingest.py`` -> ``ingest``)."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def _takes_workdir(path: Path) -> bool:
    return "--workdir" in path.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated short names (default: all)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--workdir", type=Path, help="scratch folder for the synthetic data")
    args = ap.parse_args(argv)
    found = scripts()
    if args.list:
        for name, path in found.items():
            print(f"{name:12s} {path.name}")
        return 0
    wanted = list(found) if not args.only else [s.strip() for s in args.only.split(",")]
    unknown = [w for w in wanted if w not in found]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; one of {', '.join(found)}")
    summary = []
    for name in wanted:
        cmd = [sys.executable, str(found[name])]
        if args.workdir is not None and _takes_workdir(found[name]):
            cmd += ["--workdir", str(args.workdir / name)]
        print(f"\n===== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd).returncode
        summary.append((name, code, time.perf_counter() - t0))
    print("\n===== summary")
    for name, code, seconds in summary:
        print(f"{name:12s} exit {code}  {seconds:8.1f} s")
    return max((code for _, code, _ in summary), default=0)


if __name__ == "__main__":
    sys.exit(main())
