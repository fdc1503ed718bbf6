"""Only the school changes its list, end to end against the real Dovecot and SMTP sink: another
address naming a school only adds and the school is told; the contact of record still replaces
its list; over the reported demand and past the per-mail limit, teachers wait for staff."""

from __future__ import annotations

from pathlib import Path

import pytest

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import STAFF, Reply, open_parts, parse_reply, replies_by_recipient, rules_with, shanghai  # noqa: F401 - a fixture
from mail_factory import make_mail
from mailbot.masking import mask_id
from mailbot.office import staff_items
from mailbot.office.digest import build_digest
from mailbot.replies.render import ReplyRenderer

pytestmark = pytest.mark.servers

SCHOOL = "浙江某某职业技术学院"
CONTACT, OTHER = "jwc@zjxx.edu.cn", "someone@qq.com"
LOGISTICS = "物流管理职业技能等级证书"


def _send(dovecot, account, sender: str, serials: list[int], hour: int, *, institution: str = SCHOOL) -> None:
    form = make_annex3_xlsx([nominee(s) for s in serials], institution=institution)
    dovecot.append(make_mail(sender=sender, attachments=[("报名表.xlsx", form)]), shanghai(2020, 11, 2, hour, 0),
                   user=account.user)



def _named(text: str, serials: list[int]) -> list[int]:
    """Which of these nominees a text names (by name or by masked identity number)."""
    return [s for s in serials if nominee(s).name in text or mask_id(str(nominee(s).id_number)) in text]


def _receipt(parts, message: int) -> str:
    return next(parts.state.db.query("SELECT receipt FROM messages WHERE id = ?", [message]))["receipt"]


def _seats(parts) -> list[tuple[str, str, str]]:
    return [(r["name"], r["status"], r["sender"]) for r in parts.state.db.query(
        "SELECT name, status, sender FROM nominees ORDER BY id")]


def _open_items(parts) -> list[tuple[str, str, str]]:
    return [(r["kind"], r["institution"], r["sender"]) for r in parts.state.db.query(
        "SELECT kind, institution, sender FROM staff_items WHERE status = 'open' ORDER BY id")]


def _digest_text(parts) -> str:
    digest = build_digest(parts.state, parts.rules, parts.settings)
    return ReplyRenderer(parts.settings.templates).render_digest(digest).text


def test_a_second_address_naming_a_school_only_adds_and_the_contact_of_record_is_told(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, CONTACT, [1, 2, 3], 9)
    parts.intake.poll_once()
    assert list(replies_by_recipient(smtp_sink, 0, 1)) == [CONTACT]

    _send(dovecot, imap_account, OTHER, [2, 4], 10)  # repeats teacher 2, omits 1 and 3, adds 4
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    mails = replies_by_recipient(smtp_sink, 1, 3)
    assert sorted(mails) == sorted([OTHER, CONTACT, STAFF])
    first = [(nominee(s).name, "seated", CONTACT) for s in (1, 2, 3)]
    assert _seats(parts) == [*first, (nominee(4).name, "seated", OTHER)]

    receipt = next(parts.state.db.query("SELECT receipt FROM messages WHERE sender = ?", [OTHER]))["receipt"]
    (reply,) = mails[OTHER]
    assert _named(reply.text, [1, 2, 3, 4]) == [4]
    assert "说明：表中另有1名教师已由贵单位登记，未作改动，也不在此列出。" in reply.text.splitlines()

    (notice,) = mails[CONTACT]
    assert notice.subject == f"【报名名单提醒】{SCHOOL}：收到其他邮箱以贵单位名义发送的报名表（回执 {receipt}）"
    lines = notice.text.splitlines()
    assert f"本报名邮箱于2020年11月2日 10:00收到 {OTHER} 以“{SCHOOL}”名义发送的报名表（回执号：{receipt}）。" in lines
    assert [ln for ln in lines if ln.startswith("- ")] == [
        "- 新增登记教师：1名", "- 如按该表替换名单，将删除或更改贵单位已登记的教师：2名，未执行，已转工作人员处理",
        "- 表中已由贵单位登记的教师：1名，未作改动"]
    assert _named(notice.text, [1, 2, 3, 4]) == []

    (alert,) = mails[STAFF]
    assert alert.headers["Auto-Submitted"] == "auto-generated"
    items = [ln.rsplit("，", 1)[0] for ln in alert.text.splitlines() if ln[:3] == "1. "]  # without the time
    assert items == [  # the item's number, as in the digest below: what `mailbot decide close --item` takes
        f"1. 【非本校联系邮箱以本校名义报名】待办事项#1：{SCHOOL}：非本校报名联系邮箱发来报名表：新增1名（其中待审核0名），"
        f"按该表替换名单将删除或更改2名（未执行），已有1名未改动；已通知本校报名联系邮箱（回执号{receipt}），发件人：{OTHER}"]
    assert _open_items(parts) == [("other_sender", SCHOOL, OTHER)]
    assert [ln for ln in _digest_text(parts).splitlines() if ln.startswith("1. ")] == [
        f"1. 【非本校联系邮箱以本校名义报名】待办事项#1：非本校报名联系邮箱发来报名表：新增1名（其中待审核0名），"
        f"按该表替换名单将删除或更改2名（未执行），已有1名未改动；已通知本校报名联系邮箱"]

    _send(dovecot, imap_account, CONTACT, [1, 2, 3, 4], 11)  # a mail raising no item: no alert again
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert list(replies_by_recipient(smtp_sink, 4, 1)) == [CONTACT]


def test_the_contact_of_record_still_shortens_its_list_and_the_other_sender_is_told(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, CONTACT, [1, 2, 3], 9)
    _send(dovecot, imap_account, OTHER, [4], 10)
    parts.intake.poll_once()
    smtp_sink.wait_for(4)  # reply, reply, notice to the contact, staff alert

    _send(dovecot, imap_account, CONTACT, [1], 11)  # a partial list from the contact of record: it replaces
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    mails = replies_by_recipient(smtp_sink, 4, 3)  # the reply, the other sender's notice, the staff alert
    assert _seats(parts) == [(nominee(1).name, "seated", CONTACT), (nominee(2).name, "withdrawn", CONTACT),
                             (nominee(3).name, "withdrawn", CONTACT), (nominee(4).name, "withdrawn", OTHER)]
    (reply,) = mails[CONTACT]
    assert _named(reply.text, [1, 2, 3, 4]) == [1, 2, 3]
    lines = reply.text.splitlines()
    warning = ("【请注意】本邮件来自贵单位报名联系邮箱，已按贵单位的完整名单处理：此前登记的3名教师不在本表中或改报了项目，"
               "已相应取消或更改（见下方变更情况）。如非本意，请在截止时间前重新发送包含全部教师的汇总表；"
               "重新登记的教师按重新收到的时间排序。")
    assert (lines[1], lines[2], lines[3]) == ("", warning, "")  # a line of its own, before the list
    assert lines[4].startswith("我们已于")
    (alert,) = mails[STAFF]
    assert [ln.rsplit("，", 1)[0] for ln in alert.text.splitlines() if ln[:3] == "1. "] == [
        f"1. 【名单中有教师被取消或改报】待办事项#2：{SCHOOL}：报名联系邮箱的新名单取消或更改3名教师："
        f"{nominee(2).name}（{mask_id(str(nominee(2).id_number))}，取消{LOGISTICS}）；"
        f"{nominee(3).name}（{mask_id(str(nominee(3).id_number))}，取消{LOGISTICS}）；"
        f"{nominee(4).name}（{mask_id(str(nominee(4).id_number))}，取消{LOGISTICS}）"
        f"（回执号{_receipt(parts, 3)}），发件人：{CONTACT}"]
    assert "说明：另有1名由其他邮箱登记的贵单位教师已按本次名单删除或更改，已分别通知原登记邮箱。" in reply.text.splitlines()
    (changed,) = mails[OTHER]
    assert _named(changed.text, [1, 2, 3, 4]) == [4]
    assert [ln for ln in changed.text.splitlines() if ln.startswith("- ")] == [
        f"- 删除：{nominee(4).name}（{mask_id(str(nominee(4).id_number))}），{LOGISTICS}"]


def test_a_school_over_its_reported_demand_waits_for_staff(
        open_parts, tmp_path: Path, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts(rules_with(tmp_path, f'\n[[demand]]\ninstitution = "{SCHOOL}"\nprogram = "物流管理"\nteachers = 2\n'))
    _send(dovecot, imap_account, CONTACT, [1, 2, 3], 9)
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    mails = replies_by_recipient(smtp_sink, 0, 2)
    assert _seats(parts) == [(nominee(1).name, "seated", CONTACT), (nominee(2).name, "seated", CONTACT),
                             (nominee(3).name, "held", CONTACT)]
    (reply,) = mails[CONTACT]
    assert "   报名状态：待工作人员审核" in reply.text.splitlines()
    assert _open_items(parts) == [("over_demand", SCHOOL, CONTACT)]
    lines = _digest_text(parts).splitlines()
    at = lines.index(f"1. 【超出上报的培训需求数】待办事项#1：超出该校上报的培训需求数，待审核（未占名额）：{LOGISTICS}1名")
    assert lines[at + 1].startswith(f"   学校：{SCHOOL}；发件人：{CONTACT}；回执：")
    assert parts.state.db.execute(
        "SELECT count(*) FROM nominees WHERE status = 'seated'").fetchone()[0] == 2


def test_one_free_mail_address_sending_750_made_up_teachers_takes_no_seat(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    _send(dovecot, imap_account, "winner888@163.com", list(range(1, 751)), 9, institution="浙江某某学院")
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    mails = replies_by_recipient(smtp_sink, 0, 2)
    statuses = [(r["status"], r["n"]) for r in parts.state.db.query(
        "SELECT status, count(*) AS n FROM nominees GROUP BY status")]
    assert statuses == [("held", 750)]
    assert _open_items(parts) == [("too_many", "浙江某某学院", "winner888@163.com")]
    assert parts.state.db.execute("SELECT count(*) FROM school_contacts").fetchone()[0] == 0
    (reply,) = mails["winner888@163.com"]
    assert ("说明：本邮件新增750名教师，超过单封邮件30名的上限，全部暂不占用名额，已转工作人员审核，"
            "审核结果将另行邮件通知。") in reply.text.splitlines()
    assert sorted(mails) == sorted(["winner888@163.com", STAFF])


def test_quarantined_mail_is_on_the_staff_list_and_announced_once(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts(trust={"deny_domains": ["evil.example"]})
    dovecot.append(make_mail(sender="x@evil.example", attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(1)]))]),
                   shanghai(2020, 11, 2, 9, 0), user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"quarantined": 1}
    assert list(replies_by_recipient(smtp_sink, 0, 1)) == [STAFF]
    assert _open_items(parts) == [("quarantined", "", "x@evil.example")]
    assert "1. 【已隔离】待办事项#1：邮件已隔离：发件域名在拒收名单中，未处理也未回复" in _digest_text(parts).splitlines()
    _send(dovecot, imap_account, CONTACT, [1], 10)
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert list(replies_by_recipient(smtp_sink, 1, 1)) == [CONTACT]


def test_forged_forms_naming_a_school_cannot_use_up_the_schools_own_replies(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts(reply={"max_per_sender_per_day": 2})
    _send(dovecot, imap_account, CONTACT, [1], 9)
    for i, forger in enumerate(("f1@qq.com", "f2@qq.com", "f3@qq.com")):
        _send(dovecot, imap_account, forger, [10 + i], 10 + i)
    parts.intake.poll_once()
    _send(dovecot, imap_account, CONTACT, [1, 10, 11, 12], 14)  # the school's own next mail
    parts.intake.poll_once()
    mails = replies_by_recipient(smtp_sink, 0, 8)  # 5 replies, 2 notices (the third one over the cap), 1 alert
    kinds = [(r["to_address"], r["kind"]) for r in parts.state.db.query(
        "SELECT to_address, kind FROM outbox WHERE to_address = ? ORDER BY id", [CONTACT])]
    assert kinds == [(CONTACT, "acceptance"), (CONTACT, "notice_other_sender"), (CONTACT, "notice_other_sender"),
                     (CONTACT, "acceptance")]
    assert sorted((to, len(got)) for to, got in mails.items()) == [
        ("f1@qq.com", 1), ("f2@qq.com", 1), ("f3@qq.com", 1), (CONTACT, 4), (STAFF, 1)]
    assert [(r["kind"], r["detail"]) for r in parts.state.db.query(
        "SELECT kind, detail FROM events WHERE kind = 'reply_suppressed'")] == [
        ("reply_suppressed", '{"kind": "notice_other_sender", "why": "per-sender daily limit"}')]


def test_an_item_raised_outside_a_poll_is_announced_by_the_next_idle_poll(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    parts.intake.poll_once()  # an empty mailbox: the next poll is idle (one STATUS)
    with parts.state.transaction():
        staff_items.add(parts.state, "failed", "处理失败：replayed by hand", actor="replay", rules_version="t")
    report = parts.intake.poll_once()
    assert (report.fetched, report.sent.sent) == (0, 1)
    assert list(replies_by_recipient(smtp_sink, 0, 1)) == [STAFF]
