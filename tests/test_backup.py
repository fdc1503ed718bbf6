"""``mailbot backup`` while a poll is writing: the copy is one committed state that
``mailbot verify`` accepts, and it restores into a working state directory."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_harness import MailbotProcess, write_config
from forms_factory import make_annex3_xlsx, nominee
from intake_harness import shanghai
from mail_factory import make_mail
from mailbot.errors import StateError
from mailbot.state.store import State

pytestmark = pytest.mark.servers

MAILS = 30


def mailbot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mailbot.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def count(db: Path, sql: str) -> int:
    st = State.readonly(db)
    try:
        return int(next(st.query(sql)).popitem()[1])
    finally:
        st.close()


def recorded(db: Path) -> int:
    """Messages recorded so far (0 while the database is still being created)."""
    try:
        return count(db, "SELECT count(*) FROM messages")
    except (StateError, sqlite3.Error):
        return 0


def school_mail(n: int) -> bytes:
    form = make_annex3_xlsx([nominee(3 * n + 1), nominee(3 * n + 2), nominee(3 * n + 3)],
                            institution=f"浙江第{n}职业技术学院")
    return make_mail(sender=f"t{n}@school{n}.edu.cn", subject=f"报名表{n}",
                     attachments=[("附件3：高校参训教师信息汇总表.xlsx", form)])


def test_a_backup_taken_during_a_poll_verifies_and_restores(tmp_path: Path, dovecot, imap_account, smtp_sink) -> None:
    for n in range(MAILS):
        dovecot.append(school_mail(n), shanghai(2020, 11, 2, 9, n), user=imap_account.user)
    config = write_config(tmp_path, imap_account, smtp_sink)
    live_db = tmp_path / "state" / "mailbot.db"
    # Replies leave after each fetch batch (20) is recorded: the test hook paces their sends
    # (0.1 s each), so the poll is still recording the second batch when the backup is taken.
    poll = MailbotProcess("poll", config, env={"MAILBOT_TEST_PAUSE_AFTER_SENDING": "0.1"})
    deadline = time.monotonic() + 120
    while recorded(live_db) < 3:
        assert time.monotonic() < deadline and poll.proc.poll() is None, poll.log_text()
        time.sleep(0.05)

    backup = mailbot("backup", str(tmp_path / "backup"), "--config", str(config), cwd=tmp_path)
    polling_after = poll.proc.poll() is None
    assert poll.proc.wait(timeout=300) == 0, poll.log_text()
    assert backup.returncode == 0, backup.stderr
    copied = count(tmp_path / "backup" / "mailbot.db", "SELECT count(*) FROM messages")
    assert polling_after and 3 <= copied < MAILS  # taken while the poll was still recording
    assert count(live_db, "SELECT count(*) FROM messages") == MAILS

    elsewhere = tmp_path / "elsewhere"  # no mailbot.toml here: the state directory from the environment
    elsewhere.mkdir()
    verified = mailbot("verify", cwd=elsewhere, env={"MAILBOT_STATE_DIR": str(tmp_path / "backup")})
    assert (verified.returncode, verified.stdout.splitlines()[-1].split("；")[0]) == (
        0, "验证通过：事件日志能解释全部数据"), verified.stdout

    # Restore: copy the backup in as a state directory, verify it, and poll on it.
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copytree(tmp_path / "backup", restored / "state")
    restore_config = write_config(restored, imap_account, smtp_sink)
    dovecot.append(school_mail(MAILS), shanghai(2020, 11, 3, 9, 0), user=imap_account.user)
    assert mailbot("verify", "--config", str(restore_config), cwd=restored).returncode == 0
    polled = mailbot("poll", "--config", str(restore_config), cwd=restored)
    assert polled.returncode == 0, polled.stderr + polled.stdout
    after = mailbot("verify", "--config", str(restore_config), cwd=restored)
    assert after.returncode == 0, after.stdout
    restored_db = restored / "state" / "mailbot.db"
    assert count(restored_db, "SELECT count(*) FROM messages") == copied + 1
    assert count(restored_db, "SELECT count(*) FROM messages WHERE outcome = 'accepted'") == copied + 1
