"""Builders of small cubes and specs, and assertions, for tests of code that uses memxr.

Like :mod:`xarray.testing`: what memxr's own tests use, public so that a lab's code
built on memxr can be tested the same way.

Cubes
    :func:`example_cube` (a tiny valid cube), :func:`lazy` (dask-backed data, labels
    in memory), :func:`repeat_cube` (test stimuli with given repeats), :func:`signal_noise`
    (repeats = signal + noise of known variances).
Simulations with known truth
    :func:`concept_sizes` (unequal concept sizes), :func:`simulate_concepts` (a cube of
    images nested in concepts whose responses correlate with memorability by a known
    population value, zero under the null, optionally a time profile and correlated
    channels), :func:`simulate_confounds` (the same with covariates driving both
    responses and memorability), :func:`simulate_species` (a human and a
    monkey cube on shared and own images, with or without a shared representation and
    memorability codes): the concept-structured nulls and alternatives of the
    calibration checks.
Calibration
    :data:`CHECKS` and :func:`run_check`: the false-positive rate of every p-value memxr
    reports and the coverage of its intervals, by repeated simulation (see the section
    below); the fast checks run in the test suite, ``benchmarks/bench_calibration.py``
    prints the full table.
Specs
    :func:`spec_dict`, :func:`write_spec`: a small pipeline spec over the synthetic data
    of :func:`memxr.synth.synthesize` (in ``raw/`` beside the spec).
Assertions
    :func:`assert_valid_cube`, :func:`assert_lazy`, :func:`assert_cube_equal` and the
    context manager :func:`raise_if_dask_computes`, which fails when dask computes where
    a function should only build a graph (laziness is part of memxr's contract).

May import: numpy, scipy, xarray, dask, pyyaml, :mod:`memxr.schema`; nothing that reads
files. Only the calibration checks run analyses (imported inside them, on simulated data).

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
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import scipy.stats
import xarray as xr

from .schema import example_cube, text_coord, validate

__all__ = [
    "ALPHA",
    "CHECKS",
    "COVERAGE",
    "Check",
    "CheckResult",
    "assert_cube_equal",
    "assert_lazy",
    "assert_valid_cube",
    "binomial_interval",
    "concept_sizes",
    "example_cube",
    "lazy",
    "raise_if_dask_computes",
    "repeat_cube",
    "run_check",
    "signal_noise",
    "simulate_concepts",
    "simulate_confounds",
    "simulate_species",
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


# --------------------------------------------------------------------------- simulations


def concept_sizes(
    n_concepts: int, images_per_concept: int | tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Images per concept: a constant, or drawn uniformly from ``(low, high)`` inclusive.

    Examples
    --------
    >>> concept_sizes(3, 4, np.random.default_rng(0)).tolist()
    [4, 4, 4]
    >>> sizes = concept_sizes(500, (1, 12), np.random.default_rng(0))
    >>> int(sizes.min()), int(sizes.max())
    (1, 12)
    """
    if isinstance(images_per_concept, int | np.integer):
        return np.full(int(n_concepts), int(images_per_concept), dtype=np.int64)
    low, high = (int(v) for v in images_per_concept)
    if not 1 <= low <= high:
        raise ValueError(f"images_per_concept must be 1 <= low <= high, got {images_per_concept}")
    return rng.integers(low, high + 1, size=int(n_concepts)).astype(np.int64)


def _smooth(noise: np.ndarray, width: int) -> np.ndarray:
    """Moving average of ``width`` bins along the last axis, rescaled to unit variance."""
    if width <= 1:
        return noise
    kernel = np.ones(width) / np.sqrt(width)
    pad = noise.shape[-1] + width - 1
    spec = np.fft.rfft(noise, n=pad, axis=-1) * np.fft.rfft(kernel, n=pad)
    return np.fft.irfft(spec, n=pad, axis=-1)[..., width - 1 :]


def _labels(sizes: np.ndarray, prefix: str = "c") -> tuple[np.ndarray, list[str]]:
    concept = np.repeat(np.arange(sizes.size), sizes)
    within = np.concatenate([np.arange(k) for k in sizes]) if sizes.size else np.zeros(0, int)
    ids = [f"{prefix}{c:04d}_{i:02d}s.jpg" for c, i in zip(concept, within, strict=True)]
    return concept, ids


def _cube(
    response: np.ndarray,
    concept: np.ndarray,
    ids: list[str],
    memorability: np.ndarray,
    *,
    prefix: str,
    dataset: str,
    subject: str,
    times: np.ndarray | None,
    roi: str = "A",
) -> xr.Dataset:
    n, n_channel = response.shape[:2]
    dims = ("stimulus", "channel") + (("time",) if times is not None else ())
    coords: dict[str, Any] = {
        "stimulus_id": ("stimulus", text_coord(ids)),
        "concept": ("stimulus", text_coord(f"{prefix}{c:04d}" for c in concept)),
        "category": ("stimulus", text_coord([""] * n)),
        "memorability": ("stimulus", memorability.astype(float)),
        "split": ("stimulus", text_coord(["train"] * n)),
        "n_repeats": ("stimulus", np.ones(n, dtype=np.int64)),
        "channel_id": ("channel", np.arange(1, n_channel + 1, dtype=np.int64)),
        "roi": ("roi", text_coord([roi])),
        "roi_mask": (("channel", "roi"), np.ones((n_channel, 1), dtype=bool)),
    }
    if times is not None:
        coords["time"] = ("time", np.asarray(times, dtype=float))
    attrs = dict(example_cube(1, 1).attrs, dataset=dataset, subject=subject)
    return validate(xr.Dataset({"response": (dims, response)}, coords=coords, attrs=attrs))


def simulate_concepts(
    n_concepts: int = 60,
    images_per_concept: int | tuple[int, int] = (1, 12),
    *,
    rho: float | Any = 0.0,
    n_channels: int = 1,
    memorability_concept_share: float = 0.5,
    neural_concept_share: float = 0.5,
    concept_part: float = 0.5,
    times: Any = None,
    smoothness: int = 1,
    profile: Any = None,
    shared_noise: float = 0.0,
    seed: int = 0,
) -> xr.Dataset:
    """A cube of images nested in concepts, correlated with memorability by a known amount.

    The concept-structured model of the calibration checks. Memorability (standardized)
    is a concept effect plus image noise, ``m = sqrt(s_m) A_c + sqrt(1 - s_m) E_i``; every
    channel is likewise ``x = sqrt(s_x) B_c + sqrt(1 - s_x) F_i``, where ``B`` correlates
    with ``A`` (concept level) and ``F`` with ``E`` (image level) so that the population
    correlation of the channel with memorability is ``rho``; ``concept_part`` is the
    share of it carried at the concept level. Under the null (``rho = 0``) the channels
    share concept structure with memorability but not its values: a shuffle of images
    would be too liberal, concept-level resampling is not.

    Parameters
    ----------
    n_concepts : int
        Concepts.
    images_per_concept : int or (low, high)
        Images per concept, or the range their (unequal) numbers are drawn from.
    rho : float or array_like
        Population correlation of each channel with memorability (scalar or one per
        channel); at most ``sqrt(s_m s_x) + sqrt((1 - s_m)(1 - s_x))``.
    n_channels : int
        Channels (independent given the latent variables).
    memorability_concept_share, neural_concept_share : float
        Fraction of the variance of memorability and of each channel at the concept level.
    concept_part : float
        Fraction of ``rho`` carried by the concept effects (the rest by the image noise).
    times : array_like, optional
        Time bins (ms): the channels become time courses whose noise is smoothed over
        ``smoothness`` bins (neighbouring bins correlated), the memorability relation the
        same at every bin.
    smoothness : int
        Width of the moving average of the time-course noise.
    profile : array_like, optional
        One factor per time bin multiplying ``rho`` (an effect that rises and falls over
        time: the population correlation at bin ``t`` is ``rho * profile[t]``); default 1.
    shared_noise : float
        Correlation between channels of the parts of their variance unrelated to
        memorability (at the concept and at the image level): 0 (default) independent
        channels, e.g. 0.5 for two correlated ROIs.
    seed : int
        Seed of every draw.

    Returns
    -------
    xarray.Dataset
        A valid cube (dims stimulus, channel[, time]; one ROI ``A`` of every channel; all
        images in the train split, one trial each) with ``attrs["population_r"]`` (one per
        channel, at ``profile`` 1), ``attrs["within_r"]`` (the population correlation of
        the deviations of each channel and of memorability from their concept means, the
        target of :func:`memxr.stats.within_concept_correlate`) and the concept shares.

    Examples
    --------
    >>> cube = simulate_concepts(200, (1, 12), rho=0.3, n_channels=2, seed=1)
    >>> cube.response.dims, cube.attrs["population_r"]
    (('stimulus', 'channel'), [0.3, 0.3])
    >>> r = np.corrcoef(cube.response.values[:, 0], cube.memorability.values)[0, 1]
    >>> bool(0.2 < r < 0.4)
    True
    """
    rng = np.random.default_rng(seed)
    sizes = concept_sizes(n_concepts, images_per_concept, rng)
    concept, ids = _labels(sizes)
    n = concept.size
    sm, sx = float(memorability_concept_share), float(neural_concept_share)
    rhos = np.broadcast_to(np.asarray(rho, dtype=float), (int(n_channels),)).copy()
    wc, wi = np.sqrt(sm * sx), np.sqrt((1 - sm) * (1 - sx))
    # the concept-level and image-level correlations that give rho
    with np.errstate(invalid="ignore", divide="ignore"):
        rc = np.where(wc > 0, concept_part * rhos / max(wc, 1e-12), 0.0)
        ri = np.where(wi > 0, (rhos - rc * wc) / max(wi, 1e-12), 0.0)
    if np.any(np.abs(rc) > 1) or np.any(np.abs(ri) > 1):
        raise ValueError(
            f"rho={rhos.tolist()} cannot be reached with these concept shares and concept_part"
        )
    a = rng.standard_normal(sizes.size)[concept]
    e = rng.standard_normal(n)
    memo = np.sqrt(sm) * a + np.sqrt(1 - sm) * e
    n_t = 1 if times is None else len(times)
    prof = np.ones(n_t) if profile is None else np.asarray(profile, dtype=float).reshape(-1)
    if prof.size != n_t:
        raise ValueError(f"profile must hold one factor per time bin ({n_t}), got {prof.size}")
    rc_t, ri_t = rc[:, None] * prof[None, :], ri[:, None] * prof[None, :]  # (channel, time)
    if np.any(np.abs(rc_t) > 1) or np.any(np.abs(ri_t) > 1):
        raise ValueError("rho * profile cannot be reached with these concept shares")
    b_own = rng.standard_normal((sizes.size, n_channels, n_t + smoothness - 1))
    f_own = rng.standard_normal((n, n_channels, n_t + smoothness - 1))
    if shared_noise:
        k = float(shared_noise)
        if not 0 <= k <= 1:
            raise ValueError(f"shared_noise must lie in [0, 1], got {shared_noise}")
        b_own = np.sqrt(k) * rng.standard_normal((sizes.size, 1, b_own.shape[2])) + np.sqrt(
            1 - k
        ) * b_own
        f_own = np.sqrt(k) * rng.standard_normal((n, 1, f_own.shape[2])) + np.sqrt(1 - k) * f_own
    b_own = _smooth(b_own, smoothness)[..., :n_t][concept]
    f_own = _smooth(f_own, smoothness)[..., :n_t]
    b = rc_t[None] * a[:, None, None] + np.sqrt(1 - rc_t**2)[None] * b_own
    f = ri_t[None] * e[:, None, None] + np.sqrt(1 - ri_t**2)[None] * f_own
    x = np.sqrt(sx) * b + np.sqrt(1 - sx) * f
    response = x if times is not None else x[..., 0]
    out = _cube(response, concept, ids, 0.75 + 0.1 * memo, prefix="c", dataset="things-fmri",
                subject="sim", times=None if times is None else np.asarray(times))  # fmt: skip
    out.attrs.update(
        population_r=[float(v) for v in rhos],
        within_r=[float(v) for v in ri],
        memorability_concept_share=sm,
        neural_concept_share=sx,
        n_concepts=int(n_concepts),
        seed=int(seed),
    )
    return out


def simulate_confounds(
    n_concepts: int = 60,
    images_per_concept: int | tuple[int, int] = (1, 12),
    *,
    partial_r: float | Any = 0.0,
    n_covariates: int = 2,
    confound: float = 0.5,
    covariate_concept_share: float = 0.5,
    n_channels: int = 1,
    memorability_concept_share: float = 0.5,
    neural_concept_share: float = 0.5,
    seed: int = 0,
) -> tuple[xr.Dataset, xr.DataArray]:
    """A cube whose channels and memorability share covariates: a confounded correlation.

    The channels ``x0`` and the standardized memorability ``m0`` of
    :func:`simulate_concepts` (``rho = partial_r``) get the same covariates added:
    ``x = x0 + C g`` and ``m = m0 + C b`` with ``k = n_covariates`` concept-structured
    covariates ``C`` (independent, unit variance, ``covariate_concept_share`` at the
    concept level) and ``g = b = confound / sqrt(k)`` per covariate. The partial
    correlation of each channel with memorability given ``C`` is ``partial_r`` (the null
    of :func:`memxr.stats.partial_correlate` when 0), while their plain correlation is
    ``(partial_r + confound**2) / (1 + confound**2)``; the neural features add nothing to
    ``C`` in predicting memorability when ``partial_r`` is 0 (the null of
    :func:`memxr.models.variance_partition`).

    Returns
    -------
    (xarray.Dataset, xarray.DataArray)
        The cube (``attrs["partial_r"]``, ``attrs["population_r"]``: the plain
        correlations) and the covariates, dims (stimulus, covariate), names ``c0``,
        ``c1`` ..., with the cube's ``stimulus_id``.

    Examples
    --------
    >>> cube, cov = simulate_confounds(300, 4, confound=1.0, seed=0)
    >>> cov.dims, cube.attrs["population_r"]
    (('stimulus', 'covariate'), [0.5])
    >>> r = np.corrcoef(cube.response.values[:, 0], cube.memorability.values)[0, 1]
    >>> bool(0.4 < r < 0.6)
    True
    """
    cube = simulate_concepts(
        n_concepts,
        images_per_concept,
        rho=partial_r,
        n_channels=n_channels,
        memorability_concept_share=memorability_concept_share,
        neural_concept_share=neural_concept_share,
        seed=seed,
    )
    rng = np.random.default_rng([seed, 104729])
    codes = np.unique(np.asarray(cube.concept.values).astype(str), return_inverse=True)[1]
    n, k, sc = codes.size, int(n_covariates), float(covariate_concept_share)
    c = np.sqrt(sc) * rng.standard_normal((int(codes.max()) + 1, k))[codes] + np.sqrt(
        1 - sc
    ) * rng.standard_normal((n, k))
    weight = float(confound) / np.sqrt(k) if k else 0.0
    shared = c.sum(1) * weight
    m = (cube.memorability.values - 0.75) / 0.1 + shared
    scale = np.sqrt(1 + float(confound) ** 2)
    out = cube.copy()
    out["response"] = cube.response + xr.DataArray(shared, dims="stimulus")
    out = out.assign_coords(memorability=("stimulus", 0.75 + 0.1 * m / scale))
    rhos = np.broadcast_to(np.asarray(partial_r, dtype=float), (int(n_channels),))
    out.attrs.update(
        partial_r=[float(v) for v in rhos],
        population_r=[float((v + confound**2) / (1 + confound**2)) for v in rhos],
        confound=float(confound),
        n_covariates=k,
    )
    covariates = xr.DataArray(
        c,
        dims=("stimulus", "covariate"),
        coords={"stimulus_id": cube.stimulus_id.variable, "covariate": [f"c{j}" for j in range(k)]},
        name="covariates",
    )
    return validate(out), covariates


def simulate_species(
    n_shared_concepts: int = 40,
    n_own_concepts: int = 60,
    images_per_concept: int | tuple[int, int] = (1, 12),
    *,
    human_code: float = 0.0,
    monkey_code: float = 0.0,
    shared_representation: bool = True,
    n_latent: int = 5,
    n_human_channels: int = 12,
    n_monkey_channels: int = 16,
    concept_share: float = 0.5,
    noise: float = 1.0,
    seed: int = 0,
) -> tuple[xr.Dataset, xr.Dataset]:
    """A human and a monkey cube: shared images, and images only the monkey saw.

    Every image has latent visual features ``z`` (``n_latent``, half concept-level, half
    image-level variance) and a memorability (same concept structure, independent of
    ``z``). Each species' channels are a fixed random mixture of the latents (the same
    latents for both with ``shared_representation``, independent ones without), plus, in
    a memorability code of gain ``human_code`` / ``monkey_code`` (0: none), the
    memorability along one random direction of its channels, plus channel noise. The
    monkey sees ``n_shared_concepts`` concepts' images (all shared with the human) and
    ``n_own_concepts`` concepts' more (its own images).

    The nulls of the bridge: with ``monkey_code=0`` a monkey decoder learns no
    memorability (a decoder cannot transfer); with ``human_code=0`` the human responses
    carry none; with ``shared_representation=False`` the species' RDMs agree only in
    their concept structure.

    Returns
    -------
    (xarray.Dataset, xarray.Dataset)
        ``things-fmri`` cube ``sub-sim`` (ROI ``A``) and ``tvsd-normmua`` cube
        ``monkeySim`` (ROI ``A``), all train images, memorability on both.

    Examples
    --------
    >>> human, monkey = simulate_species(10, 20, 3, seed=0)
    >>> human.sizes["stimulus"], monkey.sizes["stimulus"]
    (30, 90)
    """
    rng = np.random.default_rng(seed)
    sizes = concept_sizes(n_shared_concepts + n_own_concepts, images_per_concept, rng)
    concept, ids = _labels(sizes, "k")
    n = concept.size
    sc = float(concept_share)
    memo = np.sqrt(sc) * rng.standard_normal(sizes.size)[concept] + np.sqrt(
        1 - sc
    ) * rng.standard_normal(n)

    def latents() -> np.ndarray:
        concept_part = rng.standard_normal((sizes.size, n_latent))[concept]
        return np.sqrt(sc) * concept_part + np.sqrt(1 - sc) * rng.standard_normal((n, n_latent))

    z_h = latents()
    z_m = z_h if shared_representation else latents()

    def channels(z: np.ndarray, n_ch: int, code: float) -> np.ndarray:
        mix = rng.standard_normal((n_latent, n_ch)) / np.sqrt(n_latent)
        direction = rng.standard_normal(n_ch)
        direction /= np.linalg.norm(direction)
        return (
            z @ mix
            + float(code) * memo[:, None] * direction[None, :] * np.sqrt(n_ch)
            + float(noise) * rng.standard_normal((n, n_ch))
        )

    xh = channels(z_h, n_human_channels, human_code)
    xm = channels(z_m, n_monkey_channels, monkey_code)
    shared = concept < n_shared_concepts
    score = 0.75 + 0.1 * memo
    h_idx = np.flatnonzero(shared)
    human = _cube(xh[h_idx], concept[h_idx], [ids[i] for i in h_idx], score[h_idx], prefix="k",
                  dataset="things-fmri", subject="sub-sim", times=None)  # fmt: skip
    monkey = _cube(xm, concept, ids, score, prefix="k", dataset="tvsd-normmua",
                   subject="monkeySim", times=None)  # fmt: skip
    for cube in (human, monkey):
        cube.attrs.update(
            human_code=float(human_code),
            monkey_code=float(monkey_code),
            shared_representation=bool(shared_representation),
            seed=int(seed),
        )
    return human, monkey


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


# --------------------------------------------------------------------------- calibration
# Calibration of memxr's inferential outputs by simulation under concept-structured nulls.
#
# Every p-value memxr reports should reject a true null at most as often as its level, and
# every confidence interval should cover the population value at least as often as its
# coverage, on data structured like the real ones: images nested in concepts, memorability
# and responses both carrying concept-level variance, unequal concept sizes. Each check of
# :data:`CHECKS` draws such a dataset from a seed (with a varied structure: number of
# concepts, 1 to 12 images per concept or a constant number, concept shares of variance),
# runs one analysis and says whether the p-value reached the level (a false positive) or
# the interval covered the truth. :func:`run_check` repeats it over seeds and compares the
# rate with its nominal value through a 95 % Clopper-Pearson interval:
#
# - a false-positive rate passes when the interval reaches down to the level (``low <=
#   0.05``: the data do not show a rate above nominal);
# - a coverage passes when the interval reaches up to the coverage (``high >= 0.95``).
#
# A false positive is ``p <= 0.05``; the permutation counts are chosen so that ``0.05 (P +
# 1)`` is an integer, where an exact permutation test rejects with probability exactly
# 0.05 (with ``p < 0.05`` it would be 0.04 and a slightly liberal test could hide).
#
# The simulations come from :func:`memxr.testing.simulate_concepts` and
# :func:`memxr.testing.simulate_species`. The fast versions run in the test suite
# (``tests/test_calibration.py``); ``benchmarks/bench_calibration.py`` runs them with more
# simulations and permutations and prints the table.

ALPHA = 0.05
"""Level of every test checked (a false positive is ``p <= ALPHA``)."""

COVERAGE = 0.95
"""Coverage of every confidence interval checked."""

REAL_EFFECT = 0.1
"""The population correlation of the coverage checks: TVSD r(IT, memorability) = 0.10."""


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a binomial proportion ``k / n``.

    Examples
    --------
    >>> binomial_interval(5, 100)
    (0.016431..., 0.112834...)
    """
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(scipy.stats.beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(scipy.stats.beta.ppf(1 - a, k + 1, n - k))
    return low, high


@dataclass(frozen=True)
class Check:
    """One calibration check: what it measures and one simulated replicate of it."""

    name: str
    kind: str  # "fpr" or "coverage"
    description: str
    replicate: Callable[[int, bool], bool]

    @property
    def nominal(self) -> float:
        return ALPHA if self.kind == "fpr" else COVERAGE


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`run_check`: the rate, its interval and the verdict."""

    check: str
    kind: str
    n: int
    count: int
    rate: float
    low: float
    high: float
    nominal: float
    seconds: float

    @property
    def passed(self) -> bool:
        if self.kind == "fpr":
            return self.low <= self.nominal
        return self.high >= self.nominal

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "FAIL"


# ----------------------------------------------------------------------------- structures


def _structure(seed: int) -> dict:
    """A varied concept structure drawn from ``seed``: sizes, shares, number of concepts."""
    rng = np.random.default_rng([seed, 7919])
    sizes = [(1, 12), (1, 4), (2, 12), 3, 12, 1][int(rng.integers(6))]
    return {
        "images_per_concept": sizes,
        "memorability_concept_share": float(rng.uniform(0.2, 0.8)),
        "neural_concept_share": float(rng.uniform(0.2, 0.8)),
        "n_concepts": int(rng.integers(40, 90)),
    }


def _perms(fast: bool, full: int = 199) -> int:
    return 99 if fast else full


def _features(cube: xr.Dataset) -> xr.DataArray:
    return cube["response"].rename(channel="feature")


# ----------------------------------------------------------------------------- replicates


def _correlate_p(seed: int, fast: bool) -> bool:
    from .stats import correlate

    cube = simulate_concepts(seed=seed, **_structure(seed))
    method = ("pearson", "spearman")[seed % 2]
    res = correlate(cube.response[:, 0], cube.memorability, method=method, groups="concept",
                    n_permutations=_perms(fast), n_bootstrap=0, seed=seed)  # fmt: skip
    return bool(float(res.p) <= ALPHA)


def _correlate_ci(seed: int, fast: bool) -> bool:
    from .stats import correlate

    structure = _structure(seed) | {"n_concepts": 150 + seed % 151}
    cube = simulate_concepts(seed=seed, rho=REAL_EFFECT, **structure)
    res = correlate(cube.response[:, 0], cube.memorability, groups="concept", n_permutations=0,
                    n_bootstrap=299 if fast else 999, seed=seed)  # fmt: skip
    return bool(float(res.ci_low) <= REAL_EFFECT <= float(res.ci_high))


def _correlation_map_fwer(seed: int, fast: bool) -> bool:
    from .stats import correlation_map

    cube = simulate_concepts(seed=seed, n_channels=8, **_structure(seed))
    res = correlation_map(cube, groups="concept", n_permutations=399 if fast else 999,
                          n_bootstrap=0, seed=seed)  # fmt: skip
    return bool((res.p_fdr.values <= ALPHA).any())


def _cluster_fwer(seed: int, fast: bool) -> bool:
    from .stats import cluster_test, correlate

    times = np.arange(-50.0, 250.0, 10.0 if fast else 5.0)
    cube = simulate_concepts(seed=seed, n_channels=3, times=times, smoothness=4 if fast else 8,
                             **_structure(seed))  # fmt: skip
    res = correlate(cube.response, cube.memorability, groups="concept",
                    n_permutations=_perms(fast), n_bootstrap=0, seed=seed, return_null=True)  # fmt: skip
    out = cluster_test(res)
    return bool((out.p_cluster.fillna(1.0).values <= ALPHA).any())


def _fit_models_p(seed: int, fast: bool) -> bool:
    from .models import fit_models

    cube = simulate_concepts(seed=seed, n_channels=4, **_structure(seed))
    model = ("ridge", "linear")[seed % 2] if fast else "ridge"
    res = fit_models(_features(cube), "memorability", models=(model,), cv=3 if fast else 5,
                     n_permutations=19 if fast else 39, seed=seed, client=False,
                     keep_predictions=False)  # fmt: skip
    return bool(float(res.table.chance_p.iloc[0]) <= ALPHA)


SEQUENTIAL = {True: (99, 3), False: (199, 5)}
"""(n_permutations, early_stop) of the sequential check, fast and full: a row may stop with
``p = h / l <= 0.05`` (from ``l >= 60``, resp. 100), so the stopping rule itself decides some
rejections; ``0.05`` is an attainable p-value of both, where Besag & Clifford's p-value
rejects with probability exactly 0.05."""


def _fit_models_sequential_p(seed: int, fast: bool) -> bool:
    from .models import fit_models

    n_perm, h = SEQUENTIAL[fast]
    cube = simulate_concepts(seed=seed, n_channels=4, **_structure(seed))
    res = fit_models(_features(cube), "memorability", models=("linear_svc",),
                     cv=3 if fast else 5, n_permutations=n_perm, early_stop=h, seed=seed,
                     client=False, keep_predictions=False)  # fmt: skip
    return bool(float(res.table.chance_p.iloc[0]) <= ALPHA)


def _species(seed: int, **kw) -> tuple[xr.Dataset, xr.Dataset]:
    s = _structure(seed)
    return simulate_species(
        n_shared_concepts=int(s["n_concepts"]) // 2 + 15,
        n_own_concepts=int(s["n_concepts"]) // 2 + 25,
        images_per_concept=s["images_per_concept"],
        concept_share=s["neural_concept_share"],
        seed=seed,
        **kw,
    )


def _decode_p(seed: int, fast: bool, **codes: float) -> bool:
    from .bridge import cross_decode

    human, monkey = _species(seed, **codes)
    out = cross_decode(monkey, human, "A", "A", n_permutations=_perms(fast), seed=seed,
                       min_images=10)  # fmt: skip
    if out.empty:
        raise RuntimeError(f"cross_decode gave no row: {out.attrs.get('reason')}")
    return bool(float(out.p.iloc[0]) <= ALPHA)


def _decode_source_null(seed: int, fast: bool) -> bool:
    return _decode_p(seed, fast, human_code=0.6, monkey_code=0.0)


def _decode_target_null(seed: int, fast: bool) -> bool:
    return _decode_p(seed, fast, human_code=0.0, monkey_code=0.6)


def _rsa_p(seed: int, fast: bool) -> bool:
    from .bridge import rsa

    human, monkey = _species(seed, shared_representation=False)
    out = rsa(human, monkey, "A", "A", level="image", n_permutations=_perms(fast), seed=seed,
              max_items=400)  # fmt: skip
    return bool(float(out.p.iloc[0]) <= ALPHA)


def _shared_effects_p(seed: int, fast: bool) -> bool:
    from .bridge import shared_effects

    human, monkey = _species(seed)
    out = shared_effects(human, monkey, "A", "A", method=("pearson", "spearman")[seed % 2],
                         n_permutations=_perms(fast), n_bootstrap=0, seed=seed)  # fmt: skip
    return bool(float(out.loc[out.species == "macaque", "p"].iloc[0]) <= ALPHA)


def _confounded(seed: int, partial_r: float = 0.0, n_channels: int = 1, **over: Any):
    s = _structure(seed) | over
    return simulate_confounds(
        s["n_concepts"],
        s["images_per_concept"],
        partial_r=partial_r,
        n_covariates=1 + seed % 3,
        confound=(0.3, 0.6, 1.0)[seed % 3],
        covariate_concept_share=float(np.random.default_rng([seed, 3]).uniform(0.2, 0.8)),
        n_channels=n_channels,
        memorability_concept_share=s["memorability_concept_share"],
        neural_concept_share=s["neural_concept_share"],
        seed=seed,
    )


def _partial_p(seed: int, fast: bool) -> bool:
    from .stats import partial_correlate

    cube, cov = _confounded(seed)
    res = partial_correlate(cube.response[:, 0], cube.memorability, cov, groups="concept",
                            n_permutations=_perms(fast), n_bootstrap=0, seed=seed)  # fmt: skip
    return bool(float(res.p) <= ALPHA)


def _partial_ci(seed: int, fast: bool) -> bool:
    from .stats import partial_correlate

    cube, cov = _confounded(seed, REAL_EFFECT, n_concepts=150 + seed % 151)
    res = partial_correlate(cube.response[:, 0], cube.memorability, cov, groups="concept",
                            n_permutations=0, n_bootstrap=1, seed=seed)  # fmt: skip
    return bool(float(res.ci_low) <= REAL_EFFECT <= float(res.ci_high))


def _within_structure(seed: int) -> dict:
    s = _structure(seed)
    if s["images_per_concept"] == 1:  # no concept with two images: nothing within
        s["images_per_concept"] = 3
    return s


def _within_p(seed: int, fast: bool) -> bool:
    from .stats import within_concept_correlate

    s = _within_structure(seed)
    # a strong effect between concepts only (concept_part=1): none within concepts
    rho = 0.6 * np.sqrt(s["memorability_concept_share"] * s["neural_concept_share"])
    cube = simulate_concepts(seed=seed, rho=rho, concept_part=1.0, **s)
    res = within_concept_correlate(cube.response[:, 0], cube.memorability,
                                   method=("pearson", "spearman")[seed % 2],
                                   n_permutations=_perms(fast), n_bootstrap=0, seed=seed)  # fmt: skip
    return bool(float(res.p) <= ALPHA)


def _within_ci(seed: int, fast: bool) -> bool:
    from .stats import within_concept_correlate

    # as many concepts as THINGS-fMRI (720) and TVSD (1854) analyses hold, at least: with
    # 150-300 concepts of few images the interval covers about 92-93 % (as correlate's
    # jackknife does with 3 images per concept); see within_concept_correlate's notes
    s = _within_structure(seed) | {"n_concepts": 400 + seed % 401}
    cube = simulate_concepts(seed=seed, rho=REAL_EFFECT, **s)
    truth = float(cube.attrs["within_r"][0])
    res = within_concept_correlate(cube.response[:, 0], cube.memorability, n_permutations=0,
                                   n_bootstrap=1, seed=seed)  # fmt: skip
    return bool(float(res.ci_low) <= truth <= float(res.ci_high))


def _two_rois(seed: int, rho: list[float], **over: Any) -> xr.Dataset:
    s = _structure(seed) | over
    return simulate_concepts(seed=seed, rho=rho, n_channels=2,
                             shared_noise=(0.0, 0.4, 0.8)[seed % 3], **s)  # fmt: skip


def _compare_p(seed: int, fast: bool) -> bool:
    from .stats import compare_correlations

    cube = _two_rois(seed, [0.15, 0.15])
    x = cube.response.rename(channel="roi").assign_coords(roi=["IT", "V4"])
    res = compare_correlations(x, cube.memorability, [("IT", "V4")], groups="concept",
                               method=("pearson", "spearman")[seed % 2], seed=seed)  # fmt: skip
    return bool(float(res.p[0]) <= ALPHA)


def _compare_ci(seed: int, fast: bool) -> bool:
    from .stats import compare_correlations

    cube = _two_rois(seed, [0.25, 0.10], n_concepts=100 + seed % 101)
    x = cube.response.rename(channel="roi").assign_coords(roi=["IT", "V1"])
    res = compare_correlations(x, cube.memorability, [("IT", "V1")], groups="concept",
                               seed=seed)  # fmt: skip
    return bool(float(res.ci_low[0]) <= 0.15 <= float(res.ci_high[0]))


LATENCY_TIMES = np.arange(-50.0, 300.0, 10.0)
"""Time bins (ms) of the latency checks; the planted effect peaks at 150 ms."""

LATENCY_PROFILE = np.exp(-0.5 * ((LATENCY_TIMES - 150.0) / 40.0) ** 2)
"""The planted time course of the latency checks (half its peak at about 103 ms)."""


def _latency(seed: int, fast: bool) -> tuple[xr.Dataset, float, float]:
    from .stats import latency, onset_peak

    s = _structure(seed) | {"n_concepts": 100 + seed % 101}
    cube = simulate_concepts(seed=seed, rho=0.3, times=LATENCY_TIMES, profile=LATENCY_PROFILE,
                             smoothness=4, **s)  # fmt: skip
    res = latency(cube.response.rename(channel="area"), cube.memorability, groups="concept",
                  n_permutations=19, n_bootstrap=199 if fast else 999, seed=seed)  # fmt: skip
    onset, peak = onset_peak(0.3 * LATENCY_PROFILE, LATENCY_TIMES)
    return res.isel(area=0), float(onset), float(peak)


def _latency_onset_ci(seed: int, fast: bool) -> bool:
    res, onset, _ = _latency(seed, fast)
    return bool(float(res.onset_low) <= onset <= float(res.onset_high))


def _latency_peak_ci(seed: int, fast: bool) -> bool:
    res, _, peak = _latency(seed, fast)
    return bool(float(res.peak_low) <= peak <= float(res.peak_high))


def _meta_effects(seed: int, mu_r: float) -> Any:
    """Per-individual effects (r, CI, n) of 3-8 individuals around ``tanh(mu_z)``."""
    import pandas as pd

    from .stats import correlate

    rng = np.random.default_rng([seed, 271])
    k = int(rng.integers(3, 9))
    tau = (0.0, 0.05, 0.1)[seed % 3]
    rows = []
    for i in range(k):
        rho = float(np.tanh(np.arctanh(mu_r) + tau * rng.standard_normal()))
        cube = simulate_concepts(seed=seed * 10 + i, rho=rho, **_structure(seed * 10 + i))
        res = correlate(cube.response[:, 0], cube.memorability, groups="concept",
                        n_permutations=0, n_bootstrap=1, seed=seed)  # fmt: skip
        rows.append({"subject": f"s{i}", "r": float(res.r), "ci_low": float(res.ci_low),
                     "ci_high": float(res.ci_high), "n": int(res.n)})  # fmt: skip
    return pd.DataFrame(rows)


def _meta_p(seed: int, fast: bool) -> bool:
    from .stats import pool_effects

    pooled = pool_effects(_meta_effects(seed, 0.0))
    return bool(float(pooled.p.iloc[0]) <= ALPHA)


def _meta_ci(seed: int, fast: bool) -> bool:
    from .stats import pool_effects

    pooled = pool_effects(_meta_effects(seed, REAL_EFFECT))
    return bool(float(pooled.ci_low.iloc[0]) <= REAL_EFFECT <= float(pooled.ci_high.iloc[0]))


def _pooled_diffs(seed: int, rho: list[float]) -> Any:
    """Group rows of r_a - r_b over 2-6 individuals, each compared on its own images."""
    import pandas as pd

    from .pipeline.analyses import pooled_comparison_rows
    from .stats import compare_correlations

    rng = np.random.default_rng([seed, 409])
    rows = []
    for i in range(int(rng.integers(2, 7))):
        sub = seed * 10 + i
        cube = _two_rois(sub, rho, n_concepts=100 + sub % 101)
        x = cube.response.rename(channel="roi").assign_coords(roi=["IT", "V1"])
        res = compare_correlations(x, cube.memorability, [("IT", "V1")], groups="concept",
                                   seed=sub)  # fmt: skip
        rows.append({"dataset": "sim", "subject": f"s{i}", "pair": "IT-V1", "roi_a": "IT",
                     "roi_b": "V1", "r_a": float(res.r_a[0]), "r_b": float(res.r_b[0]),
                     "diff": float(res["diff"][0]), "ci_low": float(res.ci_low[0]),
                     "ci_high": float(res.ci_high[0]), "n": int(res.n)})  # fmt: skip
    return pooled_comparison_rows(pd.DataFrame(rows)).iloc[0]


def _meta_diff_p(seed: int, fast: bool) -> bool:
    return bool(float(_pooled_diffs(seed, [0.15, 0.15])["p"]) <= ALPHA)


def _meta_diff_ci(seed: int, fast: bool) -> bool:
    row = _pooled_diffs(seed, [0.25, 0.10])
    return bool(float(row["ci_low"]) <= 0.15 <= float(row["ci_high"]))


def _meta_onset_ci(seed: int, fast: bool) -> bool:
    import pandas as pd

    from .pipeline.analyses import pooled_latency_rows

    rng = np.random.default_rng([seed, 433])
    rows, onset = [], np.nan
    for i in range(int(rng.integers(2, 5))):
        res, onset, _ = _latency(seed * 10 + i, fast)
        rows.append({"dataset": "sim", "subject": f"s{i}", "roi": "IT",
                     "onset": float(res.onset), "onset_low": float(res.onset_low),
                     "onset_high": float(res.onset_high)})  # fmt: skip
    row = pooled_latency_rows(pd.DataFrame(rows)).iloc[0]
    return bool(float(row["onset_low"]) <= onset <= float(row["onset_high"]))


def _partition_p(seed: int, fast: bool) -> bool:
    from .models import variance_partition

    cube, cov = _confounded(seed, 0.0, n_channels=4)
    out = variance_partition(_features(cube), "memorability", cov, groups="concept",
                             cv=3 if fast else 5, n_permutations=19 if fast else 39,
                             seed=seed)  # fmt: skip
    return bool(float(out.p_unique_neural.iloc[0]) <= ALPHA)


CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check("correlate_p", "fpr", "correlate: permutation p (Pearson/Spearman, concepts)",
              _correlate_p),
        Check("correlate_ci", "coverage", "correlate: jackknife 95% CI, r = 0.10, 150-300 concepts",
              _correlate_ci),
        Check("correlation_map_fwer", "fpr", "correlation_map: any p_fdr of 8 null channels",
              _correlation_map_fwer),
        Check("timecourse_cluster_fwer", "fpr",
              "cluster_test: any cluster of 3 ROIs x 30-60 bins", _cluster_fwer),
        Check("fit_models_p", "fpr", "fit_models: chance_p (grouped CV, concept permutations)",
              _fit_models_p),
        Check("fit_models_sequential_p", "fpr",
              "fit_models: linear_svc, sequential chance_p (Besag-Clifford early stopping)",
              _fit_models_sequential_p),
        Check("cross_decode_p_source_null", "fpr",
              "cross_decode: p when the monkey decoder learns nothing", _decode_source_null),
        Check("cross_decode_p_target_null", "fpr",
              "cross_decode: p when the human responses carry no memorability",
              _decode_target_null),
        Check("rsa_mantel_p", "fpr", "rsa: Mantel p, species share only concept structure",
              _rsa_p),
        Check("shared_effects_p", "fpr", "shared_effects: p of the macaque area", _shared_effects_p),
        Check("partial_correlate_p", "fpr",
              "partial_correlate: p, 1-3 confounding covariates, partial r = 0", _partial_p),
        Check("partial_correlate_ci", "coverage",
              "partial_correlate: jackknife 95% CI, partial r = 0.10", _partial_ci),
        Check("within_concept_p", "fpr",
              "within_concept_correlate: p, effect between concepts only", _within_p),
        Check("within_concept_ci", "coverage",
              "within_concept_correlate: jackknife 95% CI, within r, 400-800 concepts",
              _within_ci),
        Check("compare_p", "fpr",
              "compare_correlations: p of r_a = r_b = 0.15, correlated ROIs", _compare_p),
        Check("compare_ci", "coverage",
              "compare_correlations: 95% CI of 0.25 - 0.10", _compare_ci),
        Check("latency_onset_ci", "coverage",
              "latency: bootstrap 95% CI of the half-peak onset", _latency_onset_ci),
        Check("latency_peak_ci", "coverage",
              "latency: bootstrap 95% CI of the peak time", _latency_peak_ci),
        Check("meta_p", "fpr", "pool_effects: HKSJ p, 3-8 individuals, mean r = 0", _meta_p),
        Check("meta_ci", "coverage",
              "pool_effects: HKSJ 95% CI, 3-8 individuals, mean r = 0.10", _meta_ci),
        Check("meta_diff_p", "fpr",
              "pooled_comparison_rows: HKSJ p of r_a - r_b = 0, 2-6 individuals", _meta_diff_p),
        Check("meta_diff_ci", "coverage",
              "pooled_comparison_rows: HKSJ 95% CI of r_a - r_b = 0.15, 2-6 individuals",
              _meta_diff_ci),
        Check("meta_onset_ci", "coverage",
              "pooled_latency_rows: HKSJ 95% CI of the onset, 2-4 individuals", _meta_onset_ci),
        Check("variance_partition_p", "fpr",
              "variance_partition: p of unique neural R2, covariates explain all", _partition_p),
    )
}  # fmt: skip
"""Every calibration check, by name."""


def run_check(name: str, n_sims: int, *, fast: bool = True, seed: int = 0) -> CheckResult:
    """Run ``n_sims`` replicates of a check (seeds ``seed .. seed + n_sims - 1``).

    Parameters
    ----------
    name : str
        A key of :data:`CHECKS`.
    n_sims : int
        Simulated datasets.
    fast : bool
        The test-suite settings (fewer permutations and bootstrap samples); False: the
        benchmark's.
    seed : int
        First seed: other seeds give other datasets and structures.

    Returns
    -------
    CheckResult

    Examples
    --------
    >>> res = run_check("correlate_p", n_sims=20, fast=True)
    >>> res.kind, res.n, res.nominal
    ('fpr', 20, 0.05)
    """
    check = CHECKS[name]
    start = time.perf_counter()
    hits = sum(check.replicate(int(seed) + i, fast) for i in range(int(n_sims)))
    low, high = binomial_interval(hits, int(n_sims))
    return CheckResult(
        check=name,
        kind=check.kind,
        n=int(n_sims),
        count=int(hits),
        rate=hits / int(n_sims),
        low=low,
        high=high,
        nominal=check.nominal,
        seconds=time.perf_counter() - start,
    )
