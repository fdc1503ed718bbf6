"""docs/SCHEMA.md names every table, column, trigger and index of the real schema, and every
query it shows runs against a live database opened read-only."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from stdnum.cn import ric

from mailbot.forms.model import Outcome
from mailbot.state.ledger import SeatLedger, SeatRequest
from mailbot.masking import mask_id
from mailbot.replies.model import REPLY_KINDS
from mailbot.state.store import State, utc_now

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "SCHEMA.md").read_text(encoding="utf-8")
SQL_BLOCKS = re.findall(r"```sql\n(.*?)```", DOC, re.S)
PROGRAM = "建筑信息模型（BIM）职业技能等级证书"
RECEIPT = "zhejiang-2020-1x-000001"


def synthetic_id(serial: int) -> str:
    """A valid, made-up resident identity number (Hangzhou, 1985-03-01)."""
    body = f"330102198503{serial:02d}0{serial:02d}"[:17]
    return body + ric.calc_check_digit(body)


def section(heading: str) -> str:
    """The text under ``### `heading``` up to the next heading."""
    m = re.search(rf"^### `{re.escape(heading)}`.*?$(.*?)(?=^##)", DOC, re.S | re.M)
    assert m, f"no section for {heading} in SCHEMA.md"
    return m.group(1)


@pytest.fixture
def state(tmp_path: Path) -> State:
    """A real state database with one message, a full program and a waiting list."""
    st = State(tmp_path / "state")
    version = "zhejiang-2020-1x@2020.1"
    with st.transaction():
        msg = st.db["messages"].insert({
            "source": "test", "uidvalidity": 1, "uid": 7, "message_id": "<a@example.edu.cn>",
            "sha256": "0" * 64, "size": 100, "arrived_at": "2020-11-02T01:00:00+00:00",
            "sender": "teacher@example.edu.cn", "outcome": "accepted", "receipt": RECEIPT,
            "recorded_at": utc_now()}).last_pk
        st.add_event("message_recorded", {"outcome": "accepted", "receipt": RECEIPT}, actor="daemon",
                     rules_version=version, message=msg)
        ledger = SeatLedger(st, {PROGRAM: 1}, rules_version=version)
        ids = [synthetic_id(i) for i in (1, 2, 3)]
        ledger.apply_submission(
            institution_key="name:浙江示例职业技术学院", institution="浙江示例职业技术学院",
            requests=[SeatRequest(i, mask_id(i), f"测试{n}", PROGRAM, 4 + n) for n, i in enumerate(ids)],
            present_ids=set(ids), message=msg, arrived_at="2020-11-02T01:00:00+00:00", uid=7,
            sender="teacher@example.edu.cn")
    return st


def test_every_table_and_column_of_the_schema_is_documented(state: State) -> None:
    tables = [r[0] for r in state.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    assert set(tables) == {"messages", "attachments", "forms", "form_rows", "nominees", "events",
                           "outbox", "cursors", "_migrations", "school_contacts", "staff_items", "programs",
                           "attempts",
                           "poll_health", "poll_errors"}
    missing = []
    for table in tables:
        text = section(table)
        for column in (r[1] for r in state.db.execute(f"PRAGMA table_info({table})")):
            if f"| `{column}` |" not in text:
                missing.append(f"{table}.{column}")
    assert missing == []


def test_every_view_and_its_columns_are_documented(state: State) -> None:
    views = [r[0] for r in state.db.execute("SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")]
    assert views == ["message_log", "nominee_history", "program_fill", "roster", "staff_decision_log"]
    missing = [f"{view}.{column}" for view in views for column in
               (r[1] for r in state.db.execute(f"PRAGMA table_info({view})")) if f"| `{column}` |" not in section(view)]
    assert missing == []


def test_the_roster_view_has_the_roster_exports_columns_in_order(state: State) -> None:
    columns = [r[1] for r in state.db.execute("PRAGMA table_info(roster)")]
    assert columns[:13] == ["program", "host_institution", "institution", "name", "gender", "position", "email",
                            "id_number", "phone", "status", "waitlist_position", "arrived_at", "receipt"]


def test_the_views_agree_with_the_ledger(state: State) -> None:
    ledger = SeatLedger(state, {PROGRAM: 1}, rules_version="t")
    with state.transaction():
        assert ledger.record_programs({PROGRAM: "浙江工业大学"}) is True
    with state.transaction():
        assert ledger.record_programs({PROGRAM: "浙江工业大学"}) is False  # unchanged: no new event
    view = lambda sql: [dict(r) for r in state.query(sql)]  # noqa: E731
    nominees = [r["id"] for r in view("SELECT id FROM nominees ORDER BY id")]
    assert [(r["status"], r["waitlist_position"], r["host_institution"], r["receipt"]) for r in view(
        "SELECT * FROM roster ORDER BY nominee")] == [
        (ledger.status_of(n), ledger.waiting_position(n), "浙江工业大学", RECEIPT) for n in nominees]
    assert view("SELECT * FROM program_fill") == [{
        "position": 1, "program": PROGRAM, "host_institution": "浙江工业大学", "seats": 1, "seated": 1, "free": 0,
        "waiting": 2, "held": 0, "withdrawn": 0}]
    assert [(r["nominee"], r["from_status"], r["to_status"]) for r in view("SELECT * FROM nominee_history")] == [
        (nominees[0], None, "seated"), (nominees[1], None, "waiting"), (nominees[2], None, "waiting")]
    assert [(r["receipt"], r["outcome"], r["reply_kind"]) for r in view("SELECT * FROM message_log")] == [
        (RECEIPT, "accepted", None)]
    assert view("SELECT kind FROM events WHERE kind = 'programs_recorded'") == [{"kind": "programs_recorded"}]
    assert view("SELECT * FROM staff_decision_log") == []


def test_every_trigger_and_index_is_named(state: State) -> None:
    names = [r[0] for r in state.db.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'index') AND name NOT LIKE 'sqlite_%'")]
    assert names and [n for n in names if f"`{n}`" not in DOC and f" {n} " not in DOC] == []


def test_the_vocabularies_name_every_reply_kind_and_form_outcome() -> None:
    kinds = DOC.split("### Reply kinds", 1)[1].split("###", 1)[0]
    assert [k for k in (*REPLY_KINDS, "digest") if f"`{k}`" not in kinds] == []
    outcomes = DOC.split("### Form outcomes", 1)[1].split("###", 1)[0]
    assert [o.value for o in Outcome if f"`{o.value}`" not in outcomes] == []


def test_there_are_enough_example_queries() -> None:
    assert 6 <= len(SQL_BLOCKS) <= 14


@pytest.mark.parametrize("number", range(len(SQL_BLOCKS)))
def test_each_example_query_runs_read_only(state: State, number: int) -> None:
    sql = SQL_BLOCKS[number]
    params = {name: RECEIPT if name == "receipt" else mask_id(synthetic_id(1))
              for name in re.findall(r"(?<!:):([a-z_]+)", sql)}
    ro = sqlite3.connect(f"file:{state.path}?mode=ro", uri=True)
    try:
        ro.execute(sql, params).fetchall()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.execute("INSERT INTO cursors VALUES ('x', 1, 1, 'now')")
    finally:
        ro.close()


def test_the_waiting_list_query_agrees_with_the_ledger(state: State) -> None:
    (sql,) = [s for s in SQL_BLOCKS if "row_number()" in s]
    ro = sqlite3.connect(f"file:{state.path}?mode=ro", uri=True)
    rows = ro.execute(sql).fetchall()
    ro.close()
    ledger = SeatLedger(state, {PROGRAM: 1}, rules_version="")
    waiting = list(state.db.query("SELECT id, id_masked FROM nominees WHERE status = 'waiting'"))
    assert [(r[0], r[1], r[2]) for r in rows] == sorted(
        (PROGRAM, ledger.waiting_position(n["id"]), n["id_masked"]) for n in waiting)
    assert [r[1] for r in rows] == [1, 2]


def test_the_receipt_query_finds_every_decision_about_it(state: State) -> None:
    (sql,) = [s for s in SQL_BLOCKS if "FROM events e" in s]
    ro = sqlite3.connect(f"file:{state.path}?mode=ro", uri=True)
    kinds = [r[3] for r in ro.execute(sql, {"receipt": RECEIPT})]
    ro.close()
    assert kinds == ["message_recorded", "nominee_seated", "nominee_waiting", "nominee_waiting",
                     "contact_of_record_set"]


def test_the_standalone_chain_check_agrees_with_verify(state: State) -> None:
    (code,) = re.findall(r"```python\n(import hashlib.*?)```", DOC, re.S)
    code = code.replace("/var/lib/mailbot/mailbot.db", str(state.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    ok, n = state.verify_event_chain()
    assert (out.returncode, ok) == (0, True)
    assert out.stdout.startswith(f"chain ok: {n} events, head ")


def test_events_refuse_changes_as_the_doc_says(state: State) -> None:
    for sql in ("UPDATE events SET kind = 'x'", "DELETE FROM events"):
        with pytest.raises(sqlite3.IntegrityError, match="events are append-only"):
            state.db.execute(sql)
    assert "events are append-only" in DOC
