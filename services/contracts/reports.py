"""`data` of the reports service's events (published by our services only).

`reports.quarterly.generated`: a quarterly report to Cabinet was made and archived. The documents travel as
links, not in the record (CloudEvents intermediaries need carry only 64 KiB; a PDF is larger): a consumer
fetches `pdf_url` with a programme-office key and checks it against `pdf_sha256`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from services.contracts.common_types import ANY_SPACE, AgencyCode, EventData
from services.contracts.dates import PlausibleDatetime
from services.contracts.problems import worded

SectionStatus = Literal["green", "amber", "red", "not_reported"]
HttpUrl = Annotated[str, Field(min_length=8, max_length=2000, pattern=worded(
    f"^https?://[^{ANY_SPACE}]+$", "must be an http:// or https:// URL without spaces"))]


class QuarterlyReportGenerated(EventData):
    document_id: str = Field(min_length=1, max_length=64, pattern=worded(
        r"^[0-9]{4}-q[1-4]-[a-z0-9_-]+$", "must read <year>-q<1-4>-<name>, e.g. 2570-q1-cabinet (a-z, 0-9, _ and -)"))
    fiscal_year: int = Field(ge=2560, le=2700, description="Buddhist-era fiscal year (2569 = Oct 2025 - Sep 2026)")
    quarter: int = Field(ge=1, le=4, description="Q1 = October-December")
    report_agency: AgencyCode | None = Field(default=None, description="the agency reported on; absent: the programme")
    data_as_of: PlausibleDatetime
    pdf_url: HttpUrl
    html_url: HttpUrl
    xlsx_url: HttpUrl
    pdf_sha256: str = Field(pattern=worded(r"^[0-9a-f]{64}$", "must be a SHA-256: 64 lower-case hexadecimal digits"))
    pdf_bytes: int = Field(ge=1)
    section_status: dict[Literal["roadmap", "regulation", "readiness", "access", "awareness"], SectionStatus]
    schedule_changes: int = Field(ge=0)
    flagged_slips: int = Field(ge=0, description="slips of more than 30 days without a stated reason")
    unavailable: list[Literal["roadmap", "training", "feedback"]] = Field(default_factory=list, max_length=3)
