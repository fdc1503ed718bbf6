"""Inspect an OLE2 compound file (``D0CF11E0``) before any reader touches it.

Tells an Excel 97-2003 workbook from an encrypted OOXML package, a Word ``.doc`` and anything
else; finds ``FILEPASS`` (password-protected ``.xls``); validates the sector chains (a looping
chain hangs some readers) and bounds each sheet's cell area (a reader allocating the sheet's
bounding box densely would exhaust memory on two far-apart cells).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from xlrd import compdoc

from mailbot.errors import UnreadableForm
from mailbot.limits import Limits

ENCRYPTED_MESSAGE = "附件已加密，请去掉密码后重新发送"
DAMAGED_MESSAGE = "附件文件已损坏或不完整，无法打开，请检查后重新发送（建议用 Excel 或 WPS 重新保存为 .xlsx）"
SHEET_TOO_LARGE_MESSAGE = "表格范围过大（有内容的单元格分布太广），请删除多余的行和列后重新保存再发送"

# BIFF record types carrying (row, col) in their first four bytes.
_CELL_RECORDS = frozenset({0x0006, 0x0406, 0x00FD, 0x0203, 0x027E, 0x0201, 0x0204, 0x0205,
                           0x00D6})
_MUL_RECORDS = frozenset({0x00BD, 0x00BE})  # MULRK, MULBLANK: row, first col ... last col
_BOF = frozenset({0x0809, 0x0409, 0x0209, 0x0009})
_EOF, _FILEPASS = 0x000A, 0x002F


@dataclass(frozen=True)
class OleContents:
    """What an OLE2 file holds: ``kind`` is ``xls``, ``encrypted_ooxml``, ``doc`` or ``other``."""

    kind: str
    streams: tuple[str, ...]


def _encrypted(detail: str) -> UnreadableForm:
    return UnreadableForm("encrypted", ENCRYPTED_MESSAGE, detail)


def inspect_ole(data: bytes, limits: Limits, *, max_sheet_cells: int) -> OleContents:
    """Validate the compound file and classify it; raise ``UnreadableForm`` when it is corrupt
    (``corrupt``), password-protected (``encrypted``) or a sheet is too sparse-and-wide
    (``sheet_too_large``)."""
    try:
        doc = compdoc.CompDoc(data, logfile=io.StringIO())
        streams = tuple(d.name for d in doc.dirlist if d.name)
    except (compdoc.CompDocError, struct.error, IndexError, ValueError, MemoryError) as exc:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"corrupt OLE2 compound file: {exc}") from exc
    # Only the root's own streams say what the file is: an xls with an embedded Word object
    # holds a WordDocument stream too, one storage down.
    names = {doc.dirlist[i].name for i in doc.dirlist[0].children if 0 <= i < len(doc.dirlist)}
    if {"EncryptionInfo", "EncryptedPackage"} & names:
        raise _encrypted("OLE2 file holding an encrypted OOXML package (EncryptionInfo/EncryptedPackage)")
    if "WordDocument" in names:
        return OleContents("doc", streams)
    book = "Workbook" if "Workbook" in names else "Book" if "Book" in names else None
    if book is None:
        return OleContents("other", streams)
    try:
        stream = doc.get_named_stream(book)
    except (compdoc.CompDocError, struct.error, IndexError, ValueError) as exc:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"unreadable {book} stream: {exc}") from exc
    if stream is None:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"{book} stream missing")
    scan_biff(stream, max_sheet_cells=max_sheet_cells)
    return OleContents("xls", streams)


def scan_biff(stream: bytes, *, max_sheet_cells: int) -> None:
    """Walk BIFF records: refuse ``FILEPASS`` and sheets whose cell bounding box exceeds
    ``max_sheet_cells``."""
    pos, end = 0, len(stream)
    box: list[int] | None = None  # min_row, max_row, min_col, max_col
    unpack = struct.unpack_from
    while pos + 4 <= end:
        rtype, length = unpack("<HH", stream, pos)
        body = pos + 4
        pos = body + length
        if rtype == _FILEPASS:
            raise _encrypted("xls workbook has a FILEPASS record (password-protected)")
        if rtype in _BOF:
            box = None
            continue
        if rtype == _EOF:
            box = None
            continue
        if length < 4 or pos > end:
            continue
        if rtype in _CELL_RECORDS:
            row, c1 = unpack("<HH", stream, body)
            c2 = c1
        elif rtype in _MUL_RECORDS and length >= 6:
            row, c1 = unpack("<HH", stream, body)
            (c2,) = unpack("<H", stream, body + length - 2)
        else:
            continue
        if box is None:
            box = [row, row, min(c1, c2), max(c1, c2)]
        else:
            box = [min(box[0], row), max(box[1], row), min(box[2], c1, c2), max(box[3], c1, c2)]
        if (box[1] - box[0] + 1) * (box[3] - box[2] + 1) > max_sheet_cells:
            raise UnreadableForm(
                "sheet_too_large", SHEET_TOO_LARGE_MESSAGE,
                f"xls sheet cell area exceeds {max_sheet_cells} cells",
            )
