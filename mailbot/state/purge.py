"""Retention: remove stored raw mail and personal fields recorded before a date.

Purged values are overwritten, not only unlinked (``secure_delete``), and the write-ahead log
that still holds the old pages is checkpointed and truncated, also while the daemon has the
database open.  The audit chain stays verifiable: events never hold personal data (identity
numbers are masked, nominees keep a hash of the number), so purging touches no event; the
purge itself is recorded as an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailbot.state.store import State


@dataclass(frozen=True)
class PurgeReport:
    messages: int
    files_removed: int
    rows_cleared: int
    nominees_cleared: int


def purge_before(state: State, before_iso: str, *, actor: str, rules_version: str,
                 outbox_dir: Path | None = None) -> PurgeReport:
    """Purge everything recorded before ``before_iso`` (UTC ISO timestamp).  With
    ``outbox_dir`` (folder-mode replies) the purged replies' ``.eml`` files go too."""
    db = state.db
    reply_files = [f"{r['id']:06d}-{r['kind']}.eml" for r in state.query(
        "SELECT id, kind FROM outbox WHERE created_at < ? AND status IN ('sent','failed','unknown')", [before_iso])]
    msgs = [r["id"] for r in state.query("SELECT id FROM messages WHERE recorded_at < ?", [before_iso])]
    paths: list[str] = []
    for r in state.query("SELECT raw_path FROM messages WHERE recorded_at < ? AND raw_path IS NOT NULL", [before_iso]):
        paths.append(r["raw_path"])
    for r in state.query("SELECT a.path FROM attachments a JOIN messages m ON m.id = a.message "
                      "WHERE m.recorded_at < ? AND a.path IS NOT NULL", [before_iso]):
        paths.append(r["path"])
    db.execute("PRAGMA secure_delete = ON")  # overwrite the old values, don't just unlink them
    with state.transaction():
        db.execute("UPDATE messages SET raw_path = NULL WHERE recorded_at < ?", [before_iso])
        db.execute("UPDATE attachments SET path = NULL WHERE message IN "
                   "(SELECT id FROM messages WHERE recorded_at < ?)", [before_iso])
        rows = db.execute(
            "UPDATE form_rows SET name = NULL, gender = NULL, position = NULL, email = NULL, "
            "id_number = NULL, phone = NULL WHERE form IN (SELECT f.id FROM forms f JOIN messages m "
            "ON m.id = f.message WHERE m.recorded_at < ?) AND id_number IS NOT NULL", [before_iso]).rowcount
        db.execute("UPDATE forms SET contact = NULL, contact_phone = NULL WHERE message IN "
                   "(SELECT id FROM messages WHERE recorded_at < ?)", [before_iso])
        nominees = db.execute(
            "UPDATE nominees SET id_number = NULL, name = NULL WHERE message IN "
            "(SELECT id FROM messages WHERE recorded_at < ?) AND id_number IS NOT NULL", [before_iso]).rowcount
        db.execute("UPDATE messages SET sender = '', sender_name = '', subject = '' WHERE recorded_at < ?",
                   [before_iso])
        # file names are chosen by senders and may name people
        db.execute("UPDATE attachments SET filename = '' WHERE message IN "
                   "(SELECT id FROM messages WHERE recorded_at < ?)", [before_iso])
        db.execute("UPDATE forms SET filename = '' WHERE message IN "
                   "(SELECT id FROM messages WHERE recorded_at < ?)", [before_iso])
        db.execute("UPDATE nominees SET sender = '' WHERE message IN "
                   "(SELECT id FROM messages WHERE recorded_at < ?)", [before_iso])
        db.execute("UPDATE staff_items SET sender = '' WHERE message IN "
                   "(SELECT id FROM messages WHERE recorded_at < ?)", [before_iso])
        db.execute("UPDATE school_contacts SET address = '' WHERE message IN "
                   "(SELECT id FROM messages WHERE recorded_at < ?)", [before_iso])
        # replies may carry the sender's own workbook (full identity numbers): keep only metadata
        db.execute("UPDATE outbox SET raw = X'', to_address = '' WHERE created_at < ? AND status IN "
                   "('sent','failed','unknown')", [before_iso])
        state.add_event("purge", {"before": before_iso, "messages": len(msgs), "files": len(paths)},
                        actor=actor, rules_version=rules_version)
    # the WAL still holds the pages as they were before the purge: copy back and empty it
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    still_used = {r["raw_path"] for r in state.query("SELECT raw_path FROM messages WHERE raw_path IS NOT NULL")}
    still_used |= {r["path"] for r in state.query("SELECT path FROM attachments WHERE path IS NOT NULL")}
    removed = 0
    for rel in set(paths) - still_used:  # content-addressed: a later message may share the file
        target = state.dir / Path(rel)
        try:
            target.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    if outbox_dir is not None:
        for name in reply_files:
            try:
                (outbox_dir / name).unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return PurgeReport(len(msgs), removed, rows, nominees)
