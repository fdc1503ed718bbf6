"""Text of unknown or mislabelled encoding, as Chinese senders' software writes it.

One fallback order for every caller (mail headers and bodies, zip member names, CSV forms):
the declared charset when it decodes (labels mapped to what senders really mean: GB2312 text is
decoded as GB18030, Latin-1 as cp1252), else UTF-8, else GB18030.
"""

from __future__ import annotations

import codecs

_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "ms936": "gb18030",
    "windows-936": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "csgb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "chinese": "gb18030",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "ascii": "utf-8",  # senders label UTF-8 text as ASCII; UTF-8 is a superset
    "us-ascii": "utf-8",
    "iso-8859-1": "cp1252",  # what mail labelled Latin-1 really is
    "latin1": "cp1252",
    "ks_c_5601-1987": "cp949",
    "unicodebig": "utf-16-be",
    "unicodelittle": "utf-16-le",
}


def _codec(label: str | None) -> str | None:
    """A Python codec name for a MIME charset label, or None when unknown."""
    if not label:
        return None
    name = label.strip().strip('"').lower()
    name = name.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*zh
    name = _CHARSET_ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return None


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode bytes with the declared charset, else UTF-8, else GB18030; never raises.

    Undeclared bytes that are UTF-8 but for a character cut at the end (truncated headers)
    stay UTF-8: GB18030 would accept them too, as mojibake."""
    codec = _codec(charset)
    if codec is not None:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass
    text = decode_guess(data, cut_ok=codec is None)
    return text if text is not None else data.decode(codec or "utf-8", errors="replace")


def decode_guess(data: bytes, *, cut_ok: bool = False) -> str | None:
    """UTF-8 when the bytes are UTF-8, else GB18030 (a superset of GBK and GB2312), else None.

    With ``cut_ok``, bytes whose only fault is a character cut at the very end (a truncated
    header, a sample of a file) keep the encoding they began in, the cut character replaced."""
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            if cut_ok and exc.end == len(data) and exc.start >= len(data) - 3:
                return data.decode(encoding, errors="replace")
    return None
