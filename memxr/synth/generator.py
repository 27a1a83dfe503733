""":func:`synthesize`: every raw format under one folder, at any scale, and its ``truth.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .fmri import write_things_fmri_subject
from .model import Model
from .things import Stimuli
from .tvsd import write_tvsd_monkey

__all__ = ["COVARIATES_CSV", "COVARIATE_COLUMNS", "REAL_SIZES", "sizes", "synthesize"]

REAL_SIZES = {
    "n_voxels": 211_339,
    "n_fmri_concepts": 720,
    "n_fmri_test": 100,
    "n_sessions": 12,
    "n_runs": 10,
    "n_tvsd_concepts": 1854,
    "n_tvsd_test": 100,
    "n_reps": 30,
    "n_days": 20,
    "n_timebins": 300,
    "bin_ms": 1.0,
    "n_channels": 1024,
    "images_per_concept": 12,
}
"""Sizes at ``scale=1.0`` (``n_days`` is not documented by the release: an assumption)."""

_MINIMUM = {
    "n_voxels": 300,
    "n_fmri_concepts": 8,
    "n_fmri_test": 4,
    "n_sessions": 3,
    "n_runs": 2,
    "n_tvsd_concepts": 8,
    "n_tvsd_test": 4,
    "n_reps": 3,
    "n_days": 2,
}
_BIN_WIDTHS = (1, 2, 3, 4, 5, 6, 10)  # divisors of 300 ms: tb always spans -100..~199 ms


def sizes(scale: float = 1.0, **overrides) -> dict:
    """The sizes used at ``scale``: real sizes times ``scale``, with minimums.

    Policy: counts (voxels, concepts, test images, sessions, runs, repeats,
    days, time bins) are ``round(real * scale)`` but at least the minimum that
    keeps every part usable (300 voxels so that every ROI has voxels, 8
    concepts, 4 test images, 3 sessions and repeats, 2 runs and days, 30 time
    bins). Time bins cover -100..~199 ms with the smallest bin width (1, 2, 3,
    4, 5, 6 or 10 ms) whose count does not exceed the scaled count. Channels
    are always 1024 and 12 images per concept (the formats fix both). ``n_days``
    never exceeds ``n_reps``. Any key can be overridden.

    Examples
    --------
    >>> s = sizes(0.001)
    >>> s["n_voxels"], s["n_fmri_concepts"], s["n_reps"], s["n_timebins"], s["bin_ms"]
    (300, 8, 3, 30, 10.0)
    >>> sizes(1.0)["n_voxels"], sizes(0.5)["bin_ms"], sizes(0.01, n_voxels=1000)["n_voxels"]
    (211339, 2.0, 1000)
    """
    if scale <= 0:
        raise ValueError(f"scale: must be positive, got {scale}")
    unknown = set(overrides) - set(REAL_SIZES)
    if unknown:
        raise ValueError(f"sizes: unknown keys {sorted(unknown)}; known: {sorted(REAL_SIZES)}")
    if overrides.get("n_channels", 1024) != 1024:
        raise ValueError("n_channels: the TVSD format has exactly 1024 channels")
    out = dict(REAL_SIZES)
    for key, minimum in _MINIMUM.items():
        out[key] = max(minimum, round(REAL_SIZES[key] * scale))
    target = max(30, round(300 * scale))
    width = min(w for w in _BIN_WIDTHS if 300 // w <= target)
    out["n_timebins"], out["bin_ms"] = 300 // width, float(width)
    out.update(overrides)
    if "n_timebins" in overrides and "bin_ms" not in overrides:
        out["bin_ms"] = 300.0 / out["n_timebins"]
    out["n_days"] = min(out["n_days"], out["n_reps"])
    return out


def synthesize(
    outdir: str | os.PathLike,
    scale: float = 0.001,
    seed: int = 0,
    things_dir: str | os.PathLike | None = None,
    subjects: Sequence[str] = ("sub-01", "sub-02", "sub-03"),
    monkeys: Sequence[str] = ("N", "F"),
    trials: bool = True,
    fmri_dtype: str = "float32",
    *,
    fmri_effects: dict[str, float] | None = None,
    fmri_confounds: dict[str, float] | None = None,
    tvsd_effects: dict[str, float] | None = None,
    tvsd_confounds: dict[str, float] | None = None,
    effect_scale: float = 1.0,
    memorability_split_half: float | None = None,
    memorability_concept_share: float | None = None,
    covariate_r: float | None = None,
    neural_concept_share: float | None = None,
    **overrides,
) -> dict:
    """Write all raw formats under ``outdir`` and return the truth (also ``truth.json``).

    The planted model, its defaults and the exact meaning of every planted
    quantity are described in :mod:`memxr.synth.model`.

    Parameters
    ----------
    outdir : path
        Output folder (created if needed).
    scale : float
        1.0 = real sizes; see :func:`sizes`.
    seed : int
        Same seed and scale give identical arrays.
    things_dir : path, optional
        A folder with the real ``THINGS_Memorability_Scores.csv`` and
        ``Concept_to_category_linking.csv``: use real names and scores (and copy
        the tables). Without it, names and tables are generated.
    subjects, monkeys : sequence of str
        Which fMRI subjects and TVSD monkeys (``"N"``, ``"F"``) to write.
    trials : bool
        Also write ``THINGS_MUA_trials.mat`` (by far the largest file).
    fmri_dtype : {"float32", "float64"}
        Dtype of the fMRI betas.
    fmri_effects, tvsd_effects : dict, optional
        Planted population correlation of each ROI/area mean with the memorability
        score (replacing the defaults ``FMRI_EFFECTS``, ``TVSD_EFFECTS``); an ROI not
        listed has no direct memorability loading.
    fmri_confounds, tvsd_confounds : dict, optional
        Planted correlation of each ROI/area mean with the low-level covariate
        (defaults ``FMRI_CONFOUNDS``, ``TVSD_CONFOUNDS``).
    effect_scale : float
        Multiplies every planted effect (e.g. 3 for quick looks at small sizes).
    memorability_split_half, memorability_concept_share, covariate_r, neural_concept_share
        The other parameters of :class:`memxr.synth.model.Model` (defaults there).
    **overrides
        Size overrides, see :func:`sizes`.

    Returns
    -------
    dict
        ``seed``, ``scale``, ``sizes``, ``names`` (real/generated), ``model`` (the
        parameters and derived constants), ``memorability`` (NaN image, sample
        statistics), ``covariates`` (the CSV of per-image latents),
        ``fmri.<subject>`` and ``tvsd.<monkey>`` with the planted truth per ROI.

    Raises
    ------
    InfeasibleTarget
        When a planted correlation cannot be reached (see :func:`memxr.synth.model.solve`).
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    s = sizes(scale, **overrides)
    k = s["images_per_concept"]
    given = {
        "fmri_effects": fmri_effects, "fmri_confounds": fmri_confounds,
        "tvsd_effects": tvsd_effects, "tvsd_confounds": tvsd_confounds,
        "memorability_split_half": memorability_split_half,
        "memorability_concept_share": memorability_concept_share,
        "covariate_r": covariate_r, "neural_concept_share": neural_concept_share,
    }  # fmt: skip
    model = Model(effect_scale=effect_scale, **{k_: v for k_, v in given.items() if v is not None})
    if things_dir is not None:
        names = Stimuli.from_things(things_dir, seed=seed, model=model)
    else:
        n = max(s["n_fmri_concepts"], s["n_tvsd_concepts"]) + max(
            s["n_fmri_test"], s["n_tvsd_test"]
        )
        names = Stimuli.generate(
            min(n, REAL_SIZES["n_tvsd_concepts"]), seed=seed, min_images=k, model=model
        )
    names.write_tables(out / "things")
    truth: dict = {
        "seed": seed,
        "scale": scale,
        "sizes": s,
        "names": names.source,
        "model": model.to_json(),
        "memorability": {"nan_image": names.nan_image},
        "covariates": {"file": COVARIATES_CSV, "columns": COVARIATE_COLUMNS},
        "fmri": {},
        "tvsd": {},
    }
    used: list[str] = []
    for subject in subjects:
        truth["fmri"][subject] = write_things_fmri_subject(
            out / "things-fmri" / "betas_csv",
            subject,
            n_voxels=s["n_voxels"],
            n_concepts=s["n_fmri_concepts"],
            n_test=s["n_fmri_test"],
            n_sessions=s["n_sessions"],
            n_runs=s["n_runs"],
            dtype=fmri_dtype,
            names=names,
            rng=seed,
            images_per_concept=k,
        )
    if subjects:
        used += [img for _, img in names.train_images(s["n_fmri_concepts"], k)]
        used += [img for _, img in names.test_images(s["n_fmri_test"], k)]
    for monkey in monkeys:
        m = monkey.removeprefix("monkey")
        truth["tvsd"][m] = write_tvsd_monkey(
            out / "tvsd" / f"monkey{m}",
            m,
            n_concepts=s["n_tvsd_concepts"],
            n_test=s["n_tvsd_test"],
            n_reps=s["n_reps"],
            n_timebins=s["n_timebins"],
            bin_ms=s["bin_ms"],
            n_days=s["n_days"],
            names=names,
            rng=seed,
            trials=trials,
            images_per_concept=k,
        )
    if monkeys:
        used += [img for _, img in names.train_images(s["n_tvsd_concepts"], k)]
        used += [img for _, img in names.test_images(s["n_tvsd_test"], k)]
    truth["memorability"].update(_write_covariates(out / COVARIATES_CSV, names, used))
    (out / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True))
    return truth


COVARIATES_CSV = "covariates.csv"
COVARIATE_COLUMNS = {
    "image_name": "THINGS file name (the join key)",
    "concept": "concept of the image",
    "low_level": "the low-level covariate L (z units)",
    "memorability_true": "true memorability M (z units)",
    "memorability_z": "the published score in z units",
    "half_a": "split-half score of one half of the raters (z units)",
    "half_b": "split-half score of the other half (z units)",
}
"""Columns of ``covariates.csv`` (one row per image of the data sets, sorted)."""


def _write_covariates(path: Path, names: Stimuli, used: list[str]) -> dict:
    """``covariates.csv`` for the images of the data sets; sample statistics of the scores."""
    images = sorted(set(used))
    lat = names.latents.loc[images]
    table = lat[["concept", "L", "M", "z", "half_a", "half_b"]].rename(
        columns={"L": "low_level", "M": "memorability_true", "z": "memorability_z"}
    )
    table.to_csv(path, float_format="%.9g")
    z = lat["z"].to_numpy()
    ok = np.isfinite(z)
    halves = lat[["half_a", "half_b"]].to_numpy()[ok]
    return {
        "n_images": len(images),
        "sample_split_half": float(np.corrcoef(halves.T)[0, 1]) if ok.sum() > 2 else None,
        "sample_r_true": float(np.corrcoef(z[ok], lat["M"].to_numpy()[ok])[0, 1])
        if ok.sum() > 2
        else None,
    }
