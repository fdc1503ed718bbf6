"""One writer per state directory: commands that write refuse while another instance runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailbot.cli import main
from mailbot.state.lock import InstanceLocked, hold_instance_lock


def test_poll_refuses_while_another_instance_holds_the_state_dir_and_creates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(state))
    with hold_instance_lock(state):
        result = CliRunner().invoke(main, ["poll"])
    assert result.exit_code == 1
    assert f"another mailbot is running on {state} (pid {os.getpid()})" in result.output
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
