"""Read an Annex 3 form (高校参训教师信息汇总表) from the bytes of one attachment.

``read_annex3(data, filename)`` is pure: bytes in, :class:`~mailbot.forms.model.FormReading` out,
or ``UnreadableForm`` / ``NotAnnex3``.  It finds the header row by its labels wherever it sits,
picks the best-matching sheet (or Word table), reads 填报单位 / 联系人 / 联系电话 from the block
above the table, and collects the nominee rows up to the 说明 footer.

Decisions:

* Rows: numbered-but-empty rows (only 序号 filled) and blank rows are skipped; reading stops at
  a row starting with 说明 / 填表说明 / 注：.  Up to ``limits.max_rows`` nominee rows are read;
  one more makes the file ``UnreadableForm("too_many_rows")`` (a partial reading would register
  some nominees and silently drop others).
* A header counts as Annex 3 when it has 姓名 and 身份证号 and at least one more Annex 3 label
  (program, gender, position, email or phone); otherwise ``NotAnnex3("no_annex3_header")``.
* ``missing_columns`` lists the keys of :data:`REQUIRED_KEYS` absent from the header (序号 is
  optional).
* A formula without a cached value (``Source.uncached_formulas``) makes the form
  ``UnreadableForm("formula_without_values")`` only when it is a cell read: the rows above the
  header, the header's columns in the header row and in every row read up to the footer, on the
  sheet read.  A helper column beside the table, a total row below the 说明 footer or another
  sheet does not matter.
"""

from __future__ import annotations

from itertools import islice
from operator import itemgetter

import re
from dataclasses import dataclass

from mailbot.errors import FormError, NotAnnex3, UnreadableForm
from mailbot.annex3 import FIELDS
from mailbot.forms.model import CellValue, FormReading, FormRow
from mailbot.normalize import clean_text, compact
from mailbot.limits import DEFAULT_LIMITS, Limits
from mailbot.forms.sheet_sources import DAMAGED_MESSAGE, CellBudget, Grid, Source, load
from mailbot.forms.xlsx_inspect import ANY_SHEET, FORMULA_MESSAGE

__all__ = ["read_annex3", "sheet_cells", "match_label", "REQUIRED_KEYS", "HEADER_SEARCH_ROWS"]

REQUIRED_KEYS: tuple[str, ...] = tuple(key for key, _ in FIELDS if key != "seq")
HEADER_SEARCH_ROWS = 40  # the header row must be within the first rows of a sheet
_CORE_EXTRA = frozenset({"program", "gender", "position", "email", "phone"})
NOT_ANNEX3_MESSAGE = (
    "附件不是附件3《高校参训教师信息汇总表》（未找到“姓名”“身份证号”等表头），"
    "请使用通知所附的附件3表格填写后重新发送"
)

_VARIANTS: dict[str, tuple[str, ...]] = {
    "seq": ("序号", "编号", "no", "no."),
    "program": ("所报证书培训班名称", "证书名称", "所报证书名称", "培训班名称", "所报证书", "证书培训班名称",
                "所报培训班名称", "所报培训班", "培训项目", "报名证书", "证书培训班", "培训班", "证书"),
    "name": ("姓名", "教师姓名", "参训教师姓名", "参训教师", "名字"),
    "gender": ("性别",),
    "position": ("职务", "职称", "职务/职称", "职称/职务", "职务(职称)", "职称(职务)", "职务职称", "职务、职称"),
    "email": ("电子邮箱", "邮箱", "e-mail", "email", "电子邮件", "邮箱地址", "电子邮箱地址", "电子信箱"),
    "id_number": ("身份证号", "身份证号码", "身份证", "身份证件号码", "公民身份号码", "身份号码"),
    "phone": ("手机", "手机号", "手机号码", "联系电话", "电话", "联系方式", "移动电话"),
}
_EXACT = {v: key for key, variants in _VARIANTS.items() for v in variants}
_CONTAINS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("id_number", ("身份证", "身份号码")),
    ("email", ("邮箱", "邮件", "email", "e-mail", "信箱")),
    ("phone", ("手机", "电话")),
    ("position", ("职务", "职称")),
    ("gender", ("性别",)),
    ("name", ("姓名",)),
    ("program", ("证书", "培训班")),
    ("seq", ("序号",)),
)
_PAREN_RE = re.compile(r"\([^)]*\)|\[[^\]]*\]|【[^】]*】")

_BLOCK_RE = re.compile(
    r"(?P<institution>(?:填\s*报|报\s*送)\s*单\s*位(?:\s*名\s*称)?(?:\s*[（(]\s*盖\s*章\s*[)）])?"
    r"|(?:单\s*位|学\s*校)\s*名\s*称(?:\s*[（(]\s*盖\s*章\s*[)）])?)"
    r"|(?P<contact_phone>联\s*系\s*人?\s*(?:电\s*话|手\s*机|方\s*式))"
    r"|(?P<contact>联\s*系\s*人(?!\s*(?:电\s*话|手\s*机|方\s*式)))"
)
_VALUE_STRIP = " \t\r\n\u3000:：_＿—-"
_FOOTER_RE = re.compile(r"^(?:说\s*明|填\s*表\s*说\s*明|注\s*[:：])")


_NEEDLE_RE = re.compile("|".join(re.escape(n) for _key, needles in _CONTAINS for n in needles))
_LABEL_CACHE: dict[str, str | None] = {}
_LABEL_CACHE_SIZE = 4096  # texts, each at most _LABEL_CACHE_TEXT characters: a bounded table
_LABEL_CACHE_TEXT = 64
# Printable ASCII loses only spaces, case, "*:" and bracketed parts on the way to a label, so
# it can become one of the ASCII labels ("no", "no.", "email", "e-mail") only if it holds an
# "n" or an "e".
_ASCII_LABEL_LETTER_RE = re.compile("[eEnN]")


def match_label(text: str) -> str | None:
    """Canonical key of a header cell (``"身份证号码"`` -> ``"id_number"``), or ``None``.

    Called for every cell of a sheet's first rows, so the answer is remembered per text (header
    labels, genders and programs repeat across forms) and printable ASCII (numbers, emails)
    skips the Unicode normalisation, which leaves it unchanged but its spaces."""
    known = _LABEL_CACHE.get(text, "")
    if known != "":
        return known
    if text.isdigit():  # digits stay digits through the normalisation: no label holds one
        return None
    if text.isascii() and text.isprintable():
        if _ASCII_LABEL_LETTER_RE.search(text) is None:
            return None  # an identity number, a phone: not remembered, they do not repeat
        key = _match_compacted(text.replace(" ", ""))
    else:
        key = _match_compacted(compact(text))
    if len(text) <= _LABEL_CACHE_TEXT:
        if len(_LABEL_CACHE) >= _LABEL_CACHE_SIZE:
            _LABEL_CACHE.clear()
        _LABEL_CACHE[text] = key
    return key


def _match_compacted(compacted: str) -> str | None:
    label = compacted.lower().strip("*:")
    if not label or len(label) > 20:
        return None
    if label in _EXACT:
        return _EXACT[label]
    bare = _PAREN_RE.sub("", label).strip("*:")
    if bare in _EXACT:
        return _EXACT[bare]
    if len(bare) > 12 or _NEEDLE_RE.search(bare) is None:
        return None
    for key, needles in _CONTAINS:
        if any(n in bare for n in needles):
            return key
    return None


@dataclass(frozen=True)
class _Header:
    grid: Grid
    row_index: int  # 0-based index in the grid
    columns: dict[str, int]
    labels: dict[str, str]
    duplicates: tuple[str, ...]

    @property
    def score(self) -> int:
        return len(self.columns)

    @property
    def is_annex3(self) -> bool:
        keys = set(self.columns)
        return {"name", "id_number"} <= keys and bool(keys & _CORE_EXTRA)


def _header_in_row(grid: Grid, index: int, row: list[CellValue]) -> _Header:
    columns: dict[str, int] = {}
    labels: dict[str, str] = {}
    duplicates: list[str] = []
    for col, cell in enumerate(row):
        key = match_label(cell.text) if cell.text else None
        if key is None:
            continue
        if key in columns:
            duplicates.append(cell.text.strip())
            continue
        columns[key] = col
        labels[key] = cell.text.strip()
    return _Header(grid, index, columns, labels, tuple(duplicates))


def _best_header(grids: list[Grid]) -> _Header | None:
    best: _Header | None = None
    best_rank: tuple[bool, int, bool] | None = None
    cache = _LABEL_CACHE
    for grid in grids:
        for index, row in enumerate(grid.head[:HEADER_SEARCH_ROWS]):
            if not row:
                continue
            for cell in row:  # most rows hold no label at all: no _Header for them
                text = cell.text
                if text and not text.isdigit() and (cache[text] if text in cache else match_label(text)) is not None:
                    break
            else:
                continue
            found = _header_in_row(grid, index, row)
            rank = (found.is_annex3, found.score, grid.visible)
            if best_rank is None or rank > best_rank:
                best, best_rank = found, rank
    return best


def _header_block(header: _Header) -> dict[str, str]:
    """填报单位 / 联系人 / 联系电话 from the rows above the header (and text above a Word table)."""
    found: dict[str, str] = {}
    lines: list[list[str]] = [[line] for line in header.grid.preamble]
    lines += [[c.text for c in row] for row in header.grid.head[: header.row_index]]
    for cells in lines:
        for col, text in enumerate(cells):
            matches = list(_BLOCK_RE.finditer(text)) if text and _block_hint(text) else []
            for i, m in enumerate(matches):
                key = m.lastgroup or ""
                if found.get(key):
                    continue
                end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
                value = text[m.end():end].strip(_VALUE_STRIP)
                if not value and i + 1 == len(matches):
                    value = _next_value(cells, col)
                if value:
                    found[key] = value
    return found


def _block_hint(text: str) -> bool:
    """Whether ``_BLOCK_RE`` may match: each of its matches holds 位 (单位), 称 (名称) or 联
    (联系人), so a text without them is not searched."""
    return "位" in text or "称" in text or "联" in text


def _next_value(cells: list[str], col: int) -> str:
    for text in cells[col + 1:]:
        if not text.strip():
            continue
        if _block_hint(text) and _BLOCK_RE.search(text):
            return ""
        return text.strip(_VALUE_STRIP)
    return ""


def _cell_at(row: list[CellValue], col: int, row_number: int, coordinates: bool) -> CellValue:
    if col < len(row):
        return row[col]
    if coordinates:
        from mailbot.forms.sheet_sources import column_letters

        return CellValue("", False, f"{column_letters(col)}{row_number}")
    return CellValue("")


def _read_rows(header: _Header, limits: Limits, read: set[str] | None) -> tuple[list[FormRow], list[str]]:
    """The nominee rows; ``read`` (when given) collects the coordinates of every cell looked at."""
    rows: list[FormRow] = []
    notes: list[str] = []
    numbered_empty = 0
    columns = list(header.columns.items())
    keys = list(header.columns)
    take = itemgetter(*header.columns.values())  # an Annex 3 header has at least three columns
    widest = max(header.columns.values())
    content_keys = [k for k in header.columns if k != "seq"]
    id_col = header.columns.get("id_number")
    header_row = header.grid.head[header.row_index]
    coordinates = any(c.coordinate for c in header_row)
    for index, row in enumerate(header.grid.rows()):
        if index <= header.row_index or not row:
            continue
        first = ""
        for c in row:
            first = c.text.strip()
            if first:
                break
        if not first:
            continue
        # clean_text keeps ASCII ASCII, and the footer words are not: no need to clean it
        if (not first.isascii() and _FOOTER_RE.match(clean_text(first))
                and not (row[id_col].text.strip() if id_col is not None and id_col < len(row) else "")):
            notes.append(f"stopped at footer in row {index + 1}")
            break
        row_number = index + 1
        width = len(row)
        if widest < width:
            cells = dict(zip(keys, take(row)))
        else:
            cells = {k: row[c] if c < width else _cell_at(row, c, row_number, coordinates) for k, c in columns}
        if read is not None:
            read.update([c.coordinate for c in cells.values()])
        for k in content_keys:
            if cells[k].text.strip():
                break
        else:
            numbered_empty += 1
            continue
        rows.append(FormRow(row_number, cells))
        if len(rows) > limits.max_rows:
            raise UnreadableForm(
                "too_many_rows",
                f"表格行数过多（超过 {limits.max_rows} 行），请只保留需要报名的教师后重新发送",
                f"more than {limits.max_rows} nominee rows",
            )
    if numbered_empty:
        notes.append(f"skipped {numbered_empty} numbered-but-empty row(s)")
    return rows, notes


def _reading(source: Source, filename: str, limits: Limits) -> FormReading:
    if not source.grids:
        raise NotAnnex3(
            "no_table", NOT_ANNEX3_MESSAGE,
            f"{source.file_format} file holds no sheet or table" + (f" ({source.notes[0]})" if source.notes else ""),
        )
    header = _best_header(source.grids)
    if header is None or not header.is_annex3:
        seen = ", ".join(header.labels.values()) if header else "none"
        raise NotAnnex3("no_annex3_header", NOT_ANNEX3_MESSAGE,
                        f"no header row with 姓名 + 身份证号 + another Annex 3 label (best labels: {seen})")
    notes = list(source.notes)
    grid = header.grid
    if len(source.grids) > 1:
        kind = "table" if source.file_format == "docx" else "sheet"
        notes.append(f"picked {kind} {grid.name!r} ({grid.index + 1} of {len(source.grids)}) by header match")
    if not grid.visible:
        notes.append(f"sheet {grid.name!r} is hidden")
    if header.duplicates:
        notes.append(f"duplicate header labels ignored: {', '.join(header.duplicates)}")
    block = _header_block(header)
    uncached = source.uncached_formulas
    uncached_here = uncached.get(grid.name, frozenset()) | uncached.get(ANY_SHEET, frozenset())
    read: set[str] | None = None  # the coordinates read matter only beside an uncached formula
    if uncached_here:
        read = {c.coordinate for row in grid.head[: header.row_index] for c in row}
        read.update(grid.head[header.row_index][col].coordinate for col in header.columns.values())
    rows, row_notes = _read_rows(header, limits, read)
    blank = sorted(uncached_here & read) if read is not None else []
    if blank:
        raise UnreadableForm("formula_without_values", FORMULA_MESSAGE,
                             f"formula cells without a cached value among the cells read: {', '.join(blank[:5])}")
    return FormReading(
        filename=filename,
        file_format=source.file_format,
        sheet=grid.name,
        header_row=header.row_index + 1,
        labels=dict(header.labels),
        rows=tuple(rows),
        institution=block.get("institution", ""),
        contact=block.get("contact", ""),
        contact_phone=block.get("contact_phone", ""),
        missing_columns=tuple(k for k in REQUIRED_KEYS if k not in header.columns),
        notes=tuple(notes + row_notes),
    )


def read_annex3(data: bytes, filename: str, *, limits: Limits = DEFAULT_LIMITS,
                budget: CellBudget | None = None) -> FormReading:
    """Read the Annex 3 table from the bytes of one file (format judged by content); the sheets'
    cells are taken from ``budget`` (the message's, shared by its attachments) when given.

    Raises ``UnreadableForm`` (corrupt, encrypted, oversized, unsupported, formulas without
    values, too many rows) or ``NotAnnex3`` (readable but no Annex 3 header).
    """
    try:
        source = load(data, limits, head_rows=HEADER_SEARCH_ROWS, budget=budget)
        return _reading(source, filename, limits)
    except FormError:
        raise
    except MemoryError as exc:
        raise UnreadableForm("too_large", "附件内容过大，无法处理，请删除多余内容后重新发送",
                             "out of memory while reading") from exc
    except Exception as exc:  # the boundary: no library error escapes as a traceback
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE,
                             f"unexpected {type(exc).__name__} while reading: {exc}") from exc


def sheet_cells(data: bytes, sheet: str, *, limits: Limits = DEFAULT_LIMITS) -> list[list[tuple[str, str]]]:
    """Every non-empty cell of ``sheet`` as ``(coordinate, text)`` rows, bounded by the limits:
    what a correction copy of a non-xlsx workbook is rebuilt from.  Raises ``FormError``."""
    try:
        source = load(data, limits, head_rows=HEADER_SEARCH_ROWS)
        grid = next((g for g in source.grids if g.name == sheet), None)
        if grid is None:
            return []
        out: list[list[tuple[str, str]]] = []
        for row in islice(grid.rows(), limits.max_rows + HEADER_SEARCH_ROWS + 50):
            out.append([(c.coordinate, c.text) for c in row if c.text and c.coordinate])
        return out
    except FormError:
        raise
    except Exception as exc:  # the boundary, as in read_annex3
        raise UnreadableForm("corrupt", DAMAGED_MESSAGE, f"unexpected {type(exc).__name__}: {exc}") from exc
