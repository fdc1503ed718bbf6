"""``mailbot rosters send``: each host institution gets its programs' roster by mail.

One mail per host (the ``[[hosts]]`` address in the rules), its programs' seated and waiting
nominees attached as xlsx (one sheet per program; held and withdrawn people are left out: the
host acts on the list).  :func:`plan_rosters` decides, host by host, what would happen; a dry
run prints the plan; :func:`queue_rosters` puts the mails in the outbox (kind ``roster``), so
they leave exactly once through the same send path as replies, and records a
``roster_queued`` event per host.

Sending again: a host whose roster is the same as in its last roster mail (same programs,
same content, same address, and that mail not ``failed``) is skipped as ``unchanged``; any change (a
promotion, a withdrawal, a corrected phone) sends the whole current roster again.  ``again``
re-sends unchanged rosters too.  A host without an address, or with a placeholder one, is
listed and not mailed.

``--program`` narrows a run to one program: its host gets a mail with that program only, and
"unchanged" compares with the last mail of exactly that program set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Literal

from mailbot.config import Settings
from mailbot.office.roster_files import roster_csv, roster_xlsx
from mailbot.office.rosters import ROSTER_STATUSES, STATUS_LABELS, RosterLine, by_program, roster_lines
from mailbot.replies.model import RosterNoticeContext, RosterProgramCount
from mailbot.replies.render import ReplyRenderer, build_notice_message, cn_date
from mailbot.rules import CampaignRules, Program
from mailbot.state.store import State, utc_now

SENT_STATUSES: tuple[str, ...] = ("seated", "waiting")
"""Who is on the roster a host receives."""

Action = Literal["send", "unchanged", "no_address", "placeholder", "empty"]


@dataclass(frozen=True)
class HostRoster:
    """What ``rosters send`` does for one host institution."""

    host: str
    contact: str
    address: str  # as written in the rules (mailed only when ``action`` is ``send``)
    programs: tuple[str, ...]
    counts: tuple[tuple[str, tuple[int, ...]], ...]  # per program: n per ROSTER_STATUSES, in order
    lines: tuple[RosterLine, ...]  # the people attached (seated and waiting)
    fingerprint: str
    action: Action

    def count(self, program: str, status: str) -> int:
        return dict(self.counts)[program][ROSTER_STATUSES.index(status)]


def _fingerprint(programs: tuple[str, ...], lines: list[RosterLine]) -> str:
    """Identifies a roster's content (not when it was made): programs and every attached value."""
    text = json.dumps(programs, ensure_ascii=False) + roster_csv(lines)
    return hashlib.sha256(text.encode()).hexdigest()


def _last_sent(state: State) -> dict[tuple[str, str, tuple[str, ...]], str]:
    """Per (host, address, programs): the fingerprint of the last roster mail that is not
    ``failed`` (a host whose address was corrected in the rules is a new recipient)."""
    last: dict[tuple[str, str, tuple[str, ...]], str] = {}
    for r in state.query(
            "SELECT e.detail, o.status FROM events e LEFT JOIN outbox o "
            "ON o.id = json_extract(e.detail, '$.outbox') WHERE e.kind = 'roster_queued' ORDER BY e.id"):
        detail = json.loads(r["detail"])
        key = (detail["host"], detail["to"], tuple(detail["programs"]))
        if r["status"] == "failed":
            last.pop(key, None)
        else:
            last[key] = detail["fingerprint"]
    return last


def plan_rosters(state: State, rules: CampaignRules, settings: Settings, *,
                 program: Program | None = None, again: bool = False) -> list[HostRoster]:
    """One :class:`HostRoster` per host institution (of ``program`` only, when given), in the
    order the rules first name them."""
    programs = [program] if program is not None else list(rules.programs)
    everyone = roster_lines(state, rules, settings.tz, program=program)
    previous = _last_sent(state)
    plan: list[HostRoster] = []
    for host in dict.fromkeys(p.host for p in programs):
        names = tuple(p.name for p in programs if p.host == host)
        mine = [line for line in everyone if line.program in names]
        attached = [line for line in mine if line.status in SENT_STATUSES]
        counts = tuple((name, tuple(sum(1 for line in mine if line.program == name and line.status == s)
                                    for s in ROSTER_STATUSES)) for name in names)
        entry = rules.host(host)
        written = entry.email if entry is not None else ""
        address = entry.address if entry is not None else ""
        fingerprint = _fingerprint(names, attached)
        action: Action
        if not attached:
            action = "empty"
        elif not written:
            action = "no_address"
        elif not address:
            action = "placeholder"
        elif not again and previous.get((host, address, names)) == fingerprint:
            action = "unchanged"
        else:
            action = "send"
        plan.append(HostRoster(host, entry.contact if entry is not None else "", written, names, counts,
                               tuple(attached), fingerprint, action))
    return plan


def attachment_name(host: str, when: datetime) -> str:
    return f"{host}-参训名单-{when:%Y%m%d}.xlsx"


def queue_rosters(state: State, rules: CampaignRules, settings: Settings, renderer: ReplyRenderer,
                  plan: list[HostRoster], *, actor: str) -> list[int]:
    """Queue a roster mail to every host planned ``send``; returns the outbox ids, one per
    host, each recorded as a ``roster_queued`` event in the same transaction."""
    now = datetime.now(timezone.utc).astimezone(settings.tz)
    version = f"{rules.campaign.id}@{rules.campaign.version}"
    ids: list[int] = []
    for h in (h for h in plan if h.action == "send"):
        sheets = by_program(rules, list(h.lines), always=h.programs)
        name = attachment_name(h.host, now)
        notice = RosterNoticeContext(
            campaign=rules.campaign.title, host=h.host, contact=h.contact, generated_at=now,
            programs=tuple(RosterProgramCount(p, h.count(p, "seated"), h.count(p, "waiting")) for p in h.programs),
            attachment_name=name, help_contact=rules.intake.help_contact)
        seated, waiting = (sum(h.count(p, s) for p in h.programs) for s in ("seated", "waiting"))
        rendered = renderer.render_page("roster_to_host", (
            f"【参训名单】{notice.campaign}：{h.host}（{STATUS_LABELS['seated']}{seated}人，"
            f"{STATUS_LABELS['waiting']}{waiting}人，{cn_date(now)}）"),
            {**{f.name: getattr(notice, f.name) for f in fields(notice)},
             "signature": notice.signature or f"{notice.campaign}报名工作组"})
        raw = build_notice_message(rendered, to_name=h.host, to_address=h.address,
                                   from_address=settings.reply.from_address, from_name=settings.reply.from_name,
                                   message_id_domain=settings.reply.message_id_domain,
                                   attachments=((name, roster_xlsx(sheets)),))
        with state.transaction():
            pk = state.insert("outbox", {
                "message": None, "kind": "roster", "to_address": h.address, "subject": rendered.subject,
                "reply_message_id": "", "raw": raw, "status": "queued", "next_attempt_at": utc_now(),
                "created_at": utc_now()})
            state.add_event("roster_queued", {
                "host": h.host, "to": h.address, "programs": list(h.programs), "outbox": pk,
                "counts": {p: dict(zip(ROSTER_STATUSES, n)) for p, n in h.counts}, "attached": len(h.lines),
                "fingerprint": h.fingerprint},
                actor=actor, rules_version=version)
        ids.append(pk)
    return ids
