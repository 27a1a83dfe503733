"""Reading the THINGS tables as text: their quirks, cell parsing, key checks and a small cache.

Every cell is read as text (a UTF-8 byte-order mark, CRLF line ends and trailing unnamed
columns are accepted; ``"NA"`` stays a label), columns are picked by name (exact, else
case-insensitive), numbers are parsed with errors naming the file, column and line, and each
table is built once per (path, size, mtime) in a process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import InputError

PathLike = str | os.PathLike

_NA_TOKENS = frozenset({"", "na", "nan", "n/a", "null", "none"})
_CACHE_SIZE = 16
_CACHE: dict[tuple, pd.DataFrame] = {}
_CACHE_LOCK = threading.Lock()


def csv_line(i: int) -> int:
    """File line of data row ``i`` (0-based), counting the header as line 1."""
    return int(i) + 2


def read_text(path: Path, sep: str) -> pd.DataFrame:
    """Every cell as text ("" for empty), column names stripped of BOM and blanks."""
    try:
        df = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
        )
    except UnicodeDecodeError:
        raise InputError(path, "file", "is not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise InputError(path, "file", "is empty") from None
    except pd.errors.ParserError as e:
        raise InputError(path, "file", f"cannot be parsed: {str(e).splitlines()[0]}") from None
    df.columns = [str(c).lstrip("\ufeff").strip() for c in df.columns]
    return df


def pick(df: pd.DataFrame, path: Path, names: Sequence[str]) -> dict[str, str]:
    """Map each required column name to the file's column (exact, else case-insensitive)."""
    lower: dict[str, list[str]] = {}
    for c in df.columns:
        lower.setdefault(c.lower(), []).append(c)
    out = {}
    for name in names:
        if name in df.columns:
            out[name] = name
        elif len(lower.get(name.lower(), [])) == 1:
            out[name] = lower[name.lower()][0]
        else:
            shown = ", ".join(c for c in df.columns if not c.startswith("Unnamed:"))[:200]
            raise InputError(path, name, f"missing column (columns are: {shown})")
    return out


def as_text(s: pd.Series) -> pd.Series:
    """Stripped text column."""
    return s.astype(str).str.strip()


def to_float(s: pd.Series, path: Path, column: str) -> pd.Series:
    """Numbers as float64; empty, NA and NaN become NaN; anything else is an error."""
    t = as_text(s)
    na = t.str.lower().isin(_NA_TOKENS)
    v = pd.to_numeric(t.mask(na), errors="coerce").astype("float64")
    bad = np.flatnonzero(v.isna().to_numpy() & ~na.to_numpy())
    if bad.size:
        raise InputError(
            path,
            column,
            f"{bad.size} values are not numbers, e.g. {t.iloc[bad[0]]!r} on line {csv_line(bad[0])}",
        )
    return v


def to_int(s: pd.Series, path: Path, column: str) -> pd.Series:
    """Whole numbers as int64; a missing or fractional value is an error."""
    v = to_float(s, path, column)
    bad = np.flatnonzero(~np.isfinite(v.to_numpy()) | (v.to_numpy() % 1 != 0))
    if bad.size:
        raise InputError(
            path,
            column,
            f"{bad.size} values are not integers, e.g. {s.iloc[bad[0]]!r} on line {csv_line(bad[0])}",
        )
    return v.astype("int64")


def unique_key(keys: pd.Series, path: Path, column: str, what: str) -> None:
    """Refuse empty and duplicated keys."""
    empty = np.flatnonzero((keys == "").to_numpy())
    if empty.size:
        raise InputError(path, column, f"{empty.size} empty {what}, e.g. on line {csv_line(empty[0])}")
    dup = keys[keys.duplicated()]
    if len(dup):
        raise InputError(
            path, column, f"{dup.nunique()} duplicated {what}, e.g. {dup.unique()[:3].tolist()}"
        )


def str_array(values) -> np.ndarray:
    """Object array of Python ``str``."""
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    return out


def cached_table(kind: str, path: PathLike, build: Callable[[Path], pd.DataFrame]) -> pd.DataFrame:
    """``build(path)``, cached on (kind, path, size, mtime); callers must not modify the result."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file", "does not exist")
    st = p.stat()
    key = (kind, str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    table = build(p)
    with _CACHE_LOCK:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = table
    return table
