"""A run's tidy tables and provenance as the report reads them; column access; the level.

Only empty cells and ``nan`` count as missing in the run's tables, so the numeric
and text views of a column are taken here, tolerant of absent columns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["ALPHA", "TABLES", "load_provenance", "load_tables"]

ALPHA = 0.05
"""FDR level at which the report calls a result significant."""

TABLES = (
    "correlations",
    "timecourse",
    "timecourse_clusters",
    "models",
    "predictions",
    "bridge_effects",
    "bridge_rsa",
    "bridge_decoding",
)
"""The tidy tables of a run, in report order (see the results contract)."""

_NA = ("", "nan", "NaN")


def load_tables(run_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Every ``run_dir/tables/*.csv`` as a DataFrame, keyed by file stem.

    Only empty cells (and ``nan``) count as missing, so that a label such as
    ``NA`` stays text. A zero-byte file gives an empty table.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> (run / "tables").mkdir()
    >>> _ = (run / "tables" / "models.csv").write_text("feature_set,model,pearson_r\\nNA,ridge,\\n")
    >>> t = load_tables(run)["models"]
    >>> t.feature_set[0], bool(np.isnan(t.pearson_r[0]))
    ('NA', True)
    """
    folder = Path(run_dir) / "tables"
    out: dict[str, pd.DataFrame] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.csv")):
        try:
            out[path.stem] = pd.read_csv(path, keep_default_na=False, na_values=list(_NA))
        except pd.errors.EmptyDataError:
            out[path.stem] = pd.DataFrame()
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise InputError(path, "csv", f"not a readable CSV table ({err})") from None
    return out


def load_provenance(run_dir: str | os.PathLike) -> dict:
    """``run_dir/provenance.json`` as a dict (empty when the file is absent).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> load_provenance(pathlib.Path(tempfile.mkdtemp()))
    {}
    """
    path = Path(run_dir) / "provenance.json"
    if not path.exists():
        return {}
    try:
        prov = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, "json", f"not valid JSON ({err})") from None
    if not isinstance(prov, dict):
        raise InputError(path, "json", "top level must be an object")
    return prov


def num_col(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce")


def text_col(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series("", index=df.index, dtype=object)
    return df[column].fillna("").astype(str)
