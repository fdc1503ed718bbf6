"""``mailbot replay --all --rules NEW.toml``: what would change if every stored message were
decided again under other rules.

The stored database is only read (opened read-only); every message is run through a fresh
:class:`~mailbot.pipeline.Intake` over a scratch state in a temporary directory, from its
stored raw mail, in arrival order (then UID), and the staff decisions that change seats are
applied again at the time they were taken.  Nothing is sent and the mailbox is not opened.
The result compares seats per program, each message's outcome and where each person stands.

Limits: a message whose raw mail was purged cannot be decided again (it is listed); a change
of a school's contact of record by staff is replayed with the school's current contact address
(events keep addresses masked).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mailbot.config import Settings
from mailbot.decisions import StaffDecisions
from mailbot.errors import DecisionRefused, StateError
from mailbot.mail.source import FetchedMessage
from mailbot.office.history import OUTCOME_WORDS, STATUS_WORDS
from mailbot.pipeline import Assessment, Intake
from mailbot.replies.render import STAFF_STATUS_LABELS, staff_status
from mailbot.rules import CampaignRules
from mailbot.state.ledger import SeatLedger
from mailbot.state.outbox import FolderTransport
from mailbot.state.store import State

#: staff decisions that change seats or who may change a list: applied again in the replay
REPLAYED = ("admit", "admit_late", "withdraw", "substitute", "move", "seats", "contact")

SEATED, WAITING = STAFF_STATUS_LABELS["seated"], STAFF_STATUS_LABELS["waiting"]


def _seats_words(seats: tuple[int, int, int]) -> str:
    """``计划名额内2/50，候补3``: seated of capacity, waiting."""
    return f"{SEATED}{seats[0]}/{seats[1]}，{WAITING}{seats[2]}"


@dataclass(frozen=True)
class Standing:
    """Where one person stands: program, status, waiting position."""

    program: str
    status: str
    position: int | None

    def words(self) -> str:
        if self.status == "waiting" and self.position:
            return f"{self.program}，{staff_status(self.status, self.position)}"
        return f"{self.program}，{STATUS_WORDS.get(self.status, self.status)}"


@dataclass
class WhatIf:
    """What differs between the stored state and the replay (empty lists: nothing)."""

    messages: int = 0
    people: int = 0
    seats: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]] = field(default_factory=list)
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # receipt, before, after
    nominees: list[tuple[str, Standing | None, Standing | None]] = field(default_factory=list)
    not_replayed: list[str] = field(default_factory=list)  # receipts whose raw mail is gone

    @property
    def unchanged(self) -> bool:
        return not (self.seats or self.outcomes or self.nominees)

    def lines(self, rules_name: str) -> list[str]:
        """The report as Chinese lines for staff (masked)."""
        head = f"按 {rules_name} 重新判定全部{self.messages}封邮件（按到达先后），涉及{self.people}名教师"
        out = [f"{head}：没有变化。" if self.unchanged else f"{head}，与现状相比："]
        moved = [(p, a, b) for p, a, b in self.seats if (a[0], a[2]) != (b[0], b[2])]
        if moved:
            out.append("名额：")
            out += [f"  {p}：{_seats_words(a)} → {_seats_words(b)}" for p, a, b in moved]
        quiet = [f"{p} {a[1]} → {b[1]}" for p, a, b in self.seats if (a[0], a[2]) == (b[0], b[2])]
        if quiet:
            out.append(f"名额数改变、{SEATED}和{WAITING}人数不变的项目：{'；'.join(quiet)}")
        if self.outcomes:
            out.append("邮件处理结果：")
            out += [f"  回执 {r}：{OUTCOME_WORDS.get(a, a)} → {OUTCOME_WORDS.get(b, b)}" for r, a, b in self.outcomes]
        if self.nominees:
            out.append("教师：")
            out += [f"  {who}：{a.words() if a else '未登记'} → {b.words() if b else '未登记'}"
                    for who, a, b in self.nominees]
        if self.not_replayed:
            out.append(f"原始邮件已清除、未能重新判定的邮件：{'、'.join(self.not_replayed)}")
        out.append("（仅为预演：数据库和邮箱均未改动，未发送任何邮件。）")
        return out


def _standings(state: State, ledger: SeatLedger) -> dict[str, tuple[str, Standing]]:
    """id_hash -> (who, standing of the person's latest registration)."""
    out: dict[str, tuple[str, Standing]] = {}
    # a person's latest active registration, else their latest one (withdrawn, conflict)
    for n in state.query("SELECT * FROM nominees ORDER BY status IN ('seated','waiting','held'), id"):
        position = ledger.waiting_position(n["id"]) if n["status"] == "waiting" else None
        who = f"{n['name'] or '姓名已清除'}（{n['id_masked']}，{n['institution']}）"
        out[n["id_hash"]] = (who, Standing(n["program"], n["status"], position))
    return out


def _seats(ledger: SeatLedger) -> dict[str, tuple[int, int, int]]:
    return {s["program"]: (s["seated"], s["capacity"], s["waiting"]) for s in ledger.program_summary()}


def replay_all(settings: Settings, current: CampaignRules, other: CampaignRules, log: Any) -> WhatIf:
    """Decide every stored message again under ``other`` in a scratch state; compare with the
    stored state (under ``current``).  Reads the stored database only."""
    stored = State.readonly(settings.db_path)
    try:
        with tempfile.TemporaryDirectory(prefix="mailbot-what-if-") as tmp:
            scratch = State(Path(tmp) / "state")
            try:
                return _compare(settings, stored, scratch, current, other, Path(tmp), log)
            finally:
                scratch.close()
    finally:
        stored.close()


def _compare(settings: Settings, stored: State, scratch: State, current: CampaignRules, other: CampaignRules,
             tmp: Path, log: Any) -> WhatIf:
    intake = Intake(settings, other, scratch, source=None, transport=FolderTransport(tmp / "outbox"),  # type: ignore[arg-type]
                    log=log, actor="replay")
    report = WhatIf()
    decisions = [e for e in stored.query("SELECT * FROM events WHERE kind = 'staff_decision' ORDER BY id")
                 if json.loads(e["detail"]).get("decision") in REPLAYED]
    mapped: dict[int, int] = {}  # stored message id -> scratch message id
    messages = list(stored.query("SELECT * FROM messages ORDER BY arrived_at, uid, id"))
    for msg in messages:
        while decisions and decisions[0]["at"] < msg["arrived_at"]:
            _apply_again(intake, stored, scratch, mapped, decisions.pop(0))
        if not msg["raw_path"] or not (stored.dir / msg["raw_path"]).is_file():
            report.not_replayed.append(msg["receipt"])
            continue
        released = mapped.get(int(msg["source_key"])) if msg["source"] == "release" else None
        fetched = FetchedMessage(source=msg["source"], uidvalidity=msg["uidvalidity"], uid=msg["uid"],
                                 key=str(released) if released is not None else msg["source_key"],
                                 arrived_at=datetime.fromisoformat(msg["arrived_at"]),
                                 raw=(stored.dir / msg["raw_path"]).read_bytes())
        try:
            assessment = intake.assess(fetched, released=released)
            mapped[msg["id"]] = intake.record(fetched, assessment)
        except StateError:
            raise
        except Exception as exc:  # noqa: BLE001 - as in Intake.handle: one message fails, not the replay
            mapped[msg["id"]] = intake.record(fetched, Assessment("failed", f"{type(exc).__name__}: {exc}", None, ""))
    for event in decisions:
        _apply_again(intake, stored, scratch, mapped, event)

    report.messages = len(messages)
    after = {r["id"]: r["outcome"] for r in scratch.query("SELECT id, outcome FROM messages")}
    for msg in messages:
        if msg["id"] in mapped and after[mapped[msg["id"]]] != msg["outcome"]:
            report.outcomes.append((msg["receipt"], msg["outcome"], after[mapped[msg["id"]]]))
    before_ledger = SeatLedger(stored, {p.name: p.seats or 0 for p in current.programs}, rules_version="")
    old, new = _standings(stored, before_ledger), _standings(scratch, intake.ledger)
    report.people = len(old.keys() | new.keys())
    for h in sorted(old.keys() | new.keys(), key=lambda k: (old.get(k) or new[k])[0]):
        a, b = old.get(h), new.get(h)
        if (a and a[1]) != (b and b[1]):
            report.nominees.append(((a or b)[0], a[1] if a else None, b[1] if b else None))  # type: ignore[index]
    seats_before, seats_after = _seats(before_ledger), _seats(intake.ledger)
    for program in [*seats_before, *(p for p in seats_after if p not in seats_before)]:
        a2, b2 = seats_before.get(program, (0, 0, 0)), seats_after.get(program, (0, 0, 0))
        if a2 != b2:
            report.seats.append((program, a2, b2))
    return report


def _apply_again(intake: Intake, stored: State, scratch: State, mapped: dict[int, int], event: dict[str, Any]) -> None:
    """One stored staff decision applied to the scratch state (skipped when it no longer applies,
    e.g. a held teacher who is not held under the other rules)."""
    d = json.loads(event["detail"])
    staff = event["actor"].removeprefix("staff:") or "staff"
    act = StaffDecisions(intake, staff)
    reason = d.get("reason") or "重放"
    try:
        kind = d["decision"]
        if kind == "admit":
            act.admit(d["id_hash"], reason)
        elif kind == "withdraw":
            act.withdraw(d["id_hash"], reason)
        elif kind == "move":
            act.move(d["id_hash"], d["to_program"], reason)
        elif kind == "seats":
            act.seats(d["program"], int(d["to"]), reason)
        elif kind == "substitute":
            new = next(stored.query("SELECT id_number, name FROM nominees WHERE id_hash = ? ORDER BY id DESC LIMIT 1",
                                    [d["new_id_hash"]]), None)
            if new and new["id_number"]:
                act.substitute(d["id_hash"], new["id_number"], new["name"] or "", reason)
        elif kind == "admit_late" and event["message"] in mapped:
            receipt = next(scratch.query("SELECT receipt FROM messages WHERE id = ?", [mapped[event["message"]]]))["receipt"]
            for h in d.get("id_hashes", []):
                act.admit_late(receipt, reason, only=h)
        elif kind == "contact":
            row = next(stored.query("SELECT address FROM school_contacts WHERE institution_key = ?",
                                    [d["institution_key"]]), None)
            if row:
                act.contact(d["institution"], row["address"], reason)
    except DecisionRefused:
        pass
