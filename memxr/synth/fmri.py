"""Synthetic THINGS-fMRI single-trial responses ("betas_csv" release layout).

Model, per voxel ``v`` and trial ``t`` showing image ``i``::

    beta[v, t] = baseline[v] + gain[v] * z(memorability[i]) + 0.4 * image[v, i] + noise[v, t]

``gain[v]`` is the sum of the planted gains of the ROI columns the voxel
belongs to (ROIs overlap), ``z`` the z-scored memorability over the subject's
images (NaN -> no effect), ``image`` a stable image-specific response shared by
the repeats of a test image, ``noise`` drawn per trial (sd 1: gains are in noise
units). Half the variance of ``image`` and of ``noise`` is common to all voxels
(a global response), so ROI means are not unrealistically clean. Random numbers
are drawn per group of 64 voxels, keyed by the group's position, so the output
does not depend on the block size.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..readers.formats.hdf5 import row_block
from ..readers.formats.pandas_hdf import create_response_frame
from .things import Stimuli, base_seed, key_of, rng_for, zscore

__all__ = ["FMRI_GAINS", "GLASSER", "ROI_COLUMNS", "write_things_fmri_subject"]

FMRI_GAINS = {
    "lFFA": 0.6, "rFFA": 0.6, "lPPA": 0.5, "rPPA": 0.5, "IT": 0.5,
    "lLOC": 0.4, "rLOC": 0.4, "lEBA": 0.3, "rEBA": 0.3, "V1": 0.0,
}  # fmt: skip
"""Default planted gains (noise units) per VoxelMetadata ROI column."""

IMAGE_SD = 0.4
SHARED = 0.5  # share of the image response and of the trial noise common to all voxels
GROUP = 64  # voxels per random stream

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


def _membership(left: np.ndarray, u: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """ROI membership (n, len(ROI_COLUMNS)) 0/1 and glasser parcel index (n,) of a voxel group."""
    n = len(u)
    roi = np.zeros((n, len(ROI_COLUMNS)), dtype=np.int64)
    parcel = np.full(n, "", dtype=object)
    for name, spans in _CATEGORY_SPANS.items():
        inside = np.zeros(n, dtype=bool)
        for lo, hi in spans:
            inside |= (u >= lo) & (u < hi)
        roi[inside & left, ROI_COLUMNS.index(f"l{name}")] = 1
        roi[inside & ~left, ROI_COLUMNS.index(f"r{name}")] = 1
        todo = inside & (parcel == "")
        parcel[todo] = rng.choice(_PARCELS[name], size=int(todo.sum()))
    band = np.searchsorted(_PRF_EDGES, u, side="right") - 1
    for k, name in enumerate(PRF_ROIS):
        roi[band == k, ROI_COLUMNS.index(name)] = 1
        parcel[band == k] = _PARCELS[name][0]
    rest = parcel == ""
    parcel[rest] = rng.choice(GLASSER, size=int(rest.sum()))
    roi[:, ROI_COLUMNS.index("IT")] = np.isin(parcel, IT_PARCELS)
    return roi, pd.Index(GLASSER).get_indexer(parcel)


def _voxel_group(ids, subject_id, left, u, rng) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metadata of a voxel group: leading columns, ROI membership, glasser parcel index."""
    n = len(ids)
    x = np.where(left, rng.integers(10, 40, n), rng.integers(41, 75, n))
    visual = u < 0.80
    cont = {
        "voxel_id": ids, "subject_id": np.full(n, subject_id), "voxel_x": x,
        "voxel_y": rng.integers(10, 90, n), "voxel_z": rng.integers(5, 70, n),
        "nc_singletrial": np.round(rng.uniform(0, 20, n) + 15 * visual, 3),
        "nc_testset": np.round(rng.uniform(0, 40, n) + 25 * visual, 3),
        "splithalf_uncorrected": np.round(rng.normal(0.05 + 0.2 * visual, 0.12), 4),
        "splithalf_corrected": np.round(rng.normal(0.1 + 0.35 * visual, 0.2), 4),
        "prf-eccentricity": np.round(rng.uniform(0, 10, n), 3),
        "prf-polarangle": np.round(rng.uniform(0, 360, n), 3),
        "prf-rsquared": np.round(rng.uniform(0, 1, n), 3),
        "prf-size": np.round(rng.uniform(0.1, 5, n), 3),
    }  # fmt: skip
    return (cont, *_membership(left, u, rng))


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
    gains: dict[str, float] | None = None,
    block_rows: int | None = None,
    n_runs: int = 2,
    images_per_concept: int = 12,
    voxel_id_start: int = 0,
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
        Names and memorability; generated from the seed when omitted.
    rng : int or numpy.random.Generator
        The seed.
    gains : dict, optional
        Planted gain per ROI column (``FMRI_GAINS`` by default); ``FFA`` stands for
        ``lFFA`` and ``rFFA``.
    block_rows : int, optional
        Voxels per written block (rounded up to a multiple of 64); by default
        about 64 MB of float64 per block, whatever ``n_voxels``.

    Returns
    -------
    dict
        Truth: sizes, planted gains, ROI sizes, memorability z-score constants.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     t = write_things_fmri_subject(d, "sub-01", n_voxels=300, n_concepts=4, n_test=2,
    ...                                   n_sessions=3)
    >>> t["n_trials"], t["n_roi_voxels"]["V1"], t["n_roi_voxels"]["lSTS"]
    (54, 40, 3)
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    seed, subj = base_seed(rng), key_of(subject)
    k = images_per_concept
    names = names or Stimuli.generate(n_concepts + n_test, seed=seed, min_images=k)
    train, test = names.train_images(n_concepts, k), names.test_images(n_test, k)
    gains = _expand(FMRI_GAINS if gains is None else gains)
    table = _trials(train, test, n_sessions, n_runs, rng_for(seed, 21, subj))
    table.insert(3, "subject_id", subj)
    table.to_csv(out / f"{subject}_StimulusMetadata.csv", index=False)
    stimuli = [img for _, img in train] + [img for _, img in test]
    z, mz, sz = zscore([names.memorability.get(s, np.nan) for s in stimuli])
    col = pd.Index(stimuli).get_indexer(table["stimulus"])
    n_trials = len(table)
    left, u = _layout(n_voxels, seed, subj)
    common = rng_for(seed, 23, subj)
    shared = np.sqrt(SHARED) * (
        IMAGE_SD * common.normal(size=len(stimuli))[col] + common.normal(size=len(col))
    )
    rows = row_block(n_trials, 8, multiple=GROUP) if block_rows is None else block_rows
    rows = -(-rows // GROUP) * GROUP
    counts = pd.Series(0, index=ROI_COLUMNS)
    meta_path = out / f"{subject}_VoxelMetadata.csv"
    with h5py.File(out / f"{subject}_ResponseData.h5", "w") as f:
        values, ids = create_response_frame(
            f, "ResponseData", n_voxels, n_trials, dtype, "voxel_id"
        )
        for start in range(0, n_voxels, rows):
            stop = min(n_voxels, start + rows)
            block, meta = _block(start, stop, seed, subj, left, u, z, col, gains, voxel_id_start)
            block += shared
            values[start:stop] = block.astype(dtype, copy=False)
            ids[start:stop, 0] = meta["voxel_id"].to_numpy()
            counts += meta[ROI_COLUMNS].sum()
            meta.to_csv(meta_path, index=False, header=start == 0, mode="w" if start == 0 else "a")
    return {
        "n_voxels": n_voxels, "n_trials": n_trials, "n_train_stimuli": len(train),
        "n_test_stimuli": len(test), "n_sessions": n_sessions, "dtype": str(np.dtype(dtype)),
        "voxel_id_start": voxel_id_start, "planted_gain": gains, "noise_sd": 1.0,
        "image_sd": IMAGE_SD, "memorability_z": {"mean": mz, "sd": sz},
        "n_roi_voxels": {c: int(v) for c, v in counts.items()},
    }  # fmt: skip


def _expand(gains: dict[str, float]) -> dict[str, float]:
    out = {}
    for name, g in gains.items():
        if name in ROI_COLUMNS:
            out[name] = float(g)
        elif f"l{name}" in ROI_COLUMNS:
            out[f"l{name}"] = out[f"r{name}"] = float(g)
        else:
            raise ValueError(f"gains: unknown ROI {name!r}; expected one of {ROI_COLUMNS}")
    return out


def _block(start, stop, seed, subj, left, u, z, col, gains, id0):
    """Betas (float64) and voxel metadata for voxels start..stop, group by group."""
    n_img, n_trials = len(z), len(col)
    gain_of_roi = np.array([gains.get(c, 0.0) for c in ROI_COLUMNS])
    values = np.empty((stop - start, n_trials))
    groups = []
    for g0 in range(start, stop, GROUP):
        g1 = min(stop, g0 + GROUP)
        rng = rng_for(seed, 22, subj, g0 // GROUP)
        group = _voxel_group(np.arange(g0, g1) + id0, subj, left[g0:g1], u[g0:g1], rng)
        gain = group[1] @ gain_of_roi
        base = rng.normal(0, 0.3, g1 - g0)
        own = np.sqrt(1 - SHARED)
        image = rng.normal(0, IMAGE_SD * own, (g1 - g0, n_img))
        v = rng.normal(0, own, (g1 - g0, n_trials))
        v += base[:, None] + (gain[:, None] * z[None, :] + image)[:, col]
        values[g0 - start : g1 - start] = v
        groups.append(group)
    return values, _meta_frame(groups)
