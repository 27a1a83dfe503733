"""Where the tasks of :func:`memxr.models.fit_models` run, and how their outputs come together.

Scikit-learn models run one joblib task per (feature set, model, time bin, permutation, fold),
through the ``dask`` backend on a :class:`distributed.Client` or sequentially without one;
dask-ml models run from the calling process, each fit a dask computation. The out-of-fold
outputs are then gathered per (feature set, model, time bin, permutation).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from .estimators import INCREMENTAL
from .inputs import ModelRun, check_finite
from .task import FitOptions, FoldTask, fit_fold, is_dask, run_task, to_numpy

_CHUNK_BYTES = 64 * 2**20


def default_client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _runs_in_caller(model: str, dask_backed: bool) -> bool:
    return model == "logistic" or (model in INCREMENTAL and dask_backed)


def _dask_rows(x: np.ndarray):
    import dask
    import dask.array as da

    row_bytes = max(1, x[0].nbytes)
    rows = int(min(len(x), max(1, _CHUNK_BYTES // row_bytes)))
    arr = da.from_array(x, chunks=(rows,) + x.shape[1:])
    return dask.persist(arr)[0] if default_client() is not None else x


def _numpy_set(name: str, da: xr.DataArray, cache: dict) -> np.ndarray:
    """A feature set in memory: float32 stays float32 (patterns of many channels), else
    float64."""
    if name not in cache:
        x = to_numpy(da.data)
        x = x if x.dtype == np.float32 else x.astype(np.float64, copy=False)
        check_finite(name, x)
        cache[name] = x
    return cache[name]


def plan_tasks(run: ModelRun, opts: FitOptions) -> tuple[list, list]:
    """Task arguments: for joblib (scikit-learn models) and for the caller (dask-ml models)."""
    import joblib

    in_memory: dict[str, np.ndarray] = {}
    lazy: dict[str, Any] = {}
    pool, caller = [], []
    for name, da in run.sets.items():
        backed = is_dask(da.data)
        for m in run.models:
            here = _runs_in_caller(m, backed)
            if here:
                if name not in lazy:
                    lazy[name] = da.data if backed else _dask_rows(_numpy_set(name, da, in_memory))
                x = lazy[name]
            else:
                x = _numpy_set(name, da, in_memory)
            for t in run.time_idx:
                for p, y in enumerate(run.y_perms):
                    for k, (tr, te) in enumerate(run.folds):
                        args = (x, y, run.codes, tr, te, FoldTask(name, m, t, p - 1, k), opts)
                        if here:
                            caller.append(args)
                        else:
                            pool.append(joblib.delayed(run_task)(*args))
    return pool, caller


def parallel(calls: list, client: Any) -> list:
    import joblib

    if not calls:
        return []
    if client is None:
        return joblib.Parallel(n_jobs=1)(calls)
    with joblib.parallel_backend("dask", client=client):
        return joblib.Parallel()(calls)


def run_in_caller(calls: list, client: Any) -> list:
    from contextlib import nullcontext

    if not calls:
        return []
    ctx = client.as_current() if client is not None else nullcontext()
    with ctx, warnings.catch_warnings():
        # dask-glm internals, not ours: deprecated config key and scipy option
        warnings.filterwarnings("ignore", message=".*fuse_ave_width.*")
        warnings.filterwarnings("ignore", message=".*`disp` and `iprint`.*")
        return [(c[-2], fit_fold(*c)) for c in calls]


def assemble(results: list, n: int, folds: list) -> tuple[dict, np.ndarray]:
    """Out-of-fold arrays per (feature set, model, time bin, permutation); fold per stimulus."""
    fold_of = np.full(n, -1, dtype=np.int64)
    for k, (_, te) in enumerate(folds):
        fold_of[te] = k
    outs: dict[tuple, dict[str, np.ndarray]] = {}
    for task, res in results:
        key = (task.feature_set, task.model, task.time, task.perm)
        slot = outs.setdefault(key, {k: np.full(n, np.nan) for k in res})
        te = folds[task.fold][1]
        for k, v in res.items():
            slot[k][te] = v
    return outs, fold_of
