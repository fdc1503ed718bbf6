"""The seat ledger: seats per program, first come first served, waiting lists, replacement.

Order is by arrival time of the mail that asked (server INTERNALDATE), ties by UID, then by
sheet row.  A mail that arrives after others but with an earlier arrival time (moved back from a
junk folder, restored after an outage) takes only free seats: nobody already seated is moved;
where it would have had a seat by its arrival time, its teacher is ``held`` for staff
(``SubmissionResult.held_by_arrival``).

A later form of the school's contact of record before the deadline replaces its earlier list
(rows matched by identity number; teachers missing from it are withdrawn and their seats go to
the head of the waiting list, reported for notification), unless it only adds: it is marked as
an addition (``adds_only``: 补报/补充/追加…) or names none of the teachers already registered.
An identity number already active at another school is a conflict: the row is not recorded as
a nominee, it comes back as a finding (``SubmissionResult.conflicts``); the first school keeps
its teacher as they were.

Only the school's contact of record (``mailbot.state.contacts``: the address that first
registered its teachers) may replace, shorten or change the list.  A form naming the school from
any other address only adds: the teachers it does not already have are registered, everything
else it would have changed is reported (``SubmissionResult.asked``) for staff.  A new teacher
beyond the school's reported demand for a program, and every new teacher of a mail adding more
than ``max_new`` at once, is ``held``: recorded, taking no seat, waiting for a staff decision.

Every change is an event in the hash-chained log.  All methods run inside the caller's
transaction (see ``State.transaction``).
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mailbot.state.contacts import contact_of_record, same_address, set_contact_of_record
from mailbot.state.store import State, utc_now

Status = Literal["seated", "waiting", "held", "withdrawn"]


def id_hash(id_number: str) -> str:
    """Hash of an identity number: lets the audit trail match people after personal data is purged."""
    return hashlib.sha256(id_number.encode()).hexdigest()


@dataclass(frozen=True)
class SeatRequest:
    """One valid form row asking for a seat."""

    id_number: str
    id_masked: str
    name: str
    program: str
    row: int
    form_row: int | None = None


@dataclass(frozen=True)
class Placement:
    """Where a requested nominee stands after the submission."""

    request: SeatRequest
    status: Status
    waiting_position: int | None = None
    note: str = ""
    nominee: int | None = None


@dataclass(frozen=True)
class Change:
    kind: Literal["added", "removed", "changed"]
    name: str
    id_masked: str
    detail: str


@dataclass(frozen=True)
class Promotion:
    """A waiting nominee who got a seat because someone else's was freed."""

    nominee: int
    name: str
    id_masked: str
    program: str
    institution: str
    sender: str
    message: int


@dataclass(frozen=True)
class Affected:
    """A teacher registered by another address whose registration this mail withdrew or moved
    (that address is told)."""

    nominee: int
    name: str
    id_masked: str
    program: str
    sender: str
    message: int
    change: Change


@dataclass(frozen=True)
class Conflict:
    """A row whose identity number another school registered first (or that this mail repeats:
    ``other_nominee`` None): a finding, not a nominee.  ``other_*`` is for staff only; a reply
    never names the other school."""

    request: SeatRequest
    other_nominee: int | None
    other_institution: str = ""
    other_program: str = ""
    other_message: int | None = None


@dataclass
class SubmissionResult:
    placements: list[Placement] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    promotions: list[Promotion] = field(default_factory=list)
    resubmission: bool = False  # the institution already had nominees before this form
    contact: str = ""  # the school's contact of record after this mail ('' when none yet)
    by_contact: bool = True  # the sender is (or just became) the contact of record
    asked: list[Change] = field(default_factory=list)  # changes asked for but not applied: staff decide
    kept: int = 0  # rows naming teachers another address registered: left as they are, not listed
    others_affected: list[Affected] = field(default_factory=list)
    held_whole: bool = False  # more than ``max_new`` new teachers: every one of them is held
    new_teachers: int = 0  # teachers of this mail the school did not have before
    conflicts: list[Conflict] = field(default_factory=list)
    addition: bool = False  # the mail only adds: nobody missing from it was withdrawn or asked for
    held_by_arrival: list[Placement] = field(default_factory=list)  # earlier by time than seated ones
    held_unnamed: bool = False  # the form names no school: every new teacher is held

    @property
    def withdrawn(self) -> list[Change]:
        """Teachers this mail withdrew or moved, the sender's own and other addresses' alike."""
        return [c for c in self.changes if c.kind != "added"] + [a.change for a in self.others_affected]

    @property
    def held(self) -> list[Placement]:
        return [p for p in self.placements if p.status == "held"]


@dataclass
class _ProgramCounts:
    """One program's seated and waiting nominees as far as the ledger needs them: counts, the
    latest arrival among the seated, the last of the waiting list (its order key)."""

    seated: int
    seated_last: str | None  # max requested_at of the seated (None: nobody seated)
    waiting: int
    waiting_last: tuple[str, int, int, int] | None  # (requested_at, uid, row, id) of the last waiting


_COUNTS_SQL = (
    "SELECT (SELECT count(*) FROM nominees WHERE program = ?1 AND status = 'seated'), "
    "(SELECT max(requested_at) FROM nominees WHERE program = ?1 AND status = 'seated'), "
    "(SELECT count(*) FROM nominees WHERE program = ?1 AND status = 'waiting'), "
    "(SELECT json_array(requested_at, request_uid, request_row, id) FROM nominees "
    " WHERE program = ?1 AND status = 'waiting' "
    " ORDER BY requested_at DESC, request_uid DESC, request_row DESC, id DESC LIMIT 1)")

_COUNTS: "weakref.WeakKeyDictionary[State, tuple[int, dict[str, _ProgramCounts]]]" = weakref.WeakKeyDictionary()
"""Per state connection: the programs' counts, valid for one ``State.generation`` (nobody else
committed, nothing rolled back) and only read inside a transaction, which holds the write
lock.  Every ledger on the connection keeps them current as it inserts; a status change drops
its program's entry, read again when next needed."""


class SeatLedger:
    """Seat allocation over the ``nominees`` table."""

    def __init__(self, state: State, capacities: Mapping[str, int], *, rules_version: str,
                 actor: str = "daemon") -> None:
        self.state = state
        self.db = state.db
        self.capacities = {**capacities, **decided_seats(state)}  # staff decisions win
        self.rules_version = rules_version
        self.actor = actor
        # Only while one apply_submission runs: the waiting positions of the nominees it
        # appended at the end of a waiting list (valid while nobody ahead of them moves), the
        # statuses it gave, and the first active nominee elsewhere per identity-number hash.
        self._appended: dict[int, int] = {}
        self._given: dict[int, str] = {}
        self._moved = False
        self._elsewhere: dict[str, dict[str, Any]] | None = None
        self._data_version = self._version()

    def _version(self) -> int:
        return int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])

    def catch_up(self) -> None:
        """Take in seat decisions another process (a staff command) committed since the last
        call; one PRAGMA when nobody else wrote (see ``mailbot.state.lock``).  The dict is
        updated in place: a :class:`StaffDecisions` shares it."""
        version = self._version()
        if version != self._data_version:
            self._data_version = version
            self.capacities.update(decided_seats(self.state))

    # -- queries --------------------------------------------------------------------------
    def _active_for_institution(self, institution_key: str) -> dict[str, dict[str, Any]]:
        rows = self.state.query(
            "SELECT * FROM nominees WHERE institution_key = ? AND status IN ('seated','waiting','held')",
            [institution_key])
        return {r["id_hash"]: r for r in rows}

    def _active_elsewhere(self, idh: str, institution_key: str) -> dict[str, Any] | None:
        if self._elsewhere is not None:
            return self._elsewhere.get(idh)
        rows = list(self.state.query(
            "SELECT * FROM nominees WHERE id_hash = ? AND institution_key != ? "
            "AND status IN ('seated','waiting','held') ORDER BY id LIMIT 1", [idh, institution_key]))
        return rows[0] if rows else None

    def _load_elsewhere(self, hashes: set[str], institution_key: str) -> dict[str, dict[str, Any]]:
        """``_active_elsewhere`` for many hashes in one read per 500 (first nominee by id)."""
        found: dict[str, dict[str, Any]] = {}
        ordered = sorted(hashes)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start:start + 500]
            for r in self.state.query(
                    f"SELECT * FROM nominees WHERE id_hash IN ({','.join('?' * len(chunk))}) AND institution_key != ? "
                    "AND status IN ('seated','waiting','held') ORDER BY id", [*chunk, institution_key]):
                found.setdefault(r["id_hash"], r)
        return found

    def _counts(self, program: str) -> _ProgramCounts | None:
        """The program's counts, kept in memory across transactions (None outside one)."""
        if not self.state.in_transaction:
            return None
        generation = self.state.generation
        entry = _COUNTS.get(self.state)
        if entry is None or entry[0] != generation:
            entry = (generation, {})
            _COUNTS[self.state] = entry
        counts = entry[1].get(program)
        if counts is None:
            seated, seated_last, waiting, last = self.db.conn.execute(_COUNTS_SQL, [program]).fetchone()
            counts = _ProgramCounts(int(seated), seated_last, int(waiting),
                                    tuple(json.loads(last)) if last else None)  # type: ignore[arg-type]
            entry[1][program] = counts
        return counts

    def _forget_counts(self, program: str) -> None:
        entry = _COUNTS.get(self.state)
        if entry is not None:
            entry[1].pop(program, None)
        self._appended.clear()
        self._moved = True

    def seated_count(self, program: str) -> int:
        counts = self._counts(program)
        if counts is not None:
            return counts.seated
        return int(self.db.conn.execute(
            "SELECT count(*) FROM nominees WHERE program = ? AND status = 'seated'", [program]).fetchone()[0])

    def waiting_position(self, nominee: int) -> int | None:
        return self._standing(nominee)[1]

    def status_of(self, nominee: int) -> str:
        return next(self.state.query("SELECT status FROM nominees WHERE id = ?", [nominee]))["status"]

    def _standing(self, nominee: int) -> tuple[str, int | None]:
        """(status, 1-based waiting position or None) of one nominee: one read, plus a count
        when waiting."""
        status, program, requested_at, uid, row = self.db.conn.execute(
            "SELECT status, program, requested_at, request_uid, request_row FROM nominees WHERE id = ?",
            [nominee]).fetchone()
        if status != "waiting":
            return status, None
        ahead = self.db.conn.execute(
            "SELECT count(*) FROM nominees WHERE program = ? AND status = 'waiting' AND "
            "(requested_at, request_uid, request_row, id) < (?, ?, ?, ?)",
            [program, requested_at, uid, row, nominee]).fetchone()[0]
        return status, int(ahead) + 1

    def _known_standings(self, nominees: list[int]) -> dict[int, tuple[str, int | None]] | None:
        """The standings of this submission's nominees without reading them, when nothing moved
        since it gave them their statuses and each waiting one was appended at the end of its
        list (a backlog in arrival order); None otherwise."""
        if self._moved:
            return None
        out: dict[int, tuple[str, int | None]] = {}
        for pk in nominees:
            status = self._given.get(pk)
            if status is None:
                return None
            if status == "waiting":
                position = self._appended.get(pk)
                if position is None:
                    return None
                out[pk] = (status, position)
            else:
                out[pk] = (status, None)
        return out

    def _standings(self, nominees: list[int]) -> dict[int, tuple[str, int | None]]:
        """(status, 1-based waiting position or None) of many nominees at once: their statuses
        in one read, then each touched program's waiting list read once, in order.  Linear in
        the rows and the lists (one count per row made a 10,000-row form quadratic)."""
        out: dict[int, tuple[str, int | None]] = {}
        waiting: dict[str, list[int]] = {}
        for start in range(0, len(nominees), 500):
            chunk = nominees[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for pk, status, program in self.db.conn.execute(
                    f"SELECT id, status, program FROM nominees WHERE id IN ({marks})", chunk):
                out[pk] = (status, None)
                if status == "waiting":
                    waiting.setdefault(program, []).append(pk)
        for program, pks in waiting.items():
            wanted = set(pks)
            rows = self.db.conn.execute(
                "SELECT id FROM nominees WHERE program = ? AND status = 'waiting' "
                "ORDER BY requested_at, request_uid, request_row, id", [program])
            for position, (pk,) in enumerate(rows, start=1):
                if pk in wanted:
                    out[pk] = ("waiting", position)
        return out

    def program_summary(self) -> list[dict[str, Any]]:
        """Seats per program: capacity, seated, waiting (for the digest)."""
        counts = {(r["program"], r["status"]): r["n"] for r in self.state.query(
            "SELECT program, status, count(*) AS n FROM nominees GROUP BY program, status")}
        return [{"program": p, "capacity": cap, "seated": counts.get((p, "seated"), 0),
                 "waiting": counts.get((p, "waiting"), 0)} for p, cap in self.capacities.items()]

    def _seated_after(self, program: str, arrived_at: str) -> bool:
        """Whether a seated teacher of ``program`` has a mail that arrived later than ``arrived_at``."""
        counts = self._counts(program)
        if counts is not None:
            return counts.seated_last is not None and counts.seated_last > arrived_at
        return 0 < int(self.db.conn.execute(
            "SELECT count(*) FROM nominees WHERE program = ? AND status = 'seated' AND requested_at > ?",
            [program, arrived_at]).fetchone()[0])

    def _hold_reason(self, institution_key: str, program: str, demand: Mapping[str, int] | None,
                     held_whole: bool, unnamed: bool = False) -> str:
        """Why a new teacher is held for staff instead of taking a seat ('' when not)."""
        if unnamed:
            return "the form names no school (blank 填报单位)"
        if held_whole:
            return "too many new teachers in one mail"
        if demand is not None and self._active_for_demand(institution_key, program) >= demand.get(program, 0):
            return "over the school's reported demand"
        return ""

    # -- changes --------------------------------------------------------------------------
    def record_programs(self, hosts: Mapping[str, str]) -> bool:
        """Write the rules' programs (host, seats, order) into ``programs`` when they differ
        from what is there, with a ``programs_recorded`` event; returns whether they changed.
        The roster and program-fill views read hosts and seats from this table."""
        want = [{"name": name, "host_institution": hosts.get(name, ""), "seats": seats, "position": i}
                for i, (name, seats) in enumerate(self.capacities.items(), start=1)]
        have = list(self.state.query(
            "SELECT name, host_institution, seats, position FROM programs ORDER BY position"))
        if have == want:
            return False
        self.db.execute("DELETE FROM programs")
        now = utc_now()
        for row in want:
            self.state.insert("programs", {**row, "rules_version": self.rules_version, "updated_at": now})
        self._event("programs_recorded", {"programs": [[r["name"], r["host_institution"], r["seats"]]
                                                       for r in want]}, message=None, nominee=None)
        return True

    def _event(self, kind: str, detail: dict[str, Any], *, message: int | None, nominee: int | None) -> None:
        self.state.add_event(kind, detail, actor=self.actor, rules_version=self.rules_version,
                             message=message, nominee=nominee)

    def _set_status(self, nominee: dict[str, Any], status: str, *, why: str, message: int | None) -> None:
        self.db.execute("UPDATE nominees SET status = ?, updated_at = ? WHERE id = ?",
                        [status, utc_now(), nominee["id"]])
        self._forget_counts(nominee["program"])  # the row's status may be newer than ``nominee``: recount
        self._event(f"nominee_{status}", {"from": nominee["status"], "to": status, "why": why,
                                          "program": nominee["program"], "id": nominee["id_masked"]},
                    message=message, nominee=nominee["id"])

    def _insert(self, req: SeatRequest, status: str, *, institution_key: str, institution: str,
                message: int, arrived_at: str, uid: int, sender: str, why: str) -> int:
        pk = self.state.insert("nominees", {
            "id_number": req.id_number, "id_masked": req.id_masked, "id_hash": id_hash(req.id_number),
            "name": req.name, "institution_key": institution_key, "institution": institution,
            "program": req.program, "status": status, "requested_at": arrived_at,
            "request_uid": uid, "request_row": req.row, "message": message,
            "form_row": req.form_row, "sender": sender, "updated_at": utc_now(),
        })
        self._given[pk] = status
        self._counted_insert(req.program, status, (arrived_at, uid, req.row, pk))
        self._event(f"nominee_{status}", {"from": None, "to": status, "why": why,
                                          "program": req.program, "id": req.id_masked},
                    message=message, nominee=pk)
        return pk

    def _counted_insert(self, program: str, status: str, key: tuple[str, int, int, int]) -> None:
        """Keep the program's counts current after inserting a nominee with ``status``."""
        entry = _COUNTS.get(self.state)
        counts = entry[1].get(program) if entry is not None and entry[0] == self.state.generation else None
        if counts is None:
            return
        if status == "seated":
            counts.seated += 1
            if counts.seated_last is None or key[0] > counts.seated_last:
                counts.seated_last = key[0]
        elif status == "waiting":
            counts.waiting += 1
            if counts.waiting_last is None or key > counts.waiting_last:
                counts.waiting_last = key
                self._appended[key[3]] = counts.waiting
            else:  # placed inside the list: those behind it moved
                self._appended.clear()

    def _fill(self, program: str, *, message: int, exclude_message: int | None,
              promotions: list[Promotion]) -> None:
        """Give free seats of ``program`` to the head of its waiting list."""
        free = self.capacities.get(program, 0) - self.seated_count(program)
        if free <= 0:
            return
        counts = self._counts(program)
        if counts is not None and counts.waiting == 0:
            return
        heads = list(self.state.query(
            "SELECT * FROM nominees WHERE program = ? AND status = 'waiting' "
            "ORDER BY requested_at, request_uid, request_row, id LIMIT ?", [program, free]))
        for n in heads:
            self._set_status(n, "seated", why="seat freed", message=message)
            if n["message"] != exclude_message:
                promotions.append(Promotion(n["id"], n["name"] or "", n["id_masked"], program,
                                            n["institution"], n["sender"], n["message"]))

    def _active_for_demand(self, institution_key: str, program: str) -> int:
        """Teachers of the school counted against its reported demand for a program."""
        return int(self.db.conn.execute(
            "SELECT count(*) FROM nominees WHERE institution_key = ? AND program = ? "
            "AND status IN ('seated','waiting')", [institution_key, program]).fetchone()[0])

    def apply_submission(
        self, *, institution_key: str, institution: str, requests: list[SeatRequest],
        present_ids: set[str], message: int, arrived_at: str, uid: int, sender: str,
        demand: Mapping[str, int] | None = None, max_new: int | None = None,
        adds_only: bool = False, unnamed: bool = False,
    ) -> SubmissionResult:
        """Apply one institution's (re)submission.

        ``requests`` are the valid rows; ``present_ids`` every readable identity number on the
        form (a person whose row needs correction keeps the seat they already have).
        An empty ``present_ids`` replaces nothing (an empty form is not a withdrawal).
        ``demand`` is the school's reported demand per program (None: not reported; a program
        missing from it counts as 0); ``max_new`` the most new teachers one mail may register
        before all of them are held for staff.  ``adds_only``: the mail says it adds (补报…), so
        nobody missing from it is withdrawn.  ``unnamed``: the form names no school (blank
        填报单位), so every new teacher is held until a form naming it arrives.
        """
        self._appended, self._given, self._moved = {}, {}, False
        self._elsewhere = self._load_elsewhere({id_hash(r.id_number) for r in requests}, institution_key)
        try:
            return self._apply(institution_key=institution_key, institution=institution,
                               requests=requests, present_ids=present_ids, message=message,
                               arrived_at=arrived_at, uid=uid, sender=sender, demand=demand,
                               max_new=max_new, adds_only=adds_only, unnamed=unnamed)
        finally:
            self._appended, self._given, self._moved, self._elsewhere = {}, {}, False, None

    def _apply(
        self, *, institution_key: str, institution: str, requests: list[SeatRequest],
        present_ids: set[str], message: int, arrived_at: str, uid: int, sender: str,
        demand: Mapping[str, int] | None, max_new: int | None, adds_only: bool = False,
        unnamed: bool = False,
    ) -> SubmissionResult:
        result = SubmissionResult()
        touched: set[str] = set()
        active = self._active_for_institution(institution_key)
        result.resubmission = bool(active)
        contact = contact_of_record(self.state, institution_key)
        result.by_contact = contact is None or same_address(contact.address, sender)
        result.contact = contact.address if contact else ""
        result.new_teachers = len({id_hash(r.id_number) for r in requests} - set(active))
        result.held_whole = max_new is not None and result.new_teachers > max_new
        result.held_unnamed = unnamed
        present_hashes = {id_hash(i) for i in present_ids}
        # Marked as an addition, or only new names: an addition, whoever sends it.
        result.addition = adds_only or (bool(present_hashes) and present_hashes.isdisjoint(active))
        may_change = result.by_contact and not result.held_whole and not adds_only  # replace, shorten, move

        def theirs(n: dict[str, Any]) -> bool:
            """Registered by another address than this mail's sender."""
            return not same_address(n["sender"], sender)

        if present_hashes and not result.addition:
            for h, n in active.items():
                if h in present_hashes:
                    continue
                change = Change("removed", n["name"] or "", n["id_masked"], n["program"])
                if not may_change:
                    result.asked.append(change)
                    continue
                self._set_status(n, "withdrawn", why="not on the institution's latest form",
                                 message=message)
                touched.add(n["program"])
                if theirs(n):
                    result.others_affected.append(Affected(n["id"], n["name"] or "", n["id_masked"],
                                                           n["program"], n["sender"], n["message"], change))
                else:
                    result.changes.append(change)
            if may_change:
                active = {h: n for h, n in active.items() if h in present_hashes}

        common = dict(institution_key=institution_key, institution=institution, message=message,
                      arrived_at=arrived_at, uid=uid, sender=sender)
        seen: set[str] = set()
        pending: list[tuple[SeatRequest, int, str]] = []  # request, nominee, note
        for req in requests:
            h = id_hash(req.id_number)
            if h in seen:  # the same identity number twice in this mail: the first row counts
                result.conflicts.append(Conflict(req, None))
                continue
            seen.add(h)
            other = self._active_elsewhere(h, institution_key)
            if other is not None:
                result.conflicts.append(Conflict(req, other["id"], other["institution"], other["program"],
                                                 other["message"]))
                self._event("conflict_refused", {"id": req.id_masked, "program": req.program,
                                                 "first": other["id"]}, message=message, nominee=None)
                continue
            current = active.get(h)
            if current is not None and not result.by_contact and theirs(current):
                result.kept += 1  # another address registered this teacher: not ours to touch or show
                if current["program"] != req.program:
                    result.asked.append(Change("changed", req.name, req.id_masked,
                                               f"{current['program']} → {req.program}"))
                continue
            if current is not None and current["program"] == req.program:
                self.db.execute("UPDATE nominees SET name = ?, form_row = ?, updated_at = ? WHERE id = ?",
                                [req.name, req.form_row, utc_now(), current["id"]])
                self._given[current["id"]] = current["status"]
                pending.append((req, current["id"], ""))
                continue
            if current is not None and not may_change:
                result.asked.append(Change("changed", req.name, req.id_masked,
                                           f"{current['program']} → {req.program}"))
                continue
            if current is not None:
                self._set_status(current, "withdrawn", why=f"program changed to {req.program}",
                                 message=message)
                touched.add(current["program"])
                change = Change("changed", req.name, req.id_masked, f"{current['program']} → {req.program}")
                result.changes.append(change)
                if theirs(current):
                    result.others_affected.append(Affected(
                        current["id"], current["name"] or "", current["id_masked"], current["program"],
                        current["sender"], current["message"], change))
            else:
                result.changes.append(Change("added", req.name, req.id_masked, req.program))
            held_why = self._hold_reason(institution_key, req.program, demand, result.held_whole, unnamed)
            if held_why:
                pk = self._insert(req, "held", why=held_why, **common)
                pending.append((req, pk, ""))
                continue
            # Anyone already waiting arrived earlier: they take a free seat before this row.
            self._fill(req.program, message=message, exclude_message=message,
                       promotions=result.promotions)
            seated = self.seated_count(req.program) < self.capacities.get(req.program, 0)
            if not seated and self._seated_after(req.program, arrived_at):
                # Earlier by arrival time than someone already told they are seated: nobody is
                # moved; staff decide (the mail was handled late, e.g. moved back from junk).
                pk = self._insert(req, "held", why="arrived earlier than seated teachers, handled later",
                                  **common)
                pending.append((req, pk, "arrival"))
                continue
            status = "seated" if seated else "waiting"
            pk = self._insert(req, status, why="first come first served", **common)
            pending.append((req, pk, ""))

        if contact is None and not result.held_whole and not unnamed and \
                any(c.kind != "removed" for c in result.changes):
            made = set_contact_of_record(
                self.state, institution_key=institution_key, institution=institution, address=sender,
                message=message, actor=self.actor, rules_version=self.rules_version,
                why="first registration of the school", before=None)
            result.contact = made.address

        for program in sorted(touched):
            self._fill(program, message=message, exclude_message=message, promotions=result.promotions)

        standings = self._known_standings([pk for _, pk, _ in pending])
        if standings is None:
            standings = self._standings([pk for _, pk, _ in pending if pk is not None])
        for req, pk, note in pending:
            status, position = standings[pk]
            placement = Placement(req, status, position, "", pk)  # type: ignore[arg-type]
            result.placements.append(placement)
            if note == "arrival" and status == "held":
                result.held_by_arrival.append(placement)
        return result

    # -- staff decisions (``mailbot.decisions``: one transaction each, actor ``staff:NAME``) ------
    # Every decision goes through the same status changes and waiting-list fill as intake, so
    # its ``nominee_*`` events explain the new statuses exactly as an intake's do.

    def active_by_hash(self, idh: str) -> dict[str, Any] | None:
        """The person's seated, waiting or held nominee (None when they have none)."""
        rows = list(self.state.query(
            "SELECT * FROM nominees WHERE id_hash = ? AND status IN ('seated','waiting','held') "
            "ORDER BY id DESC LIMIT 1", [idh]))
        return rows[0] if rows else None

    def set_capacity(self, program: str, seats: int, *, message: int | None = None) -> list[Promotion]:
        """Change a program's seats.  More seats go to the head of its waiting list; fewer seats
        never take a seat from anyone already seated (the program is over-full until people leave)."""
        before = self.capacities.get(program, 0)
        self.capacities[program] = seats
        self._event("seats_changed", {"program": program, "from": before, "to": seats},
                    message=message, nominee=None)
        promotions: list[Promotion] = []
        self._fill(program, message=message, exclude_message=None, promotions=promotions)  # type: ignore[arg-type]
        return promotions

    def admit(self, nominee: dict[str, Any], *, why: str) -> list[Promotion]:
        """A held nominee joins the program like any registration of its arrival time: a free seat
        if one is left for it, else the waiting list in arrival order."""
        self._set_status(nominee, "waiting", why=why, message=nominee["message"])
        return self._fill_by_decision(nominee["program"], nominee["message"])

    def admit_new(self, req: SeatRequest, *, institution_key: str, institution: str, message: int,
                  arrived_at: str, uid: int, sender: str, why: str) -> tuple[int, list[Promotion]]:
        """A teacher of a late mail registered by decision, at the mail's arrival time (after every
        timely one): a free seat, else the end of the waiting list."""
        pk = self._insert(req, "waiting", institution_key=institution_key, institution=institution,
                          message=message, arrived_at=arrived_at, uid=uid, sender=sender, why=why)
        return pk, self._fill_by_decision(req.program, message)

    def withdraw(self, nominee: dict[str, Any], *, why: str) -> list[Promotion]:
        """Withdraw a nominee; a seat it held goes to the head of the waiting list."""
        self._set_status(nominee, "withdrawn", why=why, message=nominee["message"])
        return self._fill_by_decision(nominee["program"], nominee["message"])

    def substitute(self, nominee: dict[str, Any], req: SeatRequest, *, why: str) -> int:
        """Another teacher of the same school takes this nominee's place as it is (status, program,
        place in the arrival order); the nominee is withdrawn.  No one else moves."""
        self._set_status(nominee, "withdrawn", why=why, message=nominee["message"])
        return self._insert(req, nominee["status"], institution_key=nominee["institution_key"],
                            institution=nominee["institution"], message=nominee["message"],
                            arrived_at=nominee["requested_at"], uid=nominee["request_uid"],
                            sender=nominee["sender"], why=why)

    def move(self, nominee: dict[str, Any], program: str, *, why: str) -> tuple[int, list[Promotion]]:
        """Move a nominee to another program at its own arrival time (a free seat there, else the
        waiting list in arrival order; a held nominee stays held); a seat it left goes to the old
        program's waiting list."""
        self._set_status(nominee, "withdrawn", why=why, message=nominee["message"])
        status = "held" if nominee["status"] == "held" else "waiting"
        req = SeatRequest(nominee["id_number"] or "", nominee["id_masked"], nominee["name"] or "", program,
                          nominee["request_row"], nominee["form_row"])
        pk = self.state.insert("nominees", {
            "id_number": nominee["id_number"], "id_masked": nominee["id_masked"], "id_hash": nominee["id_hash"],
            "name": nominee["name"], "institution_key": nominee["institution_key"],
            "institution": nominee["institution"], "program": program, "status": status,
            "requested_at": nominee["requested_at"], "request_uid": nominee["request_uid"],
            "request_row": req.row, "message": nominee["message"], "form_row": req.form_row,
            "sender": nominee["sender"], "updated_at": utc_now()})
        self._forget_counts(program)
        self._event(f"nominee_{status}", {"from": None, "to": status, "why": why, "program": program,
                                           "id": nominee["id_masked"]}, message=nominee["message"], nominee=pk)
        promotions = self._fill_by_decision(program, nominee["message"]) if status == "waiting" else []
        return pk, promotions + self._fill_by_decision(nominee["program"], nominee["message"])

    def _fill_by_decision(self, program: str, message: int) -> list[Promotion]:
        promotions: list[Promotion] = []
        self._fill(program, message=message, exclude_message=None, promotions=promotions)
        return promotions

    def any_refused(self, id_numbers: list[str], institution_key: str, *, ignore_key: str = "") -> bool:
        """Whether ``apply_submission`` would refuse one of these rows as a conflict: the number
        repeated among them, or active for another school (``ignore_key``'s rows are about to
        be released).  Read only."""
        hashes = [id_hash(i) for i in id_numbers]
        if len(set(hashes)) < len(hashes):
            return True
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            marks = ",".join("?" * len(chunk))
            if self.db.conn.execute(
                    f"SELECT 1 FROM nominees WHERE id_hash IN ({marks}) AND institution_key NOT IN (?, ?) "
                    "AND status IN ('seated','waiting','held') LIMIT 1",
                    [*chunk, institution_key, ignore_key]).fetchone():
                return True
        return False

    def release_unnamed(self, sender: str, *, message: int) -> int:
        """Withdraw the teachers held because an earlier form of ``sender`` named no school: a
        form naming the school has arrived and registers them afresh.  Returns how many."""
        rows = list(self.state.query(
            "SELECT * FROM nominees WHERE institution_key = ? AND status = 'held'", [f"sender:{sender.lower()}"]))
        for n in rows:
            self._set_status(n, "withdrawn", why="a later form names the school", message=message)
        return len(rows)


def decided_seats(state: State) -> dict[str, int]:
    """Seats set by staff decisions (``seats_changed`` events), the latest per program: they
    override the rules file's seats until a later decision."""
    seats: dict[str, int] = {}
    for (detail,) in state.db.conn.execute("SELECT detail FROM events WHERE kind = 'seats_changed' ORDER BY id"):
        d = json.loads(detail)
        seats[d["program"]] = int(d["to"])
    return seats
