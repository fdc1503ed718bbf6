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
    ledger = SeatLedger(state, {BIM: 1, WEB: 5}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1), _req(6, WEB)])
    _submit(state, ledger, "B", 2, [_req(2)])
    result = _submit(state, ledger, "A", 3, [_req(6, WEB), _req(5)])  # the school's list: 6 stays, 1 goes
    assert [(c.kind, c.name) for c in result.changes] == [("removed", "教师1"), ("added", "教师5")]
    assert [(p.name, p.institution, p.sender) for p in result.promotions] == [("教师2", "B", "B@x.edu.cn")]
    assert [(p.status, p.waiting_position) for p in result.placements] == [("seated", None), ("waiting", 1)]
    assert result.resubmission and not result.addition


def test_a_form_with_only_new_names_adds_them_and_withdraws_nobody(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1), _req(2)])
    result = _submit(state, ledger, "A", 2, [_req(3)])
    assert result.addition and [(c.kind, c.name) for c in result.changes] == [("added", "教师3")]
    assert _statuses(state) == [("教师1", "seated"), ("教师2", "seated"), ("教师3", "seated")]


def test_a_form_marked_as_an_addition_withdraws_and_moves_nobody_even_when_it_repeats_a_teacher(
        state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5, WEB: 5}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1), _req(2)])
    msg = _message(state, 2, "2020-11-02T01:00:00+00:00")
    with state.transaction():
        result = ledger.apply_submission(
            institution_key="A", institution="A", requests=[_req(1, WEB), _req(3)],
            present_ids={_req(1).id_number, _req(3).id_number, _req(2).id_number}, message=msg,
            arrived_at="2020-11-02T01:00:00+00:00", uid=2, sender="A@x.edu.cn", adds_only=True)
    assert result.addition and result.withdrawn == []
    assert [(c.kind, c.name, c.detail) for c in result.asked] == [("changed", "教师1", f"{BIM} → {WEB}")]
    assert _statuses(state) == [("教师1", "seated"), ("教师2", "seated"), ("教师3", "seated")]


def _statuses(state: State) -> list[tuple[str, str]]:
    return [(r["name"], r["status"]) for r in state.db.query("SELECT name, status FROM nominees ORDER BY id")]


def test_same_person_from_second_institution_is_a_finding_and_the_first_keeps_their_seat(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5, WEB: 5}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1)])
    result = _submit(state, ledger, "B", 2, [_req(1, WEB), _req(2, WEB)])
    assert [(c.request.name, c.other_institution, c.other_program) for c in result.conflicts] == [
        ("教师1", "A", BIM)]
    assert [(p.request.name, p.status) for p in result.placements] == [("教师2", "seated")]
    assert _statuses(state) == [("教师1", "seated"), ("教师2", "seated")]  # no row for B's 教师1


def test_a_mail_handled_late_but_earlier_by_arrival_takes_only_free_seats_and_waits_for_staff(
        state: State) -> None:
    ledger = SeatLedger(state, {BIM: 2}, rules_version="t")
    _submit(state, ledger, "B", 5, [_req(1), _req(2)])  # 2020-11-05: both seated, both told so
    result = _submit(state, ledger, "A", 3, [_req(3)])  # 2020-11-03, handled after B
    assert [(p.request.name, p.status) for p in result.held_by_arrival] == [("教师3", "held")]
    assert _statuses(state) == [("教师1", "seated"), ("教师2", "seated"), ("教师3", "held")]
    later = _submit(state, ledger, "C", 9, [_req(4)])  # arrived after everyone: simply waits
    assert [(p.status, p.waiting_position) for p in later.placements] == [("waiting", 1)]
    assert later.held_by_arrival == []


def test_a_form_naming_no_school_holds_every_teacher_until_one_naming_it_arrives(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5}, rules_version="t")
    msg = _message(state, 1, "2020-11-01T01:00:00+00:00")
    with state.transaction():
        result = ledger.apply_submission(
            institution_key="sender:a@x.edu.cn", institution="", requests=[_req(1)],
            present_ids={_req(1).id_number}, message=msg, arrived_at="2020-11-01T01:00:00+00:00", uid=1,
            sender="a@x.edu.cn", unnamed=True)
    assert result.held_unnamed and [p.status for p in result.placements] == ["held"]
    with state.transaction():
        assert ledger.release_unnamed("A@x.edu.cn", message=msg) == 1
    assert _statuses(state) == [("教师1", "withdrawn")]


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
                                          "004_message_attempts", "005_poll_health",
                                          "006_no_conflict_status"]


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


def test_counts_kept_between_transactions_are_read_again_after_another_connection_wrote(
        state: State, tmp_path: Path) -> None:
    ledger = SeatLedger(state, {BIM: 1}, rules_version="t")
    _submit(state, ledger, "A", 1, [_req(1)])  # the one seat
    staff = State(tmp_path / "state")  # another process, e.g. a staff decision freeing the seat
    with staff.transaction():
        staff.db.execute("UPDATE nominees SET status = 'withdrawn' WHERE id_number = ?", [_req(1).id_number])
    staff.close()
    result = _submit(state, ledger, "B", 2, [_req(2)])
    assert [(p.status, p.waiting_position) for p in result.placements] == [("seated", None)]


def test_counts_kept_between_transactions_are_read_again_after_a_rollback(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 1}, rules_version="t")
    with pytest.raises(RuntimeError):
        with state.transaction():
            ledger.apply_submission(institution_key="A", institution="A", requests=[_req(1)],
                                    present_ids={_req(1).id_number}, message=_message(state, 1, "2020-11-01"),
                                    arrived_at="2020-11-01T01:00:00+00:00", uid=1, sender="a@x.edu.cn")
            raise RuntimeError("the record failed after the seat was given")
    result = _submit(state, ledger, "B", 2, [_req(2)])
    assert [(p.status, p.waiting_position) for p in result.placements] == [("seated", None)]


def test_a_backlog_in_arrival_order_gets_the_waiting_positions_a_fresh_read_gives(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 1, WEB: 2}, rules_version="t")
    results = [_submit(state, ledger, f"S{uid}", uid, [_req(10 * uid, BIM), _req(10 * uid + 1, WEB),
                                                        _req(10 * uid + 2, BIM)]) for uid in range(1, 6)]
    told = [(p.request.name, p.status, p.waiting_position) for r in results for p in r.placements]
    fresh = SeatLedger(state, {BIM: 1, WEB: 2}, rules_version="t")
    read = [(p.request.name, *fresh._standing(p.nominee)) for r in results for p in r.placements]
    assert told[:6] == [("教师10", "seated", None), ("教师11", "seated", None), ("教师12", "waiting", 1),
                        ("教师20", "waiting", 2), ("教师21", "seated", None), ("教师22", "waiting", 3)]
    assert told == read  # nobody moved since: each position as the table gives it now
