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

__all__ = ["ALPHA", "DERIVED", "TABLES", "derived_tables", "load_provenance", "load_tables"]

ALPHA = 0.05
"""FDR level at which the report calls a result significant."""

TABLES = (
    "correlations",
    "confounds",
    "variance_partition",
    "comparisons",
    "individuals",
    "timecourse",
    "latency",
    "timecourse_clusters",
    "models",
    "predictions",
    "bridge_effects",
    "bridge_rsa",
    "bridge_decoding",
)
"""The tidy tables of a run, in report order (see the results contract); ``confounds`` and
``individuals`` are views of ``correlations`` (:data:`DERIVED`)."""

DERIVED = {
    "confounds": "correlations.csv (rows with control covariates or within_concept, beside the "
    "plain r)",
    "individuals": "correlations.csv (subject pooled: random-effects group rows, with the "
    "individuals they pool)",
}
"""Report tables made from another table: name -> where their rows come from."""

_KEYS = ("dataset", "subject", "roi", "method", "how", "trials")

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


def derived_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The run's tables as the report shows them: ``correlations`` split by analysis.

    ``correlations`` keeps the plain correlations of the individuals (``control`` none,
    ``subject`` not ``pooled``); ``confounds`` puts, per ROI, the plain ``r`` beside the
    partial (``r_covariates``) and within-concept (``r_within_concept``) ones with their
    ``p_fdr``; ``individuals`` holds the random-effects group rows (``subject`` pooled)
    and the individual rows they pool (plain correlations only).

    Examples
    --------
    >>> corr = pd.DataFrame({"subject": ["s1", "s1", "s2", "pooled"], "roi": "V1",
    ...     "control": ["none", "covariates", "none", "none"], "r": [0.3, 0.05, 0.2, 0.25],
    ...     "p_fdr": [0.01, 0.5, 0.02, 0.1]})
    >>> out = derived_tables({"correlations": corr})
    >>> len(out["correlations"]), out["confounds"][["subject", "r", "r_covariates"]].values.tolist()
    (2, [['s1', 0.3, 0.05]])
    >>> out["individuals"].subject.tolist()
    ['s1', 's2', 'pooled']
    """
    corr = tables.get("correlations")
    if corr is None or corr.empty or "control" not in corr and "subject" not in corr:
        return dict(tables)
    out = dict(tables)
    control = text_col(corr, "control").replace("", "none")
    pooled = text_col(corr, "subject") == "pooled"
    out["correlations"] = corr.loc[(control == "none") & ~pooled]
    extra = corr.loc[control != "none"]
    if not extra.empty:
        keys = [k for k in _KEYS if k in corr]
        wide = corr.loc[control == "none", keys + ["r", "p_fdr"]]
        for name in dict.fromkeys(control.loc[extra.index]):
            part = corr.loc[control == name]
            cols = ["r", "ci_low", "ci_high", "p_fdr"]
            more = [c for c in ("covariates", "covariates_matched", "covariates_missing",
                                "n_concepts", "n") if c in part and part[c].notna().any()]  # fmt: skip
            part = part[keys + [c for c in cols if c in part] + more]
            part = part.rename(columns={c: f"{c}_{name}" for c in cols + more
                                        if not c.startswith("covariates")})  # fmt: skip
            wide = wide.merge(part, on=keys, how="right")
        families = extra.drop_duplicates("control")[["control", "p_family"]] if "p_family" in extra else None
        wide.attrs["families"] = (
            dict(zip(families["control"], families["p_family"], strict=True)) if families is not None else {}
        )
        out["confounds"] = wide.dropna(axis=1, how="all")
    if pooled.any():
        keys = [k for k in ("dataset", "roi", "method", "how", "trials") if k in corr]
        plain = corr.loc[control == "none"]
        groups = plain.loc[text_col(plain, "subject") == "pooled", keys].drop_duplicates()
        out["individuals"] = plain.merge(groups, on=keys, how="inner") if keys else plain
    return out
