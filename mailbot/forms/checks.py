"""Checks of an Annex 3 form: an ordered table of small named checks.

Like GNU Mailman's rules, each check is a named function; :data:`ROW_CHECKS` run over every
normalised nominee row, :data:`FORM_CHECKS` over the form as a whole.  Each yields
:class:`~mailbot.forms.model.Finding` objects with a stable ``code`` and a Chinese message a
teacher can act on; row findings name the row, the teacher (``第5行（张三）``) and the column label
*as printed in that file*.  Identity numbers and phones are always masked in messages.  A row the
sender must delete (a certificate not run this time, the later copy of a duplicate) gets only
that finding: nothing else on it needs fixing.

``check_form(reading, rules)`` turns a :class:`FormReading` into a :class:`FormVerdict`;
``judge_file(data, filename, rules)`` reads the file first and turns reader errors into verdicts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mailbot.forms.emails import check_email
from mailbot.errors import NotAnnex3, UnreadableForm
from mailbot.annex3 import OFFICIAL_LABELS
from mailbot.forms.model import (
    CellValue,
    Finding,
    FormReading,
    FormRow,
    FormVerdict,
    Outcome,
    RowVerdict,
)
from mailbot.forms.identity import IdProblem, age_on, check_id_number, gender_from_id
from mailbot.forms.institution_kind import secondary_vocational_keyword
from mailbot.limits import DEFAULT_LIMITS, Limits
from mailbot.masking import mask_id, mask_phone, mask_text
from mailbot.normalize import (
    clean_text,
    compact,
    normalize_email,
    normalize_gender,
    normalize_id_number,
    normalize_name,
    normalize_phone,
)
from mailbot.forms.phones import is_contact_phone, is_landline, is_mainland_mobile
from mailbot.forms.program_match import ProgramMatch, match_program
from mailbot.rules import CampaignRules

# Stable finding codes (the reader's own codes come on top for not_annex3/unreadable).
REQUIRED_MISSING = "required_missing"
ID_INVALID_LENGTH = "id_invalid_length"
ID_INVALID_CHARACTERS = "id_invalid_characters"
ID_INVALID_CHECKSUM = "id_invalid_checksum"
ID_INVALID_BIRTHDATE = "id_invalid_birthdate"
ID_STORED_AS_NUMBER = "id_stored_as_number"
GENDER_MISMATCH = "gender_mismatch"
GENDER_INVALID = "gender_invalid"
PHONE_INVALID = "phone_invalid"
PHONE_LANDLINE = "phone_landline"
EMAIL_INVALID = "email_invalid"
PROGRAM_UNKNOWN = "program_unknown"
PROGRAM_NOT_IN_CAMPAIGN = "program_not_in_campaign"
PROGRAM_AMBIGUOUS = "program_ambiguous"
DUPLICATE_IN_FORM = "duplicate_in_form"
DUPLICATE_ROW = "duplicate_row"
# Findings whose fix is deleting the row: a row carrying one is told nothing else.
DELETE_ROW_CODES = frozenset({PROGRAM_NOT_IN_CAMPAIGN, DUPLICATE_ROW})
MISSING_COLUMN = "missing_column"
EMPTY_FORM = "empty_form"
INSTITUTION_MISSING = "institution_missing"
CONTACT_PHONE_INVALID = "contact_phone_invalid"
SECONDARY_VOCATIONAL_SCHOOL = "secondary_vocational_school"

_SCIENTIFIC_RE = re.compile(r"^\d(?:\.\d+)?E\+?\d+$", re.IGNORECASE)
_NAME_SHOWN = 20  # characters of a teacher's name shown in a finding


@dataclass(frozen=True)
class NormalizedRow:
    """One nominee row with every value normalised; ``source`` keeps the cells as read."""

    row: int
    program: str
    name: str
    gender: str
    position: str
    email: str
    id_number: str
    phone: str
    match: ProgramMatch
    source: FormRow

    def value(self, key: str) -> str:
        return str(getattr(self, key, ""))

    @property
    def who(self) -> str:
        """``第5行（张三）``: the row and the teacher, as findings name them (numbers masked)."""
        return self.who_and("")

    def who_and(self, extra: str) -> str:
        """``第5行（张三，extra）``; without a name ``第5行（extra）``."""
        name = mask_text(self.name)
        if len(name) > _NAME_SHOWN:
            name = name[:_NAME_SHOWN] + "…"
        inside = "，".join(part for part in (name, extra) if part)
        return f"第{self.row}行（{inside}）" if inside else f"第{self.row}行"

    @property
    def program_shown(self) -> str:
        """The program as the sender should recognise it: its short name when matched."""
        return self.match.program.short_name if self.match.program else self.program

    def cell(self, key: str) -> CellValue | None:
        return self.source.cells.get(key)


@dataclass(frozen=True)
class CheckContext:
    """What a check may look at besides its row."""

    rules: CampaignRules
    reading: FormReading
    rows: tuple[NormalizedRow, ...]
    id_rows: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def missing_columns(self) -> frozenset[str]:
        return frozenset(self.reading.missing_columns)

    def label(self, key: str) -> str:
        """The column label as printed in this file, else the official one."""
        return self.reading.labels.get(key) or OFFICIAL_LABELS.get(key, key)

    def finding(self, code: str, message: str, row: NormalizedRow, key: str) -> Finding:
        cell = row.cell(key)
        return Finding(
            code=code,
            message=message,
            row=row.row,
            column=self.label(key),
            coordinate=cell.coordinate if cell else "",
        )


RowCheckFn = Callable[[NormalizedRow, CheckContext], Iterable[Finding]]
FormCheckFn = Callable[[CheckContext], Iterable[Finding]]


@dataclass(frozen=True)
class RowCheck:
    name: str
    description: str
    fn: RowCheckFn


@dataclass(frozen=True)
class FormCheck:
    name: str
    description: str
    fn: FormCheckFn


# --------------------------------------------------------------------------- normalising


def normalize_row(row: FormRow, rules: CampaignRules) -> NormalizedRow:
    program = clean_text(row.text("program"))
    return NormalizedRow(
        row=row.row,
        program=program,
        name=normalize_name(row.text("name")),
        gender=normalize_gender(row.text("gender")),
        position=clean_text(row.text("position")),
        email=normalize_email(row.text("email")),
        id_number=normalize_id_number(row.text("id_number")),
        phone=normalize_phone(row.text("phone")),
        match=match_program(program, rules),
        source=row,
    )


def is_blank(row: FormRow) -> bool:
    """A template row: nothing but (maybe) its 序号."""
    return all(not compact(c.text) for k, c in row.cells.items() if k != "seq")


# --------------------------------------------------------------------------- row checks


def _filled(row: NormalizedRow, ctx: CheckContext, key: str) -> bool:
    return bool(row.value(key)) and key not in ctx.missing_columns


def check_required(row: NormalizedRow, ctx: CheckContext) -> Iterator[Finding]:
    for key in ctx.rules.form.required_columns:
        if key in ctx.missing_columns or row.value(key):
            continue
        label = ctx.label(key)
        yield ctx.finding(REQUIRED_MISSING, f"{row.who}“{label}”未填写，请补充。", row, key)


def check_program(row: NormalizedRow, ctx: CheckContext) -> Iterator[Finding]:
    if not _filled(row, ctx, "program") or row.match.matched:
        return
    rules, label, n = ctx.rules, ctx.label("program"), len(ctx.rules.programs)
    if row.match.outside:
        yield ctx.finding(
            PROGRAM_NOT_IN_CAMPAIGN,
            f"{row.who}“{label}”填写的“{row.program}”不在本次开设的{n}个证书培训项目之内。"
            f"通知说明：“{rules.outside_programs.explanation}”"
            f"该项目无需通过本邮箱报名，请从本表中删除这一行。",
            row, "program",
        )
        return
    if row.match.ambiguous:
        names = "、".join(f"“{p.name}”" for p in row.match.ambiguous)
        yield ctx.finding(
            PROGRAM_AMBIGUOUS,
            f"{row.who}“{label}”填写的“{row.program}”不能确定是哪一个证书培训项目"
            f"（本次开设的项目中与之相符的有：{names}），请填写要报项目的全称。",
            row, "program",
        )
        return
    if row.match.suggestions:
        names = "、".join(f"“{p.name}”" for p in row.match.suggestions)
        hint = f"您是否要报：{names}？"
    else:
        hint = ""
    listed = "、".join(p.short_name for p in rules.programs)
    yield ctx.finding(
        PROGRAM_UNKNOWN,
        f"{row.who}“{label}”填写的“{row.program}”不是本次开设的{n}个证书培训项目之一。"
        f"{hint}请填写以下{n}个项目之一（写简称即可）：{listed}。",
        row, "program",
    )


def check_gender(row: NormalizedRow, ctx: CheckContext) -> Iterator[Finding]:
    if _filled(row, ctx, "gender") and row.gender not in ("男", "女"):
        yield ctx.finding(
            GENDER_INVALID,
            f"{row.who}“{ctx.label('gender')}”填写为“{row.gender}”，请填写“男”或“女”。",
            row, "gender",
        )


def check_email_syntax(row: NormalizedRow, ctx: CheckContext) -> Iterator[Finding]:
    if _filled(row, ctx, "email") and check_email(row.email) is None:
        yield ctx.finding(
            EMAIL_INVALID,
            f"{row.who}“{ctx.label('email')}”“{mask_text(row.email)}”格式不正确"
            f"（应形如 name@example.com），请核对。",
            row, "email",
        )


def _looks_stored_as_number(row: NormalizedRow) -> bool:
    cell = row.cell("id_number")
    if _SCIENTIFIC_RE.match(row.id_number):
        return True
    return bool(cell and cell.was_number and row.id_number.isdigit() and len(row.id_number) > 15)


_ID_PROBLEMS: dict[IdProblem, tuple[str, str]] = {
    IdProblem.LENGTH: (ID_INVALID_LENGTH, "{where}“{masked}”共{length}位，身份证号应为18位，请核对。"),
    IdProblem.FORMAT: (ID_INVALID_CHARACTERS,
                       "{where}“{masked}”含有不应出现的字符：前17位应全部是数字，最后一位是数字或 X，请核对。"),
    IdProblem.BIRTHDATE: (ID_INVALID_BIRTHDATE, "{where}“{masked}”中的出生日期（第7至14位）不是有效日期，请核对。"),
    IdProblem.CHECKSUM: (ID_INVALID_CHECKSUM,
                         "{where}“{masked}”校验位不正确，可能有数字输错或前后颠倒，请对照身份证逐位核对。"),
}


def check_identity(row: NormalizedRow, ctx: CheckContext) -> Iterator[Finding]:
    if not _filled(row, ctx, "id_number"):
        return
    label, number = ctx.label("id_number"), row.id_number
    where = f"{row.who}“{label}”"
    if _looks_stored_as_number(row):
        shown = number if _SCIENTIFIC_RE.match(number) else mask_id(number)
        yield ctx.finding(
            ID_STORED_AS_NUMBER,
            f"{where}被 Excel 存成了数字（显示为 {shown}），身份证号超过15位的部分已被改成0，"
            f"号码已经损坏。请把该列单元格格式设置为“文本”，再重新逐个输入完整的18位身份证号"
            f"（不要从原表复制粘贴）。",
            row, "id_number",
        )
        return
    result = check_id_number(number)
    if result.problem is not None:
        code, template = _ID_PROBLEMS[result.problem]
        yield ctx.finding(code, template.format(where=where, masked=mask_id(number), length=len(number)),
                          row, "id_number")
    elif result.birth_date is not None:
        ident = ctx.rules.identity
        age = age_on(result.birth_date, ctx.rules.deadline.at.date())
        if not ident.min_age <= age <= ident.max_age:
            yield ctx.finding(
                ID_INVALID_BIRTHDATE,
                f"{where}“{mask_id(number)}”中的出生日期推算出的年龄不在{ident.min_age}至{ident.max_age}岁之间，"
                f"不像在职教师，请核对出生日期（第7至14位）。",
                row, "id_number",
            )


def check_gender_matches_id(row: NormalizedRow, ctx: CheckContext) -> Iterator[Finding]:
    if row.gender not in ("男", "女") or "id_number" in ctx.missing_columns:
        return
    if _looks_stored_as_number(row) or not check_id_number(row.id_number).ok:
        return
    expected = gender_from_id(row.id_number)
    if expected != row.gender:
        yield ctx.finding(
            GENDER_MISMATCH,
            f"{row.who}“{ctx.label('gender')}”填写为“{row.gender}”，但身份证号"
            f"“{mask_id(row.id_number)}”对应的性别为“{expected}”，请核对性别或身份证号。",
            row, "gender",
        )


def check_phone(row: NormalizedRow, ctx: CheckContext) -> Iterator[Finding]:
    if not _filled(row, ctx, "phone") or is_mainland_mobile(row.phone):
        return
    label = ctx.label("phone")
    if is_landline(row.phone):
        yield ctx.finding(
            PHONE_LANDLINE,
            f"{row.who}“{label}”“{mask_phone(row.phone)}”是座机号码，请填写本人的11位手机号码。",
            row, "phone",
        )
        return
    yield ctx.finding(
        PHONE_INVALID,
        f"{row.who}“{label}”“{mask_phone(row.phone)}”（{len(row.phone)}位）"
        f"不是有效的11位中国大陆手机号码，请填写本人手机号（不加区号、不填座机）。",
        row, "phone",
    )


def _same_program(a: NormalizedRow, b: NormalizedRow) -> bool:
    if a.match.program and b.match.program:
        return a.match.program.key == b.match.program.key
    return a.program == b.program


def check_duplicates(row: NormalizedRow, ctx: CheckContext) -> Iterator[Finding]:
    """The same identity number on two or more rows.  Same program: the first row stands and
    every later copy is to be deleted (``duplicate_row``).  Different programs (one program per
    person): every row names the others and their programs; the sender keeps the one it wants."""
    if not _filled(row, ctx, "id_number") or _looks_stored_as_number(row):
        return  # damaged numbers (…000) may collide without being the same person
    rows = ctx.id_rows.get(row.id_number, ())
    if len(rows) < 2:
        return
    others = [r for r in ctx.rows if r.row in rows and r.row != row.row]
    masked = mask_id(row.id_number)
    first = next(r for r in ctx.rows if r.row == rows[0])
    if first is not row and _same_program(first, row):
        yield ctx.finding(
            DUPLICATE_ROW,
            f"{row.who}与{first.who}的“{ctx.label('id_number')}”“{masked}”相同，所报项目同为"
            f"“{row.program_shown}”，是重复填写：请删除第{row.row}行（第{first.row}行保留）。",
            row, "id_number",
        )
        return
    different = [r for r in others if not _same_program(r, row)]
    if not different or not ctx.rules.campaign.one_program_per_person:
        return
    listed = "、".join(r.who_and(f"“{r.program_shown}”") for r in different)
    yield ctx.finding(
        DUPLICATE_IN_FORM,
        f"{row.who_and(f'“{row.program_shown}”')}与{listed}的“{ctx.label('id_number')}”“{masked}”相同。"
        f"每位教师只能报名一个证书培训项目：请只保留要报项目的一行，删除其余各行。",
        row, "id_number",
    )


ROW_CHECKS: tuple[RowCheck, ...] = (
    RowCheck("required", "every required column is filled in", check_required),
    RowCheck("program", "the program is one of the campaign's", check_program),
    RowCheck("gender", "gender is 男 or 女", check_gender),
    RowCheck("email", "email address syntax", check_email_syntax),
    RowCheck("id_number", "identity number: stored as text, length, birth date, check digit",
             check_identity),
    RowCheck("gender_matches_id", "gender agrees with the identity number", check_gender_matches_id),
    RowCheck("phone", "a valid mainland mobile", check_phone),
    RowCheck("duplicates", "an identity number appears once per form", check_duplicates),
)


# --------------------------------------------------------------------------- form checks


def check_missing_columns(ctx: CheckContext) -> Iterator[Finding]:
    for key in ctx.reading.missing_columns:
        if key not in ctx.rules.form.required_columns:
            continue
        label = OFFICIAL_LABELS.get(key, key)
        yield Finding(
            MISSING_COLUMN,
            f"表格缺少“{label}”列。请使用通知附件3《{ctx.rules.form.title}》的原表头，"
            f"不要删除或改名各列。",
            column=label,
        )


def check_institution(ctx: CheckContext) -> Iterator[Finding]:
    if ctx.rules.form.institution_required and not clean_text(ctx.reading.institution):
        yield Finding(
            INSTITUTION_MISSING,
            "表头“填报单位（盖章）”未填写，请填写学校全称。",
            column="填报单位（盖章）",
        )


def check_contact_phone(ctx: CheckContext) -> Iterator[Finding]:
    phone = clean_text(ctx.reading.contact_phone)
    if phone and not is_contact_phone(phone):
        yield Finding(
            CONTACT_PHONE_INVALID,
            f"表头“联系电话”“{mask_text(phone)}”不是有效的电话号码，请填写联系人的手机或座机号码。",
            column="联系电话",
        )


def check_not_empty(ctx: CheckContext) -> Iterator[Finding]:
    if not ctx.rows:
        yield Finding(EMPTY_FORM, "表格中没有填写任何参训教师信息，请填写后重新发送。")


FORM_CHECKS: tuple[FormCheck, ...] = (
    FormCheck("missing_columns", "every required column is in the header", check_missing_columns),
    FormCheck("institution", "填报单位 is filled in", check_institution),
    FormCheck("contact_phone", "联系电话 is a phone number when given", check_contact_phone),
    FormCheck("not_empty", "at least one nominee row", check_not_empty),
)


# --------------------------------------------------------------------------- verdicts


def redirect_finding(institution: str, keyword: str, rules: CampaignRules) -> Finding:
    p = rules.platform
    return Finding(
        SECONDARY_VOCATIONAL_SCHOOL,
        f"填报单位“{institution}”是中职学校（名称含“{keyword}”）。中职学校不通过邮箱报名，"
        f"请登录“{p.name}”（网址 {p.url}），选择“{p.menu}”相应项目推荐参训教师。",
        column="填报单位（盖章）",
    )


def _row_verdict(row: NormalizedRow, findings: tuple[Finding, ...]) -> RowVerdict:
    email = check_email(row.email) or row.email
    return RowVerdict(
        row=row.row,
        program=row.match.program.name if row.match.program else row.program,
        program_matched=row.match.matched,
        name=row.name,
        gender=row.gender,
        position=row.position,
        email=email,
        id_number=row.id_number,
        phone=row.phone,
        findings=findings,
    )


def _row_findings(row: NormalizedRow, ctx: CheckContext) -> tuple[Finding, ...]:
    """Every row check's findings; only the delete-the-row one when there is such a finding."""
    found = tuple(f for check in ROW_CHECKS for f in check.fn(row, ctx))
    delete = tuple(f for f in found if f.code in DELETE_ROW_CODES)
    return delete[:1] or found


def check_form(reading: FormReading, rules: CampaignRules) -> FormVerdict:
    """Run every form and row check over a reading and decide the outcome.

    ``redirect`` when 填报单位 is a secondary vocational school; else ``needs_correction`` when
    anything was found; else ``ok`` (which implies at least one row, see ``empty_form``)."""
    rows = tuple(normalize_row(r, rules) for r in reading.rows if not is_blank(r))
    id_rows: dict[str, list[int]] = {}
    for r in rows:
        if r.id_number and not _looks_stored_as_number(r) and not r.match.outside:  # outside: deleted
            id_rows.setdefault(r.id_number, []).append(r.row)
    ctx = CheckContext(rules, reading, rows, {k: tuple(v) for k, v in id_rows.items()})

    form_findings = [f for check in FORM_CHECKS for f in check.fn(ctx)]
    verdicts = tuple(_row_verdict(r, _row_findings(r, ctx)) for r in rows)
    institution = clean_text(reading.institution)
    keyword = secondary_vocational_keyword(institution, rules)
    if keyword is not None:
        outcome = Outcome.REDIRECT
        form_findings.insert(0, redirect_finding(institution, keyword, rules))
    elif form_findings or any(not v.ok for v in verdicts):
        outcome = Outcome.NEEDS_CORRECTION
    else:
        outcome = Outcome.OK
    return FormVerdict(
        filename=reading.filename,
        outcome=outcome,
        institution=institution,
        contact=normalize_name(reading.contact),
        contact_phone=normalize_phone(reading.contact_phone),
        form_findings=tuple(form_findings),
        rows=verdicts,
        reading=reading,
    )


def judge_file(
    data: bytes, filename: str, rules: CampaignRules, limits: Limits = DEFAULT_LIMITS
) -> FormVerdict:
    """Read one attachment with ``mailbot.forms.reader.read_annex3`` and check it; reader errors
    become ``not_annex3``/``unreadable`` verdicts with one form finding (the reader's code)."""
    from mailbot.forms.reader import read_annex3  # the reader is the only module loading files

    try:
        reading = read_annex3(data, filename, limits=limits)
    except NotAnnex3 as exc:
        return FormVerdict(filename, Outcome.NOT_ANNEX3, form_findings=(Finding(exc.code, exc.message),))
    except UnreadableForm as exc:
        return FormVerdict(filename, Outcome.UNREADABLE, form_findings=(Finding(exc.code, exc.message),))
    return check_form(reading, rules)
