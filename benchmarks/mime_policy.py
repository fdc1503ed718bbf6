"""Parse speed of ``email.policy.compat32`` vs ``email.policy.default`` on realistic intake mail.

The message imitates a QQ/Foxmail registration mail: RFC 2047 GB18030 headers, a GBK plain
text body, an HTML alternative, a small inline signature image and a 100 KB xlsx attachment
(base64).  Three workloads per policy:

- ``parse``: ``BytesParser(policy=...).parsebytes(raw)``
- ``parse+headers``: parse, then read From/Subject/Message-ID/Date and each part's filename
- ``parse+payload``: parse+headers, then decode every leaf payload to bytes

Run: ``.venv/bin/python benchmarks/mime_policy.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import sys
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path


def realistic_message(attachment_bytes: int = 100 * 1024) -> bytes:
    rng = random.Random(7)
    xlsx = b"PK\x03\x04" + bytes(rng.getrandbits(8) for _ in range(attachment_bytes - 4))
    png = b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(3000))

    def b64(data: bytes) -> bytes:
        enc = base64.b64encode(data)
        return b"\r\n".join(enc[i : i + 76] for i in range(0, len(enc), 76))

    def ew(text: str) -> bytes:
        return b"=?GB18030?B?" + base64.b64encode(text.encode("gb18030")) + b"?="

    body = "各位老师好：\r\n附件是我校1+X证书师资培训报名表，请查收。\r\n" * 10
    html = "<html><body>" + body.replace("\r\n", "<br>") + '<img src="cid:sig@qq"></body></html>'
    received = b"".join(
        b"Received: from mx%d.qq.com (unknown [10.0.0.%d])\r\n\tby mx.zjut.edu.cn with ESMTPS"
        b" id ABCDEF%d; Mon, 2 Nov 2020 09:%02d:00 +0800\r\n" % (i, i, i, i)
        for i in range(6)
    )
    return b"".join([
        b"Return-Path: <12345678@qq.com>\r\n", received,
        b"Authentication-Results: mx.zjut.edu.cn; spf=pass smtp.mailfrom=qq.com;"
        b" dkim=pass header.d=qq.com; dmarc=pass header.from=qq.com\r\n",
        b"From: \"" + ew("王老师") + b"\" <12345678@qq.com>\r\n",
        b"To: \"shengpei\" <shengpei@zjut.edu.cn>\r\n",
        b"Subject: " + ew("附件3：高校参训教师信息汇总表（某某职业技术学院）") + b"\r\n",
        b"Date: Mon, 2 Nov 2020 09:30:00 +0800\r\n",
        b"Message-ID: <tencent_0123456789ABCDEF@qq.com>\r\n",
        b"X-Mailer: QQMail 2.x\r\nMime-Version: 1.0\r\n",
        b"Content-Type: multipart/mixed; boundary=\"----=_NextPart_MIXED\"\r\n\r\n",
        b"This is a multi-part message in MIME format.\r\n\r\n",
        b"------=_NextPart_MIXED\r\nContent-Type: multipart/related; boundary=\"----=_REL\"\r\n\r\n",
        b"------=_REL\r\nContent-Type: multipart/alternative; boundary=\"----=_ALT\"\r\n\r\n",
        b"------=_ALT\r\nContent-Type: text/plain; charset=\"gb18030\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n", b64(body.encode("gb18030")), b"\r\n\r\n",
        b"------=_ALT\r\nContent-Type: text/html; charset=\"gb18030\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n", b64(html.encode("gb18030")), b"\r\n\r\n",
        b"------=_ALT--\r\n\r\n",
        b"------=_REL\r\nContent-Type: image/png; name=\"sig.png\"\r\nContent-ID: <sig@qq>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n", b64(png), b"\r\n\r\n------=_REL--\r\n\r\n",
        b"------=_NextPart_MIXED\r\nContent-Type: application/octet-stream;\r\n\tname=\"",
        ew("附件3.xlsx"), b"\"\r\nContent-Disposition: attachment; filename=\"", ew("附件3.xlsx"),
        b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", b64(xlsx), b"\r\n\r\n",
        b"------=_NextPart_MIXED--\r\n",
    ])  # fmt: skip


def work(raw: bytes, pol: policy.Policy, level: str) -> None:
    msg = BytesParser(policy=pol).parsebytes(raw)
    if level == "parse":
        return
    for name in ("From", "Subject", "Message-ID", "Date"):
        str(msg.get(name))
    for part in msg.walk():
        part.get_filename()
        if level == "parse+payload" and not part.is_multipart():
            part.get_payload(decode=True)


def measure(raw: bytes, pol: policy.Policy, level: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        work(raw, pol, level)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 200)))
    args = ap.parse_args()
    raw = realistic_message()
    print(f"message: {len(raw) / 1024:.0f} KiB, repeat={args.repeat}, median ms per message")
    print(f"{'workload':16} {'compat32':>10} {'default':>10} {'default/compat32':>18}")
    for level in ("parse", "parse+headers", "parse+payload"):
        a = measure(raw, policy.compat32, level, args.repeat)
        b = measure(raw, policy.default, level, args.repeat)
        print(f"{level:16} {a:10.3f} {b:10.3f} {b / a:17.2f}x")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mailbot.mail.walk import find_attachments, parse_message

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        find_attachments(parse_message(raw))
        times.append(time.perf_counter() - t0)
    print(f"{'mailbot hot path':16} {statistics.median(times) * 1000:10.3f}"
          "  (parse_message + find_attachments, compat32)")


if __name__ == "__main__":
    main()
