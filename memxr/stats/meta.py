"""Random-effects meta-analysis of correlations across individuals (subjects, monkeys).

Each individual gives a correlation ``r_i`` (of one ROI with memorability, say) with its
standard error; the group effect is their random-effects pooled value:

1. Fisher's ``z_i = atanh(r_i)`` with variance ``v_i``: by default from the individual's
   own confidence interval (``v_i = ((atanh(hi) - atanh(lo)) / (2 z_{(1+ci)/2}))**2``,
   which carries the concept structure the individual's analysis took into account), or
   ``1 / (n_i - 3)`` from the number of stimuli (too small when images are nested in
   concepts: every image is then counted as independent);
2. the between-individual variance ``tau**2`` by REML (default; Viechtbauer 2005,
   fixed-point iterations) or DerSimonian-Laird; Cochran's ``Q`` with its chi-square p
   and ``I**2 = max(0, (Q - (k - 1)) / Q)`` describe the heterogeneity;
3. the pooled ``mu = sum w_i z_i / sum w_i`` with ``w_i = 1 / (v_i + tau**2)``, and its
   interval and p-value by Hartung-Knapp-Sidik-Jonkman: ``se**2 = q / sum w_i`` with
   ``q = sum w_i (z_i - mu)**2 / (k - 1)`` (floored at 1, ``q = max(q, 1)``, the "modified"
   HKSJ that is never narrower than the classical interval; Roever et al. 2015), and
   Student's t on ``k - 1`` df: with the 3 to 8 individuals of THINGS-fMRI or TVSD, the
   classical normal interval ``mu +- 1.96 / sqrt(sum w_i)`` is far too narrow
   (``ci_method="z"`` gives it for comparison);
4. everything back on the r scale with ``tanh``; ``pi_low``, ``pi_high`` are the 95 %
   prediction interval of a new individual's correlation (``t_{k-2}``, k >= 3), and
   ``n_same_sign`` / ``sign_consistency`` count the individuals whose ``r`` has the sign
   of the pooled one.

Examples
--------
>>> import pandas as pd
>>> effects = pd.DataFrame({"subject": ["s1", "s2", "s3", "s1", "s2", "s3"],
...                         "roi": ["IT"] * 3 + ["V1"] * 3,
...                         "r": [0.12, 0.09, 0.15, 0.02, -0.01, 0.03],
...                         "n": [8000] * 6})
>>> pooled = pool_effects(effects, by="roi", individual="subject", se_from="n")
>>> pooled[["roi", "subject", "k", "n_same_sign"]].values.tolist()
[['IT', 'pooled', 3, 3], ['V1', 'pooled', 3, 2]]
>>> bool(pooled.p.iloc[0] < 0.05), bool(pooled.ci_low.iloc[0] > 0)
(True, True)
>>> len(pd.concat([effects, pooled], ignore_index=True))
8
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.stats

__all__ = ["META_METHODS", "pool_effects", "random_effects"]

META_METHODS = ("REML", "DL")
"""Estimators of the between-individual variance ``tau**2``."""


def _tau2_dl(z: np.ndarray, v: np.ndarray) -> float:
    w = 1 / v
    mu = np.sum(w * z) / np.sum(w)
    q = float(np.sum(w * (z - mu) ** 2))
    c = np.sum(w) - np.sum(w**2) / np.sum(w)
    return max(0.0, (q - (z.size - 1)) / c) if c > 0 else 0.0


def _tau2_reml(z: np.ndarray, v: np.ndarray, tol: float = 1e-10, max_iter: int = 200) -> float:
    tau2 = _tau2_dl(z, v)
    for _ in range(max_iter):
        w = 1 / (v + tau2)
        mu = np.sum(w * z) / np.sum(w)
        new = max(0.0, float(np.sum(w**2 * ((z - mu) ** 2 - v)) / np.sum(w**2) + 1 / np.sum(w)))
        if abs(new - tau2) < tol * max(1.0, tau2):
            return new
        tau2 = new
    return tau2


def random_effects(
    r: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray | None = None,
    *,
    se: Sequence[float] | np.ndarray | None = None,
    method: str = "REML",
    ci_method: str = "hksj",
    ci: float = 0.95,
    scale: str = "fisher",
) -> dict[str, float]:
    """Random-effects pooled correlation of ``k`` individuals (module notes).

    Parameters
    ----------
    r : array_like
        One correlation per individual.
    n : array_like, optional
        Stimuli per individual: ``v_i = 1 / (n_i - 3)`` when ``se`` is not given.
    se : array_like, optional
        Standard errors of ``atanh(r_i)`` (e.g. from each individual's concept jackknife
        interval); preferred over ``n``.
    method : {"REML", "DL"}
        Estimator of ``tau**2``.
    ci_method : {"hksj", "z"}
        Hartung-Knapp-Sidik-Jonkman with t on ``k - 1`` df (default; floored, module
        notes), or the normal interval.
    ci : float
        Coverage of the interval.
    scale : {"fisher", "identity"}
        ``"fisher"``: ``r`` are correlations, pooled as ``atanh(r)`` (``se`` on that
        scale); ``"identity"``: any effect pooled as given (a difference of two
        correlations, a latency in ms), ``se`` on its own scale and ``n`` not used for it.

    Returns
    -------
    dict
        ``r``, ``ci_low``, ``ci_high``, ``p``, ``z``, ``se_z``, ``tau2``, ``Q``, ``Q_p``,
        ``I2``, ``pi_low``, ``pi_high``, ``k``, ``n`` (total stimuli, NaN without ``n``),
        ``n_same_sign``, ``sign_consistency``, ``method``. With one individual: its
        ``r`` and NaN elsewhere. On the identity scale ``r`` is the pooled effect and
        ``z``, ``se_z`` are on its scale.

    Examples
    --------
    >>> out = random_effects([0.10, 0.14, 0.08, 0.12], [5000, 6000, 5500, 5200])
    >>> round(out["r"], 3), out["k"], round(out["I2"], 2)  # heterogeneous: tau2 > 0
    (0.11, 4, 0.74)
    >>> bool(out["ci_low"] > 0) and out["p"] < 0.01
    True
    >>> d = random_effects([12.0, 18.0, 15.0], se=[3.0, 4.0, 3.5], scale="identity")
    >>> round(d["r"], 1), bool(d["ci_low"] < 12 < 18 < d["ci_high"])  # ms, say
    (14.4, True)
    """
    if scale not in ("fisher", "identity"):
        raise ValueError(f"scale must be 'fisher' or 'identity', got {scale!r}")
    if method not in META_METHODS:
        raise ValueError(f"method must be one of {META_METHODS}, got {method!r}")
    if ci_method not in ("hksj", "z"):
        raise ValueError(f"ci_method must be 'hksj' or 'z', got {ci_method!r}")
    r = np.asarray(r, dtype=np.float64)
    n_arr = None if n is None else np.asarray(n, dtype=np.float64)
    if se is not None:
        v = np.asarray(se, dtype=np.float64) ** 2
    elif scale == "identity":
        raise ValueError("random_effects on the identity scale needs se")
    elif n_arr is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = 1.0 / (n_arr - 3.0)
    else:
        raise ValueError("random_effects needs se or n")
    if scale == "fisher":
        ok = np.isfinite(r) & np.isfinite(v) & (v > 0) & (np.abs(r) < 1)
        z_all, back = np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12)), np.tanh
    else:
        ok = np.isfinite(r) & np.isfinite(v) & (v > 0)
        z_all, back = r, (lambda x: x)
    z, v = z_all[ok], v[ok]
    k = int(z.size)
    nan = float("nan")
    out: dict = {
        "k": k,
        "n": float(np.nansum(n_arr[ok])) if n_arr is not None else nan,
        "method": f"random effects ({method}), "
        + ("HKSJ t interval (q floored at 1)" if ci_method == "hksj" else "normal interval"),
    }
    if k == 0:
        return out | dict.fromkeys(
            ["r", "ci_low", "ci_high", "p", "z", "se_z", "tau2", "Q", "Q_p", "I2", "pi_low",
             "pi_high", "n_same_sign", "sign_consistency"], nan)  # fmt: skip
    if k == 1:
        stats = dict.fromkeys(
            ["ci_low", "ci_high", "p", "se_z", "tau2", "Q", "Q_p", "I2", "pi_low", "pi_high"], nan
        )
        return out | stats | {"r": float(back(z[0])), "z": float(z[0]), "n_same_sign": 1,
                              "sign_consistency": 1.0}  # fmt: skip
    tau2 = _tau2_reml(z, v) if method == "REML" else _tau2_dl(z, v)
    w_fe = 1 / v
    mu_fe = np.sum(w_fe * z) / np.sum(w_fe)
    q_stat = float(np.sum(w_fe * (z - mu_fe) ** 2))
    w = 1 / (v + tau2)
    mu = float(np.sum(w * z) / np.sum(w))
    if ci_method == "hksj":
        q = float(np.sum(w * (z - mu) ** 2) / (k - 1))
        se_mu = float(np.sqrt(max(q, 1.0) / np.sum(w)))
        crit = float(scipy.stats.t.ppf((1 + ci) / 2, k - 1))
        p = float(2 * scipy.stats.t.sf(abs(mu) / se_mu, k - 1)) if se_mu > 0 else nan
    else:
        se_mu = float(np.sqrt(1 / np.sum(w)))
        crit = float(scipy.stats.norm.ppf((1 + ci) / 2))
        p = float(2 * scipy.stats.norm.sf(abs(mu) / se_mu))
    pi_low = pi_high = nan
    if k >= 3:
        half = float(scipy.stats.t.ppf((1 + ci) / 2, k - 2)) * np.sqrt(tau2 + se_mu**2)
        pi_low, pi_high = float(back(mu - half)), float(back(mu + half))
    same = int(np.sum(np.sign(z) == np.sign(mu))) if mu != 0 else 0
    return out | {
        "r": float(back(mu)),
        "ci_low": float(back(mu - crit * se_mu)),
        "ci_high": float(back(mu + crit * se_mu)),
        "p": p,
        "z": mu,
        "se_z": se_mu,
        "tau2": float(tau2),
        "Q": q_stat,
        "Q_p": float(scipy.stats.chi2.sf(q_stat, k - 1)),
        "I2": float(max(0.0, (q_stat - (k - 1)) / q_stat)) if q_stat > 0 else 0.0,
        "pi_low": pi_low,
        "pi_high": pi_high,
        "n_same_sign": same,
        "sign_consistency": same / k,
    }


def _se_from_ci(frame: pd.DataFrame, low: str, high: str, ci: float, scale: str) -> np.ndarray:
    lo, hi = frame[low].to_numpy(float), frame[high].to_numpy(float)
    if scale == "fisher":
        lo = np.arctanh(np.clip(lo, -1 + 1e-12, 1 - 1e-12))
        hi = np.arctanh(np.clip(hi, -1 + 1e-12, 1 - 1e-12))
    return (hi - lo) / (2 * scipy.stats.norm.ppf((1 + ci) / 2))


def pool_effects(
    effects: pd.DataFrame,
    by: str | Sequence[str] | None = None,
    *,
    individual: str = "subject",
    label: str = "pooled",
    r: str = "r",
    n: str = "n",
    se_from: str = "ci",
    ci_columns: tuple[str, str] = ("ci_low", "ci_high"),
    effects_ci: float = 0.95,
    method: str = "REML",
    ci_method: str = "hksj",
    ci: float = 0.95,
    scale: str = "fisher",
) -> pd.DataFrame:
    """Group rows of an effects table: one random-effects pooled row per ``by`` group.

    Parameters
    ----------
    effects : pandas.DataFrame
        One row per individual (and ROI, ...): columns ``r``, ``n`` and, for
        ``se_from="ci"``, the interval columns.
    by : str or sequence of str, optional
        Columns naming the groups (e.g. ``"roi"``); default one group.
    individual : str
        The column naming the individual; the pooled rows carry ``label`` there.
    label : str
        The individual label of the pooled rows.
    r, n : str
        Columns of the correlations and of the stimuli used.
    se_from : {"ci", "n"}
        Standard errors of ``atanh(r)`` from each row's interval (``ci_columns``, at
        coverage ``effects_ci``; recommended: the concept structure is in them), or
        ``1 / sqrt(n - 3)``.
    ci_columns : (str, str)
        The interval columns of ``effects`` (and of the pooled rows).
    effects_ci : float
        The coverage of the individuals' intervals.
    method, ci_method, ci, scale
        As in :func:`random_effects`: ``scale="identity"`` pools effects that are not
        correlations (``r`` names their column: a difference of correlations, a
        latency), with standard errors from the rows' intervals on their own scale.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, ``individual`` = ``label``, ``r``, the
        interval (``ci_columns``), ``p``, ``n`` (total) and :func:`random_effects`'s
        heterogeneity and consistency columns (a result named like a ``by`` column, such
        as ``method``, as ``meta_method``); ready to ``pd.concat`` under ``effects``.
    """
    if se_from not in ("ci", "n"):
        raise ValueError(f"se_from must be 'ci' or 'n', got {se_from!r}")
    keys = [] if by is None else ([by] if isinstance(by, str) else list(by))
    missing = [c for c in [r, *keys] + ([n] if se_from == "n" else list(ci_columns)) if c not in effects]
    if missing:
        raise ValueError(f"pool_effects: effects has no column(s) {missing}")
    groups = effects.groupby(keys, sort=False, dropna=False) if keys else [((), effects)]
    rows = []
    for key, part in groups:
        se = _se_from_ci(part, *ci_columns, effects_ci, scale) if se_from == "ci" else None
        res = random_effects(part[r].to_numpy(float),
                             part[n].to_numpy(float) if n in part else None, se=se,
                             method=method, ci_method=ci_method, ci=ci, scale=scale)  # fmt: skip
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        row[individual] = label
        row[r] = res.pop("r")
        row[ci_columns[0]] = res.pop("ci_low")
        row[ci_columns[1]] = res.pop("ci_high")
        row[n] = res.pop("n")
        # a group column named like a result (e.g. the correlation "method") keeps its
        # value; the result's goes under "meta_<name>"
        rows.append(row | {(f"meta_{k}" if k in row else k): v for k, v in res.items()})
    return pd.DataFrame(rows)
