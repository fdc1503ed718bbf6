"""``mailbot verify`` proves the state from the event log: after a realistic intake on the real
Dovecot and SMTP sink, each way an intruder with write access could change the record is
named as the first break, and the unchanged state verifies, also against a digest's head."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, rules_with_seats, shanghai
from mail_factory import make_mail
from servers import SmtpSink
from mailbot.cli import main
from mailbot.office.digest import build_digest
from mailbot.state.store import State

pytestmark = pytest.mark.servers

FORM = "附件3：高校参训教师信息汇总表.xlsx"


def _form(*serials: int, institution: str) -> bytes:
    return make_annex3_xlsx([nominee(s) for s in serials], institution=institution)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, dovecot) -> Iterator[tuple[Path, str]]:
    """A state built by the real pipeline: schools on two seats per program (seated, waiting, a
    resubmission that withdraws one and promotes another, a conflict, a late form, a mail without
    a form, one mail with too many new teachers (held), another address adding to a school's list);
    then the digest, whose chain head is returned with the state dir."""
    tmp = tmp_path_factory.mktemp("verify")
    account = dovecot.add_user()
    with SmtpSink() as sink:
        settings = imap_settings(tmp, account, sink, rules=rules_with_seats(tmp, 2))
        parts = open_intake(settings)
        mails = [
            (make_mail(sender="a@zja.edu.cn", attachments=[(FORM, _form(1, 2, 3, institution="浙江甲职业技术学院"))]),
             shanghai(2020, 11, 2, 9, 0)),
            (make_mail(sender="b@zjb.edu.cn", attachments=[(FORM, _form(4, 5, institution="浙江乙职业技术学院"))]),
             shanghai(2020, 11, 2, 10, 0)),
            (make_mail(sender="a@zja.edu.cn", subject="更正",
                       attachments=[(FORM, _form(1, 3, institution="浙江甲职业技术学院"))]),
             shanghai(2020, 11, 3, 9, 0)),
            (make_mail(sender="c@zjc.edu.cn", attachments=[(FORM, _form(4, 6, institution="浙江丙职业技术学院"))]),
             shanghai(2020, 11, 3, 10, 0)),
            (make_mail(sender="d@zjd.edu.cn", attachments=[(FORM, _form(7, institution="浙江丁职业技术学院"))]),
             shanghai(2020, 11, 25, 10, 0)),
            (make_mail(sender="f@zjf.edu.cn", attachments=[  # more new teachers than one mail may add: held
                (FORM, _form(*range(20, 51), institution="浙江戊职业技术学院"))]), shanghai(2020, 11, 4, 10, 0)),
            (make_mail(sender="x@other.edu.cn", attachments=[  # not the contact of record: may only add
                (FORM, _form(1, 8, institution="浙江甲职业技术学院"))]), shanghai(2020, 11, 4, 11, 0)),
            (make_mail(sender="e@zje.edu.cn", subject="咨询", attachments=[]), shanghai(2020, 11, 4, 12, 0)),
        ]
        for raw, when in mails:
            dovecot.append(raw, when, user=account.user)
        report = parts.intake.poll_once()
        assert report.outcomes == {"accepted": 5, "correction": 1, "late": 1, "no_form": 1}  # the conflict: correction
        digest = parts.intake.renderer.render_digest(build_digest(parts.state, parts.rules, settings)).text
        parts.state.checkpoint()
        parts.close()
    (head,) = [line.removeprefix("审计链头：") for line in digest.splitlines() if line.startswith("审计链头：")]
    yield settings.state_dir, head


@pytest.fixture
def state_dir(built: tuple[Path, str], tmp_path: Path) -> Path:
    """A private copy of the built state, for one test to tamper with."""
    copy = tmp_path / "state"
    shutil.copytree(built[0], copy)
    return copy


def verify(state_dir: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["verify", *args], env={"MAILBOT_STATE_DIR": str(state_dir)})
    return result.exit_code, result.output.splitlines()


def intrude(state_dir: Path, *statements: str, params: tuple = ()) -> None:
    """Write to the database as an intruder would: triggers dropped first."""
    db = sqlite3.connect(state_dir / "mailbot.db")
    db.execute("DROP TRIGGER events_no_update")
    db.execute("DROP TRIGGER events_no_delete")
    for sql in statements:
        db.execute(sql, params if "?" in sql else ())
    db.commit()
    db.close()


def one(state_dir: Path, sql: str) -> tuple:
    db = sqlite3.connect(f"file:{state_dir / 'mailbot.db'}?mode=ro", uri=True)
    row = db.execute(sql).fetchone()
    db.close()
    return row


def test_the_state_built_by_intake_verifies_and_contains_the_digests_head(state_dir: Path, built) -> None:
    head = built[1]
    assert len(head) == 71 and head.count(" ") == 7  # grouped by 8, so masking cannot touch it
    code, lines = verify(state_dir, "--head", head)
    events, messages, nominees, contacts, items, replies, files = (
        one(state_dir, f"SELECT count(*) FROM {t}")[0] for t in (
            "events", "messages", "nominees", "school_contacts", "staff_items", "outbox WHERE status = 'sent'",
            "(SELECT raw_path FROM messages UNION SELECT path FROM attachments WHERE path IS NOT NULL)"))
    assert (contacts, items) == (3, 4)  # the schools registered; the conflict, other sender, too many, late
    flat = head.replace(" ", "")
    assert (code, lines) == (0, [
        f"数据库完整性：正常；审计链：完好（{events}条事件）",
        f"审计链头 {flat}：在日志中（第{events}条事件，共{events}条）",
        f"邮件：{messages}封，均由事件日志解释",
        f"参训人员：{nominees}人，状态均可由事件日志重算",
        f"学校报名联系邮箱：{contacts}所，均可由事件日志重算",
        f"待办事项：{items}项，均可由事件日志重算",
        f"回复：{replies}封的发送结果均有事件记录",
        f"保存的文件：{files}个，SHA-256 均一致",
        f"验证通过：事件日志能解释全部数据；审计链头 {flat}",
    ])
    statuses = {s for (s,) in sqlite3.connect(state_dir / "mailbot.db").execute("SELECT status FROM nominees")}
    assert statuses == {"seated", "waiting", "withdrawn", "held"}  # a conflict is a finding, not a nominee


def test_an_event_altered_with_the_triggers_dropped_is_named(state_dir: Path) -> None:
    (eid,) = one(state_dir, "SELECT min(id) FROM events WHERE kind = 'nominee_waiting'")
    intrude(state_dir, f"UPDATE events SET detail = replace(detail, 'waiting', 'seated') WHERE id = {eid}")
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：审计链：第{eid}条事件的内容被改动过")


def _delete_last_message(state_dir: Path) -> int:
    """Remove the last message (the late form: one poll decides by arrival time) with everything
    about it, rows and events alike: the chain and the state stay consistent; only a head written
    down earlier can tell.  The replies of its fetch batch were sent after it was recorded: their
    ``reply_sent`` events go with the cut, so the intruder puts those rows back to ``queued``."""
    mid, outcome = one(state_dir, "SELECT id, outcome FROM messages ORDER BY id DESC LIMIT 1")
    assert outcome == "late"
    (first,) = one(state_dir, f"SELECT min(id) FROM events WHERE message = {mid}")
    intrude(state_dir, f"DELETE FROM events WHERE id >= {first}", f"DELETE FROM outbox WHERE message = {mid}",
            f"DELETE FROM staff_items WHERE message = {mid}",
            f"DELETE FROM attachments WHERE message = {mid}",
            f"DELETE FROM form_rows WHERE form IN (SELECT id FROM forms WHERE message = {mid})",
            f"DELETE FROM forms WHERE message = {mid}", f"DELETE FROM messages WHERE id = {mid}",
            "UPDATE outbox SET status = 'queued', sent_at = NULL WHERE status = 'sent' AND id NOT IN "
            "(SELECT json_extract(detail, '$.outbox') FROM events WHERE kind = 'reply_sent')")
    return first


def test_the_last_events_deleted_are_caught_by_the_digests_head(state_dir: Path, built) -> None:
    _delete_last_message(state_dir)
    assert verify(state_dir)[0] == 0  # without an outside witness the shorter log explains itself
    code, lines = verify(state_dir, "--head", built[1])
    (n,) = one(state_dir, "SELECT count(*) FROM events")
    assert (code, lines[-1]) == (1, f"第一处问题：审计链头：{built[1].replace(' ', '')} 不在日志中（共{n}条事件）："
                                    "记下这个链头之后，日志被截短或重写过")


def test_a_log_rewritten_and_rehashed_is_caught_by_the_digests_head(state_dir: Path, built) -> None:
    """The intruder changes an event's time and recomputes every later hash: the chain holds."""
    db = sqlite3.connect(state_dir / "mailbot.db")
    db.execute("DROP TRIGGER events_no_update")
    rows = db.execute("SELECT id, at, actor, rules_version, message, nominee, kind, detail FROM events ORDER BY id").fetchall()
    prev = ""
    for i, (eid, at, *rest) in enumerate(rows):
        at = "2020-11-01T00:00:00+00:00" if i == 3 else at
        digest = hashlib.sha256("\x1f".join([prev, at, *map(str, rest)]).encode()).hexdigest()
        db.execute("UPDATE events SET at = ?, prev_hash = ?, hash = ? WHERE id = ?", [at, prev, digest, eid])
        prev = digest
    db.commit()
    db.close()
    assert verify(state_dir)[0] == 0
    code, lines = verify(state_dir, "--head", built[1])
    assert (code, lines[-1]) == (1, f"第一处问题：审计链头：{built[1].replace(' ', '')} 不在日志中（共{len(rows)}条事件）："
                                    "记下这个链头之后，日志被截短或重写过")


def test_a_nominees_status_edited_is_named(state_dir: Path) -> None:
    nid, masked, program = one(state_dir, "SELECT id, id_masked, program FROM nominees WHERE status = 'waiting' "
                                          "ORDER BY id LIMIT 1")
    sqlite3.connect(state_dir / "mailbot.db").execute(
        f"UPDATE nominees SET status = 'seated' WHERE id = {nid}").connection.commit()
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：参训人员：第{nid}号（{masked}，{program}）在数据库中为“计划名额内”，"
                                    "按事件日志应为“候补”")


def test_a_messages_outcome_edited_is_named(state_dir: Path) -> None:
    mid, receipt = one(state_dir, "SELECT id, receipt FROM messages WHERE outcome = 'late'")
    sqlite3.connect(state_dir / "mailbot.db").execute(
        f"UPDATE messages SET outcome = 'accepted' WHERE id = {mid}").connection.commit()
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：邮件：第{mid}封（回执{receipt}）的处理结果与事件日志不符"
                                    "（数据库中为“报名成功”，日志中为“逾期”）")


def test_a_raw_mail_file_altered_is_named(state_dir: Path) -> None:
    mid, receipt, rel = one(state_dir, "SELECT id, receipt, raw_path FROM messages ORDER BY id LIMIT 1")
    path = state_dir / rel
    path.write_bytes(path.read_bytes().replace(b"Subject:", b"Subject: X", 1))
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：保存的文件：回执{receipt}的原始邮件（{rel}）被改动过（SHA-256 不符）")


def test_a_head_never_in_the_log_is_refused(state_dir: Path) -> None:
    code, lines = verify(state_dir, "--head", "0" * 64)
    (n,) = one(state_dir, "SELECT count(*) FROM events")
    assert (code, lines[-1]) == (1, f"第一处问题：审计链头：{'0' * 64} 不在日志中（共{n}条事件）："
                                    "记下这个链头之后，日志被截短或重写过")


def test_a_school_contact_edited_by_hand_is_named(state_dir: Path) -> None:
    """The intruder makes another address of the same school and first letter the contact of
    record: the mask is the same, the address's hash in the log is not."""
    (address,) = one(state_dir, "SELECT address FROM school_contacts WHERE institution = '浙江甲职业技术学院'")
    assert address == "a@zja.edu.cn"
    (eid,) = one(state_dir, "SELECT max(id) FROM events WHERE kind = 'contact_of_record_set' "
                            "AND json_extract(detail, '$.institution') = '浙江甲职业技术学院'")
    sqlite3.connect(state_dir / "mailbot.db").execute(
        "UPDATE school_contacts SET address = 'attacker@zja.edu.cn' WHERE address = 'a@zja.edu.cn'").connection.commit()
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：学校报名联系邮箱：浙江甲职业技术学院的联系邮箱在数据库中为a***@zja.edu.cn，"
                                    f"按事件日志（第{eid}条事件）应为a***@zja.edu.cn")


def test_a_school_contact_deleted_by_hand_is_named(state_dir: Path) -> None:
    (eid,) = one(state_dir, "SELECT max(id) FROM events WHERE kind = 'contact_of_record_set' "
                            "AND json_extract(detail, '$.institution') = '浙江乙职业技术学院'")
    sqlite3.connect(state_dir / "mailbot.db").execute(
        "DELETE FROM school_contacts WHERE institution = '浙江乙职业技术学院'").connection.commit()
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：学校报名联系邮箱：事件日志（第{eid}条事件）设定了浙江乙职业技术学院的联系邮箱，"
                                    "数据库中没有这一行（被删除）")


def test_a_staff_item_closed_by_hand_is_named(state_dir: Path) -> None:
    (item,) = one(state_dir, "SELECT min(id) FROM staff_items WHERE status = 'open'")
    sqlite3.connect(state_dir / "mailbot.db").execute(
        f"UPDATE staff_items SET status = 'closed', closed_by = 'staff:王老师', resolution = '已处理' "
        f"WHERE id = {item}").connection.commit()
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：待办事项#{item}在数据库中为“已关闭”，按事件日志应为“未关闭”")


def test_a_staff_item_deleted_by_hand_is_named(state_dir: Path) -> None:
    (item,) = one(state_dir, "SELECT max(id) FROM staff_items")
    sqlite3.connect(state_dir / "mailbot.db").execute(f"DELETE FROM staff_items WHERE id = {item}").connection.commit()
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：待办事项：事件日志中有待办事项#{item}，数据库中没有（被删除）")


def test_a_staff_item_added_by_hand_is_named(state_dir: Path) -> None:
    db = sqlite3.connect(state_dir / "mailbot.db")
    item = db.execute("INSERT INTO staff_items (kind, summary, status, opened_at) "
                      "VALUES ('other', '伪造的事项', 'open', '2020-11-05T00:00:00+00:00')").lastrowid
    db.commit()
    db.close()
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：待办事项#{item}没有开立记录（事件日志中没有）")


def test_with_json_verify_names_the_first_break_in_codes(state_dir: Path) -> None:
    (item,) = one(state_dir, "SELECT max(id) FROM staff_items")
    sqlite3.connect(state_dir / "mailbot.db").execute(f"DELETE FROM staff_items WHERE id = {item}").connection.commit()
    result = CliRunner().invoke(main, ["verify", "--json"], env={"MAILBOT_STATE_DIR": str(state_dir)})
    report = json.loads(result.output)
    assert (result.exit_code, report["ok"], report["breaks"]) == (1, False, [
        {"check": "staff_items", "where": f"staff item {item}",
         "what": "the log has events about it, staff_items has no row"}])
    assert [line.split(":")[0] for line in report["lines"]] == [
        "integrity_check", "messages", "nominees", "school_contacts", "replies", "stored files"]


def test_a_conflict_row_of_an_old_database_becomes_withdrawn_with_an_event_and_still_verifies(
        state_dir: Path) -> None:
    """A database written before the fair-seats work may hold a ``conflict`` nominee (explained
    by its event).  Migration 006 makes it ``withdrawn`` with an event of its own; verify passes,
    and ``program_fill`` has no conflict column."""
    state = State(state_dir)
    try:
        with state.transaction():
            state.db.execute("DELETE FROM _migrations WHERE name = '006_no_conflict_status'")
            first = next(state.query("SELECT * FROM nominees ORDER BY id LIMIT 1"))
            row = {k: v for k, v in first.items() if k != "id"} | {"status": "conflict", "institution_key": "name:旧"}
            nid = state.insert("nominees", row)
            state.add_event("nominee_conflict", {"from": None, "to": "conflict", "program": row["program"],
                                                 "id": row["id_masked"], "why": "already nominated by another school"},
                            actor="daemon", rules_version="r@1", message=row["message"], nominee=nid)
    finally:
        state.close()
    State(state_dir).close()  # opening runs the migration again
    assert one(state_dir, f"SELECT status FROM nominees WHERE id = {nid}") == ("withdrawn",)
    assert one(state_dir, "SELECT kind, actor, json_extract(detail, '$.from'), json_extract(detail, '$.to') "
                          "FROM events ORDER BY id DESC LIMIT 1") == ("nominee_withdrawn", "migration", "conflict",
                                                                      "withdrawn")
    db = sqlite3.connect(state_dir / "mailbot.db")
    assert [c[1] for c in db.execute("PRAGMA table_info(program_fill)")] == [
        "position", "program", "host_institution", "seats", "seated", "free", "waiting", "held", "withdrawn"]
    db.close()
    code, lines = verify(state_dir)
    assert (code, lines[-1].split(" ")[0]) == (0, "验证通过：事件日志能解释全部数据；审计链头")
