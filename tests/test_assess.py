"""What the daemon does to assess a mail, and what it leaves to the reader worker.

``parse_head``: the gate reads a mail's header without the stdlib parsing its body (the walk
parses the body in a reader worker anyway), and gets exactly what ``parse_message`` gives it:
every decoded header, the content type, the bounce check's answer and the sender check's.
The worker sends back of each form's reading only the cells the record reads."""

from __future__ import annotations

import dataclasses
import email.parser
import io
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import local_settings, open_intake
from mail_factory import make_forward, make_mail, make_zip
from mailbot.limits import Limits
from mailbot.mail import message as message_module
from mailbot.mail.gate import auto_reply_reason, sender_trust
from mailbot.mail.message import ParsedMessage, parse_head, parse_message
from mailbot.mail.source import FetchedMessage
from mailbot.mail.walk import find_attachments

MESSAGES = Path(__file__).parent / "messages"
FORM = make_annex3_xlsx([nominee(1), nominee(2, phone="1381234")])
TIGHT = Limits(max_header_count=6, max_mime_parts=3, max_mime_depth=2, max_message_bytes=30_000)


def _dsn_inside(wrapper: str = "multipart/mixed") -> bytes:
    """A delivery report one level down, as some MTAs wrap it."""
    return (f"Return-Path: <someone@example.edu.cn>\r\nFrom: someone@example.edu.cn\r\n"
            f"Subject: 报名表\r\nMessage-ID: <d1@example.edu.cn>\r\n"
            f'Content-Type: {wrapper}; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
            "--b1\r\nContent-Type: Message/Delivery-Status\r\n\r\nReporting-MTA: dns; mx\r\n"
            "--b1--\r\n").encode()


def _edge_cases() -> list[tuple[str, bytes]]:
    deep = b"Content-Type: message/rfc822\r\n\r\n" * 3000 + b"Subject: inner\r\n\r\nbody\r\n"
    return [
        ("a form mail", make_mail(attachments=[("报名表.xlsx", FORM)])),
        ("a forward of a zip", make_forward(make_mail(client="163", attachments=[
            ("a.zip", make_zip([("附件3.xlsx", FORM)]))]), sender="fwd@x.edu.cn")),
        ("a delivery report inside", _dsn_inside()),
        ("a delivery report two levels down", _dsn_inside().replace(
            b'boundary="b1"\r\n\r\n', b'boundary="b0"\r\n\r\n--b0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n')
         + b"--b0--\r\n"),
        ("a report top level", _dsn_inside("multipart/report")),
        ("an mbox From line", b"From someone Mon Nov  2 10:00:00 2020\r\n" + make_mail()),
        ("lone CR line ends", make_mail().replace(b"\r\n", b"\r")),
        ("no blank line", b"From: a@b.edu.cn\r\nSubject: x\r\nReturn-Path: <a@b.edu.cn>"),
        ("a body line inside the header", b"From: a@b.edu.cn\r\nnot a header\r\nSubject: x\r\n\r\nbody"),
        ("header flood", b"".join(b"X-H%d: v\r\n" % i for i in range(20)) + make_mail()),
        ("part flood", make_mail(attachments=[(f"{i}.txt", b"x") for i in range(6)])),
        ("too large", make_mail(attachments=[("big.xlsx", b"x" * 40_000)])),
        ("deep message/rfc822 nesting", b"From: a@b.edu.cn\r\nReturn-Path: <a@b.edu.cn>\r\n" + deep),
        ("8-bit and encoded words", "From: =?gb2312?B?ztLKx?= <t@s.edu.cn>\r\nSubject: 报名\xff表\r\n\r\nx"
         .encode("utf-8", "surrogateescape")),
    ] + [(p.name, p.read_bytes()) for p in sorted(MESSAGES.glob("*.eml"))]


def _seen_by_gate(parsed: ParsedMessage) -> tuple:
    """Everything the gate and the record read of a parse (its defects are the walk's)."""
    return (dataclasses.replace(parsed, defects=()), list(parsed.message.raw_items()),
            auto_reply_reason(parsed, own_addresses={"shengpei@zjut.edu.cn"}, own_message_id_domain="zjut.edu.cn"),
            sender_trust(parsed, trusted_authserv_ids=("mx.zjut.edu.cn",)))


@pytest.mark.parametrize("limits", [Limits(), TIGHT], ids=["default limits", "tight limits"])
@pytest.mark.parametrize("label,raw", _edge_cases(), ids=[label for label, _ in _edge_cases()])
def test_the_head_gives_the_gate_and_the_record_what_the_whole_parse_gives(label, raw, limits) -> None:
    assert _seen_by_gate(parse_head(raw, limits)) == _seen_by_gate(parse_message(raw, limits))


def test_a_delivery_report_one_level_down_is_still_caught_as_a_bounce() -> None:
    parsed = parse_head(_dsn_inside())
    assert (parsed.body_parsed, auto_reply_reason(parsed)) == (True, "bounce")


def test_a_form_mail_is_not_parsed_below_its_header(monkeypatch) -> None:
    monkeypatch.setattr(message_module, "BytesParser", None)  # any whole parse would raise here
    parsed = parse_head(make_mail(attachments=[("报名表.xlsx", FORM)]))
    assert (parsed.body_parsed, parsed.from_addr, parsed.content_type, parsed.message.get_payload()) == (
        False, "wang@zjxx.edu.cn", "multipart/mixed", "")


def test_the_head_keeps_the_header_bounds() -> None:
    flood = b"".join(b"X-H%d: v\r\n" % i for i in range(20)) + make_mail()
    big = make_mail(attachments=[("big.xlsx", b"x" * 40_000)])
    assert (parse_head(flood, TIGHT).defects, parse_head(big, TIGHT).defects) == (
        ("HeaderFlood",), ("MessageTooLarge",))


def test_the_walk_refuses_a_head_without_a_body() -> None:
    with pytest.raises(ValueError, match="parse_head"):
        find_attachments(parse_head(make_mail()))


SEEDS = (make_mail(attachments=[("报名表.xlsx", FORM)]), _dsn_inside())


@st.composite
def mutated_mail(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(("flip", "cut", "newline", "report", "dup")))
        at = draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[at] = draw(st.sampled_from(b"\r\n-:;\" \tabAZ\xff"))
        elif op == "cut":
            raw = raw[:at]
        elif op == "newline":
            raw[at:at] = draw(st.sampled_from((b"\r\n", b"\n", b"\r", b"\r\n\r\n")))
        elif op == "report":
            raw[at:at] = draw(st.sampled_from((b"\r\nContent-Type: multipart/report\r\n", b"--b1\r\n",
                                               b"Content-Type: message/rfc822\r\n\r\n")))
        elif op == "dup" and raw:
            raw[at:at] = raw[at: at + draw(st.integers(1, 400))]
    return bytes(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=mutated_mail())
def test_on_mutated_mail_the_head_and_the_whole_parse_agree(raw) -> None:
    assert _seen_by_gate(parse_head(raw, TIGHT)) == _seen_by_gate(parse_message(raw, TIGHT))


# --------------------------------------------------------------------------- the daemon's assess

@pytest.fixture(scope="module")
def local_intake(tmp_path_factory):
    root = tmp_path_factory.mktemp("head")
    parts = open_intake(local_settings(root), io.StringIO())
    yield parts
    parts.close()


def test_the_daemon_parses_no_mail_body_itself_before_or_after_the_gate(local_intake, monkeypatch) -> None:
    whole_parses = []
    real = email.parser.BytesParser

    class CountingParser(real):  # type: ignore[misc,valid-type]
        def parsebytes(self, text, headersonly=False):  # noqa: ANN001, ANN202
            whole_parses.append(headersonly)
            return super().parsebytes(text, headersonly)

    monkeypatch.setattr(message_module, "BytesParser", CountingParser)
    raw = make_mail(sender="reg1@school1.edu.cn", attachments=[("报名表.xlsx", FORM)], extra_headers={
        "Authentication-Results": "mx.zjut.edu.cn; spf=pass smtp.mailfrom=school1.edu.cn"})
    fetched = FetchedMessage(source=local_intake.source.name, uidvalidity=0, uid=1, key="head",
                             arrived_at=datetime(2020, 11, 2, 2, 0, tzinfo=timezone.utc), raw=raw)
    assessment = local_intake.intake.assess(fetched)
    # the walk (in a reader worker, another process) found the form and judged it
    assert (assessment.outcome, [a.filename for a, _ in assessment.verdicts], assessment.auth_summary,
            whole_parses) == ("correction", ["报名表.xlsx"], "dmarc=None spf=pass dkim=None", [])


def test_of_a_forms_reading_the_daemon_gets_back_the_identity_number_cells_alone(local_intake) -> None:
    raw = make_mail(sender="reg2@school2.edu.cn", attachments=[("报名表.xlsx", FORM)], extra_headers={
        "Authentication-Results": "mx.zjut.edu.cn; spf=pass smtp.mailfrom=school2.edu.cn"})
    fetched = FetchedMessage(source=local_intake.source.name, uidvalidity=0, uid=2, key="cells",
                             arrived_at=datetime(2020, 11, 2, 2, 0, tzinfo=timezone.utc), raw=raw)
    ((_, verdict),) = local_intake.intake.assess(fetched).verdicts
    assert verdict.reading is not None
    assert [(r.row, sorted(r.cells), r.cells["id_number"].coordinate) for r in verdict.reading.rows] == [
        (4, ["id_number"], "G4"), (5, ["id_number"], "G5")]


def test_the_gate_goes_through_the_mail_s_header_list_once(monkeypatch) -> None:
    parsed = parse_head(make_mail(attachments=[("报名表.xlsx", FORM)]))
    walks = []
    real = type(parsed.message).raw_items
    monkeypatch.setattr(type(parsed.message), "raw_items", lambda self: walks.append(1) or real(self))
    verdicts = (auto_reply_reason(parsed, own_addresses={"shengpei@zjut.edu.cn"}),
                sender_trust(parsed, trusted_authserv_ids=("mx.zjut.edu.cn",)).reason)
    assert (verdicts, len(walks)) == ((None, "ok"), 0)  # the index was built by the parse
