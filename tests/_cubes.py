"""Small cubes shared by several test files (imported through tests/conftest.py's path)."""

import warnings

import numpy as np
import xarray as xr

from memxr.schema import example_cube, text_coord, validate


def lazy(ds: xr.Dataset, on: bool = True, chunk: int = 3) -> xr.Dataset:
    """Response and repeats chunked along channel (labels stay in memory)."""
    if not on:
        return ds
    out = ds.copy()
    for name in ("response", "response_repeats"):
        if name in out.data_vars:
            out[name] = out[name].chunk({"channel": chunk})
    return out


def repeat_cube(reps: np.ndarray, n_train: int = 0, seed: int = 0) -> xr.Dataset:
    """A valid cube whose first ``len(reps)`` stimuli are test stimuli with these repeats.

    ``reps`` is (test stimulus, repeat, channel[, time]); NaN marks padding.
    """
    n_test, _, n_chan = reps.shape[:3]
    rng = np.random.default_rng(seed)
    ds = example_cube(n_stimulus=n_test + n_train, n_channel=n_chan, seed=seed)
    train = rng.standard_normal((n_train, *reps.shape[2:]))
    dims = ("channel",) + (("time",) if reps.ndim == 4 else ())
    with warnings.catch_warnings():  # stimuli without any repeat on a channel: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(reps, axis=1)
    ds["response"] = (("stimulus", *dims), np.concatenate([mean, train]))
    ds["response_repeats"] = (("repeat_stimulus", "repeat", *dims), reps)
    n_valid = np.isfinite(reps.reshape(n_test, reps.shape[1], -1)[:, :, 0]).sum(1)
    ds = ds.assign_coords(
        split=("stimulus", text_coord(["test"] * n_test + ["train"] * n_train)),
        n_repeats=("stimulus", np.concatenate([n_valid, np.ones(n_train, np.int64)])),
        repeat_stimulus_id=("repeat_stimulus", ds.stimulus_id.values[:n_test]),
        repeat=("repeat", np.arange(reps.shape[1])),
    )
    if reps.ndim == 4:
        ds = ds.assign_coords(time=10.0 * np.arange(reps.shape[3]))
    return validate(ds)


def signal_noise(n_stim, n_rep, s2, n2, seed=0):
    """Repeats = signal (stimulus x channel, variance s2) + noise (variance n2 per repeat)."""
    rng = np.random.default_rng(seed)
    s2, n2 = np.asarray(s2, float), np.asarray(n2, float)
    signal = rng.standard_normal((n_stim, 1, s2.size)) * np.sqrt(s2)
    return signal + rng.standard_normal((n_stim, n_rep, s2.size)) * np.sqrt(n2)
