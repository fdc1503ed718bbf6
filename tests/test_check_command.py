"""``mailbot check`` through click's CliRunner: JSON lines, the table, exit codes, bad rules."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailbot.forms.check_report import verdict_to_json
from mailbot.cli import main
from mailbot.errors import NotAnnex3, UnreadableForm
from mailbot.forms.model import CellValue, FormReading, FormRow, Outcome
from mailbot.forms.identity import make_id_number
from mailbot.forms.checks import check_form
from mailbot.bundled import default_rules_file
from mailbot.rules import load_rules

MAN = make_id_number("33010619900101123")
WOMAN = make_id_number("33010619851231002")
BIM = "建筑信息模型（BIM）职业技能等级证书"


def row(n: int, program: str, name: str, gender: str, number: str, phone: str) -> FormRow:
    values = {"seq": str(n - 3), "program": program, "name": name, "gender": gender,
              "position": "讲师", "email": f"t{n}@example.com", "id_number": number, "phone": phone}
    return FormRow(n, {k: CellValue(v) for k, v in values.items()})


def form(filename: str, *rows: FormRow, institution: str = "浙江某某职业技术学院") -> FormReading:
    return FormReading(filename=filename, file_format="xlsx", sheet="Sheet1", header_row=3,
                       labels={"name": "姓 名"}, rows=rows, institution=institution,
                       contact="李老师", contact_phone="13912345678")


GOOD = form("good.xlsx", row(4, "BIM", "张 三", "男", MAN, "+86 138 1234 5678"),
            row(5, "物流管理", "王芳", "女", WOMAN, "13712345678"))
BAD = form("bad.xlsx", row(4, "WEB前端", "张三", "女", MAN, "1381234567"))
FIXES = form("fixes.xlsx", row(4, "物流", "张三", "男", MAN, "0571-8888888"),
              row(5, "建筑", "王芳", "女", WOMAN, "13712345678"),
              row(7, "物流管理", "张三", "男", MAN, "057188888888"))
REDIRECT = form("zz.xlsx", row(4, "BIM", "张三", "男", MAN, "13812345678"),
                institution="杭州市某某中等职业学校")
READINGS = {f.filename: f for f in (GOOD, BAD, REDIRECT, FIXES)}


def fake_read_annex3(data: bytes, filename: str, limits) -> FormReading:
    if filename == "notes.xlsx":
        raise NotAnnex3("not_annex3", "该文件不是附件3《高校参训教师信息汇总表》。")
    if filename == "broken.xlsx":
        raise UnreadableForm("corrupt", "文件已损坏，无法打开。")
    return READINGS[filename]


@pytest.fixture
def files(tmp_path: Path, monkeypatch) -> Path:
    fake = types.ModuleType("mailbot.forms.reader")
    fake.read_annex3 = fake_read_annex3
    monkeypatch.setitem(sys.modules, "mailbot.forms.reader", fake)
    for name in ("good.xlsx", "bad.xlsx", "zz.xlsx", "notes.xlsx", "broken.xlsx", "fixes.xlsx"):
        (tmp_path / name).write_bytes(b"PK")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(main, ["check", *args])


def test_a_good_form_prints_one_json_line_and_exits_0(files):
    result = run("--json", "good.xlsx")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{
        "file": "good.xlsx",
        "outcome": "ok",
        "institution": "浙江某某职业技术学院",
        "contact": "李老师",
        "contact_phone": "139****5678",
        "form_findings": [],
        "rows": [
            {"row": 4, "program": BIM, "name": "张三", "gender": "男", "position": "讲师",
             "email": "t4@example.com", "id_masked": MAN[:4] + "*" * 10 + MAN[-4:],
             "phone": "138****5678", "ok": True, "findings": []},
            {"row": 5, "program": "物流管理职业技能等级证书", "name": "王芳", "gender": "女",
             "position": "讲师", "email": "t5@example.com",
             "id_masked": WOMAN[:4] + "*" * 10 + WOMAN[-4:], "phone": "137****5678",
             "ok": True, "findings": []},
        ],
    }]


def test_a_form_needing_correction_lists_its_findings_and_exits_1(files):
    result = run("--json", "bad.xlsx")
    assert result.exit_code == 1
    (obj,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert obj["outcome"] == "needs_correction"
    assert obj["rows"][0]["program"] == "Web前端开发职业技能等级证书"
    assert [(f["column"], f["code"]) for f in obj["rows"][0]["findings"]] == [
        ("性别", "gender_mismatch"), ("手机", "phone_invalid")]
    assert MAN not in result.stdout and "1381234567" not in result.stdout


def test_check_shows_the_findings_a_sender_gets_naming_teacher_program_and_landline(files):
    result = run("--json", "fixes.xlsx")
    masked = MAN[:4] + "*" * 10 + MAN[-4:]
    (obj,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["row"], r["program"], [f["message"] for f in r["findings"]]) for r in obj["rows"]] == [
        (4, "物流管理职业技能等级证书", ["第4行（张三）“手机”“057****8888”是座机号码，请填写本人的11位手机号码。"]),
        (5, "建筑", ["第5行（王芳）“所报证书培训班名称”填写的“建筑”不能确定是哪一个证书培训项目"
                   "（本次开设的项目中与之相符的有：“建筑信息模型（BIM）职业技能等级证书”、“建筑工程识图职业技能等级证书”），"
                   "请填写要报项目的全称。"]),
        (7, "物流管理职业技能等级证书", [f"第7行（张三）与第4行（张三）的“身份证号”“{masked}”相同，所报项目同为“物流管理”，"
                                  "是重复填写：请删除第7行（第4行保留）。"]),
    ]


@pytest.mark.parametrize(
    ("name", "outcome", "code", "status"),
    [("zz.xlsx", "redirect", "secondary_vocational_school", 1),
     ("notes.xlsx", "not_annex3", "not_annex3", 1),
     ("broken.xlsx", "unreadable", "corrupt", 2)],
)
def test_other_outcomes_and_their_exit_codes(files, name, outcome, code, status):
    result = run("--json", name)
    assert result.exit_code == status
    obj = json.loads(result.stdout)
    assert (obj["outcome"], [f["code"] for f in obj["form_findings"]]) == (outcome, [code])


def test_the_worst_file_decides_the_exit_code(files):
    assert run("--json", "good.xlsx", "bad.xlsx").exit_code == 1
    result = run("--json", "good.xlsx", "broken.xlsx", "bad.xlsx")
    assert result.exit_code == 2
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == [
        "good.xlsx", "broken.xlsx", "bad.xlsx"]


def test_the_table_shows_outcome_institution_and_masked_data(files):
    result = run("good.xlsx", "bad.xlsx")
    assert result.exit_code == 1
    out = result.stdout
    for text in ("good.xlsx", "bad.xlsx", "ok", "needs_correction", "浙江某某职业技术学院",
                 "139****5678", "138****5678", MAN[:4] + "*" * 10 + MAN[-4:], "gender_mismatch"):
        assert text in out
    assert MAN not in out and "13812345678" not in out


def test_a_bad_rules_file_lists_every_problem_on_stderr_and_exits_2(files):
    text = default_rules_file().read_text(encoding="utf-8")
    text = text.replace("cap_yuan = 3200", "cap_yuan = -1").replace(
        'address = "shengpei@zjut.edu.cn"', 'address = "nobody"')
    (files / "bad-rules.toml").write_text(text, encoding="utf-8")
    result = run("--rules", "bad-rules.toml", "good.xlsx")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "fees.cap_yuan: Input should be greater than 0 (got -1)" in result.stderr
    assert "intake.address: String should match pattern" in result.stderr


def test_verdict_to_json_is_pure_and_masks_personal_data():
    verdict = check_form(GOOD, load_rules())
    assert verdict.outcome is Outcome.OK
    obj = verdict_to_json(verdict)
    assert obj["file"] == "good.xlsx"
    assert obj == verdict_to_json(verdict)
    assert MAN not in json.dumps(obj, ensure_ascii=False)


def test_a_real_workbook_through_the_real_reader(tmp_path: Path):
    pytest.importorskip("mailbot.forms.reader")
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["高校参训教师信息汇总表"])
    ws.append(["填报单位（盖章）：浙江某某职业技术学院", None, "联系人：李老师", None, "联系电话：13912345678"])
    ws.append(["序号", "所报证书培训班名称", "姓 名", "性别", "职务", "电子邮箱", "身份证号", "手 机"])
    ws.append([1, "BIM", "张三", "男", "讲师", "t4@example.com", MAN, "13812345678"])
    ws.append([2, "物流管理", "王芳", "女", "讲师", "t5@example.com", int(WOMAN[:15] + "000"),
               "13712345678"])
    path = tmp_path / "real.xlsx"
    wb.save(path)
    result = run("--json", str(path))
    obj = json.loads(result.stdout)
    assert obj["outcome"] == "needs_correction", obj
    assert [[f["code"] for f in r["findings"]] for r in obj["rows"]] == [[], ["id_stored_as_number"]]
