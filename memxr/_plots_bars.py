"""Grouped bar panels of :mod:`memxr.plots`: bars of ``r`` per group and series.

Confidence-interval error bars, ``p_fdr`` significance marks, noise-ceiling
segments, and the series (method, ROI reduction) with their colours.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._plots_common import _col, _colors, _series_labels, _txt, _unique, _ylim, stars

logger = logging.getLogger("memxr.plots")  # warnings under the public module's name

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
