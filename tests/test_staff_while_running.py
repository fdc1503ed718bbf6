"""Staff commands while ``mailbot run`` runs: they wait for the write lock (never for the daemon
lock), the daemon holds it only while it works, and the work of both is done once.

See ``mailbot.state.lock`` for why the write lock exists."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from daemon_harness import MailbotProcess, state_rows, write_config
from forms_factory import make_annex3_xlsx, nominee
from intake_harness import open_parts, parse_reply, rules_with_seats, shanghai  # noqa: F401 - fixture
from mail_factory import make_mail
from mailbot.cli import WAITING_FOR_DAEMON, main
from mailbot.config import load_settings
from mailbot.daemon import Daemon
from mailbot.pipeline import DECIDE_BATCH
from mailbot.state.lock import WriteLockBusy, hold_write_lock
from mailbot.state.ledger import SeatLedger
from mailbot.state.store import State

ON_TIME = shanghai(2020, 11, 2, 10, 0)
IDLE_SETTLE_S = 1.5  # after daemon_started: first poll done and the IDLE connection idling
JIA, YI, BING = "jwc@jia.edu.cn", "jwc@yi.edu.cn", "jwc@bing.edu.cn"


def _form(sender: str, serial: int) -> bytes:
    school = f"浙江{sender.split('@')[1].split('.')[0]}职业技术学院"
    return make_mail(sender=sender, message_id=f"<staff-{serial}-{time.time_ns()}@test>",
                     attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(serial)], institution=school))])



@pytest.mark.servers
@pytest.mark.timeout(180)
def test_a_staff_decision_while_the_daemon_runs_is_applied_its_mail_sent_once_and_intake_goes_on(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    config = write_config(tmp_path, imap_account, smtp_sink, **{
        "": {"rules": rules_with_seats(tmp_path, 1)},
        # a decision waiting on a lock held through IDLE fails after 20 s, not after five minutes
        "schedule": {"staff_wait_seconds": 20}})
    state = tmp_path / "state"
    daemon = MailbotProcess("run", config)
    try:
        daemon.wait_for("daemon_started", timeout=20)
        dovecot.append(_form(JIA, 1), ON_TIME, user=imap_account.user)
        dovecot.append(_form(YI, 2), ON_TIME, user=imap_account.user)
        smtp_sink.wait_for(2, timeout=20)
        assert state_rows(state, "SELECT institution, status FROM nominees ORDER BY id") == [
            ("浙江jia职业技术学院", "seated"), ("浙江yi职业技术学院", "waiting")]
        time.sleep(IDLE_SETTLE_S)  # the daemon is back in IDLE, holding no write lock

        result = subprocess.run(
            [sys.executable, "-m", "mailbot.cli", "decide", "withdraw", "--id-number", str(nominee(1).id_number),
             "--staff", "王老师", "--reason", "本人因病无法参训", "--config", str(config)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        assert state_rows(state, "SELECT institution, status FROM nominees ORDER BY id") == [
            ("浙江jia职业技术学院", "withdrawn"), ("浙江yi职业技术学院", "seated")]
        told = smtp_sink.wait_for(4, timeout=10)[2:]
        assert sorted(m.rcpt_tos[0] for m in told) == [JIA, YI]

        dovecot.append(_form(BING, 3), ON_TIME, user=imap_account.user)
        (answer,) = smtp_sink.wait_for(5, timeout=20)[4:]
        assert answer.rcpt_tos == (BING,)
        assert "zhejiang-2020-1x-000003" in parse_reply(answer.raw).subject  # the new form's own reply
        assert state_rows(state, "SELECT institution, status FROM nominees ORDER BY id") == [
            ("浙江jia职业技术学院", "withdrawn"), ("浙江yi职业技术学院", "seated"), ("浙江bing职业技术学院", "waiting")]
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    # each mail left once: two replies, the decision's notice and the promotion, the third reply
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted([JIA, YI, JIA, YI, BING])
    assert state_rows(state, "SELECT kind, status FROM outbox ORDER BY id") == [
        ("acceptance", "sent"), ("acceptance", "sent"), ("notice_decision", "sent"), ("promotion", "sent"),
        ("acceptance", "sent")]


def _config(tmp_path: Path, wait: int) -> Path:
    path = tmp_path / "mailbot.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\nlog_format = "json"\n'
                    f'[schedule]\nstaff_wait_seconds = {wait}\n', encoding="utf-8")
    (tmp_path / "state").mkdir(exist_ok=True)
    return path


def test_a_staff_command_that_cannot_get_the_write_lock_says_so_in_chinese_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, wait=1)
    with hold_write_lock(tmp_path / "state"):
        before = sorted(p.name for p in (tmp_path / "state").iterdir())
        result = CliRunner().invoke(main, ["digest", "--send", "--config", str(config)])
    assert (result.exit_code, result.output) == (1, WAITING_FOR_DAEMON + "\n"
                                                 "未执行：后台服务处理邮件已超过1秒仍未完成，本次没有作任何改动。"
                                                 "请过几分钟再试；如果一直如此，请联系技术人员。\n")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == before


def test_a_waiting_staff_command_goes_ahead_as_soon_as_the_service_is_done(tmp_path: Path) -> None:
    config = _config(tmp_path, wait=300)
    with hold_write_lock(tmp_path / "state"):
        proc = subprocess.Popen([sys.executable, "-m", "mailbot.cli", "digest", "--send", "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        assert proc.stderr is not None
        assert proc.stderr.readline() == WAITING_FOR_DAEMON + "\n"  # it waits for us
        assert proc.poll() is None
    out, err = proc.communicate(timeout=60)
    # it went ahead: no staff address is configured, so no digest is sent
    assert (proc.returncode, out, err) == (1, "", "mailbot：配置中没有填写接收日报的工作人员邮箱，日报未发送；请联系技术人员填写\n")


def test_the_daemon_holds_the_write_lock_while_it_polls_and_releases_it_after(tmp_path: Path) -> None:
    settings = load_settings(None, state_dir=tmp_path / "state", log_format="json")
    seen: list[str] = []

    def poll_once(progress=None, between_batches=None):
        try:
            with hold_write_lock(settings.state_dir, wait=0):
                seen.append("free")
        except WriteLockBusy:
            seen.append("held")
        return SimpleNamespace(fetched=0)

    parts = SimpleNamespace(settings=settings, state=State(settings.state_dir),
                            intake=SimpleNamespace(poll_once=poll_once, ledger=SimpleNamespace(catch_up=lambda: None)))
    quiet = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None, error=lambda *a, **k: None)
    Daemon(parts, log=quiet).poll()
    parts.state.close()
    assert seen == ["held"]
    with hold_write_lock(settings.state_dir, wait=0):  # released: free at once
        pass


def test_the_daemons_ledger_takes_in_a_seat_decision_another_process_committed(tmp_path: Path) -> None:
    daemon_state, staff_state = State(tmp_path), State(tmp_path)
    try:
        ledger = SeatLedger(daemon_state, {"物流": 2, "网页": 3}, rules_version="r@1")
        with staff_state.transaction():
            staff_state.add_event("seats_changed", {"program": "物流", "from": 2, "to": 5},
                                  actor="staff:王老师", rules_version="r@1")
        assert ledger.capacities == {"物流": 2, "网页": 3}
        ledger.catch_up()
        assert ledger.capacities == {"物流": 5, "网页": 3}
    finally:
        daemon_state.close()
        staff_state.close()


def test_a_held_lock_hands_over_to_a_waiting_staff_command_and_is_taken_back(tmp_path: Path) -> None:
    order: list[str] = []
    with hold_write_lock(tmp_path) as lock:
        assert lock.let_waiting_in() is False  # nobody waits: the unit goes on without a pause
        staff = threading.Thread(target=_staff_command, args=(tmp_path, order))
        staff.start()
        _until(lambda: list(tmp_path.glob("write.lock.wanted.*")))
        order.append("unit, first part")
        assert lock.let_waiting_in() is True
        order.append("unit, second part")
    staff.join(timeout=10)
    assert order == ["unit, first part", "staff command", "unit, second part"]
    assert list(tmp_path.glob("write.lock.wanted.*")) == []


def test_a_waiting_mark_left_by_a_killed_command_does_not_pause_the_unit(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f"write.lock.wanted.{gone}").touch()
    with hold_write_lock(tmp_path) as lock:
        assert lock.let_waiting_in() is False
    assert list(tmp_path.glob("write.lock.wanted.*")) == []


@pytest.mark.servers
@pytest.mark.timeout(180)
def test_a_long_poll_lets_a_waiting_staff_command_in_after_the_first_fetch_batch(
        tmp_path, dovecot, imap_account, smtp_sink, open_parts) -> None:
    for serial in range(DECIDE_BATCH + 5):
        dovecot.append(make_mail(sender=f"t{serial}@school{serial}.edu.cn", attachments=[],
                                 message_id=f"<long-{serial}@test>", body="您好。"),
                       ON_TIME, user=imap_account.user)
    parts = open_parts()
    state_dir = parts.settings.state_dir
    seen: list[str] = []

    def staff() -> None:
        with hold_write_lock(state_dir, wait=60):
            seen.append(f"staff saw {state_rows(state_dir, 'SELECT count(*) FROM messages')[0][0]} mails recorded")

    handed: list[bool] = []
    with hold_write_lock(state_dir) as lock:
        waiting = threading.Thread(target=staff)
        waiting.start()
        _until(lambda: list(state_dir.glob("write.lock.wanted.*")))
        report = parts.intake.poll_once(between_batches=lambda: handed.append(lock.let_waiting_in()))
    waiting.join(timeout=10)
    assert (report.recorded, handed, seen) == (DECIDE_BATCH + 5, [True], [f"staff saw {DECIDE_BATCH} mails recorded"])


def _staff_command(state_dir: Path, order: list[str]) -> None:
    with hold_write_lock(state_dir, wait=10):
        order.append("staff command")


def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_the_daemon_lets_a_waiting_staff_command_in_between_two_fetch_batches(tmp_path: Path) -> None:
    settings = load_settings(None, state_dir=tmp_path / "state", log_format="json")
    order: list[str] = []
    caught_up: list[str] = []

    def poll_once(progress=None, between_batches=None):
        staff = threading.Thread(target=_staff_command, args=(settings.state_dir, order))
        staff.start()
        _until(lambda: list(settings.state_dir.glob("write.lock.wanted.*")))
        order.append("first batch")
        between_batches()
        order.append("second batch")
        staff.join(timeout=10)
        return SimpleNamespace(fetched=0)

    parts = SimpleNamespace(settings=settings, state=State(settings.state_dir),
                            intake=SimpleNamespace(poll_once=poll_once,
                                                   ledger=SimpleNamespace(catch_up=lambda: caught_up.append("x"))))
    quiet = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None, error=lambda *a, **k: None)
    Daemon(parts, log=quiet).poll()
    parts.state.close()
    # caught up once at the start of the poll and once after the staff command
    assert (order, caught_up) == (["first batch", "staff command", "second batch"], ["x", "x"])
