"""The quarterly report as an A4 PDF: the HTML document through WeasyPrint (Pango/HarfBuzz shape Thai, so tone
marks sit above their consonants; ReportLab does not shape Thai). Fonts come from Debian's fonts-thai-tlwg and
are embedded as subsets. Pure apart from the font lookup: bytes in memory, nothing written to disk.
"""

from __future__ import annotations

from services.reports import quarterly
from services.reports.render_html import render_html


def render_pdf(report: quarterly.QuarterlyReport) -> bytes:
    # Imported here: WeasyPrint loads Pango through cffi, which only the processes that make PDFs need.
    from weasyprint import HTML

    html = render_html(report, for_print=True)
    return HTML(string=html, base_url=None).write_pdf()
