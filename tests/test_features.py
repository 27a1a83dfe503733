"""Feature sets: ROI magnitudes, channel patterns, PCA (scikit-learn and dask), time windows."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from memxr.features import pattern_features, roi_features, time_window
from memxr.reduce import UnknownROIError
from memxr.schema import example_cube, text_coord
from memxr.testing import raise_if_dask_computes

COLUMNS = ["lFFA", "rFFA", "V1"]


def _cube(n_stim=40, n_chan=12, time=False, chunked=False, rank=None, seed=0):
    rng = np.random.default_rng(seed)
    ds = example_cube(n_stimulus=n_stim, n_channel=n_chan, seed=seed)
    mask = np.zeros((n_chan, 3), bool)
    mask[:4, 0] = True  # lFFA: channels 1-4
    mask[4:8, 1] = True  # rFFA: channels 5-8
    mask[8:, 2] = True  # V1: channels 9-12
    mask[0, 2] = True  # overlap: channel 1 also in V1
    ds = ds.drop_vars(["roi_mask", "roi"]).assign_coords(
        roi=text_coord(COLUMNS), roi_mask=(("channel", "roi"), mask)
    )
    if rank is not None:  # low rank + small noise: PCA has a clear answer
        base = rng.standard_normal((n_stim, rank)) * np.arange(rank, 0, -1) * 3
        x = base @ rng.standard_normal((rank, n_chan)) + 0.05 * rng.standard_normal(
            (n_stim, n_chan)
        )
        ds["response"] = (("stimulus", "channel"), x)
    if time:
        x = rng.standard_normal((n_stim, n_chan, 4))
        ds["response"] = (("stimulus", "channel", "time"), x)
        ds = ds.assign_coords(time=[0.0, 50.0, 100.0, 150.0])
    if chunked:
        ds["response"] = ds.response.chunk({"stimulus": 10})
    return ds, mask



@pytest.mark.parametrize("chunked", [False, True])
def test_roi_features_match_numpy(chunked):
    ds, mask = _cube(chunked=chunked)
    with raise_if_dask_computes():
        f = roi_features(ds, ["FFA", "V1"])
    assert f.dims == ("stimulus", "feature")
    assert f.feature.values.tolist() == ["FFA", "V1"]
    assert isinstance(f.data, da.Array) == chunked
    x = np.asarray(ds.response.values)
    np.testing.assert_allclose(f.sel(feature="FFA").values, x[:, :8].mean(1))
    np.testing.assert_allclose(f.sel(feature="V1").values, x[:, mask[:, 2]].mean(1))
    assert f.n_channels.values.tolist() == [8, 5]
    assert f.memorability.values.tolist() == ds.memorability.values.tolist()
    assert f.concept.dtype == object


def test_roi_features_time_window_and_time_dim():
    ds, mask = _cube(time=True)
    x = np.asarray(ds.response.values)[:, mask[:, 2], :]
    full = roi_features(ds, "V1")
    assert full.dims == ("stimulus", "feature", "time")
    win = roi_features(ds, "V1", time=slice(50, 150))  # bins 50 and 100 (stop exclusive)
    np.testing.assert_allclose(win.values[:, 0], x[:, :, 1:3].mean(axis=(1, 2)))
    assert win.attrs["time_window"] == [50.0, 150.0]
    same = roi_features(ds, "V1", time=(50, 150))
    np.testing.assert_array_equal(same.values, win.values)
    with pytest.raises(ValueError, match="holds no bin"):
        roi_features(ds, "V1", time=(300, 400))


def test_time_window_needs_time():
    with pytest.raises(ValueError, match="no 'time' dim"):
        time_window(xr.DataArray([1.0, 2.0], dims="stimulus"), (0, 10))


@pytest.mark.parametrize("chunked", [False, True])
def test_pattern_features_channels(chunked):
    ds, mask = _cube(chunked=chunked)
    with raise_if_dask_computes():
        f = pattern_features(ds, "FFA")
    assert isinstance(f.data, da.Array) == chunked
    assert f.feature.values.tolist() == [f"ch{i}" for i in range(1, 9)]
    assert f.channel_id.values.tolist() == list(range(1, 9))
    np.testing.assert_array_equal(f.values, np.asarray(ds.response.values)[:, :8])
    assert "roi_mask" not in f.coords and f.attrs["n_channels"] == 8
    with pytest.raises(UnknownROIError):
        pattern_features(ds, "PPA")


def test_pattern_features_time_window():
    ds, _ = _cube(time=True)
    f = pattern_features(ds, "lFFA", time=(0, 100))
    np.testing.assert_allclose(f.values, np.asarray(ds.response.values)[:, :4, :2].mean(-1))


def test_pca_numpy_is_sklearn():
    from sklearn.decomposition import PCA

    ds, _ = _cube(rank=3)
    f = pattern_features(ds, "FFA", n_components=3)
    ref = PCA(n_components=3, random_state=0).fit(np.asarray(ds.response.values)[:, :8])
    np.testing.assert_allclose(f.values, ref.transform(np.asarray(ds.response.values)[:, :8]))
    np.testing.assert_allclose(f.explained_variance_ratio.values, ref.explained_variance_ratio_)
    assert f.feature.values.tolist() == ["PC1", "PC2", "PC3"]


def test_pca_dask_randomized():
    """The randomized PCA of a dask-backed cube against scikit-learn's exact PCA."""
    from sklearn.decomposition import PCA

    ds, _ = _cube(rank=3, chunked=True)
    f = pattern_features(ds, "FFA", n_components=3)
    assert isinstance(f.data, da.Array)
    x = np.asarray(ds.response.values)[:, :8]
    ref = PCA(n_components=3).fit(x)
    np.testing.assert_allclose(
        f.explained_variance_ratio.values, ref.explained_variance_ratio_, rtol=1e-3
    )
    scores = f.values
    for k in range(3):  # same components up to sign
        r = np.corrcoef(scores[:, k], ref.transform(x)[:, k])[0, 1]
        assert abs(r) > 0.999
    assert f.memorability.values.tolist() == ds.memorability.values.tolist()


def test_pca_float32_ill_scaled_does_not_overflow():
    """Betas of large scale in float32: unnormalised power iterations, (X^T X)^4 X^T, overflow
    float32 here (what dask-ml's randomized PCA did); the PCA must still be exact."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    n, p, k = 1500, 300, 4
    latent = rng.standard_normal((n, k)) * np.array([40.0, 20.0, 10.0, 5.0])
    x = (latent @ rng.standard_normal((k, p)) + rng.standard_normal((n, p))) * 3e3
    x = x.astype(np.float32)
    # the matrix is hard enough: four unnormalised power iterations overflow float32
    with np.errstate(over="ignore", invalid="ignore"):
        y = x.T @ rng.standard_normal((n, k + 10)).astype(np.float32)
        for _ in range(4):
            y = x.T @ (x @ y)
    assert not np.isfinite(y).all()
    ds = example_cube(n_stimulus=n, n_channel=p)
    ds["response"] = (("stimulus", "channel"), x)
    ref = PCA(n_components=k, svd_solver="full").fit(x.astype(np.float64))
    for cube in (ds, ds.chunk({"stimulus": 500})):
        f = pattern_features(cube, "A", n_components=k)
        values = f.values
        assert np.isfinite(values).all()
        np.testing.assert_allclose(
            f.explained_variance_ratio.values, ref.explained_variance_ratio_, rtol=1e-3
        )
        expected = ref.transform(x.astype(np.float64))
        for j in range(k):
            assert abs(np.corrcoef(values[:, j], expected[:, j])[0, 1]) > 0.999


def test_pca_dask_large_float32_values_stay_finite():
    """Unnormalised power iterations grow as the 9th power of the top singular value and
    overflow float32 here; the QR-normalised ones match scikit-learn's PCA."""
    from sklearn.decomposition import PCA

    ds, _ = _cube(n_stim=200, rank=3)
    big = (ds.response * 1e4).astype(np.float32)  # e.g. raw voltages or unscaled betas
    ds["response"] = big.chunk({"stimulus": 50})
    f = pattern_features(ds, "FFA", n_components=3)
    x = np.asarray(big.values, dtype=np.float64)[:, :8]
    ref = PCA(n_components=3).fit(x)
    assert np.isfinite(f.values).all()
    np.testing.assert_allclose(
        f.explained_variance_ratio.values, ref.explained_variance_ratio_, rtol=1e-4
    )
    for k in range(3):
        assert abs(np.corrcoef(f.values[:, k], ref.transform(x)[:, k])[0, 1]) > 0.9999


def test_pca_time_resolved_shares_components():
    from sklearn.decomposition import PCA

    ds, _ = _cube(time=True)
    f = pattern_features(ds, "FFA", n_components=2)
    assert f.dims == ("stimulus", "feature", "time") and f.shape == (40, 2, 4)
    x = np.asarray(ds.response.values)[:, :8, :]  # (stimulus, channel, time)
    rows = x.transpose(0, 2, 1).reshape(-1, 8)  # one row per stimulus and time bin
    ref = PCA(n_components=2, random_state=0).fit(rows)
    np.testing.assert_allclose(f.isel(time=2).values, ref.transform(x[:, :, 2]), atol=1e-10)
    g = pattern_features(ds.chunk({"stimulus": 20}), "FFA", n_components=2)
    assert isinstance(g.data, da.Array) and g.shape == (40, 2, 4)
    assert np.isfinite(g.values).all() and g.time.values.tolist() == [0.0, 50.0, 100.0, 150.0]
    with pytest.raises(ValueError, match="n_components"):
        pattern_features(ds, "FFA", n_components=0)
