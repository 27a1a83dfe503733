"""Pipeline specs: YAML files that say what to ingest and which analyses to run.

A spec is read with :func:`yaml.safe_load` (no Python tags are ever
constructed) and checked completely by :func:`load_spec` before anything runs.
Each problem is one line naming the spec file and the key path::

    demo.yaml: analyses.models.cv: expected int, got 'five'
    demo.yaml: analyses: unknown key 'modles' (did you mean 'models'?)
    demo.yaml: inputs.cubes[1].input: does not exist: raw/tvsd/monkeyX

Paths are relative to the spec file's folder; a ``kind: store`` input may be an
``s3://`` URL (credentials come from the environment, never from the spec). Defaults are
filled in, so the
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
      memorability_reliability: 0.45    # reliability of the scores (default: Kramer et al.
                                        # 2023, see memxr.reliability.MEMORABILITY_RELIABILITY)
      concepts: things/Concept_to_category_linking.csv      # optional
      covariates: {path: things/image_stats.csv, columns: [contrast]}   # optional: per-image
                                        # covariates (CSV/TSV/Parquet keyed by the THINGS
                                        # image file name; columns default: every numeric
                                        # one); a bare path also works
      cubes:                            # at least one
        - {name: sub-01, kind: things-fmri, input: betas_csv, subject: sub-01}
        - {name: monkeyN, kind: tvsd, input: tvsd/monkeyN, monkey: N}
        - {name: monkeyN_t, kind: tvsd-trials, input: tvsd/monkeyN, monkey: N, dtype: float32}
        - {name: sub-02, kind: store, input: stores/things-fmri_sub-02.zarr}
        - {name: sub-03, kind: store, input: "s3://bucket/stores/things-fmri_sub-03.zarr"}
    rois:                               # per modality: things-fmri, tvsd (all keys optional)
      things-fmri:
        names: [FFA, PPA, V1, IT]       # default: the cube's default ROIs (+ the unions)
        definitions: {ventral: [FFA, PPA]}   # unions of columns or ROIs
        reliability: {by: nc_testset, threshold: 5, scale: native}   # channel filter: by
                                        # auto, reliability, nc_singletrial, nc_testset,
                                        # splithalf_corrected, split_half or a coordinate;
                                        # scale: single_trial (default with auto) or native
                                        # (the measure's units, default with a named one)
      tvsd:
        names: [V1, V4, IT]
        windows: {V1: [25, 125]}        # ms, for time-resolved cubes (defaults V1/V4/IT)
        normalize: true                 # time-resolved cubes: z-score each channel per
                                        # recording day against that day's test trials,
                                        # as normMUA (default); false: raw MUA
    analyses:                           # each section optional: absent or null = not run
      correlation: {methods: [pearson, spearman], how: [mean, l2], splits: [train, test],
                    n_permutations: 1000, n_bootstrap: 1000, groups: concept, seed: 0,
                    control_category: false, within_concept: true, pool: true}
                                        # + partial correlations controlling for
                                        # inputs.covariates (and the category one-hot with
                                        # control_category), within-concept correlations
                                        # (column control) and random-effects group rows
                                        # over subjects / monkeys (pool, subject "pooled")
      comparisons: {pairs: [[IT, V4], [V4, V1]], method: pearson, how: mean, splits: [train],
                    ci_method: jackknife, n_bootstrap: 1000, pool: true, groups: concept,
                    seed: 0}            # pairs default: IT-V4, V4-V1, IT-V1 (TVSD) and
                                        # IT-V1, FFA-V1, FFA-PPA (fMRI), where both exist;
                                        # pool: random-effects group rows of r_a - r_b
      latency: {method: pearson, splits: [train], criterion: fraction, fraction: 0.5,
                threshold: 1.96, window: null, n_permutations: 1000, n_bootstrap: 1000,
                pool: true, groups: concept, seed: 0}   # time-resolved cubes only;
                                        # pool: group rows of onset and peak
      variance_partition: {how: mean, splits: [train], cv: 5, n_permutations: 100,
                           control_category: false, groups: concept, seed: 0}
                                        # needs inputs.covariates
      timecourse: {methods: [pearson], splits: [train, test], n_permutations: 1000,
                   n_bootstrap: 0, cluster_threshold: 1.96, groups: concept, seed: 0}
                                        # time-resolved cubes only
      models: {models: [ridge, linear_svc], feature_sets: [magnitude, pattern], cv: 5,
               splits: [train, test], groups: concept, n_permutations: 100, early_stop: 10,
               pca: 50, seed: 0}
      bridge: {pairs: [[sub-01, monkeyN]], method: spearman, how: mean, n_bootstrap: 1000,
               rsa: {level: [image, concept], n_permutations: 1000},
               decoding: {enabled: true, n_permutations: 200, disjoint_concepts: true,
                          n_components: 100},
               max_items: 2000, seed: 0}   # decoding n_components: PCA (fit inside the
                                        # training images) of each side before the ridge
                                        # maps; null: every channel (minutes per fold and
                                        # ROI pair for whole-brain fMRI ROIs at real size)
    report: {title: "Memorability in visual cortex"}
    catalog: ../stores/catalog.tsv      # optional; default OUT/stores/catalog.tsv

Notes on the analyses: ``groups: concept`` resamples whole concepts (images of
one concept share memorability) and makes the model folds concept-grouped;
``groups: null`` shuffles images and uses random folds. ``splits``: the train
images (single trials, the main analysis) and the test images (means of their
repeats, the high-SNR check) are analysed apart, never pooled; every table says
which in its ``trials`` column. ``feature_sets``: ``magnitude`` is one feature per
ROI (its mean response), ``pattern`` one feature set per ROI of its channels,
reduced to ``pca`` principal components inside each training fold (``pca: null``
keeps every channel). ``models`` defaults to ``[ridge, linear_svc]``, which scale linearly
with the images (``svc``, the RBF-kernel SVM, grows about quadratically: name it to fit it);
``early_stop: h`` stops a row's permutations at its ``h``-th null score at or above the
observed one, with the sequential p-value ``h / l`` after ``l`` permutations (Besag &
Clifford 1991; ``0`` runs all ``n_permutations``; with ``h > 0.05 n_permutations`` no
decision at 0.05 differs from the full test's). The time course is tested by a cluster-mass permutation test
(cluster-forming threshold ``cluster_threshold`` on ``|r| / sd(r, r_perm)``),
family-wise over the ROIs and time bins of a cube. ``rsa.n_permutations`` is also the number
of permutations of the bridge's shared effects. A pair may be written
``sub-01~monkeyN``. ``comparisons`` test ``r_a = r_b`` of two ROIs of one cube on the
same images (:func:`memxr.stats.compare_correlations`); ``latency`` finds onset and peak of
each area's effect (:func:`memxr.stats.latency`); ``variance_partition`` splits what the ROI
magnitudes and the covariates predict of memorability
(:func:`memxr.models.variance_partition`).

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
memxr.pipeline.spec.SpecError: demo.yaml: analyses.models.cv: expected int, got 'five'
>>> _ = (d / "demo.yaml").write_text('''
... name: demo
... inputs: {cubes: [{name: sub-01, kind: store, input: s.zarr}]}
... analyses: {correlation: {n_permutations: 99}}
... ''')
>>> spec = load_spec(d / "demo.yaml")
>>> spec.data["analyses"]["correlation"]["methods"], len(spec.spec_hash)
(['pearson', 'spearman'], 64)
>>> _int(2)(5, _Ctx("demo.yaml"), "analyses.models.cv")
5
>>> _SPEC({"name": "demo", "inputs": {"cubes": []}}, _Ctx("demo.yaml"), "")
Traceback (most recent call last):
...
memxr.pipeline.spec.SpecError: demo.yaml: inputs.cubes: expected at least 1 item(s), got 0
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..models import DEFAULT_MODELS, EARLY_STOP, MODELS
from ..readers import SOURCES
from ..reliability import MEMORABILITY_RELIABILITY, SCALES
from ..schema import AREA_WINDOWS

# ----------------------------------------------------------------------
# The key tables of pipeline specs: checkers of values and the schema of every section.


CUBE_KINDS = (*SOURCES, "store")
"""Values of ``inputs.cubes[].kind``: a raw source to ingest, or an existing store."""

MODALITIES = ("things-fmri", "tvsd")
"""Keys of ``rois``: fMRI ROIs, or TVSD areas (normMUA and trials cubes)."""

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class SpecError(InputError):
    """A pipeline spec is unreadable or invalid: ``FILE: KEY.PATH: what is wrong``."""


# ----------------------------------------------------------------------------- checkers

Check = Callable[[Any, "_Ctx", str], Any]
_REQUIRED = object()


@dataclass(frozen=True)
class _Ctx:
    file: str

    def fail(self, path: str, message: str) -> SpecError:
        return SpecError(self.file, path or "spec", message)


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_error(ctx: _Ctx, path: str, expected: str, value: Any) -> SpecError:
    return ctx.fail(path, f"expected {expected}, got {_show(value)}")


def _str(pattern: re.Pattern | None = None, what: str = "str") -> Check:
    def check(v, ctx, path):
        if not isinstance(v, str) or not v.strip():
            raise _type_error(ctx, path, "a non-empty str" if isinstance(v, str) else what, v)
        if pattern is not None and not pattern.fullmatch(v):
            raise ctx.fail(path, f"{v!r} may hold only letters, digits, '_', '.', '-'")
        return v

    return check


def _int(minimum: int | None = None) -> Check:
    def check(v, ctx, path):
        if isinstance(v, bool) or not isinstance(v, int):
            raise _type_error(ctx, path, "int", v)
        if minimum is not None and v < minimum:
            raise ctx.fail(path, f"expected an int >= {minimum}, got {v}")
        return v

    return check


def _float() -> Check:
    def check(v, ctx, path):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _type_error(ctx, path, "a number", v)
        return float(v)

    return check


def _bool(v, ctx, path):
    if not isinstance(v, bool):
        raise _type_error(ctx, path, "true or false", v)
    return v


def _choice(*options: str) -> Check:
    def check(v, ctx, path):
        if v not in options:
            hint = _suggest(v, options)
            raise ctx.fail(
                path, f"expected one of {', '.join(options)}, got {_show(v)}{hint}".rstrip()
            )
        return v

    return check


def _optional(inner: Check) -> Check:
    def check(v, ctx, path):
        return None if v is None else inner(v, ctx, path)

    return check


def _list(item: Check, min_len: int = 0, unique: bool = True) -> Check:
    """A list (a single scalar is taken as a list of one)."""

    def check(v, ctx, path):
        if isinstance(v, str | int | float) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, list):
            raise _type_error(ctx, path, "a list", v)
        if len(v) < min_len:
            raise ctx.fail(path, f"expected at least {min_len} item(s), got {len(v)}")
        out = [item(x, ctx, f"{path}[{i}]") for i, x in enumerate(v)]
        if unique:
            seen = set()
            for i, x in enumerate(out):
                key = json.dumps(x, sort_keys=True)
                if key in seen:
                    raise ctx.fail(f"{path}[{i}]", f"repeated value {_show(x)}")
                seen.add(key)
        return out

    return check


def _mapping(value: Check) -> Check:
    """A mapping with free (string) keys, e.g. ROI definitions."""

    def check(v, ctx, path):
        if not isinstance(v, dict):
            raise _type_error(ctx, path, "a mapping", v)
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise ctx.fail(path, f"keys must be text, got {_show(k)}")
            out[k] = value(x, ctx, f"{path}.{k}")
        return out

    return check


def _window(v, ctx, path):
    if not isinstance(v, list) or len(v) != 2:
        raise _type_error(ctx, path, "a [start, stop] pair in ms", v)
    start, stop = (_float()(x, ctx, path) for x in v)
    if not start < stop:
        raise ctx.fail(path, f"start must be before stop, got [{start:g}, {stop:g}]")
    return [start, stop]


def _suggest(key: Any, known) -> str:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _section(fields: Mapping[str, tuple[Check, Any]]) -> Check:
    """A mapping with fixed keys: ``{key: (check, default or _REQUIRED)}``."""

    def check(v, ctx, path):
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise _type_error(ctx, path, "a mapping", v)
        for k in v:
            if k not in fields:
                raise ctx.fail(path, f"unknown key {k!r}{_suggest(k, fields)}")
        out = {}
        for k, (inner, default) in fields.items():
            sub = f"{path}.{k}" if path else k
            if k in v:
                out[k] = inner(v[k], ctx, sub)
            elif default is _REQUIRED:
                raise ctx.fail(path, f"missing key {k!r}")
            else:
                out[k] = default() if callable(default) else default
        return out

    return check


# ----------------------------------------------------------------------------- the schema


def _defaults(section: Check) -> Callable[[], Any]:
    """The default of an absent section: the section with every default filled in."""
    return lambda: section({}, _Ctx("spec"), "")


_METHODS = _list(_choice("pearson", "spearman"), min_len=1)
_SPLITS = (_list(_choice("train", "test"), min_len=1), lambda: ["train", "test"])
_GROUPS = (_optional(_str()), "concept")
_SEED = (_int(0), 0)

_CUBE = _section(
    {
        "name": (_str(_NAME), _REQUIRED),
        "kind": (_choice(*CUBE_KINDS), _REQUIRED),
        "input": (_str(what="a path"), _REQUIRED),
        "subject": (_optional(_str()), None),
        "monkey": (_optional(_str()), None),
        "dtype": (_optional(_choice("float32", "float64")), None),
    }
)
def _reliability_value(v, ctx, path):
    value = _float()(v, ctx, path)
    if not 0.0 < value <= 1.0:
        raise ctx.fail(path, f"expected a reliability in (0, 1], got {_show(v)}")
    return value


_COVARIATE_KEYS = _section(
    {
        "path": (_str(what="a path"), _REQUIRED),
        "columns": (_optional(_list(_str(), min_len=1)), None),
        "key": (_optional(_str()), None),
    }
)


def _covariates(v, ctx, path):
    """A per-image covariate table: a path, or ``{path, columns, key}``."""
    return _COVARIATE_KEYS({"path": v} if isinstance(v, str) else v, ctx, path)


_INPUTS = _section(
    {
        "memorability": (_optional(_str(what="a path")), None),
        "memorability_reliability": (_reliability_value, MEMORABILITY_RELIABILITY),
        "concepts": (_optional(_str(what="a path")), None),
        "covariates": (_optional(_covariates), None),
        "cubes": (_list(_CUBE, min_len=1, unique=False), _REQUIRED),
    }
)
_RELIABILITY_KEYS = _section(
    {
        "by": (_str(), "auto"),
        "threshold": (_float(), _REQUIRED),
        "scale": (_optional(_choice(*SCALES)), None),
    }
)


def _reliability_filter(v, ctx, path):
    """A channel filter whose threshold names its scale (see memxr.reliability.select_channels)."""
    out = _RELIABILITY_KEYS(v, ctx, path)
    auto = out["by"] == "auto"
    if out["scale"] is None:
        out["scale"] = "single_trial" if auto else "native"
    if auto and out["scale"] == "native":
        raise ctx.fail(
            f"{path}.scale",
            "by: auto compares on the single-trial scale only; name the measure (by: ...)"
            " to use its native scale",
        )
    if out["scale"] == "single_trial" and not -1.0 <= out["threshold"] <= 1.0:
        raise ctx.fail(
            f"{path}.threshold",
            f"{out['threshold']:g} is not a single-trial reliability (between -1 and 1);"
            " for a measure in its own units (nc_testset: percent) name it in by: and add"
            " scale: native",
        )
    return out


_RELIABILITY = _reliability_filter
_ROI_SET = _section(
    {
        "names": (_optional(_list(_str(), min_len=1)), None),
        "definitions": (_mapping(_list(_str(), min_len=1)), dict),
        "reliability": (_optional(_RELIABILITY), None),
        "windows": (_mapping(_window), dict),
    }
)
_TVSD_SET = _section(
    {
        "names": (_optional(_list(_str(), min_len=1)), None),
        "definitions": (_mapping(_list(_str(), min_len=1)), dict),
        "reliability": (_optional(_RELIABILITY), None),
        "windows": (_mapping(_window), dict),
        "normalize": (_bool, True),
    }
)
_ROIS = _section(
    {
        "things-fmri": (_ROI_SET, _defaults(_ROI_SET)),
        "tvsd": (_TVSD_SET, _defaults(_TVSD_SET)),
    }
)

_CORRELATION = _section(
    {
        "methods": (_METHODS, lambda: ["pearson", "spearman"]),
        "how": (_list(_choice("mean", "l2"), 1), lambda: ["mean", "l2"]),
        "splits": _SPLITS,
        "n_permutations": (_int(0), 1000),
        "n_bootstrap": (_int(0), 1000),
        "groups": _GROUPS,
        "seed": _SEED,
        "control_category": (_bool, False),
        "within_concept": (_bool, True),
        "pool": (_bool, True),
    }
)


def _positive(v, ctx, path):
    value = _float()(v, ctx, path)
    if not value > 0:
        raise ctx.fail(path, f"expected a number > 0, got {_show(v)}")
    return value


_TIMECOURSE = _section(
    {
        "methods": (_METHODS, lambda: ["pearson"]),
        "splits": _SPLITS,
        "n_permutations": (_int(0), 1000),
        "n_bootstrap": (_int(0), 0),
        "cluster_threshold": (_positive, 1.96),
        "groups": _GROUPS,
        "seed": _SEED,
    }
)
_MODELS = _section(
    {
        "models": (_list(_choice(*MODELS), 1), lambda: list(DEFAULT_MODELS)),
        "feature_sets": (_list(_choice("magnitude", "pattern"), 1), lambda: ["magnitude"]),
        "cv": (_int(2), 5),
        "splits": _SPLITS,
        "groups": _GROUPS,
        "n_permutations": (_int(0), 100),
        "early_stop": (_int(0), EARLY_STOP),
        "pca": (_optional(_int(1)), 50),
        "seed": _SEED,
    }
)


def _pair(v, ctx, path):
    """A ``[human, monkey]`` pair of cube names (or ``"human~monkey"``)."""
    if isinstance(v, str) and "~" in v:
        v = v.split("~")
    if not isinstance(v, list) or len(v) != 2:
        raise _type_error(ctx, path, "a [human, monkey] pair of cube names", v)
    return [_str()(x, ctx, f"{path}[{i}]") for i, x in enumerate(v)]


_RSA = _section(
    {
        "level": (_list(_choice("image", "concept"), 1), lambda: ["image", "concept"]),
        "n_permutations": (_int(0), 1000),
    }
)
_DECODING_SECTION = _section(
    {
        "enabled": (_bool, True),
        "n_permutations": (_int(0), 200),
        "disjoint_concepts": (_bool, True),
        "n_components": (_optional(_int(1)), 100),
    }
)


def _decoding(v, ctx, path):
    """``true``/``false`` or ``{enabled, n_permutations}``."""
    return _DECODING_SECTION({"enabled": v} if isinstance(v, bool) else v, ctx, path)


_BRIDGE = _section(
    {
        "pairs": (_list(_pair, 1), _REQUIRED),
        "method": (_choice("pearson", "spearman"), "spearman"),
        "how": (_choice("mean", "l2"), "mean"),
        "n_bootstrap": (_int(0), 1000),
        "rsa": (_RSA, _defaults(_RSA)),
        "decoding": (_decoding, _defaults(_decoding)),
        "max_items": (_int(3), 2000),
        "seed": _SEED,
    }
)
def _roi_pair(v, ctx, path):
    """A ``[roi_a, roi_b]`` pair of ROI names (or ``"IT~V1"``): ``diff = r_a - r_b``."""
    if isinstance(v, str) and "~" in v:
        v = v.split("~")
    if not isinstance(v, list) or len(v) != 2:
        raise _type_error(ctx, path, "a [roi_a, roi_b] pair of ROI names", v)
    out = [_str()(x, ctx, f"{path}[{i}]") for i, x in enumerate(v)]
    if out[0] == out[1]:
        raise ctx.fail(path, f"a pair of two different ROIs, got {out[0]!r} twice")
    return out


_COMPARISONS = _section(
    {
        "pairs": (_optional(_list(_roi_pair, 1)), None),
        "method": (_choice("pearson", "spearman"), "pearson"),
        "how": (_choice("mean", "l2"), "mean"),
        "splits": (_list(_choice("train", "test"), min_len=1), lambda: ["train"]),
        "ci_method": (_choice("jackknife", "percentile"), "jackknife"),
        "n_bootstrap": (_int(0), 1000),
        "pool": (_bool, True),
        "groups": _GROUPS,
        "seed": _SEED,
    }
)
_LATENCY = _section(
    {
        "method": (_choice("pearson", "spearman"), "pearson"),
        "splits": (_list(_choice("train", "test"), min_len=1), lambda: ["train"]),
        "criterion": (_choice("fraction", "threshold"), "fraction"),
        "fraction": (_positive, 0.5),
        "threshold": (_positive, 1.96),
        "window": (_optional(_window), None),
        "n_permutations": (_int(1), 1000),
        "n_bootstrap": (_int(1), 1000),
        "pool": (_bool, True),
        "groups": _GROUPS,
        "seed": _SEED,
    }
)
_VARIANCE_PARTITION = _section(
    {
        "how": (_choice("mean", "l2"), "mean"),
        "splits": (_list(_choice("train", "test"), min_len=1), lambda: ["train"]),
        "cv": (_int(2), 5),
        "n_permutations": (_int(0), 100),
        "control_category": (_bool, False),
        "groups": _GROUPS,
        "seed": _SEED,
    }
)
_ANALYSES = _section(
    {
        "correlation": (_optional(_CORRELATION), None),
        "timecourse": (_optional(_TIMECOURSE), None),
        "models": (_optional(_MODELS), None),
        "bridge": (_optional(_BRIDGE), None),
        "comparisons": (_optional(_COMPARISONS), None),
        "latency": (_optional(_LATENCY), None),
        "variance_partition": (_optional(_VARIANCE_PARTITION), None),
    }
)
_REPORT = _section({"title": (_optional(_str()), None)})
_SPEC = _section(
    {
        "name": (_str(_NAME), _REQUIRED),
        "description": (_optional(_str()), None),
        "inputs": (_INPUTS, _REQUIRED),
        "rois": (_ROIS, _defaults(_ROIS)),
        "analyses": (_ANALYSES, _defaults(_ANALYSES)),
        "report": (_REPORT, _defaults(_REPORT)),
        "catalog": (_optional(_str(what="a path")), None),
    }
)


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
    seen: dict[str, int] = {}
    for i, cube in enumerate(data["inputs"]["cubes"]):
        path = f"inputs.cubes[{i}]"
        if cube["name"] in seen:
            raise ctx.fail(
                f"{path}.name", f"{cube['name']!r} is already inputs.cubes[{seen[cube['name']]}]"
            )
        seen[cube["name"]] = i
        kind = cube["kind"]
        source = SOURCES.get(kind)
        wanted = source.id_key if source else None
        for key in ("subject", "monkey"):
            if cube[key] is not None and key != wanted:
                raise ctx.fail(path, f"key {key!r} does not apply to kind {kind!r}")
        if wanted and cube[wanted] is None:
            raise ctx.fail(path, f"missing key {wanted!r} (needed by kind {kind!r})")
        for option in ("dtype",):
            if cube[option] is not None and (source is None or option not in source.options):
                takes = [k for k, s in SOURCES.items() if option in s.options]
                raise ctx.fail(
                    path, f"key {option!r} applies to kind {' or '.join(map(repr, takes))} only, not {kind!r}"
                )
        if source is None:
            continue
        try:
            cube[wanted] = source.identify(cube[wanted])
        except (ValueError, InputError) as e:
            message = e.message if isinstance(e, InputError) else str(e)
            raise ctx.fail(f"{path}.{wanted}", message) from None


def _check_windows(data: dict, ctx: _Ctx) -> None:

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


def _check_analyses(data: dict, ctx: _Ctx) -> None:
    """Analyses that need an input: variance partitioning needs covariates."""
    vp = data["analyses"]["variance_partition"]
    if vp is not None and data["inputs"]["covariates"] is None and not vp["control_category"]:
        raise ctx.fail(
            "analyses.variance_partition",
            "needs covariates: give inputs.covariates (or control_category: true)",
        )


def _check_covariates(data: dict, ctx: _Ctx, root: Path) -> None:
    """The covariate table exists, is readable and has the named numeric columns."""
    from ..readers.things_meta import read_image_table

    cov = data["inputs"]["covariates"]
    if cov is None:
        return
    rel = cov["path"]
    if not (root / rel).is_file():
        raise ctx.fail("inputs.covariates.path", f"no such file: {rel}")
    try:
        table = read_image_table(root / rel, key=cov["key"])
    except InputError as e:
        raise ctx.fail("inputs.covariates", f"{rel}: {e.message}") from None
    numeric = [str(c) for c in table.columns]
    if cov["columns"] is None:
        if not numeric:
            raise ctx.fail("inputs.covariates", f"{rel} has no numeric column")
        return
    dropped = [str(c) for c in table.attrs.get("dropped_columns", [])]
    for i, name in enumerate(cov["columns"]):
        if name in numeric:
            continue
        why = "is not numeric" if name in dropped else f"no such column{_suggest(name, numeric)}"
        raise ctx.fail(f"inputs.covariates.columns[{i}]", f"{name!r} in {rel}: {why}")


def _check_files(data: dict, ctx: _Ctx, root: Path) -> None:
    for key in ("memorability", "concepts"):
        rel = data["inputs"][key]
        if rel is not None and not (root / rel).is_file():
            raise ctx.fail(f"inputs.{key}", f"no such file: {rel}")
    _check_covariates(data, ctx, root)
    for i, cube in enumerate(data["inputs"]["cubes"]):
        path = f"inputs.cubes[{i}].input"
        if "://" in str(cube["input"]):  # a store by URL: opened (and checked) when planned
            if cube["kind"] != "store":
                raise ctx.fail(path, "a URL is a store: give it with kind: store")
            continue
        folder = root / cube["input"]
        if not folder.exists():
            raise ctx.fail(path, f"does not exist: {cube['input']}")
        if not folder.is_dir():
            raise ctx.fail(path, f"is not a folder: {cube['input']}")
        source = SOURCES.get(cube["kind"])
        names = source.raw_names(cube[source.id_key]) if source else []
        for name in names:
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
    memxr.pipeline.spec.SpecError: x.yaml: inputs.cubes: expected at least 1 item(s), got 0
    """
    ctx = _Ctx(file)
    if not isinstance(raw, dict):
        raise _type_error(ctx, "spec", "a mapping of keys (name, inputs, ...)", raw)
    data = _SPEC(raw, ctx, "")
    _check_cubes(data, ctx)
    _check_windows(data, ctx)
    _check_pairs(data, ctx)
    _check_analyses(data, ctx)
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

    def resolve(self, rel: str | os.PathLike | None) -> Path | str | None:
        """An absolute path for a path written in the spec (None stays None; a URL, such
        as a ``kind: store`` input on S3, stays the URL it is)."""
        if isinstance(rel, str) and "://" in rel:
            return rel
        return None if rel is None else (self.root / rel).resolve()

    def rois(self, dataset: str) -> dict:
        """The ``rois`` settings that apply to a cube with this ``dataset`` attribute."""
        return self.data["rois"][modality_of(dataset)]

    def dataset_of(self, cube: dict) -> str | None:
        """The ``dataset`` a cube entry will have (None for a store: known once opened)."""
        source = SOURCES.get(cube["kind"])
        return source.dataset if source else None


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
    memxr.pipeline.spec.SpecError: bad.yaml: yaml: ...: tag !!python/object:os.system is not allowed ...
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
