"""Real TLS to real servers: IMAP implicit TLS and STARTTLS (Dovecot), SMTP STARTTLS and implicit
TLS (aiosmtpd), certificates verified against ``ca_file``; an untrusted certificate is refused."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import open_intake, shanghai
from mail_factory import make_mail
from mailbot.config import load_settings
from mailbot.errors import MailboxError, SendError
from mailbot.mail.smtp import SmtpTransport
from servers import SmtpSink

pytestmark = pytest.mark.servers


def _settings(tmp_path: Path, dovecot_tls, account, sink: SmtpSink, *, imap_tls: str, smtp_tls: str,
              ca_file: Path | None):
    port = dovecot_tls.tls_port if imap_tls == "implicit" else dovecot_tls.port
    return load_settings(None, **{
        "state_dir": tmp_path / "state", "log_format": "json",
        "mailbox": {"kind": "imap"},
        "imap": {"host": account.host, "port": port, "tls": imap_tls, "user": account.user,
                 "password": account.password, "timeout": 10, "ca_file": ca_file},
        "smtp": {"mode": "smtp", "host": sink.host, "port": sink.port, "tls": smtp_tls,
                 "envelope_from": "bounces@zjut.edu.cn", "ca_file": ca_file},
    })


@pytest.mark.parametrize(("imap_tls", "smtp_tls"), [("implicit", "starttls"), ("starttls", "implicit")])
def test_intake_over_verified_tls_reads_and_answers(tmp_path, dovecot_tls, imap_tls, smtp_tls) -> None:
    account = dovecot_tls.add_user()
    cert = (dovecot_tls.cert_path, dovecot_tls.key_path)
    with SmtpSink(dovecot_tls.host, tls=smtp_tls, cert=cert) as sink:
        dovecot_tls.append(make_mail(attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(1)]))]),
                           shanghai(2020, 11, 2, 9, 0), user=account.user)
        parts = open_intake(_settings(tmp_path, dovecot_tls, account, sink, imap_tls=imap_tls,
                                      smtp_tls=smtp_tls, ca_file=dovecot_tls.cert_path), io.StringIO())
        try:
            report = parts.intake.poll_once()
        finally:
            parts.close()
        assert report.outcomes == {"accepted": 1}
        assert [m.rcpt_tos for m in sink.wait_for(1)] == [("wang@zjxx.edu.cn",)]


def test_an_untrusted_server_certificate_is_refused_with_a_clear_error(tmp_path, dovecot_tls) -> None:
    account = dovecot_tls.add_user()
    with SmtpSink() as sink:
        parts = open_intake(_settings(tmp_path, dovecot_tls, account, sink, imap_tls="implicit",
                                      smtp_tls="plain", ca_file=None), io.StringIO())
        try:
            with pytest.raises(MailboxError, match="cannot connect to IMAP.*CERTIFICATE_VERIFY_FAILED"):
                parts.intake.poll_once()
        finally:
            parts.close()


def test_the_tls_servers_refuse_a_login_or_a_mail_before_tls_so_the_tests_above_prove_it_is_used(
        tmp_path, dovecot_tls) -> None:
    account = dovecot_tls.add_user()
    cert = (dovecot_tls.cert_path, dovecot_tls.key_path)
    with SmtpSink(dovecot_tls.host, tls="starttls", cert=cert) as sink:
        parts = open_intake(_settings(tmp_path, dovecot_tls, account, sink, imap_tls="plain",
                                      smtp_tls="plain", ca_file=dovecot_tls.cert_path), io.StringIO())
        try:
            with pytest.raises(MailboxError, match="IMAP login failed for 127.0.0.2.*server said no"):
                parts.intake.poll_once()
        finally:
            parts.close()
        with pytest.raises(SendError, match="530.*STARTTLS"):
            SmtpTransport(parts.settings.smtp, "bounces@zjut.edu.cn").send(
                "bounces@zjut.edu.cn", "wang@zjxx.edu.cn", make_mail(), name="plain")
        assert sink.messages == []
