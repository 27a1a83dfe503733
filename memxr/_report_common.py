"""Column access shared by the report modules, and the report's significance level.

Only empty cells and ``nan`` count as missing in the run's tables, so the numeric
and text views of a column are taken here, tolerant of absent columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ALPHA = 0.05
"""FDR level at which the report calls a result significant."""


def _num(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce")


def _text(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series("", index=df.index, dtype=object)
    return df[column].fillna("").astype(str)
