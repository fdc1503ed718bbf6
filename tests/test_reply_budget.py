"""The hourly reply budget: replies past it wait in the outbox (never dropped) and leave, oldest
first and each once, when the hour has passed; mail of mailbot's own motion (the digest, staff
alerts, rosters) never waits and never counts.  The hour is moved by passing ``now``, never by
waiting."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailbot.state.outbox import HELD_BY_BUDGET, SendReport, held_by_budget, send_pending, sent_last_hour
from mailbot.state.store import State, utc_now

STAFF = "staff@zjut.edu.cn"
UIDS = itertools.count(1)


class Recorder:
    """A transport that keeps the address of everything it was handed."""

    def __init__(self) -> None:
        self.to: list[str] = []

    def send(self, envelope_from: str, to: str, raw: bytes, *, name: str) -> None:
        self.to.append(to)

    def close(self) -> None:
        pass


@pytest.fixture()
def state(tmp_path: Path) -> State:
    return State(tmp_path / "state")


def queue(state: State, *addresses: str, kind: str = "acceptance") -> None:
    """Queue mail to ``addresses``: replies (each caused by a recorded message), or with
    ``kind="digest"`` mail of mailbot's own motion (no message)."""
    with state.transaction():
        for to in addresses:
            message = None
            if kind != "digest":
                message = state.insert("messages", {
                    "source": "test", "uidvalidity": 1, "uid": next(UIDS), "message_id": "", "sha256": "", "size": 0,
                    "arrived_at": utc_now(), "sender": to, "outcome": "accepted", "recorded_at": utc_now()})
            state.insert("outbox", {
                "message": message, "kind": kind, "to_address": to, "subject": "Re: 报名表", "reply_message_id": "",
                "raw": b"reply", "status": "queued", "next_attempt_at": utc_now(), "created_at": utc_now()})


def send(state: State, transport: Recorder, now: datetime) -> SendReport:
    return send_pending(state, transport, envelope_from="bounces@zjut.edu.cn", max_attempts=3,
                        retry_base_seconds=60, max_per_hour=2, now=now)


def test_held_replies_leave_when_the_hour_has_passed_oldest_first_each_once(state: State) -> None:
    transport, start = Recorder(), datetime.now(timezone.utc)
    queue(state, "a@x.edu.cn", "b@x.edu.cn", "c@x.edu.cn", "d@x.edu.cn", "e@x.edu.cn")
    assert send(state, transport, start) == SendReport(sent=2, held=3)
    assert held_by_budget(state) == 3
    assert [r["last_error"] for r in state.query("SELECT last_error FROM outbox WHERE status = 'queued'")] == [
        HELD_BY_BUDGET] * 3
    assert send(state, transport, start + timedelta(minutes=59)) == SendReport(held=3)
    assert send(state, transport, start + timedelta(minutes=61)) == SendReport(sent=2, held=1)
    assert send(state, transport, start + timedelta(minutes=122)) == SendReport(sent=1)
    assert transport.to == ["a@x.edu.cn", "b@x.edu.cn", "c@x.edu.cn", "d@x.edu.cn", "e@x.edu.cn"]
    assert [r["status"] for r in state.query("SELECT status FROM outbox ORDER BY id")] == ["sent"] * 5
    events = [r["detail"] for r in state.query("SELECT detail FROM events WHERE kind = 'reply_budget_reached'")]
    # once per hour in which replies were held: at the start, not again at +59 min, again at +61 min
    assert events == ['{"held": 3, "max_per_hour": 2}', '{"held": 1, "max_per_hour": 2}']


def test_the_budget_counts_only_the_last_hour_and_never_the_digest(state: State) -> None:
    transport, start = Recorder(), datetime.now(timezone.utc)
    queue(state, "a@x.edu.cn", "b@x.edu.cn", "c@x.edu.cn")
    queue(state, STAFF, kind="digest")
    assert send(state, transport, start) == SendReport(sent=3, held=1)
    assert transport.to == ["a@x.edu.cn", "b@x.edu.cn", STAFF]
    assert (sent_last_hour(state, now=start), sent_last_hour(state, now=start + timedelta(minutes=61))) == (2, 0)
    assert held_by_budget(state) == 1
