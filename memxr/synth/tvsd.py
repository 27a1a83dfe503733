"""Synthetic TVSD files for one monkey: normMUA, MUA trials, image logs, channel mapping.

Model. For a trial of image ``i`` on day ``d``, the mean of physical channel ``c``
(area ``a``) over the area's window ``W_a`` (V1 25-125, V4 50-150, IT 75-175 ms,
bins ``start <= t < end``) is::

    win[c] = m[d, c] + sigma[d, c] * x[c]
    x[c] = a_c M + b_c L + g_c G + h_c C_a + sum_k f_ck F_k + u_c U_c + noise

with the image latents of :mod:`memxr.synth.model`: ``M`` true memorability, ``L``
the low-level covariate, ``G`` a global image response, ``C_a`` the area's response
(shared by the two monkeys), ``F`` image features (V1 low-level, IT high-level,
V4 both) with random channel loadings, ``U_c`` the channel's own response, and
trial noise of variance 1 (10 % shared by all channels, 20 % by an area). 15 % of
the channels are unresponsive (no image signal; low SNR and reliability).
``m[d, c]`` is the channel's offset (``base``, 0.5-1.5, much larger than its
signal scale ``sigma``, 0.08-0.2) plus a day drift (a random walk of sd
``sigma`` per day) plus its evoked response; ``sigma[d, c]`` includes a gain
that changes from day to day (log sd 0.25); half the variance of the day steps
and of the log gains is shared by the 64 channels of a Utah array. Raw magnitudes are therefore
dominated by channel offsets and day drifts.

The 1-ms ``ALLMUA`` time course adds an evoked response with area latencies
(V1 ~40, V4 ~65, IT ~90 ms); the image terms follow the evoked shape, the
memorability term ``a_c M`` follows ``k_a(t)`` (zero before 50 ms; IT rising
after ~100 ms, peak near 175 ms; V4 earlier), and per-bin noise (its shares as
above) has its window mean set to the trial noise, so the window means of
``ALLMUA`` equal ``win`` exactly.

normMUA follows the dataset's ``norm_MUA.m``: per (channel, day), the mean and the
standard deviation (ddof 1) of the raw values over that day's test trials *and*
the area window's time bins; every trial's window mean is z-scored with them.
The memorability loadings ``a_c = alpha_a + jitter`` of responsive channels
(none in areas without a planted effect) and the covariate loadings
``b_c = beta_a`` are solved, given the realised normalisation constants, so that
the mean over an area's channels of ``train_MUA`` has exactly the planted
population correlation with the memorability score (and with the covariate):
see :mod:`memxr.synth.model`.

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
from .model import K_HIGH, K_LOW, InfeasibleTarget, Model, Moments, partial, solve
from .things import Stimuli, base_seed, key_of, rng_for

__all__ = ["AREAS", "write_tvsd_monkey"]

AREAS = {
    "N": {"V1": (0, 512), "V4": (512, 768), "IT": (768, 1024)},
    "F": {"V1": (0, 512), "IT": (512, 832), "V4": (832, 1024)},
}
"""0-based half-open physical channel ranges per monkey (after the mapping)."""

AREA_NAMES = ("V1", "V4", "IT")
LATENCY_MS = {"V1": 40.0, "V4": 65.0, "IT": 90.0}
EFFECT_MS = {"V1": (80.0, 140.0), "V4": (90.0, 140.0), "IT": (120.0, 175.0)}  # half-rise, peak
N_CHANNELS = 1024
CHUNK_TRIALS = 32
RESPONSIVE = 0.85  # share of responsive channels
LOADINGS = {"g": 0.30, "h": 0.35, "f": 0.35, "u": 0.35}
"""Unit-free loadings of responsive channels: global image response, area response,
image features (total sd over the features), own image response."""
NOISE_SHARES = (0.10, 0.20)  # shares of the trial noise common to all channels, to an area
DELTA_SD = 0.05  # sd of the channel jitter of the memorability loading in effect areas
DRIFT_SD = 1.0  # day-to-day step of a channel's offset, in units of its sigma
GAIN_SD = 0.25  # sd of a channel's log gain on a day
# half the variance of the day steps and of the log gains is shared by a Utah array (64)


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
    """Per physical channel parameters (small arrays of 1024 and of days x 1024)."""

    def __init__(self, monkey: str, tb: np.ndarray, n_days: int, model: Model, rng):
        areas = AREAS[monkey]
        effects = model.effects("tvsd")
        self.area = np.empty(N_CHANNELS, dtype=object)
        self.area_idx = np.empty(N_CHANNELS, dtype=np.int64)
        for a, (lo, hi) in areas.items():
            self.area[lo:hi] = a
            self.area_idx[lo:hi] = AREA_NAMES.index(a)
        resp = rng.random(N_CHANNELS) < RESPONSIVE
        self.r = resp.astype(np.float64)
        self.snr = np.where(resp, rng.uniform(2, 10, N_CHANNELS), rng.uniform(0.3, 1.5, N_CHANNELS))
        self.sigma = rng.uniform(0.08, 0.2, N_CHANNELS)
        self.base = rng.uniform(0.5, 1.5, N_CHANNELS)
        self.amp = self.snr * self.sigma
        self.lat = np.array([LATENCY_MS[a] for a in self.area]) + rng.normal(0, 6, N_CHANNELS)
        array = np.arange(N_CHANNELS) // 64  # drifts and gains are partly shared by an array
        n_arrays = N_CHANNELS // 64
        walk = np.sqrt(0.5) * rng.normal(0, DRIFT_SD, (n_days, n_arrays))[:, array]
        walk += np.sqrt(0.5) * rng.normal(0, DRIFT_SD, (n_days, N_CHANNELS))
        self.drift = self.sigma * np.cumsum(walk, 0)
        log_gain = np.sqrt(0.5) * rng.normal(0, GAIN_SD, (n_days, n_arrays))[:, array]
        self.gain = np.exp(log_gain + np.sqrt(0.5) * rng.normal(0, GAIN_SD, (n_days, N_CHANNELS)))
        self.lats = self.lat + rng.normal(0, 3, (n_days, N_CHANNELS))
        self.snr_days = self.snr * np.exp(rng.normal(0, 0.1, (n_days, N_CHANNELS)))
        # image loadings (unit-free), responsive channels only
        f_low = rng.standard_normal((N_CHANNELS, K_LOW)) / np.sqrt(K_LOW)
        f_high = rng.standard_normal((N_CHANNELS, K_HIGH)) / np.sqrt(K_HIGH)
        jitter = rng.standard_normal(N_CHANNELS)
        self.g, self.h, self.u = (LOADINGS[k] * self.r for k in ("g", "h", "u"))
        low = np.array([{"V1": 1.0, "V4": 0.5, "IT": 0.0}[a] for a in self.area])
        self.f = (
            LOADINGS["f"]
            * self.r[:, None]
            * np.hstack([np.sqrt(low)[:, None] * f_low, np.sqrt(1 - low)[:, None] * f_high])
        )
        in_effect = np.array([a in effects for a in self.area])
        self.delta = DELTA_SD * jitter * self.r * in_effect
        self.alpha = np.zeros(len(AREA_NAMES))
        self.beta = np.zeros(len(AREA_NAMES))
        # time courses
        x = (tb[:, None] - self.lat[None, :]) / 25.0
        self.evoked = np.where(x > 0, x * np.exp(1 - x), 0.0)  # (n_tb, 1024), peak 1
        self.course = np.zeros((len(tb), N_CHANNELS))
        self.window = np.zeros((len(tb), N_CHANNELS), dtype=bool)
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
            self.course[:, lo:hi] = (k / k[w].mean())[:, None]
            self.window[w, lo:hi] = True
            self.n_win[lo:hi] = len(w)
            self.evoked_win[lo:hi] = self.evoked[w, lo:hi].mean(0)
        self.shape = self.evoked / self.evoked_win  # window mean 1
        # offsets: m[d, c] is the population mean of a window on day d
        self.mean = self.base + self.drift + self.gain * self.amp * self.evoked_win

    def scale(self, day: int) -> np.ndarray:
        """``sigma`` of every channel on ``day`` (0-based)."""
        return self.sigma * self.gain[day]

    def a(self) -> np.ndarray:
        return self.alpha[self.area_idx] * self.r + self.delta

    def b(self) -> np.ndarray:
        return self.beta[self.area_idx] * self.r


class _Monkey:
    """What every trial needs: seed, channels, the image latents, the trial table."""

    def __init__(self, seed, mk, ch: _Channels, names: Stimuli, images: list[str], allmat, n_train):
        self.seed, self.mk, self.ch, self.allmat, self.n_train = seed, mk, ch, allmat, n_train
        feats = [*(f"low{k}" for k in range(K_LOW)), *(f"high{k}" for k in range(K_HIGH))]
        lat = names.latent(["M", "L", "G", *(f"C:tvsd:{a}" for a in AREA_NAMES), *feats], images)
        self.M, self.L, self.G = lat[:, 0], lat[:, 1], lat[:, 2]
        self.C, self.F = lat[:, 3:6], lat[:, 6:]
        self.concept = names.concept_index(images)
        self.share = names.model.neural_concept_share
        self.n_reps = int(allmat[:, 3].max())
        self._own: dict[int, np.ndarray] = {}
        self._test: dict[int, tuple] = {}

    def _concept_own(self, code: int) -> np.ndarray:
        if code not in self._own:
            if len(self._own) > 4096:
                self._own.clear()
            self._own[code] = rng_for(self.seed, 35, self.mk, code).standard_normal(N_CHANNELS)
        return self._own[code]

    def draws(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``j`` (train images, then test): its image signal other than the terms in
        ``M`` and ``L`` (unit-free, 1024) and the trial noise of its repeats (repeats, 1024)."""
        if j >= self.n_train and j in self._test:
            return self._test[j]
        split, idx = (1, j) if j < self.n_train else (2, j - self.n_train)
        reps = 1 if split == 1 else self.n_reps
        rng = rng_for(self.seed, 31, self.mk, split, idx)
        ch = self.ch
        own = np.sqrt(self.share) * self._concept_own(int(self.concept[j]))
        own = own + np.sqrt(1 - self.share) * rng.standard_normal(N_CHANNELS)
        signal = ch.g * self.G[j] + ch.h * self.C[j, ch.area_idx] + ch.f @ self.F[j] + ch.u * own
        sg, sa = NOISE_SHARES
        noise = np.sqrt(sg) * rng.standard_normal((reps, 1))
        noise = noise + np.sqrt(sa) * rng.standard_normal((reps, len(AREA_NAMES)))[:, ch.area_idx]
        noise = noise + np.sqrt(1 - sg - sa) * rng.standard_normal((reps, N_CHANNELS))
        out = (signal, noise)
        if j >= self.n_train:
            self._test[j] = out
        return out

    def window_x(self, j: int, rep: int) -> np.ndarray:
        """The unit-free window value ``x`` of image ``j``, repeat ``rep`` (0-based)."""
        signal, noise = self.draws(j)
        return self.ch.a() * self.M[j] + self.ch.b() * self.L[j] + signal + noise[rep]

    def trial_parts(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Trial ``n`` (an ALLMAT row) as ``y0 + alpha * m + beta * l`` (each time x 1024,
        physical channels; ``alpha``, ``beta`` per area) and its 0-based day."""
        ch = self.ch
        _, train_idx, test_idx, rep, _, _, day = self.allmat[n].astype(np.int64)
        j = train_idx - 1 if train_idx else self.n_train + test_idx - 1
        signal, noise = self.draws(j)
        trial_noise = noise[0] if train_idx else noise[rep - 1]
        d = day - 1
        sigma = ch.scale(d)
        rng = rng_for(self.seed, 34, self.mk, n)
        sg, sa = NOISE_SHARES
        x = rng.standard_normal(ch.shape.shape)
        x *= np.sqrt(1 - sg - sa)
        x += np.sqrt(sg) * rng.standard_normal((len(x), 1))
        x += np.sqrt(sa) * rng.standard_normal((len(x), len(AREA_NAMES)))[:, ch.area_idx]
        x *= np.sqrt(ch.n_win)
        for lo, hi, w0, w1 in ch.spans:  # the window mean of the noise is the trial noise
            x[w0:w1, lo:hi] += trial_noise[lo:hi] - x[w0:w1, lo:hi].mean(0)
        x += ch.shape * signal
        x += ch.course * (ch.delta * self.M[j])
        x *= sigma
        x += ch.base + ch.drift[d]
        x += (ch.gain[d] * ch.amp) * ch.evoked
        m = ch.course * (sigma * ch.r * self.M[j])
        l_ = ch.shape * (sigma * ch.r * self.L[j])
        return x, m, l_, d

    def trial(self, n: int) -> np.ndarray:
        """Trial ``n``'s time course (time x 1024, physical channel order)."""
        y0, m, l_, _ = self.trial_parts(n)
        ch = self.ch
        return y0 + ch.alpha[ch.area_idx] * m + ch.beta[ch.area_idx] * l_


class _Norm:
    """Sums over each day's test trials and window bins, the alpha and beta terms apart.

    With ``y = y0 + alpha m + beta l`` per bin, the dataset's constants (mean and sd,
    ddof 1, over a day's test trials and window bins) follow for any ``alpha, beta``.
    """

    _KEYS = ("n", "0", "m", "l", "00", "0m", "0l", "mm", "ml", "ll")

    def __init__(self, n_days: int):
        self.s = {k: np.zeros((n_days, N_CHANNELS)) for k in self._KEYS}

    def add(self, y0, m, l_, day: int, window: np.ndarray) -> None:
        y0, m, l_ = (np.where(window, v, 0.0) for v in (y0, m, l_))
        s = self.s
        s["n"][day] += window.sum(0)
        for key, a, b in (("0", y0, None), ("m", m, None), ("l", l_, None), ("00", y0, y0),
                          ("0m", y0, m), ("0l", y0, l_), ("mm", m, m), ("ml", m, l_),
                          ("ll", l_, l_)):  # fmt: skip
            s[key][day] += (a if b is None else a * b).sum(0)

    def constants(self, alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd (days x 1024) for per-channel ``alpha``, ``beta``."""
        s = self.s
        n = np.maximum(s["n"], 2)
        total = s["0"] + alpha * s["m"] + beta * s["l"]
        square = s["00"] + 2 * alpha * s["0m"] + 2 * beta * s["0l"]
        square = square + alpha**2 * s["mm"] + 2 * alpha * beta * s["ml"] + beta**2 * s["ll"]
        mean = total / n
        var = (square - n * mean**2) / (n - 1)
        return mean, np.sqrt(np.maximum(var, 0.0))


def _moments(ch: _Channels, idx: np.ndarray, p: np.ndarray, mean=None, sd=None) -> Moments:
    """Moments of the mean over channels ``idx`` of the normalised window response (or
    of the raw one when ``mean``/``sd`` are None) as a function of the area's loadings."""
    n = len(idx)
    scale = ch.sigma[idx] * ch.gain[:, idx]  # (days, channels)
    if sd is None:
        k, offset = scale / n, ch.mean[:, idx].sum(1) / n
    else:
        k = scale / (n * sd[:, idx])
        offset = ((ch.mean[:, idx] - mean[:, idx]) / sd[:, idx]).sum(1) / n
    r, g, h, u, f = ch.r[idx], ch.g[idx], ch.h[idx], ch.u[idx], ch.f[idx]
    sg, sa = NOISE_SHARES
    total = k.sum(1)

    def signal(w):  # variance of the image signal other than M and L, weights w (..., n)
        return (w @ g) ** 2 + (w @ h) ** 2 + ((w @ f) ** 2).sum(-1) + (w**2) @ (u**2)

    other = signal(k) + (sg + sa) * total**2 + (1 - sg - sa) * (k**2).sum(1)
    mean_offset = float(p @ offset)
    P = k @ r
    return Moments(
        p=p, P=P, D=k @ ch.delta[idx], Pb=P.copy(), Gb=np.zeros_like(P), O=other,
        V=float(p @ (offset - mean_offset) ** 2), Osig=float(signal(p @ k)),
    )  # fmt: skip


def _solve_areas(mon: _Monkey, norm: _Norm, p: np.ndarray, model: Model, monkey: str) -> dict:
    """Set every area's ``alpha``, ``beta`` to meet its targets; the truth per area."""
    ch = mon.ch
    effects, confounds = model.effects("tvsd"), model.confounds("tvsd")
    R, kappa = model.reliability, model.kappa
    truth = {}
    for area, (lo, hi) in AREAS[monkey].items():
        idx = np.arange(lo, hi)
        a = AREA_NAMES.index(area)
        rho, c = effects.get(area), confounds.get(area)
        theta = (0.0, 0.0)
        for _ in range(200):
            ch.alpha[a], ch.beta[a] = theta
            mean, sd = norm.constants(ch.alpha[ch.area_idx], ch.beta[ch.area_idx])
            try:
                new = solve(_moments(ch, idx, p, mean, sd), rho, c, R, kappa)
            except InfeasibleTarget as e:
                raise InfeasibleTarget(f"TVSD monkey {monkey} {area}: {e}") from None
            done = max(abs(new[0] - theta[0]), abs(new[1] - theta[1])) < 1e-13
            theta = new
            if done:
                break
        else:
            raise InfeasibleTarget(f"TVSD monkey {monkey} {area}: the loadings do not converge")
        ch.alpha[a], ch.beta[a] = theta
        mean, sd = norm.constants(ch.alpha[ch.area_idx], ch.beta[ch.area_idx])
        st = _moments(ch, idx, p, mean, sd).stats(theta, R, kappa)
        st["r_partial"] = partial(st["r"], st["r_covariate"], model.covariate_r)
        st["r_raw"] = _moments(ch, idx, p).stats(theta, R, kappa)["r"]
        st["r_target"], st["r_covariate_target"] = rho, c
        st["n_channels"] = int(hi - lo)
        st["n_responsive"] = int(ch.r[idx].sum())
        truth[area] = {k: float(v) if isinstance(v, float | np.floating) else v
                       for k, v in st.items()}  # fmt: skip
    return truth


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
    trials: bool = True,
    images_per_concept: int = 12,
    block_trials: int | None = None,
    block_rows: int | None = None,
    compression: str | None = None,
    model: Model | None = None,
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
        day ``r * n_days // n_reps``; train images are spread evenly over the days).
    names : Stimuli, optional
        Names, memorability and image latents (with their :class:`Model`);
        generated from the seed (and ``model``) when omitted.
    rng : int or numpy.random.Generator
        The seed.
    trials : bool
        Also write ``THINGS_MUA_trials.mat`` (``ALLMUA`` float64, recording order).
    block_trials, block_rows : int, optional
        Trials per ``ALLMUA`` block (rounded up to a multiple of its 32-trial chunks)
        and rows per ``train_MUA`` block; by default ~64 MB each, whatever the sizes.
    compression : str, optional
        HDF5 filter for ``ALLMUA`` (e.g. ``"gzip"``); none by default, for speed.
    model : Model, optional
        The planted model when ``names`` is omitted (default :class:`Model`).

    Returns
    -------
    dict
        Truth: sizes, areas, windows, time course, normalisation, and per area
        (``areas``) the planted population correlation ``r`` of the mean of
        ``train_MUA`` over its channels and the quantities of :mod:`memxr.synth.model`.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     t = write_tvsd_monkey(d, "F", n_concepts=2, n_test=4, n_reps=3, n_timebins=30,
    ...                           bin_ms=10, trials=False)
    >>> t["n_train"], t["areas_0based_halfopen"]["IT"], round(t["areas"]["IT"]["r"], 6)
    (24, [512, 832], 0.1)
    """
    monkey = monkey.removeprefix("monkey")
    if monkey not in AREAS:
        raise ValueError(f"monkey: expected one of {sorted(AREAS)}, got {monkey!r}")
    if not 1 <= n_days <= n_reps:
        raise ValueError(f"n_days: must be between 1 and n_reps ({n_reps}), got {n_days}")
    out = Path(outdir)
    (out / "_logs").mkdir(parents=True, exist_ok=True)
    seed, mk = base_seed(rng), key_of(monkey)
    k = images_per_concept
    if names is None:
        names = Stimuli.generate(n_concepts + n_test, seed=seed, min_images=k, model=model)
    elif model is not None and model != names.model:
        raise ValueError("model: differs from the model of names (give one or the other)")
    model = names.model
    for area in (*model.tvsd_effects, *model.tvsd_confounds):
        if area not in AREA_NAMES:
            raise ValueError(f"TVSD effects: unknown area {area!r}; expected one of {AREA_NAMES}")
    train, test = names.train_images(n_concepts, k), names.test_images(n_test, k)
    tb = -100.0 + np.arange(n_timebins) * float(bin_ms)
    ch = _Channels(monkey, tb, n_days, model, rng_for(seed, 30, mk))
    mapping = rng_for(seed, 32, mk).permutation(N_CHANNELS) + 1
    allmat = _trial_table(len(train), len(test), n_reps, n_days, rng_for(seed, 33, mk))
    mon = _Monkey(seed, mk, ch, names, [img for _, img in train + test], allmat, len(train))
    norm = _Norm(n_days)
    for n in np.flatnonzero(allmat[:, 2] > 0):
        y0, m, l_, d = mon.trial_parts(int(n))
        norm.add(y0, m, l_, d, ch.window)
    is_train = allmat[:, 1] > 0
    p = np.bincount(allmat[is_train, 6].astype(np.int64) - 1, minlength=n_days) / is_train.sum()
    areas = _solve_areas(mon, norm, p, model, monkey)
    mean, sd = norm.constants(ch.alpha[ch.area_idx], ch.beta[ch.area_idx])
    _write_logs(out / "_logs", train, test, mapping)
    _write_norm(out / "THINGS_normMUA.mat", mon, mean, sd, n_reps, tb, block_rows)
    if trials:
        _write_trials(out / "THINGS_MUA_trials.mat", mon, tb, mapping, block_trials, compression)
    for st in areas.values():
        q = st["reliability"]
        st["reliability_test_mean"] = n_reps * q / (1 + (n_reps - 1) * q)
    return {
        "n_train": len(train), "n_test": len(test), "n_reps": n_reps, "n_days": n_days,
        "n_trials": len(allmat), "n_timebins": n_timebins, "bin_ms": float(bin_ms),
        "tb_ms": [float(tb[0]), float(tb[-1])],
        "areas_0based_halfopen": {a: list(r) for a, r in AREAS[monkey].items()},
        "window_ms": {a: list(w) for a, w in AREA_WINDOWS.items()},
        "latency_ms": LATENCY_MS, "effect_half_rise_and_peak_ms": EFFECT_MS,
        "n_responsive": {a: int(ch.r[lo:hi].sum()) for a, (lo, hi) in AREAS[monkey].items()},
        "train_day_share": p.tolist(),
        "normalisation": "per (channel, day): mean and sd (ddof 1) of the raw values over that "
        "day's test trials and the time bins of the area's window (start <= t < stop), as the "
        "dataset's norm_MUA.m; each trial's window mean z-scored with them",
        "trials": bool(trials), "areas": areas,
    }  # fmt: skip


def _write_norm(path, mon: _Monkey, mean, sd, n_reps, tb, block_rows) -> None:
    ch, allmat, n_train = mon.ch, mon.allmat, mon.n_train
    n_test = len(mon.M) - n_train
    n_days = ch.mean.shape[0]
    test_days = np.arange(n_reps) * n_days // n_reps
    reps = np.empty((n_reps, n_test, N_CHANNELS))
    for i in range(n_test):
        for r in range(n_reps):
            d = test_days[r]
            w = ch.mean[d] + ch.scale(d) * mon.window_x(n_train + i, r)
            reps[r, i] = (w - mean[d]) / sd[d]
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
                d = train_day[j]
                w = ch.mean[d] + ch.scale(d) * mon.window_x(j, 0)
                block[j - start] = (w - mean[d]) / sd[d]
            dset[start:stop] = block
        write_double(f, "test_MUA", reps.mean(0))
        write_double(f, "test_MUA_reps", reps)
        write_double(f, "SNR", ch.snr_days)
        write_double(f, "SNR_max", ch.snr_days.max(0)[None, :])
        write_double(f, "lats", ch.lats)
        write_double(f, "reliab", _reliab(reps))
        write_double(f, "oracle", _oracle(reps)[None, :])
        write_double(f, "tb", tb[:, None])


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


def _write_trials(path, mon: _Monkey, tb, mapping, block_trials, compression) -> None:
    allmat = mon.allmat
    n_tb, n_trials = len(tb), len(allmat)
    # Chunks of one time bin x all channels x 32 trials: trial blocks are written as whole
    # chunks, and a slab of whole time bins (how readers stream ALLMUA) reads whole chunks.
    step = min(CHUNK_TRIALS, n_trials)
    size = block_trials or row_block(n_tb * N_CHANNELS, 8)
    size = -(-size // step) * step
    chunks = (1, N_CHANNELS, step)
    recording = np.argsort(mapping - 1)  # physical channel at each recording position
    with mat_file(path) as f:
        write_double(f, "ALLMAT", allmat.T)
        write_double(f, "tb", tb[:, None])
        dset = create_double(f, "ALLMUA", (n_tb, N_CHANNELS, n_trials), chunks, compression)
        for start in range(0, n_trials, size):
            stop = min(n_trials, start + size)
            block = np.empty((stop - start, n_tb, N_CHANNELS))
            for n in range(start, stop):
                block[n - start] = mon.trial(n)[:, recording]
            dset[:, :, start:stop] = np.ascontiguousarray(block.transpose(1, 2, 0))
