"""Email syntax validation via email-validator (never any DNS lookup)."""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email


@lru_cache(maxsize=4096)  # each row's address is checked by two checks
def check_email(address: str) -> str | None:
    """The normalised address when valid, else None.  ``address`` should already be
    normalised with ``mailbot.normalize.normalize_email``."""
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return None
    return result.normalized
