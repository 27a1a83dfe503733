"""memxr: labeled cubes of visual-cortex recordings and image memorability.

Raw THINGS-fMRI and TVSD files become labeled xarray/Zarr cubes
(stimulus x channel [x time]) that are analysed out of core with Dask.
Importing memxr registers the ``ds.memxr`` accessor; the analysis functions
below are loaded on first use, so the command line starts fast.

Examples
--------
>>> import memxr
>>> cube = memxr.schema.example_cube()
>>> memxr.roi_reduce(cube, "A").dims
('stimulus', 'roi')
>>> float(memxr.correlate(memxr.roi_reduce(cube, "A"), cube.memorability,
...                       n_permutations=0, n_bootstrap=0).r.sel(roi="A")) <= 1
True
"""

from importlib import import_module

from . import accessor as _accessor  # noqa: F401  (registers ds.memxr)
from . import schema
from ._version import __version__
from .errors import InputError
from .reduce import roi_reduce, window_reduce
from .schema import SchemaError, validate
from .store import open_cube, write_cube

_LAZY = {
    "attach_labels": "align",
    "align_pair": "align",
    "shared_stimuli": "align",
    "split_half_reliability": "reliability",
    "noise_ceiling": "reliability",
    "select_channels": "reliability",
    "correlate": "stats",
    "correlation_map": "stats",
    "partial_correlate": "stats",
    "roi_features": "features",
    "pattern_features": "features",
    "fit_models": "models",
    "synthesize": "synth",
    "run": "pipeline",
    "export_netcdf": "export",
}

__all__ = [
    "InputError",
    "SchemaError",
    "__version__",
    "open_cube",
    "roi_reduce",
    "schema",
    "validate",
    "window_reduce",
    "write_cube",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'memxr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
