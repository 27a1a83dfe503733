"""The file formats behind the raw THINGS and TVSD files, read and written with h5py.

- :mod:`.hdf5`: lazy, picklable access to HDF5 datasets (what the readers stream);
- :mod:`.pandas_hdf`: pandas' fixed-format frames (``ResponseData.h5``) written block by block;
- :mod:`.matlab`: MATLAB v7.3 MAT-files (HDF5 with MATLAB's classes, cells and structs);
- :mod:`.text`: the THINGS tables as text (their quirks, cell parsing, key checks).

Both the readers and the synthetic generator use these modules; they know nothing of
cubes, datasets or analyses.

May import: numpy, pandas, h5py and :mod:`memxr.errors` only.
"""
