"""Staff decisions end to end: a realistic state built through the real pipeline (Dovecot and
the SMTP sink), then each ``mailbot decide`` command: its effect on ``nominees``, its
``staff_decision`` event, the mail it sends (read from the sink) and ``mailbot history``."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon_harness import write_config
from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, parse_reply, rules_with_seats, shanghai
from mail_factory import make_mail
from mailbot.cli import main
from mailbot.masking import mask_id
from mailbot.rules import school_key
from mailbot.state.contacts import contact_of_record
from mailbot.state.ledger import id_hash

pytestmark = pytest.mark.servers

JIA, YI, BING = "浙江某某职业技术学院", "浙江乙职业技术学院", "浙江丙职业技术学院"
JIA_MAIL, YI_MAIL, BING_MAIL, EVIL = "jwc@zjxx.edu.cn", "jwc@yi.edu.cn", "jwc@bing.edu.cn", "x@evil.example"
STAFF = "peixun@zjut.edu.cn"
LOGISTICS, WEB = "物流管理职业技能等级证书", "Web前端开发职业技能等级证书"


NAMES = {9: "周一", 10: "吴二", 12: "郑十二"}  # nominee() repeats its eight names after 8


def person(serial: int):
    return nominee(serial, name=NAMES[serial]) if serial in NAMES else nominee(serial)


def _id(serial: int) -> str:
    return str(person(serial).id_number)


def _masked(serial: int) -> str:
    return mask_id(_id(serial))


def _untimed(output: str) -> list[str]:
    """Output lines with the leading event time (the time of the test run) replaced by 〈时间〉."""
    return [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d  ", "〈时间〉  ", line) for line in output.splitlines()]


class Office:
    """A state built by the real pipeline, a config file for the CLI, and the SMTP sink."""

    def __init__(self, tmp_path: Path, dovecot, account, sink) -> None:
        self.dovecot, self.account, self.sink = dovecot, account, sink
        rules = rules_with_seats(tmp_path, 2)
        text = rules.read_text(encoding="utf-8").replace("max_new_per_mail = 30", "max_new_per_mail = 3")
        rules.write_text(text, encoding="utf-8")
        self.rules = rules
        self.settings = imap_settings(tmp_path, account, sink, staff_addresses=[STAFF], rules=rules,
                                      trust={"deny_domains": ["evil.example"]})
        self.config = write_config(tmp_path, account, sink, **{
            "": {"rules": rules, "staff_addresses": [STAFF]},
            "trust": {"authserv_ids": [], "deny_domains": ["evil.example"]}})  # as self.settings
        self.parts = open_intake(self.settings, io.StringIO())

    def send(self, sender: str, serials: list[int], when, *, institution: str) -> None:
        form = make_annex3_xlsx([person(s) for s in serials], institution=institution)
        self.dovecot.append(make_mail(sender=sender, attachments=[("报名表.xlsx", form)]), when, user=self.account.user)

    def run(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [*args, "--config", str(self.config)])
        return result.exit_code, result.output

    def seats(self) -> list[tuple[str, str, str]]:
        return [(r["name"], r["program"], r["status"]) for r in self.parts.state.db.query(
            "SELECT name, program, status FROM nominees ORDER BY id")]

    def programs(self) -> list[str]:
        return [p.name for p in self.parts.rules.programs]

    def receipt(self, sender: str, *, last: bool = False) -> str:
        order = "DESC" if last else ""
        return next(self.parts.state.db.query(
            f"SELECT receipt FROM messages WHERE sender = ? ORDER BY id {order}", [sender]))["receipt"]

    def open_items(self) -> list[tuple[str, str]]:
        return [(r["kind"], r["sender"]) for r in self.parts.state.db.query(
            "SELECT kind, sender FROM staff_items WHERE status = 'open' ORDER BY id")]

    def last_decision(self) -> tuple[str, dict]:
        row = next(self.parts.state.db.query(
            "SELECT actor, detail FROM events WHERE kind = 'staff_decision' ORDER BY id DESC LIMIT 1"))
        return row["actor"], json.loads(row["detail"])

    def mark(self) -> int:
        """How many mails the sink has accepted so far."""
        return len(self.sink.messages)

    def mails_since(self, start: int, count: int):
        """(recipient, mail) of exactly the ``count`` mails accepted after ``start``."""
        got = self.sink.wait_for(start + count)[start:]
        assert len(got) == count, [m.rcpt_tos for m in got]
        return [(m.rcpt_tos[0], parse_reply(m.raw)) for m in got]

    def events_after(self, event_id: int) -> list[tuple[str, str]]:
        return [(r["kind"], r["actor"]) for r in self.parts.state.db.query(
            "SELECT kind, actor FROM events WHERE id > ? ORDER BY id", [event_id])]

    def message_id(self, sender: str) -> str:
        return next(self.parts.state.db.query("SELECT message_id FROM messages WHERE sender = ? ORDER BY id",
                                              [sender]))["message_id"]

    def decide(self, *args: str) -> tuple[int, list[str]]:
        code, out = self.run("decide", *args, "--staff", "王老师")
        return code, out.splitlines()

    def id_hash(self, serial: int) -> str:
        return id_hash(_id(serial))

    def last_event(self) -> int:
        return next(self.parts.state.db.query("SELECT max(id) AS n FROM events"))["n"]



@pytest.fixture()
def office(tmp_path: Path, dovecot, imap_account, smtp_sink):
    """Two seats per program, at most three new teachers per mail, evil.example quarantined:
    甲 registers 张三 李四 (seated) and 王五 (waiting 1); 乙 registers 赵六 (waiting 2); 丙 sends four
    new teachers at once (all held); a deny-listed sender is quarantined; 乙 sends 吴二 after the
    deadline."""
    made = Office(tmp_path, dovecot, imap_account, smtp_sink)
    made.send(JIA_MAIL, [1, 2, 3], shanghai(2020, 11, 2, 9, 0), institution=JIA)
    made.send(YI_MAIL, [4], shanghai(2020, 11, 2, 10, 0), institution=YI)
    made.send(BING_MAIL, [5, 6, 7, 8], shanghai(2020, 11, 3, 9, 0), institution=BING)
    made.send(EVIL, [9], shanghai(2020, 11, 4, 9, 0), institution="浙江丁职业技术学院")
    made.send(YI_MAIL, [10], shanghai(2020, 11, 10, 9, 0), institution=YI)
    made.parts.intake.poll_once()
    assert made.seats() == [
        ("张三", LOGISTICS, "seated"), ("李四", LOGISTICS, "seated"), ("王五", LOGISTICS, "waiting"),
        ("赵六", LOGISTICS, "waiting"), ("陈七", LOGISTICS, "held"), ("刘八", LOGISTICS, "held"),
        ("杨九", LOGISTICS, "held"), ("黄十", LOGISTICS, "held")]
    yield made
    made.parts.close()


def test_withdrawing_a_seated_teacher_seats_the_head_of_the_waiting_list_and_tells_the_school(office) -> None:
    start, before = office.mark(), office.last_event()
    code, out = office.run("decide", "withdraw", "--id-number", _id(1), "--staff", "王老师", "--reason", "本人因病无法参训")
    assert (code, out.splitlines()) == (0, [
        f"已撤销报名：张三（{_masked(1)}），{LOGISTICS}；递补：王五（{_masked(3)}）", f"通知邮件：{JIA_MAIL}"])
    assert office.seats()[:3] == [("张三", LOGISTICS, "withdrawn"), ("李四", LOGISTICS, "seated"),
                                  ("王五", LOGISTICS, "seated")]
    assert office.last_decision() == ("staff:王老师", {
        "decision": "withdraw", "reason": "本人因病无法参训", "id_hash": office.id_hash(1), "program": LOGISTICS,
        "from": "seated"})
    assert office.events_after(before) == [
        ("staff_decision", "staff:王老师"), ("nominee_withdrawn", "staff:王老师"), ("nominee_seated", "staff:王老师"),
        ("reply_queued", "staff:王老师"), ("reply_queued", "staff:王老师"),
        ("reply_sent", "staff:王老师"), ("reply_sent", "staff:王老师")]
    (to1, notice), (to2, promotion) = office.mails_since(start, 2)
    assert (to1, notice.subject) == (JIA_MAIL, f"【报名名单变更】{JIA}：教师已撤销报名（回执 {office.receipt(JIA_MAIL)}）")
    assert [ln for ln in notice.text.splitlines() if ln.startswith(("- ", "说明：", "经"))] == [
        f"经培训报名工作组决定，{JIA}报名的以下教师已撤销报名（回执号：{office.receipt(JIA_MAIL)}），所占名额按报名先后递补给候补教师：",
        f"- 张三（身份证号 {_masked(1)}），{LOGISTICS}：已撤销", "说明：本人因病无法参训"]
    assert (to2, promotion.subject, promotion.headers["In-Reply-To"]) == (
        JIA_MAIL, f"Re: 报名表【候补已递补为计划名额内｜回执 {office.receipt(JIA_MAIL)}】", f"<{office.message_id(JIA_MAIL)}>")
    assert [ln for ln in promotion.text.splitlines() if ln.startswith(("1. ", "回执号"))] == [
        f"1. 王五（身份证号 {_masked(3)}）", f"回执号：{office.receipt(JIA_MAIL)}"]
    office.parts.intake.poll_once()
    assert office.mark() == start + 2  # sent once, by the decision: nothing left for the daemon
    code, out = office.run("history", _id(1))
    assert (code, _untimed(out)) == (0, [
        f"身份证号 {_masked(1)}（张三）的全部记录：",
        f"〈时间〉  收到邮件：回执 {office.receipt(JIA_MAIL)}，报名成功（系统）",
        f"〈时间〉  报名状态：{_masked(1)} {LOGISTICS}：（新登记） → 计划名额内，按报名先后（系统）",
        "〈时间〉  工作人员决定：撤销报名，理由：本人因病无法参训（工作人员 王老师）",
        f"〈时间〉  报名状态：{_masked(1)} {LOGISTICS}：计划名额内 → 已撤回，工作人员撤销报名：本人因病无法参训（工作人员 王老师）"])
    code, out = office.run("history", "--json", _id(1))
    events = [json.loads(line) for line in out.splitlines()]
    assert (code, [(e["kind"], e["actor"], e["nominee"]) for e in events]) == (0, [
        ("message_recorded", "daemon", None), ("nominee_seated", "daemon", 1), ("staff_decision", "staff:王老师", 1),
        ("nominee_withdrawn", "staff:王老师", 1)])
    assert events[2]["detail"] == office.last_decision()[1]



def test_more_seats_seat_the_waiting_and_fewer_seats_never_unseat_anyone(office) -> None:
    start = office.mark()
    assert office.decide("seats", "--program", LOGISTICS, "--seats", "3", "--reason", "承办院校增加名额") == (0, [
        f"已调整名额：{LOGISTICS}，2 → 3；1名候补教师递补为计划名额内并已通知"])
    assert office.last_decision() == ("staff:王老师", {"decision": "seats", "reason": "承办院校增加名额",
                                                     "program": LOGISTICS, "from": 2, "to": 3})
    ((to, promotion),) = office.mails_since(start, 1)
    assert (to, [ln for ln in promotion.text.splitlines() if ln.startswith("1. ")]) == (
        JIA_MAIL, [f"1. 王五（身份证号 {_masked(3)}）"])
    assert office.decide("seats", "--program", LOGISTICS, "--seats", "1", "--reason", "场地缩小") == (0, [
        f"已调整名额：{LOGISTICS}，3 → 1；计划名额内3人，超出的名额不收回，待有人撤销后不再递补"])
    assert [s for _, p, s in office.seats()[:4]] == ["seated", "seated", "seated", "waiting"]
    office.decide("withdraw", "--id-number", _id(1), "--reason", "本人放弃")
    assert [s for _, p, s in office.seats()[:4]] == ["withdrawn", "seated", "seated", "waiting"]
    reopened = open_intake(office.settings, io.StringIO())  # the decision outlives the process
    try:
        assert reopened.intake.ledger.capacities[LOGISTICS] == 1
    finally:
        reopened.close()


def test_admitting_a_held_and_a_late_teacher_places_them_by_arrival_and_tells_the_school(office) -> None:
    start = office.mark()
    assert office.decide("admit", "--id-number", _id(5), "--reason", "学校补报了需求") == (0, [
        f"已准予登记：陈七（{_masked(5)}），{LOGISTICS}，候补（第3位）", f"通知邮件：{BING_MAIL}"])
    assert office.last_decision()[1] == {"decision": "admit", "reason": "学校补报了需求", "id_hash": office.id_hash(5),
                                        "program": LOGISTICS, "from": "held"}
    ((to, notice),) = office.mails_since(start, 1)
    assert (to, notice.subject) == (BING_MAIL, f"【报名审核结果】{BING}：教师已予登记（回执 {office.receipt(BING_MAIL)}）")
    assert [ln.strip() for ln in notice.text.splitlines() if ln.startswith(("1. ", "   报名状态"))] == [
        f"1. 陈七（身份证号 {_masked(5)}）", "报名状态：暂列候补第3位"]
    assert office.open_items() == [("too_many", BING_MAIL), ("quarantined", EVIL)]  # three of its teachers still held

    late = office.receipt(YI_MAIL, last=True)
    assert office.decide("admit", "--receipt", late, "--reason", "学校因系统故障逾期，经领导同意") == (0, [
        f"已准予逾期登记（回执{late}）：吴二（{_masked(10)}），{LOGISTICS}，候补（第4位）", f"通知邮件：{YI_MAIL}"])
    assert office.last_decision()[1] == {"decision": "admit_late", "reason": "学校因系统故障逾期，经领导同意",
                                        "receipt": late, "id_hashes": [office.id_hash(10)],
                                        "institution_key": f"name:{school_key(YI)}"}
    assert office.seats()[-1] == ("吴二", LOGISTICS, "waiting")
    ((to, notice),) = office.mails_since(start + 1, 1)
    assert (to, notice.subject) == (YI_MAIL, f"【报名审核结果】{YI}：教师已予登记（回执 {late}）")
    assert office.decide("admit", "--receipt", late, "--reason", "再来一次") == (1, [
        f"未执行：吴二（{_masked(10)}）已在“{YI}”{LOGISTICS}登记"])


def test_moving_and_substituting_keep_the_arrival_order_and_refill_the_seat_left(office) -> None:
    start = office.mark()
    assert office.decide("move", "--id-number", _id(2), "--program", WEB, "--reason", "学校申请改报") == (0, [
        f"已调整：李四（{_masked(2)}），{LOGISTICS} → {WEB}，计划名额内", f"通知邮件：{JIA_MAIL}"])
    assert office.last_decision()[1] == {"decision": "move", "reason": "学校申请改报", "id_hash": office.id_hash(2),
                                        "from_program": LOGISTICS, "to_program": WEB}
    assert office.seats()[:4] + office.seats()[-1:] == [
        ("张三", LOGISTICS, "seated"), ("李四", LOGISTICS, "withdrawn"), ("王五", LOGISTICS, "seated"),
        ("赵六", LOGISTICS, "waiting"), ("李四", WEB, "seated")]
    (to1, moved), (to2, promoted) = office.mails_since(start, 2)
    assert (to1, moved.subject, to2) == (JIA_MAIL, f"【报名名单变更】{JIA}：教师培训项目已调整（回执 {office.receipt(JIA_MAIL)}）",
                                         JIA_MAIL)
    assert [ln.strip() for ln in moved.text.splitlines() if ln.startswith(("经", "1. ", "【", "   报名状态"))] == [
        f"经培训报名工作组决定，{JIA}报名的以下教师已由“{LOGISTICS}”调整至新的培训项目（回执号：{office.receipt(JIA_MAIL)}）：",
        f"【{WEB}】承办院校：浙江机电职业技术学院", f"1. 李四（身份证号 {_masked(2)}）", "报名状态：报名成功（在计划名额内）"]

    assert office.decide("substitute", "--id-number", _id(1), "--new-id-number", _id(12), "--new-name", "郑十二",
                         "--reason", "张三调离学校，经培训中心同意更换") == (0, [
        f"已更换：张三（{_masked(1)}）→ 郑十二（{_masked(12)}），{LOGISTICS}，计划名额内", f"通知邮件：{JIA_MAIL}"])
    assert office.last_decision()[1] == {
        "decision": "substitute", "reason": "张三调离学校，经培训中心同意更换", "id_hash": office.id_hash(1),
        "new_id_hash": office.id_hash(12), "new_id": _masked(12), "program": LOGISTICS, "status": "seated"}
    assert office.seats()[0] == ("张三", LOGISTICS, "withdrawn") and office.seats()[-1] == ("郑十二", LOGISTICS, "seated")
    ((to, notice),) = office.mails_since(start + 2, 1)
    assert [ln for ln in notice.text.splitlines() if ln.startswith(("- ", "1. ", "由", "说明"))] == [
        f"- 张三（身份证号 {_masked(1)}），{LOGISTICS}：已撤销", "由以下教师替换，保留原报名状态：",
        f"1. 郑十二（身份证号 {_masked(12)}）", "说明：张三调离学校，经培训中心同意更换"]


def test_a_new_contact_of_record_is_told_and_so_is_the_old_one(office) -> None:
    start = office.mark()
    assert office.decide("contact", "--school", YI, "--address", "New@Yi.edu.cn", "--reason", "学校来函更换联系人") == (0, [
        f"已将new@yi.edu.cn设为“{YI}”的报名联系邮箱", f"通知邮件：new@yi.edu.cn、{YI_MAIL}"])
    assert office.last_decision()[1] == {"decision": "contact", "reason": "学校来函更换联系人",
                                        "institution_key": f"name:{school_key(YI)}", "institution": YI,
                                        "to": "n***@yi.edu.cn"}
    (to1, new), (to2, old) = office.mails_since(start, 2)
    assert (to1, to2) == ("new@yi.edu.cn", YI_MAIL)
    assert new.subject == old.subject == f"【报名联系邮箱】{YI}：报名联系邮箱已变更"
    assert contact_of_record(office.parts.state, f"name:{school_key(YI)}").address == "new@yi.edu.cn"  # type: ignore[union-attr]


def test_a_question_is_answered_in_its_thread_and_a_quarantined_mail_released(office) -> None:
    start = office.mark()
    quarantine_item = next(office.parts.state.db.query("SELECT id FROM staff_items WHERE kind = 'quarantined'"))["id"]
    assert office.decide("answer", "--item", str(quarantine_item), "--text", "您的邮件已收到，核实后处理。",
                         "--reason", "发件域名在拒收名单") == (0, [
        f"已答复回执{office.receipt(EVIL)}（{EVIL}），待办事项#{quarantine_item}已关闭", f"通知邮件：{EVIL}"])
    ((to, answer),) = office.mails_since(start, 1)
    assert (to, answer.subject, answer.headers["In-Reply-To"], answer.headers["References"]) == (
        EVIL, f"Re: 报名表【工作人员答复｜回执 {office.receipt(EVIL)}】", f"<{office.message_id(EVIL)}>",
        f"<{office.message_id(EVIL)}>")
    assert [ln for ln in answer.text.splitlines()][2:5] == [
        f"关于您（回执号：{office.receipt(EVIL)}）的来信，培训报名工作组答复如下：", "", "您的邮件已收到，核实后处理。"]
    assert office.open_items() == [("too_many", BING_MAIL)]

    code, out = office.decide("release", "--receipt", office.receipt(EVIL), "--reason", "经电话核实是学校老师")
    copy = office.receipt(EVIL, last=True)
    assert (code, out) == (0, [f"已放行回执{office.receipt(EVIL)}：重新处理为回执{copy}，报名成功", f"通知邮件：{EVIL}"])
    assert office.last_decision()[1] == {"decision": "release", "reason": "经电话核实是学校老师", "released": 4,
                                        "as_message": 6, "receipt": office.receipt(EVIL), "outcome": "accepted"}
    assert office.seats()[-1] == ("周一", LOGISTICS, "waiting")
    ((to, reply),) = office.mails_since(start + 1, 1)
    assert (to, reply.subject) == (EVIL, f"Re: 报名表【暂列候补1人｜回执 {copy}】")
    assert office.decide("release", "--receipt", office.receipt(EVIL), "--reason", "again") == (1, [
        f"未执行：回执{office.receipt(EVIL)}已于此前放行（新回执{copy}）"])
    answered, replied = (next(office.parts.state.db.query(sql))["id"] for sql in (
        "SELECT id FROM outbox WHERE kind = 'staff_answer'", "SELECT id FROM outbox WHERE message = 6"))
    code, out = office.run("history", office.receipt(EVIL))
    assert (code, _untimed(out)) == (0, [
        f"回执 {office.receipt(EVIL)}（发件人 {EVIL}）的全部记录：",
        f"〈时间〉  收到邮件：回执 {office.receipt(EVIL)}，已隔离（系统）",
        f"〈时间〉  转工作人员：待办事项#{quarantine_item}（已隔离）（系统）",
        f"〈时间〉  工作人员决定：答复来信，待办事项#{quarantine_item}，理由：发件域名在拒收名单（工作人员 王老师）",
        f"〈时间〉  邮件排队：工作人员答复#{answered}（工作人员 王老师）",
        f"〈时间〉  待办事项关闭：待办事项#{quarantine_item}：已答复：发件域名在拒收名单（工作人员 王老师）",
        f"〈时间〉  邮件已发出：工作人员答复#{answered}（工作人员 王老师）",
        f"〈时间〉  收到邮件：回执 {copy}，报名成功（工作人员 王老师）",
        f"〈时间〉  报名状态：{_masked(9)} {LOGISTICS}：（新登记） → 候补，按报名先后（工作人员 王老师）",
        "〈时间〉  报名联系邮箱：浙江丁职业技术学院：（无） → x***@evil.example（工作人员 王老师）",
        "〈时间〉  邮件排队：回复（报名成功）（工作人员 王老师）",
        f"〈时间〉  工作人员决定：放行邮件，重新处理为回执 {copy}，理由：经电话核实是学校老师（工作人员 王老师）",
        f"〈时间〉  邮件已发出：回复（报名成功）#{replied}（工作人员 王老师）"])


def test_closing_an_item_resending_and_resolving_replies_of_unknown_delivery(office) -> None:
    item = next(office.parts.state.db.query("SELECT id FROM staff_items WHERE kind = 'too_many'"))["id"]
    assert office.decide("close", "--receipt", office.receipt(BING_MAIL), "--reason", "已电话告知学校分批报送") == (
        0, [f"待办事项#{item}已关闭"])
    assert office.last_decision()[1] == {"decision": "close", "reason": "已电话告知学校分批报送", "item": item}
    assert office.open_items() == [("quarantined", EVIL)]
    assert office.decide("close", "--item", str(item), "--reason", "again") == (1, [f"未执行：待办事项#{item}不存在或已关闭"])

    office.sink.drop_next(2)  # the connection is cut after DATA: delivery unknown
    office.send(JIA_MAIL, [1, 2, 3, 12], shanghai(2020, 11, 5, 9, 0), institution=JIA)
    office.send(YI_MAIL, [4], shanghai(2020, 11, 5, 10, 0), institution=YI)
    office.parts.intake.poll_once()
    unknown = [r["id"] for r in office.parts.state.db.query("SELECT id FROM outbox WHERE status = 'unknown' ORDER BY id")]
    assert len(unknown) == 2
    start = office.mark()
    assert office.decide("resend", str(unknown[0]), "--reason", "学校说没收到") == (0, [
        f"回复#{unknown[0]}已重新排队发送至{JIA_MAIL}", f"通知邮件：{JIA_MAIL}"])
    ((to, again),) = office.mails_since(start, 1)
    raw = next(office.parts.state.db.query("SELECT raw, status FROM outbox WHERE id = ?", [unknown[0]]))
    assert (to, again.headers["Message-ID"], raw["status"]) == (JIA_MAIL, parse_reply(raw["raw"]).headers["Message-ID"], "sent")
    assert office.decide("resolve", str(unknown[1]), "--reason", "电话确认已收到") == (0, [f"回复#{unknown[1]}已标记为已处理"])
    assert next(office.parts.state.db.query("SELECT status FROM outbox WHERE id = ?", [unknown[1]]))["status"] == "resolved"
    assert office.last_decision()[1] == {"decision": "resolve", "reason": "电话确认已收到", "outbox": unknown[1],
                                        "from": "unknown"}
    assert office.decide("resolve", str(unknown[0]), "--reason", "again") == (1, [
        f"未执行：回复#{unknown[0]}的状态是“已发送”，只有投递情况不明或发送失败的回复可以重发或标记"])


def test_a_decision_without_a_reason_or_for_no_one_is_refused_in_chinese_and_changes_nothing(office) -> None:
    before = office.last_event()
    assert office.run("decide", "withdraw", "--id-number", _id(1), "--staff", "王老师") == (
        2, "未执行：请用 --reason 填写理由\n")
    assert office.run("decide", "withdraw", "--id-number", _id(1), "--reason", "x") == (2, "未执行：请用 --staff 填写您的姓名\n")
    assert office.decide("withdraw", "--id-number", _id(12), "--reason", "x") == (1, [
        "未执行：没有该身份证号的有效报名（计划名额内、候补、待审核）"])
    assert office.decide("move", "--id-number", _id(1), "--program", "烹饪", "--reason", "x")[1][0].startswith(
        "未执行：没有培训项目“烹饪”；可选：")
    assert office.decide("admit", "--id-number", _id(1), "--reason", "x") == (1, [
        f"未执行：张三（{_masked(1)}）的状态是“计划名额内”，不是待审核，无需准予登记"])
    assert office.last_event() == before


# --- replay --all under other rules -------------------------------------------------------------

def _database_bytes(office) -> tuple[bytes, bytes]:
    db = office.settings.db_path
    return db.read_bytes(), Path(f"{db}-wal").read_bytes()


def _checkpoint(office) -> None:
    office.parts.state.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_replay_under_unchanged_rules_reports_no_change_and_leaves_the_database_byte_identical(office) -> None:
    office.decide("withdraw", "--id-number", _id(1), "--reason", "本人放弃")
    office.decide("admit", "--id-number", _id(5), "--reason", "学校补报了需求")
    start = office.mark()
    _checkpoint(office)
    before = _database_bytes(office)
    code, out = office.run("replay", "--all", "--rules", str(office.rules))
    assert (code, out.splitlines()) == (0, [
        "按 rules.toml 重新判定全部5封邮件（按到达先后），涉及8名教师：没有变化。",
        "（仅为预演：数据库和邮箱均未改动，未发送任何邮件。）"])
    assert _database_bytes(office) == before
    _checkpoint(office)
    assert _database_bytes(office) == before
    assert office.mark() == start and office.dovecot.list_folder("INBOX", user=office.account.user) == []


def test_replay_with_fewer_seats_names_the_teachers_who_would_move(office, tmp_path: Path) -> None:
    fewer = tmp_path / "fewer.toml"
    fewer.write_text(office.rules.read_text(encoding="utf-8").replace("seats = 2", "seats = 1"), encoding="utf-8")
    _checkpoint(office)
    before = _database_bytes(office)
    code, out = office.run("replay", "--all", "--rules", str(fewer))
    assert (code, out.splitlines()) == (0, [
        "按 fewer.toml 重新判定全部5封邮件（按到达先后），涉及8名教师，与现状相比：",
        "名额：",
        f"  {LOGISTICS}：计划名额内2/2，候补2 → 计划名额内1/1，候补3",
        "名额数改变、计划名额内和候补人数不变的项目：" + "；".join(f"{p} 2 → 1" for p in office.programs() if p != LOGISTICS),
        "教师：",
        f"  李四（{_masked(2)}，{JIA}）：{LOGISTICS}，计划名额内 → {LOGISTICS}，候补（第1位）",
        f"  王五（{_masked(3)}，{JIA}）：{LOGISTICS}，候补（第1位） → {LOGISTICS}，候补（第2位）",
        f"  赵六（{_masked(4)}，{YI}）：{LOGISTICS}，候补（第2位） → {LOGISTICS}，候补（第3位）",
        "（仅为预演：数据库和邮箱均未改动，未发送任何邮件。）"])
    _checkpoint(office)
    assert _database_bytes(office) == before


def test_replay_under_unchanged_rules_applies_every_kind_of_decision_again_and_reports_no_change(office) -> None:
    office.decide("release", "--receipt", office.receipt(EVIL), "--reason", "经电话核实是学校老师")
    office.decide("admit", "--receipt", office.receipt(YI_MAIL, last=True), "--reason", "经领导同意")
    office.decide("move", "--id-number", _id(2), "--program", WEB, "--reason", "学校申请改报")
    office.decide("substitute", "--id-number", _id(1), "--new-id-number", _id(12), "--new-name", "郑十二",
                  "--reason", "张三调离学校")
    office.decide("seats", "--program", LOGISTICS, "--seats", "4", "--reason", "承办院校增加名额")
    office.decide("admit", "--id-number", _id(6), "--reason", "学校补报了需求")
    office.decide("contact", "--school", YI, "--address", "new@yi.edu.cn", "--reason", "学校来函")
    code, out = office.run("replay", "--all", "--rules", str(office.rules))
    assert (code, out.splitlines()) == (0, [
        "按 rules.toml 重新判定全部6封邮件（按到达先后），涉及11名教师：没有变化。",
        "（仅为预演：数据库和邮箱均未改动，未发送任何邮件。）"])
    code, out = office.run("verify")  # the event log explains every decision's state
    assert (code, [line for line in out.splitlines() if line.startswith(("参训人员", "培训项目", "待办事项"))]) == (
        0, ["参训人员：12人，状态均可由事件日志重算", "待办事项：2项，均可由事件日志重算"]), out
    fill = next(office.parts.state.db.query("SELECT seats, seated FROM program_fill WHERE program = ?", [LOGISTICS]))
    assert (fill["seats"], fill["seated"]) == (4, 4)


def test_a_held_teacher_moved_to_another_program_stays_held_there(office) -> None:
    assert office.decide("move", "--id-number", _id(5), "--program", WEB, "--reason", "学校申请改报") == (0, [
        f"已调整：陈七（{_masked(5)}），{LOGISTICS} → {WEB}，待审核", f"通知邮件：{BING_MAIL}"])
    assert office.seats()[4] == ("陈七", LOGISTICS, "withdrawn") and office.seats()[-1] == ("陈七", WEB, "held")


def test_a_staff_answer_does_not_use_up_the_senders_daily_replies(tmp_path: Path, dovecot, imap_account,
                                                                   smtp_sink) -> None:
    """With two replies a day per address: 丙's form (one reply), staff answer its item, 丙 writes
    again: that mail is answered too (the staff answer is staff's, not an automatic reply)."""
    from mailbot.decisions import StaffDecisions

    rules = rules_with_seats(tmp_path, 2)
    rules.write_text(rules.read_text(encoding="utf-8").replace("max_new_per_mail = 30", "max_new_per_mail = 3"),
                     encoding="utf-8")
    settings = imap_settings(tmp_path, imap_account, smtp_sink, rules=rules, reply={"max_per_sender_per_day": 2})
    parts = open_intake(settings, io.StringIO())
    try:
        form = make_annex3_xlsx([person(s) for s in (5, 6, 7, 8)], institution=BING)
        dovecot.append(make_mail(sender=BING_MAIL, attachments=[("报名表.xlsx", form)]), shanghai(2020, 11, 3, 9, 0),
                       user=imap_account.user)
        parts.intake.poll_once()
        (item,) = [r["id"] for r in parts.state.db.query("SELECT id FROM staff_items WHERE kind = 'too_many'")]
        StaffDecisions(parts.intake, "王老师").answer(item, "请分两次报送，每次不超过3人。", "按通知要求")
        parts.intake.send()
        dovecot.append(make_mail(sender=BING_MAIL, subject="请问", attachments=[]), shanghai(2020, 11, 3, 10, 0),
                       user=imap_account.user)
        parts.intake.poll_once()
        assert [m.rcpt_tos for m in smtp_sink.wait_for(3)] == [(BING_MAIL,)] * 3
        assert [(r["kind"], r["status"]) for r in parts.state.db.query(
            "SELECT kind, status FROM outbox WHERE to_address = ? ORDER BY id", [BING_MAIL])] == [
            ("acceptance", "sent"), ("staff_answer", "sent"), ("no_form", "sent")]
        assert list(parts.state.db.query("SELECT id FROM events WHERE kind = 'reply_suppressed'")) == []
    finally:
        parts.close()
