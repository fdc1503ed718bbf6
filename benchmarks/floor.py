"""The floor: the I/O and parsing any intake must do, written without one line of mailbot code.

Per mail, what mailbot cannot avoid and nothing more:

* ``UID FETCH`` in batches (``imaplib``, ``BODY.PEEK[]``, the same batch size as mailbot);
* a stdlib ``email`` parse (``compat32``, the policy mailbot parses with);
* a bare python-calamine read of the form attachment's first sheet
  (``CalamineWorkbook.from_filelike(...).get_sheet_by_index(0).to_python()``);
* one ``INSERT`` and one durable commit (WAL, ``synchronous=FULL``);
* one short text reply, all over one SMTP connection.

``benchmarks/backlog.py`` runs it in a child process, in the same run and on the same Dovecot
and SMTP sink as ``mailbot poll``; ``tests/test_architecture.py`` is not asked about it: the
point of this file is that it imports nothing from ``mailbot``.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import imaplib
import io
import re
import smtplib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from email.utils import parseaddr
from pathlib import Path

FETCH_BATCH = 20  # mailbot's ImapSettings.fetch_batch default
_UID_RE = re.compile(rb"\bUID (\d+)")
_DATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_FORM_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # zip (xlsx/ods), OLE2 (xls)


@dataclass(frozen=True)
class FloorResult:
    messages: int
    forms: int
    rows: int  # sheet rows calamine returned (header block and blank rows included)
    sql_statements: int
    seconds: float


def fetched_messages(data: list) -> list[tuple[int, bytes, bytes]]:
    """(uid, internaldate text, raw) of each literal in an imaplib FETCH response."""
    out = []
    for item in data:
        if isinstance(item, tuple):
            meta, raw = item[0], item[1]
            uid, when = _UID_RE.search(meta), _DATE_RE.search(meta)
            out.append((int(uid.group(1)) if uid else 0, when.group(1) if when else b"", raw))
    return out


def first_sheet_rows(data: bytes) -> int:
    """Rows of the first sheet, read by calamine and nothing else; 0 if it cannot read it."""
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        return len(CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0).to_python())
    except (CalamineError, ValueError, OSError):
        return 0


def run_floor(host: str, port: int, user: str, password: str, smtp_host: str, smtp_port: int,
              state: Path, tick: Callable[[int], None] = lambda n: None) -> FloorResult:
    """Process every mail in INBOX once, as cheaply as it can be done correctly."""
    state.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(state / "floor.db", isolation_level=None)
    statements = 0

    def count(_sql: str) -> None:
        nonlocal statements
        statements += 1

    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS messages (uid INTEGER PRIMARY KEY, arrived TEXT, sha256 TEXT,"
               " sender TEXT, form_rows INTEGER)")
    db.set_trace_callback(count)
    forms = rows = 0
    started = time.perf_counter()
    imap = imaplib.IMAP4(host, port, timeout=60)
    imap.login(user, password)
    imap.select("INBOX")
    uids = b" ".join(imap.uid("SEARCH", "ALL")[1]).split()
    smtp = smtplib.SMTP(smtp_host, smtp_port, timeout=60)
    for i in range(0, len(uids), FETCH_BATCH):
        _typ, data = imap.uid("FETCH", b",".join(uids[i:i + FETCH_BATCH]).decode(),
                              "(UID INTERNALDATE BODY.PEEK[])")
        for uid, arrived, raw in fetched_messages(data):
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            form_rows = 0
            for part in msg.walk():
                if part.get_content_disposition() != "attachment":
                    continue
                payload = part.get_payload(decode=True) or b""
                if payload.startswith(_FORM_MAGIC):
                    forms += 1
                    form_rows = first_sheet_rows(payload)
                    break
            rows += form_rows
            sender = parseaddr(str(msg.get("From", "")))[1]
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                       (uid, arrived.decode(), hashlib.sha256(raw).hexdigest(), sender, form_rows))
            db.execute("COMMIT")
            reply = MIMEText(f"收到，共{form_rows}行。", "plain", "utf-8")
            reply["From"], reply["To"], reply["Subject"] = "shengpei@zjut.edu.cn", sender, Header("Re: 报名表", "utf-8")
            smtp.sendmail("bounces@zjut.edu.cn", [sender], reply.as_bytes())
            tick(1)
    seconds = time.perf_counter() - started
    smtp.quit()
    imap.logout()
    db.close()
    return FloorResult(len(uids), forms, rows, statements, seconds)
