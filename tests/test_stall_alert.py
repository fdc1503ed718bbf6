"""Poll health: each poll's result is recorded for the digest, and a poller stalled longer than
``schedule.stall_alert_minutes`` mails staff at once, once per stall (the daemon's job function,
called with a fake clock)."""

from __future__ import annotations

import email
import io
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest

from mailbot.assembly import assemble
from mailbot.config import load_settings
from mailbot.daemon import Daemon
from mailbot.errors import MailboxError
from mailbot.logs import configure_logging, get_logger
from mailbot.office import health

STAFF = "peixun@zjut.edu.cn"


@pytest.fixture()
def daemon(tmp_path: Path):
    configure_logging("json", stream=io.StringIO())
    settings = load_settings(None, state_dir=tmp_path / "state", staff_addresses=[STAFF],
                             schedule={"stall_alert_minutes": 5})
    parts = assemble(settings, get_logger())
    d = Daemon(parts, get_logger())
    yield d
    if d._stall_state is not None:
        d._stall_state.close()
    parts.close()


def _alerts(daemon: Daemon) -> list[tuple[str, str, str]]:
    return [(r["kind"], r["to_address"], r["status"]) for r in daemon.parts.state.query(
        "SELECT kind, to_address, status FROM outbox WHERE kind = 'stall_alert' ORDER BY id")]


def _alert_mails(daemon: Daemon) -> list[email.message.EmailMessage]:
    folder = daemon.settings.smtp.outbox_dir
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(folder.glob("*-stall_alert.eml"))]


def test_a_stall_longer_than_the_limit_mails_staff_once_and_again_only_after_polling_resumed(daemon) -> None:
    start = daemon.started_at
    assert daemon.check_stall(now=start + timedelta(minutes=4, seconds=59)) is False
    assert _alerts(daemon) == []
    health.record_poll_failed(daemon.parts.state, "IMAP connect to 127.0.0.1:9 failed: [Errno 111] Connection refused",
                              at=start + timedelta(minutes=1))
    assert daemon.check_stall(now=start + timedelta(minutes=6)) is True
    assert _alerts(daemon) == [("stall_alert", STAFF, "sent")]
    (mail,) = _alert_mails(daemon)
    assert str(mail["Subject"]) == "【收信中断】1+X证书制度试点师资培训：已6分钟未能收取邮件"
    assert mail["Auto-Submitted"] == "auto-generated"
    lines = mail.get_body(preferencelist=("plain",)).get_content().splitlines()
    assert lines[3:7] == ["报名系统已6分钟未能收取邮件。", "最近一次成功收信：自本次启动以来尚无",
                          "此后收信出错1次，最近一次：无法连接邮箱服务器。", ""]

    for minutes in (7, 30, 600):  # the same stall: no second mail
        assert daemon.check_stall(now=start + timedelta(minutes=minutes)) is False
    assert _alerts(daemon) == [("stall_alert", STAFF, "sent")]

    resumed = start + timedelta(minutes=601)
    health.record_poll_ok(daemon.parts.state, at=resumed)
    assert daemon.check_stall(now=resumed + timedelta(minutes=4)) is False
    assert daemon.check_stall(now=resumed + timedelta(minutes=5)) is True  # a new stall
    assert len(_alert_mails(daemon)) == 2
    kinds = [r["kind"] for r in daemon.parts.state.query("SELECT kind FROM events ORDER BY id")]
    assert kinds.count("stall_alert_queued") == 2


def test_the_stall_check_counts_from_the_last_good_poll_not_from_the_start(daemon) -> None:
    start = daemon.started_at
    health.record_poll_ok(daemon.parts.state, at=start + timedelta(minutes=10))
    assert daemon.check_stall(now=start + timedelta(minutes=14)) is False
    assert daemon.check_stall(now=start + timedelta(minutes=15)) is True
    (mail,) = _alert_mails(daemon)
    assert str(mail["Subject"]) == "【收信中断】1+X证书制度试点师资培训：已5分钟未能收取邮件"


def test_without_staff_addresses_or_with_the_limit_at_zero_no_check_is_scheduled(tmp_path: Path) -> None:
    configure_logging("json", stream=io.StringIO())
    for staff, minutes, jobs in ([[STAFF], 5, ["poll", "digest", "stall_check"]], [[], 5, ["poll", "digest"]],
                                 [[STAFF], 0, ["poll", "digest"]]):
        settings = load_settings(None, state_dir=tmp_path / f"s{minutes}{len(staff)}", staff_addresses=staff,
                                 schedule={"stall_alert_minutes": minutes})
        parts = assemble(settings, get_logger())
        try:
            d = Daemon(parts, get_logger())
            d.schedule_jobs()
            assert [j.id for j in d.scheduler.get_jobs()] == jobs
        finally:
            parts.close()


def test_the_daemon_records_each_poll_good_or_failed(daemon, monkeypatch) -> None:
    daemon.poll()
    first_ok = health.last_ok(daemon.parts.state)
    assert first_ok is not None

    def refuse(**_kwargs):
        raise MailboxError("IMAP login failed for user peixun: AUTHENTICATIONFAILED")

    monkeypatch.setattr(daemon.parts.intake, "poll_once", refuse)
    daemon.poll()
    assert health.last_ok(daemon.parts.state) == first_ok
    errors = health.errors_since(daemon.parts.state, first_ok - timedelta(seconds=1))
    assert [e.summary for e in errors] == ["邮箱登录失败（请检查账号和密码）"]
    stored = [r["error"] for r in daemon.parts.state.query("SELECT error FROM poll_errors")]
    assert stored == ["IMAP login failed for user peixun: AUTHENTICATIONFAILED"]
