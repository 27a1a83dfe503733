"""The shipped pipelines on real-size inputs: time, CPU and peak memory per step, and workers.

Runs ``memxr run SPEC --out DIR --workers N --progress`` for each shipped spec
(``pipelines/things_fmri.yaml``, ``tvsd.yaml``, ``cross_species.yaml``) on real-size
synthetic raw files, each run in a fresh output folder, and prints per step:

- wall time (from the run's own ``[i/n] run`` / ``done`` lines, as they arrive);
- CPU time (user + system) of the client process and of every Dask worker process,
  sampled with psutil every ``--sample`` seconds (the machine may be shared: the CPU time
  is the steadier measure; the CPU the rest of the machine used meanwhile is printed too);
- peak RSS of the client process and of each worker process (psutil sampling of the
  process tree of ``memxr run``: the client, its nanny-spawned workers).

Inputs: ``--data DIR`` holds raw files laid out as the specs expect (``things/``,
``things-fmri/betas_csv/``, ``tvsd/monkeyN|F/``); without it, the script writes them with
:func:`memxr.synth.synthesize` at ``scale=1.0`` into ``--workdir`` (one 8.3 GB fMRI subject
per ``--fmri-subjects``, the normMUA of both monkeys, no trials files unless
``--tvsd-trials``). Each spec is copied to a temporary spec whose inputs point there
(absolute paths; the catalog goes to the run folder, not to the repository's).

What does not fit is measured on a fraction and extrapolated, and says so:

- ``--fmri-subjects K`` (default 1): only sub-01..sub-0K of the 3 subjects; the per-cube
  steps of the missing subjects are the mean of the measured ones, the analysis steps
  (correlations, models, bridge) scale linearly with the cubes (pairs for the bridge);
- TVSD ``THINGS_MUA_trials.mat`` (58 GB of float64 per monkey at real size) is used where
  present in ``--data``; where absent, the ``tvsd-trials`` cubes and the ``timecourse``
  step are left out of the run and reported as not measured
  (``benchmarks/bench_ingest.py`` times a trials ingest);
- ``--set analyses.correlation.n_permutations=100`` (repeatable) reduces a knob of every
  run; the table prints the knobs changed and does not extrapolate them.

``--scaling SPEC`` (default ``tvsd``) runs that spec with 1 worker as well and prints the
speed-up from 1 to ``--workers`` workers per step. ``cross_species`` reuses the fMRI stores
an earlier ``things_fmri`` run of this script ingested (``kind: store``: its table has no
fMRI ingest steps; the ``things_fmri`` table has them) unless ``--no-reuse``.

Usage::

    python benchmarks/bench_pipelines.py [--data DIR] [--workdir DIR]
        [--specs things_fmri,tvsd,cross_species] [--workers 2] [--scaling tvsd]
        [--fmri-subjects 1] [--set KEY=VALUE] [--keep]

Takes about an hour on 2 cores with one fMRI subject (the ingest reads 8.3 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

HERE = Path(__file__).resolve().parent
PIPELINES = HERE.parent / "pipelines"
SPECS = ("things_fmri", "tvsd", "cross_species")
FULL_SUBJECTS = ("sub-01", "sub-02", "sub-03")
STEP_LINE = re.compile(r"^\[\s*\d+/\s*\d+\] (run|done|skip)\s+(\S+)")
PER_CUBE = ("ingest", "magnitudes")
NOISE = re.compile(r"% Completed|\d+%\|")


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (from /proc/stat; 0 where missing)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:8]]
    except OSError:
        return 0.0
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- inputs


def _make_data(workdir: Path, n_subjects: int, trials: bool) -> Path:
    """Real-size raw files (``memxr synth --scale 1.0``), only the subjects asked for."""
    from memxr.synth import synthesize

    data = workdir / "data"
    if (data / "truth.json").exists():
        print(f"using the synthetic data already in {data}")
        return data
    t0 = time.perf_counter()
    synthesize(data, scale=1.0, subjects=FULL_SUBJECTS[:n_subjects], trials=trials)
    print(f"wrote real-size synthetic inputs to {data} in {time.perf_counter() - t0:.0f} s")
    return data


def _set(spec: dict, key: str, value: str) -> None:
    """``spec[a][b][c] = value`` for ``key`` ``a.b.c`` (value parsed as YAML)."""
    *path, last = key.split(".")
    node = spec
    for part in path:
        node = node.setdefault(part, {})
    node[last] = yaml.safe_load(value)


def write_spec(name: str, data: Path, out: Path, n_subjects: int, overrides: list[str],
               stores: dict[str, Path]) -> tuple[Path, list[str]]:
    """A copy of ``pipelines/NAME.yaml`` reading ``data``; returns it and what was changed."""
    spec = yaml.safe_load((PIPELINES / f"{name}.yaml").read_text())
    notes = []
    inputs = spec["inputs"]
    for key in ("memorability", "concepts"):
        inputs[key] = str(data / inputs[key].removeprefix("data/"))
    keep = []
    for cube in inputs["cubes"]:
        path = data / cube["input"].removeprefix("data/")
        if cube["kind"] == "things-fmri" and cube["subject"] not in FULL_SUBJECTS[:n_subjects]:
            continue
        if cube["kind"] == "tvsd-trials" and not (path / "THINGS_MUA_trials.mat").exists():
            notes.append(f"left out {cube['name']} (no THINGS_MUA_trials.mat in {path})")
            continue
        if cube["name"] in stores:
            cube = {"name": cube["name"], "kind": "store", "input": str(stores[cube["name"]])}
            notes.append(f"{cube['name']}: the store of the things_fmri run (not ingested)")
        else:
            cube["input"] = str(path)
        keep.append(cube)
    dropped = len(inputs["cubes"]) - len(keep)
    inputs["cubes"] = keep
    names = {c["name"] for c in keep}
    bridge = spec.get("analyses", {}).get("bridge")
    if bridge:
        bridge["pairs"] = [p for p in bridge["pairs"] if set(p) <= names]
    if dropped and not any(c["kind"] == "tvsd-trials" for c in keep):
        spec.get("analyses", {}).pop("timecourse", None)
    spec["catalog"] = str(out / "catalog.tsv")
    for item in overrides:
        key, _, value = item.partition("=")
        _set(spec, key, value)
        notes.append(f"reduced knob: {key} = {value}")
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, notes


# ---------------------------------------------------------------------------- measuring


class Sampler(threading.Thread):
    """psutil samples of the process tree of ``memxr run``: RSS peaks and CPU times."""

    def __init__(self, root: int, interval: float):
        super().__init__(daemon=True)
        self.root, self.interval = psutil.Process(root), interval
        self.step = "(start)"
        self.cpu: dict[int, float] = {}  # last CPU seconds seen, by pid
        self.role: dict[int, str] = {}  # pid -> "client" | "worker-i" | "other"
        self.peak: dict[tuple[str, str], float] = {}  # (step, role) -> MB
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _role(self, p: psutil.Process) -> str:
        if p.pid not in self.role:
            if p.pid == self.root.pid:
                role = "client"
            else:
                try:
                    cmd = " ".join(p.cmdline())
                except psutil.Error:
                    cmd = ""
                n = sum(r.startswith("worker") for r in self.role.values())
                role = f"worker-{n + 1}" if "spawn_main" in cmd or "forkserver" in cmd else "other"
            self.role[p.pid] = role
        return self.role[p.pid]

    def sample(self) -> None:
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            return
        with self.lock:
            for p in procs:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        rss = p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                role = self._role(p)
                # own time only: a child's time also shows in its parent's children_* once
                # it is reaped (the workers at the end), and every child is sampled itself
                self.cpu[p.pid] = t.user + t.system
                key = (self.step, role)
                self.peak[key] = max(self.peak.get(key, 0.0), rss)

    def cpu_now(self) -> dict[str, float]:
        """CPU seconds so far, by role (workers together and the client)."""
        self.sample()
        with self.lock:
            out = {"client": 0.0, "workers": 0.0}
            for pid, sec in self.cpu.items():
                role = self.role[pid]
                if role == "client":
                    out["client"] += sec
                elif role.startswith("worker"):
                    out["workers"] += sec
            return out

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()


def run_spec(spec: Path, out: Path, workers: int, interval: float, log: Path) -> dict:
    """``memxr run SPEC --out OUT --workers N``, measured; the steps in order."""
    cmd = [sys.executable, "-m", "memxr.cli", "run", str(spec), "--out", str(out),
           "--workers", str(workers), "--progress", "--progress-interval", "60"]
    busy0, t0 = _busy_seconds(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, cwd=HERE.parent)
    sampler = Sampler(proc.pid, interval)
    sampler.start()
    steps: dict[str, dict] = {}
    open_step = None
    mark = (t0, sampler.cpu_now())
    with open(log, "w") as logf:
        for line in proc.stdout:
            logf.write(line)
            logf.flush()
            if line.strip() and not NOISE.search(line):  # bars: in the log only
                print("    | " + line.rstrip(), flush=True)
            m = STEP_LINE.match(line.strip())
            if not m:
                continue
            what, name = m.groups()
            now, cpu = time.perf_counter(), sampler.cpu_now()
            if what == "run":
                with sampler.lock:
                    sampler.step = name
                open_step, mark = name, (now, cpu)
            elif what == "done" and name == open_step:
                steps[name] = {
                    "wall": now - mark[0],
                    "cpu_client": cpu["client"] - mark[1]["client"],
                    "cpu_workers": cpu["workers"] - mark[1]["workers"],
                }
                with sampler.lock:
                    sampler.step = "(between)"
                open_step = None
    code = proc.wait()
    sampler.stop.set()
    wall = time.perf_counter() - t0
    others = max(0.0, _busy_seconds() - busy0)
    for name, rec in steps.items():
        rec["peak"] = {r: mb for (s, r), mb in sampler.peak.items() if s == name}
    peaks: dict[str, float] = {}
    for (_, role), mb in sampler.peak.items():
        peaks[role] = max(peaks.get(role, 0.0), mb)
    cpu_total = sum(sampler.cpu.values())
    return {"code": code, "steps": steps, "failed_step": open_step, "wall": wall,
            "cpu": cpu_total, "others_cpu": max(0.0, others - cpu_total), "peak": peaks,
            "workers": workers, "log": str(log)}


# ---------------------------------------------------------------------------- printing


def _workers_peak(peak: dict[str, float]) -> str:
    w = [f"{peak[k]:.0f}" for k in sorted(peak) if k.startswith("worker")]
    return "/".join(w) if w else "-"


def print_run(title: str, r: dict, notes: list[str]) -> None:
    print(f"\n== {title}: {r['workers']} worker(s), exit {r['code']}  (log {r['log']})")
    for n in notes:
        print(f"   {n}")
    print(f"   {'step':28s} {'wall s':>9s} {'CPU s':>9s} {'(client':>8s} {'workers)':>9s}"
          f" {'client MB':>10s}  worker peak MB")
    for name, s in r["steps"].items():
        print(f"   {name:28s} {s['wall']:9.1f} {s['cpu_client'] + s['cpu_workers']:9.1f}"
              f" {s['cpu_client']:8.1f} {s['cpu_workers']:9.1f}"
              f" {s['peak'].get('client', 0):10.0f}  {_workers_peak(s['peak'])}")
    if r["failed_step"]:
        print(f"   FAILED in step {r['failed_step']} (see the log)")
    print(f"   {'total (whole run)':28s} {r['wall']:9.1f} {r['cpu']:9.1f} {'':8s} {'':9s}"
          f" {r['peak'].get('client', 0):10.0f}  {_workers_peak(r['peak'])}")
    print(f"   CPU of the rest of the machine meanwhile: {r['others_cpu']:.0f} s "
          f"({r['others_cpu'] / max(r['wall'], 1e-9):.2f} cores)")


def _kind_of(step: str, kinds: dict[str, str]) -> str | None:
    head, _, cube = step.partition(":")
    return kinds.get(cube) if head in PER_CUBE else None


def extrapolate(title: str, r: dict, kinds: dict[str, str], full: dict[str, int],
                measured: dict[str, int], ratio: float, full_pairs: int, pairs: int) -> None:
    """Per-cube steps: the mean of the measured cubes of a kind, times the full count;
    analysis steps: linear in the cubes (the bridge: in the pairs)."""
    if ratio == 1 and full_pairs == pairs and all(
            measured.get(k, 0) == n for k, n in full.items()
    ):
        return
    by_kind: dict[tuple[str, str], list[dict]] = {}
    total_wall = total_cpu = 0.0
    rows = []
    for name, s in r["steps"].items():
        kind = _kind_of(name, kinds)
        if kind is not None:
            by_kind.setdefault((name.partition(":")[0], kind), []).append(s)
            continue
        f = (full_pairs / max(1, pairs)) if name == "bridge" else (
            ratio if name in ("correlations", "models", "timecourse") else 1.0)
        rows.append((name, s["wall"] * f, (s["cpu_client"] + s["cpu_workers"]) * f, f"x{f:.2f}"))
    for (head, kind), recs in by_kind.items():
        n = full.get(kind, len(recs))
        wall = sum(x["wall"] for x in recs) / len(recs) * n
        cpu = sum(x["cpu_client"] + x["cpu_workers"] for x in recs) / len(recs) * n
        rows.insert(0, (f"{head}: {n} {kind} cubes", wall, cpu, f"mean of {len(recs)} x {n}"))
    print(f"\n== {title}: EXTRAPOLATED to the full spec "
          f"({', '.join(f'{n} {k}' for k, n in full.items())} cubes; measured "
          f"{', '.join(f'{measured.get(k, 0)} {k}' for k in full)})")
    print("   per-cube steps: mean of the measured cubes x the full count; correlations, "
          "models, timecourse: x cubes ratio; bridge: x pairs ratio; the rest as measured")
    print(f"   {'step':32s} {'wall s':>9s} {'CPU s':>9s}  how")
    for name, wall, cpu, how in rows:
        print(f"   {name:32s} {wall:9.0f} {cpu:9.0f}  {how}")
        total_wall += wall
        total_cpu += cpu
    print(f"   {'total (extrapolated)':32s} {total_wall:9.0f} {total_cpu:9.0f}"
          f"  = {total_wall / 60:.0f} min wall with {r['workers']} workers")


def print_scaling(name: str, runs: dict[int, dict]) -> None:
    ns = sorted(runs)
    if len(ns) < 2:
        return
    a, b = runs[ns[0]], runs[ns[-1]]
    print(f"\n== {name}: {ns[0]} vs {ns[-1]} workers (wall s, speed-up = wall {ns[0]} / "
          f"wall {ns[-1]}; CPU s)")
    print(f"   {'step':28s} {'wall ' + str(ns[0]):>9s} {'wall ' + str(ns[-1]):>9s} "
          f"{'speed-up':>9s} {'CPU ' + str(ns[0]):>9s} {'CPU ' + str(ns[-1]):>9s}")
    for step in a["steps"]:
        if step not in b["steps"]:
            continue
        sa, sb = a["steps"][step], b["steps"][step]
        ca, cb = (sa["cpu_client"] + sa["cpu_workers"]), (sb["cpu_client"] + sb["cpu_workers"])
        print(f"   {step:28s} {sa['wall']:9.1f} {sb['wall']:9.1f} "
              f"{sa['wall'] / max(sb['wall'], 1e-9):9.2f} {ca:9.1f} {cb:9.1f}")
    print(f"   {'total':28s} {a['wall']:9.1f} {b['wall']:9.1f} "
          f"{a['wall'] / max(b['wall'], 1e-9):9.2f} {a['cpu']:9.1f} {b['cpu']:9.1f}")


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="raw inputs (default: synthesize into --workdir)")
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "memxr-bench-pipelines")
    ap.add_argument("--specs", default=",".join(SPECS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scaling", default="tvsd",
                    help="spec(s) also run with 1 worker (comma-separated; '' for none)")
    ap.add_argument("--fmri-subjects", type=int, default=1, choices=(1, 2, 3))
    ap.add_argument("--tvsd-trials", action="store_true",
                    help="synthesize the TVSD trials files too (58 GB per monkey at scale 1)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change a spec value in every run, e.g. "
                         "analyses.correlation.n_permutations=100")
    ap.add_argument("--no-reuse", action="store_true",
                    help="cross_species ingests its fMRI cubes itself")
    ap.add_argument("--sample", type=float, default=0.2, help="seconds between psutil samples")
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    args = ap.parse_args(argv)
    specs = [s for s in args.specs.split(",") if s]
    scaling = {s for s in args.scaling.split(",") if s}
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.data or _make_data(args.workdir, args.fmri_subjects, args.tvsd_trials)
    data = data.resolve()
    present = [s for s in FULL_SUBJECTS
               if (data / "things-fmri/betas_csv" / f"{s}_ResponseData.h5").exists()]
    n_sub = min(args.fmri_subjects, len(present))
    print(f"inputs: {data}; fMRI subjects used {n_sub} of 3; workers {args.workers}; "
          f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB")
    stores: dict[str, Path] = {}
    results = []
    try:
        for name in specs:
            counts = sorted({args.workers} | ({1} if name in scaling else set()), reverse=True)
            runs = {}
            for n in counts:
                out = args.workdir / f"{name}-w{n}"
                shutil.rmtree(out, ignore_errors=True)
                reuse = {} if (args.no_reuse or name != "cross_species") else stores
                spec, notes = write_spec(name, data, out, n_sub, args.set, reuse)
                print(f"\n-- memxr run {spec} --out {out} --workers {n}", flush=True)
                r = run_spec(spec, out, n, args.sample, args.workdir / f"{name}-w{n}.log")
                runs[n] = r
                print_run(f"{name}", r, notes)
                used = yaml.safe_load(spec.read_text())
                shipped = yaml.safe_load((PIPELINES / f"{name}.yaml").read_text())
                kind_of = {c["name"]: c["kind"] for c in shipped["inputs"]["cubes"]}
                kinds = {c["name"]: kind_of[c["name"]] for c in used["inputs"]["cubes"]}
                full: dict[str, int] = {}
                for c in shipped["inputs"]["cubes"]:
                    full[c["kind"]] = full.get(c["kind"], 0) + 1
                measured: dict[str, int] = {}
                for c in shipped["inputs"]["cubes"]:
                    if c["name"] in kinds:
                        measured[c["kind"]] = measured.get(c["kind"], 0) + 1
                for k in [k for k in full if not measured.get(k)]:
                    notes_x = f"not measured, not extrapolated: {full.pop(k)} {k} cubes"
                    print(f"   {notes_x} (their steps and their share of the analyses)")
                ratio = sum(full.values()) / max(1, sum(measured.values()))
                bridge = (shipped.get("analyses") or {}).get("bridge") or {}
                used_bridge = (used.get("analyses") or {}).get("bridge") or {}
                if r["code"] == 0:
                    extrapolate(name, r, kinds, full, measured, ratio, len(bridge.get("pairs", [])),
                                len(used_bridge.get("pairs", [])))
                reused_later = (name == "things_fmri" and r["code"] == 0 and not args.no_reuse
                                and "cross_species" in specs[specs.index(name) + 1:])
                if reused_later:
                    stores = {c: out / "stores" / f"{c}.zarr" for c in kinds
                              if (out / "stores" / f"{c}.zarr").exists()}
                elif not args.keep:  # the disk holds one run's stores at a time
                    shutil.rmtree(out, ignore_errors=True)
                results.append({"spec": name, **r})
            print_scaling(name, runs)
    finally:
        (args.workdir / "results.json").write_text(json.dumps(results, indent=1, default=str))
        if not args.keep:
            for r in results:
                shutil.rmtree(args.workdir / f"{r['spec']}-w{r['workers']}", ignore_errors=True)
    return max((r["code"] for r in results), default=0)


if __name__ == "__main__":
    sys.exit(main())
