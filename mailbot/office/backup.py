"""``mailbot backup DEST``: a consistent copy of the state while the daemon runs.

The database is copied first, by SQLite's online backup API (one read snapshot: the daemon
keeps writing, the copy is one committed state). Then the raw mail and evidence files *that
copy refers to* are copied and checked against their SHA-256: they are content-addressed and
written before the transaction that names them commits, so every file the snapshot needs is
already complete on disk. Files stored after the snapshot are left for the next backup. The
result is a state directory of its own, which ``mailbot verify`` checks like the live one
(restore: copy it back as the state directory).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from mailbot.errors import StateError
from mailbot.state.private_files import write_private_file
from mailbot.state.store import State

DB_NAME = "mailbot.db"


@dataclass(frozen=True)
class BackupReport:
    dest: Path
    files: int
    bytes: int
    head: str
    events: int


def backup_state(db_path: Path, dest: Path) -> BackupReport:
    """Copy the database at ``db_path`` and its stored files into the new directory ``dest``."""
    if dest.exists() and any(dest.iterdir()):
        raise StateError(f"backup destination {dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(dest, 0o700)
    source = State.readonly(db_path)
    try:
        source.backup_into(dest / DB_NAME)
    finally:
        source.close()
    copy = State.readonly(dest / DB_NAME)
    try:
        wanted = sorted({(r["path"], r["sha256"]) for r in copy.query(
            "SELECT raw_path AS path, sha256 FROM messages WHERE raw_path IS NOT NULL "
            "UNION SELECT path, sha256 FROM attachments WHERE path IS NOT NULL")})
        head = copy.chain_head()
        events = next(copy.query("SELECT count(*) AS n FROM events"))["n"]
    finally:
        copy.close()
    total = 0
    for rel, sha in wanted:
        try:
            data = (db_path.parent / rel).read_bytes()
        except OSError as exc:
            raise StateError(f"stored file {rel} unreadable ({exc.strerror}); "
                             "was it purged during the backup? run the backup again") from exc
        if hashlib.sha256(data).hexdigest() != sha:
            raise StateError(f"stored file {rel} does not match its SHA-256: not copied; run mailbot verify")
        write_private_file(dest / rel, data)
        total += len(data)
    return BackupReport(dest, len(wanted), total, head, int(events))
