"""The demo behind ``make demo``: synthetic raw files -> Zarr cubes -> pipeline -> report.

Runs the same commands a user types, in-process, on a synthetic data set written in
the real formats: ``memxr synth``, ``memxr ingest`` of every subject and monkey
(monkey N's time-resolved trials included), ``memxr validate`` and ``memxr info``,
then ``memxr run`` of the demo spec on a 2-worker LocalCluster, which writes result
stores, tables, figures and one HTML report. The spec ships with the package
(``memxr/pipeline/demo.yaml``) and is copied to ``OUT/demo.yaml``, so ``python -m
memxr.demo`` runs from any folder, installed or from a checkout. The output folder is
``$MEMXR_DEMO_DIR`` (default ``demo_out``); it is rebuilt from scratch on each run.

``memxr synth`` also writes ``raw/covariates.csv`` (per image: the low-level covariate
``low_level`` that drives V1 and V4 and reaches memorability through them, and truth
columns); the demo spec passes it as ``inputs.covariates`` with ``columns: [low_level]``
(never the true memorability), so the run's correlations add partial correlations
controlling for it, next to within-concept correlations, random-effects rows over the 3
subjects and the 2 monkeys, ROI comparisons (IT > V4 > V1 as two tested steps), onset and
peak latencies of monkey N's areas and a variance partition (see
:mod:`memxr.pipeline.analyses`).

Sizes and power
---------------
The planted effects have real sizes (:mod:`memxr.synth.model`): TVSD IT 0.10, V4 0.07,
V1 0.01; fMRI FFA 0.20, IT 0.20, PPA and LOC 0.15, EBA 0.10, V1 0.01. Showing IT > V4 >
V1 and the fMRI ordering needs thousands of images; the demo (:data:`DEMO_SIZES`) has
2,880 train images per fMRI subject (1,000 voxels, 100 test images x 12 sessions) and
4,800 per monkey (100 test images x 10 repeats over 10 days, 20-ms bins). Standard
errors from a concept-grouped bootstrap of 18,000 images (the generator's own data)
scaled to these sizes give, for one monkey: P(r_IT > r_V4) = 0.95, P(r_V4 > r_V1) >
0.999, power 1.00 for IT and 0.98 for V4, and P(V1 significant) = 0.09 (its planted
0.01 is not zero); for one subject: P(FFA > PPA, FFA > LOC, PPA > EBA, LOC > EBA, EBA >
V1) > 0.99, power 0.99+ for EBA (0.10), P(V1 significant) = 0.07. Four times fewer
images would leave P(IT > V4) at 0.86 and V4's power at 0.78; four times more would
take the run past a few minutes. With the default seed every comparison comes out as
planted. The tested differences (``tables/comparisons.csv``, concept jackknife) are
weaker than these orderings of point estimates: with the default seed V4 > V1 and IT > V1
are significant in both monkeys and FFA > PPA in every subject, but IT > V4 is not (diff
0.01-0.03), so the report calls "IT > V4 > V1" not supported at the demo's sizes.
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

__all__ = ["DEMO_SCALE", "DEMO_SIZES", "run_demo"]


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


DEMO_SCALE = 0.01
DEMO_SIZES = {
    "n_fmri_concepts": 360,
    "n_fmri_test": 100,
    "n_sessions": 12,
    "n_voxels": 1000,
    "n_tvsd_concepts": 400,
    "n_tvsd_test": 100,
    "n_reps": 10,
    "n_days": 10,
    "n_timebins": 15,
}
"""Size overrides of ``memxr synth --scale 0.01`` for the demo (see the module notes)."""


def run_demo(
    outdir: str | os.PathLike = "demo_out",
    scale: float = DEMO_SCALE,
    seed: int = 0,
    pipeline: bool = False,
    workers: int = 2,
    sizes: dict[str, int] | None = None,
    effect_scale: float = 1.0,
) -> Path:
    """Synthesize, ingest every subject and monkey, print what the stores hold.

    With ``pipeline=True`` also run the demo spec (analyses, figures, report) into
    ``outdir/run``. ``sizes`` overrides sizes of ``scale`` (default :data:`DEMO_SIZES`;
    ``{}`` for the plain sizes of ``scale``), ``effect_scale`` multiplies the planted
    effects. Returns the folder of the stores.
    """
    out = Path(outdir)
    if out.exists():
        shutil.rmtree(out)
    raw, stores = out / "raw", out / "stores"
    stores.mkdir(parents=True)
    t0 = time.perf_counter()
    sizes = DEMO_SIZES if sizes is None else sizes
    extra = [arg for k, v in sizes.items() for arg in ("--size", f"{k}={v}")]
    if effect_scale != 1.0:
        extra += ["--effect-scale", str(effect_scale)]
    _run("synth", str(raw), "--scale", str(scale), "--seed", str(seed), *extra)
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
        if monkey == "N":  # the spec analyses monkey N's time-resolved trials
            _run(
                "ingest",
                "tvsd",
                "--input",
                str(mdir),
                "--monkey",
                monkey,
                "--trials",
                "--float32",
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
        if not (raw / "covariates.csv").is_file():  # the demo spec's inputs.covariates
            raise SystemExit(f"demo: memxr synth wrote no {raw / 'covariates.csv'}")
        _run("run", str(_spec_for(out)), "--out", str(out / "run"), "--workers", str(workers))
        report = (out / "run" / "report.html").resolve()
        print(f"\nreport: {report}")
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s; stores in {stores}")
    return stores


if __name__ == "__main__":
    run_demo(os.environ.get("MEMXR_DEMO_DIR", "demo_out"), pipeline=True)
    sys.exit(0)
