"""The streaming pass of :mod:`memxr.stats` over xarray/dask data.

Every sum a correlation needs is one ``tensordot`` of ``x`` (or ``x**2``) with the resampled
design over the stimulus axis (:func:`contract`); the design's blocks are generated per
stimulus chunk of ``x`` from the small tables (:func:`_design_dask`). ``x`` is rechunked so
that (features or stimuli) x design columns stay within the block budget (:func:`plan_blocks`), and
ranked along the stimulus axis for Spearman (:func:`_rank`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .kernels import (
    Tables,
    common_sums,
    contract_block,
    contract_pair_block,
    design_rows,
    rank_kernel,
    unit_sums,
)

_RANK_BYTES = 128 * 2**20
"""Largest block holding a whole stimulus axis, for the rank transform."""

_COL = "_memxr_col"
_W = "_memxr_w"  # columns [1, w_1 .. w_B]: unit weight, then the bootstrap weights
_Z = "_memxr_z"  # columns [y, z_1 .. z_P, w_1 y .. w_B y]
_U = "_memxr_u"  # jackknife units
_C = "_memxr_c"  # covariates
_C2 = "_memxr_c2"  # covariates again (their cross-products)
CORE_DIMS = (_W, _Z, _U, _C, _C2)
"""Dims of the design's columns in :func:`stream_sums`' arguments."""


def _feature_chunks(a: xr.DataArray, dim: str, limit: int) -> dict[Hashable, int]:
    """Chunk sizes that keep at most ``limit`` features (non-``dim`` elements) per block."""
    out: dict[Hashable, int] = {}
    budget = max(1, limit)
    for d in reversed([d for d in a.dims if d != dim]):
        current = max(a.chunksizes[d])
        new = min(current, budget)
        if new < current:
            out[d] = new
        budget = max(1, budget // new)
    return out


def _rank(a: xr.DataArray, dim: str) -> xr.DataArray:
    """Average ranks along ``dim`` (the whole axis in one chunk, features split to fit)."""
    if a.chunks is not None:
        chunks = _feature_chunks(a, dim, _RANK_BYTES // (8 * a.sizes[dim]))
        a = a.chunk({**chunks, dim: -1})
    out = xr.apply_ufunc(
        rank_kernel,
        a,
        input_core_dims=[[dim]],
        output_core_dims=[[dim]],
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    return out.transpose(*a.dims)


def prepare_features(a: xr.DataArray, dim: str, keep: np.ndarray | None, method: str) -> xr.DataArray:
    """Bare data of the analysed stimuli, ranked (float64) for Spearman.

    Pearson data keep their dtype: :func:`stream_sums` casts each tile to float64 and
    shifts it by the first row inside its one pass (no float64 copy of a block).
    """
    bare = xr.DataArray(a.variable)
    if keep is not None:
        bare = bare.isel({dim: keep})
    if method == "spearman":
        bare = _rank(bare.astype(np.float64), dim)
    return bare


def first_row(a: xr.DataArray, dim: str) -> xr.DataArray:
    """The first row of ``a`` along ``dim`` in float64: the shift of the one-pass sums.

    Sums of ``x - x[0]`` (exact for correlations) stay free of cancellation when a
    feature's mean is large compared with its spread.
    """
    return a.isel({dim: 0}, drop=True).astype(np.float64)


def plan_blocks(a: xr.DataArray, dim: str, n_cols: int, block_bytes: int) -> xr.DataArray:
    """Rechunk so that blocks of (features or stimuli) x design columns stay small."""
    limit = max(1, block_bytes // (8 * n_cols))
    chunks: dict[Hashable, int] = _feature_chunks(a, dim, limit)
    if max(a.chunksizes[dim]) > limit:
        chunks[dim] = limit
    return a.chunk(chunks) if chunks else a


def _design_dask(t: Tables, chunks: Sequence[int]) -> tuple[da.Array, da.Array]:
    """The design as dask arrays whose blocks are generated per stimulus chunk of ``x``."""
    tables = dask.delayed(t, traverse=False)
    nz, nw, nc, nk = t.widths
    full, weights = [], []
    start = 0
    for size in chunks:  # one task per stimulus chunk
        block = dask.delayed(design_rows, pure=True, nout=2)(tables, start, start + size)
        full.append(da.from_delayed(block[0], (size, nz + nw + nc + nk), dtype=np.float64))
        weights.append(da.from_delayed(block[1], (size, nw + t.n_units), dtype=np.float64))
        start += size
    return da.concatenate(full, axis=0), da.concatenate(weights, axis=0)


def contract(a: xr.DataArray, m: da.Array, dim: str, col: str) -> xr.DataArray:
    """``sum over dim of a * m[:, k]`` for every column k: one streaming matrix product.

    Each (stimulus chunk, feature chunk) block is multiplied with the matching rows of ``m``
    and the partial products are summed over the stimulus chunks (a tree reduction), so the
    pass reads every block of ``a`` once and holds no whole axis of it.
    """
    x, axis = a.data, a.get_axis_num(dim)
    left = list(range(x.ndim))
    out = left + [x.ndim]  # partial sums keep the stimulus axis (one per chunk) ...
    parts = da.blockwise(
        contract_block, out, x, left, m, [axis, x.ndim],
        adjust_chunks={axis: lambda c: 1}, dtype=np.float64, axis=axis,
    )  # fmt: skip
    data = parts.sum(axis=axis)  # ... summed over the chunks (a tree), as da.tensordot does
    return xr.DataArray(data, dims=[d for d in a.dims if d != dim] + [col])


def contract_pair(
    a: xr.DataArray, m: da.Array, w: da.Array, dim: str, shift: xr.DataArray | None = None
) -> tuple[xr.DataArray, xr.DataArray]:
    """``(a - shift) . m`` and ``(a - shift)**2 . w`` over ``dim`` in one pass over ``a`` (see
    :func:`contract`): each block is read once for both, cast, shifted and squared a tile
    at a time. ``shift`` has the feature dims of ``a`` (default: no shift)."""
    x, axis = a.data, a.get_axis_num(dim)
    left = list(range(x.ndim))
    col, km, kw = x.ndim, x.ndim + 1, x.ndim + 2
    if shift is None:
        shift = xr.zeros_like(a.isel({dim: 0}, drop=True), dtype=np.float64)
    x0 = shift.transpose(*[d for d in a.dims if d != dim]).data
    x0 = da.expand_dims(da.asarray(x0), axis)  # the shift broadcast along the stimulus axis
    x0 = x0.rechunk({i: x.chunks[i] for i in left if i != axis} | {axis: 1})
    parts = da.blockwise(
        contract_pair_block, left + [col], x, left, m, [axis, km], w, [axis, kw],
        x0, [i if i != axis else x.ndim + 3 for i in left],
        new_axes={col: m.shape[1] + w.shape[1]}, adjust_chunks={axis: lambda c: 1},
        concatenate=True, dtype=np.float64, axis=axis,
    )  # fmt: skip
    both = xr.DataArray(parts.sum(axis=axis), dims=[d for d in a.dims if d != dim] + [_COL])
    return _cols(both, 0, m.shape[1], _COL), _cols(both, m.shape[1], both.sizes[_COL], _COL)


def _cols(s: xr.DataArray, start: int, stop: int, name: str) -> xr.DataArray:
    return s.isel({_COL: slice(start, stop)}).rename({_COL: name})


def _split(s: xr.DataArray, start: int, k: int, width: int, names: Sequence[str]) -> xr.DataArray:
    """Columns ``start .. start + k * width`` as ``k`` blocks of ``width``: dims (names)."""
    block = s.isel({_COL: slice(start, start + k * width)})
    lead = [d for d in block.dims if d != _COL]
    data = block.data.reshape(block.shape[:-1] + (k, width))
    return xr.DataArray(data, dims=[*lead, *names])


def stream_sums(
    xs: xr.DataArray, cs: xr.DataArray | None, t: Tables, dim: str, block_bytes: int
) -> tuple[list[xr.DataArray], int]:
    """Arguments of :func:`finalize_kernel`: lazy x-side sums and the small y-side sums, and
    how many of them are the covariates' (the jackknife's unit sums follow).

    Column dims are named ``_memxr_*`` (:data:`CORE_DIMS`): every other dim of an argument
    is a feature dim of ``x``. Covariate sums carry a covariate dim (``_memxr_c``, and
    ``_memxr_c2`` for their cross-products) of length ``k`` (1 for a broadcast covariate
    ``cs``).
    """
    nz, nw, nc, nk = t.widths
    k = t.n_units
    kc = t.n_cov
    full, omega = _design_dask(t, xs.chunksizes[dim])
    shift = first_row(xs, dim)
    s1, s2 = contract_pair(xs, full, omega, dim, shift)  # one pass over x for both
    common = common_sums(t, block_bytes)
    y_dims = {"sw": [_W], "sy": [_Z], "syy": [_Z], "sc": [_C, _W], "scc": [_C, _C2, _W],
              "scy": [_C, _Z]}  # fmt: skip
    common = {k_: xr.DataArray(v, dims=y_dims[k_]) for k_, v in common.items()}
    args = [
        common["sw"],
        _cols(s1, nz, nz + nw, _W),
        _cols(s2, 0, nw, _W),
        common["sy"],
        common["syy"],
        _cols(s1, 0, nz, _Z),
    ]
    n_cov = 0
    if t.c is not None:
        args += [common["sc"], common["scc"], _split(s1, nz + nw, kc, nw, (_C, _W)),
                 common["scy"]]  # fmt: skip
        n_cov = 4
    elif cs is not None:
        s3 = contract(cs, full, dim, _COL)
        args += [
            _cols(s3, nz, nz + nw, _W).expand_dims(_C, -2),
            contract(cs * cs, omega, dim, _W)
            .isel({_W: slice(0, nw)})
            .expand_dims([_C, _C2], [-3, -2]),
            contract((xs - shift) * cs, omega, dim, _W)
            .isel({_W: slice(0, nw)})
            .expand_dims(_C, -2),
            _cols(s3, 0, nz, _Z).expand_dims(_C, -2),
        ]
        n_cov = 4
    if k:  # the jackknife: x side per unit, then the y (and covariate) side per unit
        base = nz + nw + nc
        args += [
            _cols(s1, base, base + k, _U),
            _cols(s2, nw, nw + k, _U),
            _cols(s1, base + k, base + 2 * k, _U),
        ]
        if t.c is not None:
            args.append(_split(s1, base + 2 * k, kc, k, (_C, _U)))
        unit_dims = [[_U], [_U], [_U], [_C, _U], [_C, _C2, _U], [_C, _U]]
        args += [xr.DataArray(v, dims=d) for v, d in zip(unit_sums(t), unit_dims, strict=False)]
    return args, n_cov


def core_dims(a: xr.DataArray) -> list[str]:
    """The column dims of a :func:`stream_sums` argument (its ``apply_ufunc`` core dims)."""
    return [str(d) for d in a.dims if str(d) in CORE_DIMS]
