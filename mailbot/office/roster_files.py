"""The roster written as files staff and hosts open in a spreadsheet: CSV and xlsx.

Every value is written as text, and nothing in a roster can run as a formula: the names,
positions and emails come from senders' forms, and a cell such as ``=HYPERLINK(...)`` must
reach the host as the characters typed.

* CSV: English column names (:data:`~mailbot.office.rosters.COLUMNS`), every field quoted, and a
  value starting with ``= + - @``, tab or CR gets a leading ``'`` (OWASP's advice against CSV
  injection); the ``'`` is the only change to the value.
* xlsx: one sheet per program, the form's Chinese column labels (``mailbot.annex3``) plus
  Chinese labels for the columns the form does not have, statuses in Chinese.  Every value is
  a string cell (type ``s``, never ``f``) with the text number format, so identity numbers
  and phones keep leading zeros and a trailing X; a formula-looking one also gets Excel's
  quote prefix, so it stays text even when someone edits the cell.

This module and ``forms.sheet_sources`` (which reads CSV forms) are the two users of ``csv``;
this module and ``replies.correction_workbook`` (which patches the sender's own workbook) the
two users of openpyxl: writing a new all-text table is another job than highlighting cells
in a workbook we received (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import csv
import io

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill

from mailbot.annex3 import OFFICIAL_LABELS
from mailbot.office.rosters import COLUMNS, STATUS_LABELS, RosterLine

FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these may be run by a spreadsheet (OWASP CSV injection)."""

XLSX_LABELS: dict[str, str] = {
    "program": OFFICIAL_LABELS["program"],
    "host_institution": "承办单位",
    "institution": "填报单位",
    "name": OFFICIAL_LABELS["name"],
    "gender": OFFICIAL_LABELS["gender"],
    "position": OFFICIAL_LABELS["position"],
    "email": OFFICIAL_LABELS["email"],
    "id_number": OFFICIAL_LABELS["id_number"],
    "phone": OFFICIAL_LABELS["phone"],
    "status": "状态",
    "waitlist_position": "候补顺序",
    "arrived_at": "报名邮件到达时间",
    "receipt": "回执号",
}
_WIDTHS = {"program": 36, "host_institution": 22, "institution": 26, "email": 28, "id_number": 22,
           "phone": 15, "status": 14, "arrived_at": 20, "receipt": 26}
_HEADER_FILL = PatternFill(fill_type="solid", start_color="FFDDE6F0", end_color="FFDDE6F0")


def looks_like_formula(value: str) -> bool:
    return value.startswith(FORMULA_TRIGGERS)


def _values(line: RosterLine) -> dict[str, str]:
    """The line's values as text (no position: empty; time: ISO 8601 with its offset)."""
    return {
        **{c: getattr(line, c) for c in COLUMNS if c not in ("waitlist_position", "arrived_at")},
        "waitlist_position": "" if line.waitlist_position is None else str(line.waitlist_position),
        "arrived_at": line.arrived_at.isoformat(timespec="seconds"),
    }


def roster_csv(lines: list[RosterLine]) -> str:
    """The roster as CSV text (header, then one record per line; CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for line in lines:
        values = _values(line)
        writer.writerow(["'" + v if looks_like_formula(v) else v for v in (values[c] for c in COLUMNS)])
    return out.getvalue()


def roster_xlsx(sheets: list[tuple[str, list[RosterLine]]]) -> bytes:
    """The roster as an xlsx workbook, one sheet per ``(title, lines)``, header row frozen."""
    wb = Workbook()
    wb.remove(wb.active)
    for title, lines in sheets or [("名单", [])]:
        ws = wb.create_sheet(title)
        for col, key in enumerate(COLUMNS, start=1):
            cell = ws.cell(row=1, column=col, value=XLSX_LABELS[key])
            cell.font, cell.fill = Font(bold=True), _HEADER_FILL
            cell.alignment = Alignment(horizontal="center")
            ws.column_dimensions[cell.column_letter].width = _WIDTHS.get(key, 10)
        for r, line in enumerate(lines, start=2):
            values = _values(line)
            values["status"] = STATUS_LABELS.get(line.status, line.status)
            values["arrived_at"] = line.arrived_at.strftime("%Y-%m-%d %H:%M:%S")
            for col, key in enumerate(COLUMNS, start=1):
                if key == "waitlist_position":
                    if line.waitlist_position is not None:
                        ws.cell(row=r, column=col, value=line.waitlist_position)
                    continue
                text = ILLEGAL_CHARACTERS_RE.sub("", values[key])
                if not text:
                    continue
                cell = ws.cell(row=r, column=col, value=text)
                cell.data_type = "s"  # openpyxl types "=..." as a formula on assignment: undo it
                cell.number_format = "@"
                if looks_like_formula(text):
                    cell.quotePrefix = True
        ws.freeze_panes = "A2"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
