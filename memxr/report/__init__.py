"""One self-contained HTML report of a pipeline run.

:func:`write_report` reads whatever tidy tables a run wrote (``RUN/tables/*.csv``)
and its ``RUN/provenance.json`` (when present), draws the figures with
:mod:`memxr.report.plots` into ``RUN/figures/*.png`` and writes ``RUN/report.html``: a
single file with the figures embedded as base64 PNG data URIs, the tables as
compact HTML, inline CSS and no external resource, so it can be mailed as is.

The report holds a run summary (datasets, subjects, spec name and hash, memxr
version, date), key findings written from the tables, one section per analysis
(figure and table), methods notes and the provenance (inputs with checksums).
Every piece of text that comes from a table or from the provenance is escaped.

Examples
--------
>>> import pandas as pd, pathlib, tempfile
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> (run / "tables").mkdir()
>>> pd.DataFrame({"dataset": "things-fmri", "subject": "sub-01", "roi": ["V1", "IT"],
...               "method": "pearson", "how": "mean", "r": [0.01, 0.32], "p": [0.8, 0.001],
...               "ci_low": [-0.1, 0.2], "ci_high": [0.1, 0.4], "p_fdr": [0.8, 0.002],
...               "n": 200}).to_csv(run / "tables" / "correlations.csv", index=False)
>>> path = write_report(run, dpi=40)
>>> html = path.read_text()
>>> path.name, html.count("data:image/png;base64,")
('report.html', 1)
>>> "FDR-significant memorability correlations in IT" in html
True

Modules: :mod:`.tables` (reading a run's tables), :mod:`.plots` (matplotlib figures
from tidy tables; also importable as ``memxr.plots``), :mod:`.findings` (key findings as
sentences), :mod:`.summary` (run summary and provenance records), :mod:`.html` (escaped
HTML building blocks), :mod:`.sections` (one section per analysis) and :mod:`.write`.

May import: numpy, pandas, matplotlib, :mod:`memxr.errors`, :mod:`memxr.provenance` and
:mod:`memxr.store` (the atomic writer); never readers, analyses or the pipeline: a report
is drawn from tables alone.
"""

from . import plots
from .findings import key_findings
from .tables import ALPHA, TABLES, load_provenance, load_tables
from .write import figures, write_report

__all__ = [
    "ALPHA",
    "TABLES",
    "figures",
    "plots",
    "key_findings",
    "load_provenance",
    "load_tables",
    "write_report",
]
