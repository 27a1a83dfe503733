"""One self-contained HTML report of a pipeline run.

:func:`write_report` reads whatever tidy tables a run wrote (``RUN/tables/*.csv``)
and its ``RUN/provenance.json`` (when present), draws the figures with
:mod:`memxr.plots` into ``RUN/figures/*.png`` and writes ``RUN/report.html``: a
single file with the figures embedded as base64 PNG data URIs, the tables as
compact HTML, inline CSS and no external resource, so it can be mailed as is.

The report holds a run summary (datasets, subjects, spec name and hash, memxr
version, date), key findings written from the tables, one section per analysis
(figure and table), methods notes and the provenance (inputs with checksums).
Every piece of text that comes from a table or from the provenance is escaped.

Examples
--------
>>> import pandas as pd, pathlib, tempfile
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> (run / "tables").mkdir()
>>> pd.DataFrame({"dataset": "things-fmri", "subject": "sub-01", "roi": ["V1", "IT"],
...               "method": "pearson", "how": "mean", "r": [0.01, 0.32], "p": [0.8, 0.001],
...               "ci_low": [-0.1, 0.2], "ci_high": [0.1, 0.4], "p_fdr": [0.8, 0.002],
...               "n": 200}).to_csv(run / "tables" / "correlations.csv", index=False)
>>> path = write_report(run, dpi=40)
>>> html = path.read_text()
>>> path.name, html.count("data:image/png;base64,")
('report.html', 1)
>>> "FDR-significant memorability correlations in IT" in html
True
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import plots
from ._version import __version__
from .errors import InputError

__all__ = ["figures", "key_findings", "load_provenance", "load_tables", "write_report"]

logger = logging.getLogger(__name__)

TABLES = (
    "correlations",
    "timecourse",
    "models",
    "predictions",
    "bridge_effects",
    "bridge_rsa",
    "bridge_decoding",
)
"""The tidy tables of a run, in report order (see the results contract)."""

ALPHA = 0.05
_MAX_ROWS = 200
_MAX_LIST = 8
_NA = ("", "nan", "NaN")


# ---------------------------------------------------------------------- inputs


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


def _run_dir(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(path, "run_dir", "no such run directory")
    return path


# ---------------------------------------------------------------------- figures


_UNIT = ("dataset", "subject")


def _best_regressors(models: pd.DataFrame | None) -> pd.DataFrame:
    """Per (dataset, subject): the regressor and feature set with the highest ``pearson_r``.

    Concept-grouped rows are preferred when the table has them (random-split scores
    are optimistic).
    """
    needed = {"feature_set", "model", "pearson_r"}
    if models is None or models.empty or not needed <= set(models):
        return pd.DataFrame()
    reg = models.assign(_score=_num(models, "pearson_r"))
    if "kind" in reg:
        reg = reg.loc[_text(reg, "kind") == "regressor"]
    if "cv" in reg and (_text(reg, "cv") == "grouped").any():
        reg = reg.loc[_text(reg, "cv") == "grouped"]
    reg = reg.loc[np.isfinite(reg["_score"])]
    if reg.empty:
        return reg
    keys = [k for k in _UNIT if k in reg]
    best = reg.sort_values("_score", ascending=False, kind="stable")
    best = best.drop_duplicates(keys) if keys else best.iloc[:1]
    return best[keys + ["feature_set", "model"]].astype(str)


def _rows_in(df: pd.DataFrame, other: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows of ``df`` whose ``keys`` (as text) occur in ``other``."""
    wanted = other[list(keys)].astype(str).drop_duplicates()
    merged = df[list(keys)].astype(str).merge(wanted, how="left", indicator=True)
    return (merged["_merge"] == "both").to_numpy()


def _prediction_figure(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Predictions of each subject's best regressor (all predictions when that is unknown)."""
    pred = tables["predictions"]
    models = tables.get("models")
    keys = [k for k in (*_UNIT, "feature_set", "model") if k in pred]
    if models is None or not {"feature_set", "model"} <= set(keys) <= set(models):
        return plots.prediction_scatter(pred)
    best = _best_regressors(models.loc[_rows_in(models, pred, keys)])  # with predictions
    chosen = _rows_in(pred, best, keys) if not best.empty else np.zeros(len(pred), bool)
    return plots.prediction_scatter(pred.loc[chosen] if chosen.any() else pred)


_FIGURES: dict[str, tuple[str, Callable[[Mapping[str, pd.DataFrame]], Figure]]] = {
    "correlations": ("correlations", lambda t: plots.roi_correlation_bars(t["correlations"])),
    "timecourse": ("timecourse", lambda t: plots.timecourses(t["timecourse"])),
    "models": ("models", lambda t: plots.model_comparison(t["models"])),
    "predictions": ("predictions", _prediction_figure),
    "bridge_effects": (
        "bridge_effects",
        lambda t: plots.cross_species_effects(t["bridge_effects"]),
    ),
    "bridge_rsa": ("bridge_rsa", lambda t: plots.cross_species_matrix(t["bridge_rsa"])),
}
"""Figure name -> (table it needs, builder)."""


def _draw(name: str, build: Callable, tables: Mapping[str, pd.DataFrame]) -> Figure:
    """The figure, or one that names the error (a report still comes out)."""
    try:
        return build(tables)
    except Exception as err:  # one bad table must not lose the whole report
        logger.warning("figure %s failed: %s: %s", name, type(err).__name__, err)
        return plots.no_data_figure(name, f"figure failed: {type(err).__name__}: {err}")


def figures(
    run_dir: str | os.PathLike,
    *,
    dpi: int = 110,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """Draw the figures of a run and save them as ``run_dir/figures/<name>.png``.

    One figure per table present: ``correlations``, ``timecourse``, ``models``,
    ``predictions`` (the best regressor of ``models`` when known),
    ``bridge_effects``, ``bridge_rsa``.

    Parameters
    ----------
    run_dir : path
        The run folder (with ``tables/``).
    dpi : int
        Resolution of the PNG files.
    tables : dict of DataFrame, optional
        Tables already loaded with :func:`load_tables` (read from ``run_dir`` otherwise).

    Returns
    -------
    dict of str to Path
        Figure name -> PNG path, in report order.

    Examples
    --------
    >>> import pandas as pd, pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> (run / "tables").mkdir()
    >>> pd.DataFrame({"roi": ["IT"], "r": [0.3]}).to_csv(run / "tables" / "correlations.csv")
    >>> paths = figures(run, dpi=40)
    >>> list(paths), paths["correlations"].read_bytes()[:4]
    (['correlations'], b'\\x89PNG')
    """
    run = _run_dir(run_dir)
    tables = load_tables(run) if tables is None else tables
    folder = run / "figures"
    out: dict[str, Path] = {}
    for name, (table, build) in _FIGURES.items():
        if table not in tables:
            continue
        if not out:
            folder.mkdir(parents=True, exist_ok=True)
        fig = _draw(name, build, tables)
        path = folder / f"{name}.png"
        fig.savefig(path, format="png", dpi=dpi, metadata={"Software": f"memxr {__version__}"})
        out[name] = path
    return out


# ---------------------------------------------------------------------- formatting

_P_COLUMNS = re.compile(r"^(p|p_fdr|chance_p|p_.*|.*_p)$")
_INT_COLUMNS = {
    "size",
    "n",
    "n_channels",
    "n_stimuli",
    "n_folds",
    "n_items",
    "n_dropped",
    "n_permutations",
}


def _fmt(value: object, column: str = "") -> str:
    """Compact text of a table cell: 3 decimals, p-values in scientific notation when tiny.

    Examples
    --------
    >>> [_fmt(v, c) for v, c in [(0.31234, "r"), (0.00002, "p_fdr"), (120.0, "n"),
    ...                          (float("nan"), "r"), (125.0, "time"), ("IT", "roi")]]
    ['0.312', '2.0e-05', '120', '–', '125', 'IT']
    """
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        if column in _INT_COLUMNS or (column.endswith("time") and v.is_integer()):
            return f"{v:.0f}" if v.is_integer() else f"{v:g}"
        if _P_COLUMNS.match(column) and 0 < v < 0.001:
            return f"{v:.1e}"
        if abs(v) >= 1000:
            return f"{v:.0f}"
        return f"{v:.3f}"
    return str(value)


def _fmt_p(p: float) -> str:
    return f"{p:.1e}" if 0 < p < 0.001 else f"{p:.3f}"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table_html(
    df: pd.DataFrame, columns: Sequence[str] | None = None, max_rows: int = _MAX_ROWS
) -> str:
    """A compact, escaped HTML table (significant rows highlighted when ``p_fdr`` is there)."""
    if df is None or df.empty:
        return '<p class="note">The table is empty.</p>'
    cols = [c for c in (columns or df.columns) if c in df.columns]
    shown = df.iloc[:max_rows]
    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    body = []
    p_fdr = pd.to_numeric(shown["p_fdr"], errors="coerce") if "p_fdr" in shown else None
    for i, (_, row) in enumerate(shown.iterrows()):
        sig = p_fdr is not None and bool(p_fdr.iloc[i] < ALPHA)
        cells = []
        for c in cols:
            v = row[c]
            numeric = isinstance(v, int | float | np.integer | np.floating)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{_esc(_fmt(v, c))}</td>")
        row_class = ' class="sig"' if sig else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    note = ""
    if len(df) > max_rows:
        note = (
            f'<p class="note">First {max_rows} of {len(df)} rows; the full table is in the CSV.</p>'
        )
    return (
        f'<div class="tbl"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def _with_marks(df: pd.DataFrame) -> pd.DataFrame:
    """Add a ``sig`` column of ``*`` marks from ``p_fdr``."""
    if "p_fdr" not in df or "sig" in df:
        return df
    out = df.copy()
    marks = [plots.stars(p) for p in pd.to_numeric(df["p_fdr"], errors="coerce")]
    out.insert(list(df.columns).index("p_fdr") + 1, "sig", marks)
    return out


def _num(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce")


def _text(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series("", index=df.index, dtype=object)
    return df[column].fillna("").astype(str)


def _unit(df: pd.DataFrame, keys: Sequence[str] = ("dataset", "subject")) -> list:
    """(label, rows) per combination of the ``keys`` columns present."""
    keys = [k for k in keys if k in df]
    if not keys:
        return [("", df)]
    out = []
    for key, rows in df.groupby([_text(df, k) for k in keys], sort=True):
        parts = key if isinstance(key, tuple) else (key,)
        out.append((" ".join(p for p in parts if p), rows))
    return out


def _primary_method(df: pd.DataFrame) -> pd.DataFrame:
    """The Pearson rows when the table has several methods (else the first method)."""
    if "method" not in df or df.empty:
        return df
    methods = list(dict.fromkeys(_text(df, "method")))
    keep = "pearson" if "pearson" in methods else methods[0]
    return df.loc[_text(df, "method") == keep]


def _lead(label: str) -> str:
    """``"label: "`` (nothing when the table names no dataset or subject)."""
    return f"{label}: " if label else ""


def _listing(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) > _MAX_LIST:
        return ", ".join(items[:_MAX_LIST]) + f" and {len(items) - _MAX_LIST} more"
    return ", ".join(items)


# ---------------------------------------------------------------------- key findings


def _roi_label(row: pd.Series, several_how: bool) -> str:
    return f"{row['roi']} [{row['how']}]" if several_how else str(row["roi"])


def _findings_correlations(df: pd.DataFrame) -> list[str]:
    if df.empty or not {"roi", "r"} <= set(df):
        return []
    out = []
    several_how = _text(df, "how").nunique() > 1
    per_dataset: dict[str, list[set[str]]] = {}
    for label, rows in _unit(df):
        rows = rows.assign(_r=_num(rows, "r"), _p=_num(rows, "p_fdr"))
        prim = _primary_method(rows)
        sig = prim.loc[prim["_p"] < ALPHA].sort_values("_r", key=np.abs, ascending=False)
        other = rows.loc[(rows["_p"] < ALPHA) & ~rows.index.isin(prim.index)]
        dataset = str(rows["dataset"].iloc[0]) if "dataset" in rows else ""
        names = [_roi_label(r, several_how) for _, r in sig.iterrows()]
        per_dataset.setdefault(dataset, []).append(set(names))
        method = f"{str(prim['method'].iloc[0]).capitalize()} r" if "method" in prim else "r"
        if names:
            parts = [
                f"{_roi_label(r, several_how)} ({method} = {r['_r']:.2f}, "
                f"p_fdr = {_fmt_p(r['_p'])})"
                for _, r in sig.iterrows()
            ]
            also = sorted(set(_roi_label(r, several_how) for _, r in other.iterrows()) - set(names))
            extra = f"; significant with another method only: {_listing(also)}" if also else ""
            found = f"FDR-significant memorability correlations in {_listing(parts)}"
            out.append(f"{_lead(label)}{found}{extra}.")
        elif np.isfinite(prim["_r"]).any():
            best = prim.loc[prim["_r"].abs().idxmax()]
            pv = f", p_fdr = {_fmt_p(best['_p'])}" if np.isfinite(best["_p"]) else ""
            strongest = f"{_roi_label(best, several_how)}, {method} = {best['_r']:.2f}{pv}"
            verdict = (
                f"no ROI reached p_fdr < {ALPHA}"
                if np.isfinite(rows["_p"]).any()
                else "no FDR-adjusted p-values in the table"
            )
            out.append(f"{_lead(label)}{verdict} (strongest: {strongest}).")
    for dataset, sets in per_dataset.items():
        if len(sets) > 1:
            common = sorted(set.intersection(*sets))
            where = f"{dataset}: " if dataset else ""
            out.append(
                f"{where}significant in all {len(sets)} subjects: {_listing(common)}."
                if common
                else f"{where}no ROI was significant in all {len(sets)} subjects."
            )
    return out


def _is_it(roi: str) -> bool:
    return re.search(r"(^|[^A-Za-z])IT([^A-Za-z]|$)", roi) is not None


def _peaks(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, subject, roi, method): peak r, its time, first and number of FDR bins."""
    if df.empty or not {"roi", "time", "r"} <= set(df):
        return pd.DataFrame()
    work = df.assign(_t=_num(df, "time"), _r=_num(df, "r"), _p=_num(df, "p_fdr"))
    keys = [k for k in ("dataset", "subject", "roi", "method") if k in work]
    rows = []
    for key, g in work.groupby([_text(work, k) for k in keys], sort=False):
        g = g.loc[np.isfinite(g["_r"])]
        if g.empty:
            continue
        peak = g.loc[g["_r"].idxmax()]
        sig = g.loc[g["_p"] < ALPHA, "_t"]
        rows.append(
            dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            | {
                "peak_time": peak["_t"],
                "peak_r": peak["_r"],
                "p_fdr_at_peak": peak["_p"],
                "first_significant_time": sig.min() if sig.size else np.nan,
                "n_significant_bins": int(sig.size),
                "n_bins": int(len(g)),
            }
        )
    return pd.DataFrame(rows)


def _peak_text(row: pd.Series) -> str:
    onset = (
        f", FDR-significant from {row['first_significant_time']:g} ms"
        if np.isfinite(row["first_significant_time"])
        else ", no FDR-significant bin"
    )
    return f"at {row['peak_time']:g} ms (r = {row['peak_r']:.2f}{onset})"


def _findings_timecourse(df: pd.DataFrame) -> list[str]:
    peaks = _peaks(df)
    if peaks.empty:
        return []
    out = []
    for label, rows in _unit(_primary_method(peaks)):
        it = rows["roi"].astype(str).map(_is_it)
        for _, row in rows.loc[it].iterrows():
            out.append(f"{_lead(label)}the {row['roi']} effect peaks {_peak_text(row)}.")
        rest = [f"{row['roi']} {_peak_text(row)}" for _, row in rows.loc[~it].iterrows()]
        if rest:
            out.append(f"{_lead(label)}peaks of the other areas: {_listing(rest)}.")
    return out


def _model_scores(df: pd.DataFrame) -> pd.DataFrame:
    metric = _text(df, "metric")
    if "metric" not in df:
        metric = _text(df, "kind").map({"classifier": "roc_auc"}).replace("", "pearson_r")
        metric = metric.fillna("pearson_r")
    score = pd.Series(np.nan, index=df.index, dtype=float)
    for name in dict.fromkeys(metric):
        if name in df:
            mask = metric == name
            score[mask] = _num(df.loc[mask], name)
    return df.assign(_metric=metric, _score=score)


def _findings_models(df: pd.DataFrame) -> list[str]:
    if df.empty or not {"feature_set", "model"} <= set(df):
        return []
    work = _model_scores(df)
    work = work.loc[np.isfinite(work["_score"])]
    out = []
    for label, rows in _unit(work):
        for metric, part in rows.groupby("_metric", sort=False):
            grouped = part.loc[_text(part, "cv") != "random"] if "cv" in part else part
            pool = grouped if not grouped.empty else part
            best = pool.loc[pool["_score"].idxmax()]
            out.append(_lead(label) + _describe_model(best, metric, part))
    return out


def _describe_model(best: pd.Series, metric: str, part: pd.DataFrame) -> str:
    name = {"pearson_r": "Pearson r", "roc_auc": "ROC AUC", "accuracy": "accuracy"}.get(
        metric, metric
    )
    cv = str(best.get("cv", "")) if pd.notna(best.get("cv")) else ""
    cv_text = {"grouped": "concept-grouped CV", "random": "random-split CV"}.get(cv, f"cv: {cv}")
    when = ""
    if "time" in best and np.isfinite(pd.to_numeric(best["time"], errors="coerce")):
        when = f" at {float(best['time']):g} ms"
    text = (
        f"best model {best['model']} on {best['feature_set']}"
        + (f" ({cv_text})" if cv else "")
        + f"{when}: "
        f"{name} = {best['_score']:.3f}"
    )
    chance = pd.to_numeric(best.get("chance_mean"), errors="coerce")
    if np.isfinite(chance):
        text += f" vs permutation chance {chance:.3f}"
        p = pd.to_numeric(best.get("chance_p"), errors="coerce")
        if np.isfinite(p):
            text += f" (p = {_fmt_p(float(p))})"
    frac = pd.to_numeric(best.get("fraction_of_ceiling"), errors="coerce")
    ceiling = pd.to_numeric(best.get("noise_ceiling"), errors="coerce")
    if np.isfinite(frac) and np.isfinite(ceiling):
        text += f"; {100 * frac:.0f}% of the noise ceiling ({ceiling:.2f})"
    if cv == "grouped" and "cv" in part:
        same = part.loc[
            (_text(part, "cv") == "random")
            & (_text(part, "model") == str(best["model"]))
            & (_text(part, "feature_set") == str(best["feature_set"]))
        ]
        if not same.empty:
            text += f"; random-split CV gives {same['_score'].max():.3f}"
    return text + "."


def _findings_bridge(effects: pd.DataFrame, rsa: pd.DataFrame, dec: pd.DataFrame) -> list[str]:
    out = []
    if not effects.empty and {"roi", "r"} <= set(effects):
        for pair, rows in _unit(effects, ("pair",)):
            rows = _primary_method(rows)
            sig = rows.loc[_num(rows, "p_fdr") < ALPHA]
            n = _num(rows, "n").max()
            parts = []
            for species in dict.fromkeys(_text(rows, "species")):
                names = list(dict.fromkeys(_text(sig.loc[_text(sig, "species") == species], "roi")))
                parts.append(f"{species or 'areas'}: {_listing(names) if names else 'none'}")
            shared = f" on {n:.0f} shared stimuli" if np.isfinite(n) else ""
            out.append(
                f"{pair or 'cross-species'}{shared}: significant memorability effects "
                f"(p_fdr < {ALPHA}) in " + "; ".join(parts) + "."
            )
    if not rsa.empty and {"human_roi", "monkey_area", "rsa_r"} <= set(rsa):
        for label, rows in _unit(rsa, ("pair", "level")):
            r = _num(rows, "rsa_r")
            if not np.isfinite(r).any():
                continue
            best = rows.loc[r.idxmax()]
            n_sig = int((_num(rows, "p_fdr") < ALPHA).sum())
            match = f"{best['human_roi']} ~ {best['monkey_area']}"
            out.append(
                f"{_lead(f'RSA {label}'.strip())}strongest match {match} "
                f"(rsa r = {float(r.max()):.2f}); {n_sig} of {len(rows)} ROI-area pairs "
                "FDR-significant."
            )
    if not dec.empty and "pearson_r" in dec:
        r = _num(dec, "pearson_r")
        if np.isfinite(r).any():
            best = dec.loc[r.idxmax()]
            p = pd.to_numeric(best.get("p"), errors="coerce")
            pv = f", p = {_fmt_p(float(p))}" if np.isfinite(p) else ""
            out.append(
                f"Cross-species decoding: best {best.get('direction', 'direction')} "
                f"(r = {float(r.max()):.2f}{pv})."
            )
    return out


def key_findings(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Plain-text sentences summarizing the tables (escape them before writing HTML).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"subject": "sub-01", "roi": ["V1", "IT"], "method": "pearson",
    ...                    "r": [0.01, 0.3], "p_fdr": [0.9, 0.004]})
    >>> key_findings({"correlations": df})
    ['sub-01: FDR-significant memorability correlations in IT (Pearson r = 0.30, p_fdr = 0.004).']
    """
    return [sentence for _, sentences in _findings(tables) for sentence in sentences]


def _findings(tables: Mapping[str, pd.DataFrame]) -> list[tuple[str, list[str]]]:
    """(topic, sentences) for each analysis with something to say."""
    empty = pd.DataFrame()
    topics = [
        ("ROI correlations", _findings_correlations(tables.get("correlations", empty))),
        ("Time courses", _findings_timecourse(tables.get("timecourse", empty))),
        ("Models", _findings_models(tables.get("models", empty))),
        (
            "Human and macaque",
            _findings_bridge(
                tables.get("bridge_effects", empty),
                tables.get("bridge_rsa", empty),
                tables.get("bridge_decoding", empty),
            ),
        ),
    ]
    return [(topic, sentences) for topic, sentences in topics if sentences]


# ---------------------------------------------------------------------- provenance

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _input_records(obj: object, prefix: str = "") -> list[dict]:
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
                out += _input_records(value, prefix if _looks_like_record(value) else sub)
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, str):
                out.append(
                    {"name": f"{prefix}/{item}" if prefix else item, "size": None, "sha256": None}
                )
            else:
                out += _input_records(item, prefix)
    return out


def _looks_like_record(value: object) -> bool:
    return (
        isinstance(value, Mapping)
        and "sha256" in value
        and ("name" in value or "path" in value or "file" in value)
    )


def _inputs(prov: Mapping) -> list[dict]:
    for key in ("inputs", "input_checksums", "checksums", "input_files"):
        if key in prov:
            value = prov[key]
            if isinstance(value, str):  # a JSON list, as in the cubes' ``inputs`` attribute
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    return [{"name": value, "size": None, "sha256": None}]
            return _input_records(value)
    return []


def _spec(prov: Mapping) -> Mapping:
    spec = prov.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _versions(prov: Mapping) -> dict[str, str]:
    versions = prov.get("versions")
    out = {str(k): str(v) for k, v in versions.items()} if isinstance(versions, Mapping) else {}
    for key, value in prov.items():
        if key.endswith("_version") and isinstance(value, str | int | float):
            out.setdefault(key.removesuffix("_version"), str(value))
    return out


def _summary(prov: Mapping, tables: Mapping[str, pd.DataFrame]) -> list[tuple[str, str]]:
    """(field, value) rows of the run summary (plain text)."""
    spec = _spec(prov)
    name = spec.get("name") or prov.get("spec_name") or prov.get("name")
    spec_hash = prov.get("spec_hash") or spec.get("hash")
    versions = _versions(prov)
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
    rows.append(("report date", _now()))
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
            for d, s in zip(_text(df, "dataset"), _text(df, "subject"), strict=True):
                if s:
                    subjects.setdefault(d or "?", set()).add(s)
        if "pair" in df:
            pairs.update(p for p in _text(df, "pair") if p)
    out = {}
    if subjects:
        out["datasets"] = "; ".join(
            f"{d} ({', '.join(sorted(s))})" for d, s in sorted(subjects.items())
        )
    if pairs:
        out["cross-species pairs"] = ", ".join(sorted(pairs))
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------- sections

_SECTIONS = {
    "correlations": (
        "ROI responses and memorability",
        "Per ROI, the stimulus-wise response (ROI reduction given in column how) is correlated "
        "with the THINGS memorability score across stimuli. Bars: Pearson and Spearman r with "
        "bootstrap confidence intervals; dashed segments: noise ceiling of the ROI; marks: "
        "BH-FDR adjusted p (* < .05, ** < .01, *** < .001). Highlighted rows are FDR-significant.",
        (
            "dataset",
            "subject",
            "roi",
            "method",
            "how",
            "r",
            "ci_low",
            "ci_high",
            "p",
            "p_fdr",
            "sig",
            "n",
            "n_channels",
            "noise_ceiling",
        ),
    ),
    "timecourse": (
        "Time course of the memorability effect",
        "Correlation with memorability in each time bin per area; bands are bootstrap "
        "confidence intervals, dots mark FDR-significant bins. The table gives, per line, the "
        "peak and the first FDR-significant bin (the full table is in the CSV).",
        None,
    ),
    "models": (
        "Memorability models",
        "Cross-validated predictions of memorability from neural features. Bars: the score "
        "named in column metric; black segments: mean of the permutation null (grey band: its "
        "interval when recorded); dashed segments: noise ceiling. Hatched bars use random-split "
        "CV (shown for comparison with concept-grouped CV).",
        (
            "dataset",
            "subject",
            "feature_set",
            "model",
            "kind",
            "cv",
            "time",
            "metric",
            "score",
            "chance_mean",
            "chance_p",
            "noise_ceiling",
            "fraction_of_ceiling",
            "pearson_r",
            "spearman_rho",
            "r2",
            "accuracy",
            "roc_auc",
            "n_stimuli",
            "n_folds",
            "n_permutations",
        ),
    ),
    "predictions": (
        "Out-of-fold predictions",
        "Predicted against observed memorability for each held-out stimulus (dotted: identity, "
        "solid: least-squares fit). The figure shows, for each subject, the regressor with the "
        "best Pearson r under concept-grouped CV; the table summarizes every model.",
        None,
    ),
    "bridge_effects": (
        "Human and macaque on shared stimuli",
        "Memorability correlations of human ROIs and monkey areas computed on the same shared "
        "stimuli for each human-monkey pair.",
        None,
    ),
    "bridge_rsa": (
        "Cross-species representational similarity",
        "Correlation between the representational dissimilarity matrices of each human ROI and "
        "monkey area over the shared images (or concepts); marks from BH-FDR adjusted p.",
        None,
    ),
    "bridge_decoding": (
        "Cross-species decoding",
        "Memorability decoders trained on one species and tested on the other.",
        None,
    ),
}


def _section_table(name: str, df: pd.DataFrame) -> str:
    if df.empty:
        return _table_html(df)
    if name == "timecourse":
        peaks = _peaks(df)
        return _table_html(peaks) if not peaks.empty else _table_html(df)
    if name == "predictions":
        return _table_html(_prediction_summary(df))
    if name == "models":
        scored = _model_scores(df).rename(columns={"_score": "score"})
        return _table_html(scored, _SECTIONS[name][2])
    columns = _SECTIONS[name][2] if name in _SECTIONS else None
    return _table_html(_with_marks(df), columns)


def _prediction_summary(df: pd.DataFrame) -> pd.DataFrame:
    if not {"observed", "predicted"} <= set(df):
        return df
    keys = [k for k in ("dataset", "subject", "feature_set", "model") if k in df]
    work = df.assign(_o=_num(df, "observed"), _p=_num(df, "predicted"))
    rows = []
    groups = work.groupby([_text(work, k) for k in keys], sort=False) if keys else [((), work)]
    for key, g in groups:
        g = g.loc[np.isfinite(g["_o"]) & np.isfinite(g["_p"])]
        ok = len(g) >= 3 and np.ptp(g["_o"]) > 0 and np.ptp(g["_p"]) > 0
        r = float(np.corrcoef(g["_o"], g["_p"])[0, 1]) if ok else np.nan
        rows.append(
            dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            | {"n": len(g), "pearson_r": r}
        )
    return pd.DataFrame(rows)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _sections(tables: Mapping[str, pd.DataFrame], pngs: Mapping[str, Path]) -> str:
    parts = []
    names = [t for t in TABLES if t in tables] + sorted(t for t in tables if t not in TABLES)
    for name in names:
        heading, text, _ = _SECTIONS.get(name, (name.replace("_", " "), "", None))
        fig = _img(pngs[name], heading) if name in pngs else ""
        parts.append(
            f'<section id="{_esc(name)}"><h2>{_esc(heading)}</h2>'
            + (f"<p>{_esc(text)}</p>" if text else "")
            + (f"<figure>{fig}</figure>" if fig else "")
            + f'<p class="note">Table: tables/{_esc(name)}.csv</p>'
            + _section_table(name, tables[name])
            + "</section>"
        )
    return "\n".join(parts)


def _methods(tables: Mapping[str, pd.DataFrame], prov: Mapping) -> list[str]:
    """Methods notes for the analyses present (plain text)."""
    notes = []
    if any(t in tables for t in ("correlations", "timecourse", "bridge_effects")):
        notes.append(
            "Correlations: Pearson r is reported together with Spearman's rank correlation, "
            "which is robust to outliers and to monotone non-linear relations. p-values are "
            "two-sided permutation p-values, (1 + #{|r_perm| >= |r|}) / (1 + P); confidence "
            "intervals are percentile bootstrap intervals. When a grouping (e.g. THINGS "
            "concept) is set, permutations and bootstrap resample whole concepts, since "
            "images of one concept share memorability."
        )
        notes.append(
            "Multiple comparisons: p_fdr is the Benjamini-Hochberg false discovery rate "
            "adjustment over the ROIs (and time bins) of one analysis; marks * < .05, "
            "** < .01, *** < .001 on p_fdr."
        )
    if "correlations" in tables or "models" in tables:
        notes.append(
            "Noise ceiling: ceiling_r is the square root of the Spearman-Brown corrected "
            "split-half reliability of the ROI response across repeated presentations, the "
            "highest correlation any predictor can reach with it."
        )
    if "models" in tables:
        models = tables["models"]
        n_perm = _num(models, "n_permutations").max() if not models.empty else np.nan
        n_folds = _num(models, "n_folds").max() if not models.empty else np.nan
        perm = f"{n_perm:.0f} permutations" if np.isfinite(n_perm) else "permutations"
        folds = f"{n_folds:.0f}-fold " if np.isfinite(n_folds) else ""
        notes.append(
            f"Models: {folds}cross-validation grouped by THINGS concept (all images of a "
            "concept fall in the same fold), so that a model cannot score by recognising "
            "concepts seen in training; random-split CV, where reported (cv = random), is "
            "optimistic for that reason. Chance levels: the whole cross-validated pipeline is "
            f"refit on {perm} of memorability; chance_mean is the mean null score and "
            "chance_p = (1 + #{null >= observed}) / (1 + P). Classifiers predict high vs low "
            "memorability (threshold from the training folds) and are scored by ROC AUC."
        )
    if any(t.startswith("bridge") for t in tables):
        notes.append(
            "Cross-species analyses use only the stimuli shown to both the human subject and "
            "the monkey of each pair, so every row of a pair has the same n."
        )
    spec = _spec(prov)
    if spec:
        notes.append("All parameters are in the spec recorded under Provenance.")
    return notes


# ---------------------------------------------------------------------- page

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1100px;padding:1.5em 2em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;border-bottom:1px solid #ccc;
padding-bottom:.2em;margin-top:1.8em}h3{font-size:1.05em}
.meta{color:#666;font-size:.9em;margin-top:0}
.note{color:#666;font-size:.85em}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}
.tbl{max-height:420px;overflow:auto;border:1px solid #ddd;margin:.5em 0}
table{border-collapse:collapse;font-size:.8em;width:100%}
th,td{padding:2px 7px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
th{background:#f4f4f4;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.sig td{background:#fff6d6}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:.2em 1.2em}
dl.summary dt{font-weight:600}dl.summary dd{margin:0}
ul.findings li{margin-bottom:.35em}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em;max-height:400px}
code{font-size:.9em}
"""


def _steps(prov: Mapping) -> pd.DataFrame:
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


def _provenance_html(prov: Mapping) -> str:
    if not prov:
        return '<p class="note">No provenance.json in this run folder.</p>'
    parts = []
    records = _inputs(prov)
    if records:
        parts.append("<h3>Inputs</h3>" + _table_html(pd.DataFrame(records), max_rows=10_000))
    outputs = _input_records(prov.get("tables", {}))
    if outputs:
        parts.append("<h3>Output tables</h3>" + _table_html(pd.DataFrame(outputs)))
    steps = _steps(prov)
    if not steps.empty:
        parts.append("<h3>Steps</h3>" + _table_html(steps))
    versions = _versions(prov)
    if versions:
        parts.append(
            "<h3>Versions</h3>"
            + _table_html(
                pd.DataFrame({"package": list(versions), "version": list(versions.values())})
            )
        )
    text = json.dumps(prov, indent=2, sort_keys=True, default=str)
    parts.append(f"<details><summary>provenance.json</summary><pre>{_esc(text)}</pre></details>")
    return "\n".join(parts)


def _page(
    title: str, prov: Mapping, tables: Mapping[str, pd.DataFrame], pngs: Mapping[str, Path]
) -> str:
    summary = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in _summary(prov, tables))
    findings_html = (
        "".join(
            f'<h3>{_esc(topic)}</h3><ul class="findings">'
            + "".join(f"<li>{_esc(f)}</li>" for f in sentences)
            + "</ul>"
            for topic, sentences in _findings(tables)
        )
        or '<p class="note">No findings: the run has no result rows to summarize.</p>'
    )
    methods = "".join(f"<li>{_esc(m)}</li>" for m in _methods(tables, prov))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_esc(title)}</h1>
<p class="meta">memxr {_esc(__version__)} · report written {_esc(_now())}</p>
<section id="summary"><h2>Run summary</h2><dl class="summary">{summary}</dl></section>
<section id="findings"><h2>Key findings</h2>{findings_html}</section>
{_sections(tables, pngs)}
<section id="methods"><h2>Methods notes</h2><ul>{methods}</ul></section>
<section id="provenance"><h2>Provenance</h2>{_provenance_html(prov)}</section>
</body>
</html>
"""


def _default_title(run: Path, prov: Mapping) -> str:
    name = _spec(prov).get("name") or prov.get("spec_name") or run.resolve().name
    return f"memxr report: {name}"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(run_dir: str | os.PathLike, title: str | None = None, *, dpi: int = 110) -> Path:
    """Write ``run_dir/report.html``: one self-contained page with figures, tables, provenance.

    Parameters
    ----------
    run_dir : path
        A run folder with ``tables/*.csv`` (any subset) and optionally ``provenance.json``.
    title : str, optional
        Page title (default ``"memxr report: <spec name or folder name>"``).
    dpi : int
        Resolution of the figures (also saved as ``run_dir/figures/*.png``).

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.

    Raises
    ------
    memxr.errors.InputError
        When ``run_dir`` is not a folder, or a table or ``provenance.json`` is unreadable.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> page = write_report(run, title="Empty run").read_text()
    >>> "<h1>Empty run</h1>" in page, "data:image/png" in page
    (True, False)
    """
    run = _run_dir(run_dir)
    tables = load_tables(run)
    prov = load_provenance(run)
    pngs = figures(run, dpi=dpi, tables=tables)
    page = _page(title or _default_title(run, prov), prov, tables, pngs)
    path = run / "report.html"
    _write_atomic(path, page)
    return path
