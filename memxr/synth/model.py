"""The planted model: what the synthetic data hold, their defaults, and the exact solver.

Population
----------
Every planted quantity is defined over an infinite population of images: concepts drawn
at random and images drawn within concepts, each train image shown once (on a recording
day drawn like the real design's). The *planted population correlation* of an ROI (or
TVSD area) is

    r = corr(ROI mean of the single-trial response, memorability score ``cr``)

over that population: for fMRI the mean of the ROI's voxels' betas of one trial; for TVSD
the mean of the area's channels of the normalised window response (``train_MUA`` of
``THINGS_normMUA.mat``, which equals the time-resolved trials normalised per channel and
day and averaged over the area's window). It is what a correlation of ROI magnitudes with
memorability over many train images estimates.

Image latents (each standard normal over the population)
--------------------------------------------------------
``M``
    True memorability. A share ``c_M = concept_share / R`` of its variance is common to
    the images of a concept, so that the concepts explain ``concept_share`` (default 0.20;
    0.195 in the real THINGS table) of the variance of the published scores.
``z``
    The published score in z units, ``z = sqrt(R) M + sqrt(1 - R) e`` with rater noise
    ``e`` per image; ``R = 2 h / (1 + h)`` is the reliability of the scores and ``h`` their
    split-half reliability (default 0.45, the split-half ceiling of Kramer et al. 2023).
    ``cr = clip(0.7897 + 0.0816 z, 0.385, 1)`` (the real table's mean and sd; clipping
    touches 0.5 % of the images and changes correlations by less than 0.001). Two
    half-scores ``h_a, h_b`` with ``corr(h_a, h_b) = h`` and ``h_a + h_b`` proportional to
    ``z`` are exported.
``L``
    A low-level image covariate (contrast-like) with ``corr(L, z) = covariate_r`` (0.10):
    ``L = kappa M + sqrt(1 - kappa^2) L_perp``, ``kappa = covariate_r / sqrt(R)``. It
    drives early visual ROIs (fMRI V1 and hV4, TVSD V1 and V4): a confound that a partial
    correlation controlling for ``L`` removes.
``G``, ``C:<region>``, ``low<k>``, ``high<k>``
    A global image response (every visual channel), one response per region (fMRI ROI
    family, TVSD area; shared by subjects, and by monkeys), and 8 low-level and 16
    high-level image features whose channel loadings are random (response patterns;
    human and macaque high-level areas share the high-level features, so their RDMs
    agree). A share ``neural_concept_share`` (0.30) of each is common to a concept.

Neural response of a channel ``c`` to image ``i`` on one trial (noise units)::

    x = a_c M + b_c L + g_c G + h_c C_region(c) + sum_k f_ck F_k + u_c U_c + noise

with a channel-specific image response ``U_c`` and trial noise of variance 1 (part shared
by all channels, part by an area, the rest per channel). The memorability loadings
``a_c`` and covariate loadings ``b_c`` are the unknowns: they are solved (exactly, given
the realised channels, their ROI membership and, for TVSD, the realised normalisation
constants) so that every ROI with a planted effect has ``r`` equal to its target and
every ROI with a planted confound has ``corr(ROI mean, L)`` equal to its target. An ROI
without a planted effect gets no direct memorability loading (``a = 0``): its correlation
with memorability is then only what the covariate carries (``covariate_r`` times its
confound: 0.01 for V1 with the defaults, the real TVSD V1 value).

Defaults and their sources
--------------------------
- TVSD: IT 0.10, V4 0.07 (V1: no direct effect, 0.01 through the covariate): the
  correlations of the mean area response with ``cr`` over ~16k images reported for the
  real data (``DATA_FORMATS.md`` section 5).
- fMRI: FFA 0.20, IT 0.20, PPA 0.15, LOC 0.15, EBA 0.10 (V1: no direct effect): sizes
  proposed for the category-selective ROIs (no published reference); IT, a union of
  parcels mostly made of FFA, PPA, LOC and EBA voxels, sits with its largest parts.
- Confounds: ``corr(ROI mean, L) = 0.10`` for V1 and V4 (fMRI hV4).
- ``effect_scale`` multiplies every planted effect (quick looks: ``effect_scale=3``).

Truth per ROI (``truth.json``): ``r`` (planted population correlation with ``cr``),
``r_target``, ``r_covariate`` (with ``L``), ``r_partial`` (controlling for ``L``),
``r_noise_free`` (of the noise-free ROI mean with ``M``), ``reliability`` (single-trial
reliability of the ROI mean: the correlation of two trials of one image, on independent
days), ``ceiling`` (``sqrt(reliability * R)``, the largest correlation with ``cr``), and
for TVSD ``r_raw`` (the same ROI mean without normalisation, channel offsets and day
drifts included). Identities: ``r = r_noise_free * ceiling`` and ``r_partial = (r -
r_covariate * covariate_r) / sqrt((1 - r_covariate^2) (1 - covariate_r^2))``.

Examples
--------
>>> m = Moments.single(other=1.0)
>>> alpha, beta = solve(m, rho=0.2, c=None, reliability=0.62, kappa=0.1)
>>> round(float(m.stats((alpha, beta), 0.62, 0.1)["r"]), 6)
0.2
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "COVARIATE_R",
    "FMRI_CONFOUNDS",
    "FMRI_EFFECTS",
    "K_HIGH",
    "K_LOW",
    "LARGE_EFFECTS",
    "MEMORABILITY",
    "NEURAL_CONCEPT_SHARE",
    "TVSD_CONFOUNDS",
    "TVSD_EFFECTS",
    "InfeasibleTarget",
    "Model",
    "Moments",
    "partial",
    "solve",
]

FMRI_EFFECTS = {"FFA": 0.20, "IT": 0.20, "PPA": 0.15, "LOC": 0.15, "EBA": 0.10}
"""Planted population correlations of fMRI ROI means with the memorability score."""

FMRI_CONFOUNDS = {"V1": 0.10, "hV4": 0.10}
"""Planted correlations of fMRI ROI means with the low-level covariate."""

TVSD_EFFECTS = {"IT": 0.10, "V4": 0.07}
"""Planted population correlations of TVSD area means (normalised) with the score."""

TVSD_CONFOUNDS = {"V1": 0.10, "V4": 0.10}
"""Planted correlations of TVSD area means with the low-level covariate."""

MEMORABILITY = {
    "split_half": 0.45,
    "concept_share": 0.20,
    "mean": 0.7897,
    "sd": 0.0816,
    "low": 0.385,
    "high": 1.0,
}
"""Memorability scores: split-half reliability, share of variance common to a concept,
and the mean, sd and range of the real ``cr`` column."""

COVARIATE_R = 0.10
"""Correlation of the low-level covariate with the memorability score."""

NEURAL_CONCEPT_SHARE = 0.30
"""Share of the variance of every neural image latent common to the images of a concept."""

K_LOW, K_HIGH = 8, 16
"""Numbers of low-level and high-level image features."""

LARGE_EFFECTS = {
    "fmri_effects": {"FFA": 0.75, "IT": 0.7, "PPA": 0.65, "LOC": 0.6, "EBA": 0.5},
    "tvsd_effects": {"IT": 0.75, "V4": 0.45},
    "memorability_split_half": 0.95,
}
"""Keyword arguments of :func:`memxr.synth.synthesize` for effects visible on a hundred
images (the sizes of earlier synthetic data, with nearly noise-free scores): quick looks
and tests of the machinery on tiny data sets, not of inference at real sizes."""


class InfeasibleTarget(ValueError):
    """A planted correlation that no loading can produce."""


@dataclass(frozen=True)
class Model:
    """The parameters of one synthetic data set (see the module notes).

    Examples
    --------
    >>> m = Model()
    >>> round(m.reliability, 4), round(m.kappa, 4), round(m.memorability_concept_share_true, 4)
    (0.6207, 0.1269, 0.3222)
    >>> Model(effect_scale=3).effects("fmri")["FFA"]
    0.6000000000000001
    """

    fmri_effects: dict = field(default_factory=lambda: dict(FMRI_EFFECTS))
    fmri_confounds: dict = field(default_factory=lambda: dict(FMRI_CONFOUNDS))
    tvsd_effects: dict = field(default_factory=lambda: dict(TVSD_EFFECTS))
    tvsd_confounds: dict = field(default_factory=lambda: dict(TVSD_CONFOUNDS))
    effect_scale: float = 1.0
    memorability_split_half: float = MEMORABILITY["split_half"]
    memorability_concept_share: float = MEMORABILITY["concept_share"]
    covariate_r: float = COVARIATE_R
    neural_concept_share: float = NEURAL_CONCEPT_SHARE

    def __post_init__(self):
        h = self.memorability_split_half
        if not 0 < h < 1:
            raise ValueError(f"memorability_split_half: must lie in (0, 1), got {h}")
        if not 0 <= self.memorability_concept_share < self.reliability:
            raise ValueError(
                "memorability_concept_share: must lie in [0, reliability of the scores = "
                f"{self.reliability:.3f}), got {self.memorability_concept_share}"
            )
        if not abs(self.kappa) < 1:
            raise ValueError(
                f"covariate_r: |covariate_r| must be below sqrt(reliability of the scores) = "
                f"{math.sqrt(self.reliability):.3f}, got {self.covariate_r}"
            )
        if not 0 <= self.neural_concept_share <= 1:
            raise ValueError(
                f"neural_concept_share: must lie in [0, 1], got {self.neural_concept_share}"
            )
        if not self.effect_scale >= 0:
            raise ValueError(f"effect_scale: must be >= 0, got {self.effect_scale}")
        for name in ("fmri_effects", "fmri_confounds", "tvsd_effects", "tvsd_confounds"):
            for roi, v in getattr(self, name).items():
                if not isinstance(v, int | float) or not -1 < v < 1:
                    raise ValueError(f"{name}: {roi} must be a correlation in (-1, 1), got {v!r}")

    @property
    def reliability(self) -> float:
        """Reliability ``R`` of the published scores (Spearman-Brown of the split half)."""
        h = self.memorability_split_half
        return 2 * h / (1 + h)

    @property
    def kappa(self) -> float:
        """Correlation of the covariate with true memorability ``M``."""
        return self.covariate_r / math.sqrt(self.reliability)

    @property
    def memorability_concept_share_true(self) -> float:
        """Share of the variance of ``M`` common to a concept."""
        return self.memorability_concept_share / self.reliability

    def effects(self, dataset: str) -> dict[str, float]:
        """Planted effects of ``"fmri"`` or ``"tvsd"``, times ``effect_scale``."""
        return {k: v * self.effect_scale for k, v in getattr(self, f"{dataset}_effects").items()}

    def confounds(self, dataset: str) -> dict[str, float]:
        """Planted confounds of ``"fmri"`` or ``"tvsd"`` (not scaled)."""
        return dict(getattr(self, f"{dataset}_confounds"))

    def to_json(self) -> dict:
        """The parameters and derived constants, for ``truth.json``."""
        return {
            "definition": (
                "r: population correlation, over images shown once, between the ROI mean "
                "of the single-trial response (fMRI betas; TVSD normalised window "
                "response, as train_MUA) and the memorability score cr"
            ),
            "effects": {"fmri": self.effects("fmri"), "tvsd": self.effects("tvsd")},
            "confounds": {"fmri": self.confounds("fmri"), "tvsd": self.confounds("tvsd")},
            "effect_scale": self.effect_scale,
            "memorability": {
                "split_half": self.memorability_split_half,
                "reliability": self.reliability,
                "concept_share": self.memorability_concept_share,
                "concept_share_true": self.memorability_concept_share_true,
                **{
                    k: v
                    for k, v in MEMORABILITY.items()
                    if k not in ("split_half", "concept_share")
                },
            },
            "covariate": {"r_memorability": self.covariate_r, "kappa": self.kappa},
            "neural_concept_share": self.neural_concept_share,
            "n_features": {"low": K_LOW, "high": K_HIGH},
        }


# ----------------------------------------------------------------------------- moments


@dataclass
class Moments:
    """Second moments of one ROI mean as a function of its loadings ``(alpha, beta)``.

    The ROI mean on recording day ``d`` (probability ``p[d]``) is
    ``offset_d + A_d M + B_d L + other_d`` with ``A_d = alpha * P[d] + D[d]`` and
    ``B_d = beta * Pb[d] + Gb[d]``; ``other_d`` has variance ``O[d]`` and is independent of
    ``M`` and ``L``; ``V`` is the variance of the day offsets; ``Osig`` the variance of the
    other *signal* of the noise-free ROI mean (day-averaged weights). fMRI has one day.
    """

    p: np.ndarray
    P: np.ndarray
    D: np.ndarray
    Pb: np.ndarray
    Gb: np.ndarray
    O: np.ndarray  # noqa: E741
    V: float = 0.0
    Osig: float = 0.0

    @classmethod
    def single(
        cls, other: float, signal: float | None = None, a: float = 0.0, b: float = 0.0
    ) -> Moments:
        """One day, ``A = alpha + a``, ``B = beta + b``, other variance ``other``."""
        one = np.ones(1)
        sig = other if signal is None else signal
        return cls(one, one, a * one, one.copy(), b * one, other * one, 0.0, sig)

    def _parts(self, theta) -> tuple[np.ndarray, np.ndarray]:
        alpha, beta = theta
        return alpha * self.P + self.D, beta * self.Pb + self.Gb

    def var(self, theta, kappa: float) -> float:
        A, B = self._parts(theta)
        return float(np.sum(self.p * (A * A + B * B + 2 * kappa * A * B + self.O)) + self.V)

    def means(self, theta) -> tuple[float, float]:
        A, B = self._parts(theta)
        return float(np.sum(self.p * A)), float(np.sum(self.p * B))

    def stats(self, theta, reliability: float, kappa: float) -> dict[str, float]:
        """``r``, ``r_covariate``, ``r_noise_free``, ``reliability``, ``ceiling`` at ``theta``."""
        a, b = self.means(theta)
        sd = math.sqrt(self.var(theta, kappa))
        nf = a * a + b * b + 2 * kappa * a * b + self.Osig
        cov_m = a + kappa * b
        out = {
            "r": math.sqrt(reliability) * cov_m / sd if sd > 0 else math.nan,
            "r_covariate": (kappa * a + b) / sd if sd > 0 else math.nan,
            "r_noise_free": cov_m / math.sqrt(nf) if nf > 0 else math.nan,
            "reliability": nf / sd**2 if sd > 0 else math.nan,
            "alpha": float(theta[0]),
            "beta": float(theta[1]),
        }
        out["ceiling"] = math.sqrt(max(out["reliability"], 0.0) * reliability)
        return out

    def _lin(self, which: str, kappa: float) -> tuple[np.ndarray, float]:
        """``(w, w0)``: the mean loading on ``M`` (``"z"``) or covariance with ``L`` (``"L"``)."""
        pa, pb = float(np.sum(self.p * self.P)), float(np.sum(self.p * self.Pb))
        a0, b0 = float(np.sum(self.p * self.D)), float(np.sum(self.p * self.Gb))
        if which == "z":
            return np.array([pa, kappa * pb]), a0 + kappa * b0
        return np.array([kappa * pa, pb]), kappa * a0 + b0

    def _quad(self, kappa: float) -> tuple[np.ndarray, np.ndarray, float]:
        """``var(theta) = theta' Q theta + 2 q' theta + q0``."""
        p = self.p
        Q = np.array(
            [
                [np.sum(p * self.P**2), kappa * np.sum(p * self.P * self.Pb)],
                [kappa * np.sum(p * self.P * self.Pb), np.sum(p * self.Pb**2)],
            ]
        )
        q = np.array(
            [
                np.sum(p * self.P * (self.D + kappa * self.Gb)),
                np.sum(p * self.Pb * (self.Gb + kappa * self.D)),
            ]
        )
        q0 = float(
            np.sum(p * (self.D**2 + self.Gb**2 + 2 * kappa * self.D * self.Gb + self.O)) + self.V
        )
        return Q, q, q0


def _on_line(m: Moments, theta0, n, which: str, target: float, f: float, kappa: float):
    """Points ``theta0 + t n`` where ``f * lin_which / sd == target``: a quadratic in ``t``."""
    w, w0 = m._lin(which, kappa)
    Q, q, q0 = m._quad(kappa)
    a1, a0 = float(w @ n), float(w @ theta0 + w0)
    qa = float(n @ Q @ n)
    qb = float(n @ (Q @ theta0 + q))
    qc = float(theta0 @ Q @ theta0 + 2 * q @ theta0 + q0)
    T2, f2 = target * target, f * f
    A, B, C = f2 * a1 * a1 - T2 * qa, 2 * (f2 * a1 * a0 - T2 * qb), f2 * a0 * a0 - T2 * qc
    if abs(A) < 1e-15 * max(1.0, abs(B), abs(C)):
        roots = [-C / B] if abs(B) > 0 else []
    else:
        disc = B * B - 4 * A * C
        if disc < 0:
            disc = 0.0 if disc > -1e-12 * B * B else disc
        roots = [] if disc < 0 else [(-B + s * math.sqrt(disc)) / (2 * A) for s in (1, -1)]
    good = [t for t in roots if target == 0 or np.sign(f * (a1 * t + a0)) == np.sign(target)]
    return [theta0 + t * n for t in good]


def solve(
    m: Moments,
    rho: float | None,
    c: float | None,
    reliability: float,
    kappa: float,
    fixed: tuple[float, float] = (0.0, 0.0),
) -> tuple[float, float]:
    """The loadings ``(alpha, beta)`` giving ``r == rho`` and ``r_covariate == c``.

    ``rho=None`` keeps ``alpha`` at ``fixed[0]``, ``c=None`` keeps ``beta`` at ``fixed[1]``.

    Raises
    ------
    InfeasibleTarget
        When no loading reaches the targets (e.g. ``|rho| >= sqrt(reliability)``).

    Examples
    --------
    >>> m = Moments.single(other=1.0)
    >>> a, b = solve(m, rho=0.01, c=0.1, reliability=0.62, kappa=0.127)
    >>> s = m.stats((a, b), 0.62, 0.127)
    >>> round(s["r"], 6), round(s["r_covariate"], 6)
    (0.01, 0.1)
    """
    f = math.sqrt(reliability)
    base = np.array(fixed, dtype=float)
    if rho is None and c is None:
        return float(base[0]), float(base[1])
    if rho is not None and c is None:
        cands = _on_line(m, base, np.array([1.0, 0.0]), "z", rho, f, kappa)
    elif rho is None:
        cands = _on_line(m, base, np.array([0.0, 1.0]), "L", c, 1.0, kappa)
    else:
        wz, z0 = m._lin("z", kappa)
        wl, l0 = m._lin("L", kappa)
        # f c lin_z = rho lin_L: a line in theta
        w = f * c * wz - rho * wl
        rhs = rho * l0 - f * c * z0
        if np.linalg.norm(w) < 1e-14:
            mat = np.vstack([wz, wl])
            if abs(np.linalg.det(mat)) < 1e-14:
                raise InfeasibleTarget("r and r_covariate cannot be set separately here")
            cands = [np.linalg.solve(mat, [-z0, -l0])]
        else:
            theta0 = w * rhs / float(w @ w)
            n = np.array([-w[1], w[0]]) / np.linalg.norm(w)
            if c != 0:
                cands = _on_line(m, theta0, n, "L", c, 1.0, kappa)
            else:
                cands = _on_line(m, theta0, n, "z", rho, f, kappa)
    ok = []
    for theta in cands:
        s = m.stats(theta, reliability, kappa)
        if (rho is None or abs(s["r"] - rho) < 1e-9) and (
            c is None or abs(s["r_covariate"] - c) < 1e-9
        ):
            ok.append(theta)
    if not ok:
        raise InfeasibleTarget(
            f"no loading gives r = {rho} and r_covariate = {c} (|r| must stay below "
            f"sqrt(reliability of the scores) = {f:.3f})"
        )
    best = min(ok, key=lambda t: float(np.linalg.norm(np.asarray(t) - base)))
    return float(best[0]), float(best[1])


def partial(r: float, r_cov: float, covariate_r: float) -> float:
    """Partial correlation of an ROI with the score, controlling for the covariate.

    Examples
    --------
    >>> round(partial(0.01, 0.1, 0.1), 12), round(partial(0.1, 0.0, 0.1), 4)
    (0.0, 0.1005)
    """
    den = math.sqrt((1 - r_cov**2) * (1 - covariate_r**2))
    return (r - r_cov * covariate_r) / den
