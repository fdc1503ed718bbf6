"""Replies that can't be aimed at others, end to end against Dovecot + aiosmtpd.

Only our own receiving server's ``Authentication-Results`` count, and only a pass that aligns
with ``From`` (DMARC, RFC 7489) lets mailbot answer: a forged ``From`` of a third party gets
that third party nothing at all.  A reply carries no formula and no URL from the mail or the
form.  Replies past the hourly budget wait in the outbox and all leave later, once each.
"""

from __future__ import annotations

import email
import io
import re
import zipfile
from email import policy
from pathlib import Path

import pytest
from openpyxl import load_workbook

from daemon_harness import MailbotProcess, write_config
from forms_factory import make_annex3_xlsx, nominee, with_formulas
from intake_harness import imap_settings, open_intake, outcomes, parse_reply, shanghai
from mail_factory import RECEIVING_SERVER, delivered_auth, make_mail
from mailbot.office.digest import build_digest
from mailbot.state.outbox import HELD_BY_BUDGET

pytestmark = pytest.mark.servers

ON_TIME = shanghai(2020, 11, 2, 10, 0)
DMARC_FAIL = "{server}; dmarc=fail (p=reject dis=none) header.from=zjxx.edu.cn; spf=fail smtp.mailfrom=zjxx.edu.cn; dkim=none"


@pytest.fixture()
def parts(tmp_path: Path, dovecot, imap_account, smtp_sink):
    settings = imap_settings(tmp_path, imap_account, smtp_sink,
                             trust={"authserv_ids": (RECEIVING_SERVER,), "deny_domains": ("spam-school.cn",)})
    opened = open_intake(settings, io.StringIO())
    yield opened
    opened.close()


def _form_mail(sender: str = "wang@zjxx.edu.cn", serial: int = 1, institution: str = "浙江某某职业技术学院",
               **kw: object) -> bytes:
    return make_mail(sender=sender, attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(serial)], institution=institution))],
                     **kw)


def _folder(dovecot, account, name: str) -> int:
    return len(dovecot.list_folder(name, user=account.user))


def _row(parts) -> dict:
    return next(parts.state.db.query("SELECT outcome, reason, auth_summary, domain_mismatch, receipt FROM messages"))


def _with_header_below_ours(raw: bytes, header: str) -> bytes:
    """A header the sender wrote: below the ones our server added on top."""
    return raw.replace(b"\r\nFrom: ", f"\r\n{header}\r\nFrom: ".encode(), 1)


# --------------------------------------------------------------------------- who gets a reply


def test_dmarc_fail_from_our_own_mx_is_quarantined_without_a_reply(parts, dovecot, imap_account, smtp_sink) -> None:
    dovecot.append(_form_mail(extra_headers={"Authentication-Results": DMARC_FAIL.format(server=RECEIVING_SERVER)}),
                   ON_TIME, user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"quarantined": 1}
    row = _row(parts)
    assert (row["outcome"], row["reason"], row["auth_summary"]) == (
        "quarantined", "dmarc-fail", "dmarc=fail spf=fail dkim=none")
    assert (_folder(dovecot, imap_account, "INBOX"), _folder(dovecot, imap_account, "Quarantine")) == (0, 1)
    assert smtp_sink.attempts == 0
    assert list(parts.state.db.query("SELECT * FROM outbox")) == []
    assert list(parts.state.db.query("SELECT * FROM nominees")) == []
    attention = build_digest(parts.state, parts.rules, parts.settings).attention
    assert [(a.category, a.ref) for a in attention] == [("quarantined", row["receipt"])]


def test_a_header_the_sender_wrote_under_another_authserv_id_changes_nothing(
        parts, dovecot, imap_account, smtp_sink) -> None:
    forged = f"Authentication-Results: {DMARC_FAIL.format(server='mx.zjxx.edu.cn')}"  # anyone can write this
    dovecot.append(_with_header_below_ours(_form_mail(), forged), ON_TIME, user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert _row(parts)["auth_summary"] == "dmarc=None spf=pass dkim=none"
    (mail,) = smtp_sink.wait_for(1)
    assert mail.rcpt_tos == ("wang@zjxx.edu.cn",)
    assert (_folder(dovecot, imap_account, "Processed"), _folder(dovecot, imap_account, "Quarantine")) == (1, 0)


def test_a_forged_from_of_a_third_party_gets_that_party_nothing_and_staff_see_it(
        parts, dovecot, imap_account, smtp_sink) -> None:
    # The attacker's own envelope passes SPF at our server, but for the attacker's domain, not
    # for the school whose principal the From names.  A form and a plain question, both forged.
    envelope = {"Return-Path": "<attacker@qq.com>"}
    dovecot.append(_form_mail("principal@victim.edu.cn", auth=delivered_auth("attacker@qq.com"),
                              subject="中奖通知：请登录 http://evil.example/prize 领取", extra_headers=envelope),
                   ON_TIME, user=imap_account.user)
    dovecot.append(make_mail(sender="dean@victim.edu.cn", auth=delivered_auth("attacker@qq.com"),
                             body="请问报名截止时间？", extra_headers=envelope), ON_TIME, user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"quarantined": 2}
    rows = list(parts.state.db.query("SELECT sender, outcome, reason, receipt FROM messages ORDER BY id"))
    assert [(r["sender"], r["outcome"], r["reason"]) for r in rows] == [
        ("principal@victim.edu.cn", "quarantined", "not-aligned"),
        ("dean@victim.edu.cn", "quarantined", "not-aligned")]
    assert smtp_sink.attempts == 0 and smtp_sink.wait_for(1, timeout=0.5) == []
    assert list(parts.state.db.query("SELECT * FROM outbox")) == []
    assert list(parts.state.db.query("SELECT * FROM nominees")) == []
    assert (_folder(dovecot, imap_account, "INBOX"), _folder(dovecot, imap_account, "Quarantine")) == (0, 2)
    digest = build_digest(parts.state, parts.rules, parts.settings)
    assert [(a.category, a.ref, a.sender, a.summary) for a in digest.attention] == [
        ("quarantined", r["receipt"], r["sender"], "邮件已隔离：发件人未通过核验，未处理也未回复") for r in rows]
    lines = parts.intake.renderer.render_digest(digest).text.splitlines()
    items = [(line, lines[i + 1].split("；已等待")[0]) for i, line in enumerate(lines)
             if line[:3] in ("1. ", "2. ")]  # the waiting time aside
    assert items == [(f"{n}. 【已隔离】待办事项#{n}：邮件已隔离：发件人未通过核验，未处理也未回复",
                      f"   学校：未知；发件人：{r['sender']}；回执：{r['receipt']}")
                     for n, r in enumerate(rows, start=1)]


AUTHENTICATION_CASES = [
    # (From, our server's results, answered?)
    ("a@zjxx.edu.cn", delivered_auth("a@zjxx.edu.cn"), True),  # aligned SPF pass
    ("b@x.edu.cn", delivered_auth("bounce@mail.x.edu.cn"), True),  # subdomain: same organizational domain
    ("c@x2.edu.cn", f"{RECEIVING_SERVER}; spf=fail smtp.mailfrom=c@x2.edu.cn; dkim=pass header.d=x2.edu.cn", True),
    ("d@zjyy.edu.cn", f"{RECEIVING_SERVER}; spf=fail smtp.mailfrom=d@zjyy.edu.cn; dkim=pass header.d=attacker.example",
     False),  # DKIM passed, but for an unrelated domain
    ("e@b.github.io", delivered_auth("e@a.github.io"), False),  # a.github.io and b.github.io are different sites
    ("f@zjzz.edu.cn", None, False),  # no result from our server at all
]


def test_each_mail_is_answered_only_when_its_authentication_aligns_with_its_from(
        parts, dovecot, imap_account, smtp_sink) -> None:
    for serial, (sender, auth, _) in enumerate(AUTHENTICATION_CASES, start=1):
        dovecot.append(_form_mail(sender, serial, f"浙江第{serial}职业技术学院", auth=auth,
                                  extra_headers={"Return-Path": f"<{sender}>"}), ON_TIME, user=imap_account.user)
    parts.intake.poll_once()
    expected = [(sender, "accepted" if ok else "quarantined") for sender, _, ok in AUTHENTICATION_CASES]
    assert outcomes(parts) == expected
    answered = sorted(sender for sender, _, ok in AUTHENTICATION_CASES if ok)
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(len(answered))) == answered
    assert smtp_sink.attempts == len(answered)


def test_a_deny_listed_domain_is_quarantined_without_a_reply(parts, dovecot, imap_account, smtp_sink) -> None:
    dovecot.append(_form_mail(sender="boss@mail.spam-school.cn"), ON_TIME, user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"quarantined": 1}
    assert (_row(parts)["outcome"], _row(parts)["reason"]) == ("quarantined", "deny-listed")
    assert _folder(dovecot, imap_account, "Quarantine") == 1
    assert smtp_sink.attempts == 0


def test_a_form_from_a_company_domain_is_flagged_for_staff_and_still_answered_but_a_personal_mailbox_is_not(
        parts, dovecot, imap_account, smtp_sink) -> None:
    dovecot.append(_form_mail(sender="wang@zjxx-corp.com"), ON_TIME, user=imap_account.user)
    dovecot.append(make_mail(sender="li@qq.com", subject="报名表（个人邮箱）", attachments=[
        ("报名表.xlsx", make_annex3_xlsx([nominee(2)], institution="杭州某职业技术学院"))]), ON_TIME, user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"accepted": 2}
    rows = list(parts.state.db.query("SELECT sender, outcome, domain_mismatch, receipt FROM messages ORDER BY id"))
    assert [(r["sender"], r["domain_mismatch"]) for r in rows] == [("wang@zjxx-corp.com", 1), ("li@qq.com", 0)]
    assert rows[0]["outcome"] == "accepted"
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(2)) == ["li@qq.com", "wang@zjxx-corp.com"]
    assert nominee(1).name in parse_reply(smtp_sink.messages[0].raw).text
    digest = build_digest(parts.state, parts.rules, parts.settings)
    assert [(a.category, a.ref, a.sender) for a in digest.attention] == [
        ("domain_mismatch", rows[0]["receipt"], "wang@zjxx-corp.com")]
    text = parts.intake.renderer.render_digest(digest).text
    lines = text.splitlines()
    at = lines.index("1. 【发件域名与单位不符】表内填报单位“浙江某某职业技术学院”与发件邮箱域名不一致")
    assert re.fullmatch(rf"   学校：浙江某某职业技术学院；发件人：wang@zjxx-corp\.com；回执：{rows[0]['receipt']}；"
                        rf"已等待不到1小时（自\d{{4}}年\d+月\d+日 \d\d:\d\d起）", lines[at + 1]), lines[at + 1]
    assert outcomes(parts)[0] == ("wang@zjxx-corp.com", "accepted")
    assert "未配置发件人认证" not in text


TRUST_WARNING = "注意：尚未配置发件人认证，回复会发给任何发件地址（包括伪造的发件人），请联系技术人员配置。"


def test_without_trust_configured_replies_go_out_as_before_and_every_digest_warns(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    settings = imap_settings(tmp_path, imap_account, smtp_sink, trust={"authserv_ids": []})
    opened = open_intake(settings, io.StringIO())
    try:
        dovecot.append(_form_mail(auth=None), ON_TIME, user=imap_account.user)
        assert opened.intake.poll_once().outcomes == {"accepted": 1}
        assert [m.rcpt_tos for m in smtp_sink.wait_for(1)] == [("wang@zjxx.edu.cn",)]
        assert _row(opened)["auth_summary"] == "dmarc=None spf=None dkim=None"
        rendered = opened.intake.renderer.render_digest(build_digest(opened.state, opened.rules, opened.settings))
        assert TRUST_WARNING in rendered.text.splitlines()
        assert TRUST_WARNING.removesuffix("。") in rendered.html
    finally:
        opened.close()


def test_mailbot_run_warns_at_start_when_trust_is_not_configured(tmp_path, dovecot, imap_account, smtp_sink) -> None:
    config = write_config(tmp_path, imap_account, smtp_sink, trust={"authserv_ids": []})
    daemon = MailbotProcess("run", config)
    try:
        daemon.wait_for("daemon_started", timeout=20)
        warning = daemon.wait_for("sender_trust_not_configured", timeout=5)
        assert warning["level"] == "warning"
    finally:
        assert daemon.stop() == 0


# --------------------------------------------------------------------------- no active content

URLS = ("http://evil.example/win", "http://evil.example/name", "http://evil.example/prize", "www.evil.com")


def _hostile_form() -> bytes:
    rows = [nominee(1), nominee(2, name=f"李四 {URLS[1]}"), nominee(3, position="@SUM(1)", email="+1")]
    plain = make_annex3_xlsx(rows, institution="浙江某某职业技术学院")
    # row 4 is nominee 1: a name that is a HYPERLINK formula, a position that is a DDE call;
    # a bare formula in the (unlabelled) column after the table
    return with_formulas(plain, {"C4": (f'HYPERLINK("{URLS[0]}","{nominee(1).name}")', nominee(1).name),
                                 "E5": ("cmd|' /C calc'!A0", "讲师"), "F6": ("1+1", "+1")})


def _every_text(raw: bytes) -> tuple[str, list[bytes]]:
    """Every header and decoded part of a reply as one text, and the attached workbooks."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    texts, books = [], []
    for part in msg.walk():
        texts += [f"{k}: {v}" for k, v in part.items()]
        texts.append(part.get_filename() or "")
        if part.get_content_maintype() == "text":
            texts.append(part.get_content())
        elif not part.is_multipart():
            books.append(part.get_payload(decode=True))
    return "\n".join(texts), books


def test_formulas_and_urls_from_a_form_never_reach_the_reply_or_its_workbook(
        parts, dovecot, imap_account, smtp_sink) -> None:
    dovecot.append(make_mail(sender="wang@zjxx.edu.cn", sender_name=f"王老师 {URLS[3]}",
                             subject=f"中奖通知：请登录 {URLS[2]} 领取",
                             attachments=[("报名表.xlsx", _hostile_form())]), ON_TIME, user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"correction": 1}
    (mail,) = smtp_sink.wait_for(1)
    text, books = _every_text(mail.raw)
    assert parse_reply(mail.raw).subject == f"Re: 报名表【需修改1处｜回执 {_row(parts)['receipt']}】"
    assert "evil.example" not in text and "evil.com" not in text and "http://" not in text
    assert "李四hxxp[:]//evil·example/name" in text  # the name as read, shown inert
    (book,) = books
    with zipfile.ZipFile(io.BytesIO(book)) as z:
        xml = "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    assert "evil.example" not in xml and "://evil" not in xml and "<f>" not in xml and "<f " not in xml
    ws = load_workbook(io.BytesIO(book))["Sheet1"]
    assert [c.coordinate for row in ws.iter_rows() for c in row if c.data_type == "f"] == []
    assert (ws["C4"].value, ws["E5"].value, ws["E6"].value, ws["F6"].value) == (nominee(1).name, "讲师", "@SUM(1)", "+1")
    assert [ws[c].data_type for c in ("E6", "F6")] == ["s", "s"]
    assert ws["C5"].value == "李四 hxxp[:]//evil[.]example/name"


# --------------------------------------------------------------------------- how much is sent


def test_a_burst_past_the_hourly_budget_waits_in_the_outbox_and_all_leave_once_the_budget_allows(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    settings = imap_settings(tmp_path, imap_account, smtp_sink, reply={"max_per_hour": 3},
                             staff_addresses=["staff@zjut.edu.cn"])
    opened = open_intake(settings, io.StringIO())
    senders = [f"t{i}@school{i}.edu.cn" for i in range(1, 6)]
    try:
        for i, sender in enumerate(senders, start=1):
            dovecot.append(_form_mail(sender, i, f"浙江第{i}职业技术学院"), ON_TIME, user=imap_account.user)
        report = opened.intake.poll_once()
        assert (report.outcomes, report.sent.sent, report.sent.held) == ({"accepted": 5}, 3, 2)
        assert [m.rcpt_tos[0] for m in smtp_sink.wait_for(3)] == senders[:3]
        db = opened.state.db
        assert [(r["to_address"], r["status"], r["last_error"]) for r in db.query(
            "SELECT to_address, status, last_error FROM outbox ORDER BY id")] == [
            *((s, "sent", "") for s in senders[:3]), *((s, "queued", HELD_BY_BUDGET) for s in senders[3:])]
        assert [e["detail"] for e in db.query("SELECT detail FROM events WHERE kind = 'reply_budget_reached'")] == [
            '{"held": 2, "max_per_hour": 3}']  # recorded once, when the budget was first reached (both
        # replies past it were queued in the same fetch batch, sent together)
        digest = opened.intake.renderer.render_digest(build_digest(opened.state, opened.rules, opened.settings))
        assert "注意：已达到每小时回复上限（3封），目前有2封回复在发件队列中等待，额度恢复后将自动发出。" in digest.text

        assert opened.intake.poll_once().sent.held == 2  # still within the same hour: nothing more leaves
        assert smtp_sink.attempts == 3
    finally:
        opened.close()
    raised = imap_settings(tmp_path, imap_account, smtp_sink, reply={"max_per_hour": 10},
                           staff_addresses=["staff@zjut.edu.cn"])
    opened = open_intake(raised, io.StringIO())  # staff raise the budget (or the hour passes)
    try:
        db = opened.state.db
        later = opened.intake.poll_once()
        assert (later.fetched, later.sent.sent, later.sent.held) == (0, 2, 0)
        assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(5)) == senders
        assert smtp_sink.attempts == 5  # none lost, none twice
        assert [(r["status"], r["last_error"]) for r in db.query(
            "SELECT status, last_error FROM outbox ORDER BY id")] == [("sent", "")] * 5
    finally:
        opened.close()


def test_a_big_form_gets_a_bounded_reply(tmp_path, dovecot, imap_account, smtp_sink) -> None:
    settings = imap_settings(tmp_path, imap_account, smtp_sink,
                             reply={"max_findings_listed": 2, "max_rows_for_workbook": 3})
    opened = open_intake(settings, io.StringIO())
    try:
        rows = [nominee(i, email=f"bad-address-{i}") for i in range(1, 5)]
        dovecot.append(make_mail(attachments=[("报名表.xlsx", make_annex3_xlsx(rows))]), ON_TIME, user=imap_account.user)
        assert opened.intake.poll_once().outcomes == {"correction": 1}
        reply = parse_reply(smtp_sink.wait_for(1)[0].raw)
        assert reply.subject.startswith("Re: 报名表【需修改4处｜回执 ")
        assert reply.attachments == ()  # 4 rows > 3: no workbook
        listed = [line for line in reply.text.splitlines() if line[:2] in ("1.", "2.", "3.", "4.")]
        assert [line[:2] for line in listed] == ["1.", "2."]
        assert "……另有2处问题未逐一列出，请对照以上说明核对整张表格。" in reply.text.splitlines()
    finally:
        opened.close()


# --------------------------------------------------------------------------- what a late reply says


def test_a_late_form_is_not_registered_and_its_reply_names_the_list_that_stands_by_receipt(
        parts, dovecot, imap_account, smtp_sink) -> None:
    dovecot.append(_form_mail(serial=1), ON_TIME, user=imap_account.user)
    dovecot.append(_form_mail(serial=2, subject="补报"), shanghai(2020, 11, 10, 9, 0), user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"accepted": 1, "late": 1}
    first, late = (r["receipt"] for r in parts.state.db.query("SELECT receipt FROM messages ORDER BY id"))
    replies = {parse_reply(m.raw).subject: parse_reply(m.raw).text for m in smtp_sink.wait_for(2)}
    text = replies[f"Re: 报名表【截止后收到，未登记｜回执 {late}】"]
    assert "截止时间后收到的报名表不自动登记，本邮件的内容未计入报名结果。" in text
    assert f"贵单位截止前报送的名单（回执号：{first}）仍然有效，不受本邮件影响。" in text.splitlines()
    assert nominee(2).name not in text
    assert [r["name"] for r in parts.state.db.query("SELECT name FROM nominees")] == [nominee(1).name]


def test_a_school_name_with_a_link_reaches_no_reply_or_notice_as_a_link(parts, dovecot, imap_account, smtp_sink) -> None:
    school = "示例职业技术学院 www.evil.com"
    for serial, sender in ((1, "contact@zjxx.edu.cn"), (2, "other@qq.com")):  # the second notifies the first
        dovecot.append(make_mail(sender=sender, attachments=[("报名表.xlsx", make_annex3_xlsx(
            [nominee(serial)], institution=school))]), ON_TIME, user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"accepted": 2}
    mails = smtp_sink.wait_for(3)
    assert sorted(m.rcpt_tos[0] for m in mails) == ["contact@zjxx.edu.cn", "contact@zjxx.edu.cn", "other@qq.com"]
    texts = [_every_text(m.raw)[0] for m in mails]
    assert ["evil.com" in t for t in texts] == [False, False, False]
    assert all("示例职业技术学院 www[.]evil[.]com" in t for t in texts)
