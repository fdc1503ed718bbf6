"""Header values of a message or a part, decoded as Chinese clients write them.

RFC 2047 encoded-words split mid character are joined before decoding, GB2312 labels on GBK
text are decoded as GB18030, raw 8-bit headers as UTF-8 then GB18030 (``mailbot.charsets``),
RFC 2231 parameters and encoded-words inside quoted filenames are read.  Never raises.
"""

from __future__ import annotations

import binascii
import quopri
import re
from collections.abc import Iterable
from email.message import Message

from mailbot.charsets import decode_bytes

MAX_HEADER_CHARS = 16 * 1024
"""Longest header value decoded; longer values are truncated (and recorded as a defect)."""


def fix_8bit(value: str) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes: decode them as UTF-8, else GB18030."""
    if value.isascii() or not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value  # (an ASCII value has no surrogate: one C pass instead of one per character)
    raw = value.encode("utf-8", "surrogateescape")
    return decode_bytes(raw)


# --------------------------------------------------------------------------- RFC 2047

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def _ew_bytes(encoding: str, text: str) -> bytes:
    if encoding in "bB":
        cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text)
        cleaned += "=" * (-len(cleaned) % 4)
        try:
            return binascii.a2b_base64(cleaned)
        except (binascii.Error, ValueError):
            return b""
    return quopri.decodestring(text.replace("_", " ").encode("ascii", "replace"), header=True)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words anywhere in ``value`` (also inside quotes, also without
    surrounding spaces).  Adjacent words in the same charset are joined before decoding, since
    clients split multibyte characters across words."""
    value = fix_8bit(value)
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[tuple[str | None, bytes]] = []  # (charset, bytes) of adjacent words

    def flush() -> None:
        if not pending:
            return
        groups: list[tuple[str | None, bytearray]] = []
        for cs, b in pending:
            if groups and groups[-1][0] == cs:
                groups[-1][1].extend(b)
            else:
                groups.append((cs, bytearray(b)))
        for cs, b in groups:
            out.append(decode_bytes(bytes(b), cs))
        pending.clear()

    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        if between and not (pending and between.strip() == ""):
            flush()
            out.append(between)
        charset = m.group(1).split("*", 1)[0].lower()
        pending.append((charset, _ew_bytes(m.group(2), m.group(3))))
        pos = m.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def unfold(value: str) -> str:
    """One line: folding line breaks become spaces, ends trimmed."""
    return re.sub(r"\r?\n[ \t]*", " ", value).strip()


def clean_header(value: str, limit: int = MAX_HEADER_CHARS) -> str:
    """Control characters dropped, at most ``limit`` characters kept."""
    value = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", value)
    return value[:limit]




def normalise_msgid(value: str) -> str:
    """``<Abc@Host>`` -> ``Abc@Host`` (whitespace and comments dropped); "" when absent."""
    if not value:
        return ""
    m = re.search(r"<([^<>]*)>", value)
    ident = m.group(1) if m else value
    ident = re.sub(r"\s+", "", ident)
    return ident[:998]


def msgid_list(value: str) -> tuple[str, ...]:
    """The ids of a References-like header (at most 100), normalised as by :func:`normalise_msgid`."""
    ids = re.findall(r"<([^<>]*)>", value)
    if not ids and value.strip():
        ids = value.split()
    return tuple(i for i in (re.sub(r"\s+", "", x)[:998] for x in ids[:100]) if i)


def raw_header_values(msg: Message, name: str) -> list[str]:
    """Every value of header ``name`` as it stands in the message, undecoded."""
    lname = name.lower()
    try:
        items = msg.raw_items()
    except Exception:  # noqa: BLE001 - malformed header list
        return []
    out = []
    for key, value in items:
        if isinstance(key, str) and key.lower() == lname:
            out.append(value if isinstance(value, str) else str(value))
    return out


def raw_header_index(msg: Message) -> dict[str, tuple[str, ...]]:
    """Every header of ``msg`` as :func:`raw_header_values` gives it, by lower-case name: one
    pass over the headers for a reader that asks for many names."""
    try:
        items = msg.raw_items()
    except Exception:  # noqa: BLE001 - malformed header list
        return {}
    index: dict[str, list[str]] = {}
    for key, value in items:
        if isinstance(key, str):
            index.setdefault(key.lower(), []).append(value if isinstance(value, str) else str(value))
    return {name: tuple(values) for name, values in index.items()}


def header_values(msg: Message, name: str, *, decode: bool = True) -> tuple[str, ...]:
    """Every value of header ``name``: 8-bit repaired, unfolded, bounded, RFC 2047 decoded
    unless ``decode`` is false."""
    return decoded_values(raw_header_values(msg, name), decode=decode)


def decoded_values(raws: Iterable[str], *, decode: bool = True) -> tuple[str, ...]:
    """Raw header values as :func:`header_values` gives them."""
    values = []
    for raw in raws:
        value = unfold(fix_8bit(raw[: MAX_HEADER_CHARS * 4]))
        values.append(clean_header(decode_words(value) if decode else value))
    return tuple(values)


def display_name(name: str) -> str:
    """Strip directories, control characters and excess length: for display only."""
    name = fix_8bit(name)
    name = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip().strip('"').strip()
    return name[:255]


def _param(part: Message, param: str, header: str) -> str:
    raws = raw_header_values(part, header)
    if not raws:
        return ""
    holder = Message()  # re-parse the 8-bit-repaired value so compat32 keeps it as str
    try:
        holder[header] = fix_8bit(raws[0][:MAX_HEADER_CHARS])
        value = holder.get_param(param, header=header)
    except Exception:  # noqa: BLE001
        return ""
    if value is None:
        return ""
    if isinstance(value, tuple):  # RFC 2231: (charset, language, %-decoded latin-1 text)
        charset, _lang, text = value
        try:
            data = str(text).encode("latin-1")
        except UnicodeEncodeError:
            return str(text)
        return decode_bytes(data, charset or None)
    return decode_words(unfold(str(value)))


def attachment_filename(part: Message) -> str:
    """The decoded display filename of a MIME part ("" when none): ``filename`` (RFC 2231 or
    RFC 2047 inside the quotes) of Content-Disposition, else ``name`` of Content-Type."""
    name = _param(part, "filename", "content-disposition") or _param(part, "name", "content-type")
    return display_name(name) if name else ""
