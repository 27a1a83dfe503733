"""``memxr run``: a YAML spec -> steps on a Dask cluster -> stores, tables, figures, report.

:func:`run` validates the spec (:mod:`memxr.pipeline.spec`) before anything else, plans
the steps, connects to a cluster (:mod:`memxr.pipeline.cluster`: a running scheduler, a
local cluster or SLURM), prints the dashboard link and runs the steps in order,
printing each with its timing. OUT defaults to ``runs/<spec name>``:

``ingest:CUBE``
    reader -> :func:`memxr.store.write_cube`: ``stores/CUBE.zarr`` (or
    ``STORES/CUBE.zarr`` with ``memxr run --stores``, a folder or an ``s3://`` prefix:
    the cube stores are the outputs of a run that may live on S3; OUT, with everything
    else, is a local folder)
``magnitudes:CUBE``
    ROI mean and l2 per stimulus (for trials cubes: per time bin and in each
    area's window), split-half reliabilities of the ROI means (of one trial and of
    the mean of the repeats): ``magnitudes/CUBE.zarr``
``correlations``
    :func:`memxr.stats.correlate` per cube, method, reduction and split (train images:
    single trials; test images: means of their repeats; column ``trials``), with the
    ceiling on r(ROI, memorability) for those trials: ``results/correlations.zarr``,
    ``tables/correlations.csv``; the table adds (column ``control``) partial correlations
    controlling for ``inputs.covariates`` (and the category), within-concept correlations
    and random-effects group rows over the individuals (``subject`` ``pooled``)
``comparisons``
    :func:`memxr.stats.compare_correlations` of ROI pairs per cube and split:
    ``tables/comparisons.csv``
``latency``
    :func:`memxr.stats.latency` per area of the trials cubes: ``tables/latency.csv``
``variance_partition``
    :func:`memxr.models.variance_partition` of ROI magnitudes and covariates:
    ``tables/variance_partition.csv``
``timecourse``
    the same at every time bin of the trials cubes, with cluster-mass permutation tests
    over time (:func:`memxr.stats.cluster_test`): ``results/timecourse.zarr``,
    ``tables/timecourse.csv``, ``tables/timecourse_clusters.csv``
``models``
    :mod:`memxr.features` + :func:`memxr.models.fit_models` per split (PCA of the
    patterns inside the training folds): ``results/models.zarr``,
    ``tables/models.csv``, ``tables/predictions.csv``
``bridge``
    :func:`memxr.bridge.bridge` per pair: ``results/bridge.zarr``,
    ``tables/bridge_{effects,rsa,decoding}.csv``
``provenance``
    spec, hash, versions, checksums, steps: ``provenance.json``
``report``
    :func:`memxr.report.write_report`: ``report.html``, ``figures/*.png``
``catalog``
    :func:`memxr.store.catalog.update_catalog`: ``stores/catalog.tsv`` (see below)

Result stores hold one group per cube (``xarray.open_datatree(path, engine="zarr")``,
or ``xarray.open_zarr(path, group="sub-01")``).

Modules: :mod:`.spec` (the YAML spec and its checks), :mod:`.cluster` (a Dask client:
local, a scheduler address or SLURM), :mod:`.core` (steps, keys, the run context, result
writers, state), :mod:`.steps` (what each step does; :func:`ingest` is also the command
line's ``memxr ingest``), :mod:`.analyses` (the steps of the follow-up analyses on ROI
magnitudes: covariates, comparisons, latency, group level), :mod:`.progress` (a line of the running step's tasks every so
often: done of those submitted, elapsed, rough ETA; on with ``--progress`` or when stderr is
a terminal) and :mod:`.runner` (planning and running). The pipeline is the
only room that knows about files, clusters and configuration.

May import: every room below it (readers, store, the analyses, bridge, report) and the
vocabulary; never the command line or the demo.

Where the work runs
-------------------
Work on cube data (ingest, ROI reductions, pattern features and PCA, the
bridge's streaming statistics, the model fits) runs on the client's workers.
Large in-memory inputs are scattered to the workers once and referred to by key,
never embedded in task graphs: the model step's features, permuted targets and
folds (:mod:`memxr.models.execution`), and the voxel x ROI weight tables of the
ROI reductions (:func:`memxr.reduce.weight_blocks`). The correlation steps work
on the magnitudes, which are small and already in memory (stimuli x ROIs [x time
bins]), and run in the calling process: shipping them to workers would cost more
than it saves.
Results never depend on the cluster: seeds are fixed and chunks come from the
stores, not from the number of workers.

Caching
-------
Each step has a key: the SHA-256 of its name, its parameters from the spec,
the memxr version, the keys of the steps it reads and the fingerprints
(relative name, size, modification time) of the raw files or stores it reads (a store
on S3: its URL and the size and ETag of its root metadata, rewritten by every
publication).
A step whose key is the one recorded in ``OUT/.memxr/state.json`` and whose
outputs all exist is skipped (``skip STEP (cached)``); a change anywhere
changes the keys of that step and of every step after it that reads it, so
exactly those run again (e.g. a new ``n_permutations`` of the correlations
reruns ``correlations``, ``provenance`` and ``report``; new fMRI ROIs rerun the
fMRI magnitudes and every analysis of them). Every output is written beside
its final place and renamed into it when complete, and the state is recorded
after each step, so an interrupted run resumes at the step it was in (and a
half-written cube store resumes region by region, see :func:`memxr.store.write_cube`).
Steps are deterministic and idempotent, so a step that loses a worker (or data
held by one) is simply run again, up to :data:`RETRIES` times, with the same
numbers. Outputs of analyses removed from the spec are removed from OUT.

Provenance
----------
Result stores (``magnitudes/``, ``results/``) carry ``spec_hash`` and a
``provenance`` JSON attribute (spec hash, versions, step key, checksums of the
cubes' input files); cube stores carry the ``spec_hash`` of the run that wrote
them and the SHA-256 of every raw file; ``provenance.json`` holds the whole
validated spec, its hash, the versions of memxr, numpy, pandas, scipy, dask,
distributed, xarray, zarr, scikit-learn, dask-ml and h5py, every input
checksum, the checksum of every table and every step's key and timing.

Catalog
-------
The run keeps ``OUT/stores/catalog.tsv`` (:mod:`memxr.store.catalog`) current with
every cube store it used, ingested or given as ``kind: store``; the top-level
spec key ``catalog`` names another catalog file instead (relative to the spec,
e.g. ``../stores/catalog.tsv`` for the repository's shared one).

Examples
--------
>>> out = run("demo_out/demo.yaml", out="runs/demo")  # doctest: +SKIP
memxr run demo (spec 3f2a...) -> runs/demo
dashboard: http://127.0.0.1:40123/status
[ 1/19] run  ingest:sub-01
[ 1/19] done ingest:sub-01 in 0.90 s
...
[19/19] done catalog in 0.80 s
finished in 74.0 s: runs/demo/report.html
"""

from .core import Step, versions
from .runner import RETRIES, plan, run
from .steps import ingest

__all__ = ["RETRIES", "Step", "ingest", "plan", "run", "versions"]
