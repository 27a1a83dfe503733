"""memxr: labeled cubes of visual-cortex recordings and image memorability.

Raw THINGS-fMRI and TVSD files become labeled xarray/Zarr cubes
(stimulus x channel [x time]) that are analysed out of core with Dask.
Importing memxr registers the ``ds.memxr`` accessor; the analysis functions
below are loaded on first use, so the command line starts fast.

The package is laid out by the flow of the data, one room per step::

    readers/   raw files -> lazy labelled cubes (one module per source, one registry)
    store/     cubes <-> Zarr stores (atomic, resumable), info, catalog, export
    reduce, align, reliability, features     cube -> smaller labelled arrays (lazy)
    stats/, models/, bridge/                 analyses of those arrays
    pipeline/  YAML spec -> steps on a Dask cluster -> result stores and tables
    report/    tables -> figures and one self-contained HTML report
    synth/     synthetic raw files in the real formats, with planted effects

with the vocabulary at the top (:mod:`memxr.schema`, :mod:`memxr.errors`,
:mod:`memxr.provenance`), the ``ds.memxr`` accessor, :mod:`memxr.testing`, the
command line and the demo. Data flow one way: a room imports only rooms before it
(checked by the import contracts in ``pyproject.toml``).

Modules that moved into a room stay importable under their former names:
``memxr.spec``, ``memxr.cluster`` (now in :mod:`memxr.pipeline`), ``memxr.catalog``,
``memxr.export`` (in :mod:`memxr.store`) and ``memxr.plots``
(:mod:`memxr.report.plots`).

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

import importlib.abc
import importlib.util
import sys
from importlib import import_module

from . import accessor as _accessor  # noqa: F401  (registers ds.memxr)
from . import schema
from .errors import InputError
from .provenance import __version__
from .reduce import roi_reduce, window_reduce
from .schema import SchemaError, validate
from .store import open_cube, validate_store, write_cube

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
    "export_netcdf": "store.export",
}

__all__ = [
    "InputError",
    "SchemaError",
    "__version__",
    "open_cube",
    "roi_reduce",
    "schema",
    "validate",
    "validate_store",
    "window_reduce",
    "write_cube",
    *_LAZY,
]


_MOVED = {
    "memxr.spec": "memxr.pipeline.spec",
    "memxr.cluster": "memxr.pipeline.cluster",
    "memxr.catalog": "memxr.store.catalog",
    "memxr.export": "memxr.store.export",
    "memxr.plots": "memxr.report.plots",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import memxr.spec`` gives the module :mod:`memxr.pipeline.spec` itself (not a copy)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return import_module(_MOVED[spec.name])

    def exec_module(self, module):
        """Nothing to run: the module was imported under its own name."""


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    if f"{__name__}.{name}" in _MOVED:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'memxr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
