"""Wires a real Intake to the test Dovecot account and SMTP sink, and reads results back.

``open_parts`` is a fixture: import it into a test module (``from intake_harness import open_parts``)."""

from __future__ import annotations

import email
import io
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailbot.assembly import Assembly, assemble
from mailbot.config import Settings, load_settings
from mailbot.logs import configure_logging, get_logger
from mailbot.bundled import default_rules_file
from mail_factory import RECEIVING_SERVER

SHANGHAI = ZoneInfo("Asia/Shanghai")


def shanghai(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


def rules_with_seats(tmp_path: Path, seats: int) -> Path:
    """A copy of the bundled rules with every program's default seat count set to ``seats``."""
    text = default_rules_file().read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^seats = 50\b", f"seats = {seats}", text)
    assert n == 1, "the bundled rules file changed shape"
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def rules_with(tmp_path: Path, extra: str) -> Path:
    """A copy of the bundled rules with ``extra`` TOML appended (e.g. ``[[demand]]`` tables)."""
    path = tmp_path / "rules.toml"
    path.write_text(default_rules_file().read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


STAFF = "peixun@zjut.edu.cn"


@pytest.fixture()
def open_parts(tmp_path: Path, dovecot: Any, imap_account: Any, smtp_sink: Any) -> Any:
    """``make(rules=None, **settings)``: an intake on the test account and SMTP sink, staff at
    :data:`STAFF`, the given rules file (default: the bundled rules), closed at the end."""
    opened: list[Assembly] = []

    def make(rules: Path | None = None, **overrides: Any) -> Assembly:
        settings = imap_settings(tmp_path, imap_account, smtp_sink, staff_addresses=[STAFF],
                                 rules=rules or default_rules_file(), **overrides)
        parts = open_intake(settings, io.StringIO())
        opened.append(parts)
        return parts

    yield make
    for parts in opened:
        parts.close()


def imap_settings(tmp_path: Path, account: Any, sink: Any, **overrides: Any) -> Settings:
    """Settings for the real Dovecot account and SMTP sink, state under ``tmp_path``."""
    data: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "log_format": "json",
        "mailbox": {"kind": "imap"},
        "imap": {"host": account.host, "port": account.port, "tls": "plain", "user": account.user,
                 "password": account.password, "timeout": 10},
        "smtp": {"mode": "smtp", "host": sink.host, "port": sink.port, "tls": "plain",
                 "envelope_from": "bounces@zjut.edu.cn", "retry_base_seconds": 0.01},
        "reply": {"message_id_domain": "mailbot.test"},
        "trust": {"authserv_ids": [RECEIVING_SERVER]},  # as in production: our MX's results count
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return load_settings(None, **data)


def local_settings(root: Path) -> Settings:
    """Settings of an intake without servers: a Maildir under ``root`` in, replies written to an
    outbox folder, the receiving server's authserv-id trusted."""
    return load_settings(None, state_dir=root / "state", log_format="json",
                         mailbox={"kind": "maildir", "maildir_path": root / "maildir"},
                         smtp={"mode": "folder", "outbox_dir": root / "outbox"},
                         trust={"authserv_ids": ["mx.zjut.edu.cn"]})


def open_intake(settings: Settings, log_stream: Any = None) -> Assembly:
    configure_logging("json", stream=log_stream)
    return assemble(settings, get_logger())


@dataclass(frozen=True)
class Reply:
    to: str
    subject: str
    text: str
    headers: dict[str, str]
    attachments: tuple[str, ...]


def parse_reply(raw: bytes) -> Reply:
    msg = email.message_from_bytes(raw, policy=policy.default)
    body = msg.get_body(preferencelist=("plain",))
    names = tuple(p.get_filename() or "" for p in msg.iter_attachments())
    return Reply(str(msg["To"]), str(msg["Subject"]), body.get_content() if body else "",
                 {k: str(v) for k, v in msg.items()}, names)


def replies_by_recipient(smtp_sink: Any, start: int, count: int) -> dict[str, list[Reply]]:
    """The mails the sink accepted after the first ``start``, by recipient (exactly ``count``)."""
    mails = smtp_sink.wait_for(start + count)[start:]
    assert len(mails) == count
    out: dict[str, list[Reply]] = {}
    for m in mails:
        out.setdefault(m.rcpt_tos[0], []).append(parse_reply(m.raw))
    return out


def outcomes(parts: Assembly) -> list[tuple[str, str]]:
    return [(r["sender"], r["outcome"]) for r in parts.state.db.query(
        "SELECT sender, outcome FROM messages ORDER BY id")]
