""":func:`write_report`: the run's tables and provenance -> figures and one ``report.html``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..errors import InputError
from ..provenance import __version__
from ..store.atomic import write_text
from . import plots
from .findings import findings_by_section
from .html import STYLE, esc, provenance_html
from .sections import methods_notes, sections_html
from .summary import now_text, run_summary, spec_of
from .tables import derived_tables, load_provenance, load_tables, num_col, text_col

__all__ = ["figures", "write_report"]

logger = logging.getLogger(__name__)

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
    reg = models.assign(_score=num_col(models, "pearson_r"))
    if "kind" in reg:
        reg = reg.loc[text_col(reg, "kind") == "regressor"]
    if "cv" in reg and (text_col(reg, "cv") == "grouped").any():
        reg = reg.loc[text_col(reg, "cv") == "grouped"]
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
    "individuals": ("individuals", lambda t: plots.forest_plot(t["individuals"])),
    "timecourse": (
        "timecourse",
        lambda t: plots.timecourses(t["timecourse"], t.get("latency")),
    ),
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

    One figure per table present: ``correlations``, ``individuals`` (a forest plot of the
    random-effects group rows), ``timecourse`` (with the onsets and peaks of ``latency``),
    ``models``, ``predictions`` (the best regressor of ``models`` when known),
    ``bridge_effects``, ``bridge_rsa``.

    Parameters
    ----------
    run_dir : path
        The run folder (with ``tables/``).
    dpi : int
        Resolution of the PNG files.
    tables : dict of DataFrame, optional
        Tables already loaded with :func:`load_tables` (read from ``run_dir`` otherwise; the
        views of :func:`memxr.report.tables.derived_tables` are made of them).

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
    tables = derived_tables(load_tables(run) if tables is None else dict(tables))
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


# ---------------------------------------------------------------------- page


def _page(
    title: str, prov: Mapping, tables: Mapping[str, pd.DataFrame], pngs: Mapping[str, Path]
) -> str:
    summary = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in run_summary(prov, tables))
    findings_html = (
        "".join(
            f'<h3>{esc(topic)}</h3><ul class="findings">'
            + "".join(f"<li>{esc(f)}</li>" for f in sentences)
            + "</ul>"
            for topic, sentences in findings_by_section(tables)
        )
        or '<p class="note">No findings: the run has no result rows to summarize.</p>'
    )
    methods = "".join(f"<li>{esc(m)}</li>" for m in methods_notes(tables, prov))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p class="meta">memxr {esc(__version__)} · report written {esc(now_text())}</p>
<section id="summary"><h2>Run summary</h2><dl class="summary">{summary}</dl></section>
<section id="findings"><h2>Key findings</h2>{findings_html}</section>
{sections_html(tables, pngs)}
<section id="methods"><h2>Methods notes</h2><ul>{methods}</ul></section>
<section id="provenance"><h2>Provenance</h2>{provenance_html(prov)}</section>
</body>
</html>
"""


def _default_title(run: Path, prov: Mapping) -> str:
    name = spec_of(prov).get("name") or prov.get("spec_name") or run.resolve().name
    return f"memxr report: {name}"


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
    tables = derived_tables(load_tables(run))
    prov = load_provenance(run)
    pngs = figures(run, dpi=dpi, tables=tables)
    page = _page(title or _default_title(run, prov), prov, tables, pngs)
    path = run / "report.html"
    write_text(path, page)
    return path
