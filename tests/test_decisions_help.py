"""The staff decision commands and ``mailbot history`` speak Chinese: help, headings, and the
refusal of a decision without the staff member's name or a reason."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from mailbot.cli import main

# Words staff type (commands, options, values) are the only latin words the help may show.
TYPED = {"mailbot", "decide", "admit", "withdraw", "substitute", "move", "seats", "contact", "release", "resend",
         "resolve", "answer", "close", "history", "id", "number", "new", "name", "receipt", "program", "school",
         "address", "item", "text", "file", "staff", "reason", "config", "help", "h", "systemctl", "stop", "toml", "zhejiang", "x", "json"}
COMMANDS = ["admit", "withdraw", "substitute", "move", "seats", "contact", "release", "resend", "resolve", "answer",
            "close"]


@pytest.mark.parametrize("command", [["decide"], ["history"], *(["decide", c] for c in COMMANDS)])
def test_the_decision_commands_help_speaks_chinese(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], prog_name="mailbot")
    assert result.exit_code == 0
    latin = {w.lower() for w in re.findall(r"[A-Za-z]+", result.output)}
    assert latin - TYPED == set(), result.output


@pytest.mark.parametrize(("args", "message"), [
    (["withdraw", "--id-number", "330106199001011234", "--reason", "本人放弃"], "未执行：请用 --staff 填写您的姓名"),
    (["withdraw", "--id-number", "330106199001011234", "--staff", "王老师"], "未执行：请用 --reason 填写理由"),
    (["withdraw", "--staff", "王老师", "--reason", "本人放弃"], "未执行：请用 --id-number 填写身份证号"),
    (["seats", "--program", "物流管理职业技能等级证书", "--staff", "王老师", "--reason", "x"], "未执行：请用 --seats 填写新的名额数"),
])
def test_a_decision_missing_a_required_option_is_refused_in_chinese(args: list[str], message: str, tmp_path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["decide", *args])
    assert (result.exit_code, result.output) == (2, message + "\n")
    assert not (tmp_path / "state" / "mailbot.db").exists()


def test_a_decision_without_a_database_is_refused_in_chinese_and_creates_none(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["decide", "withdraw", "--id-number", "330106199001011234",
                                       "--staff", "王老师", "--reason", "本人放弃"])
    db = tmp_path / "state" / "mailbot.db"
    assert (result.exit_code, result.output) == (
        2, f"未执行：找不到报名数据库 {db}（尚未收取过邮件，或 --config 指定的配置不对）\n")
    assert not db.exists()
