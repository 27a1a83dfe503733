"""Pipeline steps of the follow-up analyses: confounds, comparisons, latency, group level.

All of them read the ROI magnitudes (stimuli x ROIs [x time bins], small and in memory),
never the cubes:

- :func:`correlations_step` adds to the plain correlations (column ``control`` = ``none``)
  partial correlations controlling for the per-image covariates of ``inputs.covariates``
  (and the category one-hot with ``control_category``; ``control`` = ``covariates``,
  :func:`memxr.stats.partial_correlate`, Freedman-Lane permutations), within-concept
  correlations (``within_concept``, :func:`memxr.stats.within_concept_correlate`) and
  random-effects group rows over the subjects or monkeys of a dataset (subject
  ``pooled``, :func:`memxr.stats.pool_effects`);
- :func:`comparisons_step`: differences of two ROIs' correlations on the same images
  (:func:`memxr.stats.compare_correlations`), with random-effects group rows of the
  differences (:func:`pooled_comparison_rows`) -> ``tables/comparisons.csv``;
- :func:`latency_step`: onset and peak of each area's effect in time-resolved cubes
  (:func:`memxr.stats.latency`), with group rows of onset and peak
  (:func:`pooled_latency_rows`) -> ``tables/latency.csv``;
- :func:`variance_partition_step`: unique and shared R^2 of ROI magnitudes and covariates
  (:func:`memxr.models.variance_partition`) -> ``tables/variance_partition.csv``.

Examples
--------
>>> table = pd.DataFrame({"dataset": "things-fmri", "subject": ["s1", "s2", "s3"],
...     "roi": "IT", "method": "pearson", "how": "mean", "trials": "single (train)",
...     "control": "none", "r": [0.2, 0.15, 0.25], "ci_low": [0.1, 0.05, 0.15],
...     "ci_high": [0.3, 0.25, 0.35], "n": 900})
>>> rows = pooled_rows(table)
>>> rows[["subject", "roi", "k"]].values.tolist(), bool(rows.p.iloc[0] < 0.05)
([['pooled', 'IT', 3]], True)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from ..reliability import MEMORABILITY_RELIABILITY
from ..schema import trials_label
from .core import Context, Step, write_csv, write_tree
from .spec import modality_of
from .steps import (
    analysis_cubes,
    correlate_all,
    correlation_rows,
    in_process,
    load_magnitudes,
    split_rows,
)

__all__ = [
    "COMPARISON_COLUMNS",
    "DEFAULT_PAIRS",
    "LATENCY_COLUMNS",
    "VARIANCE_PARTITION_COLUMNS",
    "comparisons_step",
    "correlations_step",
    "covariates_of",
    "latency_step",
    "pooled_comparison_rows",
    "pooled_latency_rows",
    "pooled_rows",
    "variance_partition_step",
]

DEFAULT_PAIRS = {
    "tvsd": [["IT", "V4"], ["V4", "V1"], ["IT", "V1"]],
    "things-fmri": [["IT", "V1"], ["FFA", "V1"], ["FFA", "PPA"]],
}
"""Pairs compared by default, per modality (each where the cube has both ROIs)."""

COMPARISON_COLUMNS = ["dataset", "subject", "method", "how", "trials", "pair", "roi_a", "roi_b",
                      "r_a", "r_b", "diff", "ci_low", "ci_high", "p", "p_fdr", "n", "p_family",
                      "ci_method"]  # fmt: skip
"""Columns of ``tables/comparisons.csv``."""

LATENCY_COLUMNS = ["dataset", "subject", "roi", "method", "trials", "onset", "onset_low",
                   "onset_high", "peak", "peak_low", "peak_high", "peak_r", "sign", "p_cluster",
                   "n_defined", "n", "criterion", "window", "p_family"]  # fmt: skip
"""Columns of ``tables/latency.csv``."""

VARIANCE_PARTITION_COLUMNS = ["dataset", "subject", "trials", "how", "features", "covariates",
                              "r2_neural", "r2_covariates", "r2_both", "unique_neural",
                              "unique_covariates", "shared", "p_unique_neural", "n",
                              "n_features", "n_covariates", "n_folds", "cv", "n_permutations",
                              "p_family"]  # fmt: skip
"""Columns of ``tables/variance_partition.csv``."""

CONTROLS = ("none", "covariates", "within_concept")
"""Values of the ``control`` column of ``tables/correlations.csv``."""


# ----------------------------------------------------------------------------- covariates


def _covariate_table(ctx: Context) -> pd.DataFrame | None:
    """The spec's per-image covariate table (read once per step), or None."""
    from ..readers.things_meta import read_image_table

    cov = ctx.spec.data["inputs"].get("covariates")
    if cov is None:
        return None
    return read_image_table(ctx.spec.resolve(cov["path"]), key=cov["key"])


def covariates_of(
    ctx: Context, ds: xr.Dataset, table: pd.DataFrame | None, category: bool
) -> tuple[xr.DataArray | None, dict]:
    """The covariates of the stimuli of ``ds``: the spec's columns and the category one-hot.

    Parameters
    ----------
    ctx : Context
        The run (its spec names the columns).
    ds : xarray.Dataset
        Magnitudes of one split (their ``stimulus_id`` and ``category``).
    table : pandas.DataFrame or None
        The covariate table (:func:`memxr.readers.things_meta.read_image_table`).
    category : bool
        Add the ``category`` coordinate one-hot encoded (:func:`memxr.stats.one_hot`).

    Returns
    -------
    covariates : xarray.DataArray or None
        Dims (``stimulus``, ``covariate``); None when there is none.
    counts : dict
        ``covariates`` (names), ``covariates_matched`` and ``covariates_missing`` (stimuli
        with every covariate, and without: absent from the table or an empty cell).
    """
    from ..align import join_covariates
    from ..stats import one_hot

    parts = []
    counts = {"covariates": "", "covariates_matched": len(ds["stimulus"]),
              "covariates_missing": 0}  # fmt: skip
    if table is not None:
        cov = ctx.spec.data["inputs"]["covariates"]
        joined = join_covariates(ds, table, cov["columns"])
        counts["covariates_matched"] = int(joined.attrs["n_matched"])
        counts["covariates_missing"] = int(
            joined.attrs["n_missing_value"] + joined.attrs["n_unknown"]
        )
        parts.append(joined.drop_vars([c for c in joined.coords if c != "covariate"]))
    if category and "category" in ds.coords:
        dummies = one_hot(ds["category"], prefix="category")
        if dummies.sizes.get("covariate", 0):
            parts.append(dummies.drop_vars([c for c in dummies.coords if c != "covariate"]))
    if not parts:
        return None, counts
    out = xr.concat(parts, dim="covariate") if len(parts) > 1 else parts[0]
    out = out.transpose("stimulus", "covariate").astype(np.float64)
    names = [str(c) for c in np.asarray(out["covariate"].values)]
    counts["covariates"] = ", ".join(names) if len(names) <= 6 else (
        ", ".join(names[:5]) + f" and {len(names) - 5} more")  # fmt: skip
    return out, counts


# ----------------------------------------------------------------------------- correlations


def _control_rows(ctx: Context, step: Step) -> list[pd.DataFrame]:
    """Rows of partial (covariates) and within-concept correlations of every cube."""
    from ..stats import partial_correlate, within_concept_correlate

    p = step.params
    mem_rel = p.get("memorability_reliability", MEMORABILITY_RELIABILITY)
    table = _covariate_table(ctx)
    rows: list[pd.DataFrame] = []
    kw = {"n_permutations": p["n_permutations"], "n_bootstrap": p["n_bootstrap"],
          "seed": p["seed"], "compute": True}  # fmt: skip
    for cube in analysis_cubes(step, ctx):
        ds = load_magnitudes(ctx, cube)
        for split in p["splits"]:
            part = ds.isel(stimulus=split_rows(ds, split))
            if int(np.isfinite(part["memorability"].values).sum()) < 3:
                continue
            cov, counts = covariates_of(ctx, part, table, p.get("control_category", False))
            if cov is not None and counts["covariates_matched"] < 4:
                ctx.log(f"    correlations: {cube['name']} {split}: "
                        f"{counts['covariates_matched']} images with every covariate: no "
                        "partial correlation")  # fmt: skip
                cov = None
            concepts = "concept" in part.coords and p.get("within_concept", True)
            for method in p["methods"]:
                for how in p["how"]:
                    if cov is not None:
                        rows.append(
                            _partial_rows(ctx, cube, part, cov, counts, method, how, split,
                                          mem_rel, kw, p["groups"], partial_correlate)
                        )  # fmt: skip
                    if concepts:
                        try:
                            with in_process():
                                res = within_concept_correlate(
                                    part[how], part["memorability"], "concept", method, **kw
                                )
                        except ValueError as e:
                            ctx.log(f"    correlations: {cube['name']} {split}: no "
                                    f"within-concept correlation ({e})")  # fmt: skip
                            concepts = False
                            continue
                        t = correlation_rows(res, part, method, how, split, mem_rel)
                        t["control"] = "within_concept"
                        t["n_concepts"] = int(res["n_concepts"])
                        t["p_family"] = (
                            f"p_fdr: Benjamini-Hochberg over the {len(t)} ROIs of this cube,"
                            " method, how and split (within-concept correlations; p from "
                            "memorability permuted within concepts)"
                        )
                        rows.append(t)
    return rows


def _partial_rows(ctx, cube, part, cov, counts, method, how, split, mem_rel, kw, groups,
                  partial_correlate) -> pd.DataFrame:  # fmt: skip
    """Rows of one partial correlation (all ROIs of a cube, one method, how and split)."""
    with in_process():
        res = partial_correlate(part[how], part["memorability"], cov, method, groups=groups, **kw)
    t = correlation_rows(res, part, method, how, split, mem_rel)
    t["control"] = "covariates"
    for k, v in counts.items():
        t[k] = v
    t["p_family"] = (
        f"p_fdr: Benjamini-Hochberg over the {len(t)} ROIs of this cube, method, how and split"
        " (partial correlations; Freedman-Lane permutations)"
    )
    return t


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN left out and kept)."""
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = scipy.stats.false_discovery_control(p[ok])
    return out


def _group_rows(table: pd.DataFrame, keys: list[str], effect: str, ci_columns: tuple[str, str],
                scale: str) -> pd.DataFrame:
    """Random-effects rows of ``effect`` per ``keys`` group with two individuals or more."""
    from ..stats import pool_effects

    keys = [k for k in keys if k in table]
    indiv = table.loc[table["subject"].astype(str) != "pooled"]
    indiv = indiv.loc[np.isfinite(indiv[effect].to_numpy(float))]
    several = indiv.groupby(keys, dropna=False)["subject"].transform("nunique") >= 2
    indiv = indiv.loc[several]
    if indiv.empty:
        return pd.DataFrame()
    with_ci = np.isfinite(indiv[list(ci_columns)].to_numpy(float)).all(axis=1).all()
    if scale == "identity" and not with_ci:
        return pd.DataFrame()
    pooled = pool_effects(indiv, by=keys, individual="subject", r=effect, ci_columns=ci_columns,
                          se_from="ci" if with_ci else "n", scale=scale)  # fmt: skip
    pooled["se_from"] = "ci" if with_ci else "n"
    return pooled


def _fdr_within(pooled: pd.DataFrame, family: list[str]) -> pd.Series:
    return pooled.groupby(family, dropna=False)["p"].transform(
        lambda s: pd.Series(_bh(s.to_numpy(float)), index=s.index)
    )


def pooled_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Random-effects group rows: per dataset, ROI, method, how, trials and control, over the
    individuals (subjects, monkeys) of the dataset, where there are at least two.

    Fisher-z random effects with REML and Hartung-Knapp-Sidik-Jonkman intervals
    (:func:`memxr.stats.pool_effects`), each individual's standard error from its own
    (concept-resampled) interval, or from ``n`` when the table has no intervals. The
    rows carry ``subject = "pooled"``, ``k``, ``tau2``, ``I2``, ``n_same_sign`` and
    ``p_fdr``: Benjamini-Hochberg over the pooled ROIs of a dataset, method, how, trials and
    control (``p_family``).

    Parameters
    ----------
    table : pandas.DataFrame
        The correlation rows (columns ``dataset``, ``subject``, ``roi``, ``method``, ``how``,
        ``trials``, ``control``, ``r``, ``ci_low``, ``ci_high``, ``n``).

    Returns
    -------
    pandas.DataFrame
        The group rows (empty when no dataset has two individuals).
    """
    if table.empty:
        return pd.DataFrame()
    keys = ["dataset", "roi", "method", "how", "trials", "control"]
    pooled = _group_rows(table, keys, "r", ("ci_low", "ci_high"), "fisher")
    if pooled.empty:
        return pooled
    pooled["p_fdr"] = _fdr_within(pooled, [k for k in keys if k in table and k != "roi"])
    pooled["p_family"] = (
        "random effects over the k individuals (REML tau2, HKSJ interval and p, t on k-1 df); "
        "p_fdr: Benjamini-Hochberg over the pooled ROIs of this dataset, method, how, trials "
        "and control"
    )
    return pooled


def pooled_comparison_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Random-effects group rows of ``tables/comparisons.csv``: ``r_a - r_b`` pooled.

    Per dataset, pair, method, how and trials over the individuals with the pair (at
    least two): the differences pooled as they are (identity scale, REML ``tau2``, HKSJ
    interval and p on ``k - 1`` df), each individual's standard error from its
    concept-jackknife interval. ``r_a`` and ``r_b`` of a group row are the Fisher-z means
    of the individuals' (descriptive); ``p_fdr`` over the pooled pairs of a dataset,
    method, how and trials.

    Parameters
    ----------
    table : pandas.DataFrame
        The comparison rows (:data:`COMPARISON_COLUMNS`).

    Returns
    -------
    pandas.DataFrame
        The group rows (``subject`` = ``pooled``; empty when no dataset has two
        individuals with a pair).

    Examples
    --------
    >>> t = pd.DataFrame({"dataset": "things-fmri", "subject": ["s1", "s2", "s3"],
    ...     "method": "pearson", "how": "mean", "trials": "single (train)", "pair": "IT-V1",
    ...     "roi_a": "IT", "roi_b": "V1", "r_a": [0.21, 0.18, 0.2], "r_b": [0.01, 0.03, 0.0],
    ...     "diff": [0.20, 0.15, 0.2], "ci_low": [0.16, 0.11, 0.16],
    ...     "ci_high": [0.24, 0.19, 0.24], "n": 8740})
    >>> row = pooled_comparison_rows(t).iloc[0]
    >>> row["subject"], int(row["k"]), round(float(row["diff"]), 3), bool(row["p"] < 0.05)
    ('pooled', 3, 0.183, True)

    With two individuals (the two TVSD monkeys) the interval has t on 1 df: only very
    consistent, large differences reach p < .05 at the group level.
    """
    if table.empty:
        return pd.DataFrame()
    keys = ["dataset", "pair", "roi_a", "roi_b", "method", "how", "trials"]
    pooled = _group_rows(table, keys, "diff", ("ci_low", "ci_high"), "identity")
    if pooled.empty:
        return pooled
    keys = [k for k in keys if k in table]
    indiv = table.loc[table["subject"].astype(str) != "pooled"]
    for col in ("r_a", "r_b"):
        z = np.arctanh(np.clip(indiv[col].to_numpy(float), -1 + 1e-12, 1 - 1e-12))
        means = indiv.assign(_z=z).groupby(keys, dropna=False)["_z"].mean().map(np.tanh)
        pooled = pooled.merge(means.rename(col).reset_index(), on=keys, how="left")
    pooled["p_fdr"] = _fdr_within(pooled, [k for k in ("dataset", "method", "how", "trials")
                                           if k in table])  # fmt: skip
    pooled["ci_method"] = "random effects of r_a - r_b (REML tau2, HKSJ t on k-1 df)"
    pooled["p_family"] = (
        "random effects over the k individuals of the differences (identity scale, SE from "
        "each individual's interval); p_fdr: Benjamini-Hochberg over the pooled pairs of this "
        "dataset, method, how and trials"
    )
    return pooled


def pooled_latency_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Random-effects group rows of ``tables/latency.csv``: onset and peak pooled.

    Per dataset, ROI, method and trials over the individuals (at least two with a
    finite onset, resp. peak): onset and peak times pooled as they are (identity scale,
    REML ``tau2``, HKSJ interval on ``k - 1`` df), each individual's standard error from
    its concept-bootstrap percentile interval (width / 3.92). No p-value: the pooled
    times are estimates of when, given the individuals' cluster tests.

    Parameters
    ----------
    table : pandas.DataFrame
        The latency rows (:data:`LATENCY_COLUMNS`).

    Returns
    -------
    pandas.DataFrame
        Group rows (``subject`` = ``pooled``) with ``onset``, ``onset_low``,
        ``onset_high``, ``peak``, ``peak_low``, ``peak_high``, ``k`` and the between
        individual variances ``onset_tau2``, ``peak_tau2``.

    Examples
    --------
    >>> t = pd.DataFrame({"dataset": "tvsd-trials", "subject": ["monkeyN", "monkeyF"],
    ...     "roi": "IT", "method": "pearson", "trials": "single (train)",
    ...     "onset": [98.0, 104.0], "onset_low": [90.0, 95.0], "onset_high": [106.0, 113.0],
    ...     "peak": [150.0, 160.0], "peak_low": [140.0, 145.0], "peak_high": [160.0, 175.0],
    ...     "n": 22248})
    >>> row = pooled_latency_rows(t).iloc[0]
    >>> row["subject"], int(row["k"]), bool(98 < row["onset"] < 104)
    ('pooled', 2, True)
    """
    if table.empty:
        return pd.DataFrame()
    keys = [k for k in ("dataset", "roi", "method", "trials") if k in table]
    out = None
    for what in ("onset", "peak"):
        if not {what, f"{what}_low", f"{what}_high"} <= set(table):
            continue
        pooled = _group_rows(table, keys, what, (f"{what}_low", f"{what}_high"), "identity")
        if pooled.empty:
            continue
        cols = [*keys, "subject", what, f"{what}_low", f"{what}_high", "k", "tau2"]
        pooled = pooled[cols + (["n"] if out is None else [])].rename(
            columns={"tau2": f"{what}_tau2", "k": f"k_{what}"})
        out = pooled if out is None else out.merge(pooled, on=[*keys, "subject"], how="outer")
    if out is None:
        return pd.DataFrame()
    for what in ("onset", "peak"):
        for col in (what, f"{what}_low", f"{what}_high", f"{what}_tau2", f"k_{what}"):
            if col not in out:
                out[col] = np.nan
    out["k"] = out[["k_onset", "k_peak"]].max(axis=1).astype(int)
    out["p_family"] = (
        "random effects over the k individuals of the onset and peak times (identity scale, "
        "SE from each individual's bootstrap interval, HKSJ interval on k-1 df); no test"
    )
    return out


def correlations_step(ctx: Context, step: Step) -> None:
    """Correlations of every ROI magnitude with memorability, and their follow-ups.

    Per method, reduction and split: the plain correlation (``control`` = ``none``), the
    partial correlation controlling for the covariates (``covariates``; with the matched
    and missing stimuli counted), the within-concept correlation (``within_concept``),
    and random-effects group rows over the individuals of a dataset (``subject`` =
    ``pooled``).
    """
    p = step.params
    table, groups, _ = correlate_all(ctx, step, lambda how: how, p["how"], False)
    write_tree(groups, ctx.path(step.outputs[0]), ctx.provenance(step, analysis_cubes(step, ctx)))
    if not table.empty:
        table["control"] = "none"
        table = pd.concat([table, *_control_rows(ctx, step)], ignore_index=True)
        if p.get("pool", True):
            table = pd.concat([table, pooled_rows(table)], ignore_index=True)
    write_csv(table, ctx.path(step.outputs[1]))


# ----------------------------------------------------------------------------- comparisons


def _pairs_for(p: dict, dataset: str, rois: list[str]) -> list[tuple[str, str]]:
    """The pairs of the spec (or the modality's defaults) whose ROIs the cube has."""
    wanted = p["pairs"] or DEFAULT_PAIRS.get(modality_of(dataset), [])
    return [(a, b) for a, b in wanted if a in rois and b in rois]


def comparisons_step(ctx: Context, step: Step) -> None:
    """Differences of dependent correlations of ROI pairs -> ``tables/comparisons.csv``.

    Per cube and split, ``r_a - r_b`` with a concept-jackknife (or concept-bootstrap)
    interval and p of ``rho_a = rho_b`` (:func:`memxr.stats.compare_correlations`);
    ``p_fdr`` over the pairs of one cube and split (``p_family``).
    """
    from ..stats import compare_correlations, comparison_table

    p = step.params
    frames = []
    for cube in analysis_cubes(step, ctx):
        ds = load_magnitudes(ctx, cube)
        dataset, subject = ds.attrs.get("dataset", ""), ds.attrs.get("subject", "")
        x_all = ds[p["how"]]
        filled = [str(r) for r, ok in zip(np.asarray(ds["roi"].values),
                  np.isfinite(np.asarray(x_all.values)).any(axis=0), strict=True) if ok]  # fmt: skip
        pairs = _pairs_for(p, dataset, filled)
        if not pairs:
            ctx.log(f"    comparisons: {cube['name']}: no pair of the spec among {filled}")
            continue
        for split in p["splits"]:
            part = ds.isel(stimulus=split_rows(ds, split))
            if int(np.isfinite(part["memorability"].values).sum()) < 4:
                continue
            with in_process():
                res = compare_correlations(
                    part[p["how"]], part["memorability"], pairs, along="roi",
                    method=p["method"], groups=p["groups"], n_bootstrap=p["n_bootstrap"],
                    seed=p["seed"], ci_method=p["ci_method"], compute=True,
                )  # fmt: skip
            t = comparison_table(res)
            t = t.drop(columns=[c for c in t.columns if c in ("dataset", "subject")])
            t = t.assign(dataset=dataset, subject=subject, method=p["method"], how=p["how"],
                         trials=trials_label(part, split), ci_method=res.attrs["test"])  # fmt: skip
            t["p_family"] = (
                f"p_fdr: Benjamini-Hochberg over the {len(pairs)} pairs of this cube and split"
            )
            frames.append(t)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if p["pool"] and not table.empty:
        table = pd.concat([table, pooled_comparison_rows(table)], ignore_index=True)
    if table.empty:
        table = pd.DataFrame(columns=COMPARISON_COLUMNS)
    rest = [c for c in table.columns if c not in COMPARISON_COLUMNS]
    write_csv(table[COMPARISON_COLUMNS + rest], ctx.path(step.outputs[0]))


# ----------------------------------------------------------------------------- latency


def latency_step(ctx: Context, step: Step) -> None:
    """Onset and peak of the memorability effect per area of each time-resolved cube.

    From the windowless ROI means per time bin (``mean_time`` of the magnitudes) by
    :func:`memxr.stats.latency`: the largest cluster's sign and family-wise ``p_cluster``,
    onset and peak with concept-bootstrap percentile intervals -> ``tables/latency.csv``.
    """
    from ..stats import latency

    p = step.params
    frames = []
    for cube in analysis_cubes(step, ctx):
        ds = load_magnitudes(ctx, cube)
        if "mean_time" not in ds:
            continue
        for split in p["splits"]:
            part = ds.isel(stimulus=split_rows(ds, split))
            if int(np.isfinite(part["memorability"].values).sum()) < 4:
                continue
            x = part["mean_time"].dropna("roi", how="all")
            with in_process():
                res = latency(
                    x, part["memorability"], method=p["method"], groups=p["groups"],
                    criterion=p["criterion"], fraction=p["fraction"], threshold=p["threshold"],
                    window=tuple(p["window"]) if p["window"] else None,
                    n_permutations=p["n_permutations"], n_bootstrap=p["n_bootstrap"],
                    seed=p["seed"],
                )  # fmt: skip
            keep = [v for v in LATENCY_COLUMNS if v in res.data_vars]
            sub = res[keep]
            t = sub.drop_vars([c for c in sub.coords if c != "roi"]).to_dataframe()
            t = t.reset_index()
            n = int(np.isfinite(part["memorability"].values).sum())
            t = t.assign(dataset=ds.attrs.get("dataset", ""), subject=ds.attrs.get("subject", ""),
                         method=p["method"], trials=trials_label(part, split), n=n,
                         criterion=res.attrs["criterion"], window=res.attrs["window"],
                         p_family=res.attrs["p_family"] + "; onset and peak intervals: "
                         + res.attrs["interval"])  # fmt: skip
            frames.append(t)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if p["pool"] and not table.empty:
        table = pd.concat([table, pooled_latency_rows(table)], ignore_index=True)
    if table.empty:
        table = pd.DataFrame(columns=LATENCY_COLUMNS)
    rest = [c for c in table.columns if c not in LATENCY_COLUMNS]
    write_csv(table[LATENCY_COLUMNS + rest], ctx.path(step.outputs[0]))


# ----------------------------------------------------------------------------- variance


def variance_partition_step(ctx: Context, step: Step) -> None:
    """Unique and shared cross-validated R^2 of each cube's ROI magnitudes and the covariates.

    One row per cube and split (:func:`memxr.models.variance_partition`: ridge on the ROI
    magnitudes, on the covariates and on both, concept-grouped folds, Freedman-Lane
    permutations of ``p_unique_neural``) -> ``tables/variance_partition.csv``.
    """
    from ..models import variance_partition

    p = step.params
    table_in = _covariate_table(ctx)
    cv = p["cv"] if p["groups"] else ("random", p["cv"])
    frames = []
    for cube in analysis_cubes(step, ctx):
        ds = load_magnitudes(ctx, cube)
        for split in p["splits"]:
            part = ds.isel(stimulus=split_rows(ds, split))
            cov, counts = covariates_of(ctx, part, table_in, p["control_category"])
            if cov is None:
                continue
            x = part[p["how"]].dropna("roi", how="all")
            y = np.asarray(part["memorability"].values, dtype=float)
            usable = np.isfinite(y) & np.isfinite(cov.values).all(1) & np.isfinite(x.values).all(1)
            if usable.sum() < 4 * p["cv"]:
                ctx.log(f"    variance_partition: {cube['name']} {split}: {int(usable.sum())} "
                        "usable images: too few")  # fmt: skip
                continue
            row = variance_partition(
                x, "memorability", cov, groups=p["groups"], cv=cv,
                n_permutations=p["n_permutations"], seed=p["seed"],
            )  # fmt: skip
            row = row.assign(
                dataset=ds.attrs.get("dataset", ""), subject=ds.attrs.get("subject", ""),
                trials=trials_label(part, split), how=p["how"],
                features=", ".join(str(r) for r in np.asarray(x["roi"].values)),
                covariates=counts["covariates"],
                covariates_matched=counts["covariates_matched"],
                covariates_missing=counts["covariates_missing"],
            )  # fmt: skip
            frames.append(row)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty:
        table = pd.DataFrame(columns=VARIANCE_PARTITION_COLUMNS)
    rest = [c for c in table.columns if c not in VARIANCE_PARTITION_COLUMNS]
    write_csv(table[VARIANCE_PARTITION_COLUMNS + rest], ctx.path(step.outputs[0]))
