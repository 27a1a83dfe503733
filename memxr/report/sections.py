"""The per-analysis sections of a report and its methods notes.

Each table of a run gets a section: heading, explanation, figure and a compact
table (a summary for the time courses and the predictions).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from . import plots
from .findings import comparison_statements, model_scores, timecourse_peaks
from .html import esc, img_tag, table_html
from .summary import spec_of
from .tables import DERIVED, TABLES, num_col, text_col

_SECTIONS = {
    "correlations": (
        "ROI responses and memorability",
        "Per ROI, the stimulus-wise response (ROI reduction given in column how) is correlated "
        "with the THINGS memorability score across stimuli, on the train images (single "
        "trials, the main analysis) and apart on the test images (means of their repeats, the "
        "high-SNR check): column trials, one panel each. Bars: Pearson and Spearman r with "
        "bootstrap confidence intervals; dashed segments: the ceiling on r(ROI, memorability) "
        "for those trials, sqrt(neural reliability x memorability reliability); marks: BH-FDR "
        "adjusted p (* < .05, ** < .01, *** < .001; its family in column p_family). "
        "Highlighted rows are FDR-significant.",
        (
            "dataset",
            "subject",
            "roi",
            "method",
            "how",
            "trials",
            "r",
            "ci_low",
            "ci_high",
            "p",
            "p_fdr",
            "sig",
            "n",
            "n_channels",
            "noise_ceiling",
            "neural_reliability",
            "memorability_reliability",
            "p_family",
        ),
    ),
    "confounds": (
        "Confounds: covariates and concepts",
        "Per ROI, the plain correlation (r) beside the partial correlation controlling for "
        "the per-image covariates (r_covariates; the covariates named in column "
        "covariates, with the category one-hot when control_category is set) and "
        "the within-concept correlation (r_within_concept: deviations of response and "
        "memorability from their concept means). Partial correlations remove what the "
        "covariates explain from both the response and memorability; their p comes from "
        "Freedman-Lane permutations (the residual of memorability on the covariates permuted "
        "by concept). Within-concept p permutes memorability among the images of each concept "
        "only, so concept-level memorability cannot produce it. An effect that vanishes under "
        "the covariates (a V1 carried by low-level image statistics) is a confound; one that "
        "survives within concepts is not a concept (category) effect. Trials: column trials, "
        "train single trials and test means apart. Families: p_fdr is Benjamini-Hochberg over "
        "the ROIs of one cube, method, reduction, split and control (p_family of "
        "tables/correlations.csv); covariates_matched / covariates_missing count the images "
        "with and without every covariate.",
        None,
    ),
    "variance_partition": (
        "Variance partitioning: ROI magnitudes and covariates",
        "Cross-validated R² of memorability from the ROI magnitudes (r2_neural), the "
        "covariates (r2_covariates) and both (r2_both), under the same concept-grouped folds; "
        "unique_neural = r2_both - r2_covariates is what only the neural responses predict, "
        "shared what either does. p_unique_neural: one Freedman-Lane permutation test per "
        "row (memorability's residual on the covariates permuted by concept, the whole fit "
        "redone; family: that single test, p_family). Trials: column trials.",
        (
            "dataset",
            "subject",
            "trials",
            "features",
            "covariates",
            "r2_neural",
            "r2_covariates",
            "r2_both",
            "unique_neural",
            "unique_covariates",
            "shared",
            "p_unique_neural",
            "n",
            "n_folds",
            "n_permutations",
        ),
    ),
    "comparisons": (
        "Comparisons of ROIs: is the effect larger in one area than another?",
        "For each pair of ROIs of one recording, the difference of their correlations with "
        "memorability on the same images, diff = r_a - r_b, with a concept jackknife (or "
        "concept bootstrap) interval and the p of H0: rho_a = rho_b (column ci_method): the "
        "two correlations are dependent (same images, shared noise) and resampling concepts "
        "keeps that dependence. A chain such as IT > V4 > V1 is stated as supported only when "
        "every step of it is significant (p_fdr < 0.05, diff > 0). Trials: column trials. "
        "Family: p_fdr is Benjamini-Hochberg over the pairs of one recording and split "
        "(p_family). Group rows (subject pooled): the individuals' differences combined by "
        "random effects (REML, Hartung-Knapp-Sidik-Jonkman interval and p with t on k - 1 "
        "df: with the two monkeys, 1 df), p_fdr over the pooled pairs of a dataset and split.",
        (
            "dataset",
            "subject",
            "trials",
            "method",
            "how",
            "pair",
            "r_a",
            "r_b",
            "diff",
            "ci_low",
            "ci_high",
            "p",
            "p_fdr",
            "sig",
            "n",
            "k",
        ),
    ),
    "individuals": (
        "Individuals and the group",
        "Each subject's (or monkey's) correlation and the random-effects pooled correlation "
        "over the individuals of a dataset (subject pooled): Fisher z, each individual's "
        "standard error from its own concept-resampled interval, REML between-individual "
        "variance tau2, Hartung-Knapp-Sidik-Jonkman interval and p on k - 1 df; I2 and "
        "n_same_sign describe heterogeneity and sign consistency. With 2-3 individuals the "
        "pooled interval is wide by construction. Trials: column trials (train single trials "
        "and test means are pooled apart). Family: p_fdr of the pooled rows is "
        "Benjamini-Hochberg over the pooled ROIs of a dataset, method, reduction, trials and "
        "control (p_family).",
        (
            "dataset",
            "subject",
            "roi",
            "method",
            "how",
            "trials",
            "r",
            "ci_low",
            "ci_high",
            "p",
            "p_fdr",
            "sig",
            "k",
            "tau2",
            "I2",
            "n_same_sign",
            "pi_low",
            "pi_high",
        ),
    ),
    "latency": (
        "Latency of the memorability effect",
        "Per area of the time-resolved recordings, the onset (the time at which the effect "
        "rises through a fraction of its peak, column criterion) and the peak of the "
        "correlation with memorability, with percentile intervals from concept-bootstrap time "
        "courses measured by the same criterion; the time-course figure marks them (triangle: "
        "onset, diamond: peak, bars: intervals). p_cluster (family-wise over the areas and "
        "time bins of a recording, p_family) says whether there is an effect at all: the "
        "latency of an area without one is the latency of noise. Trials: column trials. Group "
        "rows (subject pooled): onset and peak combined over the individuals by random effects "
        "(each individual's standard error from its bootstrap interval, HKSJ interval on k - 1 "
        "df); no test.",
        (
            "dataset",
            "subject",
            "roi",
            "trials",
            "onset",
            "onset_low",
            "onset_high",
            "peak",
            "peak_low",
            "peak_high",
            "peak_r",
            "p_cluster",
            "n_defined",
            "k",
            "criterion",
        ),
    ),
    "timecourse": (
        "Time course of the memorability effect",
        "Correlation with memorability in each time bin per area; bands are bootstrap "
        "confidence intervals, dots mark the bins of significant clusters: a cluster-mass "
        "permutation test over time from the same concept permutations, family-wise over the "
        "areas and time bins of a recording (column p_cluster_family). The table gives, per "
        "line, the peak and the first bin in a significant cluster (the full table is in the "
        "CSV).",
        None,
    ),
    "timecourse_clusters": (
        "Clusters of the time courses",
        "Every cluster of adjacent time bins whose correlation exceeds the cluster-forming "
        "threshold, with its onset and offset (ms), mass and family-wise p-value "
        "(p_cluster); the onset and offset describe the cluster, they are not tested bin by "
        "bin. Significant clusters first.",
        (
            "dataset",
            "subject",
            "method",
            "trials",
            "roi",
            "sign",
            "onset",
            "offset",
            "n_bins",
            "mass",
            "p_cluster",
            "p_family",
        ),
    ),
    "models": (
        "Memorability models",
        "Cross-validated predictions of memorability from neural features. Bars: the score "
        "named in column metric; black segments: mean of the permutation null (grey band: its "
        "interval when recorded); dashed segments: the ceiling on r(prediction, memorability) "
        "(column ceiling_basis). Train images (single trials) and test images (repeat means) "
        "are fit apart (column trials). chance_p_fdr adjusts chance_p over the rows of a fit "
        "(p_family). Hatched bars use random-split CV (shown for comparison with "
        "concept-grouped CV).",
        (
            "dataset",
            "subject",
            "feature_set",
            "model",
            "kind",
            "cv",
            "trials",
            "time",
            "metric",
            "score",
            "chance_mean",
            "chance_p",
            "chance_p_fdr",
            "noise_ceiling",
            "fraction_of_ceiling",
            "pearson_r",
            "spearman_rho",
            "r2",
            "accuracy",
            "roc_auc",
            "n_stimuli",
            "n_folds",
            "n_permutations",
            "stopped_early",
            "n_components",
            "p_family",
        ),
    ),
    "predictions": (
        "Out-of-fold predictions",
        "Predicted against observed memorability for each held-out stimulus (dotted: identity, "
        "solid: least-squares fit). The figure shows, for each subject, the regressor with the "
        "best Pearson r under concept-grouped CV; the table summarizes every model.",
        None,
    ),
    "bridge_effects": (
        "Human and macaque on shared stimuli",
        "Memorability correlations of human ROIs and monkey areas computed on the same shared "
        "stimuli for each human-monkey pair, on the shared train images and apart on the "
        "shared test images (column trials).",
        None,
    ),
    "bridge_rsa": (
        "Cross-species representational similarity",
        "Correlation between the representational dissimilarity matrices of each human ROI and "
        "monkey area over the shared images (or concepts); marks from BH-FDR adjusted p.",
        None,
    ),
    "bridge_decoding": (
        "Cross-species decoding",
        "Memorability decoders trained on one species (on concepts the shared images do not "
        "show) and tested on the other through a map learnt on the shared images. p is the "
        "larger of p_source (the decoder learnt memorability) and p_target (the mapped "
        "responses carry it), so it is valid whichever way the transfer fails; p_fdr over the "
        "decoding rows of a pair.",
        None,
    ),
}


def _section_table(name: str, df: pd.DataFrame) -> str:
    if df.empty:
        return table_html(df)
    if name == "timecourse":
        peaks = timecourse_peaks(df)
        return table_html(peaks) if not peaks.empty else table_html(df)
    if name == "timecourse_clusters":
        order = df.assign(_p=num_col(df, "p_cluster")).sort_values("_p", kind="stable")
        return table_html(order, _SECTIONS[name][2])
    if name == "predictions":
        return table_html(_prediction_summary(df))
    if name == "comparisons":
        statements = comparison_statements(df)
        listed = "".join(f"<li>{esc(t)}</li>" for t in statements)
        return (f'<ul class="findings">{listed}</ul>' if listed else "") + table_html(
            _with_marks(df), _SECTIONS[name][2]
        )
    if name == "models":
        scored = model_scores(df).rename(columns={"_score": "score"})
        return table_html(scored, _SECTIONS[name][2])
    columns = _SECTIONS[name][2] if name in _SECTIONS else None
    return table_html(_with_marks(df), columns)


def _prediction_summary(df: pd.DataFrame) -> pd.DataFrame:
    if not {"observed", "predicted"} <= set(df):
        return df
    keys = [k for k in ("dataset", "subject", "feature_set", "model") if k in df]
    work = df.assign(_o=num_col(df, "observed"), _p=num_col(df, "predicted"))
    rows = []
    groups = work.groupby([text_col(work, k) for k in keys], sort=False) if keys else [((), work)]
    for key, g in groups:
        g = g.loc[np.isfinite(g["_o"]) & np.isfinite(g["_p"])]
        ok = len(g) >= 3 and np.ptp(g["_o"]) > 0 and np.ptp(g["_p"]) > 0
        r = float(np.corrcoef(g["_o"], g["_p"])[0, 1]) if ok else np.nan
        rows.append(
            dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            | {"n": len(g), "pearson_r": r}
        )
    return pd.DataFrame(rows)


def _with_marks(df: pd.DataFrame) -> pd.DataFrame:
    """Add a ``sig`` column of ``*`` marks from ``p_fdr``."""
    if "p_fdr" not in df or "sig" in df:
        return df
    out = df.copy()
    marks = [plots.stars(p) for p in pd.to_numeric(df["p_fdr"], errors="coerce")]
    out.insert(list(df.columns).index("p_fdr") + 1, "sig", marks)
    return out


def sections_html(tables: Mapping[str, pd.DataFrame], pngs: Mapping[str, Path]) -> str:
    parts = []
    names = [t for t in TABLES if t in tables] + sorted(t for t in tables if t not in TABLES)
    for name in names:
        heading, text, _ = _SECTIONS.get(name, (name.replace("_", " "), "", None))
        fig = img_tag(pngs[name], heading) if name in pngs else ""
        parts.append(
            f'<section id="{esc(name)}"><h2>{esc(heading)}</h2>'
            + (f"<p>{esc(text)}</p>" if text else "")
            + (f"<figure>{fig}</figure>" if fig else "")
            + f'<p class="note">Table: tables/{esc(DERIVED.get(name, name + ".csv"))}</p>'
            + _section_table(name, tables[name])
            + "</section>"
        )
    return "\n".join(parts)


def methods_notes(tables: Mapping[str, pd.DataFrame], prov: Mapping) -> list[str]:
    """Methods notes for the analyses present (plain text)."""
    notes = []
    if any(t in tables for t in ("correlations", "timecourse", "bridge_effects")):
        notes.append(
            "Correlations: Pearson r is reported together with Spearman's rank correlation, "
            "which is robust to outliers and to monotone non-linear relations. p-values are "
            "two-sided permutation p-values, (1 + #{|r_perm| >= |r|}) / (1 + P); confidence "
            "intervals are percentile bootstrap intervals. When a grouping (e.g. THINGS "
            "concept) is set, permutations and bootstrap resample whole concepts, since "
            "images of one concept share memorability."
        )
        notes.append(
            "Multiple comparisons: p_fdr is the Benjamini-Hochberg false discovery rate "
            "adjustment over the family named in each row's p_family (the ROIs of one "
            "recording, method and split; the ROIs and areas of a pair); marks * < .05, "
            "** < .01, *** < .001 on p_fdr. Time courses are tested by cluster-mass "
            "permutation tests (p_cluster), family-wise over all areas and time bins of a "
            "recording, from the same permutations."
        )
        notes.append(
            "Trials: the train images are each seen once, so their responses are single "
            "trials; the test images' responses are means of their repeats (12 in THINGS-fMRI, "
            "30 in TVSD), far less noisy. The two are never pooled: the train images give the "
            "main results, the test images a high-SNR check (column trials)."
        )
    if "correlations" in tables or "models" in tables:
        notes.append(
            "Noise ceiling: the highest r(ROI response, memorability) that measurement noise "
            "allows is sqrt(neural reliability x memorability reliability). The neural "
            "reliability is the split-half reliability of the ROI mean over the repeated test "
            "trials, stepped by Spearman-Brown to the trials analysed (one trial for the train "
            "images, the mean of the repeats for the test images); the memorability "
            "reliability is an input of the run (default 0.45, the split-half consistency "
            "Kramer et al. 2023 report for THINGS memorability). Models are bounded by "
            "sqrt(memorability reliability) alone."
        )
    if "models" in tables:
        models = tables["models"]
        n_perm = num_col(models, "n_permutations").max() if not models.empty else np.nan
        n_folds = num_col(models, "n_folds").max() if not models.empty else np.nan
        perm = f"{n_perm:.0f} permutations" if np.isfinite(n_perm) else "permutations"
        folds = f"{n_folds:.0f}-fold " if np.isfinite(n_folds) else ""
        h = num_col(models, "early_stop").max() if "early_stop" in models else np.nan
        sequential = (
            f" With early stopping (h = {h:.0f}) a row stops at the permutation l that brings "
            f"its {h:.0f}th null score at or above the observed one, with chance_p = {h:.0f} / l"
            " (the sequential p-value of Besag & Clifford 1991; column stopped_early), so "
            "n_permutations is per row."
            if np.isfinite(h) and h > 0
            else ""
        )
        notes.append(
            f"Models: {folds}cross-validation grouped by THINGS concept (all images of a "
            "concept fall in the same fold), so that a model cannot score by recognising "
            "concepts seen in training; random-split CV, where reported (cv = random), is "
            "optimistic for that reason. Chance levels: the whole cross-validated pipeline is "
            f"refit on up to {perm} of memorability; chance_mean is the mean null score and "
            "chance_p = (1 + #{null >= observed}) / (1 + P)." + sequential + " Classifiers "
            "predict high vs low memorability (threshold from the training folds) and are "
            "scored by ROC AUC."
        )
    if "confounds" in tables:
        notes.append(
            "Confounds: partial correlations are correlations of the least-squares residuals "
            "of response and memorability on [1, covariates] (Freedman-Lane permutations of "
            "memorability's residual, by concept); within-concept correlations use the "
            "deviations from concept means (memorability permuted within concepts; concept "
            "jackknife intervals). Images without every covariate are left out of the partial "
            "correlation and counted (covariates_missing)."
        )
    if "comparisons" in tables:
        notes.append(
            "Comparisons: differences of dependent correlations (same images) are tested by "
            "resampling concepts (delete-one-concept jackknife, t on K - 1 df, or concept "
            "bootstrap), not by permuting memorability, whose null (both correlations zero) "
            "would call equal non-zero effects different."
        )
    if "individuals" in tables:
        notes.append(
            "Group level: random-effects meta-analysis of Fisher z (REML tau2, modified "
            "Hartung-Knapp-Sidik-Jonkman interval and p on k - 1 df, never narrower than the "
            "normal one); with the 3 THINGS-fMRI subjects or 2 TVSD monkeys the group "
            "inference is weak by construction, and each individual is shown."
        )
    if "latency" in tables:
        notes.append(
            "Latency: onset = the time the effect last rises through a fraction of its peak "
            "before the peak (interpolated between bins), peak = the bin of the largest "
            "correlation of the effect's sign; intervals are percentiles of the same measures "
            "on concept-bootstrap time courses."
        )
    if any(t.startswith("bridge") for t in tables):
        notes.append(
            "Cross-species analyses use only the stimuli shown to both the human subject and "
            "the monkey of each pair, so every row of a pair has the same n."
        )
    spec = spec_of(prov)
    if spec:
        notes.append("All parameters are in the spec recorded under Provenance.")
    return notes
