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
    lines = text.splitlines()
    assert lines[0] == "1+X证书制度试点师资培训 报名日报"
    assert [line for line in lines if line.startswith(("- 物流管理", "- 合计"))] == [
        "- 物流管理职业技能等级证书（浙江经济职业技术学院）：2/50，候补0人", "- 合计：8/750，候补0人"]
    assert not re.search(r"(?<!\d)\d{17}[\dX](?!\d)", text)
    assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", text)


def test_digest_send_queues_one_copy_per_staff_address_and_sends_it(demo_state: Path) -> None:
    result = CliRunner().invoke(main, ["digest", "--send"])
    assert result.exit_code == 0, result.output
    assert result.output == "digest queued to 2 staff address(es)\n"
    files = sorted((demo_state / "outbox").glob("*-digest.eml"))
    assert len(files) == 2
    msg = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["To"] == "peixun@zjut.edu.cn, audit@zjut.edu.cn"  # one envelope per address, one header
