"""Memorability models: grouped CV, training-fold labels, permutations, dask-ml, the cluster."""

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from memxr.features import roi_features
from memxr.models import (
    DEFAULT_MODELS,
    MODELS,
    fit_models,
    grouped_permutation,
    make_folds,
    make_model,
    ridge_cv_alpha,
    split_labels,
)
from memxr.schema import example_cube, text_coord

N_CONCEPTS, PER = 30, 4


def _features(signal=1.0, n_feat=4, seed=0, nan_y=0, unknown=0):
    """Stimuli in concepts; memorability has a concept part and a stimulus part.

    With ``signal`` > 0 the first two features carry memorability (plus noise).
    """
    rng = np.random.default_rng(seed)
    n = N_CONCEPTS * PER
    concept = np.repeat([f"c{i:02d}" for i in range(N_CONCEPTS)], PER).astype(object)
    concept[:unknown] = ""
    mem = 0.7 + 0.08 * np.repeat(rng.standard_normal(N_CONCEPTS), PER)
    mem += 0.05 * rng.standard_normal(n)
    z = (mem - mem.mean()) / mem.std()
    x = rng.standard_normal((n, n_feat))
    x[:, :2] += signal * z[:, None]
    mem[rng.choice(n, nan_y, replace=False)] = np.nan
    return xr.DataArray(
        x,
        dims=("stimulus", "feature"),
        coords={
            "stimulus_id": ("stimulus", text_coord(f"s{i:03d}.jpg" for i in range(n))),
            "concept": ("stimulus", text_coord(concept)),
            "memorability": ("stimulus", mem),
            "feature": text_coord(f"f{i}" for i in range(n_feat)),
        },
    )


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def sets():
    return {"signal": _features(1.0), "noise": _features(0.0, seed=1)}


RUN = dict(models=("ridge", "svc"), cv=5, n_permutations=24, seed=3)


@pytest.fixture(scope="module")
def on_cluster(client, sets):
    from distributed import get_task_stream

    with get_task_stream(client) as ts:
        res = fit_models(sets, "memorability", client=client, **RUN)
    return res, ts.data


@pytest.fixture(scope="module")
def in_process(sets):
    return fit_models(sets, "memorability", client=False, **RUN)


def _row(res, feature_set, model, **kw):
    t = res.table
    m = (t.feature_set == feature_set) & (t.model == model)
    for k, v in kw.items():
        m &= t[k] == v
    assert m.sum() == 1
    return t[m].iloc[0]


# ----------------------------------------------------------------------------- folds


def test_grouped_folds_never_share_a_concept():
    f = _features(unknown=6)
    concept = f.concept.values
    folds, kind = make_folds(f.sizes["stimulus"], concept, cv=5, seed=2)
    assert kind == "grouped" and len(folds) == 5
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(f.sizes["stimulus"]))  # each stimulus tested once
    for tr, te in folds:
        assert not set(tr) & set(te)
        shared = set(concept[tr]) & set(concept[te]) - {""}
        assert not shared, f"concepts in train and test: {shared}"
    # unknown concepts are groups of their own, not one big group
    fold_of_unknown = {k for k, (_, te) in enumerate(folds) for i in te if concept[i] == ""}
    assert len(fold_of_unknown) > 1


def test_random_folds_mix_concepts_and_errors():
    f = _features()
    folds, kind = make_folds(f.sizes["stimulus"], f.concept.values, cv="random", seed=0)
    assert kind == "random"
    assert any(set(f.concept.values[tr]) & set(f.concept.values[te]) for tr, te in folds)
    with pytest.raises(ValueError, match="cv='random'"):
        make_folds(10, None, cv=5)
    with pytest.raises(ValueError, match="at least 5 concepts"):
        make_folds(6, np.array(list("aabbcc")), cv=5)


def test_grouped_permutation_moves_whole_concepts():
    rng = np.random.default_rng(0)
    groups = np.r_[np.repeat(np.arange(20), 3), [20, 20, 20, 20, 20], [21]]  # sizes 3, 5, 1
    y = np.arange(groups.size, dtype=float)
    moved = 0
    for _ in range(5):
        p = grouped_permutation(groups, rng)
        assert sorted(p.tolist()) == list(range(groups.size))
        for g in range(20):
            src = set(groups[p[groups == g]])
            assert len(src) == 1  # all values of a concept come from one concept
            assert src <= set(range(20))  # of the same size
            moved += src != {g}
        assert set(p[groups >= 20]) == set(np.flatnonzero(groups >= 20))  # pooled leftovers
        assert not np.array_equal(y[p], y)
    assert moved > 50


def test_split_labels_from_training_fold():
    tr = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    te = np.array([3.0, 3.5, 50.0])
    lab_tr, lab_te, thr = split_labels(tr, te)
    assert thr == (3.0, 3.0)
    assert lab_tr.tolist() == [0, 0, 0, 1, 1] and lab_te.tolist() == [0, 1, 1]
    _, lab_q, (lo, hi) = split_labels(
        np.arange(101.0), np.array([10, 25, 50, 75, 90.0]), "quantile"
    )
    assert (lo, hi) == (25.0, 75.0)
    np.testing.assert_array_equal(lab_q, [0, 0, np.nan, 1, 1])
    with pytest.raises(ValueError, match="quantiles"):
        split_labels(tr, te, "quantile", (0.8, 0.2))


# ----------------------------------------------------------------------------- models


def test_make_model_registry():
    from dask_ml.linear_model import LogisticRegression
    from dask_ml.wrappers import Incremental

    assert set(MODELS) == {
        "linear",
        "ridge",
        "svr",
        "svc",
        "linear_svc",
        "mlp_reg",
        "mlp_clf",
        "logistic",
        "sgd_reg",
        "sgd_clf",
    }
    lr = make_model("logistic")[-1]
    assert isinstance(lr, LogisticRegression) and lr.solver == "lbfgs"
    assert isinstance(make_model("sgd_reg", dask_input=True)[-1], Incremental)
    assert type(make_model("sgd_reg", dask_input=True)[0]).__module__.startswith("dask_ml")
    assert make_model("svr", C=3.0)[-1].C == 3.0
    from sklearn.svm import SVC, LinearSVC

    assert isinstance(make_model("svc")[-1], SVC) and make_model("svc")[-1].kernel == "rbf"
    lin = make_model("linear_svc", C=0.5)[-1]
    assert isinstance(lin, LinearSVC) and lin.C == 0.5 and lin.dual is False
    assert DEFAULT_MODELS == ("ridge", "linear_svc")
    with pytest.raises(ValueError, match="unknown model"):
        make_model("forest")


def test_ridge_cv_alpha_matches_gridsearch():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold

    rng = np.random.default_rng(4)
    x = rng.standard_normal((60, 8))
    y = x @ rng.standard_normal(8) * 0.3 + rng.standard_normal(60)
    groups = np.repeat(np.arange(15), 4)
    alphas = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
    splits = list(GroupKFold(3).split(x, groups=groups))
    ref = GridSearchCV(Ridge(), {"alpha": alphas}, cv=splits, scoring="neg_mean_squared_error")
    assert ridge_cv_alpha(x, y, splits, alphas) == ref.fit(x, y).best_params_["alpha"]
    noise_only = rng.standard_normal(60)
    assert ridge_cv_alpha(x, noise_only, splits, alphas) == 1000.0


@pytest.mark.parametrize(
    "model", ["svr", "mlp_reg", "sgd_reg", "mlp_clf", "sgd_clf", "linear_svc"]
)
def test_every_model_learns(model):
    f = _features(1.5)
    res = fit_models(f, "memorability", models=(model,), cv=3, n_permutations=0, client=False)
    row = res.table.iloc[0]
    clf = model.endswith(("clf", "svc"))
    score = row.roc_auc if clf else row.pearson_r
    assert score > (0.75 if clf else 0.5)
    assert row.kind == ("classifier" if clf else "regressor")


# ----------------------------------------------------------------------------- fit_models


def test_planted_signal_and_noise(on_cluster):
    res, _ = on_cluster
    sig = _row(res, "signal", "ridge")
    assert sig.cv == "grouped" and sig.n_folds == 5 and sig.n_stimuli == N_CONCEPTS * PER
    assert sig.pearson_r > 0.5 and sig.spearman_rho > 0.4 and sig.r2 > 0.2
    assert sig.chance_p < 0.05 and sig.chance_p == pytest.approx(1 / 25)
    # out-of-fold r is biased below 0 under the null (fold means); the permutations show it
    assert sig.chance_mean < 0.1 and sig.pearson_r > sig.chance_mean + 0.4
    noise = _row(res, "noise", "ridge")
    assert noise.chance_p > 0.05 and noise.pearson_r < 0.3
    clf = _row(res, "signal", "svc")
    assert clf.accuracy > 0.7 and clf.roc_auc > 0.75 and clf.chance_p < 0.05
    nclf = _row(res, "noise", "svc")
    assert abs(nclf.accuracy - 0.5) < 0.12 and nclf.chance_p > 0.05
    assert abs(nclf.chance_mean - 0.5) < 0.06  # permutation chance of AUC
    assert res.null.sizes == {"feature_set": 2, "model": 2, "permutation": 24}


def test_tasks_ran_on_the_cluster(on_cluster):
    _, tasks = on_cluster
    keys = [str(t["key"]) for t in tasks]
    assert any("fit_block" in k for k in keys), keys[:5]


def test_same_numbers_with_and_without_cluster(on_cluster, in_process):
    res, _ = on_cluster
    pd.testing.assert_frame_equal(res.table, in_process.table, rtol=1e-9)
    xr.testing.assert_allclose(res.predictions, in_process.predictions, rtol=1e-9)
    xr.testing.assert_allclose(res.null, in_process.null, rtol=1e-9)


def test_median_split_on_training_fold_only(in_process, sets):
    pred = in_process.predictions.sel(feature_set="noise", model="svc")
    y = pred.observed.values
    folds = pred.fold.values
    differs = 0
    for k in range(5):
        thr = np.median(y[folds != k])
        test = folds == k
        np.testing.assert_array_equal(pred.label.values[test], (y[test] > thr).astype(float))
        differs += np.sum((y[test] > thr) != (y[test] > np.median(y[test])))
    assert differs > 0  # the test-fold median would have labelled some stimuli differently


def test_results_table_and_predictions(in_process):
    t = in_process.table
    assert {
        "feature_set",
        "model",
        "cv",
        "n_stimuli",
        "n_folds",
        "pearson_r",
        "spearman_rho",
        "r2",
        "accuracy",
        "roc_auc",
        "chance_mean",
        "chance_p",
        "fraction_of_ceiling",
        "n_dropped",
    } <= set(t.columns)
    assert len(t) == 4 and t[["feature_set", "model"]].drop_duplicates().shape[0] == 4
    assert t.loc[t.model == "svc", "pearson_r"].isna().all()
    assert t.loc[t.model == "ridge", "accuracy"].isna().all()
    p = in_process.predictions
    assert p.prediction.dims == ("feature_set", "model", "stimulus")
    assert p.prediction.shape == (2, 2, N_CONCEPTS * PER)
    assert np.isfinite(p.prediction.values).all()
    assert set(np.unique(p.prediction.sel(model="svc").values)) == {0.0, 1.0}
    assert p.stimulus_id.values[0] == "s000.jpg" and p.concept.dtype == object
    ridge = p.sel(feature_set="signal", model="ridge")
    r = np.corrcoef(ridge.prediction.values, ridge.observed.values)[0, 1]
    assert r == pytest.approx(_row(in_process, "signal", "ridge").pearson_r)
    ds = in_process.to_xarray()
    assert ds.pearson_r.dims == ("feature_set", "model")
    assert ds.null.dims == ("feature_set", "model", "permutation")
    assert ds.prediction.shape == (2, 2, N_CONCEPTS * PER)
    assert '"cv": "grouped"' in ds.attrs["params"]


def test_random_cv_is_labelled():
    f = _features()
    res = fit_models(
        f, "memorability", models=("linear",), cv="random", n_permutations=5, client=False
    )
    assert (res.table.cv == "random").all() and res.params["cv"] == "random"
    assert res.params["permutation"] == "stimuli"
    folds = res.predictions.fold.values
    concept = f.concept.values
    assert any(set(concept[folds == k]) & set(concept[folds != k]) for k in range(5))


def test_quantile_split_keeps_extremes():
    f = _features()
    res = fit_models(
        f,
        "memorability",
        models=("svc",),
        n_permutations=0,
        client=False,
        split="quantile",
        q=(0.25, 0.75),
    )
    row = res.table.iloc[0]
    p = res.predictions.isel(feature_set=0, model=0)
    labelled = np.isfinite(p.label.values)
    assert row.n_stimuli == labelled.sum() and 0.35 < labelled.mean() < 0.65
    assert np.isnan(p.prediction.values[~labelled]).all()
    y, folds = p.observed.values, p.fold.values
    for k in range(5):
        lo, hi = np.quantile(y[folds != k], [0.25, 0.75])
        test = folds == k
        expect = np.where(y[test] >= hi, 1.0, np.where(y[test] <= lo, 0.0, np.nan))
        np.testing.assert_array_equal(p.label.values[test], expect)
    assert row.label_split == "quantile" and row.accuracy > 0.75


def test_nan_memorability_dropped():
    f = _features(nan_y=7)
    res = fit_models({"a": f}, "memorability", models=("linear",), n_permutations=0, client=False)
    row = res.table.iloc[0]
    assert row.n_dropped == 7 and row.n_stimuli == N_CONCEPTS * PER - 7
    kept = f.stimulus_id.values[np.isfinite(f.memorability.values)]
    assert res.predictions.stimulus_id.values.tolist() == kept.tolist()
    assert np.isnan(row.chance_p)


def test_noise_ceiling_fraction():
    f = _features()
    res = fit_models(
        {"a": f, "b": f},
        "memorability",
        models=("linear", "svc"),
        n_permutations=0,
        client=False,
        noise_ceiling={"a": 0.8},
    )
    a = _row(res, "a", "linear")
    assert a.fraction_of_ceiling == pytest.approx(a.pearson_r / 0.8)
    assert np.isnan(_row(res, "b", "linear").fraction_of_ceiling)
    assert np.isnan(_row(res, "a", "svc").fraction_of_ceiling)
    one = fit_models(
        f, "memorability", models=("linear",), n_permutations=0, client=False, noise_ceiling=0.5
    )
    assert one.table.fraction_of_ceiling[0] == pytest.approx(one.table.pearson_r[0] / 0.5)


def test_y_as_dataarray_aligned_by_stimulus_id():
    f = _features()
    y = f.memorability.reset_coords(drop=True).assign_coords(stimulus_id=f.stimulus_id)
    shuffled = y.isel(stimulus=np.random.default_rng(0).permutation(y.sizes["stimulus"]))
    a = fit_models(f, shuffled, models=("linear",), n_permutations=0, client=False)
    b = fit_models(f, "memorability", models=("linear",), n_permutations=0, client=False)
    pd.testing.assert_frame_equal(a.table, b.table)


def test_incremental_sgd_on_dask_features(client):
    f = _features(1.5).chunk({"stimulus": 60})
    assert isinstance(f.data, da.Array)
    res = fit_models(
        {"lazy": f},
        "memorability",
        models=("sgd_reg", "sgd_clf"),
        cv=3,
        n_permutations=0,
        client=client,
        epochs=2,
    )
    assert _row(res, "lazy", "sgd_reg").pearson_r > 0.5
    assert _row(res, "lazy", "sgd_clf").roc_auc > 0.75
    # the same model on in-memory features runs in the joblib tasks: same numbers
    mem = fit_models(
        {"lazy": f.compute()},
        "memorability",
        models=("sgd_reg",),
        cv=3,
        n_permutations=0,
        client=client,
        epochs=2,
    )
    assert mem.table.pearson_r[0] > 0.5


def test_dask_ml_logistic_lbfgs(client):
    f = _features(1.5)
    res = fit_models(f, "memorability", models=("logistic",), cv=3, n_permutations=0, client=client)
    row = res.table.iloc[0]
    assert row.n_folds == 3 and row.roc_auc > 0.8 and row.accuracy > 0.7


def test_time_resolved_one_row_per_bin():
    rng = np.random.default_rng(0)
    f = _features()
    ds = example_cube(n_stimulus=f.sizes["stimulus"], n_channel=6)
    ds = ds.assign_coords(concept=f.concept, memorability=f.memorability)
    z = (f.memorability.values - f.memorability.values.mean()) / f.memorability.values.std()
    x = rng.standard_normal((f.sizes["stimulus"], 6, 3))
    x[:, :, 1] += 1.0 * z[:, None]  # memorability only in the middle bin
    ds["response"] = (("stimulus", "channel", "time"), x)
    ds = ds.assign_coords(time=[0.0, 100.0, 200.0])
    feats = roi_features(ds, "A", how="mean")
    res = fit_models(
        {"A": feats}, "memorability", models=("linear",), n_permutations=9, client=False
    )
    t = res.table
    assert len(t) == 3 and t.time.tolist() == [0.0, 100.0, 200.0]
    r = t.set_index("time").pearson_r
    assert r[100.0] > 0.5 and abs(r[0.0]) < 0.3 and abs(r[200.0]) < 0.3
    assert t.set_index("time").chance_p[100.0] == pytest.approx(0.1)
    assert res.predictions.prediction.dims == ("feature_set", "model", "stimulus", "time")
    assert res.null.dims == ("feature_set", "model", "time", "permutation")
    assert res.to_xarray().pearson_r.dims == ("feature_set", "model", "time")


def test_bad_inputs():
    f = _features()
    with pytest.raises(ValueError, match="unknown model"):
        fit_models(f, "memorability", models=("forest",), client=False)
    with pytest.raises(ValueError, match="no coordinate 'concept'"):
        fit_models(f.drop_vars("concept"), "memorability", models=("linear",), client=False)
    bad = f.copy(data=f.values.copy())
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="1 stimuli have NaN"):
        fit_models({"x": bad}, "memorability", models=("linear",), client=False)
    timed = f.expand_dims(time=[0.0]).transpose("stimulus", "feature", "time")
    with pytest.raises(ValueError, match="time-resolved"):
        fit_models({"a": f, "b": timed}, "memorability", models=("linear",), client=False)
    with pytest.raises(ValueError, match="other stimuli"):
        fit_models(
            {"a": f, "b": f.assign_coords(stimulus_id=("stimulus", f.stimulus_id.values[::-1]))},
            "memorability",
            models=("linear",),
            client=False,
        )


# ----------------------------------------------------------------------------- PCA in folds


def test_pca_is_fit_inside_each_training_fold():
    """With n_components the PCA is a step of the pipeline: every fold's predictions are
    those of a PCA fit on that fold's training stimuli only."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    x = _features(0.7, n_feat=12, seed=4)
    x = x.copy(data=x.values.astype(np.float32))
    res = fit_models(x, "memorability", models=("linear",), cv=4, n_permutations=0,
                     client=False, n_components=3)  # fmt: skip
    assert res.table.n_components.tolist() == [3]
    pred = res.predictions.prediction.isel(feature_set=0, model=0).values
    fold = res.predictions.fold.values
    values, y = x.values, x.memorability.values
    manual, leaky = np.full(y.size, np.nan), np.full(y.size, np.nan)
    everything = PCA(3, svd_solver="full").fit(values)
    for k in np.unique(fold):
        tr, te = fold != k, fold == k
        mu, sd = y[tr].mean(), y[tr].std()
        for out, pca in ((manual, PCA(3, svd_solver="full").fit(values[tr])), (leaky, everything)):
            scale = StandardScaler().fit(pca.transform(values[tr]))
            reg = LinearRegression().fit(scale.transform(pca.transform(values[tr])),
                                         (y[tr] - mu) / sd)  # fmt: skip
            out[te] = reg.predict(scale.transform(pca.transform(values[te]))) * sd + mu
    np.testing.assert_allclose(pred, manual, rtol=1e-4, atol=1e-5)
    assert np.abs(pred - leaky).max() > 1e-3  # a PCA of all stimuli gives other numbers
    with pytest.raises(ValueError, match="unknown feature sets"):
        fit_models({"a": x}, "memorability", models=("linear",), cv=4, n_permutations=0,
                   client=False, n_components={"b": 2})  # fmt: skip


def test_chance_p_fdr_over_the_rows_of_a_fit(in_process):
    t = in_process.table
    import scipy.stats

    np.testing.assert_allclose(t.chance_p_fdr, scipy.stats.false_discovery_control(t.chance_p))
    assert t.p_family.nunique() == 1 and "4 feature set x model rows" in t.p_family.iloc[0]


def test_unknown_concepts_are_singletons_in_folds_permutations_and_statistics():
    """One grouping everywhere: images of unknown concept ("") are groups of their own in the
    folds, the permutations and the correlation statistics (never one pooled concept)."""
    from memxr.bridge.inputs import concept_groups
    from memxr.stats.inputs import group_codes, stimulus_inputs

    labels = np.array(["a", "a", "", "b", "b", "", ""], dtype=object)
    codes = group_codes(labels)
    assert codes.tolist() == [0, 0, 2, 1, 1, 3, 4]
    x = xr.DataArray(np.arange(7.0), dims="stimulus")
    inp = stimulus_inputs(x, np.arange(7.0) ** 2, None, labels, "pearson", "stimulus")
    np.testing.assert_array_equal(inp.codes, codes)
    folds, _ = make_folds(7, labels, cv=("grouped", 5), seed=0)
    fold_of = np.empty(7, int)
    for k, (_, te) in enumerate(folds):
        fold_of[te] = k
    assert len({fold_of[i] for i in (2, 5, 6)}) > 1  # the unknown images are split up
    # unknown images are singletons: they trade values with the known singletons c and d,
    # never as a block of two with the concept "a" of two images
    small = np.array(["a", "a", "", "", "c", "d"], dtype=object)
    perms = [grouped_permutation(small, np.random.default_rng(s)) for s in range(30)]
    assert any(set(p[[2, 3]]) & {4, 5} for p in perms)
    assert all(set(p[[0, 1]]) == {0, 1} for p in perms)
    cube = example_cube(n_stimulus=7).assign_coords(concept=("stimulus", text_coord(labels)))
    groups = concept_groups(cube)
    np.testing.assert_array_equal(group_codes(groups) == group_codes(groups)[2], codes == 2)


# ----------------------------------------------------------------------------- early stopping


def test_sequential_p_is_besag_clifford():
    from memxr.models import sequential_p

    null = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.95, 0.3])
    assert sequential_p(null, 0.5) == (5 / 8, 7, False)
    assert sequential_p(null, 0.5, 2) == (2 / 3, 3, True)  # 2nd exceedance at the 3rd
    assert sequential_p(null, 0.5, 4) == (4 / 6, 6, True)
    assert sequential_p(null, 0.5, 5) == (5 / 8, 7, False)  # never 5: the full test
    assert sequential_p(null[:3], 0.5, 2) == (3 / 4, 3, False)  # the 2nd is the last: full
    assert sequential_p(np.r_[np.nan, null], 0.5, 2) == (2 / 3, 3, True)  # NaN fits skipped
    assert np.isnan(sequential_p(null, np.nan, 2)[0])


def test_sequential_p_is_valid_under_the_null():
    """Observed and null scores exchangeable: P(p <= a) <= a at every a (exactly, up to the
    Monte Carlo error of 20,000 replicates), with far fewer permutations on average."""
    from memxr.models import sequential_p

    rng = np.random.default_rng(0)
    n_perm, h = 99, 4
    draws = rng.standard_normal((20_000, n_perm + 1))
    out = np.array([sequential_p(d[1:], d[0], h)[:2] for d in draws])
    p, used = out[:, 0], out[:, 1]
    for a in (0.01, 0.04, 0.05, 0.1, 0.2, 0.5):
        assert np.mean(p <= a) <= a + 3 * np.sqrt(a * (1 - a) / len(p)), a
    assert np.mean(p <= 0.05) > 0.04  # not conservative either: 4 / l reaches 0.05 at l = 80
    assert used.mean() < 25  # h + h ln(N / h) = 16.8 on average instead of 99


def test_early_stopping_keeps_the_full_tests_answer():
    """Rows that stop have p = h / l >= h / N and the first l null scores of the full run;
    rows that do not stop have the full test's p-value exactly; the numbers do not depend
    on the rounds or the size of the tasks."""
    import memxr.models.execution as execution

    sets = {"signal": _features(1.0), "noise": _features(0.0, seed=1),
            "noise2": _features(0.0, seed=2)}  # fmt: skip
    kw = dict(models=("ridge", "linear_svc"), cv=4, n_permutations=40, seed=1, client=False)
    full = fit_models(sets, "memorability", early_stop=None, **kw)
    seq = fit_models(sets, "memorability", early_stop=4, **kw)
    assert (full.table.n_permutations == 40).all() and not full.table.stopped_early.any()
    assert (seq.table.early_stop == 4).all() and (full.table.early_stop == 0).all()
    t = seq.table
    stopped = t[t.stopped_early]
    assert len(stopped) >= 2 and (stopped.n_permutations < 40).all()
    np.testing.assert_allclose(stopped.chance_p, 4 / stopped.n_permutations)
    assert (stopped.chance_p >= 4 / 40).all()
    kept = t[~t.stopped_early]
    assert len(kept) >= 1 and (kept.feature_set == "signal").any()
    np.testing.assert_allclose(kept.chance_p, full.table.chance_p[~t.stopped_early])
    for _, row in t.iterrows():
        a = seq.null.sel(feature_set=row.feature_set, model=row.model).values
        b = full.null.sel(feature_set=row.feature_set, model=row.model).values
        n = int(np.isfinite(a).sum())
        np.testing.assert_array_equal(a[:n], b[:n])  # the same permutations, in order
        assert n == row.n_permutations and np.isnan(a[n:]).all()
    pd.testing.assert_frame_equal(seq.table[["pearson_r", "roc_auc"]],
                                  full.table[["pearson_r", "roc_auc"]])  # fmt: skip
    old = execution.PERMS_PER_TASK
    try:
        execution.PERMS_PER_TASK = 3
        small = fit_models(sets, "memorability", early_stop=4, **kw)
    finally:
        execution.PERMS_PER_TASK = old
    pd.testing.assert_frame_equal(small.table, seq.table)
    with pytest.raises(ValueError, match="early_stop"):
        fit_models(sets, "memorability", early_stop=-1, **kw)


def test_tasks_carry_no_data_in_their_graphs(client):
    """Features, permuted targets, groups and folds are scattered once; tasks refer to them
    by key, so no graph sent to the scheduler comes near the size of the data."""
    import warnings

    import dask

    rng = np.random.default_rng(0)
    n, n_concepts = 5000, 600
    x = xr.DataArray(
        rng.standard_normal((n, 50)),  # 2 MB
        dims=("stimulus", "feature"),
        coords={
            "concept": ("stimulus", text_coord(f"c{i % n_concepts}" for i in range(n))),
            "memorability": ("stimulus", rng.standard_normal(n)),
        },
    )
    limit = {"distributed.admin.large-graph-warning-threshold": "100kB"}
    with dask.config.set(limit), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        client.submit(np.sum, x.values).result()  # the control: data embedded in a graph
        control = [w for w in seen if "large graph" in str(w.message)]
        res = fit_models({"a": x, "b": x}, "memorability", models=("ridge", "linear_svc"),
                         n_permutations=5, client=client, n_components={"b": 10})  # fmt: skip
    assert len(control) == 1, "the threshold of the check does not catch embedded data"
    large = [str(w.message) for w in seen if "large graph" in str(w.message)]
    assert len(large) == 1, large
    assert len(res.table) == 4 and res.table.n_permutations.eq(5).all()


def test_feature_sets_fit_apart_equal_one_fit():
    """combine_results of one fit per feature set = one fit over every set (same folds and
    permutations; the FDR over every row): the pipeline holds one set in memory at a time."""
    from memxr.models import combine_results

    rng = np.random.default_rng(5)
    n = 60
    concept = np.repeat([f"c{i}" for i in range(20)], 3)
    y = rng.normal(size=n)
    sets = {
        k: xr.DataArray(
            rng.normal(size=(n, 4)) + 0.5 * y[:, None] * (k == "a"),
            dims=("stimulus", "feature"),
            coords={"concept": ("stimulus", concept)},
        )
        for k in ("a", "b", "c")
    }
    kw = dict(models=("ridge", "linear_svc"), cv=3, groups="concept", n_permutations=19,
              early_stop=3, client=False, n_components={"b": 2})  # fmt: skip
    one = fit_models(sets, y, **kw)
    apart = combine_results(
        [fit_models({k: v}, y, **{**kw, "n_components": {k: 2} if k == "b" else None})
         for k, v in sets.items()]
    )  # fmt: skip
    pd.testing.assert_frame_equal(one.table, apart.table)
    xr.testing.assert_equal(one.null, apart.null)
    xr.testing.assert_allclose(one.predictions, apart.predictions)
