"""ds.memxr: labeled slicing and forwarding to the analyses, lazily."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import memxr
from memxr.schema import example_cube, text_coord
from memxr.stats import correlate
from memxr.testing import raise_if_dask_computes


def _cube(n=40, lazy=True, seed=0):
    rng = np.random.default_rng(seed)
    ds = example_cube(n_stimulus=n, n_channel=6, seed=seed).drop_vars(["roi_mask", "roi"])
    concepts = [f"c{i // 4}" for i in range(n)]
    mem = rng.uniform(0.4, 1.0, n)
    mem[3] = np.nan
    ds = ds.assign_coords(
        concept=("stimulus", text_coord(concepts)),
        category=("stimulus", text_coord(["animal" if i % 2 else "tool" for i in range(n)])),
        split=("stimulus", text_coord(["test" if i < 4 else "train" for i in range(n)])),
        memorability=("stimulus", mem),
        roi=text_coord(["lFFA", "rFFA", "V1"]),
        roi_mask=(("channel", "roi"), np.eye(6, 3, dtype=bool) | np.eye(6, 3, k=-3, dtype=bool)),
    )
    resp = rng.standard_normal((n, 6)) + np.nan_to_num(mem)[:, None] * [3, 3, 0, 3, 3, 0]
    ds["response"] = (("stimulus", "channel"), resp)
    ds["response_repeats"] = (
        ("repeat_stimulus", "repeat", "channel"),
        rng.standard_normal((4, 3, 6)),
    )
    ds = ds.assign_coords(repeat_stimulus_id=("repeat_stimulus", ds.stimulus_id.values[:4]))
    if lazy:
        ds["response"] = ds.response.chunk({"channel": 2})
    return memxr.validate(ds)


def test_slicing():
    ds = _cube(lazy=False)
    assert ds.memxr.concepts("c0", "c2").sizes["stimulus"] == 8
    assert set(ds.memxr.category("animal").category.values.tolist()) == {"animal"}
    test = ds.memxr.split("test")
    assert test.sizes["stimulus"] == 4 and test.sizes["repeat_stimulus"] == 4
    train = ds.memxr.split("train")
    assert train.sizes["repeat_stimulus"] == 0
    memxr.validate(train)
    top, bottom = ds.memxr.top(0.25), ds.memxr.bottom(0.25)
    assert top.sizes["stimulus"] == bottom.sizes["stimulus"] == round(0.25 * 39)
    assert np.nanmin(top.memorability) > np.nanmax(bottom.memorability)
    assert ds.memxr.roi("FFA").sizes["channel"] == 4
    assert ds.memxr.roi("V1").channel_id.values.tolist() == [3, 6]
    with pytest.raises(ValueError, match="split must be"):
        ds.memxr.split("val")


def test_window():
    ds = _cube(lazy=False)
    ds["response"] = ds.response.expand_dims(time=[0.0, 50.0, 100.0], axis=-1)
    assert ds.memxr.window(25, 100).time.values.tolist() == [50.0]


def test_forwarding_is_lazy_and_equal():
    ds = _cube()

    with raise_if_dask_computes():
        x = ds.memxr.roi_reduce(["FFA", "V1"])
        res = ds.memxr.correlate(["FFA", "V1"], n_permutations=99, n_bootstrap=99)
    assert isinstance(x.data, da.Array) and isinstance(res.r.data, da.Array)
    lab = ds.memxr.labelled()
    direct = correlate(
        memxr.roi_reduce(lab, ["FFA", "V1"]), lab.memorability, method="spearman",
        groups="concept", n_permutations=99, n_bootstrap=99,
    )  # fmt: skip
    xr.testing.assert_allclose(res.r.compute(), direct.r.compute())
    r = res.r.compute()
    assert float(r.sel(roi="FFA")) > 0.5 > abs(float(r.sel(roi="V1")))


def test_reliability_forwarding():
    ds = _cube(lazy=False)
    rel = ds.memxr.split_half_reliability(n_splits=4)
    assert rel.dims == ("channel",)
    nc = ds.memxr.noise_ceiling(["FFA"], n_splits=4)
    assert "ceiling_r" in nc
