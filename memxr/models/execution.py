"""Where the tasks of :func:`memxr.models.fit_models` run, in rounds of permutations.

The work of a call is cut into blocks (:class:`memxr.models.task.Block`: one model on one fold
of one feature set [and time bin] for up to :data:`PERMS_PER_TASK` targets) and run in rounds
(:func:`rounds`): the observed targets and the first permutations, then more permutations for
the rows (feature set x model x time bin) whose sequential test has not stopped
(:func:`memxr.models.scoring.sequential_p`). Each round's out-of-fold outputs are scored and
dropped, so the caller holds one score per permutation, not its predictions.

On a :class:`distributed.Client` the inputs are scattered once (features, the targets of every
permutation, groups, folds; the principal components of each fold are computed by a task and
stay on the workers) and every task refers to them by key: the graph of a task is a few
hundred bytes whatever the data size. Without a client the same tasks run in-process on dask's
synchronous scheduler (so dask's local callbacks see them). dask-ml models run from the
calling process, each fit a dask computation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from .estimators import INCREMENTAL
from .inputs import ModelRun, check_finite
from .scoring import null_score, primary, scores, sequential_p
from .task import (
    Block,
    FitOptions,
    FoldTask,
    fit_block,
    fit_fold,
    fold_components,
    is_dask,
    to_numpy,
)

_CHUNK_BYTES = 64 * 2**20

PERMS_PER_TASK = 20
"""Most targets one task fits (one model, one fold): a task is a few to a few hundred fits."""


def default_client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def rounds(n_permutations: int, early_stop: int | None) -> list[list[int]]:
    """The permutations of each round: all at once, or ``h, h, 2h, 4h, ...`` with early stopping.

    No row can stop before ``h`` permutations; the rounds then double, so a row that never
    stops costs about ``log2(N / h)`` rounds and one that stops runs at most twice the
    permutations it needs (the extra ones are fit but not used: its p-value is the one of
    the sequential test, whatever the rounds).

    Examples
    --------
    >>> [len(r) for r in rounds(100, 10)]
    [10, 10, 20, 40, 20]
    >>> [len(r) for r in rounds(100, None)], rounds(0, 10)
    ([100], [[]])
    """
    perms = list(range(int(n_permutations)))
    h = int(early_stop or 0)
    if h <= 0 or len(perms) <= h:
        return [perms]
    out, start, size = [], 0, h
    while start < len(perms):
        out.append(perms[start : start + size])
        start += size
        size = size if len(out) < 2 else 2 * size
    return out


class Executor:
    """Runs tasks on a distributed client (inputs scattered once) or in-process.

    Examples
    --------
    >>> ex = Executor(None)
    >>> ex.gather([ex.submit(sum, ex.put([1, 2]))])
    [3]
    """

    def __init__(self, client: Any = None):
        self.client = client

    def put(self, obj: Any) -> Any:
        """``obj`` on the workers (a future), or ``obj`` itself without a client."""
        if self.client is None:
            return obj
        return self.client.scatter([obj], hash=False)[0]

    def submit(self, fn: Callable, *args: Any) -> Any:
        """A task: a future on the client, a dask delayed object without one."""
        if self.client is None:
            import dask

            return dask.delayed(fn, pure=False)(*args)
        return self.client.submit(fn, *args, pure=False)

    def keep(self, handles: dict) -> dict:
        """Computed values of ``handles``: kept on the workers (futures) or computed here."""
        if self.client is None:
            return dict(zip(handles, self.gather(list(handles.values())), strict=True))
        return handles

    def gather(self, handles: list) -> list:
        if not handles:
            return []
        if self.client is None:
            import dask

            with warnings.catch_warnings():  # in-process on purpose, even beside a client
                warnings.filterwarnings("ignore", message="Running on a single-machine scheduler")
                return list(dask.compute(*handles, scheduler="sync"))
        return self.client.gather(handles)


def _runs_in_caller(model: str, dask_backed: bool) -> bool:
    return model == "logistic" or (model in INCREMENTAL and dask_backed)


def _dask_rows(x: np.ndarray, client: Any):
    """In-memory features as row chunks on the cluster (scattered: no data in the graph)."""
    import dask.array as da

    if client is None:
        return x
    row_bytes = max(1, x[0].nbytes)
    rows = int(min(len(x), max(1, _CHUNK_BYTES // row_bytes)))
    future = client.scatter([x], hash=False)[0]
    arr = da.from_delayed(future, x.shape, dtype=x.dtype).rechunk((rows,) + x.shape[1:])
    return client.persist(arr)


def _numpy_set(name: str, da: xr.DataArray, cache: dict) -> np.ndarray:
    """A feature set in memory: float32 stays float32 (patterns of many channels), else
    float64."""
    if name not in cache:
        x = to_numpy(da.data)
        x = x if x.dtype == np.float32 else x.astype(np.float64, copy=False)
        check_finite(name, x)
        cache[name] = x
    return cache[name]


def _chunks(perms: list[int]) -> list[tuple[int, ...]]:
    return [tuple(perms[i : i + PERMS_PER_TASK]) for i in range(0, len(perms), PERMS_PER_TASK)]


class _Inputs:
    """The inputs of every task: scattered once, principal components once per fold."""

    def __init__(self, run: ModelRun, opts: FitOptions, ex: Executor):
        self.run, self.opts, self.ex = run, opts, ex
        self.numpy: dict[str, np.ndarray] = {}
        self.lazy: dict[str, Any] = {}
        self.handles: dict[str, Any] = {}
        self.y = ex.put(np.stack(run.y_perms))
        self.codes = ex.put(run.codes) if run.codes is not None else None
        self.folds = ex.put(run.folds)
        comps = {}
        for name, da in run.sets.items():
            backed = is_dask(da.data)
            if not any(not _runs_in_caller(m, backed) for m in run.models):
                continue
            self.handles[name] = ex.put(_numpy_set(name, da, self.numpy))
            n_comp = (opts.n_components or {}).get(name)
            if n_comp is None:
                continue
            for t in run.time_idx:
                for k in range(len(run.folds)):
                    comps[(name, t, k)] = ex.submit(
                        fold_components, self.handles[name], t, self.folds, k, n_comp, opts.seed
                    )
        self.components = ex.keep(comps)

    def pool_args(self, block: Block) -> tuple:
        key = (block.feature_set, block.time, block.fold)
        if key in self.components:
            x, prepared = self.components[key], True
        else:
            x, prepared = self.handles[block.feature_set], False
        return (x, self.y, self.codes, self.folds, block, self.opts, prepared)

    def caller_x(self, name: str) -> Any:
        da = self.run.sets[name]
        if is_dask(da.data):
            return da.data
        x = _numpy_set(name, da, self.numpy)
        if (self.opts.n_components or {}).get(name) is not None:
            return x  # the PCA is fit on in-memory rows in each fit
        if name not in self.lazy:
            self.lazy[name] = _dask_rows(x, self.ex.client)
        return self.lazy[name]


def _run_in_caller(blocks: list[Block], inputs: _Inputs, client: Any) -> list:
    from contextlib import nullcontext

    if not blocks:
        return []
    run = inputs.run
    ctx = client.as_current() if client is not None else nullcontext()
    out = []
    with ctx, warnings.catch_warnings():
        # dask-glm internals, not ours: deprecated config key and scipy option
        warnings.filterwarnings("ignore", message=".*fuse_ave_width.*")
        warnings.filterwarnings("ignore", message=".*`disp` and `iprint`.*")
        for b in blocks:
            x = inputs.caller_x(b.feature_set)
            train, test = run.folds[b.fold]
            for p in b.perms:
                task = FoldTask(b.feature_set, b.model, b.time, p, b.fold)
                out.append((task, fit_fold(x, run.y_perms[p + 1], run.codes, train, test,
                                           task, inputs.opts)))  # fmt: skip
    return out


def assemble(results: list, n: int, folds: list) -> dict[tuple, dict[str, np.ndarray]]:
    """Out-of-fold arrays per (feature set, model, time bin, permutation)."""
    outs: dict[tuple, dict[str, np.ndarray]] = {}
    for task, res in results:
        key = (task.feature_set, task.model, task.time, task.perm)
        slot = outs.setdefault(key, {k: np.full(n, np.nan) for k in res})
        te = folds[task.fold][1]
        for k, v in res.items():
            slot[k][te] = v
    return outs


def fold_index(n: int, folds: list) -> np.ndarray:
    """The test fold of every stimulus."""
    fold_of = np.full(n, -1, dtype=np.int64)
    for k, (_, te) in enumerate(folds):
        fold_of[te] = k
    return fold_of


def run_rounds(
    run: ModelRun, opts: FitOptions, client: Any, early_stop: int | None
) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Fit every row's observed targets and permutations, round by round.

    Returns
    -------
    outs : dict
        Observed out-of-fold outputs per (feature set, model, time bin, -1).
    null : numpy.ndarray
        Permutation scores (feature set, model, time bin, permutation): NaN after the
        permutation at which a row's sequential test stopped.
    stopped : numpy.ndarray
        Whether each row's test stopped early (feature set, model, time bin).
    fold_of : numpy.ndarray
        The test fold of every stimulus.
    """
    ex = Executor(client)
    inputs = _Inputs(run, opts, ex)
    fold_of = fold_index(run.y.size, run.folds)
    rows = {
        (name, m, t): (i, j, ti)
        for i, name in enumerate(run.sets)
        for j, m in enumerate(run.models)
        for ti, t in enumerate(run.time_idx)
    }
    backed = {name: is_dask(da.data) for name, da in run.sets.items()}
    null = np.full((len(run.sets), len(run.models), len(run.time_idx), run.n_perm), np.nan)
    stopped_at = np.zeros(null.shape[:3], dtype=bool)
    observed: dict[tuple, float] = {}
    outs: dict[tuple, dict[str, np.ndarray]] = {}
    active = list(rows)
    done = 0
    for r, perms in enumerate(rounds(run.n_perm, early_stop)):
        if not active:
            break
        targets = ([-1] if r == 0 else []) + perms
        pool, caller = [], []
        for name, m, t in active:
            for k in range(len(run.folds)):
                for chunk in _chunks(targets):
                    block = Block(name, m, t, k, chunk)
                    if _runs_in_caller(m, backed[name]):
                        caller.append(block)
                    else:
                        pool.append(ex.submit(fit_block, *inputs.pool_args(block)))
        results = [pair for part in ex.gather(pool) for pair in part]
        results += _run_in_caller(caller, inputs, client)
        got = assemble(results, run.y.size, run.folds)
        del results, pool
        still = []
        for key in active:
            i, j, ti = rows[key]
            metric = primary(key[1])
            if r == 0:
                outs[key + (-1,)] = got[key + (-1,)]
                observed[key] = scores(got[key + (-1,)], run.y, key[1], fold_of)[metric]
            for p in perms:
                null[i, j, ti, p] = null_score(got[key + (p,)], run.y_perms[p + 1], key[1],
                                               fold_of)  # fmt: skip
            seen = null[i, j, ti, : done + len(perms)]
            _, used, stopped = sequential_p(seen, observed[key], early_stop)
            stopped_at[i, j, ti] = stopped
            if stopped or not np.isfinite(observed[key]):  # NaN: no p-value to refine
                finite = np.flatnonzero(np.isfinite(seen))
                cut = int(finite[used - 1]) + 1 if used else 0
                null[i, j, ti, cut:] = np.nan
            else:
                still.append(key)
        done += len(perms)
        active = still
    return outs, null, stopped_at, fold_of
