"""``ds.memxr``: labeled slicing and the analyses, for interactive use.

A thin layer: slicing helpers select by the cube's labels, and every analysis
method forwards to the function of the same name in :mod:`memxr.reduce`,
:mod:`memxr.align`, :mod:`memxr.stats` or :mod:`memxr.models`. Results stay
lazy where those functions are.

Examples
--------
>>> import memxr
>>> cube = memxr.schema.example_cube(n_stimulus=6, n_channel=4)
>>> cube.memxr.top(0.5).sizes["stimulus"]
3
>>> cube.memxr.roi("A").sizes["channel"]
4
>>> cube.memxr.split("test").sizes["stimulus"]
0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from .schema import coord_values

__all__ = ["MemxrAccessor"]


@xr.register_dataset_accessor("memxr")
class MemxrAccessor:
    """Labeled slicing and analyses of a memxr cube (``ds.memxr``)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    # ------------------------------------------------------------------ slicing
    def _stimuli(self, keep: np.ndarray) -> xr.Dataset:
        ds = self._ds.isel(stimulus=np.flatnonzero(keep))
        if "response_repeats" in ds.data_vars and "repeat_stimulus_id" in ds.coords:
            kept = set(coord_values(ds, "stimulus_id").tolist())
            rep = coord_values(ds, "repeat_stimulus_id")
            ds = ds.isel(repeat_stimulus=np.flatnonzero([s in kept for s in rep]))
        ds.attrs = dict(ds.attrs)
        return ds

    def roi(
        self,
        *names: str,
        definitions: Mapping[str, Sequence[str]] | None = None,
        min_reliability: float | None = None,
    ) -> xr.Dataset:
        """Only the channels in (the union of) the named ROIs.

        Examples
        --------
        >>> import memxr
        >>> memxr.schema.example_cube(n_channel=3).memxr.roi("A").sizes["channel"]
        3
        """
        from .reduce import roi_masks

        mask = roi_masks(
            self._ds, list(names), definitions=definitions, min_reliability=min_reliability
        )
        return self._ds.isel(channel=np.flatnonzero(mask.values.any(axis=1)))

    def concepts(self, *names: str) -> xr.Dataset:
        """Only the stimuli of the given concepts."""
        return self._stimuli(np.isin(coord_values(self._ds, "concept"), list(names)))

    def category(self, *names: str) -> xr.Dataset:
        """Only the stimuli of the given categories (labels such as ``"animal"``)."""
        return self._stimuli(np.isin(coord_values(self._ds, "category"), list(names)))

    def split(self, which: str) -> xr.Dataset:
        """Only ``"train"`` or ``"test"`` stimuli."""
        if which not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {which!r}")
        return self._stimuli(coord_values(self._ds, "split") == which)

    def _quantile_mask(self, fraction: float, top: bool) -> np.ndarray:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        mem = np.asarray(self._ds["memorability"].values, dtype=float)
        finite = np.isfinite(mem)
        n = int(round(fraction * finite.sum()))
        order = np.argsort(np.where(finite, mem, np.nan), kind="stable")[: finite.sum()]
        chosen = order[-n:] if top else order[:n]
        keep = np.zeros(mem.size, dtype=bool)
        keep[chosen] = n > 0
        return keep

    def top(self, fraction: float) -> xr.Dataset:
        """The most memorable ``fraction`` of the scored stimuli (NaN scores excluded)."""
        return self._stimuli(self._quantile_mask(fraction, top=True))

    def bottom(self, fraction: float) -> xr.Dataset:
        """The least memorable ``fraction`` of the scored stimuli (NaN scores excluded)."""
        return self._stimuli(self._quantile_mask(fraction, top=False))

    def window(self, start: float, stop: float) -> xr.Dataset:
        """Time bins with ``start <= time < stop`` (ms)."""
        if "time" not in self._ds.dims:
            raise ValueError("the cube has no time dim")
        t = np.asarray(self._ds["time"].values, dtype=float)
        return self._ds.isel(time=np.flatnonzero((t >= start) & (t < stop)))

    def labelled(self) -> xr.Dataset:
        """Stimuli with a memorability score (see :func:`memxr.align.labelled`)."""
        from .align import labelled

        return labelled(self._ds)

    # ----------------------------------------------------------------- analyses
    def validate(self) -> xr.Dataset:
        """Check the cube against the schema (:func:`memxr.schema.validate`)."""
        from .schema import validate

        return validate(self._ds)

    def roi_reduce(self, rois=None, how: str = "mean", **kw) -> xr.DataArray:
        """:func:`memxr.reduce.roi_reduce` on this cube."""
        from .reduce import roi_reduce

        return roi_reduce(self._ds, rois, how, **kw)

    def correlate(
        self,
        rois=None,
        method: str = "spearman",
        how: str = "mean",
        groups: str | None = "concept",
        **kw,
    ) -> xr.Dataset:
        """Memorability correlation of the ROI magnitudes (:func:`memxr.stats.correlate`).

        Stimuli without a score are dropped for this analysis; resampling is
        by concept unless ``groups=None``.
        """
        from .stats.correlation import correlate

        ds = self.labelled()
        x = ds.memxr.roi_reduce(rois, how)
        return correlate(x, ds["memorability"], method=method, groups=groups, **kw)

    def correlation_map(self, **kw) -> xr.Dataset:
        """Every channel (and time bin) against memorability (:func:`memxr.stats.correlation_map`)."""
        from .stats.correlation import correlation_map

        return correlation_map(self.labelled(), **kw)

    def split_half_reliability(self, **kw) -> xr.DataArray:
        """:func:`memxr.align.split_half_reliability` from the repeated test trials."""
        from .reliability import split_half_reliability

        return split_half_reliability(self._ds, **kw)

    def noise_ceiling(self, rois=None, **kw) -> xr.Dataset:
        """:func:`memxr.align.noise_ceiling` per ROI."""
        from .reliability import noise_ceiling

        return noise_ceiling(self._ds, rois, **kw)

    def fit_models(self, rois=None, how: str = "mean", **kw):
        """:func:`memxr.models.fit_models` on the ROI magnitudes of this cube."""
        from .features import roi_features
        from .models.fit import fit_models

        ds = self.labelled()
        return fit_models({"magnitude": roi_features(ds, rois, how)}, ds["memorability"], **kw)
