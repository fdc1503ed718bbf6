"""The bundled campaign rules load, and bad rules files are reported in full."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailbot.errors import ConfigError
from mailbot.bundled import default_rules_file
from mailbot.rules import CampaignRules, load_rules, parse_rules

SHANGHAI = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def rules() -> CampaignRules:
    return load_rules()


def raw_rules() -> dict:
    return tomllib.loads(default_rules_file().read_text(encoding="utf-8"))


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_rules(data, "test.toml")
    return info.value.problems


def test_the_bundled_rules_describe_the_fifteen_programs_of_annex_1(rules):
    assert rules.campaign.id == "zhejiang-2020-1x"
    assert rules.campaign.version
    assert [p.number for p in rules.programs] == list(range(1, 16))
    assert all(p.name.endswith("职业技能等级证书") for p in rules.programs)
    assert rules.programs[0].name == "建筑信息模型（BIM）职业技能等级证书"
    assert rules.programs[0].host == "浙江工业大学"
    assert rules.programs[0].evaluation_org == "廊坊市中科建筑产业化创新研究中心"
    assert rules.program("construction-drawing").host == "宁波职业技术学院"


def test_every_program_inherits_the_training_defaults(rules):
    assert {(p.format, p.days, p.hours, p.seats) for p in rules.programs} == {
        ("5天线下集中培训+5天线上培训", 10, 80, 50)
    }
    assert rules.total_seats == 750


def test_a_program_may_override_its_seats():
    data = raw_rules()
    data["programs"][2]["seats"] = 30
    rules = parse_rules(data)
    assert [p.seats for p in rules.programs[:4]] == [50, 50, 30, 50]


def test_the_deadline_is_the_end_of_9_november_beijing_time_inclusive(rules):
    assert rules.deadline.aware.isoformat() == "2020-11-09T23:59:59+08:00"
    assert rules.deadline.is_on_time(datetime(2020, 11, 9, 23, 59, 59, tzinfo=SHANGHAI))
    assert not rules.deadline.is_on_time(datetime(2020, 11, 10, 0, 0, 0, tzinfo=SHANGHAI))
    assert rules.deadline.is_on_time(datetime(2020, 11, 9, 15, 59, 59, tzinfo=timezone.utc))


def test_the_notice_facts_are_in_the_rules(rules):
    assert rules.intake.address == "shengpei@zjut.edu.cn"
    assert rules.intake.stamped_scan_required is False
    assert rules.fees.cap_yuan == 3200
    assert rules.platform.url == "https://pxglpt.zjedu.gov.cn"
    assert rules.platform.menu == "指令性培训—省级骨干培训"
    assert rules.campaign.one_program_per_person is True
    assert "纳入其统一培训计划" in rules.outside_programs.explanation
    assert "网络安全评估" in rules.outside_programs.certificates
    assert "技师学院" not in rules.secondary_vocational.keywords


def test_a_bad_rules_file_reports_every_problem_with_its_key_path():
    data = raw_rules()
    data["programs"][3]["seats"] = -5
    data["programs"][4]["name"] = "老年照护"
    del data["intake"]["address"]
    data["deadline"]["timezone"] = "Asia/Hangzhou"
    data["fees"]["cap_yuen"] = 3200
    problems = problems_of(data)
    assert len(problems) == 5
    assert "programs[3].seats: Input should be greater than 0 (got -5)" in problems
    assert any(p.startswith("programs[4].name: Value error, the official full name ends") for p in problems)
    assert "intake.address: Field required" in problems
    assert any(p.startswith("deadline.timezone:") and "Asia/Hangzhou" in p for p in problems)
    assert "fees.cap_yuen: unknown key (typo?)" in problems


def test_an_alias_naming_two_programs_is_a_problem():
    data = raw_rules()
    data["programs"][1]["aliases"].append("BIM")
    data["outside_programs"]["certificates"].append("物流管理职业技能等级证书")
    problems = problems_of(data)
    assert any(p.startswith("programs[1]: alias 'BIM' also names programs[0]") for p in problems)
    assert any("is also a program of this campaign" in p for p in problems)


def test_an_alias_that_is_part_of_another_programs_name_is_a_problem():
    data = raw_rules()
    data["programs"][5]["aliases"].append("汽车")  # 汽车运用与维修; also inside 智能新能源汽车
    assert problems_of(data) == [
        "programs[5]: alias '汽车' is part of a name of programs[6] (智能新能源汽车); it could not tell them apart"]


def test_the_bundled_rules_accept_shortened_names_and_their_aliases():
    from mailbot.forms.program_match import match_program

    rules = load_rules()
    matched = {w: match_program(w, rules).program for w in ("物流", "财税", "识图", "建筑")}
    assert {w: p.short_name if p else None for w, p in matched.items()} == {
        "物流": "物流管理", "财税": "智能财税", "识图": "建筑工程识图", "建筑": None}


def test_a_toml_syntax_error_names_the_line(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text('[campaign]\nid = "x"\nversion = \n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert info.value.source == str(path)
    assert len(info.value.problems) == 1
    assert "TOML syntax error" in info.value.problems[0] and "line 3" in info.value.problems[0]


def test_a_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_rules(tmp_path / "nope.toml")


def test_a_correction_leaves_time_to_resend_only_up_to_an_hour_before_the_deadline():
    from datetime import datetime, timedelta, timezone

    deadline = load_rules().deadline  # 2020-11-09 23:59:59 Beijing = 15:59:59 UTC
    at = datetime(2020, 11, 9, 15, 59, 59, tzinfo=timezone.utc)
    assert [deadline.leaves_time_to_resend(at - timedelta(minutes=m)) for m in (61, 60, 59, 0, -5)] == [
        True, True, False, False, False]


def test_expected_schools_are_optional_and_checked_and_the_silent_ones_are_named_in_order(rules):
    assert rules.expected_institutions == () and rules.silent_institutions(["甲职业技术学院"]) == ()
    data = raw_rules()
    data["expected_institutions"] = ["甲职业技术学院", " （盖章）", "乙职业 技术学院", "乙职业技术学院（盖章）"]
    assert problems_of(data) == [
        "expected_institutions[1]: empty once normalised",
        "expected_institutions[3]: '乙职业技术学院（盖章）' already given in expected_institutions[2]"]
    data["expected_institutions"] = ["甲职业技术学院", "乙职业技术学院（盖章）", "丙职业技术学院"]
    expected = parse_rules(data, "test.toml")
    assert expected.silent_institutions(["乙职业技术学院", "丁职业技术学院"]) == ("甲职业技术学院", "丙职业技术学院")
