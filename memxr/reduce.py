"""ROI definitions and reductions of a cube over the channels of each ROI.

ROIs overlap (a voxel can be in FFA and in IT), so a reduction is a product
of the response with the channel x ROI membership table ``roi_mask``, not a
groupby over a single label: one lazy matrix product covers every ROI in one
pass over the data.

ROI names
---------
- bilateral fMRI ROIs ``FFA, PPA, LOC, EBA, OFA, STS, RSC, TOS`` are the union of
  their left and right columns (``lFFA`` or ``rFFA``);
- every ``roi`` of the cube is valid as itself (``lFFA``, ``IT``, ``V1``,
  ``glasser-H``; TVSD ``V1``, ``V4``, ``IT``).

Examples
--------
>>> from memxr.schema import example_cube
>>> cube = example_cube(n_stimulus=3, n_channel=4)
>>> roi_reduce(cube, ["A"]).dims
('stimulus', 'roi')
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["BILATERAL", "UnknownROIError", "default_rois", "roi_masks", "roi_reduce"]

BILATERAL = ("FFA", "PPA", "LOC", "EBA", "OFA", "STS", "RSC", "TOS")
"""fMRI ROIs defined by merging a left (``l``) and a right (``r``) column."""

_DEFAULT_EXTRA = ("V1", "V4", "IT")


class UnknownROIError(ValueError):
    """An ROI name that the cube does not define."""


def _columns(cube: xr.Dataset | xr.DataArray) -> list[str]:
    return [str(r) for r in np.asarray(cube["roi"].values)]


def _definition(name: str, columns: Sequence[str]) -> list[str]:
    if name in columns:
        return [name]
    if name in BILATERAL:
        parts = [c for c in (f"l{name}", f"r{name}") if c in columns]
        if parts:
            return parts
    raise UnknownROIError(
        f"unknown ROI {name!r}; this cube defines {', '.join(default_rois_from(columns)) or 'none'}"
        f" (and any of its {len(columns)} roi columns)"
    )


def default_rois_from(columns: Sequence[str]) -> list[str]:
    """The ROIs analysed by default given the cube's ROI columns.

    Examples
    --------
    >>> default_rois_from(["V1", "lFFA", "rFFA", "IT", "glasser-H"])
    ['FFA', 'V1', 'IT']
    """
    cols = set(columns)
    out = [b for b in BILATERAL if f"l{b}" in cols or f"r{b}" in cols]
    return out + [c for c in _DEFAULT_EXTRA if c in cols]


def default_rois(cube: xr.Dataset | xr.DataArray) -> list[str]:
    """The ROIs analysed by default: bilateral merges present, then V1, V4, IT."""
    return default_rois_from(_columns(cube))


def roi_masks(cube: xr.Dataset | xr.DataArray, rois: Sequence[str] | None = None) -> xr.DataArray:
    """Boolean (channel, roi) membership for the requested ROI names (merges resolved).

    Parameters
    ----------
    cube : xarray.Dataset or DataArray
        Anything carrying the ``roi_mask`` coordinate.
    rois : sequence of str, optional
        ROI names; default :func:`default_rois`.

    Raises
    ------
    UnknownROIError
        For a name the cube does not define.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> c = xr.Dataset(coords={"roi": ["lFFA", "rFFA"],
    ...     "roi_mask": (("channel", "roi"), np.array([[1, 0], [0, 1], [0, 0]], bool))})
    >>> roi_masks(c, ["FFA", "lFFA"]).sum("channel").values.tolist()
    [2, 1]
    """
    columns = _columns(cube)
    names = list(
        default_rois(cube) if rois is None else ([rois] if isinstance(rois, str) else rois)
    )
    if not names:
        raise UnknownROIError("no ROI requested and the cube defines no default ROI")
    table = cube["roi_mask"].variable.to_base_variable()
    cols = {c: i for i, c in enumerate(columns)}
    membership = np.asarray(table.values)  # small: channel x roi booleans
    out = np.zeros((membership.shape[0], len(names)), dtype=bool)
    for j, name in enumerate(names):
        for col in _definition(name, columns):
            out[:, j] |= membership[:, cols[col]]
    from .schema import text_coord

    return xr.DataArray(out, dims=("channel", "roi"), coords={"roi": text_coord(names)})


def roi_reduce(
    cube: xr.Dataset,
    rois: Sequence[str] | str | None = None,
    how: str = "mean",
    var: str = "response",
) -> xr.DataArray:
    """Reduce the response over the channels of each ROI, lazily.

    Parameters
    ----------
    cube : xarray.Dataset
        A cube with dims (stimulus, channel[, time]) and its ``roi_mask``.
    rois : str or sequence of str, optional
        ROI names (see module docs); default :func:`default_rois`.
    how : {"mean", "sum", "l2"}
        ``mean`` over the ROI's channels (NaN channels ignored); ``sum``;
        ``l2`` the population magnitude, the Euclidean norm of the ROI's
        response vector divided by the square root of its channel count.
    var : str
        Data variable to reduce.

    Returns
    -------
    xarray.DataArray
        Dims (stimulus, roi[, time]) with the stimulus coords kept and a
        ``n_channels`` coord per ROI; dask-backed when the cube is.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from memxr.schema import example_cube
    >>> cube = example_cube(n_stimulus=2, n_channel=2)
    >>> cube["response"][:] = [[1.0, 3.0], [2.0, np.nan]]
    >>> roi_reduce(cube, "A").values.ravel().tolist()
    [2.0, 2.0]
    >>> roi_reduce(cube, "A", how="sum").values.ravel().tolist()
    [4.0, 2.0]
    """
    if how not in ("mean", "sum", "l2"):
        raise ValueError(f"how must be 'mean', 'sum' or 'l2', got {how!r}")
    if not isinstance(cube, xr.Dataset):
        raise TypeError("roi_reduce needs the cube (a Dataset with its roi_mask), not a DataArray")
    da = cube[var]
    mask = roi_masks(cube, rois)
    weights = mask.astype(da.dtype if da.dtype.kind == "f" else np.float64)
    # Drop the channel coords so xr.dot contracts cleanly; keep stimulus/time coords.
    data = da.drop_vars([c for c in da.coords if "channel" in da[c].dims and c != "channel"])
    valid = data.notnull()
    filled = data.fillna(0)
    if how == "l2":
        filled = filled * filled
    total = xr.dot(filled, weights, dim="channel")
    if how == "sum":
        out = total
    else:
        count = xr.dot(valid.astype(weights.dtype), weights, dim="channel")
        out = total / count.where(count > 0)
        if how == "l2":
            out = np.sqrt(out)
    order = ("stimulus", "roi") + tuple(d for d in out.dims if d not in ("stimulus", "roi"))
    out = out.transpose(*order)
    out = out.assign_coords(n_channels=("roi", mask.sum("channel").values.astype(np.int64)))
    out.name = f"roi_{how}"
    out.attrs = {
        "long_name": f"ROI {how} of {var}",
        "units": da.attrs.get("units", cube.attrs.get("units", "")) if how != "sum" else "",
        "how": how,
    }
    return out
