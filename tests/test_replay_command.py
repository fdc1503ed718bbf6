"""`mailbot replay FILE.eml`: the whole pipeline on one stored message, dry run by default."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from forms_factory import make_annex3_xlsx, nominee
from mail_factory import make_mail
from mailbot.cli import main


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _eml(env: Path) -> Path:
    path = env / "problem.eml"
    path.write_bytes(make_mail(attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(1), nominee(2, phone="12")]))]))
    return path


def test_dry_run_replay_prints_decision_and_reply_and_records_nothing(env: Path) -> None:
    result = CliRunner().invoke(main, ["replay", str(_eml(env)), "--arrived", "2020-11-05T10:00"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "处理结果：需修改"
    assert lines[1] == "--- 回复 wang@zjxx.edu.cn：Re: 报名表【需修改1处｜回执 zhejiang-2020-1x-000001】"
    assert [line for line in lines if line.startswith("1. 「")] == [
        "1. 「报名表.xlsx」：第5行（李四）“手机”“**”（2位）不是有效的11位中国大陆手机号码，请填写本人手机号（不加区号、不填座机）。"]
    verify = CliRunner().invoke(main, ["verify"])
    assert (verify.exit_code, verify.output.splitlines()[0], verify.output.splitlines()[-1]) == (
        0, "数据库完整性：正常；审计链：完好（0条事件）", "验证通过：事件日志能解释全部数据；审计链头 （日志为空）")


def test_replay_for_real_records_once_and_refuses_a_second_time(env: Path) -> None:
    eml = _eml(env)
    first = CliRunner().invoke(main, ["replay", "--no-dry-run", str(eml), "--arrived", "2020-11-05T10:00+08:00"])
    assert first.exit_code == 0, first.output
    assert len(list((env / "state" / "outbox").glob("*-correction.eml"))) == 1
    second = CliRunner().invoke(main, ["replay", "--no-dry-run", str(eml)])
    assert (second.exit_code, second.output) == (0, "这封邮件已作为第1号邮件登记过（需修改），本次不再登记。\n")
    assert len(list((env / "state" / "outbox").glob("*.eml"))) == 1


def test_replay_judges_the_deadline_by_the_given_arrival_time(env: Path) -> None:
    result = CliRunner().invoke(main, ["replay", str(_eml(env)), "--arrived", "2020-11-10T00:00:01+08:00"])
    assert result.output.splitlines()[0] == "处理结果：逾期"


def test_an_xls_form_with_errors_gets_an_xlsx_copy_with_the_cells_to_fix_highlighted(env: Path) -> None:
    import email
    from email import policy
    from io import BytesIO

    from openpyxl import load_workbook

    xls = (Path(__file__).parent / "fixtures" / "bad_rows.lo.xls").read_bytes()  # saved by LibreOffice
    eml = env / "xls.eml"
    eml.write_bytes(make_mail(client="163", attachments=[("报名表.xls", xls)]))
    result = CliRunner().invoke(main, ["replay", "--no-dry-run", str(eml), "--arrived", "2020-11-05T10:00+08:00"])
    assert result.exit_code == 0, result.output
    (reply,) = (env / "state" / "outbox").glob("*-correction.eml")
    msg = email.message_from_bytes(reply.read_bytes(), policy=policy.default)
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "报名表-需修改.xlsx"
    ws = load_workbook(BytesIO(attachment.get_content())).active
    marked = sorted(c.coordinate for row in ws.iter_rows() for c in row if c.comment is not None)
    assert marked == ["B4", "C7", "F5", "G6", "H5"]
    assert (ws["G6"].value, ws["G6"].data_type) == ("330106199001011234", "s")  # identity number kept as text
    assert ws["C4"].value == "张三"


def test_a_message_over_its_time_budget_is_answered_with_the_reason_not_read_forever(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILBOT_LIMITS__MAX_SECONDS_PER_MESSAGE", "0.000001")
    result = CliRunner().invoke(main, ["replay", str(_eml(env)), "--arrived", "2020-11-05T10:00+08:00"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "处理结果：无法读取"
    assert [line for line in lines if line.startswith("1. ")] == [
        "1. 邮件附件过多或过大，未能在1e-06秒内处理完，请只附上附件3报名表（Excel 文件）重新发送。"]
