"""Each school's contact of record: the address whose mail may replace the school's list.

The address that first registered a school's teachers becomes its contact of record; any other
address writing in the school's name can only add teachers (see ``SeatLedger``).  Staff may
move the role to another address (``set_contact_of_record`` with a staff actor).  Every change
is an event in the hash-chained log; call inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mailbot.state.store import State, utc_now


@dataclass(frozen=True)
class SchoolContact:
    """The contact of record of one school (``institution_key`` as in ``nominees``)."""

    institution_key: str
    institution: str
    address: str  # lower case
    message: int | None  # the mail that made it the contact (None when staff set it)
    set_by: str


def same_address(a: str, b: str) -> bool:
    """Whether two mail addresses are the same mailbox (compared without case)."""
    return a.strip().lower() == b.strip().lower()


def masked_address(address: str) -> str:
    """``w***@zjxx.edu.cn``: an address as the audit log keeps it (events are never purged)."""
    local, _, domain = address.strip().lower().partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def address_hash(address: str) -> str:
    """SHA-256 of an address (lower case): lets ``mailbot verify`` tell one address from another
    with the same mask, as ``id_hash`` does for identity numbers."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def contact_of_record(state: State, institution_key: str) -> SchoolContact | None:
    """The school's contact of record, or None before its first registration."""
    row = state.db.conn.execute(
        "SELECT institution_key, institution, address, message, set_by FROM school_contacts "
        "WHERE institution_key = ?", [institution_key]).fetchone()
    return SchoolContact(*row) if row else None


_UNKNOWN = SchoolContact("", "", "", None, "")


def set_contact_of_record(state: State, *, institution_key: str, institution: str, address: str,
                          message: int | None, actor: str, rules_version: str, why: str,
                          before: SchoolContact | None = _UNKNOWN) -> SchoolContact:
    """Make ``address`` the school's contact of record (first registration, or a staff decision).
    ``before``: the contact of record as the caller read it in this transaction, if it did."""
    if before is _UNKNOWN:
        before = contact_of_record(state, institution_key)
    address = address.strip().lower()
    state.db.execute(
        """INSERT INTO school_contacts (institution_key, institution, address, message, set_by, updated_at)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(institution_key) DO UPDATE SET institution = excluded.institution,
             address = excluded.address, message = excluded.message, set_by = excluded.set_by,
             updated_at = excluded.updated_at""",
        [institution_key, institution, address, message, actor, utc_now()])
    state.add_event("contact_of_record_set", {
        "institution_key": institution_key, "institution": institution,
        "from": masked_address(before.address) if before else None,
        "to": masked_address(address), "to_hash": address_hash(address), "why": why},
        actor=actor, rules_version=rules_version, message=message)
    return SchoolContact(institution_key, institution, address, message, actor)
