"""Checks on the worksheet XML of an xlsx/xlsm before a reader loads it.

* the cell bounding box of each sheet (readers allocate it densely: two far-apart cells would
  exhaust memory), and
* formulas without cached values (written by a library, never opened in Excel/WPS): reading
  them would silently yield empty cells.

Parsing uses defusedxml; the members were already size-checked by ``archive_safety``.
"""

from __future__ import annotations

import io
import re
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from mailbot.errors import UnreadableForm
from mailbot.ole_inspect import SHEET_TOO_LARGE_MESSAGE

FORMULA_MESSAGE = (
    "表格中的公式没有计算结果（文件可能由程序生成、未在 Excel 中打开过），"
    "请用 Excel 或 WPS 打开该文件、保存后重新发送"
)
_REF_RE = re.compile(rb'\sr="([A-Z]{1,3})([0-9]{1,7})"')
_FORMULA_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")


def is_worksheet(name: str) -> bool:
    return name.startswith("xl/worksheets/") and name.endswith(".xml")


def _col_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n


def check_sheet_area(name: str, xml: bytes, *, max_sheet_cells: int) -> None:
    """Raise ``sheet_too_large`` when the cells' bounding box exceeds ``max_sheet_cells``."""
    cols: set[bytes] = set()
    min_row = max_row = 0
    for col, row in _REF_RE.findall(xml):
        cols.add(col)
        r = int(row)
        if not min_row or r < min_row:
            min_row = r
        if r > max_row:
            max_row = r
    if not cols:
        return
    numbers = [_col_number(c) for c in cols]
    area = (max_row - min_row + 1) * (max(numbers) - min(numbers) + 1)
    if area > max_sheet_cells:
        raise UnreadableForm(
            "sheet_too_large", SHEET_TOO_LARGE_MESSAGE,
            f"{name}: cell bounding box of {area} cells exceeds {max_sheet_cells}",
        )


def count_formulas(name: str, xml: bytes) -> tuple[int, int]:
    """Return (formula cells, formula cells without a cached value) in one worksheet."""
    if not _FORMULA_RE.search(xml):
        return 0, 0
    formulas = uncached = 0
    try:
        for _event, elem in DET.iterparse(io.BytesIO(xml), events=("end",), forbid_dtd=True):
            tag = elem.tag.rsplit("}", 1)[-1]
            if tag != "c":
                if tag == "row":
                    elem.clear()
                continue
            f = v = None
            for child in elem:
                ctag = child.tag.rsplit("}", 1)[-1]
                if ctag == "f":
                    f = child
                elif ctag == "v":
                    v = child
            if f is not None:
                formulas += 1
                if (v is None or not (v.text or "")) and elem.get("t") != "str":
                    uncached += 1
            elem.clear()
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise UnreadableForm(
            "corrupt", "附件文件已损坏，无法读取，请用 Excel 或 WPS 重新保存后发送",
            f"{name}: worksheet XML does not parse: {exc}",
        ) from exc
    return formulas, uncached


def check_formula_values(sheets: dict[str, bytes]) -> None:
    """Raise ``formula_without_values`` when formula cells carry no cached values."""
    uncached_total = 0
    for name, xml in sheets.items():
        _formulas, uncached = count_formulas(name, xml)
        uncached_total += uncached
    if uncached_total:
        raise UnreadableForm(
            "formula_without_values", FORMULA_MESSAGE,
            f"{uncached_total} formula cell(s) have no cached value (never calculated by a spreadsheet app)",
        )
