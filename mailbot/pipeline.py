"""One message through every stage: gate -> find forms -> read and check -> record -> reply.

:meth:`Intake.poll_once` drives a cycle over a :class:`~mailbot.mail.source.MailSource`:
status (one round trip), fetch what is new, and for each message record everything and queue
its reply in ONE transaction, then send the outbox, then settle the message on the server.
An unexpected error on one message records it as ``failed`` with the reason, moves it aside
and the cycle goes on.  A message is never answered twice: the cursor, the
(source, UIDVALIDITY, UID) key and the (Message-ID, SHA-256) pair all guard it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from mailbot.config import Settings
from mailbot.annex3 import FIELDS
from mailbot.replies.greeting import contact_is_sender
from mailbot.errors import FormError, MailboxError, StateError
from mailbot.forms.model import Finding, FormVerdict, Outcome
from mailbot.state.ledger import SeatLedger, SeatRequest, SubmissionResult
from mailbot.mail.gate import auto_reply_reason, domain_mismatch, sender_trust
from mailbot.mail.intent import FOR_STAFF, asks_with_form, classify, first_lines, says_addition
from mailbot.mail.source import FetchedMessage, MailSource
from mailbot.masking import mask_id, mask_text
from mailbot.mail.message import parse_head
from mailbot.mail.walk import Attachment, MessageParts, ParsedMessage, find_attachments
from mailbot.state.outbox import SendReport, recover_interrupted, send_pending
from mailbot.replies.render import ReplyRenderer, build_message, new_message_id
from mailbot.replies.model import ChangeLine, FindingLine, NomineeLine, ReplyContext, ReplyKind
from mailbot.forms.reader import sheet_cells
from mailbot.forms import contained
from mailbot.rules import CampaignRules, school_key
from mailbot.office import staff_items
from mailbot.office.staff_alert import queue_staff_alert
from mailbot.replies.model import SchoolNotice
from mailbot.replies.render import build_digest_message, sender_safe_notice
from mailbot.mail.smtp import Transport
from mailbot.state.store import State, utc_now


SETTLE_BATCH = 20  # recorded messages moved on the server with one command
DECIDE_BATCH = 20
"""Fetched messages decided before their replies are sent together (``handle_batch``)."""
#: outcomes that put the message on the staff list, with how the list names them
STAFF_OUTCOMES = {"quarantined": "邮件已隔离", "failed": "处理失败"}
POISON_ATTEMPTS = 2
"""Starts of a message's decision that may end without a record (crash, abort, OOM kill);
at the next start it is set aside in the quarantine folder instead of being tried again."""
CRASH_HOOK = "MAILBOT_TEST_CRASH_ON_SUBJECT"
"""Test only: when set, deciding a message whose subject contains its value aborts the process
(``os.abort()``), as a reader crash would.  Inert unless set; never set it in production."""
#: the finding for a row whose identity number another school registered first (never names it)
CONFLICT_MESSAGE = "该身份证号与其他报名记录重复，请核对号码；确为同一人的，请联系培训中心"
REPEATED_MESSAGE = "该身份证号在本邮件的报名表中重复出现，只按第一次出现的一行登记"
READING_CELLS = ("id_number",)
"""The cells of a form's reading the record reads (a refused identity number's cell, marked in
the correction copy); the worker keeps the others (``contained.walk_and_judge``)."""


@dataclass(frozen=True)
class Assessment:
    """What the pure stages concluded about one message, before anything is recorded."""

    outcome: str  # accepted | correction | late | redirect | no_form | scan_only | unreadable |
    #               not_annex3 | for_staff | how_to_register | ignored | quarantined | duplicate |
    #               failed
    reason: str
    reply: ReplyKind | None
    folder: str
    parsed: ParsedMessage | None = None
    parts: MessageParts | None = None
    verdicts: tuple[tuple[Attachment, FormVerdict], ...] = ()
    auth_summary: str = ""
    duplicate_of: int | None = None


@dataclass
class CycleReport:
    fetched: int = 0
    recorded: int = 0
    skipped: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    sent: SendReport = field(default_factory=SendReport)


FORM_REPLIES = frozenset({"acceptance", "correction", "late", "redirect", "unreadable", "not_annex3", "scan_only"})
"""Replies to a mail that carried a form (or a file taken for one)."""


def _asks_with_form(a: Assessment) -> bool:
    """A mail answered as a form that also asks a person something (``mail.intent``)."""
    return (a.reply in FORM_REPLIES and a.parsed is not None and a.parts is not None
            and asks_with_form(a.parsed.subject, a.parts.body_text))


def _aware_utc(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


def institution_key(institution: str, sender: str) -> str:
    """Stable key of the reporting institution: its compacted name, else the sender address."""
    name = school_key(institution)
    return f"name:{name}" if name else f"sender:{sender.lower()}"


class Intake:
    """The intake pipeline over one mailbox, one state database and one outbox transport."""

    def __init__(self, settings: Settings, rules: CampaignRules, state: State, source: MailSource,
                 transport: Transport, *, log: Any, renderer: ReplyRenderer | None = None,
                 actor: str = "daemon") -> None:
        self.settings = settings
        self.rules = rules
        self.state = state
        self.source = source
        self.transport = transport
        self.log = log
        self.renderer = renderer or ReplyRenderer(settings.templates)
        self.actor = actor
        self.version = f"{rules.campaign.id}@{rules.campaign.version}"
        self.ledger = SeatLedger(state, {p.name: p.seats or 0 for p in rules.programs},
                                 rules_version=self.version, actor=actor)
        self._programs = {p.name: p for p in rules.programs}
        self._mbox = settings.mailbox
        self._own = {settings.reply.from_address.lower(), rules.intake.address.lower()}
        self._own |= {a.lower() for a in settings.staff_addresses}
        self._to_settle: list[tuple[str, int, str]] = []  # (source key, message id, folder)
        self._recorded: tuple[str, int | None] = ("", None)  # the last record: outcome, next mark's starts
        self._recovered = False
        self._cycle_sent = SendReport()

    def recover(self) -> None:
        """Once, before the first cycle: replies left ``sending`` by a crash become ``unknown``.
        Not at construction, so a second instance refused by the lock changes nothing."""
        if self._recovered:
            return
        recovered = recover_interrupted(self.state, actor=self.actor, rules_version=self.version)
        with self.state.transaction():  # the rules' hosts and seats, for the audit views
            self.ledger.record_programs({p.name: p.host for p in self.rules.programs})
        self._recovered = True
        if recovered:
            self.log.warning("replies_delivery_unknown", outbox=recovered,
                             hint="found 'sending' after a crash; check before re-sending")

    # -- the cycle ------------------------------------------------------------------------
    def poll_once(self, progress: Callable[[int], None] | None = None,
                  between_batches: Callable[[], None] | None = None) -> CycleReport:
        """One intake cycle; an idle mailbox costs one STATUS round trip.  ``between_batches``
        runs after each full fetch batch is recorded and sent (the daemon lets a waiting staff
        command in there)."""
        report = CycleReport()
        self._cycle_sent = SendReport()  # every send of this cycle, per message and at the end
        self.recover()
        self.settle_pending()
        stored_validity, last_uid = self.state.cursor(self.source.name)
        validity, uidnext = self.source.status()
        if validity == 0:  # Maildir: no UIDs to trust; what is left in the inbox is new
            stored_validity, last_uid = None, 0
        elif stored_validity == validity and uidnext <= last_uid + 1:
            self.alert_staff()  # items raised outside a poll (replay --no-dry-run)
            self.send()
            report.sent = self._cycle_sent
            return report
        if stored_validity is not None and stored_validity != validity and validity != 0:
            self.log.warning("uidvalidity_changed", source=self.source.name, old=stored_validity,
                             new=validity, hint="refetching; known mail is recognised by Message-ID and hash")
        # Readers start before any message is marked, so a process killed while they start up
        # does not count against the message in hand (poison detection).
        contained.pool_of(self.settings.limits).warm()
        try:
            batch: list[FetchedMessage] = []
            try:
                for fetched in self.source.fetch_after(stored_validity, last_uid):
                    batch.append(fetched)
                    if len(batch) >= DECIDE_BATCH:
                        batch, full = [], batch
                        self.handle_batch(full, report, progress)
                        if between_batches is not None:
                            between_batches()
            except MailboxError:
                if batch:  # the fetch failed part way: what arrived is decided before the poll fails
                    self.handle_batch(batch, report, progress)
                raise
            if batch:
                self.handle_batch(batch, report, progress)
        finally:
            self.flush_settle()
        if validity != 0:
            # Everything below this UIDNEXT has been handled (or is gone): remember it, so an
            # empty mailbox or one whose new mail was expunged is idle (one STATUS) next time.
            with self.state.transaction():
                self.state.advance_cursor(self.source.name, validity, uidnext - 1)
        self.alert_staff()
        self.send()
        report.sent = self._cycle_sent
        return report

    def alert_staff(self) -> None:
        """One staff alert listing the items this cycle put on the staff list."""
        queue_staff_alert(self.state, self.settings, self.renderer, campaign=self.rules.campaign.title,
                          rules_version=self.version, actor=self.actor)

    def handle(self, fetched: FetchedMessage) -> str | None:
        """Record one fetched message, send its reply, settle it.  Returns the outcome, or None
        when it was already recorded (only settled again)."""
        report = CycleReport()
        self.handle_batch([fetched], report)
        return next(iter(report.outcomes), None)

    def handle_batch(self, batch: list[FetchedMessage], report: CycleReport,
                     progress: Callable[[int], None] | None = None) -> None:
        """Decide a fetch batch: each new message marked (committed) before its decision starts,
        its record committed with the next message's mark (one commit per message), then the
        replies of all of them sent (``sending`` in one commit, ``sent`` in one commit), then
        settled.  A message recorded before (a crash after its commit) is only settled again."""
        known = self.state.messages_at(batch)
        new: list[FetchedMessage] = []
        for fetched in batch:
            row = known.get((fetched.uidvalidity, fetched.uid if fetched.uidvalidity else fetched.key))
            if row is None:
                new.append(fetched)
                continue
            self._to_settle.append((fetched.key, row["id"], row["settle_folder"]))
            report.fetched += 1
            report.skipped += 1
            if progress is not None:
                progress(1)
        cursor = max((f.uid if f.cursor_uid is None else f.cursor_uid for f in batch), default=0)
        attempts: int | None = None
        marked: FetchedMessage | None = None  # marked with the record before it, not started
        try:
            for i, fetched in enumerate(new):
                if attempts is None:  # the first of the batch: its mark commits alone
                    try:
                        attempts = self.state.begin_attempt(fetched.source, fetched.uidvalidity, fetched.key)
                    except StateError:
                        self._forget_attempt(fetched)
                        raise
                last = i == len(new) - 1
                marked = None
                outcome, attempts = self._decide(fetched, attempts, None if last else new[i + 1],
                                                 cursor if last else None)
                marked = None if last else new[i + 1]
                report.fetched += 1
                report.recorded += 1
                report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
                if outcome == "failed":
                    report.failed += 1
                if progress is not None:
                    progress(1)  # may raise to stop the cycle (the daemon is stopping)
        finally:
            if marked is not None:  # stopped between two messages: the next one never started
                with self.state.transaction():
                    self.state.unmark_attempt(marked.source, marked.uidvalidity, marked.key)
            if new:
                self.send()
        if len(self._to_settle) >= SETTLE_BATCH:
            self.flush_settle()

    def _decide(self, fetched: FetchedMessage, attempts: int, then_mark: FetchedMessage | None,
                cursor: int | None) -> tuple[str, int | None]:
        """Decide and record one marked message (its ``attempts``-th start); ``then_mark`` is
        marked in the same commit.  Returns the recorded outcome and ``then_mark``'s starts."""
        started = time.monotonic()
        try:
            if attempts > POISON_ATTEMPTS:
                assessment = self.set_aside(fetched, attempts - 1)
            else:
                assessment = self.assess(fetched, started=started)
            msg_pk = self.record(fetched, assessment, then_mark=then_mark, cursor=cursor)
        except StateError:
            self._forget_attempt(fetched)  # the database failed, not the message: not poison
            raise
        except Exception as exc:  # noqa: BLE001 - any bug on one message must not stop the daemon
            reason = f"{type(exc).__name__}: {exc}"
            self.log.error("message_failed", uid=fetched.uid, reason=mask_text(reason), exc_info=True)
            assessment = Assessment("failed", reason, None, self._mbox.failed_folder)
            msg_pk = self.record(fetched, assessment, then_mark=then_mark, cursor=cursor)
        # the ledger may turn an acceptance into a correction (a conflict): the recorded outcome
        outcome, next_attempts = self._recorded
        self.log.info("message", uid=fetched.uid, outcome=outcome, reason=assessment.reason,
                      sender=assessment.parsed.from_addr if assessment.parsed else "",
                      arrived_at=fetched.arrived_at.isoformat(), ms=round((time.monotonic() - started) * 1000))
        self._to_settle.append((fetched.key, msg_pk, assessment.folder))
        return outcome, next_attempts

    def _forget_attempt(self, fetched: FetchedMessage) -> None:
        try:
            with self.state.transaction():
                self.state.end_attempt(fetched.source, fetched.uidvalidity, fetched.key)
        except StateError:
            pass  # the database is still failing: the mark stays, and counts once

    # -- pure stages ----------------------------------------------------------------------
    def set_aside(self, fetched: FetchedMessage, unfinished: int) -> Assessment:
        """A message whose decision did not finish ``unfinished`` times (the process died on
        it): quarantined for staff without being read again; a sender who passes the gate
        gets the "received; staff will look at it" acknowledgement."""
        mb = self._mbox
        reason = f"poison: processing did not finish {unfinished} times (crash, abort or kill); set aside for staff"
        parsed = parse_head(fetched.raw, self.settings.limits)
        reply: ReplyKind | None = None
        auth = ""
        if parsed.from_addr and auto_reply_reason(
                parsed, own_addresses=self._own, own_message_id_domain=self.settings.reply.message_id_domain,
                require_return_path=mb.require_return_path) is None:
            trust = sender_trust(parsed, trusted_authserv_ids=self.settings.trust.authserv_ids,
                                 allow_domains=self.settings.trust.allow_domains,
                                 deny_domains=self.settings.trust.deny_domains)
            auth = f"dmarc={trust.dmarc} spf={trust.spf} dkim={trust.dkim}"
            reply = "held" if trust.action == "accept" else None
        self.log.error("message_set_aside", uid=fetched.uid, attempts=unfinished, reason=reason)
        return Assessment("quarantined", reason, reply, mb.quarantine_folder, parsed, MessageParts(),
                          auth_summary=auth)

    def assess(self, fetched: FetchedMessage, *, started: float | None = None,
               released: int | None = None) -> Assessment:
        """Gate, find forms, read and check them.  Reads the database (dedupe) but writes nothing.
        ``started`` (``time.monotonic()`` at fetch) starts the message's one time budget.
        ``released``: the recorded message staff released (``mailbot decide release``), which this
        is a copy of: not a duplicate of it, and not quarantined by the sender check."""
        limits = self.settings.limits
        mb = self._mbox
        started = time.monotonic() if started is None else started
        parsed = parse_head(fetched.raw, limits)
        hook = os.environ.get(CRASH_HOOK)
        if hook and hook in parsed.subject:
            os.abort()  # test only: a process death while deciding this message
        sha = hashlib.sha256(fetched.raw).hexdigest()
        original = self.state.original_of(parsed.message_id, sha)
        if original is not None and original["id"] != released:
            return Assessment("duplicate", f"same Message-ID and bytes as message {original['id']}", None,
                              mb.processed_folder, parsed, duplicate_of=original["id"])
        loop = auto_reply_reason(parsed, own_addresses=self._own,
                                 own_message_id_domain=self.settings.reply.message_id_domain,
                                 require_return_path=mb.require_return_path)
        if loop is not None:
            return Assessment("ignored", loop, None, mb.processed_folder, parsed)
        trust = sender_trust(parsed, trusted_authserv_ids=self.settings.trust.authserv_ids,
                             allow_domains=self.settings.trust.allow_domains,
                             deny_domains=self.settings.trust.deny_domains)
        auth = f"dmarc={trust.dmarc} spf={trust.spf} dkim={trust.dkim}"
        if trust.action != "accept" and released is None:
            return Assessment("quarantined", trust.reason, None, mb.quarantine_folder, parsed,
                              auth_summary=auth)
        if not parsed.from_addr:
            return Assessment("ignored", "no sender address to answer", None, mb.processed_folder, parsed)
        parts, verdicts = self._read_contained(fetched.raw, started)
        late = not self.rules.deadline.is_on_time(fetched.arrived_at)
        outcomes = {v.outcome for _, v in verdicts}
        annex3 = [v for _, v in verdicts if v.outcome in (Outcome.OK, Outcome.NEEDS_CORRECTION)]
        common = dict(folder=mb.processed_folder, parsed=parsed, parts=parts, verdicts=verdicts,
                      auth_summary=auth)
        if not parts.forms and not parts.scans and not parts.problems:
            intent = classify(parsed.subject, parts.body_text)
            if intent in ("thanks", "out_of_office"):
                return Assessment("ignored", f"no form: {intent}", None, mb.processed_folder, parsed,
                                  auth_summary=auth)
            if intent in FOR_STAFF:
                return Assessment("for_staff", f"no form: {intent}", "acknowledgement", **common)
            if intent == "how_to_register":
                return Assessment("how_to_register", "asks how to register", "how_to_register", **common)
        if late:
            return Assessment("late", f"arrived {fetched.arrived_at.isoformat()} after the deadline",
                              "late", **common)
        if Outcome.REDIRECT in outcomes:
            return Assessment("redirect", "secondary vocational school", "redirect", **common)
        if annex3:
            clean = all(v.outcome == Outcome.OK for v in annex3) and not parts.problems
            needs_stamp = self.rules.intake.stamped_scan_required and not parts.scans
            if clean and not needs_stamp and len(annex3) == len(verdicts):
                return Assessment("accepted", f"{sum(len(v.rows) for v in annex3)} row(s)", "acceptance", **common)
            return Assessment("correction", "findings to correct", "correction", **common)
        if Outcome.UNREADABLE in outcomes or parts.problems:
            return Assessment("unreadable", "; ".join(
                [f"{a.filename}: {v.form_findings[0].code}" for a, v in verdicts if v.form_findings]
                + [p.code for p in parts.problems]), "unreadable", **common)
        if Outcome.NOT_ANNEX3 in outcomes:
            return Assessment("not_annex3", "no attachment is the Annex 3 form", "not_annex3", **common)
        if parts.scans:
            return Assessment("scan_only", "only a scan, no spreadsheet", "scan_only", **common)
        return Assessment("no_form", "no attachment", "no_form", **common)

    def _read_contained(self, raw: bytes,
                        started: float) -> tuple[MessageParts, tuple[tuple[Attachment, FormVerdict], ...]]:
        """The MIME walk (zip listing, TNEF, forwarded mail) and the reading and checking of
        every form it finds, in ONE contained worker request, within what is left of the
        message's time budget; its forms share the message's cell budget.  A form not started
        for lack of time gets the ``time_limit`` verdict; a form whose worker died
        ``reader_failed``, and the others keep their own verdicts."""
        limits = self.settings.limits
        limit = limits.max_seconds_per_message
        judged = contained.walk_and_judge(find_attachments, raw, rules=self.rules, limits=limits,
                                          deadline=started + limit, cells=limits.max_cells_per_message,
                                          reading_cells=READING_CELLS)
        if judged.walk_failure is not None:
            self.log.error("walk_contained_failed", reason=str(judged.walk_failure))
            return MessageParts(problems=(Finding("reader_failed", contained.UNREADABLE_MESSAGE),),
                                notes=(f"walk failed: {judged.walk_failure}",)), ()
        verdicts: list[tuple[Attachment, FormVerdict]] = []
        for attachment, verdict in zip(judged.parts.forms, judged.verdicts):
            if verdict is None:
                verdict = FormVerdict(attachment.filename, Outcome.UNREADABLE, form_findings=(Finding(
                    "time_limit", f"邮件附件过多或过大，未能在{limit:g}秒内处理完，请只发送附件3汇总表。"),))
            elif any(f.code == "reader_failed" for f in verdict.form_findings):
                self.log.error("reader_contained_failed", file=attachment.filename)
            verdicts.append((attachment, verdict))
        return judged.parts, tuple(verdicts)

    # -- record ---------------------------------------------------------------------------
    def record(self, fetched: FetchedMessage, a: Assessment, *, then_mark: FetchedMessage | None = None,
               cursor: int | None = -1) -> int:
        """Store the raw mail, then ONE transaction: message, attachments, forms, rows, seats,
        events, reply in the outbox, cursor, its decision mark removed and ``then_mark``'s mark
        added.  ``cursor``: where the cursor moves (-1: to this message; None: it stays).
        Returns the message's id."""
        return self._record(fetched, a, dry_run=False, then_mark=then_mark, cursor=cursor)[0]

    def preview(self, fetched: FetchedMessage, a: Assessment) -> list[dict[str, Any]]:
        """What ``record`` would queue (outbox rows), with everything rolled back after."""
        return self._record(fetched, a, dry_run=True)[1]

    def _record(self, fetched: FetchedMessage, a: Assessment, *, dry_run: bool,
                then_mark: FetchedMessage | None = None,
                cursor: int | None = -1) -> tuple[int, list[dict[str, Any]]]:
        raw_sha, raw_rel = (hashlib.sha256(fetched.raw).hexdigest(), None) if dry_run else \
            self.state.store_blob(fetched.raw, "raw", ".eml")
        stored_scans: list[tuple[Attachment, str]] = []
        if a.parts is not None and not dry_run:
            for scan in a.parts.scans:
                stored_scans.append((scan, self.state.store_blob(scan.data, "evidence")[1]))
        p = a.parsed
        arrived_utc = _aware_utc(fetched.arrived_at)
        institution = next((v.institution for _, v in a.verdicts if v.institution), "")
        mismatch = bool(p and institution and domain_mismatch(institution, p.from_domain))
        db = self.state.db
        rollback = _Rollback()
        queued: list[dict[str, Any]] = []
        try:
            with self.state.transaction(batch_events=True):
                if a.outcome == "accepted" and p is not None and self._refused_ahead(a, institution):
                    # a row's identity number is another school's: a finding, so a correction
                    a = replace(a, outcome="correction", reply="correction",
                                reason="identity number registered before")
                msg_pk = self.state.insert_numbered("messages", "receipt", f"{self.rules.campaign.id}-", {
                    "source": fetched.source, "uidvalidity": fetched.uidvalidity, "uid": fetched.uid,
                    "source_key": fetched.key,
                    "message_id": p.message_id if p else "", "sha256": raw_sha, "size": len(fetched.raw),
                    "arrived_at": arrived_utc, "sender": p.from_addr if p else "",
                    "sender_name": p.from_name if p else "", "subject": p.subject if p else "",
                    "outcome": a.outcome, "reason": mask_text(a.reason)[:2000], "institution": institution,
                    "raw_path": raw_rel, "duplicate_of": a.duplicate_of, "domain_mismatch": int(mismatch),
                    "auth_summary": a.auth_summary, "rules_version": self.version,
                    "settle_folder": a.folder, "recorded_at": utc_now(),
                })
                receipt = f"{self.rules.campaign.id}-{msg_pk:06d}"
                self.state.add_event("message_recorded", {
                    "outcome": a.outcome, "reason": mask_text(a.reason)[:500], "receipt": receipt,
                    "arrived_at": arrived_utc, "domain_mismatch": mismatch},
                    actor=self.actor, rules_version=self.version, message=msg_pk)
                for scan, rel in stored_scans:
                    self._record_attachment(msg_pk, scan, "scan", rel)
                form_rows = self._record_forms(msg_pk, a)
                result = None
                if a.outcome in ("accepted", "correction") and p is not None:
                    result = self._apply_seats(msg_pk, fetched, a, institution, form_rows)
                    if result.conflicts and a.outcome == "accepted":
                        a = replace(a, outcome="correction", reply="correction",
                                    reason="identity number registered before")
                        db.execute("UPDATE messages SET outcome = ?, reason = ? WHERE id = ?",
                                   [a.outcome, mask_text(a.reason)[:2000], msg_pk])
                if a.reply is not None and p is not None:
                    self._queue_reply(msg_pk, receipt, fetched, a, institution, result)
                if result is not None:
                    batches: dict[str, list[Any]] = {}
                    for promo in result.promotions:  # one mail per sender for this event
                        batches.setdefault(promo.sender.lower(), []).append(promo)
                    for promos in batches.values():
                        self._queue_promotion(msg_pk, promos)
                    self._school_follow_up(msg_pk, receipt, fetched, a, institution, result)
                if p is not None and (a.outcome == "for_staff" or _asks_with_form(a)):
                    self._staff_mail_item(msg_pk, receipt, a, institution)
                if a.outcome in STAFF_OUTCOMES:
                    staff_items.add(self.state, a.outcome, staff_items.outcome_summary(a.outcome, a.reason),
                                    actor=self.actor, rules_version=self.version, institution=institution,
                                    sender=p.from_addr if p else "", message=msg_pk, receipt=receipt)
                failed_reads = [att.filename for att, v in a.verdicts
                                if any(f.code == "reader_failed" for f in v.form_findings)]
                if failed_reads or any(f.code == "reader_failed" for f in (a.parts.problems if a.parts else ())):
                    staff_items.add(self.state, "reader_failed",
                                    "附件读取进程异常终止或超出资源限制，已按“无法读取”答复发件人："
                                    + ("、".join(failed_reads) or "邮件附件"),
                                    actor=self.actor, rules_version=self.version, institution=institution,
                                    sender=p.from_addr if p else "", message=msg_pk, receipt=receipt)
                if cursor == -1:
                    cursor = fetched.uid if fetched.cursor_uid is None else fetched.cursor_uid
                if cursor is not None:
                    self.state.advance_cursor(fetched.source, fetched.uidvalidity, cursor)
                self.state.end_attempt(fetched.source, fetched.uidvalidity, fetched.key)
                next_attempts = None if then_mark is None else self.state.mark_attempt(
                    then_mark.source, then_mark.uidvalidity, then_mark.key)
                if dry_run:
                    queued = list(self.state.query("SELECT * FROM outbox WHERE message = ?", [msg_pk]))
                    raise rollback
        except _Rollback:
            pass
        else:
            self._recorded = (a.outcome, next_attempts)
        return msg_pk, queued

    def _record_attachment(self, msg_pk: int, att: Attachment, kind: str, path: str | None) -> None:
        self.state.insert("attachments", {
            "message": msg_pk, "kind": kind, "filename": att.filename, "origin": att.origin,
            "content_type": att.content_type, "size": len(att.data), "sha256": att.sha256, "path": path})

    def _record_forms(self, msg_pk: int, a: Assessment) -> dict[tuple[int, int], int]:
        """Insert forms and rows; returns (verdict index, sheet row) -> form_rows id."""
        ids: dict[tuple[int, int], int] = {}
        for i, (att, v) in enumerate(a.verdicts):
            self._record_attachment(msg_pk, att, "form", None)
            form_pk = self.state.insert("forms", {
                "message": msg_pk, "filename": att.filename, "origin": att.origin,
                "outcome": v.outcome.value, "institution": v.institution, "contact": v.contact,
                "contact_phone": v.contact_phone, "sheet": v.reading.sheet if v.reading else "",
                "findings": json.dumps([{"code": f.code, "message": f.message} for f in v.form_findings],
                                       ensure_ascii=False)})
            rows = [[form_pk, r.row, r.program, int(r.program_matched), r.name, r.gender, r.position, r.email,
                     r.id_number, mask_id(r.id_number), r.phone, int(r.ok), json.dumps(
                         [{"column": f.column, "code": f.code, "message": f.message} for f in r.findings],
                         ensure_ascii=False)] for r in v.rows]
            for r, pk in zip(v.rows, self.state.insert_rows("form_rows", FORM_ROW_COLUMNS, rows)):
                ids[(i, r.row)] = pk
        return ids

    def _apply_seats(self, msg_pk: int, fetched: FetchedMessage, a: Assessment, institution: str,
                     form_rows: dict[tuple[int, int], int]) -> SubmissionResult:
        requests: list[SeatRequest] = []
        present: set[str] = set()
        for i, (_, v) in enumerate(a.verdicts):
            if v.outcome not in (Outcome.OK, Outcome.NEEDS_CORRECTION):
                continue
            for r in v.rows:
                if r.id_number and not any(f.column and f.code.startswith("id_") for f in r.findings):
                    present.add(r.id_number)
                if r.ok and r.program_matched:
                    requests.append(SeatRequest(r.id_number, mask_id(r.id_number), r.name, r.program,
                                                r.row, form_rows.get((i, r.row))))
        assert a.parsed is not None and a.parts is not None
        if institution:  # teachers held because this sender's earlier form named no school
            self.ledger.release_unnamed(a.parsed.from_addr, message=msg_pk)
        return self.ledger.apply_submission(
            institution_key=institution_key(institution, a.parsed.from_addr), institution=institution,
            requests=requests, present_ids=present, message=msg_pk, arrived_at=_aware_utc(fetched.arrived_at),
            uid=fetched.uid, sender=a.parsed.from_addr, demand=self.rules.reported_demand(institution),
            max_new=self.rules.intake.max_new_per_mail,
            adds_only=says_addition(a.parsed.subject, a.parts.body_text), unnamed=not institution)

    # -- replies --------------------------------------------------------------------------
    def _nominee_line(self, row: int | None, name: str, program: str, status: str,
                      position: int | None, id_masked: str, note: str = "") -> NomineeLine:
        prog = self._programs.get(program)
        return NomineeLine(row=row, name=name, program=program, host=prog.host if prog else "",
                           format=(prog.format if prog else "") or self.rules.training.format,
                           hours=(prog.hours if prog else None) or self.rules.training.hours,
                           fee_cap=self.rules.fees.cap_yuan, status=status,  # type: ignore[arg-type]
                           waiting_position=position, id_masked=id_masked, note=note)

    def _base_context(self, kind: ReplyKind, receipt: str, arrived: datetime, to: str, to_name: str,
                      subject: str, message_id: str, references: tuple[str, ...], **extra: Any) -> ReplyContext:
        r = self.rules
        return ReplyContext(
            kind=kind, to_address=to, to_name=to_name, original_subject=subject,
            original_message_id=message_id, original_references=references,
            received_at=arrived.astimezone(self.settings.tz), receipt=receipt,
            campaign_title=r.campaign.title, deadline=r.deadline.aware, intake_address=r.intake.address,
            platform_url=r.platform.url, platform_path=r.platform.menu,
            late_contact=r.intake.late_change_contact, help_contact=r.intake.help_contact,
            stamp_required=r.intake.stamped_scan_required,
            resend_closed=not r.deadline.leaves_time_to_resend(arrived),
            **extra)

    def _queue_reply(self, msg_pk: int, receipt: str, fetched: FetchedMessage, a: Assessment,
                     institution: str, result: SubmissionResult | None) -> None:
        p = a.parsed
        assert p is not None and a.reply is not None and a.parts is not None
        findings: list[FindingLine] = []
        unreadable: list[FindingLine] = []
        workbooks: list[tuple[str, bytes]] = []
        refused = self._refused_cells(a, result)
        for i, (att, v) in enumerate(a.verdicts):
            target = unreadable if v.outcome in (Outcome.UNREADABLE, Outcome.NOT_ANNEX3) else findings
            for f in v.form_findings:
                target.append(FindingLine(att.filename, f.row, f.column, f.code, f.message))
            cells: list[tuple[str, str]] = []
            for r in v.rows:
                for f in r.findings:
                    findings.append(FindingLine(att.filename, f.row or r.row, f.column, f.code, f.message))
                    if f.coordinate:
                        cells.append((f.coordinate, f.message))
            for row, column, coordinate, message in refused.get(i, []):
                findings.append(FindingLine(att.filename, row, column, "id_conflict", message))
                if coordinate:
                    cells.append((coordinate, message))
            if cells and a.reply == "correction" and len(v.rows) <= self.settings.reply.max_rows_for_workbook:
                book = self._correction_copy(att, v, cells)
                if book is not None:
                    workbooks.append(book)
        for prob in a.parts.problems:
            unreadable.append(FindingLine("", None, None, prob.code, prob.message))
        if a.reply == "correction" and self.rules.intake.stamped_scan_required and not a.parts.scans:
            findings.append(FindingLine("", None, None, "stamp_missing",
                                        "请同时发送加盖单位公章的报名表扫描件（PDF或图片）。"))
        nominees: list[NomineeLine] = []
        changes: list[ChangeLine] = []
        if result is not None:
            for pl in result.placements:
                nominees.append(self._nominee_line(pl.request.row, pl.request.name, pl.request.program,
                                                   pl.status, pl.waiting_position, pl.request.id_masked, pl.note))
            if result.resubmission:
                changes = [ChangeLine(c.kind, c.name, c.id_masked, c.detail) for c in result.changes]
        programs: tuple[tuple[str, str], ...] = ()
        if a.reply == "how_to_register":
            programs = tuple((prog.name, prog.host) for prog in self.rules.programs)
            from mailbot.replies.correction_workbook import blank_annex3  # openpyxl: only when asked

            workbooks.append(blank_annex3(self.rules.form.title, [label for _, label in FIELDS],
                                          [name for name, _ in programs]))
        contact = next((v.contact for _, v in a.verdicts if v.contact), "")
        listed, shown = self.settings.reply.max_findings_listed, self.settings.reply.max_nominees_listed
        ctx = self._base_context(
            a.reply, receipt, fetched.arrived_at, p.from_addr, p.from_name, p.subject, p.message_id,
            p.references, institution=institution, contact=contact,
            contact_is_sender=contact_is_sender(contact, p.from_addr, (r for _, v in a.verdicts for r in v.rows)),
            may_change_list=result.by_contact if result is not None else True,
            nominees=tuple(nominees[:shown]),
            nominees_omitted=max(0, len(nominees) - shown), findings=tuple(findings[:listed]),
            findings_omitted=max(0, len(findings) - listed), changes=tuple(changes[:shown]),
            earlier_receipts=self._standing_receipts(institution, p.from_addr) if a.reply == "late" else (),
            unreadable_reasons=tuple(unreadable[:listed]),
            scans_received=tuple(s.filename for s in a.parts.scans),
            correction_workbooks=tuple(workbooks), notes=self._school_notes(result),
            lead=self._lead_lines(result), programs=programs, question_forwarded=_asks_with_form(a))
        self._enqueue(msg_pk, ctx)

    def _refused_cells(self, a: Assessment,
                       result: SubmissionResult | None) -> dict[int, list[tuple[int, str, str, str]]]:
        """Rows the ledger refused (identity number registered before, by another school or
        earlier in this mail), per verdict: (sheet row, column label, cell, message)."""
        if result is None or not result.conflicts:
            return {}
        out: dict[int, list[tuple[int, str, str, str]]] = {}
        for c in result.conflicts:
            req = c.request
            places = [(i, v) for i, (_, v) in enumerate(a.verdicts)
                      if any(r.row == req.row and r.id_number == req.id_number for r in v.rows)]
            if not places:
                continue
            # a repeat within this mail is the later of the rows carrying the number
            index, v = places[-1] if c.other_nominee is None else places[0]
            label, coordinate = "身份证号", ""
            if v.reading is not None:
                label = v.reading.labels.get("id_number", label)
                form_row = next((fr for fr in v.reading.rows if fr.row == req.row), None)
                cell = form_row.cells.get("id_number") if form_row else None
                coordinate = cell.coordinate if cell else ""
            message = CONFLICT_MESSAGE if c.other_nominee is not None else REPEATED_MESSAGE
            out.setdefault(index, []).append((req.row, label, coordinate, message))
        return out

    def _refused_ahead(self, a: Assessment, institution: str) -> bool:
        """Whether the ledger will refuse a row of this mail (another school's identity number,
        or one repeated in the mail): known before anything is recorded, so the message is
        recorded once with its final outcome."""
        assert a.parsed is not None
        numbers = [r.id_number for _, v in a.verdicts if v.outcome in (Outcome.OK, Outcome.NEEDS_CORRECTION)
                   for r in v.rows if r.ok and r.program_matched]
        released = f"sender:{a.parsed.from_addr.lower()}" if institution else ""
        return self.ledger.any_refused(numbers, institution_key(institution, a.parsed.from_addr),
                                       ignore_key=released)

    def _lead_lines(self, result: SubmissionResult | None) -> tuple[str, ...]:
        """Lines of their own before the list: the mail replaced the school's list."""
        if result is None or not result.withdrawn:
            return ()
        return (f"本邮件来自贵单位报名联系邮箱，已按贵单位的完整名单处理：此前登记的{len(result.withdrawn)}名教师"
                "不在本表中或改报了项目，已相应取消或更改（见下方变更情况）。如非本意，请在截止时间前重新发送"
                "包含全部教师的汇总表；重新登记的教师按重新收到的时间排序。",)

    def _staff_mail_item(self, msg_pk: int, receipt: str, a: Assessment, institution: str) -> None:
        """A mail a person must read: a question or request without a form, or a form mail that
        also asks something."""
        assert a.parsed is not None and a.parts is not None
        p = a.parsed
        item = dict(actor=self.actor, rules_version=self.version, institution=institution,
                    institution_key=institution_key(institution, p.from_addr) if institution else "",
                    sender=p.from_addr, message=msg_pk, receipt=receipt)
        if a.outcome == "for_staff":
            staff_items.add(self.state, "question",
                            f"来信（无报名表）主题“{p.subject[:60]}”：{first_lines(p.subject, a.parts.body_text)}",
                            detail={"intent": a.reason}, **item)
        else:  # a form that also asks: the form was handled, the question waits for a person
            staff_items.add(self.state, "question",
                            f"来信（附报名表，已按报名表处理并答复）另有询问，主题“{p.subject[:60]}”："
                            f"{first_lines(p.subject, a.parts.body_text)}",
                            detail={"intent": "asks_with_form", "outcome": a.outcome}, **item)

    # -- only the school changes its list ---------------------------------------------------
    def _school_notes(self, result: SubmissionResult | None) -> tuple[str, ...]:
        """What the sender is told about the parts of its mail that did not change the list."""
        if result is None:
            return ()
        notes: list[str] = []
        if result.held_unnamed:
            notes.append("汇总表未填写“填报单位”：请在表头填写学校全称后重新发送，"
                         "教师按重新收到的时间排序。")
        if result.held_by_arrival:
            notes.append(f"本邮件的到达时间早于部分已获通知报名成功的教师，但较晚才得到处理；为不改动已通知的结果，"
                         f"标注“待工作人员审核”的{len(result.held_by_arrival)}名教师由工作人员决定，"
                         "结果将另行邮件通知。")
        if result.addition and result.resubmission and result.by_contact:
            notes.append("本邮件按补报处理：只新增教师，贵单位此前登记的教师均保持不变。")
        if not result.by_contact:
            notes.append("贵单位的报名名单由首次为贵单位登记教师的邮箱（报名联系邮箱）维护；本邮件来自其他邮箱，"
                         "只能新增教师，不会删除或更改已登记的教师；本邮件的情况已告知贵单位报名联系邮箱。")
            if result.kept:
                notes.append(f"表中另有{result.kept}名教师已由贵单位登记，未作改动，也不在此列出。")
        if result.held_whole:
            notes.append(f"本邮件新增{result.new_teachers}名教师，超过单封邮件{self.rules.intake.max_new_per_mail}名的"
                         "上限，全部暂不占用名额，已转工作人员审核，审核结果将另行邮件通知。")
        elif len(result.held) > len(result.held_by_arrival) and not result.held_unnamed:
            notes.append("标注“待工作人员审核”的教师超出贵单位前期上报的培训需求数，暂不占用名额，已转工作人员审核。")
        if result.asked:
            notes.append(f"如按本邮件的汇总表替换名单，将删除或更改{len(result.asked)}名已登记的教师：未执行，"
                         "已转工作人员处理。")
        if result.others_affected:
            notes.append(f"另有{len(result.others_affected)}名由其他邮箱登记的贵单位教师已按本次名单删除或更改，"
                         "已分别通知原登记邮箱。")
        return tuple(notes)

    def _school_follow_up(self, msg_pk: int, receipt: str, fetched: FetchedMessage, a: Assessment,
                          institution: str, result: SubmissionResult) -> None:
        """Staff items and notices for what one mail did to a school's list (same transaction)."""
        assert a.parsed is not None
        sender = a.parsed.from_addr
        key = institution_key(institution, sender)
        item = dict(actor=self.actor, rules_version=self.version, institution=institution,
                    institution_key=key, sender=sender, message=msg_pk, receipt=receipt)
        added = sum(1 for c in result.changes if c.kind == "added")
        held = len(result.held)
        if not result.by_contact:
            staff_items.add(self.state, "other_sender",
                            f"非本校报名联系邮箱发来报名表：新增{added}名（其中待审核{held}名），"
                            f"按该表替换名单将删除或更改{len(result.asked)}名（未执行），已有{result.kept}名未改动；"
                            "已通知本校报名联系邮箱",
                            detail={"added": added, "held": held, "asked": len(result.asked), "kept": result.kept},
                            **item)
        if not result.by_contact and result.contact:  # '' once purged, until staff name a new one
            self._queue_notice(msg_pk, SchoolNotice(
                "other_sender", result.contact, institution, sender, receipt,
                fetched.arrived_at.astimezone(self.settings.tz), campaign_title=self.rules.campaign.title,
                added=added, held=held, asked=len(result.asked), kept=result.kept,
                help_contact=self.rules.intake.help_contact))
        if result.held_whole:
            staff_items.add(self.state, "too_many",
                            f"一封邮件新增{result.new_teachers}名教师，超过上限{self.rules.intake.max_new_per_mail}名，"
                            f"全部待审核（未占名额）", detail={"new": result.new_teachers}, **item)
        elif result.held_unnamed:
            staff_items.add(self.state, "institution_missing",
                            f"汇总表未填写填报单位：{len(result.held)}名教师待审核（未占名额），已请发件人补填后重发",
                            detail={"held": len(result.held)}, **item)
        elif len(result.held) > len(result.held_by_arrival):
            per_program: dict[str, int] = {}
            for pl in result.held:
                if pl in result.held_by_arrival:
                    continue
                per_program[pl.request.program] = per_program.get(pl.request.program, 0) + 1
            listed = "，".join(f"{prog}{n}名" for prog, n in per_program.items())
            staff_items.add(self.state, "over_demand",
                            f"超出该校上报的培训需求数，待审核（未占名额）：{listed}", detail=per_program, **item)
        if result.held_by_arrival:
            per_program = {}
            for pl in result.held_by_arrival:
                per_program[pl.request.program] = per_program.get(pl.request.program, 0) + 1
            listed = "，".join(f"{prog}{n}名" for prog, n in per_program.items())
            arrived = fetched.arrived_at.astimezone(self.settings.tz).strftime("%Y-%m-%d %H:%M:%S")
            staff_items.add(self.state, "arrival_order",
                            f"邮件到达时间{arrived}（UID {fetched.uid}）早于已获通知报名成功的教师，但较晚处理；"
                            f"所报项目已满，以下教师待决定（未占名额，未改动已报名成功者）：{listed}",
                            detail={"uid": fetched.uid, "arrived_at": _aware_utc(fetched.arrived_at),
                                    "programs": per_program}, **item)
        for c in result.conflicts:
            if c.other_nominee is None:
                continue
            first = self.state.db.conn.execute(
                "SELECT receipt, sender FROM messages WHERE id = ?", [c.other_message]).fetchone()
            staff_items.add(self.state, "conflict",
                            f"身份证号{c.request.id_masked}重复：先报 {c.other_institution or '未填单位'}（{c.other_program}，"
                            f"回执{first[0] if first else '?'}，已保留）；后报 {institution or '未填单位'}"
                            f"（{c.request.program}，回执{receipt}，未登记，已请其核对）",
                            detail={"first_nominee": c.other_nominee, "first_receipt": first[0] if first else "",
                                    "first_sender": first[1] if first else ""}, **item)
        if result.by_contact and result.asked:  # an addition also asking to move someone
            listed = "；".join(f"{c.name}（{c.id_masked}，{c.detail}）" for c in result.asked)
            staff_items.add(self.state, "change_request",
                            f"补报邮件中另要求更改{len(result.asked)}名已登记教师（未执行）：{listed}",
                            detail={"asked": len(result.asked)}, **item)
        if result.withdrawn:
            listed = "；".join(f"{c.name}（{c.id_masked}，{'取消' if c.kind == 'removed' else '改报'}{c.detail}）"
                              for c in result.withdrawn)
            staff_items.add(self.state, "withdrawal",
                            f"报名联系邮箱的新名单取消或更改{len(result.withdrawn)}名教师：{listed}",
                            detail={"withdrawn": len(result.withdrawn)}, **item)
        by_sender: dict[str, list[ChangeLine]] = {}
        for aff in result.others_affected:
            if not aff.sender:  # purged
                continue
            c = aff.change
            by_sender.setdefault(aff.sender.lower(), []).append(ChangeLine(c.kind, aff.name, aff.id_masked, c.detail))
        for to, changes in by_sender.items():
            self._queue_notice(msg_pk, SchoolNotice(
                "list_changed", to, institution, sender, receipt, fetched.arrived_at.astimezone(self.settings.tz),
                campaign_title=self.rules.campaign.title, changes=tuple(changes),
                help_contact=self.rules.intake.help_contact))

    def _queue_notice(self, msg_pk: int, notice: SchoolNotice) -> None:
        """Queue a notice about a school's list: at most ``reply.max_per_sender_per_day`` notices
        to one address a day, counted apart from its replies (forged mail naming a school must
        not use up the school's own replies)."""
        notice = sender_safe_notice(notice)  # the school's name as a form wrote it: no link
        since = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat(timespec="seconds")
        kind = f"notice_{notice.kind}"
        if self.state.notices_to_since(notice.to_address, since) >= self.settings.reply.max_per_sender_per_day:
            self.state.add_event("reply_suppressed", {"kind": kind, "why": "per-sender daily limit"},
                                 actor=self.actor, rules_version=self.version, message=msg_pk)
            return
        subject = (f"【报名名单提醒】{notice.institution}：收到其他邮箱以贵单位名义发送的报名表（回执 {notice.receipt}）"
                   if notice.kind == "other_sender" else
                   f"【报名名单变更】{notice.institution}：贵邮箱登记的教师有变更（回执 {notice.receipt}）")
        rendered = self.renderer.render_page(kind, subject, {f.name: getattr(notice, f.name) for f in fields(notice)})
        raw = build_digest_message(rendered, to_addresses=[notice.to_address],
                                   from_address=self.settings.reply.from_address,
                                   from_name=self.settings.reply.from_name,
                                   message_id_domain=self.settings.reply.message_id_domain)
        self.state.insert("outbox", {
            "message": msg_pk, "kind": kind, "to_address": notice.to_address, "subject": rendered.subject,
            "reply_message_id": "", "raw": raw, "status": "queued", "next_attempt_at": utc_now(),
            "created_at": utc_now()})
        self.state.add_event("reply_queued", {"kind": kind}, actor=self.actor, rules_version=self.version,
                             message=msg_pk)
    def _standing_receipts(self, institution: str, sender: str) -> tuple[str, ...]:
        """Receipts of the mails whose nominees of this school are seated or waiting."""
        return tuple(r["receipt"] for r in self.state.query(
            "SELECT DISTINCT m.receipt FROM nominees n JOIN messages m ON m.id = n.message "
            "WHERE n.institution_key = ? AND n.status IN ('seated', 'waiting') ORDER BY m.id",
            [institution_key(institution, sender)]))

    def _correction_copy(self, att: Attachment, v: FormVerdict,
                         cells: list[tuple[str, str]]) -> tuple[str, bytes] | None:
        """The sender's workbook with the cells to fix highlighted: the original for xlsx, an
        xlsx copy of the sheet's values for xls/et/ods."""
        reading = v.reading
        if reading is None:
            return None
        limits = self.settings.limits
        if reading.file_format in ("xlsx", "xlsm"):
            work: Callable[..., tuple[str, bytes] | None] = _highlighted_copy
        elif reading.file_format in ("xls", "ods"):
            work = _rebuilt_copy
        else:
            return None
        try:  # the sender's bytes are loaded again: contained like every read of them
            return contained.pool_of(limits).call(work, att.data, att.filename, cells, sheet=reading.sheet,
                                                  limits=limits, timeout=limits.max_seconds_per_message)
        except (contained.WorkerFailed, FormError) as exc:
            self.log.warning("correction_copy_failed", file=att.filename, reason=str(exc))
            return None

    def queue_promotion(self, promo: Any) -> None:
        """Tell a promoted nominee's sender (a staff decision freed the seat; same transaction)."""
        self._queue_promotion(promo.message, [promo])

    def _queue_promotion(self, msg_pk: int, promos: list[Any]) -> None:
        """One mail to one address listing every teacher of its that one event promoted
        (threaded under the earliest of their mails)."""
        promo = min(promos, key=lambda pr: pr.message)
        orig = next(self.state.query(
            "SELECT message_id, subject, arrived_at, receipt, sender_name FROM messages WHERE id = ?",
            [promo.message]))
        lines = tuple(self._nominee_line(None, pr.name, pr.program, "seated", None, pr.id_masked)
                      for pr in promos)
        ctx = self._base_context(
            "promotion", orig["receipt"], datetime.fromisoformat(orig["arrived_at"]), promo.sender,
            orig["sender_name"], orig["subject"], orig["message_id"], (), institution=promo.institution,
            nominees=lines)
        self._enqueue(msg_pk, ctx)

    def _enqueue(self, msg_pk: int, ctx: ReplyContext) -> None:
        since = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat(timespec="seconds")
        if self.state.replies_to_since(ctx.to_address, since) >= self.settings.reply.max_per_sender_per_day:
            self.state.add_event("reply_suppressed", {"kind": ctx.kind, "why": "per-sender daily limit"},
                                 actor=self.actor, rules_version=self.version, message=msg_pk)
            self.log.warning("reply_suppressed", message=msg_pk, kind=ctx.kind, reason="daily limit")
            return
        rendered = self.renderer.render(ctx)
        reply_id = new_message_id(self.settings.reply.message_id_domain)
        raw = build_message(ctx, rendered, from_address=self.settings.reply.from_address,
                            from_name=self.settings.reply.from_name,
                            message_id_domain=self.settings.reply.message_id_domain, message_id=reply_id)
        self.state.insert("outbox", {
            "message": msg_pk, "kind": ctx.kind, "to_address": ctx.to_address,
            "subject": rendered.subject, "reply_message_id": reply_id, "raw": raw,
            "status": "queued", "next_attempt_at": utc_now(), "created_at": utc_now()})
        self.state.add_event("reply_queued", {"kind": ctx.kind}, actor=self.actor,
                             rules_version=self.version, message=msg_pk)

    # -- send and settle ------------------------------------------------------------------
    def send(self) -> SendReport:
        smtp = self.settings.smtp
        sent_folder = self.settings.imap.sent_folder if self._mbox.kind == "imap" else ""

        def copy_to_sent(row: dict[str, Any]) -> None:
            if sent_folder:
                try:
                    self.source.append(sent_folder, row["raw"])
                except MailboxError as exc:
                    self.log.warning("sent_copy_failed", outbox=row["id"], error=str(exc))

        result = send_pending(self.state, self.transport,
                              envelope_from=smtp.envelope_from or self.settings.reply.from_address,
                              max_attempts=smtp.max_attempts, retry_base_seconds=smtp.retry_base_seconds,
                              rules_version=self.version, after_send=copy_to_sent, log=self.log,
                              actor=self.actor, max_per_hour=self.settings.reply.max_per_hour)
        summed = SendReport(*(a + b for a, b in zip(astuple(self._cycle_sent), astuple(result))))
        self._cycle_sent = replace(summed, held=result.held)  # held: how many wait now, not a sum
        return result

    def flush_settle(self) -> None:
        """Move (or flag) the recorded messages waiting to be settled: one command per folder,
        then one transaction marking them.  A failure leaves them for ``settle_pending``."""
        pending, self._to_settle = self._to_settle, []
        by_folder: dict[str, list[tuple[str, int]]] = {}
        for key, msg_pk, folder in pending:
            by_folder.setdefault(folder, []).append((key, msg_pk))
        done: list[int] = []
        for folder, items in by_folder.items():
            keys = [k for k, _ in items]
            try:
                if self._mbox.settle == "flag":
                    for key in keys:
                        self.source.flag(key, "\\Flagged")
                else:
                    self.source.settle_many(keys, folder)
            except MailboxError as exc:
                self.log.warning("settle_failed", messages=[m for _, m in items], folder=folder, error=str(exc))
                continue
            done += [m for _, m in items]
        if done:
            with self.state.transaction():
                self.state.mark_settled_many(done)

    def settle_pending(self) -> None:
        """Retry moving messages whose record committed but whose move did not happen."""
        validity, _ = self.state.cursor(self.source.name)
        for row in self.state.unsettled(self.source.name):
            if validity is not None and row["uidvalidity"] != validity:
                with self.state.transaction():
                    self.state.mark_settled(row["id"])  # the UID means nothing any more
                continue
            self._to_settle.append((row["source_key"], row["id"], row["settle_folder"]))
        self.flush_settle()


# The correction workbooks are made in a reader worker, which imports openpyxl with its first
# correction copy (``contained`` does not preload it); the daemon imports it only for a blank form ("how do I register"), so a poll
# starts without it (``tests/test_daemon.py`` checks the imports of a poll).
def _highlighted_copy(data: bytes, filename: str, cells: list[tuple[str, str]], *, sheet: str,
                      limits: Any) -> tuple[str, bytes] | None:
    """(In a reader worker) the sender's xlsx with the cells to fix highlighted."""
    from mailbot.replies.correction_workbook import highlight_workbook

    return highlight_workbook(data, filename, cells, sheet=sheet, limits=limits)


def _rebuilt_copy(data: bytes, filename: str, cells: list[tuple[str, str]], *, sheet: str,
                  limits: Any) -> tuple[str, bytes] | None:
    """(In a reader worker) an xlsx copy of an xls/ods sheet's values, cells to fix marked."""
    from mailbot.replies.correction_workbook import rebuild_workbook

    return rebuild_workbook(sheet_cells(data, sheet, limits=limits), filename, cells, sheet=sheet)


FORM_ROW_COLUMNS = ("form", "row", "program", "program_matched", "name", "gender", "position", "email",
                    "id_number", "id_masked", "phone", "ok", "findings")


class _Rollback(Exception):
    """Raised inside a dry-run transaction to roll it back."""
