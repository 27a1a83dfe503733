"""The ``memxr`` command: synth, ingest, info, validate, export, run, clean.

Every command exits 0 only on success; bad input (also a store with bad chunks)
prints one line naming the file and the field to stderr and exits 2, leaving no
store behind. An output that another writer is writing (another ``memxr ingest``,
``export`` or ``run`` on the same ``--out``) is refused with one line naming the
holder (host, pid, since), exit 75 (``EX_TEMPFAIL``: try again later), and is
left untouched.

Examples
--------
>>> main(["--version"])  # doctest: +SKIP
memxr 0.1.0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError
from .provenance import __version__

__all__ = ["build_parser", "main"]

EXIT_BAD_INPUT = 2
EXIT_BUSY = 75


def _place(text: str) -> Path | str:
    """A command-line output: a local path, or a URL kept as text (``s3://bucket/c.zarr``)."""
    return text if "://" in text else Path(text)


def _add_label_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memorability", type=Path, help="THINGS_Memorability_Scores.csv (optional)")
    p.add_argument("--concepts", type=Path, help="Concept_to_category_linking.csv (optional)")
    p.add_argument(
        "--out", type=_place, required=True, help="output Zarr store (path or s3:// URL)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--zarr-format", type=int, choices=(2, 3), default=3)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _size_arg(text: str) -> tuple[str, int | float]:
    """``KEY=N`` of ``memxr synth --size`` (N an int, or a float for ``bin_ms``)."""
    key, sep, value = text.partition("=")
    try:
        number = float(value) if key == "bin_ms" else int(value)
    except ValueError:
        number = None
    if not sep or not key or number is None:
        raise argparse.ArgumentTypeError(f"expected KEY=N (e.g. n_voxels=2000), got {text!r}")
    return key, number


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``memxr`` command."""
    parser = argparse.ArgumentParser(
        prog="memxr", description="Labeled Zarr cubes of visual-cortex recordings and memorability."
    )
    parser.add_argument("--version", action="version", version=f"memxr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic raw files in the real formats")
    p.add_argument("outdir", type=Path)
    p.add_argument("--scale", type=float, default=0.001, help="1.0 = the real sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--things-dir", type=Path, help="folder with the real THINGS tables")
    p.add_argument("--no-trials", action="store_true", help="skip the TVSD time-resolved files")
    p.add_argument(
        "--effect-scale",
        type=float,
        default=1.0,
        help="multiply every planted effect (1 = real sizes; e.g. 3 for quick looks)",
    )
    p.add_argument(
        "--size",
        action="append",
        default=[],
        type=_size_arg,
        metavar="KEY=N",
        help="override one size of --scale (e.g. n_voxels=2000, n_timebins=15); repeatable",
    )

    p = sub.add_parser("ingest", help="raw files -> validated Zarr cube")
    isub = p.add_subparsers(dest="source", required=True)
    f = isub.add_parser("things-fmri", help="THINGS-fMRI betas_csv (one subject)")
    f.add_argument("--input", type=Path, required=True, help="folder with sub-XX_* files")
    f.add_argument("--subject", required=True, help="e.g. sub-01")
    _add_label_args(f)
    t = isub.add_parser("tvsd", help="TVSD normMUA or time-resolved trials (one monkey)")
    t.add_argument("--input", type=Path, required=True, help="the monkey's folder")
    t.add_argument("--monkey", required=True, help="N or F")
    t.add_argument("--trials", action="store_true", help="THINGS_MUA_trials.mat (time-resolved)")
    t.add_argument("--float32", action="store_true", help="store trials as float32")
    _add_label_args(t)

    p = sub.add_parser("info", help="dims, sizes, chunks, ROIs, provenance of a store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("validate", help="check a store against the cube schema (and its chunks)")
    p.add_argument("store")
    p.add_argument(
        "--deep",
        action="store_true",
        help="read every chunk and check its size and checksum (on the Dask client if any)",
    )
    p.add_argument(
        "--inputs",
        type=Path,
        action="append",
        metavar="DIR",
        help="with --deep: folder of the raw files, compared with their recorded SHA-256 "
        "(repeat for files in several folders)",
    )

    p = sub.add_parser(
        "clean", help="remove partials and locks left by killed writes of a store or run folder"
    )
    p.add_argument("output", type=_place, help="store, file or run folder (or s3:// URL)")

    p = sub.add_parser("export", help="copy a store as a netCDF-4 file or a Zarr format 2 store")
    p.add_argument("store", help="store path or fsspec URL")
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--netcdf", type=_place, help="netCDF-4 file to write (CF-style)")
    dest.add_argument("--zarr", type=_place, help="Zarr store to write (path or s3:// URL)")
    p.add_argument("--engine", choices=("netcdf4", "h5netcdf"), help="netCDF writer (netcdf4)")
    p.add_argument("--zarr-format", type=int, choices=(2, 3), help="format of --zarr (2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file or store")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("run", help="run a pipeline spec (YAML) on a Dask cluster")
    p.add_argument("spec", type=Path, help="pipeline spec, e.g. pipelines/things_fmri.yaml")
    p.add_argument("--scheduler", help="address (tcp://HOST:PORT) or file of a running scheduler")
    p.add_argument(
        "--cluster",
        choices=("local", "slurm"),
        default="local",
        help="cluster to start when no --scheduler is given (default local)",
    )
    p.add_argument("--workers", type=int, help="workers of the started cluster (default 2)")
    p.add_argument(
        "--out", type=_place, help="output folder, local (default runs/<spec name>)"
    )
    p.add_argument(
        "--stores",
        type=_place,
        help="where the cube stores the run ingests go: a folder or an s3:// URL prefix "
        "(default OUT/stores)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a line of the running step's tasks (done/total, elapsed, ETA) to stderr every"
        " --progress-interval seconds (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds between two progress lines (default 30)",
    )
    return parser


def _ingest(args: argparse.Namespace) -> int:
    from .pipeline import ingest
    from .store.atomic import published

    out = args.out
    if not args.overwrite and published(out):
        raise InputError(out, "--out", "exists; pass --overwrite to replace it")
    if args.source == "things-fmri":
        kind, recording, options = "things-fmri", args.subject, {}
    else:
        kind = "tvsd-trials" if args.trials else "tvsd"
        recording = args.monkey
        options = {"dtype": "float32"} if (args.trials and args.float32) else {}
    path = ingest(
        kind,
        args.input,
        recording,
        out,
        memorability=args.memorability,
        concepts=args.concepts,
        overwrite=args.overwrite,
        zarr_format=args.zarr_format,
        progress=not args.no_progress,
        **options,
    )
    print(f"wrote {path}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .synth.generator import REAL_SIZES, synthesize

    sizes = dict(args.size)
    unknown = sorted(set(sizes) - set(REAL_SIZES))
    if unknown:
        raise InputError(args.outdir, "--size", f"unknown keys {unknown}; known: {sorted(REAL_SIZES)}")
    try:
        truth = synthesize(
            args.outdir,
            scale=args.scale,
            seed=args.seed,
            things_dir=args.things_dir,
            trials=not args.no_trials,
            effect_scale=args.effect_scale,
            **sizes,
        )
    except ValueError as e:  # sizes or planted effects that cannot be written
        raise InputError(args.outdir, "synth", str(e)) from None
    print(f"wrote synthetic raw files to {args.outdir} (seed {truth.get('seed', args.seed)})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .store import format_info, store_info
    from .store.atomic import LOCKS
    from .store.info import format_leftovers, leftover_info
    from .store.layout import local_place, protocol

    try:
        info = store_info(args.store)
    except InputError:
        mine = protocol(args.store) in LOCKS  # local, or an object store memxr writes to
        left = leftover_info(local_place(args.store)) if mine else []
        if left:  # no store, but what a killed or running write left beside it
            print(json.dumps(left, indent=1) if args.json else "\n".join(format_leftovers(left)))
        raise
    print(json.dumps(info, indent=1, default=str) if args.json else format_info(info))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .store import validate_store

    if args.inputs and not args.deep:
        raise InputError(args.inputs[0], "--inputs", "applies to --deep only")
    report = validate_store(args.store, deep=args.deep, inputs=args.inputs)
    for line in report.problems:
        print(line, file=sys.stderr)
    if not report.ok:
        n = len(report.problems)
        raise InputError(args.store, "validate", f"{n} problem{'s' * (n > 1)} (listed above)")
    print("\n".join(report.summary()))
    return 0


def _clean(args: argparse.Namespace) -> int:
    from .store.atomic import clean

    removed = clean(args.output)
    for p in removed:
        print(f"removed {p}")
    n = len(removed)
    print(f"{args.output}: {f'{n} leftovers of killed writes removed' if n else 'nothing to remove'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .store.export import export_netcdf, export_zarr

    if args.netcdf is not None:
        if args.zarr_format is not None:
            raise InputError(args.netcdf, "--zarr-format", "applies to --zarr only")
        path = export_netcdf(
            args.store,
            args.netcdf,
            engine=args.engine or "netcdf4",
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    else:
        if args.engine is not None:
            raise InputError(args.zarr, "--engine", "applies to --netcdf only")
        path = export_zarr(
            args.store,
            args.zarr,
            zarr_format=args.zarr_format or 2,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    print(f"wrote {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .pipeline import run

    if args.workers is not None and args.workers < 1:
        raise InputError(args.spec, "--workers", f"must be at least 1, got {args.workers}")
    if not args.progress_interval > 0:
        raise InputError(
            args.spec, "--progress-interval", f"must be > 0, got {args.progress_interval:g}"
        )
    run(
        args.spec,
        out=args.out,
        scheduler=args.scheduler,
        cluster=args.cluster,
        workers=args.workers,
        stores=args.stores,
        progress=args.progress,
        progress_interval=args.progress_interval,
    )
    return 0


def _subject(args: argparse.Namespace) -> str:
    """The store (or output) a command was given, by its name, for a one-line error."""
    for key in ("store", "out", "output", "zarr", "spec"):
        value = getattr(args, key, None)
        if value is not None:
            return str(value).rstrip("/").rsplit("/", 1)[-1]
    return args.command


COMMANDS = {
    "synth": _synth,
    "ingest": _ingest,
    "info": _info,
    "validate": _validate,
    "export": _export,
    "run": _run,
    "clean": _clean,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``memxr`` command; returns the exit code (0 only on success)."""
    from .reduce import UnknownROIError
    from .schema import SchemaError
    from .store.atomic import OutputLockedError
    from .store.layout import remote_errors

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except OutputLockedError as e:
        print(f"memxr: error: {e}", file=sys.stderr)
        return EXIT_BUSY
    except remote_errors() as e:  # credentials or requests refused, no connection
        what = " ".join(str(e).split())[:300]
        print(f"memxr: error: {_subject(args)}: store: cannot be reached: {what}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (InputError, SchemaError, UnknownROIError, FileNotFoundError) as e:
        msg = str(e).splitlines()
        print(f"memxr: error: {msg[0] if len(msg) == 1 else '; '.join(msg)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `memxr info STORE | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("memxr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
