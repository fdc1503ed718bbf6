"""Render replies and the staff digest from ``templates/`` and build the RFC 5322 reply message.

Templates: ``reply_<kind>.txt.j2`` / ``reply_<kind>.html.j2`` extending ``_layout.*.j2`` and
importing ``_macros.*.j2``; ``digest.txt.j2`` / ``digest.html.j2``.  The Jinja environment is
strict (an unknown variable is an error), autoescapes only ``*.html.j2``, and masks every
identity number and mobile in every printed value and again in the finished text, so a raw
number never reaches a reply even if the pipeline forgets to mask one.  Templates are read
once per process (no file check per reply).

A reply carries no active content: every value the sender supplied (names, institution,
file names, findings quoting cells, the display name in ``To``) passes through :func:`defang`
(by :func:`sender_safe`, once per reply) so that no URL from the mail or the form becomes a
link in a mail client; mailbot's own values (the platform URL of a redirect) are left as they are.

Headers of a reply (``build_message``):

* ``To`` the sender only; ``In-Reply-To``/``References`` thread it under the original; the
  subject is mailbot's own fixed words with the result and the receipt
  (``Re: 报名表【需修改3处｜回执 ZJ2020-000123】``), never the sender's subject, which may
  carry a link or a lure.
* ``Auto-Submitted: auto-replied`` (RFC 3834) and ``X-Auto-Response-Suppress: All`` (Exchange)
  so vacation responders do not answer the bot.
* No ``Precedence: bulk``: RFC 3834 does not define it and relies on ``Auto-Submitted``;
  ``Precedence: bulk`` is a spam signal at several providers and these replies carry seat
  results a teacher must see.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from email import message_from_bytes, policy
from email.charset import BASE64, Charset
from email.generator import NLCRE, BytesGenerator
from email.header import Header
from email.headerregistry import Address
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr, make_msgid
from io import BytesIO
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from mailbot.errors import SendError
from mailbot.annex3 import FIELDS
from mailbot.mail.org_domain import has_known_suffix
from mailbot.masking import mask_text
from mailbot.replies.greeting import FALLBACK as PLAIN_GREETING, greeting, name_to_greet
from mailbot.replies.model import ChangeLine, DigestContext, FindingLine, NomineeLine, ReplyContext, SchoolNotice
from mailbot.time_zones import zone

try:
    BEIJING: tzinfo = zone("Asia/Shanghai")
except Exception:  # pragma: no cover - no tz database; China has had no DST since 1991
    BEIJING = timezone(timedelta(hours=8), "CST")

XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
MAX_REFERENCES = 20
MAX_TO_NAME = 64  # characters of the sender's display name echoed in a reply's To header
_PLAIN_HEADER_RE = re.compile(r"[!-~]+(?: [!-~]+)*")


class _WirePolicy(type(policy.compat32)):  # type: ignore[misc]
    """compat32 writing CRLF.  A header value that is one short line of printable ASCII words
    (``MIME-Version: 1.0``, ``Content-Type: text/plain; charset="utf-8"``, …, most headers of
    a reply) is written as is: exactly what compat32's folding makes of it, without building a
    ``Header`` per header (``tests/test_replies.py`` compares the two); anything else is folded
    by compat32."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if (isinstance(value, str) and len(name) + 2 + len(value) <= self.max_line_length
                and _PLAIN_HEADER_RE.fullmatch(value)):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)  # type: ignore[no-any-return]


# SMTP policy, but raw (set_raw) headers are written as given: the threading headers are
# folded by fold_ids, every other header is a parsed header object folded as usual.
_WIRE = _WirePolicy(linesep="\r\n")

_BASE64_LINE = 76  # characters of a base64 body line, as email.base64mime writes them


class _Utf8(Charset):
    """UTF-8 with base64 bodies, as ``Charset("utf-8")``; a body is encoded by one
    ``binascii`` call cut into 76-character lines where ``email.base64mime.body_encode``
    makes one call and one ``str`` per 57 bytes: the same text, since 57 bytes are exactly
    76 characters of base64 (``tests/test_replies.py`` compares the two)."""

    def __init__(self) -> None:
        super().__init__("utf-8")

    def body_encode(self, string: str | bytes) -> str:  # type: ignore[override]
        if not string or self.body_encoding is not BASE64:
            return super().body_encode(string)  # type: ignore[no-any-return]
        data = string.encode(self.output_charset) if isinstance(string, str) else string
        encoded = binascii.b2a_base64(data, newline=False).decode("ascii")
        return "\n".join([encoded[i:i + _BASE64_LINE] for i in range(0, len(encoded), _BASE64_LINE)]) + "\n"


_UTF8 = _Utf8()


class _Generator(BytesGenerator):
    """``BytesGenerator`` writing a body's lines with one ``write`` (the same bytes: each line
    break made the policy's ``linesep``, by one ``str.replace`` when the body has no CR) instead
    of two per line.  Every body written here is base64 (the UTF-8 text parts, the workbooks),
    whose lines never start with ``From ``: the ``>From`` escaping, a regex pass over each
    body, has nothing to change and is off (``mangle_from_=False``, passed on to the parts'
    generators; ``tests/test_replies.py`` compares the bytes with the stock generator's)."""

    def _write_lines(self, lines: str) -> None:
        if lines:
            self.write(lines.replace("\n", self._NL) if "\r" not in lines
                       else self._NL.join(NLCRE.split(lines)))

# A URL scheme with its host ("李四http://evil.example": glued to a Chinese name too; the
# defanged "hxxp[:]//" never matches again) and a dotted host name of ASCII labels not glued
# to a word, an "@" (e-mail addresses stay usable) or another dot.
_SCHEME_RE = re.compile(r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*)://([^\s/?#\"'<>]*)")
_HOST_RE = re.compile(
    r"(?i)(?<![\w@.\-])((?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+[a-z][a-z0-9\-]*[a-z0-9])(?![a-z0-9]|[.\-][a-z0-9])"
)
_DEFANGED_SCHEMES = {"http": "hxxp", "https": "hxxps", "ftp": "fxp"}
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MSGID_RE = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")

STATUS_LABELS = {"seated": "报名成功（在计划名额内）", "held": "待工作人员审核", "rejected": "未登记"}
"""A nominee's status in the notice's words (it speaks of 报名, never of 录取)."""
OUTCOME_LABELS = {
    "accepted": "报名成功",
    "acceptance": "报名成功",
    "correction": "需修改",
    "late": "逾期",
    "redirect": "转省平台（中职）",
    "no_form": "无附件3",
    "scan_only": "仅扫描件",
    "unreadable": "无法读取",
    "not_annex3": "非附件3",
    "promotion": "候补递补",
    "held": "已收到，待人工处理",
    "for_staff": "来信转工作人员",
    "how_to_register": "询问报名方式（已回复空白表）",
    "failed": "处理失败",
    "quarantined": "已隔离",
    "ignored": "已忽略（自动回复/退信等）",
    "duplicate": "重复邮件",
}
OTHER_LABEL = "其他"  # a code without a label is never shown as is (staff read Chinese only)
ATTENTION_LABELS = {
    "failed": "处理失败",
    "quarantined": "已隔离",
    "reply_failed": "回复发送失败",
    "reply_unknown": "回复投递情况不明",
    "domain_mismatch": "发件域名与单位不符",
    "conflict": "身份证号冲突",
    "other": "其他",
    "other_sender": "非本校联系邮箱以本校名义报名",
    "over_demand": "超出上报的培训需求数",
    "too_many": "单封邮件报名人数过多",
    "reader_failed": "附件读取失败（资源限制）",
    "arrival_order": "到达早于已报名成功者（较晚处理）",
    "withdrawal": "名单中有教师被取消或改报",
    "change_request": "补报邮件中要求更改已登记教师",
    "question": "来信询问或请求",
    "institution_missing": "未填写填报单位",
    "late": "截止后来信",
    "correction_open": "已要求修改、尚未重新提交",
    "no_institution": "报名表未填填报单位",
}
STAFF_STATUS_LABELS = {"seated": "计划名额内", "waiting": "候补", "held": "待审核", "withdrawn": "已撤回"}
"""A nominee's status as the office's staff and the host institutions read it: the digest, the staff
commands, ``mailbot history``, the roster and its mail to hosts all take their words from here.
Like the replies, in the notice's words (never 录取): 50 per program and first-come seating are
the office's working rule, not a decision the notice makes."""
PROMOTED_LABEL = "递补为计划名额内"  # a waiting teacher given a freed place (as the replies say it)
CHANGE_LABELS = {
    "seated": f"进入{STAFF_STATUS_LABELS['seated']}",
    "waiting": f"进入{STAFF_STATUS_LABELS['waiting']}",
    "promoted": PROMOTED_LABEL,
    "withdrawn": STAFF_STATUS_LABELS["withdrawn"],
    "held": f"{STAFF_STATUS_LABELS['held']}（未占名额）",
}
"""A change to the list since the last digest, in the staff's words above."""
BAR_CELLS = 20  # the text bar: one cell per 5 %


@dataclass(frozen=True)
class RenderedReply:
    """A rendered reply or digest: subject line, plain text body and HTML body."""

    subject: str
    text: str
    html: str


# --- small pure helpers --------------------------------------------------------------------


def one_line(value: str) -> str:
    """Collapse whitespace (CR/LF included) and drop control characters: safe for a header."""
    return " ".join(_CONTROL_RE.sub(" ", value or "").split())


def defang(value: str) -> str:
    """A sender-supplied text with every link made inert: ``http://evil.example/x`` ->
    ``hxxp[:]//evil[.]example/x``, ``www.evil.example`` -> ``www[.]evil[.]example``, a bare host
    with a known public suffix (``evil.com``) -> ``evil[.]com``.  E-mail addresses and file
    names (``报名表.xlsx``) are kept.  Applying it twice changes nothing more."""
    if not value or ("." not in value and ":" not in value):
        return value
    text = _SCHEME_RE.sub(lambda m: f"{_DEFANGED_SCHEMES.get(m.group(1).lower(), m.group(1))}[:]//"
                          + m.group(2).replace(".", "[.]"), value)

    def host(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.lower().startswith("www.") or has_known_suffix(name):
            return name.replace(".", "[.]")
        return name

    return _HOST_RE.sub(host, text)


def _safe_finding(f: FindingLine) -> FindingLine:
    file, column, message = defang(f.file), defang(f.column) if f.column else f.column, defang(f.message)
    if file == f.file and column == f.column and message == f.message:
        return f  # nothing to defang (most lines): no copy
    return replace(f, file=file, column=column, message=message)


def _safe_nominee(n: NomineeLine) -> NomineeLine:
    name, program, note = defang(n.name), defang(n.program), defang(n.note)
    if name == n.name and program == n.program and note == n.note:
        return n
    return replace(n, name=name, program=program, note=note)


def _safe_change(c: ChangeLine) -> ChangeLine:
    name, detail = defang(c.name), defang(c.detail)
    return c if name == c.name and detail == c.detail else replace(c, name=name, detail=detail)


def _safe_to_name(name: str) -> str:
    return defang(one_line(name))[:MAX_TO_NAME]


def _safe_workbooks(books: tuple[tuple[str, bytes], ...]) -> tuple[tuple[str, bytes], ...]:
    return tuple((defang(name), data) for name, data in books)


def sender_safe(ctx: ReplyContext) -> ReplyContext:
    """The context with :func:`defang` applied to every value that came from the mail or the form;
    the sender's display name also bounded (:data:`MAX_TO_NAME`).  A line (nominee, finding,
    change), or a whole context, with nothing to defang is kept as it is, not copied."""
    safe = {
        "to_name": _safe_to_name(ctx.to_name),
        "original_subject": defang(ctx.original_subject),
        "institution": defang(ctx.institution),
        "contact": defang(ctx.contact),
        "nominees": tuple(map(_safe_nominee, ctx.nominees)),
        "findings": tuple(map(_safe_finding, ctx.findings)),
        "changes": tuple(map(_safe_change, ctx.changes)),
        "unreadable_reasons": tuple(map(_safe_finding, ctx.unreadable_reasons)),
        "scans_received": tuple(defang(name) for name in ctx.scans_received),
        "correction_workbooks": _safe_workbooks(ctx.correction_workbooks),
    }
    if all(value == getattr(ctx, name) for name, value in safe.items()):
        return ctx
    return replace(ctx, **safe)


def sender_safe_notice(notice: SchoolNotice) -> SchoolNotice:
    """A notice about a school's list with :func:`defang` applied to what came from a form."""
    return replace(notice, institution=defang(notice.institution), changes=tuple(map(_safe_change, notice.changes)))


SUBJECT_RESULTS = {
    "acceptance": "报名成功",
    "correction": "需修改{findings}处",
    "late": "截止后收到，未登记",
    "redirect": "中职学校请通过省平台报名",
    "no_form": "未收到附件3汇总表",
    "scan_only": "仅收到扫描件，请补发电子表格",
    "unreadable": "附件无法读取",
    "not_annex3": "附件不是附件3汇总表",
    "promotion": "候补已递补为计划名额内",
    "held": "已收到，待工作人员处理",  # the acknowledgement of mail set aside for staff
    "acknowledgement": "来信已转工作人员",
    "how_to_register": "报名方法及附件3空白表",
}
"""The result in a reply's subject, per reply kind: mailbot's own words only."""


def acceptance_result(nominees: Iterable[NomineeLine]) -> str:
    """An acceptance's result in the notice's words: ``报名成功`` when everyone is within the
    planned places, else the counts (``报名成功3人，暂列候补2人``, ``暂列候补2人``, ``待审核1人``)."""
    counts: dict[str, int] = {}
    for n in nominees:
        counts[n.status] = counts.get(n.status, 0) + 1
    if not counts:
        return "已收到，表中无参训教师"
    if set(counts) == {"seated"}:
        return "报名成功"
    words = (("seated", "报名成功{}人"), ("waiting", "暂列候补{}人"), ("held", "待审核{}人"),
             ("rejected", "未登记{}人"))
    return "，".join(w.format(counts[s]) for s, w in words if counts.get(s))


def reply_subject(ctx: ReplyContext) -> str:
    """``Re: 报名表【需修改3处｜回执 ZJ2020-000123】``: fixed words, the result, the receipt.
    An acceptance says how many are within the planned places and how many wait (never 录取)."""
    words = SUBJECT_RESULTS.get(ctx.kind, "已收到")  # a kind without its own words still gets fixed ones
    result = words.format(findings=len(ctx.findings) + ctx.findings_omitted)
    if ctx.kind == "acceptance":
        result = acceptance_result(ctx.nominees)
    receipt = one_line(ctx.receipt)
    return f"Re: 报名表【{result}｜回执 {receipt}】" if receipt else f"Re: 报名表【{result}】"


def normalise_msgid(value: str) -> str:
    """``<id@host>`` for a usable Message-ID (brackets added if missing), else ``""``."""
    v = one_line(value)
    if v and not v.startswith("<"):
        v = f"<{v}>"
    return v if len(v) <= 900 and v.isascii() and _MSGID_RE.match(v) else ""


def thread_references(original_references: tuple[str, ...], original_id: str) -> list[str]:
    """The References of a reply: the original's references then its id, deduplicated, keeping
    the first and the last ones when the chain grows past ``MAX_REFERENCES``."""
    ids: list[str] = []
    for raw in (*original_references, original_id):
        for token in one_line(raw).split():
            mid = normalise_msgid(token)
            if mid and mid not in ids:
                ids.append(mid)
    if len(ids) > MAX_REFERENCES:
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    return ids


def fold_ids(name: str, ids: list[str], width: int = 78) -> str:
    """Message-IDs folded between ids only (``\n`` separated), for ``Message.set_raw``: the
    stdlib folder would otherwise turn an id longer than a line into encoded words."""
    lines = [""]
    for mid in ids:
        current = lines[-1]
        prefix = len(name) + 2 if len(lines) == 1 else 0
        if current and prefix + len(current) + 1 + len(mid) > width:
            lines.append(" " + mid)
        else:
            lines[-1] = f"{current} {mid}" if current else (mid if len(lines) == 1 else " " + mid)
    return "\n".join(lines)


def cn_time(value: datetime | None) -> str:
    """``2020年11月9日 23:59`` in Beijing time."""
    if value is None:
        return ""
    v = value.astimezone(BEIJING)
    return f"{v.year}年{v.month}月{v.day}日 {v:%H:%M}"


def cn_deadline(value: datetime | None) -> str:
    """A deadline as the notice would write it, in Beijing time: ``2020年11月9日24时`` for the end
    of a day (23:59:59 or the next 00:00), ``2020年11月9日17时`` on the hour, else
    ``2020年11月9日 17:30``."""
    if value is None:
        return ""
    v = value.astimezone(BEIJING)
    if (v.hour, v.minute, v.second) == (0, 0, 0):  # midnight is the end of the day before
        v = v - timedelta(seconds=1)
    if (v.hour, v.minute, v.second) == (23, 59, 59):
        return f"{v.year}年{v.month}月{v.day}日24时"
    if (v.minute, v.second) == (0, 0):
        return f"{v.year}年{v.month}月{v.day}日{v.hour}时"
    return cn_time(v)


def cn_date(value: datetime | None) -> str:
    """``2020年11月9日`` in Beijing time."""
    if value is None:
        return ""
    v = value.astimezone(BEIJING)
    return f"{v.year}年{v.month}月{v.day}日"


def cn_age(value: timedelta) -> str:
    """How long something has waited, in days and hours: ``3天2小时``, ``5小时``, ``不到1小时``."""
    hours = max(0, int(value.total_seconds() // 3600))
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}天{hours}小时" if hours else f"{days}天"
    return f"{hours}小时" if hours else "不到1小时"


def text_bar(percent: int) -> str:
    """A seats bar for plain text: ``■`` per 5 % taken, ``□`` for the rest."""
    full = round(max(0, min(100, percent)) * BAR_CELLS / 100)
    return "■" * full + "□" * (BAR_CELLS - full)


def status_label(line: NomineeLine) -> str:
    """报名成功（在计划名额内） / 暂列候补第N位 / 待工作人员审核 / 未登记."""
    if line.status == "waiting":
        return f"暂列候补第{line.waiting_position}位" if line.waiting_position else "暂列候补"
    return STATUS_LABELS.get(line.status, line.status)


def staff_status(status: str, position: int | None = None) -> str:
    """计划名额内 / 候补（第N位） / 待审核 / 已撤回: a status in the staff's words
    (:data:`STAFF_STATUS_LABELS`); an unknown code is shown as it is."""
    if status == "waiting" and position:
        return f"{STAFF_STATUS_LABELS['waiting']}（第{position}位）"
    return STAFF_STATUS_LABELS.get(status, status)


def statuses(lines: Iterable[NomineeLine]) -> frozenset[str]:
    """The statuses among the nominees (``"waiting" in nominees|statuses``): one pass in Python
    where ``selectattr(...)|list`` took a filter call per nominee."""
    return frozenset(line.status for line in lines)


def by_program(lines: Iterable[NomineeLine]) -> list[tuple[NomineeLine, list[NomineeLine]]]:
    """Nominees grouped by program, programs in order of first appearance, each group led by its
    first line (which carries the program's host, format, hours and fee, said once per program)."""
    groups: dict[str, list[NomineeLine]] = {}
    for line in lines:
        groups.setdefault(line.program, []).append(line)
    return [(group[0], group) for group in groups.values()]


def finding_place(f: FindingLine) -> str:
    """Where a finding is: ``「名单.xlsx」第5行「身份证号」列`` (parts present only)."""
    parts = []
    if f.file:
        parts.append(f"「{f.file}」")
    if f.row is not None and f.message.startswith(f"第{f.row}行"):
        return "".join(parts)  # the message already says where, in the form's own words
    if f.row is not None:
        parts.append(f"第{f.row}行")
    if f.column:
        parts.append(f"「{f.column}」列")
    return "".join(parts)


_SHORTEST_MASKED = 11  # an 11-digit mobile; identity numbers are 18 characters
# Both masking patterns (masking.py) need a run of at least 11 digits (\d, as they use it):
# text without one is returned as is, for one regex search instead of two substitutions.
# Written ``\d\d{10}``, not ``\d{11}``: the same runs, but a pattern that starts with a
# single character class lets the regex engine skip ahead over non-digits in C (a whole
# reply's HTML is searched: 66 -> 45 us for 5,000 characters).
_MASKABLE_RE = re.compile(r"\d\d{10}")


def _mask(text: str) -> str:
    return mask_text(text) if _MASKABLE_RE.search(text) else text


def _finalize(value: Any) -> Any:
    """Mask every string a template prints (Markup stays Markup).  A string shorter than a
    mobile number cannot hold one (most printed values: names, row numbers, labels).  Called
    for every printed value (~150 a reply): a plain ``str`` is told apart by its exact type
    first, the common case, before the subclass checks."""
    kind = type(value)
    if kind is str:  # _mask written out: one call less for each long value
        return mask_text(value) if len(value) >= _SHORTEST_MASKED and _MASKABLE_RE.search(value) else value
    if kind is int:
        return value
    if isinstance(value, Markup):
        return Markup(_mask(str(value))) if len(value) >= _SHORTEST_MASKED else value
    if isinstance(value, str):
        return _mask(value) if len(value) >= _SHORTEST_MASKED else value
    return value


def _tidy_text(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n") + "\n"


# --- rendering ------------------------------------------------------------------------------

_REPLY_FIELDS = tuple(f.name for f in fields(ReplyContext))  # a reply's template variables, by name


class ReplyRenderer:
    """Renders :class:`ReplyContext` and :class:`DigestContext` with the templates in a folder."""

    def __init__(self, templates_dir: Path) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2",), default_for_string=False, default=False
            ),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            finalize=_finalize,
            auto_reload=False,  # read once per process: no stat of every template file per reply
        )
        self.env.filters.update(
            cn_time=cn_time,
            cn_date=cn_date,
            cn_deadline=cn_deadline,
            status_label=status_label,
            by_program=by_program,
            statuses=statuses,
            place=finding_place,
            outcome_label=lambda k: OUTCOME_LABELS.get(k, OTHER_LABEL),
            attention_label=lambda k: ATTENTION_LABELS.get(k, OTHER_LABEL),
            change_label=lambda k: CHANGE_LABELS.get(k, OTHER_LABEL),
            staff_status=staff_status,
            name_to_greet=name_to_greet,
            cn_age=cn_age,
            text_bar=text_bar,
        )
        self.env.globals["annex3_columns"] = tuple(label for _, label in FIELDS)

    def _render_pair(self, stem: str, variables: dict[str, Any]) -> tuple[str, str]:
        text = self.env.get_template(f"{stem}.txt.j2").render(variables)
        html = self.env.get_template(f"{stem}.html.j2").render(variables)
        return _mask(_tidy_text(text)), _mask(html)

    def render(self, ctx: ReplyContext) -> RenderedReply:
        """Subject, text and HTML of one reply."""
        ctx = sender_safe(ctx)
        subject = mask_text(reply_subject(ctx))
        variables = {name: getattr(ctx, name) for name in _REPLY_FIELDS}
        variables.update(
            subject=subject,
            greeting=greeting(ctx.to_name, ctx.contact, contact_is_sender=ctx.contact_is_sender),
            contact_line=ctx.help_contact or ctx.late_contact,
            signature=ctx.signature
            or (f"{ctx.campaign_title}报名工作组" if ctx.campaign_title else "培训报名工作组"),
            attachment_names=tuple(name for name, _ in ctx.correction_workbooks),
            seated=tuple(n for n in ctx.nominees if n.status == "seated"),
        )
        text, html = self._render_pair(f"reply_{ctx.kind}", variables)
        return RenderedReply(subject=subject, text=text, html=html)

    def render_digest(self, digest: DigestContext) -> RenderedReply:
        """Subject, text and HTML of the staff digest."""
        variables = {f.name: getattr(digest, f.name) for f in fields(digest)}
        total = sum(count for _, count in digest.outcome_counts)
        subject = one_line(
            f"【报名日报】{digest.campaign} {cn_date(digest.period_end)}："
            f"收到{total}封，需关注{len(digest.attention)}项"
        )
        variables.update(subject=subject, total_messages=total)
        text, html = self._render_pair("digest", variables)
        return RenderedReply(subject=mask_text(subject), text=text, html=html)

    def render_page(self, stem: str, subject: str, variables: dict[str, Any]) -> RenderedReply:
        """Subject, text and HTML of one of mailbot's own mails (``<stem>.txt.j2`` /
        ``<stem>.html.j2``: notices, the staff alert); ``subject`` is available to the templates."""
        subject = mask_text(one_line(subject))
        text, html = self._render_pair(stem, {"greeting": PLAIN_GREETING, **variables, "subject": subject})
        return RenderedReply(subject=subject, text=text, html=html)


# --- the message ----------------------------------------------------------------------------


@lru_cache(maxsize=1024)  # mailbot's own From on every message; a school writes more than once
def _address(display_name: str, addr_spec: str) -> str:
    """``Name <addr>`` with the name RFC 2047-encoded when needed; SendError when unwritable."""
    try:
        checked = Address(display_name=one_line(display_name), addr_spec=one_line(addr_spec))
    except (ValueError, IndexError) as exc:
        raise SendError(f"cannot address a message to {addr_spec!r}", permanent=True) from exc
    return formataddr((checked.display_name, checked.addr_spec), charset="utf-8")


def _boundary() -> str:
    """A multipart boundary as the ``email`` generator makes one (15 ``=``, 19 random digits,
    ``==``), given up front so the generator does not compile a regex per message to check it
    against the text: every part here is base64 (UTF-8 text, workbooks), whose lines never hold
    two ``=`` in a row, and no header line starts with ``--=``."""
    return "=" * 15 + f"{secrets.randbelow(10**19):019d}" + "=="


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    """A text part in UTF-8, base64-encoded: what ``MIMEText(text, subtype, "utf-8")`` makes,
    with its body encoded as ``email.encoders.encode_base64`` sets one (payload, then the
    header) rather than through ``set_charset``, which parses its own Content-Type again."""
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    del part["MIME-Version"]  # only the top level carries it
    part.set_payload(_UTF8.body_encode(text))
    part["Content-Transfer-Encoding"] = "base64"
    return part


def _assemble(headers: list[tuple[str, Any]], rendered: RenderedReply,
              attachments: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    """The message as CRLF bytes.  Built with the compat32 classes: the modern ``EmailMessage``
    header folding cost about 15 ms a reply, a third of the whole per-mail budget.  MIME is
    always written by the ``email`` package, never by hand."""
    body = MIMEMultipart("alternative", boundary=_boundary())
    body.attach(_text_part(rendered.text, "plain"))
    body.attach(_text_part(rendered.html, "html"))
    msg: MIMEMultipart = body
    if attachments:
        del body["MIME-Version"]
        msg = MIMEMultipart("mixed", boundary=_boundary())
        msg.attach(body)
        for filename, data in attachments:
            name = one_line(filename)
            part = MIMEApplication(data, XLSX_TYPE[1])
            del part["MIME-Version"]
            part.set_param("name", name)  # RFC 2231 encoded by set_param for non-ASCII
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
            msg.attach(part)
    for name, value in headers:
        msg[name] = value
    # headers first in the output, in the order given
    order = [k for k, _ in headers]
    items = msg._headers  # noqa: SLF001 - reorder without re-encoding
    msg._headers = sorted(items, key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))  # noqa: SLF001
    buf = BytesIO()
    _Generator(buf, mangle_from_=False, policy=_WIRE).flatten(msg)
    return buf.getvalue()


def _subject(text: str) -> str | Header:
    text = one_line(text)
    return text if text.isascii() else Header(text, "utf-8", header_name="Subject")


def build_message(
    ctx: ReplyContext,
    rendered: RenderedReply,
    *,
    from_address: str,
    from_name: str,
    message_id_domain: str,
    message_id: str | None = None,
    date: datetime | None = None,
) -> bytes:
    """The reply as RFC 5322 bytes (CRLF): multipart/alternative text+HTML, inside
    multipart/mixed with the correction workbooks when there are any.

    ``message_id`` (``<...>``) and ``date`` may be given so the outbox can record them before
    sending; by default a fresh id under ``message_id_domain`` and the current time.
    Raises :class:`SendError` (permanent) when an address cannot be written.
    """
    # of the mail's own values only these two are written here (the text and HTML were
    # rendered from the defanged context): the whole context is defanged once, by ``render``
    headers: list[tuple[str, Any]] = [
        ("From", _address(from_name, from_address)),
        ("To", _address(_safe_to_name(ctx.to_name), ctx.to_address)),
        ("Subject", _subject(rendered.subject)),
        ("Date", format_datetime((date or datetime.now(timezone.utc)).astimezone(BEIJING))),
        ("Message-ID", normalise_msgid(message_id or "") or new_message_id(message_id_domain)),
    ]
    original = normalise_msgid(ctx.original_message_id)
    if original:
        headers.append(("In-Reply-To", original))
    references = thread_references(ctx.original_references, ctx.original_message_id)
    if references:
        headers.append(("References", fold_ids("References", references).replace("\n", "\r\n")))
    headers += [
        ("Auto-Submitted", "auto-replied"),
        ("X-Mailbot-Loop", from_address),  # mail_gate.LOOP_HEADER: our own mail coming back is never answered
        ("X-Auto-Response-Suppress", "All"),
        ("Content-Language", "zh-CN"),
    ]
    return _assemble(headers, rendered, _safe_workbooks(ctx.correction_workbooks))


def new_message_id(domain: str) -> str:
    """A fresh ``<...@domain>`` Message-ID for a message mailbot sends."""
    return make_msgid(domain=domain)


def reply_text(raw: bytes) -> str:
    """The plain-text body of a message built here ("" when it has none), for printing."""
    body = message_from_bytes(raw, policy=policy.default).get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""


def build_digest_message(
    rendered: RenderedReply,
    *,
    to_addresses: list[str],
    from_address: str,
    from_name: str,
    message_id_domain: str,
    date: datetime | None = None,
    attachments: tuple[tuple[str, bytes], ...] = (),
) -> bytes:
    """The staff digest as RFC 5322 bytes (``Auto-Submitted: auto-generated``), with its
    attachments (the masked roster)."""
    headers: list[tuple[str, Any]] = [
        ("From", _address(from_name, from_address)),
        ("To", ", ".join(_address("", a) for a in to_addresses)),
        ("Subject", _subject(rendered.subject)),
        ("Date", format_datetime((date or datetime.now(timezone.utc)).astimezone(BEIJING))),
        ("Message-ID", new_message_id(message_id_domain)),
        ("Auto-Submitted", "auto-generated"),
        ("X-Mailbot-Loop", from_address),
        ("X-Auto-Response-Suppress", "All"),
        ("Content-Language", "zh-CN"),
    ]
    return _assemble(headers, rendered, attachments)


def build_notice_message(
    rendered: RenderedReply,
    *,
    to_address: str,
    from_address: str,
    from_name: str,
    to_name: str = "",
    message_id_domain: str = "",
    message_id: str | None = None,
    in_reply_to: str = "",
    references: tuple[str, ...] = (),
    attachments: tuple[tuple[str, bytes], ...] = (),
    date: datetime | None = None,
) -> bytes:
    """A message mailbot starts itself (not a reply: a roster to a host institution, a staff
    decision's notice, a staff answer) as RFC 5322 bytes (``Auto-Submitted: auto-generated``),
    with xlsx attachments; ``message_id`` when the outbox records it first, else a fresh one
    under ``message_id_domain``; with ``in_reply_to`` it is threaded under that message
    (``In-Reply-To``, ``References``)."""
    headers: list[tuple[str, Any]] = [
        ("From", _address(from_name, from_address)),
        ("To", _address(to_name, to_address)),
        ("Subject", _subject(rendered.subject)),
        ("Date", format_datetime((date or datetime.now(timezone.utc)).astimezone(BEIJING))),
        ("Message-ID", message_id or new_message_id(message_id_domain)),
    ]
    original = normalise_msgid(in_reply_to)
    if original:
        headers.append(("In-Reply-To", original))
        headers.append(("References", fold_ids("References", thread_references(references, original))
                        .replace("\n", "\r\n")))
    headers += [
        ("Auto-Submitted", "auto-generated"),
        ("X-Mailbot-Loop", from_address),
        ("X-Auto-Response-Suppress", "All"),
        ("Content-Language", "zh-CN"),
    ]
    return _assemble(headers, rendered, attachments)
