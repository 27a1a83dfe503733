"""Readers of the raw formats: THINGS-fMRI betas, TVSD normMUA and trials, THINGS tables.

One module per source (:mod:`.things_fmri`, :mod:`.tvsd`, :mod:`.tvsd_trials`,
:mod:`.things_meta`), the file formats they share in :mod:`.formats` (HDF5 through h5py,
pandas' fixed format, MATLAB v7.3, the THINGS text tables), and here the one registry of
sources, :data:`SOURCES`: for each kind of raw input, its reader, the ``dataset`` of the cube
it gives, the key that names the recording (``subject`` or ``monkey``) and the raw files it
reads. The command line (``memxr ingest``) and the pipeline (``kind:`` of a spec's cube) both
choose their reader here.

Readers return lazy, labelled cubes (:mod:`memxr.schema`) or small tables, and never read a
whole raw file into memory.

May import: numpy, pandas, scipy, h5py, dask, xarray, :mod:`memxr.schema`,
:mod:`memxr.errors` and :mod:`memxr.provenance`; never stores, analyses, the pipeline,
the report or the command line.

Examples
--------
>>> sorted(SOURCES)
['things-fmri', 'tvsd', 'tvsd-trials']
>>> src = SOURCES["things-fmri"]
>>> src.dataset, src.id_key, src.identify(1)
('things-fmri', 'subject', 'sub-01')
>>> src.raw_names("sub-01")[0]
'sub-01_ResponseData.h5'
>>> SOURCES["tvsd-trials"].dataset, SOURCES["tvsd-trials"].identify("monkeyN")
('tvsd-trials', 'N')
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from .things_fmri import read_things_fmri, subject_label
from .things_meta import (
    label_stimuli,
    read_categories_final,
    read_concept_categories,
    read_image_table,
    read_memorability,
    read_things_concepts,
)
from .tvsd import normalize_monkey, read_normmua, read_things_imgs
from .tvsd_trials import read_mapping, read_trials

__all__ = [
    "SOURCES",
    "Source",
    "input_paths",
    "label_stimuli",
    "read_categories_final",
    "read_concept_categories",
    "read_image_table",
    "read_mapping",
    "read_memorability",
    "read_normmua",
    "read_source",
    "read_things_concepts",
    "read_things_fmri",
    "read_things_imgs",
    "read_trials",
]


@dataclass(frozen=True)
class Source:
    """One kind of raw input and how to read it.

    Attributes
    ----------
    kind : str
        The name used by ``memxr ingest`` and by a spec's ``inputs.cubes[].kind``.
    dataset : str
        The ``dataset`` attribute of the cubes it gives (:data:`memxr.schema.DATASETS`).
    id_key : str
        The argument naming the recording: ``"subject"`` or ``"monkey"``.
    raw_files : tuple of str
        Files the reader needs in the input folder (``{id}`` stands for the recording).
    reader : callable
        ``reader(input_dir, recording, *, memorability, concepts, checksum, **options)``.
    normalize : callable
        Normalises a recording name (``1`` -> ``sub-01``, ``monkeyN`` -> ``N``).
    options : tuple of str
        Extra keyword arguments the reader accepts (``dtype`` for trials).
    per_recording_files : bool
        Whether the folder holds several recordings whose files carry the ``{id}``
        prefix (THINGS-fMRI), rather than one recording per folder (TVSD).
    """

    kind: str
    dataset: str
    id_key: str
    raw_files: tuple[str, ...]
    reader: Callable[..., xr.Dataset] = field(repr=False)
    normalize: Callable[[Any], str] = field(repr=False)
    options: tuple[str, ...] = ()
    per_recording_files: bool = False

    def identify(self, recording: Any) -> str:
        """The normalised name of a recording (raises ``ValueError`` or ``InputError``)."""
        return self.normalize(recording)

    def raw_names(self, recording: str) -> list[str]:
        """Names of the raw files the reader needs, relative to the input folder."""
        return [p.format(id=recording) for p in self.raw_files]

    def fingerprint_paths(self, input_dir: str | os.PathLike, recording: str) -> list[Path]:
        """What a cached pipeline step watches: the recording's files, or its whole folder."""
        folder = Path(input_dir)
        if self.per_recording_files:
            return sorted(folder.glob(f"{recording}_*"))
        return [folder]

    def read(
        self,
        input_dir: str | os.PathLike,
        recording: Any,
        *,
        memorability: str | os.PathLike | None = None,
        concepts: str | os.PathLike | None = None,
        checksum: bool = True,
        **options: Any,
    ) -> xr.Dataset:
        """The lazy cube of one recording (see the reader of this kind for the details)."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"{self.kind} reader takes no option {unknown[0]!r}")
        given = {k: v for k, v in options.items() if v is not None}
        return self.reader(
            input_dir,
            recording,
            memorability=memorability,
            concepts=concepts,
            checksum=checksum,
            **given,
        )


SOURCES: dict[str, Source] = {
    s.kind: s
    for s in (
        Source(
            kind="things-fmri",
            dataset="things-fmri",
            id_key="subject",
            raw_files=(
                "{id}_ResponseData.h5",
                "{id}_VoxelMetadata.csv",
                "{id}_StimulusMetadata.csv",
            ),
            reader=read_things_fmri,
            normalize=subject_label,
            per_recording_files=True,
        ),
        Source(
            kind="tvsd",
            dataset="tvsd-normmua",
            id_key="monkey",
            raw_files=("THINGS_normMUA.mat",),
            reader=read_normmua,
            normalize=normalize_monkey,
        ),
        Source(
            kind="tvsd-trials",
            dataset="tvsd-trials",
            id_key="monkey",
            raw_files=("THINGS_MUA_trials.mat",),
            reader=read_trials,
            normalize=normalize_monkey,
            options=("dtype",),
        ),
    )
}
"""The raw sources memxr reads, by kind."""


def input_paths(
    names: list[str],
    input_dir: str | os.PathLike,
    tables: tuple[str | os.PathLike | None, ...] = (),
) -> list[Path]:
    """The files behind a cube's ``inputs`` names (relative to ``input_dir``).

    A reader names the THINGS tables by their file name only; when such a table is not
    in ``input_dir`` it is the one of ``tables`` with that name.

    Examples
    --------
    >>> [p.as_posix() for p in input_paths(["a.h5", "scores.csv"], "raw", ("/t/scores.csv",))]
    ['raw/a.h5', '/t/scores.csv']
    """
    root = Path(input_dir)
    by_name = {Path(t).name: Path(t) for t in tables if t is not None}
    return [root / n if (root / n).exists() else by_name.get(n, root / n) for n in names]


def read_source(kind: str, input_dir: str | os.PathLike, recording: Any, **kwargs: Any) -> xr.Dataset:
    """Read one recording of a registered kind: ``SOURCES[kind].read(...)``.

    Raises
    ------
    KeyError
        For a kind that is not in :data:`SOURCES`.
    """
    if kind not in SOURCES:
        raise KeyError(f"unknown source kind {kind!r}; one of {', '.join(SOURCES)}")
    return SOURCES[kind].read(input_dir, recording, **kwargs)
