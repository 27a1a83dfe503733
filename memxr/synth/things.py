"""THINGS names and tables for the synthetic data: the real ones, or generated look-alikes.

:class:`Stimuli` holds a universe of concepts (in a seeded order), their images,
memorability scores and image latents (true memorability, the low-level covariate,
image features: :mod:`memxr.synth.model`); generated scores come from the latents, real
ones drive them. Train images are the first ``k`` images of the first
concepts; test images come from the other end of the order (one image per
concept beyond the ``k`` train images), so that datasets built from the same
:class:`Stimuli` share their train and test images, as THINGS-fMRI and TVSD do.

Generated tables copy the quirks of the real files: the concept table is
UTF-8 with a byte-order mark, CRLF line ends, three trailing empty columns,
category 0 labelled ``NA``; the memorability table has CRLF line ends,
``file_path = images/<concept>/<image>`` and one image whose score is ``NaN``.

Examples
--------
>>> s = Stimuli.generate(12, seed=0)
>>> len(s.concepts), len(s.train_images(3, 12)), len(s.test_images(2, 12))
(12, 36, 2)
>>> s.nan_image in {img for _, img in s.train_images(1, 12)}
True
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .model import K_HIGH, K_LOW, MEMORABILITY, Model

__all__ = ["CATEGORY_LABELS", "LATENTS", "Stimuli", "base_seed", "key_of", "rng_for", "zscore"]

MEMORABILITY_CSV = "THINGS_Memorability_Scores.csv"
CONCEPTS_CSV = "Concept_to_category_linking.csv"
REAL_NAN_IMAGE = "goalpost_08s.jpg"

CATEGORY_LABELS = {
    1: "animal", 3: "body part", 4: "clothing", 5: "clothing accessory", 6: "container",
    7: "dessert", 8: "drink", 9: "electronic device", 10: "food", 12: "furniture",
    13: "home decor", 15: "kitchen appliance", 16: "kitchen tool", 17: "medical equipment",
    18: "musical instrument", 19: "office supply", 20: "part of car", 21: "plant",
    22: "sports equipment", 23: "tool", 24: "toy", 26: "vehicle", 27: "weapon",
}  # fmt: skip
"""Category numbers and labels used by the real concept table (0 = ``NA``)."""

_ONSETS = "b c d f g h k l m n p r s t v w z br cl dr fl gr pl sh st tr ch".split()
_VOWELS = "a e i o u ai ea oo".split()


def _word(rng: np.random.Generator) -> str:
    n = int(rng.integers(2, 4))
    return "".join(
        _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(n)
    )


def _concept_names(n: int, rng: np.random.Generator) -> list[str]:
    """Unique lower-case names; some joined by ``_``, some numbered homonyms (``baton4``)."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        u = rng.random()
        if u < 0.15:
            cands = [f"{_word(rng)}_{_word(rng)}"]
        elif u < 0.22:
            stem = _word(rng)
            cands = [f"{stem}{i}" for i in range(1, int(rng.integers(2, 5)) + 1)]
        else:
            cands = [_word(rng)]
        for c in cands:
            if c not in seen and len(out) < n:
                seen.add(c)
                out.append(c)
    return out


def base_seed(rng: int | np.random.Generator | None) -> int:
    """An integer seed from an int, a Generator (one draw) or None (0)."""
    if rng is None:
        return 0
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**31))
    return int(rng)


def key_of(name: str) -> int:
    """A stable integer key for a subject or monkey name (``sub-02`` -> 2, else CRC-32)."""
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else zlib.crc32(name.encode())


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent random stream for one piece of data, keyed by integers.

    Keying every block by its position (not by the order in which blocks are
    written) makes the output identical whatever the block size.
    """
    return np.random.default_rng([seed, *keys])


def zscore(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """z-score over the finite values; NaN -> 0 (no effect). Returns (z, mean, sd)."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    mean, sd = float(v[ok].mean()), float(v[ok].std())
    z = np.where(ok, (v - mean) / (sd if sd > 0 else 1.0), 0.0)
    return z, mean, sd


def _fmt(x: float) -> str:
    return "NaN" if math.isnan(x) else f"{x:.9g}"


LATENTS = ("M", "z", "half_a", "half_b", "L", "G", *(f"low{k}" for k in range(K_LOW)),
           *(f"high{k}" for k in range(K_HIGH)))  # fmt: skip
"""Image latents drawn for every image (regions' responses ``C:<region>`` are drawn on demand)."""


@dataclass
class Stimuli:
    """A universe of THINGS concepts, images, memorability scores and image latents.

    Attributes
    ----------
    concepts : list of str
        Concepts in a seeded order (the real ``goalpost``, or the concept
        holding the generated ``NaN`` image, comes first).
    images : dict
        Concept -> its image file names, sorted.
    memorability : dict
        Image file name -> ``cr`` (NaN when the table has no score).
    category : dict
        Concept -> (category number, label); 0 is ``"NA"``.
    source : str
        ``"real"`` (tables read from a folder) or ``"generated"``.
    nan_image : str or None
        An image without a score, always among the train images of the first concept.
    model : Model
        The planted model (memorability reliability, concept shares, covariate).
    latents : pandas.DataFrame
        One row per image (sorted by concept, then image), the columns of
        :data:`LATENTS` (see :mod:`memxr.synth.model`).
    """

    concepts: list[str]
    images: dict[str, list[str]]
    memorability: dict[str, float]
    category: dict[str, tuple[int, str]] = field(default_factory=dict)
    source: str = "generated"
    nan_image: str | None = None
    things_dir: Path | None = None
    seed: int = 0
    model: Model = field(default_factory=Model)
    latents: pd.DataFrame | None = None
    _regions: dict = field(default_factory=dict, repr=False)

    @classmethod
    def generate(
        cls, n_concepts: int, seed: int = 0, min_images: int = 12, model: Model | None = None
    ) -> Stimuli:
        """Plausible names; scores from the planted model, mean ~0.79 in [0.385, 1]."""
        rng = np.random.default_rng([seed, 101])
        names = _concept_names(n_concepts, rng)
        images, cat = {}, {}
        for c in names:
            n_img = min_images + 1 + int(rng.integers(0, 4))
            letters = ["b" if rng.random() < 0.9 else "s"]
            letters += ["n" if rng.random() < 0.06 else "s" for _ in range(n_img - 1)]
            images[c] = [f"{c}_{i + 1:02d}{ch}.jpg" for i, ch in enumerate(letters)]
            number = 0 if rng.random() < 0.29 else int(rng.choice(list(CATEGORY_LABELS)))
            cat[c] = (number, CATEGORY_LABELS.get(number, "NA"))
        first = images[names[0]]
        nan_image = first[min(7, len(first) - 1)]
        out = cls(names, images, {}, cat, "generated", nan_image, None, seed, model or Model())
        out.latents = _latents(out, observed=None)
        z = out.latents["z"]
        mem = MEMORABILITY
        cr = np.clip(mem["mean"] + mem["sd"] * z.to_numpy(), mem["low"], mem["high"])
        out.memorability = {img: float(f"{v:.9g}") for img, v in zip(z.index, cr, strict=True)}
        out.memorability[nan_image] = float("nan")
        return out

    @classmethod
    def from_things(
        cls, things_dir: str | os.PathLike, seed: int = 0, model: Model | None = None
    ) -> Stimuli:
        """The real names and scores from ``things_dir`` (the two THINGS tables)."""
        d = Path(things_dir)
        images: dict[str, list[str]] = {}
        mem: dict[str, float] = {}
        with open(d / MEMORABILITY_CSV, newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                concept = row["file_path"].split("/")[1]
                images.setdefault(concept, []).append(row["image_name"])
                mem[row["image_name"]] = float(row["cr"]) if row["cr"] else float("nan")
        cat = {}
        with open(d / CONCEPTS_CSV, newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                cat[row["concept"]] = (int(row["category"]), row["category_label"])
        names = sorted(images)
        rng = np.random.default_rng([seed, 102])
        names = [names[i] for i in rng.permutation(len(names))]
        nan_image = REAL_NAN_IMAGE if REAL_NAN_IMAGE in mem else None
        if nan_image:
            names.remove("goalpost")
            names.insert(0, "goalpost")
        images = {c: sorted(v) for c, v in images.items()}
        out = cls(names, images, mem, cat, "real", nan_image, d, seed, model or Model())
        out.latents = _latents(out, observed=mem)
        return out

    def latent(self, names: list[str], images: list[str]) -> np.ndarray:
        """Latent values (``len(images)``, ``len(names)``): columns of :data:`LATENTS` or
        ``C:<region>`` (a region's image response, drawn once per region and cached)."""
        rows = self.latents.index.get_indexer(images)
        if (rows < 0).any():
            raise ValueError(f"unknown image {images[int(np.flatnonzero(rows < 0)[0])]!r}")
        cols = []
        for name in names:
            if name in self.latents.columns:
                cols.append(self.latents[name].to_numpy()[rows])
            elif name.startswith("C:"):
                if name not in self._regions:
                    self._regions[name] = _region(self, name[2:])
                cols.append(self._regions[name][rows])
            else:
                raise ValueError(f"unknown latent {name!r}")
        return np.column_stack(cols) if cols else np.empty((len(images), 0))

    def concept_index(self, images: list[str]) -> np.ndarray:
        """Index (into the sorted concepts) of the concept of each image."""
        return self.latents["concept_index"].to_numpy()[self.latents.index.get_indexer(images)]

    def train_images(self, n_concepts: int, k: int) -> list[tuple[str, str]]:
        """``(concept, image)`` for the first ``k`` images of the first ``n_concepts`` concepts."""
        if n_concepts > len(self.concepts):
            raise ValueError(f"{n_concepts} concepts requested, only {len(self.concepts)} known")
        out = []
        for c in self.concepts[:n_concepts]:
            imgs = self.images[c][:k]
            if self.nan_image in self.images[c] and self.nan_image not in imgs:
                imgs = [*imgs[:-1], self.nan_image]
            out.extend((c, img) for img in imgs)
        return out

    def test_images(self, n_test: int, k: int) -> list[tuple[str, str]]:
        """One image per concept, beyond the first ``k``, from the end of the concept order."""
        out = []
        for c in reversed(self.concepts):
            extra = [i for i in self.images[c][k:] if i != self.nan_image]
            if extra:
                out.append((c, extra[0]))
            if len(out) == n_test:
                return out
        raise ValueError(f"only {len(out)} test images available, {n_test} requested")

    def write_tables(self, outdir: str | os.PathLike) -> list[Path]:
        """Write (generated) or copy (real) the two tables into ``outdir``."""
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / MEMORABILITY_CSV, out / CONCEPTS_CSV]
        if self.source == "real" and self.things_dir is not None:
            for p in paths:
                shutil.copyfile(self.things_dir / p.name, p)
            return paths
        names = sorted(self.concepts)
        with open(paths[0], "w", newline="", encoding="utf-8") as fh:
            fh.write("image_nr,image_name,file_path,cr\r\n")
            nr = 0
            for c in names:
                for img in self.images[c]:
                    nr += 1
                    fh.write(f"{nr},{img},images/{c}/{img},{_fmt(self.memorability[img])}\r\n")
        rng = np.random.default_rng([self.seed, 103])
        with open(paths[1], "w", newline="", encoding="utf-8-sig") as fh:
            fh.write("concept,category,category_label,CR,dim_based_typ,beh_typ,,,\r\n")
            for c in names:
                number, label = self.category[c]
                cr = float(np.mean([self.memorability[i] for i in self.images[c]]))
                dim = float(np.clip(rng.normal(0.85, 0.1), 0.35, 0.99))
                beh = 0.0 if number == 0 else float(np.clip(rng.normal(5.5, 1.3), 0.5, 8.6))
                fh.write(f"{c},{number},{label},{_fmt(cr)},{_fmt(dim)},{_fmt(beh)},,,\r\n")
        return paths


def _mix(rng: np.random.Generator, share: float, codes: np.ndarray, n_concepts: int, k: int):
    """``k`` standard normal columns, a share ``share`` of the variance common to a concept."""
    concept = rng.standard_normal((n_concepts, k))
    image = rng.standard_normal((codes.size, k))
    return math.sqrt(share) * concept[codes] + math.sqrt(1 - share) * image


def _frame(s: Stimuli) -> tuple[list[str], np.ndarray, list[str]]:
    concepts = sorted(s.images)
    rows = [(img, j) for j, c in enumerate(concepts) for img in s.images[c]]
    return [r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.int64), concepts


def _latents(s: Stimuli, observed: dict[str, float] | None) -> pd.DataFrame:
    """The image latents of :data:`LATENTS` (see :mod:`memxr.synth.model`)."""
    m = s.model
    R, kappa, h = m.reliability, m.kappa, m.memorability_split_half
    names, codes, concepts = _frame(s)
    rng = rng_for(s.seed, 40)
    n, nc = len(names), len(concepts)
    mem = _mix(rng, m.memorability_concept_share_true, codes, nc, 1)[:, 0]
    e, eps = rng.standard_normal((2, n))
    if observed is None:
        z = math.sqrt(R) * mem + math.sqrt(1 - R) * e
    else:  # real scores: the true memorability given them (bivariate normal)
        cr = np.array([observed.get(img, np.nan) for img in names], dtype=np.float64)
        ok = np.isfinite(cr)
        z = np.full(n, np.nan)
        z[ok] = (cr[ok] - cr[ok].mean()) / cr[ok].std()
        mem = np.where(ok, math.sqrt(R) * np.nan_to_num(z) + math.sqrt(1 - R) * e, mem)
    half = math.sqrt((1 + h) / 2) * z, math.sqrt((1 - h) / 2) * eps
    share = m.neural_concept_share
    neural = _mix(rng, share, codes, nc, 2 + K_LOW + K_HIGH)
    low_level = kappa * mem + math.sqrt(1 - kappa**2) * neural[:, 0]
    table = pd.DataFrame(
        {"M": mem, "z": z, "half_a": half[0] + half[1], "half_b": half[0] - half[1],
         "L": low_level, "G": neural[:, 1]},
        index=pd.Index(names, name="image_name"),
    )  # fmt: skip
    for k in range(K_LOW):
        table[f"low{k}"] = neural[:, 2 + k]
    for k in range(K_HIGH):
        table[f"high{k}"] = neural[:, 2 + K_LOW + k]
    table["concept"] = [concepts[j] for j in codes]
    table["concept_index"] = codes
    return table


def _region(s: Stimuli, region: str) -> np.ndarray:
    """A region's image response for every image (row order of ``s.latents``)."""
    codes = s.latents["concept_index"].to_numpy()
    rng = rng_for(s.seed, 42, zlib.crc32(region.encode()))
    return _mix(rng, s.model.neural_concept_share, codes, int(codes.max()) + 1, 1)[:, 0]
