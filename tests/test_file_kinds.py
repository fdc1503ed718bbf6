"""A file's kind and text are judged once: the MIME walk and the form loader read the same
tables (zip kinds, OLE2 directory kinds, one text-decoding order), so what the walk routes as a
form is what the loader reads or explains."""

from __future__ import annotations

import pytest

from forms_factory import make_ole2
from mail_factory import make_mail, make_zip
from mailbot.charsets import decode_bytes
from mailbot.errors import UnreadableForm
from mailbot.forms import sheet_sources
from mailbot.forms.magic import zip_kind
from mailbot.forms.model import Finding
from mailbot.limits import DEFAULT_LIMITS
from mailbot.mail.walk import find_attachments, parse_message

OOXML_TYPES = ("[Content_Types].xml", b"<Types/>")


@pytest.mark.parametrize(("members", "mimetype", "kind"), [
    ({"[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml"}, b"", "xlsx"),
    ({"[Content_Types].xml", "xl/workbook.xml", "xl/vbaProject.bin"}, b"", "xlsm"),
    ({"[Content_Types].xml", "xl/workbook.bin", "xl/worksheets/sheet1.bin"}, b"", "xlsb"),
    ({"[Content_Types].xml", "word/document.xml"}, b"", "docx"),
    ({"mimetype", "content.xml"}, b"application/vnd.oasis.opendocument.spreadsheet", "ods"),
    ({"mimetype", "content.xml"}, b"application/vnd.oasis.opendocument.text", "odt"),
    ({"content.xml", "META-INF/manifest.xml"}, b"", "ods"),
    ({"[Content_Types].xml", "xl/styles.xml"}, b"", "zip"),
    ({"报名表.xlsx"}, b"", "zip"),
])
def test_a_zip_container_is_named_by_its_members(members, mimetype, kind):
    assert zip_kind(members, mimetype) == kind


def _walk(filename: str, data: bytes):
    return find_attachments(parse_message(make_mail(attachments=[(filename, data)])))


def _load_error(data: bytes) -> tuple[str, str]:
    with pytest.raises(UnreadableForm) as info:
        sheet_sources.load(data, DEFAULT_LIMITS, head_rows=30)
    return info.value.code, info.value.message


XLSB = make_zip([OOXML_TYPES, ("xl/workbook.bin", b"\x83\x01\x00"), ("xl/worksheets/sheet1.bin", b"\x81\x01\x00")])


@pytest.mark.parametrize("filename", ["报名表.xlsb", "报名表.xlsx", "附件"])
def test_an_xlsb_is_an_xlsb_to_the_walk_and_to_the_loader(filename):
    parts = _walk(filename, XLSB)
    assert [(f.filename, f.content_type) for f in parts.forms] == [
        (filename, "application/vnd.ms-excel.sheet.binary.macroenabled.12")]
    assert _load_error(XLSB) == ("unsupported_format", sheet_sources.XLSB_MESSAGE)


def test_a_word_file_mentioning_workbook_is_a_word_file_to_the_walk_and_to_the_loader():
    # The walk once searched the whole file for the UTF-16 name "Workbook" and called this an xls.
    doc = make_ole2({"WordDocument": b"\xec\xa5" + "见 Workbook 工作表".encode("utf-16-le")})
    parts = _walk("报名表.doc", doc)
    assert [(f.filename, f.content_type) for f in parts.forms] == [("报名表.doc", "application/msword")]
    assert _load_error(doc) == ("unsupported_format", sheet_sources.DOC_MESSAGE)


def test_an_outlook_message_is_named_by_its_root_streams():
    msg = make_ole2({"__substg1.0_0037001F": "报名表".encode("utf-16-le"), "__properties_version1.0": b"\0" * 32})
    parts = _walk("转发.dat", msg)
    assert (parts.forms, parts.problems) == ((), (Finding(
        code="msg_unsupported",
        message="附件“转发.dat”是 Outlook 邮件文件（.msg），无法读取。请直接把附件3 Excel 文件作为附件发送。",
    ),))


def test_an_encrypted_package_is_a_form_to_the_walk_and_encrypted_to_the_loader():
    package = make_ole2({"EncryptionInfo": b"\x04\x00\x04\x00", "EncryptedPackage": b"\x01" * 64})
    parts = _walk("报名表.xlsx", package)
    assert [(f.filename, f.content_type) for f in parts.forms] == [
        ("报名表.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]
    assert _load_error(package)[0] == "encrypted"


GBK_NAME = "报名表.xlsx".encode("gbk")


def test_gbk_text_decodes_alike_in_headers_zip_member_names_and_csv_forms():
    assert decode_bytes(GBK_NAME) == "报名表.xlsx"
    # a zip written on a Chinese Windows stores member names in GBK without the UTF-8 flag
    archive = make_zip([("XXXXXX.xlsx", b"\x00\x01 unreadable")]).replace(b"XXXXXX.xlsx", GBK_NAME)
    assert [p.origin for p in _walk("报名.zip", archive).forms] == ["zip 报名.zip > 报名表.xlsx"]
    csv = "序号,姓名\r\n1,张三\r\n".encode("gb18030")
    grid = sheet_sources.load(csv, DEFAULT_LIMITS, head_rows=30).grids[0]
    assert [[c.text for c in row] for row in grid.rows()] == [["序号", "姓名"], ["1", "张三"]]


def test_utf8_cut_inside_its_last_character_stays_utf8_for_every_caller():
    cut = "报名表".encode("utf-8")[:-1]
    assert decode_bytes(cut) == "报名\ufffd"
    assert sheet_sources.sniff(cut) == "text"


def test_column_letters_are_excels():
    from openpyxl.utils import get_column_letter  # the tests may import it; mailbot keeps one importer

    assert [sheet_sources.column_letters(i) for i in range(16384)] == [
        get_column_letter(i + 1) for i in range(16384)]
