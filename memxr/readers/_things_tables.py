"""Readers of the two memorability tables of THINGS: image scores and concept categories.

- ``THINGS_Memorability_Scores.csv``: :func:`read_memorability`, index ``stimulus_id``; the
  concept of an image is the folder of its ``file_path``;
- ``Concept_to_category_linking.csv``: :func:`read_concept_categories`, index ``concept``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ._table_text import (
    PathLike,
    _cached,
    _line,
    _pick,
    _read_text,
    _str_array,
    _text,
    _to_float,
    _to_int,
    _unique_key,
)

# ---------------------------------------------------------------------------------------------
# THINGS_Memorability_Scores.csv
# ---------------------------------------------------------------------------------------------


_PATH_RE = r"^(?:(?P<head>.*)/)?(?P<concept>[^/]+)/(?P<name>[^/]+)$"


def _concepts_from_paths(
    file_path: pd.Series, names: pd.Series, path: Path, column: str
) -> np.ndarray:
    """The concept folder of each ``images/<concept>/<image_name>`` path (vectorised)."""
    clean = _text(file_path).str.replace("\\", "/", regex=False).str.replace(r"/+", "/", regex=True)
    clean = clean.str.replace(r"^(?:\./)+", "", regex=True)
    parts = clean.str.extract(_PATH_RE)
    concept = parts["concept"]
    no_folder = (
        concept.isna() | concept.isin([".", ".."]) | ((concept == "images") & parts["head"].isna())
    ).to_numpy()
    bad = np.flatnonzero(no_folder)
    if bad.size:
        raise InputError(
            path,
            column,
            f"{bad.size} paths have no concept folder (expected images/<concept>/<image_name>), "
            f"e.g. {file_path.iloc[bad[0]]!r} on line {_line(bad[0])}",
        )
    other = np.flatnonzero((parts["name"] != names).to_numpy())
    if other.size:
        i = other[0]
        raise InputError(
            path,
            column,
            f"{other.size} paths do not end in their image_name, "
            f"e.g. {file_path.iloc[i]!r} for {names.iloc[i]!r} on line {_line(i)}",
        )
    return _str_array(concept.to_numpy())


def _build_memorability(path: Path) -> pd.DataFrame:
    df = _read_text(path, ",")
    col = _pick(df, path, ("image_nr", "image_name", "file_path", "cr"))
    names = _text(df[col["image_name"]])
    _unique_key(names, path, col["image_name"], "image names")
    out = pd.DataFrame(
        {
            "concept": _concepts_from_paths(df[col["file_path"]], names, path, col["file_path"]),
            "memorability": _to_float(df[col["cr"]], path, col["cr"]).to_numpy(),
            "image_nr": _to_int(df[col["image_nr"]], path, col["image_nr"]).to_numpy(),
        },
        index=pd.Index(_str_array(names), name="stimulus_id", dtype=object),
    )
    return out


def read_memorability(path: PathLike) -> pd.DataFrame:
    """Read ``THINGS_Memorability_Scores.csv``: one row per image.

    Parameters
    ----------
    path : str or path
        The CSV with columns ``image_nr, image_name, file_path, cr`` (others are ignored; a BOM,
        CRLF line ends and trailing unnamed columns are accepted).

    Returns
    -------
    pandas.DataFrame
        Index ``stimulus_id`` (the image file name, unique), columns ``concept`` (str, the folder
        of ``file_path``), ``memorability`` (float64, the corrected recognition ``cr``; a missing
        score stays NaN) and ``image_nr`` (int64).

    Raises
    ------
    InputError
        Missing file or column, duplicated or empty image names, a ``file_path`` without a
        concept folder or not ending in its ``image_name``, a score or ``image_nr`` that is not a
        number.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "scores.csv"
    >>> _ = p.write_text("image_nr,image_name,file_path,cr\\n"
    ...                  "1,wind_chimes_01b.jpg,images/wind_chimes/wind_chimes_01b.jpg,0.9\\n"
    ...                  "2,goalpost_08s.jpg,images/goalpost/goalpost_08s.jpg,\\n")
    >>> read_memorability(p)
                          concept  memorability  image_nr
    stimulus_id
    wind_chimes_01b.jpg  wind_chimes           0.9         1
    goalpost_08s.jpg        goalpost           NaN         2
    """
    return _cached("memorability", path, _build_memorability).copy()


# ---------------------------------------------------------------------------------------------
# Concept_to_category_linking.csv
# ---------------------------------------------------------------------------------------------


def _build_concept_categories(path: Path) -> pd.DataFrame:
    df = _read_text(path, ",")
    col = _pick(df, path, ("concept", "category", "category_label", "CR"))
    concept = _text(df[col["concept"]])
    _unique_key(concept, path, col["concept"], "concepts")
    cid = _to_int(df[col["category"]], path, col["category"])
    bad = np.flatnonzero((cid < 0).to_numpy())
    if bad.size:
        raise InputError(
            path,
            col["category"],
            f"negative category id {cid.iloc[bad[0]]} on line {_line(bad[0])}",
        )
    return pd.DataFrame(
        {
            "category_id": cid.to_numpy(),
            "category": _str_array(_text(df[col["category_label"]])),
            "concept_memorability": _to_float(df[col["CR"]], path, col["CR"]).to_numpy(),
        },
        index=pd.Index(_str_array(concept), name="concept", dtype=object),
    )


def read_concept_categories(path: PathLike) -> pd.DataFrame:
    """Read ``Concept_to_category_linking.csv``: one category per concept.

    Parameters
    ----------
    path : str or path
        The CSV with columns ``concept, category, category_label, CR`` (others are ignored; a BOM
        and trailing unnamed columns are accepted).

    Returns
    -------
    pandas.DataFrame
        Index ``concept``, columns ``category_id`` (int64, 1..27, 0 = no category), ``category``
        (the label as text; the label ``"NA"`` of category 0 is kept as the string ``"NA"``) and
        ``concept_memorability`` (float64, the concept's mean score ``CR``; NaN when missing).

    Raises
    ------
    InputError
        Missing file or column, duplicated or empty concepts, a non-integer or negative
        category id, a ``CR`` that is not a number.

    Notes
    -----
    The file is read as it is. In the public copy (1,854 rows sorted in ASCII order) the
    ``category``/``category_label`` cells of the 20 rows where ASCII order differs from the
    THINGS concept order (``camera1`` .. ``camera_lens``, ``chicken*``, ``crystal*``, ``hot*``,
    ``ice*``, ``pepper*``) follow the THINGS order, not the row's concept: e.g. ``hot_chocolate``
    is labelled ``vehicle`` and ``hot-air_balloon`` ``drink``. ``CR`` is keyed correctly (it
    equals the mean image score of the row's concept).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "links.csv"
    >>> _ = p.write_text("\\ufeffconcept,category,category_label,CR,,,\\r\\n"
    ...                  "bat1,1,animal,0.80,,,\\r\\n"
    ...                  "bow3,0,NA,0.76,,,4.1\\r\\n", encoding="utf-8")
    >>> read_concept_categories(p)
             category_id category  concept_memorability
    concept
    bat1               1   animal                  0.80
    bow3               0       NA                  0.76
    """
    return _cached("concept_categories", path, _build_concept_categories).copy()
