"""Fair seats end to end against the real Dovecot and SMTP sink: arrival order (INTERNALDATE)
decides within a poll and never unseats anyone across polls; an addition keeps the list; a
conflict is a finding that names no other school; promotions of one event are one mail; a mail
without a form that asks something reaches a person; a form naming no school seats nobody."""

from __future__ import annotations

import email
import io
import os
from pathlib import Path

import pytest
from openpyxl import load_workbook

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import STAFF, Reply, open_parts, parse_reply, replies_by_recipient, rules_with_seats, shanghai  # noqa: F401 - a fixture
from mail_factory import make_mail
from mailbot.mail.imap import ImapSource
from mailbot.mail.source import ImapSettings
from mailbot.masking import mask_id
from mailbot.office.digest import build_digest
from mailbot.office.proof import prove
from mailbot.replies.render import ReplyRenderer

pytestmark = pytest.mark.servers

SCHOOL_A, SCHOOL_B = "甲职业技术学院", "乙职业技术学院"
A, A2, B = "jwc@jia.edu.cn", "kyc@jia.edu.cn", "jwc@yi.edu.cn"
LOGISTICS = "物流管理职业技能等级证书"


def _send(dovecot, account, sender: str, serials: list[int], hour: int, *, institution: str = SCHOOL_A,
          subject: str = "报名表", body: str = "您好，附件是我校的汇总表。", day: int = 2) -> int:
    """Deliver a form with arrival time (INTERNALDATE) 2020-11-<day> <hour>:00; returns its UID."""
    form = make_annex3_xlsx([nominee(s) for s in serials], institution=institution)
    raw = make_mail(sender=sender, subject=subject, body=body, attachments=[("报名表.xlsx", form)])
    return dovecot.append(raw, shanghai(2020, 11, day, hour, 0), user=account.user)



def _seats(parts) -> list[tuple[str, str, str]]:
    return [(r["name"], r["status"], r["institution"]) for r in parts.state.db.query(
        "SELECT name, status, institution FROM nominees ORDER BY id")]


def _items(parts) -> list[tuple[str, str, str, str]]:
    return [(r["kind"], r["institution"], r["sender"], r["summary"]) for r in parts.state.db.query(
        "SELECT kind, institution, sender, summary FROM staff_items WHERE status = 'open' ORDER BY id")]


def _receipt(parts, sender: str) -> str:
    return next(parts.state.db.query("SELECT receipt FROM messages WHERE sender = ? ORDER BY id DESC",
                                     [sender]))["receipt"]


def _digest_text(parts) -> str:
    return ReplyRenderer(parts.settings.templates).render_digest(
        build_digest(parts.state, parts.rules, parts.settings)).text


def _masked(serial: int) -> str:
    return mask_id(str(nominee(serial).id_number))


GOLDEN = Path(__file__).resolve().parent / "golden_replies"


def _golden(name: str, reply: Reply) -> None:
    """The reply as sent, against ``golden_replies/<name>.txt``.  Regenerate with
    ``MAILBOT_UPDATE_GOLDEN=1`` and review the difference by reading it."""
    text = f"Subject: {reply.subject}\n\n{reply.text}"
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("MAILBOT_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


# -- arrival order -----------------------------------------------------------------------------

def test_within_a_poll_the_earlier_arrival_gets_the_seat_whatever_the_uids(
        open_parts, tmp_path: Path, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts(rules_with_seats(tmp_path, 1))
    late_uid = _send(dovecot, imap_account, A, [1], 10)  # lower UID, arrived 10:00
    early_uid = _send(dovecot, imap_account, B, [2], 9, institution=SCHOOL_B)  # higher UID, arrived 09:00
    assert early_uid > late_uid
    assert parts.intake.poll_once().outcomes == {"accepted": 2}
    assert _seats(parts) == [(nominee(2).name, "seated", SCHOOL_B), (nominee(1).name, "waiting", SCHOOL_A)]
    assert [m.rcpt_tos[0] for m in smtp_sink.wait_for(2)] == [B, A]


def test_the_source_hands_out_mail_by_arrival_and_moves_the_cursor_only_past_what_it_handed_out(
        dovecot, imap_account) -> None:
    uids = [_send(dovecot, imap_account, A, [1], hour) for hour in (11, 9, 10)]
    settings = ImapSettings(host=imap_account.host, port=imap_account.port, tls="plain", user=imap_account.user,
                            password=imap_account.password, timeout=10, fetch_batch=2)
    with ImapSource(settings) as source:
        got = [(m.uid, m.cursor_uid) for m in source.fetch_after(None, 0)]
    # 09:00 (2nd UID) first: the 1st UID is not handed out yet, so the cursor may not pass it
    assert got == [(uids[1], 0), (uids[2], 0), (uids[0], uids[2])]


def test_across_polls_an_earlier_mail_handled_late_takes_no_seat_from_anyone_told_and_goes_to_staff(
        open_parts, tmp_path: Path, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts(rules_with_seats(tmp_path, 1))
    _send(dovecot, imap_account, A, [1], 10)
    parts.intake.poll_once()
    smtp_sink.wait_for(1)  # A is told: seated
    uid = _send(dovecot, imap_account, B, [2], 9, institution=SCHOOL_B)  # moved back from junk: 09:00
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    mails = replies_by_recipient(smtp_sink, 1, 2)
    assert sorted(mails) == sorted([B, STAFF])
    assert _seats(parts) == [(nominee(1).name, "seated", SCHOOL_A), (nominee(2).name, "held", SCHOOL_B)]
    (reply,) = mails[B]
    lines = reply.text.splitlines()
    assert "   报名状态：待工作人员审核" in lines
    assert ("说明：本邮件的到达时间早于部分已获通知报名成功的教师，但较晚才得到处理；为不改动已通知的结果，"
            "标注“待工作人员审核”的1名教师由工作人员决定，结果将另行邮件通知。") in lines
    assert SCHOOL_A not in reply.text
    _golden("fair_seats_held_by_arrival", reply)
    assert _items(parts) == [("arrival_order", SCHOOL_B, B,
                              f"邮件到达时间2020-11-02 09:00:00（UID {uid}）早于已获通知报名成功的教师，但较晚处理；"
                              f"所报项目已满，以下教师待决定（未占名额，未改动已报名成功者）：{LOGISTICS}1名")]


def test_across_polls_an_earlier_mail_handled_late_still_takes_a_free_seat(
        open_parts, tmp_path: Path, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts(rules_with_seats(tmp_path, 2))
    _send(dovecot, imap_account, A, [1], 10)
    parts.intake.poll_once()
    _send(dovecot, imap_account, B, [2], 9, institution=SCHOOL_B)
    parts.intake.poll_once()
    assert _seats(parts) == [(nominee(1).name, "seated", SCHOOL_A), (nominee(2).name, "seated", SCHOOL_B)]
    assert _items(parts) == []


# -- resubmissions -----------------------------------------------------------------------------

def test_a_supplement_from_a_second_address_of_the_school_keeps_the_first_list(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, A, [1, 2, 3], 9)
    parts.intake.poll_once()
    smtp_sink.wait_for(1)
    _send(dovecot, imap_account, A2, [4], 10, subject="补报一名", body="科研处补报一名教师。")
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    mails = replies_by_recipient(smtp_sink, 1, 3)  # the reply, the notice to the contact of record, the staff alert
    assert sorted(mails) == sorted([A2, A, STAFF])
    assert _seats(parts) == [(nominee(s).name, "seated", SCHOOL_A) for s in (1, 2, 3, 4)]
    (notice,) = mails[A]
    assert [ln for ln in notice.text.splitlines() if ln.startswith("- ")] == ["- 新增登记教师：1名"]


def test_a_supplement_from_the_contact_of_record_adds_and_says_the_list_stands(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, A, [1, 2, 3], 9)
    parts.intake.poll_once()
    smtp_sink.wait_for(1)
    _send(dovecot, imap_account, A, [1, 4], 10, subject="追加报名")  # repeats 1, omits 2 and 3: still adds
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    (reply,) = replies_by_recipient(smtp_sink, 1, 1)[A]
    assert _seats(parts) == [(nominee(s).name, "seated", SCHOOL_A) for s in (1, 2, 3, 4)]
    lines = reply.text.splitlines()
    assert "说明：本邮件按补报处理：只新增教师，贵单位此前登记的教师均保持不变。" in lines
    assert not [ln for ln in lines if ln.startswith("【请注意】")]
    _golden("fair_seats_supplement_by_the_contact", reply)
    assert _items(parts) == []


def test_promotions_of_one_event_reach_each_address_as_one_mail(
        open_parts, tmp_path: Path, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts(rules_with_seats(tmp_path, 3))
    _send(dovecot, imap_account, A, [1, 2, 5], 9)
    _send(dovecot, imap_account, B, [3, 4], 10, institution=SCHOOL_B)  # both wait
    parts.intake.poll_once()
    smtp_sink.wait_for(2)
    _send(dovecot, imap_account, A, [5], 11)  # the school's list is now only teacher 5
    parts.intake.poll_once()
    mails = replies_by_recipient(smtp_sink, 2, 3)  # A's reply, ONE promotion mail to B, the staff alert
    assert sorted(mails) == sorted([A, B, STAFF])
    (promotion,) = mails[B]
    assert [ln for ln in promotion.text.splitlines() if ln[:3] in ("1. ", "2. ")] == [
        f"1. {nominee(3).name}（身份证号 {_masked(3)}）", f"2. {nominee(4).name}（身份证号 {_masked(4)}）"]
    assert _seats(parts)[3:] == [(nominee(3).name, "seated", SCHOOL_B), (nominee(4).name, "seated", SCHOOL_B)]
    _golden("fair_seats_promotions_batched", promotion)
    _golden("fair_seats_replaced_list", mails[A][0])


# -- conflicts ---------------------------------------------------------------------------------

def test_a_conflict_is_a_finding_that_names_no_other_school_and_staff_see_both_sides(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, A, [1], 9)
    _send(dovecot, imap_account, B, [1, 2], 10, institution=SCHOOL_B)  # teacher 1 again, from another school
    assert parts.intake.poll_once().outcomes == {"accepted": 1, "correction": 1}
    mails = replies_by_recipient(smtp_sink, 0, 3)
    assert _seats(parts) == [(nominee(1).name, "seated", SCHOOL_A), (nominee(2).name, "seated", SCHOOL_B)]
    (reply,) = mails[B]
    raw_b = next(m.raw for m in smtp_sink.wait_for(3) if m.rcpt_tos[0] == B)
    assert SCHOOL_A.encode() not in raw_b and "甲" not in reply.text
    lines = reply.text.splitlines()
    assert "1. 「报名表.xlsx」第4行「身份证号」列：该身份证号与其他报名记录重复，请核对号码；确为同一人的，请联系培训中心" in lines
    assert [ln for ln in lines if ln[:3] in ("1. ", "2. ") and "身份证号 " in ln] == [
        f"1. {nominee(2).name}（身份证号 {_masked(2)}，表格第5行）"]
    (book_name,) = reply.attachments
    _golden("fair_seats_conflict", reply)
    book = next(p for p in email.message_from_bytes(raw_b).walk()
                if p.get_filename() and p.get_content_type().endswith("sheet"))
    sheet = load_workbook(io.BytesIO(book.get_payload(decode=True))).active
    commented = [(c.coordinate, c.comment.text) for row in sheet.iter_rows() for c in row if c.comment]
    assert [(coord, text.splitlines()[0]) for coord, text in commented] == [
        ("G4", "该身份证号与其他报名记录重复，请核对号码；确为同一人的，请联系培训中心")]
    summary = (f"身份证号{_masked(1)}重复：先报 {SCHOOL_A}（{LOGISTICS}，回执{_receipt(parts, A)}，已保留）；"
               f"后报 {SCHOOL_B}（{LOGISTICS}，回执{_receipt(parts, B)}，未登记，已请其核对）")
    assert _items(parts) == [("conflict", SCHOOL_B, B, summary)]
    lines = _digest_text(parts).splitlines()
    (at,) = [i for i, line in enumerate(lines) if "【身份证号冲突】" in line]
    assert (lines[at], lines[at + 1].split("；已等待")[0]) == (
        f"1. 【身份证号冲突】待办事项#1：{summary}", f"   学校：{SCHOOL_B}；发件人：{B}；回执：{_receipt(parts, B)}")
    assert prove(parts.state).breaks == []  # the log explains the correction the conflict made


# -- the greeting ------------------------------------------------------------------------------

@pytest.mark.parametrize("sender_name, contact, greeting", [
    ("赵老师", "王老师", "赵老师，您好！"),  # the sender's own name, not the form's 联系人
    ("李主任", "", "李主任，您好！"),  # a title kept, no 老师 after it
    ("", "张三", "张三老师，您好！"),  # the 联系人 is the sender: a row names them with the From address
    ("", "王老师", "您好！"),  # the 联系人 is someone else
    ("jwc@jia.edu.cn", "", "您好！"),  # an address is not a name
])
def test_the_reply_greets_the_sender_by_the_name_they_gave(
        sender_name, contact, greeting, open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    form = make_annex3_xlsx([nominee(1, email=A), nominee(2)], institution=SCHOOL_A, contact=contact)
    raw = make_mail(sender=A, sender_name=sender_name, attachments=[("报名表.xlsx", form)])
    dovecot.append(raw, shanghai(2020, 11, 2, 9, 0), user=imap_account.user)
    parts.intake.poll_once()
    (mail,) = smtp_sink.wait_for(1)
    assert parse_reply(mail.raw).text.splitlines()[0] == greeting


# -- mail for a person -------------------------------------------------------------------------

def _mail_without_form(dovecot, account, subject: str, body: str) -> None:
    dovecot.append(make_mail(sender=A, subject=subject, body=body), shanghai(2020, 11, 2, 9, 0), user=account.user)


def test_a_question_without_a_form_is_acknowledged_and_reaches_the_staff_list(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _mail_without_form(dovecot, imap_account, "咨询", "请问候补的老师什么时候能知道结果？11月9日以后还能换人吗？\n\n王老师")
    assert parts.intake.poll_once().outcomes == {"for_staff": 1}
    mails = replies_by_recipient(smtp_sink, 0, 2)
    (ack,) = mails[A]
    receipt = _receipt(parts, A)
    lines = ack.text.splitlines()
    assert "您的来信已转工作人员，我们已于2020年11月2日 09:00收到，工作人员将尽快答复。" in lines
    assert f"回执号：{receipt}" in lines
    _golden("fair_seats_question_acknowledged", ack)
    assert _items(parts) == [("question", "", A, "来信（无报名表）主题“咨询”：请问候补的老师什么时候能知道结果？"
                                                 "11月9日以后还能换人吗？ / 王老师")]
    (alert,) = mails[STAFF]
    assert [ln.rsplit("，", 1)[0] for ln in alert.text.splitlines() if ln[:3] == "1. "] == [
        f"1. 【来信询问或请求】待办事项#1：来信（无报名表）主题“咨询”：请问候补的老师什么时候能知道结果？11月9日以后还能换人吗？"
        f" / 王老师（回执号{receipt}），发件人：{A}"]


def test_a_form_that_also_asks_is_registered_and_its_question_reaches_the_staff_list(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, A, [1], 9, body="附件是我校的汇总表。\n请问物流管理还有名额吗？能否再补报一名？")
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert _seats(parts) == [(nominee(1).name, "seated", SCHOOL_A)]
    mails = replies_by_recipient(smtp_sink, 0, 2)
    (reply,) = mails[A]
    receipt = _receipt(parts, A)
    assert reply.subject == f"Re: 报名表【报名成功｜回执 {receipt}】"
    assert "您在来信中提出的问题已转工作人员，工作人员将另行答复。" in reply.text.splitlines()
    _golden("fair_seats_form_with_question", reply)
    summary = ("来信（附报名表，已按报名表处理并答复）另有询问，主题“报名表”："
               "附件是我校的汇总表。 / 请问物流管理还有名额吗？能否再补报一名？")
    assert _items(parts) == [("question", SCHOOL_A, A, summary)]
    (alert,) = mails[STAFF]
    assert [ln.rsplit("，", 1)[0] for ln in alert.text.splitlines() if ln[:3] == "1. "] == [
        f"1. 【来信询问或请求】待办事项#1：{SCHOOL_A}：{summary}（回执号{receipt}），发件人：{A}"]


def test_a_form_that_only_says_see_attached_puts_nothing_on_the_staff_list(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, A, [1], 9, body="我校报名汇总表见附件，烦请查收，谢谢！")
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    (mail,) = smtp_sink.wait_for(1)
    assert "您在来信中提出的问题已转工作人员" not in parse_reply(mail.raw).text
    assert _items(parts) == []


@pytest.mark.parametrize("subject, body, outcome, replies", [
    ("报名表", "您好，报名表见附件，请查收。", "no_form", 1),
    ("Re: 报名表【报名成功】", "收到，谢谢！", "ignored", 0),
    ("自动回复：报名表", "我正在休假，期间邮件无法及时回复。", "ignored", 0),
])
def test_a_mail_saying_see_attachment_thanks_or_away_puts_nothing_on_the_staff_list(
        subject, body, outcome, replies, open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _mail_without_form(dovecot, imap_account, subject, body)
    assert parts.intake.poll_once().outcomes == {outcome: 1}
    assert len(smtp_sink.wait_for(replies, timeout=1)) == replies
    assert _items(parts) == []


def test_how_do_i_register_gets_the_blank_form_the_programs_and_the_platform_note(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _mail_without_form(dovecot, imap_account, "如何报名", "老师您好，我们是第一次参加，想问一下怎么报名？")
    assert parts.intake.poll_once().outcomes == {"how_to_register": 1}
    (mail,) = smtp_sink.wait_for(1)
    reply = parse_reply(mail.raw)
    assert reply.attachments == ("附件3：高校参训教师信息汇总表.xlsx",)
    _golden("fair_seats_how_to_register", reply)
    programs = [ln for ln in reply.text.splitlines() if "（承办院校：" in ln]
    assert programs == [f"{i}. {p.name}（承办院校：{p.host}）" for i, p in enumerate(parts.rules.programs, 1)]
    assert len(programs) == 15
    assert any(ln.startswith("中职学校的参训教师不通过邮件报名：请登录“省教育培训管理平台”") for ln in reply.text.splitlines())
    part = next(p for p in email.message_from_bytes(mail.raw).walk() if p.get_filename())
    sheet = load_workbook(io.BytesIO(part.get_payload(decode=True)))["附件3"]
    assert [c.value for c in sheet[3]] == ["序号", "所报证书培训班名称", "姓名", "性别", "职务", "电子邮箱", "身份证号", "手机"]
    assert _items(parts) == []


# -- blank 填报单位 ------------------------------------------------------------------------------

def test_a_form_without_its_school_seats_nobody_until_the_school_is_named(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, A, [1, 2], 9, institution="")
    assert parts.intake.poll_once().outcomes == {"correction": 1}
    mails = replies_by_recipient(smtp_sink, 0, 2)
    assert _seats(parts) == [(nominee(1).name, "held", ""), (nominee(2).name, "held", "")]
    lines = mails[A][0].text.splitlines()
    _golden("fair_seats_blank_institution", mails[A][0])
    assert "1. 「报名表.xlsx」「填报单位（盖章）」列：表头“填报单位（盖章）”未填写，请填写学校全称。" in lines
    assert ("说明：汇总表未填写“填报单位”：请在表头填写学校全称后重新发送，"
            "教师按重新收到的时间排序。") in lines
    assert _items(parts) == [("institution_missing", "", A,
                              "汇总表未填写填报单位：2名教师待审核（未占名额），已请发件人补填后重发")]
    assert "【未填写填报单位】待办事项#1：汇总表未填写填报单位：2名教师待审核" in _digest_text(parts)

    _send(dovecot, imap_account, A, [1, 2], 10)  # the same form, the school named
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert _seats(parts) == [(nominee(1).name, "withdrawn", ""), (nominee(2).name, "withdrawn", ""),
                             (nominee(1).name, "seated", SCHOOL_A), (nominee(2).name, "seated", SCHOOL_A)]
    assert prove(parts.state).breaks == []


def test_a_form_after_the_deadline_changes_nothing(open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, A, [1, 2], 9)
    parts.intake.poll_once()
    _send(dovecot, imap_account, A, [1], 9, day=10)  # would withdraw teacher 2
    assert parts.intake.poll_once().outcomes == {"late": 1}
    assert _seats(parts) == [(nominee(1).name, "seated", SCHOOL_A), (nominee(2).name, "seated", SCHOOL_A)]
    assert _items(parts) == []  # staff admit late teachers by a decision (mailbot decide)
