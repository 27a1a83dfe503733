"""Scores of :func:`memxr.models.fit_models` from the pooled out-of-fold outputs.

Regressors: Pearson r, Spearman rho and R^2 of the pooled predictions; classifiers: accuracy
of the pooled classes and ROC AUC per test fold, averaged. Permutation chance levels and the
tables of a run (:func:`summarize`, :func:`prediction_table`) are built here.
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


def _fold_auc(label: np.ndarray, decision: np.ndarray, fold: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    aucs = []
    for f in np.unique(fold[fold >= 0]):
        m = (fold == f) & np.isfinite(label) & np.isfinite(decision)
        if np.unique(label[m]).size == 2:
            aucs.append(roc_auc_score(label[m], decision[m]))
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


def _scores(out: dict[str, np.ndarray], y: np.ndarray, model: str, fold_of: np.ndarray) -> dict:
    if model in CLASSIFIERS:
        return _classification_scores(out["label"], out["prediction"], out["decision"], fold_of)
    return _regression_scores(y, out["prediction"])


def _chance(null: np.ndarray, observed: float) -> dict[str, Any]:
    finite = null[np.isfinite(null)]
    if not finite.size:
        return {"chance_mean": float("nan"), "chance_p": float("nan"), "n_permutations": 0}
    p = (1 + np.sum(finite >= observed)) / (1 + finite.size) if np.isfinite(observed) else np.nan
    return {
        "chance_mean": float(finite.mean()),
        "chance_p": float(p),
        "n_permutations": int(finite.size),
    }


_SCORES = ("pearson_r", "spearman_rho", "r2", "accuracy", "roc_auc")


def summarize(
    run: ModelRun, outs: dict, fold_of: np.ndarray, noise_ceiling: Any, split: str
) -> tuple[pd.DataFrame, xr.DataArray]:
    rows = []
    null = np.full((len(run.sets), len(run.models), len(run.time_idx), run.n_perm), np.nan)
    for i, name in enumerate(run.sets):
        ceiling = _ceiling(noise_ceiling, name)
        for j, m in enumerate(run.models):
            metric, regressor = _primary(m), m in REGRESSORS
            for ti, t in enumerate(run.time_idx):
                scores = _scores(outs[(name, m, t, -1)], run.y, m, fold_of)
                for p in range(run.n_perm):
                    perm = _scores(outs[(name, m, t, p)], run.y_perms[p + 1], m, fold_of)
                    null[i, j, ti, p] = perm[metric]
                row = {
                    "feature_set": name,
                    "model": m,
                    "kind": "regressor" if regressor else "classifier",
                    "cv": run.kind,
                    "n_stimuli": scores["n_stimuli"],
                    "n_dropped": run.n_dropped,
                    "n_folds": run.n_folds,
                }
                if run.times is not None:
                    row["time"] = float(run.times[t])
                row.update({k: scores.get(k, float("nan")) for k in _SCORES})
                row["metric"] = metric
                row["label_split"] = "" if regressor else split
                row.update(_chance(null[i, j, ti], scores[metric]))
                row["noise_ceiling"] = ceiling if regressor else float("nan")
                row["fraction_of_ceiling"] = scores[metric] / ceiling if regressor else float("nan")
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
