"""Render audit records as CSV (UTF-8 with BOM, for Excel) or JSON Lines, a page at a time.

Both the HTTP export and `assist audit export` use these functions, so a file downloaded from the
API and one written by the CLI are byte-for-byte the same format.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .audit_query import AuditRecord

__all__ = ["BOM", "CSV_COLUMNS", "FORMATS", "content_type", "csv_header", "csv_rows", "jsonl_rows"]

Format = Literal["csv", "jsonl"]
FORMATS: tuple[str, ...] = ("csv", "jsonl")
BOM = "\ufeff"  # Excel reads a CSV as UTF-8 only when it starts with a byte-order mark
CSV_COLUMNS = (
    "id", "tenant", "seq", "at", "kind", "actor", "conversation_id", "action", "rule_ids", "categories",
    "overridden", "original_text", "final_text", "reason", "details", "hash",
)
# Cells Excel would run as a formula (CSV injection); a leading apostrophe makes them plain text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def content_type(fmt: str) -> str:
    return "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8"


def iso(at: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(at, tz).isoformat(timespec="milliseconds")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_header() -> str:
    """The BOM and the header line."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(CSV_COLUMNS)
    return BOM + buf.getvalue()


def csv_rows(records: Iterable[AuditRecord], tz: ZoneInfo) -> str:
    """CSV lines (CRLF, as Excel writes them) for `records`, times in the tenant's zone."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    for r in records:
        w.writerow([
            r.id, r.tenant, r.seq, iso(r.at, tz), r.kind, _cell(r.actor), _cell(r.conversation_id), r.action,
            ";".join(r.rule_ids), ";".join(r.categories), "true" if r.overridden else "false",
            _cell(r.original_text), _cell(r.final_text), _cell(r.reason),
            json.dumps(r.details, ensure_ascii=False, sort_keys=True), r.hash,
        ])
    return buf.getvalue()


def jsonl_rows(records: Iterable[AuditRecord], tz: ZoneInfo) -> str:
    """One JSON object per line for `records`, with `at` as epoch seconds and `at_iso` local time."""
    return "".join(
        json.dumps({**r.to_dict(), "at_iso": iso(r.at, tz)}, ensure_ascii=False) + "\n" for r in records
    )


def render(fmt: str, records: Iterable[AuditRecord], tz: ZoneInfo) -> str:
    return csv_rows(records, tz) if fmt == "csv" else jsonl_rows(records, tz)
