"""Synthetic THINGS-fMRI single-trial responses ("betas_csv" release layout).

Model, per voxel ``v`` and trial ``t`` showing image ``i`` (noise units, see
:mod:`memxr.synth.model` for the image latents)::

    beta[v, t] = base[v] + a[v] M[i] + b[v] L[i] + g[v] G[i] + h[v] C_family(v)[i]
                 + sum_k f[v, k] F_k[i] + u[v] U[v, i] + noise[v, t]

``family(v)`` is the region a voxel's image response comes from (its category
ROI, pRF map, ``IT`` for other voxels of the IT parcels; other voxels carry
little signal), ``F`` the low-level features (pRF maps) or high-level ones
(category ROIs and IT), ``U`` a voxel's own image response and ``noise`` trial
noise of variance 1, 10 % of it shared by all voxels and 20 % by a family's
voxels (so ROI means are correlated, as real ones are, but differences of ROI
means do not cancel most of their noise). The memorability loadings
``a`` are constant within an *atom* (the voxels with one pattern of membership
in the ROIs with a planted effect or confound) plus a small voxel jitter in the
effect ROIs; the covariate loadings ``b`` are constant within an atom. They are
solved so that the mean of every planted ROI (``FFA`` = ``lFFA`` and ``rFFA``)
has exactly its planted correlation with the memorability score and with the
covariate, given this subject's voxels: overlapping ROIs (FFA voxels are also
IT voxels, by their parcels) share their voxels' loadings, so no ROI inherits
another's effect; among the loadings that meet every target the smallest
(voxel-count weighted) are used. ``VoxelMetadata``'s noise ceilings
(``nc_singletrial``, ``nc_testset``, split-half) are the voxels' population
values. Random numbers are drawn per group of 64 voxels, keyed by the group's
position, so the output does not depend on the block size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..readers.formats.hdf5 import row_block
from ..readers.formats.pandas_hdf import create_response_frame
from .model import K_HIGH, K_LOW, InfeasibleTarget, Model, Moments, partial, solve
from .things import Stimuli, base_seed, key_of, rng_for

__all__ = ["GLASSER", "REPORT_ROIS", "ROI_COLUMNS", "write_things_fmri_subject"]

GROUP = 64  # voxels per random stream
NOISE_SHARES = (0.1, 0.2)
"""Shares of the trial-noise variance common to all voxels and to a family's voxels (the
rest is a voxel's own; voxels without a family have the global share and their own)."""
LOADINGS = {"visual": (0.25, 0.30, 0.30, 0.30), "other": (0.05, 0.0, 0.0, 0.10)}
"""Loadings ``(g, h, f, u)`` of visual and other voxels: global image response, family
response, image features (total sd over the features), own image response."""
DELTA_SD = 0.05  # sd of the voxel jitter of the memorability loading in effect ROIs

PRF_ROIS = [
    "V1",
    "V2",
    "V3",
    "hV4",
    "VO1",
    "VO2",
    "LO1 (prf)",
    "LO2 (prf)",
    "TO1",
    "TO2",
    "V3b",
    "V3a",
]
CATEGORY = ["EBA", "FFA", "OFA", "STS", "PPA", "RSC", "TOS", "LOC"]
ROI_COLUMNS = [*PRF_ROIS, *(f"{h}{r}" for r in CATEGORY for h in "lr"), "IT"]
"""The 0/1 ROI columns of VoxelMetadata, in the release's order."""

GLASSER = (
    "V1 MST V6 V2 V3 V4 V8 4 3b FEF PEF 55b V3A RSC POS2 V7 IPS1 FFC V3B LO1 LO2 PIT MT A1 PSL "
    "SFL PCV STV 7Pm 7m POS1 23d v23ab d23ab 31pv 5m 5mv 23c 5L 24dd 24dv 7AL SCEF 6ma 7Am 7PL "
    "7PC LIPv VIP MIP 1 2 3a 6d 6mp 6v p24pr 33pr a24pr p32pr a24 d32 8BM p32 10r 47m 8Av 8Ad "
    "9m 8BL 9p 10d 8C 44 45 47l a47r 6r IFJa IFJp IFSp IFSa p9-\n46v 46 a9-\n46v 9-46d 9a 10v "
    "a10p 10pp 11l 13l OFC 47s LIPd 6a i6-8 s6-8 43 OP4 OP1 OP2-3 52 RI PFcm PoI2 TA2 FOP4 MI "
    "Pir AVI AAIC FOP1 FOP3 FOP2 PFt AIP EC PreS H ProS PeEc STGa PBelt A5 PHA1 PHA3 STSda "
    "STSdp STSvp TGd TE1a TE1p TE2a TF TE2p PHT PH TPOJ1 TPOJ2 TPOJ3 DVT PGp IP2 IP1 IP0 PFop "
    "PF PFm PGi PGs V6A VMV1 VMV3 PHA2 V4t FST V3CD LO3 VMV2 31pd 31a VVC 25 s32 pOFC PoI1 Ig "
    "FOP5 p10p p47r TGv MBelt LBelt A4 STSva TE1m PI a32pr p24"
).split(" ")
"""The 180 HCP-MMP1 parcels (two names carry the release's embedded newline)."""

IT_PARCELS = ["TE1p", "TE2p", "FFC", "VVC", "VMV2", "VMV3", "PHA1", "PHA2", "PHA3"]
FAMILIES = [*CATEGORY, *PRF_ROIS, "IT"]
"""Regions whose image response (``C:fmri:<family>``) voxels carry."""
REPORT_ROIS = [*CATEGORY, *PRF_ROIS, "IT"]
"""The ROIs described in the truth: bilateral category ROIs, pRF maps and IT."""

# ROI layout on a per-hemisphere stratified uniform u in [0, 1): category ROIs overlap,
# pRF maps tile, the rest has no ROI. Each ROI lists the parcels its voxels fall in.
_CATEGORY_SPANS = {
    "EBA": [(0.00, 0.06)], "FFA": [(0.05, 0.13)], "OFA": [(0.13, 0.16)], "STS": [(0.16, 0.18)],
    "PPA": [(0.18, 0.25)], "RSC": [(0.25, 0.27)], "TOS": [(0.27, 0.29)],
    "LOC": [(0.11, 0.14), (0.29, 0.35)],
}  # fmt: skip
_PRF_EDGES = [0.35, 0.48, 0.57, 0.64, 0.68, 0.695, 0.71, 0.725, 0.74, 0.755, 0.77, 0.785, 0.80]
_PARCELS = {
    "EBA": ["PHT", "TE2p", "MT"], "FFA": ["FFC", "FFC", "VVC"], "OFA": ["PIT", "LO2"],
    "STS": ["STSdp", "STSvp"], "PPA": ["PHA1", "PHA2", "PHA3", "VMV2", "VMV3"],
    "RSC": ["RSC", "POS1"], "TOS": ["V3CD", "IP0"], "LOC": ["LO3", "PH", "TE2p", "TE1p"],
    "V1": ["V1"], "V2": ["V2"], "V3": ["V3"], "hV4": ["V4"], "VO1": ["VMV1"], "VO2": ["VVC"],
    "LO1 (prf)": ["LO1"], "LO2 (prf)": ["LO2"], "TO1": ["MT"], "TO2": ["MST"],
    "V3b": ["V3B"], "V3a": ["V3A"],
}  # fmt: skip


def _layout(n: int, seed: int, subj: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel hemisphere (True = left) and stratified position u (small 1-D arrays)."""
    rng = rng_for(seed, 20, subj)
    left = np.zeros(n, dtype=bool)
    left[rng.permutation(n)[: n // 2]] = True
    u = np.empty(n)
    for side in (left, ~left):
        m = int(side.sum())
        u[side] = (rng.permutation(m) + 0.5) / max(m, 1)
    return left, u


def _membership(left: np.ndarray, u: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROI membership (n, len(ROI_COLUMNS)) 0/1, glasser parcel index (n,) and family
    index into :data:`FAMILIES` (-1: none) of a voxel group."""
    n = len(u)
    roi = np.zeros((n, len(ROI_COLUMNS)), dtype=np.int64)
    parcel = np.full(n, "", dtype=object)
    family = np.full(n, -1, dtype=np.int64)
    for name, spans in _CATEGORY_SPANS.items():
        inside = np.zeros(n, dtype=bool)
        for lo, hi in spans:
            inside |= (u >= lo) & (u < hi)
        roi[inside & left, ROI_COLUMNS.index(f"l{name}")] = 1
        roi[inside & ~left, ROI_COLUMNS.index(f"r{name}")] = 1
        todo = inside & (parcel == "")
        parcel[todo] = rng.choice(_PARCELS[name], size=int(todo.sum()))
        family[todo] = FAMILIES.index(name)
    band = np.searchsorted(_PRF_EDGES, u, side="right") - 1
    for k, name in enumerate(PRF_ROIS):
        roi[band == k, ROI_COLUMNS.index(name)] = 1
        parcel[band == k] = _PARCELS[name][0]
        family[band == k] = FAMILIES.index(name)
    rest = parcel == ""
    parcel[rest] = rng.choice(GLASSER, size=int(rest.sum()))
    it = np.isin(parcel, IT_PARCELS)
    roi[:, ROI_COLUMNS.index("IT")] = it
    family[rest & it] = FAMILIES.index("IT")
    return roi, pd.Index(GLASSER).get_indexer(parcel), family


def report_membership(roi: np.ndarray) -> np.ndarray:
    """Membership (n, len(REPORT_ROIS)) bool of voxels in the truth's ROIs."""
    out = np.zeros((roi.shape[0], len(REPORT_ROIS)), dtype=bool)
    for j, name in enumerate(REPORT_ROIS):
        for col in _columns_of(name):
            out[:, j] |= roi[:, ROI_COLUMNS.index(col)].astype(bool)
    return out


def _columns_of(name: str) -> list[str]:
    """VoxelMetadata ROI columns of an ROI name (``FFA`` -> ``lFFA``, ``rFFA``)."""
    if name in ROI_COLUMNS:
        return [name]
    if f"l{name}" in ROI_COLUMNS:
        return [f"l{name}", f"r{name}"]
    known = sorted({r[1:] if r[0] in "lr" and r[1:] in CATEGORY else r for r in ROI_COLUMNS})
    raise ValueError(f"unknown fMRI ROI {name!r}; expected one of {known}")


def _voxel_group(ids, subject_id, left, u, rng) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Metadata of a voxel group: leading columns, ROI membership, parcel and family index."""
    n = len(ids)
    x = np.where(left, rng.integers(10, 40, n), rng.integers(41, 75, n))
    cont = {
        "voxel_id": ids, "subject_id": np.full(n, subject_id), "voxel_x": x,
        "voxel_y": rng.integers(10, 90, n), "voxel_z": rng.integers(5, 70, n),
        "prf-eccentricity": np.round(rng.uniform(0, 10, n), 3),
        "prf-polarangle": np.round(rng.uniform(0, 360, n), 3),
        "prf-rsquared": np.round(rng.uniform(0, 1, n), 3),
        "prf-size": np.round(rng.uniform(0.1, 5, n), 3),
    }  # fmt: skip
    return (cont, *_membership(left, u, rng))


@dataclass
class _Group:
    """One group of voxels: metadata, membership and loadings (small arrays)."""

    cont: dict
    roi: np.ndarray  # (n, ROI_COLUMNS) 0/1
    parcel: np.ndarray
    member: np.ndarray  # (n, len(rois)) bool, the ROIs of the solve and the truth
    atom: np.ndarray  # (n,) atom key (bit pattern over the planted ROIs), 0 = none
    g: np.ndarray
    h: np.ndarray
    family: np.ndarray
    f: np.ndarray  # (n, K_LOW + K_HIGH)
    u: np.ndarray
    delta: np.ndarray
    base: np.ndarray
    key: int  # position of the group: keys its random streams


class _Plan:
    """Voxel layout, the ROIs of the solve and their planted targets for one subject."""

    def __init__(self, n_voxels, seed, subj, model: Model, id0: int):
        self.n, self.seed, self.subj, self.id0 = n_voxels, seed, subj, id0
        self.left, self.u = _layout(n_voxels, seed, subj)
        self.effects = model.effects("fmri")
        self.confounds = model.confounds("fmri")
        planted = list(dict.fromkeys([*self.effects, *self.confounds]))
        for name in planted:
            _columns_of(name)
        self.planted = planted
        self.rois = REPORT_ROIS + [p for p in planted if p not in REPORT_ROIS]
        self.cols = [[ROI_COLUMNS.index(c) for c in _columns_of(r)] for r in self.rois]
        self.pidx = [self.rois.index(p) for p in planted]
        self.eidx = [self.rois.index(p) for p in self.effects]

    def group(self, g0: int) -> _Group:
        g1 = min(self.n, g0 + GROUP)
        key = g0 // GROUP
        ids = np.arange(g0, g1) + self.id0
        rng = rng_for(self.seed, 22, self.subj, key)
        cont, roi, parcel, family = _voxel_group(
            ids, self.subj, self.left[g0:g1], self.u[g0:g1], rng
        )
        member = np.zeros((g1 - g0, len(self.rois)), dtype=bool)
        for j, cols in enumerate(self.cols):
            member[:, j] = roi[:, cols].any(axis=1)
        bits = 1 << np.arange(len(self.pidx), dtype=np.int64)
        atom = member[:, self.pidx].astype(np.int64) @ bits if self.pidx else np.zeros(g1 - g0)
        lr = rng_for(self.seed, 24, self.subj, key)
        n = g1 - g0
        f_low, f_high = lr.standard_normal((n, K_LOW)), lr.standard_normal((n, K_HIGH))
        jitter, base = lr.standard_normal(n), lr.normal(0, 0.3, n)
        visual = family >= 0
        g, h, fs, us = (np.where(visual, v, w) for v, w in zip(*LOADINGS.values(), strict=True))
        low = visual & np.isin(family, [FAMILIES.index(r) for r in PRF_ROIS])
        high = visual & ~low
        f = np.zeros((n, K_LOW + K_HIGH))
        f[:, :K_LOW] = np.where(low, fs, 0.0)[:, None] * f_low / np.sqrt(K_LOW)
        f[:, K_LOW:] = np.where(high, fs, 0.0)[:, None] * f_high / np.sqrt(K_HIGH)
        in_effect = member[:, self.eidx].any(axis=1) if self.eidx else np.zeros(n, bool)
        delta = np.where(in_effect, DELTA_SD * jitter, 0.0)
        return _Group(cont, roi, parcel, member, atom.astype(np.int64), g, h, family, f, us,
                      delta, base, key)  # fmt: skip


def _solve_atoms(plan: _Plan, model: Model) -> tuple[dict, dict, dict]:
    """Pass over the layout: ROI sums, then the atom loadings meeting every target.

    Returns ``alpha``, ``beta`` (atom key -> loading) and the truth of every ROI.
    """
    n_r = len(plan.rois)
    count, sg, su2, sdelta, so2 = (np.zeros(n_r) for _ in range(5))
    sh = np.zeros((n_r, len(FAMILIES)))
    sn = np.zeros((n_r, len(FAMILIES)))  # voxels per family (family trial noise)
    sf = np.zeros((n_r, K_LOW + K_HIGH))
    atoms: dict[int, np.ndarray] = {}
    for g0 in range(0, plan.n, GROUP):
        grp = plan.group(g0)
        m = grp.member.astype(np.float64)
        count += m.sum(0)
        sg += grp.g @ m
        su2 += (grp.u**2) @ m
        sdelta += grp.delta @ m
        sf += m.T @ grp.f
        fam = np.zeros((len(grp.g), len(FAMILIES)))
        ok = grp.family >= 0
        fam[np.flatnonzero(ok), grp.family[ok]] = 1.0
        sn += m.T @ fam
        sh += m.T @ (fam * grp.h[:, None])
        so2 += _own_noise(grp.family) @ m
        for key in np.unique(grp.atom):
            if key:
                atoms.setdefault(int(key), np.zeros(n_r))
                atoms[int(key)] += m[grp.atom == key].sum(0)
    n = np.maximum(count, 1)
    signal = (sg / n) ** 2 + ((sh / n[:, None]) ** 2).sum(1) + ((sf / n[:, None]) ** 2).sum(1)
    signal += su2 / n**2
    shared, family = NOISE_SHARES
    other = signal + shared + family * ((sn / n[:, None]) ** 2).sum(1) + so2 / n**2
    keys = sorted(atoms)
    W = np.array([atoms[k] for k in keys]).T / n[:, None] if keys else np.zeros((n_r, 0))
    size = np.array([atoms[k].max() for k in keys]) if keys else np.zeros(0)
    R, kappa = model.reliability, model.kappa
    alpha, beta = np.zeros(len(keys)), np.zeros(len(keys))
    moments = [Moments.single(other=other[j], signal=signal[j]) for j in range(n_r)]
    targets = {
        j: (plan.effects.get(name), plan.confounds.get(name))
        for j, name in enumerate(plan.rois)
        if name in plan.planted
    }
    for name, j in zip(plan.rois, range(n_r), strict=True):
        if name in plan.planted and count[j] == 0:
            raise InfeasibleTarget(f"fMRI ROI {name}: no voxel (more voxels are needed)")
    for _ in range(50):
        abar, bbar = W @ alpha + sdelta / n, W @ beta
        want_a, want_b = {}, {}
        for j, (rho, c) in targets.items():
            try:
                a, b = solve(moments[j], rho, c, R, kappa, fixed=(abar[j], bbar[j]))
            except InfeasibleTarget as e:
                raise InfeasibleTarget(f"fMRI ROI {plan.rois[j]}: {e}") from None
            if rho is not None:
                want_a[j] = a - sdelta[j] / n[j]
            if c is not None:
                want_b[j] = b
        alpha, beta = _least_norm(W, size, want_a), _least_norm(W, size, want_b)
        abar, bbar = W @ alpha + sdelta / n, W @ beta
        errors = [
            abs(s[k] - t)
            for j, (rho, c) in targets.items()
            for s in [moments[j].stats((abar[j], bbar[j]), R, kappa)]
            for k, t in (("r", rho), ("r_covariate", c))
            if t is not None
        ]
        if max(errors, default=0.0) < 1e-9:
            break
    else:
        raise InfeasibleTarget(
            f"fMRI: the planted targets {targets} cannot all be met by this voxel layout"
        )
    truth = {}
    for j, name in enumerate(plan.rois):
        if count[j] == 0:
            continue
        st = moments[j].stats((abar[j], bbar[j]), R, kappa)
        st["r_partial"] = partial(st["r"], st["r_covariate"], model.covariate_r)
        st["r_target"] = plan.effects.get(name)
        st["r_covariate_target"] = plan.confounds.get(name)
        st["n_voxels"] = int(count[j])
        truth[name] = {k: v for k, v in st.items() if k not in ("alpha", "beta")}
    return dict(zip(keys, alpha, strict=True)), dict(zip(keys, beta, strict=True)), truth


def _own_noise(family: np.ndarray) -> np.ndarray:
    """Variance of each voxel's own trial noise (1 minus the shared shares)."""
    shared, fam = NOISE_SHARES
    return np.where(family >= 0, 1 - shared - fam, 1 - shared)


def _least_norm(W: np.ndarray, size: np.ndarray, want: dict[int, float]) -> np.ndarray:
    """Atom loadings ``x`` with ``W[j] @ x == want[j]`` minimising ``sum(size * x**2)``."""
    x = np.zeros(W.shape[1])
    if not want:
        return x
    rows = sorted(want)
    A = W[rows]
    t = np.array([want[j] for j in rows])
    d = 1.0 / np.maximum(size, 1.0)
    M = (A * d) @ A.T
    return d * (A.T @ (np.linalg.pinv(M, rcond=1e-12) @ t))


def _meta_frame(groups: list[tuple[dict, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """The VoxelMetadata rows of a block: leading columns, ROI columns, glasser columns."""
    cont = pd.DataFrame({k: np.concatenate([g[0][k] for g in groups]) for k in groups[0][0]})
    roi = np.concatenate([g[1] for g in groups])
    parcel = np.concatenate([g[2] for g in groups])
    onehot = (parcel[:, None] == np.arange(len(GLASSER))[None, :]).astype(np.int64)
    columns = [*ROI_COLUMNS, *(f"glasser-{p}" for p in GLASSER)]
    return pd.concat([cont, pd.DataFrame(np.hstack([roi, onehot]), columns=columns)], axis=1)


def _trials(train, test, n_sessions, n_runs, rng) -> pd.DataFrame:
    """Train images once each, spread over sessions; test images once per session; interleaved."""
    rows = []
    parts = np.array_split(rng.permutation(len(train)), n_sessions)
    for s, part in enumerate(parts, start=1):
        items = [("train", *train[j]) for j in part] + [("test", *t) for t in test]
        order = rng.permutation(len(items))
        runs = np.concatenate(
            [np.full(len(r), k + 1) for k, r in enumerate(np.array_split(order, n_runs))]
        )
        rows += [
            (items[j][0], s, int(r), items[j][2], items[j][1])
            for j, r in zip(order, runs, strict=True)
        ]
    df = pd.DataFrame(rows, columns=["trial_type", "session", "run", "stimulus", "concept"])
    df.insert(3, "trial_id", np.arange(len(df)))
    return df


def write_things_fmri_subject(
    outdir: str | os.PathLike,
    subject: str,
    *,
    n_voxels: int,
    n_concepts: int,
    n_test: int,
    n_sessions: int,
    dtype: str = "float32",
    names: Stimuli | None = None,
    rng: int | np.random.Generator | None = 0,
    block_rows: int | None = None,
    n_runs: int = 2,
    images_per_concept: int = 12,
    voxel_id_start: int = 0,
    model: Model | None = None,
) -> dict:
    """Write ``<subject>_ResponseData.h5``, ``_VoxelMetadata.csv``, ``_StimulusMetadata.csv``.

    Parameters
    ----------
    outdir : path
        The ``betas_csv`` folder (created if needed).
    subject : str
        ``sub-01`` etc.; its number is the ``subject_id`` and keys the random streams.
    n_voxels, n_concepts, n_test, n_sessions : int
        Voxels; train concepts (``images_per_concept`` images each, shown once);
        test images (shown once per session); sessions.
    dtype : {"float32", "float64"}
        Dtype of the betas.
    names : Stimuli, optional
        Names, memorability and image latents (with their :class:`Model`);
        generated from the seed (and ``model``) when omitted.
    rng : int or numpy.random.Generator
        The seed.
    block_rows : int, optional
        Voxels per written block (rounded up to a multiple of 64); by default
        about 64 MB of float64 per block, whatever ``n_voxels``.
    model : Model, optional
        The planted model when ``names`` is omitted (default :class:`Model`).

    Returns
    -------
    dict
        Truth: sizes, and per ROI (``rois``) the planted population correlation
        ``r`` and the quantities listed in :mod:`memxr.synth.model`.

    Raises
    ------
    InfeasibleTarget
        When a planted ROI has no voxel, or the targets cannot all be met.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     t = write_things_fmri_subject(d, "sub-01", n_voxels=300, n_concepts=4, n_test=2,
    ...                                   n_sessions=3)
    >>> t["n_trials"], t["n_roi_voxels"]["V1"], t["n_roi_voxels"]["lSTS"]
    (54, 40, 3)
    >>> round(t["rois"]["FFA"]["r"], 6), round(t["rois"]["V1"]["r_covariate"], 6)
    (0.2, 0.1)
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    seed, subj = base_seed(rng), key_of(subject)
    k = images_per_concept
    if names is None:
        names = Stimuli.generate(n_concepts + n_test, seed=seed, min_images=k, model=model)
    elif model is not None and model != names.model:
        raise ValueError("model: differs from the model of names (give one or the other)")
    model = names.model
    train, test = names.train_images(n_concepts, k), names.test_images(n_test, k)
    table = _trials(train, test, n_sessions, n_runs, rng_for(seed, 21, subj))
    table.insert(3, "subject_id", subj)
    table.to_csv(out / f"{subject}_StimulusMetadata.csv", index=False)
    stimuli = [img for _, img in train] + [img for _, img in test]
    col = pd.Index(stimuli).get_indexer(table["stimulus"])
    plan = _Plan(n_voxels, seed, subj, model, voxel_id_start)
    alpha, beta, truth = _solve_atoms(plan, model)
    images = _Images(names, stimuli, model)
    streams = rng_for(seed, 23, subj).standard_normal((1 + len(FAMILIES), len(col)))
    noise = (np.sqrt(NOISE_SHARES[0]) * streams[0], np.sqrt(NOISE_SHARES[1]) * streams[1:])
    rows = row_block(len(col), 8, multiple=GROUP) if block_rows is None else block_rows
    rows = -(-rows // GROUP) * GROUP
    counts = pd.Series(0, index=ROI_COLUMNS)
    meta_path = out / f"{subject}_VoxelMetadata.csv"
    with h5py.File(out / f"{subject}_ResponseData.h5", "w") as f:
        values, ids = create_response_frame(f, "ResponseData", n_voxels, len(col), dtype,
                                            "voxel_id")  # fmt: skip
        for start in range(0, n_voxels, rows):
            stop = min(n_voxels, start + rows)
            block = np.empty((stop - start, len(col)))
            groups = []
            for g0 in range(start, stop, GROUP):
                grp = plan.group(g0)
                block[g0 - start : g0 - start + len(grp.g)], cont = _betas(
                    grp, plan, images, alpha, beta, col, noise, n_sessions
                )
                groups.append((cont, grp.roi, grp.parcel))
            values[start:stop] = block.astype(dtype, copy=False)
            meta = _meta_frame(groups)
            ids[start:stop, 0] = meta["voxel_id"].to_numpy()
            counts += meta[ROI_COLUMNS].sum()
            meta.to_csv(meta_path, index=False, header=start == 0, mode="w" if start == 0 else "a")
    for st in truth.values():
        q = st["reliability"]
        st["reliability_test_mean"] = n_sessions * q / (1 + (n_sessions - 1) * q)
    return {
        "n_voxels": n_voxels, "n_trials": len(col), "n_train_stimuli": len(train),
        "n_test_stimuli": len(test), "n_sessions": n_sessions, "dtype": str(np.dtype(dtype)),
        "voxel_id_start": voxel_id_start, "noise_sd": 1.0,
        "noise_shares": {"all": NOISE_SHARES[0], "family": NOISE_SHARES[1]},
        "n_roi_voxels": {c: int(v) for c, v in counts.items()},
        "n_atoms": len(alpha), "rois": truth,
    }  # fmt: skip


class _Images:
    """The latents of one subject's images (small: images x ~50)."""

    def __init__(self, names: Stimuli, stimuli: list[str], model: Model):
        feats = [*(f"low{k}" for k in range(K_LOW)), *(f"high{k}" for k in range(K_HIGH))]
        lat = names.latent(["M", "L", "G", *feats], stimuli)
        self.M, self.L, self.G, self.F = lat[:, 0], lat[:, 1], lat[:, 2], lat[:, 3:]
        self.C = names.latent([f"C:fmri:{r}" for r in FAMILIES], stimuli)  # (image, family)
        self.concept = np.unique(names.concept_index(stimuli), return_inverse=True)[1]
        self.share = model.neural_concept_share
        self.kappa = model.kappa


def _betas(grp: _Group, plan: _Plan, images: _Images, alpha, beta, col, noise, n_sessions):
    """Betas (float64, voxels x trials) and the leading metadata columns of a voxel group."""
    n = len(grp.g)
    a = np.array([alpha.get(int(k), 0.0) for k in grp.atom]) + grp.delta
    b = np.array([beta.get(int(k), 0.0) for k in grp.atom])
    rng = rng_for(plan.seed, 25, plan.subj, grp.key)
    own = np.sqrt(images.share) * rng.standard_normal((n, int(images.concept.max()) + 1))
    own = own[:, images.concept] + np.sqrt(1 - images.share) * rng.standard_normal(
        (n, len(images.M))
    )
    h = np.where(grp.family >= 0, grp.h, 0.0)
    fam = images.C[:, np.maximum(grp.family, 0)].T  # (voxel, image)
    signal = np.outer(a, images.M) + np.outer(b, images.L) + np.outer(grp.g, images.G)
    signal += h[:, None] * fam + grp.f @ images.F.T + grp.u[:, None] * own
    values = rng.standard_normal((n, len(col)))
    values *= np.sqrt(_own_noise(grp.family))[:, None]
    values += noise[0]
    ok = grp.family >= 0
    values[ok] += noise[1][grp.family[ok]]
    values += signal[:, col]
    values += grp.base[:, None]
    s = a**2 + b**2 + 2 * images.kappa * a * b + grp.g**2 + h**2 + (grp.f**2).sum(1) + grp.u**2
    half = s / (s + 2.0 / n_sessions)
    cont = dict(grp.cont)
    extra = {
        "nc_singletrial": np.round(100 * s / (s + 1), 3),
        "nc_testset": np.round(100 * s / (s + 1.0 / n_sessions), 3),
        "splithalf_uncorrected": np.round(half, 4),
        "splithalf_corrected": np.round(2 * half / (1 + half), 4),
    }
    ordered = {k: cont[k] for k in ("voxel_id", "subject_id", "voxel_x", "voxel_y", "voxel_z")}
    ordered.update(extra)
    ordered.update({k: v for k, v in cont.items() if k not in ordered})
    return values, ordered
