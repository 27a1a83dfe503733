"""Reader of the THINGS-fMRI single-trial responses (the "betas_csv" release).

Per subject the release has three files in one folder:

``sub-0X_ResponseData.h5``
    A pandas fixed-format frame under the group ``ResponseData``: one row per
    voxel, a ``voxel_id`` column, then one float column per trial. Only the
    numeric blocks are read, with h5py; labels stored as pickled Python objects
    are never read (unpickling an untrusted file can execute code).
``sub-0X_VoxelMetadata.csv``
    One row per voxel: position, reliability, pRF fits and 0/1 ROI columns.
``sub-0X_StimulusMetadata.csv``
    One row per trial: ``trial_type`` (train/test), ``session``, ``stimulus``
    and, in the current release, ``concept``.

:func:`read_things_fmri` returns a lazy stimulus-level cube (see
:mod:`memxr.schema`): train images (shown once) give one row each, test images
are averaged over their repeats, and the repeats are kept in
``response_repeats``. The betas are read in blocks of whole voxel rows (a
sequential read of the file), one dask task per block.

Examples
--------
>>> from memxr.readers.things_fmri import FMRI_ROIS
>>> FMRI_ROIS["FFA"]
('lFFA', 'rFFA')
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError
from ..provenance import base_attrs, file_records
from ..schema import text_coord, validate
from ._fmri_meta import STIMULUS_REQUIRED as STIMULUS_REQUIRED
from ._fmri_meta import TRIAL_TYPES as TRIAL_TYPES
from ._fmri_meta import (
    _channel_coords,
    _require_file,
    read_stimulus_metadata,
    read_voxel_metadata,
)
from ._fmri_trials import _Design, _design, _lazy_responses, _raw_array
from ._pandas_fixed import GROUP as GROUP
from ._pandas_fixed import _check_ids, _inspect_response
from .things_meta import label_stimuli

__all__ = [
    "FMRI_ROIS",
    "read_stimulus_metadata",
    "read_things_fmri",
    "read_voxel_metadata",
]


FMRI_ROIS: dict[str, tuple[str, str]] = {
    name: (f"l{name}", f"r{name}")
    for name in ("FFA", "PPA", "LOC", "EBA", "OFA", "STS", "RSC", "TOS")
}
"""Bilateral ROIs: merged name -> (left, right) VoxelMetadata columns."""


def subject_label(subject: str | int) -> str:
    """Normalise a subject to ``sub-XX``.

    Examples
    --------
    >>> [subject_label(s) for s in ("sub-01", "01", "1", 1, "sub-3")]
    ['sub-01', 'sub-01', 'sub-01', 'sub-01', 'sub-03']
    """
    m = re.fullmatch(r"(?:sub-?)?(\d+)", str(subject).strip())
    if m is None:
        raise ValueError(f"subject {subject!r} is not like 'sub-01', '01' or 1")
    return f"sub-{int(m.group(1)):02d}"


def _labels(
    design: _Design, memorability: str | os.PathLike | None, concepts: str | os.PathLike | None
) -> pd.DataFrame:
    """concept, category and memorability per stimulus (from the THINGS tables when given)."""
    return label_stimuli(
        design.stimulus_ids,
        memorability=memorability,
        concepts=concepts,
        fallback_concepts=design.concepts,
    )


def _stimulus_coords(design: _Design, labels: pd.DataFrame) -> dict[str, tuple]:
    if len(labels) != design.stimulus_ids.size:
        raise ValueError(f"{len(labels)} labels for {design.stimulus_ids.size} stimuli")
    split = np.where(design.is_test, "test", "train")
    return {
        "stimulus_id": ("stimulus", text_coord(design.stimulus_ids)),
        "concept": ("stimulus", text_coord(labels["concept"].fillna(""))),
        "category": ("stimulus", text_coord(labels["category"].fillna(""))),
        "memorability": ("stimulus", labels["memorability"].to_numpy(dtype=np.float64)),
        "split": ("stimulus", text_coord(split)),
        "n_repeats": ("stimulus", design.n_repeats),
    }


def _repeat_coords(design: _Design) -> dict[str, tuple]:
    return {
        "repeat_stimulus_id": ("repeat_stimulus", text_coord(design.stimulus_ids[design.test_pos])),
        "repeat": ("repeat", np.arange(design.test_trials.shape[1], dtype=np.int64)),
        "repeat_session": (("repeat_stimulus", "repeat"), design.test_sessions),
    }


def read_things_fmri(
    input_dir: str | os.PathLike,
    subject: str | int,
    *,
    memorability: str | os.PathLike | None = None,
    concepts: str | os.PathLike | None = None,
    checksum: bool = True,
    chunk_bytes: int = 64 << 20,
) -> xr.Dataset:
    """Read one subject of the THINGS-fMRI "betas_csv" release as a lazy cube.

    Parameters
    ----------
    input_dir : str or path
        Folder with ``{subject}_ResponseData.h5``, ``{subject}_VoxelMetadata.csv``
        and ``{subject}_StimulusMetadata.csv``.
    subject : str or int
        ``"sub-01"``, ``"01"``, ``"1"`` or ``1``.
    memorability, concepts : str or path, optional
        THINGS memorability scores and concept table, passed to
        :func:`memxr.readers.things_meta.label_stimuli` to fill ``concept``,
        ``category`` and ``memorability``. Without them (and without a
        ``concept`` column in the stimulus table) these are ``""``/``""``/NaN.
    checksum : bool
        Record the SHA-256 of every input in ``attrs["inputs"]`` (reads each
        file once); with False only names and sizes are recorded.
    chunk_bytes : int
        Target size of one block of whole voxel rows (all trials).

    Returns
    -------
    xarray.Dataset
        ``response`` (stimulus, channel) in the file's float dtype, test
        stimuli averaged over their repeats; ``response_repeats``
        (repeat_stimulus, repeat, channel), NaN-padded, when there are test
        stimuli; stimulus coords ``stimulus_id, concept, category,
        memorability, split, n_repeats`` in order of first appearance;
        channel coords ``channel_id`` (voxel id), ``roi_mask`` (channel, roi)
        with every 0/1 VoxelMetadata column, and each other numeric column;
        ``repeat_stimulus_id``, ``repeat``, ``repeat_session`` (-1 = padding).
        Data variables are dask arrays: nothing of the betas is read here.
        ``attrs`` follow :mod:`memxr.schema`, plus ``n_matched``,
        ``n_missing_score`` and ``n_unknown`` from the stimulus labelling.

    Raises
    ------
    InputError
        Missing or malformed files, sizes or voxel ids that disagree between
        the three files, duplicated train stimuli, or data that could only be
        read by unpickling.

    Examples
    --------
    >>> import h5py, numpy as np, pandas as pd, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> pd.DataFrame({"voxel_id": [5, 6], "subject_id": 1, "V1": [1, 0]}).to_csv(
    ...     d / "sub-01_VoxelMetadata.csv", index=False)
    >>> pd.DataFrame({"trial_type": ["train", "test", "test"], "session": [1, 1, 2],
    ...               "stimulus": ["dog_12s.jpg", "cat_01b.jpg", "cat_01b.jpg"]}).to_csv(
    ...     d / "sub-01_StimulusMetadata.csv", index=False)
    >>> with h5py.File(d / "sub-01_ResponseData.h5", "w") as f:
    ...     f["ResponseData/block0_values"] = np.arange(6, dtype="f4").reshape(2, 3)
    ...     f["ResponseData/block1_values"] = np.array([[5], [6]])
    ...     f["ResponseData/block1_items"] = np.array([b"voxel_id"])
    >>> ds = read_things_fmri(d, 1, checksum=False)
    >>> ds["response"].values
    array([[0. , 3. ],
           [1.5, 4.5]], dtype=float32)
    >>> ds["stimulus_id"].values.tolist(), ds["n_repeats"].values.tolist()
    (['dog_12s.jpg', 'cat_01b.jpg'], [1, 2])
    >>> ds["roi_mask"].sel(roi="V1").values.tolist()
    [True, False]
    """
    root = Path(input_dir)
    try:
        subject = subject_label(subject)
    except ValueError as e:
        raise InputError(root, "subject", str(e)) from None
    h5_path = root / f"{subject}_ResponseData.h5"
    vox_path = root / f"{subject}_VoxelMetadata.csv"
    stim_path = root / f"{subject}_StimulusMetadata.csv"
    for p in (h5_path, vox_path, stim_path):
        _require_file(p)
    voxels = read_voxel_metadata(vox_path)
    stim = read_stimulus_metadata(stim_path)
    design = _design(stim, stim_path)
    names = (vox_path.name, stim_path.name)
    layout, id_field = _inspect_response(h5_path, len(voxels), len(stim), names)
    _check_ids(h5_path, id_field, layout.voxel_ids, voxels["voxel_id"].to_numpy(), vox_path.name)

    response, repeats = _lazy_responses(
        _raw_array(h5_path, layout, chunk_bytes), layout, design, h5_path
    )
    labels = _labels(design, memorability, concepts)
    coords = {**_stimulus_coords(design, labels), **_channel_coords(voxels)}
    data_vars = {"response": (("stimulus", "channel"), response)}
    if design.test_pos.size:
        data_vars["response_repeats"] = (("repeat_stimulus", "repeat", "channel"), repeats)
        coords.update(_repeat_coords(design))

    extra = [Path(p) for p in (memorability, concepts) if p is not None]
    records = file_records([h5_path, vox_path, stim_path, *extra], root=root, checksum=checksum)
    attrs = base_attrs("things-fmri", subject, "beta", records)
    attrs.update(
        n_matched=int(labels.attrs.get("matched", 0)),
        n_missing_score=int(labels.attrs.get("missing_score", 0)),
        n_unknown=int(labels.attrs.get("unknown", 0)),
        n_concept_mismatch=int(labels.attrs.get("concept_mismatch", 0)),
    )
    return validate(xr.Dataset(data_vars, coords=coords, attrs=attrs), name=h5_path.name)
