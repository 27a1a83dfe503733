"""memxr.report.plots: figure content from tidy tables with planted patterns (not pixels)."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from memxr import plots

# ROI -> (planted r, p_fdr): IT ***, FFA **, PPA * (negative), V1 not significant
PLANTED = {"V1": (0.02, 0.40), "FFA": (0.25, 0.004), "PPA": (-0.15, 0.02), "IT": (0.35, 0.0004)}
MARKS = {"V1": "", "FFA": "**", "PPA": "*", "IT": "***"}


def corr_table(subjects=("sub-01", "sub-02"), ceiling=0.6, rois=tuple(PLANTED)) -> pd.DataFrame:
    rows = []
    for k, subject in enumerate(subjects):
        for roi in rois:
            r0, p = PLANTED.get(roi, (0.0, 0.9))
            for method, shift in (("pearson", 0.0), ("spearman", -0.01)):
                r = r0 + shift + 0.001 * k
                rows.append(
                    {"dataset": "things-fmri", "subject": subject, "roi": roi, "method": method,
                     "how": "mean", "r": r, "p": p / 2, "ci_low": r - 0.05, "ci_high": r + 0.05,
                     "p_fdr": p, "n": 300, "n_channels": 50, "noise_ceiling": ceiling}
                )  # fmt: skip
    return pd.DataFrame(rows)


def texts(ax) -> list[str]:
    return sorted(t.get_text() for t in ax.texts if t.get_text())


def bars(ax) -> list:
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def by_gid(ax, gid: str, kind=None) -> list:
    pool = list(ax.lines) + list(ax.collections)
    return [a for a in pool if a.get_gid() == gid and (kind is None or isinstance(a, kind))]


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


def is_no_data(fig: Figure) -> bool:
    return len(fig.axes) == 1 and any("no data" in t for t in texts(fig.axes[0]))


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """The functions must not leave figures in pyplot's registry."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


# ---------------------------------------------------------------------------------------------
# roi_correlation_bars
# ---------------------------------------------------------------------------------------------


def test_correlation_bars_panels_bars_marks_and_ceiling():
    fig = plots.roi_correlation_bars(corr_table())
    assert [ax.get_title() for ax in fig.axes] == ["things-fmri · sub-01", "things-fmri · sub-02"]
    for ax in fig.axes:
        containers = bars(ax)
        assert [c.get_label() for c in containers] == ["pearson", "spearman"]
        assert [len(c) for c in containers] == [4, 4]
        pearson = {lab.get_text(): p.get_height() for lab, p in zip(
            ax.get_xticklabels(), containers[0], strict=True)}  # fmt: skip
        assert pearson["IT"] == pytest.approx(PLANTED["IT"][0], abs=0.01)
        assert max(pearson, key=pearson.get) == "IT"
        # marks: one per bar of a significant ROI, two methods each
        expected = sorted(m for m in MARKS.values() if m for _ in range(2))
        assert texts(ax) == expected
        # the negative PPA bars carry their mark below the bar
        below = [t for t in ax.texts if t.get_text() == "*"]
        assert all(t.get_position()[1] < PLANTED["PPA"][0] for t in below)
        assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 2
        (ceiling,) = by_gid(ax, "noise_ceiling", LineCollection)
        segments = ceiling.get_segments()
        assert len(segments) == 4 and all(np.allclose(s[:, 1], 0.6) for s in segments)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["pearson", "spearman", "noise ceiling"]
    assert png_bytes(fig).startswith(b"\x89PNG")


def test_correlation_bars_one_and_many_subjects():
    assert len(plots.roi_correlation_bars(corr_table(("sub-01",))).axes) == 1
    fig = plots.roi_correlation_bars(corr_table([f"sub-{i:02d}" for i in range(1, 6)]))
    assert len(fig.axes) == 5


def test_correlation_bars_without_ceiling_or_optional_columns():
    ax = plots.roi_correlation_bars(corr_table(ceiling=np.nan)).axes[0]
    assert by_gid(ax, "noise_ceiling") == []
    minimal = corr_table()[["roi", "r"]].iloc[:8:2]  # the Pearson rows of sub-01
    fig = plots.roi_correlation_bars(minimal)
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 4 and texts(fig.axes[0]) == []


def test_correlation_bars_duplicated_rows_are_drawn_once(caplog):
    df = corr_table(("sub-01",))
    with caplog.at_level("WARNING", logger="memxr.report.plots"):
        ax = plots.roi_correlation_bars(pd.concat([df, df.iloc[:3]])).axes[0]
    assert [len(c) for c in bars(ax)] == [4, 4]
    assert "3 duplicated rows drawn once" in caplog.text


def test_correlation_bars_nan_rows_are_left_out():
    df = corr_table(("sub-01",))
    df.loc[(df.roi == "IT") & (df.method == "spearman"), "r"] = np.nan
    df.loc[df.roi == "V1", "p_fdr"] = np.nan
    ax = plots.roi_correlation_bars(df).axes[0]
    assert [len(c) for c in bars(ax)] == [4, 3]
    assert texts(ax).count("***") == 1


def test_correlation_bars_several_reductions_are_separate_series():
    df = pd.concat([corr_table(("sub-01",)), corr_table(("sub-01",)).assign(how="l2")])
    labels = [c.get_label() for c in bars(plots.roi_correlation_bars(df).axes[0])]
    assert labels == ["pearson (mean)", "pearson (l2)", "spearman (mean)", "spearman (l2)"]
    colors = [c.patches[0].get_facecolor() for c in bars(plots.roi_correlation_bars(df).axes[0])]
    assert len(set(colors)) == 4  # a dark and a light shade per method


def test_correlation_bars_hostile_labels_render():
    df = corr_table(("sub-01",), rois=("IT", "<script>alert(1)</script>", "cost $5", "a_b^c"))
    fig = plots.roi_correlation_bars(df)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "<script>alert(1)</script>" in labels
    assert png_bytes(fig).startswith(b"\x89PNG")


# ---------------------------------------------------------------------------------------------
# "no data" for every figure
# ---------------------------------------------------------------------------------------------

ALL = [
    plots.roi_correlation_bars,
    plots.prediction_scatter,
    plots.timecourses,
    plots.model_comparison,
    plots.cross_species_matrix,
    plots.cross_species_effects,
]


@pytest.mark.parametrize("func", ALL, ids=lambda f: f.__name__)
def test_empty_table_gives_no_data_figure(func):
    for df in (pd.DataFrame(), None, pd.DataFrame({"unrelated": [1, 2]})):
        fig = func(df)
        assert is_no_data(fig), func.__name__
        assert fig.get_suptitle()
    assert "missing columns" in texts(func(pd.DataFrame({"unrelated": [1]})).axes[0])[0]
    assert png_bytes(func(pd.DataFrame())).startswith(b"\x89PNG")


def test_all_nan_values_give_no_data():
    df = corr_table(("sub-01",)).assign(r=np.nan)
    assert "all values are NaN" in texts(plots.roi_correlation_bars(df).axes[0])[0]
    assert is_no_data(plots.timecourses(tc_table().assign(r=np.nan)))
    assert is_no_data(
        plots.model_comparison(models_table().assign(pearson_r=np.nan, roc_auc=np.nan))
    )
    assert is_no_data(plots.cross_species_matrix(rsa_table().assign(rsa_r=np.nan)))


# ---------------------------------------------------------------------------------------------
# prediction_scatter
# ---------------------------------------------------------------------------------------------


def pred_table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for subject in ("sub-01", "sub-02"):
        obs = rng.uniform(0.5, 1.0, 60)
        for model, slope in (("ridge", 0.5), ("svr", 0.0)):
            noise = rng.normal(0, 0.02, 60)
            pred = 0.75 + slope * (obs - 0.75) + noise
            rows += [
                {"dataset": "things-fmri", "subject": subject, "feature_set": "roi_IT",
                 "model": model, "stimulus_id": f"im{i}.jpg", "observed": o, "predicted": p}
                for i, (o, p) in enumerate(zip(obs, pred, strict=True))
            ]  # fmt: skip
    return pd.DataFrame(rows)


def test_prediction_scatter_r_title_identity_and_fit():
    df = pred_table()
    fig = plots.prediction_scatter(df, feature_set="roi_IT", model="ridge")
    assert len(fig.axes) == 2
    for ax, subject in zip(fig.axes, ("sub-01", "sub-02"), strict=True):
        rows = df[(df.subject == subject) & (df.model == "ridge")]
        r = np.corrcoef(rows.observed, rows.predicted)[0, 1]
        assert ax.get_title() == f"things-fmri · {subject} · roi_IT · ridge\nr = {r:.2f}, n = 60"
        assert r > 0.9
        (fit,) = by_gid(ax, "fit")
        x, y = fit.get_data()
        assert (y[1] - y[0]) / (x[1] - x[0]) == pytest.approx(0.5, abs=0.05)
        (identity,) = by_gid(ax, "identity")
        assert np.allclose(*identity.get_data())
        assert len(ax.collections[0].get_offsets()) == 60


def test_prediction_scatter_all_models_nan_and_missing_selection():
    df = pred_table()
    assert len(plots.prediction_scatter(df).axes) == 4
    df.loc[:9, "predicted"] = np.nan
    ax = plots.prediction_scatter(df, model="ridge").axes[0]
    assert ax.get_title().endswith("n = 50")
    assert is_no_data(plots.prediction_scatter(df, feature_set="nope"))
    flat = df.assign(predicted=0.7)  # constant prediction: no r, no fit line
    ax = plots.prediction_scatter(flat, model="svr").axes[0]
    assert "r = nan" in ax.get_title() and by_gid(ax, "fit") == []


# ---------------------------------------------------------------------------------------------
# timecourses
# ---------------------------------------------------------------------------------------------

TIMES = np.arange(0.0, 300.0, 20.0)
PEAKS = {"V1": 80.0, "V4": 100.0, "IT": 140.0}


def tc_table(subjects=("monkeyN", "monkeyF")) -> pd.DataFrame:
    rows = []
    for subject in subjects:
        for roi, peak in PEAKS.items():
            for method in ("pearson", "spearman"):
                r = 0.3 * np.exp(-(((TIMES - peak) / 30) ** 2))
                p = np.where(r > 0.1, 0.001, 0.5)
                rows += [
                    {"dataset": "tvsd", "subject": subject, "roi": roi, "method": method,
                     "time": t, "r": ri, "p": pi / 2, "ci_low": ri - 0.04, "ci_high": ri + 0.04,
                     "p_fdr": pi, "n": 200}
                    for t, ri, pi in zip(TIMES, r, p, strict=True)
                ]  # fmt: skip
    return pd.DataFrame(rows)


def test_timecourses_lines_bands_and_significant_bins():
    df = tc_table()
    fig = plots.timecourses(df)
    assert [ax.get_title() for ax in fig.axes] == ["tvsd · monkeyF", "tvsd · monkeyN"]
    n_sig = int((df[(df.subject == "monkeyN")].p_fdr < 0.05).sum())
    for ax in fig.axes:
        lines = by_gid(ax, "timecourse")
        assert len(lines) == 6
        assert len(by_gid(ax, "ci", PolyCollection)) == 6
        assert sum(len(m.get_xdata()) for m in by_gid(ax, "significant")) == n_sig
        it = [ln for ln in lines if ln.get_label() == "IT (pearson)"][0]
        x, y = it.get_data()
        assert x[np.argmax(y)] == PEAKS["IT"]
        assert {ln.get_linestyle() for ln in lines} == {"-", "--"}
        assert ax.get_xlabel() == "time (ms)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["V1", "V4", "IT", "pearson", "spearman", "p_fdr < 0.05"]


def test_timecourses_unsorted_one_method_nan_bins():
    df = tc_table(("monkeyN",))
    df = df[df.method == "pearson"].sample(frac=1.0, random_state=0)
    df.loc[df.time == 0.0, ["r", "ci_low", "ci_high", "p_fdr"]] = np.nan
    ax = plots.timecourses(df).axes[0]
    lines = by_gid(ax, "timecourse")
    assert sorted(ln.get_label() for ln in lines) == ["IT", "V1", "V4"]
    x, _ = lines[0].get_data()
    assert np.all(np.diff(x) > 0)


# ---------------------------------------------------------------------------------------------
# model_comparison
# ---------------------------------------------------------------------------------------------


def models_table(subjects=("sub-01",)) -> pd.DataFrame:
    rows = []
    for subject in subjects:
        for fs, gain in (("roi_IT", 0.2), ("roi_V1", 0.0)):
            for model, kind, cv in (("ridge", "regressor", "grouped"),
                                    ("ridge", "regressor", "random"),
                                    ("svc", "classifier", "grouped")):  # fmt: skip
                reg = kind == "regressor"
                score = (0.1 + gain + (0.1 if cv == "random" else 0.0)) if reg else 0.55 + gain
                rows.append(
                    {"dataset": "things-fmri", "subject": subject, "feature_set": fs,
                     "model": model, "kind": kind, "cv": cv, "label_split": "" if reg else "median",
                     "n_stimuli": 400, "n_folds": 5, "pearson_r": score if reg else np.nan,
                     "spearman_rho": np.nan, "r2": np.nan, "accuracy": np.nan if reg else 0.6,
                     "roc_auc": np.nan if reg else score,
                     "metric": "pearson_r" if reg else "roc_auc",
                     "chance_mean": 0.0 if reg else 0.5, "chance_p": 0.01, "n_permutations": 50,
                     "noise_ceiling": 0.6 if reg else np.nan,
                     "fraction_of_ceiling": score / 0.6 if reg else np.nan}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_model_comparison_scores_chance_ceiling_and_cv():
    df = models_table(("sub-01", "sub-02"))
    fig = plots.model_comparison(df)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "things-fmri · sub-01 · Pearson r\ncv: grouped, random",
        "things-fmri · sub-01 · ROC AUC\ncv: grouped",
        "things-fmri · sub-02 · Pearson r\ncv: grouped, random",
        "things-fmri · sub-02 · ROC AUC\ncv: grouped",
    ]
    reg, clf = fig.axes[0], fig.axes[1]
    assert [c.get_label() for c in bars(reg)] == ["ridge (grouped)", "ridge (random)"]
    grouped, random_ = bars(reg)
    assert [p.get_height() for p in grouped] == pytest.approx([0.3, 0.1])
    assert [p.get_height() for p in random_] == pytest.approx([0.4, 0.2])
    assert all(p.get_hatch() == "//" for p in random_) and grouped[0].get_hatch() is None
    assert [p.get_height() for p in bars(clf)[0]] == pytest.approx([0.75, 0.55])
    chance = by_gid(reg, "chance")
    assert sum(len(c.get_segments()) for c in chance) == 4
    assert all(np.allclose(s[:, 1], 0.0) for c in chance for s in c.get_segments())
    clf_chance = [s[0, 1] for c in by_gid(clf, "chance") for s in c.get_segments()]
    assert clf_chance == pytest.approx([0.5, 0.5])
    (ceiling,) = by_gid(reg, "noise_ceiling")
    assert len(ceiling.get_segments()) == 2
    assert by_gid(clf, "noise_ceiling") == []
    assert by_gid(reg, "chance_band") == []
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"permutation chance", "noise ceiling", "ridge (random)", "svc (grouped)"} <= set(labels)


def test_model_comparison_band_time_and_missing_metric():
    df = models_table().assign(chance_low=-0.05, chance_high=0.05)
    assert len(by_gid(plots.model_comparison(df).axes[0], "chance_band")) == 4
    timed = pd.concat([models_table().assign(time=t, pearson_r=lambda d, t=t: d.pearson_r * t)
                       for t in (1.0, 2.0)])  # fmt: skip
    fig = plots.model_comparison(timed)
    assert "best time bin" in fig.get_suptitle()
    grouped = bars(fig.axes[0])[0]
    assert [p.get_height() for p in grouped] == pytest.approx([0.6, 0.2])
    no_metric = models_table().drop(columns=["metric"])
    assert len(plots.model_comparison(no_metric).axes) == 2


# ---------------------------------------------------------------------------------------------
# cross-species
# ---------------------------------------------------------------------------------------------

HUMAN, MONKEY = ["V1", "FFA", "IT"], ["V1", "V4", "IT"]


def rsa_table() -> pd.DataFrame:
    rows = []
    for pair in ("sub-01~monkeyN", "sub-01~monkeyF"):
        for level in ("image", "concept"):
            for i, h in enumerate(HUMAN):
                for j, m in enumerate(MONKEY):
                    r = 0.4 if (h, m) in (("V1", "V1"), ("IT", "IT")) else 0.01 * (i - j)
                    rows.append(
                        {"pair": pair, "level": level, "human_roi": h, "monkey_area": m,
                         "rsa_r": r, "p": 0.001, "p_fdr": 0.0005 if r > 0.3 else 0.5,
                         "n_items": 80}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def test_cross_species_matrix_cells_and_marks():
    df = rsa_table()
    df.loc[(df.human_roi == "FFA") & (df.monkey_area == "V4"), "rsa_r"] = np.nan
    fig = plots.cross_species_matrix(df)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 4 and len(fig.axes) == 5  # + one shared colour bar
    ax = panels[0]
    assert ax.get_title() == "sub-01~monkeyF · concept"
    grid = ax.images[0].get_array()
    assert grid.shape == (3, 3)
    assert grid[0, 0] == pytest.approx(0.4) and grid[2, 2] == pytest.approx(0.4)
    assert bool(grid.mask[1, 1])
    assert [t.get_text() for t in ax.get_yticklabels()] == HUMAN
    assert [t.get_text() for t in ax.get_xticklabels()] == MONKEY
    marked = [t.get_text() for t in ax.texts if "***" in t.get_text()]
    assert marked == ["0.40\n***", "0.40\n***"]
    assert len(ax.texts) == 8  # the NaN cell has no label
    lo, hi = ax.images[0].get_clim()
    assert lo == -hi == pytest.approx(-0.4)


def effects_table() -> pd.DataFrame:
    rows = []
    for species, subject, rois in (("human", "sub-01", HUMAN), ("macaque", "monkeyN", MONKEY)):
        for roi in rois:
            for method in ("pearson", "spearman"):
                r = 0.3 if roi in ("IT", "FFA") else 0.01
                rows.append(
                    {"species": species, "subject": subject, "roi": roi, "method": method,
                     "r": r, "p": 0.01, "ci_low": r - 0.1, "ci_high": r + 0.1,
                     "p_fdr": 0.003 if r > 0.1 else 0.8, "n": 150, "pair": "sub-01~monkeyN"}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_cross_species_effects_sides_and_marks():
    fig = plots.cross_species_effects(effects_table())
    (ax,) = fig.axes
    assert ax.get_title() == "sub-01~monkeyN (n = 150 shared stimuli)"
    assert [t.get_text() for t in ax.get_xticklabels()] == HUMAN + MONKEY
    ticks = ax.get_xticks()
    assert ticks[3] - ticks[2] > ticks[1] - ticks[0]  # a gap between the species
    assert [len(c) for c in bars(ax)] == [6, 6]
    assert texts(ax) == sorted(["**"] * 6 + ["human", "macaque"])
    two_pairs = pd.concat([effects_table(), effects_table().assign(pair="sub-02~monkeyN")])
    assert len(plots.cross_species_effects(two_pairs).axes) == 2


def test_ceilings_drawn_per_trials_panel():
    """Train (single trials) and test (repeat means) rows get a panel each, and each panel's
    dashed ceiling is the ceiling of its own trials."""
    train = corr_table(subjects=("sub-01",), ceiling=0.15).assign(trials="single (train)")
    test = corr_table(subjects=("sub-01",), ceiling=0.55).assign(trials="mean of 12 (test)")
    fig = plots.roi_correlation_bars(pd.concat([train, test], ignore_index=True))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["things-fmri · sub-01 · mean of 12 (test)", "things-fmri · sub-01 · single (train)"]
    for ax, expected in zip(fig.axes, (0.55, 0.15), strict=True):
        (ceiling,) = by_gid(ax, "noise_ceiling", LineCollection)
        ys = {round(float(seg[0][1]), 6) for seg in ceiling.get_segments()}
        assert ys == {expected}


def test_timecourse_dots_from_the_cluster_test():
    df = tc_table(subjects=("monkeyN",))
    df["p_cluster"] = np.where(df.r > 0.25, 0.01, np.nan)  # only the strongest bins
    ax = plots.timecourses(df).axes[0]
    dots = sum(len(line.get_xdata()) for line in ax.lines if line.get_gid() == "significant")
    assert dots == int((df.r > 0.25).sum()) < int((df.p_fdr < 0.05).sum())
    labels = [t.get_text() for t in ax.figure.legends[0].get_texts()]
    assert "p_cluster < 0.05" in labels


# ---------------------------------------------------------------------------------------------
# latency marks and the forest plot
# ---------------------------------------------------------------------------------------------


def test_timecourses_mark_onset_and_peak_with_intervals():
    df = tc_table()
    lat = pd.DataFrame({"dataset": "tvsd", "subject": "monkeyN", "method": "pearson",
                        "roi": ["V1", "IT"], "onset": [60.0, 110.0], "onset_low": [50.0, 95.0],
                        "onset_high": [70.0, 130.0], "peak": [80.0, 170.0],
                        "peak_low": [70.0, 150.0], "peak_high": [100.0, 190.0],
                        "peak_r": [0.1, 0.3]})  # fmt: skip
    fig = plots.timecourses(df, lat)
    marked = {ax.get_title(): ax for ax in fig.axes}
    n_ax = marked["tvsd · monkeyN"]
    assert sorted(ln.get_xdata()[0] for ln in by_gid(n_ax, "onset")) == [60.0, 110.0]
    assert sorted(ln.get_xdata()[0] for ln in by_gid(n_ax, "peak")) == [80.0, 170.0]
    assert sorted(tuple(ln.get_xdata()) for ln in by_gid(n_ax, "onset_ci")) == [
        (50.0, 70.0), (95.0, 130.0)]  # fmt: skip
    assert not by_gid(marked["tvsd · monkeyF"], "onset")  # another monkey's latencies
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[-2:] == ["onset", "peak"]


def test_forest_plot_individuals_and_pooled_diamond():
    rows = []
    for roi, r0 in (("IT", 0.2), ("V1", 0.0)):
        for k, subject in enumerate(("sub-01", "sub-02", "sub-03", "pooled")):
            r = r0 + 0.01 * k
            rows.append({"dataset": "things-fmri", "subject": subject, "roi": roi,
                         "method": "pearson", "how": "mean", "trials": "single (train)",
                         "control": "none", "r": r, "ci_low": r - 0.05, "ci_high": r + 0.05,
                         "k": 3 if subject == "pooled" else np.nan,
                         "I2": 0.1 if subject == "pooled" else np.nan})  # fmt: skip
    df = pd.DataFrame(rows)
    other = df.assign(method="spearman", r=df.r + 0.5)  # another method: not drawn
    fig = plots.forest_plot(pd.concat([df, other], ignore_index=True))
    (ax,) = fig.axes
    assert len(by_gid(ax, "individual")) == 6
    assert len([p for p in ax.patches if p.get_gid() == "pooled"]) == 2
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "IT pooled (k=3, I²=10%)" in labels and "V1 sub-02" in labels
    assert max(ln.get_xdata()[0] for ln in by_gid(ax, "individual")) < 0.3
    assert is_no_data(plots.forest_plot(pd.DataFrame()))
