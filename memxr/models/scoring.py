"""Scores of :func:`memxr.models.fit_models` from the pooled out-of-fold outputs.

Regressors: Pearson r, Spearman rho and R^2 of the pooled predictions; classifiers: accuracy
of the pooled classes and ROC AUC per test fold, averaged. Permutation chance levels (with the
sequential p-value of :func:`sequential_p`) and the tables of a run (:func:`summarize`,
:func:`prediction_table`) are built here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..schema import text_coord
from ..stats.kernels import fdr_kernel, pearson
from .estimators import CLASSIFIERS, REGRESSORS
from .inputs import ModelRun


def _regression_scores(obs: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr
    from sklearn.metrics import r2_score

    ok = np.isfinite(pred)
    o, p = obs[ok], pred[ok]
    r = float(pearson(o, p))
    rho = float(spearmanr(o, p).statistic) if np.isfinite(r) else float("nan")
    return {
        "pearson_r": r,
        "spearman_rho": rho,
        "r2": float(r2_score(o, p)) if o.size > 1 else float("nan"),
        "n_stimuli": int(ok.sum()),
    }


def auc(label: np.ndarray, decision: np.ndarray) -> float:
    """ROC AUC of binary labels (0/1) by the decision values: the Mann-Whitney U statistic
    over ``n1 n0`` (ties count one half), as :func:`sklearn.metrics.roc_auc_score` gives it
    without its input checks (it scores every permutation of every row).

    Examples
    --------
    >>> from sklearn.metrics import roc_auc_score
    >>> lab, dec = np.array([0, 0, 1, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    >>> bool(np.isclose(auc(lab, dec), roc_auc_score(lab, dec))), round(auc(lab, dec), 4)
    (True, 0.6667)
    """
    from scipy.stats import rankdata

    pos = label == 1
    n1 = int(pos.sum())
    n0 = label.size - n1
    ranks = rankdata(decision)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _fold_auc(label: np.ndarray, decision: np.ndarray, fold: np.ndarray) -> float:
    aucs = []
    for f in np.unique(fold[fold >= 0]):
        m = (fold == f) & np.isfinite(label) & np.isfinite(decision)
        if np.unique(label[m]).size == 2:
            aucs.append(auc(label[m], decision[m]))
    return float(np.mean(aucs)) if aucs else float("nan")


def _classification_scores(
    label: np.ndarray, pred: np.ndarray, decision: np.ndarray, fold: np.ndarray
) -> dict[str, float]:
    ok = np.isfinite(label) & np.isfinite(pred)
    return {
        "accuracy": float(np.mean(pred[ok] == label[ok])) if ok.any() else float("nan"),
        "roc_auc": _fold_auc(label, decision, fold),
        "n_stimuli": int(ok.sum()),
    }


def _primary(model: str) -> str:
    return "roc_auc" if model in CLASSIFIERS else "pearson_r"


def _ceiling(noise_ceiling: Any, name: str) -> float:
    if noise_ceiling is None:
        return float("nan")
    if isinstance(noise_ceiling, Mapping):
        return float(noise_ceiling.get(name, float("nan")))
    return float(noise_ceiling)


def scores(out: dict[str, np.ndarray], y: np.ndarray, model: str, fold_of: np.ndarray) -> dict:
    """The scores of one model's pooled out-of-fold outputs against the target ``y``."""
    if model in CLASSIFIERS:
        return _classification_scores(out["label"], out["prediction"], out["decision"], fold_of)
    return _regression_scores(y, out["prediction"])


def null_score(out: dict[str, np.ndarray], y: np.ndarray, model: str, fold_of: np.ndarray) -> float:
    """The score behind the chance level only (:func:`primary`), of one permutation."""
    if model in CLASSIFIERS:
        return _fold_auc(out["label"], out["decision"], fold_of)
    ok = np.isfinite(out["prediction"])
    return float(pearson(y[ok], out["prediction"][ok]))


def primary(model: str) -> str:
    """The score behind the chance level of a model: ROC AUC (classifiers) or Pearson r."""
    return _primary(model)


def sequential_p(
    null: np.ndarray, observed: float, early_stop: int | None = None
) -> tuple[float, int, bool]:
    """Permutation p-value of ``observed`` from null scores in the order they were drawn.

    Without ``early_stop`` this is ``(1 + g) / (1 + N)`` with ``g`` the null scores at or above
    ``observed`` among the ``N`` finite ones. With ``early_stop = h`` it is the sequential Monte
    Carlo p-value of Besag & Clifford (1991): the permutations are taken in order until ``h``
    of them reach the observed score, at the ``l``-th, which gives ``p = h / l``; when fewer
    than ``h`` do among all ``N``, ``p = (1 + g) / (1 + N)`` as without stopping. The p-value
    is valid (``P(p <= a) <= a`` under the null for every ``a``) and equals the full test's
    whenever the row does not stop; a stopped row has ``p >= h / N``, so with
    ``h > alpha N`` no decision at level ``alpha`` differs from the full test's, while a
    clearly null row stops after about ``h / p`` permutations.

    Parameters
    ----------
    null : numpy.ndarray
        Null scores in the order of the permutations (NaN, a failed fit, is skipped).
    observed : float
        The observed score (higher is better).
    early_stop : int, optional
        ``h``: stop at the ``h``-th null score at or above ``observed`` (None or 0: never).

    Returns
    -------
    p : float
        NaN when ``observed`` is NaN or no null score is finite.
    n_used : int
        Finite null scores behind ``p`` (``l`` when stopped, else ``N``).
    stopped : bool
        Whether the test stopped before the last permutation.

    Examples
    --------
    >>> null = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.95, 0.3])
    >>> sequential_p(null, 0.5)  # (1 + 4) / (1 + 7)
    (0.625, 7, False)
    >>> sequential_p(null, 0.5, early_stop=2)  # the 2nd exceedance is the 3rd permutation
    (0.6666666666666666, 3, True)
    >>> sequential_p(null, 0.99, early_stop=2)  # never stops: the full test
    (0.125, 7, False)
    """
    values = np.asarray(null, dtype=float)
    finite = values[np.isfinite(values)]
    if not finite.size or not np.isfinite(observed):
        return float("nan"), int(finite.size), False
    hits = np.cumsum(finite >= observed)
    h = int(early_stop or 0)
    if h > 0 and hits[-1] >= h:
        at = int(np.argmax(hits >= h)) + 1  # the h-th exceedance is the at-th permutation
        if at < finite.size:  # at the last one the full test's (1 + h) / (1 + N) >= h / N
            return h / at, at, True
    return float((1 + hits[-1]) / (1 + finite.size)), int(finite.size), False


def _chance(
    null: np.ndarray, observed: float, early_stop: int | None, stopped: bool
) -> dict[str, Any]:
    """Chance level and p-value of a row; ``null`` ends where its sequential test stopped."""
    finite = null[np.isfinite(null)]
    if not finite.size:
        return {
            "chance_mean": float("nan"),
            "chance_p": float("nan"),
            "n_permutations": 0,
            "stopped_early": False,
        }
    if stopped:  # the early_stop-th exceedance is the last permutation kept
        p, used = int(early_stop or 0) / finite.size, finite.size
    else:
        p, used, _ = sequential_p(finite, observed, None)
    return {
        "chance_mean": float(finite[:used].mean()),
        "chance_p": float(p),
        "n_permutations": int(used),
        "stopped_early": bool(stopped),
    }


_SCORES = ("pearson_r", "spearman_rho", "r2", "accuracy", "roc_auc")


def summarize(
    run: ModelRun,
    outs: dict,
    null: np.ndarray,
    stopped: np.ndarray,
    fold_of: np.ndarray,
    noise_ceiling: Any,
    split: str,
    early_stop: int | None = None,
) -> tuple[pd.DataFrame, xr.DataArray]:
    """The results table and the null DataArray of a run.

    ``outs`` holds the observed out-of-fold outputs of every (feature set, model, time bin);
    ``null`` the permutation scores ``(feature set, model, time bin, permutation)``, NaN for
    the permutations a row did not use (it stopped before them, ``stopped``).
    """
    rows = []
    for i, name in enumerate(run.sets):
        ceiling = _ceiling(noise_ceiling, name)
        for j, m in enumerate(run.models):
            metric, regressor = _primary(m), m in REGRESSORS
            for ti, t in enumerate(run.time_idx):
                scores_ = scores(outs[(name, m, t, -1)], run.y, m, fold_of)
                row = {
                    "feature_set": name,
                    "model": m,
                    "kind": "regressor" if regressor else "classifier",
                    "cv": run.kind,
                    "n_stimuli": scores_["n_stimuli"],
                    "n_dropped": run.n_dropped,
                    "n_folds": run.n_folds,
                }
                if run.times is not None:
                    row["time"] = float(run.times[t])
                row.update({k: scores_.get(k, float("nan")) for k in _SCORES})
                row["metric"] = metric
                row["label_split"] = "" if regressor else split
                row.update(_chance(null[i, j, ti], scores_[metric], early_stop, stopped[i, j, ti]))
                row["early_stop"] = int(early_stop or 0)
                row["noise_ceiling"] = ceiling if regressor else float("nan")
                row["fraction_of_ceiling"] = (
                    scores_[metric] / ceiling if regressor else float("nan")
                )
                rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table["chance_p_fdr"] = fdr_kernel(table["chance_p"].to_numpy(float), 1)
        table["p_family"] = (
            "chance_p_fdr: Benjamini-Hochberg over the "
            f"{int(np.isfinite(table['chance_p']).sum())} feature set x model"
            + (" x time bin" if run.times is not None else "")
            + " rows of this fit"
        )
    timed = run.times is not None
    dims = ("feature_set", "model") + (("time",) if timed else ()) + ("permutation",)
    coords = {
        "feature_set": text_coord(run.sets),
        "model": text_coord(run.models),
        "permutation": np.arange(run.n_perm),
    }
    if timed:
        coords["time"] = run.times
    data = null if timed else null[:, :, 0]
    return table, xr.DataArray(data, dims=dims, coords=coords, name="null")


def prediction_table(run: ModelRun, outs: dict, fold_of: np.ndarray) -> xr.Dataset:
    timed = run.times is not None
    shape = (len(run.sets), len(run.models), run.y.size) + ((run.times.size,) if timed else ())
    data = {k: np.full(shape, np.nan) for k in ("prediction", "decision", "label")}
    for i, name in enumerate(run.sets):
        for j, m in enumerate(run.models):
            for t in run.time_idx:
                for k, arr in data.items():
                    arr[(i, j, slice(None)) + ((t,) if timed else ())] = outs[(name, m, t, -1)][k]
    dims = ("feature_set", "model", "stimulus") + (("time",) if timed else ())
    first = next(iter(run.sets.values()))
    stim = {k: v.variable for k, v in first.coords.items() if v.dims == ("stimulus",)}
    coords = {"feature_set": text_coord(run.sets), "model": text_coord(run.models), **stim}
    if timed:
        coords["time"] = run.times
    ds = xr.Dataset({k: (dims, v) for k, v in data.items()}, coords=coords)
    ds["observed"] = ("stimulus", run.y, {"long_name": run.y_name})
    ds["fold"] = ("stimulus", fold_of)
    ds["prediction"].attrs["long_name"] = "out-of-fold prediction (memorability or class)"
    ds["decision"].attrs["long_name"] = "out-of-fold classifier score (higher = more memorable)"
    ds["label"].attrs["long_name"] = "class of the test stimulus from training-fold thresholds"
    return ds
