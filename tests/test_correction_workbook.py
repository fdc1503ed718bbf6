"""The correction workbook: the sender's xlsx with offending cells filled and commented."""

from __future__ import annotations

import io
import zipfile

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.table import Table
from stdnum.cn import ric

from mailbot.replies.correction_workbook import COMMENT_AUTHOR, corrected_name, highlight_workbook

HEADER = ["序号", "所报证书培训班名称", "姓名", "性别", "职务", "电子邮箱", "身份证号", "手机"]
BODY17 = "33010619900101123"
GOOD_ID = BODY17 + ric.calc_check_digit(BODY17)


def annex3_bytes(*, extra_sheet_first: bool = False, merged: bool = False) -> bytes:
    wb = Workbook()
    ws = wb.active
    if extra_sheet_first:
        ws.title = "说明"
        ws["A1"] = "填表说明"
        ws = wb.create_sheet("附件3")
    else:
        ws.title = "附件3"
    ws["A1"] = "高校参训教师信息汇总表"
    ws["A2"] = "填报单位（盖章）：示例职业技术学院"
    ws.append(HEADER)
    ws.append([1, "建筑信息模型（BIM）职业技能等级证书", "张晓明", "男", "讲师",
               "zxm@example.edu.cn", GOOD_ID, "13812345678"])
    ws.append([2, "BIM建模", "李红", "女", "副教授", "lh@example", "330106199001011230", "1381234"])
    ws["H4"].number_format = "@"
    if merged:
        ws.merge_cells("A1:H1")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


FINDINGS = [
    ("G5", "身份证号校验位不正确，请核对后重新填写"),
    ("B5", "“BIM建模”不是本次开设的培训项目"),
    ("H5", "手机号码应为11位数字"),
    ("g5", "身份证号与出生日期不符"),
]


def read_back(data: bytes, sheet: str = "附件3"):
    return load_workbook(io.BytesIO(data))[sheet]


def test_each_offending_cell_is_filled_and_commented():
    name, data = highlight_workbook(annex3_bytes(), "汇总表.xlsx", FINDINGS, sheet="附件3")
    assert name == "汇总表-需修改.xlsx"
    ws = read_back(data)
    for coordinate in ("G5", "B5", "H5"):
        assert ws[coordinate].fill.fill_type == "solid"
        assert ws[coordinate].fill.fgColor.rgb == "FFFFFF00"
        assert ws[coordinate].border.left.color.rgb == "FFFF0000"
        assert ws[coordinate].comment.author == COMMENT_AUTHOR
    assert ws["G5"].comment.text == "身份证号校验位不正确，请核对后重新填写\n身份证号与出生日期不符"
    assert ws["H5"].comment.text == "手机号码应为11位数字"


def test_the_senders_data_and_untouched_cells_are_kept():
    _, data = highlight_workbook(annex3_bytes(), "汇总表.xlsx", FINDINGS, sheet="附件3")
    ws = read_back(data)
    assert [c.value for c in ws[3]] == HEADER
    assert ws["G4"].value == GOOD_ID and ws["G4"].comment is None
    assert ws["G4"].fill.fill_type is None
    assert ws["A2"].value == "填报单位（盖章）：示例职业技术学院"


def test_the_named_sheet_is_marked_and_made_active_even_when_not_first():
    _, data = highlight_workbook(annex3_bytes(extra_sheet_first=True), "a.xlsx", FINDINGS,
                                 sheet="附件3")
    wb = load_workbook(io.BytesIO(data))
    assert wb.active.title == "附件3"
    assert (wb["附件3"]["G5"].comment.text, wb["说明"]["G5"].comment) == (
        "身份证号校验位不正确，请核对后重新填写\n身份证号与出生日期不符", None)


def test_an_unknown_sheet_name_falls_back_to_the_active_sheet():
    _, data = highlight_workbook(annex3_bytes(), "a.xlsx", FINDINGS, sheet="Sheet9")
    assert read_back(data)["G5"].comment.text == "身份证号校验位不正确，请核对后重新填写\n身份证号与出生日期不符"


def test_a_merged_cell_is_marked_on_its_top_left_cell():
    _, data = highlight_workbook(annex3_bytes(merged=True), "a.xlsx", [("C1", "标题行被改动")],
                                 sheet="附件3")
    ws = read_back(data)
    assert ws["A1"].comment.text == "标题行被改动"


def test_an_existing_comment_is_kept_and_extended():
    from openpyxl.comments import Comment

    wb = load_workbook(io.BytesIO(annex3_bytes()))
    wb["附件3"]["G5"].comment = Comment("老师自己的批注", "陈静")
    buf = io.BytesIO()
    wb.save(buf)
    _, data = highlight_workbook(buf.getvalue(), "a.xlsx", FINDINGS[:1], sheet="附件3")
    assert read_back(data)["G5"].comment.text == "老师自己的批注\n身份证号校验位不正确，请核对后重新填写"


def test_an_xlsm_is_saved_as_a_macro_free_xlsx():
    name, data = highlight_workbook(annex3_bytes(), "名单（宏）.xlsm", FINDINGS, sheet=None)
    assert name == "名单（宏）-需修改.xlsx"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert not any(n.endswith("vbaProject.bin") for n in zf.namelist())
        types = zf.read("[Content_Types].xml").decode()
    assert "macroEnabled" not in types and "spreadsheetml.sheet.main+xml" in types


@pytest.mark.parametrize("filename", ["汇总表.xls", "汇总表.ods", "汇总表.csv", "汇总表.docx", "汇总表"])
def test_other_formats_get_no_workbook(filename):
    assert highlight_workbook(annex3_bytes(), filename, FINDINGS, sheet=None) is None


@pytest.mark.parametrize(
    "data",
    [b"", b"PK\x03\x04garbage", b"not a zip at all", b"PK" + b"\x00" * 5000],
)
def test_a_broken_workbook_gives_none_instead_of_raising(data):
    assert highlight_workbook(data, "汇总表.xlsx", FINDINGS, sheet=None) is None


def test_a_zip_that_is_not_a_workbook_gives_none():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.txt", "hi")
    assert highlight_workbook(buf.getvalue(), "汇总表.xlsx", FINDINGS, sheet=None) is None


def test_findings_without_a_usable_cell_give_none():
    bad = [("", "缺少手机列"), ("ZZZZ1", "x"), ("A0", "x"), ("第5行", "x")]
    assert highlight_workbook(annex3_bytes(), "汇总表.xlsx", bad, sheet=None) is None


def test_bad_coordinates_are_skipped_and_good_ones_still_marked():
    _, data = highlight_workbook(annex3_bytes(), "汇总表.xlsx", [("A0", "x"), ("$G$5", "校验位错")],
                                 sheet=None)
    assert read_back(data)["G5"].comment.text == "校验位错"


@pytest.mark.parametrize(
    "original, expected",
    [
        ("汇总表.xlsx", "汇总表-需修改.xlsx"),
        ("附件3：高校参训教师信息汇总表(示例学院).XLS", "附件3：高校参训教师信息汇总表(示例学院)-需修改.xlsx"),
        ("C:\\Users\\x\\名单.xlsx", "名单-需修改.xlsx"),
        ("../../etc/a.xlsx", "a-需修改.xlsx"),
        ('a<b>"c".xlsx', "a_b__c-需修改.xlsx"),
        (".xlsx", "报名表-需修改.xlsx"),
        ("", "报名表-需修改.xlsx"),
    ],
)
def test_the_returned_name_is_the_original_stem_plus_a_suffix(original, expected):
    assert corrected_name(original) == expected


# --------------------------------------------------------------------------- no active content

ACTIVE = {
    "C4": ('HYPERLINK("http://evil.example/win","张晓明")', "张晓明"),
    "E4": ("cmd|' /C calc'!A0", "讲师"),
    "I4": ("SUM(1,2)", "3"),
}


def hostile_annex3() -> bytes:
    from forms_factory import with_formulas

    wb = load_workbook(io.BytesIO(annex3_bytes()))
    ws = wb["附件3"]
    ws["E5"], ws["F5"], ws["I5"] = "@SUM(1)", "+1", "-2+3"
    ws["C5"] = "李红 http://evil.example/name"
    ws["C5"].hyperlink = "http://evil.example/link"
    ws["I4"], ws["C4"], ws["E4"] = "x", "x", "x"  # placeholders the formulas replace
    wb.defined_names["Evil"] = DefinedName("Evil", attr_text='HYPERLINK("http://evil.example/name")')
    wb.properties.title = "http://evil.example/title"
    ws.add_table(Table(displayName="Evil", ref="A3:H5"))
    buf = io.BytesIO()
    wb.save(buf)
    return with_formulas(buf.getvalue(), ACTIVE)


def all_xml(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())


def test_the_hostile_form_really_carries_formulas_and_links():
    ws = load_workbook(io.BytesIO(hostile_annex3()))["附件3"]
    assert [ws[c].data_type for c in ("C4", "E4", "I4")] == ["f", "f", "f"]
    assert list(ws.tables) == ["Evil"] and ws["C5"].hyperlink is not None
    assert "evil.example" in all_xml(hostile_annex3())


def test_the_returned_workbook_holds_values_never_formulas_or_links():
    _, data = highlight_workbook(hostile_annex3(), "汇总表.xlsx", FINDINGS, sheet="附件3")
    wb = load_workbook(io.BytesIO(data))  # formulas would load as formulas here
    ws = wb["附件3"]
    assert [c.coordinate for row in ws.iter_rows() for c in row if c.data_type == "f"] == []
    assert (ws["C4"].value, ws["E4"].value, ws["I4"].value) == ("张晓明", "讲师", "3")
    assert (ws["E5"].value, ws["F5"].value, ws["I5"].value) == ("@SUM(1)", "+1", "-2+3")
    assert [ws[c].data_type for c in ("E5", "F5", "I5")] == ["s", "s", "s"]
    assert all(ws[c].quotePrefix for c in ("E5", "F5", "I5"))
    assert ws["C5"].value == "李红 hxxp[:]//evil[.]example/name" and ws["C5"].hyperlink is None
    assert (list(wb.defined_names), list(ws.tables)) == ([], [])
    assert "evil.example" not in all_xml(data) and "http://evil" not in all_xml(data)


def test_a_rebuilt_copy_of_another_format_holds_text_only():
    from mailbot.replies.correction_workbook import rebuild_workbook

    rows = [[("A1", "=cmd|' /C calc'!A0"), ("B1", "@SUM(1)"), ("C1", "www.evil.com"), ("D1", "\tx")]]
    _, data = rebuild_workbook(rows, "汇总表.xls", [("A1", "请修改")], sheet="Sheet1")
    ws = load_workbook(io.BytesIO(data))["Sheet1"]
    assert [(c.value, c.data_type) for c in ws[1]] == [
        ("=cmd|' /C calc'!A0", "s"), ("@SUM(1)", "s"), ("www[.]evil[.]com", "s"), ("\tx", "s")]
    assert "evil.com" not in all_xml(data)


def test_the_daemon_starts_without_openpyxl_the_workbooks_are_made_in_a_reader_worker():
    """openpyxl (~0.15 s of CPU to import) is loaded by the reader workers that make the
    correction workbooks, not by a poll or ``mailbot run`` starting."""
    import subprocess
    import sys

    code = ("import sys, mailbot.assembly, mailbot.daemon, mailbot.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'openpyxl'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"
