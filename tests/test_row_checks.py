"""check_form over hand-built FormReadings: each check, the outcome, masking."""

from __future__ import annotations

import sys
import types

import pytest

from mailbot.errors import NotAnnex3, UnreadableForm
from mailbot.forms.model import CellValue, Finding, FormReading, FormRow, Outcome, RowVerdict
from mailbot.forms.identity import make_id_number
from mailbot.forms.checks import ROW_CHECKS, check_form, judge_file
from mailbot.rules import load_rules

RULES = load_rules()
MAN = make_id_number("33010619900101123")
WOMAN = make_id_number("33010619851231002")
MAN_MASKED = MAN[:4] + "*" * 10 + MAN[-4:]
WOMAN_MASKED = WOMAN[:4] + "*" * 10 + WOMAN[-4:]
BIM = "建筑信息模型（BIM）职业技能等级证书"


def nominee(row: int = 4, *, was_number: bool = False, **values: str) -> FormRow:
    cells = {
        "seq": str(row - 3), "program": BIM, "name": "张三", "gender": "男", "position": "讲师",
        "email": "zhangsan@example.com", "id_number": MAN, "phone": "13812345678",
    }
    cells.update(values)
    return FormRow(row, {
        k: CellValue(v, was_number=was_number and k == "id_number", coordinate=f"{'ABCDEFGH'[i]}{row}")
        for i, (k, v) in enumerate(cells.items())
    })


def reading(*rows: FormRow, **kw) -> FormReading:
    fields = dict(filename="某学院.xlsx", file_format="xlsx", sheet="Sheet1", header_row=3,
                  labels={}, rows=rows, institution="浙江某某职业技术学院", contact="李老师",
                  contact_phone="0571-88008925")
    fields.update(kw)
    return FormReading(**fields)


def findings(row: FormRow, **kw) -> list[tuple[str, str | None]]:
    verdict = check_form(reading(row, **kw), RULES)
    return [(f.code, f.column) for f in verdict.rows[0].findings]


def only_message(row: FormRow, **kw) -> str:
    (finding,) = check_form(reading(row, **kw), RULES).rows[0].findings
    return finding.message


def test_a_correct_form_is_ok_with_normalised_values():
    verdict = check_form(
        reading(nominee(name="张 三", program="BIM（中级）", phone="+86 138-1234-5678",
                        id_number=MAN.lower(), gender="M")),
        RULES,
    )
    assert verdict.outcome is Outcome.OK
    assert verdict.form_findings == ()
    assert verdict.rows == (
        RowVerdict(row=4, program=BIM, program_matched=True, name="张三", gender="男",
                   position="讲师", email="zhangsan@example.com", id_number=MAN,
                   phone="13812345678"),
    )
    assert (verdict.institution, verdict.contact, verdict.contact_phone) == (
        "浙江某某职业技术学院", "李老师", "057188008925")


def test_the_checks_run_in_a_fixed_named_order():
    assert [c.name for c in ROW_CHECKS] == [
        "required", "program", "gender", "email", "id_number", "gender_matches_id", "phone",
        "duplicates",
    ]


def test_blank_template_rows_are_skipped():
    blank = FormRow(5, {"seq": CellValue("2"), "name": CellValue(" \u3000")})
    verdict = check_form(reading(nominee(), blank), RULES)
    assert [r.row for r in verdict.rows] == [4]
    assert verdict.outcome is Outcome.OK


def test_missing_required_cells_name_the_column_as_printed():
    row = nominee(email="", phone=" ", position="")
    verdict = check_form(reading(row, labels={"phone": "手 机"}), RULES)
    assert [(f.code, f.row, f.column, f.coordinate) for f in verdict.rows[0].findings] == [
        ("required_missing", 4, "电子邮箱", "F4"),
        ("required_missing", 4, "手 机", "H4"),
    ]
    assert verdict.rows[0].findings[1].message == "第4行（张三）“手 机”未填写，请补充。"
    assert verdict.outcome is Outcome.NEEDS_CORRECTION


def test_an_identity_number_excel_stored_as_a_number_is_explained():
    damaged = MAN[:15] + "000"
    row = nominee(id_number=damaged, was_number=True)
    message = only_message(row)
    assert findings(row) == [("id_stored_as_number", "身份证号")]
    assert "文本" in message and "重新" in message and damaged not in message
    assert damaged[:4] + "*" * 10 + damaged[-4:] in message


def test_scientific_notation_is_also_a_number_stored_as_number():
    assert findings(nominee(id_number="3.30106E+17")) == [("id_stored_as_number", "身份证号")]


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (MAN[:17], "id_invalid_length"),
        ("3301061990O101123X", "id_invalid_characters"),
        (make_id_number("33010619901301123"), "id_invalid_birthdate"),
        (make_id_number("33010620150101123"), "id_invalid_birthdate"),  # a five-year-old
        (MAN[:-1] + ("1" if MAN[-1] != "1" else "2"), "id_invalid_checksum"),
    ],
)
def test_invalid_identity_numbers(number, code):
    row = nominee(id_number=number)
    assert findings(row) == [(code, "身份证号")]
    assert number not in only_message(row)


def test_gender_must_match_the_identity_number():
    row = nominee(gender="女")
    assert findings(row) == [("gender_mismatch", "性别")]
    assert only_message(row) == (
        f"第4行（张三）“性别”填写为“女”，但身份证号“{MAN_MASKED}”对应的性别为“男”，请核对性别或身份证号。"
    )
    assert findings(nominee(gender="female", id_number=WOMAN)) == []


def test_an_unrecognised_gender_is_invalid():
    assert findings(nominee(gender="未知")) == [("gender_invalid", "性别")]


def test_phone_must_be_a_mainland_mobile():
    row = nominee(phone="1381234567")
    assert findings(row) == [("phone_invalid", "手机")]
    assert only_message(row) == (
        "第4行（张三）“手机”“138***4567”（10位）不是有效的11位中国大陆手机号码，"
        "请填写本人手机号（不加区号、不填座机）。")


@pytest.mark.parametrize(
    ("written", "masked"),
    [("0571-8888888", "057****8888"), ("057188888888", "057*****8888"), ("0571-88008925", "057*****8925"),
     ("88008925", "880*8925")],
)
def test_a_landline_in_the_mobile_column_is_called_a_landline(written, masked):
    assert only_message(nominee(phone=written)) == (
        f"第4行（张三）“手机”“{masked}”是座机号码，请填写本人的11位手机号码。")


def test_email_syntax():
    assert findings(nominee(email="zhangsan@qq")) == [("email_invalid", "电子邮箱")]


FIFTEEN = ("建筑信息模型（BIM）、数字创意建模、数控车铣加工、Web前端开发、老年照护、汽车运用与维修、智能新能源汽车、"
           "跨境电商B2B数据运营、财务共享服务、网店运营推广、智能财税、物流管理、研学旅行策划与管理（EEPM）、"
           "工业机器人操作与运维、建筑工程识图")


def test_an_unknown_program_suggests_the_closest_names_and_lists_the_fifteen():
    row = nominee(program="汽车运用与维护")
    assert findings(row) == [("program_unknown", "所报证书培训班名称")]
    assert only_message(row) == (
        "第4行（张三）“所报证书培训班名称”填写的“汽车运用与维护”不是本次开设的15个证书培训项目之一。"
        "您是否要报：“汽车运用与维修职业技能等级证书”？"
        f"请填写以下15个项目之一（写简称即可）：{FIFTEEN}。")


def test_a_name_like_no_program_lists_the_fifteen():
    assert only_message(nominee(program="不存在的证书")) == (
        "第4行（张三）“所报证书培训班名称”填写的“不存在的证书”不是本次开设的15个证书培训项目之一。"
        f"请填写以下15个项目之一（写简称即可）：{FIFTEEN}。")


@pytest.mark.parametrize(
    ("written", "program"),
    [("物流", "物流管理职业技能等级证书"), ("BIM（中级）", BIM), ("跨境电商", "跨境电商B2B数据运营职业技能等级证书"),
     ("财务", "财务共享服务职业技能等级证书"), ("web", "Web前端开发职业技能等级证书"),
     ("研学", "研学旅行策划与管理（EEPM）职业技能等级证书")],
)
def test_a_shortened_name_that_begins_one_program_only_is_accepted(written, program):
    (row,) = check_form(reading(nominee(program=written)), RULES).rows
    assert (row.program, row.program_matched, row.findings) == (program, True, ())


@pytest.mark.parametrize(
    ("written", "names"),
    [("建筑", "“建筑信息模型（BIM）职业技能等级证书”、“建筑工程识图职业技能等级证书”"),
     ("汽车", "“汽车运用与维修职业技能等级证书”、“智能新能源汽车职业技能等级证书”"),
     ("工业机器人", "“工业机器人操作与运维职业技能等级证书”")],  # also 工业机器人应用编程, not run
)
def test_a_shortened_name_that_fits_several_says_which_names_to_choose_from(written, names):
    row = nominee(program=written)
    assert findings(row) == [("program_ambiguous", "所报证书培训班名称")]
    assert only_message(row) == (
        f"第4行（张三）“所报证书培训班名称”填写的“{written}”不能确定是哪一个证书培训项目"
        f"（本次开设的项目中与之相符的有：{names}），请填写要报项目的全称。")


def test_a_finding_names_a_row_without_a_name_by_its_number_only_and_masks_numbers_in_names():
    assert only_message(nominee(name="")) == "第4行“姓名”未填写，请补充。"
    message = only_message(nominee(name="13812345678", gender="未知"))
    assert message == "第4行（138****5678）“性别”填写为“未知”，请填写“男”或“女”。"


def test_a_certificate_outside_the_campaign_quotes_the_notice():
    row = nominee(program="网络安全评估职业技能等级证书")
    assert findings(row) == [("program_not_in_campaign", "所报证书培训班名称")]
    assert RULES.outside_programs.explanation in only_message(row)
    verdict = check_form(reading(row), RULES)
    assert (verdict.rows[0].program, verdict.rows[0].program_matched) == (
        "网络安全评估职业技能等级证书", False)


def test_the_same_identity_number_on_two_programs_names_both_rows_and_programs():
    verdict = check_form(reading(nominee(4), nominee(5, program="物流管理", name="张三")), RULES)
    assert [[(f.code, f.row, f.message) for f in r.findings] for r in verdict.rows] == [
        [("duplicate_in_form", 4,
          f"第4行（张三，“建筑信息模型（BIM）”）与第5行（张三，“物流管理”）的“身份证号”“{MAN_MASKED}”相同。"
          "每位教师只能报名一个证书培训项目：请只保留要报项目的一行，删除其余各行。")],
        [("duplicate_in_form", 5,
          f"第5行（张三，“物流管理”）与第4行（张三，“建筑信息模型（BIM）”）的“身份证号”“{MAN_MASKED}”相同。"
          "每位教师只能报名一个证书培训项目：请只保留要报项目的一行，删除其余各行。")]]


def test_a_repeated_row_is_to_be_deleted_and_the_first_one_stands():
    verdict = check_form(reading(nominee(4, program="物流管理"), nominee(7, program="物流")), RULES)
    assert [[(f.code, f.message) for f in r.findings] for r in verdict.rows] == [
        [],
        [("duplicate_row", f"第7行（张三）与第4行（张三）的“身份证号”“{MAN_MASKED}”相同，所报项目同为“物流管理”，"
                           "是重复填写：请删除第7行（第4行保留）。")]]


def test_a_row_to_delete_for_its_certificate_does_not_make_the_teachers_other_row_a_duplicate():
    verdict = check_form(reading(nominee(4, program="网络安全评估"), nominee(5, program="物流管理")), RULES)
    assert [[f.code for f in r.findings] for r in verdict.rows] == [["program_not_in_campaign"], []]


def test_a_row_to_delete_is_not_also_asked_to_fix_its_other_cells():
    bad_id = MAN[:-1] + ("1" if MAN[-1] != "1" else "2")
    outside = nominee(5, program="网络安全评估", id_number=bad_id, phone="0571-88008925")
    repeated = nominee(6, email="wrong", gender="女")
    verdict = check_form(reading(nominee(4), outside, repeated), RULES)
    assert [[f.code for f in r.findings] for r in verdict.rows] == [
        [], ["program_not_in_campaign"], ["duplicate_row"]]


def test_an_empty_form_needs_correction():
    verdict = check_form(reading(FormRow(4, {"seq": CellValue("1")})), RULES)
    assert verdict.outcome is Outcome.NEEDS_CORRECTION
    assert [f.code for f in verdict.form_findings] == ["empty_form"]


def test_missing_columns_and_institution_are_form_findings():
    row = FormRow(4, {k: v for k, v in nominee().cells.items() if k != "email"})
    verdict = check_form(
        reading(row, missing_columns=("email", "position"), institution=" ", contact_phone="无"),
        RULES,
    )
    assert [(f.code, f.column) for f in verdict.form_findings] == [
        ("missing_column", "电子邮箱"),
        ("institution_missing", "填报单位（盖章）"),
        ("contact_phone_invalid", "联系电话"),
    ]
    assert verdict.rows[0].findings == ()  # no per-row noise for a missing column
    assert verdict.outcome is Outcome.NEEDS_CORRECTION


def test_a_secondary_vocational_school_is_redirected_to_the_platform():
    verdict = check_form(reading(nominee(), institution="杭州市某某职业高级中学"), RULES)
    assert verdict.outcome is Outcome.REDIRECT
    (finding,) = verdict.form_findings
    assert finding.code == "secondary_vocational_school"
    assert "https://pxglpt.zjedu.gov.cn" in finding.message
    assert "指令性培训—省级骨干培训" in finding.message


def _raise(exc):
    def fake_reader(data, filename, limits):
        raise exc
    return fake_reader


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (NotAnnex3("not_annex3_header", "这不是附件3。"), Outcome.NOT_ANNEX3),
        (UnreadableForm("encrypted", "文件已加密。"), Outcome.UNREADABLE),
    ],
)
def test_reader_errors_become_verdicts(monkeypatch, exc, outcome):
    fake = types.ModuleType("mailbot.forms.reader")
    fake.read_annex3 = _raise(exc)
    monkeypatch.setitem(sys.modules, "mailbot.forms.reader", fake)
    verdict = judge_file(b"...", "x.xlsx", RULES)
    assert (verdict.filename, verdict.outcome, verdict.form_findings, verdict.rows) == (
        "x.xlsx", outcome, (Finding(exc.code, exc.message),), ())


def test_numbers_damaged_by_excel_are_not_reported_as_duplicates():
    damaged = MAN[:15] + "000"
    verdict = check_form(reading(nominee(4, id_number=damaged, was_number=True),
                                 nominee(5, id_number=damaged, was_number=True)), RULES)
    assert [[f.code for f in r.findings] for r in verdict.rows] == [
        ["id_stored_as_number"], ["id_stored_as_number"]]
