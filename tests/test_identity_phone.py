"""Identity numbers, phones, emails, program names and institution kinds."""

from __future__ import annotations

from datetime import date

import pytest

from mailbot.forms.emails import check_email
from mailbot.forms.identity import IdCheck, IdProblem, age_on, check_id_number, gender_from_id, make_id_number
from mailbot.forms.institution_kind import secondary_vocational_keyword
from mailbot.forms.phones import is_contact_phone, is_mainland_mobile
from mailbot.forms.program_match import match_program
from mailbot.rules import load_rules

RULES = load_rules()
MAN = make_id_number("33010619900101123")  # 17th digit 3: male
WOMAN = make_id_number("33010619851231002")  # 17th digit 2: female


def test_a_valid_number_gives_its_birth_date_and_gender():
    assert check_id_number(MAN) == IdCheck(None, date(1990, 1, 1))
    assert gender_from_id(MAN) == "男"
    assert gender_from_id(WOMAN) == "女"


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        (MAN[:17], IdProblem.LENGTH),
        (MAN + "1", IdProblem.LENGTH),
        ("3301061990O101123X", IdProblem.FORMAT),
        ("33010619900101123Y", IdProblem.FORMAT),
        (make_id_number("33010619900231123"), IdProblem.BIRTHDATE),
        (MAN[:16] + ("4" if MAN[16] != "4" else "5") + MAN[17], IdProblem.CHECKSUM),
    ],
)
def test_invalid_numbers_say_why(number, problem):
    assert check_id_number(number).problem is problem


def test_age_counts_whole_years():
    assert age_on(date(1990, 11, 10), date(2020, 11, 9)) == 29
    assert age_on(date(1990, 11, 9), date(2020, 11, 9)) == 30


@pytest.mark.parametrize("number", ["13812345678", "15912345678", "18612345678", "19912345678"])
def test_mainland_mobiles_are_valid(number):
    assert is_mainland_mobile(number)


@pytest.mark.parametrize("number", ["12812345678", "1381234567", "057188008925", "1381234567X", ""])
def test_other_numbers_are_not_mobiles(number):
    assert not is_mainland_mobile(number)


@pytest.mark.parametrize(
    "text", ["0571-88008925", "88008925转123", "0571-85290492、13812345678", "13812345678"]
)
def test_a_contact_phone_may_be_a_landline(text):
    assert is_contact_phone(text)


@pytest.mark.parametrize("text", ["无", "123", "见上"])
def test_a_contact_phone_must_contain_a_number(text):
    assert not is_contact_phone(text)


def test_emails_are_checked_for_syntax_only():
    assert check_email("teacher@zjut.edu.cn") == "teacher@zjut.edu.cn"
    assert check_email("teacher@nonexistent-domain-for-mailbot.cn") == "teacher@nonexistent-domain-for-mailbot.cn"
    assert check_email("teacher@qq") is None
    assert check_email("teacher.qq.com") is None


@pytest.mark.parametrize(
    ("written", "short_name"),
    [
        ("BIM", "建筑信息模型（BIM）"),
        ("建筑信息模型", "建筑信息模型（BIM）"),
        ("建筑信息模型（BIM）职业技能等级证书（中级）", "建筑信息模型（BIM）"),
        ("Web前端开发", "Web前端开发"),
        ("WEB前端", "Web前端开发"),
        ("web 前端开发(初级)", "Web前端开发"),
        ("1+X物流管理", "物流管理"),
        ("研学旅行策划与管理(EEPM)职业技能等级证书", "研学旅行策划与管理（EEPM）"),
        ("跨境电商 B2B 数据运营", "跨境电商B2B数据运营"),
        ("1+X工业机器人操作与运维师资培训班", "工业机器人操作与运维"),
    ],
)
def test_what_people_write_matches_the_program(written, short_name):
    assert match_program(written, RULES).program.short_name == short_name


def test_a_real_certificate_outside_the_campaign_is_recognised():
    match = match_program("失智老年人照护职业技能等级证书（初级）", RULES)
    assert (match.program, match.outside) == (None, "失智老年人照护")


def test_an_unknown_name_gets_the_closest_programs_as_suggestions():
    match = match_program("汽车运用与维护", RULES)
    assert match.program is None and match.outside is None
    assert match.suggestions[0].short_name == "汽车运用与维修"


@pytest.mark.parametrize(
    ("institution", "keyword"),
    [
        ("杭州市临平职业高级中学", "职业高级中学"),
        ("浙江省某某中等职业学校", "中等职业"),
        ("某县职业技术教育中心", "职业技术教育中心"),
        ("杭州市某某职业学校", "职业学校"),
        ("某某技工学校", "技工学校"),
        ("浙江工业大学", None),
        ("杭州职业技术学院", None),
        ("浙江某某技师学院", None),
        ("某某高职高专学院", None),
    ],
)
def test_secondary_vocational_schools_are_recognised_by_keyword(institution, keyword):
    assert secondary_vocational_keyword(institution, RULES) == keyword
