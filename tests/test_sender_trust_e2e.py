"""Sender trust end to end against Dovecot + aiosmtpd: our own MX's Authentication-Results are
believed, anyone else's are not; deny-listed domains are quarantined; a sender domain outside
.edu.cn and personal mailboxes is flagged for staff but still answered."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, outcomes, parse_reply, shanghai
from mail_factory import make_mail
from mailbot.office.digest import build_digest

pytestmark = pytest.mark.servers

ON_TIME = shanghai(2020, 11, 2, 10, 0)
DMARC_FAIL = "{server}; dmarc=fail (p=reject dis=none) header.from=zjxx.edu.cn; spf=fail smtp.mailfrom=zjxx.edu.cn; dkim=none"


@pytest.fixture()
def parts(tmp_path: Path, dovecot, imap_account, smtp_sink):
    settings = imap_settings(tmp_path, imap_account, smtp_sink,
                             trust={"authserv_ids": ("mx.zjut.edu.cn",), "deny_domains": ("spam-school.cn",)})
    opened = open_intake(settings, io.StringIO())
    yield opened
    opened.close()


def _form_mail(sender: str = "wang@zjxx.edu.cn", **kw: object) -> bytes:
    return make_mail(sender=sender, attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(1)]))], **kw)


def _folder(dovecot, account, name: str) -> int:
    return len(dovecot.list_folder(name, user=account.user))


def _row(parts) -> dict:
    return next(parts.state.db.query("SELECT outcome, reason, auth_summary, domain_mismatch, receipt FROM messages"))


def test_dmarc_fail_from_our_own_mx_is_quarantined_without_a_reply(parts, dovecot, imap_account, smtp_sink) -> None:
    dovecot.append(_form_mail(extra_headers={"Authentication-Results": DMARC_FAIL.format(server="mx.zjut.edu.cn")}),
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


def test_the_same_header_from_an_untrusted_authserv_id_is_ignored_and_the_form_accepted(
        parts, dovecot, imap_account, smtp_sink) -> None:
    forged = DMARC_FAIL.format(server="mx.zjxx.edu.cn")  # anyone can write this header
    dovecot.append(_form_mail(extra_headers={"Authentication-Results": forged}), ON_TIME, user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert _row(parts)["auth_summary"] == "dmarc=None spf=None dkim=None"
    (mail,) = smtp_sink.wait_for(1)
    assert mail.rcpt_tos == ("wang@zjxx.edu.cn",)
    assert (_folder(dovecot, imap_account, "Processed"), _folder(dovecot, imap_account, "Quarantine")) == (1, 0)


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
