"""Builders of small cubes and specs, and assertions, for tests of code that uses memxr.

Like :mod:`xarray.testing`: what memxr's own tests use, public so that a lab's code
built on memxr can be tested the same way.

Cubes
    :func:`example_cube` (a tiny valid cube), :func:`lazy` (dask-backed data, labels
    in memory), :func:`repeat_cube` (test stimuli with given repeats), :func:`signal_noise`
    (repeats = signal + noise of known variances).
Specs
    :func:`spec_dict`, :func:`write_spec`: a small pipeline spec over the synthetic data
    of :func:`memxr.synth.synthesize` (in ``raw/`` beside the spec).
Assertions
    :func:`assert_valid_cube`, :func:`assert_lazy`, :func:`assert_cube_equal` and the
    context manager :func:`raise_if_dask_computes`, which fails when dask computes where
    a function should only build a graph (laziness is part of memxr's contract).

May import: numpy, xarray, dask, pyyaml, :mod:`memxr.schema`; nothing that reads files
or runs analyses.

Examples
--------
>>> import memxr
>>> cube = lazy(example_cube(n_stimulus=10, n_channel=6))
>>> with raise_if_dask_computes():
...     reduced = memxr.roi_reduce(cube, "A")
>>> assert_lazy(reduced)
>>> with raise_if_dask_computes():
...     float(reduced.sum())
Traceback (most recent call last):
...
AssertionError: dask computed 1 time(s) where at most 0 were allowed
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from .schema import example_cube, text_coord, validate

__all__ = [
    "assert_cube_equal",
    "assert_lazy",
    "assert_valid_cube",
    "example_cube",
    "lazy",
    "raise_if_dask_computes",
    "repeat_cube",
    "signal_noise",
    "spec_dict",
    "write_spec",
]


# --------------------------------------------------------------------------- cubes


def lazy(ds: xr.Dataset, on: bool = True, chunk: int = 3) -> xr.Dataset:
    """The cube with ``response`` and ``response_repeats`` chunked along ``channel``.

    Labels (coordinates) stay in memory, as :func:`memxr.open_cube` leaves them.
    ``on=False`` returns the cube as it is (for tests parametrized over both).
    """
    if not on:
        return ds
    out = ds.copy()
    for name in ("response", "response_repeats"):
        if name in out.data_vars:
            out[name] = out[name].chunk({"channel": chunk})
    return out


def repeat_cube(reps: np.ndarray, n_train: int = 0, seed: int = 0) -> xr.Dataset:
    """A valid cube whose first ``len(reps)`` stimuli are test stimuli with these repeats.

    Parameters
    ----------
    reps : numpy.ndarray
        (test stimulus, repeat, channel[, time]); NaN marks padding.
    n_train : int
        Train stimuli (one trial each, standard normal) after the test stimuli.
    seed : int
        Seed of the labels and of the train responses.

    Examples
    --------
    >>> ds = repeat_cube(np.ones((3, 2, 4)), n_train=5)
    >>> ds.sizes["stimulus"], ds["response_repeats"].shape, ds.n_repeats.values[:4].tolist()
    (8, (3, 2, 4), [2, 2, 2, 1])
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


def signal_noise(n_stim: int, n_rep: int, s2: Any, n2: Any, seed: int = 0) -> np.ndarray:
    """Repeats (stimulus, repeat, channel) = signal of variance ``s2`` + noise of variance ``n2``.

    ``s2`` and ``n2`` are per channel (scalars or sequences of equal length); the
    single-trial reliability of a channel is ``s2 / (s2 + n2)``.

    Examples
    --------
    >>> signal_noise(4, 3, [1.0, 2.0], [0.5, 0.5]).shape
    (4, 3, 2)
    """
    rng = np.random.default_rng(seed)
    s2, n2 = np.asarray(s2, float), np.asarray(n2, float)
    signal = rng.standard_normal((n_stim, 1, s2.size)) * np.sqrt(s2)
    return signal + rng.standard_normal((n_stim, n_rep, s2.size)) * np.sqrt(n2)


# --------------------------------------------------------------------------- specs


def spec_dict(name: str = "tiny", title: str | None = "tiny run", **analyses: dict) -> dict:
    """A small spec over the synthetic data in ``raw/`` (next to the spec file).

    The data are those of ``memxr synth raw`` (:func:`memxr.synth.synthesize`): one fMRI
    subject and one monkey's time-resolved trials, few permutations. ``analyses`` update
    the named analysis sections; ``title=None`` leaves out the report section.

    Examples
    --------
    >>> spec = spec_dict(models={"cv": 4})
    >>> spec["analyses"]["models"]["cv"], [c["kind"] for c in spec["inputs"]["cubes"]]
    (4, ['things-fmri', 'tvsd-trials'])
    """
    spec: dict = {
        "name": name,
        "inputs": {
            "memorability": "raw/things/THINGS_Memorability_Scores.csv",
            "concepts": "raw/things/Concept_to_category_linking.csv",
            "cubes": [
                {
                    "name": "sub-01",
                    "kind": "things-fmri",
                    "input": "raw/things-fmri/betas_csv",
                    "subject": "sub-01",
                },
                {
                    "name": "monkeyN",
                    "kind": "tvsd-trials",
                    "input": "raw/tvsd/monkeyN",
                    "monkey": "N",
                },
            ],
        },
        "rois": {"things-fmri": {"names": ["FFA", "V1", "IT"]}},
        "analyses": {
            "correlation": {"n_permutations": 49, "n_bootstrap": 49},
            "timecourse": {"n_permutations": 19},
            "models": {"models": ["ridge"], "cv": 3, "n_permutations": 3},
            "bridge": {
                "pairs": [["sub-01", "monkeyN"]],
                "n_bootstrap": 19,
                "rsa": {"level": "concept", "n_permutations": 19},
                "decoding": False,
            },
        },
        "report": {"title": title},
    }
    if title is None:
        del spec["report"]
    for section, changes in analyses.items():
        spec["analyses"][section].update(changes)
    return spec


def write_spec(folder: str | Path, filename: str = "tiny.yaml", **kwargs: Any) -> Path:
    """Write :func:`spec_dict` (same keyword arguments) as YAML into ``folder``."""
    import yaml

    path = Path(folder) / filename
    path.write_text(yaml.safe_dump(spec_dict(**kwargs), sort_keys=False))
    return path


# --------------------------------------------------------------------------- assertions


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[None]:
    """Fail (``AssertionError``) when dask computes more than ``max_computes`` times inside.

    The block runs with a scheduler that counts its calls and refuses the extra ones,
    so a function that should only build a graph is caught the moment it computes.
    """
    calls = 0

    def scheduler(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > max_computes:
            raise AssertionError(
                f"dask computed {calls} time(s) where at most {max_computes} were allowed"
            )
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=scheduler):
        yield


def assert_lazy(obj: xr.Dataset | xr.DataArray) -> None:
    """Assert that every data variable of ``obj`` is dask-backed (nothing was computed)."""
    arrays = obj.data_vars.items() if isinstance(obj, xr.Dataset) else [(obj.name, obj)]
    eager = [str(name) for name, a in arrays if a.chunks is None]
    if eager:
        raise AssertionError(f"not lazy (numpy-backed): {', '.join(eager)}")


def assert_valid_cube(ds: xr.Dataset) -> None:
    """Assert that ``ds`` follows the cube schema (:func:`memxr.schema.validate`)."""
    from .schema import SchemaError

    try:
        validate(ds)
    except SchemaError as e:
        raise AssertionError(str(e)) from None


def assert_cube_equal(a: xr.Dataset, b: xr.Dataset, *, attrs: bool = True, **kwargs: Any) -> None:
    """Assert two cubes hold the same data, coordinates and (but ``created``) attributes.

    Keyword arguments go to :func:`xarray.testing.assert_allclose` (``rtol``, ``atol``).
    """
    xr.testing.assert_allclose(a, b, **kwargs)
    if attrs:
        ka = {k: v for k, v in a.attrs.items() if k != "created"}
        kb = {k: v for k, v in b.attrs.items() if k != "created"}
        if ka != kb:
            diff = sorted(k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k))
            raise AssertionError(f"attributes differ: {', '.join(diff)}")
