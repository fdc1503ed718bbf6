"""Masking of personal data (identity numbers, mobile phones) for logs, digests and replies."""

from __future__ import annotations

import re

_ID_SHORT_RE = re.compile(r"(?<![0-9A-Za-z])(\d{4})\d{10}(\d{3}[0-9Xx])(?![0-9A-Za-z])")
_MOBILE_RE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_id(value: str | None) -> str:
    """Mask an identity number keeping the first 4 and last 4 characters: ``3301**********123X``."""
    if not value:
        return ""
    v = str(value).strip()
    if len(v) <= 8:
        return "*" * len(v)
    return v[:4] + "*" * (len(v) - 8) + v[-4:]


def mask_phone(value: str | None) -> str:
    """Mask a phone keeping the first 3 and last 4 digits: ``138****5678``."""
    if not value:
        return ""
    v = str(value).strip()
    if len(v) <= 7:
        return "*" * len(v)
    return v[:3] + "*" * (len(v) - 7) + v[-4:]


def mask_text(text: str) -> str:
    """Mask every 18-character identity number and 11-digit mainland mobile inside free text."""
    text = _ID_SHORT_RE.sub(lambda m: mask_id(m.group(0)), text)
    return _MOBILE_RE.sub(lambda m: mask_phone(m.group(0)), text)
