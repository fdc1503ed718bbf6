"""Zip containers are checked before loading: members, sizes, ratio, lying headers, DTDs."""

from __future__ import annotations

import importlib.util
import io
import struct
import time
import warnings
import zipfile
import zlib

import pytest

from mailbot.forms import archive_safety
from mailbot.forms.archive_safety import open_checked_zip, read_member
from mailbot.errors import UnreadableForm
from mailbot.forms.reader import read_annex3
from mailbot.limits import DEFAULT_LIMITS, Limits
from forms_factory import make_annex3_xlsx, nominee

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b']>\n<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1">'
    b"<si><t>&lol9;</t></si></sst>"
)


def rezip(data: bytes, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> bytes:
    """Copy a zip, replacing or adding members."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, (replace or {}).get(info.filename, src.read(info.filename)))
        for name, body in (add or {}).items():
            dst.writestr(name, body)
    return out.getvalue()


def zeros_zip(size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z, z.open("xl/media/zeros.bin", "w") as fh:
        chunk = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            fh.write(chunk)
    return out.getvalue()


@pytest.fixture(scope="module")
def form() -> bytes:
    return make_annex3_xlsx([nominee(1), nominee(2)])


def test_defusedxml_is_installed():
    assert importlib.util.find_spec("defusedxml") is not None


def test_a_normal_form_passes_the_checks(form):
    zf = archive_safety.open_checked_zip(form, DEFAULT_LIMITS)
    kept = archive_safety.scan_members(zf, DEFAULT_LIMITS, keep=lambda n: n == "xl/workbook.xml")
    assert list(kept) == ["xl/workbook.xml"]


def test_too_many_members_is_refused_from_the_directory(form):
    with pytest.raises(UnreadableForm) as err:
        archive_safety.open_checked_zip(form, Limits(max_zip_members=3))
    assert err.value.code == "too_many_members"


def test_declared_uncompressed_total_over_the_limit_is_a_bomb():
    with pytest.raises(UnreadableForm) as err:
        archive_safety.open_checked_zip(zeros_zip(4 << 20), Limits(max_uncompressed_bytes=2 << 20))
    assert err.value.code == "zip_bomb"


def test_extreme_compression_ratio_is_a_bomb_under_default_limits():
    with pytest.raises(UnreadableForm) as err:
        archive_safety.open_checked_zip(zeros_zip(8 << 20), DEFAULT_LIMITS)
    assert err.value.code == "zip_bomb"
    assert err.value.detail == "member 'xl/media/zeros.bin' ratio 1028 > 200"


def test_a_member_lying_about_its_size_is_caught_while_reading(form):
    bomb = zeros_zip(2 << 20)
    # Patch the declared uncompressed size (local header and central directory) down to 1000.
    patched = bytearray(bomb)
    local = patched.find(b"PK\x03\x04")
    struct.pack_into("<I", patched, local + 22, 1000)
    central = patched.find(b"PK\x01\x02")
    struct.pack_into("<I", patched, central + 24, 1000)
    zf = archive_safety.open_checked_zip(bytes(patched), DEFAULT_LIMITS)
    with pytest.raises(UnreadableForm) as err:
        archive_safety.scan_members(zf, DEFAULT_LIMITS)
    assert err.value.code in {"zip_bomb", "corrupt"}


def test_actual_total_is_enforced_even_when_directory_sizes_are_small():
    data = zeros_zip(3 << 20)
    zf = archive_safety.open_checked_zip(data, Limits(max_compression_ratio=1e9))
    with pytest.raises(UnreadableForm) as err:
        archive_safety.scan_members(zf, Limits(max_uncompressed_bytes=1 << 20, max_compression_ratio=1e9))
    assert err.value.code == "zip_bomb"


def test_a_billion_laughs_xlsx_is_unreadable_quickly(form):
    bomb = rezip(form, add={"xl/sharedStrings.xml": BILLION_LAUGHS})
    started = time.process_time()
    with pytest.raises(UnreadableForm) as err:
        read_annex3(bomb, "bomb.xlsx")
    assert err.value.code == "unsafe_xml"
    assert time.process_time() - started < 0.5


def test_dtd_in_utf16_xml_is_also_refused(form):
    sheet = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x/>'.encode("utf-16")
    with pytest.raises(UnreadableForm) as err:
        read_annex3(rezip(form, add={"docProps/custom.xml": sheet}), "bomb.xlsx")
    assert err.value.code == "unsafe_xml"


def test_zip_bomb_xlsx_comes_out_unreadable_quickly(form):
    started = time.process_time()
    with pytest.raises(UnreadableForm) as err:
        read_annex3(rezip(form, add={"xl/media/image1.png": b"\0" * (120 << 20)}), "bomb.xlsx")
    assert err.value.code == "zip_bomb"
    assert time.process_time() - started < 1.0


def test_a_directory_of_countless_empty_members_is_refused_before_it_is_parsed():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(100_000):
            zf.writestr(zipfile.ZipInfo(str(i)), b"")
    started = time.process_time()
    with pytest.raises(UnreadableForm) as err:
        open_checked_zip(buf.getvalue(), Limits())
    assert (err.value.code, err.value.detail) == ("too_many_members", "zip has 100000 members, limit 2000")
    assert time.process_time() - started < 0.2


def test_members_with_the_same_name_are_each_read():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        zf.writestr("a.txt", b"first")
        zf.writestr("a.txt", b"second")
    zf = open_checked_zip(buf.getvalue(), Limits())
    assert [read_member(zf, info, Limits()) for info in zf.infolist()] == [b"first", b"second"]


def small_zeros_members(count: int, size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(count):
            z.writestr(f"xl/media/zeros{i}.bin", b"\0" * size)
    return out.getvalue()


def test_actual_total_is_enforced_over_many_small_members():
    data = small_zeros_members(3, 512 << 10)  # each inflated in one call; together 1.5 MB
    zf = archive_safety.open_checked_zip(data, Limits(max_compression_ratio=1e9))
    with pytest.raises(UnreadableForm) as err:
        archive_safety.scan_members(zf, Limits(max_uncompressed_bytes=1 << 20, max_compression_ratio=1e9))
    assert (err.value.code, err.value.detail) == ("zip_bomb", "actual uncompressed size exceeds the limit")


def lying_zeros_member(declared: int, crc: int) -> bytes:
    """A zip whose one member, 64 KiB of zeros, declares ``declared`` bytes and CRC-32 ``crc``
    (in its local header and in the directory)."""
    patched = bytearray(small_zeros_members(1, 64 << 10))
    for signature, crc_at, size_at in ((b"PK\x03\x04", 14, 22), (b"PK\x01\x02", 16, 24)):
        struct.pack_into("<I", patched, patched.find(signature) + crc_at, crc)
        struct.pack_into("<I", patched, patched.find(signature) + size_at, declared)
    return bytes(patched)


def test_a_small_member_inflating_beyond_its_declared_size_is_read_no_further_than_declared():
    zf = open_checked_zip(lying_zeros_member(1000, zlib.crc32(b"\0" * 1000)), DEFAULT_LIMITS)
    assert archive_safety.scan_members(zf, DEFAULT_LIMITS, keep=lambda n: True) == {
        "xl/media/zeros0.bin": b"\0" * 1000}  # as zipfile reads it: cut at the declared size


def test_a_small_member_inflating_beyond_its_declared_size_fails_its_crc():
    zf = open_checked_zip(lying_zeros_member(1000, zlib.crc32(b"\0" * (64 << 10))), DEFAULT_LIMITS)
    with pytest.raises(UnreadableForm) as err:
        archive_safety.scan_members(zf, DEFAULT_LIMITS)
    assert (err.value.code, err.value.detail) == (
        "corrupt", "member 'xl/media/zeros0.bin': BadZipFile(\"Bad CRC-32 for file 'xl/media/zeros0.bin'\")")


def test_a_small_member_failing_its_crc_is_corrupt(form):
    info = zipfile.ZipFile(io.BytesIO(form)).getinfo("xl/worksheets/sheet1.xml")
    damaged = bytearray(form)
    central = damaged.find(b"xl/worksheets/sheet1.xml", damaged.find(b"PK\x01\x02")) - 46
    struct.pack_into("<I", damaged, central + 16, info.CRC ^ 1)  # the directory's CRC-32, one bit off
    zf = archive_safety.open_checked_zip(bytes(damaged), DEFAULT_LIMITS)
    with pytest.raises(UnreadableForm) as err:
        archive_safety.scan_members(zf, DEFAULT_LIMITS)
    assert err.value.code == "corrupt"


def with_directory_crc(data: bytes, member: str, flip: int) -> bytes:
    """``data`` with the central directory's CRC-32 of ``member`` XORed with ``flip``."""
    damaged = bytearray(data)
    central = damaged.find(member.encode(), damaged.find(b"PK\x01\x02")) - 46
    (crc,) = struct.unpack_from("<I", damaged, central + 16)
    struct.pack_into("<I", damaged, central + 16, crc ^ flip)
    return bytes(damaged)


def test_a_member_inflated_before_is_refused_when_its_crc_32_differs(form):
    read_annex3(form, "f.xlsx")  # every member of the form is now known whole
    with pytest.raises(UnreadableForm) as err:
        read_annex3(with_directory_crc(form, "xl/theme/theme1.xml", 1), "f.xlsx")
    assert (err.value.code, err.value.detail) == (
        "corrupt", "member 'xl/theme/theme1.xml': BadZipFile(\"Bad CRC-32 for file 'xl/theme/theme1.xml'\")")


def test_a_member_inflated_before_is_inflated_again_when_its_declared_size_differs(form):
    read_annex3(form, "f.xlsx")
    damaged = bytearray(form)
    central = damaged.find(b"xl/theme/theme1.xml", damaged.find(b"PK\x01\x02")) - 46
    (size,) = struct.unpack_from("<I", damaged, central + 24)
    struct.pack_into("<I", damaged, central + 24, size - 1)  # the directory's size, one byte short
    with pytest.raises(UnreadableForm) as err:
        read_annex3(bytes(damaged), "f.xlsx")
    assert (err.value.code, err.value.detail) == (
        "corrupt", "member 'xl/theme/theme1.xml': BadZipFile(\"Bad CRC-32 for file 'xl/theme/theme1.xml'\")")
