"""``mailbot verify`` checks, read-only, SQLite's ``PRAGMA integrity_check`` and the audit event
hash chain's links (each event's hash covers its content and the previous hash), then that the
log explains the state (tests/test_verify_proof.py).  It exits 0 only when all pass, and names
the first break otherwise.  These tests tamper with the database as someone with write access
to the file would (dropping the append-only triggers).

What verify cannot see without ``--head`` (docs/RELIABILITY.md, "Known limits"): the last
events deleted leave a shorter chain that is still whole."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailbot.cli import main
from mailbot.state.store import State

EVENTS = 6


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state database whose chain holds EVENTS events (ids 1..EVENTS)."""
    monkeypatch.chdir(tmp_path)  # no stray mailbot.toml
    state = State(tmp_path / "state")
    try:
        for i in range(1, EVENTS + 1):
            with state.transaction():
                state.add_event("message_recorded", {"n": i, "outcome": "accepted"}, actor="daemon",
                                rules_version="zhejiang-2020-1x@1")
    finally:
        state.close()
    return tmp_path / "state"


def _verify(state_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["verify", *args], env={"MAILBOT_STATE_DIR": str(state_dir)})


def _head(state_dir: Path) -> str:
    conn = sqlite3.connect(f"file:{state_dir / 'mailbot.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()[0]
    finally:
        conn.close()


def _report(first_line: str, *, head: str = "", first_break: str = "") -> str:
    """verify's whole output (Chinese, for staff) on these message-less states: the chain line,
    the state checks (nothing to explain), then the verdict."""
    lines = [first_line, "邮件：0封，均由事件日志解释", "参训人员：0人，状态均可由事件日志重算",
             "学校报名联系邮箱：0所，均可由事件日志重算", "待办事项：0项，均可由事件日志重算",
             "回复：0封的发送结果均有事件记录", "保存的文件：0个，SHA-256 均一致"]
    lines.append(f"第一处问题：{first_break}" if first_break else
                 f"验证通过：事件日志能解释全部数据；审计链头 {head}")
    return "\n".join(lines) + "\n"


def _tamper(state_dir: Path, *sql: str) -> None:
    """Run ``sql`` on the database with the append-only triggers out of the way, then put them back."""
    conn = sqlite3.connect(state_dir / "mailbot.db")
    try:
        triggers = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'").fetchall()
        assert len(triggers) == 2, "the events table has its append-only triggers"
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("DROP TRIGGER events_no_delete")
        for statement in sql:
            conn.execute(statement)
        for (create,) in triggers:
            conn.execute(create)
        conn.commit()
    finally:
        conn.close()


def test_an_untouched_database_verifies_and_exits_zero(state_dir: Path) -> None:
    result = _verify(state_dir)
    assert (result.exit_code, result.output) == (
        0, _report(f"数据库完整性：正常；审计链：完好（{EVENTS}条事件）", head=_head(state_dir)))


def test_an_event_altered_in_the_middle_of_the_chain_fails_verify(state_dir: Path) -> None:
    _tamper(state_dir, """UPDATE events SET detail = '{"n": 3, "outcome": "correction"}' WHERE id = 3""")
    result = _verify(state_dir)
    assert (result.exit_code, result.output) == (1, _report(
        "数据库完整性：正常；审计链：断开（前2条事件完好）", first_break="审计链：第3条事件的内容被改动过"))


def test_an_event_altered_with_its_own_hash_recomputed_still_breaks_the_next_link(state_dir: Path) -> None:
    conn = sqlite3.connect(state_dir / "mailbot.db")
    try:
        e = conn.execute("SELECT at, actor, rules_version, message, nominee, kind, prev_hash FROM events "
                         "WHERE id = 3").fetchone()
    finally:
        conn.close()
    detail = '{"n": 3, "outcome": "correction"}'
    forged = hashlib.sha256("\x1f".join([e[6], e[0], e[1], e[2], str(e[3]), str(e[4]), e[5], detail]).encode()).hexdigest()
    _tamper(state_dir, f"UPDATE events SET detail = '{detail}', hash = '{forged}' WHERE id = 3")
    result = _verify(state_dir)
    assert (result.exit_code, result.output) == (1, _report(
        "数据库完整性：正常；审计链：断开（前3条事件完好）", first_break="审计链：第4条事件之前的事件被删除或改动过"))


def test_an_event_deleted_from_the_middle_of_the_chain_fails_verify(state_dir: Path) -> None:
    _tamper(state_dir, "DELETE FROM events WHERE id = 4")
    result = _verify(state_dir)
    assert (result.exit_code, result.output) == (1, _report(
        "数据库完整性：正常；审计链：断开（前3条事件完好）", first_break="审计链：第5条事件之前的事件被删除或改动过"))


def test_an_event_whose_stored_link_no_longer_names_the_previous_hash_fails_verify(state_dir: Path) -> None:
    _tamper(state_dir, "UPDATE events SET prev_hash = (SELECT hash FROM events WHERE id = 2) WHERE id = 5")
    result = _verify(state_dir)
    assert (result.exit_code, result.output) == (1, _report(
        "数据库完整性：正常；审计链：断开（前4条事件完好）", first_break="审计链：第5条事件之前的事件被删除或改动过"))


def test_the_first_event_deleted_fails_verify(state_dir: Path) -> None:
    _tamper(state_dir, "DELETE FROM events WHERE id = 1")
    result = _verify(state_dir)
    assert (result.exit_code, result.output) == (1, _report(
        "数据库完整性：正常；审计链：断开（前0条事件完好）", first_break="审计链：第2条事件之前的事件被删除或改动过"))


def test_deleting_the_last_events_is_not_detected_without_an_anchor(state_dir: Path) -> None:
    """The documented limit: a chain cut short is still a whole chain.  The head written down
    before (a digest's 审计链头) is the anchor: with ``--head`` the cut is seen."""
    head = _head(state_dir)
    _tamper(state_dir, f"DELETE FROM events WHERE id > {EVENTS - 2}")
    result = _verify(state_dir)
    assert (result.exit_code, result.output) == (
        0, _report(f"数据库完整性：正常；审计链：完好（{EVENTS - 2}条事件）", head=_head(state_dir)))
    anchored = _verify(state_dir, "--head", head)
    assert (anchored.exit_code, anchored.output.splitlines()[-1]) == (
        1, f"第一处问题：审计链头：{head} 不在日志中（共{EVENTS - 2}条事件）：记下这个链头之后，日志被截短或重写过")


def test_a_damaged_database_file_fails_verify_with_what_integrity_check_found(state_dir: Path) -> None:
    db = state_dir / "mailbot.db"
    conn = sqlite3.connect(db)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
    finally:
        conn.close()
    data = bytearray(db.read_bytes())
    pages = struct.unpack(">I", data[28:32])[0]
    data[28:32] = struct.pack(">I", pages + 1)  # one more page in the header's count, and the page
    db.write_bytes(bytes(data) + b"\0" * page_size)
    result = _verify(state_dir)
    found = f"*** in database main ***\nPage {pages + 1} is never used"
    assert (result.exit_code, result.output) == (1, _report(
        f"数据库完整性：已损坏；审计链：完好（{EVENTS}条事件）",
        first_break="数据库完整性：数据库文件已损坏（SQLite 完整性检查未通过），请联系技术人员"))
    machine = json.loads(_verify(state_dir, "--json").output)
    assert machine["lines"][0] == f"integrity_check: {found}; event chain: ok ({EVENTS} events)"
    assert machine["breaks"] == [{"check": "integrity_check", "where": "database", "what": found}]


def test_with_json_the_codes_and_machine_lines_are_printed_for_scripts(state_dir: Path) -> None:
    _tamper(state_dir, "DELETE FROM events WHERE id = 4")
    result = _verify(state_dir, "--json")
    assert (result.exit_code, json.loads(result.output)) == (1, {
        "ok": False, "head": _head_of(state_dir, 3), "events": 3,
        "lines": ["integrity_check: ok; event chain: BROKEN (3 events)", "messages: 0 explained by the event log",
                  "nominees: 0 recomputed from the event log", "school_contacts: 0 recomputed from the event log",
                  "staff_items: 0 recomputed from the event log",
                  "replies: 0 delivery results explained by the event log", "stored files: 0 match their SHA-256"],
        "breaks": [{"check": "event chain", "where": "event 5 (message_recorded)",
                    "what": "prev_hash is not the previous event's hash (an event before it was removed or changed)"}]})


def _head_of(state_dir: Path, event: int) -> str:
    conn = sqlite3.connect(f"file:{state_dir / 'mailbot.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT hash FROM events WHERE id = ?", [event]).fetchone()[0]
    finally:
        conn.close()
