"""`mailbot digest` on a state built through the real pipeline (`mailbot poll` against Dovecot,
replies to the aiosmtpd sink): seats per program with waiting names, what changed since the last
digest, what needs a person, schools (and the expected ones still silent), poll health; all in
Chinese, masked, as text, as HTML (`--out`) and as the mail staff receive (`--send`)."""

from __future__ import annotations

import email
import io
import os
import re
import time
from email import policy
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from daemon_harness import write_config
from forms_factory import make_annex3_xlsx, nominee
from intake_harness import rules_with_seats, shanghai
from mail_factory import make_mail
from mailbot.cli import main
from mailbot.masking import mask_id, mask_phone
from mailbot.rules import load_rules
from servers import free_port

pytestmark = pytest.mark.servers

GOLDEN = Path(__file__).parent / "golden_replies"
STAFF = "peixun@zjut.edu.cn"
LOGISTICS = "物流管理职业技能等级证书"
SERIALS = range(1, 9)  # every nominee the scenario sends
# A time of the test run (not of the 2020 campaign): normalised in the golden file.
NOW_TIME_RE = re.compile(r"20(?!20)\d\d年\d{1,2}月\d{1,2}日 \d\d:\d\d")
# ASCII words the digest may print: the campaign's own names (rules), e-mail addresses,
# receipts and file names are removed before looking.
ADDRESS_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
RECEIPT_RE = re.compile(r"zhejiang-2020-1x-\d{6}")
FILENAME_RE = re.compile(r"[\w.-]+\.(?:xlsx|xls|docx|csv|zip)\b")
CHAIN_HEAD_RE = re.compile(r"(?:[0-9a-f]{8} ){7}[0-9a-f]{8}")  # the audit chain's head, for verify --head


def _config(tmp_path: Path, account, sink, *, imap_port: int | None = None, name: str = "mailbot.toml") -> Path:
    rules = rules_with_seats(tmp_path, 2)
    text = rules.read_text(encoding="utf-8").replace("institution_required = true", "institution_required = false")
    rules.write_text('expected_institutions = ["甲职业技术学院", "乙职业技术学院（盖章）", "庚职业技术学院"]\n' + text,
                     encoding="utf-8")
    return write_config(tmp_path, account, sink, name=name, **{
        "": {"rules": rules, "staff_addresses": [STAFF]},
        "imap": {"port": imap_port or account.port},
        "trust": {"authserv_ids": []}})  # as before: these tests are not about sender trust


def _form_mail(sender: str, institution: str, *serials: int, **row_changes: object) -> bytes:
    rows = [nominee(s, **row_changes) for s in serials]
    return make_mail(sender=sender, subject=f"报名表-{institution or '未填单位'}",
                     attachments=[("报名表.xlsx", make_annex3_xlsx(rows, institution=institution))])


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _next_second() -> None:
    """Start a new second: the database stores times to the second, and the digest's period
    begins at the second the last digest ended."""
    time.sleep(1.0 - time.time() % 1.0 + 0.02)


@pytest.fixture()
def campaign(tmp_path: Path, dovecot, imap_account, smtp_sink):
    """Two batches of mail through `mailbot poll`, with a digest sent between them.

    First batch (2 seats per program, 物流管理 for everyone): 甲 seats 张三 and 李四 (its reply is
    refused by the server, 550); 乙 puts 王五 and 赵六 on the waiting list; 丙 needs a correction
    and never answers; 丁 names 张三 again (a conflict with 甲); 戊 writes after the deadline; 己
    needs a correction and answers in the second batch; a form without 填报单位 from
    h@h.edu.cn is registered (the rules here do not require it).  One poll fails first (the
    mailbox port is closed).  Second batch: 甲 drops 李四 (王五 is promoted), 己 sends its
    corrected list (刘八 waits)."""
    config = _config(tmp_path, imap_account, smtp_sink)
    broken = _config(tmp_path, imap_account, smtp_sink, imap_port=free_port(), name="broken.toml")
    on_time = shanghai(2020, 11, 2, 9, 0)
    for raw, when in [
        (_form_mail("a@a.edu.cn", "甲职业技术学院", 1, 2), on_time),
        (_form_mail("b@b.edu.cn", "乙职业技术学院", 3, 4), on_time),
        (make_mail(sender="c@c.edu.cn", subject="报名表-丙职业技术学院", attachments=[("丙.xlsx", make_annex3_xlsx(
            [nominee(5, phone="1381234")], institution="丙职业技术学院"))]), on_time),
        (_form_mail("d@d.edu.cn", "丁职业技术学院", 1), on_time),
        (_form_mail("e@e.edu.cn", "戊职业技术学院", 7), shanghai(2020, 11, 10, 9, 0)),
        (make_mail(sender="f@f.edu.cn", subject="报名表-己职业技术学院", attachments=[("己.xlsx", make_annex3_xlsx(
            [nominee(6, phone="1381234")], institution="己职业技术学院"))]), on_time),
        (_form_mail("h@h.edu.cn", "", 8), on_time),
    ]:
        dovecot.append(raw, when, user=imap_account.user)
    smtp_sink.reject_next(1, code=550)  # 甲's acceptance
    failed = CliRunner().invoke(main, ["poll", "--config", str(broken)])
    assert failed.exit_code == 1
    _cli("poll", "--config", str(config))
    _next_second()
    assert _cli("digest", "--send", "--config", str(config)) == "日报已发送给1个工作人员邮箱\n"
    _next_second()
    dovecot.append(_form_mail("a@a.edu.cn", "甲职业技术学院", 1), shanghai(2020, 11, 3, 9, 0), user=imap_account.user)
    dovecot.append(_form_mail("f@f.edu.cn", "己职业技术学院", 6), shanghai(2020, 11, 3, 10, 0), user=imap_account.user)
    _cli("poll", "--config", str(config))
    return config


def _normalised(text: str) -> str:
    return CHAIN_HEAD_RE.sub("<链头>", NOW_TIME_RE.sub("<时间>", text))


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("MAILBOT_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def _section(text: str, title: str) -> list[str]:
    """The lines of one numbered section of the text digest (title line excluded)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"[一二三四五六七八九]、", lines[i])), len(lines))
    return [line for line in lines[start + 1:end] if line]


def _visible_html_text(html: str) -> str:
    body = re.sub(r"(?s)<style.*?</style>|<!--.*?-->", "", html)
    return re.sub(r"&nbsp;|&[a-z]+;", " ", re.sub(r"<[^>]+>", " ", body))


def _foreign_words(text: str) -> set[str]:
    """ASCII words left once addresses, receipts, file names, the chain head and the rules' own
    names are gone."""
    rules = load_rules()
    allowed = {w for t in (rules.campaign.title, *(p.name for p in rules.programs), *(p.host for p in rules.programs))
               for w in re.findall(r"[A-Za-z]+", t)}
    rest = CHAIN_HEAD_RE.sub(" ", FILENAME_RE.sub(" ", RECEIPT_RE.sub(" ", ADDRESS_RE.sub(" ", text))))
    return set(re.findall(r"[A-Za-z]+", rest)) - allowed


def test_the_digest_since_the_last_one_matches_its_golden_text(campaign) -> None:
    text = _cli("digest", "--config", str(campaign))
    _check_golden("digest_campaign", _normalised(text))


def test_the_seats_show_every_program_with_the_waiting_names_masked_in_order(campaign) -> None:
    text = _cli("digest", "--config", str(campaign))
    seats = _section(text, "一、各项目名额")
    assert len([line for line in seats if re.match(r"（\d+）", line)]) == 15
    logistics = seats.index(f"（12）{LOGISTICS}（浙江经济职业技术学院）")
    # 黄十's form names no school: held for staff (待审核), not on the waiting list
    assert seats[logistics:logistics + 6] == [
        f"（12）{LOGISTICS}（浙江经济职业技术学院）",
        "   计划名额内2/2  ■■■■■■■■■■■■■■■■■■■■ 100%【已满】",
        "   候补2人，待审核1人",
        f"   候补（第1位）：赵六（{mask_id(nominee(4).id_number)}），乙职业技术学院，回执zhejiang-2020-1x-000002",
        f"   候补（第2位）：刘八（{mask_id(nominee(6).id_number)}），己职业技术学院，回执zhejiang-2020-1x-000009",
        "（13）研学旅行策划与管理（EEPM）职业技能等级证书（浙江旅游职业技术学院）"]
    assert seats[1:4] == ["   计划名额内0/2  □□□□□□□□□□□□□□□□□□□□ 0%", "   候补0人，待审核0人",
                          "（2）数字创意建模职业技能等级证书（浙江工业大学）"]
    assert seats[-1] == "合计：计划名额内2/30，候补2人，待审核1人"


def test_the_period_shows_the_mail_and_the_changes_since_the_last_digest_or_since_a_given_time(campaign) -> None:
    latest = _section(_cli("digest", "--config", str(campaign)), "二、本时段情况")
    assert latest == [
        "邮件处理结果（共2封）：",
        "- 报名成功：2封",
        "名单变化（3人次）：",
        f"- 已撤回：李四（{mask_id(nominee(2).id_number)}），甲职业技术学院，{LOGISTICS}，回执zhejiang-2020-1x-000008",
        f"- 递补为计划名额内：王五（{mask_id(nominee(3).id_number)}），乙职业技术学院，{LOGISTICS}，回执zhejiang-2020-1x-000002",
        f"- 进入候补：刘八（{mask_id(nominee(6).id_number)}），己职业技术学院，{LOGISTICS}，回执zhejiang-2020-1x-000009"]
    whole = _section(_cli("digest", "--since", "2020-01-01", "--config", str(campaign)), "二、本时段情况")
    assert whole[:6] == ["邮件处理结果（共9封）：", "- 报名成功：5封", "- 需修改：3封", "- 逾期：1封",
                         "名单变化（8人次）：",
                         f"- 进入计划名额内：张三（{mask_id(nominee(1).id_number)}），甲职业技术学院，{LOGISTICS}，回执zhejiang-2020-1x-000001"]
    assert [line.split("：")[0] for line in whole[5:]] == [
        "- 进入计划名额内", "- 进入计划名额内", "- 进入候补", "- 进入候补", "- 待审核（未占名额）", "- 已撤回", "- 递补为计划名额内",
        "- 进入候补"]


def test_needs_a_person_lists_each_case_with_school_sender_receipt_and_age(campaign) -> None:
    items = _section(_cli("digest", "--since", "2020-01-01", "--config", str(campaign)), "三、需要人工处理的事项")
    # the conflict (both sides), the form without its school and the withdrawal are staff items
    assert [line for line in items if re.match(r"\d+\. ", line)] == [
        f"1. 【身份证号冲突】待办事项#1：身份证号{mask_id(nominee(1).id_number)}重复：先报 甲职业技术学院（{LOGISTICS}，"
        f"回执zhejiang-2020-1x-000001，已保留）；后报 丁职业技术学院（{LOGISTICS}，回执zhejiang-2020-1x-000004，"
        "未登记，已请其核对）",
        "2. 【未填写填报单位】待办事项#2：汇总表未填写填报单位：1名教师待审核（未占名额），已请发件人补填后重发",
        f"3. 【名单中有教师被取消或改报】待办事项#3：报名联系邮箱的新名单取消或更改1名教师：李四（{mask_id(nominee(2).id_number)}，"
        f"取消{LOGISTICS}）",
        "4. 【回复发送失败】回复#1（报名成功）：对方邮件服务器拒收（代码550，5.7.1），请核对收件地址或改用其他方式联系",
        "5. 【截止后来信】截止后收到报名表（11月10日 09:00到达），未登记",
        "6. 【已要求修改、尚未重新提交】已回复要求修改，尚未收到修改后的报名表",
        "7. 【已要求修改、尚未重新提交】已回复要求修改，尚未收到修改后的报名表"]
    assert [_normalised(line) for line in items if line.startswith("   学校：")] == [
        "   学校：丁职业技术学院；发件人：d@d.edu.cn；回执：zhejiang-2020-1x-000004；已等待不到1小时（自<时间>起）",
        "   学校：未知；发件人：h@h.edu.cn；回执：zhejiang-2020-1x-000006；已等待不到1小时（自<时间>起）",
        "   学校：甲职业技术学院；发件人：a@a.edu.cn；回执：zhejiang-2020-1x-000008；已等待不到1小时（自<时间>起）",
        "   学校：甲职业技术学院；发件人：a@a.edu.cn；回执：zhejiang-2020-1x-000001；已等待不到1小时（自<时间>起）",
        "   学校：戊职业技术学院；发件人：e@e.edu.cn；回执：zhejiang-2020-1x-000007；已等待不到1小时（自<时间>起）",
        "   学校：丙职业技术学院；发件人：c@c.edu.cn；回执：zhejiang-2020-1x-000003；已等待不到1小时（自<时间>起）",
        "   学校：丁职业技术学院；发件人：d@d.edu.cn；回执：zhejiang-2020-1x-000004；已等待不到1小时（自<时间>起）"]


def test_schools_that_wrote_and_the_expected_ones_still_silent(campaign) -> None:
    assert _section(_cli("digest", "--config", str(campaign)), "四、已报名的学校") == [
        "- 甲职业技术学院：1人（最近回执zhejiang-2020-1x-000008）",
        "- 乙职业技术学院：2人（最近回执zhejiang-2020-1x-000002）",
        "- 丙职业技术学院：0人（最近回执zhejiang-2020-1x-000003）",
        "- 丁职业技术学院：0人（最近回执zhejiang-2020-1x-000004）",
        "- 己职业技术学院：1人（最近回执zhejiang-2020-1x-000009）",
        "- 戊职业技术学院：0人（最近回执zhejiang-2020-1x-000007）",
        "应报名学校3所，尚未报名1所：",
        "- 庚职业技术学院"]


def test_health_shows_the_last_good_poll_and_the_failed_one(campaign) -> None:
    since_start = _section(_cli("digest", "--since", "2020-01-01", "--config", str(campaign)), "五、运行状况")
    assert [_normalised(line) for line in since_start] == [
        "- 最近一次成功收信：<时间>", "- 本时段收信出错1次：", "  <时间> 无法连接邮箱服务器"]
    latest = _section(_cli("digest", "--config", str(campaign)), "五、运行状况")
    assert [_normalised(line) for line in latest] == ["- 最近一次成功收信：<时间>", "- 本时段收信出错0次。"]


def test_out_writes_the_html_with_the_bars_the_names_and_no_script(campaign, tmp_path: Path) -> None:
    out = tmp_path / "日报.html"
    assert _cli("digest", "--out", str(out), "--config", str(campaign)) == f"日报网页版已写入 {out}\n"
    html = out.read_text(encoding="utf-8")
    assert html.lstrip().startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html and "<img" not in html and "<link" not in html
    rows = [p.name for p in load_rules().programs]
    bars = {name: re.findall(r'<td width="(\d+)" style="width:(\d+)px;height:12px;background:(#[0-9a-f]{6});', row)
            for name, row in re.findall(r"(?s)<tr[^>]*>\s*<td[^>]*>([^<]+)</td>(.*?)</tr>", html) if name in rows}
    assert len(bars) == 15 and bars[LOGISTICS] == [("200", "200", "#3b7dd8")]  # all taken: no empty part
    assert {name: bar for name, bar in bars.items() if name != LOGISTICS} == {
        name: [("200", "200", "#e3e7ee")] for name in rows if name != LOGISTICS}
    assert (f"候补名单：<br>候补（第1位）：赵六（{mask_id(nominee(4).id_number)}），乙职业技术学院，回执zhejiang-2020-1x-000002"
            f"<br>候补（第2位）：刘八（{mask_id(nominee(6).id_number)}），己职业技术学院，回执zhejiang-2020-1x-000009</td>") in html


def test_no_english_label_and_no_full_identity_number_or_phone_anywhere(campaign, tmp_path: Path, smtp_sink) -> None:
    """The text, the HTML page, the mail --send sends (both parts) and its confirmation line."""
    out = tmp_path / "d.html"
    texts = {"text": _cli("digest", "--since", "2020-01-01", "--config", str(campaign))}
    _cli("digest", "--since", "2020-01-01", "--out", str(out), "--config", str(campaign))
    texts["html"] = _visible_html_text(out.read_text(encoding="utf-8"))
    before = len(smtp_sink.messages)
    texts["send"] = _cli("digest", "--send", "--since", "2020-01-01", "--config", str(campaign))
    (sent,) = smtp_sink.wait_for(before + 1)[before:]
    msg = email.message_from_bytes(sent.raw, policy=policy.default)
    texts["mail subject"] = str(msg["Subject"])
    texts["mail text"] = msg.get_body(preferencelist=("plain",)).get_content()
    texts["mail html"] = _visible_html_text(msg.get_body(preferencelist=("html",)).get_content())
    for where, text in texts.items():
        assert _foreign_words(text) == set(), where
        for n in map(nominee, SERIALS):
            assert str(n.id_number) not in text and str(n.phone) not in text, (where, n.name)
        assert not re.search(r"(?<!\d)\d{17}[\dX](?!\d)|(?<!\d)1[3-9]\d{9}(?!\d)", text), where
    assert texts["send"] == "日报已发送给1个工作人员邮箱\n"
    assert [re.findall(r"待办事项#\d+", texts[k]) for k in ("text", "html", "mail text", "mail html")] == [
        ["待办事项#1", "待办事项#2", "待办事项#3"]] * 4  # what `mailbot decide close|answer --item N` takes


def test_send_mails_staff_a_text_and_html_digest_and_starts_the_next_period(campaign, smtp_sink) -> None:
    (sent,) = [m for m in smtp_sink.messages if m.rcpt_tos == (STAFF,)
               and "【报名日报】" in str(email.message_from_bytes(m.raw, policy=policy.default)["Subject"])]
    msg = email.message_from_bytes(sent.raw, policy=policy.default)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"【报名日报】1\+X证书制度试点师资培训 \d{4}年\d+月\d+日：收到7封，需关注7项", str(msg["Subject"]))
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert _section(text, "二、本时段情况")[:2] == ["邮件处理结果（共7封）：", "- 报名成功：3封"]
    assert "<table" in html and msg.get_content_type() == "multipart/mixed"
    (attachment,) = msg.iter_attachments()
    assert re.fullmatch(r"报名名单（脱敏）-\d{8}\.xlsx", attachment.get_filename())
    book = openpyxl.load_workbook(io.BytesIO(attachment.get_content()), read_only=True)
    assert len(book.sheetnames) == 15
    rows = [tuple(c or "" for c in row) for row in book["物流管理"].iter_rows(values_only=True)]
    assert [(r[3], r[7], r[8], r[9]) for r in rows] == [  # name, identity number, phone, status
        ("姓名", "身份证号", "手机", "状态")] + [
        (n.name, mask_id(n.id_number), mask_phone(n.phone), status) for n, status in (
            (nominee(1), "计划名额内"), (nominee(2), "计划名额内"), (nominee(8), "待审核"), (nominee(3), "候补"),
            (nominee(4), "候补"))]  # 黄十's form names no school: held (待审核) for staff
    cells = " ".join(str(c) for name in book.sheetnames for row in book[name].iter_rows(values_only=True)
                     for c in row if c is not None)
    for n in map(nominee, SERIALS):
        assert str(n.id_number) not in cells and str(n.phone) not in cells, n.name


def test_a_digest_the_mail_server_refuses_is_not_reported_as_sent(campaign, smtp_sink) -> None:
    smtp_sink.reject_next(1, code=550)
    result = CliRunner().invoke(main, ["digest", "--send", "--config", str(campaign)])
    assert (result.exit_code, result.output) == (
        1, "mailbot：日报已生成，但1个工作人员邮箱未能发出（对方邮件服务器拒收或投递情况不明，请联系技术人员核对工作人员邮箱）\n")


def test_the_digest_command_speaks_chinese_in_its_help_and_errors(tmp_path: Path, monkeypatch) -> None:
    result = CliRunner().invoke(main, ["digest", "--help"], prog_name="mailbot")
    assert result.exit_code == 0
    typed = {"mailbot", "digest", "since", "out", "html", "send", "config", "toml", "help", "h", "staff", "addresses", "T"}
    assert set(re.findall(r"[A-Za-z]+", result.output)) - typed == set(), result.output
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["digest", "--since", "上周一"])
    assert (result.exit_code, result.output) == (2, "mailbot：无法识别的时间“上周一”，请写成 2020-11-05 或 2020-11-05T08:00\n")
    result = CliRunner().invoke(main, ["digest", "--send"])
    assert (result.exit_code, result.output) == (1, "mailbot：配置中没有填写接收日报的工作人员邮箱，日报未发送；请联系技术人员填写\n")
