"""Checks on the sheet XML of an xlsx/xlsm (and the content.xml of an ods) before a reader loads it.

* the cell bounding box of each sheet (readers allocate it densely: two far-apart cells would
  exhaust memory), summed over the sheets against the message's cell budget; the sheets are
  every part the workbook's relationships name (:func:`sheet_parts`), wherever it sits in the
  package, not only ``xl/worksheets/*.xml``; and
* formulas without cached values (written by a library, never opened in Excel/WPS): reading
  them would silently yield empty cells, so their coordinates go to the reader, which refuses the
  form only when one of them is a cell it reads (``uncached_formula_cells``).

The bounding box is found by scanning start tags (fast on big sheets), positioning cells the way
a reader does: by their ``r`` reference, else one column right of the previous cell (xlsx), and
by the ``number-rows-repeated`` / ``number-columns-repeated`` counts (ods).  Formulas are read
with defusedxml; the members were already size-checked by ``archive_safety``.
"""

from __future__ import annotations

import html
import io
import posixpath
import re
from operator import itemgetter
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from mailbot.errors import UnreadableForm
from mailbot.forms.ole_inspect import SHEET_TOO_LARGE_MESSAGE

FORMULA_MESSAGE = (
    "表格中的公式没有计算结果（文件可能由程序生成、未在 Excel 中打开过），"
    "请用 Excel 或 WPS 打开该文件、保存后重新发送"
)
_FORMULA_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")


def _tag_re(*names: bytes, closing: bool = True) -> re.Pattern[bytes]:
    """A tag with one of ``names`` (any prefix; closing tags too with ``closing``): "/" if
    closing, its local name, its attributes, "/" if empty.  "<" never occurs inside a tag (XML
    forbids it in attribute values) and possessive runs never backtrack: linear on hostile bytes."""
    alternatives = b"|".join(re.escape(n) for n in names)
    return re.compile(
        (rb"<(/?)" if closing else rb"<()") + rb"(?:[A-Za-z_][\w.-]*+:)?(" + alternatives + rb")(?=[\s/>])"
        rb"""((?:[^<>"'/]++|"[^<"]*+"|'[^<']*+'|/(?!>))*+)(/?)>"""
    )


_XLSX_TAG_RE = _tag_re(b"row", b"c", closing=False)
# Every cell tag the placement below sees begins like this ("<c", or a prefixed "<x:c", then a
# separator; no "<" inside), and a whole cell tag as Excel, WPS and openpyxl write it
# (unprefixed, ``r`` first, a plain reference) is caught by the first branch with its reference.
_PLAIN_CELL_TAG = rb"""c r="([A-Z]{1,3})([0-9]{1,7})"(?:[^<>"'/]++|"[^<"]*+"|'[^<']*+'|/(?!>))*+/?>"""
_CELL_START_RE = re.compile(rb"<(?:" + _PLAIN_CELL_TAG + rb"""|(?:[A-Za-z_][\w.-]*+:)?c[\s/>])""")
# The same matches where no tag is prefixed (no ":c" in the bytes): searched by its literal "<c".
_UNPREFIXED_CELL_START_RE = re.compile(rb"<(?:" + _PLAIN_CELL_TAG + rb"|c[\s/>])")
# How every cell tag above and every formula tag (``_FORMULA_RE``) begins.
_CELL_OR_FORMULA_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*+:)?[cf][\s/>]")
_ODS_TAG_RE = _tag_re(b"table", b"table-row", b"table-cell", b"covered-table-cell")
_ATTR_RE = re.compile(rb"""(?:^|\s)(?:[A-Za-z_][\w.-]*:)?([A-Za-z][\w.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_R_ATTR_RE = re.compile(rb"""\sr\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_CELL_REF_RE = re.compile(rb"\$?([A-Za-z]{1,3})\$?([0-9]{1,7})")


def is_worksheet(name: str) -> bool:
    return name.startswith("xl/worksheets/") and name.endswith(".xml")


WORKBOOK_RELS = "xl/_rels/workbook.xml.rels"


_PARTS_CACHE: dict[bytes, frozenset[str]] = {}
_PARTS_CACHE_SIZE = 64  # relationship files, each at most _PARTS_CACHE_BYTES: a bounded table
_PARTS_CACHE_BYTES = 4096


def sheet_parts(rels: bytes) -> frozenset[str]:
    """Every package part ``xl/_rels/workbook.xml.rels`` points at, under each way a reader may
    resolve its ``Target`` (relative to ``xl/``, from the package root, ``..`` folded): a reader
    opens a sheet wherever its relationship says, so each one is area-checked.  Remembered per
    content: the forms of one template carry the same relationships byte for byte."""
    known = _PARTS_CACHE.get(rels)
    if known is None:
        known = _sheet_parts(rels)
        if len(rels) <= _PARTS_CACHE_BYTES:
            if len(_PARTS_CACHE) >= _PARTS_CACHE_SIZE:
                _PARTS_CACHE.clear()
            _PARTS_CACHE[rels] = known
    return known


def _sheet_parts(rels: bytes) -> frozenset[str]:
    try:
        root = DET.fromstring(rels, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise UnreadableForm("corrupt", "附件文件已损坏，无法读取，请用 Excel 或 WPS 重新保存后发送",
                             f"{WORKBOOK_RELS} does not parse: {exc}") from exc
    parts: set[str] = set()
    for rel in root.iter():
        target = rel.get("Target")
        if not target or rel.get("TargetMode", "").lower() == "external":
            continue
        target = target.replace("\\", "/")
        for candidate in (target.lstrip("/"), "xl/" + target.lstrip("/"), "xl/" + target):
            parts.add(posixpath.normpath(candidate).lstrip("/"))
            parts.add(candidate)
    return frozenset(parts)


def _col_number(letters: bytes) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ch - 64
    return n


def _attrs(raw: bytes) -> dict[bytes, str]:
    """Attributes by local name, character references resolved (``&#88;`` is ``X`` to a reader)."""
    out: dict[bytes, str] = {}
    for m in _ATTR_RE.finditer(raw):
        value = (m.group(2) if m.group(2) is not None else m.group(3)).decode("utf-8", "replace")
        out[m.group(1)] = html.unescape(value) if "&" in value else value
    return out


def _int_attr(attrs: dict[bytes, str], key: bytes, default: int) -> int:
    value = attrs.get(key, "").strip()
    return int(value) if value.isdigit() and len(value) <= 9 else default


class _Box:
    """The bounding box of the cells seen so far in one sheet."""

    def __init__(self) -> None:
        self.top = self.left = 1 << 62
        self.bottom = self.right = -1

    def add(self, row1: int, row2: int, col1: int, col2: int) -> None:
        if row1 < self.top:
            self.top = row1
        if row2 > self.bottom:
            self.bottom = row2
        if col1 < self.left:
            self.left = col1
        if col2 > self.right:
            self.right = col2

    @property
    def area(self) -> int:
        if self.bottom < 0:
            return 0
        return (self.bottom - self.top + 1) * (self.right - self.left + 1)


def _too_large(name: str, area: int, max_sheet_cells: int) -> UnreadableForm:
    return UnreadableForm(
        "sheet_too_large", SHEET_TOO_LARGE_MESSAGE,
        f"{name}: cell bounding box of {area} cells exceeds {max_sheet_cells}",
    )


def _r_attr(raw_attrs: bytes) -> bytes | None:
    """The ``r`` attribute as a reader sees it (either quote; character references resolved)."""
    m = _R_ATTR_RE.search(raw_attrs)
    if m is None:
        return None
    value = m.group(1) if m.group(1) is not None else m.group(2)
    if b"&" in value:
        value = html.unescape(value.decode("utf-8", "replace")).encode("utf-8", "replace")
    return value.strip()


def check_sheet_area(name: str, xml: bytes, *, max_sheet_cells: int) -> int:
    """The cells' bounding box of an xlsx worksheet (its area); raise ``sheet_too_large`` when
    it exceeds ``max_sheet_cells``.  A cell without ``r`` sits right of the previous one, in the row given by
    its ``<row r>`` (else the next row): readers place it there."""
    # Each cell tag is a cell of its own: too many are refused without placing them (or listing
    # them).  A tag takes at least three bytes, so only a part of over three bytes a cell can.
    if len(xml) > 3 * max_sheet_cells:
        cell_tags = sum(xml.count(b"<c" + end) for end in (b" ", b">", b"/"))
        if cell_tags > max_sheet_cells:
            raise _too_large(name, cell_tags, max_sheet_cells)
    area = _area_of_plain_references(xml, max_sheet_cells)
    if area is not None:
        return area
    box = _Box()
    columns: dict[bytes, int] = {}
    row = col = cells = 0
    for m in _XLSX_TAG_RE.finditer(xml):
        r = _r_attr(m.group(3))
        if m.group(2) == b"row":
            row = int(r) if r and r.isdigit() and len(r) <= 9 else row + 1
            col = 0
            continue
        cells += 1
        ref = _CELL_REF_RE.fullmatch(r) if r else None
        if ref:
            letters = ref.group(1)
            col = columns.get(letters) or columns.setdefault(letters, _col_number(letters))
            cell_row = int(ref.group(2))
        else:
            col, cell_row = col + 1, max(row, 1)
        box.add(cell_row, cell_row, col, col)
        if cells > max_sheet_cells or box.area > max_sheet_cells:
            raise _too_large(name, max(box.area, cells), max_sheet_cells)
    return box.area


def _area_of_plain_references(xml: bytes, max_sheet_cells: int) -> int | None:
    """The area the placement below finds, when every cell tag is written ``<c r="A1" ...>``
    and the box fits; else ``None`` (then the placement runs: it also produces the refusal).

    Each such cell sits at its reference and the box only grows, so the loop could not raise
    and its box is the references' box.  Every tag the loop sees starts like
    ``_CELL_START_RE``, whose matches never overlap (each holds one "<", at its start): when each
    match is a whole plain tag (its first branch, with a reference), they are the loop's cells.
    One regex pass in C instead of a Python step per cell."""
    starts = (_CELL_START_RE if b":c" in xml else _UNPREFIXED_CELL_START_RE).findall(xml)
    if not starts or len(starts) > max_sheet_cells or (b"", b"") in starts:
        return None
    rows = list(map(int, map(itemgetter(1), starts)))
    cols = [_col_number(letters) for letters in {letters for letters, _digits in starts}]
    area = (max(rows) - min(rows) + 1) * (max(cols) - min(cols) + 1)
    return area if area <= max_sheet_cells else None


def check_ods_area(xml: bytes, *, max_sheet_cells: int) -> int:
    """The summed areas of the tables of an ods ``content.xml`` (cells with content, repeated
    rows and columns counted); raise ``sheet_too_large`` when the sum passes ``max_sheet_cells``.

    The current table's box is kept in four locals (as :class:`_Box` keeps it: an area of 0
    until a cell reaches row 0 or below), the tags' parts taken by one ``findall``."""
    done = 0  # areas of the tables before this one
    top = left = 1 << 62
    bottom = right = -1
    table = ""
    row = col = row_repeat = 0
    for closing, tag, raw_attrs, empty in _ODS_TAG_RE.findall(xml):
        if tag == b"table-cell" or tag == b"covered-table-cell":
            if closing:
                continue
            # Attributes are parsed only where the bytes name one that matters: without
            # "repeated" among them there is no repeat count, without "value-type" no type.
            if b"repeated" in raw_attrs or (empty and b"value-type" in raw_attrs):
                attrs = _attrs(raw_attrs)
                span, typed = max(_int_attr(attrs, b"number-columns-repeated", 1), 1), b"value-type" in attrs
            else:
                span, typed = 1, False
            if not empty or typed:
                last_row, last_col = row + row_repeat - 1, col + span - 1
                if row < top:
                    top = row
                if last_row > bottom:
                    bottom = last_row
                if col < left:
                    left = col
                if last_col > right:
                    right = last_col
                if bottom >= 0 and done + (bottom - top + 1) * (right - left + 1) > max_sheet_cells:
                    raise _too_large(f"content.xml table {table!r}",
                                     done + (bottom - top + 1) * (right - left + 1), max_sheet_cells)
            col += span
        elif tag == b"table-row":
            if closing:
                row += row_repeat
                continue
            row_repeat = (max(_int_attr(_attrs(raw_attrs), b"number-rows-repeated", 1), 1)
                          if b"repeated" in raw_attrs else 1)
            col = 0
            if empty:
                row += row_repeat
        elif not closing:  # a table
            done += (bottom - top + 1) * (right - left + 1) if bottom >= 0 else 0
            top = left = 1 << 62
            bottom = right = -1
            table, row = _attrs(raw_attrs).get(b"name", ""), 0
    return done + ((bottom - top + 1) * (right - left + 1) if bottom >= 0 else 0)


MAX_UNCACHED_LISTED = 100_000  # beyond this many uncached formulas the form is refused at once
ANY_SHEET = "*"  # key of uncached cells whose sheet is unknown: they count on every sheet
# Where a workbook names its worksheet parts (kept by the zip scan with the worksheets).
WORKBOOK_PARTS = ("xl/workbook.xml", WORKBOOK_RELS)


def sheet_names(parts: dict[str, bytes]) -> dict[str, str]:
    """Worksheet part (``xl/worksheets/sheet1.xml``) -> its sheet's name, from the
    :data:`WORKBOOK_PARTS` in ``parts``; ``{}`` when they are missing or do not parse."""
    try:
        workbook, rels = (DET.fromstring(parts[name], forbid_dtd=True) for name in WORKBOOK_PARTS)
    except (KeyError, ParseError, DefusedXmlException, ValueError):
        return {}
    targets: dict[str, str] = {}
    for rel in rels.iter():
        target = rel.get("Target") or ""
        if rel.get("Id"):
            targets[rel.get("Id", "")] = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    names: dict[str, str] = {}
    for sheet in workbook.iter():
        if sheet.tag.rsplit("}", 1)[-1] != "sheet":
            continue
        rid = next((v for k, v in sheet.attrib.items() if k.rsplit("}", 1)[-1] == "id"), "")
        if rid in targets and sheet.get("name"):
            names[targets[rid]] = sheet.get("name", "")
    return names


def holds_cells(xml: bytes) -> bool:
    """Whether a part has a cell or a formula tag at all: one without either has an empty
    area (:func:`check_sheet_area`) and no uncached formula (:func:`uncached_formula_cells`),
    so a theme or style part a relationship points at is cleared by one search."""
    if xml in _NO_CELLS:
        return False
    found = _CELL_OR_FORMULA_RE.search(xml) is not None
    if not found and len(xml) <= _NO_CELLS_BYTES:
        if len(_NO_CELLS) >= _NO_CELLS_SIZE:
            _NO_CELLS.clear()
        _NO_CELLS[xml] = None
    return found


# Parts found to hold no cell or formula tag, by content: the theme and styles of one template
# recur byte for byte (hashing them costs a tenth of the search).  Bounded: _NO_CELLS_SIZE
# parts of at most _NO_CELLS_BYTES.
_NO_CELLS: dict[bytes, None] = {}
_NO_CELLS_SIZE = 32
_NO_CELLS_BYTES = 1 << 16


def uncached_formula_cells(sheets: dict[str, bytes], parts: dict[str, bytes]) -> dict[str, frozenset[str]]:
    """Sheet name (its part's name by :func:`sheet_names` of ``parts``, computed only when a
    sheet has a formula; else :data:`ANY_SHEET`) -> coordinates (``"H12"``) of its formula
    cells without a cached value.  Raises ``formula_without_values`` when one has no ``r``
    reference (its place is unknown) or there are more than :data:`MAX_UNCACHED_LISTED`."""
    found: dict[str, set[str]] = {}
    names: dict[str, str] | None = None
    total = 0
    for name, xml in sheets.items():
        # A formula tag starts "<f" or, prefixed, ":f": without either no search is needed.
        if name in WORKBOOK_PARTS or (b"<f" not in xml and b":f" not in xml) or not _FORMULA_RE.search(xml):
            continue
        names = sheet_names(parts) if names is None else names
        cells = found.setdefault(names.get(name, ANY_SHEET), set())
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
                    f = child if ctag == "f" else f
                    v = child if ctag == "v" else v
                if f is not None and (v is None or not (v.text or "")) and elem.get("t") != "str":
                    ref = elem.get("r") or ""
                    total += 1
                    if not ref or total > MAX_UNCACHED_LISTED:
                        raise UnreadableForm("formula_without_values", FORMULA_MESSAGE,
                                             f"{name}: formula cells without a cached value ({ref or 'no r'})")
                    cells.add(ref.replace("$", "").upper())
                elem.clear()
        except (ParseError, DefusedXmlException, ValueError) as exc:
            raise UnreadableForm(
                "corrupt", "附件文件已损坏，无法读取，请用 Excel 或 WPS 重新保存后发送",
                f"{name}: worksheet XML does not parse: {exc}",
            ) from exc
    return {sheet: frozenset(cells) for sheet, cells in found.items() if cells}
