"""One raw message parsed: headers decoded, the ``email`` tree kept for the walk and the gate.

``parse_message`` uses the ``compat32`` policy (faster on attachment-heavy mail, see
``benchmarks/mime_policy.py``), decodes headers through ``mailbot.mail.headers`` and never
raises on malformed mail.  ``parse_head`` gives the daemon's gate the same values without
parsing the body (the walk parses it again in a reader worker anyway): the top header section
alone, unless the mail may carry a delivery report one level down, which only the whole tree
shows exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import policy as email_policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from mailbot.limits import DEFAULT_LIMITS, Limits
from mailbot.mail.headers import (
    clean_header, decode_words, decoded_values, msgid_list, normalise_msgid, raw_header_index,
)

MAX_MULTIPART_DEPTH = 24
"""Depth of multipart containers walked inside one message (forwarded messages and archives
count separately against ``Limits.max_nesting``)."""


@dataclass(frozen=True)
class ParsedMessage:
    """One message, headers decoded.  ``message`` is the ``email`` tree (compat32) for the walk
    and the gate; read headers through :meth:`header` / :meth:`headers`, which decode."""

    message_id: str
    from_addr: str
    from_name: str
    subject: str
    date: str
    date_parsed: datetime | None
    in_reply_to: str
    references: tuple[str, ...]
    return_path: str | None  # None: header absent; "": null sender <>
    content_type: str
    size: int
    defects: tuple[str, ...]
    message: Message = field(compare=False, repr=False)
    body_parsed: bool = field(default=True, compare=False)
    """False for :func:`parse_head`'s result: ``message`` is the top header section alone
    (no parts, empty payload) and ``defects`` are that section's."""
    _index: dict[str, tuple[str, ...]] | None = field(default=None, compare=False, repr=False)
    """The top headers' raw values by lower-case name (``headers.raw_header_index``): the gate
    asks for some 30 names, each a pass over every header without it."""

    def headers(self, name: str) -> tuple[str, ...]:
        """Every value of header ``name``, unfolded and decoded (RFC 2047, raw 8-bit)."""
        index = self._index
        if index is None:
            index = raw_header_index(self.message)
            object.__setattr__(self, "_index", index)
        return decoded_values(index.get(name.lower(), ()))

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` decoded, or None when absent."""
        values = self.headers(name)
        return values[0] if values else None

    @property
    def from_domain(self) -> str:
        return self.from_addr.rpartition("@")[2] if "@" in self.from_addr else ""


def _parse_address(index: dict[str, tuple[str, ...]]) -> tuple[str, str]:
    for name in ("from", "sender", "reply-to"):
        for value in decoded_values(index.get(name, ()), decode=False):
            try:
                pairs = getaddresses([value])
            except Exception:  # noqa: BLE001 - email.utils on hostile input
                pairs = []
            for display, addr in pairs:
                addr = addr.strip().strip("<>").lower()
                if "@" in addr or addr:
                    return addr[:320], clean_header(decode_words(display).strip().strip('"'), 200)
        if index.get(name):
            break  # From present but unparseable: do not fall back to Sender
    return "", ""


def _return_path(index: dict[str, tuple[str, ...]]) -> str | None:
    values = decoded_values(index.get("return-path", ()), decode=False)
    if not values:
        return None
    value = values[0].strip()
    m = re.search(r"<([^<>]*)>", value)
    addr = (m.group(1) if m else value).strip().lower()
    return addr[:320]


def _defect_names(msg: Message) -> list[str]:
    names: list[str] = []
    try:
        for part in iter_parts(msg, 0):
            for d in getattr(part, "defects", []) or []:
                names.append(type(d).__name__)
    except Exception:  # noqa: BLE001
        names.append("WalkFailed")
    return names


def iter_parts(part: Message, depth: int) -> Iterator[Message]:
    """Like ``Message.walk`` but depth-capped and without recursion limits."""
    stack = [(part, depth)]
    while stack:
        current, d = stack.pop()
        yield current
        if d >= MAX_MULTIPART_DEPTH:
            continue
        payload = current.get_payload() if current.is_multipart() else None
        if isinstance(payload, list):
            for child in reversed(payload):
                if isinstance(child, Message):
                    stack.append((child, d + 1))


def part_type(part: Message) -> str:
    """The part's declared content type, lower case (``text/plain`` when absent)."""
    try:
        return (part.get_content_type() or "text/plain").lower()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"


_MBOX_FROM = re.compile(rb"\AFrom [^\r\n]*\r?\n")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"(?m)^[^ \t\r\n]")
_BOUNDARY_PARAM = re.compile(rb"""(?i)boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""")
_CLOSE_LINE = re.compile(rb"--([^\r\n]{1,200}?)--[ \t]*\r?$", re.M)
FLOOD_DEFECTS = ("HeaderFlood", "PartFlood")
"""Defects of a message past the header or MIME-part bounds: parsed for its first fields only."""


def _next_close(raw: bytes, pos: int) -> re.Match[bytes] | None:
    """The first close-delimiter line (``--b--``) at a line start at or after ``pos``: what
    ``(?m)^--…--`` finds there, with ``bytes.find`` going from one newline-and-``--`` to the
    next instead of the regex engine trying every position."""
    if pos == 0 and (m := _CLOSE_LINE.match(raw, 0)) is not None:
        return m
    i = raw.find(b"\n--", max(pos - 1, 0))
    while i != -1:
        if (m := _CLOSE_LINE.match(raw, i + 1)) is not None:
            return m
        i = raw.find(b"\n--", i + 1)
    return None


def _header_bounds(raw: bytes, limits: Limits) -> tuple[str | None, int, int]:
    """The header section's bounds checked on the raw bytes: ``HeaderFlood`` and where to cut
    the header, or None, where the header ends (the blank line's start) and where the blank
    line ends (the whole message when it has none)."""
    end_match = _HEADER_END.search(raw, 0, limits.max_header_bytes + 4)
    header_end = end_match.start() if end_match else len(raw)
    if header_end > limits.max_header_bytes:
        return "HeaderFlood", limits.max_header_bytes, 0
    fields = 0
    for m in _FIELD_START.finditer(raw, 0, header_end):
        fields += 1
        if fields > limits.max_header_count:
            return "HeaderFlood", m.start(), 0
    return None, header_end, end_match.end() if end_match else len(raw)


def _prescan(raw: bytes, limits: Limits) -> tuple[str | None, int]:
    """Bounds checked on the raw bytes before any parse (the parser's time and memory grow with
    header fields and MIME parts): the flood defect, if any, and where the header section ends
    (or where to cut it).  Linear, and cheap next to the parse it guards: the delimiter lines
    are counted with ``bytes.count``, and the multipart depth follows the ``boundary=``
    parameters and the close-delimiter lines in the order they come (a match inside an earlier
    match does not count, as with one regex over both)."""
    flood, header_end, _ = _header_bounds(raw, limits)
    if flood is not None:
        return flood, header_end
    # every "--" at a line start after the header (the header's end is a line break, never "-")
    if raw.count(b"\n--", header_end) > limits.max_mime_parts:
        return "PartFlood", header_end
    open_boundaries: list[bytes] = []
    param, close = _BOUNDARY_PARAM.search(raw), _next_close(raw, 0)
    while param is not None or close is not None:
        if close is None or (param is not None and param.start() < close.start()):
            assert param is not None
            m = param
            open_boundaries.append(m.group(1) or m.group(2))
            if len(open_boundaries) > limits.max_mime_depth:
                return "PartFlood", header_end
        else:
            m = close
            if m.group(1) in open_boundaries:
                del open_boundaries[open_boundaries.index(m.group(1)):]
        end = m.end()
        if param is not None and param.start() < end:
            param = _BOUNDARY_PARAM.search(raw, end)
        if close is not None and close.start() < end:
            close = _next_close(raw, end)
    return None, header_end


def parse_tree(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Message, tuple[str, ...]]:
    """The ``email`` tree of raw message bytes and its defects, nothing decoded (what the MIME
    walk needs); never raises.  Oversized messages (``limits.max_message_bytes``) are parsed for
    headers only and carry the defect ``MessageTooLarge``; a message past the header or
    MIME-part bounds (counted on the raw bytes first, :func:`_prescan`) is parsed for its first
    header fields only and carries ``HeaderFlood`` or ``PartFlood``."""
    return _tree(raw, limits, whole=True)


def _tree(raw: bytes, limits: Limits, *, whole: bool) -> tuple[Message, tuple[str, ...]]:
    """:func:`parse_tree`; not ``whole``: the top header section alone, bounded as there (the
    body's bounds are not counted: its parts are not parsed), with an empty payload."""
    extra: list[str] = []
    size = len(raw)
    body = _MBOX_FROM.sub(b"", raw, count=1)  # mbox "From " line some exports keep
    msg: Message
    flood, cut, head_end = None, 0, 0
    if size <= limits.max_message_bytes:
        if whole:
            flood, cut = _prescan(body, limits)
        else:
            flood, cut, head_end = _header_bounds(body, limits)
    try:
        if flood is not None:  # read the first fields only; the body is not unpacked
            extra.append(flood)
            msg = BytesHeaderParser(policy=email_policy.compat32).parsebytes(body[:cut] + b"\r\n\r\n")
            msg.set_payload("")
        elif size > limits.max_message_bytes:
            extra.append("MessageTooLarge")
            msg = BytesHeaderParser(policy=email_policy.compat32).parsebytes(body[:1024 * 1024])
            msg.set_payload("")
        elif whole:
            msg = BytesParser(policy=email_policy.compat32).parsebytes(body)
        else:  # up to the blank line: the parser reads the same header lines from it
            msg = BytesHeaderParser(policy=email_policy.compat32).parsebytes(body[:head_end])
            msg.set_payload("")
    except RecursionError:
        extra.append("NestingTooDeep")
        msg = BytesHeaderParser(policy=email_policy.compat32).parsebytes(body[: 1024 * 1024])
        msg.set_payload("")
    except Exception as exc:  # noqa: BLE001 - never raise on mail
        extra.append(f"ParseFailed:{type(exc).__name__}")
        msg = Message()
    return msg, tuple(dict.fromkeys(extra + _defect_names(msg)))


def _as_bytes(raw: bytes | bytearray | str) -> bytes:
    if not isinstance(raw, (bytes, bytearray)):
        raw = bytes(str(raw), "utf-8", "surrogateescape")
    return bytes(raw)


def parse_message(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse raw message bytes and decode the headers the gate and the record read; never
    raises.  The tree and its defects are :func:`parse_tree`'s."""
    raw = _as_bytes(raw)
    msg, defects = parse_tree(raw, limits)
    return _decoded(raw, msg, defects, body_parsed=True)


_REPORT_HINTS = (b"/report", b"-report", b"delivery-status", b"disposition-notification")
"""Lower-case pieces of every report type the gate looks for (``multipart/report``,
``message/feedback-report``, ``message/[global-]delivery-status``,
``message/disposition-notification``)."""


def parse_head(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedMessage:
    """What :func:`parse_message` gives the gate and the record, without parsing the body: the
    decoded headers and ``content_type`` come from the top header section alone (the parser
    reads the same header lines from it).  The one thing the gate reads below the top is
    whether a first-level part is a delivery report; a part's content type is a slice of the
    raw bytes compared in lower case, so a mail in which no :data:`_REPORT_HINTS` appears (in
    lower case, anywhere) has none, and any other mail is parsed whole by
    :func:`parse_message`.  Bounds: the header section's, as in :func:`parse_tree` (the size
    bound, ``HeaderFlood``); the body's are checked where it is parsed (the walk, or here when
    it is parsed whole).  ``body_parsed`` says which it was."""
    raw = _as_bytes(raw)
    if len(raw) <= limits.max_message_bytes:
        lowered = raw.lower()
        if any(hint in lowered for hint in _REPORT_HINTS):
            return parse_message(raw, limits)
    msg, defects = _tree(raw, limits, whole=False)
    return _decoded(raw, msg, defects, body_parsed=False)


def _decoded(raw: bytes, msg: Message, defects: tuple[str, ...], *, body_parsed: bool) -> ParsedMessage:
    """The headers the gate and the record read, decoded from the tree's top."""
    index = raw_header_index(msg)

    def values(name: str, decode: bool = False) -> tuple[str, ...]:
        return decoded_values(index.get(name, ()), decode=decode)

    message_id = normalise_msgid((values("message-id") or ("",))[0])
    from_addr, from_name = _parse_address(index)
    subject = (values("subject", True) or ("",))[0]
    date = (values("date") or ("",))[0]
    try:
        date_parsed = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError, IndexError, OverflowError):
        date_parsed = None
    irt_values = values("in-reply-to")
    in_reply_to = normalise_msgid(irt_values[0]) if irt_values else ""
    refs = values("references")
    references = msgid_list(" ".join(refs)) if refs else ()
    return ParsedMessage(
        message_id=message_id,
        from_addr=from_addr,
        from_name=from_name,
        subject=subject,
        date=date,
        date_parsed=date_parsed,
        in_reply_to=in_reply_to,
        references=references,
        return_path=_return_path(index),
        content_type=part_type(msg),
        size=len(raw),
        defects=defects,
        message=msg,
        body_parsed=body_parsed,
        _index=index,
    )
