"""memxr: labeled cubes of visual-cortex recordings and image memorability.

Raw THINGS-fMRI and TVSD files become labeled xarray/Zarr cubes
(stimulus x channel [x time]) that are analysed out of core with Dask.
"""

from . import schema
from ._version import __version__
from .schema import SchemaError, validate

__all__ = ["SchemaError", "__version__", "schema", "validate"]
