"""Every dask-ml entry point memxr uses, called as memxr calls it, on each tested stack.

dask-ml is no longer released, while dask, distributed and scikit-learn move on: memxr depends
on it only where it works, and these tests say where that is. memxr uses

- ``dask_ml.preprocessing.StandardScaler``: ``fit``, ``transform`` (dask-backed features);
- ``dask_ml.linear_model.LogisticRegression(solver="lbfgs")``: ``fit``, ``predict``,
  ``decision_function`` (model ``logistic``; dask arrays on a client, numpy arrays without
  one); underneath, dask-glm's ``lbfgs``, which needs memxr's fix on scipy >= 1.18;
- ``dask_ml.wrappers.Incremental`` around ``SGDRegressor`` (``sgd_reg``: ``fit``,
  ``partial_fit``, ``predict``) and around ``SGDClassifier(loss="log_loss")`` (``sgd_clf``:
  ``fit`` and ``partial_fit`` with ``classes``, ``predict``, ``predict_proba``).

:func:`test_fit_models_reaches_exactly_these_entry_points` records the calls that
:func:`memxr.models.fit_models` makes, so that a new use of dask-ml fails here until it is
tested; the other tests check each entry point, built by :func:`memxr.models.make_model`,
against scikit-learn on the same data. Not used, hence not tested: ``score`` (broken with
dask >= 2025.2, dask-ml#1012), the model selection searches (dask-ml#1016), dask-ml's PCA
(scikit-learn >= 1.8).
"""

from __future__ import annotations

import functools

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask_ml.linear_model import LogisticRegression
from dask_ml.preprocessing import StandardScaler
from dask_ml.wrappers import Incremental
from sklearn import linear_model, preprocessing

from memxr.models import fit_models, make_model
from memxr.schema import text_coord

ENTRY_POINTS = {
    StandardScaler: ("fit", "transform"),
    LogisticRegression: ("fit", "predict", "decision_function"),
    Incremental: ("fit", "partial_fit", "predict", "predict_proba"),
}


def _data(n=240, p=4, seed=0, chunk=60):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 1.0, -2.0, 5.0]
    z = (x - x.mean(0)) / x.std(0)
    y = z @ np.array([1.0, -0.5, 0.0, 0.25]) + 0.5 * rng.standard_normal(n)
    return x, y, (y > np.median(y)).astype(np.int64), da.from_array(x, chunks=(chunk, p))


def _features(n_concepts=30, per=4, seed=0):
    """Stimuli in concepts, the first two features carrying memorability."""
    rng = np.random.default_rng(seed)
    n = n_concepts * per
    mem = 0.7 + 0.05 * rng.standard_normal(n)
    x = rng.standard_normal((n, 4))
    x[:, :2] += 1.5 * ((mem - mem.mean()) / mem.std())[:, None]
    concept = np.repeat([f"c{i:02d}" for i in range(n_concepts)], per)
    return xr.DataArray(
        x,
        dims=("stimulus", "feature"),
        coords={
            "stimulus_id": ("stimulus", text_coord(f"s{i:03d}.jpg" for i in range(n))),
            "concept": ("stimulus", text_coord(concept)),
            "memorability": ("stimulus", mem),
            "feature": text_coord(f"f{i}" for i in range(4)),
        },
    )


@pytest.fixture
def client():
    """A client for this test only: with none alive, memxr keeps in-memory features in numpy."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def _inputs(request, kind, x, y, chunks):
    """``x``, ``y`` as memxr passes them: dask arrays on a client, or numpy arrays."""
    if kind == "numpy":
        return x, y
    request.getfixturevalue("client")
    return da.from_array(x, chunks=chunks), da.from_array(y, chunks=chunks[0])


@pytest.fixture
def calls(monkeypatch):
    """(class, method, 'dask' or 'numpy') of every outermost call to an entry point."""
    seen: set[tuple[str, str, str]] = set()
    depth = [0]

    def spy(cls, name, method):
        @functools.wraps(method)
        def wrapper(self, x, *args, **kwargs):
            if depth[0] == 0:
                seen.add((cls.__name__, name, "dask" if isinstance(x, da.Array) else "numpy"))
            depth[0] += 1
            try:
                return method(self, x, *args, **kwargs)
            finally:
                depth[0] -= 1

        return wrapper

    for cls, names in ENTRY_POINTS.items():
        for name in names:
            monkeypatch.setattr(cls, name, spy(cls, name, getattr(cls, name)))
    return seen


MODELS = ("logistic", "sgd_reg", "sgd_clf")


def _expected(kind):
    """Every entry point, on the given kind of array (the scaler only on dask arrays)."""
    out = {(cls.__name__, m, kind) for cls, names in ENTRY_POINTS.items() for m in names}
    return out if kind == "dask" else {c for c in out if c[0] != "StandardScaler"}


def _check_scores(res):
    t = res.table.set_index("model")
    assert (t.loc[["logistic", "sgd_clf"], "roc_auc"] > 0.75).all()
    assert t.loc["sgd_reg", "pearson_r"] > 0.5


@pytest.mark.parametrize("kind", ["dask", "numpy"])
def test_fit_models_reaches_exactly_these_entry_points(request, calls, kind):
    from memxr.models.execution import default_client

    features = _features()
    if kind == "dask":  # dask-backed features on a client: what a pipeline step does
        client = request.getfixturevalue("client")
        features = features.chunk({"stimulus": 40})
    else:  # in-memory features and no client: scikit-learn's scaler, numpy arrays
        client = False
        assert default_client() is None
    res = fit_models(
        {"f": features},
        "memorability",
        models=MODELS,
        cv=3,
        n_permutations=0,
        client=client,
        epochs=2,
    )
    assert calls == _expected(kind)
    _check_scores(res)


def test_standard_scaler_matches_scikit_learn(client):
    x, _, _, dx = _data()
    ours = make_model("sgd_reg", dask_input=True).named_steps["scale"]
    assert isinstance(ours, StandardScaler)
    ours.fit(dx)
    ref = preprocessing.StandardScaler().fit(x)
    out = ours.transform(dx)
    assert isinstance(out, da.Array)  # stays lazy
    np.testing.assert_allclose(np.asarray(ours.mean_), ref.mean_)
    np.testing.assert_allclose(np.asarray(ours.scale_), ref.scale_)
    np.testing.assert_allclose(out.compute(), ref.transform(x), atol=1e-12)


@pytest.mark.parametrize("kind", ["dask", "numpy"])
def test_logistic_lbfgs_matches_scikit_learn(request, kind):
    x, _, label, dx = _data()
    z = preprocessing.StandardScaler().fit_transform(x)
    xs, ys = _inputs(request, kind, z, label, dx.chunks)
    # nearly unpenalized, so that both minimize the same likelihood
    ours = make_model("logistic", C=1e6)[-1]
    assert isinstance(ours, LogisticRegression) and ours.solver == "lbfgs"
    ours.fit(xs, ys)
    ref = linear_model.LogisticRegression(C=1e6).fit(z, label)
    np.testing.assert_allclose(ours.coef_, ref.coef_[0], rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_[0], atol=1e-2)
    decision = np.asarray(da.compute(ours.decision_function(xs))[0])
    np.testing.assert_allclose(decision, z @ ours.coef_ + ours.intercept_, rtol=1e-10)
    predicted = np.asarray(da.compute(ours.predict(xs))[0])
    np.testing.assert_array_equal(predicted, decision > 0)
    assert (predicted == label).mean() > 0.75
    # memxr's setting (C=1.0) through the same calls
    default = make_model("logistic")[-1].fit(xs, ys)
    assert (
        np.corrcoef(np.asarray(da.compute(default.decision_function(xs))[0]), decision)[0, 1] > 0.99
    )


def _incremental(name, x, y, classes=None):
    extra = {} if classes is None else {"classes": classes}
    inc = make_model(name, seed=0, dask_input=True)[-1]
    assert isinstance(inc, Incremental) and inc.shuffle_blocks and inc.random_state == 0
    inc.fit(x, y, **extra)
    inc.partial_fit(x, y, **extra)
    return inc


@pytest.mark.parametrize("kind", ["dask", "numpy"])
def test_incremental_sgd_regressor(request, kind):
    x, y, _, dx = _data()
    z = preprocessing.StandardScaler().fit_transform(x)
    xs, ys = _inputs(request, kind, z, y, dx.chunks)
    inc = _incremental("sgd_reg", xs, ys)
    assert isinstance(inc.estimator, linear_model.SGDRegressor)
    again = _incremental("sgd_reg", xs, ys)
    np.testing.assert_array_equal(inc.estimator_.coef_, again.estimator_.coef_)  # seeded
    out = inc.predict(xs)
    assert isinstance(out, da.Array) == (kind == "dask")
    pred = np.asarray(da.compute(out)[0])
    np.testing.assert_allclose(pred, inc.estimator_.predict(z))
    assert np.corrcoef(pred, y)[0, 1] > 0.8


@pytest.mark.parametrize("kind", ["dask", "numpy"])
def test_incremental_sgd_classifier(request, kind):
    x, _, label, dx = _data()
    z = preprocessing.StandardScaler().fit_transform(x)
    xs, ys = _inputs(request, kind, z, label, dx.chunks)
    inc = _incremental("sgd_clf", xs, ys, classes=[0, 1])
    assert (
        isinstance(inc.estimator, linear_model.SGDClassifier) and inc.estimator.loss == "log_loss"
    )
    assert list(inc.estimator_.classes_) == [0, 1]
    assert not hasattr(inc, "decision_function")  # memxr scores with predict_proba
    proba = np.asarray(da.compute(inc.predict_proba(xs))[0])
    predicted = np.asarray(da.compute(inc.predict(xs))[0])
    assert proba.shape == (len(label), 2)
    np.testing.assert_allclose(proba, inc.estimator_.predict_proba(z))
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(predicted, inc.estimator_.predict(z))
    assert (predicted == label).mean() > 0.75
