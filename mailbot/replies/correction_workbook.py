"""The sender's own workbook sent back with the cells that need fixing highlighted.

Only xlsx/xlsm (and the xltx/xltm templates) are highlighted: the original is loaded with
openpyxl (``keep_vba=False``, so macros are dropped and never run; external links dropped),
each offending cell is filled yellow with a red border and given a comment carrying the
Chinese message, and the result is saved as ``<原文件名>-需修改.xlsx``.

Other spreadsheet formats (xls/et from WPS, ods, csv) cannot be written back as they came:
``rebuild_workbook`` makes an xlsx copy of the sheet's values (as the form reader saw them, at
the same cell addresses) and highlights that instead; the sender's formatting is lost but every
value and the cells to fix are where they expect them.  Word tables get no workbook.

The returned workbook carries no active content (:func:`make_inert`): every formula cell holds
its cached value (the file is loaded ``data_only``), a text starting with ``= + - @``, tab or CR
is stored as text with Excel's quote prefix so no spreadsheet evaluates it, every text is
defanged (no URL from the form becomes a link), and hyperlinks, defined names, data
validations, conditional formats, tables, pivot tables, charts, images and document
properties are dropped.

``highlight_workbook`` never raises: on any failure it returns ``None`` and the reply still
lists every finding.
"""

from __future__ import annotations

import io
import re
import warnings
from collections import OrderedDict
from pathlib import PurePosixPath

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import MergedCell
from openpyxl.comments import Comment
from openpyxl.formatting.formatting import ConditionalFormattingList
from openpyxl.packaging.core import DocumentProperties
from openpyxl.packaging.custom import CustomPropertyList
from openpyxl.styles import Border, PatternFill, Side
from openpyxl.worksheet.datavalidation import DataValidationList
from openpyxl.worksheet.formula import ArrayFormula, DataTableFormula
from openpyxl.worksheet.header_footer import HeaderFooter
from openpyxl.utils.cell import (
    column_index_from_string,
    coordinate_from_string,
    range_boundaries,
)
from openpyxl.utils.exceptions import CellCoordinatesException

from mailbot.limits import DEFAULT_LIMITS, Limits
from mailbot.replies.render import defang

HIGHLIGHTABLE = {".xlsx", ".xlsm", ".xltx", ".xltm"}
SUFFIX = "-需修改.xlsx"
MAX_ROW, MAX_COLUMN = 1_048_576, 16_384
COMMENT_AUTHOR = "报名系统"
FILL = PatternFill(fill_type="solid", start_color="FFFFFF00", end_color="FFFFFF00")
_RED = Side(style="medium", color="FFFF0000")
BORDER = Border(left=_RED, right=_RED, top=_RED, bottom=_RED)
_UNSAFE_NAME_RE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
ACTIVE_START = ("=", "+", "-", "@", "\t", "\r")
"""A text starting with one of these is a formula (or DDE) to a spreadsheet typed in by hand."""


def corrected_name(filename: str) -> str:
    """``汇总表.xls`` -> ``汇总表-需修改.xlsx`` (path parts and unsafe characters dropped)."""
    base = PurePosixPath(filename.replace("\\", "/")).name
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = _UNSAFE_NAME_RE.sub("_", stem).strip(" ._") or "报名表"
    return stem[:80] + SUFFIX


def _group(findings: list[tuple[str, str]]) -> OrderedDict[str, list[str]]:
    """Messages per normalised coordinate (``g5`` -> ``G5``), invalid coordinates skipped."""
    cells: OrderedDict[str, list[str]] = OrderedDict()
    for coordinate, message in findings:
        try:
            column, row = coordinate_from_string((coordinate or "").replace("$", "").strip().upper())
            if not (1 <= row <= MAX_ROW and 1 <= column_index_from_string(column) <= MAX_COLUMN):
                continue
        except (CellCoordinatesException, ValueError, TypeError, AttributeError):
            continue
        key = f"{column}{row}"
        if message not in cells.setdefault(key, []):
            cells[key].append(message)
    return cells


def _anchor(ws, coordinate: str):  # type: ignore[no-untyped-def]
    """The cell to mark: a merged cell is marked on the top-left cell of its range."""
    cell = ws[coordinate]
    if isinstance(cell, MergedCell):
        for rng in ws.merged_cells.ranges:
            if coordinate in rng:
                min_col, min_row, _, _ = range_boundaries(rng.coord)
                return ws.cell(row=min_row, column=min_col)
    return cell


def _mark(ws, cells: OrderedDict[str, list[str]]) -> None:  # type: ignore[no-untyped-def]
    """Fill, border and comment each offending cell."""
    for coordinate, messages in cells.items():
        cell = _anchor(ws, coordinate)
        cell.fill = FILL
        cell.border = BORDER
        text = "\n".join(messages)
        if cell.comment is not None and cell.comment.text:
            text = f"{cell.comment.text}\n{text}"
        comment = Comment(text, COMMENT_AUTHOR)
        comment.width = 320
        comment.height = 40 + 20 * text.count("\n") + 20 * (len(text) // 20)
        cell.comment = comment


def _inert_text(cell, text: str) -> None:  # type: ignore[no-untyped-def]
    """Store ``text`` (defanged) in ``cell`` as text, quote-prefixed when it looks active."""
    safe = defang(text)
    if safe != cell.value:
        cell.value = safe
    if safe.startswith(ACTIVE_START):
        cell.data_type = "s"  # openpyxl guessed "f" from the leading "="
        cell.quotePrefix = True


def make_inert(wb: Workbook) -> None:
    """Leave only values in ``wb``: no formula, no link, no text a spreadsheet would run."""
    wb.defined_names.clear()
    wb.properties = DocumentProperties(creator=COMMENT_AUTHOR)
    wb.custom_doc_props = CustomPropertyList()
    for ws in wb.worksheets:
        if not hasattr(ws, "merged_cells"):  # a chartsheet
            continue
        safe_title = defang(ws.title)
        if safe_title != ws.title:
            ws.title = ws.title.replace(".", "_")[:31]
        ws.defined_names.clear()
        ws.data_validations = DataValidationList()
        ws.conditional_formatting = ConditionalFormattingList()
        ws.HeaderFooter = HeaderFooter()
        ws._hyperlinks = []  # noqa: SLF001
        ws._charts = []  # noqa: SLF001
        ws._images = []  # noqa: SLF001
        ws._pivots = []  # noqa: SLF001 - a pivot cache keeps the source texts and formulas
        ws._tables.clear()  # noqa: SLF001 - a table may carry calculated-column formulas
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell, MergedCell):
                    continue
                cell.hyperlink = None
                if cell.data_type == "f" or isinstance(cell.value, (ArrayFormula, DataTableFormula)):
                    cell.value = None  # a formula that came without its value
                elif isinstance(cell.value, str):
                    _inert_text(cell, cell.value)
                if cell.comment is not None:
                    cell.comment = Comment(defang(cell.comment.text or ""), COMMENT_AUTHOR)


def rebuild_workbook(
    rows: list[list[tuple[str, str]]],
    filename: str,
    findings: list[tuple[str, str]],
    *,
    sheet: str | None,
) -> tuple[str, bytes] | None:
    """An xlsx copy of a sheet read from another format, offending cells highlighted.

    ``rows`` are the sheet's cells as ``(coordinate, text)``; texts are written as text, so an
    identity number stays exactly as read.  Never raises: ``None`` on any failure.
    """
    cells = _group(findings)
    if not cells:
        return None
    try:
        wb = Workbook()
        ws = wb.active
        ws.title = (sheet or "Sheet1")[:31]
        for row in rows:
            for coordinate, text in row:
                if text:
                    cell = ws[coordinate]
                    cell.value = text
                    cell.data_type = "s"  # text stays text: "=..." is never a formula
                    cell.number_format = "@"
                    _inert_text(cell, text)
        make_inert(wb)
        _mark(ws, cells)
        out = io.BytesIO()
        wb.save(out)
    except Exception:  # noqa: BLE001 - a weird sheet must never stop the reply
        return None
    return corrected_name(filename), out.getvalue()


def highlight_workbook(
    original: bytes,
    filename: str,
    findings: list[tuple[str, str]],
    *,
    sheet: str | None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[str, bytes] | None:
    """The sender's workbook with each ``(coordinate, message)`` cell highlighted and commented.

    ``sheet`` names the Annex 3 sheet (the active sheet when ``None`` or absent).  Returns
    ``(filename, xlsx bytes)``, or ``None`` for a format that cannot be highlighted, when no
    finding names a valid cell, or when anything at all goes wrong.
    """
    if PurePosixPath(filename.replace("\\", "/")).suffix.lower() not in HIGHLIGHTABLE:
        return None
    if not original.startswith(b"PK") or len(original) > limits.max_attachment_bytes:
        return None
    cells = _group(findings)
    if not cells:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # data_only: each formula cell comes in as the value it last showed, never the formula
            wb = load_workbook(
                io.BytesIO(original), keep_vba=False, keep_links=False, data_only=True
            )
            ws = wb[sheet] if sheet and sheet in wb.sheetnames else wb.active
            if ws is None or not hasattr(ws, "merged_cells"):  # a chartsheet
                return None
            make_inert(wb)
            _mark(ws, cells)
            try:
                wb.active = wb.worksheets.index(ws)
            except ValueError:  # a hidden sheet cannot be the active one
                pass
            wb.template = False
            out = io.BytesIO()
            wb.save(out)
    except Exception:  # noqa: BLE001 - a weird workbook must never stop the reply
        return None
    return corrected_name(filename), out.getvalue()


BLANK_FORM_NAME = "附件3：高校参训教师信息汇总表.xlsx"


def blank_annex3(title: str, labels: list[str], programs: list[str], *, rows: int = 20) -> tuple[str, bytes]:
    """A blank Annex 3 form made from the rules: the title, the header block (填报单位（盖章）,
    联系人, 联系电话), the columns as printed (``mailbot.annex3``), ``rows`` numbered empty rows
    (identity numbers as text) and a list of the programs to pick from.  Returns (filename, xlsx)."""
    book = Workbook()
    sheet = book.active
    sheet.title = "附件3"
    width = len(labels)
    sheet.append([title])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    sheet.append(["填报单位（盖章）", None, None, "联系人", None, "联系电话", None])
    sheet.append(labels)
    for n in range(1, rows + 1):
        sheet.append([n])
    for index, label in enumerate(labels, start=1):
        letter = sheet.cell(row=3, column=index).column_letter
        sheet.column_dimensions[letter].width = 30 if label in ("所报证书培训班名称", "身份证号", "电子邮箱") else 12
        if label in ("身份证号", "手机"):
            for r in range(4, rows + 4):
                sheet.cell(row=r, column=index).number_format = "@"
    listing = book.create_sheet("培训项目")
    listing.append(["所报证书培训班名称（请照此填写）"])
    for name in programs:
        listing.append([name])
    listing.column_dimensions["A"].width = 50
    out = io.BytesIO()
    book.save(out)
    return BLANK_FORM_NAME, out.getvalue()
