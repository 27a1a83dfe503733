"""Readers of the THINGS memorability and concept tables, and the stimulus table built from them.

Four public tables (DATA_FORMATS.md sections 3 and 4) join on the THINGS concept id (``uniqueID``,
e.g. ``aardvark``, ``bat1``, ``air_conditioner``) and on the image file name (``stimulus_id``):

- ``THINGS_Memorability_Scores.csv``: :func:`read_memorability`, index ``stimulus_id``;
- ``Concept_to_category_linking.csv``: :func:`read_concept_categories`, index ``concept``;
- ``things_concepts.tsv``: :func:`read_things_concepts`, index ``concept`` (``uniqueID``);
- ``Categories_final_20200131.tsv``: :func:`read_categories_final`, index ``concept``.

:func:`stimulus_table` joins them into one row per image; :func:`label_stimuli` labels the stimuli
of a recording (concept, category, memorability), in the recording's order.

Quirks of the real files handled by the readers: a UTF-8 byte-order mark, CRLF line ends, trailing unnamed
columns, the category label ``"NA"`` (a label, kept as text, not a missing value), a missing score
(``goalpost_08s.jpg``, kept as NaN), a totals row at the end of ``Categories_final`` and display
words there that repeat for homonyms (``bat`` twice, for ``bat1`` and ``bat2``). The concept of an
image is the folder of its ``file_path`` (``images/<concept>/<image_name>``), never a prefix of the
file name (concepts such as ``baton4`` or ``wind_chimes`` contain digits and underscores).

Tables are small (26k rows at most): each is read whole, once per (path, size, mtime) in a process.

Examples
--------
>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "scores.csv").write_text(
...     "image_nr,image_name,file_path,cr\\r\\n"
...     "1,baton4_01s.jpg,images/baton4/baton4_01s.jpg,0.8\\r\\n"
...     "2,goalpost_08s.jpg,images/goalpost/goalpost_08s.jpg,NaN\\r\\n")
>>> _ = (d / "links.csv").write_text(
...     "\\ufeffconcept,category,category_label,CR,,\\n"
...     "baton4,0,NA,0.8,,\\n"
...     "goalpost,22,sports equipment,NaN,,\\n", encoding="utf-8")
>>> df = label_stimuli(["goalpost_08s.jpg", "baton4_01s.jpg", "cat_01b.jpg"],
...                    memorability=d / "scores.csv", concepts=d / "links.csv")
>>> df.loc[["goalpost_08s.jpg", "baton4_01s.jpg"]]
                   concept          category  memorability
stimulus_id
goalpost_08s.jpg  goalpost  sports equipment           NaN
baton4_01s.jpg      baton4                NA           0.8
>>> print(df.loc["cat_01b.jpg"].to_dict())
{'concept': '', 'category': '', 'memorability': nan}
>>> df.attrs["matched"], df.attrs["missing_score"], df.attrs["unknown"]
(1, 1, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ._table_text import PathLike, _cached, _str_array
from ._things_categories import (
    N_CATEGORIES,
    _build_things_concepts,
    read_categories_final,
    read_things_concepts,
)
from ._things_categories import TOPDOWN_COLUMN as TOPDOWN_COLUMN
from ._things_tables import (
    _build_concept_categories,
    _build_memorability,
    read_concept_categories,
    read_memorability,
)

__all__ = [
    "N_CATEGORIES",
    "label_stimuli",
    "read_categories_final",
    "read_concept_categories",
    "read_memorability",
    "read_things_concepts",
    "stimulus_table",
]

UNKNOWN_CATEGORY_ID = -1
"""``category_id`` of a stimulus whose concept is not in the concept table."""


def _category_column_name(name: str) -> str:
    return "cat_" + "_".join(name.replace("-", " ").split())


def stimulus_table(
    memorability: PathLike | None = None,
    concepts: PathLike | None = None,
    things_concepts: PathLike | None = None,
    categories: PathLike | None = None,
) -> pd.DataFrame:
    """One row per image of the memorability table, labelled from the concept tables.

    Parameters
    ----------
    memorability : str or path
        ``THINGS_Memorability_Scores.csv`` (required: it defines the rows).
    concepts : str or path, optional
        ``Concept_to_category_linking.csv``, for ``category`` and ``category_id``.
    things_concepts : str or path, optional
        ``things_concepts.tsv``, adds ``topdown_categories``; also needed with ``categories``.
    categories : str or path, optional
        ``Categories_final_20200131.tsv``; adds one bool column per category, named ``cat_`` and
        the category name with blanks as ``_`` (``cat_animal``, ``cat_body_part``, ...).

    Returns
    -------
    pandas.DataFrame
        Index ``stimulus_id`` (file order of the memorability table), columns ``concept``,
        ``category`` (label; ``""`` when the concept is not in ``concepts`` or no table is given),
        ``category_id`` (int64; 0 = no category, -1 = unknown), ``memorability`` (float64, NaN
        kept), then ``topdown_categories`` (``""`` when unknown) and the ``cat_*`` columns
        (False when unknown) when asked for. ``attrs["unknown_concepts"]`` counts the distinct
        concepts of the images that a given concept table lacks; ``attrs["source"]`` is the
        memorability file's name.

    Raises
    ------
    TypeError
        When ``memorability`` is None, or ``categories`` is given without ``things_concepts``.
    InputError
        From the readers.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "scores.csv").write_text("image_nr,image_name,file_path,cr\\n"
    ...     "1,bat1_01b.jpg,images/bat1/bat1_01b.jpg,0.7\\n"
    ...     "2,yak_02s.jpg,images/yak/yak_02s.jpg,0.9\\n")
    >>> _ = (d / "links.csv").write_text("concept,category,category_label,CR\\n"
    ...     "bat1,1,animal,0.7\\n")
    >>> stimulus_table(d / "scores.csv", d / "links.csv")
                concept category  category_id  memorability
    stimulus_id
    bat1_01b.jpg    bat1   animal            1           0.7
    yak_02s.jpg      yak                    -1           0.9
    """
    if memorability is None:
        raise TypeError("stimulus_table() needs the memorability table (its rows are the images)")
    if categories is not None and things_concepts is None:
        raise TypeError("stimulus_table(categories=...) needs things_concepts to resolve concepts")
    mem = _cached("memorability", memorability, _build_memorability)
    concept = mem["concept"].to_numpy()
    out = pd.DataFrame({"concept": concept}, index=mem.index.copy())
    unknown: set[str] = set()
    category = np.full(len(out), "", dtype=object)
    category_id = np.full(len(out), UNKNOWN_CATEGORY_ID, dtype=np.int64)
    if concepts is not None:
        cc = _cached("concept_categories", concepts, _build_concept_categories)
        pos = cc.index.get_indexer(concept)
        hit = pos >= 0
        category[hit] = cc["category"].to_numpy()[pos[hit]]
        category_id[hit] = cc["category_id"].to_numpy()[pos[hit]]
        unknown |= set(concept[~hit])
    out["category"] = category
    out["category_id"] = category_id
    out["memorability"] = mem["memorability"].to_numpy(dtype="float64")
    if things_concepts is not None:
        tc = _cached("things_concepts", things_concepts, _build_things_concepts)
        pos = tc.index.get_indexer(concept)
        hit = pos >= 0
        top = np.full(len(out), "", dtype=object)
        top[hit] = tc["topdown_categories"].to_numpy()[pos[hit]]
        out["topdown_categories"] = top
        unknown |= set(concept[~hit])
    if categories is not None:
        cf = read_categories_final(categories, things_concepts)
        pos = cf.index.get_indexer(concept)
        hit = pos >= 0
        for c in cf.columns:
            flag = np.zeros(len(out), dtype=bool)
            flag[hit] = cf[c].to_numpy()[pos[hit]]
            out[_category_column_name(c)] = flag
        unknown |= set(concept[~hit])
    out.attrs["unknown_concepts"] = len(unknown)
    out.attrs["source"] = Path(memorability).name
    return out


def _ids_array(stimulus_ids: Sequence[str]) -> np.ndarray:
    ids = _str_array([v.decode() if isinstance(v, bytes) else v for v in stimulus_ids])
    index = pd.Index(ids)
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()
        raise InputError(
            "stimulus_ids", "stimulus_id", f"{len(dup)} duplicated ids, e.g. {dup[:3].tolist()}"
        )
    return ids


def _fallback_array(fallback: Sequence[str] | None, n: int) -> np.ndarray:
    if fallback is None:
        return np.full(n, "", dtype=object)
    values = list(fallback)
    if len(values) != n:
        raise InputError(
            "fallback_concepts", "concept", f"has {len(values)} values for {n} stimulus ids"
        )
    return _str_array(["" if v is None or pd.isna(v) else str(v).strip() for v in values])


def label_stimuli(
    stimulus_ids: Sequence[str],
    *,
    memorability: PathLike | None = None,
    concepts: PathLike | None = None,
    fallback_concepts: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Concept, category and memorability of each stimulus of a recording, in its order.

    Parameters
    ----------
    stimulus_ids : sequence of str
        THINGS image file names (``dog_12s.jpg``), unique; matched exactly against
        ``image_name`` of the memorability table.
    memorability : str or path, optional
        ``THINGS_Memorability_Scores.csv``.
    concepts : str or path, optional
        ``Concept_to_category_linking.csv``.
    fallback_concepts : sequence of str, optional
        One concept per stimulus id, from the recording itself (the fMRI ``concept`` column,
        the TVSD image folder), used for ids that the memorability table lacks. Empty strings,
        None and NaN mean unknown.

    Returns
    -------
    pandas.DataFrame
        Index ``stimulus_id`` (same order as given), columns ``concept`` (str, from the
        memorability table's folder, else the fallback, else ``""``), ``category`` (the label of
        the concept in ``concepts``, ``"NA"`` for category 0, ``""`` when unknown) and
        ``memorability`` (float64, NaN when unknown or unscored). ``attrs`` holds counts:
        ``matched`` (in the table, with a score), ``missing_score`` (in the table, NaN score),
        ``unknown`` (not in the table, or no table given) and ``concept_mismatch`` (ids whose
        fallback concept differs from the table's).

    Raises
    ------
    InputError
        Duplicated stimulus ids, ``fallback_concepts`` of another length, or a bad table.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "scores.csv"
    >>> _ = p.write_text("image_nr,image_name,file_path,cr\\n"
    ...                  "1,baton4_03s.jpg,images/baton4/baton4_03s.jpg,0.75\\n")
    >>> df = label_stimuli(["x_01b.jpg", "baton4_03s.jpg"], memorability=p,
    ...                    fallback_concepts=["x", "baton"])
    >>> df[["concept", "memorability"]]
                   concept  memorability
    stimulus_id
    x_01b.jpg            x           NaN
    baton4_03s.jpg  baton4          0.75
    >>> df.attrs
    {'matched': 1, 'missing_score': 0, 'unknown': 1, 'concept_mismatch': 1}
    """
    ids = _ids_array(stimulus_ids)
    n = len(ids)
    fallback = _fallback_array(fallback_concepts, n)
    concept = fallback.copy()
    score = np.full(n, np.nan)
    found = np.zeros(n, dtype=bool)
    mismatch = 0
    if memorability is not None:
        mem = _cached("memorability", memorability, _build_memorability)
        pos = mem.index.get_indexer(ids)
        found = pos >= 0
        table_concept = mem["concept"].to_numpy()[pos[found]]
        mismatch = int(np.sum((fallback[found] != "") & (fallback[found] != table_concept)))
        concept[found] = table_concept
        score[found] = mem["memorability"].to_numpy(dtype="float64")[pos[found]]
    category = np.full(n, "", dtype=object)
    if concepts is not None:
        cc = _cached("concept_categories", concepts, _build_concept_categories)
        pos = cc.index.get_indexer(concept)
        hit = pos >= 0
        category[hit] = cc["category"].to_numpy()[pos[hit]]
    out = pd.DataFrame(
        {"concept": concept, "category": category, "memorability": score},
        index=pd.Index(ids, name="stimulus_id", dtype=object),
    )
    nan = np.isnan(score)
    out.attrs.update(
        matched=int(np.sum(found & ~nan)),
        missing_score=int(np.sum(found & nan)),
        unknown=int(np.sum(~found)),
        concept_mismatch=mismatch,
    )
    return out
