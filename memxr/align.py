"""Stimulus labels, stimuli shared between cubes, and reliability from the repeats.

Three jobs that sit between the readers and the analyses:

- :func:`attach_labels` joins a cube with the THINGS stimulus table (concept,
  category, memorability) on ``stimulus_id``; stimuli without a score stay in
  the cube with a NaN memorability, and :func:`labelled` selects the scored
  ones for one analysis. :func:`join_covariates` joins any other per-image
  table (image statistics, ratings: numeric columns keyed by image file name)
  the same way, as covariates for :func:`memxr.stats.partial_correlate`.
- :func:`shared_stimuli` and :func:`align_pair` restrict two recordings (an fMRI
  subject and a monkey, say) to the images both saw, in the same order, or
  average each cube per concept and keep the concepts both saw.
- :func:`split_half_reliability`, :func:`noise_ceiling` and
  :func:`select_channels` measure how repeatable the responses are from
  ``response_repeats`` and keep the reliable channels (they live in
  :mod:`memxr.reliability` and are importable from here too).

Everything stays lazy on the responses: only the (small) coordinates are read
while building the result.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from memxr.schema import example_cube
>>> cube = example_cube(n_stimulus=3, n_channel=2)
>>> table = pd.DataFrame({"concept": ["thing", "thing"], "category": ["toy", "toy"],
...                       "memorability": [0.9, np.nan]},
...                      index=["thing_00s.jpg", "thing_01s.jpg"])
>>> out = attach_labels(cube, table)
>>> out.memorability.values.tolist()
[0.9, nan, nan]
>>> labelled(out).stimulus_id.values.tolist()
['thing_00s.jpg']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError
from .readers.formats.text import PathLike
from .readers.things_meta import read_image_table
from .reliability import noise_ceiling, select_channels, split_half_reliability
from .schema import coord_values, text_coord, validate

__all__ = [
    "align_pair",
    "attach_labels",
    "dropna_memorability",
    "join_covariates",
    "labelled",
    "noise_ceiling",
    "select_channels",
    "shared_stimuli",
    "split_half_reliability",
]

_STIMULUS_DIMS = ("stimulus", "repeat_stimulus", "repeat")


# ----------------------------------------------------------------------------- labels


def _text(value: object) -> str:
    """A table cell as a label: missing -> "", whole floats without ".0"."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _table_source(table: pd.DataFrame) -> str:
    return str(table.attrs.get("source", "stimulus table"))


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    """The stimulus table indexed by a unique ``stimulus_id``, or an InputError."""
    src = _table_source(table)
    if not isinstance(table, pd.DataFrame):
        raise InputError(src, "table", f"expected a pandas DataFrame, got {type(table).__name__}")
    if "stimulus_id" in table.columns:
        table = table.set_index("stimulus_id")
    if "memorability" not in table.columns:
        raise InputError(src, "memorability", "column missing from the stimulus table")
    index = table.index.astype(str)
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()[:3].tolist()
        raise InputError(src, "stimulus_id", f"duplicated ids in the stimulus table, e.g. {dup}")
    table = table.copy()
    table.index = index
    return table


def attach_labels(cube: xr.Dataset, table: pd.DataFrame) -> xr.Dataset:
    """Join a cube with the stimulus table on ``stimulus_id``.

    Sets the ``memorability`` coordinate from the table, and ``concept`` and
    ``category`` where the table gives them. No stimulus is dropped.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube (see :mod:`memxr.schema`); its data are not read.
    table : pandas.DataFrame
        Indexed by stimulus id (or with a ``stimulus_id`` column), with a
        ``memorability`` column and optionally ``concept`` and ``category``,
        as :func:`memxr.readers.things_meta.stimulus_table` returns it. A
        ``source`` entry in ``table.attrs`` names it in error messages.

    Returns
    -------
    xarray.Dataset
        The cube with the labels set, still valid. Stimuli absent from the
        table get a NaN memorability and keep their concept and category
        (likewise where the table's concept or category is empty). Attributes
        ``n_matched`` (in the table with a finite score), ``n_missing_score``
        (in the table without a score) and ``n_unknown`` (not in the table)
        add up to the number of stimuli.

    Raises
    ------
    memxr.errors.InputError
        When the table has no ``memorability`` column or repeats an id.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from memxr.schema import example_cube
    >>> table = pd.DataFrame({"concept": ["thing"] * 2, "category": ["toy", np.nan],
    ...                       "memorability": [0.8, np.nan]},
    ...                      index=["thing_00s.jpg", "thing_01s.jpg"])
    >>> out = attach_labels(example_cube(n_stimulus=3), table)
    >>> [out.attrs[k] for k in ("n_matched", "n_missing_score", "n_unknown")]
    [1, 1, 1]
    >>> out.category.values.tolist()
    ['toy', '', '']
    """
    table = _check_table(table)
    ids = pd.Index(coord_values(cube, "stimulus_id").astype(str))
    pos = table.index.get_indexer(ids)
    found = pos >= 0
    score = np.full(ids.size, np.nan)
    score[found] = pd.to_numeric(table["memorability"], errors="coerce").to_numpy(float)[pos[found]]
    coords: dict[str, tuple[str, np.ndarray]] = {"memorability": ("stimulus", score)}
    for name in ("concept", "category"):
        if name not in table.columns:
            continue
        old = [_text(v) for v in coord_values(cube, name)] if name in cube.coords else [""] * ids.size
        col = table[name].to_numpy(object)
        new = [_text(col[p]) if p >= 0 else "" for p in pos]
        coords[name] = ("stimulus", text_coord([n or o for n, o in zip(new, old, strict=True)]))
    out = cube.assign_coords(coords)
    n_matched = int(np.isfinite(score).sum())
    out.attrs = {
        **cube.attrs,
        "n_matched": n_matched,
        "n_missing_score": int(found.sum()) - n_matched,
        "n_unknown": int((~found).sum()),
    }
    return validate(out)


def join_covariates(
    cube: xr.Dataset,
    table: pd.DataFrame | PathLike,
    columns: Sequence[str] | None = None,
    *,
    key: str | None = None,
) -> xr.DataArray:
    """Per-image covariates in the cube's stimulus order, joined on ``stimulus_id``.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube (see :mod:`memxr.schema`); only its ``stimulus_id`` is read.
    table : pandas.DataFrame or str or path
        Numeric columns indexed by the THINGS image file name (or with a
        ``stimulus_id`` column), or the path of such a CSV, TSV or Parquet
        table (:func:`memxr.readers.things_meta.read_image_table`, which finds
        the key column; ``key`` names it).
    columns : sequence of str, optional
        The covariates to keep (default: every numeric column).
    key : str, optional
        The image key column of a table read from ``table``'s path.

    Returns
    -------
    xarray.DataArray
        Dims (``stimulus``, ``covariate``), float64, the cube's ``stimulus_id``
        along ``stimulus``: stimuli absent from the table, and cells empty in it,
        are NaN (:func:`memxr.stats.partial_correlate` drops those stimuli).
        Attributes: ``n_matched`` (in the table with every covariate finite),
        ``n_missing_value`` (in the table, some covariate NaN) and ``n_unknown``
        (not in the table), adding up to the stimuli; ``source``.

    Raises
    ------
    memxr.errors.InputError
        When the table repeats an id, a named column is missing, or a column
        is not numeric.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from memxr.schema import example_cube
    >>> table = pd.DataFrame({"luminance": [0.4, np.nan], "clutter": [12, 9]},
    ...                      index=["thing_00s.jpg", "thing_02s.jpg"])
    >>> cov = join_covariates(example_cube(n_stimulus=4), table)
    >>> cov.covariate.values.tolist(), cov.sel(covariate="clutter").values.tolist()
    (['luminance', 'clutter'], [12.0, nan, 9.0, nan])
    >>> [cov.attrs[k] for k in ("n_matched", "n_missing_value", "n_unknown")]
    [1, 1, 2]
    """
    if not isinstance(table, pd.DataFrame):
        table = read_image_table(table, key=key)
    src = _table_source(table)
    if "stimulus_id" in table.columns:
        table = table.set_index("stimulus_id")
    index = table.index.astype(str)
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()[:3].tolist()
        raise InputError(src, "stimulus_id", f"duplicated ids in the covariate table, e.g. {dup}")
    names = [str(c) for c in table.columns] if columns is None else [str(c) for c in columns]
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise InputError(src, missing[0], "column missing from the covariate table")
    values = []
    for c in names:
        col = table[c]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise InputError(src, c, "is not numeric (encode labels with memxr.stats.one_hot)")
        values.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
    data = np.stack(values, axis=1) if values else np.zeros((len(table), 0))
    ids = coord_values(cube, "stimulus_id").astype(str)
    pos = index.get_indexer(pd.Index(ids))
    found = pos >= 0
    out = np.full((ids.size, len(names)), np.nan)
    out[found] = data[pos[found]]
    complete = np.isfinite(out).all(1)
    return xr.DataArray(
        out,
        dims=("stimulus", "covariate"),
        coords={"stimulus_id": ("stimulus", text_coord(ids.tolist())), "covariate": names},
        name="covariates",
        attrs={
            "n_matched": int(complete.sum()),
            "n_missing_value": int((found & ~complete).sum()),
            "n_unknown": int((~found).sum()),
            "source": src,
        },
    )


def _subset(cube: xr.Dataset, positions: np.ndarray) -> xr.Dataset:
    """The stimuli at ``positions`` (in that order), with their repeats."""
    out = cube.isel(stimulus=np.asarray(positions, dtype=np.int64))
    if "repeat_stimulus" in out.dims and "repeat_stimulus_id" in out.coords:
        kept = set(coord_values(out, "stimulus_id").tolist())
        rep = [i for i, s in enumerate(coord_values(out, "repeat_stimulus_id").tolist()) if s in kept]
        out = out.isel(repeat_stimulus=np.asarray(rep, dtype=np.int64))
    return out


def labelled(cube: xr.Dataset) -> xr.Dataset:
    """The stimuli that have a finite memorability score.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube, usually from :func:`attach_labels`.

    Returns
    -------
    xarray.Dataset
        The scored stimuli in their original order (and the repeats of those
        that were tested), lazily; attribute ``n_unlabelled_dropped``.

    Examples
    --------
    >>> import numpy as np
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_stimulus=3)
    >>> cube["memorability"][:] = [0.5, np.nan, 0.7]
    >>> labelled(cube).sizes["stimulus"], labelled(cube).attrs["n_unlabelled_dropped"]
    (2, 1)
    """
    keep = np.flatnonzero(np.isfinite(coord_values(cube, "memorability").astype(float)))
    out = _subset(cube, keep)
    out.attrs = {**cube.attrs, "n_unlabelled_dropped": int(cube.sizes["stimulus"] - keep.size)}
    return out


dropna_memorability = labelled
"""Alias of :func:`labelled`."""


# ----------------------------------------------------------------------------- pairs


def shared_stimuli(a: xr.Dataset, b: xr.Dataset) -> list[str]:
    """Stimulus ids present in both cubes, in the order of ``a``.

    Examples
    --------
    >>> from memxr.schema import example_cube
    >>> a, b = example_cube(n_stimulus=4), example_cube(n_stimulus=3)
    >>> shared_stimuli(a.isel(stimulus=[3, 1, 0]), b)
    ['thing_01s.jpg', 'thing_00s.jpg']
    """
    in_b = set(coord_values(b, "stimulus_id").astype(str).tolist())
    return [s for s in coord_values(a, "stimulus_id").astype(str).tolist() if s in in_b]


def _shared_concepts(a: xr.Dataset, b: xr.Dataset) -> list[str]:
    """Non-empty concepts present in both cubes, in the order first seen in ``a``."""
    in_b = set(coord_values(b, "concept").astype(str).tolist())
    seen = dict.fromkeys(c for c in coord_values(a, "concept").astype(str).tolist() if c)
    return [c for c in seen if c in in_b]


def _by_concept(cube: xr.Dataset, concepts: Sequence[str]) -> xr.Dataset:
    """The cube averaged per concept (flox groupby, lazily), one row per concept."""
    labels = text_coord(concepts)
    if not len(labels):  # nothing shared: an empty cube with the same variables
        empty = cube.drop_dims([d for d in _STIMULUS_DIMS[1:] if d in cube.dims])
        empty = empty.isel(stimulus=np.zeros(0, dtype=np.int64))
        return empty.assign_coords(n_images=("stimulus", np.zeros(0, dtype=np.int64)))
    response = cube["response"].assign_coords(concept=("stimulus", coord_values(cube, "concept")))
    keep = [c for c in response.coords if c != "concept" and "stimulus" in response[c].dims]
    grouped = (
        response.drop_vars(keep)
        .groupby(concept=xr.groupers.UniqueGrouper(labels=labels))
        .mean()
        .rename({"concept": "stimulus"})
        .drop_vars("stimulus")
    )
    meta = pd.DataFrame(
        {
            "concept": coord_values(cube, "concept").astype(str),
            "category": [_text(v) for v in coord_values(cube, "category")],
            "memorability": coord_values(cube, "memorability").astype(float),
            "test": coord_values(cube, "split").astype(str) == "test",
            "n_repeats": coord_values(cube, "n_repeats").astype(np.int64),
        }
    )
    meta = meta[meta["concept"].isin(set(concepts))]
    per = meta.groupby("concept", sort=False).agg(
        category=("category", lambda s: next((c for c in s if c), "")),
        memorability=("memorability", "mean"),
        test=("test", "all"),
        n_repeats=("n_repeats", "sum"),
        n_images=("concept", "size"),
    )
    per = per.reindex(list(concepts))
    base = cube.drop_dims([d for d in _STIMULUS_DIMS if d in cube.dims])
    out = base.assign(response=grouped.transpose("stimulus", *cube["response"].dims[1:]))
    out = out.assign_coords(
        stimulus_id=("stimulus", labels),
        concept=("stimulus", labels),
        category=("stimulus", text_coord(per["category"].tolist())),
        memorability=("stimulus", per["memorability"].to_numpy(float)),
        split=("stimulus", text_coord(np.where(per["test"], "test", "train").tolist())),
        n_repeats=("stimulus", per["n_repeats"].to_numpy(np.int64)),
        n_images=("stimulus", per["n_images"].to_numpy(np.int64)),
    )
    out["response"].attrs = dict(cube["response"].attrs)
    out.attrs = dict(cube.attrs)
    return out


def align_pair(
    a: xr.Dataset, b: xr.Dataset, by: str = "stimulus_id"
) -> tuple[xr.Dataset, xr.Dataset]:
    """Restrict two cubes to what both saw, in the same order.

    Parameters
    ----------
    a, b : xarray.Dataset
        Two cubes, for example an fMRI subject and a monkey.
    by : {"stimulus_id", "concept"}
        ``stimulus_id`` keeps the images (THINGS file names) in both cubes, in
        the order of ``a``, with their repeats. ``concept`` first averages each
        cube's response over the images of each concept (a lazy groupby with
        the shared concepts as expected groups) and keeps the concepts in
        both, in the order first seen in ``a``.

    Returns
    -------
    (xarray.Dataset, xarray.Dataset)
        Valid cubes with the same ``stimulus_id`` sequence; attributes
        ``aligned_by`` and ``n_shared``. For ``by="concept"`` each row of
        ``stimulus`` is a concept: ``stimulus_id`` and ``concept`` are the
        concept name, ``memorability`` the mean of its images' scores
        (NaN-skipping), ``category`` its first non-empty category, ``split``
        "test" when all its images are test images, ``n_images`` the number
        of images averaged (an unweighted mean of their responses),
        ``n_repeats`` the number of trials behind them; ``response_repeats``
        is dropped.

    Examples
    --------
    >>> from memxr.schema import example_cube, text_coord
    >>> a = example_cube(n_stimulus=4).isel(stimulus=[2, 0, 1])
    >>> b = example_cube(n_stimulus=3, n_channel=2)
    >>> a2, b2 = align_pair(a, b)
    >>> b2.stimulus_id.values.tolist()
    ['thing_02s.jpg', 'thing_00s.jpg', 'thing_01s.jpg']
    >>> a3, b3 = align_pair(a, b, by="concept")
    >>> a3.stimulus_id.values.tolist(), int(a3.n_images[0])
    (['thing'], 3)
    """
    if by == "stimulus_id":
        ids = shared_stimuli(a, b)
        index_a = pd.Index(coord_values(a, "stimulus_id").astype(str))
        index_b = pd.Index(coord_values(b, "stimulus_id").astype(str))
        a_sub = _subset(a, index_a.get_indexer(ids))
        b_sub = _subset(b, index_b.get_indexer(ids))
    elif by == "concept":
        concepts = _shared_concepts(a, b)
        a_sub, b_sub = _by_concept(a, concepts), _by_concept(b, concepts)
        ids = concepts
    else:
        raise ValueError(f"by must be 'stimulus_id' or 'concept', got {by!r}")
    for out, cube in ((a_sub, a), (b_sub, b)):
        out.attrs = {**cube.attrs, "aligned_by": by, "n_shared": len(ids)}
    return validate(a_sub), validate(b_sub)
