"""WPS users save Annex 3 as .et (WPS Spreadsheets' own name for a BIFF workbook) or .xls."""

from __future__ import annotations

from pathlib import Path

from mailbot.forms.reader import read_annex3

GOLDEN = Path(__file__).parent / "golden"


def test_an_et_file_is_read_by_its_bytes_like_the_xls_it_is() -> None:
    data = (GOLDEN / "official.lo.xls").read_bytes()
    as_xls = read_annex3(data, "报名表.xls")
    as_et = read_annex3(data, "报名表.et")
    assert as_et.file_format == "xls"
    assert (as_et.institution, as_et.labels, as_et.rows) == (as_xls.institution, as_xls.labels, as_xls.rows)
    assert len(as_et.rows) == 2  # the golden form's two nominees


def test_an_excel_binary_workbook_is_refused_with_what_to_do() -> None:
    import io
    import zipfile

    import pytest

    from mailbot.errors import UnreadableForm

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.bin", b"\x83\x01\x00")
    with pytest.raises(UnreadableForm) as err:
        read_annex3(buf.getvalue(), "报名表.xlsb")
    assert (err.value.code, err.value.message) == (
        "unsupported_format", "暂不支持 Excel 二进制工作簿（.xlsb），请将附件3另存为 .xlsx 后重新发送")
