"""The streaming pass of memxr.stats against naive references (one pass per block)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from memxr.stats.streaming import contract, contract_pair, first_row, prepare_features


def _features(backend: str) -> xr.DataArray:
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((90, 7, 5)) * 1e3 + 5e4).astype(np.float32)  # large mean
    a = xr.DataArray(x, dims=("stimulus", "channel", "time"))
    return a.chunk({"stimulus": 40, "channel": 3}) if backend == "dask" else a


def test_shift_is_cast_then_subtract_in_float64():
    """Pearson features keep their dtype; the pass subtracts the first row in float64, tile
    by tile (not in the data's float32), with the same numbers as a whole float64 copy."""
    for backend in ("numpy", "dask"):
        a = _features(backend)
        x = np.asarray(a.values, dtype=np.float64)
        got = prepare_features(a, "stimulus", None, "pearson")
        assert got.dtype == np.float32  # no block-sized float64 copy
        shift = first_row(got, "stimulus")
        assert shift.dtype == np.float64 and shift.dims == ("channel", "time")
        np.testing.assert_array_equal(shift.values, x[0])
        kept = prepare_features(a, "stimulus", np.arange(10, 60), "pearson")
        np.testing.assert_array_equal(first_row(kept, "stimulus").values, x[10])
        xs = a.chunk({"stimulus": 40, "channel": 3})
        m = da.from_array(np.ones((90, 1)), chunks=((40, 40, 10), 1))
        s1, s2 = contract_pair(xs, m, m, "stimulus", first_row(xs, "stimulus"))
        d = x - x[0]
        np.testing.assert_allclose(s1.values[..., 0], d.sum(0), rtol=1e-12)
        np.testing.assert_allclose(s2.values[..., 0], (d * d).sum(0), rtol=1e-12)


def test_contract_equals_tensordot_over_chunks():
    """Per-chunk products (one BLAS thread each) summed over the stimulus chunks equal the
    whole product and dask's own tensordot bit for bit."""
    a = prepare_features(_features("dask"), "stimulus", None, "pearson").astype(np.float64)
    m = np.random.default_rng(5).standard_normal((90, 4))
    md = da.from_array(m, chunks=(40, 4))
    got = contract(a, md, "stimulus", "col")
    assert got.dims == ("channel", "time", "col")
    want = da.tensordot(a.data, md, axes=(0, 0)).compute()
    np.testing.assert_array_equal(got.values, want)
    np.testing.assert_allclose(got.values, np.tensordot(a.values, m, axes=(0, 0)), rtol=1e-12)


def test_sums_and_squares_in_one_pass_equal_naive_sums():
    """x . m and x**2 . w from one pass (tiles of stimuli, several chunks) equal the sums
    computed whole, and the correlation map equals Pearson's r per feature."""
    from memxr.stats.kernels import PAIR_ROWS

    rng = np.random.default_rng(6)
    n = 3 * PAIR_ROWS + 17  # several tiles and a short one, in two stimulus chunks
    x = xr.DataArray(rng.standard_normal((n, 4, 3)), dims=("stimulus", "channel", "time"))
    xd = x.chunk({"stimulus": n // 2 + 1, "channel": 2})
    m, w = rng.standard_normal((n, 3)), rng.random((n, 2))
    chunks = (xd.chunksizes["stimulus"],)
    s1, s2 = contract_pair(
        xd, da.from_array(m, chunks=(chunks[0], 3)), da.from_array(w, chunks=(chunks[0], 2)), "stimulus"
    )
    np.testing.assert_allclose(s1.values, np.tensordot(x.values, m, axes=(0, 0)), rtol=1e-12)
    np.testing.assert_allclose(s2.values, np.tensordot(x.values**2, w, axes=(0, 0)), rtol=1e-12)

    from memxr.stats import correlate

    y = rng.standard_normal(n)
    r = correlate(xd, y, n_permutations=0, n_bootstrap=0).r.values
    xc = x.values - x.values.mean(0)
    want = np.tensordot(xc, y - y.mean(), axes=(0, 0)) / np.sqrt(
        (xc**2).sum(0) * ((y - y.mean()) ** 2).sum()
    )
    np.testing.assert_allclose(r, want, rtol=1e-10)
