"""`mailbot demo`: the README's first command shows the whole job on the embedded default."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from click.testing import CliRunner

from mailbot.cli import main
from mailbot.state.store import State


def test_demo_fills_database_writes_replies_and_moves_the_mail(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--dir", str(target)])
    assert result.exit_code == 0, result.output
    state = State.readonly(target / "mailbot.db")
    outcomes = [(r["sender"], r["outcome"]) for r in state.db.query("SELECT sender, outcome FROM messages ORDER BY id")]
    assert outcomes == [
        ("wang@zjjd.edu.cn", "accepted"), ("li@hzzy.edu.cn", "correction"), ("zhao@nbzy.edu.cn", "accepted"),
        ("chen@163.com", "accepted"), ("sun@zz.example.cn", "redirect"), ("zhou@qq.com", "how_to_register"),
        ("ooo@zjjd.edu.cn", "ignored"), ("li@hzzy.edu.cn", "accepted"), ("office@wzzy.edu.cn", "accepted"),
        ("qian@sxzy.edu.cn", "late"),
    ]
    replies = sorted(p.name for p in (target / "outbox").glob("*.eml"))
    assert replies == ["000001-acceptance.eml", "000002-correction.eml", "000003-acceptance.eml",
                       "000004-acceptance.eml", "000005-redirect.eml", "000006-how_to_register.eml",
                       "000007-acceptance.eml", "000008-acceptance.eml", "000009-late.eml"]
    resubmitted = email.message_from_bytes((target / "outbox" / "000007-acceptance.eml").read_bytes(),
                                           policy=policy.default)
    assert resubmitted["To"] == "李老师 <li@hzzy.edu.cn>"
    assert [line for line in resubmitted.get_body(("plain",)).get_content().splitlines() if line.startswith("- ")] == [
        "- 新增：陈七（3301**********0112），物流管理职业技能等级证书"]
    assert list((target / "maildir" / "new").iterdir()) == []
    assert len(list((target / "maildir" / ".Processed" / "cur").iterdir())) == 10
    shown = result.output.splitlines()
    assert f"回复（.eml）：{target / 'outbox'}" in shown
    for line in ("登记10封，写出回复9封",
                 "  zhejiang-2020-1x-000002    11-02 10:15  li@hzzy.edu.cn         需修改  回复：需修改",
                 "  zhejiang-2020-1x-000007    11-05 11:01  ooo@zjjd.edu.cn        已忽略（自动回复/退信等）  回复：-",
                 "名额（计划名额内/总名额，候补）：", "  物流管理职业技能等级证书：2/50，候补0人"):
        assert line in shown


def test_demo_refuses_to_wipe_a_directory_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert (tmp_path / "precious.txt").read_text() == "keep me"
