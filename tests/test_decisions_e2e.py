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

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, parse_reply, rules_with_seats, shanghai
from mail_factory import make_mail
from mailbot.cli import main
from mailbot.masking import mask_id
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
        self.config = tmp_path / "mailbot.toml"
        self.config.write_text(f"""
state_dir = "{tmp_path / 'state'}"
log_format = "json"
rules = "{rules}"
staff_addresses = ["{STAFF}"]
[mailbox]
kind = "imap"
[imap]
host = "{account.host}"
port = {account.port}
tls = "plain"
user = "{account.user}"
password = "{account.password}"
timeout = 10
[smtp]
mode = "smtp"
host = "{sink.host}"
port = {sink.port}
tls = "plain"
envelope_from = "bounces@zjut.edu.cn"
retry_base_seconds = 0.01
[reply]
message_id_domain = "mailbot.test"
[trust]
deny_domains = ["evil.example"]
""", encoding="utf-8")
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

    def receipt(self, sender: str) -> str:
        return next(self.parts.state.db.query("SELECT receipt FROM messages WHERE sender = ? ORDER BY id", [sender]))["receipt"]

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
    assert to2 == JIA_MAIL and "王五" in promotion.text and "已递补录取" in promotion.text
    code, out = office.run("history", _id(1))
    assert (code, _untimed(out)) == (0, [
        f"身份证号 {_masked(1)}（张三）的全部记录：",
        f"〈时间〉  收到邮件：回执 {office.receipt(JIA_MAIL)}，报名成功（系统）",
        f"〈时间〉  报名状态：{_masked(1)} {LOGISTICS}：（新登记） → 已录取，按报名先后（系统）",
        "〈时间〉  工作人员决定：撤销报名，理由：本人因病无法参训（工作人员 王老师）",
        f"〈时间〉  报名状态：{_masked(1)} {LOGISTICS}：已录取 → 已撤销，工作人员撤销报名：本人因病无法参训（工作人员 王老师）"])
