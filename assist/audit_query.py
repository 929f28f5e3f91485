"""Values for reading the audit log: a query (filters + cursor), a record, a page of records.

The cursor is opaque to clients: base64url of the (at_us, id) keyset of the last record returned.
Pages are "newest first" and keyed on (at, id), so records appended while an auditor pages through
never shift, duplicate or skip the rows of the pages that follow.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .audit_mask import mask_text, mask_value

__all__ = ["AuditPage", "AuditQuery", "AuditRecord", "QueryError", "decode_cursor", "encode_cursor", "parse_time"]

MAX_LIMIT = 1000


class QueryError(ValueError):
    """A query parameter that cannot be used; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def encode_cursor(at_us: int, rid: int) -> str:
    raw = json.dumps([at_us, rid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_us, rid = json.loads(raw)
        if any(not isinstance(v, int) or isinstance(v, bool) for v in (at_us, rid)):
            raise ValueError
        return at_us, rid
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise QueryError("cursor", "not a cursor this service issued") from None


def parse_time(value: str | float | int, *, tz: str = "UTC", field: str = "time") -> float:
    """Epoch seconds from a number or an ISO-8601 date/time (naive values are in `tz`)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(field, f"'{text}' is neither epoch seconds nor an ISO-8601 date/time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return dt.timestamp()


_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class AuditQuery:
    """Filters of an audit listing; None means "any". `text` is a substring of either text."""

    tenant: str | None = None
    since: float | None = None
    until: float | None = None
    actor: str | None = None
    conversation_id: str | None = None
    kind: str | None = None
    action: str | None = None
    category: str | None = None
    rule_id: str | None = None
    overridden: bool | None = None
    text: str | None = None
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError("limit", f"must be between 1 and {MAX_LIMIT}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise QueryError("since", "must not be after 'until'")
        if self.cursor is not None:
            decode_cursor(self.cursor)
        if self.text is not None and len(self.text) > 200:
            raise QueryError("text", "at most 200 characters")

    def replace(self, **changes: Any) -> AuditQuery:
        return dataclasses.replace(self, **changes)

    def filters(self) -> dict[str, Any]:
        """The filters that are set, as given (for logs and audit details)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("limit", "cursor") and getattr(self, f.name) is not None}

    def where(self) -> dict[str, Any]:
        """The filters for the backend; times in integer microseconds, as stored."""
        w = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("limit", "cursor")}
        for name in ("since", "until"):
            if w[name] is not None:
                w[name] = round(w[name] * 1_000_000)
        return w

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, tz: str = "UTC") -> AuditQuery:
        """Build a query from string parameters (HTTP query string, CLI options)."""
        names = {f.name for f in dataclasses.fields(cls)}
        params = dict(params)
        if params.get("agent"):
            # The service records agents as Principal.actor, "agent:<id>"; auditors know the id.
            if params.get("actor"):
                raise QueryError("agent", "give either 'agent' or 'actor', not both")
            params["actor"] = f"agent:{params['agent']}"
        params.pop("agent", None)
        unknown = sorted(set(params) - names - {"format", "keep_original"})
        if unknown:
            raise QueryError(unknown[0], f"unknown filter; use one of {', '.join(sorted(names))}")
        kw: dict[str, Any] = {}
        for name, raw in params.items():
            if name not in names or raw is None or raw == "":
                continue
            if name in ("since", "until"):
                kw[name] = parse_time(raw, tz=tz, field=name)
            elif name == "limit":
                try:
                    kw[name] = int(raw)
                except ValueError:
                    raise QueryError("limit", f"'{raw}' is not an integer") from None
            elif name == "overridden":
                if str(raw).lower() not in _BOOL:
                    raise QueryError("overridden", "must be true or false")
                kw[name] = _BOOL[str(raw).lower()]
            else:
                kw[name] = str(raw)
        return cls(**kw)


@dataclass(frozen=True)
class AuditRecord:
    """One stored record as an auditor sees it (texts masked unless originals were asked for)."""

    id: int
    tenant: str
    seq: int
    at: float
    kind: str
    actor: str | None
    conversation_id: str | None
    action: str | None
    rule_ids: tuple[str, ...]
    categories: tuple[str, ...]
    overridden: bool
    original_text: str | None
    final_text: str | None
    reason: str | None
    details: dict[str, Any]
    hash: str

    @classmethod
    def from_row(cls, row: tuple[Any, ...], *, keep_original: bool = False) -> AuditRecord:
        details = json.loads(row[14])
        texts = (row[11], row[12], row[13])
        if not keep_original:
            texts = tuple(mask_text(t) for t in texts)
            details = mask_value(details)
        return cls(
            id=row[0], tenant=row[1], seq=row[2], at=row[3] / 1_000_000, kind=row[4], actor=row[5],
            conversation_id=row[6], action=row[7], rule_ids=tuple(json.loads(row[8])),
            categories=tuple(json.loads(row[9])), overridden=bool(row[10]), original_text=texts[0],
            final_text=texts[1], reason=texts[2], details=details, hash=row[17].hex(),
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rule_ids"] = list(self.rule_ids)
        d["categories"] = list(self.categories)
        return d


@dataclass(frozen=True)
class AuditPage:
    """One page of a listing, and the cursor of the next page (None on the last one)."""

    records: list[AuditRecord]
    next_cursor: str | None
