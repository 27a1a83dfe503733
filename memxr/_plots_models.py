"""Figures of the memorability models: scores against chance, predictions against truth.

Public through :mod:`memxr.plots`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._plots_bars import _ceiling_marks
from ._plots_common import (
    _col,
    _colors,
    _figure_legend,
    _grid,
    _ncols,
    _panels,
    _series_labels,
    _txt,
    _unique,
    _usable,
    _xticks,
    _ylim,
    no_data_figure,
)

__all__ = ["model_comparison", "prediction_scatter"]

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
    panels = _panels(data, ("dataset", "subject", "feature_set", "model"))
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
    keys = [k for k in ("dataset", "subject", "feature_set", "model", "cv", "_metric") if k in data]
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
    panels = _panels(data, ("dataset", "subject", "_metric"))
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
    where = " · ".join(str(rows[k].iloc[0]) for k in ("dataset", "subject") if k in rows)
    where = " · ".join(p for p in (where, label) if p)
    ax.set_title(_txt(f"{where}\ncv: {cvs}"), fontsize=9)
    ax.set_ylabel(label)
    ax.set_xlabel("feature set")
