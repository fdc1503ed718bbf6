"""Turn the bytes of one file into grids of :class:`~mailbot.forms.model.CellValue`.

The format is judged by the bytes (magic numbers, zip members), never by the file name.
Spreadsheets are read with python-calamine (xlsx/xlsm/xls/ods/et; .xlsb is refused), bare BIFF2-4
``.xls`` through ``ole_inspect.read_biff`` (xlrd), Word tables with python-docx, CSV with the
standard library.  Every container passes
``archive_safety`` / ``ole_inspect`` / ``xlsx_inspect`` first; library errors become
``UnreadableForm`` raised from the cause.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import islice, repeat

from mailbot.charsets import decode_guess
from mailbot.forms import archive_safety, ole_inspect, xlsx_inspect
from mailbot.errors import UnreadableForm
from mailbot.forms.magic import magic_kind
from mailbot.forms.model import CellValue
from mailbot.limits import Limits

# Dense cell area a reader may allocate for one sheet (calamine allocates the bounding box);
# the areas of all sheets of all attachments of one message share ``Limits.max_cells_per_message``.
MAX_SHEET_CELLS = 4_000_000

ENCRYPTED_MESSAGE = ole_inspect.ENCRYPTED_MESSAGE
DAMAGED_MESSAGE = ole_inspect.DAMAGED_MESSAGE
UNSUPPORTED_MESSAGE = "附件格式无法识别，请用 Excel 或 WPS 将附件3保存为 .xlsx 文件后重新发送"
XLSB_MESSAGE = "暂不支持 Excel 二进制工作簿（.xlsb），请将附件3另存为 .xlsx 后重新发送"
DOC_MESSAGE = "暂不支持旧版 Word（.doc）文件，请将附件3另存为 .xlsx（或 .docx）后重新发送"


@dataclass
class Grid:
    """One sheet (or Word table) as rows of cells; ``rows[0]`` is sheet row 1.

    ``rows`` is an iterator so a big sheet is converted only as far as it is read; ``head`` holds
    the first rows already taken from it (for picking the sheet).
    """

    name: str
    index: int
    visible: bool
    head: list[list[CellValue]]
    rest: Iterator[list[CellValue]] = field(default_factory=lambda: iter(()))
    preamble: tuple[str, ...] = ()  # text above a Word table

    def rows(self) -> Iterator[list[CellValue]]:
        yield from self.head
        yield from self.rest


@dataclass
class Source:
    """A readable file: its format and its grids."""

    file_format: str
    grids: list[Grid]
    notes: list[str] = field(default_factory=list)
    # sheet name -> coordinates of formulas without a cached value, read as empty (xlsx_inspect)
    uncached_formulas: dict[str, frozenset[str]] = field(default_factory=dict)


class CellBudget:
    """Sheet cells (bounding-box areas) a message may still make a reader allocate: one budget
    for every sheet of every attachment, so many sheets each just under a bound cannot add up."""

    def __init__(self, cells: int) -> None:
        self.left = cells
        self.spent = 0

    def take(self, cells: int, what: str) -> None:
        if cells > self.left:
            raise UnreadableForm("sheet_too_large", ole_inspect.SHEET_TOO_LARGE_MESSAGE,
                                 f"{what}: {cells} cells exceed the {self.left} left of the message's budget")
        self.left -= cells
        self.spent += cells


# --------------------------------------------------------------------------- cell values

_TEXT_ONLY = {str}
_new = tuple.__new__  # ``_new(CellValue, (text, was_number, coordinate))``: a cell built in C


def column_letters(index: int) -> str:
    """0-based column index -> ``A``, ``B``, ... ``AA``."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def number_text(value: float | int) -> str:
    """A number as a spreadsheet shows it in General format, integers without ``.0``;
    beyond 15 significant digits (Excel's precision) the digits are Excel's."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value.is_integer():
        if abs(value) < 1e15:
            return str(int(value))
        try:
            return format(Decimal(f"{value:.15g}"), "f")
        except InvalidOperation:  # pragma: no cover - defensive
            return f"{value:.15g}"
    return f"{value:.15g}"


def to_cell(value: object, coordinate: str = "") -> CellValue:
    """Convert a reader's python value into a :class:`CellValue`."""
    if value is None or value == "":
        return CellValue("", False, coordinate)
    if isinstance(value, bool):
        return CellValue("TRUE" if value else "FALSE", False, coordinate)
    if isinstance(value, (int, float)):
        return CellValue(number_text(value), True, coordinate)
    if isinstance(value, dt.datetime):
        text = value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
        return CellValue(text, False, coordinate)
    if isinstance(value, (dt.date, dt.time)):
        return CellValue(value.isoformat(), False, coordinate)
    if isinstance(value, dt.timedelta):
        return CellValue(str(value), False, coordinate)
    return CellValue(str(value), False, coordinate)


# --------------------------------------------------------------------------- sniffing

def sniff(data: bytes) -> str:
    """Container kind judged by magic bytes: ``zip``, ``ole``, ``biff``, ``text`` or a refusal
    kind (``pdf``, ``image``, ``html``, ``xml``, ``rar``, ``7z``, ``gzip``, ``binary``)."""
    kind = magic_kind(data)
    if kind == "tnef":
        return "binary"
    if kind is not None:
        return kind
    text = _decode_text(data[:4096], probe=True)
    if text is None:
        return "binary"
    stripped = text.lstrip("\ufeff \t\r\n").lower()
    if stripped.startswith(("<html", "<!doctype html", "<table", "<meta", "<head")):
        return "html"
    if stripped.startswith("<?xml") or stripped.startswith("<"):
        return "html" if "<html" in stripped[:2000] else "xml"
    if stripped.startswith("{\\rtf"):
        return "rtf"
    return "text"


def _decode_text(data: bytes, *, probe: bool = False) -> str | None:
    """Decode CSV bytes: BOMs first, then UTF-16 without BOM, then UTF-8 or GB18030 (``charsets``).  ``None`` when the
    bytes are not text.  With ``probe`` the data may be cut mid-character."""
    for bom, enc in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                     (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(enc, errors="replace")
    sample = data[:4096]
    if sample and sample.count(0) >= len(sample) // 4:
        odd_nuls = sample[1::2].count(0)
        even_nuls = sample[0::2].count(0)
        enc = "utf-16-le" if odd_nuls > even_nuls else "utf-16-be"
        text = data[: len(data) // 2 * 2].decode(enc, errors="replace")
        return text if _looks_textual(text) else None
    text = decode_guess(data, cut_ok=probe)
    return text if text is not None and _looks_textual(text) else None


def _looks_textual(text: str) -> bool:
    if not text:
        return True
    bad = sum(1 for ch in text[:4096] if (ord(ch) < 32 and ch not in "\t\r\n\f\v") or ch == "\ufffd")
    return bad <= max(2, len(text[:4096]) // 100)


# --------------------------------------------------------------------------- loading

def load(data: bytes, limits: Limits, *, head_rows: int, budget: CellBudget | None = None) -> Source:
    """Read ``data`` into grids.  Raises ``UnreadableForm`` for anything that can't be read.
    The sheets' areas are taken from ``budget`` (default: a fresh ``max_cells_per_message``)."""
    budget = budget if budget is not None else CellBudget(limits.max_cells_per_message)
    if not data:
        raise UnreadableForm("empty_file", "附件是空文件（0 字节），请重新添加附件后发送", "zero-byte file")
    if len(data) > limits.max_attachment_bytes:
        raise UnreadableForm(
            "too_large", "附件过大，无法处理，请只保留附件3表格后重新发送",
            f"{len(data)} bytes > limit {limits.max_attachment_bytes}",
        )
    kind = sniff(data)
    if kind == "zip":
        return _load_zip(data, limits, head_rows, budget)
    if kind == "ole":
        contents = ole_inspect.inspect_ole(data, limits, max_sheet_cells=min(MAX_SHEET_CELLS, budget.left))
        if contents.kind == "doc":
            raise UnreadableForm("unsupported_format", DOC_MESSAGE, "legacy Word .doc (OLE2 WordDocument)")
        if contents.kind != "xls":
            raise UnreadableForm("unsupported_format", UNSUPPORTED_MESSAGE,
                                 f"OLE2 file without a workbook stream: {contents.streams[:6]}")
        budget.take(contents.cells, "xls sheets")
        return _load_calamine(data, "xls", limits, head_rows, contents.cells)
    if kind == "biff":
        return _charged(_load_xlrd(data, limits, head_rows), budget)
    if kind == "text":
        return _charged(_load_csv(data, limits, head_rows), budget)
    detail = {
        "pdf": "a PDF document", "image": "an image", "html": "an HTML page (web export saved as .xls?)",
        "xml": "an XML file (SpreadsheetML 2003?)", "rtf": "an RTF document", "binary": "unrecognised binary data",
    }.get(kind, f"a {kind} archive")
    code = "unknown_format" if kind == "binary" else "unsupported_format"
    raise UnreadableForm(code, UNSUPPORTED_MESSAGE, f"file content is {detail}")


def _charged(source: Source, budget: CellBudget) -> Source:
    """Take the cells of a source read in full (CSV, old BIFF, Word tables) from the budget."""
    cells = sum(len(row) for grid in source.grids for row in grid.head)
    for grid in source.grids:
        rest = list(grid.rest)
        cells += sum(len(row) for row in rest)
        grid.rest = iter(rest)
    budget.take(cells, f"{source.file_format} cells")
    return source


def _load_zip(data: bytes, limits: Limits, head_rows: int, budget: CellBudget) -> Source:
    zf = archive_safety.open_checked_zip(data, limits)
    kind = archive_safety.zip_contents_kind(zf, limits)
    kind = "xlsx" if kind == "xlsm" else kind  # calamine reads both alike
    if kind in ("zip", "odt"):
        raise UnreadableForm("unsupported_format", UNSUPPORTED_MESSAGE,
                             f"zip container is not a workbook or Word document ({kind})")
    if kind == "xlsb":
        # No pre-check of the binary sheet area exists, and an unbounded area makes the reader
        # allocate without limit (a crash no handler catches): refuse rather than risk it.
        raise UnreadableForm("unsupported_format", XLSB_MESSAGE, "Excel binary workbook (.xlsb)")
    sheets: set[str] = set()
    if kind == "xlsx" and xlsx_inspect.WORKBOOK_RELS in archive_safety.member_names(zf):
        sheets = xlsx_inspect.sheet_parts(archive_safety.read_member(zf, xlsx_inspect.WORKBOOK_RELS, limits))
    keep = {
        "xlsx": lambda n: xlsx_inspect.is_worksheet(n) or n in sheets or n in xlsx_inspect.WORKBOOK_PARTS,
        "ods": lambda n: n in ("META-INF/manifest.xml", "content.xml"),
        "docx": lambda n: False,
    }[kind]
    kept = archive_safety.scan_members(zf, limits, keep=keep)
    area = 0
    uncached: dict[str, frozenset[str]] = {}
    if kind == "xlsx":
        sheet_xml = {name: xml for name, xml in kept.items() if xlsx_inspect.holds_cells(xml)}
        for name, xml in sheet_xml.items():
            cells = xlsx_inspect.check_sheet_area(name, xml, max_sheet_cells=min(MAX_SHEET_CELLS, budget.left))
            budget.take(cells, name)
            area += cells
        uncached = xlsx_inspect.uncached_formula_cells(sheet_xml, kept)
    if kind == "ods":
        if b"encryption-data" in kept.get("META-INF/manifest.xml", b""):
            raise UnreadableForm("encrypted", ENCRYPTED_MESSAGE, "ODF package with encrypted members")
        area = xlsx_inspect.check_ods_area(kept.get("content.xml", b""), max_sheet_cells=budget.left)
        budget.take(area, "content.xml tables")
    if kind == "docx":
        return _charged(_load_docx(data, limits, head_rows), budget)
    source = _load_calamine(data, kind, limits, head_rows, area)
    source.uncached_formulas = uncached
    return source


def _calamine_error(fmt: str, exc: Exception) -> UnreadableForm:
    import python_calamine as pc

    if isinstance(exc, pc.PasswordError):
        return UnreadableForm("encrypted", ENCRYPTED_MESSAGE, f"{fmt}: password-protected ({exc})")
    return UnreadableForm("corrupt", DAMAGED_MESSAGE, f"{fmt} could not be read: {exc}")


def _load_calamine(data: bytes, fmt: str, limits: Limits, head_rows: int, checked: int) -> Source:
    """Load with calamine; ``checked`` is the area the pre-check found: the sheets calamine
    builds may not together exceed it by much (a pre-check missing a sheet is refused here)."""
    import python_calamine as pc

    try:
        book = pc.CalamineWorkbook.from_filelike(io.BytesIO(data))
        metas = list(book.sheets_metadata)
    except (pc.CalamineError, OSError, ValueError, TypeError, OverflowError) as exc:
        raise _calamine_error(fmt, exc) from exc
    grids: list[Grid] = []
    notes: list[str] = []
    built = 0
    for index, meta in enumerate(metas):
        if str(getattr(meta, "typ", "WorkSheet")).endswith(("ChartSheet", "Vba", "MacroSheet", "DialogSheet")):
            continue
        visible = str(getattr(meta, "visible", "Visible")).endswith(".Visible")
        try:
            sheet = book.get_sheet_by_index(index)
            height = sheet.total_height if sheet.total_height is not None else 0
            width = sheet.total_width if sheet.total_width is not None else 0
            built += height * width
            if (height + 1) * (width + 1) > MAX_SHEET_CELLS * 2 or built > 2 * checked + 100_000:
                raise UnreadableForm("sheet_too_large", ole_inspect.SHEET_TOO_LARGE_MESSAGE,
                                     f"sheet {meta.name!r} spans {height}x{width} cells")
            merged = list(sheet.merged_cell_ranges or ())
            col0 = sheet.start[1] if sheet.start else 0  # iter_rows pads rows from 1, not columns
            rows = _calamine_rows(sheet.iter_rows(), merged, limits.max_columns, col0)
            head = list(islice(rows, head_rows))
        except UnreadableForm:
            raise
        except (pc.CalamineError, OSError, ValueError, TypeError, OverflowError) as exc:
            notes.append(f"sheet {meta.name!r} skipped: {exc}")
            continue
        grids.append(Grid(meta.name, index, visible, head, rows))
    if not grids and notes:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"{fmt}: no sheet could be read: {notes[0]}")
    return Source(fmt, grids, notes)


def _merge_map(merged: list, max_columns: int) -> dict[tuple[int, int], tuple[int, int]]:
    """Covered cell -> top-left cell of its merged range (bounded)."""
    cover: dict[tuple[int, int], tuple[int, int]] = {}
    for rng in merged[:10_000]:
        try:
            (r1, c1), (r2, c2) = rng
        except (TypeError, ValueError):
            continue
        if c1 >= max_columns or (r2 - r1 + 1) * (min(c2, max_columns - 1) - c1 + 1) > 20_000:
            continue
        for r in range(r1, r2 + 1):
            for c in range(c1, min(c2, max_columns - 1) + 1):
                if (r, c) != (r1, c1):
                    cover[(r, c)] = (r1, c1)
        if len(cover) > 200_000:
            break
    return cover


def _calamine_rows(it: Iterator[list], merged: list, max_columns: int, col0: int) -> Iterator[list[CellValue]]:
    """Rows of CellValue from calamine's ``iter_rows`` (whose rows start at column ``col0``)."""
    cover = _merge_map(merged, max_columns)
    letters = _column_letters_up_to(max_columns)
    origin: dict[tuple[int, int], CellValue] = {}
    covered: dict[int, dict[int, tuple[int, int]]] = {}  # row -> column -> its range's top-left
    for (r, c), top_left in cover.items():
        covered.setdefault(r, {})[c] = top_left
    origin_columns: dict[int, set[int]] = {}  # row -> columns of top-left cells
    for r, c in set(cover.values()):
        origin_columns.setdefault(r, set()).add(c)
    col0 = min(col0, max_columns)
    for r, raw in enumerate(it):
        row_cover = covered.get(r)
        if raw.count("") == len(raw) and row_cover is None:
            yield []
            continue
        values = raw[: max_columns - col0]
        coords = _row_coordinates(r + 1, col0 + len(values), max_columns)
        cells = [_new(CellValue, ("", False, coord)) for coord in coords[:col0]] if col0 else []
        row_origins = origin_columns.get(r)
        if row_cover is None and row_origins is None:  # no merged range touches this row
            # Each cell built in C as text (the common case: the value itself, not a number),
            # then the others converted by to_cell.
            start = len(cells)
            cells += map(_new, repeat(CellValue), zip(values, repeat(False), coords[col0:]))
            if set(map(type, values)) != _TEXT_ONLY:
                for i, value in enumerate(values, start=start):
                    if value.__class__ is str:
                        continue
                    if value.__class__ is int:  # as to_cell writes it (not a bool: its class is bool)
                        cells[i] = _new(CellValue, (str(value), True, coords[i]))
                    elif value.__class__ is float and value.is_integer() and -1e15 < value < 1e15:
                        cells[i] = _new(CellValue, (str(int(value)), True, coords[i]))
                    else:
                        cells[i] = to_cell(value, coords[i])
            yield cells
            continue
        number = str(r + 1)
        for c, value in enumerate(raw[: max_columns - col0], start=col0):
            coord = letters[c] + number
            if row_cover is not None and c in row_cover:
                src = origin.get(row_cover[c])
                cells.append(src if src is not None else CellValue("", False, coord))
                continue
            cell = _new(CellValue, (value, False, coord)) if value.__class__ is str else to_cell(value, coord)
            if row_origins is not None and c in row_origins:
                origin[(r, c)] = cell
            cells.append(cell)
        yield cells


@lru_cache(maxsize=256)
def _row_coordinates(number: int, width: int, max_columns: int) -> tuple[str, ...]:
    """The coordinates of a row's first ``width`` cells (``A7``, ``B7``, ...): a form's rows
    have the same numbers and widths from one form to the next."""
    number_text = str(number)
    return tuple(letters + number_text for letters in _column_letters_up_to(max_columns)[:width])


@lru_cache(maxsize=4)
def _column_letters_up_to(max_columns: int) -> tuple[str, ...]:
    return tuple(column_letters(c) for c in range(max_columns))


def _load_xlrd(data: bytes, limits: Limits, head_rows: int) -> Source:
    grids = []
    for index, sheet in enumerate(ole_inspect.read_biff(data, max_columns=limits.max_columns,
                                                        max_rows=_row_cap(limits))):
        _refuse_beyond_row_cap(sheet.nrows, limits)
        rows = [[to_cell(value, f"{column_letters(c)}{r + 1}") for c, value in enumerate(row)]
                for r, row in enumerate(sheet.rows)]
        grids.append(Grid(sheet.name, index, sheet.visible, rows[:head_rows], iter(rows[head_rows:])))
    return Source("xls", grids)


def _load_csv(data: bytes, limits: Limits, head_rows: int) -> Source:
    text = _decode_text(data)
    if text is None:
        raise UnreadableForm("unknown_format", UNSUPPORTED_MESSAGE, "not text, not a known file format")
    sample = text[:8192]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel_tab if sample.count("\t") > sample.count(",") else csv.excel
    rows: list[list[CellValue]] = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""), dialect)
        for raw in islice(reader, _row_cap(limits) + 1):
            rows.append([CellValue(v) for v in raw[: limits.max_columns]])
        _refuse_beyond_row_cap(len(rows), limits)
    except csv.Error as exc:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"CSV could not be parsed: {exc}") from exc
    return Source("csv", [Grid("", 0, True, rows[:head_rows], iter(rows[head_rows:]))])


def _row_cap(limits: Limits) -> int:
    """Sheet rows a loader reads at most: the nominee limit plus room for titles and blanks."""
    return limits.max_rows + 1000


def _refuse_beyond_row_cap(rows: int, limits: Limits) -> None:
    """A sheet longer than the cap is refused, never read in part (some nominees dropped)."""
    if rows > _row_cap(limits):
        raise UnreadableForm(
            "too_many_rows", f"表格行数过多（超过 {limits.max_rows} 行），请只保留需要报名的教师后重新发送",
            f"more than {_row_cap(limits)} sheet rows")


def _load_docx(data: bytes, limits: Limits, head_rows: int) -> Source:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
        grids: list[Grid] = []
        preamble: list[str] = []
        for block in document.element.body.iterchildren():
            tag = block.tag.rsplit("}", 1)[-1]
            if tag == "p":
                text = Paragraph(block, document).text.strip()
                if text:
                    preamble.append(text)
            elif tag == "tbl":
                table = Table(block, document)
                rows = []
                for row in islice(table.rows, _row_cap(limits) + 1):
                    rows.append([CellValue(cell.text) for cell in row.cells[: limits.max_columns]])
                _refuse_beyond_row_cap(len(rows), limits)
                grids.append(Grid(f"table {len(grids) + 1}", len(grids), True, rows[:head_rows],
                                  iter(rows[head_rows:]), tuple(preamble[-20:])))
                preamble = []
    except (PackageNotFoundError, KeyError, ValueError, TypeError, AttributeError, IndexError,
            *archive_safety.ZIP_ERRORS, SyntaxError) as exc:
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"Word document could not be read: {exc!r}") from exc
    return Source("docx", grids)
