"""Synthetic TVSD files for one monkey: normMUA, MUA trials, image logs, channel mapping.

Model. For a trial of image ``i`` on day ``d``, the mean of physical channel
``c`` (area ``a``) over the area's window ``W_a`` (V1 25-125, V4 50-150,
IT 75-175 ms, bins ``start <= t < end``) is::

    win[c] = m[d, c] + sigma[c] * (gain[c] * z_i + tau[c] * image[c, i] + nu[c] * delta)

with ``m`` the channel's baseline + day offset + evoked response, ``z_i`` the
z-scored memorability (NaN -> 0), ``image`` a stable image response, ``delta``
trial noise (each with half its variance shared by the channels of an area, so
area means are not unrealistically clean), and ``gain**2 + tau**2 + nu**2 = 1``:
over a day's test trials a channel's window mean has standard deviation about
``sigma``, so after the per-day z-scoring ``gain`` is (approximately) the slope
of ``normMUA`` on z-scored memorability. 15% of the channels are unresponsive
(no evoked, image or memorability signal; low SNR and reliability). The
1-ms ``ALLMUA`` time course adds an evoked response with area latencies
(V1 ~40, V4 ~65, IT ~90 ms), a memorability effect ``gain * z * k_a(t)`` that is
zero before 50 ms (IT: rising after ~100 ms, peak near 175 ms; V4 earlier),
and per-bin noise (half shared by the channels of an area) whose window mean
is set to ``nu * delta``, so the window means of ``ALLMUA`` equal ``win`` exactly.

normMUA normalisation: per (channel, day), mean and standard deviation (ddof 1)
of ``win`` over that day's test trials; each trial's ``win`` is z-scored with
them. This equals z-scoring the time course with one constant pair per
(channel, day) and then averaging over the window.

Random numbers are keyed by image, repeat and trial, never by block, so the
output does not depend on the block sizes.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import scipy.io

from ..readers.formats.hdf5 import row_block
from ..readers.formats.matlab import create_double, mat_file, write_cellstr_struct, write_double
from ..schema import AREA_WINDOWS
from .things import Stimuli, base_seed, key_of, rng_for, zscore

__all__ = ["AREAS", "TVSD_GAINS", "write_tvsd_monkey"]

TVSD_GAINS = {"V1": 0.0, "V4": 0.25, "IT": 0.6}
"""Default planted gains: slope of normMUA on z-scored memorability, per area."""

AREAS = {
    "N": {"V1": (0, 512), "V4": (512, 768), "IT": (768, 1024)},
    "F": {"V1": (0, 512), "IT": (512, 832), "V4": (832, 1024)},
}
"""0-based half-open physical channel ranges per monkey (after the mapping)."""

LATENCY_MS = {"V1": 40.0, "V4": 65.0, "IT": 90.0}
EFFECT_MS = {"V1": (80.0, 140.0), "V4": (90.0, 140.0), "IT": (120.0, 175.0)}  # half-rise, peak
N_CHANNELS = 1024
CHUNK_TRIALS = 32
IMAGE_TAU = 0.5
SHARED = 0.5  # share of the image response and of the trial noise common to an area


def effect_course(area: str, tb: np.ndarray) -> np.ndarray:
    """Time course of the memorability effect (max 1): 0 before 50 ms, rise, peak, decay.

    Examples
    --------
    >>> k = effect_course("IT", np.array([0.0, 100.0, 175.0]))
    >>> [round(float(v), 2) for v in k]
    [0.0, 0.16, 1.0]
    """
    rise, peak = EFFECT_MS[area]
    k = 1 / (1 + np.exp(-(tb - rise) / 12.0)) * np.exp(-(np.maximum(0, tb - peak) ** 2) / 3200.0)
    k = k / (1 / (1 + np.exp(-(peak - rise) / 12.0)))
    return np.where(tb < 50, 0.0, k)


class _Channels:
    """Per physical channel parameters (small arrays of 1024)."""

    def __init__(self, monkey: str, tb: np.ndarray, n_days: int, gains: dict, rng):
        areas = AREAS[monkey]
        self.area = np.empty(N_CHANNELS, dtype=object)
        self.area_idx = np.empty(N_CHANNELS, dtype=np.int64)
        for a, (lo, hi) in areas.items():
            self.area[lo:hi] = a
            self.area_idx[lo:hi] = list(AREAS["N"]).index(a)
        resp = rng.random(N_CHANNELS) > 0.15
        self.snr = np.where(resp, rng.uniform(2, 10, N_CHANNELS), rng.uniform(0.3, 1.5, N_CHANNELS))
        self.sigma = rng.uniform(0.08, 0.2, N_CHANNELS)
        self.gain = np.array([gains[a] for a in self.area]) * resp
        self.tau = IMAGE_TAU * resp
        self.nu = np.sqrt(1 - self.gain**2 - self.tau**2)
        self.base = rng.uniform(0.5, 1.5, N_CHANNELS)
        self.amp = self.snr * self.sigma * self.nu
        self.lat = np.array([LATENCY_MS[a] for a in self.area]) + rng.normal(0, 6, N_CHANNELS)
        self.offset = self.sigma * rng.normal(0, 0.5, (n_days, N_CHANNELS))
        x = (tb[:, None] - self.lat[None, :]) / 25.0
        self.evoked = np.where(x > 0, x * np.exp(1 - x), 0.0)  # (n_tb, 1024), peak 1
        course = np.zeros((len(tb), N_CHANNELS))
        self.n_win = np.zeros(N_CHANNELS)
        self.evoked_win = np.zeros(N_CHANNELS)
        self.spans = []  # (first channel, end channel, first window bin, end window bin)
        for a, (lo, hi) in areas.items():
            ws, we = AREA_WINDOWS[a]
            w = np.flatnonzero((tb >= ws) & (tb < we))
            if not len(w):
                raise ValueError(f"tb: no time bin in the {a} window {ws}-{we} ms")
            self.spans.append((lo, hi, int(w[0]), int(w[-1]) + 1))
            k = effect_course(a, tb)
            course[:, lo:hi] = (k / k[w].mean())[:, None]
            self.n_win[lo:hi] = len(w)
            self.evoked_win[lo:hi] = self.evoked[w, lo:hi].mean(0)
        self.mean = self.base + self.offset + self.amp * self.evoked_win  # (n_days, 1024)
        self.lats = self.lat + rng.normal(0, 3, (n_days, N_CHANNELS))
        self.snr_days = self.snr * np.exp(rng.normal(0, 0.1, (n_days, N_CHANNELS)))
        # time courses (n_tb, 1024) used for every trial
        self.static = self.base + self.amp * self.evoked
        self.effect = self.sigma * self.gain * course
        self.image_shape = self.sigma * self.tau * self.evoked / self.evoked_win
        self.noise_sd = self.sigma * self.nu * np.sqrt(self.n_win)


def _image_draws(seed, mk, split, idx, n_reps, ch) -> tuple[np.ndarray, np.ndarray]:
    """Stable image response (1024) and per-repeat trial noise (n_reps, 1024) of one image.

    Both have unit variance per channel; half of it is shared by the channels of an area.
    """
    rng = rng_for(seed, 31, mk, split, idx)
    a = np.sqrt(SHARED)
    b = np.sqrt(1 - SHARED)
    image = a * rng.normal(size=3)[ch.area_idx] + b * rng.normal(size=N_CHANNELS)
    shared = rng.normal(size=(n_reps, 3))[:, ch.area_idx]
    return image, a * shared + b * rng.normal(size=(n_reps, N_CHANNELS))


def _signal(ch: _Channels, z, image, delta) -> np.ndarray:
    """The unit-free part of the window mean: gain*z + tau*image + nu*delta."""
    return ch.gain * z + ch.tau * image + ch.nu * delta


def _trial_table(n_train, n_test, n_reps, n_days, rng) -> np.ndarray:
    """ALLMAT rows [trial_idx train_idx test_idx rep count correct day], shuffled within days."""
    rows = [(j + 1, 0, 1, day + 1) for j, day in _spread(n_train, n_days, rng)]
    rows += [
        (0, i + 1, r + 1, r * n_days // n_reps + 1) for i in range(n_test) for r in range(n_reps)
    ]
    rows = np.array(rows, dtype=np.float64)
    order = np.lexsort((rng.random(len(rows)), rows[:, 3]))
    rows = rows[order]
    n = len(rows)
    count = np.zeros(n)
    for d in np.unique(rows[:, 3]):
        m = rows[:, 3] == d
        count[m] = np.arange(m.sum()) % 4 + 1
    return np.column_stack([np.arange(1, n + 1), rows[:, :3], count, np.ones(n), rows[:, 3]])


def _spread(n: int, n_days: int, rng) -> list[tuple[int, int]]:
    parts = np.array_split(rng.permutation(n), n_days)
    return sorted((int(j), d) for d, part in enumerate(parts) for j in part)


def write_tvsd_monkey(
    outdir: str | os.PathLike,
    monkey: str,
    *,
    n_concepts: int,
    n_test: int,
    n_reps: int,
    n_timebins: int = 300,
    bin_ms: float = 1.0,
    n_days: int = 3,
    names: Stimuli | None = None,
    rng: int | np.random.Generator | None = 0,
    gains: dict[str, float] | None = None,
    trials: bool = True,
    images_per_concept: int = 12,
    block_trials: int | None = None,
    block_rows: int | None = None,
    compression: str | None = None,
) -> dict:
    """Write one monkey's TVSD files under ``outdir`` (the ``monkeyN`` folder).

    Parameters
    ----------
    outdir : path
        The monkey folder, e.g. ``OUT/tvsd/monkeyN`` (created if needed).
    monkey : {"N", "F"}
        Selects the channel-to-area order (``AREAS``) and keys the random streams.
    n_concepts, n_test, n_reps : int
        Train concepts (``images_per_concept`` images each, shown once); test
        images and their repeats.
    n_timebins, bin_ms : int, float
        Time bins of ``tb``, which starts at -100 ms.
    n_days : int
        Recording days (at most ``n_reps``; repeat ``r`` of every test image is on
        day ``r * n_days // n_reps``).
    names : Stimuli, optional
        Names and memorability; generated from the seed when omitted.
    rng : int or numpy.random.Generator
        The seed.
    gains : dict, optional
        Per area (``TVSD_GAINS`` by default), each in [-0.8, 0.8].
    trials : bool
        Also write ``THINGS_MUA_trials.mat`` (``ALLMUA`` float64, recording order).
    block_trials, block_rows : int, optional
        Trials per ``ALLMUA`` block (rounded up to a multiple of its 32-trial chunks)
        and rows per ``train_MUA`` block; by default ~64 MB each, whatever the sizes.
    compression : str, optional
        HDF5 filter for ``ALLMUA`` (e.g. ``"gzip"``); none by default, for speed.

    Returns
    -------
    dict
        Truth: sizes, areas, windows, gains, time course, normalisation.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     t = write_tvsd_monkey(d, "F", n_concepts=2, n_test=4, n_reps=3, n_timebins=30,
    ...                           bin_ms=10, trials=False)
    >>> t["n_train"], t["areas_0based_halfopen"]["IT"]
    (24, [512, 832])
    """
    monkey = monkey.removeprefix("monkey")
    if monkey not in AREAS:
        raise ValueError(f"monkey: expected one of {sorted(AREAS)}, got {monkey!r}")
    if not 1 <= n_days <= n_reps:
        raise ValueError(f"n_days: must be between 1 and n_reps ({n_reps}), got {n_days}")
    gains = {**TVSD_GAINS, **(gains or {})}
    if any(abs(g) > 0.8 for g in gains.values()):
        raise ValueError(f"gains: each must be in [-0.8, 0.8], got {gains}")
    out = Path(outdir)
    (out / "_logs").mkdir(parents=True, exist_ok=True)
    seed, mk = base_seed(rng), key_of(monkey)
    k = images_per_concept
    names = names or Stimuli.generate(n_concepts + n_test, seed=seed, min_images=k)
    train, test = names.train_images(n_concepts, k), names.test_images(n_test, k)
    tb = -100.0 + np.arange(n_timebins) * float(bin_ms)
    ch = _Channels(monkey, tb, n_days, gains, rng_for(seed, 30, mk))
    z, mz, sz = zscore([names.memorability.get(img, np.nan) for _, img in train + test])
    mapping = rng_for(seed, 32, mk).permutation(N_CHANNELS) + 1
    allmat = _trial_table(len(train), len(test), n_reps, n_days, rng_for(seed, 33, mk))
    _write_logs(out / "_logs", train, test, mapping)
    ctx = (seed, mk, ch, z, allmat)
    _write_norm(out / "THINGS_normMUA.mat", ctx, len(train), len(test), n_reps, tb, block_rows)
    if trials:
        _write_trials(out / "THINGS_MUA_trials.mat", ctx, tb, mapping, block_trials, compression)
    return {
        "n_train": len(train), "n_test": len(test), "n_reps": n_reps, "n_days": n_days,
        "n_trials": len(allmat), "n_timebins": n_timebins, "bin_ms": float(bin_ms),
        "tb_ms": [float(tb[0]), float(tb[-1])], "planted_gain": gains,
        "areas_0based_halfopen": {a: list(r) for a, r in AREAS[monkey].items()},
        "window_ms": {a: list(w) for a, w in AREA_WINDOWS.items()},
        "latency_ms": LATENCY_MS, "effect_half_rise_and_peak_ms": EFFECT_MS,
        "n_responsive": {a: int((ch.tau > 0)[ch.area == a].sum()) for a in AREAS[monkey]},
        "memorability_z": {"mean": mz, "sd": sz},
        "normalisation": "per (channel, day): mean and sd (ddof 1) of the window mean over "
        "that day's test trials; exact with respect to ALLMUA",
        "trials": bool(trials),
    }  # fmt: skip


def _write_logs(logs: Path, train, test, mapping) -> None:
    with mat_file(logs / "things_imgs.mat") as f:
        for key, items in (("train_imgs", train), ("test_imgs", test)):
            write_cellstr_struct(
                f,
                key,
                {
                    "class": [c for c, _ in items],
                    "things_path": [f"{c}\\{img}" for c, img in items],
                    "local_path": [f"C:\\stimuli\\things\\{c}\\{img}" for c, img in items],
                },
            )
    scipy.io.savemat(
        logs / "1024chns_mapping_20220105.mat", {"mapping": mapping[None, :].astype(np.float64)}
    )


def _test_signals(ctx, n_train, n_test, n_reps) -> np.ndarray:
    """Unit-free window signal of every test trial, (n_reps, n_test, 1024) (small)."""
    seed, mk, ch, z, _ = ctx
    out = np.empty((n_reps, n_test, N_CHANNELS))
    for i in range(n_test):
        image, delta = _image_draws(seed, mk, 2, i, n_reps, ch)
        out[:, i] = _signal(ch, z[n_train + i], image, delta)
    return out


def _write_norm(path, ctx, n_train, n_test, n_reps, tb, block_rows) -> None:
    seed, mk, ch, z, allmat = ctx
    n_days = ch.mean.shape[0]
    test_days = np.arange(n_reps) * n_days // n_reps
    win = ch.mean[test_days][:, None, :] + ch.sigma * _test_signals(ctx, n_train, n_test, n_reps)
    mu = np.stack([win[test_days == d].reshape(-1, N_CHANNELS).mean(0) for d in range(n_days)])
    sd = np.stack(
        [win[test_days == d].reshape(-1, N_CHANNELS).std(0, ddof=1) for d in range(n_days)]
    )
    reps = (win - mu[test_days][:, None, :]) / sd[test_days][:, None, :]
    train_day = np.zeros(n_train, dtype=np.int64)
    is_train = allmat[:, 1] > 0
    train_day[allmat[is_train, 1].astype(np.int64) - 1] = allmat[is_train, 6].astype(np.int64) - 1
    rows = block_rows or row_block(N_CHANNELS, 8)
    with mat_file(path) as f:
        dset = create_double(f, "train_MUA", (n_train, N_CHANNELS))
        for start in range(0, n_train, rows):
            stop = min(n_train, start + rows)
            block = np.empty((stop - start, N_CHANNELS))
            for j in range(start, stop):
                image, delta = _image_draws(seed, mk, 1, j, 1, ch)
                d = train_day[j]
                w = ch.mean[d] + ch.sigma * _signal(ch, z[j], image, delta[0])
                block[j - start] = (w - mu[d]) / sd[d]
            dset[start:stop] = block
        write_double(f, "test_MUA", reps.mean(0))
        write_double(f, "test_MUA_reps", reps)
        write_double(f, "SNR", ch.snr_days)
        write_double(f, "SNR_max", ch.snr_days.max(0)[None, :])
        write_double(f, "lats", ch.lats)
        write_double(f, "reliab", _reliab(reps))
        write_double(f, "oracle", _oracle(reps)[None, :])
        write_double(f, "tb", tb[:, None])


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column of two (n, channels) arrays."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.divide((a * b).sum(0), den, out=np.zeros(a.shape[1]), where=den > 0)


def _reliab(reps: np.ndarray) -> np.ndarray:
    """Correlation across test images for every pair of repeats: (n_pairs, 1024)."""
    pairs = itertools.combinations(range(reps.shape[0]), 2)
    return np.stack([_corr(reps[i], reps[j]) for i, j in pairs])


def _oracle(reps: np.ndarray) -> np.ndarray:
    """Mean over repeats of r(repeat, mean of the other repeats) across test images."""
    n = reps.shape[0]
    total = reps.sum(0)
    return np.mean([_corr(reps[r], (total - reps[r]) / (n - 1)) for r in range(n)], axis=0)


def _write_trials(path, ctx, tb, mapping, block_trials, compression) -> None:
    seed, mk, ch, z, allmat = ctx
    n_tb, n_trials = len(tb), len(allmat)
    n_train = int((allmat[:, 1] > 0).sum())
    # Chunks of one time bin x all channels x 32 trials: trial blocks are written as whole
    # chunks, and a slab of whole time bins (how readers stream ALLMUA) reads whole chunks.
    step = min(CHUNK_TRIALS, n_trials)
    size = block_trials or row_block(n_tb * N_CHANNELS, 8)
    size = -(-size // step) * step
    chunks = (1, N_CHANNELS, step)
    recording = np.argsort(mapping - 1)  # physical channel at each recording position
    test_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with mat_file(path) as f:
        write_double(f, "ALLMAT", allmat.T)
        write_double(f, "tb", tb[:, None])
        dset = create_double(f, "ALLMUA", (n_tb, N_CHANNELS, n_trials), chunks, compression)
        for start in range(0, n_trials, size):
            stop = min(n_trials, start + size)
            block = np.empty((stop - start, n_tb, N_CHANNELS))
            for n in range(start, stop):
                block[n - start] = _trial(ctx, n, n_train, test_cache)[:, recording]
            dset[:, :, start:stop] = np.ascontiguousarray(block.transpose(1, 2, 0))


def _trial(ctx, n, n_train, test_cache) -> np.ndarray:
    """One trial's time course (n_tb, 1024), physical channel order."""
    seed, mk, ch, z, allmat = ctx
    _, train_idx, test_idx, rep, _, _, day = allmat[n].astype(np.int64)
    if train_idx:
        image, delta = _image_draws(seed, mk, 1, train_idx - 1, 1, ch)
        zi, delta = z[train_idx - 1], delta[0]
    else:
        if test_idx not in test_cache:
            n_reps = int(allmat[:, 3].max())
            test_cache[test_idx] = _image_draws(seed, mk, 2, test_idx - 1, n_reps, ch)
        image, deltas = test_cache[test_idx]
        zi, delta = z[n_train + test_idx - 1], deltas[rep - 1]
    rng = rng_for(seed, 34, mk, n)
    shared = rng.normal(size=(len(ch.static), 3))
    x = rng.normal(size=ch.static.shape)
    x *= np.sqrt(1 - SHARED)
    x += np.sqrt(SHARED) * shared[:, ch.area_idx]
    x *= ch.noise_sd
    target = ch.sigma * ch.nu * delta  # the window mean of the noise
    for lo, hi, w0, w1 in ch.spans:
        x[w0:w1, lo:hi] += target[lo:hi] - x[w0:w1, lo:hi].mean(0)
    x += ch.static
    x += ch.offset[day - 1]
    x += zi * ch.effect
    x += ch.image_shape * image
    return x
