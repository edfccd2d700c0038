"""The quarterly report as an XLSX workbook (openpyxl): one sheet per table of `quarterly.tables`, the column
names in row 1 exactly as published (docs/reports.md), raw values below (ratios as 0-1 fractions, dates as ISO
text, booleans as TRUE/FALSE), so ministries can import or re-key them. Pure: bytes in memory.
"""

from __future__ import annotations

import io
import re

from openpyxl import Workbook
from openpyxl.styles import Font

from services.reports import quarterly

# Text a spreadsheet would run as a formula when a user edits the cell (CSV/formula injection): the agencies
# write the titles and reasons, so such text is stored with a leading apostrophe-equivalent (quotePrefix).
_FORMULA = re.compile(r"^[=+\-@\t\r]")
# Control characters XML 1.0 cannot hold: openpyxl refuses them, so one hostile title must not cost the report.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _safe(value: object) -> object:
    if isinstance(value, str):
        return _ILLEGAL.sub("", value)
    return value


def render_xlsx(report: quarterly.QuarterlyReport) -> bytes:
    book = Workbook()
    book.remove(book.active)
    bold = Font(bold=True)
    for name, table in quarterly.tables(report).items():
        sheet = book.create_sheet(name)
        sheet.append(list(table.columns))
        for c in sheet[1]:
            c.font = bold
        for row in table.rows:
            sheet.append([_safe(v) for v in row])
            for c in sheet[sheet.max_row]:
                if isinstance(c.value, str) and _FORMULA.match(c.value):
                    c.data_type = "s"
                    c.quotePrefix = True
        sheet.freeze_panes = "A2"
        for col in sheet.columns:
            width = max((len(str(c.value)) for c in col if c.value is not None), default=8)
            sheet.column_dimensions[col[0].column_letter].width = min(60, max(10, width + 2))
    book.properties.title = f"Quarterly report {report.quarter.label('en')}"
    book.properties.creator = "newnormal reports"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
