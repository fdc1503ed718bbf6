"""Organizational domains (RFC 7489 §3.2) from the Public Suffix List bundled with ``publicsuffixlist``.

The list ships inside the package; it is read once from disk and never fetched at run time
(a sender must not be able to make mailbot go online, and a run must not depend on it).
``mail.x.edu.cn`` and ``x.edu.cn`` share the organizational domain ``x.edu.cn``;
``a.github.io`` and ``b.github.io`` do not (``github.io`` is a public suffix).
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the bundled copy: no source argument, no network


def _clean(domain: str) -> str:
    return domain.strip().strip(".").lower()


def organizational_domain(domain: str) -> str:
    """The registrable domain under its public suffix (``mail.x.edu.cn`` -> ``x.edu.cn``), or
    ``""`` for a bare public suffix, an empty name or a single label."""
    name = _clean(domain)
    if not name or "." not in name:
        return ""
    return _psl().privatesuffix(name) or ""


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed DMARC alignment: both names have the same, non-empty organizational domain."""
    org = organizational_domain(domain)
    return bool(org) and org == organizational_domain(from_domain)


def has_known_suffix(name: str) -> bool:
    """Whether a dotted name ends in a suffix the list knows (``evil.com``: yes;
    ``报名表.xlsx``: no), so that a mail client would likely turn it into a link."""
    cleaned = _clean(name)
    if "." not in cleaned:
        return False
    return _psl().publicsuffix(cleaned, accept_unknown=False) is not None
