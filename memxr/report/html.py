"""HTML building blocks of a report: escaped text, compact tables, images, style.

Every piece of text that comes from a table or from the provenance goes through
:func:`esc`; the page carries its own CSS and loads no external resource.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .summary import input_records, inputs_of, steps_table, versions_of
from .tables import ALPHA

_MAX_ROWS = 200

_P_COLUMNS = re.compile(r"^(p|p_fdr|chance_p|p_.*|.*_p)$")
_INT_COLUMNS = {
    "size",
    "n",
    "n_channels",
    "n_stimuli",
    "n_folds",
    "n_items",
    "n_dropped",
    "n_permutations",
}


def _fmt(value: object, column: str = "") -> str:
    """Compact text of a table cell: 3 decimals, p-values in scientific notation when tiny.

    Examples
    --------
    >>> [_fmt(v, c) for v, c in [(0.31234, "r"), (0.00002, "p_fdr"), (120.0, "n"),
    ...                          (float("nan"), "r"), (125.0, "time"), ("IT", "roi")]]
    ['0.312', '2.0e-05', '120', '–', '125', 'IT']
    """
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        if column in _INT_COLUMNS or (column.endswith("time") and v.is_integer()):
            return f"{v:.0f}" if v.is_integer() else f"{v:g}"
        if _P_COLUMNS.match(column) and 0 < v < 0.001:
            return f"{v:.1e}"
        if abs(v) >= 1000:
            return f"{v:.0f}"
        return f"{v:.3f}"
    return str(value)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def table_html(
    df: pd.DataFrame, columns: Sequence[str] | None = None, max_rows: int = _MAX_ROWS
) -> str:
    """A compact, escaped HTML table (significant rows highlighted when ``p_fdr`` is there)."""
    if df is None or df.empty:
        return '<p class="note">The table is empty.</p>'
    cols = [c for c in (columns or df.columns) if c in df.columns]
    shown = df.iloc[:max_rows]
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    p_fdr = pd.to_numeric(shown["p_fdr"], errors="coerce") if "p_fdr" in shown else None
    for i, (_, row) in enumerate(shown.iterrows()):
        sig = p_fdr is not None and bool(p_fdr.iloc[i] < ALPHA)
        cells = []
        for c in cols:
            v = row[c]
            numeric = isinstance(v, int | float | np.integer | np.floating)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{esc(_fmt(v, c))}</td>")
        row_class = ' class="sig"' if sig else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    note = ""
    if len(df) > max_rows:
        note = (
            f'<p class="note">First {max_rows} of {len(df)} rows; the full table is in the CSV.</p>'
        )
    return (
        f'<div class="tbl"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


STYLE = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1100px;padding:1.5em 2em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;border-bottom:1px solid #ccc;
padding-bottom:.2em;margin-top:1.8em}h3{font-size:1.05em}
.meta{color:#666;font-size:.9em;margin-top:0}
.note{color:#666;font-size:.85em}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}
.tbl{max-height:420px;overflow:auto;border:1px solid #ddd;margin:.5em 0}
table{border-collapse:collapse;font-size:.8em;width:100%}
th,td{padding:2px 7px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
th{background:#f4f4f4;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.sig td{background:#fff6d6}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:.2em 1.2em}
dl.summary dt{font-weight:600}dl.summary dd{margin:0}
ul.findings li{margin-bottom:.35em}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em;max-height:400px}
code{font-size:.9em}
"""


def provenance_html(prov: Mapping) -> str:
    if not prov:
        return '<p class="note">No provenance.json in this run folder.</p>'
    parts = []
    records = inputs_of(prov)
    if records:
        parts.append("<h3>Inputs</h3>" + table_html(pd.DataFrame(records), max_rows=10_000))
    outputs = input_records(prov.get("tables", {}))
    if outputs:
        parts.append("<h3>Output tables</h3>" + table_html(pd.DataFrame(outputs)))
    steps = steps_table(prov)
    if not steps.empty:
        parts.append("<h3>Steps</h3>" + table_html(steps))
    versions = versions_of(prov)
    if versions:
        parts.append(
            "<h3>Versions</h3>"
            + table_html(
                pd.DataFrame({"package": list(versions), "version": list(versions.values())})
            )
        )
    text = json.dumps(prov, indent=2, sort_keys=True, default=str)
    parts.append(f"<details><summary>provenance.json</summary><pre>{esc(text)}</pre></details>")
    return "\n".join(parts)
