"""Readers run contained, and the bounds on what they may allocate add up.

Every hostile file here is built in the test and read ONLY through the contained path
(``mailbot.forms.contained``): with a protection removed, a native reader asked for hundreds
of GB aborts its worker process, never the test process.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import struct
import zipfile
from pathlib import Path

import pytest

from forms_factory import make_annex3_xlsx, nominee
from mailbot.errors import UnreadableForm
from mailbot.forms import contained, xlsx_inspect
from mailbot.forms.model import Finding, FormVerdict, Outcome
from mailbot.forms.ole_inspect import DAMAGED_MESSAGE, SHEET_TOO_LARGE_MESSAGE, scan_biff
from mailbot.limits import Limits
from mailbot.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules(ROOT / "rules" / "zhejiang-2020-1x.toml")
LIMITS = Limits()
TOO_LARGE = Finding("sheet_too_large", SHEET_TOO_LARGE_MESSAGE)
READER_FAILED = Finding("reader_failed", contained.UNREADABLE_MESSAGE)


def rewrite_zip(data: bytes, change: dict[str, bytes | None], add: dict[str, bytes] | None = None) -> bytes:
    """The zip ``data`` with members replaced (``None``: removed) and added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = change.get(info.filename, src.read(info))
            if body is not None:
                dst.writestr(info.filename, body)
        for name, body in (add or {}).items():
            dst.writestr(name, body)
    return out.getvalue()


def far_corner(sheet_xml: bytes) -> bytes:
    """The sheet with one more cell in the grid's last corner, XFD1048576."""
    return sheet_xml.replace(
        b"</sheetData>",
        b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>')


def worksheet_outside_worksheets_folder() -> bytes:
    """A valid Annex 3 xlsx whose worksheet part sits at ``xl/data/s.xml`` (the workbook's
    relationship says so) and spans A1..XFD1048576."""
    good = make_annex3_xlsx([nominee(1)])
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml")
        rels = zf.read("xl/_rels/workbook.xml.rels")
    assert b'Target="worksheets/sheet1.xml"' in rels or b'Target="/xl/worksheets/sheet1.xml"' in rels
    rels = rels.replace(b"/xl/worksheets/sheet1.xml", b"data/s.xml").replace(b"worksheets/sheet1.xml", b"data/s.xml")
    return rewrite_zip(good, {"xl/worksheets/sheet1.xml": None, "xl/_rels/workbook.xml.rels": rels},
                       {"xl/data/s.xml": far_corner(sheet)})


def xls_claiming_the_whole_grid() -> bytes:
    """The official form saved as .xls, its DIMENSIONS record claiming 1048576 x 16384."""
    data = bytearray((ROOT / "tests" / "golden" / "official.lo.xls").read_bytes())
    at = data.index(b"\x00\x02\x0e\x00")  # DIMENSIONS, BIFF8 length 14
    struct.pack_into("<IIHH", data, at + 4, 0, 1_048_576, 0, 16_384)
    return bytes(data)


def sheets_each_at_the_bound(count: int, area: int) -> bytes:
    """An xlsx of ``count`` sheets, each spanning ``area`` cells (A1 and one far cell)."""
    rows = area // 10
    sheet = (b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
             b'spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>a</t></is></c>'
             b'</row><row r="%d"><c r="J%d" t="inlineStr"><is><t>b</t></is></c></row></sheetData></worksheet>'
             % (rows, rows))
    from openpyxl import Workbook

    wb = Workbook()
    for i in range(1, count):
        wb.create_sheet(f"S{i + 1}")
    buf = io.BytesIO()
    wb.save(buf)
    return rewrite_zip(buf.getvalue(), {f"xl/worksheets/sheet{i}.xml": sheet for i in range(1, count + 1)})


def test_a_worksheet_part_outside_the_worksheets_folder_is_area_checked_before_any_reader() -> None:
    verdict, _ = contained.judge(worksheet_outside_worksheets_folder(), "报名表.xlsx", RULES, LIMITS)
    assert (verdict.outcome, verdict.form_findings) == (Outcome.UNREADABLE, (TOO_LARGE,))


def test_the_sheet_parts_are_every_target_of_the_workbook_relationships() -> None:
    rels = (b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            b'<Relationship Id="rId1" Type="x/worksheet" Target="data/s.xml"/>'
            b'<Relationship Id="rId2" Type="x/styles" Target="/xl/styles.xml"/>'
            b'<Relationship Id="rId3" Type="x/hyperlink" Target="http://a.b/" TargetMode="External"/>'
            b'</Relationships>')
    assert xlsx_inspect.sheet_parts(rels) == {  # each way a reader may resolve a Target
        "data/s.xml", "xl/data/s.xml", "xl/styles.xml", "xl//xl/styles.xml", "xl/xl/styles.xml"}


def test_an_xls_whose_dimensions_claim_the_whole_grid_is_refused_before_any_reader() -> None:
    verdict, _ = contained.judge(xls_claiming_the_whole_grid(), "报名表.xls", RULES, LIMITS)
    assert (verdict.outcome, verdict.form_findings) == (Outcome.UNREADABLE, (TOO_LARGE,))


def test_an_xls_whose_short_workbook_stream_chain_loops_is_refused_as_damaged() -> None:
    # A 7 KB damaged copy of tests/fixtures/bad_rows.lo.xls (found by benchmarks/form_equivalence.py):
    # its Workbook stream is under 4 KB, and the short-sector chain xlrd follows for it loops.
    looping = (ROOT / "tests" / "fixtures" / "short_chain_loop.xls").read_bytes()
    verdict, _ = contained.judge(looping, "报名表.xls", RULES, LIMITS.model_copy(update={"max_seconds_per_message": 5.0}))
    assert (verdict.outcome, verdict.form_findings) == (Outcome.UNREADABLE, (Finding("corrupt", DAMAGED_MESSAGE),))


def test_xls_row_records_count_towards_the_area() -> None:
    # BOF, a ROW record for row 0 spanning columns 0..16383, EOF
    stream = (struct.pack("<HH", 0x0809, 16) + bytes(16) + struct.pack("<HHHHH", 0x0208, 16, 0, 0, 16_384)
              + bytes(10) + struct.pack("<HHHH", 0x0208, 6, 70_000 % 65_536, 0) + struct.pack("<H", 16_384)
              + struct.pack("<HH", 0x000A, 0))
    with pytest.raises(UnreadableForm) as refused:
        scan_biff(stream, max_sheet_cells=100_000)
    assert refused.value.code == "sheet_too_large"


def test_sheets_each_under_the_per_sheet_bound_count_against_one_workbook_budget() -> None:
    one_sheet = sheets_each_at_the_bound(1, 1_500_000)
    four_sheets = sheets_each_at_the_bound(4, 1_500_000)
    alone, spent = contained.judge(one_sheet, "a.xlsx", RULES, LIMITS)
    together, _ = contained.judge(four_sheets, "b.xlsx", RULES, LIMITS)
    assert (alone.outcome, spent) == (Outcome.NOT_ANNEX3, 1_500_000)
    assert (together.outcome, together.form_findings) == (Outcome.UNREADABLE, (TOO_LARGE,))


def test_the_attachments_of_one_mail_share_the_budget() -> None:
    form = make_annex3_xlsx([nominee(1), nominee(2)])
    first, spent = contained.judge(form, "a.xlsx", RULES, LIMITS)
    second, _ = contained.judge(form, "b.xlsx", RULES, LIMITS, cells_left=spent - 1)
    assert first.outcome == Outcome.OK
    assert (second.outcome, second.form_findings) == (Outcome.UNREADABLE, (TOO_LARGE,))


def test_ods_tables_are_summed_against_the_budget() -> None:
    table = (b'<table:table table:name="T%d"><table:table-row table:number-rows-repeated="1000">'
             b'<table:table-cell table:number-columns-repeated="1000" office:value-type="string"/>'
             b'</table:table-row></table:table>')
    content = b"<office:spreadsheet>" + table % 1 + table % 2 + b"</office:spreadsheet>"
    assert xlsx_inspect.check_ods_area(content, max_sheet_cells=2_000_000) == 2_000_000
    with pytest.raises(UnreadableForm) as refused:
        xlsx_inspect.check_ods_area(content, max_sheet_cells=1_999_999)
    assert refused.value.code == "sheet_too_large"


# --------------------------------------------------------------------------- the workers

@pytest.fixture()
def pool() -> contained.ReaderPool:
    limits = contained.WorkerLimits(memory_bytes=256 * 1024 * 1024, cpu_seconds=5, max_result_bytes=1024 * 1024)
    pool = contained.ReaderPool(limits)
    yield pool
    pool.close()


def test_a_worker_runs_under_the_limits_set_with_prlimit(pool: contained.ReaderPool) -> None:
    assert pool.call(resource.getrlimit, resource.RLIMIT_AS, timeout=30) == (256 * 1024 * 1024,) * 2
    assert pool.call(resource.getrlimit, resource.RLIMIT_CORE, timeout=30) == (0, 0)
    assert pool.call(os.getpid, timeout=30) != os.getpid()


@pytest.mark.parametrize(("call", "args", "failure"), [
    (os.abort, (), "died: worker killed by SIGABRT"),
    (signal.raise_signal, (signal.SIGKILL,), "died: worker killed by SIGKILL"),
    (bytearray, (1024 * 1024 * 1024,), "died: out of memory (MemoryError)"),
    (bytes, (2 * 1024 * 1024,), "result_too_large: result of 2097186 bytes"),
])
def test_a_worker_that_dies_or_passes_a_limit_fails_that_call_and_is_replaced(
        pool: contained.ReaderPool, call, args, failure) -> None:
    with pytest.raises(contained.WorkerFailed) as failed:
        pool.call(call, *args, timeout=30)
    assert str(failed.value) == failure
    assert (pool.call(sum, [1, 2, 3], timeout=30), pool.replaced) == (6, 1)


def test_a_retired_worker_is_succeeded_at_once_by_a_started_one(
        pool: contained.ReaderPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contained, "CALLS_PER_WORKER", 2)
    first = {pool.call(os.getpid, timeout=30), pool.call(os.getpid, timeout=30)}  # the second retires it
    successor = pool._idle.queue[-1]  # noqa: SLF001 - the slot the next call takes
    assert (successor is not None and successor.alive(), successor and successor.calls) == (True, 0)
    third = pool.call(os.getpid, timeout=30)
    assert (third == successor.process.pid, third in first) == (True, False)


def test_a_worker_whose_memory_grew_past_the_bound_is_retired_and_one_that_did_not_is_kept(
        pool: contained.ReaderPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contained, "RSS_GROWTH_BYTES", 16 * 1024 * 1024)
    first = pool.call(os.getpid, timeout=30)
    pool.call(os.putenv, "MAILBOT_SMALL", "x" * 1024 * 1024, timeout=30)  # 1 MiB kept in its environment
    kept = pool.call(os.getpid, timeout=30)
    pool.call(os.putenv, "MAILBOT_LARGE", "x" * 32 * 1024 * 1024, timeout=30)  # 32 MiB kept
    successor = pool.call(os.getpid, timeout=30)
    assert (kept == first, successor == first, pool.replaced) == (True, False, 0)


def test_a_worker_past_its_wall_time_is_killed_and_replaced(pool: contained.ReaderPool) -> None:
    import time

    pool.call(sum, [], timeout=30)  # started and warm
    with pytest.raises(contained.WorkerFailed) as failed:
        pool.call(time.sleep, 30, timeout=0.5)
    assert str(failed.value) == "time_limit: no result within 0.5 s"
    assert (pool.call(sum, [1], timeout=30), pool.replaced) == (1, 1)


@pytest.mark.parametrize(("args", "failure", "replaced"), [
    ((range(2), map(int, ["x"])), "ValueError: invalid literal for int() with base 10: 'x'", 0),
    ((range(2), map(signal.raise_signal, [signal.SIGKILL])), "WorkerFailed: died: worker killed by SIGKILL", 1),
    ((range(2), [bytes(2 * 1024 * 1024)]), "WorkerFailed: result_too_large: result of 2097188 bytes", 1),
])
def test_a_stream_hands_over_the_items_before_the_one_that_failed(pool: contained.ReaderPool, args, failure,
                                                                    replaced) -> None:
    import itertools
    import time

    before = pool.call(os.getpid, timeout=30)
    items = []
    with pytest.raises(Exception) as failed:
        for item in pool.stream(itertools.chain, *args, deadline=time.monotonic() + 30):
            items.append(item)
    after = pool.call(os.getpid, timeout=30)
    assert (items, f"{type(failed.value).__name__}: {failed.value}", pool.replaced, pool.requests) == (
        [0, 1], failure, replaced, 3)
    assert (after == before) == (replaced == 0)  # a worker whose function raised is kept


def test_a_form_whose_reader_dies_is_unreadable_with_a_chinese_reason() -> None:
    verdict, spent = contained.judge(make_annex3_xlsx([nominee(1)]), "报名表.xlsx", RULES, LIMITS, timeout=0.000001)
    assert (verdict.outcome, verdict.form_findings, spent) == (Outcome.UNREADABLE, (READER_FAILED,), 0)


def test_a_contained_read_gives_the_same_verdict_as_a_direct_one() -> None:
    from mailbot.forms.checks import judge_file

    form = make_annex3_xlsx([nominee(1), nominee(2, phone="1381234")])
    verdict, _ = contained.judge(form, "报名表.xlsx", RULES, LIMITS)
    assert verdict == judge_file(form, "报名表.xlsx", RULES, LIMITS)


def test_a_message_near_the_size_limit_is_walked_within_a_workers_default_memory() -> None:
    from mail_factory import make_mail
    from mailbot.mail.walk import find_attachments

    scan = b"%PDF-1.4\n" + os.urandom(14 * 1024 * 1024)
    raw = make_mail(attachments=[("扫描件1.pdf", scan), ("扫描件2.pdf", scan[:-1] + b"x"),
                                 ("报名表.xlsx", make_annex3_xlsx([nominee(1)]))])
    assert 36 * 1024 * 1024 < len(raw) < LIMITS.max_message_bytes
    parts = contained.pool_of(LIMITS).call(find_attachments, raw, LIMITS, timeout=120)
    assert ([a.filename for a in parts.scans], [a.filename for a in parts.forms], parts.problems) == (
        ["扫描件1.pdf", "扫描件2.pdf"], ["报名表.xlsx"], ())


# --------------------------------------------------------------------------- a whole mail

def _forms_mail(*attachments: tuple[str, bytes]) -> bytes:
    from mail_factory import make_mail

    return make_mail(attachments=list(attachments))


def _walk_and_judge(raw: bytes, limits: Limits = LIMITS, **kw: object) -> tuple[contained.Judged, int, int]:
    """The mail walked and judged contained; the worker requests it took and the workers lost."""
    import time

    from mailbot.mail.walk import find_attachments

    pool = contained.pool_of(limits)
    requests, replaced = pool.requests, pool.replaced
    judged = contained.walk_and_judge(find_attachments, raw, rules=RULES, limits=limits,
                                      deadline=time.monotonic() + 60, cells=limits.max_cells_per_message, **kw)
    return judged, pool.requests - requests, pool.replaced - replaced


def test_a_mails_walk_and_the_reading_of_every_form_are_one_worker_request() -> None:
    from mailbot.forms.checks import judge_file

    first = make_annex3_xlsx([nominee(1)], institution="浙江第一职业技术学院")
    second = make_annex3_xlsx([nominee(2), nominee(3, phone="1381234")], institution="浙江第二职业技术学院")

    judged, requests, replaced = _walk_and_judge(_forms_mail(("一.xlsx", first), ("二.xlsx", second)))

    assert [a.filename for a in judged.parts.forms] == ["一.xlsx", "二.xlsx"]
    assert judged.verdicts == (judge_file(first, "一.xlsx", RULES, LIMITS), judge_file(second, "二.xlsx", RULES, LIMITS))
    assert (judged.walk_failure, requests, replaced) == (None, 1, 0)


def test_a_mails_request_is_answered_in_one_frame_for_the_walk_and_one_for_each_form() -> None:
    from mail_factory import make_mail

    pool = contained.pool_of(LIMITS)
    counts = []
    for forms in (0, 1, 2):
        before = pool.frames
        judged, requests, _ = _walk_and_judge(make_mail(attachments=[
            (f"{i}.xlsx", make_annex3_xlsx([nominee(i + 1)])) for i in range(forms)]))
        counts.append((len(judged.verdicts), requests, pool.frames - before))
    assert counts == [(0, 1, 1), (1, 1, 2), (2, 1, 3)]  # the last frame ends the stream: no end frame


def test_a_verdicts_reading_comes_back_with_only_the_cells_the_caller_reads() -> None:
    import dataclasses

    form = make_annex3_xlsx([nominee(2), nominee(3, phone="1381234")], institution="浙江第二职业技术学院")
    full, _, _ = _walk_and_judge(_forms_mail(("二.xlsx", form)))
    trimmed, requests, _ = _walk_and_judge(_forms_mail(("二.xlsx", form)), reading_cells=("id_number",))

    (whole,), (cut,) = [v.reading for v in full.verdicts], [v.reading for v in trimmed.verdicts]
    assert (trimmed.verdicts, requests) == (full.verdicts, 1)  # the verdicts themselves are whole
    assert [(r.row, r.cells) for r in cut.rows] == [(r.row, {"id_number": r.cells["id_number"]}) for r in whole.rows]
    assert dataclasses.replace(cut, rows=()) == dataclasses.replace(whole, rows=())
    assert len(whole.rows[0].cells) == 8


def test_a_form_whose_worker_dies_mid_mail_alone_is_reader_failed_and_the_forms_around_it_keep_their_verdicts() -> None:
    from mailbot.forms.checks import judge_file

    # a 3.9M-cell sheet is within the cell budget, but not within a 160 MiB worker: it dies mid-read
    limits = Limits(reader_memory_bytes=160 * 1024 * 1024)
    before, after = make_annex3_xlsx([nominee(1)]), make_annex3_xlsx([nominee(2)])
    poison = sheets_each_at_the_bound(1, 3_900_000)

    judged, requests, replaced = _walk_and_judge(
        _forms_mail(("甲.xlsx", before), ("毒.xlsx", poison), ("乙.xlsx", after)), limits,
        reading_cells=("id_number",))

    assert judged.verdicts == (judge_file(before, "甲.xlsx", RULES, LIMITS),
                               FormVerdict("毒.xlsx", Outcome.UNREADABLE, form_findings=(READER_FAILED,)),
                               judge_file(after, "乙.xlsx", RULES, LIMITS))
    assert (requests, replaced) == (2, 1)  # the mail's request, then the form after the dead one alone
    # the form read in the successor comes back trimmed like the ones read in the mail's request
    assert [[sorted(r.cells) for r in v.reading.rows] for v in judged.verdicts if v.reading] == [
        [["id_number"]], [["id_number"]]]


def test_frames_the_worker_wrote_together_are_taken_with_one_read(monkeypatch) -> None:
    import time

    frames = [pickle_frame(("item", "parts")), pickle_frame(("item", "verdict")), pickle_frame(("end", None))]
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"".join(frames))
    reads = []
    real_read = os.read
    monkeypatch.setattr(contained.os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    worker = object.__new__(contained._Worker)
    worker._ahead = bytearray()
    deadline = time.monotonic() + 5
    taken = [worker._take(read_fd, struct.unpack("<Q", worker._take(read_fd, 8, deadline))[0], deadline)
             for _ in frames]
    os.close(read_fd), os.close(write_fd)
    assert ([f[8:] for f in frames], len(reads)) == (taken, 1)


def pickle_frame(value: object) -> bytes:
    import pickle

    body = pickle.dumps(value)
    return struct.pack("<Q", len(body)) + body
