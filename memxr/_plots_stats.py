"""Figures of the memorability correlations: per ROI (bars) and over time (lines).

Public through :mod:`memxr.plots`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._plots_bars import _ceiling_marks, _grouped_bars, _method_series
from ._plots_common import (
    _col,
    _colors,
    _figure_legend,
    _grid,
    _ncols,
    _panels,
    _txt,
    _unique,
    _usable,
    _xticks,
    no_data_figure,
)

__all__ = ["roi_correlation_bars", "timecourses"]


def roi_correlation_bars(df: pd.DataFrame) -> Figure:
    """Memorability correlation per ROI: one panel per (dataset, subject).

    Bars show ``r`` per ROI, Pearson and Spearman side by side (and each ROI
    reduction ``how`` when the table holds several), with ``ci_low``/``ci_high``
    error bars, ``*``/``**``/``***`` from ``p_fdr`` and the ROI's noise ceiling
    as a dashed segment where ``noise_ceiling`` is finite.

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


def timecourses(df: pd.DataFrame) -> Figure:
    """Correlation with memorability over time per area/ROI, one panel per subject.

    Lines give ``r`` per ROI (dashed for a second method such as Spearman),
    shaded bands the ``ci_low``-``ci_high`` interval, and filled dots the time
    bins with ``p_fdr`` < 0.05.

    Parameters
    ----------
    df : pandas.DataFrame
        ``tables/timecourse.csv``: needs ``roi``, ``time`` and ``r``.

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
            sig = _col(line, "p_fdr") < 0.05
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
        ax.set_title(_txt(name), fontsize=10)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("r with memorability")
    _figure_legend(fig, axes, _timecourse_handles(colors, styles))
    fig.suptitle(title, fontsize=10)
    return fig


def _timecourse_handles(colors: dict[str, str], styles: dict[str, str]) -> list:
    """Legend entries: one colour per ROI, one line style per method, the significance dot."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=1.6, label=_txt(roi)) for roi, c in colors.items()]
    if len(styles) > 1:
        handles += [Line2D([], [], color="0.2", ls=ls, label=_txt(m)) for m, ls in styles.items()]
    handles.append(Line2D([], [], color="0.2", ls="none", marker="o", ms=4, label="p_fdr < 0.05"))
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
