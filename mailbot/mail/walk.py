"""Find the Annex 3 form (and stamped scans) in a parsed message's MIME tree.

Pure functions; never raise on malformed mail.  ``find_attachments`` walks the tree judging
files by their bytes (zip/OLE2/PDF/image magic and zip member names, the tables the form loader
reads too) more than by name or declared type; it opens zip archives, forwarded messages
(``message/rfc822`` and ``.eml`` files) and Outlook ``winmail.dat`` (TNEF) up to
``Limits.max_nesting`` levels, and reports what the sender must fix as
:class:`~mailbot.forms.model.Finding`-s.  The message itself is parsed by
``mailbot.mail.message`` (headers decoded by ``mailbot.mail.headers``).

Zip archives are opened through ``mailbot.forms.archive_safety`` (member count, declared and actual
sizes, compression ratio, bounded reads); encryption and per-member size are checked here.
"""

from __future__ import annotations

import binascii
import hashlib
import quopri
import re
import time
from dataclasses import dataclass, field
from email import policy as email_policy
from email.message import Message
from email.parser import BytesParser
from html import unescape

import tnefparse

from mailbot.charsets import decode_bytes
from mailbot.errors import UnreadableForm
from mailbot.forms.archive_safety import (
    member_display_name, open_checked_zip, open_zip, read_member, zip_contents_kind,
)
from mailbot.forms.magic import image_mime, magic_kind
from mailbot.forms.model import Finding
from mailbot.forms.ole_inspect import ole_kind
from mailbot.limits import DEFAULT_LIMITS, Limits
from mailbot.mail.headers import attachment_filename, decode_words, display_name, fix_8bit, normalise_msgid
from mailbot.mail.message import (
    FLOOD_DEFECTS, MAX_MULTIPART_DEPTH, ParsedMessage, iter_parts, parse_message, parse_tree, part_type,
)

__all__ = [
    "Attachment", "MessageParts", "find_attachments", "html_to_text",
    # parsing lives in mail/message.py and mail/headers.py; re-exported for existing callers
    "ParsedMessage", "parse_message", "decode_words", "attachment_filename",
]

# --------------------------------------------------------------------------- constants

MAX_BODY_CHARS = 20_000
"""Bound on ``MessageParts.body_text``."""
TINY_IMAGE_BYTES = 12 * 1024
"""Images smaller than this are logos / signature images, never stamped scans."""

# --------------------------------------------------------------------------- attachments


@dataclass(frozen=True)
class Attachment:
    """A file found in the message.  ``filename`` is for display only, never a path;
    ``content_type`` is what the bytes are (sniffed), falling back to the declared type;
    ``origin`` says where it was found (``"zip 报名.zip > 附件3.xlsx"``)."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)
    origin: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class MessageParts:
    """What the walk found: candidate ``forms``, ``scans`` kept as evidence, ``problems`` for
    the sender, a bounded ``body_text`` for staff, and ``notes`` (ignored parts, defects) for
    logs."""

    forms: tuple[Attachment, ...] = ()
    scans: tuple[Attachment, ...] = ()
    problems: tuple[Finding, ...] = ()
    body_text: str = ""
    notes: tuple[str, ...] = ()


MIME_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MIME_XLSM = "application/vnd.ms-excel.sheet.macroenabled.12"
MIME_XLSB = "application/vnd.ms-excel.sheet.binary.macroenabled.12"
MIME_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MIME_ODS = "application/vnd.oasis.opendocument.spreadsheet"
MIME_ODT = "application/vnd.oasis.opendocument.text"
MIME_XLS = "application/vnd.ms-excel"
MIME_DOC = "application/msword"
MIME_CSV = "text/csv"
MIME_PDF = "application/pdf"
MIME_ZIP = "application/zip"

_FORM_EXTS = {
    ".xlsx": MIME_XLSX, ".xlsm": MIME_XLSM, ".xltx": MIME_XLSX, ".xls": MIME_XLS,
    ".et": MIME_XLS, ".ods": MIME_ODS, ".csv": MIME_CSV, ".docx": MIME_DOCX,
    ".doc": MIME_DOC, ".wps": MIME_DOC, ".odt": MIME_ODT,
}  # fmt: skip
_FORM_TYPES = set(_FORM_EXTS.values()) | {
    "application/excel", "application/x-excel", "application/x-msexcel", "application/csv",
    MIME_XLSB, "text/comma-separated-values",
}  # fmt: skip
_SIGNATURE_TYPES = {
    "application/pgp-signature", "application/pkcs7-signature",
    "application/x-pkcs7-signature", "application/pgp-keys",
}  # fmt: skip
_MESSAGE_TYPES = {"message/rfc822", "message/global"}  # forwarded messages (RFC 2046, RFC 6532)
_JUNK_MEMBERS = re.compile(r"(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.I)

_F_TOO_LARGE = "attachment_too_large"
_F_TOO_MANY = "too_many_attachments"
_F_ARCHIVE_UNREADABLE = "archive_unreadable"
_F_ARCHIVE_BOMB = "archive_bomb"
_F_NESTING = "nesting_too_deep"
_F_RAR = "rar_unsupported"
_F_MSG = "msg_unsupported"
_F_MESSAGE_TOO_LARGE = "message_too_large"
_F_UNREADABLE = "attachment_unreadable"
_F_TIME_LIMIT = "time_limit"
_F_TOO_COMPLEX = "message_too_complex"


def _sniff(data: bytes, filename: str, limits: Limits) -> str:
    """What the bytes are: ``xlsx``/``xlsm``/``xlsb``/``docx``/``ods``/``odt``/``zip``/``ole-xls``/
    ``ole-doc``/``ole-msg``/``ole``/``biff``/``pdf``/``image``/``rar``/``7z``/``gz``/``tnef``/
    ``eml``/``text``/``binary``/``empty``."""
    if not data:
        return "empty"
    kind = magic_kind(data)
    if kind == "zip":
        return _sniff_zip(data, limits)
    if kind == "ole":
        return _OLE_SNIFF.get(ole_kind(data), "ole")  # the directory's streams, as the loader reads them
    if kind is not None:
        return "gz" if kind == "gzip" else kind
    sample = data[:4096]
    if sample.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")) or b"\x00" not in sample:
        if _looks_like_message(data, filename):
            return "eml"
        return "text"
    return "binary"


_KNOWN_HEADER = re.compile(
    rb"\A(Return-Path|Received|From|Message-ID|MIME-Version|Date|Subject|To|X-[A-Za-z-]+|"
    rb"Delivered-To):", re.I
)
_ANY_HEADER = re.compile(rb"\A[A-Za-z-]+:[^\r\n]*\r?\n(?:[A-Za-z-]+:|[ \t])")


def _looks_like_message(data: bytes, filename: str) -> bool:
    """An RFC 5322 message: a known header first and a header/body separator, or any header
    block under an ``.eml`` name."""
    head = data[:65536]
    if _KNOWN_HEADER.match(head) and (b"\n\n" in head or b"\r\n\r\n" in head):
        return True
    return filename.lower().endswith(".eml") and bool(_ANY_HEADER.match(head))


def _sniff_zip(data: bytes, limits: Limits) -> str:
    """:func:`~mailbot.forms.magic.zip_kind` of the archive (the loader reads the same table);
    ``zip-broken`` when unreadable (a zip with too many members is a ``zip``: opening it
    explains)."""
    try:
        with open_zip(data, limits) as zf:
            return zip_contents_kind(zf, limits)
    except UnreadableForm as exc:
        return "zip" if exc.code == "too_many_members" else "zip-broken"


_OLE_SNIFF = {"xls": "ole-xls", "doc": "ole-doc", "msg": "ole-msg", "encrypted": "ole-encrypted"}


_SNIFF_MIME = {
    "xlsx": MIME_XLSX, "xlsm": MIME_XLSM, "xlsb": MIME_XLSB, "docx": MIME_DOCX, "ods": MIME_ODS, "odt": MIME_ODT,
    "ole-xls": MIME_XLS, "ole-doc": MIME_DOC, "biff": MIME_XLS, "pdf": MIME_PDF,
    "zip": MIME_ZIP, "rar": "application/vnd.rar", "7z": "application/x-7z-compressed",
    "ole-msg": "application/vnd.ms-outlook", "tnef": "application/ms-tnef",
    "eml": "message/rfc822",
}  # fmt: skip
_FORM_KINDS = {"xlsx", "xlsm", "xlsb", "docx", "ods", "odt", "ole-xls", "ole-doc", "biff", "ole-encrypted"}


def _ext(filename: str) -> str:
    m = re.search(r"(\.[A-Za-z0-9]{1,5})\s*$", filename)
    return m.group(1).lower() if m else ""


class _Deadline(Exception):
    pass


class _Walker:
    """State of one walk: counters, findings, and the deadline."""

    def __init__(self, limits: Limits, seconds: float | None = None) -> None:
        self.limits = limits
        self.forms: list[Attachment] = []
        self.scans: list[Attachment] = []
        self.problems: list[Finding] = []
        self.notes: list[str] = []
        self.body: list[str] = []
        self.body_len = 0
        self.seen: set[str] = set()
        self.files = 0
        self.too_many = False
        self.has_plain = False
        self.deadline = time.monotonic() + (limits.max_seconds_per_message if seconds is None else seconds)

    # -- bookkeeping
    def problem(self, code: str, message: str) -> None:
        if not any(p.code == code and p.message == message for p in self.problems):
            self.problems.append(Finding(code=code, message=message))

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Deadline

    def count_file(self) -> bool:
        """Count one file; False (and one finding) once past ``max_attachments``."""
        self.files += 1
        if self.files > self.limits.max_attachments:
            if not self.too_many:
                self.too_many = True
                n = self.limits.max_attachments
                self.problem(
                    _F_TOO_MANY,
                    f"邮件附件过多（超过 {n} 个），只处理了前 {n} 个。请只发送附件3报名表。",
                )
            return False
        return True

    def add_body(self, text: str) -> None:
        room = MAX_BODY_CHARS - self.body_len
        if room <= 0 or not text.strip():
            return
        text = text.strip()[:room]
        self.body.append(text)
        self.body_len += len(text) + 2

    def keep(self, bucket: list[Attachment], att: Attachment) -> None:
        digest = att.sha256
        if digest in self.seen:
            self.notes.append(f"{att.origin}: duplicate of an earlier file, skipped")
            return
        self.seen.add(digest)
        bucket.append(att)

    # -- messages
    def walk_message(self, msg: Message, nest: int, prefix: str) -> None:
        cids = _referenced_cids(msg)
        if nest == 0:
            self.has_plain = any(
                part_type(p) == "text/plain" and not p.is_multipart()
                and not attachment_filename(p) for p in iter_parts(msg, 0)
            )  # fmt: skip
        counter = [0]
        self.walk_part(msg, 0, nest, prefix, counter, cids)

    def walk_part(self, part: Message, depth: int, nest: int, prefix: str,
                  counter: list[int], cids: set[str]) -> None:  # fmt: skip
        self.check_time()
        ctype = part_type(part)
        payload = part.get_payload()
        if ctype in _MESSAGE_TYPES and isinstance(payload, list):
            encoded = _transfer_encoded_message(part, payload)
            if encoded is not None:
                counter[0] += 1
                self.take_file(encoded, attachment_filename(part), ctype, prefix,
                               f"{prefix}attachment {counter[0]}", nest)  # fmt: skip
                return
            counter[0] += 1
            if not self.count_file():
                return
            if nest + 1 > self.limits.max_nesting:
                self.nesting_problem(_label(attachment_filename(part), f"{prefix}attachment {counter[0]}"))
                return
            for sub in payload[:1]:
                if isinstance(sub, Message):
                    self.walk_message(sub, nest + 1, prefix + "forwarded message > ")
            return
        if part.is_multipart():
            if depth >= MAX_MULTIPART_DEPTH:
                self.notes.append(f"{prefix or 'message'}: multipart nesting capped at {depth}")
                return
            for child in payload if isinstance(payload, list) else []:
                if isinstance(child, Message):
                    self.walk_part(child, depth + 1, nest, prefix, counter, cids)
            return
        self.walk_leaf(part, ctype, nest, prefix, counter, cids)

    def walk_leaf(self, part: Message, ctype: str, nest: int, prefix: str,
                  counter: list[int], cids: set[str]) -> None:  # fmt: skip
        filename = attachment_filename(part)
        disposition = fix_8bit(str(part.get("Content-Disposition") or ""))
        disposition = disposition.split(";", 1)[0].strip().lower()
        if ctype in ("text/plain", "text/html") and not filename and disposition != "attachment":
            if nest == 0 and not (ctype == "text/html" and self.has_plain):
                self.add_body(_body_text(part, ctype))
            return
        if ctype in _SIGNATURE_TYPES or _ext(filename) in (".p7s", ".asc", ".sig"):
            self.notes.append(f"{prefix}signature part ignored")
            return
        if ctype.startswith(("multipart/", "message/")) and not filename:
            return  # container without parsed children (bad boundary), or a DSN block
        counter[0] += 1
        origin = f"{prefix}attachment {counter[0]}"
        data = _payload_bytes(part, self.limits.max_attachment_bytes)
        if data is None:
            if self.count_file():
                self.problem(
                    _F_TOO_LARGE,
                    f"附件“{_label(filename, origin)}”超过 {_mb(self.limits.max_attachment_bytes)} MB "
                    "上限，未处理。请只发送附件3报名表（Excel 文件）。",
                )
            return
        if not data and not filename:
            return
        content_id = normalise_msgid(str(part.get("Content-ID") or ""))
        self.take_file(
            data, filename, ctype, prefix, origin, nest,
            inline=disposition == "inline", referenced=bool(content_id) and content_id in cids,
            content_id=bool(content_id),
        )  # fmt: skip

    def take_file(self, data: bytes, filename: str, ctype: str, prefix: str, origin: str,
                  nest: int, *,
                  inline: bool = False, referenced: bool = False, content_id: bool = False,
                  count: bool = True) -> None:  # fmt: skip
        """Judge one file by its bytes and route it: form, scan, container or problem."""
        self.check_time()
        if count and not self.count_file():
            return
        label = _label(filename, origin)
        if len(data) > self.limits.max_attachment_bytes:
            self.problem(
                _F_TOO_LARGE,
                f"附件“{label}”超过 {_mb(self.limits.max_attachment_bytes)} MB 上限，未处理。"
                "请只发送附件3报名表（Excel 文件）。",
            )
            return
        kind = _sniff(data, filename, self.limits)
        ext = _ext(filename)
        if ctype in _MESSAGE_TYPES or (kind == "eml" and ext in (".eml", "") and
                                       ctype in ("application/octet-stream", "text/plain")):
            self.open_message(data, label, prefix, origin, nest)
            return
        if kind in _FORM_KINDS:
            mime = _SNIFF_MIME.get(kind) or _FORM_EXTS.get(ext) or ctype
            self.keep(self.forms, Attachment(filename, mime, data, origin))
            return
        if kind == "ole":
            if ext == ".msg":
                self.msg_problem(label)
                return
            self.keep(self.forms, Attachment(filename, _FORM_EXTS.get(ext, MIME_XLS), data, origin))
            return
        if kind == "ole-msg":
            self.msg_problem(label)
            return
        if kind in ("zip", "zip-broken"):
            if kind == "zip" and ext in (".xlsx", ".xlsm", ".docx", ".ods"):
                # a zip named like an OOXML file: pass to the reader, it explains
                self.keep(self.forms, Attachment(filename, _FORM_EXTS[ext], data, origin))
                return
            self.open_zip(data, label, prefix, origin, nest, broken=kind == "zip-broken")
            return
        if kind in ("rar", "7z") or ext in (".rar", ".7z"):
            self.problem(
                _F_RAR,
                f"暂不支持 RAR/7z 压缩包“{label}”。请直接发送附件3 Excel 文件（.xlsx），"
                "或改用 zip 压缩。",
            )
            return
        if kind == "tnef" or ctype in ("application/ms-tnef", "application/vnd.ms-tnef"):
            self.open_tnef(data, label, prefix, origin, nest)
            return
        if kind == "pdf":
            self.keep(self.scans, Attachment(filename, MIME_PDF, data, origin))
            return
        if kind == "image":
            if referenced or (inline and content_id) or len(data) < TINY_IMAGE_BYTES:
                self.notes.append(f"{origin}: inline or signature image ignored")
                return
            mime = image_mime(data) or "application/octet-stream"  # kind "image" means it is known
            self.keep(self.scans, Attachment(filename, mime, data, origin))
            return
        if ext == ".msg" or ctype == "application/vnd.ms-outlook":
            self.msg_problem(label)
            return
        if kind == "text" and (ext == ".csv" or ctype in ("text/csv", "application/csv",
                                                           "text/comma-separated-values")):
            self.keep(self.forms, Attachment(filename, MIME_CSV, data, origin))
            return
        if kind in ("text", "binary") and ext in _FORM_EXTS:
            # unrecognised bytes under a form name (HTML/XML "xls", truncated file): the reader
            # decides and tells the sender why it cannot read it
            self.keep(self.forms, Attachment(filename, _FORM_EXTS[ext], data, origin))
            return
        if kind == "binary" and ext == "" and ctype in _FORM_TYPES:
            self.keep(self.forms, Attachment(filename, ctype, data, origin))
            return
        self.notes.append(f"{origin}: {filename or ctype} ({kind}) ignored")

    def msg_problem(self, label: str) -> None:
        self.problem(
            _F_MSG,
            f"附件“{label}”是 Outlook 邮件文件（.msg），无法读取。"
            "请直接把附件3 Excel 文件作为附件发送。",
        )

    def nesting_problem(self, label: str) -> None:
        self.problem(
            _F_NESTING,
            f"“{label}”嵌套层数过多（压缩包或转发邮件超过 {self.limits.max_nesting} 层），"
            "未处理。请直接发送附件3 Excel 文件。",
        )

    # -- containers
    def open_message(self, data: bytes, label: str, prefix: str, origin: str, nest: int) -> None:
        if nest + 1 > self.limits.max_nesting:
            self.nesting_problem(label)
            return
        try:
            inner = BytesParser(policy=email_policy.compat32).parsebytes(data)
        except RecursionError:
            self.nesting_problem(label)
            return
        except Exception as exc:  # noqa: BLE001
            self.notes.append(f"{origin}: forwarded message unparseable ({type(exc).__name__})")
            return
        self.walk_message(inner, nest + 1, f"{prefix}forwarded message > ")

    def open_zip(self, data: bytes, label: str, prefix: str, origin: str, nest: int, *,
                 broken: bool) -> None:  # fmt: skip
        archive_name = label
        unreadable = (
            f"压缩包“{archive_name}”已损坏或加密，无法打开。请直接发送附件3 Excel 文件（不要加密）。"
        )
        if nest + 1 > self.limits.max_nesting:
            self.nesting_problem(archive_name)
            return
        if broken:
            self.problem(_F_ARCHIVE_UNREADABLE, unreadable)
            return
        bomb = (
            f"压缩包“{archive_name}”解压后过大或文件过多，已拒绝处理。请直接发送附件3 Excel 文件。"
        )
        prefix = f"{prefix}zip {archive_name} > "

        def refused(exc: UnreadableForm) -> None:
            self.notes.append(f"{origin}: {exc.code}: {exc.detail}")
            if exc.code == "corrupt":
                self.problem(_F_ARCHIVE_UNREADABLE, unreadable)
            else:
                self.problem(_F_ARCHIVE_BOMB, bomb)

        try:
            zf = open_checked_zip(data, self.limits)
        except UnreadableForm as exc:
            refused(exc)
            return
        budget = self.limits.max_uncompressed_bytes
        with zf:
            for info in zf.infolist():
                self.check_time()
                if info.is_dir() or _JUNK_MEMBERS.search(info.filename):
                    continue
                shown = display_name(member_display_name(info))
                if info.flag_bits & 0x1:
                    self.problem(_F_ARCHIVE_UNREADABLE, unreadable)
                    return
                if info.file_size > self.limits.max_attachment_bytes:
                    if self.count_file():
                        self.problem(
                            _F_TOO_LARGE,
                            f"压缩包中的“{shown}”超过 "
                            f"{_mb(self.limits.max_attachment_bytes)} MB 上限，未处理。",
                        )
                    continue
                try:
                    member = read_member(zf, info, self.limits)
                except UnreadableForm as exc:
                    refused(exc)
                    return
                except (RuntimeError, ValueError) as exc:
                    self.notes.append(f"{origin}: zip error {type(exc).__name__}")
                    self.problem(_F_ARCHIVE_UNREADABLE, unreadable)
                    return
                budget -= len(member)
                if budget < 0:
                    self.problem(_F_ARCHIVE_BOMB, bomb)
                    return
                self.take_file(member, shown, "application/octet-stream", prefix,
                               prefix + shown, nest + 1)  # fmt: skip

    def open_tnef(self, data: bytes, label: str, prefix: str, origin: str, nest: int) -> None:
        if nest + 1 > self.limits.max_nesting:
            self.nesting_problem(label)
            return
        try:
            tnef = tnefparse.TNEF(data, do_checksum=False)
        except Exception as exc:  # noqa: BLE001 - tnefparse raises anything on bad input
            self.notes.append(f"{origin}: winmail.dat unreadable ({type(exc).__name__})")
            self.problem(
                _F_UNREADABLE,
                f"附件“{label}”（Outlook winmail.dat）无法读取。请在 Outlook 中改用 HTML 或纯文本"
                "格式，直接发送附件3 Excel 文件。",
            )
            return
        prefix = f"{prefix}{label} > "
        for att in list(getattr(tnef, "attachments", []))[: self.limits.max_attachments]:
            self.check_time()
            name = _tnef_name(att)
            payload = att.data if isinstance(att.data, (bytes, bytearray)) else b""
            if not payload:
                continue
            self.take_file(bytes(payload), name, "application/octet-stream", prefix,
                           prefix + name, nest + 1)  # fmt: skip

    def result(self) -> MessageParts:
        return MessageParts(
            forms=tuple(self.forms),
            scans=tuple(self.scans),
            problems=tuple(self.problems),
            body_text="\n\n".join(self.body)[:MAX_BODY_CHARS],
            notes=tuple(self.notes[:200]),
        )


def _tnef_name(att: object) -> str:
    for getter in ("long_filename", "name"):
        try:
            value = getattr(att, getter)
            value = value() if callable(value) else value
        except Exception:  # noqa: BLE001 - name bytes in a codepage tnefparse cannot decode
            value = None
        if isinstance(value, str) and value.strip("\x00").strip():
            return display_name(value.strip("\x00"))
    raw = getattr(att, "_name", b"")
    if isinstance(raw, (bytes, bytearray)) and raw:
        return display_name(decode_bytes(bytes(raw).rstrip(b"\x00")))
    return ""


def _label(filename: str, origin: str) -> str:
    """How a finding names a file to the sender: its name, else where it was found, in Chinese
    (``forwarded message > attachment 2`` -> ``转发邮件中的第2个附件``)."""
    if filename:
        return filename
    label = re.sub(r"attachment (\d+)", r"第\1个附件", origin)
    label = re.sub(r"(^|> )zip ", r"\1压缩包", label).replace("forwarded message", "转发邮件")
    return label.replace(" > ", "中的")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g}"


_CID_RE = re.compile(r"cid:([^\"'\s>)]+)", re.I)


def _referenced_cids(msg: Message) -> set[str]:
    cids: set[str] = set()
    for part in iter_parts(msg, 0):
        if part_type(part) != "text/html" or part.is_multipart():
            continue
        try:
            html = part.get_payload(decode=True) or b""
        except Exception:  # noqa: BLE001
            continue
        if isinstance(html, bytes) and len(html) < 5 * 1024 * 1024:
            for m in _CID_RE.finditer(html.decode("ascii", "replace")):
                cids.add(normalise_msgid(m.group(1).replace("%40", "@")))
    return cids


def _transfer_encoded_message(part: Message, payload: list[Message]) -> bytes | None:
    """The decoded bytes of a forwarded message sent base64 or quoted-printable (RFC 2046
    forbids it; some clients do it anyway), which the parser leaves as the body of a header-less
    sub-message (quoted-printable ones parse with mangled bodies); None for a forwarded message
    sent as it should be."""
    encoding = str(part.get("Content-Transfer-Encoding") or "").strip().lower()
    if encoding not in ("base64", "quoted-printable") or not payload:
        return None
    try:
        raw = payload[0].as_bytes(policy=email_policy.compat32)
    except Exception:  # noqa: BLE001 - email's generator on a hostile tree
        return None
    if encoding == "quoted-printable":
        return quopri.decodestring(raw)
    try:
        return binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/=]", b"", raw))
    except (binascii.Error, ValueError):
        return None


def _payload_bytes(part: Message, max_bytes: int) -> bytes | None:
    """Decoded payload bytes; None when clearly beyond ``max_bytes`` (checked before decoding)."""
    try:
        raw = part.get_payload()
    except Exception:  # noqa: BLE001
        return b""
    if isinstance(raw, list):  # message/rfc822 parsed into a sub-message
        try:
            sub = raw[0] if raw else None
            return sub.as_bytes(policy=email_policy.compat32) if isinstance(sub, Message) else b""
        except Exception:  # noqa: BLE001
            try:
                return str(raw[0]).encode("utf-8", "surrogateescape")
            except Exception:  # noqa: BLE001
                return b""
    if isinstance(raw, str) and len(raw) * 3 // 4 > max_bytes * 1.05 + 1024:
        return None
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        data = None
    if data is None:
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    return data


def _body_text(part: Message, ctype: str) -> str:
    data = _payload_bytes(part, 5 * 1024 * 1024) or b""
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001
        charset = None
    text = decode_bytes(data[: 4 * MAX_BODY_CHARS], charset).replace("\r\n", "\n")
    if ctype == "text/html":
        text = re.sub(r"[ \t]+", " ", html_to_text(text))
        text = re.sub(r"\n\s*\n+", "\n", text)
    return text


_RAW_TEXT_ELEMENTS = ("script", "style")


def html_to_text(markup: str) -> str:
    """The text of an HTML body: each tag or comment becomes a space, ``script`` and ``style``
    elements vanish with their content, character references are decoded; a ``<`` never closed
    by ``>`` and what follows stay text.

    Linear in the input: every search either moves past what it found or, finding nothing,
    is never repeated.  (A regex or the stdlib ``html.parser`` rescans the rest of the input
    for each unclosed construct: 10,000 ``<script>`` openers took seconds.)"""
    lower = markup.lower()
    out: list[str] = []
    absent_from: dict[str, int] = {}  # needle -> no occurrence starts at or after this index

    def find(needle: str, start: int, haystack: str = markup) -> int:
        limit = absent_from.get(needle, len(haystack))
        at = haystack.find(needle, start, limit + len(needle) - 1)
        if at < 0:
            absent_from[needle] = min(limit, start)
        return at

    pos = 0
    while (lt := markup.find("<", pos)) >= 0:
        comment = markup.startswith("<!--", lt)
        end = find("-->", lt + 4) + 3 if comment else -1
        if end < 3:
            end = find(">", lt + 1) + 1
            if end == 0:
                break  # no ">" left: the rest is text
        out.append(markup[pos:lt])
        out.append(" ")
        pos = end
        name = next((n for n in _RAW_TEXT_ELEMENTS if lower.startswith(n, lt + 1)), None)
        if name is not None and not comment:
            closing = find(f"</{name}", end, lower)
            closed = find(">", closing) + 1 if closing >= 0 else 0
            if closed:
                pos = closed
    out.append(markup[pos:])
    return unescape("".join(out)).replace("\xa0", " ")


def find_in_file(data: bytes, filename: str, limits: Limits = DEFAULT_LIMITS, *,
                 seconds: float | None = None) -> MessageParts:
    """Walk one file as if it were a mail's only attachment (``mailbot check`` on a .zip or an
    .eml): the same sniffing, zip listing and forwarded-mail opening as the daemon's walk."""
    walker = _Walker(limits, seconds)
    try:
        walker.take_file(data, filename, "application/octet-stream", "", filename or "file", 0)
    except _Deadline:
        walker.problem(_F_TIME_LIMIT, f"附件过多或过大，未能在{limits.max_seconds_per_message:g}秒内处理完。")
    except RecursionError:
        walker.notes.append("walk stopped: recursion limit")
    return walker.result()


def find_attachments(
    parsed_or_msg: ParsedMessage | Message | bytes, limits: Limits = DEFAULT_LIMITS, *,
    seconds: float | None = None,
) -> MessageParts:
    """Walk the MIME tree and collect forms, scans and problems; never raises on mail (a
    ``parse_head`` result, which has no body, is refused with ValueError).  The walk stops
    after ``seconds`` (default ``limits.max_seconds_per_message``: what is left of the message's
    budget when the caller already spent some)."""
    defects: tuple[str, ...] | None = None
    if isinstance(parsed_or_msg, (bytes, bytearray)):  # the tree only: no header is decoded
        msg, defects = parse_tree(bytes(parsed_or_msg), limits)
    elif isinstance(parsed_or_msg, ParsedMessage):
        if not parsed_or_msg.body_parsed:  # a caller's mistake, not the mail's: said at once
            raise ValueError("parse_head's result has no body to walk: pass the raw bytes")
        msg, defects = parsed_or_msg.message, parsed_or_msg.defects
    else:
        msg = parsed_or_msg
    walker = _Walker(limits, seconds)
    if defects is not None:
        if "MessageTooLarge" in defects:
            walker.problem(
                _F_MESSAGE_TOO_LARGE,
                f"邮件超过 {_mb(limits.max_message_bytes)} MB 上限，未处理。"
                "请只附上附件3报名表（Excel 文件）重新发送。",
            )
            return walker.result()
        if any(d in defects for d in FLOOD_DEFECTS):
            walker.problem(_F_TOO_COMPLEX, "邮件头字段或邮件分段过多（结构异常），无法处理。"
                                           "请新建一封邮件，只附上附件3报名表（Excel 文件）重新发送。")
            return walker.result()
        if "NestingTooDeep" in defects:
            walker.problem(_F_NESTING, "邮件结构嵌套层数过多，无法处理。请直接发送附件3 Excel 文件。")
    try:
        walker.walk_message(msg, 0, "")
    except _Deadline:
        walker.notes.append(f"walk stopped after {limits.max_seconds_per_message:g}s")
        walker.problem(_F_TIME_LIMIT, f"邮件附件过多或过大，未能在{limits.max_seconds_per_message:g}秒内处理完，"
                                      "请只附上附件3报名表（Excel 文件）重新发送。")
    except RecursionError:
        walker.notes.append("walk stopped: recursion limit")
    except Exception as exc:  # noqa: BLE001 - never raise on mail; the note reaches staff logs
        walker.notes.append(f"walk failed: {type(exc).__name__}: {exc!s:.200}")
    return walker.result()
