"""Building blocks shared by the figures of :mod:`memxr.plots`.

Significance marks, the "no data" figure, the cleaning of an input table, panels
and their grid, series labels and colours, y limits, tick labels and the figure
legend.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

SIG_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
"""Significance marks on ``p_fdr``: (threshold, mark), strictest first."""

_PANEL_KEYS = ("dataset", "subject")
_EXTRAS = ("noise ceiling", "permutation chance", "chance interval")
_LABELS = frozenset(
    ("dataset", "subject", "roi", "method", "how", "species", "pair", "level", "human_roi",
     "monkey_area", "feature_set", "model", "kind", "cv", "metric")
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
        if out[name].dtype == object or name in _LABELS:
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
