"""The seat ledger: first come first served, waiting lists, replacement, conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.state.ledger import SeatLedger, SeatRequest
from mailbot.state.store import State

BIM, WEB = "建筑信息模型（BIM）职业技能等级证书", "Web前端开发职业技能等级证书"


@pytest.fixture()
def state(tmp_path: Path) -> State:
    return State(tmp_path / "state")


def _message(state: State, uid: int, arrived: str) -> int:
    return state.db["messages"].insert({
        "source": "test", "uidvalidity": 1, "uid": uid, "message_id": f"<{uid}@t>", "sha256": str(uid),
        "size": 1, "arrived_at": arrived, "sender": "a@b.cn", "outcome": "accepted",
        "recorded_at": arrived}).last_pk


def _req(n: int, program: str = BIM) -> SeatRequest:
    idn = f"33010619900101{n:04d}"
    return SeatRequest(idn, idn[:4] + "**********" + idn[-4:], f"教师{n}", program, row=n + 3)


def _submit(state: State, ledger: SeatLedger, inst: str, uid: int, reqs: list[SeatRequest], present=None):
    arrived = f"2020-11-0{min(uid, 9)}T01:00:00+00:00"
    msg = _message(state, uid, arrived)
    with state.transaction():
        return ledger.apply_submission(
            institution_key=inst, institution=inst, requests=reqs,
            present_ids={r.id_number for r in reqs} if present is None else present,
            message=msg, arrived_at=arrived, uid=uid, sender=f"{inst}@x.edu.cn")


def test_nominees_past_capacity_wait_in_order_of_arrival(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 2}, rules_version="t")
    first = _submit(state, ledger, "A", 1, [_req(1), _req(2), _req(3)])
    second = _submit(state, ledger, "B", 2, [_req(4)])
    assert [(p.status, p.waiting_position) for p in first.placements] == [
        ("seated", None), ("seated", None), ("waiting", 1)]
    assert [(p.status, p.waiting_position) for p in second.placements] == [("waiting", 2)]
    assert ledger.program_summary() == [{"program": BIM, "capacity": 2, "seated": 2, "waiting": 2}]


def test_withdrawal_by_resubmission_promotes_head_of_waiting_list(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 1}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1)])
    _submit(state, ledger, "B", 2, [_req(2)])
    result = _submit(state, ledger, "A", 3, [_req(5)])
    assert [(c.kind, c.name) for c in result.changes] == [("removed", "教师1"), ("added", "教师5")]
    assert [(p.name, p.institution, p.sender) for p in result.promotions] == [("教师2", "B", "B@x.edu.cn")]
    assert [(p.status, p.waiting_position) for p in result.placements] == [("waiting", 1)]
    assert result.resubmission


def test_same_person_from_second_institution_is_a_conflict(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5, WEB: 5}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1)])
    result = _submit(state, ledger, "B", 2, [_req(1, WEB)])
    assert result.placements[0].status == "conflict"
    assert "“A”" in result.placements[0].note
    assert ledger.program_summary()[1]["seated"] == 0


def test_resubmission_keeps_place_of_unchanged_rows_and_moves_changed_program(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 1, WEB: 1}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1), _req(2)])  # 2 waits for BIM
    result = _submit(state, ledger, "A", 2, [_req(1), _req(2, WEB)])
    assert [(p.status, p.waiting_position) for p in result.placements] == [("seated", None), ("seated", None)]
    assert [(c.kind, c.detail) for c in result.changes] == [("changed", f"{BIM} → {WEB}")]


def test_empty_form_withdraws_nobody(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 1}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1)])
    result = _submit(state, ledger, "A", 2, [], present=set())
    assert result.changes == [] and ledger.program_summary()[0]["seated"] == 1


def test_event_log_is_append_only_and_chain_verifies(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 1}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1), _req(2)])
    assert state.verify_event_chain() == (True, 3)  # two nominees and A's contact of record
    with pytest.raises(Exception, match="append-only"):
        state.db.execute("UPDATE events SET kind = 'x'")
    assert state.applied_migrations() == ["001_initial", "002_school_contacts_and_staff_items", "003_audit_views",
                                          "004_message_attempts", "005_poll_health"]


def _vm_steps_to_submit(tmp_path: Path, rows: int) -> tuple[int, list[int | None]]:
    """SQLite virtual-machine steps (a deterministic measure of work, not a timing) spent
    placing one submission of ``rows`` nominees on a full program, and their positions."""
    state = State(tmp_path / f"state{rows}")
    ledger = SeatLedger(state, {BIM: 0}, rules_version="t")
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    state.db.conn.set_progress_handler(count, 100)
    result = _submit(state, ledger, "A", 1, [_req(n) for n in range(1, rows + 1)])
    state.db.conn.set_progress_handler(None, 0)
    return steps[0], [p.waiting_position for p in result.placements]


def test_waiting_positions_of_a_big_form_cost_linear_work(tmp_path: Path) -> None:
    small, small_positions = _vm_steps_to_submit(tmp_path, 400)
    big, big_positions = _vm_steps_to_submit(tmp_path, 1600)
    assert (small_positions, big_positions) == (list(range(1, 401)), list(range(1, 1601)))
    # four times the rows: about four times the work (one count per row was sixteen times)
    assert big < small * 6, (small, big)
