"""Hostile mail for the tests: synthetic hostile attachments and messages (no corpus needed), and
one whole-pipeline cycle over a batch of them checked message by message."""

from __future__ import annotations

import io
import json
import os
import struct
import time
import zipfile
from typing import Any

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, parse_reply, shanghai
from mail_factory import make_forward, make_mail, make_zip
from mailbot.masking import mask_id

ON_TIME = shanghai(2020, 11, 2, 10, 0)
#: messages.outcome vocabulary (docs/SCHEMA.md, "Message outcomes")
OUTCOMES = {"duplicate", "ignored", "quarantined", "late", "redirect", "accepted", "correction",
            "unreadable", "not_annex3", "scan_only", "no_form", "for_staff", "how_to_register", "failed"}
CYCLE_SECONDS = 45.0
#: uid -> (label, automatic mail that must get no reply, allowed outcomes or None for any defined one)
Batch = dict[int, tuple[str, bool, "set[str] | None"]]


def _rezip(data: bytes, replace: dict[str, bytes] = {}, add: dict[str, bytes] = {}) -> bytes:  # noqa: B006
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, replace.get(info.filename, src.read(info.filename)))
        for name, body in add.items():
            dst.writestr(name, body)
    return out.getvalue()


def zip_bomb_xlsx(form: bytes) -> bytes:
    """A real form plus 16 MiB of zeros in one member (ratio about 1000:1)."""
    return _rezip(form, add={"xl/media/zeros.bin": b"\0" * (16 << 20)})


def entity_xlsx(form: bytes) -> bytes:
    """A real form whose worksheet XML declares the 'billion laughs' entities and uses them."""
    dtd = (b'<!DOCTYPE worksheet [<!ENTITY lol "lol">'
           + b"".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
                      for i in range(1, 10)) + b"]>")
    sheet = zipfile.ZipFile(io.BytesIO(form)).read("xl/worksheets/sheet1.xml")
    decl_end = sheet.index(b"?>") + 2 if sheet.startswith(b"<?xml") else 0
    sheet = sheet[:decl_end] + dtd + sheet[decl_end:]
    sheet = sheet.replace(b"<t>", b"<t>&lol9;", 1) if b"<t>" in sheet else sheet
    return _rezip(form, replace={"xl/worksheets/sheet1.xml": sheet})


def macro_xlsm(form: bytes) -> bytes:
    """A real form saved macro-enabled: a VBA project member and its content type."""
    src = zipfile.ZipFile(io.BytesIO(form))
    types = src.read("[Content_Types].xml").replace(
        b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        b"application/vnd.ms-excel.sheet.macroEnabled.main+xml")
    types = types.replace(b"</Types>", b'<Default Extension="bin" '
                          b'ContentType="application/vnd.ms-office.vbaProject"/></Types>')
    vba = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\nShell \"calc\"\r\nEnd Sub" * 20
    return _rezip(form, replace={"[Content_Types].xml": types}, add={"xl/vbaProject.bin": vba})


def encrypted_ooxml() -> bytes:
    """An OLE2 compound file holding EncryptionInfo and EncryptedPackage streams (4 KiB each, so
    no mini stream), the way Office stores a password-protected .xlsx."""
    sect, end, free, fatsect, nostream = 512, 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    info = (struct.pack("<HHI", 4, 4, 0x40) + b"<encryption/>").ljust(4096, b"\0")
    package = struct.pack("<Q", 1234) + bytes((i * 37) % 256 for i in range(4088))
    fat = [fatsect, end] + list(range(3, 10)) + [end] + list(range(11, 18)) + [end]
    fat += [free] * (128 - len(fat))

    def entry(name: str, kind: int, right: int, child: int, start: int, size: int) -> bytes:
        raw = name.encode("utf-16-le") + b"\0\0" if name else b""
        return (raw.ljust(64, b"\0") + struct.pack("<HBB", len(raw), kind, 1)
                + struct.pack("<III", nostream, right, child) + b"\0" * 36 + struct.pack("<IQ", start, size))

    directory = (entry("Root Entry", 5, nostream, 1, end, 0)
                 + entry("EncryptionInfo", 2, 2, nostream, 2, len(info))
                 + entry("EncryptedPackage", 2, nostream, nostream, 10, len(package))
                 + entry("", 0, nostream, nostream, 0, 0))
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16 + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
              + b"\0" * 6 + struct.pack("<9I", 0, 1, 1, 0, 4096, end, 0, end, 0)
              + struct.pack("<109I", 0, *([free] * 108)))
    assert len(header) == sect and len(directory) == sect
    return header + struct.pack("<128I", *fat) + directory + info + package


def docx_without_table() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("附件3 高校参训教师信息汇总表")
    document.add_paragraph("我校报名人员：张三、李四，详见后续邮件。")
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def fake_jpeg(size: int, seed: int) -> bytes:
    body = bytes((i * seed + 7) % 256 for i in range(size))
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + body + b"\xff\xd9"


def synthetic_messages() -> list[tuple[str, bytes, set[str]]]:
    """(label, raw mail, allowed outcomes): hostile synthetic messages, one sender each."""
    form = make_annex3_xlsx([nominee(7)], institution="庚职业技术学院")

    def mail(n: int, attachments: list[tuple[str, bytes]], **kw: object) -> bytes:
        return make_mail(sender=f"t{n}@s{n}.edu.cn", subject=f"报名表{n}", attachments=attachments, **kw)

    big = os.urandom(1 << 16) * ((25 << 20) // (1 << 16)) + b"x"  # 25 MiB + 1 byte
    return [
        ("synthetic: zip bomb inside xlsx", mail(1, [("报名表.xlsx", zip_bomb_xlsx(form))]), {"unreadable"}),
        ("synthetic: XML entity expansion xlsx", mail(2, [("报名表.xlsx", entity_xlsx(form))]), {"unreadable"}),
        ("synthetic: encrypted workbook", mail(3, [("报名表.xlsx", encrypted_ooxml())]), {"unreadable"}),
        ("synthetic: xlsm with macros", mail(4, [("报名表.xlsm", macro_xlsm(
            make_annex3_xlsx([nominee(4)], institution="丁职业技术学院")))]), {"accepted", "correction", "unreadable"}),
        ("synthetic: Word file with no table", mail(5, [("附件3.docx", docx_without_table())]), {"not_annex3"}),
        ("synthetic: images only", mail(6, [("扫描1.jpg", fake_jpeg(30_000, 3)), ("扫描2.jpg", fake_jpeg(20_000, 5))],
                                        content_types={"扫描1.jpg": "image/jpeg", "扫描2.jpg": "image/jpeg"}),
         {"scan_only"}),
        ("synthetic: 25 MiB + 1 attachment", mail(7, [("报名表.xlsx", big)]), {"unreadable"}),
        ("synthetic: zip of a zip of a forward", mail(8, [("a.zip", make_zip([("b.zip", make_zip([
            ("c.eml", make_forward(mail(9, [("x.xlsx", form)]), sender="t9@s9.edu.cn"))]))]))]),
         {"accepted", "correction", "unreadable", "no_form", "not_annex3"}),
    ]


def append_good_form(dovecot: Any, account: Any, batch: Batch) -> int:
    """The good form, appended last: it must be accepted and answered after all the others."""
    good = make_mail(sender="good@zjhz.edu.cn", attachments=[
        ("附件3：高校参训教师信息汇总表.xlsx", make_annex3_xlsx([nominee(1), nominee(2)], institution="杭州某职业技术学院"))])
    good_uid = dovecot.append(good, ON_TIME, user=account.user)
    batch[good_uid] = ("synthetic: the good form, last", False, {"accepted"})
    assert 0 not in batch, "Dovecot must report APPENDUID"
    return good_uid


def poll_and_check(tmp_path: Any, dovecot: Any, imap_account: Any, smtp_sink: Any, by_uid: Batch,
                   good_uid: int) -> None:
    """One poll over the appended batch: each message recorded once with a defined (and, where
    given, allowed) outcome, settled, automatic mail unanswered, the good form answered, all in
    bounded time, the database intact."""
    log = io.StringIO()
    parts = open_intake(imap_settings(tmp_path, imap_account, smtp_sink), log)
    try:
        started = time.monotonic()
        report = parts.intake.poll_once()
        elapsed = time.monotonic() - started
        db = parts.state.db
        rows = {r["uid"]: r for r in db.query("SELECT m.id, m.uid, m.outcome, m.reason, m.settled_at, "
                                               "(SELECT count(*) FROM outbox o WHERE o.message = m.id) AS replies "
                                               "FROM messages m")}
        ms = {e["uid"]: e["ms"] for e in map(_json, log.getvalue().splitlines()) if e.get("event") == "message"}
        print(f"\n{'outcome':<12} {'replies':>7} {'ms':>6}  file / reason")
        for uid, (label, automatic, _) in sorted(by_uid.items()):
            r = rows.get(uid)
            print(f"{r['outcome'] if r else 'MISSING':<12} {r['replies'] if r else '-':>7} {ms.get(uid, '-'):>6}  "
                  f"{label}{' [automatic]' if automatic else ''}\n{'':<28}{(r['reason'] if r else '')[:110]}")
        print(f"cycle: {elapsed:.1f} s for {report.fetched} messages; {report.outcomes}")

        assert sorted(rows) == sorted(by_uid), "every appended message is recorded exactly once"
        for uid, (label, automatic, allowed) in by_uid.items():
            r = rows[uid]
            assert r["outcome"] in OUTCOMES, (label, r["outcome"])
            assert r["settled_at"] is not None, label
            if r["outcome"] == "failed":
                assert r["reason"].strip(), f"{label}: failed without a reason"
            if automatic:
                assert r["replies"] == 0, f"{label} is automatic mail but got a reply ({r['outcome']})"
            if allowed is not None:
                assert r["outcome"] in allowed, (label, r["outcome"], r["reason"])
        assert dovecot.list_folder("INBOX", user=imap_account.user) == []
        assert rows[good_uid]["outcome"] == "accepted"
        replies = {m.rcpt_tos[0]: m for m in smtp_sink.wait_for(1)}
        good = parse_reply(replies["good@zjhz.edu.cn"].raw).text.splitlines()
        assert [line.strip() for line in good if line.strip().startswith(("1. ", "2. ", "报名状态："))] == [
            f"1. {nominee(1).name}（身份证号 {mask_id(nominee(1).id_number)}，表格第4行）", "报名状态：报名成功（在计划名额内）",
            f"2. {nominee(2).name}（身份证号 {mask_id(nominee(2).id_number)}，表格第5行）", "报名状态：报名成功（在计划名额内）"]
        assert not set(replies) & {"MAILER-DAEMON", "mailer-daemon"}
        sent = next(db.query("SELECT count(*) n FROM outbox WHERE status = 'sent'"))["n"]
        assert sent == len(smtp_sink.messages) == smtp_sink.attempts
        assert next(db.query("PRAGMA integrity_check"))["integrity_check"] == "ok"
        assert parts.state.verify_event_chain()[0]
        assert elapsed < CYCLE_SECONDS, f"the cycle took {elapsed:.1f} s"
        assert max(ms.values()) < parts.settings.limits.max_seconds_per_message * 1000
    finally:
        parts.close()




def _json(line: str) -> dict:
    try:
        return json.loads(line)
    except ValueError:
        return {}
