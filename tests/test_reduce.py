"""ROI reduction: merges, unions, means that match a plain numpy computation, laziness."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from memxr.reduce import (
    UnknownROIError,
    day_constants,
    default_rois,
    normalize_days,
    roi_masks,
    roi_reduce,
)
from memxr.schema import AREA_WINDOWS, example_cube, text_coord
from memxr.testing import raise_if_dask_computes

COLUMNS = ["V1", "lFFA", "rFFA", "IT", "glasser-p9-\n46v"]


def _cube(n_stim=5, n_chan=8, time=False, seed=1, chunked=False):
    rng = np.random.default_rng(seed)
    ds = example_cube(n_stimulus=n_stim, n_channel=n_chan, seed=seed)
    mask = rng.random((n_chan, len(COLUMNS))) < 0.4
    mask[0, :] = True  # every ROI has at least one channel
    ds = ds.drop_vars(["roi_mask", "roi"]).assign_coords(
        roi=text_coord(COLUMNS), roi_mask=(("channel", "roi"), mask)
    )
    if time:
        ds["response"] = (("stimulus", "channel", "time"), rng.standard_normal((n_stim, n_chan, 3)))
        ds = ds.assign_coords(time=[0.0, 10.0, 20.0])
    if chunked:  # data lazy, labels in memory (as open_cube gives them)
        ds["response"] = ds.response.chunk({"channel": 3})
    return ds, mask


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    return request.param


def test_merge_and_columns(backend):
    ds, mask = _cube(chunked=backend == "dask")
    out = roi_reduce(ds, ["FFA", "lFFA", "glasser-p9-\n46v"])
    x = np.asarray(ds.response.values)
    ffa = mask[:, 1] | mask[:, 2]
    np.testing.assert_allclose(out.sel(roi="FFA").values, x[:, ffa].mean(1))
    np.testing.assert_allclose(out.sel(roi="lFFA").values, x[:, mask[:, 1]].mean(1))
    np.testing.assert_allclose(out.isel(roi=2).values, x[:, mask[:, 4]].mean(1))
    assert out.n_channels.values.tolist() == [ffa.sum(), mask[:, 1].sum(), mask[:, 4].sum()]
    assert out.stimulus_id.values.tolist() == ds.stimulus_id.values.tolist()


def test_l2_and_time(backend):
    ds, mask = _cube(time=True, chunked=backend == "dask")
    out = roi_reduce(ds, ["IT"], how="l2")
    assert out.dims == ("stimulus", "roi", "time")
    x = np.asarray(ds.response.values)[:, mask[:, 3], :]
    np.testing.assert_allclose(out.isel(roi=0).values, np.sqrt((x**2).mean(1)))


def test_nan_channels_ignored():
    ds, mask = _cube()
    ds["response"][:, 0] = np.nan
    out = roi_reduce(ds, ["V1"])
    x = np.asarray(ds.response.values)
    np.testing.assert_allclose(out.values[:, 0], np.nanmean(x[:, mask[:, 0]], axis=1))


def test_unknown_roi():
    ds, _ = _cube()
    with pytest.raises(UnknownROIError, match="unknown ROI 'PPA'"):
        roi_reduce(ds, ["PPA"])


def test_defaults():
    ds, _ = _cube()
    assert default_rois(ds) == ["FFA", "V1", "IT"]
    assert roi_masks(ds).roi.values.tolist() == ["FFA", "V1", "IT"]


def test_lazy():
    ds, _ = _cube(n_stim=20, n_chan=30, chunked=True)

    with raise_if_dask_computes():
        out = roi_reduce(ds, ["FFA", "IT"])
    assert isinstance(out.data, da.Array)
    assert out.compute().shape == (20, 2)


def test_dataarray_refused():
    ds, _ = _cube()
    with pytest.raises(TypeError, match="roi_mask"):
        roi_reduce(ds.response, "V1")


def test_union_definitions_and_reliability(backend):
    ds, mask = _cube(chunked=backend == "dask")
    rel = np.linspace(0, 1, ds.sizes["channel"])
    ds = ds.assign_coords(reliability=("channel", rel))
    out = roi_reduce(ds, ["ventral"], definitions={"ventral": ["FFA", "IT"]}, min_reliability=0.5)
    sel = (mask[:, 1] | mask[:, 2] | mask[:, 3]) & (rel >= 0.5)
    x = np.asarray(ds.response.values)
    np.testing.assert_allclose(out.values[:, 0], x[:, sel].mean(1))
    assert int(out.n_channels[0]) == sel.sum()
    with pytest.raises(UnknownROIError, match="in terms of itself"):
        roi_reduce(ds, ["a"], definitions={"a": ["a"]})
    with pytest.raises(UnknownROIError, match="no reliability coordinate"):
        roi_reduce(ds, ["V1"], min_reliability=0.1, reliability="nc_testset")


def test_reliability_filter_on_the_single_trial_scale(backend):
    """Without a named coordinate the threshold is a single-trial reliability, whatever the
    measure; a named coordinate takes the threshold in its own units (nc_testset: percent)."""
    ds, mask = _cube(n_chan=40, chunked=backend == "dask")
    n = ds.sizes["channel"]
    nc = np.linspace(0.0, 90.0, n)  # percent of explainable variance of the 12-trial mean
    split = np.array(["test"] * 3 + ["train"] * (ds.sizes["stimulus"] - 3), dtype=object)
    n_rep = np.where(split == "test", 12, 1)
    ds = ds.assign_coords(
        nc_testset=("channel", nc), split=("stimulus", split), n_repeats=("stimulus", n_rep)
    )
    single = (nc / 100) / (12 - 11 * nc / 100)
    auto = roi_reduce(ds, ["V1"], min_reliability=0.2)
    assert int(auto.n_channels[0]) == (mask[:, 0] & (single >= 0.2)).sum()
    named = roi_reduce(ds, ["V1"], min_reliability=20.0, reliability="nc_testset")
    assert int(named.n_channels[0]) == (mask[:, 0] & (nc >= 20.0)).sum()
    assert int(named.n_channels[0]) > int(auto.n_channels[0])


def test_zscored_channels(backend):
    ds, mask = _cube(n_stim=12, chunked=backend == "dask")
    out = roi_reduce(ds, ["V1"], zscore_channels=True)
    x = np.asarray(ds.response.values)
    z = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(out.values[:, 0], z[:, mask[:, 0]].mean(1))
    assert out.attrs["units"] == "z"


def test_window_reduce_per_area(backend):
    from memxr.reduce import window_reduce

    rng = np.random.default_rng(3)
    t = np.arange(-100.0, 200.0, 10.0)
    x = rng.standard_normal((4, 3, t.size))
    da_ = xr.DataArray(
        x, dims=("stimulus", "roi", "time"), coords={"roi": ["V1", "V4", "IT"], "time": t}
    )
    if backend == "dask":
        da_ = da_.chunk({"time": 7})
    out = window_reduce(da_)
    for i, (a, b) in enumerate([(25, 125), (50, 150), (75, 175)]):
        inside = (t >= a) & (t < b)
        np.testing.assert_allclose(out.values[:, i], x[:, i, inside].mean(-1))
    assert out.window_start.values.tolist() == [25.0, 50.0, 75.0]
    with pytest.raises(UnknownROIError, match="no time window"):
        window_reduce(da_.assign_coords(roi=["V1", "V4", "MT"]))


# ----------------------------------------------------------------------------- TVSD per day


@pytest.fixture(scope="module")
def tvsd(tmp_path_factory):
    """Synthetic monkey N: the trials cube (read lazily, in small chunks) and normMUA."""
    from memxr.readers.tvsd import read_normmua
    from memxr.readers.tvsd_trials import read_trials
    from memxr.synth import synthesize

    out = tmp_path_factory.mktemp("tvsd")
    synthesize(out, scale=0.001, seed=4, subjects=(), monkeys=("N",), n_days=3)
    mdir = out / "tvsd" / "monkeyN"
    trials = read_trials(mdir, "N", checksum=False, chunk_bytes=1 << 20, dtype="float32")
    return trials, read_normmua(mdir, "N", checksum=False), mdir


def test_normalize_days_reproduces_normmua(tvsd):
    """Normalised trials, averaged over each area's window, are the dataset's normMUA (here
    the synthetic file, written independently as norm_MUA.m does), train and test."""
    trials, norm, _ = tvsd
    with raise_if_dask_computes():
        out = normalize_days(trials)
    assert out.response.dtype == np.float32 and out.attrs["units"] == "z"
    assert out.response.chunks == trials.response.chunks
    assert out.response_repeats.chunks == trials.response_repeats.chunks
    r, reps = out.response.values, out.response_repeats.values
    t = out.time.values
    for area in ("V1", "V4", "IT"):
        start, stop = AREA_WINDOWS[area]
        ch = out.area.values == area
        window = (t >= start) & (t < stop)
        np.testing.assert_allclose(
            r[:, ch][..., window].mean(-1), norm.response.values[:, ch], atol=2e-5
        )
        np.testing.assert_allclose(
            np.nanmean(reps[:, :, ch][..., window], -1),
            norm.response_repeats.values[:, :, ch],
            atol=2e-5,
        )


def test_day_constants_by_hand(tvsd):
    """Mean and sd (ddof 1) of each day's test trials in the window bins, from the raw file."""
    import h5py
    import scipy.io

    trials, _, mdir = tvsd
    c = day_constants(trials).compute()
    mapping = scipy.io.loadmat(mdir / "_logs" / "1024chns_mapping_20220105.mat")["mapping"]
    with h5py.File(mdir / "THINGS_MUA_trials.mat", "r") as f:
        allmat, tb = f["ALLMAT"][()].T, f["tb"][:, 0]
        raw = f["ALLMUA"][()][:, mapping.ravel().astype(int) - 1]  # small test file
    start, stop = AREA_WINDOWS["IT"]
    it = np.flatnonzero(trials.area.values == "IT")[:5]
    for day in np.unique(allmat[:, 6]).astype(int):
        pool = raw[:, :, (allmat[:, 2] > 0) & (allmat[:, 6] == day)]
        pool = pool[(tb >= start) & (tb < stop)][:, it]  # (bins, channels, trials)
        values = np.moveaxis(pool, 1, 0).reshape(len(it), -1)
        got = c.sel(recording_day=day).isel(channel=it)
        np.testing.assert_allclose(got["mean"], values.mean(1), rtol=1e-6)
        np.testing.assert_allclose(got["sd"], values.std(1, ddof=1), rtol=1e-5)


def test_normalize_days_needs_days_and_windows(tvsd):
    trials, _, _ = tvsd
    with pytest.raises(ValueError, match="day"):
        normalize_days(trials.drop_vars("day"))
    with pytest.raises(ValueError, match="repeat_day"):
        normalize_days(trials.drop_vars("repeat_day"))
    with pytest.raises(UnknownROIError, match="holds no time bin"):
        normalize_days(trials, {"IT": (500, 600)})


def _previous_block_sums(x, w, square):
    """The previous ROI kernel: one product of the whole block (cast to float64 at once),
    after a pass looking for NaN."""
    xt = np.moveaxis(x, 1, -1)
    if square:
        xt = xt * xt
    nan = np.isnan(xt)
    if nan.any():
        total = np.where(nan, 0, xt) @ w
        count = (~nan).astype(w.dtype) @ w
    else:
        total = xt @ w
        count = np.broadcast_to(w.sum(axis=0), total.shape)
    return np.expand_dims(np.stack([total, count]), 2)


@pytest.mark.parametrize("square", [False, True])
@pytest.mark.parametrize("shape", [(1300, 300), (1100, 64, 3)], ids=["2d", "3d"])
@pytest.mark.parametrize("holes", ["none", "nan", "inf"])
def test_block_sums_identical_to_previous_kernel(square, shape, holes):
    """Tiles of stimuli cast one at a time give the same bits as the whole-block product."""
    from memxr.reduce import TILE_ROWS, block_sums

    assert shape[0] > 2 * TILE_ROWS  # several tiles, a short last one
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(np.float32)
    if holes == "nan":
        x[7, 5] = np.nan
    elif holes == "inf":
        x[700, 1], x[700, 2] = np.inf, -np.inf
    w = (rng.random((shape[1], 5)) < 0.3).astype(np.float64)
    w[[1, 2, 5], 0] = 1.0  # the holes are in ROI 0
    got, want = block_sums(x, w, square), _previous_block_sums(x, w, square)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert (got[1] < w.sum(0)).any() == (holes == "nan")  # NaN channels left out
    assert np.isnan(got).any() == (holes == "inf")  # inf - inf stays NaN


def test_large_weight_tables_are_scattered_not_embedded():
    """A whole-brain cube's voxel x ROI weights (~10 MB) go to the workers once: the graph
    of a reduction on a distributed client stays small, with the same numbers."""
    import warnings

    import dask
    import distributed

    n_stim, n_chan = 12, 300_000
    cube = example_cube(n_stimulus=n_stim, n_channel=n_chan)
    data = da.random.default_rng(0).random((n_stim, n_chan), chunks=(n_stim, 100_000))
    cube["response"] = (("stimulus", "channel"), data)  # made by tasks: nothing embedded
    expected = roi_reduce(cube, ["A"]).compute(scheduler="sync")
    limit = {"distributed.admin.large-graph-warning-threshold": "500kB"}
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                 dashboard_address=":0") as cluster,
        distributed.Client(cluster),
        dask.config.set(limit),
        warnings.catch_warnings(record=True) as seen,
    ):  # fmt: skip
        warnings.simplefilter("always")
        got = roi_reduce(cube, ["A"]).compute()
    assert not [w for w in seen if "large graph" in str(w.message)]
    np.testing.assert_allclose(got.values, expected.values)


def test_normalize_days_with_computed_constants_stays_local(tvsd):
    """Constants computed beforehand give the same cube, and a block of the normalised
    cube then depends on the repeats of its own time bins only (lazy constants make every
    block wait for every repeat chunk: on a real monkey all of them sit in memory)."""
    from dask.core import get_dependencies

    trials, _, _ = tvsd
    const = day_constants(trials).compute()
    eager = normalize_days(trials, constants=const)
    lazy = normalize_days(trials)
    np.testing.assert_array_equal(eager.response.values, lazy.response.values)
    np.testing.assert_array_equal(eager.response_repeats.values, lazy.response_repeats.values)

    reps_name = trials.response_repeats.data.name

    def repeat_chunks_behind(arr):
        graph = dict(arr.__dask_graph__())
        seen, todo, hit = set(), [arr.__dask_keys__()[0][0][0]], set()
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            seen.add(key)
            if isinstance(key, tuple) and key[0] == reps_name:
                hit.add(key[1:])
            todo.extend(get_dependencies(graph, key))
        return {k[-1] for k in hit}  # time-chunk indices of the repeats read

    n_time_chunks = len(trials.response_repeats.chunks[-1])
    assert n_time_chunks > 1
    assert repeat_chunks_behind(eager.response.data) == {0}
    assert len(repeat_chunks_behind(lazy.response.data)) == n_time_chunks
