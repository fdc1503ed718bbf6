"""Generate the golden messages in this folder: ``<name>.eml`` + ``<name>.json`` (expected result).

Each message imitates what a real client sends (QQ Mail, Foxmail, Outlook with TNEF, 163/126
webmail, forwards, zips made on Chinese Windows, auto-replies, bounces, newsletters).  The
expected results are written here by hand, next to the bytes they describe, not computed by
mailbot.  People are synthetic (identity numbers get a valid check digit from python-stdnum).

Deterministic: run ``.venv/bin/python tests/messages/make_messages.py`` and commit the output;
``tests/test_mime_walk.py`` checks that a re-run reproduces the committed files byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import struct
import sys
import zipfile
from pathlib import Path

import openpyxl
from stdnum.cn import ric

HERE = Path(__file__).resolve().parent
FIXED_DATE = (2020, 11, 2, 9, 30, 0)
GATE = {
    "own_addresses": ["shengpei@zjut.edu.cn"],
    "own_message_id_domain": "mailbot.zjut.edu.cn",
    "trusted_authserv_ids": ["mx.zjut.edu.cn"],
}
"""Gate settings the golden test uses for every message."""

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# --------------------------------------------------------------------------- file builders


def synthetic_id(prefix17: str) -> str:
    return prefix17 + ric.calc_check_digit(prefix17)


def _normalise_zip(data: bytes) -> bytes:
    """Rewrite a zip with fixed timestamps (and fixed docProps dates) so output is stable."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "docProps/core.xml":
                body = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2020-11-02T01:30:00Z", body)
            zi = zipfile.ZipInfo(info.filename, FIXED_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            dst.writestr(zi, body)
    return out.getvalue()


def annex3_xlsx(institution: str, rows: list[tuple[str, str, str, str, str, str, str]]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(["附件3"])
    ws.append(["高校参训教师信息汇总表"])
    ws.append([f"填报单位（盖章）：{institution}", None, None, "联系人：李老师", None,
               "联系电话：0571-88888888"])  # fmt: skip
    ws.append(["序号", "所报证书培训班名称", "姓名", "性别", "职务", "电子邮箱", "身份证号", "手机"])
    for i, row in enumerate(rows, 1):
        ws.append([i, *row])
    buf = io.BytesIO()
    wb.save(buf)
    return _normalise_zip(buf.getvalue())


def make_zip(members: list[tuple[bytes, bytes]], *, raw_names: bool = True,
             encrypt_flag: bool = False, stored: bool = False) -> bytes:  # fmt: skip
    """A zip whose member names are the given raw bytes with no UTF-8 flag (as Windows'
    built-in zip and WinRAR write on a Chinese system); names are patched in after writing."""
    out = io.BytesIO()
    placeholders = []
    with zipfile.ZipFile(out, "w") as zf:
        for i, (name, body) in enumerate(members):
            try:
                ascii_name = name.decode("ascii")
            except UnicodeDecodeError:
                ascii_name = None
            if ascii_name is not None or not raw_names:
                arc = ascii_name if ascii_name is not None else name.decode("utf-8")
            else:
                arc = (f"~{i}" + "Q" * len(name))[: len(name)]
                placeholders.append((arc.encode("ascii"), name))
            zi = zipfile.ZipInfo(arc, FIXED_DATE)
            zi.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(zi, body)
    data = out.getvalue()
    for placeholder, name in placeholders:
        assert data.count(placeholder) == 2, placeholder
        data = data.replace(placeholder, name)
    if encrypt_flag:  # set the "encrypted" bit in local and central headers
        buf = bytearray(data)
        for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            for m in re.finditer(re.escape(sig), bytes(buf)):
                flags = struct.unpack_from("<H", buf, m.start() + off)[0]
                struct.pack_into("<H", buf, m.start() + off, flags | 1)
        data = bytes(buf)
    return data


def tnef_blob(attachments: list[tuple[bytes, bytes]], codepage: int = 936) -> bytes:
    """A minimal Outlook TNEF (winmail.dat): version, OEM codepage, message class, then per
    attachment attAttachRenddata / attAttachTitle (codepage bytes) / attAttachData."""

    def attr(level: int, attr_id: int, attr_type: int, data: bytes) -> bytes:
        return (bytes([level]) + struct.pack("<HHI", attr_id, attr_type, len(data)) + data
                + struct.pack("<H", sum(data) & 0xFFFF))  # fmt: skip

    out = struct.pack("<IH", 0x223E9F78, 0x0101)
    out += attr(1, 0x9006, 0x0008, struct.pack("<I", 0x00010000))
    out += attr(1, 0x9007, 0x0006, struct.pack("<II", codepage, 0))
    out += attr(1, 0x8008, 0x0007, b"IPM.Microsoft Mail.Note\x00")
    for name, data in attachments:
        out += attr(2, 0x9002, 0x0006, struct.pack("<HiiiHH", 1, -1, 0, 0, 0, 0))
        out += attr(2, 0x8010, 0x0001, name + b"\x00")
        out += attr(2, 0x800F, 0x0006, data)
    return out


def fake_jpeg(size: int, seed: int) -> bytes:
    body = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + body[:size]


def fake_png(size: int, seed: int) -> bytes:
    body = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + body[:size]


def fake_pdf(seed: int) -> bytes:
    return (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog>>endobj\n% scan " +
            hashlib.sha256(str(seed).encode()).hexdigest().encode() * 200 + b"\n%%EOF\n")


def fake_outlook_msg() -> bytes:
    """OLE2 header + the stream names an Outlook .msg directory holds (enough for sniffing)."""
    return (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
            + "__substg1.0_0037001F".encode("utf-16-le") + b"\x00" * 64
            + "__properties_version1.0".encode("utf-16-le") + b"\x00" * 1024)  # fmt: skip


# --------------------------------------------------------------------------- MIME helpers


def ew(text: str, charset: str = "UTF-8", codec: str | None = None) -> bytes:
    raw = text.encode(codec or charset)
    return b"=?" + charset.encode() + b"?B?" + base64.b64encode(raw) + b"?="


def ew_split(text: str, charset: str, codec: str, cut: int) -> bytes:
    """Two encoded-words, the byte string cut at ``cut`` (mid character if you like)."""
    raw = text.encode(codec)
    a, b = raw[:cut], raw[cut:]
    cs = charset.encode()
    return (b"=?" + cs + b"?B?" + base64.b64encode(a) + b"?=\r\n =?" + cs + b"?B?"
            + base64.b64encode(b) + b"?=")  # fmt: skip


def b64(data: bytes) -> bytes:
    enc = base64.b64encode(data)
    return b"\r\n".join(enc[i : i + 76] for i in range(0, len(enc), 76)) + b"\r\n"


def headers(*lines: bytes) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


def part(ctype: bytes, body: bytes, *extra: bytes, cte: bytes = b"base64") -> bytes:
    return headers(b"Content-Type: " + ctype, b"Content-Transfer-Encoding: " + cte, *extra) + \
        b"\r\n" + (b64(body) if cte == b"base64" else body)


def multipart(boundary: bytes, *parts: bytes, preamble: bytes = b"") -> bytes:
    out = preamble
    for p in parts:
        out += b"--" + boundary + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def auth(spf: str, dkim: str, dmarc: str, domain: str, server: str = "mx.zjut.edu.cn") -> bytes:
    return (f"Authentication-Results: {server};\r\n\tspf={spf} smtp.mailfrom={domain};\r\n"
            f"\tdkim={dkim} header.d={domain};\r\n\tdmarc={dmarc} header.from={domain}").encode()


def received(host: str) -> bytes:
    return (f"Received: from {host} (unknown [203.0.113.7])\r\n\tby mx.zjut.edu.cn (Postfix) "
            "with ESMTPS id 4CPhX62mVfz; Mon,  2 Nov 2020 09:30:05 +0800 (CST)").encode()


# --------------------------------------------------------------------------- the messages

ROWS = [
    ("物流管理", "张晓燕", "女", "讲师", "zhangxy@example.edu.cn", synthetic_id("33010619850312002"),
     "13800001234"),
    ("智能财税", "王喆", "男", "副教授", "wangzhe@example.edu.cn", synthetic_id("33072119790508101"),
     "13900005678"),
]  # fmt: skip
FORM = annex3_xlsx("浙江某某职业技术学院", ROWS)
FORM_B = annex3_xlsx("宁波某某职业技术学院", ROWS[:1])
FORM_C = annex3_xlsx("温州某某学院", ROWS[1:])
SCAN_PDF = fake_pdf(1)
SCAN_JPG = fake_jpeg(60_000, 2)
SIG_PNG = fake_png(20_000, 3)  # big enough not to be "tiny": ignored because HTML references it
TINY_GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00" * 400
PHOTO_AS_XLS = fake_jpeg(30_000, 4)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def f(filename: str, content_type: str, origin: str, data: bytes) -> dict:
    return {"filename": filename, "content_type": content_type, "origin": origin,
            "sha256": sha(data), "size": len(data)}  # fmt: skip


def qq_gb18030() -> tuple[bytes, dict]:
    """QQ Mail: GB18030 RFC 2047 everywhere, filename split mid character over two words,
    subject labelled gb2312 but holding 喆 (GBK only)."""
    name = "附件3：高校参训教师信息汇总表.xlsx"
    body = "老师您好：\r\n附件为我校报名表，请查收。\r\n王喆\r\n"
    alt = multipart(
        b"----=_NextPart_ALT_QQ",
        part(b'text/plain;\r\n\tcharset="gb18030"', body.encode("gb18030")),
        part(b'text/html;\r\n\tcharset="gb18030"',
             ("<div>" + body.replace("\r\n", "<br>") + "</div>").encode("gb18030")),
    )  # fmt: skip
    raw = headers(
        b"Return-Path: <1234567@qq.com>",
        received("out203-205-221-233.mail.qq.com"),
        auth("pass", "pass", "pass", "qq.com"),
        b'From: "' + ew("王喆", "gb18030") + b'" <1234567@QQ.com>',
        b'To: "shengpei" <shengpei@zjut.edu.cn>',
        b"Subject: " + ew("附件3报名表（王喆）", "gb2312", "gbk"),
        b"Mime-Version: 1.0",
        b'Content-Type: multipart/mixed;\r\n\tboundary="----=_NextPart_5F9F6E2A_QQ"',
        b"Content-Transfer-Encoding: 8Bit",
        b"Date: Mon, 2 Nov 2020 09:30:02 +0800",
        b"X-Priority: 3",
        b"Message-ID: <tencent_3C1B2F7A9E@qq.com>",
        b"X-QQ-MIME: TCMime 1.0 by Tencent",
        b"X-Mailer: QQMail 2.x",
    ) + b"\r\n" + multipart(
        b"----=_NextPart_5F9F6E2A_QQ",
        headers(b'Content-Type: multipart/alternative;\r\n\tboundary="----=_NextPart_ALT_QQ"')
        + b"\r\n" + alt,
        part(b'application/octet-stream;\r\n\tcharset="gb18030";\r\n\tname="'
             + ew_split(name, "gb18030", "gb18030", 7) + b'"', FORM,
             b'Content-Disposition: attachment; filename="' + ew_split(name, "gb18030", "gb18030", 7)
             + b'"'),
        preamble=b"This is a multi-part message in MIME format.\r\n\r\n",
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "tencent_3C1B2F7A9E@qq.com", "from_addr": "1234567@qq.com",
            "from_name": "王喆", "subject": "附件3报名表（王喆）", "in_reply_to": "",
            "references": [], "return_path": "1234567@qq.com",
        },
        "forms": [f(name, XLSX_MIME, "attachment 1", FORM)],
        "scans": [], "problems": [],
        "body_text": body.strip().replace("\r\n", "\n"),
        "auto_reply_reason": None,
        "trust": {"action": "accept", "reason": "ok", "dmarc": "pass", "spf": "pass",
                  "dkim": "pass"},
    }  # fmt: skip


def foxmail_rfc2231() -> tuple[bytes, dict]:
    """Foxmail: RFC 2231 GBK filename continuations; a forged Authentication-Results from the
    sender's side saying pass is ignored, ours says DMARC fail."""
    name = "浙江某某职业技术学院-附件3参训教师汇总表.xlsx"
    enc = "".join(f"%{b:02X}" for b in name.encode("gbk"))
    cont = b";\r\n\tfilename*0*=GBK''" + enc[:60].encode() + b";\r\n\tfilename*1*=" + \
        enc[60:].encode()
    raw = headers(
        b"Return-Path: <li.laoshi@zjsm.edu.cn>",
        auth("pass", "pass", "pass", "zjsm.edu.cn", server="relay.zjsm.edu.cn"),
        received("mail.zjsm.edu.cn"),
        auth("fail", "fail", "fail", "zjsm.edu.cn"),
        b'From: "=?GBK?B?' + base64.b64encode("李老师".encode("gbk")) + b'?=" <Li.Laoshi@zjsm.edu.cn>',
        b"To: shengpei <shengpei@zjut.edu.cn>",
        b"Subject: =?GBK?Q?" + "".join(f"={b:02X}" for b in "报名表".encode("gbk")).encode() + b"?=",
        b"Date: Mon, 2 Nov 2020 10:11:12 +0800",
        b"X-Mailer: Foxmail 7.2.19.158[cn]",
        b"Mime-Version: 1.0",
        b"Message-ID: <202011021011118926420@zjsm.edu.cn>",
        b'Content-Type: multipart/mixed;\r\n\tboundary="----=_001_NextPart572182624333_=----"',
    ) + b"\r\n" + multipart(
        b"----=_001_NextPart572182624333_=----",
        part(b'text/plain;\r\n\tcharset="GB2312"', "附件是报名表。\r\n".encode("gbk")),
        part(b"application/octet-stream;\r\n\tname*0*=GBK''" + enc[:60].encode()
             + b";\r\n\tname*1*=" + enc[60:].encode(), FORM_B,
             b"Content-Disposition: attachment" + cont),
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "202011021011118926420@zjsm.edu.cn", "from_addr": "li.laoshi@zjsm.edu.cn",
            "from_name": "李老师", "subject": "报名表", "in_reply_to": "", "references": [],
            "return_path": "li.laoshi@zjsm.edu.cn",
        },
        "forms": [f(name, XLSX_MIME, "attachment 1", FORM_B)],
        "scans": [], "problems": [], "body_text": "附件是报名表。",
        "auto_reply_reason": None,
        "trust": {"action": "quarantine", "reason": "dmarc-fail", "dmarc": "fail", "spf": "fail",
                  "dkim": "fail"},
    }  # fmt: skip


def outlook_tnef() -> tuple[bytes, dict]:
    """Outlook with rich text: the form travels inside winmail.dat (TNEF), name in cp936."""
    tnef = tnef_blob([("附件3.xlsx".encode("gbk"), FORM_C), (b"stamp.pdf", SCAN_PDF)])
    raw = headers(
        b"Return-Path: <zhao@wzu.edu.cn>",
        received("mail.wzu.edu.cn"),
        auth("pass", "none", "pass", "wzu.edu.cn"),
        b"From: =?gb2312?B?" + base64.b64encode("赵老师".encode("gbk")) + b"?= <zhao@wzu.edu.cn>",
        b"To: <shengpei@zjut.edu.cn>",
        b"Subject: =?gb2312?B?" + base64.b64encode("温州某某学院报名".encode("gbk")) + b"?=",
        b"Date: Mon, 2 Nov 2020 11:00:00 +0800",
        b"Message-ID: <000001d6b0c1$7a1b2c30$6e518490$@wzu.edu.cn>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed;\r\n\tboundary="----=_NextPart_000_0001_01D6B104.884E2C30"',
        b"X-Mailer: Microsoft Outlook 16.0",
        b"Thread-Index: AdawwXkZ9v7m5x1fQ0mJd3y6cQ2X1A==",
        b"Content-Language: zh-cn",
    ) + b"\r\n" + multipart(
        b"----=_NextPart_000_0001_01D6B104.884E2C30",
        part(b'text/plain;\r\n\tcharset="gb2312"', "见附件。\r\n".encode("gbk")),
        part(b'application/ms-tnef;\r\n\tname="winmail.dat"', tnef,
             b'Content-Disposition: attachment;\r\n\tfilename="winmail.dat"'),
        preamble=b"This is a multipart message in MIME format.\r\n\r\n",
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "000001d6b0c1$7a1b2c30$6e518490$@wzu.edu.cn", "from_addr": "zhao@wzu.edu.cn",
            "from_name": "赵老师", "subject": "温州某某学院报名", "in_reply_to": "",
            "references": [], "return_path": "zhao@wzu.edu.cn",
        },
        "forms": [f("附件3.xlsx", XLSX_MIME, "winmail.dat > 附件3.xlsx", FORM_C)],
        "scans": [f("stamp.pdf", "application/pdf", "winmail.dat > stamp.pdf", SCAN_PDF)],
        "problems": [], "body_text": "见附件。", "auto_reply_reason": None,
        "trust": {"action": "accept", "reason": "ok", "dmarc": "pass", "spf": "pass",
                  "dkim": "none"},
    }  # fmt: skip


def netease163() -> tuple[bytes, dict]:
    """163 webmail: UTF-8 base64 names, HTML body with a cid signature image (ignored), a big
    photo of the stamped page (kept as a scan), a tiny logo GIF (ignored)."""
    name = "附件3 高校参训教师信息汇总表（盖章）.xlsx"
    html = ('<div>您好，报名表见附件。</div><div><img src="cid:sig_163_001"></div>').encode()
    related = multipart(
        b"----=_Part_REL_163",
        part(b"text/html; charset=UTF-8", html),
        part(b'image/png; name="sig.png"', SIG_PNG, b"Content-ID: <sig_163_001>",
             b'Content-Disposition: inline; filename="sig.png"'),
    )  # fmt: skip
    raw = headers(
        b"Return-Path: <hz_teacher@163.com>",
        received("m13-55.163.com"),
        auth("pass", "pass", "pass", "163.com"),
        b"Date: Mon, 2 Nov 2020 14:02:33 +0800 (CST)",
        b'From: "' + ew("陈老师") + b'" <hz_teacher@163.com>',
        b"To: shengpei@zjut.edu.cn",
        b"Subject: " + ew("Re: 关于1+X证书师资培训报名"),
        b"In-Reply-To: <reply-0001@mailbot.zjut.edu.cn>",
        b"References: <notice-2020-262@zjut.edu.cn>\r\n <reply-0001@mailbot.zjut.edu.cn>",
        b"X-Mailer: Coremail Webmail Server Version XT5.0.13 build 20200820(b4e4b0f2)",
        b'Content-Type: multipart/mixed;\r\n\tboundary="----=_Part_MIX_163"',
        b"MIME-Version: 1.0",
        b"Message-ID: <7c1d2e3f.4a5b.175878a1b2c.Coremail.hz_teacher@163.com>",
    ) + b"\r\n" + multipart(
        b"----=_Part_MIX_163",
        headers(b'Content-Type: multipart/related;\r\n\tboundary="----=_Part_REL_163"') + b"\r\n"
        + related,
        part(b'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; \r\n\tname="'
             + ew(name) + b'"', FORM,
             b'Content-Disposition: attachment; \r\n\tfilename="' + ew(name) + b'"'),
        part(b'image/jpeg; name="' + ew("盖章页.jpg") + b'"', SCAN_JPG,
             b'Content-Disposition: attachment; filename="' + ew("盖章页.jpg") + b'"'),
        part(b'image/gif; name="logo.gif"', TINY_GIF,
             b'Content-Disposition: attachment; filename="logo.gif"'),
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "7c1d2e3f.4a5b.175878a1b2c.Coremail.hz_teacher@163.com",
            "from_addr": "hz_teacher@163.com", "from_name": "陈老师",
            "subject": "Re: 关于1+X证书师资培训报名",
            "in_reply_to": "reply-0001@mailbot.zjut.edu.cn",
            "references": ["notice-2020-262@zjut.edu.cn", "reply-0001@mailbot.zjut.edu.cn"],
            "return_path": "hz_teacher@163.com",
        },
        "forms": [f(name, XLSX_MIME, "attachment 2", FORM)],
        "scans": [f("盖章页.jpg", "image/jpeg", "attachment 3", SCAN_JPG)],
        "problems": [], "body_text": "您好，报名表见附件。",
        "auto_reply_reason": None,
        "trust": {"action": "accept", "reason": "ok", "dmarc": "pass", "spf": "pass",
                  "dkim": "pass"},
    }  # fmt: skip


def _inner_message() -> bytes:
    return headers(
        b'From: "' + ew("孙老师") + b'" <sun@nbpt.edu.cn>',
        b"To: office@nbpt.edu.cn",
        b"Subject: " + ew("报名表"),
        b"Date: Sun, 1 Nov 2020 16:00:00 +0800",
        b"Message-ID: <inner-1@nbpt.edu.cn>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="inner-b"',
    ) + b"\r\n" + multipart(
        b"inner-b",
        part(b"text/plain; charset=utf-8", "请汇总。\r\n".encode()),
        part(b'application/vnd.ms-excel; name="' + ew("附件3.xlsx") + b'"', FORM_B,
             b'Content-Disposition: attachment; filename="' + ew("附件3.xlsx") + b'"'),
    )  # fmt: skip


def forwarded_rfc822() -> tuple[bytes, dict]:
    """A forward as attachment (message/rfc822) carrying the form."""
    raw = headers(
        b"Return-Path: <office@nbpt.edu.cn>",
        b'From: "' + ew("教务处") + b'" <office@nbpt.edu.cn>',
        b"To: shengpei@zjut.edu.cn",
        b"Subject: " + ew("Fw: 报名表"),
        b"Date: Mon, 2 Nov 2020 08:00:00 +0800",
        b"Message-ID: <fwd-1@nbpt.edu.cn>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="outer-b"',
    ) + b"\r\n" + multipart(
        b"outer-b",
        part(b"text/plain; charset=utf-8", "转发孙老师的报名表。\r\n".encode()),
        headers(b"Content-Type: message/rfc822",
                b'Content-Disposition: attachment; filename="' + ew("报名表.eml") + b'"')
        + b"\r\n" + _inner_message(),
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "fwd-1@nbpt.edu.cn", "from_addr": "office@nbpt.edu.cn",
            "from_name": "教务处", "subject": "Fw: 报名表", "in_reply_to": "", "references": [],
            "return_path": "office@nbpt.edu.cn",
        },
        "forms": [f("附件3.xlsx", XLSX_MIME, "forwarded message > attachment 1", FORM_B)],
        "scans": [], "problems": [], "body_text": "转发孙老师的报名表。",
        "auto_reply_reason": None,
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def forwarded_eml_file() -> tuple[bytes, dict]:
    """The same forward saved as an .eml file and attached as application/octet-stream."""
    raw = headers(
        b"Return-Path: <office@nbpt.edu.cn>",
        b"From: office@nbpt.edu.cn",
        b"To: shengpei@zjut.edu.cn",
        b"Subject: fwd",
        b"Date: Mon, 2 Nov 2020 08:05:00 +0800",
        b"Message-ID: <fwd-2@nbpt.edu.cn>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="outer-c"',
    ) + b"\r\n" + multipart(
        b"outer-c",
        part(b'application/octet-stream; name="' + ew("原邮件.eml") + b'"', _inner_message(),
             b'Content-Disposition: attachment; filename="' + ew("原邮件.eml") + b'"'),
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "fwd-2@nbpt.edu.cn", "from_addr": "office@nbpt.edu.cn", "from_name": "",
            "subject": "fwd", "in_reply_to": "", "references": [],
            "return_path": "office@nbpt.edu.cn",
        },
        "forms": [f("附件3.xlsx", XLSX_MIME, "forwarded message > attachment 1", FORM_B)],
        "scans": [], "problems": [], "body_text": "", "auto_reply_reason": None,
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def zip_gbk() -> tuple[bytes, dict]:
    """A zip made on Chinese Windows: GBK member names without the UTF-8 flag, macOS junk,
    the form, a stamped PDF; the same form also attached directly (kept once)."""
    archive = make_zip([
        ("附件3.xlsx".encode("gbk"), FORM),
        (b"__MACOSX/._x.xlsx", b"\x00\x05\x16\x07junk"),
        ("盖章扫描件.pdf".encode("gbk"), SCAN_PDF),
    ])  # fmt: skip
    raw = headers(
        b"Return-Path: <zhou@zjtie.edu.cn>",
        b"From: =?GBK?B?" + base64.b64encode("周老师".encode("gbk")) + b"?= <zhou@zjtie.edu.cn>",
        b"To: shengpei@zjut.edu.cn",
        b"Subject: =?GBK?B?" + base64.b64encode("报名材料".encode("gbk")) + b"?=",
        b"Date: Mon, 2 Nov 2020 15:00:00 +0800",
        b"Message-ID: <zip-1@zjtie.edu.cn>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="zzz"',
    ) + b"\r\n" + multipart(
        b"zzz",
        part(b'application/x-zip-compressed; name="=?GBK?B?'
             + base64.b64encode("报名.zip".encode("gbk")) + b'?="', archive),
        part(b'application/octet-stream; name="copy.xlsx"', FORM),
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "zip-1@zjtie.edu.cn", "from_addr": "zhou@zjtie.edu.cn",
            "from_name": "周老师", "subject": "报名材料", "in_reply_to": "", "references": [],
            "return_path": "zhou@zjtie.edu.cn",
        },
        "forms": [f("附件3.xlsx", XLSX_MIME, "zip 报名.zip > 附件3.xlsx", FORM)],
        "scans": [f("盖章扫描件.pdf", "application/pdf", "zip 报名.zip > 盖章扫描件.pdf", SCAN_PDF)],
        "problems": [], "body_text": "", "auto_reply_reason": None,
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def signature_and_scan() -> tuple[bytes, dict]:
    """Inline xlsx (Content-Disposition inline still counts), a stamped PDF, a photo renamed
    .xls (an image, so a scan, not a form), an S/MIME signature (ignored)."""
    raw = headers(
        b"Return-Path: <qian@hzvtc.edu.cn>",
        b"From: qian@hzvtc.edu.cn",
        b"To: shengpei@zjut.edu.cn",
        b"Subject: =?utf-8?Q?=E6=8A=A5=E5=90=8D?=",
        b"Date: Mon, 2 Nov 2020 16:00:00 +0800",
        b"Message-ID: <scan-1@hzvtc.edu.cn>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=sha-256; boundary="sig-b"',
    ) + b"\r\n" + multipart(
        b"sig-b",
        headers(b'Content-Type: multipart/mixed; boundary="mix-b"') + b"\r\n" + multipart(
            b"mix-b",
            part(b"text/plain; charset=utf-8", "见附件\r\n".encode(), cte=b"8bit"),
            part(b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", FORM_C,
                 b"Content-Disposition: inline; filename*=utf-8''" + "附件3.xlsx".encode()
                 .hex("%").upper().join(["%", ""]).encode()),
            part(b'application/pdf; name="scan.pdf"', SCAN_PDF,
                 b'Content-Disposition: attachment; filename="scan.pdf"'),
            part(b'application/vnd.ms-excel; name="photo.xls"', PHOTO_AS_XLS,
                 b'Content-Disposition: attachment; filename="photo.xls"'),
        ),
        part(b'application/pkcs7-signature; name="smime.p7s"', b"\x30\x82\x05\x00" + b"\x01" * 200,
             b'Content-Disposition: attachment; filename="smime.p7s"'),
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "scan-1@hzvtc.edu.cn", "from_addr": "qian@hzvtc.edu.cn", "from_name": "",
            "subject": "报名", "in_reply_to": "", "references": [],
            "return_path": "qian@hzvtc.edu.cn",
        },
        "forms": [f("附件3.xlsx", XLSX_MIME, "attachment 1", FORM_C)],
        "scans": [f("scan.pdf", "application/pdf", "attachment 2", SCAN_PDF),
                  f("photo.xls", "image/jpeg", "attachment 3", PHOTO_AS_XLS)],
        "problems": [], "body_text": "见附件", "auto_reply_reason": None,
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def unsupported_files() -> tuple[bytes, dict]:
    """Things the sender must redo: a RAR, an Outlook .msg, an encrypted zip, a corrupt zip."""
    encrypted = make_zip([(b"form.xlsx", FORM)], encrypt_flag=True)
    corrupt = make_zip([(b"form.xlsx", FORM)])[:400]
    raw = headers(
        b"Return-Path: <wu@example.edu.cn>",
        b"From: wu@example.edu.cn",
        b"To: shengpei@zjut.edu.cn",
        b"Subject: files",
        b"Date: Mon, 2 Nov 2020 17:00:00 +0800",
        b"Message-ID: <bad-1@example.edu.cn>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="bbb"',
    ) + b"\r\n" + multipart(
        b"bbb",
        part(b'application/octet-stream; name="form.rar"', b"Rar!\x1a\x07\x00" + b"\x00" * 100),
        part(b'application/vnd.ms-outlook; name="fwd.msg"', fake_outlook_msg()),
        part(b'application/zip; name="locked.zip"', encrypted),
        part(b'application/zip; name="broken.zip"', corrupt),
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "bad-1@example.edu.cn", "from_addr": "wu@example.edu.cn", "from_name": "",
            "subject": "files", "in_reply_to": "", "references": [],
            "return_path": "wu@example.edu.cn",
        },
        "forms": [], "scans": [],
        "problems": ["rar_unsupported", "msg_unsupported", "archive_unreadable",
                     "archive_unreadable"],
        "body_text": "", "auto_reply_reason": None,
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def hostile_archives() -> tuple[bytes, dict]:
    """A zip bomb (5 MiB of zeros, ratio ~1000) and zips nested four deep."""
    bomb = make_zip([(b"zeros.xlsx", b"\x00" * (5 * 1024 * 1024))])
    deep = FORM
    for level in (4, 3, 2, 1):
        deep = make_zip([(f"level{level}.zip".encode() if level < 4 else b"form.xlsx", deep)])
    raw = headers(
        b"Return-Path: <zheng@example.edu.cn>",
        b"From: zheng@example.edu.cn",
        b"To: shengpei@zjut.edu.cn",
        b"Subject: zips",
        b"Date: Mon, 2 Nov 2020 17:30:00 +0800",
        b"Message-ID: <zips-1@example.edu.cn>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="ccc"',
    ) + b"\r\n" + multipart(
        b"ccc",
        part(b'application/zip; name="bomb.zip"', bomb),
        part(b'application/zip; name="deep.zip"', deep),
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "zips-1@example.edu.cn", "from_addr": "zheng@example.edu.cn",
            "from_name": "", "subject": "zips", "in_reply_to": "", "references": [],
            "return_path": "zheng@example.edu.cn",
        },
        "forms": [], "scans": [], "problems": ["archive_bomb", "nesting_too_deep"],
        "body_text": "", "auto_reply_reason": None,
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def auto_reply_exchange() -> tuple[bytes, dict]:
    """Exchange out-of-office answering one of our replies."""
    raw = headers(
        b"Return-Path: <feng@example.edu.cn>",
        b"From: =?gb2312?B?" + base64.b64encode("冯老师".encode("gbk")) + b"?= <feng@example.edu.cn>",
        b"To: shengpei@zjut.edu.cn",
        b"Subject: =?gb2312?B?" + base64.b64encode("自动回复: 报名结果".encode("gbk")) + b"?=",
        b"Date: Mon, 2 Nov 2020 18:00:00 +0800",
        b"Message-ID: <oof-1@example.edu.cn>",
        b"In-Reply-To: <reply-0002@mailbot.zjut.edu.cn>",
        b"Auto-Submitted: auto-generated",
        b"X-Auto-Response-Suppress: All",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=gb2312",
        b"Content-Transfer-Encoding: base64",
    ) + b"\r\n" + b64("我正在休假，11月9日返回。\r\n".encode("gbk"))
    return raw, {
        "parsed": {
            "message_id": "oof-1@example.edu.cn", "from_addr": "feng@example.edu.cn",
            "from_name": "冯老师", "subject": "自动回复: 报名结果",
            "in_reply_to": "reply-0002@mailbot.zjut.edu.cn", "references": [],
            "return_path": "feng@example.edu.cn",
        },
        "forms": [], "scans": [], "problems": [], "body_text": "我正在休假，11月9日返回。",
        "auto_reply_reason": "auto-submitted",
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def auto_reply_subject_only() -> tuple[bytes, dict]:
    """A webmail vacation reply with no telltale header: only the subject gives it away."""
    raw = headers(
        b"Return-Path: <jiang@126.com>",
        b"From: jiang@126.com",
        b"To: shengpei@zjut.edu.cn",
        b"Subject: " + ew("【自动回复】您好，邮件已收到"),
        b"Date: Mon, 2 Nov 2020 18:30:00 +0800",
        b"Message-ID: <oof-2@126.com>",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: 8bit",
    ) + b"\r\n" + "谢谢。\r\n".encode()
    return raw, {
        "parsed": {
            "message_id": "oof-2@126.com", "from_addr": "jiang@126.com", "from_name": "",
            "subject": "【自动回复】您好，邮件已收到", "in_reply_to": "", "references": [],
            "return_path": "jiang@126.com",
        },
        "forms": [], "scans": [], "problems": [], "body_text": "谢谢。",
        "auto_reply_reason": "auto-reply-subject",
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def dsn_bounce() -> tuple[bytes, dict]:
    """A Postfix delivery status notification for one of our replies, original attached."""
    original = headers(
        b"From: shengpei@zjut.edu.cn", b"To: nobody@example.edu.cn",
        b"Subject: =?utf-8?B?" + base64.b64encode("报名结果".encode()) + b"?=",
        b"Message-ID: <reply-0003@mailbot.zjut.edu.cn>",
        b"Content-Type: text/plain; charset=utf-8",
    ) + b"\r\n" + "已收到。\r\n".encode()
    raw = headers(
        b"Return-Path: <>",
        b"From: MAILER-DAEMON@mx.zjut.edu.cn (Mail Delivery System)",
        b"To: shengpei@zjut.edu.cn",
        b"Subject: Undelivered Mail Returned to Sender",
        b"Date: Mon, 2 Nov 2020 19:00:00 +0800",
        b"Message-ID: <20201102110000.ABCDE@mx.zjut.edu.cn>",
        b"MIME-Version: 1.0",
        b"Content-Type: multipart/report; report-type=delivery-status;\r\n"
        b'\tboundary="dsn-b"',
    ) + b"\r\n" + multipart(
        b"dsn-b",
        part(b"text/plain; charset=us-ascii", b"I'm sorry to have to inform you...\r\n",
             cte=b"7bit"),
        part(b"message/delivery-status",
             b"Reporting-MTA: dns; mx.zjut.edu.cn\r\n\r\nFinal-Recipient: rfc822; "
             b"nobody@example.edu.cn\r\nAction: failed\r\nStatus: 5.1.1\r\n", cte=b"7bit"),
        part(b"message/rfc822", original, cte=b"8bit"),
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "20201102110000.ABCDE@mx.zjut.edu.cn",
            "from_addr": "mailer-daemon@mx.zjut.edu.cn", "from_name": "Mail Delivery System",
            "subject": "Undelivered Mail Returned to Sender", "in_reply_to": "", "references": [],
            "return_path": "",
        },
        "forms": [], "scans": [], "problems": [],
        "body_text": "I'm sorry to have to inform you...", "auto_reply_reason": "null-sender",
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def newsletter() -> tuple[bytes, dict]:
    """A bulk newsletter (List-Unsubscribe, Precedence: bulk)."""
    raw = headers(
        b"Return-Path: <bounce-123@news.example.com>",
        b"From: =?utf-8?B?" + base64.b64encode("教育资讯".encode()) + b"?= <news@news.example.com>",
        b"To: shengpei@zjut.edu.cn",
        b"Subject: =?utf-8?B?" + base64.b64encode("本周职教要闻".encode()) + b"?=",
        b"Date: Mon, 2 Nov 2020 07:00:00 +0800",
        b"Message-ID: <news-20201102@news.example.com>",
        b"Precedence: bulk",
        b"List-Unsubscribe: <mailto:unsubscribe@news.example.com>, "
        b"<https://news.example.com/u?id=1>",
        b"MIME-Version: 1.0",
        b"Content-Type: text/html; charset=utf-8",
        b"Content-Transfer-Encoding: base64",
    ) + b"\r\n" + b64("<p>本周要闻</p>".encode())
    return raw, {
        "parsed": {
            "message_id": "news-20201102@news.example.com", "from_addr": "news@news.example.com",
            "from_name": "教育资讯", "subject": "本周职教要闻", "in_reply_to": "", "references": [],
            "return_path": "bounce-123@news.example.com",
        },
        "forms": [], "scans": [], "problems": [], "body_text": "本周要闻",
        "auto_reply_reason": "precedence",
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


def broken_mime() -> tuple[bytes, dict]:
    """Malformed on purpose: raw 8-bit GBK subject, raw UTF-8 display name, no Message-ID,
    a missing charset, a bad base64 body, a never-closed boundary; the form still found."""
    raw = headers(
        b"Return-Path: <he@example.edu.cn>",
        "From: 何老师 <HE@example.edu.cn>".encode(),
        b"To: shengpei@zjut.edu.cn",
        b"Subject: " + "附件3报名表（何）".encode("gbk"),
        b"Date: not a date",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="open-b"',
    ) + b"\r\n" + (
        b"--open-b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"5oql5ZCN6KGo!!!\r\n"
        b"--open-b\r\nContent-Type: application/octet-stream; name=\"" + "报名表.xlsx".encode("gbk")
        + b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(FORM_C)
        + b"--open-b\r\nContent-Type: application/octet-stream\r\n\r\n"
    )  # fmt: skip
    return raw, {
        "parsed": {
            "message_id": "", "from_addr": "he@example.edu.cn", "from_name": "何老师",
            "subject": "附件3报名表（何）", "in_reply_to": "", "references": [],
            "return_path": "he@example.edu.cn",
        },
        "forms": [f("报名表.xlsx", XLSX_MIME, "attachment 1", FORM_C)],
        "scans": [], "problems": [], "body_text": "报名表", "auto_reply_reason": None,
        "trust": {"action": "quarantine", "reason": "no-authentication", "dmarc": None, "spf": None, "dkim": None},
    }  # fmt: skip


MESSAGES = {
    "qq_gb18030": qq_gb18030,
    "foxmail_rfc2231_gbk": foxmail_rfc2231,
    "outlook_winmail_tnef": outlook_tnef,
    "netease163_base64_names": netease163,
    "forwarded_rfc822": forwarded_rfc822,
    "forwarded_eml_attachment": forwarded_eml_file,
    "zip_gbk_member_names": zip_gbk,
    "signature_and_scans": signature_and_scan,
    "unsupported_files": unsupported_files,
    "hostile_archives": hostile_archives,
    "auto_reply_exchange": auto_reply_exchange,
    "auto_reply_subject_only": auto_reply_subject_only,
    "dsn_bounce": dsn_bounce,
    "newsletter": newsletter,
    "broken_mime": broken_mime,
}


def build(out_dir: Path) -> list[Path]:
    written = []
    for name, builder in MESSAGES.items():
        raw, expected = builder()
        eml, js = out_dir / f"{name}.eml", out_dir / f"{name}.json"
        eml.write_bytes(raw)
        js.write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        written += [eml, js]
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for path in build(target):
        print(path.name)
