"""Key findings of a run: plain-text sentences written from its tidy tables.

One function per analysis (ROI correlations, time courses, models, human and
macaque); :func:`key_findings` joins them. Public through :mod:`memxr.report`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .tables import ALPHA, num_col, text_col

__all__ = ["comparison_statements", "key_findings"]

_MAX_LIST = 8


def _fmt_p(p: float) -> str:
    return f"{p:.1e}" if 0 < p < 0.001 else f"{p:.3f}"


def _unit(df: pd.DataFrame, keys: Sequence[str] = ("dataset", "subject", "trials")) -> list:
    """(label, rows) per combination of the ``keys`` columns present."""
    keys = [k for k in keys if k in df]
    if not keys:
        return [("", df)]
    out = []
    for key, rows in df.groupby([text_col(df, k) for k in keys], sort=True):
        parts = key if isinstance(key, tuple) else (key,)
        out.append((" ".join(p for p in parts if p), rows))
    return out


def _primary_method(df: pd.DataFrame) -> pd.DataFrame:
    """The Pearson rows when the table has several methods (else the first method)."""
    if "method" not in df or df.empty:
        return df
    methods = list(dict.fromkeys(text_col(df, "method")))
    keep = "pearson" if "pearson" in methods else methods[0]
    return df.loc[text_col(df, "method") == keep]


def _lead(label: str) -> str:
    """``"label: "`` (nothing when the table names no dataset or subject)."""
    return f"{label}: " if label else ""


def _listing(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) > _MAX_LIST:
        return ", ".join(items[:_MAX_LIST]) + f" and {len(items) - _MAX_LIST} more"
    return ", ".join(items)


def _roi_label(row: pd.Series, several_how: bool) -> str:
    return f"{row['roi']} [{row['how']}]" if several_how else str(row["roi"])


def _findings_correlations(df: pd.DataFrame) -> list[str]:
    if df.empty or not {"roi", "r"} <= set(df):
        return []
    out = []
    several_how = text_col(df, "how").nunique() > 1
    per_dataset: dict[str, list[set[str]]] = {}
    for label, rows in _unit(df):
        rows = rows.assign(_r=num_col(rows, "r"), _p=num_col(rows, "p_fdr"))
        prim = _primary_method(rows)
        sig = prim.loc[prim["_p"] < ALPHA].sort_values("_r", key=np.abs, ascending=False)
        other = rows.loc[(rows["_p"] < ALPHA) & ~rows.index.isin(prim.index)]
        dataset = str(rows["dataset"].iloc[0]) if "dataset" in rows else ""
        names = [_roi_label(r, several_how) for _, r in sig.iterrows()]
        trials = str(rows["trials"].iloc[0]) if "trials" in rows else ""
        per_dataset.setdefault((dataset, trials), []).append(set(names))
        method = f"{str(prim['method'].iloc[0]).capitalize()} r" if "method" in prim else "r"
        if names:
            parts = [
                f"{_roi_label(r, several_how)} ({method} = {r['_r']:.2f}, "
                f"p_fdr = {_fmt_p(r['_p'])})"
                for _, r in sig.iterrows()
            ]
            also = sorted(set(_roi_label(r, several_how) for _, r in other.iterrows()) - set(names))
            extra = f"; significant with another method only: {_listing(also)}" if also else ""
            found = f"FDR-significant memorability correlations in {_listing(parts)}"
            out.append(f"{_lead(label)}{found}{extra}.")
        elif np.isfinite(prim["_r"]).any():
            best = prim.loc[prim["_r"].abs().idxmax()]
            pv = f", p_fdr = {_fmt_p(best['_p'])}" if np.isfinite(best["_p"]) else ""
            strongest = f"{_roi_label(best, several_how)}, {method} = {best['_r']:.2f}{pv}"
            verdict = (
                f"no ROI reached p_fdr < {ALPHA}"
                if np.isfinite(rows["_p"]).any()
                else "no FDR-adjusted p-values in the table"
            )
            out.append(f"{_lead(label)}{verdict} (strongest: {strongest}).")
    for (dataset, trials), sets in per_dataset.items():
        if len(sets) > 1:
            common = sorted(set.intersection(*sets))
            where = " ".join(t for t in (dataset, trials) if t)
            where = f"{where}: " if where else ""
            out.append(
                f"{where}significant in all {len(sets)} subjects: {_listing(common)}."
                if common
                else f"{where}no ROI was significant in all {len(sets)} subjects."
            )
    return out


def _is_it(roi: str) -> bool:
    return re.search(r"(^|[^A-Za-z])IT([^A-Za-z]|$)", roi) is not None


def timecourse_peaks(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, subject, trials, roi, method): peak r, its time, and the significant bins.

    Significance is that of the cluster-mass test (``p_cluster``, family-wise over the ROIs
    and time bins) when the table has it, else ``p_fdr``.
    """
    if df.empty or not {"roi", "time", "r"} <= set(df):
        return pd.DataFrame()
    sig_col = "p_cluster" if "p_cluster" in df else "p_fdr"
    work = df.assign(_t=num_col(df, "time"), _r=num_col(df, "r"), _p=num_col(df, sig_col))
    keys = [k for k in ("dataset", "subject", "trials", "roi", "method") if k in work]
    rows = []
    for key, g in work.groupby([text_col(work, k) for k in keys], sort=False):
        g = g.loc[np.isfinite(g["_r"])]
        if g.empty:
            continue
        peak = g.loc[g["_r"].idxmax()]
        sig = g.loc[g["_p"] < ALPHA, "_t"]
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)) | {
            "peak_time": peak["_t"],
            "peak_r": peak["_r"],
            f"{sig_col}_at_peak": peak["_p"],
            "first_significant_time": sig.min() if sig.size else np.nan,
            "n_significant_bins": int(sig.size),
            "n_bins": int(len(g)),
            "significance": sig_col,
        }
        rows.append(row)
    return pd.DataFrame(rows)


def significant_clusters(clusters: pd.DataFrame) -> pd.DataFrame:
    """The clusters of ``tables/timecourse_clusters.csv`` with ``p_cluster < ALPHA``."""
    if clusters is None or clusters.empty or "p_cluster" not in clusters:
        return pd.DataFrame()
    return clusters.loc[num_col(clusters, "p_cluster") < ALPHA]


def _peak_text(row: pd.Series, clusters: pd.DataFrame) -> str:
    cluster_test = row.get("significance") == "p_cluster"
    mine = clusters
    if cluster_test and not clusters.empty:
        for k in ("dataset", "subject", "trials", "roi", "method"):
            if k in clusters and k in row:
                mine = mine.loc[text_col(mine, k) == str(row[k])]
    if cluster_test and not mine.empty:
        best = mine.loc[num_col(mine, "p_cluster").idxmin()]
        onset = (
            f", significant cluster {float(best['onset']):g}-{float(best['offset']):g} ms"
            f" (p_cluster = {_fmt_p(float(best['p_cluster']))})"
        )
    elif np.isfinite(row["first_significant_time"]):
        what = "in a significant cluster" if cluster_test else "FDR-significant"
        onset = f", {what} from {row['first_significant_time']:g} ms"
    else:
        onset = ", no significant cluster" if cluster_test else ", no FDR-significant bin"
    return f"at {row['peak_time']:g} ms (r = {row['peak_r']:.2f}{onset})"


def _findings_timecourse(df: pd.DataFrame, clusters: pd.DataFrame | None = None) -> list[str]:
    peaks = timecourse_peaks(df)
    if peaks.empty:
        return []
    sig = significant_clusters(clusters if clusters is not None else pd.DataFrame())
    out = []
    for label, rows in _unit(_primary_method(peaks)):
        it = rows["roi"].astype(str).map(_is_it)
        for _, row in rows.loc[it].iterrows():
            out.append(f"{_lead(label)}the {row['roi']} effect peaks {_peak_text(row, sig)}.")
        rest = [f"{row['roi']} {_peak_text(row, sig)}" for _, row in rows.loc[~it].iterrows()]
        if rest:
            out.append(f"{_lead(label)}peaks of the other areas: {_listing(rest)}.")
    return out


def model_scores(df: pd.DataFrame) -> pd.DataFrame:
    metric = text_col(df, "metric")
    if "metric" not in df:
        metric = text_col(df, "kind").map({"classifier": "roc_auc"}).replace("", "pearson_r")
        metric = metric.fillna("pearson_r")
    score = pd.Series(np.nan, index=df.index, dtype=float)
    for name in dict.fromkeys(metric):
        if name in df:
            mask = metric == name
            score[mask] = num_col(df.loc[mask], name)
    return df.assign(_metric=metric, _score=score)


def _findings_models(df: pd.DataFrame) -> list[str]:
    if df.empty or not {"feature_set", "model"} <= set(df):
        return []
    work = model_scores(df)
    work = work.loc[np.isfinite(work["_score"])]
    out = []
    for label, rows in _unit(work):
        for metric, part in rows.groupby("_metric", sort=False):
            grouped = part.loc[text_col(part, "cv") != "random"] if "cv" in part else part
            pool = grouped if not grouped.empty else part
            best = pool.loc[pool["_score"].idxmax()]
            out.append(_lead(label) + _describe_model(best, metric, part))
    return out


def _describe_model(best: pd.Series, metric: str, part: pd.DataFrame) -> str:
    name = {"pearson_r": "Pearson r", "roc_auc": "ROC AUC", "accuracy": "accuracy"}.get(
        metric, metric
    )
    cv = str(best.get("cv", "")) if pd.notna(best.get("cv")) else ""
    cv_text = {"grouped": "concept-grouped CV", "random": "random-split CV"}.get(cv, f"cv: {cv}")
    when = ""
    if "time" in best and np.isfinite(pd.to_numeric(best["time"], errors="coerce")):
        when = f" at {float(best['time']):g} ms"
    text = (
        f"best model {best['model']} on {best['feature_set']}"
        + (f" ({cv_text})" if cv else "")
        + f"{when}: "
        f"{name} = {best['_score']:.3f}"
    )
    chance = pd.to_numeric(best.get("chance_mean"), errors="coerce")
    if np.isfinite(chance):
        text += f" vs permutation chance {chance:.3f}"
        p = pd.to_numeric(best.get("chance_p"), errors="coerce")
        if np.isfinite(p):
            text += f" (p = {_fmt_p(float(p))})"
    frac = pd.to_numeric(best.get("fraction_of_ceiling"), errors="coerce")
    ceiling = pd.to_numeric(best.get("noise_ceiling"), errors="coerce")
    if np.isfinite(frac) and np.isfinite(ceiling):
        text += f"; {100 * frac:.0f}% of the ceiling ({ceiling:.2f})"
    if cv == "grouped" and "cv" in part:
        same = part.loc[
            (text_col(part, "cv") == "random")
            & (text_col(part, "model") == str(best["model"]))
            & (text_col(part, "feature_set") == str(best["feature_set"]))
        ]
        if not same.empty:
            text += f"; random-split CV gives {same['_score'].max():.3f}"
    return text + "."


def _findings_bridge(effects: pd.DataFrame, rsa: pd.DataFrame, dec: pd.DataFrame) -> list[str]:
    out = []
    if not effects.empty and {"roi", "r"} <= set(effects):
        for pair, rows in _unit(effects, ("pair", "split")):
            rows = _primary_method(rows)
            sig = rows.loc[num_col(rows, "p_fdr") < ALPHA]
            n = num_col(rows, "n").max()
            parts = []
            for species in dict.fromkeys(text_col(rows, "species")):
                names = list(dict.fromkeys(text_col(sig.loc[text_col(sig, "species") == species], "roi")))
                parts.append(f"{species or 'areas'}: {_listing(names) if names else 'none'}")
            shared = f" on {n:.0f} shared stimuli" if np.isfinite(n) else ""
            out.append(
                f"{pair or 'cross-species'}{shared}: significant memorability effects "
                f"(p_fdr < {ALPHA}) in " + "; ".join(parts) + "."
            )
    if not rsa.empty and {"human_roi", "monkey_area", "rsa_r"} <= set(rsa):
        for label, rows in _unit(rsa, ("pair", "level")):
            r = num_col(rows, "rsa_r")
            if not np.isfinite(r).any():
                continue
            best = rows.loc[r.idxmax()]
            n_sig = int((num_col(rows, "p_fdr") < ALPHA).sum())
            match = f"{best['human_roi']} ~ {best['monkey_area']}"
            out.append(
                f"{_lead(f'RSA {label}'.strip())}strongest match {match} "
                f"(rsa r = {float(r.max()):.2f}); {n_sig} of {len(rows)} ROI-area pairs "
                "FDR-significant."
            )
    if not dec.empty and "pearson_r" in dec:
        r = num_col(dec, "pearson_r")
        if np.isfinite(r).any():
            best = dec.loc[r.idxmax()]
            p = pd.to_numeric(best.get("p_fdr", best.get("p")), errors="coerce")
            name = "p_fdr" if "p_fdr" in best else "p"
            pv = f", {name} = {_fmt_p(float(p))}" if np.isfinite(p) else ""
            out.append(
                f"Cross-species decoding: best {best.get('direction', 'direction')} "
                f"(r = {float(r.max()):.2f}{pv})."
            )
    return out


def _ci(row: pd.Series, lo: str = "ci_low", hi: str = "ci_high", fmt: str = ".2f") -> str:
    a, b = float(row.get(lo, np.nan)), float(row.get(hi, np.nan))
    return f" [{a:{fmt}}, {b:{fmt}}]" if np.isfinite(a) and np.isfinite(b) else ""


def _findings_confounds(df: pd.DataFrame) -> list[str]:
    """Per recording: how the partial and within-concept correlations differ from r."""
    if df.empty or not {"roi", "r"} <= set(df):
        return []
    out = []
    for label, rows in _unit(_primary_method(df)):
        if "how" in rows and len(rows):
            rows = rows.loc[text_col(rows, "how") == text_col(rows, "how").iloc[0]]
        for control, name in (("covariates", "controlling for the covariates"),
                              ("within_concept", "within concepts")):  # fmt: skip
            col = f"r_{control}"
            if col not in rows or not np.isfinite(num_col(rows, col)).any():
                continue
            parts = []
            for _, row in rows.iterrows():
                r0, r1 = float(row["r"]), float(row[col])
                p1 = float(row.get(f"p_fdr_{control}", np.nan))
                pv = f", p_fdr = {_fmt_p(p1)}" if np.isfinite(p1) else ""
                parts.append(f"{row['roi']} {r0:.2f} -> {r1:.2f}{pv}")
            what = ""
            named = rows["covariates"].dropna() if "covariates" in rows else pd.Series()
            if control == "covariates" and len(named):
                what = f" ({named.iloc[0]})"
            out.append(f"{_lead(label)}r {name}{what}: {_listing(parts)}.")
    return out


def comparison_statements(df: pd.DataFrame) -> list[str]:
    """Tested statements of the ROI comparisons: every pair, and chains such as IT > V4 > V1.

    A pair is "a > b" when ``diff > 0`` and ``p_fdr < ALPHA``; a chain of pairs ``a-b``,
    ``b-c`` is supported only when each step is.

    Examples
    --------
    >>> df = pd.DataFrame({"subject": "monkeyN", "trials": "single (train)",
    ...     "pair": ["IT-V4", "V4-V1"], "roi_a": ["IT", "V4"], "roi_b": ["V4", "V1"],
    ...     "diff": [0.05, 0.02], "ci_low": [0.01, -0.03], "ci_high": [0.09, 0.07],
    ...     "p_fdr": [0.01, 0.4]})
    >>> comparison_statements(df)[-1]
    'monkeyN single (train): IT > V4 > V1 not supported: V4 > V1 fails (diff = 0.02 [-0.03, 0.07], p_fdr = 0.400).'
    """
    if df.empty or not {"roi_a", "roi_b", "diff"} <= set(df):
        return []
    out = []
    for label, rows in _unit(df):
        steps: dict[tuple[str, str], tuple[bool, str]] = {}
        for _, row in rows.iterrows():
            a, b, d = str(row["roi_a"]), str(row["roi_b"]), float(row["diff"])
            p = float(row.get("p_fdr", np.nan))
            detail = f"diff = {d:.2f}{_ci(row)}, p_fdr = {_fmt_p(p)}"
            holds = bool(d > 0 and p < ALPHA)
            if holds:
                verdict = f"{a} > {b}"
            elif d < 0 and p < ALPHA:
                verdict = f"{a} < {b}"
            else:
                verdict = f"{a} and {b} not distinguishable"
            steps[(a, b)] = (holds, detail)
            out.append(f"{_lead(label)}{verdict} ({detail}).")
        for (a, b), _ in list(steps.items()):
            for (b2, c), _ in list(steps.items()):
                if b2 != b:
                    continue
                chain = f"{a} > {b} > {c}"
                failed = [(x, y) for x, y in ((a, b), (b, c)) if not steps[(x, y)][0]]
                if not failed:
                    out.append(f"{_lead(label)}{chain} supported: both steps significant.")
                else:
                    x, y = failed[0]
                    out.append(f"{_lead(label)}{chain} not supported: {x} > {y} fails "
                               f"({steps[(x, y)][1]}).")  # fmt: skip
    return out


def _findings_latency(df: pd.DataFrame) -> list[str]:
    if df.empty or not {"roi", "onset", "peak"} <= set(df):
        return []
    out = []
    for label, rows in _unit(df):
        parts = []
        for _, row in rows.sort_values("onset").iterrows():
            p = float(row.get("p_cluster", np.nan))
            flag = "" if p < ALPHA else " (no significant cluster)"
            if str(row.get("subject", "")) == "pooled":
                flag = f" (random effects over {float(row.get('k', np.nan)):.0f} individuals)"
            parts.append(
                f"{row['roi']} onset {float(row['onset']):.0f} ms"
                f"{_ci(row, 'onset_low', 'onset_high', '.0f')}, peak "
                f"{float(row['peak']):.0f} ms{_ci(row, 'peak_low', 'peak_high', '.0f')}{flag}"
            )
        out.append(f"{_lead(label)}{_listing(parts)}.")
    return out


def _findings_individuals(df: pd.DataFrame) -> list[str]:
    if df.empty or "subject" not in df:
        return []
    pooled = _primary_method(df.loc[text_col(df, "subject") == "pooled"])
    if "how" in pooled and len(pooled):
        pooled = pooled.loc[text_col(pooled, "how") == text_col(pooled, "how").iloc[0]]
    out = []
    for label, rows in _unit(pooled, ("dataset", "trials")):
        parts = []
        for _, row in rows.iterrows():
            k, same = float(row.get("k", np.nan)), float(row.get("n_same_sign", np.nan))
            i2 = float(row.get("I2", np.nan))
            signs = f", same sign in {same:.0f}/{k:.0f}" if np.isfinite(same) else ""
            het = f", I2 = {i2:.0%}" if np.isfinite(i2) else ""
            parts.append(f"{row['roi']} r = {float(row['r']):.2f}{_ci(row)}, p = "
                         f"{_fmt_p(float(row.get('p', np.nan)))}{signs}{het}")  # fmt: skip
        out.append(f"{_lead(label)}pooled over individuals (random effects): {_listing(parts)}.")
    return out


def _findings_variance(df: pd.DataFrame) -> list[str]:
    if df.empty or "unique_neural" not in df:
        return []
    out = []
    for label, rows in _unit(df):
        for _, row in rows.iterrows():
            out.append(
                f"{_lead(label)}the ROI magnitudes predict R2 = {float(row['r2_neural']):.3f} "
                f"of memorability, {float(row['unique_neural']):.3f} beyond the covariates "
                f"(p = {_fmt_p(float(row['p_unique_neural']))}); the covariates alone "
                f"{float(row['r2_covariates']):.3f}, shared {float(row['shared']):.3f}."
            )
    return out


def key_findings(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Plain-text sentences summarizing the tables (escape them before writing HTML).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"subject": "sub-01", "roi": ["V1", "IT"], "method": "pearson",
    ...                    "r": [0.01, 0.3], "p_fdr": [0.9, 0.004]})
    >>> key_findings({"correlations": df})
    ['sub-01: FDR-significant memorability correlations in IT (Pearson r = 0.30, p_fdr = 0.004).']
    """
    return [sentence for _, sentences in findings_by_section(tables) for sentence in sentences]


def findings_by_section(tables: Mapping[str, pd.DataFrame]) -> list[tuple[str, list[str]]]:
    """(topic, sentences) for each analysis with something to say."""
    empty = pd.DataFrame()
    topics = [
        ("ROI correlations", _findings_correlations(tables.get("correlations", empty))),
        ("Confounds", _findings_confounds(tables.get("confounds", empty))),
        ("Variance partitioning", _findings_variance(tables.get("variance_partition", empty))),
        ("Comparisons of ROIs", comparison_statements(tables.get("comparisons", empty))),
        ("Individuals and the group", _findings_individuals(tables.get("individuals", empty))),
        ("Latency", _findings_latency(tables.get("latency", empty))),
        (
            "Time courses",
            _findings_timecourse(
                tables.get("timecourse", empty), tables.get("timecourse_clusters", empty)
            ),
        ),
        ("Models", _findings_models(tables.get("models", empty))),
        (
            "Human and macaque",
            _findings_bridge(
                tables.get("bridge_effects", empty),
                tables.get("bridge_rsa", empty),
                tables.get("bridge_decoding", empty),
            ),
        ),
    ]
    return [(topic, sentences) for topic, sentences in topics if sentences]
