"""``mailbot check`` through click's CliRunner: it reads what the daemon reads (forms, zips, .eml,
through the contained walk and readers), speaks Chinese to staff in its table, keeps the codes
for ``--json``, and exits 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from forms_factory import make_annex3_xlsx, nominee
from mail_factory import make_mail, make_zip
from mailbot.bundled import default_rules_file
from mailbot.cli import main
from mailbot.forms.check_report import verdict_to_json
from mailbot.forms.checks import check_form
from mailbot.forms.model import CellValue, FormReading, FormRow, Outcome
from mailbot.forms.identity import make_id_number
from mailbot.rules import load_rules

MAN = make_id_number("33010619900101123")
WOMAN = make_id_number("33010619851231002")
GOOD_ROWS = [nominee(1, program="BIM"), nominee(2, program="物流管理")]
BAD_ROWS = [nominee(1, program="BIM", gender="女", phone="1381234567")]


@pytest.fixture
def files(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "good.xlsx").write_bytes(make_annex3_xlsx(GOOD_ROWS, contact_phone="13912345678"))
    (tmp_path / "bad.xlsx").write_bytes(make_annex3_xlsx(BAD_ROWS))
    (tmp_path / "zz.xlsx").write_bytes(make_annex3_xlsx(GOOD_ROWS[:1], institution="杭州市某某中等职业学校"))
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(main, ["check", *args])


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_good_form_prints_one_json_line_and_exits_0(files):
    result = run("--json", "good.xlsx")
    assert result.exit_code == 0, result.output
    (obj,) = lines(result)
    assert (obj["file"], obj["outcome"], obj["institution"], obj["contact_phone"], obj["form_findings"]) == (
        "good.xlsx", "ok", "浙江某某职业技术学院", "139****5678", [])
    assert [(r["row"], r["name"], r["ok"], r["findings"]) for r in obj["rows"]] == [
        (4, "张三", True, []), (5, "李四", True, [])]


def test_a_form_needing_correction_lists_its_codes_in_json_and_exits_1(files):
    result = run("--json", "bad.xlsx")
    assert result.exit_code == 1
    (obj,) = lines(result)
    assert obj["outcome"] == "needs_correction"
    assert [(f["column"], f["code"]) for f in obj["rows"][0]["findings"]] == [
        ("性别", "gender_mismatch"), ("手机", "phone_invalid")]
    assert nominee(1).id_number not in result.stdout and "1381234567" not in result.stdout


def test_check_shows_the_findings_a_sender_gets_naming_teacher_program_and_landline(files):
    rows = [nominee(1, name="张三", gender="男", id_number=MAN, program="物流", phone="0571-8888888"),
            nominee(2, name="王芳", gender="女", id_number=WOMAN, program="建筑", phone="13712345678"),
            nominee(3, name="张三", gender="男", id_number=MAN, program="物流管理", phone="057188888888")]
    (files / "fixes.xlsx").write_bytes(make_annex3_xlsx(rows))
    result = run("--json", "fixes.xlsx")
    masked = MAN[:4] + "*" * 10 + MAN[-4:]
    (obj,) = lines(result)
    assert [(r["row"], r["program"], [f["message"] for f in r["findings"]]) for r in obj["rows"]] == [
        (4, "物流管理职业技能等级证书", ["第4行（张三）“手机”“057****8888”是座机号码，请填写本人的11位手机号码。"]),
        (5, "建筑", ["第5行（王芳）“所报证书培训班名称”填写的“建筑”不能确定是哪一个证书培训项目"
                   "（本次开设的项目中与之相符的有：“建筑信息模型（BIM）职业技能等级证书”、“建筑工程识图职业技能等级证书”），"
                   "请填写要报项目的全称。"]),
        (6, "物流管理职业技能等级证书", [f"第6行（张三）与第4行（张三）的“身份证号”“{masked}”相同，所报项目同为“物流管理”，"
                                  "是重复填写：请删除第6行（第4行保留）。"]),
    ]


def test_other_outcomes_and_their_exit_codes(files):
    redirect, broken = run("--json", "zz.xlsx"), run("--json", "broken.xlsx")
    assert (redirect.exit_code, [(o["outcome"], [f["code"] for f in o["form_findings"]]) for o in lines(redirect)]) == (
        1, [("redirect", ["secondary_vocational_school"])])
    assert (broken.exit_code, [o["outcome"] for o in lines(broken)]) == (2, ["unreadable"])


def test_the_worst_file_decides_the_exit_code(files):
    assert run("--json", "good.xlsx", "bad.xlsx").exit_code == 1
    result = run("--json", "good.xlsx", "broken.xlsx", "bad.xlsx")
    assert result.exit_code == 2
    assert [o["file"] for o in lines(result)] == ["good.xlsx", "broken.xlsx", "bad.xlsx"]


def test_the_table_speaks_chinese_to_staff_with_masked_data_and_no_codes(files):
    result = run("bad.xlsx")
    assert result.exit_code == 1
    out = [line.strip() for line in result.stdout.splitlines()]
    assert ["结果      需修改", "填报单位  浙江某某职业技术学院", "联系人    王老师", "联系电话  057*****0000"] == out[1:5]
    table = result.stdout
    for code in ("needs_correction", "gender_mismatch", "phone_invalid", " ok "):
        assert code not in table
    assert nominee(1).id_number not in table and "1381234567" not in table
    masked = nominee(1).id_number[:4] + "*" * 10 + nominee(1).id_number[-4:]
    assert masked in table.replace("│", "").replace(" ", "")


def test_a_zip_is_opened_like_the_daemon_opens_it(files):
    (files / "报名.zip").write_bytes(make_zip([("good.xlsx", (files / "good.xlsx").read_bytes()),
                                              ("bad.xlsx", (files / "bad.xlsx").read_bytes()),
                                              ("说明.rar", b"Rar!\x1a\x07\x00")]))
    result = run("--json", "报名.zip")
    assert result.exit_code == 2
    assert [(o["file"], o["outcome"], [f["code"] for f in o["form_findings"]]) for o in lines(result)] == [
        ("报名.zip > zip 报名.zip > good.xlsx", "ok", []),
        ("报名.zip > zip 报名.zip > bad.xlsx", "needs_correction", []),
        ("报名.zip", "unreadable", ["rar_unsupported"]),
    ]


def test_an_eml_is_walked_like_an_arriving_mail(files):
    form = (files / "good.xlsx").read_bytes()
    mail = make_mail(attachments=[("报名.zip", make_zip([("附件3.xlsx", form)]))])
    (files / "来信.eml").write_bytes(mail)
    (files / "空信.eml").write_bytes(make_mail(attachments=[]))
    result = run("--json", "来信.eml", "空信.eml")
    assert [(o["file"], o["outcome"], [f["code"] for f in o["form_findings"]]) for o in lines(result)] == [
        ("来信.eml > zip 报名.zip > 附件3.xlsx", "ok", []),
        ("空信.eml", "not_annex3", ["no_form"]),
    ]


def test_a_bad_rules_file_lists_every_problem_on_stderr_in_chinese_and_exits_2(files):
    text = default_rules_file().read_text(encoding="utf-8")
    text = text.replace("cap_yuan = 3200", "cap_yuan = -1").replace(
        'address = "shengpei@zjut.edu.cn"', 'address = "nobody"')
    (files / "bad-rules.toml").write_text(text, encoding="utf-8")
    result = run("--rules", "bad-rules.toml", "good.xlsx")
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr.splitlines()
    assert err[0] == "mailbot：规则文件有误（bad-rules.toml），请联系技术人员："
    assert "  - fees.cap_yuan: Input should be greater than 0 (got -1)" in err


def _row(n: int, program: str, name: str, gender: str, number: str, phone: str) -> FormRow:
    values = {"seq": str(n - 3), "program": program, "name": name, "gender": gender,
              "position": "讲师", "email": f"t{n}@example.com", "id_number": number, "phone": phone}
    return FormRow(n, {k: CellValue(v) for k, v in values.items()})


def test_verdict_to_json_is_pure_and_masks_personal_data():
    reading = FormReading(filename="good.xlsx", file_format="xlsx", sheet="Sheet1", header_row=3,
                          labels={"name": "姓 名"}, rows=(_row(4, "BIM", "张 三", "男", MAN, "13812345678"),
                                                          _row(5, "物流管理", "王芳", "女", WOMAN, "13712345678")),
                          institution="浙江某某职业技术学院", contact="李老师", contact_phone="13912345678")
    verdict = check_form(reading, load_rules())
    assert verdict.outcome is Outcome.OK
    obj = verdict_to_json(verdict)
    assert obj["file"] == "good.xlsx"
    assert obj == verdict_to_json(verdict)
    assert MAN not in json.dumps(obj, ensure_ascii=False)
