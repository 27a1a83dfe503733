"""Figures of a pipeline run, drawn from its tidy result tables.

Every function takes a tidy :class:`pandas.DataFrame` in the layout of the run's
``tables/*.csv`` and returns a :class:`matplotlib.figure.Figure`. They are pure:
no file I/O, no global pyplot state (figures are built with the object-oriented
API, so nothing has to be closed and nothing is shown), and they never fail on
an empty table, missing optional columns, NaN values, one subject or many: a
table with nothing to draw gives a figure that says "no data".

Significance marks follow the run's convention on ``p_fdr``: ``*`` < 0.05,
``**`` < 0.01, ``***`` < 0.001.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"dataset": "things-fmri", "subject": "sub-01",
...                    "roi": ["V1", "IT", "V1", "IT"],
...                    "method": ["pearson", "pearson", "spearman", "spearman"],
...                    "r": [0.02, 0.30, 0.01, 0.28], "p_fdr": [0.6, 0.0004, 0.7, 0.002]})
>>> fig = roi_correlation_bars(df)
>>> len(fig.axes), len(fig.axes[0].patches)
(1, 4)
>>> sorted(t.get_text() for t in fig.axes[0].texts)
['**', '***']
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

# ----------------------------------------------------------------------
# Building blocks shared by the figures of :mod:`memxr.report.plots`.


SIG_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
"""Significance marks on ``p_fdr``: (threshold, mark), strictest first."""

_PANEL_KEYS = ("dataset", "subject", "trials")
"""One panel per recording and per set of trials (train single trials and test means are
never drawn together: their ceilings and noise differ)."""
_EXTRAS = ("noise ceiling", "permutation chance", "chance interval")
_LABELS = frozenset(
    ("dataset", "subject", "roi", "method", "how", "species", "pair", "level", "human_roi",
     "monkey_area", "feature_set", "model", "kind", "cv", "metric", "trials")
)  # fmt: skip


def stars(p: float | None) -> str:
    """Significance mark of an FDR-corrected p-value (``""`` when not significant or NaN).

    Examples
    --------
    >>> [stars(p) for p in (0.0005, 0.005, 0.03, 0.2, float("nan"), None)]
    ['***', '**', '*', '', '', '']
    """
    try:
        p = float(p)
    except (TypeError, ValueError):
        return ""
    for threshold, mark in SIG_LEVELS:
        if p < threshold:
            return mark
    return ""


def _txt(value: object) -> str:
    """Text for matplotlib: ``$`` escaped so that labels never switch to mathtext."""
    return str(value).replace("$", r"\$")


def _num(series: pd.Series | None, index: pd.Index) -> np.ndarray:
    """A float column (NaN where absent or not numeric)."""
    if series is None:
        return np.full(len(index), np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    return _num(df[name] if name in df else None, df.index)


def _unique(values: Iterable) -> list:
    """Distinct values in order of first appearance."""
    return list(dict.fromkeys(values))


def no_data_figure(title: str, detail: str = "") -> Figure:
    """A small figure that says "no data" (and why).

    Examples
    --------
    >>> fig = no_data_figure("Time courses", "empty table")
    >>> fig.axes[0].texts[0].get_text()
    'no data\\n(empty table)'
    """
    fig = Figure(figsize=(5.0, 2.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    msg = "no data" + (f"\n({detail})" if detail else "")
    ax.text(0.5, 0.5, _txt(msg), ha="center", va="center", fontsize=12, color="0.35")
    fig.suptitle(_txt(title))
    return fig


def _usable(
    df: pd.DataFrame | None, required: Sequence[str], values: Sequence[str], title: str
) -> pd.DataFrame | Figure:
    """The rows of ``df`` with finite ``values`` columns, or a "no data" figure."""
    if df is None or not isinstance(df, pd.DataFrame) or df.empty:
        return no_data_figure(title, "empty table")
    missing = [c for c in required if c not in df.columns]
    if missing:
        return no_data_figure(title, "missing columns: " + ", ".join(missing))
    out = df.copy()
    keep = np.ones(len(out), dtype=bool)
    for name in values:
        keep &= np.isfinite(_col(out, name))
    out = out.loc[keep]
    if out.empty:
        return no_data_figure(title, "all values are NaN")
    for name in out.columns:
        if out[name].dtype.kind == "O" or name in _LABELS:  # object, or pandas 3 "str"
            out[name] = out[name].astype(object).where(out[name].notna(), "").astype(str)
    return out


def _panels(df: pd.DataFrame, keys: Sequence[str] = _PANEL_KEYS) -> list[tuple[str, pd.DataFrame]]:
    """``(title, rows)`` per combination of the ``keys`` columns present (sorted)."""
    keys = [k for k in keys if k in df.columns]
    if not keys:
        return [("", df)]
    out = []
    for key, rows in df.groupby(keys, sort=True, dropna=False):
        parts = key if isinstance(key, tuple) else (key,)
        title = " · ".join(str(p) for p in parts if str(p) not in ("", "nan"))
        out.append((title, rows))
    return out


def _grid(n: int, panel: tuple[float, float], ncols_max: int = 3) -> tuple[Figure, list]:
    """A figure with ``n`` panels on a grid of at most ``ncols_max`` columns."""
    ncols = max(1, min(n, ncols_max))
    nrows = math.ceil(n / ncols)
    width = min(max(panel[0] * ncols, 6.4), 22.0)
    fig = Figure(figsize=(width, panel[1] * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, list(axes[:n])


def _ncols(width_per_panel: float) -> int:
    return 1 if width_per_panel > 9 else 2 if width_per_panel > 6 else 3


def _series_labels(df: pd.DataFrame, parts: Sequence[str]) -> pd.Series:
    """One label per row joining the ``parts`` columns that vary (first one always kept)."""
    present = [p for p in parts if p in df.columns]
    if not present:
        return pd.Series("r", index=df.index)
    varying = [present[0]] + [p for p in present[1:] if df[p].nunique() > 1]
    label = df[varying[0]].astype(str)
    for p in varying[1:]:
        label = label + " (" + df[p].astype(str) + ")"
    return label


def _ylim(ax, values: Iterable[np.ndarray], room: float = 0.18, base: float | None = 0.0) -> None:
    """Y limits covering ``base`` and all finite ``values`` with room for the marks."""
    extra = [np.array([base])] if base is not None else []
    finite = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values] + extra)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return
    lo, hi = float(finite.min()), float(finite.max())
    span = (hi - lo) or 1.0
    below = room * span if base is None or lo < base else 0.04 * span
    ax.set_ylim(lo - below, hi + room * span)


def _figure_legend(fig: Figure, axes: Sequence, handles: Sequence | None = None) -> None:
    """One legend under the panels: the distinct labels of all ``axes`` (or ``handles``)."""
    if handles is None:
        seen: dict[str, object] = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(label, handle)
        labels = sorted(seen, key=lambda label: label in _EXTRAS)  # data series first
        handles = [seen[label] for label in labels]
    else:
        labels = [h.get_label() for h in handles]
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(len(handles), 6),
            fontsize=8,
            frameon=False,
        )


def _xticks(ax, xpos: dict[str, float]) -> None:
    labels = [_txt(g) for g in xpos]
    rotate = len(labels) > 6 or max((len(s) for s in labels), default=0) > 8
    ax.set_xticks(
        list(xpos.values()),
        labels,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
        fontsize=8,
    )


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {n: f"C{i % 10}" for i, n in enumerate(names)}


# ----------------------------------------------------------------------
# Grouped bar panels of :mod:`memxr.report.plots`: bars of ``r`` per group and series.


logger = logging.getLogger(__name__)

_CEILING_STYLE = {"colors": "k", "linestyles": "--", "linewidths": 1.2}


def _mark(ax, x: float, r: float, lo: float, hi: float, mark: str, pad: float) -> None:
    """Write a significance mark above a positive bar (below a negative one)."""
    if not mark:
        return
    if r >= 0:
        y = hi if np.isfinite(hi) else r
        ax.text(x, y + pad, mark, ha="center", va="bottom", fontsize=8, gid="significance")
    else:
        y = lo if np.isfinite(lo) else r
        ax.text(x, y - pad, mark, ha="center", va="top", fontsize=8, gid="significance")


def _grouped_bars(
    ax,
    df: pd.DataFrame,
    group: str,
    xpos: dict[str, float],
    series: Sequence[str],
    colors: dict[str, str],
    room: float = 0.18,
) -> float:
    """Bars of ``r`` per group (x) and series (``_series`` column); returns the bar width.

    Draws CI error bars from ``ci_low``/``ci_high`` and marks from ``p_fdr``.
    """
    duplicated = df.duplicated([group, "_series"])
    if duplicated.any():
        logger.warning("%d duplicated rows drawn once", int(duplicated.sum()))
        df = df.loc[~duplicated]
    width = 0.8 / max(len(series), 1)
    r_all = _col(df, "r")
    lo_all, hi_all = _col(df, "ci_low"), _col(df, "ci_high")
    span = np.nanmax(np.abs(np.r_[r_all, lo_all, hi_all, 1e-9]))
    pad = 0.03 * span
    for i, name in enumerate(series):
        rows = df.loc[df["_series"] == name]
        if rows.empty:
            continue
        x = np.array([xpos[g] for g in rows[group]]) + (i - (len(series) - 1) / 2) * width
        r, lo, hi = _col(rows, "r"), _col(rows, "ci_low"), _col(rows, "ci_high")
        ax.bar(x, r, width * 0.95, color=colors[name], label=_txt(name))
        ci = np.isfinite(lo) & np.isfinite(hi)
        if ci.any():
            err = np.clip(np.vstack([r[ci] - lo[ci], hi[ci] - r[ci]]), 0, None)
            ax.errorbar(
                x[ci], r[ci], yerr=err, fmt="none", ecolor="0.15", elinewidth=0.8, capsize=2
            )
        p = _col(rows, "p_fdr")
        for xi, ri, li, hi_, pi in zip(x, r, lo, hi, p, strict=True):
            _mark(ax, xi, ri, li, hi_, stars(pi), pad)
    ax.axhline(0, color="0.5", linewidth=0.6)
    _ylim(ax, [r_all, lo_all, hi_all, _col(df, "noise_ceiling")], room=room)
    return width


def _ceiling_marks(ax, df: pd.DataFrame, group: str, xpos: dict[str, float]) -> None:
    """The noise ceiling of each group as a dashed segment over its bars (where present)."""
    if "noise_ceiling" not in df:
        return
    xs, ys = [], []
    for g, rows in df.groupby(group, sort=False):
        c = _col(rows, "noise_ceiling")
        c = c[np.isfinite(c)]
        if c.size:
            xs.append(xpos[g])
            ys.append(float(c[0]))
    if xs:
        x = np.asarray(xs)
        ax.hlines(
            ys, x - 0.42, x + 0.42, label="noise ceiling", gid="noise_ceiling", **_CEILING_STYLE
        )


def _method_series(data: pd.DataFrame) -> tuple[list[str], dict]:
    """Set ``data["_series"]`` (method, and ROI reduction ``how`` when it varies).

    Returns the series in order (Pearson first) and their colours: one hue per
    method, a dark and a light shade of it for two reductions.
    """
    from matplotlib import colormaps

    data["_series"] = _series_labels(data, ["method", "how"])
    method = data["method"] if "method" in data else pd.Series("", index=data.index)
    how = data["how"] if "how" in data else pd.Series("", index=data.index)
    methods = sorted(_unique(method), key=lambda m: (m != "pearson", m))
    hows = _unique(how)
    combos = {}
    for name, m, h in zip(data["_series"], method, how, strict=True):
        combos.setdefault(name, (methods.index(m), hows.index(h)))
    series = sorted(combos, key=combos.get)
    if data["_series"].nunique() > 1 and how.nunique() == 2:
        pairs = colormaps["tab20"]
        return series, {n: pairs((2 * mi + hi) % 20) for n, (mi, hi) in combos.items()}
    return series, _colors(series)


# ----------------------------------------------------------------------
# Figures of the memorability correlations: per ROI (bars) and over time (lines).


def roi_correlation_bars(df: pd.DataFrame) -> Figure:
    """Memorability correlation per ROI: one panel per (dataset, subject).

    Bars show ``r`` per ROI, Pearson and Spearman side by side (and each ROI
    reduction ``how`` when the table holds several), with ``ci_low``/``ci_high``
    error bars, ``*``/``**``/``***`` from ``p_fdr`` and the ROI's noise ceiling
    as a dashed segment where ``noise_ceiling`` is finite: the ceiling on
    r(ROI response, memorability) for the trials of the panel (``trials``: single
    train trials or test-set means, one panel each), as the pipeline computes it
    (``sqrt(neural reliability of those trials x memorability reliability)``).

    Parameters
    ----------
    df : pandas.DataFrame
        ``tables/correlations.csv``: needs ``roi`` and ``r``; ``dataset``,
        ``subject``, ``method``, ``how``, ``ci_low``, ``ci_high``, ``p_fdr``,
        ``noise_ceiling`` are used when present.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"subject": ["sub-01", "sub-02"], "roi": "IT", "method": "pearson",
    ...                    "r": [0.3, 0.2], "p_fdr": [0.01, 0.2], "noise_ceiling": [0.6, 0.5]})
    >>> fig = roi_correlation_bars(df)
    >>> [ax.get_title() for ax in fig.axes]
    ['sub-01', 'sub-02']
    """
    title = "Memorability correlation per ROI"
    data = _usable(df, ["roi", "r"], ["r"], title)
    if isinstance(data, Figure):
        return data
    series, colors = _method_series(data)
    panels = _panels(data)
    n_roi = max(rows["roi"].nunique() for _, rows in panels)
    per = max(3.6, 0.28 * n_roi * len(series) + 1.4)
    fig, axes = _grid(len(panels), (per, 3.2), ncols_max=_ncols(per))
    for ax, (name, rows) in zip(axes, panels, strict=True):
        xpos = {g: float(i) for i, g in enumerate(_unique(rows["roi"]))}
        _grouped_bars(ax, rows, "roi", xpos, series, colors)
        _ceiling_marks(ax, rows, "roi", xpos)
        _xticks(ax, xpos)
        ax.set_title(_txt(name), fontsize=10)
        ax.set_ylabel("r with memorability")
    _figure_legend(fig, axes)
    fig.suptitle(title + "  (* p_fdr<.05, ** <.01, *** <.001)", fontsize=10)
    return fig


def timecourses(df: pd.DataFrame, latency: pd.DataFrame | None = None) -> Figure:
    """Correlation with memorability over time per area/ROI, one panel per subject.

    Lines give ``r`` per ROI (dashed for a second method such as Spearman),
    shaded bands the ``ci_low``-``ci_high`` interval, and filled dots the time
    bins of significant clusters (``p_cluster`` < 0.05, family-wise over the ROIs
    and bins), or, for a table without cluster tests, of ``p_fdr`` < 0.05. One
    panel per subject and set of trials. With ``latency``, each ROI's onset (triangle
    below the lines) and peak (diamond at the peak) with their bootstrap intervals
    (horizontal bars).

    Parameters
    ----------
    df : pandas.DataFrame
        ``tables/timecourse.csv``: needs ``roi``, ``time`` and ``r``.
    latency : pandas.DataFrame, optional
        ``tables/latency.csv``: ``roi``, ``onset``, ``peak`` (and their ``_low``/``_high``
        bounds, ``peak_r``), matched to the panels by dataset, subject, trials and method.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"subject": "monkeyN", "roi": "IT", "method": "pearson",
    ...                    "time": [0.0, 50.0, 100.0], "r": [0.0, 0.1, 0.3],
    ...                    "p_fdr": [0.9, 0.2, 0.001]})
    >>> ax = timecourses(df).axes[0]
    >>> [len(l.get_xdata()) for l in ax.lines if l.get_gid() in ("timecourse", "significant")]
    [3, 1]
    """
    title = "Memorability correlation over time"
    data = _usable(df, ["roi", "time", "r"], ["time"], title)
    if isinstance(data, Figure):
        return data
    if not np.isfinite(_col(data, "r")).any():
        return no_data_figure(title, "all values are NaN")
    methods = _unique(data["method"]) if "method" in data else [""]
    styles = {
        m: ("-", "--", ":", "-.")[i % 4]
        for i, m in enumerate(sorted(methods, key=lambda m: (m != "pearson", m)))
    }
    panels = _panels(data)
    colors = _colors(_unique(data["roi"]))
    fig, axes = _grid(len(panels), (4.6, 3.2))
    for ax, (name, rows) in zip(axes, panels, strict=True):
        for (roi, method), line in _lines(rows):
            t, r = _col(line, "time"), _col(line, "r")
            label = roi if len(methods) == 1 else f"{roi} ({method})"
            ax.plot(
                t,
                r,
                color=colors[roi],
                ls=styles.get(method, "-"),
                lw=1.4,
                label=_txt(label),
                gid="timecourse",
            )
            lo, hi = _col(line, "ci_low"), _col(line, "ci_high")
            band = np.isfinite(lo) & np.isfinite(hi)
            if band.any():
                ax.fill_between(
                    t, lo, hi, where=band, color=colors[roi], alpha=0.18, lw=0, gid="ci"
                )
            sig = _col(line, _significance_column(rows)) < 0.05
            if sig.any():
                ax.plot(
                    t[sig],
                    r[sig],
                    ls="none",
                    marker="o",
                    ms=4,
                    color=colors[roi],
                    gid="significant",
                )
        ax.axhline(0, color="0.5", lw=0.6)
        marked = _latency_marks(ax, rows, latency, colors)
        ax.set_title(_txt(name), fontsize=10)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("r with memorability")
    sig_label = f"{_significance_column(data)} < 0.05"
    handles = _timecourse_handles(colors, styles, sig_label)
    if latency is not None and marked:
        from matplotlib.lines import Line2D

        handles += [Line2D([], [], color="0.2", ls="none", marker="^", ms=5, label="onset"),
                    Line2D([], [], color="0.2", ls="none", marker="D", ms=4, label="peak")]  # fmt: skip
    _figure_legend(fig, axes, handles)
    fig.suptitle(title, fontsize=10)
    return fig


def _latency_marks(
    ax, rows: pd.DataFrame, latency: pd.DataFrame | None, colors: dict[str, str]
) -> bool:
    """Onset and peak (with their intervals) of the ROIs of one time-course panel."""
    if latency is None or latency.empty or not {"roi", "onset", "peak"} <= set(latency):
        return False
    lat = latency
    for key in ("dataset", "subject", "trials", "method"):
        if key in lat and key in rows and len(rows):
            lat = lat.loc[lat[key].astype(str) == str(rows[key].iloc[0])]
    r = _col(rows, "r")
    base = float(np.nanmin(r)) if np.isfinite(r).any() else 0.0
    span = float(np.nanmax(r) - base) if np.isfinite(r).any() else 1.0
    drawn = False
    for i, (_, row) in enumerate(lat.iterrows()):
        roi = str(row["roi"])
        if roi not in colors:
            continue
        y = base - (0.06 + 0.05 * i) * (span or 1.0)
        onset, peak = float(row["onset"]), float(row["peak"])
        if np.isfinite(onset):
            lo, hi = float(row.get("onset_low", np.nan)), float(row.get("onset_high", np.nan))
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color=colors[roi], lw=1.2, gid="onset_ci")
            ax.plot([onset], [y], marker="^", ms=6, ls="none", color=colors[roi], gid="onset")
            drawn = True
        peak_r = float(row.get("peak_r", np.nan))
        if np.isfinite(peak) and np.isfinite(peak_r):
            lo, hi = float(row.get("peak_low", np.nan)), float(row.get("peak_high", np.nan))
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [peak_r, peak_r], color=colors[roi], lw=1.0, alpha=0.7,
                        gid="peak_ci")  # fmt: skip
            ax.plot([peak], [peak_r], marker="D", ms=5, ls="none", color=colors[roi],
                    markeredgecolor="k", gid="peak")  # fmt: skip
            drawn = True
    return drawn


def _significance_column(rows: pd.DataFrame) -> str:
    """``p_cluster`` (family-wise over ROIs x time bins) when the table has it, else p_fdr."""
    return "p_cluster" if "p_cluster" in rows else "p_fdr"


def _timecourse_handles(
    colors: dict[str, str], styles: dict[str, str], sig_label: str = "p_fdr < 0.05"
) -> list:
    """Legend entries: one colour per ROI, one line style per method, the significance dot."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=1.6, label=_txt(roi)) for roi, c in colors.items()]
    if len(styles) > 1:
        handles += [Line2D([], [], color="0.2", ls=ls, label=_txt(m)) for m, ls in styles.items()]
    handles.append(Line2D([], [], color="0.2", ls="none", marker="o", ms=4, label=sig_label))
    return handles


def _lines(rows: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """Rows of one (roi, method) line, sorted by time, ROIs in order of appearance."""
    method = rows["method"] if "method" in rows else pd.Series("", index=rows.index)
    out = []
    for roi in _unique(rows["roi"]):
        for m in _unique(method[rows["roi"] == roi]):
            line = rows.loc[(rows["roi"] == roi) & (method == m)]
            out.append(((roi, m), line.sort_values("time", kind="stable")))
    return out


# ----------------------------------------------------------------------
# Figures of the memorability models: scores against chance, predictions against truth.


_METRIC_LABELS = {
    "pearson_r": "Pearson r",
    "spearman_rho": "Spearman rho",
    "roc_auc": "ROC AUC",
    "accuracy": "accuracy",
    "r2": "R²",
}
_MAX_PANELS = 12


def prediction_scatter(
    pred_df: pd.DataFrame, feature_set: str | None = None, model: str | None = None
) -> Figure:
    """Predicted against observed memorability, one panel per subject and model.

    Each panel shows the out-of-fold predictions with the identity line
    (dotted) and the least-squares fit (solid), and Pearson ``r`` in its title.

    Parameters
    ----------
    pred_df : pandas.DataFrame
        ``tables/predictions.csv``: needs ``observed`` and ``predicted``;
        ``dataset``, ``subject``, ``feature_set``, ``model`` are used when present.
    feature_set, model : str, optional
        Keep only these rows. Without them, every (subject, feature set, model)
        gets a panel (at most 12).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"subject": "sub-01", "feature_set": "IT", "model": "ridge",
    ...                    "observed": [0.1, 0.2, 0.3, 0.4], "predicted": [0.1, 0.3, 0.2, 0.4]})
    >>> prediction_scatter(df, model="ridge").axes[0].get_title()
    'sub-01 · IT · ridge\\nr = 0.80, n = 4'
    """
    title = "Predicted vs observed memorability (out-of-fold)"
    data = _usable(pred_df, ["observed", "predicted"], ["observed", "predicted"], title)
    if isinstance(data, Figure):
        return data
    for column, wanted in (("feature_set", feature_set), ("model", model)):
        if wanted is not None and column in data:
            data = data.loc[data[column] == str(wanted)]
    if data.empty:
        return no_data_figure(title, f"no rows for feature_set={feature_set}, model={model}")
    panels = _panels(data, ("dataset", "subject", "trials", "feature_set", "model"))
    shown = panels[:_MAX_PANELS]
    fig, axes = _grid(len(shown), (3.6, 3.4))
    for ax, (name, rows) in zip(axes, shown, strict=True):
        obs, pred = _col(rows, "observed"), _col(rows, "predicted")
        ax.scatter(obs, pred, s=10, alpha=0.6, color="C0", edgecolors="none", gid="points")
        lo = float(min(obs.min(), pred.min()))
        hi = float(max(obs.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], ls=":", color="0.4", lw=1, label="identity", gid="identity")
        r = float("nan")
        if obs.size >= 3 and np.ptp(obs) > 0 and np.ptp(pred) > 0:
            r = float(np.corrcoef(obs, pred)[0, 1])
            slope, icept = np.polyfit(obs, pred, 1)
            xs = np.array([obs.min(), obs.max()])
            ax.plot(xs, icept + slope * xs, color="C3", lw=1.5, label="fit", gid="fit")
        ax.set_title(_txt(f"{name}\nr = {r:.2f}, n = {obs.size}"), fontsize=9)
        ax.set_xlabel("observed memorability")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    more = f"  (first {len(shown)} of {len(panels)})" if len(panels) > len(shown) else ""
    fig.suptitle(title + more, fontsize=10)
    return fig


def _scores(data: pd.DataFrame) -> pd.DataFrame:
    """Add ``_metric`` and ``_score`` (the value of the row's ``metric`` column)."""
    if "metric" in data:
        metric = data["metric"].astype(str)
    elif "kind" in data:
        metric = data["kind"].map({"classifier": "roc_auc"}).fillna("pearson_r")
    else:
        metric = pd.Series("pearson_r", index=data.index)
    score = np.full(len(data), np.nan)
    for name in _unique(metric):
        if name in data:
            rows = (metric == name).to_numpy()
            score[rows] = _col(data.loc[rows], name)
    return data.assign(_metric=metric.to_numpy(), _score=score)


def _peak_over_time(data: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """One row per (dataset, subject, feature_set, model, cv): the best time bin if timed."""
    if "time" not in data or not np.isfinite(_col(data, "time")).any():
        return data, False
    keys = [
        k
        for k in ("dataset", "subject", "trials", "feature_set", "model", "cv", "_metric")
        if k in data
    ]
    best = data.sort_values("_score", ascending=False, na_position="last", kind="stable")
    return best.drop_duplicates(keys).sort_index(), True


def _chance_band(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Chance interval from ``chance_low``/``chance_high``, or mean ± 1.96 ``chance_sd``."""
    lo, hi = _col(rows, "chance_low"), _col(rows, "chance_high")
    sd = _col(rows, "chance_sd")
    if not np.isfinite(sd).any():
        sd = _col(rows, "chance_std")
    mean = _col(rows, "chance_mean")
    fill = ~(np.isfinite(lo) & np.isfinite(hi)) & np.isfinite(sd)
    lo = np.where(fill, mean - 1.96 * sd, lo)
    hi = np.where(fill, mean + 1.96 * sd, hi)
    return lo, hi


def model_comparison(df: pd.DataFrame) -> Figure:
    """Cross-validated scores per feature set x model against permutation chance.

    One panel per (dataset, subject, metric): regressors are scored by the
    ``metric`` column's score (``pearson_r``), classifiers by theirs (``roc_auc``
    or ``accuracy``). A black segment on each bar marks ``chance_mean`` (with a
    grey band from ``chance_low``/``chance_high`` or ``chance_sd`` when the
    table has them), a dashed segment the feature set's ``noise_ceiling``. The
    cross-validation kind (``cv``: grouped/random) is in the panel title, and in
    the legend when a panel mixes both. Time-resolved tables are reduced to the
    best time bin of each model.

    Parameters
    ----------
    df : pandas.DataFrame
        ``tables/models.csv``: needs ``feature_set`` and ``model``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"subject": "sub-01", "feature_set": ["IT", "IT"],
    ...                    "model": ["ridge", "svc"], "cv": "grouped",
    ...                    "metric": ["pearson_r", "roc_auc"], "pearson_r": [0.4, None],
    ...                    "roc_auc": [None, 0.7], "chance_mean": [0.0, 0.5]})
    >>> [ax.get_title() for ax in model_comparison(df).axes]
    ['sub-01 · Pearson r\\ncv: grouped', 'sub-01 · ROC AUC\\ncv: grouped']
    """
    title = "Memorability models vs permutation chance"
    data = _usable(df, ["feature_set", "model"], [], title)
    if isinstance(data, Figure):
        return data
    data = _scores(data)
    data = data.loc[np.isfinite(data["_score"].to_numpy(dtype=float))]
    if data.empty:
        return no_data_figure(title, "all scores are NaN")
    data, timed = _peak_over_time(data)
    if "cv" not in data:
        data["cv"] = "unknown"
    data["_series"] = _series_labels(data, ["model", "cv"])
    panels = _panels(data, ("dataset", "subject", "trials", "_metric"))
    n_fs = max(rows["feature_set"].nunique() for _, rows in panels)
    n_series = max(rows["_series"].nunique() for _, rows in panels)
    per = max(3.6, 0.3 * n_fs * n_series + 1.4)
    n_metrics = data["_metric"].nunique()
    ncols = min(n_metrics, _ncols(per)) if n_metrics > 1 else _ncols(per)  # a row per subject
    fig, axes = _grid(len(panels), (per, 3.3), ncols_max=ncols)
    colors = _colors(_unique(data["_series"]))
    for ax, (_, rows) in zip(axes, panels, strict=True):
        _model_panel(ax, rows, colors)
    _figure_legend(fig, axes)
    fig.suptitle(title + (" (best time bin per model)" if timed else ""), fontsize=10)
    return fig


def _model_panel(ax, rows: pd.DataFrame, colors: dict[str, str]) -> None:
    metric = str(rows["_metric"].iloc[0])
    series = _unique(rows["_series"])
    xpos = {g: float(i) for i, g in enumerate(_unique(rows["feature_set"]))}
    width = 0.8 / len(series)
    chance_labelled = band_labelled = False
    for i, name in enumerate(series):
        part = rows.loc[rows["_series"] == name]
        x = np.array([xpos[g] for g in part["feature_set"]]) + (i - (len(series) - 1) / 2) * width
        ax.bar(
            x,
            part["_score"].to_numpy(dtype=float),
            width * 0.95,
            color=colors[name],
            hatch="//" if str(part["cv"].iloc[0]) == "random" else None,
            edgecolor="w",
            label=_txt(name),
        )
        chance = _col(part, "chance_mean")
        ok = np.isfinite(chance)
        if ok.any():
            ax.hlines(
                chance[ok],
                x[ok] - width / 2,
                x[ok] + width / 2,
                colors="k",
                linewidths=2,
                gid="chance",
                label=None if chance_labelled else "permutation chance",
            )
            chance_labelled = True
        lo, hi = _chance_band(part)
        for xi, a, b in zip(x, lo, hi, strict=True):
            if np.isfinite(a) and np.isfinite(b):
                ax.fill_between(
                    [xi - width / 2, xi + width / 2],
                    a,
                    b,
                    color="0.3",
                    alpha=0.3,
                    lw=0,
                    gid="chance_band",
                    label=None if band_labelled else "chance interval",
                )
                band_labelled = True
    _ceiling_marks(ax, rows, "feature_set", xpos)
    _xticks(ax, xpos)
    floor = 0.5 if metric in ("roc_auc", "accuracy") else 0.0
    ax.axhline(floor, color="0.5", lw=0.6)
    _ylim(
        ax,
        [
            rows["_score"].to_numpy(dtype=float),
            _col(rows, "chance_mean"),
            _col(rows, "noise_ceiling"),
            *_chance_band(rows),
        ],
        room=0.1,
        base=None if floor else 0.0,
    )
    label = _METRIC_LABELS.get(metric, metric)
    cvs = ", ".join(_unique(rows["cv"].astype(str)))
    where = " · ".join(
        str(rows[k].iloc[0]) for k in ("dataset", "subject", "trials") if k in rows
    )
    where = " · ".join(p for p in (where, label) if p)
    ax.set_title(_txt(f"{where}\ncv: {cvs}"), fontsize=9)
    ax.set_ylabel(label)
    ax.set_xlabel("feature set")


# ----------------------------------------------------------------------
# Figures of the human <-> monkey comparisons: RSA heat maps and effects side by side.


def cross_species_matrix(rsa_df: pd.DataFrame) -> Figure:
    """Human ROI x monkey area heat map of ``rsa_r``, one panel per pair and level.

    Cells carry their value and ``*`` marks from ``p_fdr``; NaN cells are grey.
    All panels share one symmetric colour scale.

    Parameters
    ----------
    rsa_df : pandas.DataFrame
        ``tables/bridge_rsa.csv``: needs ``human_roi``, ``monkey_area`` and ``rsa_r``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"pair": "sub-01~monkeyN", "level": "image",
    ...                    "human_roi": ["FFA", "FFA"], "monkey_area": ["V1", "IT"],
    ...                    "rsa_r": [0.05, 0.4], "p_fdr": [0.5, 0.0004]})
    >>> fig = cross_species_matrix(df)
    >>> fig.axes[0].images[0].get_array().shape, [t.get_text() for t in fig.axes[0].texts]
    ((1, 2), ['0.05', '0.40\\n***'])
    """
    title = "Cross-species RSA (human ROI x monkey area)"
    data = _usable(rsa_df, ["human_roi", "monkey_area", "rsa_r"], [], title)
    if isinstance(data, Figure):
        return data
    r_all = _col(data, "rsa_r")
    if not np.isfinite(r_all).any():
        return no_data_figure(title, "all values are NaN")
    vmax = float(np.nanmax(np.abs(r_all))) or 1.0
    panels = _panels(data, ("pair", "level"))
    n_h = max(rows["human_roi"].nunique() for _, rows in panels)
    n_m = max(rows["monkey_area"].nunique() for _, rows in panels)
    fig, axes = _grid(len(panels), (max(3.2, 0.55 * n_m + 1.8), max(2.6, 0.4 * n_h + 1.4)))
    image = None
    for ax, (name, rows) in zip(axes, panels, strict=True):
        image = _heatmap(ax, rows, vmax)
        ax.set_title(_txt(name), fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8, label="RSA r")
    fig.suptitle(title + "  (* p_fdr<.05, ** <.01, *** <.001)", fontsize=10)
    return fig


def _heatmap(ax, rows: pd.DataFrame, vmax: float):
    from matplotlib import colormaps

    humans, monkeys = _unique(rows["human_roi"]), _unique(rows["monkey_area"])
    grid = np.full((len(humans), len(monkeys)), np.nan)
    marks = np.full(grid.shape, "", dtype=object)
    r, p = _col(rows, "rsa_r"), _col(rows, "p_fdr")
    for h, m, ri, pi in zip(rows["human_roi"], rows["monkey_area"], r, p, strict=True):
        i, j = humans.index(h), monkeys.index(m)
        if np.isnan(grid[i, j]):
            grid[i, j], marks[i, j] = ri, stars(pi)
    cmap = colormaps["RdBu_r"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    if grid.size <= 150:
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                text = f"{value:.2f}" + (f"\n{marks[i, j]}" if marks[i, j] else "")
                dark = abs(value) > 0.6 * vmax
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=7, color="w" if dark else "k"
                )
    ax.set_xticks(range(len(monkeys)), [_txt(m) for m in monkeys], fontsize=8)
    ax.set_yticks(range(len(humans)), [_txt(h) for h in humans], fontsize=8)
    ax.set_xlabel("monkey area")
    ax.set_ylabel("human ROI")
    return image


def cross_species_effects(effects_df: pd.DataFrame) -> Figure:
    """Memorability effects on the shared stimuli: human ROIs beside monkey areas.

    One panel per ``pair``: bars of ``r`` for the human ROIs (left) and the
    monkey areas (right, after a dotted separator), methods side by side, with
    CI error bars and ``p_fdr`` marks.

    Parameters
    ----------
    effects_df : pandas.DataFrame
        ``tables/bridge_effects.csv``: needs ``roi`` and ``r``; ``species``
        (``human``/``macaque``), ``pair``, ``subject``, ``method``, ``ci_low``,
        ``ci_high``, ``p_fdr``, ``n`` are used when present.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"species": ["human", "macaque"], "subject": ["sub-01", "monkeyN"],
    ...                    "roi": ["FFA", "IT"], "method": "pearson", "r": [0.3, 0.25],
    ...                    "p_fdr": [0.01, 0.03], "n": 120, "pair": "sub-01~monkeyN"})
    >>> ax = cross_species_effects(df).axes[0]
    >>> len(ax.patches), ax.get_title()
    (2, 'sub-01~monkeyN (n = 120 shared stimuli)')
    """
    title = "Memorability effects on shared stimuli: human vs macaque"
    data = _usable(effects_df, ["roi", "r"], ["r"], title)
    if isinstance(data, Figure):
        return data
    if "species" not in data:
        data["species"] = ""
    series, colors = _method_series(data)
    panels = _panels(data, ("pair", "split"))
    n_roi = max(rows["roi"].nunique() + 1 for _, rows in panels)
    per = max(4.0, 0.3 * n_roi * len(series) + 1.6)
    fig, axes = _grid(len(panels), (per, 3.3), ncols_max=_ncols(per))
    for ax, (name, rows) in zip(axes, panels, strict=True):
        rows = rows.assign(_group=rows["species"] + "|" + rows["roi"])
        names = dict(zip(rows["_group"], rows["roi"], strict=True))
        xpos, sides = _species_positions(rows)
        _grouped_bars(ax, rows, "_group", xpos, series, colors, room=0.3)
        ax.set_xticks(
            list(xpos.values()),
            [_txt(names[g]) for g in xpos],
            fontsize=8,
            rotation=45 if len(xpos) > 6 else 0,
        )
        _species_labels(ax, sides)
        n = _col(rows, "n")
        n = n[np.isfinite(n)]
        suffix = f" (n = {int(n.max())} shared stimuli)" if n.size else ""
        ax.set_title(_txt(f"{name}{suffix}"), fontsize=10)
        ax.set_ylabel("r with memorability")
    _figure_legend(fig, axes)
    fig.suptitle(title + "  (* p_fdr<.05, ** <.01, *** <.001)", fontsize=10)
    return fig


def _species_positions(rows: pd.DataFrame) -> tuple[dict[str, float], list[tuple]]:
    """x of each species/ROI group (human first, a gap between species) and species centres."""
    order = sorted(_unique(rows["species"]), key=lambda s: (s != "human", s))
    xpos: dict[str, float] = {}
    sides = []
    x = 0.0
    for k, sp in enumerate(order):
        if k:
            x += 0.6
        start = x
        for g in _unique(rows.loc[rows["species"] == sp, "_group"]):
            xpos[g] = x
            x += 1.0
        sides.append((sp, (start + x - 1.0) / 2, start - 0.8 if k else None))
    return xpos, sides


def _species_labels(ax, sides: list) -> None:
    transform = ax.get_xaxis_transform()
    for sp, centre, sep in sides:
        if sep is not None:
            ax.axvline(sep, color="0.4", ls=":", lw=1)
        if sp:
            ax.text(
                centre,
                0.97,
                _txt(sp),
                transform=transform,
                ha="center",
                va="top",
                fontsize=9,
                style="italic",
                color="0.3",
            )


__all__ = [
    "cross_species_effects",
    "cross_species_matrix",
    "forest_plot",
    "model_comparison",
    "no_data_figure",
    "prediction_scatter",
    "roi_correlation_bars",
    "stars",
    "timecourses",
]


# ----------------------------------------------------------------------
# The group level: individuals and their random-effects pooled effect.


def forest_plot(df: pd.DataFrame) -> Figure:
    """Forest plot: each individual's correlation and the pooled one, per ROI.

    One panel per dataset and set of trials; per ROI, a row per individual (dot and
    ``ci_low``-``ci_high`` bar) and the random-effects pooled row (``subject ==
    "pooled"``: a diamond spanning its interval, with ``k`` and ``I2`` when given).
    The primary method (Pearson) and reduction (``how``, the first) only, and the rows
    without a ``control`` (or ``control == "none"``).

    Parameters
    ----------
    df : pandas.DataFrame
        Rows of ``tables/correlations.csv``: ``subject``, ``roi``, ``r`` (and the interval).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"dataset": "things-fmri", "roi": "IT",
    ...                    "subject": ["sub-01", "sub-02", "pooled"], "r": [0.2, 0.15, 0.17],
    ...                    "ci_low": [0.1, 0.05, 0.02], "ci_high": [0.3, 0.25, 0.3]})
    >>> ax = forest_plot(df).axes[0]
    >>> len([l for l in ax.lines if l.get_gid() == "individual"]), len(ax.patches)
    (2, 1)
    """
    from matplotlib.patches import Polygon

    title = "Individuals and the group (random effects)"
    data = _usable(df, ["subject", "roi", "r"], ["r"], title)
    if isinstance(data, Figure):
        return data
    if "control" in data:
        data = data.loc[data["control"].isin(["none", ""])]
    for key in ("method", "how"):
        if key in data and len(data):
            values = _unique(data[key])
            keep = "pearson" if key == "method" and "pearson" in values else values[0]
            data = data.loc[data[key] == keep]
    if data.empty:
        return no_data_figure(title, "no rows")
    panels = _panels(data, ("dataset", "trials"))
    panels.sort(key=lambda panel: "(test)" in panel[0])  # the train images' panels first
    height = max(len(p[1]) for p in panels) * 0.28 + 1.2
    fig, axes = _grid(len(panels), (4.8, height), ncols_max=2)
    for ax, (name, rows) in zip(axes, panels, strict=True):
        labels, y = [], 0.0
        for roi in _unique(rows["roi"]):
            part = rows.loc[rows["roi"] == roi]
            pooled = part.loc[part["subject"] == "pooled"]
            for _, row in part.loc[part["subject"] != "pooled"].iterrows():
                lo, hi = float(row.get("ci_low", np.nan)), float(row.get("ci_high", np.nan))
                if np.isfinite(lo) and np.isfinite(hi):
                    ax.plot([lo, hi], [y, y], color="0.35", lw=1.2)
                ax.plot([row["r"]], [y], "o", color="0.2", ms=4, gid="individual")
                labels.append((y, f"{roi} {row['subject']}"))
                y -= 1
            for _, row in pooled.iterrows():
                r = float(row["r"])
                lo, hi = float(row.get("ci_low", np.nan)), float(row.get("ci_high", np.nan))
                lo, hi = (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else (r, r)
                ax.add_patch(Polygon([(lo, y), (r, y + 0.3), (hi, y), (r, y - 0.3)],
                                     closed=True, color="C3", gid="pooled"))  # fmt: skip
                extra = ""
                if "k" in row and np.isfinite(float(row["k"])):
                    extra = f" (k={int(row['k'])}"
                    i2 = float(row.get("I2", np.nan))
                    extra += f", I²={i2:.0%})" if np.isfinite(i2) else ")"
                labels.append((y, f"{roi} pooled{extra}"))
                y -= 1
            y -= 0.5
        ax.axvline(0, color="0.5", lw=0.6)
        ax.set_yticks([t for t, _ in labels], [_txt(lab) for _, lab in labels], fontsize=8)
        ax.set_ylim(y + 0.2, 1.0)
        ax.set_title(_txt(name), fontsize=10)
        ax.set_xlabel("r with memorability")
    fig.suptitle(title, fontsize=10)
    return fig
