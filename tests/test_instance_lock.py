"""One writer per state directory: commands that write refuse while another instance runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailbot.cli import main
from mailbot.state.lock import InstanceLocked, hold_instance_lock, hold_write_lock
from mailbot.state.store import State


def test_poll_refuses_while_another_instance_holds_the_state_dir_and_creates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(state))
    with hold_instance_lock(state):
        result = CliRunner().invoke(main, ["poll"])
    assert result.exit_code == 1
    assert result.output == f"mailbot：另一个 mailbot 正在使用 {state}（进程号 {os.getpid()}），同一数据目录只能运行一个。\n"
    assert not (state / "mailbot.db").exists()


def test_the_lock_is_released_when_the_holder_finishes(tmp_path: Path) -> None:
    with hold_instance_lock(tmp_path):
        with pytest.raises(InstanceLocked):
            with hold_instance_lock(tmp_path):
                pass
    with hold_instance_lock(tmp_path):
        pass


def test_two_polls_in_a_row_each_take_and_release_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()
    assert runner.invoke(main, ["poll"]).exit_code == 0
    assert runner.invoke(main, ["poll"]).exit_code == 0


def test_purge_waits_for_the_write_lock_not_for_the_daemon_and_gives_up_changing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state_dir = tmp_path / "state"
    state = State(state_dir)
    try:
        with state.transaction():
            state.add_event("message_recorded", {"n": 1}, actor="daemon", rules_version="r@1")
    finally:
        state.close()
    monkeypatch.chdir(tmp_path)  # no stray mailbot.toml
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(state_dir))
    monkeypatch.setenv("MAILBOT_SCHEDULE__STAFF_WAIT_SECONDS", "1")
    with hold_instance_lock(state_dir), hold_write_lock(state_dir):
        files = {p.name: p.read_bytes() for p in state_dir.iterdir() if p.suffix != ".lock"}
        result = CliRunner().invoke(main, ["purge", "--before", "2099-01-01", "--staff", "王老师"])
    assert (result.exit_code, result.output) == (
        1, "后台服务正在处理邮件，请稍候…\n未执行：后台服务处理邮件已超过1秒仍未完成，本次没有作任何改动。"
           "请过几分钟再试；如果一直如此，请联系技术人员。\n")
    assert {p.name: p.read_bytes() for p in state_dir.iterdir() if p.suffix != ".lock"} == files
    with hold_instance_lock(state_dir):  # the daemon idle: purge goes ahead
        result = CliRunner().invoke(main, ["purge", "--before", "2099-01-01", "--staff", "王老师"])
    assert result.exit_code == 0, result.output
