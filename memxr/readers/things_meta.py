"""Readers of the THINGS memorability and concept tables, and the stimulus table built from them.

Four public tables (DATA_FORMATS.md sections 3 and 4) join on the THINGS concept id (``uniqueID``,
e.g. ``aardvark``, ``bat1``, ``air_conditioner``) and on the image file name (``stimulus_id``):

- ``THINGS_Memorability_Scores.csv``: :func:`read_memorability`, index ``stimulus_id``;
- ``Concept_to_category_linking.csv``: :func:`read_concept_categories`, index ``concept``;
- ``things_concepts.tsv``: :func:`read_things_concepts`, index ``concept`` (``uniqueID``);
- ``Categories_final_20200131.tsv``: :func:`read_categories_final`, index ``concept``.

:func:`stimulus_table` joins them into one row per image; :func:`label_stimuli` labels the stimuli
of a recording (concept, category, memorability), in the recording's order. Any other per-image
table keyed by image file name (CSV, TSV or Parquet: image statistics, ratings, other
covariates) is read by :func:`read_image_table`.

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
from .formats.text import (
    PathLike,
    as_text,
    cached_table,
    csv_line,
    pick,
    read_text,
    str_array,
    to_float,
    to_int,
    unique_key,
)

# ----------------------------------------------------------------------
# Readers of the two memorability tables of THINGS: image scores and concept categories.


# ---------------------------------------------------------------------------------------------
# THINGS_Memorability_Scores.csv
# ---------------------------------------------------------------------------------------------


_PATH_RE = r"^(?:(?P<head>.*)/)?(?P<concept>[^/]+)/(?P<name>[^/]+)$"


def _concepts_from_paths(
    file_path: pd.Series, names: pd.Series, path: Path, column: str
) -> np.ndarray:
    """The concept folder of each ``images/<concept>/<image_name>`` path (vectorised)."""
    clean = as_text(file_path).str.replace("\\", "/", regex=False).str.replace(r"/+", "/", regex=True)
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
            f"e.g. {file_path.iloc[bad[0]]!r} on line {csv_line(bad[0])}",
        )
    other = np.flatnonzero((parts["name"] != names).to_numpy())
    if other.size:
        i = other[0]
        raise InputError(
            path,
            column,
            f"{other.size} paths do not end in their image_name, "
            f"e.g. {file_path.iloc[i]!r} for {names.iloc[i]!r} on line {csv_line(i)}",
        )
    return str_array(concept.to_numpy())


def _build_memorability(path: Path) -> pd.DataFrame:
    df = read_text(path, ",")
    col = pick(df, path, ("image_nr", "image_name", "file_path", "cr"))
    names = as_text(df[col["image_name"]])
    unique_key(names, path, col["image_name"], "image names")
    out = pd.DataFrame(
        {
            "concept": _concepts_from_paths(df[col["file_path"]], names, path, col["file_path"]),
            "memorability": to_float(df[col["cr"]], path, col["cr"]).to_numpy(),
            "image_nr": to_int(df[col["image_nr"]], path, col["image_nr"]).to_numpy(),
        },
        index=pd.Index(str_array(names), name="stimulus_id", dtype=object),
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
    return cached_table("memorability", path, _build_memorability).copy()


# ---------------------------------------------------------------------------------------------
# Concept_to_category_linking.csv
# ---------------------------------------------------------------------------------------------


def _build_concept_categories(path: Path) -> pd.DataFrame:
    df = read_text(path, ",")
    col = pick(df, path, ("concept", "category", "category_label", "CR"))
    concept = as_text(df[col["concept"]])
    unique_key(concept, path, col["concept"], "concepts")
    cid = to_int(df[col["category"]], path, col["category"])
    bad = np.flatnonzero((cid < 0).to_numpy())
    if bad.size:
        raise InputError(
            path,
            col["category"],
            f"negative category id {cid.iloc[bad[0]]} on line {csv_line(bad[0])}",
        )
    return pd.DataFrame(
        {
            "category_id": cid.to_numpy(),
            "category": str_array(as_text(df[col["category_label"]])),
            "concept_memorability": to_float(df[col["CR"]], path, col["CR"]).to_numpy(),
        },
        index=pd.Index(str_array(concept), name="concept", dtype=object),
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
    return cached_table("concept_categories", path, _build_concept_categories).copy()


# ----------------------------------------------------------------------
# Readers of the THINGS concept table and of the 27-category membership table.


N_CATEGORIES = 27
"""Number of THINGS high-level categories (``category_id`` 1..27; 0 means none)."""

TOPDOWN_COLUMN = "Top-down Category (manual selection)"
"""Column of ``things_concepts.tsv`` holding a concept's categories among the 27."""


# ---------------------------------------------------------------------------------------------
# things_concepts.tsv
# ---------------------------------------------------------------------------------------------


def _definition_column(df: pd.DataFrame) -> str | None:
    return next((c for c in df.columns if c.lower().startswith("definition")), None)


def _squash(s: pd.Series) -> pd.Series:
    """Text with runs of blanks collapsed, for comparing definitions across files."""
    return as_text(s).str.replace(r"\s+", " ", regex=True)


def _build_things_concepts(path: Path) -> pd.DataFrame:
    """things_concepts.tsv with a private ``definition`` column (used to join Categories_final)."""
    df = read_text(path, "\t")
    col = pick(df, path, ("Word", "uniqueID", TOPDOWN_COLUMN))
    uid = as_text(df[col["uniqueID"]])
    unique_key(uid, path, col["uniqueID"], "concept ids")
    out = pd.DataFrame(
        {
            "word": str_array(as_text(df[col["Word"]])),
            "topdown_categories": str_array(as_text(df[col[TOPDOWN_COLUMN]])),
        },
        index=pd.Index(str_array(uid), name="concept", dtype=object),
    )
    defcol = _definition_column(df)
    if defcol is not None:
        out["definition"] = str_array(_squash(df[defcol]))
    return out


def read_things_concepts(path: PathLike) -> pd.DataFrame:
    """Read ``things_concepts.tsv`` (the THINGS concept table), keeping what joins need.

    Parameters
    ----------
    path : str or path
        The tab-separated table with columns ``Word``, ``uniqueID`` and
        ``Top-down Category (manual selection)`` (the other columns are ignored).

    Returns
    -------
    pandas.DataFrame
        Index ``concept`` (the ``uniqueID``, in file order), columns ``word`` (the display word,
        e.g. ``"air conditioner"``; repeated for homonyms) and ``topdown_categories`` (text as in
        the file, comma-separated when a concept has several categories, ``""`` when none).

    Raises
    ------
    InputError
        Missing file or column, duplicated or empty ``uniqueID``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "things_concepts.tsv"
    >>> _ = p.write_text("Word\\tuniqueID\\tTop-down Category (manual selection)\\n"
    ...                  "bat\\tbat1\\tanimal\\n"
    ...                  'bat\\tbat2\\t"weapon, sports equipment"\\n'
    ...                  "air conditioner\\tair_conditioner\\t\\n")
    >>> read_things_concepts(p)
                                word        topdown_categories
    concept
    bat1                         bat                    animal
    bat2                         bat  weapon, sports equipment
    air_conditioner  air conditioner
    """
    table = cached_table("things_concepts", path, _build_things_concepts)
    return table[["word", "topdown_categories"]].copy()


# ---------------------------------------------------------------------------------------------
# Categories_final_20200131.tsv
# ---------------------------------------------------------------------------------------------


def _occurrence(keys: pd.Series) -> pd.Series:
    """0, 1, ... for the successive rows that share a key (file order)."""
    return keys.groupby(keys.to_numpy(), sort=False).cumcount()


def _match_pass(left: pd.Series, right: pd.Series) -> dict[int, int]:
    """Pairs (left position, right position) whose key is unique on both sides."""
    lk = left[~left.duplicated(keep=False)]
    rk = right[~right.duplicated(keep=False)]
    pos = pd.Index(rk.to_numpy()).get_indexer(lk.to_numpy())
    hit = pos >= 0
    return dict(zip(lk.index[hit].tolist(), rk.index[pos[hit]].tolist(), strict=True))


def _resolve_concepts(
    words: pd.Series, definitions: pd.Series | None, tc: pd.DataFrame, path: Path
) -> np.ndarray:
    """Concept id of each Categories_final row (positions 0..n-1) from the concept table.

    Matched in passes, each on the rows still unmatched, a key counting only when it is unique
    on both sides: (1) the word is itself a ``uniqueID`` (``bow1``, ``aardvark``), (2) display word
    plus definition when both tables have definitions, (3) display word plus its occurrence
    number, so that the n-th ``bat`` row goes to the concept whose word is ``bat`` with the n-th
    id number (``bat1``, ``bat2``).
    """
    words = words.reset_index(drop=True)
    ids = pd.Series(tc.index.to_numpy(), dtype=object)
    tc_words = pd.Series(as_text(tc["word"]).to_numpy(), dtype=object)
    display = set(tc_words)
    tc_defs = tc["definition"] if "definition" in tc.columns else None
    match: dict[int, int] = {}

    def free() -> tuple[np.ndarray, np.ndarray]:
        taken = set(match.values())
        left = np.array([i for i in range(len(words)) if i not in match], dtype=int)
        right = np.array([j for j in range(len(ids)) if j not in taken], dtype=int)
        return left, right

    # (1) the word is a concept id and not the display word of another concept
    by_id = _match_pass(words, ids)
    match.update(
        {i: j for i, j in by_id.items() if tc_words[j] == words[i] or words[i] not in display}
    )
    # (2) display word + definition
    if definitions is not None and tc_defs is not None:
        left, right = free()
        lkey = words[left] + "\t" + _squash(definitions).reset_index(drop=True)[left]
        rkey = tc_words[right] + "\t" + pd.Series(tc_defs.to_numpy(), dtype=object)[right]
        match.update(_match_pass(lkey, rkey))
    # (3) display word + occurrence number among the unmatched rows; the concept table's
    # homonyms counted in the order of their id number (bat1, bat2), whatever its row order
    left, right = free()
    number = ids[right].str.extract(r"(\d+)$")[0].astype(float).fillna(-1.0).to_numpy()
    right = right[np.lexsort((right, number))]
    lw, rw = words[left], tc_words[right]
    lkey = lw + "#" + _occurrence(lw).astype(str).to_numpy()
    rkey = rw + "#" + _occurrence(rw).astype(str).to_numpy()
    match.update(_match_pass(lkey, rkey))

    left, _ = free()
    if left.size:
        raise InputError(
            path,
            "Word",
            f"{left.size} words match no concept of the concept table, "
            f"e.g. {words[left[:3]].tolist()}",
        )
    return str_array(ids[[match[i] for i in range(len(words))]].to_numpy())


def _as_things_concepts(things_concepts: pd.DataFrame | PathLike) -> pd.DataFrame:
    if isinstance(things_concepts, pd.DataFrame):
        if "word" not in things_concepts.columns:
            raise InputError("things_concepts", "word", "the concept table needs a 'word' column")
        return things_concepts
    return cached_table("things_concepts", things_concepts, _build_things_concepts)


def _build_categories_final(path: Path) -> pd.DataFrame:
    """All concept rows with ``word``, private ``definition`` and the 27 category columns."""
    df = read_text(path, "\t")
    wcol = pick(df, path, ("Word",))["Word"]
    words = as_text(df[wcol])
    df = df[(words != "").to_numpy()]  # the column-totals row has no word
    defcol = _definition_column(df)
    start = list(df.columns).index(defcol if defcol is not None else wcol) + 1
    cats = list(df.columns[start : start + N_CATEGORIES])
    if len(cats) < N_CATEGORIES or any(c == "" or c.startswith("Unnamed:") for c in cats):
        raise InputError(
            path, "header", f"expected {N_CATEGORIES} named category columns after the definition"
        )
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out["word"] = str_array(as_text(df[wcol]))
    out["definition"] = str_array(_squash(df[defcol])) if defcol is not None else ""
    for c in cats:
        v = to_float(df[c], path, c).fillna(0.0).to_numpy()
        bad = np.flatnonzero((v != 0) & (v != 1))
        if bad.size:
            raise InputError(
                path, c, f"one-hot value {v[bad[0]]:g} is not 0 or 1 (row {bad[0] + 1} of concepts)"
            )
        out[c] = v == 1
    out.attrs["has_definition"] = defcol is not None
    return out


def read_categories_final(
    path: PathLike, things_concepts: pd.DataFrame | PathLike | None = None
) -> pd.DataFrame:
    """Read ``Categories_final_20200131.tsv``: membership of each concept in the 27 categories.

    The file's ``Word`` is the display word (``air conditioner``; ``bat`` twice for the homonyms
    ``bat1`` and ``bat2``; sometimes the id itself, ``bow1``), so concept ids are resolved through
    the THINGS concept table: by the word when it is an id, else by display word and definition
    (when both files have definitions), else by display word and occurrence number (the first
    ``bat`` row is ``bat1``, the second ``bat2``: homonyms are numbered in file order).

    Parameters
    ----------
    path : str or path
        The tab-separated table: ``Word``, a definition, then one-hot category columns. Rows
        without a word (the last, column-totals row) are dropped.
    things_concepts : DataFrame or str or path, optional
        The concept table (as from :func:`read_things_concepts`, or the path of
        ``things_concepts.tsv``) used to resolve concept ids.

    Returns
    -------
    pandas.DataFrame
        One bool column per category (the first 27 category columns, names as in the file), rows
        in file order. Index ``concept`` when ``things_concepts`` is given, else ``word`` (the
        display word, which repeats for homonyms).

    Raises
    ------
    InputError
        Missing file or ``Word`` column, fewer than 27 category columns, a value other than
        empty/0/1, or a word that matches no concept of ``things_concepts``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> cats = "\\t".join(f"c{i}" for i in range(1, 28))
    >>> row = lambda word, k: word + "\\tdef\\t" + "\\t".join("1" if i == k else "" for i in range(27))
    >>> _ = (d / "cats.tsv").write_text("\\n".join(
    ...     ["Word\\tDefinition\\t" + cats, row("bat", 0), row("bat", 21),
    ...      row("air conditioner", 8), "\\t\\t2\\t" + "\\t".join(["1"] * 26)]) + "\\n")
    >>> _ = (d / "concepts.tsv").write_text("Word\\tuniqueID\\tTop-down Category (manual selection)\\n"
    ...     "bat\\tbat1\\t\\nbat\\tbat2\\t\\nair conditioner\\tair_conditioner\\t\\n")
    >>> cf = read_categories_final(d / "cats.tsv", d / "concepts.tsv")
    >>> cf.index.tolist(), cf.shape
    (['bat1', 'bat2', 'air_conditioner'], (3, 27))
    >>> bool(cf.loc["bat2", "c22"]), bool(cf.loc["bat2", "c1"])
    (True, False)
    """
    table = cached_table("categories_final", path, _build_categories_final)
    cats = [c for c in table.columns if c not in ("word", "definition")]
    out = table[cats].copy()
    out.attrs = {}
    if things_concepts is None:
        out.index = pd.Index(table["word"].to_numpy(), name="word", dtype=object)
        return out
    tc = _as_things_concepts(things_concepts)
    defs = table["definition"] if table.attrs.get("has_definition") else None
    concepts = _resolve_concepts(table["word"], defs, tc, Path(path))
    out.index = pd.Index(concepts, name="concept", dtype=object)
    return out


__all__ = [
    "IMAGE_KEYS",
    "N_CATEGORIES",
    "label_stimuli",
    "read_categories_final",
    "read_concept_categories",
    "read_image_table",
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
    mem = cached_table("memorability", memorability, _build_memorability)
    concept = mem["concept"].to_numpy()
    out = pd.DataFrame({"concept": concept}, index=mem.index.copy())
    unknown: set[str] = set()
    category = np.full(len(out), "", dtype=object)
    category_id = np.full(len(out), UNKNOWN_CATEGORY_ID, dtype=np.int64)
    if concepts is not None:
        cc = cached_table("concept_categories", concepts, _build_concept_categories)
        pos = cc.index.get_indexer(concept)
        hit = pos >= 0
        category[hit] = cc["category"].to_numpy()[pos[hit]]
        category_id[hit] = cc["category_id"].to_numpy()[pos[hit]]
        unknown |= set(concept[~hit])
    out["category"] = category
    out["category_id"] = category_id
    out["memorability"] = mem["memorability"].to_numpy(dtype="float64")
    if things_concepts is not None:
        tc = cached_table("things_concepts", things_concepts, _build_things_concepts)
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
    ids = str_array([v.decode() if isinstance(v, bytes) else v for v in stimulus_ids])
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
    return str_array(["" if v is None or pd.isna(v) else str(v).strip() for v in values])


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
        mem = cached_table("memorability", memorability, _build_memorability)
        pos = mem.index.get_indexer(ids)
        found = pos >= 0
        table_concept = mem["concept"].to_numpy()[pos[found]]
        mismatch = int(np.sum((fallback[found] != "") & (fallback[found] != table_concept)))
        concept[found] = table_concept
        score[found] = mem["memorability"].to_numpy(dtype="float64")[pos[found]]
    category = np.full(n, "", dtype=object)
    if concepts is not None:
        cc = cached_table("concept_categories", concepts, _build_concept_categories)
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


# ---------------------------------------------------------------------------------------------
# Per-image tables (covariates): CSV, TSV or Parquet keyed by the THINGS image file name
# ---------------------------------------------------------------------------------------------

IMAGE_KEYS = ("stimulus_id", "image_name", "image", "file_name", "filename", "file_path", "path")
"""Column names recognised as the image key of a per-image table, in order of preference."""


def _image_key(columns: Sequence[str], path: Path, key: str | None) -> str:
    if key is not None:
        if key not in columns:
            raise InputError(path, key, "missing key column")
        return key
    lower = {str(c).lower(): str(c) for c in columns}
    for name in IMAGE_KEYS:
        if name in lower:
            return lower[name]
    raise InputError(path, "stimulus_id", f"no image key column (one of {', '.join(IMAGE_KEYS)})")


def _build_image_table(path: Path, key: str | None = None) -> pd.DataFrame:
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            raw = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises its own error types
            raise InputError(path, "file", f"cannot be read as Parquet: {e}") from None
        if not isinstance(raw.index, pd.RangeIndex) and raw.index.name in (*IMAGE_KEYS, key):
            raw = raw.reset_index()
        raw.columns = [str(c) for c in raw.columns]
        text = raw.astype({c: str for c in raw.columns if not pd.api.types.is_numeric_dtype(raw[c])})
    else:
        raw = text = read_text(path, "\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    kcol = _image_key(list(raw.columns), path, key)
    names = as_text(text[kcol]).str.replace("\\", "/", regex=False).str.rsplit("/", n=1).str[-1]
    unique_key(names, path, kcol, "image names")
    columns, dropped = {}, []
    for c in raw.columns:
        if c == kcol or c.startswith("Unnamed:"):
            continue
        col = raw[c]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            columns[c] = col.to_numpy(dtype="float64", na_value=np.nan)
            continue
        lower = as_text(col).str.lower()
        if lower.isin(["true", "false"]).any():  # booleans written as text
            col = lower.replace({"true": "1", "false": "0"})
        try:
            columns[c] = to_float(col, path, c).to_numpy()
        except InputError:
            dropped.append(c)
    out = pd.DataFrame(columns, index=pd.Index(str_array(names), name="stimulus_id", dtype=object))
    out.attrs = {"source": path.name, "key": kcol, "dropped_columns": dropped}
    return out


def read_image_table(path: PathLike, key: str | None = None) -> pd.DataFrame:
    """Read a per-image table (e.g. image statistics or other covariates) keyed by image name.

    Parameters
    ----------
    path : str or path
        A CSV (``.tsv``/``.tab``: tab-separated) or Parquet (``.parquet``/``.pq``) file with
        one row per image: a key column naming the image and any numeric columns.
    key : str, optional
        The key column; by default the first of :data:`IMAGE_KEYS` present (any case). A
        path such as ``images/aardvark/aardvark_01b.jpg`` keys the image by its file name.

    Returns
    -------
    pandas.DataFrame
        Index ``stimulus_id`` (the THINGS image file name, e.g. ``aardvark_01b.jpg``), one
        float64 column per numeric column (empty and NA cells NaN; booleans, also written
        as ``True``/``False``, 0/1). Columns
        that are not numbers (labels) are left out and named in
        ``attrs["dropped_columns"]``; ``attrs["source"]`` is the file name.

    Raises
    ------
    InputError
        Missing file or key column, an empty or duplicated image name, a file that cannot
        be parsed.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "stats.csv"
    >>> _ = p.write_text("image_name,concept,luminance,clutter\\n"
    ...                  "aardvark_01b.jpg,aardvark,0.4,12\\n"
    ...                  "aardvark_02s.jpg,aardvark,NA,9\\n")
    >>> t = read_image_table(p)
    >>> t
                      luminance  clutter
    stimulus_id
    aardvark_01b.jpg        0.4     12.0
    aardvark_02s.jpg        NaN      9.0
    >>> t.attrs["dropped_columns"]
    ['concept']
    """
    p = Path(path)
    table = cached_table(f"image_table:{key}", p, lambda q: _build_image_table(q, key))
    out = table.copy()
    out.attrs = dict(table.attrs, dropped_columns=list(table.attrs["dropped_columns"]))
    return out
