"""``mailbot run`` as a real process against the real Dovecot and SMTP sink: IDLE pickup,
clean stop on SIGTERM, one instance per state dir, surviving a server restart and a missing folder.

Polling is every 60 s in these tests, so only IDLE can explain a reply within seconds.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from daemon_harness import MailbotProcess, state_rows, write_config
from forms_factory import make_annex3_xlsx, nominee
from intake_harness import shanghai
from mail_factory import make_mail
from servers import quote_folder

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]

ON_TIME = shanghai(2020, 11, 2, 10, 0)
IDLE_SETTLE_S = 1.5  # after daemon_started: first poll done and the IDLE connection idling


def _mail(serial: int, sender: str = "wang@zjxx.edu.cn") -> bytes:
    # one school per sender: a second address naming a school would also notify that school
    school = f"浙江{sender.split('@')[0]}职业技术学院"
    return make_mail(sender=sender, message_id=f"<daemon-{serial}-{time.time_ns()}@zjxx.edu.cn>",
                     attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(serial)], institution=school))])



@pytest.fixture()
def daemons():
    """Every MailbotProcess a test starts; any still running at the end is killed."""
    started: list[MailbotProcess] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.kill()


def _start(daemons, config: Path) -> MailbotProcess:
    p = MailbotProcess("run", config)
    daemons.append(p)
    p.wait_for("daemon_started", timeout=20)
    return p


def test_mail_appended_while_the_daemon_runs_is_answered_within_seconds_thanks_to_idle(
        tmp_path, dovecot, imap_account, smtp_sink, daemons, record_property) -> None:
    daemon = _start(daemons, write_config(tmp_path, imap_account, smtp_sink))
    time.sleep(IDLE_SETTLE_S)
    latencies = []
    for i in (1, 2, 3):
        before = time.monotonic()
        dovecot.append(_mail(i), ON_TIME, user=imap_account.user)
        smtp_sink.wait_for(i, timeout=10)
        latencies.append(time.monotonic() - before)
    record_property("idle_latency_s", latencies)
    print(f"IDLE arrival->reply latency: {', '.join(f'{x:.2f}s' for x in latencies)}")
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("wang@zjxx.edu.cn",)] * 3
    assert max(latencies) < 5.0, latencies
    assert state_rows(tmp_path / 'state', "SELECT outcome FROM messages ORDER BY id") == [("accepted",)] * 3
    deadline = time.monotonic() + 5  # moved out of INBOX just after its reply is sent: a moment
    while dovecot.list_folder("INBOX", user=imap_account.user) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []
    assert daemon.stop() == 0


def test_mail_arriving_while_a_poll_is_running_is_not_left_for_the_next_scheduled_poll(
        tmp_path, dovecot, imap_account, smtp_sink, daemons) -> None:
    _start(daemons, write_config(tmp_path, imap_account, smtp_sink))
    time.sleep(IDLE_SETTLE_S)
    before = time.monotonic()
    for i in range(1, 7):  # a burst: later mails land while earlier ones are being processed
        dovecot.append(_mail(i, sender=f"t{i}@zjxx.edu.cn"), ON_TIME, user=imap_account.user)
        time.sleep(0.15)
    got = smtp_sink.wait_for(6, timeout=10)
    assert sorted(m.rcpt_tos[0] for m in got) == [f"t{i}@zjxx.edu.cn" for i in range(1, 7)]
    assert time.monotonic() - before < 10
    # Each mail is moved out of INBOX just after its reply is sent: allow that last step a moment,
    # far less than the scheduled poll interval, which would otherwise be the one to find it.
    deadline = time.monotonic() + 5
    while dovecot.list_folder("INBOX", user=imap_account.user) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []


def test_sigterm_stops_the_daemon_promptly_with_exit_status_zero(
        tmp_path, dovecot, imap_account, smtp_sink, daemons) -> None:
    daemon = _start(daemons, write_config(tmp_path, imap_account, smtp_sink))
    time.sleep(IDLE_SETTLE_S)  # IDLE in progress: stopping must interrupt it
    before = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0
    took = time.monotonic() - before
    assert took < 5, took
    names = [e["event"] for e in daemon.events]
    assert names[-2:] == ["daemon_stopping", "daemon_stopped"]
    assert daemon.stderr == ""
    # the lock is released: a new daemon starts on the same state dir
    again = _start(daemons, tmp_path / "mailbot.toml")
    assert again.stop() == 0


def test_second_daemon_on_the_same_state_dir_refuses_to_start_and_touches_nothing(
        tmp_path, dovecot, imap_account, smtp_sink, daemons) -> None:
    config = write_config(tmp_path, imap_account, smtp_sink)
    first = _start(daemons, config)
    dovecot.append(_mail(1), ON_TIME, user=imap_account.user)
    smtp_sink.wait_for(1, timeout=10)  # the first daemon has polled (and recovered its outbox)
    # a reply the first daemon is handing to SMTP right now
    with sqlite3.connect(tmp_path / "state" / "mailbot.db") as db:
        db.execute("INSERT INTO outbox (kind, to_address, subject, reply_message_id, raw, status, "
                   "next_attempt_at, created_at) VALUES ('acceptance', 'x@y.edu.cn', 's', '<r@m>', x'00', "
                   "'sending', '2020-11-02T00:00:00+00:00', '2020-11-02T00:00:00+00:00')")
    second = MailbotProcess("run", config)
    daemons.append(second)
    assert second.wait(timeout=30) != 0
    assert f"mailbot：另一个 mailbot 正在使用 {tmp_path / 'state'}（进程号 {first.pid}），同一数据目录只能运行一个。\n" in second.stderr
    assert second.named("daemon_started") == []
    assert state_rows(tmp_path / 'state', "SELECT status FROM outbox ORDER BY id") == [("sent",), ("sending",)]
    assert state_rows(tmp_path / 'state', "SELECT kind FROM events WHERE kind LIKE 'reply_%' ORDER BY id") == [
        ("reply_queued",), ("reply_sent",)]
    assert first.proc.poll() is None
    assert first.stop() == 0


def test_daemon_survives_a_dovecot_restart_and_answers_mail_appended_after_it(
        tmp_path, dovecot, imap_account, smtp_sink, daemons) -> None:
    daemon = _start(daemons, write_config(tmp_path, imap_account, smtp_sink))
    time.sleep(IDLE_SETTLE_S)
    dovecot.append(_mail(1), ON_TIME, user=imap_account.user)
    smtp_sink.wait_for(1, timeout=10)
    dovecot.stop()
    try:
        failed = daemon.wait_for("poll_failed", timeout=15)
    finally:
        dovecot.start()
    assert (failed["level"], failed["retry_in_s"]) == ("error", 2.0)  # the first backoff step
    assert failed["error"].startswith(f"cannot connect to IMAP {imap_account.host}:{imap_account.port} "
                                      f"as {imap_account.user} (plain): "), failed
    dovecot.append(_mail(2), ON_TIME, user=imap_account.user)
    assert len(smtp_sink.wait_for(2, timeout=20)) == 2
    daemon.wait_for("poll_recovered", timeout=5)
    assert state_rows(tmp_path / 'state', "SELECT outcome FROM messages ORDER BY id") == [("accepted",)] * 2
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0


def test_missing_intake_folder_is_logged_for_staff_and_the_daemon_keeps_running_until_it_appears(
        tmp_path, dovecot, imap_account, smtp_sink, daemons) -> None:
    dovecot.append(_mail(1), ON_TIME, user=imap_account.user)  # in INBOX: not ours to read
    config = write_config(tmp_path, imap_account, smtp_sink, imap={"folder": "Intake"},
                          schedule={"poll_seconds": 2, "backoff_max_seconds": 2})
    daemon = _start(daemons, config)
    failed = daemon.wait_for("poll_failed", timeout=10)
    assert failed["level"] == "error"
    assert re.fullmatch(rf"cannot select folder 'Intake' on {imap_account.host}:{imap_account.port} as "
                        rf"{imap_account.user}: \[b\"Mailbox doesn't exist: Intake \(\d\.\d+(?: \+ \d\.\d+)+ secs\)\.\"\]",
                        failed["error"]), failed
    daemon.wait_for("poll_failed", timeout=10, after=1)  # it retries, still running
    assert daemon.proc.poll() is None
    assert state_rows(tmp_path / 'state', "SELECT count(*) FROM messages") == [(0,)]
    assert smtp_sink.attempts == 0
    conn = dovecot.connect(imap_account.user)
    try:
        assert conn.create(quote_folder("Intake"))[0] == "OK"
    finally:
        conn.logout()
    dovecot.append(_mail(2, sender="li@zjxx.edu.cn"), ON_TIME, folder="Intake", user=imap_account.user)
    (reply,) = smtp_sink.wait_for(1, timeout=15)
    assert reply.rcpt_tos == ("li@zjxx.edu.cn",)
    assert len(dovecot.list_folder("INBOX", user=imap_account.user)) == 1
    assert daemon.stop() == 0


def test_sigterm_during_a_busy_poll_stops_after_the_message_in_hand_and_the_rest_waits(
        tmp_path, dovecot, imap_account, smtp_sink, daemons) -> None:
    total = 15
    for i in range(1, total + 1):
        dovecot.append(_mail(i, sender=f"t{i}@zjxx.edu.cn"), ON_TIME, user=imap_account.user)
    config = write_config(tmp_path, imap_account, smtp_sink)
    daemon = _start(daemons, config)
    daemon.wait_for("message", timeout=20)  # the first poll is working through the inbox
    before = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0
    assert time.monotonic() - before < 3
    events = [e["event"] for e in daemon.events]
    # the message in hand when the signal came is finished (and logged) before the poll ends
    assert events[events.index("daemon_stopping") + 1:] in (
        ["poll_interrupted", "daemon_stopped"], ["message", "poll_interrupted", "daemon_stopped"])
    done = len(daemon.named("message"))
    assert 1 <= done < total
    assert state_rows(tmp_path / 'state', "SELECT count(*), count(settled_at) FROM messages") == [(done, done)]
    assert state_rows(tmp_path / 'state', "SELECT status, count(*) FROM outbox GROUP BY status") == [("sent", done)]
    assert len(smtp_sink.messages) == done
    assert len(dovecot.list_folder("INBOX", user=imap_account.user)) == total - done
    rest = MailbotProcess("poll", config)
    daemons.append(rest)
    assert rest.wait(timeout=60) == 0
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(total)) == sorted(
        f"t{i}@zjxx.edu.cn" for i in range(1, total + 1))
    assert state_rows(tmp_path / 'state', "SELECT outcome, count(*) FROM messages GROUP BY outcome") == [("accepted", total)]
