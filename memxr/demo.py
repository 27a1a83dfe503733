"""The demo behind ``make demo``: synthetic raw files -> Zarr cubes -> pipeline -> report.

Runs the same commands a user types, in-process, on a small synthetic data
set written in the real formats: ``memxr synth``, ``memxr ingest`` of every
subject and monkey (time-resolved trials included), ``memxr validate`` and
``memxr info``, then ``memxr run`` of ``pipelines/demo.yaml`` on a 2-worker
LocalCluster, which writes result stores, tables, figures and one HTML report.
The output folder is ``$MEMXR_DEMO_DIR`` (default ``demo_out``); it is rebuilt
from scratch on each run.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from .cli import main as memxr

__all__ = ["run_demo"]


def _run(*argv: str) -> None:
    print("$ memxr " + " ".join(argv), flush=True)
    code = memxr(list(argv))
    if code != 0:
        raise SystemExit(f"demo step failed (exit {code}): memxr {' '.join(argv)}")


SPEC = Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml"


def _spec_for(out: Path) -> Path:
    """``pipelines/demo.yaml`` with its input paths pointing into ``out`` (wherever it is)."""
    spec = yaml.safe_load(SPEC.read_text())
    raw = (out / "raw").resolve()
    spec["inputs"]["memorability"] = str(raw / "things" / "THINGS_Memorability_Scores.csv")
    spec["inputs"]["concepts"] = str(raw / "things" / "Concept_to_category_linking.csv")
    for cube in spec["inputs"]["cubes"]:
        rel = Path(cube["input"]).as_posix().split("demo_out/raw/", 1)[-1]
        cube["input"] = str(raw / rel)
    catalog = SPEC.parents[1] / "stores" / "catalog.tsv"
    if catalog.parent.is_dir():  # a checkout: keep its stores/ catalog current
        spec["catalog"] = str(catalog)
    path = out / "demo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_demo(
    outdir: str | os.PathLike = "demo_out",
    scale: float = 0.01,
    seed: int = 0,
    pipeline: bool = False,
    workers: int = 2,
) -> Path:
    """Synthesize, ingest every subject and monkey, print what the stores hold.

    With ``pipeline=True`` also run ``pipelines/demo.yaml`` (analyses, figures,
    report) into ``outdir/run``. Returns the folder of the stores.
    """
    out = Path(outdir)
    if out.exists():
        shutil.rmtree(out)
    raw, stores = out / "raw", out / "stores"
    stores.mkdir(parents=True)
    t0 = time.perf_counter()
    _run("synth", str(raw), "--scale", str(scale), "--seed", str(seed))
    tables = raw / "things"
    labels = [
        "--memorability",
        str(tables / "THINGS_Memorability_Scores.csv"),
        "--concepts",
        str(tables / "Concept_to_category_linking.csv"),
    ]
    fmri = raw / "things-fmri" / "betas_csv"
    for sub in ("sub-01", "sub-02", "sub-03"):
        _run(
            "ingest",
            "things-fmri",
            "--input",
            str(fmri),
            "--subject",
            sub,
            *labels,
            "--out",
            str(stores / f"things-fmri_{sub}.zarr"),
            "--no-progress",
        )
    for monkey in ("N", "F"):
        mdir = raw / "tvsd" / f"monkey{monkey}"
        _run(
            "ingest",
            "tvsd",
            "--input",
            str(mdir),
            "--monkey",
            monkey,
            *labels,
            "--out",
            str(stores / f"tvsd_monkey{monkey}_normmua.zarr"),
            "--no-progress",
        )
        _run(
            "ingest",
            "tvsd",
            "--input",
            str(mdir),
            "--monkey",
            monkey,
            "--trials",
            *labels,
            "--out",
            str(stores / f"tvsd_monkey{monkey}_trials.zarr"),
            "--no-progress",
        )
    for store in sorted(stores.glob("*.zarr")):
        _run("validate", str(store))
    _run("info", str(stores / "things-fmri_sub-01.zarr"))
    _run("info", str(stores / "tvsd_monkeyN_trials.zarr"))
    if pipeline:
        _run("run", str(_spec_for(out)), "--out", str(out / "run"), "--workers", str(workers))
        report = (out / "run" / "report.html").resolve()
        print(f"\nreport: {report}")
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s; stores in {stores}")
    return stores


if __name__ == "__main__":
    run_demo(os.environ.get("MEMXR_DEMO_DIR", "demo_out"), pipeline=True)
    sys.exit(0)
