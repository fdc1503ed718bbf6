"""``mailbot verify``: the event log proves the state, not only its own links.

Checked in this order, each on the database opened read-only:

1. ``PRAGMA integrity_check``, and that every page of the file is used (which SQLite's own check
   skips when the schema has views);
2. the hash chain, event by event;
3. with ``--head HASH`` (the head a digest or an earlier audit wrote down): that event is
   still in the log, so cutting off the log's end or rewriting it from some point is seen;
4. every message has its one ``message_recorded`` event, agreeing on outcome, receipt and
   arrival; a message whose raw mail is gone is covered by a ``purge`` event;
5. the ledger recomputed from the events: each nominee's status changes, replayed in order,
   lead from its first event to the status in ``nominees``, and every such event agrees on
   program and masked identity number; the ``programs`` table is the last ``programs_recorded``;
6. every reply sent, failed or of unknown delivery has the event that says so;
7. every stored raw mail and evidence file exists and hashes to what its row records.

A break is named with its place (event id, message receipt, nominee id, file); the first
one is what ``mailbot verify`` prints last and why it exits 1.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbot.state.store import State, event_hash


@dataclass(frozen=True)
class Break:
    """One place where the state is not explained by the log."""

    check: str
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.what}"


@dataclass
class Proof:
    """What ``verify`` found: one line per check, the breaks in order, the chain's head."""

    lines: list[str] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    head: str = ""
    events: int = 0

    @property
    def ok(self) -> bool:
        return not self.breaks


def _sha256_file(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def prove(state: State, *, head: str | None = None) -> Proof:
    """Run every check on ``state`` (open it read-only); see the module docstring."""
    proof = Proof()
    integrity = next(state.query("PRAGMA integrity_check"))["integrity_check"]
    if integrity == "ok" and (unused := state.unused_pages()):
        integrity = "*** in database main ***\n" + "\n".join(f"Page {p} is never used" for p in unused)
    if integrity != "ok":
        proof.breaks.append(Break("integrity_check", "database", integrity))
    events = list(state.query("SELECT * FROM events ORDER BY id"))
    chain_ok, good = _check_chain(events, proof)
    proof.events = good
    proof.head = events[good - 1]["hash"] if good else ""
    proof.lines.append(f"integrity_check: {integrity}; event chain: {'ok' if chain_ok else 'BROKEN'} "
                       f"({good} events)")
    if head is not None:
        _check_head(events, "".join(head.split()).lower(), proof)
    for check in (_check_messages, _check_nominees, _check_programs, _check_replies, _check_files):
        check(state, events, proof)
    return proof


def _check_chain(events: list[dict[str, Any]], proof: Proof) -> tuple[bool, int]:
    prev = ""
    for n, e in enumerate(events):
        expect = event_hash(prev, e["at"], e["actor"], e["rules_version"], e["message"], e["nominee"],
                            e["kind"], e["detail"])
        if e["prev_hash"] != prev:
            proof.breaks.append(Break("event chain", f"event {e['id']} ({e['kind']})",
                                      "prev_hash is not the previous event's hash (an event before it "
                                      "was removed or changed)"))
            return False, n
        if e["hash"] != expect:
            proof.breaks.append(Break("event chain", f"event {e['id']} ({e['kind']})",
                                      "hash does not match its contents (the event was altered)"))
            return False, n
        prev = e["hash"]
    return True, len(events)


def _check_head(events: list[dict[str, Any]], head: str, proof: Proof) -> None:
    found = next((e for e in events if e["hash"] == head), None)
    if found is None:
        proof.breaks.append(Break("head", head, f"not in the log ({len(events)} events): the log was cut "
                                                "or rewritten after that head was written down"))
        proof.lines.append(f"head {head}: MISSING")
    else:
        proof.lines.append(f"head {head}: in the log (event {found['id']} of {len(events)})")


def _detail(e: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(e["detail"])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _purged_before(events: list[dict[str, Any]]) -> str:
    """The latest ``before`` of any purge: rows recorded before it may have lost their files."""
    return max((str(_detail(e).get("before", "")) for e in events if e["kind"] == "purge"), default="")


def _check_messages(state: State, events: list[dict[str, Any]], proof: Proof) -> None:
    recorded: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        if e["kind"] == "message_recorded" and e["message"] is not None:
            recorded.setdefault(e["message"], []).append(_detail(e))
    purged = _purged_before(events)
    n = 0
    for m in state.query("SELECT id, receipt, outcome, reason, arrived_at, raw_path, recorded_at "
                         "FROM messages ORDER BY id"):
        n += 1
        where = f"message {m['id']} ({m['receipt'] or 'no receipt'})"
        found = recorded.get(m["id"], [])
        if len(found) != 1:
            proof.breaks.append(Break("messages", where, f"{len(found)} message_recorded events, expected 1"))
            continue
        d = found[0]
        told = {"outcome": d.get("outcome"), "receipt": d.get("receipt"), "arrived_at": d.get("arrived_at"),
                "reason": d.get("reason")}
        have = {"outcome": m["outcome"], "receipt": m["receipt"], "arrived_at": m["arrived_at"],
                "reason": (m["reason"] or "")[:len(str(d.get("reason", "")))]}
        for key in told:
            if told[key] != have[key]:
                proof.breaks.append(Break("messages", where, f"{key} is {have[key]!r} in messages, the log "
                                                             f"says {told[key]!r}"))
                break
        if m["raw_path"] is None and not (purged and m["recorded_at"] < purged):
            proof.breaks.append(Break("messages", where, "raw mail removed without a purge covering it"))
    proof.lines.append(f"messages: {n} explained by the event log")


def _check_nominees(state: State, events: list[dict[str, Any]], proof: Proof) -> None:
    """Replay every status change (an event about a nominee whose detail has ``to``)."""
    replayed: dict[int, str] = {}
    for e in events:
        if e["nominee"] is None:
            continue
        d = _detail(e)
        if "to" not in d:
            continue
        where = f"event {e['id']} ({e['kind']})"
        before = replayed.get(e["nominee"])
        if d.get("from") != before:
            proof.breaks.append(Break("nominees", where, f"changes nominee {e['nominee']} from "
                                      f"{d.get('from')!r}, but the log had it {before!r}"))
            return
        replayed[e["nominee"]] = str(d["to"])
    count = 0
    for n in state.query("SELECT id, status, program, id_masked FROM nominees ORDER BY id"):
        count += 1
        status = replayed.pop(n["id"], None)
        if status != n["status"]:
            proof.breaks.append(Break("nominees", f"nominee {n['id']} ({n['id_masked']}, {n['program']})",
                                      f"status is {n['status']!r} in nominees, the event log says {status!r}"))
            return
    if replayed:
        first = min(replayed)
        proof.breaks.append(Break("nominees", f"nominee {first}", "the log has events about it, nominees has no row"))
        return
    mismatch = next((e for e in events if e["nominee"] is not None and "to" in _detail(e)
                     and not _agrees(state, e)), None)
    if mismatch is not None:
        proof.breaks.append(Break("nominees", f"event {mismatch['id']} ({mismatch['kind']})",
                                  f"nominee {mismatch['nominee']}'s program or identity number differs from the event"))
        return
    proof.lines.append(f"nominees: {count} recomputed from the event log")


def _agrees(state: State, e: dict[str, Any]) -> bool:
    d = _detail(e)
    row = next(state.query("SELECT program, id_masked FROM nominees WHERE id = ?", [e["nominee"]]), None)
    return row is not None and (d.get("program"), d.get("id")) == (row["program"], row["id_masked"])


def _check_programs(state: State, events: list[dict[str, Any]], proof: Proof) -> None:
    last = next((e for e in reversed(events) if e["kind"] == "programs_recorded"), None)
    told = [list(p) for p in _detail(last).get("programs", [])] if last else []
    have = [[r["name"], r["host_institution"], r["seats"]] for r in state.query(
        "SELECT name, host_institution, seats FROM programs ORDER BY position")]
    if told != have:
        where = f"event {last['id']}" if last else "no programs_recorded event"
        proof.breaks.append(Break("programs", where, "the programs table (hosts, seats) differs from the log"))


def _check_replies(state: State, events: list[dict[str, Any]], proof: Proof) -> None:
    told = Counter()
    for e in events:
        if e["kind"] in ("reply_sent", "reply_failed", "reply_unknown"):
            told[(_detail(e).get("outbox"), e["kind"].removeprefix("reply_"))] += 1
    n = 0
    for o in state.query("SELECT id, kind, status FROM outbox WHERE status IN ('sent', 'failed', 'unknown') "
                         "ORDER BY id"):
        n += 1
        if not told[(o["id"], o["status"])]:
            proof.breaks.append(Break("replies", f"outbox {o['id']} ({o['kind']})",
                                      f"status {o['status']!r} without a reply_{o['status']} event"))
            return
    proof.lines.append(f"replies: {n} delivery results explained by the event log")


def _check_files(state: State, events: list[dict[str, Any]], proof: Proof) -> None:
    rows = [(f"message {r['id']} ({r['receipt']})", r["raw_path"], r["sha256"]) for r in state.query(
        "SELECT id, receipt, raw_path, sha256 FROM messages WHERE raw_path IS NOT NULL ORDER BY id")]
    rows += [(f"attachment {r['id']} of message {r['message']}", r["path"], r["sha256"]) for r in state.query(
        "SELECT id, message, path, sha256 FROM attachments WHERE path IS NOT NULL ORDER BY id")]
    checked: dict[str, str | None] = {}
    for where, rel, sha in rows:
        if rel not in checked:
            checked[rel] = _sha256_file(state.dir / rel)
        actual = checked[rel]
        if actual is None:
            proof.breaks.append(Break("stored files", where, f"{rel} is missing"))
            return
        if actual != sha:
            proof.breaks.append(Break("stored files", where, f"{rel} does not match its SHA-256 (altered)"))
            return
    proof.lines.append(f"stored files: {len(checked)} match their SHA-256")
