"""Cross-validation of :func:`memxr.models.fit_models`: folds, training-fold labels, permutations.

Folds are grouped by concept unless random folds are asked for (:func:`make_folds`);
classifier labels take their thresholds from the training fold only (:func:`split_labels`);
the permutation null moves memorability between whole concepts (:func:`grouped_permutation`).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..stats.inputs import group_codes

__all__ = ["grouped_permutation", "grouped_permutations", "make_folds", "split_labels"]


def split_labels(
    y_train: np.ndarray,
    y_test: np.ndarray,
    split: str = "median",
    q: tuple[float, float] = (0.25, 0.75),
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """High (1) / low (0) memorability labels with thresholds from the training fold only.

    Parameters
    ----------
    y_train, y_test : numpy.ndarray
        Memorability of the training and test stimuli.
    split : {"median", "quantile"}
        ``median``: 1 above the training median, else 0. ``quantile``: 0 at or
        below the training ``q[0]`` quantile, 1 at or above ``q[1]``, NaN
        (left out) in between.
    q : (float, float)
        Quantiles of the ``quantile`` split.

    Returns
    -------
    labels_train, labels_test : numpy.ndarray
        Float arrays of 0, 1 and NaN.
    thresholds : (float, float)
        The (low, high) thresholds used (equal for the median split).

    Examples
    --------
    >>> tr, te, thr = split_labels(np.array([1., 2., 3., 4.]), np.array([2.4, 2.6, 9.]))
    >>> te.tolist(), thr
    ([0.0, 1.0, 1.0], (2.5, 2.5))
    >>> split_labels(np.arange(5.), np.array([0.5, 2., 3.5]), "quantile", (0.25, 0.75))[1]
    array([ 0., nan,  1.])
    """
    y_train = np.asarray(y_train, dtype=float)
    y_test = np.asarray(y_test, dtype=float)
    if split == "median":
        thr = float(np.median(y_train))

        def lab(v):
            return (v > thr).astype(float)

        return lab(y_train), lab(y_test), (thr, thr)
    if split == "quantile":
        lo_q, hi_q = (float(v) for v in q)
        if not 0 < lo_q < hi_q < 1:
            raise ValueError(f"q must be two quantiles 0 < low < high < 1, got {q!r}")
        lo, hi = (float(v) for v in np.quantile(y_train, [lo_q, hi_q]))

        def lab(v):
            return np.where(v >= hi, 1.0, np.where(v <= lo, 0.0, np.nan))

        return lab(y_train), lab(y_test), (lo, hi)
    raise ValueError(f"split must be 'median' or 'quantile', got {split!r}")


def make_folds(
    n: int,
    groups: np.ndarray | None = None,
    cv: int | str = 5,
    seed: int = 0,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Cross-validation folds: concept-grouped by default, random only on request.

    Parameters
    ----------
    n : int
        Number of stimuli.
    groups : array of str or int, optional
        Concept per stimulus (``""`` = unknown, a group of its own); required
        unless ``cv`` is ``"random"`` or ``("random", k)``.
    cv : int, "grouped", "random", or (str, int)
        Number of grouped folds, or the kind of CV with 5 folds, or a
        ``(kind, n_folds)`` pair.
    seed : int
        Shuffles the groups (grouped) or stimuli (random) before splitting.

    Returns
    -------
    folds : list of (train, test)
        Sorted integer index arrays.
    kind : str
        ``"grouped"`` or ``"random"``.

    Examples
    --------
    >>> folds, kind = make_folds(6, np.array(list("aabbcc")), cv=3)
    >>> kind, [t.tolist() for _, t in folds]
    ('grouped', [[4, 5], [2, 3], [0, 1]])
    >>> make_folds(6, cv=("random", 2))[1]
    'random'
    """
    from sklearn.model_selection import GroupKFold, KFold

    kind, k = cv_kind(cv)
    if kind == "random":
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(n)))
    else:
        if groups is None:
            raise ValueError(
                "grouped cross-validation needs groups (a concept per stimulus); "
                "pass cv='random' to split stimuli at random instead"
            )
        codes = group_codes(groups)
        n_groups = int(np.unique(codes).size)
        if n_groups < k:
            raise ValueError(f"{k} grouped folds need at least {k} concepts, got {n_groups}")
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(n), groups=codes))
    return [(np.sort(tr), np.sort(te)) for tr, te in folds], kind


def cv_kind(cv: int | str | tuple) -> tuple[str, int]:
    if isinstance(cv, tuple) and len(cv) == 2:
        kind, k = cv
    elif isinstance(cv, str):
        kind, k = cv, 5
    elif isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        kind, k = "grouped", int(cv)
    else:
        raise ValueError(f"cv must be an int, 'grouped', 'random' or (kind, n_folds), got {cv!r}")
    if kind not in ("grouped", "random") or int(k) < 2:
        raise ValueError(f"cv must be 'grouped' or 'random' with at least 2 folds, got {cv!r}")
    return kind, int(k)


def grouped_permutation(
    groups: np.ndarray, rng: np.random.Generator, *, pool_unique: bool = True
) -> np.ndarray:
    """An index permutation that moves memorability between whole concepts.

    ``y[p]`` gives each concept the values of another concept of the same size
    (in shuffled order); concepts whose size no other concept has are pooled
    and shuffled at the stimulus level (``pool_unique``), or only shuffled within
    themselves (``pool_unique=False``: every permutation then keeps the partition of the
    stimuli into concepts, the exact null of a test whose statistic depends on it, such
    as a Mantel test of two RDMs with concept structure). One row of
    :func:`grouped_permutations`.

    Parameters
    ----------
    groups : array
        Concept (or integer group code) per stimulus; unknown concepts ("") are
        groups of their own (:func:`memxr.stats.inputs.group_codes`), as in the folds
        and in :func:`memxr.stats.correlate`.
    rng : numpy.random.Generator
        Source of randomness.
    pool_unique : bool
        Pool the concepts of a unique size (see above).

    Returns
    -------
    numpy.ndarray
        Indices ``p`` with ``sorted(p) == range(n)``.

    Examples
    --------
    >>> g = np.array([0, 0, 1, 1, 2, 2])
    >>> p = grouped_permutation(g, np.random.default_rng(1))
    >>> sorted(p.tolist()) == list(range(6)), all(len(set(g[p][g == c])) == 1 for c in (0, 1, 2))
    (True, True)
    >>> g = np.array([0, 0, 1, 1, 2, 2, 2])
    >>> p = grouped_permutation(g, np.random.default_rng(0), pool_unique=False)
    >>> sorted(p[4:].tolist())
    [4, 5, 6]
    """
    return grouped_permutations(groups, rng, 1, pool_unique=pool_unique)[0]


def grouped_permutations(
    groups: np.ndarray, rng: np.random.Generator, n: int, *, pool_unique: bool = True
) -> np.ndarray:
    """``n`` index permutations of :func:`grouped_permutation` at once, shape (n, stimuli).

    The partition into concepts is computed once and every size class is permuted for all
    ``n`` rows in one vectorized step.

    Examples
    --------
    >>> g = np.repeat(np.arange(4), [2, 2, 3, 3])
    >>> perms = grouped_permutations(g, np.random.default_rng(0), 50)
    >>> perms.shape, all(sorted(p.tolist()) == list(range(10)) for p in perms)
    ((50, 10), True)
    >>> bool(all((np.diff(g[p].reshape(-1)[:2]) == 0).all() for p in perms))
    True
    """
    codes = group_codes(groups)
    n = int(n)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    members = np.split(order, bounds)
    by_size: dict[int, list[int]] = defaultdict(list)
    for g, m in enumerate(members):
        by_size[len(m)].append(g)
    out = np.empty((n, codes.size), dtype=np.intp)
    if n == 0:
        return out
    pooled: list[np.ndarray] = []
    for size in sorted(by_size):
        gs = by_size[size]
        if len(gs) < 2 and pool_unique:
            pooled.extend(members[g] for g in gs)
            continue
        block = np.stack([members[g] for g in gs])  # (concepts, size)
        src = rng.permuted(np.tile(np.arange(len(gs)), (n, 1)), axis=1)  # (n, concepts)
        within = rng.permuted(np.broadcast_to(np.arange(size), (n, len(gs), size)), axis=2)
        out[:, block.reshape(-1)] = block[src[:, :, None], within].reshape(n, -1)
    if pooled:
        idx = np.concatenate(pooled)
        out[:, idx] = idx[rng.permuted(np.tile(np.arange(idx.size), (n, 1)), axis=1)]
    return out
