"""The key tables of pipeline specs: checkers of values and the schema of every section.

A checker is a function ``check(value, ctx, path)`` returning the value as the
run uses it (defaults filled in) or raising :class:`SpecError` naming the key
path; :data:`_SPEC` checks a whole spec. The layout is described in
:mod:`memxr.spec`, which also holds the checks across sections.

Examples
--------
>>> _int(2)(5, _Ctx("demo.yaml"), "analyses.models.cv")
5
>>> _SPEC({"name": "demo", "inputs": {"cubes": []}}, _Ctx("demo.yaml"), "")
Traceback (most recent call last):
...
memxr.spec.SpecError: demo.yaml: inputs.cubes: expected at least 1 item(s), got 0
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .models import MODELS

__all__ = ["CUBE_KINDS", "MODALITIES", "SpecError"]

CUBE_KINDS = ("things-fmri", "tvsd", "tvsd-trials", "store")
"""Values of ``inputs.cubes[].kind``: a raw source to ingest, or an existing store."""

MODALITIES = ("things-fmri", "tvsd")
"""Keys of ``rois``: fMRI ROIs, or TVSD areas (normMUA and trials cubes)."""

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class SpecError(InputError):
    """A pipeline spec is unreadable or invalid: ``FILE: KEY.PATH: what is wrong``."""

    __module__ = "memxr.spec"  # public in memxr.spec


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
_INPUTS = _section(
    {
        "memorability": (_optional(_str(what="a path")), None),
        "concepts": (_optional(_str(what="a path")), None),
        "cubes": (_list(_CUBE, min_len=1, unique=False), _REQUIRED),
    }
)
_RELIABILITY = _section({"by": (_str(), "auto"), "threshold": (_float(), _REQUIRED)})
_ROI_SET = _section(
    {
        "names": (_optional(_list(_str(), min_len=1)), None),
        "definitions": (_mapping(_list(_str(), min_len=1)), dict),
        "reliability": (_optional(_RELIABILITY), None),
        "windows": (_mapping(_window), dict),
    }
)
_ROIS = _section({m: (_ROI_SET, _defaults(_ROI_SET)) for m in MODALITIES})

_CORRELATION = _section(
    {
        "methods": (_METHODS, lambda: ["pearson", "spearman"]),
        "how": (_list(_choice("mean", "l2"), 1), lambda: ["mean", "l2"]),
        "n_permutations": (_int(0), 1000),
        "n_bootstrap": (_int(0), 1000),
        "groups": _GROUPS,
        "seed": _SEED,
    }
)
_TIMECOURSE = _section(
    {
        "methods": (_METHODS, lambda: ["pearson"]),
        "n_permutations": (_int(0), 1000),
        "n_bootstrap": (_int(0), 0),
        "groups": _GROUPS,
        "seed": _SEED,
    }
)
_MODELS = _section(
    {
        "models": (_list(_choice(*MODELS), 1), lambda: ["ridge", "svc"]),
        "feature_sets": (_list(_choice("magnitude", "pattern"), 1), lambda: ["magnitude"]),
        "cv": (_int(2), 5),
        "groups": _GROUPS,
        "n_permutations": (_int(0), 100),
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
_DECODING_SECTION = _section({"enabled": (_bool, True), "n_permutations": (_int(0), 200)})


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
_ANALYSES = _section(
    {
        "correlation": (_optional(_CORRELATION), None),
        "timecourse": (_optional(_TIMECOURSE), None),
        "models": (_optional(_MODELS), None),
        "bridge": (_optional(_BRIDGE), None),
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
