"""Old binary Office files: OLE2 compound files (``D0CF11E0``) and BIFF workbooks (xlrd).

Tells an Excel 97-2003 workbook from an encrypted OOXML package, a Word ``.doc``, an Outlook
``.msg`` and anything else by the root directory's stream names (``ole_kind``, read by the MIME
walk and the loader alike); finds ``FILEPASS`` (password-protected ``.xls``); validates the
sector chains (a looping chain hangs some readers) and bounds the cell area of the sheets
together (a reader allocating a sheet's bounding box densely would exhaust memory on two far-apart
cells, or on a ``DIMENSIONS`` record claiming 1048576 x 16384): cells, ``ROW`` records and
``DIMENSIONS`` all count.
``read_biff`` reads a bare BIFF2-5 workbook's cells as Python values.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import xlrd
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
_DIMENSIONS, _ROW = 0x0200, 0x0208


@dataclass(frozen=True)
class OleContents:
    """What an OLE2 file holds: ``kind`` is ``xls``, ``doc``, ``msg`` or ``other``."""

    kind: str
    streams: tuple[str, ...]
    cells: int = 0  # the sheets' bounding boxes, summed


def _encrypted(detail: str) -> UnreadableForm:
    return UnreadableForm("encrypted", ENCRYPTED_MESSAGE, detail)


def _open(data: bytes) -> compdoc.CompDoc:
    try:
        return compdoc.CompDoc(data, logfile=io.StringIO())
    except (compdoc.CompDocError, struct.error, IndexError, ValueError, MemoryError) as exc:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"corrupt OLE2 compound file: {exc}") from exc


def _root_names(doc: compdoc.CompDoc) -> set[str]:
    if not doc.dirlist:
        return set()
    return {doc.dirlist[i].name for i in doc.dirlist[0].children if 0 <= i < len(doc.dirlist)}


def _kind(doc: compdoc.CompDoc) -> str:
    """``xls``, ``doc``, ``msg``, ``encrypted`` (an OOXML package with a password) or ``other``.

    Only the root's own streams say what the file is: an xls with an embedded Word object holds
    a WordDocument stream too, one storage down; an Outlook message keeps its attachments in
    sub-storages."""
    names = _root_names(doc)
    if {"EncryptionInfo", "EncryptedPackage"} & names:
        return "encrypted"
    if "__properties_version1.0" in names or any(n.startswith("__substg1.0_") for n in names):
        return "msg"
    if "WordDocument" in names:
        return "doc"
    if "Workbook" in names or "Book" in names:
        return "xls"
    return "other"


def ole_kind(data: bytes) -> str:
    """What an OLE2 file is, never raising: :func:`_kind`'s answer, or ``corrupt`` when the
    compound file's directory cannot be read."""
    try:
        return _kind(_open(data))
    except UnreadableForm:
        return "corrupt"


def inspect_ole(data: bytes, limits: Limits, *, max_sheet_cells: int) -> OleContents:
    """Validate the compound file and classify it; raise ``UnreadableForm`` when it is corrupt
    (``corrupt``), password-protected (``encrypted``) or a sheet is too sparse-and-wide
    (``sheet_too_large``)."""
    doc = _open(data)
    streams = tuple(d.name for d in doc.dirlist if d.name)
    kind = _kind(doc)
    if kind == "encrypted":
        raise _encrypted("OLE2 file holding an encrypted OOXML package (EncryptionInfo/EncryptedPackage)")
    if kind != "xls":
        return OleContents(kind, streams)
    book = "Workbook" if "Workbook" in _root_names(doc) else "Book"
    _check_short_chain(doc, book)
    try:
        stream = doc.get_named_stream(book)
    except (compdoc.CompDocError, struct.error, IndexError, ValueError) as exc:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"unreadable {book} stream: {exc}") from exc
    if stream is None:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"{book} stream missing")
    cells = scan_biff(stream, max_sheet_cells=max_sheet_cells)
    return OleContents("xls", streams, cells)


def _check_short_chain(doc: compdoc.CompDoc, name: str) -> None:
    """Refuse a small stream whose short-sector chain loops or leaves the table.

    xlrd checks the chains of ordinary streams for loops but follows a stream under 4 KB through
    the short-sector table without any check: a looping chain there never ends, and the list it
    builds grows until memory runs out."""
    entry = next((d for d in doc.dirlist if d.name == name), None)
    if entry is None or entry.tot_size >= doc.min_size_std_stream:
        return
    table, sid, seen = doc.SSAT, entry.first_SID, set()
    while sid >= 0:
        if sid in seen or sid >= len(table):
            raise UnreadableForm("corrupt", DAMAGED_MESSAGE,
                                 f"{name} stream: short-sector chain loops or leaves the table at {sid}")
        seen.add(sid)
        sid = table[sid]


@dataclass(frozen=True)
class BiffSheet:
    """One sheet of a BIFF workbook: ``rows`` of Python values (str, float, bool, datetime, an
    error's text), at most ``max_columns`` wide; empty when ``nrows`` is beyond ``max_rows``."""

    name: str
    visible: bool
    nrows: int
    rows: tuple[tuple[object, ...], ...]


def read_biff(data: bytes, *, max_columns: int, max_rows: int) -> list[BiffSheet]:
    """Every sheet of a bare BIFF2-5 workbook; ``UnreadableForm("corrupt")`` when xlrd cannot
    read it.  A sheet longer than ``max_rows`` comes back without rows, for the caller to refuse."""
    try:
        book = xlrd.open_workbook(file_contents=data, logfile=io.StringIO(), on_demand=False)
        sheets = []
        for index in range(book.nsheets):
            sh = book.sheet_by_index(index)
            rows = () if sh.nrows > max_rows else tuple(
                tuple(_biff_value(sh.cell(r, c), book.datemode) for c in range(min(sh.ncols, max_columns)))
                for r in range(sh.nrows)
            )
            sheets.append(BiffSheet(sh.name, sh.visibility == 0, sh.nrows, rows))
    except (xlrd.XLRDError, compdoc.CompDocError, struct.error, IndexError, KeyError, ValueError,
            TypeError, OverflowError, AssertionError, UnicodeDecodeError, LookupError) as exc:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"BIFF workbook could not be read: {exc!r}") from exc
    return sheets


def _biff_value(cell: xlrd.sheet.Cell, datemode: int) -> object:
    """A cell as Python: dates as datetimes, booleans as bools, errors as their text."""
    if cell.ctype == xlrd.XL_CELL_DATE:
        return xlrd.xldate.xldate_as_datetime(cell.value, datemode)
    if cell.ctype == xlrd.XL_CELL_BOOLEAN:
        return bool(cell.value)
    if cell.ctype == xlrd.XL_CELL_ERROR:
        return xlrd.error_text_from_code.get(cell.value, "#ERR")
    return cell.value


def _area(box: list[int] | None) -> int:
    return 0 if box is None else (box[1] - box[0] + 1) * (box[3] - box[2] + 1)


# What scan_biff does with a record, by type (absent: nothing).
_RECORD_ROLE: dict[int, str] = {
    **{t: "cell" for t in _CELL_RECORDS}, **{t: "mul" for t in _MUL_RECORDS}, **{t: "sheet" for t in _BOF},
    _EOF: "sheet", _FILEPASS: "filepass", _ROW: "row", _DIMENSIONS: "dimensions"}


def scan_biff(stream: bytes, *, max_sheet_cells: int) -> int:
    """Walk BIFF records: refuse ``FILEPASS``, and sheets whose cell bounding boxes (cells,
    ``ROW`` extents and ``DIMENSIONS`` claims) sum to more than ``max_sheet_cells``.  Returns
    the sum.  A record's role is one dictionary lookup (most records, formats and styles, have
    none)."""
    pos, end = 0, len(stream)
    box: list[int] | None = None  # min_row, max_row, min_col, max_col
    done = 0  # areas of the sheets already closed
    unpack = struct.unpack_from
    roles = _RECORD_ROLE
    while pos + 4 <= end:
        rtype, length = unpack("<HH", stream, pos)
        body = pos + 4
        pos = body + length
        role = roles.get(rtype)
        if role is None:
            continue
        if role == "filepass":
            raise _encrypted("xls workbook has a FILEPASS record (password-protected)")
        if role == "sheet":
            done += _area(box)
            box = None
            continue
        if length < 4 or pos > end:
            continue
        if role == "cell":
            row, c1 = unpack("<HH", stream, body)
            r2, c2 = row, c1
        elif role == "mul" and length >= 6:
            row, c1 = unpack("<HH", stream, body)
            (c2,) = unpack("<H", stream, body + length - 2)
            r2 = row
        elif role == "row" and length >= 6:
            row, c1, c2 = unpack("<HHH", stream, body)  # colMic, colMac (one past the last)
            if c2 <= c1:
                continue
            r2, c2 = row, c2 - 1
        elif role == "dimensions" and length >= 10:
            if length >= 14:  # BIFF8: 32-bit rows
                row, r2, c1, c2 = unpack("<IIHH", stream, body)
            else:  # BIFF5/7
                row, r2, c1, c2 = unpack("<HHHH", stream, body)
            if r2 <= row or c2 <= c1:
                continue  # an empty sheet
            r2, c2 = r2 - 1, c2 - 1
        else:
            continue
        top, bottom = (row, r2) if row <= r2 else (r2, row)
        lo, hi = (c1, c2) if c1 <= c2 else (c2, c1)
        if box is None:
            box = [top, bottom, lo, hi]
        elif top >= box[0] and bottom <= box[1] and lo >= box[2] and hi <= box[3]:
            continue  # inside the box: the area, already checked, is unchanged
        else:
            box = [min(box[0], top), max(box[1], bottom), min(box[2], lo), max(box[3], hi)]
        if done + _area(box) > max_sheet_cells:
            raise UnreadableForm(
                "sheet_too_large", SHEET_TOO_LARGE_MESSAGE,
                f"xls sheets' cell area {done + _area(box)} exceeds {max_sheet_cells} cells",
            )
    return done + _area(box)
