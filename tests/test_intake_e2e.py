"""End to end against the real Dovecot and a real SMTP server (aiosmtpd): mail in, reply out."""

from __future__ import annotations

import email
import io
import re
from pathlib import Path

import pytest

from forms_factory import make_annex3_docx, make_annex3_xlsx, nominee
from intake_harness import Reply, imap_settings, open_intake, outcomes, parse_reply, rules_with_seats, shanghai
from mail_factory import make_forward, make_mail, make_zip
from mailbot.masking import mask_id

pytestmark = pytest.mark.servers

ON_TIME = shanghai(2020, 11, 2, 10, 0)
LOGISTICS = "物流管理职业技能等级证书"


def _form(*serials: int, institution: str = "浙江某某职业技术学院", **row_changes: object) -> bytes:
    return make_annex3_xlsx([nominee(s, **row_changes) for s in serials], institution=institution)


@pytest.fixture()
def intake(tmp_path: Path, dovecot, imap_account, smtp_sink):
    log = io.StringIO()
    parts = open_intake(imap_settings(tmp_path, imap_account, smtp_sink), log)
    parts.log_text = log  # type: ignore[attr-defined]
    yield parts
    parts.close()


def _append(dovecot, account, raw: bytes, when=ON_TIME) -> int:
    return dovecot.append(raw, when, user=account.user)


def _line_starting(reply: Reply, start: str) -> str:
    """The one line of the reply that starts with ``start``."""
    (line,) = [line for line in reply.text.splitlines() if line.startswith(start)]
    return line


def _nominee_lines(reply: Reply) -> list[str]:
    """Each nominee's first line and status line, as the reply lists them."""
    return [line.strip() for line in reply.text.splitlines()
            if re.match(r"\d+\. ", line) or line.strip().startswith("报名状态：")]


@pytest.mark.parametrize("client", ["qq", "foxmail", "outlook", "163"])
def test_clean_form_from_each_mail_client_is_accepted_with_each_nominee_seated(
        client, intake, dovecot, imap_account, smtp_sink) -> None:
    raw = make_mail(client=client, attachments=[("附件3：高校参训教师信息汇总表.xlsx", _form(1, 2))])
    _append(dovecot, imap_account, raw)
    report = intake.intake.poll_once()
    assert report.outcomes == {"accepted": 1}
    (mail,) = smtp_sink.wait_for(1)
    reply = parse_reply(mail.raw)
    assert mail.rcpt_tos == ("wang@zjxx.edu.cn",)
    assert reply.subject.startswith("Re: 报名表")
    assert reply.headers["Auto-Submitted"] == "auto-replied"
    assert reply.headers["In-Reply-To"] == email.message_from_bytes(raw)["Message-ID"]
    assert _nominee_lines(reply) == [
        f"1. {nominee(1).name}（身份证号 {mask_id(nominee(1).id_number)}，表格第4行）", "报名状态：报名成功（在计划名额内）",
        f"2. {nominee(2).name}（身份证号 {mask_id(nominee(2).id_number)}，表格第5行）", "报名状态：报名成功（在计划名额内）"]
    for n in (nominee(1), nominee(2)):
        assert str(n.id_number) not in reply.text
    assert len(dovecot.list_folder("Processed", user=imap_account.user)) == 1
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []


def test_error_then_corrected_resubmission(intake, dovecot, imap_account, smtp_sink) -> None:
    bad = _form(1, 2)
    bad = make_annex3_xlsx([nominee(1), nominee(2, phone="1381234")])
    _append(dovecot, imap_account, make_mail(attachments=[("报名表.xlsx", bad)]))
    assert intake.intake.poll_once().outcomes == {"correction": 1}
    first = parse_reply(smtp_sink.wait_for(1)[0].raw)
    assert _nominee_lines(first) == [
        f"1. 「报名表.xlsx」：第5行（{nominee(2).name}）“手机”“*******”（7位）不是有效的11位中国大陆手机号码，"
        "请填写本人手机号（不加区号、不填座机）。",
        f"1. {nominee(1).name}（身份证号 {mask_id(nominee(1).id_number)}，表格第4行）", "报名状态：报名成功（在计划名额内）"]
    assert first.attachments == ("报名表-需修改.xlsx",)
    _append(dovecot, imap_account, make_mail(attachments=[("报名表（修改）.xlsx", _form(1, 2))]),
            shanghai(2020, 11, 3, 9, 0))
    assert intake.intake.poll_once().outcomes == {"accepted": 1}
    second = parse_reply(smtp_sink.wait_for(2)[1].raw)
    assert [line for line in second.text.splitlines() if line.startswith("- ")] == [
        f"- 新增：{nominee(2).name}（{mask_id(nominee(2).id_number)}），{LOGISTICS}"]
    statuses = list(intake.state.db.query("SELECT status, count(*) n FROM nominees GROUP BY status"))
    assert statuses == [{"status": "seated", "n": 2}]


def test_late_mail_gets_late_reply_even_with_forged_date(intake, dovecot, imap_account, smtp_sink) -> None:
    raw = make_mail(attachments=[("报名表.xlsx", _form(1))], date=shanghai(2020, 11, 1, 9, 0))
    _append(dovecot, imap_account, raw, shanghai(2020, 11, 10, 0, 0, 1))
    assert intake.intake.poll_once().outcomes == {"late": 1}
    reply = parse_reply(smtp_sink.wait_for(1)[0].raw)
    assert _line_starting(reply, "我们于") == (
        "我们于2020年11月10日 00:00收到浙江某某职业技术学院的邮件，此时报名已于2020年11月9日24时截止。"
        "截止时间后收到的报名表不自动登记，本邮件的内容未计入报名结果。")
    assert next(intake.state.db.query("SELECT count(*) n FROM nominees"))["n"] == 0


def test_mail_just_before_midnight_of_deadline_is_on_time(intake, dovecot, imap_account, smtp_sink) -> None:
    _append(dovecot, imap_account, make_mail(attachments=[("报名表.xlsx", _form(1))]),
            shanghai(2020, 11, 9, 23, 59, 59))
    assert intake.intake.poll_once().outcomes == {"accepted": 1}


def test_a_correction_in_the_last_hour_says_there_is_no_time_to_resend(intake, dovecot, imap_account, smtp_sink) -> None:
    bad = make_annex3_xlsx([nominee(1), nominee(2, phone="0571-88008925")])
    _append(dovecot, imap_account, make_mail(attachments=[("报名表.xlsx", bad)]), shanghai(2020, 11, 9, 23, 10))
    assert intake.intake.poll_once().outcomes == {"correction": 1}
    reply = parse_reply(smtp_sink.wait_for(1)[0].raw)
    assert _line_starting(reply, "1. 「") == (
        f"1. 「报名表.xlsx」：第5行（{nominee(2).name}）“手机”“057*****8925”是座机号码，请填写本人的11位手机号码。")
    assert _line_starting(reply, "需要修改的行") == (
        "需要修改的行本次未登记，不占名额。本邮件收到时距报名截止（2020年11月9日24时）已不足1小时，"
        "来不及修改后重新发送；如需为这些教师报名，请联系省职教师资培训中心孙国良，电话：0571-85290492、88320488。")
    assert [line for line in reply.text.splitlines() if "前将完整的汇总表" in line] == []


def test_an_earlier_correction_says_unfixed_rows_queue_by_the_time_of_the_resend(
        intake, dovecot, imap_account, smtp_sink) -> None:
    _append(dovecot, imap_account, make_mail(attachments=[("报名表.xlsx", _form(1, program="物流"))]))
    other = _form(2, program="建筑", institution="浙江另一职业技术学院")
    _append(dovecot, imap_account, make_mail(sender="li@zjlt.edu.cn", attachments=[("报名表.xlsx", other)]),
            shanghai(2020, 11, 2, 10, 5))
    assert intake.intake.poll_once().outcomes == {"accepted": 1, "correction": 1}
    replies = [parse_reply(m.raw) for m in smtp_sink.wait_for(2)]
    (correction,) = [r for r in replies if "需要修改" in r.text]
    assert _line_starting(correction, "需要修改的行") == (
        "需要修改的行本次未登记，不占名额；修改后重新发送的，按重新发送的邮件收到时间排队登记。")
    assert _line_starting(correction, "请修改后") == (
        "请修改后于2020年11月9日24时前将完整的汇总表（请保留已登记的教师）重新发送至shengpei@zjut.edu.cn，"
        "我们将以最新收到的一份为准。")
    seated = list(intake.state.db.query("SELECT program FROM nominees WHERE status = 'seated'"))
    assert seated == [{"program": LOGISTICS}]


def test_uncached_formulas_outside_the_cells_read_do_not_block_a_form(intake, dovecot, imap_account, smtp_sink) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(_form(1, 2)))
    wb.active["K4"], wb.active["K5"], wb.active["C9"] = "=LEN(G4)", "=LEN(G5)", "=COUNTA(C4:C5)"
    buf = io.BytesIO()
    wb.save(buf)
    _append(dovecot, imap_account, make_mail(attachments=[("报名表.xlsx", buf.getvalue())]))
    assert intake.intake.poll_once().outcomes == {"accepted": 1}
    assert next(intake.state.db.query("SELECT count(*) n FROM nominees WHERE status = 'seated'"))["n"] == 2


def test_secondary_vocational_school_is_redirected_to_the_platform(intake, dovecot, imap_account, smtp_sink) -> None:
    _append(dovecot, imap_account, make_mail(attachments=[("报名表.xlsx", _form(1, institution="杭州市某某职业高级中学"))]))
    assert intake.intake.poll_once().outcomes == {"redirect": 1}
    reply = parse_reply(smtp_sink.wait_for(1)[0].raw)
    assert _line_starting(reply, "我们已于") == (
        "我们已于2020年11月2日 10:00收到杭州市某某职业高级中学的邮件。根据通知要求，中职学校的参训教师不通过邮件报名："
        "请登录“省教育培训管理平台”（https://pxglpt.zjedu.gov.cn），选择“指令性培训—省级骨干培训”中的相应项目推荐参训教师，"
        "请于2020年11月9日24时前完成。")


def test_mail_without_attachment_is_told_what_to_attach(intake, dovecot, imap_account, smtp_sink) -> None:
    _append(dovecot, imap_account, make_mail(attachments=[]))
    assert intake.intake.poll_once().outcomes == {"no_form": 1}
    reply = parse_reply(smtp_sink.wait_for(1)[0].raw)
    assert _line_starting(reply, "请将附件3") == (
        "请将附件3《高校参训教师信息汇总表》（Excel 文件，.xlsx 或 .xls 格式）作为邮件附件于2020年11月9日24时前"
        "发送至shengpei@zjut.edu.cn。填写提示：")


def test_form_inside_zip_and_inside_forwarded_mail_and_word_table(intake, dovecot, imap_account, smtp_sink) -> None:
    _append(dovecot, imap_account, make_mail(sender="a@a.edu.cn", attachments=[
        ("报名.zip", make_zip([("附件3.xlsx", _form(1, institution="甲职业技术学院"))]))]))
    inner = make_mail(sender="b@b.edu.cn", attachments=[("附件3.xlsx", _form(2, institution="乙职业技术学院"))])
    _append(dovecot, imap_account, make_forward(inner, sender="b2@b.edu.cn"))
    _append(dovecot, imap_account, make_mail(sender="c@c.edu.cn", attachments=[
        ("附件3.docx", make_annex3_docx([nominee(3)], institution="丙职业技术学院"))]))
    assert intake.intake.poll_once().outcomes == {"accepted": 3}
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(3)) == ["a@a.edu.cn", "b2@b.edu.cn", "c@c.edu.cn"]


def test_auto_replies_bounces_and_newsletters_get_no_reply(intake, dovecot, imap_account, smtp_sink) -> None:
    _append(dovecot, imap_account, make_mail(sender="ooo@x.edu.cn", subject="自动回复: 报名表",
                                             extra_headers={"Auto-Submitted": "auto-replied"}))
    _append(dovecot, imap_account, make_mail(sender="MAILER-DAEMON@mx.x.cn", subject="Undelivered Mail",
                                             extra_headers={"Return-Path": "<>"}))
    _append(dovecot, imap_account, make_mail(sender="news@list.cn", subject="本周资讯",
                                             extra_headers={"List-Id": "<news.list.cn>", "Precedence": "bulk"}))
    report = intake.intake.poll_once()
    assert report.outcomes == {"ignored": 3}
    assert smtp_sink.attempts == 0
    assert next(intake.state.db.query("SELECT count(*) n FROM outbox"))["n"] == 0


def test_full_program_puts_later_nominees_on_waiting_list_then_promotes_after_withdrawal(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    settings = imap_settings(tmp_path, imap_account, smtp_sink, rules=rules_with_seats(tmp_path, 2))
    parts = open_intake(settings, io.StringIO())
    try:
        _append(dovecot, imap_account, make_mail(sender="a@a.edu.cn", attachments=[
            ("a.xlsx", _form(1, 2, institution="甲职业技术学院"))]), shanghai(2020, 11, 2, 9, 0))
        _append(dovecot, imap_account, make_mail(sender="b@b.edu.cn", attachments=[
            ("b.xlsx", _form(3, institution="乙职业技术学院"))]), shanghai(2020, 11, 2, 10, 0))
        parts.intake.poll_once()
        waiting = parse_reply(smtp_sink.wait_for(2)[1].raw)
        assert _nominee_lines(waiting) == [f"1. {nominee(3).name}（身份证号 {mask_id(nominee(3).id_number)}，表格第4行）",
                                           "报名状态：暂列候补第1位"]
        # 甲 withdraws nominee 2 by sending a list without them
        _append(dovecot, imap_account, make_mail(sender="a@a.edu.cn", attachments=[
            ("a2.xlsx", _form(1, institution="甲职业技术学院"))]), shanghai(2020, 11, 3, 9, 0))
        parts.intake.poll_once()
        mails = smtp_sink.wait_for(4)
        by_to = {}
        for m in mails[2:]:
            by_to.setdefault(m.rcpt_tos[0], []).append(parse_reply(m.raw))
        (changed,) = by_to["a@a.edu.cn"]
        assert [line for line in changed.text.splitlines() if line.startswith("- ")] == [
            f"- 删除：{nominee(2).name}（{mask_id(nominee(2).id_number)}），{LOGISTICS}"]
        (promotion,) = by_to["b@b.edu.cn"]
        assert _nominee_lines(promotion) == [f"1. {nominee(3).name}（身份证号 {mask_id(nominee(3).id_number)}）",
                                             "报名状态：报名成功（在计划名额内）"]
        seated = {r["name"] for r in parts.state.db.query("SELECT name FROM nominees WHERE status = 'seated'")}
        assert seated == {nominee(1).name, nominee(3).name}
    finally:
        parts.close()


def test_same_message_delivered_twice_is_answered_once(intake, dovecot, imap_account, smtp_sink) -> None:
    raw = make_mail(attachments=[("报名表.xlsx", _form(1))], message_id="<twice@zjxx.edu.cn>")
    _append(dovecot, imap_account, raw)
    _append(dovecot, imap_account, raw)
    assert intake.intake.poll_once().outcomes == {"accepted": 1, "duplicate": 1}
    assert len(smtp_sink.wait_for(1, timeout=1)) == 1


def test_second_poll_finds_nothing_new_and_sends_nothing(intake, dovecot, imap_account, smtp_sink) -> None:
    _append(dovecot, imap_account, make_mail(attachments=[("报名表.xlsx", _form(1))]))
    intake.intake.poll_once()
    report = intake.intake.poll_once()
    assert (report.fetched, report.recorded, report.sent.sent) == (0, 0, 0)
    assert smtp_sink.attempts == 1
    assert outcomes(intake) == [("wang@zjxx.edu.cn", "accepted")]


def test_logs_carry_no_unmasked_identity_number_or_phone(intake, dovecot, imap_account, smtp_sink) -> None:
    """Every planted value, valid or not (an 18-digit and a 17-digit ID, an 11-digit and a
    10-digit phone), is absent in full and in any 7-digit piece; what shows is exactly the masks."""
    people = [nominee(1), nominee(2, id_number="33010619900101123"), nominee(3, phone="2381234567")]
    _append(dovecot, imap_account, make_mail(attachments=[("报名表.xlsx", make_annex3_xlsx(people))]))
    intake.intake.poll_once()
    text = intake.log_text.getvalue()  # type: ignore[attr-defined]
    text += "".join(parse_reply(m.raw).text for m in smtp_sink.wait_for(1))
    planted = [str(v) for p in people for v in (p.id_number, p.phone)]
    assert [len(v) for v in planted] == [18, 11, 17, 11, 18, 10]
    pieces = sorted({v[i:i + 7] for v in planted for i in range(len(v) - 6) if v[i:i + 7] in text})
    assert pieces == [], f"unmasked digits of a planted identity number or phone: {pieces}"
    masks = sorted(set(re.findall(r"[0-9]+\*+[0-9Xx]+", text)))
    assert masks == sorted({f"{str(nominee(1).id_number)[:4]}{'*' * 10}{str(nominee(1).id_number)[-4:]}",
                            "3301*********1123", "238***4567"})


def test_copy_of_each_reply_goes_to_the_sent_folder_when_configured(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    settings = imap_settings(tmp_path, imap_account, smtp_sink, imap={"sent_folder": "Sent"})
    parts = open_intake(settings, io.StringIO())
    try:
        _append(dovecot, imap_account, make_mail(attachments=[("报名表.xlsx", _form(1))]))
        parts.intake.poll_once()
        (sent,) = smtp_sink.wait_for(1)
        copies = dovecot.list_folder("Sent", user=imap_account.user)
        assert [parse_reply(raw).headers["Message-ID"] for _, raw, _ in copies] == [
            parse_reply(sent.raw).headers["Message-ID"]]
        assert all("\\Seen" in flags for _, _, flags in copies)
    finally:
        parts.close()


def test_a_sender_gets_at_most_the_configured_replies_per_day(tmp_path, dovecot, imap_account, smtp_sink) -> None:
    settings = imap_settings(tmp_path, imap_account, smtp_sink, reply={"max_per_sender_per_day": 2})
    parts = open_intake(settings, io.StringIO())
    try:
        for n in range(4):
            _append(dovecot, imap_account, make_mail(subject=f"咨询{n}", attachments=[]))
        report = parts.intake.poll_once()
        assert report.outcomes == {"no_form": 4}
        assert len(smtp_sink.wait_for(2)) == 2 and smtp_sink.attempts == 2
        kinds = [r["kind"] for r in parts.state.db.query("SELECT kind FROM events WHERE kind LIKE 'reply_%' ORDER BY id")]
        assert kinds.count("reply_suppressed") == 2
    finally:
        parts.close()


def test_a_reply_coming_back_to_the_mailbox_is_never_answered(intake, dovecot, imap_account, smtp_sink) -> None:
    _append(dovecot, imap_account, make_mail(attachments=[]))
    intake.intake.poll_once()
    (reply,) = smtp_sink.wait_for(1)
    _append(dovecot, imap_account, reply.raw)  # e.g. a forwarding rule sends it back to us
    assert intake.intake.poll_once().outcomes == {"ignored": 1}
    assert smtp_sink.attempts == 1
