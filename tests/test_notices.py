"""mailbot's own mails about a school's list and the staff list: golden text per kind, complete
HTML, masking; the digest lists open staff items and forgets closed ones.

Regenerate the golden files with ``MAILBOT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_notices.py``
and review the difference by reading it.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailbot.config import load_settings
from mailbot.office import staff_items
from mailbot.office.digest import build_digest
from mailbot.replies.model import (AttentionItem, ChangeLine, DecisionNotice, NomineeLine, ReplyContext,
                                  RosterNoticeContext, RosterProgramCount, SchoolNotice)
from mailbot.replies.render import ReplyRenderer, RenderedReply
from mailbot.rules import load_rules
from mailbot.state.store import State

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden_replies"
BJ = ZoneInfo("Asia/Shanghai")
WHEN = datetime(2020, 11, 5, 14, 32, tzinfo=BJ)

NOTICES = {
    "notice_other_sender": SchoolNotice(
        "other_sender", "jwc@example-college.edu.cn", "示例职业技术学院", "someone@qq.com", "ZJ2020-000124", WHEN,
        campaign_title="1+X证书制度试点师资培训", added=2, held=1, asked=3, kept=1,
        help_contact="省职教师资培训中心 0571-85290492"),
    "notice_list_changed": SchoolNotice(
        "list_changed", "someone@qq.com", "示例职业技术学院", "jwc@example-college.edu.cn", "ZJ2020-000125", WHEN,
        campaign_title="1+X证书制度试点师资培训", help_contact="省职教师资培训中心 0571-85290492",
        changes=(ChangeLine("removed", "赵磊", "3301**********0011", "物流管理职业技能等级证书"),
                 ChangeLine("changed", "李红", "3301**********0022",
                            "物流管理职业技能等级证书 → Web前端开发职业技能等级证书"))),
}
SUBJECTS = {"notice_other_sender": "【报名名单提醒】示例职业技术学院：收到其他邮箱以贵单位名义发送的报名表（回执 ZJ2020-000124）",
            "notice_list_changed": "【报名名单变更】示例职业技术学院：贵邮箱登记的教师有变更（回执 ZJ2020-000125）"}
ALERT = {"campaign": "1+X证书制度试点师资培训", "generated_at": WHEN, "open_total": 60, "more": 55, "items": (
    AttentionItem("other_sender", "示例职业技术学院：非本校报名联系邮箱发来报名表：新增2名", "ZJ2020-000124", "someone@qq.com",
                  WHEN, item=57),
    AttentionItem("too_many", "一封邮件新增750名教师，超过上限30名，全部待审核（未占名额）", "ZJ2020-000126",
                  "winner888@163.com", WHEN, item=58),
    AttentionItem("quarantined", "邮件已隔离：身份证号330106199001011234 deny-listed", "ZJ2020-000127", "x@evil.example",
                  WHEN),  # an item of the digest's own (not on the staff list) has no number
)}


def _line(name: str, id_masked: str, status: str = "seated", position: int | None = None,
          program: str = "物流管理职业技能等级证书") -> NomineeLine:
    return NomineeLine(row=None, name=name, program=program, host="浙江经济职业技术学院", format="5天线下集中+5天线上",
                       hours=80, fee_cap=3200, status=status, waiting_position=position, id_masked=id_masked)  # type: ignore[arg-type]


_DECIDED = dict(institution="示例职业技术学院", decided_at=WHEN, campaign_title="1+X证书制度试点师资培训",
                help_contact="省职教师资培训中心 0571-85290492")
DECISIONS = {  # one staff decision of each kind, as told to the school (template notice_decision)
    "admit": DecisionNotice("admit", "jwc@example-college.edu.cn", receipt="ZJ2020-000124",
                            nominees=(_line("孙悦", "3301**********0033", "waiting", 999),),
                            reason="已核实该校上报的培训需求数", **_DECIDED),
    "withdraw": DecisionNotice("withdraw", "jwc@example-college.edu.cn", receipt="ZJ2020-000098",
                               nominees=(_line("赵磊", "3301**********0011"),), reason="本人因病无法参训", **_DECIDED),
    "substitute": DecisionNotice("substitute", "jwc@example-college.edu.cn", receipt="ZJ2020-000098",
                                 nominees=(_line("郑十二", "3301**********0044"),),
                                 replaced=(_line("张三", "3301**********0055"),), reason="工作调动", **_DECIDED),
    "move": DecisionNotice("move", "jwc@example-college.edu.cn", receipt="ZJ2020-000098",
                           nominees=(_line("李四", "3301**********0066", "waiting", 1,
                                           program="Web前端开发职业技能等级证书"),),
                           from_program="物流管理职业技能等级证书", **_DECIDED),
    "contact": DecisionNotice("contact", "kyc@example-college.edu.cn", contact_address="kyc@example-college.edu.cn",
                              **_DECIDED),
    "contact_replaced": DecisionNotice("contact_replaced", "jwc@example-college.edu.cn",
                                       contact_address="kyc@example-college.edu.cn", **_DECIDED),
    "answer": DecisionNotice("answer", "jwc@example-college.edu.cn", receipt="ZJ2020-000130",
                             answer="候补教师的结果将在11月9日截止后统一通知。\n截止前可以更换报名教师。", **_DECIDED),
}


@pytest.fixture(scope="module")
def renderer() -> ReplyRenderer:
    return ReplyRenderer(ROOT / "templates")


def _check_golden(name: str, rendered: RenderedReply) -> None:
    text = f"Subject: {rendered.subject}\n\n{rendered.text}"
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("MAILBOT_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(NOTICES))
def test_each_notice_renders_its_golden_text_and_a_complete_html_page(renderer, name) -> None:
    notice = NOTICES[name]
    rendered = renderer.render_page(name, SUBJECTS[name], {f.name: getattr(notice, f.name) for f in fields(notice)})
    _check_golden(name, rendered)
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>") and rendered.html.rstrip().endswith("</html>")


@pytest.mark.parametrize("kind", sorted(DECISIONS))
def test_each_staff_decision_notice_renders_its_golden_text_and_a_complete_html_page(renderer, kind) -> None:
    notice = DECISIONS[kind]
    # the subject is decisions.py's own (pinned in test_decisions_e2e); here only the body is read
    rendered = renderer.render_page("notice_decision", "【报名工作组通知】",
                                    {f.name: getattr(notice, f.name) for f in fields(notice)})
    _check_golden(f"notice_decision_{kind}", rendered)
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>") and rendered.html.rstrip().endswith("</html>")


def test_the_staff_alert_renders_its_golden_text_masked(renderer) -> None:
    rendered = renderer.render_page("staff_alert", "【待人工处理】1+X证书制度试点师资培训：新增58项，共60项未处理", ALERT)
    _check_golden("staff_alert", rendered)
    assert "330106199001011234" not in rendered.text + rendered.html


ROSTER = RosterNoticeContext(
    "1+X证书制度试点师资培训", "浙江经济职业技术学院", "李主任",
    (RosterProgramCount("物流管理职业技能等级证书", 50, 3), RosterProgramCount("智能财税职业技能等级证书", 12, 0)),
    "浙江经济职业技术学院-参训名单-20201110.xlsx", WHEN, help_contact="省职教师资培训中心 0571-85290492",
    signature="1+X证书制度试点师资培训报名工作组")


def _roster_page(renderer: ReplyRenderer, notice: RosterNoticeContext) -> RenderedReply:
    return renderer.render_page("roster_to_host", "【参训名单】1+X证书制度试点师资培训：浙江经济职业技术学院（计划名额内62人，候补3人，2020年11月5日）",
                                {f.name: getattr(notice, f.name) for f in fields(notice)})


def test_the_roster_mail_to_a_host_renders_its_golden_text_in_the_staff_words(renderer) -> None:
    rendered = _roster_page(renderer, ROSTER)
    _check_golden("roster_to_host", rendered)
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>") and rendered.html.rstrip().endswith("</html>")


@pytest.mark.parametrize(("contact", "greeting"), [
    ("李主任", "李主任，您好！"),  # a title kept, 老师 not added after it
    ("王芳", "王芳老师，您好！"),
    ("张老师", "张老师，您好！"),
    ("", "浙江经济职业技术学院培训负责老师，您好！"),
    ("教务处", "浙江经济职业技术学院培训负责老师，您好！"),  # a unit, not a person
    ("http://evil.example", "浙江经济职业技术学院培训负责老师，您好！"),
])
def test_the_roster_mail_greets_the_hosts_contact_as_replies_greet_a_sender(renderer, contact, greeting) -> None:
    rendered = _roster_page(renderer, replace(ROSTER, contact=contact))
    assert (rendered.text.splitlines()[0], f"<p>{greeting}</p>" in rendered.html) == (greeting, True)


def test_an_acceptance_for_another_address_shows_held_teachers_and_the_notes(renderer) -> None:
    held = NomineeLine(row=5, name="孙悦", program="物流管理职业技能等级证书", host="浙江经济职业技术学院",
                       format="5天线下集中+5天线上", hours=80, fee_cap=3200, status="held", waiting_position=None,
                       id_masked="3301**********0033")
    ctx = ReplyContext(kind="acceptance", to_address="someone@qq.com", to_name="", original_subject="报名表",
                       original_message_id="<a@qq.com>", original_references=(), received_at=WHEN,
                       receipt="ZJ2020-000124", institution="示例职业技术学院", nominees=(held,),
                       notes=("表中另有1名教师已由贵单位登记，未作改动，也不在此列出。",), may_change_list=False)
    _check_golden("acceptance_other_sender_held", renderer.render(ctx))


def test_the_digest_lists_open_staff_items_and_forgets_closed_ones(tmp_path: Path) -> None:
    settings = load_settings(None, state_dir=tmp_path / "state")
    state = State(settings.state_dir)
    with state.transaction():
        first = staff_items.add(state, "over_demand", "超出该校上报的培训需求数，待审核（未占名额）：物流管理职业技能等级证书1名",
                                actor="daemon", rules_version="t", institution="示例职业技术学院", sender="jwc@x.edu.cn",
                                receipt="r-1")
        staff_items.add(state, "other_sender", "非本校报名联系邮箱发来报名表：新增1名", actor="daemon", rules_version="t",
                        institution="乙职业技术学院", sender="someone@qq.com", receipt="r-2")
    digest = build_digest(state, load_rules(), settings, now=datetime.now(timezone.utc))
    assert [(a.category, a.institution, a.summary, a.ref, a.sender) for a in digest.attention] == [
        ("over_demand", "示例职业技术学院", "超出该校上报的培训需求数，待审核（未占名额）：物流管理职业技能等级证书1名", "r-1",
         "jwc@x.edu.cn"),
        ("other_sender", "乙职业技术学院", "非本校报名联系邮箱发来报名表：新增1名", "r-2", "someone@qq.com")]
    with state.transaction():
        staff_items.close(state, first, actor="staff:王老师", rules_version="t", resolution="学校补报了需求数")
    digest = build_digest(state, load_rules(), settings, now=datetime.now(timezone.utc))
    assert [a.ref for a in digest.attention] == ["r-2"]
