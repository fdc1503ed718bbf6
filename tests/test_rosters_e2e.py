"""Rosters from a campaign built through the real pipeline (Dovecot in, aiosmtpd out):
``mailbot export roster`` read back row by row with csv and openpyxl, and ``mailbot rosters
send`` mailing each host institution its roster."""

from __future__ import annotations

import csv
import email
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from daemon_harness import write_config
from forms_factory import Nominee, make_annex3_csv, make_annex3_xlsx, nominee
from intake_harness import open_intake, rules_with_seats, shanghai
from mail_factory import make_mail
from mailbot.cli import main
from mailbot.config import load_settings
from mailbot.state.store import State
from servers import SmtpSink

pytestmark = pytest.mark.servers

BIM = "建筑信息模型（BIM）职业技能等级证书"
WEB = "Web前端开发职业技能等级证书"
LOGISTICS = "物流管理职业技能等级证书"
DRAWING = "建筑工程识图职业技能等级证书"
SCHOOL_A, SCHOOL_B, SCHOOL_C = "浙江某某职业技术学院", "杭州某某职业技术学院", "宁波某某职业技术学院"
SCHOOL_D = "温州某某职业技术学院"  # reported no demand for logistics: its teacher is held
HEADER = ["program", "host_institution", "institution", "name", "gender", "position", "email",
          "id_number", "phone", "status", "waitlist_position", "arrived_at", "receipt"]
XLSX_HEADER = ("所报证书培训班名称", "承办单位", "填报单位", "姓名", "性别", "职务", "电子邮箱", "身份证号",
               "手机", "状态", "候补顺序", "报名邮件到达时间", "回执号")

# School A nominates, among others, people whose name or position a spreadsheet would run.
N1, N2 = nominee(1, program="物流管理"), nominee(2, program="物流管理")
N3 = nominee(3, program="物流管理", name='=HYPERLINK("http://x","点我")', position="+1")
N4 = nominee(4, program="物流管理", name="@x", position="-2")
N7 = nominee(7, program=BIM)
N8 = nominee(8, program="建筑工程识图")
N9 = nominee(9, program="Web前端开发")
N16 = nominee(16, program="物流管理")  # identity number ends in X
N5 = nominee(5, program="物流管理")
N11 = nominee(11, program="物流管理")


def _rules(tmp_path: Path) -> Path:
    """Two seats per program; the logistics and BIM hosts have real addresses, 宁波职业技术学院
    none, the others keep the bundled placeholders; school D reported no demand for logistics."""
    path = rules_with_seats(tmp_path, 2)
    text = path.read_text(encoding="utf-8")
    for old, new in (('"roster-zjtie@example.edu.cn"', '"wuliu@zjtie.edu.cn"'),
                     ('"roster-zjut@example.edu.cn"', '"bim@zjut.edu.cn"'),
                     ('"roster-nbpt@example.edu.cn"', '""')):
        assert old in text
        text = text.replace(old, new)
    text += f'\n[[demand]]\ninstitution = "{SCHOOL_D}"\nprogram = "物流管理"\nteachers = 0\n'
    path.write_text(text, encoding="utf-8")
    return path


def _deliver(dovecot, account, sender: str, attachment: tuple[str, bytes], when) -> None:
    dovecot.append(make_mail(sender=sender, attachments=[attachment]), when, user=account.user)


@dataclass(frozen=True)
class Campaign:
    dir: Path
    config: Path
    sink: SmtpSink

    def cli(self, *args: str):
        return CliRunner().invoke(main, [*args, "--config", str(self.config)])


def _poll(config: Path) -> None:
    parts = open_intake(load_settings(config))
    try:
        parts.intake.poll_once()
    finally:
        parts.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory, dovecot) -> Iterator[tuple[Path, object]]:
    """The campaign's state after four mails, built once: A's list, B's list (one person
    already A's: a conflict), D's teacher (held: over D's reported demand), A's shorter list
    (N2 withdrawn, N3 promoted)."""
    tmp = tmp_path_factory.mktemp("campaign")
    account = dovecot.add_user()
    with SmtpSink() as sink:
        config = write_config(tmp, account, sink, **{"": {"rules": _rules(tmp)}})
        _deliver(dovecot, account, "wang@zjxx.edu.cn",
                 ("报名表.csv", make_annex3_csv([N1, N2, N3, N4, N7, N8, N9], institution=SCHOOL_A)),
                 shanghai(2020, 11, 2, 10, 0))
        _deliver(dovecot, account, "li@hzxx.edu.cn",
                 ("报名表.xlsx", make_annex3_xlsx([N16, nominee(1, program=BIM)], institution=SCHOOL_B)),
                 shanghai(2020, 11, 3, 9, 0))
        _deliver(dovecot, account, "chen@wzxx.edu.cn",
                 ("报名表.xlsx", make_annex3_xlsx([N11], institution=SCHOOL_D)), shanghai(2020, 11, 3, 12, 0))
        _deliver(dovecot, account, "wang@zjxx.edu.cn",
                 ("报名表（修改）.csv", make_annex3_csv([N1, N3, N4, N7, N8, N9], institution=SCHOOL_A)),
                 shanghai(2020, 11, 4, 9, 0))
        _poll(config)
    yield tmp, account


@pytest.fixture()
def campaign(built, tmp_path: Path, smtp_sink: SmtpSink) -> Campaign:
    """A private copy of the built state, its config pointing at this test's SMTP sink."""
    source, account = built
    shutil.copytree(source / "state", tmp_path / "state")
    shutil.copy(source / "rules.toml", tmp_path / "rules.toml")
    config = write_config(tmp_path, account, smtp_sink, **{"": {"rules": tmp_path / "rules.toml"}})
    return Campaign(tmp_path, config, smtp_sink)


def _line(n: Nominee, program: str, host: str, institution: str, status: str, position: str,
          arrived: str, receipt: int) -> list[str]:
    return [program, host, institution, str(n.name), str(n.gender), str(n.position), str(n.email),
            str(n.id_number), str(n.phone), status, position, arrived, f"zhejiang-2020-1x-{receipt:06d}"]


A_ARRIVED, B_ARRIVED = "2020-11-02T10:00:00+08:00", "2020-11-03T09:00:00+08:00"
BIM_N7 = _line(N7, BIM, "浙江工业大学", SCHOOL_A, "seated", "", A_ARRIVED, 1)
WEB_N9 = _line(N9, WEB, "浙江机电职业技术学院", SCHOOL_A, "seated", "", A_ARRIVED, 1)
LOG_N1 = _line(N1, LOGISTICS, "浙江经济职业技术学院", SCHOOL_A, "seated", "", A_ARRIVED, 1)
LOG_N3 = _line(N3, LOGISTICS, "浙江经济职业技术学院", SCHOOL_A, "seated", "", A_ARRIVED, 1)
LOG_N4 = _line(N4, LOGISTICS, "浙江经济职业技术学院", SCHOOL_A, "waiting", "1", A_ARRIVED, 1)
LOG_N16 = _line(N16, LOGISTICS, "浙江经济职业技术学院", SCHOOL_B, "waiting", "2", B_ARRIVED, 2)
LOG_N2 = _line(N2, LOGISTICS, "浙江经济职业技术学院", SCHOOL_A, "withdrawn", "", A_ARRIVED, 1)
LOG_N11 = _line(N11, LOGISTICS, "浙江经济职业技术学院", SCHOOL_D, "held", "", "2020-11-03T12:00:00+08:00", 3)
DRAW_N8 = _line(N8, DRAWING, "宁波职业技术学院", SCHOOL_A, "seated", "", A_ARRIVED, 1)


def _csv_safe(row: list[str]) -> list[str]:
    return ["'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v for v in row]


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_roster_lists_every_nominee_in_program_and_status_order_with_full_numbers(campaign) -> None:
    result = campaign.cli("export", "roster")
    assert result.exit_code == 0, result.output
    assert _csv_rows(result.output) == [HEADER] + [_csv_safe(r) for r in (
        BIM_N7, WEB_N9, LOG_N1, LOG_N3, LOG_N11, LOG_N4, LOG_N16, LOG_N2, DRAW_N8)]


def test_a_formula_looking_value_is_written_with_a_leading_quote_and_nothing_else_changes(campaign) -> None:
    rows = _csv_rows(campaign.cli("export", "roster", "--status", "waiting").output)
    assert [(r[3], r[5]) for r in rows[1:]] == [("'@x", "'-2"), (str(N16.name), str(N16.position))]
    rows = _csv_rows(campaign.cli("export", "roster", "--program", "12", "--status", "seated").output)
    assert [(r[3], r[5]) for r in rows[1:]] == [(str(N1.name), "讲师"), ("'" + str(N3.name), "'+1")]


def test_the_roster_filters_by_program_and_by_status(campaign) -> None:
    def rows(*args: str) -> list[list[str]]:
        result = campaign.cli("export", "roster", *args)
        assert result.exit_code == 0, result.output
        return _csv_rows(result.output)[1:]

    assert rows("--program", "物流管理") == [_csv_safe(r) for r in (LOG_N1, LOG_N3, LOG_N11, LOG_N4, LOG_N16, LOG_N2)]
    assert rows("--program", "logistics", "--status", "waiting") == [_csv_safe(LOG_N4), LOG_N16]
    assert rows("--status", "withdrawn") == [LOG_N2]
    assert rows("--status", "held") == [LOG_N11]
    assert rows("--program", BIM) == [BIM_N7]


def test_a_conflicting_row_is_a_finding_not_a_roster_line(campaign) -> None:
    state = State.readonly(campaign.dir / "state" / "mailbot.db")
    statuses = {r["status"] for r in state.query("SELECT status FROM nominees")}
    conflicts = [r["summary"] for r in state.query("SELECT summary FROM staff_items WHERE kind = 'conflict'")]
    state.close()
    assert "conflict" not in statuses  # a refused row is a finding and a staff item, not a nominee
    assert [f"（{BIM}，回执" in summary for summary in conflicts] == [True]
    rows = _csv_rows(campaign.cli("export", "roster", "--program", "bim").output)[1:]
    assert rows == [BIM_N7]


def _xlsx_rows(ws) -> list[tuple]:
    return [tuple(row) for row in ws.iter_rows(values_only=True)]


def _xlsx_line(line: list[str]) -> tuple:
    status = {"seated": "计划名额内", "waiting": "候补", "withdrawn": "已撤回", "held": "待审核"}[line[9]]
    arrived = line[11][:19].replace("T", " ")
    return (*line[:9], status, int(line[10]) if line[10] else None, arrived, line[12])


def test_xlsx_roster_has_one_sheet_per_program_with_chinese_labels_and_text_cells(campaign) -> None:
    out = campaign.dir / "名单.xlsx"
    result = campaign.cli("export", "roster", "--format", "xlsx", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.output == f"已写入 {out}：共9人（计划名额内5人，待审核1人，候补2人，已撤回1人）。\n"
    assert out.stat().st_mode & 0o777 == 0o600
    wb = load_workbook(out)
    assert wb.sheetnames == ["建筑信息模型（BIM）", "Web前端开发", "物流管理", "建筑工程识图"]
    assert _xlsx_rows(wb["建筑信息模型（BIM）"]) == [XLSX_HEADER, _xlsx_line(BIM_N7)]
    assert _xlsx_rows(wb["物流管理"]) == [XLSX_HEADER] + [_xlsx_line(r) for r in (LOG_N1, LOG_N3, LOG_N11, LOG_N4, LOG_N16, LOG_N2)]
    cells = [c for ws in wb.worksheets for row in ws.iter_rows(min_row=2) for c in row if c.value is not None]
    assert {c.data_type for c in cells if c.column != 11} == {"s"}  # every value but the position is text
    assert {c.number_format for c in cells if c.column in (8, 9)} == {"@"}
    quoted = sorted(c.value for c in cells if c.quotePrefix)
    assert quoted == sorted([str(N3.name), "+1", "@x", "-2"])


def test_xlsx_ids_stay_text_with_their_trailing_x(campaign) -> None:
    out = campaign.dir / "候补.xlsx"
    assert campaign.cli("export", "roster", "--program", "物流管理", "--status", "waiting",
                        "--format", "xlsx", "--out", str(out)).exit_code == 0
    ws = load_workbook(out)["物流管理"]
    assert str(N16.id_number).endswith("X")
    assert [(c.value, c.data_type) for c in ws["H"][1:]] == [(str(N4.id_number), "s"), (str(N16.id_number), "s")]


def test_export_speaks_chinese_when_staff_get_it_wrong(campaign) -> None:
    result = campaign.cli("export", "roster", "--status", "accepted")
    assert (result.exit_code, result.output) == (
        2, "mailbot：没有“accepted”这种状态。可用的状态：seated（计划名额内）、held（待审核）、waiting（候补）、"
           "withdrawn（已撤回）\n")
    result = campaign.cli("export", "roster", "--format", "xlsx")
    assert (result.exit_code, result.output) == (2, "mailbot：xlsx 格式需要用 --out 指定文件名，例如 --out 名单.xlsx\n")
    result = campaign.cli("export", "roster", "--program", "物流")
    assert result.exit_code == 2
    assert result.output.startswith("mailbot：没有名为“物流”的培训项目。可用的项目（编号、简称或代码均可）：1. 建筑信息模型（BIM）（bim）；")


DRY_RUN = """\
（试运行：以下内容不会发送。确认无误后加 --no-dry-run --staff 姓名 真正发送。）
【将发送】浙江工业大学  收件地址：bim@zjut.edu.cn
    建筑信息模型（BIM）职业技能等级证书：计划名额内1人，待审核0人，候补0人，已撤回0人
    数字创意建模职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
【收件地址仍是示例地址，不发送（请在规则文件的 [[hosts]] 中改为真实地址）】浙江机电职业技术学院  收件地址：roster-zjme@example.edu.cn
    数控车铣加工职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
    Web前端开发职业技能等级证书：计划名额内1人，待审核0人，候补0人，已撤回0人
    老年照护职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
【暂无计划名额内或候补的教师，不发送】杭州职业技术学院  收件地址：roster-hzvtc@example.edu.cn
    汽车运用与维修职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
    智能新能源汽车职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
【暂无计划名额内或候补的教师，不发送】浙江金融职业技术学院  收件地址：roster-zfc@example.edu.cn
    跨境电商B2B数据运营职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
    财务共享服务职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
【暂无计划名额内或候补的教师，不发送】浙江经贸职业技术学院  收件地址：roster-zjiet@example.edu.cn
    网店运营推广职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
    智能财税职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
【将发送】浙江经济职业技术学院  收件地址：wuliu@zjtie.edu.cn
    物流管理职业技能等级证书：计划名额内2人，待审核1人，候补2人，已撤回1人
【暂无计划名额内或候补的教师，不发送】浙江旅游职业技术学院  收件地址：roster-tourzj@example.edu.cn
    研学旅行策划与管理（EEPM）职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
【暂无计划名额内或候补的教师，不发送】金华职业技术学院  收件地址：roster-jhc@example.edu.cn
    工业机器人操作与运维职业技能等级证书：计划名额内0人，待审核0人，候补0人，已撤回0人
【未填写收件地址，不发送（请在规则文件的 [[hosts]] 中填写）】宁波职业技术学院  收件地址：（未填写）
    建筑工程识图职业技能等级证书：计划名额内1人，待审核0人，候补0人，已撤回0人
共9个承办单位，将发送2封。
"""


def _roster_events(campaign: Campaign) -> list[tuple[str, dict]]:
    state = State.readonly(campaign.dir / "state" / "mailbot.db")
    try:
        return [(r["actor"], json.loads(r["detail"])) for r in state.query(
            "SELECT actor, detail FROM events WHERE kind = 'roster_queued' ORDER BY id")]
    finally:
        state.close()


def test_a_dry_run_shows_every_host_and_sends_and_records_nothing(campaign) -> None:
    result = campaign.cli("rosters", "send")
    assert (result.exit_code, result.output) == (0, DRY_RUN)
    assert _roster_events(campaign) == []
    assert campaign.sink.messages == []  # the command sends before it returns


def _attachment(raw: bytes) -> tuple[str, str, str, dict[str, list[tuple]]]:
    """(To, subject, attachment name, rows per sheet) of a roster mail."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    (part,) = list(msg.iter_attachments())
    wb = load_workbook(io.BytesIO(part.get_content()))
    return str(msg["To"]), str(msg["Subject"]), part.get_filename(), {ws.title: _xlsx_rows(ws) for ws in wb.worksheets}


def test_send_mails_each_host_with_an_address_its_seated_and_waiting_nominees(campaign) -> None:
    result = campaign.cli("rosters", "send", "--no-dry-run", "--staff", "王老师")
    assert result.exit_code == 0, result.output
    assert result.output.endswith("共9个承办单位，已发送2封。\n")
    mails = campaign.sink.wait_for(2)
    assert sorted(m.rcpt_tos for m in mails) == [("bim@zjut.edu.cn",), ("wuliu@zjtie.edu.cn",)]
    by_to = {m.rcpt_tos[0]: _attachment(m.raw) for m in mails}
    to, subject, name, sheets = by_to["wuliu@zjtie.edu.cn"]
    assert name.startswith("浙江经济职业技术学院-参训名单-") and name.endswith(".xlsx")
    assert subject.startswith("【参训名单】1+X证书制度试点师资培训：浙江经济职业技术学院（计划名额内2人，候补2人，")
    assert sheets == {"物流管理": [XLSX_HEADER] + [_xlsx_line(r) for r in (LOG_N1, LOG_N3, LOG_N4, LOG_N16)]}
    to, subject, name, sheets = by_to["bim@zjut.edu.cn"]
    assert sheets == {"建筑信息模型（BIM）": [XLSX_HEADER, _xlsx_line(BIM_N7)], "数字创意建模": [XLSX_HEADER]}
    events = _roster_events(campaign)
    assert [(actor, d["host"], d["to"], d["programs"], d["attached"]) for actor, d in events] == [
        ("staff:王老师", "浙江工业大学", "bim@zjut.edu.cn", [BIM, "数字创意建模职业技能等级证书"], 1),
        ("staff:王老师", "浙江经济职业技术学院", "wuliu@zjtie.edu.cn", [LOGISTICS], 4),
    ]
    assert events[1][1]["counts"] == {LOGISTICS: {"seated": 2, "held": 1, "waiting": 2, "withdrawn": 1}}
    assert campaign.cli("verify").exit_code == 0


def test_the_mail_body_is_chinese_and_shows_no_personal_numbers(campaign) -> None:
    assert campaign.cli("rosters", "send", "--program", "物流管理", "--no-dry-run", "--staff", "王老师").exit_code == 0
    (mail,) = campaign.sink.wait_for(1)
    msg = email.message_from_bytes(mail.raw, policy=policy.default)
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "物流管理职业技能等级证书：计划名额内2人，候补2人" in text
    for n in (N1, N3, N4, N16):
        assert str(n.id_number) not in text and str(n.phone) not in text


def test_a_second_run_sends_only_rosters_that_changed_and_again_sends_all(campaign, dovecot) -> None:
    assert campaign.cli("rosters", "send", "--no-dry-run", "--staff", "王老师").exit_code == 0
    assert len(campaign.sink.wait_for(2)) == 2
    campaign.sink.clear()

    result = campaign.cli("rosters", "send", "--no-dry-run", "--staff", "王老师")
    assert result.exit_code == 0, result.output
    assert "【名单与上次发送的相同，不重发（如需重发，加 --again）】浙江经济职业技术学院  收件地址：wuliu@zjtie.edu.cn" in result.output
    assert result.output.endswith("共9个承办单位，已发送0封。\n")
    assert campaign.sink.messages == []  # the command sends before it returns

    # a new nominee for logistics: only that host's roster changed
    dovecot.append(make_mail(sender="zhao@nbxx.edu.cn", attachments=[
        ("报名表.xlsx", make_annex3_xlsx([N5], institution=SCHOOL_C))]), shanghai(2020, 11, 5, 9, 0),
        user=load_settings(campaign.config).imap.user)
    _poll(campaign.config)
    campaign.sink.clear()
    assert campaign.cli("rosters", "send", "--no-dry-run", "--staff", "王老师").exit_code == 0
    (mail,) = campaign.sink.wait_for(1)
    assert mail.rcpt_tos == ("wuliu@zjtie.edu.cn",)
    assert _attachment(mail.raw)[3]["物流管理"][-1][3] == str(N5.name)
    campaign.sink.clear()

    assert campaign.cli("rosters", "send", "--no-dry-run", "--staff", "王老师", "--again").exit_code == 0
    assert sorted(m.rcpt_tos for m in campaign.sink.wait_for(2)) == [("bim@zjut.edu.cn",), ("wuliu@zjtie.edu.cn",)]
    assert len(_roster_events(campaign)) == 5


def test_a_roster_mail_that_failed_is_sent_again_on_the_next_run(campaign) -> None:
    campaign.sink.reject_next(1)
    result = campaign.cli("rosters", "send", "--program", "bim", "--no-dry-run", "--staff", "王老师")
    assert result.exit_code == 1
    assert result.output.endswith("共1个承办单位，已发送0封，1封未能发出（将在 mailbot 下次运行时重试，或见日报“需要人工处理”）。\n")
    result = campaign.cli("rosters", "send", "--program", "bim", "--no-dry-run", "--staff", "王老师")
    assert (result.exit_code, result.output.splitlines()[-1]) == (0, "共1个承办单位，已发送1封。")
    (mail,) = campaign.sink.wait_for(1)
    assert mail.rcpt_tos == ("bim@zjut.edu.cn",)


def test_sending_needs_the_staff_name(campaign) -> None:
    result = campaign.cli("rosters", "send", "--no-dry-run")
    assert (result.exit_code, result.output) == (2, "mailbot：真正发送时请用 --staff 填写您的姓名（记入审计日志）。\n")
    assert _roster_events(campaign) == []


def test_sending_while_the_service_stays_busy_is_refused_in_chinese_and_changes_nothing(
        campaign, monkeypatch) -> None:
    from mailbot.state.lock import hold_instance_lock, hold_write_lock

    monkeypatch.setenv("MAILBOT_SCHEDULE__STAFF_WAIT_SECONDS", "1")
    with hold_instance_lock(campaign.dir / "state"), hold_write_lock(campaign.dir / "state"):
        result = campaign.cli("rosters", "send", "--no-dry-run", "--staff", "王老师")
    assert (result.exit_code, result.output) == (
        1, "后台服务正在处理邮件，请稍候…\n未执行：后台服务处理邮件已超过1秒仍未完成，本次没有作任何改动。"
           "请过几分钟再试；如果一直如此，请联系技术人员。\n")
    assert _roster_events(campaign) == []
    assert campaign.sink.messages == []


def test_sending_while_the_service_runs_idle_goes_ahead(campaign) -> None:
    from mailbot.state.lock import hold_instance_lock

    with hold_instance_lock(campaign.dir / "state"):  # the daemon's lock: held for its whole life
        result = campaign.cli("rosters", "send", "--program", "bim", "--no-dry-run", "--staff", "王老师")
    assert (result.exit_code, result.output.splitlines()[-1]) == (0, "共1个承办单位，已发送1封。")
    assert [m.rcpt_tos for m in campaign.sink.wait_for(1)] == [("bim@zjut.edu.cn",)]


def test_a_corrected_host_address_gets_the_roster_even_when_it_did_not_change(campaign) -> None:
    assert campaign.cli("rosters", "send", "--program", "bim", "--no-dry-run", "--staff", "王老师").exit_code == 0
    rules = campaign.dir / "rules.toml"
    rules.write_text(rules.read_text(encoding="utf-8").replace('"bim@zjut.edu.cn"', '"peixun@zjut.edu.cn"'),
                     encoding="utf-8")
    result = campaign.cli("rosters", "send", "--program", "bim", "--no-dry-run", "--staff", "王老师")
    assert result.output.splitlines()[1] == "【将发送】浙江工业大学  收件地址：peixun@zjut.edu.cn"
    assert [m.rcpt_tos for m in campaign.sink.wait_for(2)] == [("bim@zjut.edu.cn",), ("peixun@zjut.edu.cn",)]


def test_a_csv_file_is_private_and_starts_with_a_bom_for_excel(campaign) -> None:
    out = campaign.dir / "名单.csv"
    result = campaign.cli("export", "roster", "--status", "withdrawn", "--out", str(out))
    assert (result.exit_code, result.output) == (0, f"已写入 {out}：共1人（已撤回1人）。\n")
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert _csv_rows(data.decode("utf-8-sig")) == [HEADER, LOG_N2]
    assert out.stat().st_mode & 0o777 == 0o600
