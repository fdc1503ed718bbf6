"""What a reply says, as plain data: the pipeline fills these in, ``mailbot.replies.render`` renders them.

Every personal number in these objects is already masked (``mailbot.masking``); the renderer
masks again anything that slips through, so a raw identity number or mobile never reaches mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

ReplyKind = Literal[
    "acceptance",
    "correction",
    "late",
    "redirect",
    "no_form",
    "scan_only",
    "unreadable",
    "not_annex3",
    "promotion",
    "held",
    "acknowledgement",
    "how_to_register",
]
REPLY_KINDS: tuple[str, ...] = get_args(ReplyKind)

NomineeStatus = Literal["seated", "waiting", "held", "rejected"]


@dataclass(frozen=True)
class NomineeLine:
    """One nominee as the reply shows them; ``waiting_position`` is 1-based when ``waiting``."""

    row: int | None
    name: str
    program: str
    host: str
    format: str  # e.g. "5天线下集中+5天线上"
    hours: int  # e.g. 80
    fee_cap: int  # yuan, e.g. 3200
    status: NomineeStatus
    waiting_position: int | None
    id_masked: str
    note: str = ""  # e.g. the conflict explanation


@dataclass(frozen=True)
class FindingLine:
    """One problem to report: ``row`` is the sheet row, ``column`` the label as printed."""

    file: str
    row: int | None
    column: str | None
    code: str
    message: str


@dataclass(frozen=True)
class ChangeLine:
    """On a resubmission: one difference from the institution's previous form."""

    kind: Literal["added", "removed", "changed"]
    name: str
    id_masked: str
    detail: str


@dataclass(frozen=True)
class ReplyContext:
    """Everything one reply needs.  ``received_at`` must be timezone-aware (shown in Beijing time)."""

    kind: ReplyKind
    to_address: str
    to_name: str
    original_subject: str
    original_message_id: str
    original_references: tuple[str, ...]
    received_at: datetime
    receipt: str  # e.g. "ZJ2020-000123"
    institution: str = ""
    contact: str = ""  # the form's 联系人
    contact_is_sender: bool = False  # the 联系人 wrote this mail: greeted by name when From has none
    campaign_title: str = ""
    deadline: datetime | None = None
    intake_address: str = ""
    platform_url: str = ""  # for redirect
    platform_path: str = ""  # for redirect, e.g. "指令性培训→省级骨干培训"
    late_contact: str = ""  # whom to contact after the deadline
    nominees: tuple[NomineeLine, ...] = ()
    findings: tuple[FindingLine, ...] = ()
    changes: tuple[ChangeLine, ...] = ()
    unreadable_reasons: tuple[FindingLine, ...] = ()
    findings_omitted: int = 0  # findings past reply.max_findings_listed, summed up in one line
    nominees_omitted: int = 0  # nominees past the listed ones, summed up in one line
    earlier_receipts: tuple[str, ...] = ()  # late mail: receipts of the school's list that stands
    scans_received: tuple[str, ...] = ()
    stamp_required: bool = False
    correction_workbooks: tuple[tuple[str, bytes], ...] = ()  # (filename, xlsx bytes)
    help_contact: str = ""  # whom to ask about anything else (defaults to late_contact in text)
    signature: str = ""  # closing line; the templates have a default
    notes: tuple[str, ...] = ()  # lines on what this mail could not change in the school's list
    resend_closed: bool = False  # received too close to the deadline to fix and send again
    lead: tuple[str, ...] = ()  # lines of their own before the list (e.g. "this mail replaced your list")
    programs: tuple[tuple[str, str], ...] = ()  # (program, host) for how_to_register
    question_forwarded: bool = False  # the mail also asked something: passed to staff, said in the reply
    may_change_list: bool = True  # sent by the school's contact of record: a later full list replaces

    def __post_init__(self) -> None:
        if self.kind not in REPLY_KINDS:
            raise ValueError(f"unknown reply kind {self.kind!r}")
        for label, value in (("received_at", self.received_at), ("deadline", self.deadline)):
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{label} must be timezone-aware")


# --- notices about a school's list ------------------------------------------------------------

NoticeKind = Literal["other_sender", "list_changed"]


@dataclass(frozen=True)
class SchoolNotice:
    """A mail of mailbot's own about a school's list (template ``notice_<kind>``).

    ``other_sender``: to the contact of record, when another address wrote in the school's name
    (``sender``, ``receipt``, ``received_at``; counts only, never names).  ``list_changed``: to an
    address whose registrations a later mail of the contact of record withdrew or moved
    (``changes`` lists only that address's own registrations)."""

    kind: NoticeKind
    to_address: str
    institution: str
    sender: str  # the address whose mail caused the notice
    receipt: str
    received_at: datetime
    campaign_title: str = ""
    added: int = 0  # teachers that mail registered (seated, waiting or held)
    held: int = 0  # of those, held for staff
    asked: int = 0  # withdrawals or program changes it asked for and that were not applied
    kept: int = 0  # rows naming teachers already registered, left unchanged
    changes: tuple[ChangeLine, ...] = ()
    help_contact: str = ""

    def __post_init__(self) -> None:
        if self.received_at.utcoffset() is None:
            raise ValueError("received_at must be timezone-aware")


# --- the staff digest -------------------------------------------------------------------------

AttentionCategory = Literal[
    "failed", "quarantined", "reply_failed", "reply_unknown", "domain_mismatch", "conflict", "other",
    "other_sender", "over_demand", "too_many", "reader_failed", "late", "correction_open", "no_institution",
    "arrival_order", "withdrawal", "question", "change_request", "institution_missing",
]

NomineeChangeKind = Literal["seated", "waiting", "promoted", "withdrawn", "held"]


@dataclass(frozen=True)
class WaitingLine:
    """One name on a program's waiting list (identity number masked)."""

    position: int
    name: str
    id_masked: str
    institution: str
    receipt: str


@dataclass(frozen=True)
class ProgramSeats:
    """Seats of one program at digest time: seated of capacity, the waiting list, held count."""

    program: str
    host: str
    seated: int
    capacity: int
    waiting: int
    held: int = 0
    waiting_list: tuple[WaitingLine, ...] = ()

    @property
    def percent(self) -> int:
        """Seats taken, in whole percent of capacity (0..100), for the bar."""
        return min(100, round(100 * self.seated / self.capacity)) if self.capacity else 0


@dataclass(frozen=True)
class NomineeChange:
    """What happened to one nominee in the period (a ledger event), with school and receipt."""

    kind: NomineeChangeKind
    name: str
    id_masked: str
    institution: str
    program: str
    receipt: str
    at: datetime


@dataclass(frozen=True)
class AttentionItem:
    """One thing staff must look at.  ``ref`` points at the message or reply (a receipt);
    ``summary`` is a short masked Chinese sentence; ``since`` when it started (its age);
    ``institution`` the school, when known; ``item`` its number on the staff list (待办事项#N,
    what ``mailbot decide close|answer --item N`` takes), when it is one."""

    category: AttentionCategory
    summary: str
    ref: str = ""
    sender: str = ""
    since: datetime | None = None
    institution: str = ""
    item: int | None = None


@dataclass(frozen=True)
class SchoolLine:
    """A school that sent forms: how many nominees it has on the list and its latest receipt."""

    institution: str
    nominees: int
    receipt: str


@dataclass(frozen=True)
class PollError:
    """A failed poll: when, and a short Chinese summary (technical detail masked)."""

    at: datetime
    summary: str


@dataclass(frozen=True)
class DigestContext:
    """The staff digest.  Running totals (programs, schools, the staff list) are as of
    ``period_end``; ``outcome_counts`` (ordered ``(outcome, count)`` pairs, outcome being a
    pipeline outcome such as ``accepted``/``failed``), ``changes`` and ``poll_errors`` cover the
    period since the last digest."""

    campaign: str
    generated_at: datetime
    period_start: datetime
    period_end: datetime
    outcome_counts: tuple[tuple[str, int], ...] = ()
    programs: tuple[ProgramSeats, ...] = ()
    attention: tuple[AttentionItem, ...] = ()
    deadline: datetime | None = None
    chain_head: str = ""  # the audit log's head (grouped by 8), for `mailbot verify --head`
    sender_trust_configured: bool = True  # False: replies go to any From address (warned in the digest)
    replies_held: int = 0  # replies waiting in the outbox for the hourly reply budget
    reply_budget_per_hour: int = 0
    changes: tuple[NomineeChange, ...] = ()
    schools: tuple[SchoolLine, ...] = ()
    silent_schools: tuple[str, ...] = ()
    expected_schools: int = 0  # how many schools the rules expect (0: no list)
    last_poll_ok: datetime | None = None
    poll_errors: tuple[PollError, ...] = ()

    def __post_init__(self) -> None:
        for label in ("generated_at", "period_start", "period_end", "deadline", "last_poll_ok"):
            value = getattr(self, label)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{label} must be timezone-aware")


@dataclass(frozen=True)
class StaffAlertContext:
    """The short mail telling staff that new items are on the staff list (one per poll)."""

    campaign: str
    generated_at: datetime
    items: tuple[AttentionItem, ...]
    open_total: int  # open items on the list, these included
    more: int = 0  # new items beyond those listed (a flood): counted, listed in the digest

    def __post_init__(self) -> None:
        if self.generated_at.utcoffset() is None:
            raise ValueError("generated_at must be timezone-aware")


# --- the roster mailed to a host institution ---------------------------------------------------


@dataclass(frozen=True)
class RosterProgramCount:
    """One program on a host's roster: how many are seated and waiting."""

    program: str
    seated: int
    waiting: int


@dataclass(frozen=True)
class RosterNoticeContext:
    """The mail carrying a host institution its programs' roster (``mailbot rosters send``)."""

    campaign: str
    host: str
    contact: str
    programs: tuple[RosterProgramCount, ...]
    attachment_name: str
    generated_at: datetime
    help_contact: str = ""
    signature: str = ""

    def __post_init__(self) -> None:
        if self.generated_at.utcoffset() is None:
            raise ValueError("generated_at must be timezone-aware")


# --- staff decisions ------------------------------------------------------------------------

DecisionKind = Literal["admit", "withdraw", "substitute", "move", "contact", "contact_replaced", "answer"]


@dataclass(frozen=True)
class DecisionNotice:
    """A staff decision told to an address it affects (template ``notice_decision``).

    ``admit``/``withdraw``/``substitute``/``move``: to the address that registered the teacher and
    to the school's contact of record; ``nominees`` shows where each stands now (for ``substitute``
    the incoming teacher, ``replaced`` the one withdrawn).  ``contact``: to the new contact of record;
    ``contact_replaced``: to the old one.  ``answer``: staff's answer to a question (``answer``)."""

    kind: DecisionKind
    to_address: str
    institution: str
    decided_at: datetime
    reason: str = ""  # the staff's reason as they wrote it (masked when rendered)
    receipt: str = ""  # the mail the decision is about, when there is one
    nominees: tuple[NomineeLine, ...] = ()
    replaced: tuple[NomineeLine, ...] = ()
    from_program: str = ""  # for ``move``
    contact_address: str = ""  # for ``contact`` / ``contact_replaced``: the new contact of record
    answer: str = ""
    campaign_title: str = ""
    help_contact: str = ""

    def __post_init__(self) -> None:
        if self.decided_at.utcoffset() is None:
            raise ValueError("decided_at must be timezone-aware")
