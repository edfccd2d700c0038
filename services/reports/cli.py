"""`newnormal report quarterly --fiscal-year 2569 --quarter 2 [--agency CODE] --out FILE [--format pdf|html|xlsx]`.

Reads the read APIs directly with the programme-office key (NEWNORMAL_REPORTS_API_KEY or ..._FILE, and the
services' URLs from NEWNORMAL_ROADMAP_URL etc., as the reports service does): no running reports service needed.
The format follows the file's extension unless --format says otherwise. Exit codes: 0 written; 1 a read API did
not answer (nothing written unless --allow-partial); 2 bad arguments or no key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

FORMATS = ("pdf", "html", "xlsx")


def _format(args: argparse.Namespace) -> str | None:
    if args.format:
        return args.format
    ext = Path(args.out).suffix.lower().lstrip(".")
    return {"htm": "html"}.get(ext, ext) if ext in (*FORMATS, "htm") else None


async def _make(args: argparse.Namespace, fmt: str, settings) -> tuple[bytes, tuple[str, ...]]:
    from services.reports.adapters import ReadApis
    from services.reports.handlers import ReportsService
    from services.reports.quarterly_service import QuarterlyReports

    source = ReadApis(settings)
    try:
        reports = QuarterlyReports(ReportsService(source, settings))
        report = await reports.build(args.fiscal_year, args.quarter, args.agency)
        body, _, _ = await reports.document(report, fmt)
        return body, report.unavailable
    finally:
        await source.close()


def cmd_quarterly(args: argparse.Namespace) -> int:
    from services.common.settings import SecretMissing
    from services.contracts.agencies import get_registry
    from services.reports.quarterly import ReportRequestError
    from services.reports.settings import ReportsSettings

    fmt = _format(args)
    if fmt is None:
        print(f"error: cannot tell the format from {args.out!r}: name it .pdf, .html or .xlsx, or pass --format",
              file=sys.stderr)
        return 2
    if args.agency is not None and args.agency not in get_registry():
        print(f"error: unknown agency {args.agency[:40]!r} (codes: GET /v1/agencies)", file=sys.stderr)
        return 2
    try:
        settings = ReportsSettings()
        settings.api_key()
        body, unavailable = asyncio.run(_make(args, fmt, settings))
    except SecretMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ReportRequestError as exc:
        print(f"error: {exc.detail} ({exc.reason})", file=sys.stderr)
        return 2
    if unavailable and not args.allow_partial:
        print(f"error: no answer from {', '.join(unavailable)}: nothing written (--allow-partial writes the report "
              f"with those sections marked not reported)", file=sys.stderr)
        return 1
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(body)
    tmp.replace(out)  # a reader never sees half a file
    note = f" (not reported: {', '.join(unavailable)})" if unavailable else ""
    print(f"{out}: {fmt}, {len(body):,} bytes{note}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="reports to hand over (quarterly report to Cabinet)")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    q = report_sub.add_parser("quarterly", help="the quarterly progress report as PDF, HTML or XLSX")
    q.add_argument("--fiscal-year", type=int, required=True, help="Buddhist-era fiscal year, e.g. 2569")
    q.add_argument("--quarter", type=int, required=True, choices=(1, 2, 3, 4), help="Q1 = October-December")
    q.add_argument("--agency", default=None, help="one agency's report (default: the whole programme)")
    q.add_argument("--out", required=True, help="file to write (.pdf, .html or .xlsx)")
    q.add_argument("--format", choices=FORMATS, default=None, help="overrides the file's extension")
    q.add_argument("--allow-partial", action="store_true", help="write even if a read API did not answer")
    q.set_defaults(func=cmd_quarterly)
