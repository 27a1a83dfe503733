"""THINGS names and tables for the synthetic data: the real ones, or generated look-alikes.

:class:`Stimuli` holds a universe of concepts (in a seeded order), their images
and memorability scores. Train images are the first ``k`` images of the first
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

__all__ = ["CATEGORY_LABELS", "Stimuli", "base_seed", "key_of", "rng_for", "zscore"]

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


@dataclass
class Stimuli:
    """A universe of THINGS concepts, images and memorability scores.

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
    """

    concepts: list[str]
    images: dict[str, list[str]]
    memorability: dict[str, float]
    category: dict[str, tuple[int, str]] = field(default_factory=dict)
    source: str = "generated"
    nan_image: str | None = None
    things_dir: Path | None = None
    seed: int = 0

    @classmethod
    def generate(cls, n_concepts: int, seed: int = 0, min_images: int = 12) -> Stimuli:
        """Plausible names and scores: concept effect plus image noise, mean ~0.79 in [0.385, 1]."""
        rng = np.random.default_rng([seed, 101])
        names = _concept_names(n_concepts, rng)
        images, mem, cat = {}, {}, {}
        for c in names:
            n_img = min_images + 1 + int(rng.integers(0, 4))
            letters = ["b" if rng.random() < 0.9 else "s"]
            letters += ["n" if rng.random() < 0.06 else "s" for _ in range(n_img - 1)]
            imgs = [f"{c}_{i + 1:02d}{ch}.jpg" for i, ch in enumerate(letters)]
            images[c] = imgs
            level = 0.79 + rng.normal(0, 0.04)
            for img in imgs:
                mem[img] = round(float(np.clip(level + rng.normal(0, 0.07), 0.385, 1.0)), 9)
            number = 0 if rng.random() < 0.29 else int(rng.choice(list(CATEGORY_LABELS)))
            cat[c] = (number, CATEGORY_LABELS.get(number, "NA"))
        first = images[names[0]]
        nan_image = first[min(7, len(first) - 1)]
        mem[nan_image] = float("nan")
        return cls(names, images, mem, cat, "generated", nan_image, None, seed)

    @classmethod
    def from_things(cls, things_dir: str | os.PathLike, seed: int = 0) -> Stimuli:
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
        return cls(names, images, mem, cat, "real", nan_image, d, seed)

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
