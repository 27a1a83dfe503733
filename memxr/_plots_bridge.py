"""Figures of the human <-> monkey comparisons: RSA heat maps and effects side by side.

Public through :mod:`memxr.plots`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._plots_bars import _grouped_bars, _method_series
from ._plots_common import (
    _col,
    _figure_legend,
    _grid,
    _ncols,
    _panels,
    _txt,
    _unique,
    _usable,
    no_data_figure,
    stars,
)

__all__ = ["cross_species_effects", "cross_species_matrix"]


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
    panels = _panels(data, ("pair",))
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
