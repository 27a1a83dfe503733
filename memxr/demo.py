"""The demo behind ``make demo``: synthetic raw files -> Zarr cubes -> pipeline -> report.

Runs the same commands a user types, in-process, on a small synthetic data
set written in the real formats: ``memxr synth``, ``memxr ingest`` of every
subject and monkey (time-resolved trials included), ``memxr validate`` and
``memxr info``, then ``memxr run`` of the demo spec on a 2-worker LocalCluster,
which writes result stores, tables, figures and one HTML report. The spec ships with
the package (``memxr/pipeline/demo.yaml``) and is copied to ``OUT/demo.yaml``, so
``python -m memxr.demo`` runs from any folder, installed or from a checkout.
The output folder is ``$MEMXR_DEMO_DIR`` (default ``demo_out``); it is rebuilt
from scratch on each run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from importlib.resources import files
from pathlib import Path

from .cli import main as memxr

__all__ = ["run_demo"]


def _run(*argv: str) -> None:
    print("$ memxr " + " ".join(argv), flush=True)
    code = memxr(list(argv))
    if code != 0:
        raise SystemExit(f"demo step failed (exit {code}): memxr {' '.join(argv)}")


def _checkout_catalog() -> Path | None:
    """``stores/catalog.tsv`` of the source checkout memxr runs from, if it does."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file() and (repo / "stores").is_dir():
        return repo / "stores" / "catalog.tsv"
    return None


def _spec_for(out: Path) -> Path:
    """The packaged demo spec, written to ``out/demo.yaml`` (its paths are relative to ``out``)."""
    text = files("memxr.pipeline").joinpath("demo.yaml").read_text(encoding="utf-8")
    catalog = _checkout_catalog()
    if catalog is not None:  # a checkout: keep its stores/ catalog current
        text += f"\n# the catalog of the checkout's stores/\ncatalog: {json.dumps(str(catalog))}\n"
    path = out / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_demo(
    outdir: str | os.PathLike = "demo_out",
    scale: float = 0.01,
    seed: int = 0,
    pipeline: bool = False,
    workers: int = 2,
) -> Path:
    """Synthesize, ingest every subject and monkey, print what the stores hold.

    With ``pipeline=True`` also run the demo spec (analyses, figures, report) into
    ``outdir/run``. Returns the folder of the stores.
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
