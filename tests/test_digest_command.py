"""`mailbot digest`: staff see what happened, seats per program and what needs a person."""

from __future__ import annotations

import email
import re
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailbot.cli import main


@pytest.fixture()
def demo_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "demo"
    assert CliRunner().invoke(main, ["demo", "--dir", str(target)]).exit_code == 0
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(target))
    monkeypatch.setenv("MAILBOT_STAFF_ADDRESSES", '["peixun@zjut.edu.cn", "audit@zjut.edu.cn"]')
    return target


def test_digest_prints_outcomes_seats_and_attention_items_masked(demo_state: Path) -> None:
    result = CliRunner().invoke(main, ["digest"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "报名日报" in text or "日报" in text
    assert "物流管理职业技能等级证书" in text and "2/50" in text
    assert not re.search(r"(?<!\d)\d{17}[\dX](?!\d)", text)
    assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", text)


def test_digest_send_queues_one_copy_per_staff_address_and_sends_it(demo_state: Path) -> None:
    result = CliRunner().invoke(main, ["digest", "--send"])
    assert result.exit_code == 0, result.output
    assert "digest queued to 2 staff address(es)" in result.output
    files = sorted((demo_state / "outbox").glob("*-digest.eml"))
    assert len(files) == 2
    msg = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "peixun@zjut.edu.cn" in msg["To"]
