"""Mask customer data in audit texts for auditors, and scrub anything that looks like a credential.

Auditors see phone numbers, ID numbers, bank cards and street addresses masked unless the tenant's
policy keeps originals (spec 1: 泄露客户信息 is itself a violation, so the log must not become the
leak). Masking happens when records are read back, so the hash chain covers what was really sent.
Credentials are different: they are scrubbed *before* a record is written, because a token in the
log would be a live secret that no read-side filter can take back.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["mask_text", "mask_value", "scrub_secrets"]

# Order matters: an 18-digit ID number is also 16-19 digits, so IDs are masked first.
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,15}\d{4}(?!\d)")
# An address is at least two administrative/street parts in a row ("杭州市西湖区", "建国路88号"),
# or a road/street with a house number: one suffix alone ("市场", "号码") is ordinary language.
_PART = r"[\u4e00-\u9fa5A-Za-z0-9]{1,10}?(?:省|自治区|市|区|县|镇|乡|村|路|街|大道|道|巷|弄|胡同|号楼|号院|号|栋|幢|单元|楼|层|室)"
_ADDRESS = re.compile(rf"(?:{_PART}){{2,}}|[\u4e00-\u9fa5]{{1,10}}?(?:路|街|大道|巷|弄)\d+号")
_KEEP = set("省自治区市县镇乡村路街大道巷弄胡同号楼院栋幢单元层室")
_LATIN = re.compile(r"[A-Za-z_]")
_SERVICE_TOKEN = re.compile(r"ast_[0-9a-f]{8}_[A-Za-z0-9_-]{16,}")  # assist/auth.py's token shape
_BEARER = re.compile(r"(?i)\b(bearer|token|api[_-]?key|api_access_token|secret|password)([\"'\s:=]+)[A-Za-z0-9._~+/=-]{8,}")
# Long opaque strings mixing letters and digits are what generated tokens look like
# (token_urlsafe(32) is 43 characters); pure hex is left alone, since UUIDs and hashes are ids.
# The shortest run of token characters _SERVICE_TOKEN or _OPAQUE can match (4 + 8 + 1 + 16), and
# lower-case words one of which every _BEARER match holds.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_-]{29,}+")
_KEYWORDS = ("bearer", "token", "api", "secret", "password")
_OPAQUE = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[G-Zg-z_])[A-Za-z0-9_-]{40,}(?![A-Za-z0-9_-])"
)


def _mask_card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "*" * (len(digits) - 4) + digits[-4:]


# Words that lead into an address; the lazy match swallows them, but they are not the address.
_LEAD_IN = ("收货地址是", "收货地址", "地址是", "寄到", "送到", "发到", "住在", "位于", "我在", "在", "到", "是")


def _mask_address(m: re.Match[str]) -> str:
    text = m.group(0)
    lead = next((w for w in _LEAD_IN if text.startswith(w)), "")
    # Keep the structure words so an auditor still sees "an address was given here".
    return lead + "".join(ch if ch in _KEEP else "*" for ch in text[len(lead):])


def mask_text(text: str | None) -> str | None:
    """Return `text` with phone, ID-card, bank-card numbers and addresses masked."""
    if not text:
        return text
    text = _ID_CARD.sub(lambda m: m.group(1) + "*" * 8 + m.group(2), text)
    text = _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    text = _CARD.sub(_mask_card, text)
    text = _ADDRESS.sub(_mask_address, text)
    return text


def mask_value(value: Any) -> Any:
    """Mask every string inside a JSON-like value (the `details` of a record)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    return value


def scrub_secrets(text: str | None) -> str | None:
    """Replace bearer tokens, keys and long opaque token-like strings with a fixed marker."""
    # Every pattern below is at least 14 characters long and needs a Latin letter or '_'.
    if not text or len(text) < 14 or not _LATIN.search(text):
        return text
    # And each needs a long token-like run (the service token, opaque strings) or a keyword
    # (bearer, token, api key, secret, password): two cheap scans spare most texts all three.
    if _TOKEN_RUN.search(text) is None:
        low = text.lower()
        if not any(k in low for k in _KEYWORDS):
            return text
    text = _SERVICE_TOKEN.sub("[redacted]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    return _OPAQUE.sub("[redacted]", text)
