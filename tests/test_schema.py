"""The cube schema: valid cubes pass, each departure is reported once and clearly."""

import json

import numpy as np
import pandas as pd
import pytest

from memxr.schema import SchemaError, example_cube, problems, text_coord, validate
from memxr.testing import raise_if_dask_computes


def test_example_cube_is_valid():
    assert problems(example_cube()) == []


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda ds: ds.drop_vars("response"), "missing data variable 'response'"),
        (lambda ds: ds.drop_vars("memorability"), "missing coordinate 'memorability'"),
        (lambda ds: ds.drop_vars(["roi_mask"]), "missing coordinate 'roi_mask'"),
        (
            lambda ds: ds.assign_coords(
                split=("stimulus", text_coord(["val"] * ds.sizes["stimulus"]))
            ),
            "'split' has values ['val']",
        ),
        (
            lambda ds: ds.assign_coords(stimulus_id=("stimulus", text_coord(["a.jpg"] * 6))),
            "'stimulus_id' has duplicates",
        ),
        (
            lambda ds: ds.assign(response=ds.response.T),
            "'response' has dims ('channel', 'stimulus')",
        ),
        (lambda ds: ds.assign(response=ds.response.astype(int)), "expected a float dtype"),
        (
            lambda ds: ds.assign_coords(channel_id=("channel", np.arange(4.0))),
            "coordinate 'channel_id' has dtype float64",
        ),
        (lambda ds: ds.drop_attrs(), "missing attribute 'dataset'"),
        (
            lambda ds: ds.assign_attrs(inputs=json.dumps([{"name": "/abs/x.h5"}])),
            "absolute path",
        ),
        (lambda ds: ds.assign_attrs(dataset="eeg"), "attribute 'dataset' is 'eeg'"),
    ],
)
def test_each_problem_is_named(edit, expected):
    ds = edit(example_cube())
    found = problems(ds)
    assert any(expected in p for p in found), found
    with pytest.raises(SchemaError, match="store.zarr: "):
        validate(ds, name="store.zarr")


def test_all_problems_reported_at_once():
    ds = example_cube().drop_vars(["concept", "category"]).drop_attrs()
    msg = str(pytest.raises(SchemaError, validate, ds).value)
    assert "'concept'" in msg and "'category'" in msg and "'units'" in msg
    assert len(msg.splitlines()) >= 8


def test_multiindex_refused():
    ds = example_cube()
    ds = ds.set_index(stimulus=["stimulus_id", "split"])
    assert any("MultiIndex" in p for p in problems(ds))


def test_time_and_repeats_checked():
    ds = example_cube(n_stimulus=3, n_channel=2)
    ds["response"] = ds.response.expand_dims(time=[0.0, 10.0], axis=-1)
    ds["response_repeats"] = (
        ("repeat_stimulus", "repeat", "channel", "time"),
        np.zeros((1, 2, 2, 2)),
    )
    ds = ds.assign_coords(repeat_stimulus_id=("repeat_stimulus", text_coord(["unknown.jpg"])))
    found = problems(ds)
    assert any("'repeat_stimulus_id' not in 'stimulus_id'" in p for p in found), found
    ds = ds.assign_coords(repeat_stimulus_id=("repeat_stimulus", ds.stimulus_id.values[:1]))
    assert problems(ds) == []


def test_dask_cube_not_computed():

    ds = example_cube()
    ds["response"] = ds.response.chunk({"stimulus": 2})
    if True:

        with raise_if_dask_computes():
            validate(ds)
    assert pd.Index(ds.stimulus_id.values).is_unique
