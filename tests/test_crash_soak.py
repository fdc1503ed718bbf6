"""SIGKILL soak: ``mailbot poll`` killed at random moments, again and again, until a poll finishes.

Each round puts N messages in a fresh INBOX (accepted forms, forms to correct, mail without a
form, auto-replies, one message delivered twice), then runs ``mailbot poll`` as a subprocess and
SIGKILLs it after a random delay, repeating until a poll exits by itself.  Then:

- every appended message is recorded exactly once (by SHA-256; rows with outcome ``duplicate``
  aside, and only the message really delivered twice has one), none ``failed``;
- INBOX is empty;
- the SMTP sink received each reply at most once (counted by In-Reply-To), and every message
  that should be answered was answered or has its reply in ``unknown`` (delivery unknown, shown
  to staff): none is lost silently;
- ``PRAGMA integrity_check`` is ok and the audit event chain verifies.

Environment: ``MAILBOT_SOAK_MESSAGES`` (default 30) messages per round, ``MAILBOT_SOAK_ROUNDS``
(default 2) rounds, ``MAILBOT_SOAK_SEED`` to replay a run (the seed is printed), e.g.
``MAILBOT_SOAK_MESSAGES=200 MAILBOT_SOAK_ROUNDS=20 scripts/test tests/test_crash_soak.py -s``.
"""

from __future__ import annotations

import email
import hashlib
import os
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from daemon_harness import MailbotProcess, write_config
from forms_factory import make_annex3_xlsx, nominee
from intake_harness import shanghai
from mail_factory import make_mail
from mailbot.state.store import State

MESSAGES = int(os.environ.get("MAILBOT_SOAK_MESSAGES", "30"))
ROUNDS = int(os.environ.get("MAILBOT_SOAK_ROUNDS", "2"))
SEED = int(os.environ.get("MAILBOT_SOAK_SEED", str(time.time_ns() % 10**9)))
ON_TIME = shanghai(2020, 11, 2, 10, 0)
ANSWERED = {"accepted", "correction", "late", "redirect", "no_form", "scan_only", "unreadable", "not_annex3"}

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120 + 60 * ROUNDS * max(1, MESSAGES // 30))]


def _inbox(n: int) -> list[bytes]:
    """n distinct messages of mixed kinds, plus message 2 delivered a second time at the end."""
    raws = []
    for i in range(1, n + 1):
        sender = f"s{i}@x{i}.edu.cn"
        mid = f"<soak-{i}-{time.time_ns()}@x{i}.edu.cn>"
        school = f"浙江第{i}职业技术学院"
        if i % 7 == 0:
            raw = make_mail(sender=sender, message_id=mid, subject="自动回复: 报名表",
                            extra_headers={"Auto-Submitted": "auto-replied"})
        elif i % 5 == 0:
            raw = make_mail(sender=sender, message_id=mid, attachments=[])
        elif i % 4 == 1:
            raw = make_mail(sender=sender, message_id=mid, attachments=[("报名表.xlsx", make_annex3_xlsx(
                [nominee(i), nominee(1000 + i, phone="1381234")], institution=school))])
        else:
            raw = make_mail(sender=sender, message_id=mid, attachments=[("报名表.xlsx", make_annex3_xlsx(
                [nominee(i)], institution=school))])
        raws.append(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))  # as the server stores it
    return raws + [raws[1]]


def _kill_until_clean(config: Path, rng: random.Random, max_runs: int = 200) -> tuple[int, list[float]]:
    """Run ``mailbot poll`` and SIGKILL it after a random delay until one run exits by itself."""
    delays = []
    for _ in range(max_runs):
        delay = rng.uniform(0.8, 2.4)  # imports take ~1 s: most kills land in the work
        poll = MailbotProcess("poll", config)
        try:
            rc = poll.wait(timeout=delay)
        except Exception:  # noqa: BLE001 - still running: kill it mid-work
            poll.kill()
            delays.append(round(delay, 2))
            continue
        assert rc == 0, poll.log_text()
        return len(delays), delays
    raise AssertionError(f"no clean poll in {max_runs} runs")


def _in_reply_to(raw: bytes) -> str:
    return str(email.message_from_bytes(raw)["In-Reply-To"] or "").strip()


@pytest.mark.parametrize("round_no", range(1, ROUNDS + 1))
def test_poll_killed_at_random_moments_loses_nothing_and_answers_nothing_twice(
        round_no, tmp_path, dovecot, imap_account, smtp_sink) -> None:
    rng = random.Random(SEED * 1000 + round_no)
    raws = _inbox(MESSAGES)
    for raw in raws:
        dovecot.append(raw, ON_TIME, user=imap_account.user)
    config = write_config(tmp_path, imap_account, smtp_sink)

    kills, delays = _kill_until_clean(config, rng)
    print(f"soak seed {SEED} round {round_no}: {len(raws)} messages, {kills} kills at {delays}")

    state = State.readonly(tmp_path / "state" / "mailbot.db")
    try:
        db = state.db
        assert next(db.query("PRAGMA integrity_check"))["integrity_check"] == "ok"
        assert state.verify_event_chain()[0]
        shas = [hashlib.sha256(r).hexdigest() for r in raws]
        originals = Counter(r["sha256"] for r in db.query("SELECT sha256 FROM messages WHERE outcome != 'duplicate'"))
        assert originals == Counter(set(shas)), "each message recorded exactly once"
        duplicates = [r["sha256"] for r in db.query("SELECT sha256 FROM messages WHERE outcome = 'duplicate'")]
        assert duplicates == [shas[1]]
        assert list(db.query("SELECT id, reason FROM messages WHERE outcome = 'failed'")) == []
        assert list(db.query("SELECT id FROM messages WHERE settled_at IS NULL")) == []

        received = Counter(_in_reply_to(m.raw) for m in smtp_sink.wait_for(0, timeout=0))
        assert [k for k, n in received.items() if n > 1] == [], "a reply was sent twice"
        should_answer = list(db.query(
            "SELECT m.id, m.message_id, m.outcome, o.status, o.kind FROM messages m "
            "LEFT JOIN outbox o ON o.message = m.id WHERE m.outcome IN (%s) ORDER BY m.id"
            % ",".join("?" * len(ANSWERED)), sorted(ANSWERED)))
        assert len(should_answer) == len({r["id"] for r in should_answer}) == len(
            [r for r in db.query("SELECT id FROM messages WHERE outcome IN (%s)" % ",".join("?" * len(ANSWERED)),
                                 sorted(ANSWERED))])
        lost = [r for r in should_answer if r["status"] not in ("sent", "unknown")]
        assert lost == [], "replies neither sent nor surfaced as unknown"
        not_received = [r for r in should_answer
                        if r["status"] == "sent" and received[f"<{r['message_id']}>"] != 1]
        assert not_received == [], "marked sent but not received"
        unknown = [r["id"] for r in should_answer if r["status"] == "unknown"]
        assert len(unknown) <= kills
        print(f"  replies: {sum(received.values())} received, {len(unknown)} unknown (shown to staff)")
        assert sum(received.values()) == len([r for r in should_answer if r["status"] == "sent"]) + sum(
            received[f"<{r['message_id']}>"] for r in should_answer if r["status"] == "unknown")
    finally:
        state.close()
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []
