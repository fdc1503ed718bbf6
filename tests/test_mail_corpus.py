"""Real-world mail from the corpus (``tests/corpus.py``) through parse, walk and gate: never raises,
bounded time, and every bounce, auto-reply or list mail in MANIFEST.tsv gets an auto-reply reason."""

from __future__ import annotations

import csv
import dataclasses
import mailbox
import re
import time
import pytest

from corpus import CORPUS, corpus_params, corpus_present
from mailbot.limits import Limits
from mailbot.mail.gate import auto_reply_reason, sender_trust
from mailbot.mail.message import ParsedMessage, parse_head
from mailbot.mail.walk import MessageParts, parse_message, find_attachments

pytestmark = pytest.mark.usefixtures("corpus")  # every test here skips, or fails, without it

MANIFEST = {
    row["local_path"]: row
    for row in csv.DictReader((CORPUS / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t")
} if corpus_present() else {}
EMAILS = sorted(p for p in MANIFEST if p.startswith("email/"))
MBOXES = sorted(p for p in MANIFEST if p.startswith("mbox/"))
PER_MESSAGE_SECONDS = 5.0

# Notes that mark mail we must never answer (negative controls say "non-bounce").
_AUTOMATIC = re.compile(
    r"(?<!non-)bounce/DSN|Auto-Submitted: auto|auto-reply|mailing-list headers|precedence:|"
    r"ARF abuse|real bounce sample|Mailman bounce-detector sample"
)
AUTOMATIC = sorted(p for p in EMAILS if _AUTOMATIC.search(MANIFEST[p]["notes"]))


def run_all(raw: bytes) -> tuple[MessageParts, str | None]:
    limits = Limits()
    parsed = parse_message(raw, limits)
    parts = find_attachments(parsed, limits)
    reason = auto_reply_reason(parsed, own_addresses={"shengpei@zjut.edu.cn"},
                               own_message_id_domain="mailbot.zjut.edu.cn")  # fmt: skip
    sender_trust(parsed, trusted_authserv_ids=("mx.zjut.edu.cn",), allow_domains=(),
                 deny_domains=())  # fmt: skip
    return parts, reason


@pytest.mark.parametrize("path", corpus_params(EMAILS))
def test_corpus_message_goes_through_without_error_in_bounded_time(path):
    raw = (CORPUS / path).read_bytes()
    t0 = time.monotonic()
    parts, _ = run_all(raw)
    assert isinstance(parts, MessageParts)
    assert time.monotonic() - t0 < PER_MESSAGE_SECONDS
    assert not any(n.startswith("walk failed") for n in parts.notes), parts.notes


@pytest.mark.parametrize("path", corpus_params(AUTOMATIC))
def test_bounces_auto_replies_and_list_mail_get_a_reason(path):
    _, reason = run_all((CORPUS / path).read_bytes())
    assert reason is not None, MANIFEST[path]["notes"]


def _seen_by_gate(parsed: ParsedMessage) -> tuple:
    return (dataclasses.replace(parsed, defects=()), list(parsed.message.raw_items()),
            auto_reply_reason(parsed, own_addresses={"shengpei@zjut.edu.cn"}, own_message_id_domain="zjut.edu.cn"),
            sender_trust(parsed, trusted_authserv_ids=("mx.zjut.edu.cn",)))


def test_the_daemons_head_parse_gives_the_gate_what_the_whole_parse_gives_on_every_corpus_mail():
    raws = [(CORPUS / p).read_bytes() for p in EMAILS]
    for path in MBOXES:
        box = mailbox.mbox(str(CORPUS / path), create=False)
        try:
            raws += [box.get_bytes(key) for key in box.iterkeys()]
        finally:
            box.close()
    differing = [i for i, raw in enumerate(raws)
                 if _seen_by_gate(parse_head(raw, Limits())) != _seen_by_gate(parse_message(raw, Limits()))]
    assert (len(raws) > 200, differing) == (True, [])


def test_the_manifest_lists_automatic_mail():
    assert len(AUTOMATIC) > 50


@pytest.mark.parametrize("path", corpus_params(MBOXES))
def test_mbox_messages_go_through(path):
    box = mailbox.mbox(str(CORPUS / path), create=False)
    count = 0
    try:
        for key in box.iterkeys():
            raw = box.get_bytes(key)
            t0 = time.monotonic()
            run_all(raw)
            assert time.monotonic() - t0 < PER_MESSAGE_SECONDS
            count += 1
    finally:
        box.close()
    assert count > 0


def test_real_outlook_tnef_attachment_is_opened():
    parts, _ = run_all((CORPUS / "email/jstedfast_mimekit/rich-text.eml").read_bytes())
    assert [(s.filename, s.origin) for s in parts.scans] == [
        ("kitten-playing-with-a-christmas-tree.jpg",
         "winmail.dat > kitten-playing-with-a-christmas-tree.jpg"),
    ]  # fmt: skip


def test_raw_8bit_utf8_filename_is_decoded():
    parts, _ = run_all((CORPUS / "email/jhillyerd_enmime/mime-bad-8bit-filename.eml").read_bytes())
    assert [f.filename for f in parts.forms] == ["管理.doc"]


MSGS = sorted(p for p in MANIFEST if p.startswith("msg/"))


@pytest.mark.parametrize("path", corpus_params(MSGS))
def test_attached_outlook_msg_files_are_reported_unsupported(path):
    import base64

    data = (CORPUS / path).read_bytes()
    raw = (b'From: a@example.edu.cn\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b'--b\r\nContent-Type: application/octet-stream; name="mail.msg"\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data) + b"--b--\r\n")
    parts, _ = run_all(raw)
    assert parts.forms == ()
    assert [p.code for p in parts.problems] in (["msg_unsupported"], ["attachment_too_large"])
