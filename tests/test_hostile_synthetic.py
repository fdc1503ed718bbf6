"""Synthetic hostile mail (zip bomb, XML entities, encrypted and macro workbooks, a Word file with
no table, images only, an oversized attachment, nested archives and forwards) through the WHOLE
pipeline against the real Dovecot and SMTP sink, plus property-based fuzzing of
``Intake.assess`` on mutated messages.  Needs no corpus: it runs in every checkout."""

from __future__ import annotations

import io
import os
import re
import time
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from forms_factory import make_annex3_docx, make_annex3_xlsx, nominee
from hostile_mail import OUTCOMES, ON_TIME, append_good_form, fake_jpeg, poll_and_check, synthetic_messages
from intake_harness import local_settings, open_intake
from mail_factory import make_forward, make_mail, make_zip
from mailbot.mail.source import FetchedMessage
from mailbot.pipeline import Assessment


@pytest.mark.servers
def test_hostile_synthetic_mail_each_gets_its_outcome_and_the_good_form_behind_them_is_answered(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    batch = {dovecot.append(raw, ON_TIME, user=imap_account.user): (label, False, allowed)
             for label, raw, allowed in synthetic_messages()}
    good_uid = append_good_form(dovecot, imap_account, batch)
    poll_and_check(tmp_path, dovecot, imap_account, smtp_sink, batch, good_uid)


# --------------------------------------------------------------------------- fuzzing assess()

FUZZ_EXAMPLES = int(os.environ.get("MAILBOT_FUZZ_EXAMPLES", "25"))
_FORM = make_annex3_xlsx([nominee(1), nominee(2, phone="1381234")])
SEEDS = (
    make_mail(attachments=[("报名表.xlsx", _FORM)]),
    make_mail(client="foxmail", attachments=[("附件3.xlsx", _FORM), ("scan.jpg", fake_jpeg(2000, 3))]),
    make_mail(client="outlook", attachments=[("附件3.docx", make_annex3_docx([nominee(3)]))]),
    make_forward(make_mail(client="163", attachments=[("a.zip", make_zip([("附件3.xlsx", _FORM)]))]),
                 sender="fwd@x.edu.cn"),
)
_HEADER_NOISE = (b"Content-Type: multipart/mixed; boundary=\"\"", b"Content-Transfer-Encoding: base9000",
                 b"From: =?gb2312?B?ztLKx?= <>", b"Auto-Submitted: no", b"Subject: =?utf-8?Q?=E6=8A?=",
                 b"Content-Disposition: attachment; filename*=GBK''%D5%C5", b"Return-Path: <>",
                 b"Authentication-Results: mx.zjut.edu.cn; dmarc=fail", b"Content-Type: message/rfc822",
                 b"\xff\xfe\x00garbage", b"X-Long: " + b"a" * 5000)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(("flip", "cut", "insert_header", "dup", "drop_line", "boundary")))
        if op == "flip" and raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        elif op == "cut":
            raw = raw[: draw(st.integers(0, len(raw)))]
        elif op == "insert_header":
            raw = bytearray(draw(st.sampled_from(_HEADER_NOISE)) + b"\r\n") + raw
        elif op == "dup" and raw:
            a = draw(st.integers(0, len(raw) - 1))
            raw[a:a] = raw[a: a + draw(st.integers(1, 4096))]
        elif op == "drop_line":
            lines = bytes(raw).split(b"\r\n")
            if len(lines) > 1:
                del lines[draw(st.integers(0, len(lines) - 1))]
            raw = bytearray(b"\r\n".join(lines))
        elif op == "boundary":
            raw = bytearray(re.sub(rb"----=_", b"--=_x", bytes(raw), count=draw(st.integers(1, 3))))
    return bytes(raw)


@pytest.fixture(scope="module")
def local_intake(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    parts = open_intake(local_settings(root), io.StringIO())
    yield parts
    parts.close()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=mutated_messages())
def test_assess_on_mutated_mail_never_raises_and_takes_bounded_time(local_intake, raw) -> None:
    fetched = FetchedMessage(source=local_intake.source.name, uidvalidity=0, uid=1, key="fuzz",
                             arrived_at=datetime(2020, 11, 2, 2, 0, tzinfo=timezone.utc), raw=raw)
    started = time.monotonic()
    assessment = local_intake.intake.assess(fetched)
    assert time.monotonic() - started < 5.0
    assert isinstance(assessment, Assessment)
    assert assessment.outcome in OUTCOMES - {"failed"}
    assert (assessment.reply is None) == (assessment.outcome in ("ignored", "quarantined", "duplicate"))
