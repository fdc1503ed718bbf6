"""Replies: golden text per kind, threading headers, masking, escaping, attachments, digest.

Regenerate the golden files with ``MAILBOT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_replies.py``
and read the diff by eye before committing.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from mailbot.errors import SendError
from mailbot.masking import mask_id, mask_phone
from mailbot.replies.render import (
    RenderedReply,
    ReplyRenderer,
    build_digest_message,
    build_message,
    cn_deadline,
    defang,
    reply_subject,
    thread_references,
)
from mailbot.replies.model import (
    REPLY_KINDS,
    AttentionItem,
    ChangeLine,
    DigestContext,
    FindingLine,
    NomineeLine,
    ProgramSeats,
    ReplyContext,
)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
GOLDEN = Path(__file__).resolve().parent / "golden_replies"
BJ = ZoneInfo("Asia/Shanghai")

ID_18 = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")
MOBILE_11 = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def synthetic_id(body17: str) -> str:
    """A synthetic identity number with a valid check digit."""
    return body17 + ric.calc_check_digit(body17)


ID_A = synthetic_id("33010619900101123")
ID_B = synthetic_id("33010219851212456")
ID_C = synthetic_id("33038219920715789")
MOBILE = "13812345678"

BIM = "建筑信息模型（BIM）职业技能等级证书"
CNC = "数控车铣加工职业技能等级证书"
FORMAT = "5天线下集中+5天线上"


def nominee(row, name, program, host, id_number, status="seated", position=None, note=""):
    return NomineeLine(
        row=row, name=name, program=program, host=host, format=FORMAT, hours=80, fee_cap=3200,
        status=status, waiting_position=position, id_masked=mask_id(id_number), note=note,
    )


NOMINEES = (
    nominee(4, "张晓明", BIM, "浙江工业大学", ID_A),
    nominee(5, "李红", CNC, "浙江机电职业技术学院", ID_B, status="waiting", position=3),
    nominee(6, "王强", BIM, "浙江工业大学", ID_C, status="held"),
)


def base(kind: str, **overrides) -> ReplyContext:
    fields = dict(
        kind=kind,
        to_address="jwc@example-college.edu.cn",
        to_name="陈老师",
        original_subject="回复: 附件3 高校参训教师信息汇总表（示例职业技术学院）",
        original_message_id="<orig-1@example-college.edu.cn>",
        original_references=("<first@example-college.edu.cn>",),
        received_at=datetime(2020, 11, 5, 14, 32, tzinfo=BJ),
        receipt="ZJ2020-000123",
        institution="示例职业技术学院",
        contact="陈静",
        campaign_title="1+X证书制度试点师资培训",
        deadline=datetime(2020, 11, 9, 23, 59, 59, tzinfo=BJ),
        intake_address="shengpei@zjut.edu.cn",
        platform_url="https://pxglpt.zjedu.gov.cn",
        platform_path="指令性培训→省级骨干培训",
        late_contact="省职教师资培训中心 0571-85290492",
    )
    fields.update(overrides)
    return ReplyContext(**fields)


FINDINGS = (
    FindingLine("汇总表.xlsx", 5, "身份证号", "id_checksum",
                "身份证号校验位不正确，请核对后重新填写"),
    FindingLine("汇总表.xlsx", 7, "所报证书培训班名称", "program_unknown",
                "“BIM建模”不是本次开设的培训项目，是否为“建筑信息模型（BIM）职业技能等级证书”？"),
    FindingLine("汇总表.xlsx", None, None, "no_stamp_unit", "表头“填报单位”未填写"),
)

CONTEXTS: dict[str, ReplyContext] = {
    "acceptance": base(
        "acceptance",
        nominees=NOMINEES,
        changes=(
            ChangeLine("added", "王强", mask_id(ID_C), "报名建筑信息模型（BIM）职业技能等级证书"),
            ChangeLine("removed", "赵磊", "3301**********0011", ""),
            ChangeLine("changed", "李红", mask_id(ID_B),
                       "培训项目由“Web前端开发”改为“数控车铣加工”"),
        ),
        stamp_required=True,
        unreadable_reasons=(
            FindingLine("照片.heic", None, None, "unsupported", "不支持该文件格式，已忽略"),
        ),
    ),
    "correction": base(
        "correction",
        nominees=NOMINEES[:1],
        findings=FINDINGS,
        correction_workbooks=(("汇总表-需修改.xlsx", b"PK\x03\x04fake"),),
    ),
    "late": base(
        "late",
        received_at=datetime(2020, 11, 10, 8, 15, tzinfo=BJ),
        nominees=NOMINEES[:1],
        earlier_receipts=("ZJ2020-000098", "ZJ2020-000107"),
    ),
    "redirect": base("redirect", institution="示例市职业中等专业学校"),
    "no_form": base("no_form", institution="", contact="", to_name=""),
    "scan_only": base("scan_only", scans_received=("汇总表盖章.pdf", "扫描件2.jpg"),
                      stamp_required=True),
    "unreadable": base(
        "unreadable",
        unreadable_reasons=(
            FindingLine("汇总表.xlsx", None, None, "encrypted",
                        "文件设置了打开密码，无法读取，请取消密码后重新发送"),
            FindingLine("名单.rar", None, None, "unsupported",
                        "不支持 RAR 压缩包，请直接添加 Excel 文件"),
        ),
    ),
    "not_annex3": base(
        "not_annex3",
        unreadable_reasons=(
            FindingLine("培训需求统计.xlsx", None, None, "no_header",
                        "未找到附件3的表头（姓名、身份证号、所报证书培训班名称等）"),
        ),
    ),
    "promotion": base("promotion", nominees=(
        nominee(5, "李红", CNC, "浙江机电职业技术学院", ID_B),
    )),
    "held": base("held", institution="", contact=""),
    "acknowledgement": base("acknowledgement", institution="", contact=""),
    "how_to_register": base("how_to_register", institution="", contact="",
                            programs=((BIM, "浙江工业大学"), (CNC, "浙江机电职业技术学院")),
                            correction_workbooks=(("附件3：高校参训教师信息汇总表.xlsx", b"PK\x03\x04fake"),)),
}


@pytest.fixture(scope="module")
def renderer() -> ReplyRenderer:
    return ReplyRenderer(TEMPLATES)


def golden_text(rendered: RenderedReply) -> str:
    return f"Subject: {rendered.subject}\n\n{rendered.text}"


def test_every_reply_kind_has_a_fixture_context():
    assert sorted(CONTEXTS) == sorted(REPLY_KINDS)


@pytest.mark.parametrize("kind", REPLY_KINDS)
def test_each_reply_kind_renders_its_golden_text(renderer, kind):
    rendered = renderer.render(CONTEXTS[kind])
    path = GOLDEN / f"{kind}.txt"
    if os.environ.get("MAILBOT_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(golden_text(rendered), encoding="utf-8")
    assert golden_text(rendered) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", REPLY_KINDS)
def test_each_reply_kind_renders_a_complete_html_page(renderer, kind):
    html = renderer.render(CONTEXTS[kind]).html
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")
    assert "ZJ2020-000123" in html
    assert re.search(r"<p>(陈老师，)?您好！</p>", html)


ID_D = synthetic_id("33010619880808222")
ALL_SEATED = replace(CONTEXTS["acceptance"], nominees=(NOMINEES[0], nominee(7, "周敏", BIM, "浙江工业大学", ID_D)),
                     changes=(), unreadable_reasons=(), stamp_required=False)
CASES: dict[str, ReplyContext] = {
    # every outcome a sender can get beyond the one context per kind above
    "acceptance_all_seated": ALL_SEATED,
    "acceptance_all_waiting": replace(ALL_SEATED, nominees=(
        nominee(4, "张晓明", BIM, "浙江工业大学", ID_A, status="waiting", position=1),
        nominee(7, "周敏", BIM, "浙江工业大学", ID_D, status="waiting", position=2))),
    "acceptance_with_question": replace(ALL_SEATED, to_name="教务处-赵老师", question_forwarded=True),
    "late_without_an_earlier_list": replace(CONTEXTS["late"], nominees=(), earlier_receipts=()),
    "correction_from_the_contact": replace(CONTEXTS["correction"], to_name="", contact="陈静",
                                           contact_is_sender=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_outcome_case_renders_its_golden_text(renderer, name):
    rendered = renderer.render(CASES[name])
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("MAILBOT_UPDATE_GOLDEN") == "1":
        path.write_text(golden_text(rendered), encoding="utf-8")
    assert golden_text(rendered) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(CONTEXTS) + sorted(CASES))
def test_each_reply_renders_its_golden_html_byte_for_byte(renderer, name):
    """The HTML part pinned whole, as the text is: a speed change to the templates or the
    renderer must leave every byte of it as it was (``<name>.html``)."""
    html = renderer.render(CONTEXTS.get(name) or CASES[name]).html
    path = GOLDEN / f"{name}.html"
    if os.environ.get("MAILBOT_UPDATE_GOLDEN") == "1":
        path.write_text(html, encoding="utf-8")
    assert html == path.read_text(encoding="utf-8")


def test_a_form_mail_that_also_asks_is_told_its_question_went_to_staff(renderer):
    rendered = renderer.render(CASES["acceptance_with_question"])
    line = "您在来信中提出的问题已转工作人员，工作人员将另行答复。"
    assert line in rendered.text.splitlines()
    assert f"<p><strong>您在来信中提出的问题已转工作人员</strong>，工作人员将另行答复。</p>" in rendered.html
    assert line not in renderer.render(ALL_SEATED).text


def test_the_html_nominee_table_fits_a_phone_with_format_and_fee_once_per_program(renderer):
    html = renderer.render(CONTEXTS["acceptance"]).html
    assert html.count("<table") == 2  # one per program
    assert re.findall(r"<th[^>]*>([^<]*)</th>", html) == ["序号", "姓名", "报名状态"] * 2
    assert html.count("培训费：不超过3200元") == 2 and html.count("共80学时") == 2


def test_acceptance_names_program_host_format_fee_status_and_receipt(renderer):
    text = renderer.render(CONTEXTS["acceptance"]).text
    lines = text.splitlines()
    assert lines[lines.index("【建筑信息模型（BIM）职业技能等级证书】承办院校：浙江工业大学"):][:12] == [
        "【建筑信息模型（BIM）职业技能等级证书】承办院校：浙江工业大学",
        "培训形式：5天线下集中+5天线上（共80学时）；培训费：不超过3200元",
        "",
        f"1. 张晓明（身份证号 {mask_id(ID_A)}，表格第4行）",
        "   报名状态：报名成功（在计划名额内）",
        "",
        f"2. 王强（身份证号 {mask_id(ID_C)}，表格第6行）",
        "   报名状态：待工作人员审核",
        "",
        "【数控车铣加工职业技能等级证书】承办院校：浙江机电职业技术学院",
        "培训形式：5天线下集中+5天线上（共80学时）；培训费：不超过3200元",
        "",
    ]
    assert f"1. 李红（身份证号 {mask_id(ID_B)}，表格第5行）" in lines
    assert "   报名状态：暂列候补第3位" in lines


def test_correction_places_each_finding_and_mentions_the_attachment(renderer):
    text = renderer.render(CONTEXTS["correction"]).text
    assert "1. 「汇总表.xlsx」第5行「身份证号」列：身份证号校验位不正确，请核对后重新填写" in text
    assert "3. 「汇总表.xlsx」：表头“填报单位”未填写" in text
    assert "其余填写无误的1名教师已先行登记" in text
    assert "附件“汇总表-需修改.xlsx”" in text


def test_a_correction_too_close_to_the_deadline_does_not_ask_for_a_resend_by_then(renderer):
    ctx = replace(CONTEXTS["correction"], received_at=datetime(2020, 11, 9, 23, 20, tzinfo=BJ), resend_closed=True)
    rendered = renderer.render(ctx)
    path = GOLDEN / "correction_near_deadline.txt"
    if os.environ.get("MAILBOT_UPDATE_GOLDEN") == "1":
        path.write_text(golden_text(rendered), encoding="utf-8")
    assert golden_text(rendered) == path.read_text(encoding="utf-8")
    closing = ("需要修改的行本次未登记，不占名额。本邮件收到时距报名截止（2020年11月9日24时）已不足1小时，"
               "来不及修改后重新发送；如需为这些教师报名，请联系省职教师资培训中心 0571-85290492。")
    assert closing in rendered.text.splitlines()
    assert "前将完整的汇总表" not in rendered.text and "前将完整的汇总表" not in rendered.html


def test_an_acceptance_too_close_to_the_deadline_points_to_the_office_for_changes(renderer):
    ctx = replace(CONTEXTS["acceptance"], received_at=datetime(2020, 11, 9, 23, 20, tzinfo=BJ), resend_closed=True)
    lines = [line for line in renderer.render(ctx).text.splitlines() if "如需修改" in line]
    assert lines == ["本邮件收到时距报名截止（2020年11月9日24时）已不足1小时，如需修改，请联系省职教师资培训中心 0571-85290492。"
                     "根据通知要求，学员报名完成后无特殊原因不得更换。"]


@pytest.mark.parametrize(
    ("deadline", "words"),
    [(datetime(2020, 11, 9, 23, 59, 59, tzinfo=BJ), "2020年11月9日24时"),
     (datetime(2020, 11, 9, 17, 0, tzinfo=BJ), "2020年11月9日17时"),
     (datetime(2020, 11, 10, 0, 0, tzinfo=BJ), "2020年11月9日24时"),
     (datetime(2020, 11, 9, 17, 30, tzinfo=BJ), "2020年11月9日 17:30"),
     (datetime(2020, 11, 9, 15, 59, 59, tzinfo=timezone.utc), "2020年11月9日24时")],
)
def test_a_deadline_is_written_as_the_notice_would(deadline, words):
    assert cn_deadline(deadline) == words


def test_late_reply_gives_both_times_and_the_contact(renderer):
    text = renderer.render(CONTEXTS["late"]).text
    assert "我们于2020年11月10日 08:15收到" in text
    assert "已于2020年11月9日24时截止" in text
    assert "请联系：省职教师资培训中心 0571-85290492" in text


def test_a_late_reply_without_an_earlier_list_says_there_is_none(renderer):
    text = renderer.render(replace(CONTEXTS["late"], nominees=(), earlier_receipts=())).text
    assert "系统中没有贵单位在截止前登记的名单。" in text.splitlines()
    assert "回执号：ZJ2020-000098" not in text


def test_times_are_shown_in_beijing_time_whatever_the_input_zone(renderer):
    utc = datetime(2020, 11, 5, 6, 32, tzinfo=ZoneInfo("UTC"))
    text = renderer.render(replace(CONTEXTS["no_form"], received_at=utc)).text
    assert "2020年11月5日 14:32" in text


def test_a_naive_received_at_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        base("no_form", received_at=datetime(2020, 11, 5, 14, 32))


# --- subject and threading ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("acceptance", "Re: 报名表【报名成功1人，暂列候补1人，待审核1人｜回执 ZJ2020-000123】"),
        ("correction", "Re: 报名表【需修改3处｜回执 ZJ2020-000123】"),
        ("late", "Re: 报名表【截止后收到，未登记｜回执 ZJ2020-000123】"),
        ("redirect", "Re: 报名表【中职学校请通过省平台报名｜回执 ZJ2020-000123】"),
        ("no_form", "Re: 报名表【未收到附件3汇总表｜回执 ZJ2020-000123】"),
        ("scan_only", "Re: 报名表【仅收到扫描件，请补发电子表格｜回执 ZJ2020-000123】"),
        ("unreadable", "Re: 报名表【附件无法读取｜回执 ZJ2020-000123】"),
        ("not_annex3", "Re: 报名表【附件不是附件3汇总表｜回执 ZJ2020-000123】"),
        ("promotion", "Re: 报名表【候补已递补为计划名额内｜回执 ZJ2020-000123】"),
    ],
)
def test_the_subject_is_our_own_words_with_the_result_and_the_receipt(kind, expected):
    assert reply_subject(CONTEXTS[kind]) == expected


def test_an_acceptance_with_everyone_seated_says_so():
    ctx = replace(CONTEXTS["acceptance"], nominees=NOMINEES[:1])
    assert reply_subject(ctx) == "Re: 报名表【报名成功｜回执 ZJ2020-000123】"


def test_an_acceptance_with_everyone_waiting_says_so_in_the_notices_words():
    ctx = replace(CONTEXTS["acceptance"], nominees=NOMINEES[1:2])
    assert reply_subject(ctx) == "Re: 报名表【暂列候补1人｜回执 ZJ2020-000123】"


def test_an_acceptance_of_an_empty_form_does_not_say_anyone_registered():
    ctx = replace(CONTEXTS["acceptance"], nominees=())
    assert reply_subject(ctx) == "Re: 报名表【已收到，表中无参训教师｜回执 ZJ2020-000123】"


def test_the_correction_subject_counts_the_findings_not_listed_too():
    ctx = replace(CONTEXTS["correction"], findings_omitted=120)
    assert reply_subject(ctx) == "Re: 报名表【需修改123处｜回执 ZJ2020-000123】"


def test_the_senders_subject_never_reaches_the_reply(renderer):
    ctx = replace(CONTEXTS["no_form"], original_subject="Re: 中奖通知：请登录 http://evil.example/prize 领取")
    rendered = renderer.render(ctx)
    assert rendered.subject == "Re: 报名表【未收到附件3汇总表｜回执 ZJ2020-000123】"
    assert "中奖" not in rendered.text + rendered.html


@pytest.mark.parametrize(
    "value, expected",
    [
        ("http://evil.example/x?a=b", "hxxp[:]//evil[.]example/x?a=b"),
        ("请登录 HTTPS://user@evil.example:8443/p 领取", "请登录 hxxps[:]//user@evil[.]example:8443/p 领取"),
        ('=HYPERLINK("http://evil")', '=HYPERLINK("hxxp[:]//evil")'),
        ("见 www.evil.example 和 evil.com", "见 www[.]evil[.]example 和 evil[.]com"),
        ("ftp://1.2.3.4/a", "fxp[:]//1[.]2[.]3[.]4/a"),
        ("李四http://evil.example/name", "李四hxxp[:]//evil[.]example/name"),
        ("wang@zjxx.edu.cn", "wang@zjxx.edu.cn"),
        ("汇总表.xlsx、附件3.zip、v1.2.3、3.14", "汇总表.xlsx、附件3.zip、v1.2.3、3.14"),
        ("张三", "张三"),
    ],
)
def test_defang_makes_links_inert_and_keeps_addresses_and_file_names(value, expected):
    assert defang(value) == expected
    assert defang(expected) == expected


def test_references_chain_ends_with_the_original_and_drops_junk():
    huge = "<" + "y" * 1000 + "@x>"
    refs = thread_references(("<a@x>", "b@x", "<a@x>", "no good <>", huge, "<非@x>"), "<c@x>")
    assert refs == ["<a@x>", "<b@x>", "<c@x>"]


def test_references_chain_is_capped_keeping_first_and_last():
    many = tuple(f"<m{i}@x>" for i in range(40))
    refs = thread_references(many, "<last@x>")
    assert len(refs) == 20
    assert refs[0] == "<m0@x>" and refs[-1] == "<last@x>" and refs[-2] == "<m39@x>"


def parse(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def build(ctx: ReplyContext, renderer: ReplyRenderer, **kw) -> bytes:
    return build_message(
        ctx, renderer.render(ctx), from_address="shengpei@zjut.edu.cn",
        from_name="1+X师资培训报名", message_id_domain="mailbot.zjut.edu.cn", **kw,
    )


def test_reply_is_threaded_under_the_original_and_marked_auto_replied(renderer):
    raw = build(CONTEXTS["acceptance"], renderer)
    msg = parse(raw)
    assert msg["In-Reply-To"] == "<orig-1@example-college.edu.cn>"
    assert msg["References"].split() == [
        "<first@example-college.edu.cn>", "<orig-1@example-college.edu.cn>"]
    assert msg["Subject"] == "Re: 报名表【报名成功1人，暂列候补1人，待审核1人｜回执 ZJ2020-000123】"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Precedence"] is None
    assert msg["To"].addresses[0].addr_spec == "jwc@example-college.edu.cn"
    assert len(msg["To"].addresses) == 1 and msg["Cc"] is None
    assert msg["From"].addresses[0].addr_spec == "shengpei@zjut.edu.cn"
    assert re.fullmatch(r"<[^<>@\s]+@mailbot\.zjut\.edu\.cn>", msg["Message-ID"])
    assert msg["Date"].datetime.utcoffset().total_seconds() == 8 * 3600
    assert b"\r\n" in raw and all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_two_builds_get_different_message_ids(renderer):
    first = parse(build(CONTEXTS["no_form"], renderer))["Message-ID"]
    second = parse(build(CONTEXTS["no_form"], renderer))["Message-ID"]
    assert first != second


def test_a_given_message_id_and_date_are_used(renderer):
    when = datetime(2020, 11, 5, 14, 33, tzinfo=BJ)
    msg = parse(build(CONTEXTS["no_form"], renderer, message_id="<fixed@mailbot>", date=when))
    assert msg["Message-ID"] == "<fixed@mailbot>"
    assert msg["Date"].datetime == when


def test_a_long_reference_chain_survives_folding_unencoded(renderer):
    long_ids = tuple(f"<{'x' * 60}.{i}@very-long-host-name.example-college.edu.cn>" for i in range(5))
    ctx = replace(CONTEXTS["no_form"], original_references=long_ids)
    raw = build(ctx, renderer)
    assert b"=?" not in raw.split(b"\r\n\r\n")[0].split(b"References:")[1].split(b"\r\nAuto")[0]
    assert parse(raw)["References"].split() == [*long_ids, "<orig-1@example-college.edu.cn>"]


def test_a_message_without_message_id_gets_no_in_reply_to(renderer):
    ctx = replace(CONTEXTS["no_form"], original_message_id="", original_references=())
    msg = parse(build(ctx, renderer))
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_text_and_html_are_alternatives_and_workbooks_are_attached(renderer):
    msg = parse(build(CONTEXTS["correction"], renderer))
    assert msg.get_content_type() == "multipart/mixed"
    alternative, attachment = msg.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.get_payload()] == ["text/plain", "text/html"]
    assert attachment.get_filename() == "汇总表-需修改.xlsx"
    assert attachment.get_content() == b"PK\x03\x04fake"
    assert attachment.get_param("name") == "汇总表-需修改.xlsx"
    raw_part = attachment.as_bytes()
    assert raw_part.isascii() and re.search(rb"filename\*(0\*)?=utf-8''%E6%B1%87", raw_part)
    body = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body == renderer.render(CONTEXTS["correction"]).text


def test_a_reply_without_workbooks_is_plain_alternative(renderer):
    msg = parse(build(CONTEXTS["acceptance"], renderer))
    assert msg.get_content_type() == "multipart/alternative"


def test_header_injection_through_names_and_subject_is_flattened(renderer):
    ctx = replace(CONTEXTS["no_form"], to_name="陈老师\r\nBcc: evil@example.com",
                  original_subject="报名\r\nBcc: evil@example.com")
    msg = parse(build(ctx, renderer))
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Re: 报名表【未收到附件3汇总表｜回执 ZJ2020-000123】"
    assert msg["To"].addresses[0].display_name == "陈老师 Bcc: evil@example.com"
    assert [a.addr_spec for a in msg["To"].addresses] == ["jwc@example-college.edu.cn"]


def test_a_very_long_display_name_is_cut_in_the_to_header_and_not_used_in_the_greeting(renderer):
    ctx = replace(CONTEXTS["no_form"], to_name="赵老师" * 100)
    msg = parse(build(ctx, renderer))
    assert msg["To"].addresses[0].display_name == ("赵老师" * 22)[:64]
    assert renderer.render(ctx).text.splitlines()[0] == "您好！"


def every_text_of(raw: bytes) -> str:
    """Every header (decoded) and every decoded part and file name of a message, as one text."""
    msg = parse(raw)
    texts = []
    for part in msg.walk():
        texts += [f"{k}: {v}" for k, v in part.items()]
        if part.get_filename():
            texts.append(part.get_filename())
        if part.get_content_maintype() == "text":
            texts.append(part.get_content())
        elif not part.is_multipart():
            texts.append(part.get_payload(decode=True).decode("latin-1"))
    return "\n".join(texts)


def test_no_url_a_sender_supplied_reaches_any_part_of_the_reply(renderer):
    url = "http://evil.example/login"
    finding = FindingLine(f"{url}.xlsx", 5, "姓名", "name_invalid", f"姓名“张三 {url}”含有非中文字符")
    ctx = replace(
        CONTEXTS["correction"],
        to_name="陈老师 www.evil.com", original_subject=f"中奖通知 {url}", institution=f"示例学院 {url}",
        contact=f"陈静 {url}", nominees=(replace(NOMINEES[0], name=f"张三 {url}", note=url),),
        findings=(finding,), unreadable_reasons=(finding,), scans_received=(f"{url}.pdf",),
        changes=(ChangeLine("added", f"李四 {url}", mask_id(ID_B), url),),
        correction_workbooks=(("evil.com-需修改.xlsx", b"PK\x03\x04fake"),),
    )
    everything = every_text_of(build(ctx, renderer))
    assert "evil.example" not in everything and "evil.com" not in everything and "http://" not in everything
    assert "hxxp[:]//evil[.]example/login" in everything  # said, but not as a link


def test_the_platform_url_of_a_redirect_is_ours_and_stays_a_link(renderer):
    assert "https://pxglpt.zjedu.gov.cn" in renderer.render(CONTEXTS["redirect"]).text


def test_an_unwritable_address_is_a_permanent_send_error(renderer):
    ctx = replace(CONTEXTS["no_form"], to_address="not an address <<")
    with pytest.raises(SendError) as info:
        build(ctx, renderer)
    assert info.value.permanent


# --- masking and escaping -----------------------------------------------------------------


def test_raw_identity_numbers_and_mobiles_never_reach_the_reply(renderer):
    leaky = replace(
        CONTEXTS["acceptance"],
        original_subject=f"报名 {ID_C} {MOBILE}",
        institution=f"示例学院 {MOBILE}",
        nominees=(replace(NOMINEES[2], note=f"与身份证号 {ID_C} 重复，联系电话 {MOBILE}"),),
        changes=(ChangeLine("added", "王强", ID_A, f"手机 {MOBILE}"),),
    )
    rendered = renderer.render(leaky)
    raw = build(leaky, renderer).decode("ascii")
    for output in (rendered.subject, rendered.text, rendered.html):
        assert not ID_18.search(output) and not MOBILE_11.search(output)
    for output in (rendered.text, rendered.html):
        assert mask_id(ID_C) in output and mask_phone(MOBILE) in output
    assert ID_C not in raw and MOBILE not in raw


def test_a_hostile_institution_name_is_escaped_in_html_only(renderer):
    ctx = replace(CONTEXTS["acceptance"], institution='<script>alert("x")</script>学院')
    rendered = renderer.render(ctx)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;学院" in rendered.html
    assert '<script>alert("x")</script>学院' in rendered.text


def test_a_missing_template_variable_is_an_error(tmp_path):
    (tmp_path / "reply_no_form.txt.j2").write_text("{{ nosuchthing }}", encoding="utf-8")
    (tmp_path / "reply_no_form.html.j2").write_text("", encoding="utf-8")
    with pytest.raises(Exception, match="nosuchthing"):
        ReplyRenderer(tmp_path).render(CONTEXTS["no_form"])


# --- the staff digest ---------------------------------------------------------------------

DIGEST = DigestContext(
    campaign="1+X证书制度试点师资培训",
    generated_at=datetime(2020, 11, 6, 8, 0, tzinfo=BJ),
    period_start=datetime(2020, 11, 5, 8, 0, tzinfo=BJ),
    period_end=datetime(2020, 11, 6, 8, 0, tzinfo=BJ),
    deadline=datetime(2020, 11, 9, 23, 59, 59, tzinfo=BJ),
    outcome_counts=(("accepted", 12), ("correction", 3), ("failed", 1), ("something_new", 1)),
    programs=(
        ProgramSeats(BIM, "浙江工业大学", 50, 50, 4),
        ProgramSeats(CNC, "浙江机电职业技术学院", 17, 50, 0),
    ),
    attention=(
        AttentionItem("failed", "附件解析超时", ref="ZJ2020-000130", sender="a@b.edu.cn"),
        AttentionItem("reply_unknown", "回复发送状态未知", ref="ZJ2020-000088", sender="c@d.edu.cn",
                      since=datetime(2020, 11, 4, 5, 0, tzinfo=BJ), institution="浙江某某职业技术学院"),
        AttentionItem("conflict", f"身份证号 {ID_A} 被两所学校报名"),
        AttentionItem("domain_mismatch", "<b>发件域名</b> gmail.com 与单位不符"),
    ),
)


def test_the_digest_counts_seats_and_lists_masked_attention_items(renderer):
    rendered = renderer.render_digest(DIGEST)
    assert rendered.subject == "【报名日报】1+X证书制度试点师资培训 2020年11月6日：收到17封，需关注4项"
    lines = rendered.text.splitlines()
    outcomes = lines.index("邮件处理结果（共17封）：")
    assert lines[outcomes + 1:outcomes + 5] == ["- 报名成功：12封", "- 需修改：3封", "- 处理失败：1封", "- 其他：1封"]
    seats = lines.index(f"（1）{BIM}（浙江工业大学）")
    assert lines[seats:seats + 6] == [
        f"（1）{BIM}（浙江工业大学）", "   计划名额内50/50  ■■■■■■■■■■■■■■■■■■■■ 100%【已满】", "   候补4人，待审核0人",
        f"（2）{CNC}（浙江机电职业技术学院）", "   计划名额内17/50  ■■■■■■■□□□□□□□□□□□□□ 34%", "   候补0人，待审核0人"]
    assert "合计：计划名额内67/100，候补4人，待审核0人" in lines
    item = lines.index("2. 【回复投递情况不明】回复发送状态未知")
    assert lines[item + 1] == ("   学校：浙江某某职业技术学院；发件人：c@d.edu.cn；回执：ZJ2020-000088；"
                               "已等待2天3小时（自2020年11月4日 05:00起）")
    assert mask_id(ID_A) in rendered.text and ID_A not in rendered.text + rendered.html
    assert "&lt;b&gt;发件域名&lt;/b&gt;" in rendered.html


def test_an_empty_digest_says_so(renderer):
    empty = DigestContext("示例", DIGEST.generated_at, DIGEST.period_start, DIGEST.period_end)
    text = renderer.render_digest(empty).text
    assert "本时段没有收到邮件" in text and "无。" in text


def test_the_digest_message_is_auto_generated_to_staff(renderer):
    raw = build_digest_message(
        renderer.render_digest(DIGEST), to_addresses=["staff1@zjut.edu.cn", "staff2@zjut.edu.cn"],
        from_address="shengpei@zjut.edu.cn", from_name="mailbot", message_id_domain="mailbot.x",
    )
    msg = parse(raw)
    assert [a.addr_spec for a in msg["To"].addresses] == ["staff1@zjut.edu.cn", "staff2@zjut.edu.cn"]
    assert msg["Auto-Submitted"] == "auto-generated"


_HEADER_NAMES = st.sampled_from(["Content-Type", "MIME-Version", "Content-Transfer-Encoding", "To", "X-Mailbot-Loop",
                                 "Content-Disposition", "Subject", "X"])
_HEADER_VALUES = st.one_of(
    st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30), max_size=6)
    .map(" ".join),
    st.text(st.sampled_from(list("ab =?\t\r\n;\"\\") + ["中", "\udcff"]), max_size=90),
    st.text(max_size=100))


@settings(max_examples=500, deadline=None)
@given(_HEADER_NAMES, _HEADER_VALUES)
def test_headers_are_written_exactly_as_compat32_folds_them(name: str, value: str) -> None:
    from mailbot.replies.render import _WIRE

    def written(pol):
        try:
            return pol.fold_binary(name, value)
        except Exception as exc:  # noqa: BLE001 - the errors are compared too
            return f"{type(exc).__name__}: {exc}"

    assert written(_WIRE) == written(policy.compat32.clone(linesep="\r\n"))


_BODIES = st.text(st.sampled_from(list("ab \r\n\t=-") + ["中", "文", "\u3000", "😀"]), max_size=300)


@settings(max_examples=300, deadline=None)
@given(_BODIES, _BODIES, st.lists(st.tuples(st.text(min_size=1, max_size=12), st.binary(max_size=200)), max_size=2))
def test_a_message_is_written_byte_for_byte_as_the_email_packages_own_classes_write_it(text, html, attachments):
    """The reply's text parts (``_text_part``, base64 by ``_Utf8``) and line writer
    (``_Generator``) give the bytes ``MIMEText(..., "utf-8")`` and ``BytesGenerator`` give."""
    from email.charset import Charset
    from email.generator import BytesGenerator
    from email.mime.text import MIMEText

    from mailbot.replies import render

    def stock_text_part(body: str, subtype: str) -> MIMEText:
        part = MIMEText(body, subtype, "utf-8")
        del part["MIME-Version"]
        return part

    headers = [("From", "a@x.cn"), ("Subject", render._subject("Re: 报名表【报名成功】"))]

    def written() -> bytes:
        return render._assemble(headers, RenderedReply("s", text, html), tuple(attachments))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "_boundary", lambda: "===============0000000000000000042==")
        ours = written()
        mp.setattr(render, "_UTF8", Charset("utf-8"))
        mp.setattr(render, "_Generator", BytesGenerator)
        mp.setattr(render, "_text_part", stock_text_part)
        assert ours == written()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=200)))
def test_a_base64_body_is_the_one_the_email_packages_utf8_charset_writes(data):
    from email.charset import Charset

    from mailbot.replies.render import _UTF8

    assert _UTF8.body_encode(data) == Charset("utf-8").body_encode(data)


def test_a_reply_is_defanged_once_for_its_text_and_its_message(renderer, monkeypatch):
    from mailbot.replies import render

    calls: list[str] = []
    real = render.sender_safe
    monkeypatch.setattr(render, "sender_safe", lambda ctx: calls.append(ctx.to_address) or real(ctx))
    link = "http://evil.example/x"
    ctx = replace(CONTEXTS["correction"], to_name=f"王老师 {link}",
                  correction_workbooks=((f"{link}.xlsx", b"PK"),))
    msg = parse(build(ctx, renderer))
    assert calls == [ctx.to_address]  # by render; building the message defangs only what it writes
    assert msg["To"].addresses[0].display_name == "王老师 hxxp[:]//evil[.]example/x"
    assert [p.get_filename() for p in msg.iter_attachments()] == ["hxxp[:]//evil[.]example/x.xlsx"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["13812345678", "330106199001011230", "1", "8", "X", " ", "中", "-",
                                  "１３８１２３４５６７８", "٣"]), max_size=12).map("".join))
def test_the_renderers_quick_masking_masks_exactly_as_mask_text_does(text):
    """``_mask`` skips text without a run of 11 digits (one regex search): what it returns is
    always what ``mask_text`` returns (fullwidth and other Unicode digits included)."""
    from mailbot.masking import mask_text
    from mailbot.replies.render import _mask

    assert _mask(text) == mask_text(text)
