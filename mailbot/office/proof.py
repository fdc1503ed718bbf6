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
6. each school's contact of record is the last ``contact_of_record_set`` about it; each staff
   item is explained by its ``staff_item_opened`` (and ``staff_item_closed``) event, and every
   item and contact in the log has its row;
7. every reply sent, failed or of unknown delivery has the event that says so;
8. every stored raw mail and evidence file exists and hashes to what its row records.

A break is named with its place (event id, message receipt, nominee id, item, file), in
Chinese for staff and as codes for scripts; the first one is what ``mailbot verify`` prints last
and why it exits 1.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbot.office.history import OUTCOME_WORDS, REPLY_STATUS_WORDS, STATUS_WORDS
from mailbot.state.contacts import address_hash, masked_address
from mailbot.state.store import State, event_hash

ITEM_STATUS_WORDS = {"open": "未关闭", "closed": "已关闭"}


@dataclass(frozen=True)
class Break:
    """One place where the state is not explained by the log: the check, the place and what is
    wrong as codes and English for scripts (``--json``), and the same in Chinese for staff."""

    check: str
    where: str
    what: str
    zh: str = ""

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.what}"


@dataclass
class Proof:
    """What ``verify`` found: one line per check (English for scripts, Chinese for staff), the
    breaks in order, the chain's head."""

    lines: list[str] = field(default_factory=list)
    zh_lines: list[str] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    head: str = ""
    events: int = 0

    @property
    def ok(self) -> bool:
        return not self.breaks

    def say(self, line: str, zh: str) -> None:
        self.lines.append(line)
        self.zh_lines.append(zh)


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
        proof.breaks.append(Break("integrity_check", "database", integrity,
                                  "数据库完整性：数据库文件已损坏（SQLite 完整性检查未通过），请联系技术人员"))
    events = list(state.query("SELECT * FROM events ORDER BY id"))
    chain_ok, good = _check_chain(events, proof)
    proof.events = good
    proof.head = events[good - 1]["hash"] if good else ""
    proof.say(f"integrity_check: {integrity}; event chain: {'ok' if chain_ok else 'BROKEN'} ({good} events)",
              f"数据库完整性：{'正常' if integrity == 'ok' else '已损坏'}；"
              + (f"审计链：完好（{good}条事件）" if chain_ok else f"审计链：断开（前{good}条事件完好）"))
    if head is not None:
        _check_head(events, "".join(head.split()).lower(), proof)
    for check in (_check_messages, _check_nominees, _check_programs, _check_contacts, _check_staff_items,
                  _check_replies, _check_files):
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
                                      "was removed or changed)",
                                      f"审计链：第{e['id']}条事件之前的事件被删除或改动过"))
            return False, n
        if e["hash"] != expect:
            proof.breaks.append(Break("event chain", f"event {e['id']} ({e['kind']})",
                                      "hash does not match its contents (the event was altered)",
                                      f"审计链：第{e['id']}条事件的内容被改动过"))
            return False, n
        prev = e["hash"]
    return True, len(events)


def _check_head(events: list[dict[str, Any]], head: str, proof: Proof) -> None:
    found = next((e for e in events if e["hash"] == head), None)
    if found is None:
        proof.breaks.append(Break("head", head, f"not in the log ({len(events)} events): the log was cut "
                                                "or rewritten after that head was written down",
                                  f"审计链头：{head} 不在日志中（共{len(events)}条事件）：记下这个链头之后，"
                                  "日志被截短或重写过"))
        proof.say(f"head {head}: MISSING", f"审计链头 {head}：日志中没有")
    else:
        proof.say(f"head {head}: in the log (event {found['id']} of {len(events)})",
                  f"审计链头 {head}：在日志中（第{found['id']}条事件，共{len(events)}条）")


def _detail(e: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(e["detail"])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _purged_before(events: list[dict[str, Any]]) -> str:
    """The latest ``before`` of any purge: rows recorded before it may have lost their files."""
    return max((str(_detail(e).get("before", "")) for e in events if e["kind"] == "purge"), default="")


def _words(table: dict[str, str], value: Any) -> str:
    """A code as staff read it, in quotes; ``None`` as 无记录."""
    return "无记录" if value is None else f"“{table.get(str(value), str(value))}”"


MESSAGE_FIELDS = {"outcome": "处理结果", "receipt": "回执号", "arrived_at": "收到时间", "reason": "处理说明"}


def _check_messages(state: State, events: list[dict[str, Any]], proof: Proof) -> None:
    recorded: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        if e["kind"] == "message_recorded" and e["message"] is not None:
            recorded.setdefault(e["message"], []).append(_detail(e))
    purged = _purged_before(events)
    n, breaks_before = 0, len(proof.breaks)
    for m in state.query("SELECT id, receipt, outcome, reason, arrived_at, raw_path, recorded_at "
                         "FROM messages ORDER BY id"):
        n += 1
        where = f"message {m['id']} ({m['receipt'] or 'no receipt'})"
        zh_where = f"邮件：第{m['id']}封（回执{m['receipt'] or '无'}）"
        found = recorded.get(m["id"], [])
        if len(found) != 1:
            proof.breaks.append(Break("messages", where, f"{len(found)} message_recorded events, expected 1",
                                      f"{zh_where}有{len(found)}条登记事件，应为1条"))
            continue
        d = found[0]
        told = {"outcome": d.get("outcome"), "receipt": d.get("receipt"), "arrived_at": d.get("arrived_at"),
                "reason": d.get("reason")}
        have = {"outcome": m["outcome"], "receipt": m["receipt"], "arrived_at": m["arrived_at"],
                "reason": (m["reason"] or "")[:len(str(d.get("reason", "")))]}
        for key in told:
            if told[key] != have[key]:
                values = "" if key == "reason" else (
                    f"（数据库中为{_words(OUTCOME_WORDS, have[key])}，日志中为{_words(OUTCOME_WORDS, told[key])}）")
                proof.breaks.append(Break("messages", where, f"{key} is {have[key]!r} in messages, the log "
                                                             f"says {told[key]!r}",
                                          f"{zh_where}的{MESSAGE_FIELDS[key]}与事件日志不符{values}"))
                break
        if m["raw_path"] is None and not (purged and m["recorded_at"] < purged):
            proof.breaks.append(Break("messages", where, "raw mail removed without a purge covering it",
                                      f"{zh_where}的原始邮件被删除，但没有清除记录（mailbot purge）能解释"))
    if len(proof.breaks) == breaks_before:
        proof.say(f"messages: {n} explained by the event log", f"邮件：{n}封，均由事件日志解释")


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
                                      f"{d.get('from')!r}, but the log had it {before!r}",
                                      f"参训人员：第{e['id']}条事件记载第{e['nominee']}号参训人员原为"
                                      f"{_words(STATUS_WORDS, d.get('from'))}，但此前的日志记载为"
                                      f"{_words(STATUS_WORDS, before)}"))
            return
        replayed[e["nominee"]] = str(d["to"])
    count = 0
    for n in state.query("SELECT id, status, program, id_masked FROM nominees ORDER BY id"):
        count += 1
        status = replayed.pop(n["id"], None)
        if status != n["status"]:
            proof.breaks.append(Break("nominees", f"nominee {n['id']} ({n['id_masked']}, {n['program']})",
                                      f"status is {n['status']!r} in nominees, the event log says {status!r}",
                                      f"参训人员：第{n['id']}号（{n['id_masked']}，{n['program']}）在数据库中为"
                                      f"{_words(STATUS_WORDS, n['status'])}，按事件日志应为"
                                      f"{_words(STATUS_WORDS, status)}"))
            return
    if replayed:
        first = min(replayed)
        proof.breaks.append(Break("nominees", f"nominee {first}", "the log has events about it, nominees has no row",
                                  f"参训人员：事件日志中有第{first}号参训人员，数据库中没有这一行（被删除）"))
        return
    mismatch = next((e for e in events if e["nominee"] is not None and "to" in _detail(e)
                     and not _agrees(state, e)), None)
    if mismatch is not None:
        proof.breaks.append(Break("nominees", f"event {mismatch['id']} ({mismatch['kind']})",
                                  f"nominee {mismatch['nominee']}'s program or identity number differs from the event",
                                  f"参训人员：第{mismatch['nominee']}号参训人员的培训项目或身份证号与第"
                                  f"{mismatch['id']}条事件记载的不符"))
        return
    proof.say(f"nominees: {count} recomputed from the event log", f"参训人员：{count}人，状态均可由事件日志重算")


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
        proof.breaks.append(Break("programs", where, "the programs table (hosts, seats) differs from the log",
                                  "培训项目：各项目的承办单位和名额与事件日志" +
                                  (f"（第{last['id']}条事件）记载的不符" if last else "不符（日志中没有项目记录）")))


def _check_contacts(state: State, events: list[dict[str, Any]], proof: Proof) -> None:
    """Each school's contact of record is the last ``contact_of_record_set`` about it (events
    before ``institution_key`` was recorded match by the school's name); a row without one was
    written by the migration that introduced the table.  An address purged to '' is explained
    by a purge."""
    last: dict[str, dict[str, Any]] = {}  # institution_key, or "name:" + institution for old events
    for e in events:
        if e["kind"] == "contact_of_record_set":
            d = _detail(e)
            key = d.get("institution_key") or f"\x00{d.get('institution')}"
            last[key] = {**d, "_event": e}
    purged = bool(_purged_before(events))
    n = 0
    for r in state.query("SELECT institution_key, institution, address, message, set_by FROM school_contacts "
                         "ORDER BY institution_key"):
        n += 1
        found = last.pop(r["institution_key"], None) or last.pop(f"\x00{r['institution']}", None)
        where, zh = f"school {r['institution']}", f"学校报名联系邮箱：{r['institution']}"
        if found is None:
            if r["set_by"] != "migration":
                proof.breaks.append(Break("school_contacts", where, "no contact_of_record_set event explains the row",
                                          f"{zh}没有设定记录（事件日志中没有）"))
                return
            continue
        e = found["_event"]
        address = r["address"]
        if not (address == "" and purged):
            same = (found["to_hash"] == address_hash(address)) if "to_hash" in found else (
                found.get("to") == masked_address(address))
            if not same:
                proof.breaks.append(Break("school_contacts", where, f"address is {masked_address(address)} in "
                                          f"school_contacts, the log (event {e['id']}) says {found.get('to')}",
                                          f"{zh}的联系邮箱在数据库中为{masked_address(address)}，按事件日志"
                                          f"（第{e['id']}条事件）应为{found.get('to')}"))
                return
        if (r["set_by"], r["message"]) != (e["actor"], e["message"]):
            proof.breaks.append(Break("school_contacts", where, f"set_by or message differs from event {e['id']}",
                                      f"{zh}的设定人或来信与事件日志（第{e['id']}条事件）不符"))
            return
    if last:
        e = min((v["_event"] for v in last.values()), key=lambda x: x["id"])
        institution = _detail(e).get("institution")
        proof.breaks.append(Break("school_contacts", f"school {institution}",
                                  f"the log (event {e['id']}) sets its contact, school_contacts has no row",
                                  f"学校报名联系邮箱：事件日志（第{e['id']}条事件）设定了{institution}的联系邮箱，"
                                  "数据库中没有这一行（被删除）"))
        return
    proof.say(f"school_contacts: {n} recomputed from the event log", f"学校报名联系邮箱：{n}所，均可由事件日志重算")


def _check_staff_items(state: State, events: list[dict[str, Any]], proof: Proof) -> None:
    """Each staff item is opened by one ``staff_item_opened`` (same kind and message) and, when
    closed, by one ``staff_item_closed`` (same actor and resolution); every item in the log has
    its row."""
    opened: dict[int, dict[str, Any]] = {}
    closed: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["kind"] in ("staff_item_opened", "staff_item_closed"):
            item = _detail(e).get("item")
            if isinstance(item, int):
                (opened if e["kind"] == "staff_item_opened" else closed)[item] = e
    n = 0
    for r in state.query("SELECT id, kind, message, status, closed_by, resolution FROM staff_items ORDER BY id"):
        n += 1
        where, zh = f"staff item {r['id']}", f"待办事项#{r['id']}"
        o, c = opened.pop(r["id"], None), closed.pop(r["id"], None)
        logged = None if o is None else ("closed" if c is not None else "open")
        if o is None:
            proof.breaks.append(Break("staff_items", where, "no staff_item_opened event explains the row",
                                      f"{zh}没有开立记录（事件日志中没有）"))
            return
        if (_detail(o).get("kind"), o["message"]) != (r["kind"], r["message"]):
            proof.breaks.append(Break("staff_items", where, f"kind or message differs from event {o['id']}",
                                      f"{zh}的类别或来信与事件日志（第{o['id']}条事件）不符"))
            return
        if r["status"] != logged:
            proof.breaks.append(Break("staff_items", where, f"status is {r['status']!r} in staff_items, "
                                      f"the event log says {logged!r}",
                                      f"{zh}在数据库中为{_words(ITEM_STATUS_WORDS, r['status'])}，按事件日志应为"
                                      f"{_words(ITEM_STATUS_WORDS, logged)}"))
            return
        if c is not None and (r["closed_by"], r["resolution"]) != (c["actor"], _detail(c).get("resolution")):
            proof.breaks.append(Break("staff_items", where, f"closed_by or resolution differs from event {c['id']}",
                                      f"{zh}的关闭人或处理结果与事件日志（第{c['id']}条事件）不符"))
            return
    if opened or closed:
        first = min([*opened, *closed])
        proof.breaks.append(Break("staff_items", f"staff item {first}", "the log has events about it, "
                                  "staff_items has no row",
                                  f"待办事项：事件日志中有待办事项#{first}，数据库中没有（被删除）"))
        return
    proof.say(f"staff_items: {n} recomputed from the event log", f"待办事项：{n}项，均可由事件日志重算")


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
                                      f"status {o['status']!r} without a reply_{o['status']} event",
                                      f"回复：第{o['id']}号回复的状态为{_words(REPLY_STATUS_WORDS, o['status'])}，"
                                      "但事件日志中没有相应记录"))
            return
    proof.say(f"replies: {n} delivery results explained by the event log", f"回复：{n}封的发送结果均有事件记录")


def _check_files(state: State, events: list[dict[str, Any]], proof: Proof) -> None:
    rows = [(f"message {r['id']} ({r['receipt']})", f"回执{r['receipt']}的原始邮件", r["raw_path"], r["sha256"])
            for r in state.query(
                "SELECT id, receipt, raw_path, sha256 FROM messages WHERE raw_path IS NOT NULL ORDER BY id")]
    rows += [(f"attachment {r['id']} of message {r['message']}", f"第{r['message']}封邮件的第{r['id']}号附件",
              r["path"], r["sha256"]) for r in state.query(
        "SELECT id, message, path, sha256 FROM attachments WHERE path IS NOT NULL ORDER BY id")]
    checked: dict[str, str | None] = {}
    for where, zh, rel, sha in rows:
        if rel not in checked:
            checked[rel] = _sha256_file(state.dir / rel)
        actual = checked[rel]
        if actual is None:
            proof.breaks.append(Break("stored files", where, f"{rel} is missing",
                                      f"保存的文件：{zh}（{rel}）不见了"))
            return
        if actual != sha:
            proof.breaks.append(Break("stored files", where, f"{rel} does not match its SHA-256 (altered)",
                                      f"保存的文件：{zh}（{rel}）被改动过（SHA-256 不符）"))
            return
    proof.say(f"stored files: {len(checked)} match their SHA-256", f"保存的文件：{len(checked)}个，SHA-256 均一致")
