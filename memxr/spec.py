"""Pipeline specs: YAML files that say what to ingest and which analyses to run.

A spec is read with :func:`yaml.safe_load` (no Python tags are ever
constructed) and checked completely by :func:`load_spec` before anything runs.
Each problem is one line naming the spec file and the key path::

    demo.yaml: analyses.models.cv: expected int, got 'five'
    demo.yaml: analyses: unknown key 'modles' (did you mean 'models'?)
    demo.yaml: inputs.cubes[1].input: does not exist: raw/tvsd/monkeyX

Paths are relative to the spec file's folder. Defaults are filled in, so the
validated spec (:attr:`Spec.data`) says everything the run does; its hash
(:attr:`Spec.spec_hash`, SHA-256 of the canonical JSON) goes into the provenance
of every output.

Layout
------
.. code-block:: yaml

    name: demo                          # [A-Za-z0-9_.-]+; default output folder runs/<name>
    description: optional text
    inputs:
      memorability: things/THINGS_Memorability_Scores.csv   # optional
      concepts: things/Concept_to_category_linking.csv      # optional
      cubes:                            # at least one
        - {name: sub-01, kind: things-fmri, input: betas_csv, subject: sub-01}
        - {name: monkeyN, kind: tvsd, input: tvsd/monkeyN, monkey: N}
        - {name: monkeyN_t, kind: tvsd-trials, input: tvsd/monkeyN, monkey: N, dtype: float32}
        - {name: sub-02, kind: store, input: stores/things-fmri_sub-02.zarr}
    rois:                               # per modality: things-fmri, tvsd (all keys optional)
      things-fmri:
        names: [FFA, PPA, V1, IT]       # default: the cube's default ROIs (+ the unions)
        definitions: {ventral: [FFA, PPA]}   # unions of columns or ROIs
        reliability: {by: nc_testset, threshold: 5}   # channel filter; by: auto, reliability,
                                        # nc_testset, split_half or any channel coordinate
      tvsd:
        names: [V1, V4, IT]
        windows: {V1: [25, 125]}        # ms, for time-resolved cubes (defaults V1/V4/IT)
    analyses:                           # each section optional: absent or null = not run
      correlation: {methods: [pearson, spearman], how: [mean, l2],
                    n_permutations: 1000, n_bootstrap: 1000, groups: concept, seed: 0}
      timecourse: {methods: [pearson], n_permutations: 1000, n_bootstrap: 0,
                   groups: concept, seed: 0}     # time-resolved cubes only
      models: {models: [ridge, svc], feature_sets: [magnitude, pattern], cv: 5,
               groups: concept, n_permutations: 100, pca: 50, seed: 0}
      bridge: {pairs: [[sub-01, monkeyN]], method: spearman, how: mean, n_bootstrap: 1000,
               rsa: {level: [image, concept], n_permutations: 1000},
               decoding: {enabled: true, n_permutations: 200}, max_items: 2000, seed: 0}
    report: {title: "Memorability in visual cortex"}
    catalog: ../stores/catalog.tsv      # optional; default OUT/stores/catalog.tsv

Notes on the analyses: ``groups: concept`` resamples whole concepts (images of
one concept share memorability) and makes the model folds concept-grouped;
``groups: null`` shuffles images and uses random folds. ``feature_sets``:
``magnitude`` is one feature per ROI (its mean response), ``pattern`` one
feature set per ROI of its channels, reduced to ``pca`` principal components
(``pca: null`` keeps every channel). ``rsa.n_permutations`` is also the number
of permutations of the bridge's shared effects. A pair may be written
``sub-01~monkeyN``.

Examples
--------
>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "s.zarr").mkdir()
>>> _ = (d / "demo.yaml").write_text('''
... name: demo
... inputs: {cubes: [{name: sub-01, kind: store, input: s.zarr}]}
... analyses: {models: {cv: five}}
... ''')
>>> load_spec(d / "demo.yaml")
Traceback (most recent call last):
...
memxr.spec.SpecError: demo.yaml: analyses.models.cv: expected int, got 'five'
>>> _ = (d / "demo.yaml").write_text('''
... name: demo
... inputs: {cubes: [{name: sub-01, kind: store, input: s.zarr}]}
... analyses: {correlation: {n_permutations: 99}}
... ''')
>>> spec = load_spec(d / "demo.yaml")
>>> spec.data["analyses"]["correlation"]["methods"], len(spec.spec_hash)
(['pearson', 'spearman'], 64)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._spec_schema import (
    _SPEC,
    CUBE_KINDS,
    MODALITIES,
    SpecError,
    _Ctx,
    _suggest,
    _type_error,
)
from ._spec_schema import Check as Check
from .errors import InputError

__all__ = [
    "CUBE_KINDS",
    "MODALITIES",
    "Spec",
    "SpecError",
    "canonical_json",
    "load_spec",
    "modality_of",
    "validate_spec",
]

_KIND_DATASET = {"things-fmri": "things-fmri", "tvsd": "tvsd-normmua", "tvsd-trials": "tvsd-trials"}
_RAW_FILES = {
    "things-fmri": (
        "{subject}_ResponseData.h5",
        "{subject}_VoxelMetadata.csv",
        "{subject}_StimulusMetadata.csv",
    ),
    "tvsd": ("THINGS_normMUA.mat",),
    "tvsd-trials": ("THINGS_MUA_trials.mat",),
}


def modality_of(dataset: str) -> str:
    """The ``rois`` section that applies to a cube's ``dataset`` attribute.

    Examples
    --------
    >>> modality_of("tvsd-trials"), modality_of("things-fmri")
    ('tvsd', 'things-fmri')
    """
    return "tvsd" if str(dataset).startswith("tvsd") else "things-fmri"


# ----------------------------------------------------------------------------- cross checks


def _check_cubes(data: dict, ctx: _Ctx) -> None:
    from .readers.things_fmri import subject_label
    from .readers.tvsd import normalize_monkey

    seen: dict[str, int] = {}
    for i, cube in enumerate(data["inputs"]["cubes"]):
        path = f"inputs.cubes[{i}]"
        if cube["name"] in seen:
            raise ctx.fail(
                f"{path}.name", f"{cube['name']!r} is already inputs.cubes[{seen[cube['name']]}]"
            )
        seen[cube["name"]] = i
        kind = cube["kind"]
        wanted = {"things-fmri": "subject", "tvsd": "monkey", "tvsd-trials": "monkey"}.get(kind)
        for key in ("subject", "monkey"):
            if cube[key] is not None and key != wanted:
                raise ctx.fail(path, f"key {key!r} does not apply to kind {kind!r}")
        if wanted and cube[wanted] is None:
            raise ctx.fail(path, f"missing key {wanted!r} (needed by kind {kind!r})")
        if cube["dtype"] is not None and kind != "tvsd-trials":
            raise ctx.fail(path, f"key 'dtype' applies to kind 'tvsd-trials' only, not {kind!r}")
        try:
            if kind == "things-fmri":
                cube["subject"] = subject_label(cube["subject"])
            elif wanted == "monkey":
                cube["monkey"] = normalize_monkey(cube["monkey"])
        except (ValueError, InputError) as e:
            message = e.message if isinstance(e, InputError) else str(e)
            raise ctx.fail(f"{path}.{wanted}", message) from None


def _check_windows(data: dict, ctx: _Ctx) -> None:
    from .reduce import AREA_WINDOWS

    if not any(c["kind"] == "tvsd-trials" for c in data["inputs"]["cubes"]):
        return
    tvsd = data["rois"]["tvsd"]
    windows = {**AREA_WINDOWS, **tvsd["windows"]}
    names = list(tvsd["names"] or ["V1", "V4", "IT"]) + list(tvsd["definitions"])
    for name in names:
        if name not in windows:
            raise ctx.fail(
                "rois.tvsd.windows",
                f"ROI {name!r} of the time-resolved cubes needs a time window,"
                f" e.g. {name}: [75, 175]",
            )


def _check_pairs(data: dict, ctx: _Ctx) -> None:
    bridge = data["analyses"]["bridge"]
    if bridge is None:
        return
    kinds = {c["name"]: c["kind"] for c in data["inputs"]["cubes"]}
    for i, (human, monkey) in enumerate(bridge["pairs"]):
        path = f"analyses.bridge.pairs[{i}]"
        for j, (name, allowed) in enumerate(
            ((human, ("things-fmri", "store")), (monkey, ("tvsd", "tvsd-trials", "store")))
        ):
            if name not in kinds:
                raise ctx.fail(f"{path}[{j}]", f"no cube named {name!r}{_suggest(name, kinds)}")
            if kinds[name] not in allowed:
                side = "human (things-fmri)" if j == 0 else "monkey (tvsd)"
                raise ctx.fail(
                    f"{path}[{j}]", f"{name!r} is a {kinds[name]} cube, not a {side} one"
                )


def _check_files(data: dict, ctx: _Ctx, root: Path) -> None:
    for key in ("memorability", "concepts"):
        rel = data["inputs"][key]
        if rel is not None and not (root / rel).is_file():
            raise ctx.fail(f"inputs.{key}", f"no such file: {rel}")
    for i, cube in enumerate(data["inputs"]["cubes"]):
        path = f"inputs.cubes[{i}].input"
        folder = root / cube["input"]
        if not folder.exists():
            raise ctx.fail(path, f"does not exist: {cube['input']}")
        if not folder.is_dir():
            raise ctx.fail(path, f"is not a folder: {cube['input']}")
        for pattern in _RAW_FILES.get(cube["kind"], ()):
            name = pattern.format(subject=cube["subject"])
            if not (folder / name).is_file():
                raise ctx.fail(path, f"no {name} in {cube['input']}")


# ----------------------------------------------------------------------------- public API


def canonical_json(data: Any) -> str:
    """Canonical JSON text (sorted keys, no spaces): what spec and step hashes are made of.

    Examples
    --------
    >>> canonical_json({"b": [1, 2.5], "a": None})
    '{"a":null,"b":[1,2.5]}'
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def validate_spec(
    raw: Any, file: str = "spec", root: str | os.PathLike | None = None, check_files: bool = True
) -> dict:
    """Check a loaded spec (a dict from YAML) and return it with defaults filled in.

    Parameters
    ----------
    raw : object
        What :func:`yaml.safe_load` gave.
    file : str
        Name used in the error messages.
    root : path, optional
        Folder the spec's relative paths start from (required with ``check_files``).
    check_files : bool
        Check that every input file and folder exists.

    Raises
    ------
    SpecError
        On the first problem, naming ``file`` and the key path.

    Examples
    --------
    >>> validate_spec({"name": "x", "inputs": {"cubes": []}}, "x.yaml", check_files=False)
    Traceback (most recent call last):
    ...
    memxr.spec.SpecError: x.yaml: inputs.cubes: expected at least 1 item(s), got 0
    """
    ctx = _Ctx(file)
    if not isinstance(raw, dict):
        raise _type_error(ctx, "spec", "a mapping of keys (name, inputs, ...)", raw)
    data = _SPEC(raw, ctx, "")
    _check_cubes(data, ctx)
    _check_windows(data, ctx)
    _check_pairs(data, ctx)
    if check_files:
        if root is None:
            raise ValueError("check_files needs the root folder of the spec's paths")
        _check_files(data, ctx, Path(root))
    return data


@dataclass(frozen=True)
class Spec:
    """A validated pipeline spec.

    Attributes
    ----------
    path : pathlib.Path
        The spec file (absolute).
    data : dict
        The validated spec with defaults filled in; paths as written (relative
        to the spec's folder).
    spec_hash : str
        SHA-256 of :func:`canonical_json` of ``data``.
    """

    path: Path
    data: dict
    spec_hash: str

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def root(self) -> Path:
        """The folder the spec's relative paths start from."""
        return self.path.parent

    @property
    def cubes(self) -> list[dict]:
        return self.data["inputs"]["cubes"]

    @property
    def analyses(self) -> dict:
        return self.data["analyses"]

    def resolve(self, rel: str | os.PathLike | None) -> Path | None:
        """An absolute path for a path written in the spec (None stays None)."""
        return None if rel is None else (self.root / rel).resolve()

    def rois(self, dataset: str) -> dict:
        """The ``rois`` settings that apply to a cube with this ``dataset`` attribute."""
        return self.data["rois"][modality_of(dataset)]

    def dataset_of(self, cube: dict) -> str | None:
        """The ``dataset`` a cube entry will have (None for a store: known once opened)."""
        return _KIND_DATASET.get(cube["kind"])


def load_spec(path: str | os.PathLike, check_files: bool = True) -> Spec:
    """Read and validate a YAML pipeline spec.

    Parameters
    ----------
    path : path
        The spec file.
    check_files : bool
        Also check that every input path exists (relative to the spec's folder).

    Returns
    -------
    Spec

    Raises
    ------
    SpecError
        One line naming the file and the key path: unreadable file, invalid
        YAML (or a tag such as ``!!python/object``, refused by
        :func:`yaml.safe_load`), unknown or missing keys, wrong types, missing
        input files.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.yaml"
    >>> _ = p.write_text("name: x\\ninputs: !!python/object:os.system {}\\n")
    >>> load_spec(p)
    Traceback (most recent call last):
    ...
    memxr.spec.SpecError: bad.yaml: yaml: ...: tag !!python/object:os.system is not allowed ...
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(p, "spec", f"cannot read: {e.strerror or e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(p, "yaml", _yaml_message(e)) from None
    data = validate_spec(raw, p.name, p.resolve().parent, check_files)
    digest = hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()
    return Spec(path=p.resolve(), data=data, spec_hash=digest)


def _yaml_message(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e)
    tag = re.search(r"tag '([^']+)'", problem)
    if tag:
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return f"{where}tag {name} is not allowed (safe YAML only)"
    return where + " ".join(str(problem).split())
