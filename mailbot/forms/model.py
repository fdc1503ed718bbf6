"""Typed results passed between the form reader, the row checks and the rest of the pipeline.

The reader (``mailbot.forms.reader.read_annex3``) produces a :class:`FormReading`: what the form
says, cell by cell, with nothing judged yet.  The checks (``mailbot.forms.checks.check_form``)
turn it into a :class:`FormVerdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple



class Outcome(str, Enum):
    """Form-level outcome of reading and checking one file."""

    OK = "ok"
    NEEDS_CORRECTION = "needs_correction"
    REDIRECT = "redirect"
    NOT_ANNEX3 = "not_annex3"
    UNREADABLE = "unreadable"


class CellValue(NamedTuple):
    """One cell as read.

    ``text`` is the value as the sender sees it (cached value for formulas, integers without
    ``.0``), not yet normalised.  ``was_number`` is True when the spreadsheet stored a number
    (the reason an 18-digit identity number loses its last digits).  ``coordinate`` is the
    spreadsheet address (``"G5"``) used to highlight the cell in a correction workbook; for
    Word tables and CSV it is ``""``.

    A named tuple, not a frozen dataclass: one is built per cell of every sheet read, and a
    tuple is built in C (``tuple.__new__(CellValue, (text, False, coordinate))`` in the hot
    loops) where a frozen dataclass sets each field through ``object.__setattr__``.  It is
    immutable, compares, hashes and pickles by its three fields alike.
    """

    text: str
    was_number: bool = False
    coordinate: str = ""


@dataclass(frozen=True)
class FormRow:
    """One nominee row: ``row`` is the 1-based row number on the sheet (as the sender sees it)."""

    row: int
    cells: dict[str, CellValue]

    def text(self, key: str) -> str:
        cell = self.cells.get(key)
        return cell.text if cell else ""


@dataclass(frozen=True)
class FormReading:
    """Everything read from one Annex 3 file, unjudged.

    ``labels`` maps canonical field key -> label exactly as printed in this file's header row;
    keys of required columns absent from the header are in ``missing_columns``.
    """

    filename: str
    file_format: str  # "xlsx", "xls", "ods", "csv", "docx", ...
    sheet: str
    header_row: int
    labels: dict[str, str]
    rows: tuple[FormRow, ...]
    institution: str = ""
    contact: str = ""
    contact_phone: str = ""
    missing_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # reader remarks for staff logs (e.g. "picked sheet 2 of 3")


@dataclass(frozen=True)
class Finding:
    """One problem: a stable ``code`` and a Chinese ``message`` a teacher can act on.

    Row findings carry ``row`` (sheet row number) and ``column`` (label as printed on the form).
    """

    code: str
    message: str
    row: int | None = None
    column: str | None = None
    coordinate: str = ""


@dataclass(frozen=True)
class RowVerdict:
    """A checked nominee row with normalised values."""

    row: int
    program: str  # canonical program name when matched, else the text as written
    program_matched: bool
    name: str
    gender: str
    position: str
    email: str
    id_number: str  # normalised; never log or print it unmasked
    phone: str  # normalised 11-digit mobile when valid
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class FormVerdict:
    """The judged form: outcome, form-level findings and each row's verdict."""

    filename: str
    outcome: Outcome
    institution: str = ""
    contact: str = ""
    contact_phone: str = ""
    form_findings: tuple[Finding, ...] = ()
    rows: tuple[RowVerdict, ...] = ()
    reading: FormReading | None = field(default=None, compare=False, repr=False)

    @property
    def valid_rows(self) -> tuple[RowVerdict, ...]:
        return tuple(r for r in self.rows if r.ok)
