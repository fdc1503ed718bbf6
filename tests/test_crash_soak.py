"""SIGKILL soak: ``mailbot poll`` killed in the middle of its work, again and again, until a poll finishes.

Each round puts N messages in a fresh INBOX (accepted forms, forms to correct, mail without a
form, auto-replies, one message delivered twice), then runs ``mailbot poll`` as a subprocess and
SIGKILLs it once it is at work: after its k-th ``message`` log line (a message recorded) plus a
random extra delay, or, in some runs, during a reply's send: those runs set the test hook
``MAILBOT_TEST_PAUSE_AFTER_SENDING`` (the outbox logs ``reply_sending`` and pauses after marking
the row ``sending``) and kill within the pause.  It repeats until a poll exits by itself.  Then:

- every run but the last was killed while running, after a work log line; a round with no kill,
  or with no kill that left a reply ``sending``, fails;
- every appended message is recorded exactly once (by SHA-256; rows with outcome ``duplicate``
  aside, and only the message really delivered twice has one), none ``failed``;
- INBOX is empty;
- the SMTP sink received each reply at most once (counted by In-Reply-To), and every message
  that should be answered was answered or has its reply in ``unknown`` (delivery unknown, shown
  to staff): none is lost silently; the ``unknown`` replies are exactly those a kill left
  ``sending``;
- ``PRAGMA integrity_check`` is ok and the audit event chain verifies;
- a message whose decision was cut by two kills is set aside (``quarantined``, reason
  ``poison: …``): it counts as handled, with its ``held`` acknowledgement (automatic mail aside)
  answered like any other reply, never as lost.

Environment: ``MAILBOT_SOAK_MESSAGES`` (default 30) messages per round, ``MAILBOT_SOAK_ROUNDS``
(default 2) rounds, ``MAILBOT_SOAK_SEED`` to replay a run (the seed is printed), e.g.
``MAILBOT_SOAK_MESSAGES=200 MAILBOT_SOAK_ROUNDS=20 scripts/test tests/test_crash_soak.py -s``.
"""

from __future__ import annotations

import email
import hashlib
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
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
PAUSE_AFTER_SENDING = 0.3  # seconds the outbox test hook waits between ``sending`` and the send
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


@dataclass(frozen=True)
class Kill:
    """One SIGKILLed poll: the log line it waited for, and the outbox rows it left ``sending``."""

    trigger: str
    left_sending: tuple[int, ...]


def _rows_sending(db_path: Path) -> tuple[int, ...]:
    state = State.readonly(db_path)
    try:
        return tuple(r["id"] for r in state.query("SELECT id FROM outbox WHERE status = 'sending' ORDER BY id"))
    finally:
        state.close()


def _kill_until_clean(config: Path, db_path: Path, rng: random.Random, max_runs: int = 200) -> list[Kill]:
    """Run ``mailbot poll`` and SIGKILL it at work until one run exits by itself; the kills."""
    kills: list[Kill] = []
    for run in range(max_runs):
        # every other run aims between sending and sent until one kill has landed there; then now and again
        aim_at_sending = (run % 2 == 1 and not any(k.left_sending for k in kills)) or rng.random() < 0.2
        if aim_at_sending:
            trigger, nth, extra = "reply_sending", rng.randrange(3), rng.uniform(0, PAUSE_AFTER_SENDING / 3)
            env = {"MAILBOT_TEST_PAUSE_AFTER_SENDING": str(PAUSE_AFTER_SENDING)}
        else:
            trigger, nth, extra, env = "message", rng.randrange(4), rng.uniform(0, 0.1), {}
        poll = MailbotProcess("poll", config, env=env)
        try:
            try:
                poll.wait_for(trigger, timeout=120, after=nth)
            except AssertionError:  # it ended before that log line: a run that finished by itself
                rc = poll.wait(timeout=10)
                assert rc == 0, poll.log_text()
                return kills
            time.sleep(extra)
            rc = poll.kill()
        finally:
            if poll.proc.poll() is None:
                poll.kill()
        if rc == 0:  # it finished between the log line and the kill
            return kills
        assert rc == -signal.SIGKILL, poll.log_text()
        kills.append(Kill(f"{trigger} #{nth + 1} +{extra:.2f}s", _rows_sending(db_path)))
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

    db_path = tmp_path / "state" / "mailbot.db"
    kills = _kill_until_clean(config, db_path, rng)
    print(f"soak seed {SEED} round {round_no}: {len(raws)} messages, {len(kills)} kills at "
          f"{[k.trigger + (f' left {k.left_sending} sending' if k.left_sending else '') for k in kills]}")
    assert kills != [], "no poll was killed at work"
    assert [k for k in kills if k.left_sending] != [], "no kill landed between sending and sent"
    left_sending = sorted(i for k in kills for i in k.left_sending)

    state = State.readonly(db_path)
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
        set_aside = list(db.query(
            "SELECT m.id, m.subject, m.reason, o.kind FROM messages m LEFT JOIN outbox o ON o.message = m.id "
            "WHERE m.outcome = 'quarantined' ORDER BY m.id"))
        assert [r for r in set_aside if not r["reason"].startswith("poison: ")
                or (r["kind"] is None) != r["subject"].startswith("自动回复")] == [], "set aside without its reply"
        handled = sorted(ANSWERED) + ["quarantined"]
        should_answer = list(db.query(
            "SELECT m.id, m.message_id, m.outcome, o.id AS outbox, o.status, o.kind FROM messages m "
            "LEFT JOIN outbox o ON o.message = m.id WHERE m.outcome IN (%s) "
            "AND (m.outcome != 'quarantined' OR o.kind = 'held') ORDER BY m.id"
            % ",".join("?" * len(handled)), handled))
        assert len(should_answer) == len({r["id"] for r in should_answer}) == len(
            [r for r in db.query("SELECT id FROM messages WHERE outcome IN (%s)" % ",".join("?" * len(ANSWERED)),
                                 sorted(ANSWERED))]) + len([r for r in set_aside if r["kind"] == "held"])
        print(f"  set aside as poison: {len(set_aside)}")
        lost = [r for r in should_answer if r["status"] not in ("sent", "unknown")]
        assert lost == [], "replies neither sent nor surfaced as unknown"
        not_received = [r for r in should_answer
                        if r["status"] == "sent" and received[f"<{r['message_id']}>"] != 1]
        assert not_received == [], "marked sent but not received"
        unknown = [r for r in should_answer if r["status"] == "unknown"]
        assert sorted(r["outbox"] for r in unknown) == left_sending, "unknown = exactly the replies a kill left sending"
        print(f"  replies: {sum(received.values())} received, {len(unknown)} unknown (shown to staff)")
        assert sum(received.values()) == len([r for r in should_answer if r["status"] == "sent"]) + sum(
            received[f"<{r['message_id']}>"] for r in should_answer if r["status"] == "unknown")
    finally:
        state.close()
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []
