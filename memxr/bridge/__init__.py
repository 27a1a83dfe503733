"""Human <-> monkey comparisons on the THINGS images both species saw.

Three views of one human (THINGS-fMRI) cube and one monkey (TVSD) cube, each
restricted to the stimuli the two recordings share (:func:`memxr.align.align_pair`):

- :func:`shared_effects`: the memorability effect of every human ROI and every
  monkey area on exactly the same labelled images, with the statistics of
  :func:`memxr.stats.correlate` (concept-grouped permutations and bootstrap) and
  one Benjamini-Hochberg family over all rows of the pair;
- :func:`rsa`: representational similarity: a dissimilarity matrix
  (:func:`rdm`) per human ROI and per monkey area over the shared (train) images,
  or the shared concepts, compared by the Spearman correlation of their upper
  triangles, with Mantel permutation p-values and FDR over the ROI x area matrix;
- :func:`cross_decode`: a memorability decoder fit on one species' own images
  (those the other species did not see), applied to the other species' responses
  after a linear map between the two feature spaces learnt on the shared images
  with concept-grouped cross-validation; its p-value refits the decoder on
  permuted memorability, so that it tests the decoder's transfer and not merely
  the memorability signal that the map carries over from the other species.

:func:`bridge` runs the three and returns the tidy tables of the results
contract (``bridge_effects``, ``bridge_rsa``, ``bridge_decoding``).

A time-resolved monkey cube (``tvsd-trials``) is first averaged over each
area's window (:data:`memxr.reduce.AREA_WINDOWS`: V1 25-125, V4 50-150, IT
75-175 ms), as :func:`memxr.reduce.window_reduce` does.

Memory: effects stream over the data (matrix products over stimulus chunks).
An RDM of ``n`` items holds ``n**2`` float64 values (2,000 items: 32 MB), so
:func:`rsa` subsamples to ``max_items``; :func:`cross_decode` loads each ROI's
pattern (images x channels of that ROI) into memory for scikit-learn.

Examples
--------
>>> import numpy as np
>>> from memxr.schema import example_cube
>>> human = example_cube(n_stimulus=30, n_channel=4, seed=1)
>>> monkey = example_cube(n_stimulus=30, n_channel=1, seed=2).assign_attrs(
...     dataset="tvsd-normmua", subject="monkeyN")
>>> monkey["memorability"] = human["memorability"]
>>> monkey["response"][:, 0] = human["memorability"].values
>>> eff = shared_effects(human, monkey, ["A"], ["A"], n_permutations=99, n_bootstrap=0)
>>> eff[["species", "roi", "n", "pair"]].values.tolist()
[['human', 'A', 30, 'sub-00~monkeyN'], ['macaque', 'A', 30, 'sub-00~monkeyN']]
>>> float(eff.r.iloc[1])
1.0

May import: numpy, pandas, xarray, dask, scikit-learn and the analyses (:mod:`memxr.align`,
:mod:`memxr.reduce`, :mod:`memxr.features`, :mod:`memxr.stats`, :mod:`memxr.models`);
never readers, stores, pipeline, report or the command line.
"""

from .decoding import DECODING_COLUMNS, DECODING_MODELS, cross_decode
from .effects import EFFECT_COLUMNS, bridge, shared_effects
from .rsa import METRICS, RSA_COLUMNS, rdm, rsa

__all__ = [
    "DECODING_COLUMNS",
    "DECODING_MODELS",
    "EFFECT_COLUMNS",
    "METRICS",
    "RSA_COLUMNS",
    "bridge",
    "cross_decode",
    "rdm",
    "rsa",
    "shared_effects",
]
