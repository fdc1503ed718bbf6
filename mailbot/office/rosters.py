"""The roster: every nominee of the campaign as one line per person, for staff and hosts.

A line carries the person's full data (identity number and phone unmasked: the roster is the
staff's own copy and the host institutions' working list, see DECISIONS "Privacy"), their
program and its host institution, their status and waiting-list position, and the receipt of
the mail that nominated them.  A row refused as a conflict with another school is a finding
for staff, not a nominee: it is never on the roster.

Order: programs as numbered in the rules, then seated, held, waiting (by position),
withdrawn; within a status by the order the seats were asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from mailbot.errors import MailbotError
from mailbot.replies.render import STAFF_STATUS_LABELS
from mailbot.rules import CampaignRules, Program
from mailbot.state.store import State

ROSTER_STATUSES: tuple[str, ...] = ("seated", "held", "waiting", "withdrawn")
"""What a nominee can be (docs/SCHEMA.md, "Nominee statuses"), in roster order."""

STATUS_LABELS: dict[str, str] = {s: STAFF_STATUS_LABELS[s] for s in ROSTER_STATUSES}
"""The statuses in the staff's words (the digest's and the host mail's too)."""

COLUMNS: tuple[str, ...] = (
    "program", "host_institution", "institution", "name", "gender", "position", "email",
    "id_number", "phone", "status", "waitlist_position", "arrived_at", "receipt",
)
"""The roster's columns, in order (the CSV header)."""


class RosterError(MailbotError):
    """A roster request staff must correct (unknown program or status); the message is Chinese."""


@dataclass(frozen=True)
class RosterLine:
    """One nominee on the roster; ``arrived_at`` is when the nominating mail reached the mailbox."""

    program: str
    host_institution: str
    institution: str
    name: str
    gender: str
    position: str
    email: str
    id_number: str
    phone: str
    status: str
    waitlist_position: int | None
    arrived_at: datetime
    receipt: str


def find_program(rules: CampaignRules, text: str) -> Program:
    """The program staff mean by ``text``: its key, number, full or short name."""
    wanted = text.strip()
    for p in rules.programs:
        if wanted in (p.key, str(p.number), p.name, p.short_name):
            return p
    known = "；".join(f"{p.number}. {p.short_name}（{p.key}）" for p in rules.programs)
    raise RosterError(f"没有名为“{wanted}”的培训项目。可用的项目（编号、简称或代码均可）：{known}")


def check_status(status: str) -> str:
    """``status`` if it is a roster status, else a RosterError naming the valid ones."""
    if status not in ROSTER_STATUSES:
        valid = "、".join(f"{s}（{STATUS_LABELS[s]}）" for s in ROSTER_STATUSES)
        raise RosterError(f"没有“{status}”这种状态。可用的状态：{valid}")
    return status


_QUERY = """
SELECT n.program, n.institution, n.name, n.id_number, n.status, n.requested_at,
       f.gender, f.position, f.email, f.phone, m.receipt,
       row_number() OVER (PARTITION BY n.program, n.status
                          ORDER BY n.requested_at, n.request_uid, n.request_row, n.id) AS place
FROM nominees n
JOIN messages m ON m.id = n.message
LEFT JOIN form_rows f ON f.id = n.form_row
WHERE n.status IN ({statuses})
"""


def roster_lines(state: State, rules: CampaignRules, tz: tzinfo, *, program: Program | None = None,
                 statuses: tuple[str, ...] = ROSTER_STATUSES) -> list[RosterLine]:
    """The roster, optionally of one program and of some statuses only, in roster order."""
    for s in statuses:
        check_status(s)
    sql = _QUERY.format(statuses=", ".join("?" * len(statuses)))
    params: list[object] = list(statuses)
    if program is not None:
        sql += " AND n.program = ?"
        params.append(program.name)
    hosts = {p.name: p.host for p in rules.programs}
    numbers = {p.name: p.number for p in rules.programs}
    rows = sorted(state.query(sql, params), key=lambda r: (
        numbers.get(r["program"], len(numbers) + 1), r["program"], ROSTER_STATUSES.index(r["status"]),
        r["place"]))
    return [RosterLine(
        program=r["program"], host_institution=hosts.get(r["program"], ""), institution=r["institution"],
        name=r["name"] or "", gender=r["gender"] or "", position=r["position"] or "", email=r["email"] or "",
        id_number=r["id_number"] or "", phone=r["phone"] or "", status=r["status"],
        waitlist_position=r["place"] if r["status"] == "waiting" else None,
        arrived_at=datetime.fromisoformat(r["requested_at"]).astimezone(tz), receipt=r["receipt"],
    ) for r in rows]


def sheet_titles(rules: CampaignRules, programs: list[str]) -> list[str]:
    """A worksheet title per program (its short name: at most 31 characters, none of
    ``[]:*?/\\``, unique), in the order given."""
    short = {p.name: p.short_name for p in rules.programs}
    titles: list[str] = []
    for name in programs:
        base = "".join("_" if c in "[]:*?/\\" else c for c in short.get(name, name))[:28] or "名单"
        title, n = base, 2
        while title in titles:
            title, n = f"{base}_{n}", n + 1
        titles.append(title)
    return titles


def by_program(rules: CampaignRules, lines: list[RosterLine],
               always: tuple[str, ...] = ()) -> list[tuple[str, list[RosterLine]]]:
    """The lines grouped per program as ``(sheet title, lines)``, programs in roster order;
    the programs in ``always`` get a sheet even when empty."""
    order = [p.name for p in rules.programs if p.name in always]
    for line in lines:
        if line.program not in order:
            order.append(line.program)
    numbers = {p.name: p.number for p in rules.programs}
    order.sort(key=lambda name: (numbers.get(name, len(numbers) + 1), name))
    titles = sheet_titles(rules, order)
    return [(title, [line for line in lines if line.program == name]) for title, name in zip(titles, order)]
