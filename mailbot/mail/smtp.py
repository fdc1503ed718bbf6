"""Handing one reply to an SMTP server (smtplib), with errors sorted by what they mean.

4xx and connection failures before DATA are temporary (retry later); 5xx is permanent; a
connection lost during or after DATA leaves delivery unknown, so the reply must not be re-sent
blindly (``SendError.unknown``).
"""

from __future__ import annotations

import smtplib
from typing import Protocol

from mailbot.config import SmtpConfig
from mailbot.errors import SendError


class Transport(Protocol):
    def send(self, envelope_from: str, to: str, raw: bytes, *, name: str) -> None: ...
    def close(self) -> None: ...


class SmtpTransport:
    """Sends through one SMTP connection, reopened when it drops."""

    def __init__(self, config: SmtpConfig, envelope_from: str) -> None:
        self.config = config
        self.envelope_from = envelope_from
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        try:
            if c.tls == "implicit":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port or 465, timeout=c.timeout,
                                                     context=c.tls_context())
            else:
                conn = smtplib.SMTP(c.host, c.port or (587 if c.tls == "starttls" else 25), timeout=c.timeout)
                if c.tls == "starttls":
                    conn.starttls(context=c.tls_context())
            if c.user:
                conn.login(c.user, c.secret())
        except smtplib.SMTPAuthenticationError as exc:
            raise SendError(f"SMTP login refused for {c.user}@{c.host}: {exc.smtp_code}", permanent=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"cannot connect to SMTP {c.host}:{c.port}: {exc}") from exc
        return conn

    def send(self, envelope_from: str, to: str, raw: bytes, *, name: str = "") -> None:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            conn.ehlo_or_helo_if_needed()
            code, resp = conn.mail(envelope_from or self.envelope_from)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, resp, envelope_from)
            code, resp = conn.rcpt(to)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({to: (code, resp)})
        except smtplib.SMTPServerDisconnected as exc:
            self._conn = None
            raise SendError(f"SMTP connection lost before DATA: {exc}") from exc
        except smtplib.SMTPSenderRefused as exc:
            self._reset()
            raise SendError(f"SMTP refused sender: {exc.smtp_code} {exc.smtp_error!r}",
                            permanent=exc.smtp_code >= 500) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset()
            (code, msg), = exc.recipients.values()
            raise SendError(f"SMTP refused recipient: {code} {msg!r}", permanent=code >= 500) from exc
        except (OSError, smtplib.SMTPException) as exc:
            self._conn = None
            raise SendError(f"SMTP error before DATA: {exc}") from exc
        try:
            code, resp = conn.data(raw)
            if code != 250:  # smtplib returns the reply to the message body instead of raising
                raise smtplib.SMTPDataError(code, resp)
        except smtplib.SMTPDataError as exc:
            self._reset()
            raise SendError(f"SMTP refused message: {exc.smtp_code} {exc.smtp_error!r}",
                            permanent=exc.smtp_code >= 500) from exc
        except (OSError, smtplib.SMTPException) as exc:
            self._conn = None
            raise SendError(f"SMTP connection lost during DATA: {exc}", unknown=True) from exc

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._conn = None
