"""Onset and peak latencies of the memorability effect (latency, onset_peak)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from memxr.stats import latency, onset_peak
from memxr.testing import LATENCY_PROFILE, LATENCY_TIMES, simulate_concepts


def test_onset_peak_criteria():
    t = np.arange(8) * 10.0
    r = np.array([0.0, 0.05, 0.1, 0.3, 0.5, 0.4, 0.1, 0.0])
    onset, peak = onset_peak(r, t)  # half the peak (0.25) between 20 ms (0.1) and 30 ms (0.3)
    assert float(peak) == 40.0 and float(onset) == pytest.approx(27.5)
    assert float(onset_peak(r, t, fraction=0.1)[0]) == pytest.approx(10.0)
    # negative effects: the sign turns them over
    assert float(onset_peak(-r, t, -1.0)[0]) == pytest.approx(27.5)
    # threshold: the first bin of the run of z >= threshold holding the peak
    sd = np.full(8, 0.1)
    on_t, _ = onset_peak(r, t, criterion="threshold", threshold=2.5, sd=sd)
    assert float(on_t) == 30.0
    on_none, _ = onset_peak(r, t, criterion="threshold", threshold=6.0, sd=sd)
    assert np.isnan(on_none)
    # a window excludes a later, larger peak
    r2 = np.r_[r, 0.0, 0.9]
    t2 = np.arange(10) * 10.0
    assert float(onset_peak(r2, t2)[1]) == 90.0
    assert float(onset_peak(r2, t2, window=t2 <= 70)[1]) == 40.0
    # already above the fraction at the first bin: the axis' start
    assert float(onset_peak(np.array([0.4, 0.5, 0.2]), t[:3])[0]) == 0.0
    # batched over leading axes
    both = onset_peak(np.stack([r, -r]), t, np.array([1.0, -1.0]))
    np.testing.assert_allclose(both[0], [27.5, 27.5])
    with pytest.raises(ValueError, match="criterion"):
        onset_peak(r, t, criterion="max")


def _areas(seed, n_concepts=200):
    cube = simulate_concepts(n_concepts, (2, 8), rho=[0.35, -0.35, 0.0], n_channels=3,
                             times=LATENCY_TIMES, profile=LATENCY_PROFILE, smoothness=4,
                             seed=seed)  # fmt: skip
    x = cube.response.rename(channel="area").assign_coords(area=["IT", "V4", "V1"])
    return x, cube


def test_planted_onset_and_peak_are_covered():
    x, cube = _areas(1)
    res = latency(x, cube.memorability, groups="concept", n_permutations=99, n_bootstrap=299)
    true_onset, true_peak = (float(v) for v in onset_peak(0.35 * LATENCY_PROFILE, LATENCY_TIMES))
    for area in ("IT", "V4"):
        row = res.sel(area=area)
        assert float(row.p_cluster) <= 0.05, area
        assert float(row.onset_low) <= true_onset <= float(row.onset_high), area
        assert float(row.peak_low) <= true_peak <= float(row.peak_high), area
        assert float(row.onset_low) <= float(row.onset) <= float(row.onset_high)
    assert int(res.sign.sel(area="V4")) == -1 and float(res.peak_r.sel(area="V4")) < -0.2
    assert not float(res.p_cluster.sel(area="V1")) <= 0.05  # no effect there (NaN or large)
    assert res.r.dims == ("area", "time") and res.attrs["criterion"] == "fraction"
    assert (res.n_defined == 299).all()


def test_threshold_criterion_window_and_dask():
    x, cube = _areas(2, n_concepts=120)
    kw = {"groups": "concept", "n_permutations": 49, "n_bootstrap": 99, "seed": 3}
    eager = latency(x, cube.memorability, criterion="threshold", **kw)
    chunked = xr.DataArray(x.variable.chunk({"stimulus": 100}), coords=x.coords)
    lazy = latency(chunked, cube.memorability, criterion="threshold", **kw)
    xr.testing.assert_allclose(eager, lazy)
    it = eager.sel(area="IT")
    assert 50 <= float(it.onset) <= 150 and int(it.n_defined) <= 99
    windowed = latency(x, cube.memorability, window=(0.0, 120.0), **kw)
    assert float(windowed.peak.sel(area="IT")) <= 120.0
    with pytest.raises(ValueError, match="no time bin"):
        latency(x, cube.memorability, window=(500.0, 600.0), **kw)
    with pytest.raises(ValueError, match="no dim"):
        latency(x.isel(time=0), cube.memorability)
