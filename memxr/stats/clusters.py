"""Cluster-mass permutation tests over time: family-wise error control for time courses.

A time course of correlations (ROIs x ~300 time bins) is a family of thousands of tests.
Benjamini-Hochberg over them needs per-bin p-values far below ``1 / (1 + P)`` to flag
anything, and ignores that neighbouring bins carry the same effect. The cluster-mass test
(Maris & Oostenveld 2007) uses that structure instead:

1. each correlation is standardized by the spread of its permutation distribution,
   ``z = r / sd(r, r_perm)`` (the observed map among the permuted ones, so that the
   observed and every permuted map are treated alike), so that bins and ROIs of
   different noise compare;
2. bins with ``|z| >= threshold`` form clusters: runs of adjacent bins of one ROI with the
   same sign; a cluster's mass is the sum of its ``|z|``;
3. the same permutations that gave ``r_perm`` (the concept-grouped permutations of
   :func:`memxr.stats.correlate`, ``return_null=True``) give, each, the largest cluster
   mass anywhere in the family (every ROI and time bin), and a cluster's p-value is
   ``(1 + #{max_perm >= mass}) / (1 + P)``.

The p-value of a cluster controls the family-wise error rate over the whole family: under
the null (memorability exchangeable between concepts) the chance that any cluster of any
ROI reaches ``p < .05`` is at most .05, however many bins there are. It says that the
effect is somewhere in the cluster, not that every bin of it is significant; its onset and
offset are descriptive (Sassenhagen & Draschkow 2019).

Examples
--------
>>> import numpy as np, xarray as xr
>>> from memxr.stats import correlate
>>> rng = np.random.default_rng(0)
>>> y = rng.standard_normal(80)
>>> x = rng.standard_normal((80, 1, 30))
>>> x[:, 0, 10:20] += 0.8 * y[:, None]         # an effect from 100 to 190 ms
>>> x = xr.DataArray(x, dims=("stimulus", "roi", "time"),
...                  coords={"roi": ["IT"], "time": 10.0 * np.arange(30)})
>>> res = correlate(x, y, n_permutations=199, n_bootstrap=0, return_null=True)
>>> out = cluster_test(res)
>>> table = cluster_table(out)
>>> sig = table[table.p_cluster < 0.05]
>>> sig[["roi", "onset", "offset"]].values.tolist()
[['IT', 100.0, 190.0]]
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["cluster_table", "cluster_test"]


def _runs(z: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clusters of the rows of ``z`` (rows, T): run id per bin (0: none), masses, run rows.

    A run is a maximal set of adjacent bins of one row with ``|z| >= threshold`` and the
    same sign (NaN never belongs to a run). Run ids are 1..K in row-major order.
    """
    with np.errstate(invalid="ignore"):
        s = np.where(np.abs(z) >= threshold, np.sign(z), 0.0)
    s = np.nan_to_num(s).astype(np.int8)
    prev = np.zeros_like(s)
    prev[:, 1:] = s[:, :-1]
    start = (s != 0) & (s != prev)
    ids = np.cumsum(start.ravel()).reshape(s.shape) * (s != 0)
    k = int(start.sum())
    weight = np.where(s != 0, np.abs(np.nan_to_num(z)), 0.0)
    mass = np.bincount(ids.ravel(), weights=weight.ravel(), minlength=k + 1)[1:]
    rows = np.flatnonzero(start.ravel()) // s.shape[1]
    return ids, mass, rows


def _max_mass(z: np.ndarray, threshold: float, n_groups: int) -> np.ndarray:
    """Largest cluster mass of each group of rows (rows ``g * per .. (g + 1) * per``)."""
    _, mass, rows = _runs(z, threshold)
    out = np.zeros(n_groups)
    if mass.size:
        np.maximum.at(out, rows // (z.shape[0] // n_groups), mass)
    return out


def cluster_test(
    res: xr.Dataset, dim: str = "time", *, threshold: float = 1.96
) -> xr.Dataset:
    """Cluster-mass permutation test over ``dim``, family-wise over every other dim.

    Parameters
    ----------
    res : xarray.Dataset
        A result of :func:`memxr.stats.correlate` with ``return_null=True``: ``r`` and
        ``r_null`` (same dims plus ``permutation``). Every feature of it (all its dims but
        ``dim``, e.g. ROIs) is one family with its time bins: call once per family.
    dim : str
        The dim along which clusters are runs of adjacent values (sorted by ``dim``).
    threshold : float
        Cluster-forming threshold on ``|z| = |r| / sd(r, r_perm)`` (1.96: a two-sided 5 %
        level per bin). Any threshold gives a valid test; it decides what the test is
        sensitive to (low: long weak effects; high: short strong ones).

    Returns
    -------
    xarray.Dataset
        Over ``r``'s dims: ``z`` (``r`` over the standard deviation of the observed and
        permuted correlations), ``cluster`` (id of the cluster of each bin, 0 outside
        clusters, unique over the family) and ``p_cluster`` (family-wise p-value of the
        bin's cluster, NaN outside clusters); ``attrs``: ``threshold``,
        ``n_permutations``, ``dim`` and ``p_family`` (which tests ``p_cluster`` covers).

    Raises
    ------
    ValueError
        When ``res`` has no ``r_null`` or no ``dim``.
    """
    if "r_null" not in res:
        raise ValueError("cluster_test needs r_null: correlate(..., return_null=True)")
    if dim not in res["r"].dims:
        raise ValueError(f"cluster_test: r has no dim {dim!r} (dims {res['r'].dims})")
    r = res["r"].sortby(dim) if dim in res.coords else res["r"]
    null = res["r_null"].sel({dim: r[dim]}) if dim in res.coords else res["r_null"]
    others: list[Hashable] = [d for d in r.dims if d != dim]
    r = r.transpose(*others, dim)
    null = null.transpose("permutation", *others, dim)
    r_np = np.asarray(r.values, dtype=float).reshape(-1, r.sizes[dim])
    null_np = np.asarray(null.values, dtype=float)
    n_perm = null_np.shape[0]
    null_np = null_np.reshape(n_perm, -1, r.sizes[dim])
    with np.errstate(invalid="ignore", divide="ignore"):
        # the spread of all P + 1 maps, the observed one included: every map, observed or
        # permuted, is then standardized by the same symmetric function of the set
        every = np.concatenate([r_np[None], null_np], axis=0)
        sd = np.nanstd(every, axis=0) if n_perm else np.full(r_np.shape, np.nan)
        z = np.where(sd > 0, r_np / sd, 0.0)
        z_null = np.where(sd > 0, null_np / sd, 0.0)
    z = np.where(np.isfinite(r_np), z, np.nan)
    ids, mass, _ = _runs(z, threshold)
    max_null = _max_mass(z_null.reshape(-1, z.shape[1]), threshold, n_perm) if n_perm else None
    if max_null is None:
        p_run = np.full(mass.shape, np.nan)
    else:
        p_run = (1.0 + (max_null[None, :] >= mass[:, None] * (1 - 1e-12)).sum(1)) / (1.0 + n_perm)
    p_bin = np.where(ids > 0, np.r_[np.nan, p_run][ids], np.nan)
    shape = r.shape
    n_features = int(np.prod([r.sizes[d] for d in others])) if others else 1
    family = (
        f"cluster-mass permutation test, family-wise over {n_features} feature(s)"
        f" ({', '.join(map(str, others)) or 'one series'}) x {r.sizes[dim]} {dim} bins"
    )
    coords = {k: v for k, v in r.coords.items()}
    out = xr.Dataset(
        {
            "z": (r.dims, z.reshape(shape), {"long_name": "r / sd of its permutation null"}),
            "cluster": (r.dims, ids.reshape(shape), {"long_name": "cluster id (0: none)"}),
            "p_cluster": (
                r.dims,
                p_bin.reshape(shape),
                {"long_name": "family-wise cluster-mass p-value of the bin's cluster"},
            ),
        },
        coords=coords,
    )
    out.attrs = {
        "threshold": float(threshold),
        "n_permutations": int(n_perm),
        "dim": str(dim),
        "p_family": family,
    }
    return out


def cluster_table(out: xr.Dataset) -> pd.DataFrame:
    """One row per cluster of a :func:`cluster_test` result: where, when and how strong.

    Returns
    -------
    pandas.DataFrame
        The non-time coordinates of the cluster's feature (e.g. ``roi``), ``cluster``,
        ``sign`` (+1/-1), ``onset`` and ``offset`` (the ``dim`` values of its first and last
        bin), ``n_bins``, ``mass`` (sum of ``|z|``), ``p_cluster`` and ``p_family``;
        sorted by ``p_cluster``.
    """
    dim = out.attrs["dim"]
    others = [d for d in out["cluster"].dims if d != dim]
    frame = out[["z", "cluster", "p_cluster"]].to_dataframe().reset_index()
    frame = frame[frame["cluster"] > 0]
    columns = [*others, "cluster", "sign", "onset", "offset", "n_bins", "mass", "p_cluster"]
    if frame.empty:
        return pd.DataFrame(columns=[*columns, "p_family"])
    grouped = frame.groupby("cluster", sort=True)
    table = grouped.agg(
        **{d: (d, "first") for d in others},
        sign=("z", lambda v: int(np.sign(v.iloc[0]))),
        onset=(dim, "min"),
        offset=(dim, "max"),
        n_bins=(dim, "size"),
        mass=("z", lambda v: float(np.abs(v).sum())),
        p_cluster=("p_cluster", "first"),
    ).reset_index()
    table["p_family"] = out.attrs["p_family"]
    return table[[*columns, "p_family"]].sort_values("p_cluster", kind="stable").reset_index(
        drop=True
    )
