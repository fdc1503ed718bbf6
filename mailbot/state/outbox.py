"""The reply outbox: queued replies leave through a transport, each marked sending then sent.

A row is marked ``sending`` (committed) before the transport is called and ``sent`` after, so
a crash in between leaves it ``sending``; :func:`recover_interrupted` turns such rows into
``unknown`` for staff to check instead of re-sending blindly.  Temporary failures are retried
with exponential backoff; permanent ones are marked ``failed``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from mailbot.errors import SendError
from mailbot.state.private_files import write_private_file
from mailbot.mail.smtp import Transport
from mailbot.state.store import State, utc_now


class FolderTransport:
    """Writes each reply as an .eml file into a folder (the zero-setup default)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def send(self, envelope_from: str, to: str, raw: bytes, *, name: str) -> None:
        target = self.folder / f"{name}.eml"
        try:
            write_private_file(target, raw)
        except OSError as exc:
            raise SendError(f"cannot write {target}: {exc.strerror}") from exc

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class SendReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    unknown: int = 0


def recover_interrupted(state: State, *, actor: str = "daemon", rules_version: str = "") -> list[int]:
    """Rows left ``sending`` by a crash become ``unknown`` (never re-sent blindly)."""
    ids = [r["id"] for r in state.query("SELECT id FROM outbox WHERE status = 'sending'")]
    if ids:
        with state.transaction():
            for i in ids:
                state.db.execute("UPDATE outbox SET status = 'unknown', last_error = ? WHERE id = ?",
                                 ["interrupted while sending: delivery unknown, check before re-sending", i])
                state.add_event("reply_unknown", {"outbox": i, "why": "found sending at start"},
                                actor=actor, rules_version=rules_version)
    return ids


def _pause_after_sending(log: Any, outbox_id: int) -> None:
    """Test hook, inert unless ``MAILBOT_TEST_PAUSE_AFTER_SENDING`` (seconds) is set: logs
    ``reply_sending`` and sleeps, so the crash soak can SIGKILL between ``sending`` and ``sent``."""
    pause = os.environ.get("MAILBOT_TEST_PAUSE_AFTER_SENDING")
    if pause:
        if log is not None:
            log.info("reply_sending", outbox=outbox_id)
        time.sleep(float(pause))


def send_pending(state: State, transport: Transport, *, envelope_from: str, max_attempts: int,
                 retry_base_seconds: float, rules_version: str = "", limit: int | None = None,
                 after_send: Callable[[dict[str, Any]], None] | None = None,
                 log: Any = None, actor: str = "daemon") -> SendReport:
    """Send every queued reply that is due; returns counts by result."""
    now = utc_now()
    rows = list(state.query(
        "SELECT id, message, kind, to_address, raw, attempts FROM outbox "
        "WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY id" + (f" LIMIT {int(limit)}" if limit else ""),
        [now]))
    sent = retry = failed = unknown = 0
    for row in rows:
        with state.transaction():
            state.db.execute("UPDATE outbox SET status = 'sending', attempts = attempts + 1 WHERE id = ?",
                             [row["id"]])
        _pause_after_sending(log, row["id"])
        try:
            transport.send(envelope_from, row["to_address"], row["raw"],
                           name=f"{row['id']:06d}-{row['kind']}")
        except SendError as exc:
            attempts = row["attempts"] + 1
            if exc.unknown:
                status, unknown = "unknown", unknown + 1
            elif exc.permanent or attempts >= max_attempts:
                status, failed = "failed", failed + 1
            else:
                status, retry = "queued", retry + 1
            delay = retry_base_seconds * (2 ** (attempts - 1))
            nxt = (datetime.now(timezone.utc) + timedelta(seconds=delay)).isoformat(timespec="seconds")
            with state.transaction():
                state.db.execute(
                    "UPDATE outbox SET status = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
                    [status, str(exc), nxt, row["id"]])
                event = "reply_retry" if status == "queued" else f"reply_{status}"
                state.add_event(event, {"outbox": row["id"], "error": str(exc)},
                                actor=actor, rules_version=rules_version, message=row["message"])
            if log is not None:
                log.warning("reply_not_sent", outbox=row["id"], status=status, error=str(exc))
            continue
        with state.transaction():
            state.db.execute("UPDATE outbox SET status = 'sent', sent_at = ? WHERE id = ?",
                             [utc_now(), row["id"]])
            state.add_event("reply_sent", {"outbox": row["id"], "kind": row["kind"]},
                            actor=actor, rules_version=rules_version, message=row["message"])
        sent += 1
        if after_send is not None:
            after_send(row)
    return SendReport(sent, retry, failed, unknown)
