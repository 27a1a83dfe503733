"""memxr: labeled cubes of visual-cortex recordings and image memorability.

Raw THINGS-fMRI and TVSD files become labeled xarray/Zarr cubes
(stimulus x channel [x time]) that are analysed out of core with Dask.

Examples
--------
>>> import memxr
>>> cube = memxr.schema.example_cube()
>>> memxr.roi_reduce(cube, "A").dims
('stimulus', 'roi')
"""

from . import accessor as _accessor  # noqa: F401  (registers ds.memxr)
from . import schema
from ._version import __version__
from .errors import InputError
from .reduce import roi_reduce
from .schema import SchemaError, validate
from .store import open_cube, write_cube

__all__ = [
    "InputError",
    "SchemaError",
    "__version__",
    "open_cube",
    "roi_reduce",
    "schema",
    "validate",
    "write_cube",
]
