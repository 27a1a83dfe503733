"""Split-half reliability, noise ceiling, channel selection."""

import dask
import dask.array as da
import numpy as np
import pytest

import memxr.align
from memxr.reliability import noise_ceiling, select_channels, split_half_reliability
from memxr.schema import example_cube, reliability_values, text_coord, validate
from memxr.testing import lazy, raise_if_dask_computes, repeat_cube, signal_noise


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    return request.param



_lazy, _repeat_cube, _signal_noise = lazy, repeat_cube, signal_noise


# ----------------------------------------------------------------------------- repeats


def test_split_half_matches_theory(backend):
    s2 = [1.0] * 180
    n2 = [2.0] * 60 + [8.0] * 60 + [24.0] * 60
    n_rep = 8
    cube = _repeat_cube(_signal_noise(300, n_rep, s2, n2), n_train=5)
    cube = _lazy(cube, backend == "dask", 50)
    rel = split_half_reliability(cube, n_splits=10, seed=1)
    assert rel.dims == ("channel",)
    assert isinstance(rel.data, da.Array) == (backend == "dask")
    got = rel.values.reshape(3, 60).mean(1)
    theory = 1.0 / (1.0 + np.array([2.0, 8.0, 24.0]) / n_rep)  # s2 / (s2 + n2 / R)
    np.testing.assert_allclose(got, theory, atol=0.03)
    np.testing.assert_array_equal(rel.channel_id.values, cube.channel_id.values)


def test_split_half_numpy_equals_dask():
    reps = _signal_noise(30, 6, [1.0] * 10, [3.0] * 10, seed=4)
    reps[2, 4:, :] = np.nan  # NaN padding
    cube = _repeat_cube(reps)
    eager = split_half_reliability(cube, n_splits=4, seed=2).values
    lazy = _lazy(cube, chunk=4)
    lazy["response_repeats"] = lazy.response_repeats.chunk({"repeat_stimulus": 7, "repeat": 2})
    out = split_half_reliability(lazy, n_splits=4, seed=2)
    assert isinstance(out.data, da.Array)
    np.testing.assert_allclose(out.values, eager, rtol=1e-12)
    assert not np.allclose(eager, split_half_reliability(cube, n_splits=4, seed=3).values)


def test_split_half_lazy():
    cube = _lazy(_repeat_cube(_signal_noise(20, 4, [1.0] * 12, [1.0] * 12)))
    with raise_if_dask_computes():
        rel = split_half_reliability(cube, n_splits=3)
        nc = noise_ceiling(cube, ["A"], n_splits=3)
    assert isinstance(rel.data, da.Array) and isinstance(nc.reliability.data, da.Array)
    assert np.isfinite(rel.values).all()


def _single_from_halves_reference(r, ka, kb):
    """Solve r = 1 / sqrt((1 + lam / ka)(1 + lam / kb)) for rho_1 = 1 / (1 + lam), numerically."""
    import scipy.optimize

    if r <= 0:
        k = np.sqrt(ka * kb)
        return r / (k - (k - 1) * r)
    f = lambda lam: 1 / np.sqrt((1 + lam / ka) * (1 + lam / kb)) - r  # noqa: E731
    return 1 / (1 + scipy.optimize.brentq(f, 0, 1e9))


def _reference_split_half(reps, n_splits, seed):
    """The documented procedure, one channel and one stimulus at a time."""
    n_stim, n_rep, n_chan = reps.shape
    perms = np.argsort(np.random.default_rng(seed).random((n_splits, n_stim, n_rep)), axis=-1)
    out = np.full(n_chan, np.nan)
    for c in range(n_chan):
        values = []
        counts = np.isfinite(reps[:, :, c]).sum(1)
        for p in range(n_splits):
            a, b = np.full(n_stim, np.nan), np.full(n_stim, np.nan)
            ka, kb = np.zeros(n_stim), np.zeros(n_stim)
            for s in range(n_stim):
                x = reps[s, perms[p, s], c]
                x = x[np.isfinite(x)]
                if len(x) >= 2:
                    a[s], b[s] = x[: len(x) // 2].mean(), x[len(x) // 2 :].mean()
                    ka[s], kb[s] = len(x) // 2, len(x) - len(x) // 2
            ok = np.isfinite(a) & np.isfinite(b)
            r = np.corrcoef(a[ok], b[ok])[0, 1]
            ka_eff, kb_eff = 1 / np.mean(1 / ka[ok]), 1 / np.mean(1 / kb[ok])
            values.append(_single_from_halves_reference(r, ka_eff, kb_eff))
        rho1 = np.mean(values)
        big = counts[counts >= 2]
        k = 1 / np.mean(1 / big)  # harmonic mean number of repeats
        out[c] = k * rho1 / (1 + (k - 1) * rho1)
    return out


def test_split_half_matches_reference_with_padding(backend):
    reps = _signal_noise(25, 7, [1.0, 0.5, 2.0], [1.0, 2.0, 1.0], seed=5)
    rng = np.random.default_rng(5)
    for i in range(25):  # 2 to 7 valid repeats per stimulus, padding anywhere
        reps[i, rng.choice(7, size=rng.integers(0, 6), replace=False)] = np.nan
    reps[3, :, 1] = np.nan  # no repeat at all on one channel: left out there
    reps[4, :-1, 2] = np.nan  # a single repeat: left out
    cube = _lazy(_repeat_cube(reps), backend == "dask", 2)
    rel = split_half_reliability(cube, n_splits=3, seed=4).values
    np.testing.assert_allclose(rel, _reference_split_half(reps, 3, 4), rtol=1e-10)


def test_split_half_noise_free_is_one():
    rng = np.random.default_rng(6)
    reps = np.repeat(rng.standard_normal((12, 1, 2)), 6, axis=1)
    reps[::2, 3:] = np.nan
    rel = split_half_reliability(_repeat_cube(reps), n_splits=2).values
    np.testing.assert_allclose(rel, [1.0, 1.0])


def test_split_half_nan_padding_matches_theory():
    n_rep, n2 = 8, 8.0
    full = _signal_noise(150, n_rep, [1.0] * 40, [n2] * 40, seed=6)
    rng = np.random.default_rng(7)
    padded = np.full((150, 12, 40), np.nan)
    for i in range(150):  # the 8 valid repeats at random places among 12
        padded[i, np.sort(rng.choice(12, size=n_rep, replace=False))] = full[i]
    rel = split_half_reliability(_repeat_cube(padded), n_splits=10).values
    assert np.isfinite(rel).all()
    assert rel.mean() == pytest.approx(1.0 / (1.0 + n2 / n_rep), abs=0.03)


def test_split_half_time_and_all_nan_channel(backend):
    rng = np.random.default_rng(8)
    signal = rng.standard_normal((40, 1, 2, 1)) * np.array([0.0, 1.0, 3.0])  # time 0: no signal
    reps = signal + rng.standard_normal((40, 6, 2, 3))
    reps[:, :, 1, :] = np.nan
    cube = _lazy(_repeat_cube(reps), backend == "dask", 1)
    rel = split_half_reliability(cube, n_splits=4)
    assert rel.dims == ("channel", "time")
    values = rel.values
    assert np.isnan(values[1]).all()
    assert abs(values[0, 0]) < 0.4 and values[0, 1] < values[0, 2] and values[0, 2] > 0.9
    np.testing.assert_array_equal(rel.time.values, [0.0, 10.0, 20.0])


def test_split_half_needs_repeats():
    with pytest.raises(ValueError, match="response_repeats"):
        split_half_reliability(example_cube())


def test_noise_ceiling_grows_with_roi_size(backend):
    n_stim, n_rep, n2 = 800, 4, 3.0
    rng = np.random.default_rng(9)
    signal = rng.standard_normal((n_stim, 1, 1))
    reps = signal + rng.standard_normal((n_stim, n_rep, 9)) * np.sqrt(n2)
    cube = _repeat_cube(reps)
    mask = np.zeros((9, 2), bool)
    mask[0, 0] = True  # "one": a single channel
    mask[1:, 1] = True  # "eight": eight channels of the same signal
    cube = cube.drop_vars(["roi_mask", "roi"]).assign_coords(
        roi=text_coord(["one", "eight"]), roi_mask=(("channel", "roi"), mask)
    )
    nc = noise_ceiling(
        _lazy(cube, backend == "dask", 4),
        ["one", "eight"],
        n_splits=10,
        n_trials="repeats",
        memorability_reliability=1.0,
    )
    rel = nc.reliability.values
    assert nc.n_channels.values.tolist() == [1, 8]
    assert rel[1] > rel[0]
    theory = [1.0 / (1.0 + n2 / (k * n_rep)) for k in (1, 8)]  # ROI mean of k channels
    np.testing.assert_allclose(rel, theory, atol=0.08)
    np.testing.assert_allclose(nc.ceiling_r.values, np.sqrt(rel))
    np.testing.assert_allclose(nc.test_repeats.values, [4.0, 4.0])
    # matches the channel-level estimate of the single channel (same seed, same splits)
    single = split_half_reliability(cube, n_splits=10).values[0]
    assert rel[0] == pytest.approx(single, rel=1e-10)


@pytest.mark.parametrize("n_rep", [12, 30, 5])
def test_noise_ceiling_matches_analytic_values(n_rep):
    """Known single-trial reliability rho_1 and memorability reliability rho_m: the ceilings
    on r(neural, memorability) are sqrt(rho_k rho_m) for the trials analysed, and the
    best possible neural measure (the memorability signal itself plus trial noise) reaches
    them."""
    rho1, rho_m, n_img = 0.2, 0.45, 3000
    rng = np.random.default_rng(n_rep)
    signal = rng.standard_normal(n_img)
    trial_sd = np.sqrt((1 - rho1) / rho1)
    reps = signal[:, None, None] + trial_sd * rng.standard_normal((n_img, n_rep, 1))
    cube = _repeat_cube(reps)
    single = noise_ceiling(cube, ["A"], n_splits=10, memorability_reliability=rho_m)
    test = noise_ceiling(
        cube, ["A"], n_splits=10, n_trials="repeats", memorability_reliability=rho_m
    )
    rho_r = n_rep * rho1 / (1 + (n_rep - 1) * rho1)
    assert single.reliability_single.item() == pytest.approx(rho1, abs=0.02)
    assert single.reliability.item() == pytest.approx(rho1, abs=0.02)
    assert test.reliability.item() == pytest.approx(rho_r, abs=0.02)
    assert single.ceiling_r.item() == pytest.approx(np.sqrt(rho1 * rho_m), abs=0.015)
    assert test.ceiling_r.item() == pytest.approx(np.sqrt(rho_r * rho_m), abs=0.015)
    assert single.attrs["scale"] == "single trial" and test.attrs["scale"] == "mean of the repeats"
    # memorability = the same signal + rater noise of reliability rho_m
    memo = signal + np.sqrt((1 - rho_m) / rho_m) * rng.standard_normal(n_img)
    one_trial = reps[:, 0, 0]
    reached_single = np.corrcoef(one_trial, memo)[0, 1]
    reached_test = np.corrcoef(reps[:, :, 0].mean(1), memo)[0, 1]
    assert reached_single == pytest.approx(single.ceiling_r.item(), abs=0.04)
    assert reached_test == pytest.approx(test.ceiling_r.item(), abs=0.04)
    # the former ceiling, sqrt of the R-repeat reliability alone, is far above what a single
    # trial can reach
    assert np.sqrt(test.reliability.item()) > reached_single + 0.3


def test_noise_ceiling_arguments():
    cube = _repeat_cube(_signal_noise(20, 4, [1.0] * 2, [1.0] * 2))
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="memorability_reliability"):
            noise_ceiling(cube, ["A"], memorability_reliability=bad)
    with pytest.raises(ValueError, match="n_trials"):
        noise_ceiling(cube, ["A"], n_trials=0)
    with pytest.raises(ValueError, match="n_trials"):
        noise_ceiling(cube, ["A"], n_trials="single")
    two = noise_ceiling(cube, ["A"], n_trials=2, n_splits=3)
    assert two.attrs["scale"] == "mean of 2 trials" and two.attrs["n_trials"] == 2.0


def test_split_half_uneven_halves_match_theory():
    """Odd repeat counts split into halves of k and k + 1 trials: ``2 r / (1 + r)`` is biased
    there, the exact solution is not."""
    n_stim, n_chan, rho1 = 300, 400, 0.3
    reps = _signal_noise(n_stim, 3, [rho1] * n_chan, [1 - rho1] * n_chan, seed=13)
    cube = _repeat_cube(reps)
    single = split_half_reliability(cube, n_splits=4, n_trials=1).values
    three = split_half_reliability(cube, n_splits=4).values
    rho3 = 3 * rho1 / (1 + 2 * rho1)
    assert single.mean() == pytest.approx(rho1, abs=0.006)
    assert three.mean() == pytest.approx(rho3, abs=0.006)
    # the formula for equal halves on the same splits misses by about 0.02
    a, b = reps[:, :1], reps[:, 1:].mean(1, keepdims=True)
    r = np.array([np.corrcoef(a[:, 0, c], b[:, 0, c])[0, 1] for c in range(n_chan)])
    assert abs((2 * r / (1 + r)).mean() - rho3) > 0.012


def test_split_half_scale_attrs_and_single_trial(backend):
    reps = _signal_noise(200, 6, [1.0] * 4, [4.0] * 4, seed=3)
    cube = _lazy(_repeat_cube(reps), backend == "dask", 2)
    with raise_if_dask_computes():
        one = split_half_reliability(cube, n_splits=5, n_trials=1)
    assert one.attrs["scale"] == "single trial"
    assert one.values.mean() == pytest.approx(0.2, abs=0.06)
    mean = split_half_reliability(cube, n_splits=5)
    expected = 6 * one.values / (1 + 5 * one.values)
    np.testing.assert_allclose(mean.values, expected, rtol=1e-10)


# ----------------------------------------------------------------------------- selection


def test_select_channels_by_coords(backend):
    cube = _lazy(example_cube(n_stimulus=5, n_channel=5), backend == "dask", 2)
    cube = cube.assign_coords(
        reliability=("channel", [0.1, 0.5, np.nan, 0.4, 0.9]),
        nc_testset=("channel", [30.0, 5.0, 25.0, 19.9, 20.0]),
        split=("stimulus", text_coord(["test"] * 2 + ["train"] * 3)),
        n_repeats=("stimulus", np.array([12, 12, 1, 1, 1])),
    )
    with raise_if_dask_computes():
        auto = select_channels(cube, 0.4)
        nc = select_channels(cube, 20, by="nc_testset")
    assert auto.channel_id.values.tolist() == [2, 4, 5]
    assert auto.attrs["channel_selection_by"] == "reliability"
    assert auto.attrs["channel_selection_scale"] == "single_trial"
    assert (auto.attrs["n_channels_kept"], auto.attrs["n_channels_total"]) == (3, 5)
    assert nc.channel_id.values.tolist() == [1, 3, 5]
    assert nc.attrs["channel_selection_threshold"] == 20.0
    assert nc.attrs["channel_selection_scale"] == "native"
    assert isinstance(nc.response.data, da.Array) == (backend == "dask")
    np.testing.assert_array_equal(nc.response.values, cube.response.values[:, [0, 2, 4]])
    assert nc.roi_mask.shape == (3, 1)
    assert "channel_selection_by" not in cube.attrs
    # auto on fMRI: nc_testset (percent, 12-trial mean) stepped to one trial before the
    # comparison; 30 % of a 12-trial mean is a single-trial reliability of 0.0345
    only_nc = cube.drop_vars("reliability")
    picked = select_channels(only_nc, 0.0204)
    assert picked.attrs["channel_selection_by"] == "nc_testset"
    assert picked.channel_id.values.tolist() == [1, 3, 5]
    assert select_channels(only_nc, 0.03).channel_id.values.tolist() == [1]
    # the former behaviour: 0.3 compared with percentages kept every voxel
    assert select_channels(only_nc, 0.3).channel_id.values.tolist() == []
    with pytest.raises(ValueError, match="not a single-trial reliability"):
        select_channels(only_nc, 20)
    with pytest.raises(ValueError, match="single-trial scale only"):
        select_channels(only_nc, 20, scale="native")
    single = select_channels(only_nc, 0.0204, by="nc_testset", scale="single_trial")
    assert single.channel_id.values.tolist() == [1, 3, 5]
    with pytest.raises(ValueError, match="no reliability channel coordinate"):
        select_channels(example_cube(), 0.3)
    with pytest.raises(ValueError, match="'splithalf_corrected'"):
        select_channels(cube, 0.3, by="splithalf_corrected")
    with pytest.raises(ValueError, match="no known scale"):
        select_channels(cube.assign_coords(snr=("channel", np.ones(5))), 0.3, by="snr",
                        scale="single_trial")  # fmt: skip
    assert select_channels(cube.assign_coords(snr=("channel", np.arange(5.0))), 3, by="snr").sizes[
        "channel"
    ] == 2


def test_every_measure_on_one_scale():
    """The THINGS-fMRI noise ceilings of one and of 12 trials, and TVSD's single-trial
    correlation, land on the same single-trial values."""
    ncsnr2 = np.array([0.05, 0.2, 1.0])  # signal / noise variance
    rho1 = ncsnr2 / (ncsnr2 + 1)
    cube = example_cube(n_stimulus=3, n_channel=3).assign_coords(
        nc_singletrial=("channel", 100 * rho1),
        nc_testset=("channel", 100 * ncsnr2 / (ncsnr2 + 1 / 12)),
        splithalf_uncorrected=("channel", ncsnr2 / (ncsnr2 + 1 / 6)),
        splithalf_corrected=("channel", ncsnr2 / (ncsnr2 + 1 / 12)),
        reliability=("channel", rho1),
        split=("stimulus", text_coord(["test", "test", "train"])),
        n_repeats=("stimulus", np.array([12, 12, 1])),
    )
    for name in ("nc_singletrial", "nc_testset", "splithalf_uncorrected", "splithalf_corrected",
                 "reliability"):  # fmt: skip
        np.testing.assert_allclose(reliability_values(cube, name), rho1, rtol=1e-12, err_msg=name)
    kept = {
        by: select_channels(cube, 0.1, by=by, scale="single_trial").channel_id.values.tolist()
        for by in ("nc_singletrial", "nc_testset", "reliability")
    }
    assert kept == dict.fromkeys(kept, [2, 3])
    with pytest.raises(ValueError, match="test repeats"):
        reliability_values(cube.drop_vars(["split", "n_repeats"]), "nc_testset")


def test_select_channels_split_half(backend):
    s2 = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    reps = _signal_noise(60, 6, s2, [1.0] * 6, seed=11)
    cube = _lazy(_repeat_cube(reps, n_train=3), backend == "dask", 2)
    with dask.config.set(scheduler="sync"):
        out = select_channels(cube, 0.3, n_splits=5)
    assert out.attrs["channel_selection_by"] == "split_half"
    assert out.attrs["channel_selection_scale"] == "single_trial"
    assert out.channel_id.values.tolist() == [1, 3, 5]
    assert (out.split_half.values > 0.8).all()  # the coordinate: mean of the 6 repeats
    native = select_channels(cube, 0.8, by="split_half", n_splits=5)
    assert native.channel_id.values.tolist() == [1, 3, 5]
    assert native.attrs["channel_selection_scale"] == "native"
    assert isinstance(out.response.data, da.Array) == (backend == "dask")
    validate(out)


def test_select_channels_split_half_window():
    rng = np.random.default_rng(12)
    reps = rng.standard_normal((50, 4, 3, 4))  # time 0, 10, 20, 30 ms
    reps[:, :, 1, 2:] += rng.standard_normal((50, 1, 2)) * 3.0  # channel 2: signal from 20 ms
    cube = _repeat_cube(reps)
    late = select_channels(cube, 0.5, by="split_half", window=(20.0, 40.0), n_splits=4)
    assert late.channel_id.values.tolist() == [2]
    assert late.split_half.values[0] > 0.9
    early = select_channels(cube, 0.5, by="split_half", window=(0.0, 20.0), n_splits=4)
    assert early.channel_id.values.tolist() == []
    assert early.attrs["n_channels_total"] == 3


def test_split_half_default_window_leaves_out_the_prestimulus_bins():
    """A channel reliable only before stimulus onset (an artefact) is not selected by default,
    and an area's channels are judged over the area's response window."""
    rng = np.random.default_rng(14)
    time = np.arange(-100.0, 200.0, 10.0)
    reps = rng.standard_normal((60, 6, 3, time.size))
    pre, v1 = time < 0, (time >= 25) & (time < 125)
    reps[:, :, 0][..., pre] += 3.0 * rng.standard_normal((60, 1, int(pre.sum())))
    reps[:, :, 1][..., v1] += 3.0 * rng.standard_normal((60, 1, int(v1.sum())))
    cube = _repeat_cube(reps).assign_coords(time=time)
    mask = np.array([[True, False], [True, False], [False, True]])
    cube = cube.drop_vars(["roi_mask", "roi"]).assign_coords(
        roi=text_coord(["V1", "other"]), roi_mask=(("channel", "roi"), mask)
    )
    default = select_channels(cube, 0.2, n_splits=4)  # auto: split_half, single trial
    assert default.attrs["channel_selection_by"] == "split_half"
    assert default.channel_id.values.tolist() == [2]
    every_bin = select_channels(cube, 0.2, window=None, n_splits=4)
    assert 1 in every_bin.channel_id.values.tolist()


def test_importable_from_align():
    assert memxr.align.split_half_reliability is split_half_reliability
    assert memxr.align.noise_ceiling is noise_ceiling
    assert memxr.align.select_channels is select_channels
    assert {"noise_ceiling", "select_channels", "split_half_reliability"} <= set(
        memxr.align.__all__
    )
