"""Real-world hostile and malformed mail from the corpus (``tests/corpus.py``) through the WHOLE
pipeline against the real Dovecot and SMTP sink: every message gets a defined outcome, nothing
stays in INBOX, automatic mail gets no reply, the good form behind them is still accepted and
answered, in bounded time.  The synthetic hostile cases are in ``test_hostile_synthetic.py``."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from hostile_mail import ON_TIME, append_good_form, poll_and_check, synthetic_messages
from mail_factory import delivered_auth

#: A selection of the shared corpus: bounces, auto-replies, list mail, broken MIME, TNEF, torture.
CORPUS_SELECTION = (
    "email/cpython_test_email_data/msg_25.eml",          # DSN, multipart without boundary
    "email/cpython_test_email_data/msg_38.eml",          # close boundary missing
    "email/flufl_bounce/dsn_01.eml",                     # DSN via a list
    "email/jhillyerd_enmime/simple_dsn.eml",
    "email/jhillyerd_enmime/header-only.eml",            # multipart with no parts
    "email/jhillyerd_enmime/unk-encoding-part.eml",      # CTE base9000
    "email/jhillyerd_enmime/mime-bad-8bit-filename.eml", # raw 8-bit 管理.doc
    "email/jstedfast_mimekit/empty-multipart.eml",
    "email/jstedfast_mimekit/rich-text.eml",             # TNEF winmail.dat, 1.1 MB
    "email/jstedfast_mimekit/ukr.eml",                   # TNEF, koi8-r
    "email/mailgun_flanker/torture.eml",                 # 1.8 MB torture test
    "email/mailgun_flanker/broken-headers.eml",          # raw 8-bit headers
    "email/mailgun_flanker/zed.eml",                     # auto-replied bounce
    "email/mailinglist-archives_industrypack-devel/industrypack-devel_a623b75a67.eml",  # gbk list mail
    "email/mailinglist-archives_jailhouse-dev/jailhouse-dev_37fb611ed0.eml",            # TNEF list mail
    "email/mailinglist-archives_osst-users/osst-users_00fdd52d0d.eml",                  # out of office
    "email/mikel_mail/raw_email_with_illegal_boundary.eml",
    "email/paperless-ngx/broken.eml",                    # no header/body separator
    "email/php-mime-mail-parser/failure.eml",            # gb2312 bounce
    "email/sisimai_set-of-emails/rfc3834-06.eml",        # RFC 3834 auto-reply
    "email/sisimai_set-of-emails/lhost-office365-10.eml",
    "email/nodemailer_mailparser/nodemailer.eml",        # RFC 2231 names, a person's mail
)
#: MANIFEST notes marking mail that must never be answered (as in test_mail_corpus.py)
_AUTOMATIC = re.compile(r"(?<!non-)bounce/DSN|Auto-Submitted: auto|auto-reply|mailing-list headers|"
                        r"precedence:|ARF abuse|real bounce sample|Mailman bounce-detector sample")


def as_delivered(raw: bytes) -> bytes:
    """The file as an MTA would deliver it: with a Return-Path (the From address) when it has
    none, so the gate cannot stop it at ``no-return-path``, and our server's
    ``Authentication-Results`` passing SPF for the From address, so the sender check lets it
    through and every stage sees it."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    found = re.search(rb"(?im)^from:[^\n]*?<?([\w.+=-]+@[\w.-]+)>?", head)
    if not found:
        return raw
    auth = f"Authentication-Results: {delivered_auth(found.group(1).decode())}\r\n".encode()
    if re.search(rb"(?im)^return-path:", head):
        return auth + raw
    return b"Return-Path: <" + found.group(1) + b">\r\n" + auth + raw


def _manifest(corpus: Path) -> dict[str, str]:
    with (corpus / "MANIFEST.tsv").open(encoding="utf-8") as fh:
        return {r["local_path"]: r["notes"] for r in csv.DictReader(fh, delimiter="\t")}


def test_hostile_and_malformed_mail_all_get_a_defined_outcome_and_the_good_form_behind_them_is_answered(
        tmp_path, corpus, dovecot, imap_account, smtp_sink) -> None:
    notes = _manifest(corpus)
    selection = [p for p in CORPUS_SELECTION if (corpus / p).is_file()]
    assert len(selection) >= len(CORPUS_SELECTION) - 2, "the corpus changed; update CORPUS_SELECTION"

    by_uid: dict[int, tuple[str, bool, set[str] | None]] = {}  # uid -> (label, automatic, allowed)
    for path in selection:
        uid = dovecot.append(as_delivered((corpus / path).read_bytes()), ON_TIME, user=imap_account.user)
        by_uid[uid] = (path, bool(_AUTOMATIC.search(notes.get(path, ""))), None)
    for label, raw, allowed in synthetic_messages():  # mixed in: they must not disturb each other
        by_uid[dovecot.append(raw, ON_TIME, user=imap_account.user)] = (label, False, allowed)
    good_uid = append_good_form(dovecot, imap_account, by_uid)
    poll_and_check(tmp_path, dovecot, imap_account, smtp_sink, by_uid, good_uid)
