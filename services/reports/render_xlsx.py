"""The quarterly report as an XLSX workbook (openpyxl): one sheet per table of `quarterly.tables`, the column
names in row 1 exactly as published (docs/reports.md), raw values below (ratios as 0-1 fractions, dates as ISO
text, booleans as TRUE/FALSE), so ministries can import or re-key them. Pure: bytes in memory. Written in
openpyxl's write-only mode: thousands of schedule changes stream out without a cell object per value kept.
"""

from __future__ import annotations

import io
import re
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from services.reports import quarterly

# Text a spreadsheet would run as a formula (formula injection): agencies write the titles and reasons, so such
# text is written as a text cell with Excel's quote prefix, shown as typed and never evaluated.
_FORMULA = re.compile(r"^[=+\-@\t\r]")
# Control characters XML 1.0 cannot hold: openpyxl refuses them, so one hostile title must not cost the report.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_BOLD = Font(bold=True)


def _cell(sheet: Any, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    value = _ILLEGAL.sub("", value)
    if not _FORMULA.match(value):
        return value
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    cell.quotePrefix = True
    return cell


def render_xlsx(report: quarterly.QuarterlyReport) -> bytes:
    book = Workbook(write_only=True)
    for name, table in quarterly.tables(report).items():
        sheet = book.create_sheet(name)
        widths = [len(c) for c in table.columns]
        for row in table.rows[:200]:  # widths from the first rows: enough to read, no second pass
            widths = [max(w, min(60, len(str(v)) if v is not None else 0)) for w, v in zip(widths, row, strict=True)]
        for i, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(i)].width = min(60, max(10, width + 2))
        sheet.freeze_panes = "A2"
        header = []
        for column in table.columns:
            cell = WriteOnlyCell(sheet, value=column)
            cell.font = _BOLD
            header.append(cell)
        sheet.append(header)
        for row in table.rows:
            sheet.append([_cell(sheet, v) for v in row])
    book.properties.title = f"Quarterly report {report.quarter.label('en')}"
    book.properties.creator = "newnormal reports"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
