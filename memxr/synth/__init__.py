"""Synthetic raw files in the real THINGS-fMRI and TVSD formats, with planted memorability effects.

:func:`synthesize` writes every raw format of ``DATA_FORMATS.md`` under one
folder, at any scale, deterministically from a seed::

    OUTDIR/things-fmri/betas_csv/sub-0X_ResponseData.h5, _VoxelMetadata.csv, _StimulusMetadata.csv
    OUTDIR/tvsd/monkeyN/THINGS_normMUA.mat, THINGS_MUA_trials.mat, _logs/things_imgs.mat,
                        _logs/1024chns_mapping_20220105.mat          (and monkeyF)
    OUTDIR/things/THINGS_Memorability_Scores.csv, Concept_to_category_linking.csv
    OUTDIR/truth.json, OUTDIR/covariates.csv

Every big array (fMRI betas, ``ALLMUA``, ``train_MUA``) is written in blocks of
about 64 MB with h5py, so peak memory does not depend on the scale, and
``scale=1.0`` (real sizes: ~8 GB of betas per subject, ~62 GB of ``ALLMUA`` per
monkey) runs on a 24 GB machine given the disk space. The fMRI file is written
in pandas' fixed format without pandas (see :mod:`memxr.readers.formats.pandas_hdf`), the
MATLAB v7.3 files in hdf5storage's layout without hdf5storage (see
:mod:`memxr.readers.formats.matlab`).

Memorability effects are planted at real sizes (TVSD IT 0.10, V4 0.07, V1 0.01; fMRI
FFA 0.20 ... V1 0.01), as population correlations of ROI means with the memorability
score, met exactly; concepts structure memorability and responses; a low-level covariate
confounds V1 and V4. :mod:`memxr.synth.model` defines every planted quantity, its
defaults and their sources; :mod:`memxr.synth.fmri` and :mod:`memxr.synth.tvsd` the
responses. ``truth.json`` holds the planted values per ROI (with reliabilities and noise
ceilings), ``covariates.csv`` the covariate and true memorability per image.

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     truth = synthesize(d, scale=0.001, subjects=("sub-01",), monkeys=("N",), trials=False)
...     mats = sorted(p.name for p in pathlib.Path(d, "tvsd", "monkeyN").rglob("*.mat"))
>>> truth["fmri"]["sub-01"]["n_voxels"], truth["tvsd"]["N"]["n_train"]
(300, 96)
>>> round(truth["tvsd"]["N"]["areas"]["IT"]["r"], 6), round(truth["fmri"]["sub-01"]["rois"]["FFA"]["r"], 6)
(0.1, 0.2)
>>> mats
['1024chns_mapping_20220105.mat', 'THINGS_normMUA.mat', 'things_imgs.mat']

May import: numpy, pandas, h5py, scipy, the format writers (:mod:`memxr.readers.formats`)
and the vocabulary (:mod:`memxr.schema`); never the readers themselves, stores or analyses,
so that what the readers are tested against is written independently of them.
"""

from .fmri import write_things_fmri_subject
from .generator import REAL_SIZES, sizes, synthesize
from .model import (
    COVARIATE_R,
    FMRI_CONFOUNDS,
    FMRI_EFFECTS,
    LARGE_EFFECTS,
    TVSD_CONFOUNDS,
    TVSD_EFFECTS,
    InfeasibleTarget,
    Model,
)
from .things import Stimuli
from .tvsd import write_tvsd_monkey

__all__ = [
    "COVARIATE_R",
    "FMRI_CONFOUNDS",
    "FMRI_EFFECTS",
    "LARGE_EFFECTS",
    "REAL_SIZES",
    "TVSD_CONFOUNDS",
    "TVSD_EFFECTS",
    "InfeasibleTarget",
    "Model",
    "Stimuli",
    "sizes",
    "synthesize",
    "write_things_fmri_subject",
    "write_tvsd_monkey",
]
