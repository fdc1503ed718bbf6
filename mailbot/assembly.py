"""Builds the running parts from settings: mailbox source, reply transport, state, intake."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mailbot.config import Settings
from mailbot.mail.imap import ImapSource
from mailbot.mail.source import ImapSettings, MailSource
from mailbot.mail.maildir import MaildirSource
from mailbot.state.outbox import FolderTransport
from mailbot.pipeline import Intake
from mailbot.rules import CampaignRules, load_rules
from mailbot.mail.smtp import SmtpTransport, Transport
from mailbot.state.store import State


def make_source(settings: Settings) -> MailSource:
    """The configured mailbox: IMAP, or the local Maildir default."""
    if settings.mailbox.kind == "imap":
        c = settings.imap
        return ImapSource(ImapSettings(host=c.host, port=c.port or (993 if c.tls == "implicit" else 143),
                                       tls=c.tls, user=c.user, password=c.secret(), folder=c.folder,
                                       timeout=c.timeout, allow_plain_remote=c.allow_plain_remote,
                                       ca_file=str(c.ca_file) if c.ca_file else None))
    return MaildirSource(settings.mailbox.maildir_path)


def make_transport(settings: Settings) -> Transport:
    if settings.smtp.mode == "smtp":
        return SmtpTransport(settings.smtp, settings.smtp.envelope_from or settings.reply.from_address)
    return FolderTransport(settings.smtp.outbox_dir)


@dataclass
class Assembly:
    settings: Settings
    rules: CampaignRules
    state: State
    source: MailSource
    transport: Transport
    intake: Intake

    def close(self) -> None:
        for closer in (self.transport.close, self.source.close, self.state.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def assemble(settings: Settings, log: Any, *, actor: str = "daemon") -> Assembly:
    """Open everything; files created from here on are private to the service user."""
    os.umask(0o077)
    rules = load_rules(settings.rules)
    state = State(settings.state_dir)
    source = make_source(settings)
    transport = make_transport(settings)
    intake = Intake(settings, rules, state, source, transport, log=log, actor=actor)
    return Assembly(settings, rules, state, source, transport, intake)
