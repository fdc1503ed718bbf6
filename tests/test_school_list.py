"""Only the school changes its list: the contact of record, additions from other addresses,
teachers held over the reported demand or past the per-mail limit, and the staff list."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mailbot.bundled import default_rules_file
from mailbot.errors import ConfigError, StateError
from mailbot.office import staff_items
from mailbot.rules import parse_rules
from mailbot.state import store
from mailbot.state.contacts import contact_of_record, set_contact_of_record
from mailbot.state.ledger import SeatLedger, SeatRequest
from mailbot.state.store import State

BIM, WEB = "建筑信息模型（BIM）职业技能等级证书", "Web前端开发职业技能等级证书"
SCHOOL = "name:甲职业技术学院"
CONTACT, OTHER = "jwc@jia.edu.cn", "someone@qq.com"


@pytest.fixture()
def state(tmp_path: Path) -> State:
    return State(tmp_path / "state")


def _message(state: State, uid: int, sender: str) -> int:
    return state.db["messages"].insert({
        "source": "test", "uidvalidity": 1, "uid": uid, "message_id": f"<{uid}@t>", "sha256": str(uid),
        "size": 1, "arrived_at": f"2020-11-02T0{uid}:00:00+00:00", "sender": sender,
        "outcome": "accepted", "recorded_at": "2020-11-02T00:00:00+00:00"}).last_pk


def _req(n: int, program: str = BIM) -> SeatRequest:
    idn = f"33010619900101{n:04d}"
    return SeatRequest(idn, idn[:4] + "**********" + idn[-4:], f"教师{n}", program, row=n + 3)


def _submit(state: State, ledger: SeatLedger, uid: int, sender: str, reqs: list[SeatRequest], **kw):
    msg = _message(state, uid, sender)
    with state.transaction():
        return ledger.apply_submission(
            institution_key=SCHOOL, institution="甲职业技术学院", requests=reqs,
            present_ids={r.id_number for r in reqs}, message=msg,
            arrived_at=f"2020-11-02T0{uid}:00:00+00:00", uid=uid, sender=sender, **kw)


def _statuses(state: State) -> list[tuple[str, str, str]]:
    return [(r["name"], r["program"], r["status"]) for r in state.query(
        "SELECT name, program, status FROM nominees ORDER BY id")]


def test_the_first_registering_address_becomes_the_contact_of_record(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5}, rules_version="t")
    result = _submit(state, ledger, 1, "JWC@jia.edu.cn", [_req(1)])
    assert (result.by_contact, result.contact) == (True, CONTACT)
    assert contact_of_record(state, SCHOOL).address == CONTACT  # type: ignore[union-attr]


def test_another_address_naming_the_school_only_adds_and_withdraws_nothing(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5, WEB: 5}, rules_version="t")
    _submit(state, ledger, 1, CONTACT, [_req(1), _req(2), _req(3)])
    result = _submit(state, ledger, 2, OTHER, [_req(2, WEB), _req(9)])
    assert _statuses(state) == [("教师1", BIM, "seated"), ("教师2", BIM, "seated"),
                                ("教师3", BIM, "seated"), ("教师9", BIM, "seated")]
    assert [(p.request.name, p.status) for p in result.placements] == [("教师9", "seated")]
    assert (result.by_contact, result.contact, result.kept) == (False, CONTACT, 1)
    assert sorted((c.kind, c.name) for c in result.asked) == [
        ("changed", "教师2"), ("removed", "教师1"), ("removed", "教师3")]
    assert [(c.kind, c.name) for c in result.changes] == [("added", "教师9")]
    assert contact_of_record(state, SCHOOL).address == CONTACT  # type: ignore[union-attr]


def test_the_contact_of_record_still_shortens_its_list_and_others_affected_are_reported(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5}, rules_version="t")
    _submit(state, ledger, 1, CONTACT, [_req(1), _req(2)])
    _submit(state, ledger, 2, OTHER, [_req(9)])
    result = _submit(state, ledger, 3, CONTACT, [_req(1)])
    assert _statuses(state) == [("教师1", BIM, "seated"), ("教师2", BIM, "withdrawn"),
                                ("教师9", BIM, "withdrawn")]
    assert [(c.kind, c.name) for c in result.changes] == [("removed", "教师2")]
    assert [(a.name, a.sender) for a in result.others_affected] == [("教师9", OTHER)]


def test_staff_can_move_the_contact_of_record_to_another_address(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5}, rules_version="t")
    _submit(state, ledger, 1, CONTACT, [_req(1), _req(2)])
    with state.transaction():
        set_contact_of_record(state, institution_key=SCHOOL, institution="甲职业技术学院", address=OTHER,
                              message=None, actor="staff:王老师", rules_version="t", why="school asked")
    assert _submit(state, ledger, 2, CONTACT, [_req(1)]).by_contact is False
    assert _submit(state, ledger, 3, OTHER, [_req(1)]).by_contact is True
    assert _statuses(state) == [("教师1", BIM, "seated"), ("教师2", BIM, "withdrawn")]


def test_teachers_beyond_the_reported_demand_are_held_and_take_no_seat(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5, WEB: 5}, rules_version="t")
    result = _submit(state, ledger, 1, CONTACT, [_req(1), _req(2), _req(3), _req(4, WEB)], demand={BIM: 2})
    assert [(p.request.name, p.status) for p in result.placements] == [
        ("教师1", "seated"), ("教师2", "seated"), ("教师3", "held"), ("教师4", "held")]
    assert ledger.program_summary() == [{"program": BIM, "capacity": 5, "seated": 2, "waiting": 0},
                                        {"program": WEB, "capacity": 5, "seated": 0, "waiting": 0}]


def test_a_school_without_reported_demand_is_not_capped(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 5}, rules_version="t")
    result = _submit(state, ledger, 1, CONTACT, [_req(1), _req(2), _req(3)], demand=None)
    assert [p.status for p in result.placements] == ["seated", "seated", "seated"]


def test_a_mail_with_too_many_new_teachers_is_held_whole_and_changes_nothing(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 50}, rules_version="t")
    _submit(state, ledger, 1, CONTACT, [_req(1), _req(2)])
    result = _submit(state, ledger, 2, CONTACT, [_req(1)] + [_req(n) for n in range(10, 14)], max_new=3)
    assert result.held_whole and result.new_teachers == 4
    assert [p.status for p in result.placements] == ["seated"] + ["held"] * 4
    assert [(c.kind, c.name) for c in result.asked] == [("removed", "教师2")]
    assert ledger.program_summary()[0]["seated"] == 2


def test_a_mail_held_whole_makes_nobody_contact_of_record(state: State) -> None:
    ledger = SeatLedger(state, {BIM: 50}, rules_version="t")
    _submit(state, ledger, 1, OTHER, [_req(n) for n in range(1, 5)], max_new=3)
    assert contact_of_record(state, SCHOOL) is None
    assert _submit(state, ledger, 2, CONTACT, [_req(20)], max_new=3).by_contact is True


def test_a_database_from_before_the_contacts_gets_each_schools_first_sender(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MIGRATIONS", store.MIGRATIONS[:1])
    old = State(tmp_path / "state")
    msg = _message(old, 1, CONTACT)
    with old.transaction():
        old.insert("nominees", {"id_number": "x", "id_masked": "x", "id_hash": "h", "name": "教师1",
                                "institution_key": SCHOOL, "institution": "甲职业技术学院", "program": BIM,
                                "status": "seated", "requested_at": "t", "request_uid": 1, "request_row": 5,
                                "message": msg, "sender": "JWC@jia.edu.cn", "updated_at": "t"})
    old.close()
    monkeypatch.undo()
    new = State(tmp_path / "state")
    assert contact_of_record(new, SCHOOL).address == CONTACT  # type: ignore[union-attr]


def test_staff_items_are_listed_until_closed_and_close_once(state: State) -> None:
    msg = _message(state, 1, OTHER)
    with state.transaction():
        first = staff_items.add(state, "other_sender", "身份证号330106199001011234有误", actor="daemon",
                                rules_version="t", institution="甲职业技术学院", sender=OTHER, message=msg,
                                receipt="r-1")
        staff_items.add(state, "too_many", "一封邮件新增750名教师", actor="daemon", rules_version="t")
    assert [(i.kind, i.summary) for i in staff_items.list_open(state)] == [
        ("other_sender", "身份证号3301**********1234有误"), ("too_many", "一封邮件新增750名教师")]
    with state.transaction():
        staff_items.close(state, first, actor="staff:王老师", rules_version="t", resolution="已与学校核实")
    assert [i.kind for i in staff_items.list_open(state)] == ["too_many"]
    with pytest.raises(StateError, match="not open"), state.transaction():
        staff_items.close(state, first, actor="staff:王老师", rules_version="t", resolution="again")


def _rules_with(**extra: object):
    data = tomllib.loads(default_rules_file().read_text(encoding="utf-8"))
    data.update(extra)
    return parse_rules(data)


def test_reported_demand_is_looked_up_by_school_name_and_program_alias() -> None:
    rules = _rules_with(demand=[{"institution": "浙江 某某职业技术学院", "program": "物流管理", "teachers": 2}])
    assert rules.reported_demand("浙江某某职业技术学院（盖章）") == {"物流管理职业技能等级证书": 2}
    assert rules.reported_demand("乙职业技术学院") is None
    assert rules.intake.max_new_per_mail == 30


def test_a_demand_table_naming_no_program_or_a_pair_twice_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        _rules_with(demand=[{"institution": "甲", "program": "烹饪", "teachers": 1},
                            {"institution": "乙", "program": "物流管理", "teachers": 1},
                            {"institution": "乙", "program": "物流管理职业技能等级证书", "teachers": 2}])
    assert err.value.problems == [
        "demand[0].program: '烹饪' is not a program of this campaign",
        "demand[2]: 乙 / 物流管理 already given in demand[1]"]
