"""Labels and alignment of two cubes."""

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from memxr.align import align_pair, attach_labels, dropna_memorability, labelled, shared_stimuli
from memxr.errors import InputError
from memxr.schema import example_cube, text_coord, validate
from memxr.testing import lazy, raise_if_dask_computes, repeat_cube, signal_noise


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    return request.param



_lazy, _repeat_cube, _signal_noise = lazy, repeat_cube, signal_noise


# ----------------------------------------------------------------------------- labels


def _table():
    return pd.DataFrame(
        {
            "concept": ["alpha", "alpha", "beta", "gamma"],
            "category": ["food", np.nan, "animal", "tool"],
            "memorability": [0.8, 0.6, np.nan, 0.9],
        },
        index=pd.Index(["thing_00s.jpg", "thing_02s.jpg", "thing_03s.jpg", "other.jpg"]),
    )


def test_attach_labels_counts_and_nan_kept(backend):
    cube = _lazy(example_cube(n_stimulus=5, n_channel=4), backend == "dask")
    out = attach_labels(cube, _table())
    assert (out.attrs["n_matched"], out.attrs["n_missing_score"], out.attrs["n_unknown"]) == (
        2,
        1,
        2,
    )
    assert out.sizes["stimulus"] == 5
    np.testing.assert_array_equal(out.memorability.values, [0.8, np.nan, 0.6, np.nan, np.nan])
    assert out.concept.values.tolist() == ["alpha", "thing", "alpha", "beta", "thing"]
    assert out.category.values.tolist() == ["food", "", "", "animal", ""]
    assert out.concept.dtype == object and out.memorability.dtype == np.float64
    np.testing.assert_array_equal(out.response.values, cube.response.values)
    validate(out)
    # labelled keeps the two scored stimuli, in order; the store's cube keeps all five
    lab = labelled(out)
    assert lab.stimulus_id.values.tolist() == ["thing_00s.jpg", "thing_02s.jpg"]
    assert lab.attrs["n_unlabelled_dropped"] == 3
    assert dropna_memorability is labelled


def test_attach_labels_id_column_and_errors():
    cube = example_cube(n_stimulus=3)
    table = _table().rename_axis("stimulus_id").reset_index()
    out = attach_labels(cube, table)
    assert out.memorability.values[0] == 0.8
    with pytest.raises(InputError, match="memorability"):
        attach_labels(cube, table.drop(columns="memorability"))
    dup = pd.concat([_table(), _table().iloc[:1]])
    dup.attrs["source"] = "/some/where/scores.csv"
    with pytest.raises(InputError, match=r"^scores.csv: stimulus_id: duplicated .*thing_00s"):
        attach_labels(cube, dup)


def test_attach_labels_lazy():
    cube = _lazy(example_cube(n_stimulus=20, n_channel=9))
    with raise_if_dask_computes():
        out = attach_labels(cube, _table())
    assert isinstance(out.response.data, da.Array)


def test_labelled_restricts_repeats():
    cube = _repeat_cube(_signal_noise(4, 3, [1.0, 1.0], [1.0, 1.0]), n_train=2)
    cube["memorability"][:] = [0.5, np.nan, 0.7, np.nan, 0.6, np.nan]
    out = validate(labelled(cube))
    assert out.stimulus_id.values.tolist() == ["thing_00s.jpg", "thing_02s.jpg", "thing_04s.jpg"]
    assert out.repeat_stimulus_id.values.tolist() == ["thing_00s.jpg", "thing_02s.jpg"]
    np.testing.assert_array_equal(out.response_repeats.values, cube.response_repeats.values[[0, 2]])


# ----------------------------------------------------------------------------- pairs


def test_shared_stimuli_order():
    a = example_cube(n_stimulus=6).isel(stimulus=[5, 2, 0, 3])
    b = example_cube(n_stimulus=4).isel(stimulus=[0, 1, 2, 3][::-1])
    assert shared_stimuli(a, b) == ["thing_02s.jpg", "thing_00s.jpg", "thing_03s.jpg"]
    assert shared_stimuli(b, a) == ["thing_03s.jpg", "thing_02s.jpg", "thing_00s.jpg"]


def test_align_pair_by_stimulus(backend):
    a = _repeat_cube(_signal_noise(4, 3, [1.0] * 3, [1.0] * 3), n_train=4)
    b = example_cube(n_stimulus=8, n_channel=5, seed=3).isel(stimulus=[7, 6, 1, 2, 0])
    a = _lazy(a.isel(stimulus=[6, 0, 3, 2, 1, 7]), backend == "dask")
    b = _lazy(b, backend == "dask")
    with raise_if_dask_computes():
        a2, b2 = align_pair(a, b)
    ids = ["thing_06s.jpg", "thing_00s.jpg", "thing_02s.jpg", "thing_01s.jpg", "thing_07s.jpg"]
    assert a2.stimulus_id.values.tolist() == ids == b2.stimulus_id.values.tolist()
    assert a2.attrs["n_shared"] == 5 and a2.attrs["aligned_by"] == "stimulus_id"
    assert a2.repeat_stimulus_id.values.tolist() == [
        "thing_00s.jpg",
        "thing_01s.jpg",
        "thing_02s.jpg",
    ]
    ra = pd.DataFrame(a.response.values, index=a.stimulus_id.values)
    rb = pd.DataFrame(b.response.values, index=b.stimulus_id.values)
    np.testing.assert_array_equal(a2.response.values, ra.loc[ids].values)
    np.testing.assert_array_equal(b2.response.values, rb.loc[ids].values)


def _concept_cube(concepts, n_channel, seed):
    cube = example_cube(n_stimulus=len(concepts), n_channel=n_channel, seed=seed)
    rng = np.random.default_rng(seed + 10)
    score = rng.uniform(0.4, 1.0, len(concepts))
    score[1] = np.nan
    return cube.assign_coords(
        concept=("stimulus", text_coord(concepts)),
        category=("stimulus", text_coord(["", "x"] + [""] * (len(concepts) - 2))),
        memorability=("stimulus", score),
    )


def test_align_pair_by_concept_matches_pandas(backend):
    ca = ["dog", "cat", "dog", "cow", "cat", "emu", "dog", ""]
    cb = ["cow", "dog", "ant", "cat", "cow"]
    a = _lazy(_concept_cube(ca, 4, 0), backend == "dask", chunk=2)
    b = _lazy(_concept_cube(cb, 3, 1), backend == "dask", chunk=2)
    a["response"] = a.response.chunk({"stimulus": 3}) if backend == "dask" else a.response
    with raise_if_dask_computes():
        a2, b2 = align_pair(a, b, by="concept")
    want = ["dog", "cat", "cow"]
    assert a2.stimulus_id.values.tolist() == want == b2.stimulus_id.values.tolist()
    assert a2.concept.values.tolist() == want
    for cube, out in ((a, a2), (b, b2)):
        frame = pd.DataFrame(cube.response.values).assign(c=cube.concept.values)
        expect = frame.groupby("c").mean().loc[want]
        np.testing.assert_allclose(out.response.values, expect.values)
        mem = pd.Series(cube.memorability.values).groupby(cube.concept.values).mean().loc[want]
        np.testing.assert_allclose(out.memorability.values, mem.values)
        sizes = pd.Series(cube.concept.values).value_counts().loc[want]
        assert out.n_images.values.tolist() == sizes.tolist() == out.n_repeats.values.tolist()
        assert "roi_mask" in out.coords and out.sizes["channel"] == cube.sizes["channel"]
        validate(out)
    assert a2.category.values.tolist() == ["", "x", ""]
    assert a2.attrs["aligned_by"] == "concept" and a2.attrs["n_shared"] == 3


def test_align_pair_nothing_shared():
    a = _concept_cube(["dog", "cat"], 2, 0)
    b = _concept_cube(["emu", "ant"], 2, 1).assign_coords(
        stimulus_id=("stimulus", text_coord(["x.jpg", "y.jpg"]))
    )
    for by in ("stimulus_id", "concept"):
        a2, b2 = align_pair(a, b, by=by)
        assert a2.sizes["stimulus"] == 0 == b2.sizes["stimulus"]
        assert a2.attrs["n_shared"] == 0


def test_align_pair_bad_by():
    cube = example_cube()
    with pytest.raises(ValueError, match="by must be"):
        align_pair(cube, cube, by="category")
