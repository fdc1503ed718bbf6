"""Synthetic Annex 3 forms (高校参训教师信息汇总表) for tests: xlsx via openpyxl, docx via
python-docx, CSV as text.  All people are made up; identity numbers carry valid check digits.

Example::

    rows = [nominee(1), nominee(2, name="李四", gender="女")]
    data = make_annex3_xlsx(rows, institution="浙江某某职业技术学院", contact="王老师",
                            contact_phone="0571-88880000")
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from stdnum.cn import ric

OFFICIAL_HEADER: tuple[str, ...] = ("序号", "所报证书培训班名称", "姓名", "性别", "职务", "电子邮箱", "身份证号", "手机")
KEYS: tuple[str, ...] = ("seq", "program", "name", "gender", "position", "email", "id_number", "phone")
TITLE = "高校参训教师信息汇总表"
FOOTER = "说明：请于11月9日前发送电子邮件至邮箱：shengpei@zjut.edu.cn。"


def make_identity_number(birth: dt.date = dt.date(1985, 3, 12), gender: str = "男", *,
                         area: str = "330106", serial: int = 1) -> str:
    """A valid synthetic 18-character identity number (area code + birth date + order + check).

    The order code's last digit is odd for 男 and even for 女.
    """
    order = (serial * 2) % 1000
    if gender == "男":
        order = (order + 1) % 1000
    body = f"{area}{birth:%Y%m%d}{order:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum ignores the last character


def make_phone(serial: int = 1) -> str:
    """A synthetic 11-digit mainland mobile number."""
    return f"138{(10_000_000 + serial * 7919) % 100_000_000:08d}"


@dataclass(frozen=True)
class Nominee:
    """One row of the form; values may be any python value openpyxl can write (int/float for
    "number stored" cases)."""

    seq: object = 1
    program: object = "物流管理"
    name: object = "张三"
    gender: object = "男"
    position: object = "讲师"
    email: object = "zhangsan@example.edu.cn"
    id_number: object = field(default_factory=make_identity_number)
    phone: object = "13812345678"

    def value(self, key: str) -> object:
        return getattr(self, key)


_NAMES = ("张三", "李四", "王五", "赵六", "陈七", "刘八", "杨九", "黄十")


def nominee(serial: int = 1, **changes: object) -> Nominee:
    """The ``serial``-th synthetic nominee, with overrides."""
    gender = "男" if serial % 2 else "女"
    base = Nominee(
        seq=serial,
        name=_NAMES[(serial - 1) % len(_NAMES)],
        gender=gender,
        email=f"teacher{serial}@example.edu.cn",
        id_number=make_identity_number(dt.date(1980 + serial % 20, 1 + serial % 12, 1 + serial % 28), gender,
                                       serial=serial),
        phone=make_phone(serial),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Layout:
    """How the sheet is laid out (defaults: the official form)."""

    title: bool = True
    title_merged: bool = True
    blank_rows_before_header: int = 0
    header_block: str = "separate"  # "separate" (label, value cells), "colon" (label：value), "one_cell", "none"
    header: Sequence[str] = OFFICIAL_HEADER
    column_order: Sequence[int] | None = None  # permutation of header indices
    extra_columns: Sequence[str] = ()  # e.g. ("备注",), appended to the right
    start_column: int = 1  # 1 = column A
    numbered_empty_rows: int = 0
    footer: bool = True
    after_footer: Sequence[str] = ()
    sheet_name: str = "Sheet1"


def _header_block_rows(layout: Layout, institution: str, contact: str, contact_phone: object) -> list[list[object]]:
    if layout.header_block == "none":
        return []
    if layout.header_block == "one_cell":
        return [[f"填报单位（盖章）：{institution}    联系人：{contact}    联系电话：{contact_phone}"]]
    if layout.header_block == "colon":
        return [[f"填报单位（盖章）：{institution}", None, None, f"联系人：{contact}", None, f"联系电话:{contact_phone}"]]
    return [["填报单位（盖章）", institution, None, "联系人", contact, "联系电话", contact_phone]]


def annex3_rows(rows: Sequence[Nominee], *, institution: str, contact: str, contact_phone: object,
                layout: Layout = Layout()) -> tuple[list[list[object]], int]:
    """The sheet as a list of rows (values) and the 1-based header row number."""
    order = list(layout.column_order or range(len(layout.header)))
    out: list[list[object]] = []
    if layout.title:
        out.append([TITLE])
    out += [[] for _ in range(layout.blank_rows_before_header)]
    out += _header_block_rows(layout, institution, contact, contact_phone)
    out.append([layout.header[i] for i in order] + list(layout.extra_columns))
    header_row = len(out)
    for r in rows:
        out.append([r.value(KEYS[i]) for i in order] + ["" for _ in layout.extra_columns])
    for n in range(layout.numbered_empty_rows):
        out.append([len(rows) + n + 1 if KEYS[i] == "seq" else None for i in order])
    if layout.footer:
        out.append([FOOTER])
    out += [[text] for text in layout.after_footer]
    pad = [None] * (layout.start_column - 1)
    return [pad + row if row else row for row in out], header_row


def make_annex3_xlsx(rows: Sequence[Nominee], *, institution: str = "浙江某某职业技术学院", contact: str = "王老师",
                     contact_phone: object = "0571-88880000", layout: Layout = Layout(),
                     extra_sheets: Sequence[tuple[str, list[list[object]]]] = (),
                     extra_sheets_first: bool = False) -> bytes:
    """An Annex 3 workbook written by openpyxl."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = layout.sheet_name
    values, header_row = annex3_rows(rows, institution=institution, contact=contact,
                                     contact_phone=contact_phone, layout=layout)
    for r, row in enumerate(values, start=1):
        for c, value in enumerate(row, start=1):
            if value is not None and value != "":
                ws.cell(row=r, column=c, value=value)
    if layout.title and layout.title_merged:
        first = layout.start_column
        ws.merge_cells(start_row=1, start_column=first, end_row=1, end_column=first + len(layout.header) - 1)
    for name, sheet_rows in extra_sheets:
        extra = wb.create_sheet(name, 0 if extra_sheets_first else None)
        for row in sheet_rows:
            extra.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def make_annex3_docx(rows: Sequence[Nominee], *, institution: str = "浙江某某职业技术学院", contact: str = "王老师",
                     contact_phone: str = "0571-88880000", header: Sequence[str] = OFFICIAL_HEADER,
                     leading_tables: int = 0) -> bytes:
    """An Annex 3 Word document: title and header line as paragraphs, then the table."""
    import docx

    document = docx.Document()
    for n in range(leading_tables):
        t = document.add_table(rows=1, cols=2)
        t.rows[0].cells[0].text = f"其他表格{n + 1}"
    document.add_paragraph("附件3")
    document.add_paragraph(TITLE)
    document.add_paragraph(f"填报单位（盖章）：{institution}    联系人：{contact}    联系电话：{contact_phone}")
    table = document.add_table(rows=1, cols=len(header))
    for cell, label in zip(table.rows[0].cells, header):
        cell.text = label
    for r in rows:
        cells = table.add_row().cells
        for cell, key in zip(cells, KEYS):
            cell.text = str(r.value(key))
    document.add_paragraph(FOOTER)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def make_annex3_csv(rows: Sequence[Nominee], *, encoding: str = "utf-8-sig", delimiter: str = ",",
                    institution: str = "浙江某某职业技术学院") -> bytes:
    """An Annex 3 CSV (as saved by Excel: title line, header line, rows)."""
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([TITLE])
    writer.writerow([f"填报单位（盖章）：{institution}"])
    writer.writerow(OFFICIAL_HEADER)
    for r in rows:
        writer.writerow([r.value(k) for k in KEYS])
    return buf.getvalue().encode(encoding)


def make_ole2(streams: dict[str, bytes]) -> bytes:
    """An OLE2 compound file whose root storage holds ``streams`` (each padded to 4 KiB, so none
    lives in the mini stream), chained as right siblings: enough for readers of the directory."""
    import struct

    end, free, fatsect, nostream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    bodies = [data.ljust(4096, b"\0") for data in streams.values()]
    dir_sectors = (len(streams) + 1 + 3) // 4
    fat = [fatsect] + [s + 1 if s < dir_sectors else end for s in range(1, dir_sectors + 1)]
    starts = []
    for body in bodies:
        first, count = len(fat), -(-len(body) // 512)
        starts.append(first)
        fat += [first + k + 1 for k in range(count - 1)] + [end]
    assert len(fat) <= 128, "one FAT sector only"
    fat += [free] * (128 - len(fat))

    def entry(name: str, kind: int, right: int, child: int, start: int, size: int) -> bytes:
        raw = name.encode("utf-16-le") + b"\0\0" if name else b""
        return (raw.ljust(64, b"\0") + struct.pack("<HBB", len(raw), kind, 1)
                + struct.pack("<III", nostream, right, child) + b"\0" * 36 + struct.pack("<IQ", start, size))

    names = list(streams)
    directory = entry("Root Entry", 5, nostream, 1 if names else nostream, end, 0) + b"".join(
        entry(name, 2, i + 2 if i + 1 < len(names) else nostream, nostream, starts[i], len(bodies[i]))
        for i, name in enumerate(names))
    directory = directory.ljust(dir_sectors * 512, b"\0")
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16 + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
              + b"\0" * 6 + struct.pack("<9I", 0, 1, 1, 0, 4096, end, 0, end, 0)
              + struct.pack("<109I", 0, *([free] * 108)))
    return header + struct.pack("<128I", *fat) + directory + b"".join(bodies)


def with_formulas(xlsx: bytes, formulas: dict[str, tuple[str, str]], sheet: str = "xl/worksheets/sheet1.xml") -> bytes:
    """``xlsx`` with each named cell (``"C4"``) replaced by a formula and the text value a
    spreadsheet app last computed for it, as Excel or WPS would save it."""
    import re
    import zipfile
    from xml.sax.saxutils import escape

    src = zipfile.ZipFile(io.BytesIO(xlsx))
    xml = src.read(sheet).decode("utf-8")
    for coordinate, (formula, cached) in formulas.items():
        cell = f'<c r="{coordinate}" t="str"><f>{escape(formula)}</f><v>{escape(cached)}</v></c>'
        xml, n = re.subn(rf'<c r="{coordinate}"[^>]*?(/>|>.*?</c>)', lambda _m: cell, xml, count=1)
        assert n == 1, f"no cell {coordinate} to replace"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, xml.encode("utf-8") if item.filename == sheet else src.read(item.filename))
    return out.getvalue()
