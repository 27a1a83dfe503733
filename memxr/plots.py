"""Figures of a pipeline run, drawn from its tidy result tables.

Every function takes a tidy :class:`pandas.DataFrame` in the layout of the run's
``tables/*.csv`` and returns a :class:`matplotlib.figure.Figure`. They are pure:
no file I/O, no global pyplot state (figures are built with the object-oriented
API, so nothing has to be closed and nothing is shown), and they never fail on
an empty table, missing optional columns, NaN values, one subject or many: a
table with nothing to draw gives a figure that says "no data".

Significance marks follow the run's convention on ``p_fdr``: ``*`` < 0.05,
``**`` < 0.01, ``***`` < 0.001.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"dataset": "things-fmri", "subject": "sub-01",
...                    "roi": ["V1", "IT", "V1", "IT"],
...                    "method": ["pearson", "pearson", "spearman", "spearman"],
...                    "r": [0.02, 0.30, 0.01, 0.28], "p_fdr": [0.6, 0.0004, 0.7, 0.002]})
>>> fig = roi_correlation_bars(df)
>>> len(fig.axes), len(fig.axes[0].patches)
(1, 4)
>>> sorted(t.get_text() for t in fig.axes[0].texts)
['**', '***']
"""

from __future__ import annotations

from ._plots_bridge import cross_species_effects, cross_species_matrix
from ._plots_common import SIG_LEVELS as SIG_LEVELS
from ._plots_common import no_data_figure, stars
from ._plots_models import model_comparison, prediction_scatter
from ._plots_stats import roi_correlation_bars, timecourses

__all__ = [
    "cross_species_effects",
    "cross_species_matrix",
    "model_comparison",
    "no_data_figure",
    "prediction_scatter",
    "roi_correlation_bars",
    "stars",
    "timecourses",
]
