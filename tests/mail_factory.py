"""Builds synthetic inbound mail the way real clients encode it (QQ Mail, Foxmail, Outlook, 163).

Only for tests and the demo samples: every person in these messages is invented.
"""

from __future__ import annotations

import base64
import io
import urllib.parse
import zipfile
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone

CRLF = "\r\n"
RECEIVING_SERVER = "mx.zjut.edu.cn"
"""The authserv-id of the intake's own receiving server; the test configs trust it."""


def delivered_auth(sender: str, *, spf: str = "pass", dkim: str = "none") -> str:
    """The ``Authentication-Results`` value our receiving server writes for mail whose
    envelope sender is ``sender`` (SPF on MAIL FROM, as Postfix + a milter record it)."""
    return f"{RECEIVING_SERVER}; spf={spf} smtp.mailfrom={sender}; dkim={dkim}"


def _b64(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def _filename_headers(filename: str, client: str) -> tuple[str, str]:
    """(Content-Type name param, Content-Disposition filename param) as each client writes them."""
    if client == "foxmail":  # RFC 2231 with GBK
        quoted = urllib.parse.quote(filename.encode("gbk"))
        return f'name="{_b64(filename, "gbk")}"', f"filename*=GBK''{quoted}"
    if client == "qq":  # RFC 2047 inside the quoted parameter, GB18030
        enc = _b64(filename, "gb18030")
        return f'name="{enc}"', f'filename="{enc}"'
    if client == "163":
        enc = _b64(filename, "gbk")
        return f'name="{enc}"', f'filename="{enc}"'
    enc = _b64(filename, "utf-8")  # outlook
    return f'name="{enc}"', f'filename="{enc}"'


def make_mail(
    *,
    sender: str = "wang@zjxx.edu.cn",
    sender_name: str = "王老师",
    to: str = "shengpei@zjut.edu.cn",
    subject: str = "报名表-浙江某某职业技术学院",
    body: str = "您好，附件是我校的参训教师信息汇总表，请查收。",
    attachments: list[tuple[str, bytes]] | None = None,
    client: str = "qq",
    message_id: str | None = None,
    date: datetime | None = None,
    extra_headers: dict[str, str] | None = None,
    content_types: dict[str, str] | None = None,
    auth: str | None = "",
) -> bytes:
    """A multipart/mixed message with a text body and ``attachments`` (filename, bytes), as
    our receiving server stores it: ``Return-Path`` and, on top, its own
    ``Authentication-Results`` (``auth``; by default an SPF pass for ``sender``; None: none;
    an ``Authentication-Results`` in ``extra_headers`` takes its place)."""
    charset = {"qq": "gb18030", "163": "gbk", "foxmail": "gbk"}.get(client, "utf-8")
    boundary = f"----=_Part_{abs(hash((sender, subject, client))) % 10**9}"
    date = date or datetime(2020, 11, 2, 9, 30, tzinfo=timezone.utc)
    headers = [
        f"Return-Path: <{sender}>",
        f"From: {_b64(sender_name, charset)} <{sender}>",
        f"To: <{to}>",
        f"Subject: {_b64(subject, charset)}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: {message_id or make_msgid(domain=sender.split('@')[-1])}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
    ]
    extra = dict(extra_headers or {})
    if "Return-Path" in extra:
        headers[0] = f"Return-Path: {extra.pop('Return-Path')}"
    auth = extra.pop("Authentication-Results", auth)
    if auth is not None:
        headers.insert(1, f"Authentication-Results: {auth or delivered_auth(sender)}")
    headers += [f"{k}: {v}" for k, v in extra.items()]
    parts = [
        f"--{boundary}",
        f"Content-Type: text/plain; charset={charset}",
        "Content-Transfer-Encoding: base64",
        "",
        base64.encodebytes(body.encode(charset)).decode().strip(),
    ]
    for filename, data in attachments or []:
        name_param, disp_param = _filename_headers(filename, client)
        ctype = (content_types or {}).get(filename, "application/octet-stream")
        parts += [
            f"--{boundary}",
            f"Content-Type: {ctype}; {name_param}",
            "Content-Transfer-Encoding: base64",
            f"Content-Disposition: attachment; {disp_param}",
            "",
            base64.encodebytes(data).decode().strip(),
        ]
    parts.append(f"--{boundary}--")
    return (CRLF.join(headers) + CRLF + CRLF + CRLF.join(parts) + CRLF).encode("ascii")


def make_forward(inner: bytes, *, sender: str, sender_name: str = "李老师", subject: str = "转发: 报名表") -> bytes:
    """A message forwarding ``inner`` as a message/rfc822 attachment (delivered as ``make_mail``'s)."""
    boundary = "----=_Fwd_0001"
    head = CRLF.join([
        f"Return-Path: <{sender}>",
        f"Authentication-Results: {delivered_auth(sender)}",
        f"From: {_b64(sender_name, 'utf-8')} <{sender}>",
        "To: <shengpei@zjut.edu.cn>",
        f"Subject: {_b64(subject, 'utf-8')}",
        f"Date: {format_datetime(datetime(2020, 11, 3, 8, 0, tzinfo=timezone.utc))}",
        f"Message-ID: {make_msgid(domain=sender.split('@')[-1])}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
    ])
    body = CRLF.join([
        f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "", "请见转发的邮件。",
        f"--{boundary}", "Content-Type: message/rfc822", "Content-Disposition: attachment", "",
    ])
    return (head + CRLF + CRLF + body + CRLF).encode("utf-8") + inner + f"{CRLF}--{boundary}--{CRLF}".encode()


def make_zip(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return buf.getvalue()
