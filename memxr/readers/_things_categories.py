"""Readers of the THINGS concept table and of the 27-category membership table.

- ``things_concepts.tsv``: :func:`read_things_concepts`, index ``concept`` (``uniqueID``);
- ``Categories_final_20200131.tsv``: :func:`read_categories_final`, whose display words
  (``bat`` twice, for ``bat1`` and ``bat2``) are resolved to concept ids through the concept
  table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ._table_text import (
    PathLike,
    _cached,
    _pick,
    _read_text,
    _str_array,
    _text,
    _to_float,
    _unique_key,
)

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
    return _text(s).str.replace(r"\s+", " ", regex=True)


def _build_things_concepts(path: Path) -> pd.DataFrame:
    """things_concepts.tsv with a private ``definition`` column (used to join Categories_final)."""
    df = _read_text(path, "\t")
    col = _pick(df, path, ("Word", "uniqueID", TOPDOWN_COLUMN))
    uid = _text(df[col["uniqueID"]])
    _unique_key(uid, path, col["uniqueID"], "concept ids")
    out = pd.DataFrame(
        {
            "word": _str_array(_text(df[col["Word"]])),
            "topdown_categories": _str_array(_text(df[col[TOPDOWN_COLUMN]])),
        },
        index=pd.Index(_str_array(uid), name="concept", dtype=object),
    )
    defcol = _definition_column(df)
    if defcol is not None:
        out["definition"] = _str_array(_squash(df[defcol]))
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
    table = _cached("things_concepts", path, _build_things_concepts)
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
    tc_words = pd.Series(_text(tc["word"]).to_numpy(), dtype=object)
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
    return _str_array(ids[[match[i] for i in range(len(words))]].to_numpy())


def _as_things_concepts(things_concepts: pd.DataFrame | PathLike) -> pd.DataFrame:
    if isinstance(things_concepts, pd.DataFrame):
        if "word" not in things_concepts.columns:
            raise InputError("things_concepts", "word", "the concept table needs a 'word' column")
        return things_concepts
    return _cached("things_concepts", things_concepts, _build_things_concepts)


def _build_categories_final(path: Path) -> pd.DataFrame:
    """All concept rows with ``word``, private ``definition`` and the 27 category columns."""
    df = _read_text(path, "\t")
    wcol = _pick(df, path, ("Word",))["Word"]
    words = _text(df[wcol])
    df = df[(words != "").to_numpy()]  # the column-totals row has no word
    defcol = _definition_column(df)
    start = list(df.columns).index(defcol if defcol is not None else wcol) + 1
    cats = list(df.columns[start : start + N_CATEGORIES])
    if len(cats) < N_CATEGORIES or any(c == "" or c.startswith("Unnamed:") for c in cats):
        raise InputError(
            path, "header", f"expected {N_CATEGORIES} named category columns after the definition"
        )
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out["word"] = _str_array(_text(df[wcol]))
    out["definition"] = _str_array(_squash(df[defcol])) if defcol is not None else ""
    for c in cats:
        v = _to_float(df[c], path, c).fillna(0.0).to_numpy()
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
    table = _cached("categories_final", path, _build_categories_final)
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
