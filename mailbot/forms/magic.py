"""What a file is, judged by its first bytes (never by its name or declared type)."""

from __future__ import annotations

from collections.abc import Collection

OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_IMAGES = (
    (b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"), (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"),
)


def image_mime(data: bytes) -> str | None:
    """The image type the first bytes announce (JPEG, PNG, GIF, BMP, TIFF, WebP), else None."""
    for signature, mime in _IMAGES:
        if data.startswith(signature):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def magic_kind(data: bytes) -> str | None:
    """``zip``, ``ole``, ``biff`` (bare BIFF2-5 stream), ``pdf``, ``image``, ``rar``, ``7z``,
    ``gzip``, ``tnef``, or None when the first bytes are no known signature."""
    head = data[:16]
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    if head.startswith(OLE2):
        return "ole"
    if len(data) >= 8 and data[0] == 0x09 and data[1] in (0x00, 0x02, 0x04, 0x08) and data[3] == 0 \
            and 4 <= data[2] <= 20:
        return "biff"  # BOF record of a bare BIFF2/3/4/5 stream (no OLE2 wrapper)
    if head.startswith(b"%PDF-") or b"%PDF-" in data[:1024]:
        return "pdf"
    if image_mime(head) is not None:
        return "image"
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x78\x9f\x3e\x22"):
        return "tnef"
    return None


_ODF = b"application/vnd.oasis.opendocument."


def zip_kind(names: Collection[str], mimetype: bytes) -> str:
    """What a zip container is, by its member names (``/`` separators) and the first bytes of
    its ``mimetype`` member: ``xlsx``, ``xlsm`` (an xlsx with macros), ``xlsb``, ``docx``,
    ``ods``, ``odt``, or ``zip`` for anything else.  The MIME walk and the loader both read it."""
    if "xl/workbook.xml" in names:
        return "xlsm" if "xl/vbaProject.bin" in names else "xlsx"
    if "xl/workbook.bin" in names:
        return "xlsb"
    if "word/document.xml" in names:
        return "docx"
    if mimetype.startswith(_ODF + b"spreadsheet"):
        return "ods"
    if mimetype.startswith(_ODF + b"text"):
        return "odt"
    if "content.xml" in names and "META-INF/manifest.xml" in names:
        return "ods"
    return "zip"
