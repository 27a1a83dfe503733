"""Run summary and provenance records of a report.

Reads the many shapes a ``provenance.json`` can take (inputs with checksums,
spec, versions, steps) and the datasets, subjects and pairs of the tables.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping

import pandas as pd

from ..provenance import __version__
from .tables import text_col

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def input_records(obj: object, prefix: str = "") -> list[dict]:
    """Flatten the many shapes an inputs entry can take into ``{name, size, sha256}`` rows."""
    out: list[dict] = []
    if isinstance(obj, Mapping):
        name = obj.get("name") or obj.get("path") or obj.get("file")
        if name is not None and ("sha256" in obj or "size" in obj):
            full = f"{prefix}/{name}" if prefix else str(name)
            return [{"name": full, "size": obj.get("size"), "sha256": obj.get("sha256")}]
        if name is None and prefix and "sha256" in obj:  # {"dir/file": {"sha256", "size"}}
            return [{"name": prefix, "size": obj.get("size"), "sha256": obj.get("sha256")}]
        for key, value in obj.items():
            sub = f"{prefix}/{key}" if prefix else str(key)
            if isinstance(value, str) and _HEX64.match(value):
                out.append({"name": sub, "size": None, "sha256": value})
            elif isinstance(value, Mapping | list):
                out += input_records(value, prefix if _looks_like_record(value) else sub)
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, str):
                out.append(
                    {"name": f"{prefix}/{item}" if prefix else item, "size": None, "sha256": None}
                )
            else:
                out += input_records(item, prefix)
    return out


def _looks_like_record(value: object) -> bool:
    return (
        isinstance(value, Mapping)
        and "sha256" in value
        and ("name" in value or "path" in value or "file" in value)
    )


def inputs_of(prov: Mapping) -> list[dict]:
    for key in ("inputs", "input_checksums", "checksums", "input_files"):
        if key in prov:
            value = prov[key]
            if isinstance(value, str):  # a JSON list, as in the cubes' ``inputs`` attribute
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    return [{"name": value, "size": None, "sha256": None}]
            return input_records(value)
    return []


def spec_of(prov: Mapping) -> Mapping:
    spec = prov.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def versions_of(prov: Mapping) -> dict[str, str]:
    versions = prov.get("versions")
    out = {str(k): str(v) for k, v in versions.items()} if isinstance(versions, Mapping) else {}
    for key, value in prov.items():
        if key.endswith("_version") and isinstance(value, str | int | float):
            out.setdefault(key.removesuffix("_version"), str(value))
    return out


def run_summary(prov: Mapping, tables: Mapping[str, pd.DataFrame]) -> list[tuple[str, str]]:
    """(field, value) rows of the run summary (plain text)."""
    spec = spec_of(prov)
    name = spec.get("name") or prov.get("spec_name") or prov.get("name")
    spec_hash = prov.get("spec_hash") or spec.get("hash")
    versions = versions_of(prov)
    rows: list[tuple[str, str]] = []
    if name:
        rows.append(("spec", str(name)))
    if spec_hash:
        rows.append(("spec hash", str(spec_hash)))
    if prov.get("spec_file"):
        rows.append(("spec file", str(prov["spec_file"])))
    for label, value in _datasets(tables).items():
        rows.append((label, value))
    present = [f"{k} ({len(v)} rows)" for k, v in tables.items()]
    rows.append(("tables", ", ".join(present) if present else "none"))
    rows.append(("memxr version", versions.get("memxr", __version__)))
    date = next((prov[k] for k in ("created", "date", "finished", "started") if prov.get(k)), None)
    if date:
        rows.append(("run date", str(date)))
    rows.append(("report date", now_text()))
    other = [f"{k} {v}" for k, v in sorted(versions.items()) if k != "memxr"]
    if other:
        rows.append(("packages", ", ".join(other)))
    return rows


def _datasets(tables: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """``{"datasets": "things-fmri (sub-01, sub-02); tvsd (monkeyN)", "pairs": ...}``."""
    subjects: dict[str, set[str]] = {}
    pairs: set[str] = set()
    for df in tables.values():
        if df.empty:
            continue
        if "subject" in df and "dataset" in df:
            for d, s in zip(text_col(df, "dataset"), text_col(df, "subject"), strict=True):
                if s:
                    subjects.setdefault(d or "?", set()).add(s)
        if "pair" in df:
            pairs.update(p for p in text_col(df, "pair") if p)
    out = {}
    if subjects:
        out["datasets"] = "; ".join(
            f"{d} ({', '.join(sorted(s))})" for d, s in sorted(subjects.items())
        )
    if pairs:
        out["cross-species pairs"] = ", ".join(sorted(pairs))
    return out


def now_text() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def steps_table(prov: Mapping) -> pd.DataFrame:
    """The pipeline steps recorded in the provenance: name, key, seconds, finished."""
    steps = prov.get("steps")
    if not isinstance(steps, Mapping):
        return pd.DataFrame()
    rows = []
    for name, rec in steps.items():
        rec = rec if isinstance(rec, Mapping) else {}
        key = rec.get("key")
        rows.append(
            {
                "step": str(name),
                "key": str(key)[:12] if key else None,
                "seconds": pd.to_numeric(rec.get("seconds"), errors="coerce"),
                "finished": rec.get("finished"),
            }
        )
    return pd.DataFrame(rows)
