"""The reply outbox: queued replies leave through a transport, each marked sending then sent.

A row is marked ``sending`` (committed) before the transport is called and ``sent`` after, so
a crash in between leaves it ``sending``; :func:`recover_interrupted` turns such rows into
``unknown`` for staff to check instead of re-sending blindly.  Temporary failures are retried
with exponential backoff; permanent ones are marked ``failed``.

Mail that incoming mail caused (replies, promotions, notices: rows with a ``message``) shares
one hourly budget (``reply.max_per_hour``): past it such mail stays ``queued`` (marked
:data:`HELD_BY_BUDGET`, never dropped) and leaves on a later send when the last hour's count
falls below the budget.  Mail of mailbot's own motion (the digest, staff alerts, rosters) never
waits and never counts.  Reaching the budget is
recorded once an hour as a ``reply_budget_reached`` event and shown in the digest.
"""

from __future__ import annotations

import json
import os
import time
import weakref
from collections import deque
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
    held: int = 0  # due but waiting for the hourly reply budget


HELD_BY_BUDGET = "waiting: hourly reply budget reached"
"""``last_error`` of a queued reply held back by the hourly budget."""


def _hour_before(now: datetime | None) -> str:
    return ((now or datetime.now(timezone.utc)) - timedelta(hours=1)).isoformat(timespec="seconds")


def sent_last_hour(state: State, *, now: datetime | None = None) -> int:
    """Mail caused by incoming mail sent in the hour before ``now``: what the budget counts.

    Read from the newest ``reply_sent`` events backwards, stopping at the first one older than
    an hour (the event log is in time order), so the cost follows the last hour's mail, never
    the whole campaign's."""
    return len(_sent_times(state, _hour_before(now)))


def held_by_budget(state: State) -> int:
    """Replies waiting in the outbox because the hourly budget was reached."""
    return next(state.query("SELECT count(*) AS n FROM outbox WHERE status = 'queued' AND last_error = ?",
                            [HELD_BY_BUDGET]))["n"]


def _event_within_the_hour(state: State, kind: str, now: datetime | None) -> bool:
    """Whether an event ``kind`` was recorded in the hour before ``now`` (newest events only)."""
    since = _hour_before(now)
    for event in state.query("SELECT at, kind FROM events ORDER BY id DESC"):
        if event["at"] < since:
            return False
        if event["kind"] == kind:
            return True
    return False


def _hold(state: State, ids: list[int], *, max_per_hour: int, actor: str, rules_version: str,
          log: Any, now: datetime | None) -> None:
    """Mark held rows (visible to staff) and record the event once an hour."""
    with state.transaction():
        for i in ids:
            state.db.execute("UPDATE outbox SET last_error = ? WHERE id = ? AND last_error != ?",
                             [HELD_BY_BUDGET, i, HELD_BY_BUDGET])
        if not _event_within_the_hour(state, "reply_budget_reached", now):
            state.add_event("reply_budget_reached", {"held": len(ids), "max_per_hour": max_per_hour},
                            actor=actor, rules_version=rules_version)
            if log is not None:
                log.warning("reply_budget_reached", held=len(ids), max_per_hour=max_per_hour,
                            hint="replies wait in the outbox and leave as the budget frees; none is dropped")


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


SEND_BATCH = 20
"""Replies marked ``sending`` in one commit and ``sent`` in one commit after their sends: a
crash in between leaves at most this many ``unknown`` (delivery unknown, for staff)."""


class _SentWindow:
    """The sends the hourly budget counts, of the last hour, kept in memory per connection so
    each send does not read the event log again; reloaded when another connection wrote
    (``State.generation``) or an earlier hour is asked for."""

    def __init__(self) -> None:
        self.generation = -1
        self.since = ""  # the earliest time the list is complete from
        self.times: deque[str] = deque()  # ``reply_sent`` event times, oldest first

    def count(self, state: State, now: datetime | None) -> int:
        since = _hour_before(now)
        state.changed_elsewhere()
        if self.generation != state.generation or since < self.since:
            self.times = deque(_sent_times(state, since))
            self.generation, self.since = state.generation, since
        while self.times and self.times[0] < since:
            self.times.popleft()
        return len(self.times)


_WINDOWS: "weakref.WeakKeyDictionary[State, _SentWindow]" = weakref.WeakKeyDictionary()


def _sent_times(state: State, since: str) -> list[str]:
    """Times of the sends the budget counts since ``since``, oldest first."""
    seen: list[tuple[str, int]] = []
    for event in state.query("SELECT at, detail FROM events WHERE kind = 'reply_sent' ORDER BY id DESC"):
        if event["at"] < since:
            break
        seen.append((event["at"], json.loads(event["detail"])["outbox"]))
    counted: set[int] = set()
    for i in range(0, len(seen), 500):
        chunk = [pk for _, pk in seen[i:i + 500]]
        counted |= {r["id"] for r in state.query(
            f"SELECT id FROM outbox WHERE id IN ({', '.join('?' * len(chunk))}) AND message IS NOT NULL", chunk)}
    return [at for at, pk in reversed(seen) if pk in counted]


def _ids(rows: list[dict[str, Any]]) -> str:
    return ", ".join(str(int(r["id"])) for r in rows)


def send_pending(state: State, transport: Transport, *, envelope_from: str, max_attempts: int,
                 retry_base_seconds: float, rules_version: str = "", limit: int | None = None,
                 after_send: Callable[[dict[str, Any]], None] | None = None,
                 log: Any = None, actor: str = "daemon", max_per_hour: int | None = None,
                 now: datetime | None = None) -> SendReport:
    """Send every queued reply that is due, oldest first, within the hourly budget
    ``max_per_hour`` for mail caused by incoming mail (None: no budget; ``now`` places the
    budget's hour, the current time by default).  Returns counts by result.

    Up to :data:`SEND_BATCH` rows at a time are marked ``sending`` in one commit, handed to the
    transport one by one, then marked ``sent`` (or retried, failed, unknown) in one commit;
    ``after_send`` runs for each sent row after that commit."""
    rows = list(state.query(
        "SELECT id, message, kind, to_address, raw, attempts FROM outbox "
        "WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY id" + (f" LIMIT {int(limit)}" if limit else ""),
        [utc_now()]))
    window = _WINDOWS.setdefault(state, _SentWindow())
    budget = None if max_per_hour is None or not rows else max_per_hour - window.count(state, now)
    held: list[int] = []
    sent = retry = failed = unknown = 0
    todo = rows[::-1]  # popped from the end: oldest first
    while todo:
        batch: list[dict[str, Any]] = []
        reserved = 0  # counted rows in this batch: each takes budget if it leaves
        while todo and len(batch) < SEND_BATCH:
            row = todo[-1]
            counted = row["message"] is not None  # caused by incoming mail, not the digest or a roster
            if budget is not None and counted and budget - reserved <= 0:
                if batch:
                    break  # decided once this batch's sends are known (a failure frees budget)
                held.append(todo.pop()["id"])
                continue
            batch.append(todo.pop())
            reserved += counted
        if not batch:
            continue
        with state.transaction():
            state.db.conn.execute(f"UPDATE outbox SET status = 'sending', attempts = attempts + 1 "
                                  f"WHERE id IN ({_ids(batch)})")
        done: list[dict[str, Any]] = []
        errors: list[tuple[dict[str, Any], SendError]] = []
        for row in batch:
            _pause_after_sending(log, row["id"])
            try:
                transport.send(envelope_from, row["to_address"], row["raw"],
                               name=f"{row['id']:06d}-{row['kind']}")
            except SendError as exc:
                errors.append((row, exc))
            else:
                done.append(row)
        with state.transaction(batch_events=True):
            if done:
                state.db.conn.execute(
                    "UPDATE outbox SET status = 'sent', sent_at = ?, last_error = CASE last_error "
                    f"WHEN ? THEN '' ELSE last_error END WHERE id IN ({_ids(done)})", [utc_now(), HELD_BY_BUDGET])
            for row in done:
                state.add_event("reply_sent", {"outbox": row["id"], "kind": row["kind"]},
                                actor=actor, rules_version=rules_version, message=row["message"])
            outcomes = []
            for row, exc in errors:
                attempts = row["attempts"] + 1
                if exc.unknown:
                    status = "unknown"
                elif exc.permanent or attempts >= max_attempts:
                    status = "failed"
                else:
                    status = "queued"
                outcomes.append((row, exc, status))
                delay = retry_base_seconds * (2 ** (attempts - 1))
                nxt = (datetime.now(timezone.utc) + timedelta(seconds=delay)).isoformat(timespec="seconds")
                state.db.execute(
                    "UPDATE outbox SET status = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
                    [status, str(exc), nxt, row["id"]])
                event = "reply_retry" if status == "queued" else f"reply_{status}"
                state.add_event(event, {"outbox": row["id"], "error": str(exc)},
                                actor=actor, rules_version=rules_version, message=row["message"])
        at = utc_now()
        for row in done:
            if row["message"] is not None:
                window.times.append(at)
                if budget is not None:
                    budget -= 1
        sent += len(done)
        for row, exc, status in outcomes:
            if status == "unknown":
                unknown += 1
            elif status == "failed":
                failed += 1
            else:
                retry += 1
            if log is not None:
                log.warning("reply_not_sent", outbox=row["id"], status=status, error=str(exc))
        if after_send is not None:
            for row in done:
                after_send(row)
    if held:
        _hold(state, held, max_per_hour=int(max_per_hour or 0), actor=actor, rules_version=rules_version, log=log,
              now=now)
    return SendReport(sent, retry, failed, unknown, len(held))
