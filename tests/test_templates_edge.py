"""Every template under templates/, rendered with edge values: empty lists, 0 and 50 seats, very
long names, names that look like HTML or Jinja, waiting positions 1 and 999, no school, no
deadline, hundreds of findings.  No template may fail, print ``None``, leak its own syntax or raw
markup into the text, or let a sender's markup through into the HTML; a few small outputs are
pinned whole.  The golden files (tests/golden_replies/) pin the ordinary outputs."""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import fields, replace
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from markupsafe import escape

from mailbot.replies.model import (
    REPLY_KINDS,
    AttentionItem,
    ChangeLine,
    DecisionNotice,
    DigestContext,
    FindingLine,
    NomineeChange,
    NomineeLine,
    PollError,
    ProgramSeats,
    ReplyContext,
    RosterNoticeContext,
    RosterProgramCount,
    SchoolLine,
    SchoolNotice,
    StaffAlertContext,
    WaitingLine,
)
from mailbot.replies.render import RenderedReply, ReplyRenderer

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
BJ = ZoneInfo("Asia/Shanghai")
WHEN = datetime(2020, 11, 5, 14, 32, tzinfo=BJ)

HOSTILE = '<script>alert("x")</script>{{ 7*7 }}{% if 1 %}x{% endif %}{# c #}'
LONG = "欧阳" + "娜" * 300
PROGRAM = "物流管理职业技能等级证书"


def line(name: str, status: str = "seated", position: int | None = None, program: str = PROGRAM,
         row: int | None = 4, note: str = "") -> NomineeLine:
    return NomineeLine(row=row, name=name, program=program, host="浙江经济职业技术学院", format="5天线下集中+5天线上",
                       hours=80, fee_cap=3200, status=status, waiting_position=position,  # type: ignore[arg-type]
                       id_masked="3301**********0011", note=note)


EVERY_STATUS = (
    line(LONG), line(HOSTILE, "waiting", 1), line("张三", "waiting", 999, program=HOSTILE, row=None),
    line("李四", "held"), line("王五", "conflict", note=HOSTILE), line("赵六", "rejected"), line("钱七", "waiting", None),
)
MANY_FINDINGS = tuple(FindingLine(f"{HOSTILE}.xlsx" if i % 2 else "", i if i % 3 else None,
                                  "身份证号" if i % 5 else None, "id_checksum", f"第{i}处：{HOSTILE}")
                      for i in range(1, 201))
CHANGES = tuple(ChangeLine(kind, name, "3301**********0011", detail)  # type: ignore[arg-type]
                for kind in ("added", "removed", "changed") for name, detail in ((LONG, HOSTILE), ("张三", "")))


def empty_reply(kind: str) -> ReplyContext:
    """A reply with nothing optional: no school, no names, no deadline, no lists."""
    return ReplyContext(kind=kind, to_address="a@b.cn", to_name="", original_subject="", original_message_id="",  # type: ignore[arg-type]
                        original_references=(), received_at=WHEN, receipt="")


def full_reply(kind: str) -> ReplyContext:
    """A reply with every optional part at an edge."""
    return replace(
        empty_reply(kind), to_name=HOSTILE, original_subject=HOSTILE, receipt="ZJ2020-000123", institution=HOSTILE,
        contact=LONG, contact_is_sender=True, campaign_title=HOSTILE, deadline=datetime(2020, 11, 9, 23, 59, 59, tzinfo=BJ),
        intake_address="shengpei@zjut.edu.cn", platform_url="https://pxglpt.zjedu.gov.cn", platform_path=HOSTILE,
        late_contact=HOSTILE, nominees=EVERY_STATUS, findings=MANY_FINDINGS, changes=CHANGES,
        unreadable_reasons=MANY_FINDINGS[:3], findings_omitted=17, nominees_omitted=999,
        earlier_receipts=("ZJ2020-000001", HOSTILE), scans_received=(HOSTILE, LONG), stamp_required=True,
        correction_workbooks=((f"{HOSTILE}.xlsx", b"PK"),), help_contact=HOSTILE, signature=HOSTILE,
        notes=(HOSTILE, LONG), resend_closed=True, lead=(HOSTILE,), programs=((HOSTILE, LONG), (PROGRAM, "浙江")),
        question_forwarded=True)


def page(renderer: ReplyRenderer, stem: str, ctx: Any, **more: Any) -> RenderedReply:
    return renderer.render_page(stem, HOSTILE, {**{f.name: getattr(ctx, f.name) for f in fields(ctx)}, **more})


def notices() -> list[tuple[str, Any, dict[str, Any]]]:
    """(template, context, extra variables) for every template rendered by ``render_page``."""
    out: list[tuple[str, Any, dict[str, Any]]] = []
    for kind in ("other_sender", "list_changed"):
        out.append((f"notice_{kind}", SchoolNotice(kind, "a@b.cn", "", "", "", WHEN), {}))  # type: ignore[arg-type]
        out.append((f"notice_{kind}", SchoolNotice(kind, "a@b.cn", HOSTILE, HOSTILE, HOSTILE, WHEN,  # type: ignore[arg-type]
                                                   campaign_title=HOSTILE, added=50, held=999, asked=1, kept=0,
                                                   changes=CHANGES, help_contact=HOSTILE), {}))
    for kind in ("admit", "withdraw", "substitute", "move", "contact", "contact_replaced", "answer"):
        out.append(("notice_decision", DecisionNotice(kind, "a@b.cn", "", WHEN), {}))  # type: ignore[arg-type]
        out.append(("notice_decision", DecisionNotice(kind, "a@b.cn", HOSTILE, WHEN, reason=HOSTILE,  # type: ignore[arg-type]
                                                      receipt=HOSTILE, nominees=EVERY_STATUS, replaced=EVERY_STATUS,
                                                      from_program=HOSTILE, contact_address=HOSTILE, answer=HOSTILE,
                                                      campaign_title=HOSTILE, help_contact=HOSTILE), {}))
    item = AttentionItem("question", HOSTILE, HOSTILE, HOSTILE, WHEN, HOSTILE)
    out.append(("staff_alert", StaffAlertContext("", WHEN, (), 0), {}))
    out.append(("staff_alert", StaffAlertContext(HOSTILE, WHEN, (item,) * 50, 999, more=999), {}))
    stall = StaffAlertContext("", WHEN, (), 0)
    out.append(("stall_alert", stall, {"last_ok": None, "stalled_minutes": 0, "errors": ()}))
    out.append(("stall_alert", stall, {"last_ok": WHEN, "stalled_minutes": 99999,
                                       "errors": (PollError(WHEN, HOSTILE),) * 3}))
    out.append(("roster_to_host", RosterNoticeContext("", "", "", (), "", WHEN), {}))
    out.append(("roster_to_host", RosterNoticeContext(
        HOSTILE, HOSTILE, LONG, (RosterProgramCount(HOSTILE, 0, 0), RosterProgramCount(PROGRAM, 50, 999)),
        f"{HOSTILE}.xlsx", WHEN, help_contact=HOSTILE, signature=HOSTILE), {}))
    return out


DIGESTS = (
    DigestContext(campaign="", generated_at=WHEN, period_start=WHEN, period_end=WHEN),
    DigestContext(
        campaign=HOSTILE, generated_at=WHEN, period_start=WHEN, period_end=WHEN, deadline=WHEN,
        outcome_counts=(("accepted", 0), ("no_such_outcome", 5), (HOSTILE, 1)),
        programs=(ProgramSeats(HOSTILE, HOSTILE, 0, 0, 0), ProgramSeats(PROGRAM, "浙江", 50, 50, 999, held=3,
                                                                      waiting_list=(WaitingLine(1, LONG, "x", HOSTILE, "r"),
                                                                                    WaitingLine(999, HOSTILE, "x", "", "")))),
        attention=tuple(AttentionItem(c, HOSTILE, HOSTILE, HOSTILE, WHEN if i % 2 else None, HOSTILE)  # type: ignore[arg-type]
                        for i, c in enumerate(("failed", "question", "no_such_category") * 40)),
        chain_head="ab" * 32, sender_trust_configured=False, replies_held=999, reply_budget_per_hour=0,
        changes=tuple(NomineeChange(k, LONG, "x", HOSTILE, HOSTILE, HOSTILE, WHEN)  # type: ignore[arg-type]
                      for k in ("seated", "waiting", "promoted", "withdrawn", "held")),
        schools=(SchoolLine(HOSTILE, 0, ""), SchoolLine(LONG, 999, HOSTILE)), silent_schools=(HOSTILE, LONG),
        expected_schools=0, last_poll_ok=WHEN, poll_errors=(PollError(WHEN, HOSTILE),) * 20),
)


# --- what every output must satisfy ---------------------------------------------------------

_VOID = {"br", "meta", "hr", "img", "col", "input", "link"}
_TEMPLATE_SYNTAX = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
_MARKUP = re.compile(r"</?(?:p|br|strong|table|tr|td|th|ul|ol|li|span|html|body|head|div|b|a)\b[^>]*>", re.IGNORECASE)


class _Balance(HTMLParser):
    """Open elements left open or closed out of order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def check_output(rendered: RenderedReply) -> None:
    """The checks every rendered template passes, whatever the values."""
    escaped = str(escape(HOSTILE))  # as the HTML templates escape it
    text = rendered.text.replace(HOSTILE, "")
    markup = rendered.html.replace(escaped, "")
    for output in (text, markup, rendered.subject.replace(HOSTILE, "")):
        leaked = _TEMPLATE_SYNTAX.search(output)
        assert leaked is None, output[max(0, leaked.start() - 80):leaked.end() + 80]  # the template's own syntax
        assert "None" not in output and "Undefined" not in output, output  # a missing value printed
    assert not _MARKUP.search(text), _MARKUP.search(text)  # raw markup in the plain text
    assert "<script" not in rendered.html  # a sender's markup is escaped
    assert markup.lstrip().startswith("<!DOCTYPE html>") and markup.rstrip().endswith("</html>")
    parser = _Balance()
    parser.feed(markup)
    assert parser.errors == [] and parser.stack == []
    assert "\n" not in rendered.subject


@pytest.fixture(scope="module")
def renderer() -> ReplyRenderer:
    return ReplyRenderer(TEMPLATES)


def test_every_template_file_is_rendered_by_these_tests() -> None:
    stems = {p.name.split(".")[0] for p in TEMPLATES.glob("*.j2") if not p.name.startswith("_")}
    assert stems == {f"reply_{k}" for k in REPLY_KINDS} | {stem for stem, _, _ in notices()} | {"digest"}


@pytest.mark.parametrize("kind", REPLY_KINDS)
@pytest.mark.parametrize("variant", [empty_reply, full_reply], ids=["empty", "edge"])
def test_every_reply_renders_clean_with_edge_values(renderer, kind, variant) -> None:
    check_output(renderer.render(variant(kind)))


@pytest.mark.parametrize("case", range(len(notices())))
def test_every_notice_and_staff_mail_renders_clean_with_edge_values(renderer, case) -> None:
    stem, ctx, more = notices()[case]
    check_output(page(renderer, stem, ctx, **more))


@pytest.mark.parametrize("digest", DIGESTS, ids=["empty", "edge"])
def test_the_digest_renders_clean_with_edge_values(renderer, digest) -> None:
    check_output(renderer.render_digest(digest))


# --- small outputs pinned whole -----------------------------------------------------------


def test_an_empty_acceptance_is_pinned_whole(renderer) -> None:
    rendered = renderer.render(empty_reply("acceptance"))
    assert rendered.subject == "Re: 报名表【已收到，表中无参训教师】"
    assert rendered.text == (
        "您好！\n\n"
        "我们已于2020年11月5日 14:32收到贵单位报送的附件3《高校参训教师信息汇总表》，报名已登记，结果如下：\n\n"
        "本表未包含参训教师信息。\n\n"
        "各培训项目的具体时间以承办院校发送给参训教师的培训通知为准；参训教师向承办院校缴费后回本单位报销。\n"
        "如需修改，请重新发送完整的汇总表，我们将以最新收到的一份为准，并回复变更情况。根据通知要求，学员报名完成后无特殊原因不得更换。\n\n"
        "收件时间：2020年11月5日 14:32\n\n"
        "（本邮件由报名系统自动发送。）\n"
        "培训报名工作组\n")


def test_waiting_positions_one_and_999_and_a_hostile_name_are_listed_as_written(renderer) -> None:
    ctx = replace(empty_reply("acceptance"), nominees=(line(HOSTILE, "waiting", 1), line("张三", "waiting", 999)))
    rendered = renderer.render(ctx)
    assert rendered.subject == "Re: 报名表【暂列候补2人】"
    start = rendered.text.index("【物流管理职业技能等级证书】")
    assert rendered.text[start:rendered.text.index("说明：")] == (
        "【物流管理职业技能等级证书】承办院校：浙江经济职业技术学院\n"
        "培训形式：5天线下集中+5天线上（共80学时）；培训费：不超过3200元\n\n"
        f"1. {HOSTILE}（身份证号 3301**********0011，表格第4行）\n"
        "   报名状态：暂列候补第1位\n\n"
        "2. 张三（身份证号 3301**********0011，表格第4行）\n"
        "   报名状态：暂列候补第999位\n\n")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rendered.html)
    assert cells == [
        "1", f'{escape(HOSTILE)}<br><span style="color:#888;font-size:12px;">3301**********0011，第4行</span>',
        "<strong>暂列候补第1位</strong>",
        "2", '张三<br><span style="color:#888;font-size:12px;">3301**********0011，第4行</span>',
        "<strong>暂列候补第999位</strong>"]


def test_a_list_changed_notice_with_a_very_long_and_a_hostile_name_is_pinned_whole(renderer) -> None:
    notice = SchoolNotice("list_changed", "a@b.cn", "示例职业技术学院", "jwc@x.edu.cn", "ZJ2020-000125", WHEN,
                          changes=(ChangeLine("removed", LONG, "3301**********0011", ""),
                                   ChangeLine("changed", HOSTILE, "3301**********0022", "物流管理 → Web前端开发")))
    assert page(renderer, "notice_list_changed", notice).text == (
        "您好！\n\n"
        "示例职业技术学院的报名联系邮箱 jwc@x.edu.cn 于2020年11月5日 14:32发送了新的报名表（回执号：ZJ2020-000125）。"
        "按该表，贵邮箱此前登记的以下教师有变更：\n\n"
        f"- 删除：{LONG}（3301**********0011）\n"
        f"- 修改：{HOSTILE}（3301**********0022），物流管理 → Web前端开发\n\n"
        "如有疑问，请与贵单位报名联系人核实，或联系：报名工作组。\n\n"
        "（本邮件由报名系统自动发送。）\n"
        "培训报名工作组\n")
