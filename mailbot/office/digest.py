"""The staff digest: seats per program as running totals, what happened since the last digest,
what needs a person, which schools registered (and which expected ones are silent), and whether
polling is healthy.

What needs a person: the open items of the staff list (``mailbot.office.staff_items``), plus
what the records show without an item: failed or quarantined mail, replies whose delivery
failed or is unknown, domain mismatches and conflicts of the period (a conflict names both
schools), late mail nobody admitted, corrections asked for and not yet answered by a later form
from that sender or school, forms without 填报单位.  Each line has the school, the sender, the
receipt and its age.

Everything in it is masked and Chinese; it is queued in the outbox like a reply (kind
``digest``), one row per staff address, so it is sent (and audited) the same way.  The event
``digest_queued`` marks when one was sent: the next digest covers the time since.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone, tzinfo

from mailbot.config import Settings
from mailbot.masking import mask_id, mask_phone
from mailbot.office import health, staff_items
from mailbot.office.roster_files import roster_xlsx
from mailbot.office.rosters import by_program, roster_lines
from mailbot.replies.model import (
    AttentionItem,
    DigestContext,
    NomineeChange,
    PollError,
    ProgramSeats,
    SchoolLine,
    WaitingLine,
)
from mailbot.replies.render import OUTCOME_LABELS, ReplyRenderer, RenderedReply, build_digest_message
from mailbot.rules import CampaignRules, school_key
from mailbot.state.outbox import held_by_budget
from mailbot.state.store import State, utc_now

PURGED_NAME = "（已清除）"  # a nominee's name after ``mailbot purge``


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def last_digest_at(state: State) -> datetime | None:
    """When the last digest was queued to staff (None: never)."""
    row = state.db.conn.execute(
        "SELECT coalesce(json_extract(detail, '$.until'), at) FROM events WHERE kind = 'digest_queued' "
        "ORDER BY id DESC LIMIT 1").fetchone()
    return datetime.fromisoformat(row[0]) if row and row[0] else None


# an SMTP reply code (4xx/5xx, then a space or dash) and its enhanced status code, if any
_SMTP_CODE_RE = re.compile(r"(?<![\d.:])([45]\d\d)[ -](?:\D{0,3}([45]\.\d{1,3}\.\d{1,3}))?")


def delivery_summary(status: str, error: str) -> str:
    """Why a reply did not (surely) arrive, in Chinese for staff; the technical detail shrinks
    to the SMTP codes (the full text stays in ``outbox.last_error``)."""
    if status in ("unknown", "sending"):
        if error.startswith("interrupted"):
            return "发送过程中系统中断，无法确认对方是否收到，请核实后再决定是否重发"
        return "发送时连接中断，无法确认对方是否收到，请核实后再决定是否重发"
    m = _SMTP_CODE_RE.search(error)
    if m:
        code = m.group(1) + (f"，{m.group(2)}" if m.group(2) else "")
        return f"对方邮件服务器拒收（代码{code}），请核对收件地址或改用其他方式联系"
    return "多次发送未成功，请核对收件地址或改用其他方式联系"


def build_digest(state: State, rules: CampaignRules, settings: Settings, *,
                 since: datetime | None = None, now: datetime | None = None) -> DigestContext:
    """Collect the digest: running totals as of ``now``, events since ``since`` (default: the
    last digest sent, else the last 24 hours)."""
    tz = settings.tz
    now = (now or datetime.now(timezone.utc)).astimezone(tz)
    since = (since or last_digest_at(state) or now - timedelta(days=1)).astimezone(tz)
    lo, hi = _iso(since), _iso(now)

    def when(iso: str | None) -> datetime | None:
        return datetime.fromisoformat(iso).astimezone(tz) if iso else None

    schools = _schools(state)
    counts = tuple((r["outcome"], r["n"]) for r in state.query(
        "SELECT outcome, count(*) AS n FROM messages WHERE recorded_at >= ? AND recorded_at <= ? "
        "GROUP BY outcome ORDER BY n DESC, outcome", [lo, hi]))
    return DigestContext(
        campaign=rules.campaign.title, generated_at=now, period_start=since, period_end=now,
        outcome_counts=counts, programs=_programs(state, rules), attention=_attention(state, lo, hi, tz),
        deadline=rules.deadline.aware, changes=_changes(state, lo, hi, when), schools=schools,
        expected_schools=len(rules.expected_institutions), silent_schools=rules.silent_institutions(
            s.institution for s in schools),
        last_poll_ok=ok.astimezone(tz) if (ok := health.last_ok(state)) else None,
        poll_errors=tuple(PollError(e.at.astimezone(tz), e.summary) for e in health.errors_since(state, since)),
        chain_head=grouped_head(state.chain_head()),
        sender_trust_configured=bool(settings.trust.authserv_ids),
        replies_held=held_by_budget(state), reply_budget_per_hour=settings.reply.max_per_hour)


def grouped_head(head: str) -> str:
    """The chain head in groups of 8 (never 11 digits in a row, so masking leaves it whole);
    ``mailbot verify --head`` accepts it as printed."""
    return " ".join(head[i:i + 8] for i in range(0, len(head), 8))


def _programs(state: State, rules: CampaignRules) -> tuple[ProgramSeats, ...]:
    """Every program of the rules, in their order: seats taken, the waiting list (in order), held."""
    counts = {(r["program"], r["status"]): r["n"] for r in state.query(
        "SELECT program, status, count(*) AS n FROM nominees GROUP BY program, status")}
    waiting: dict[str, list[WaitingLine]] = {}
    for r in state.query(
            "SELECT n.program, n.name, n.id_masked, n.institution, m.receipt FROM nominees n "
            "JOIN messages m ON m.id = n.message WHERE n.status = 'waiting' "
            "ORDER BY n.program, n.requested_at, n.request_uid, n.request_row, n.id"):
        line = waiting.setdefault(r["program"], [])
        line.append(WaitingLine(len(line) + 1, r["name"] or PURGED_NAME, r["id_masked"], r["institution"],
                                r["receipt"]))
    return tuple(ProgramSeats(p.name, p.host, counts.get((p.name, "seated"), 0), p.seats or 0,
                              counts.get((p.name, "waiting"), 0), counts.get((p.name, "held"), 0),
                              tuple(waiting.get(p.name, ()))) for p in rules.programs)


def _changes(state: State, lo: str, hi: str,
             when: Callable[[str], datetime | None]) -> tuple[NomineeChange, ...]:
    """Nominees seated, put on the waiting list, promoted, held or withdrawn in the period."""
    out: list[NomineeChange] = []
    for r in state.query(
            "SELECT e.kind, e.detail, e.at, n.name, n.id_masked, n.institution, n.program, "
            "m.receipt AS own_receipt, em.receipt AS event_receipt FROM events e "
            "JOIN nominees n ON n.id = e.nominee JOIN messages m ON m.id = n.message "
            "LEFT JOIN messages em ON em.id = e.message "
            "WHERE e.kind IN ('nominee_seated','nominee_waiting','nominee_held','nominee_withdrawn') "
            "AND e.at >= ? AND e.at <= ? ORDER BY e.id", [lo, hi]):
        kind = r["kind"].removeprefix("nominee_")
        was = _detail_from(r["detail"])
        if kind == "seated" and was == "waiting":
            kind = "promoted"
        elif kind != "withdrawn" and was is not None:
            continue  # a move between other statuses (e.g. a program change) is told by its own event
        receipt = (r["event_receipt"] or r["own_receipt"]) if kind == "withdrawn" else r["own_receipt"]
        out.append(NomineeChange(kind, r["name"] or PURGED_NAME, r["id_masked"], r["institution"],  # type: ignore[arg-type]
                                 r["program"], receipt, when(r["at"])))
    return tuple(out)


def _detail_from(detail: str) -> str | None:
    try:
        value = json.loads(detail).get("from")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _attention(state: State, lo: str, hi: str, tz: tzinfo) -> tuple[AttentionItem, ...]:  # noqa: C901
    def when(iso: str | None) -> datetime | None:
        return datetime.fromisoformat(iso).astimezone(tz) if iso else None

    items: list[AttentionItem] = []
    # The staff list: every open item, however old (an item stays until staff close it).
    items += [_with_institution(staff_items.attention_item(item, tz), item.institution)
              for item in staff_items.list_open(state)]
    # Failed or quarantined mail recorded without a staff item (before the staff list existed).
    for r in state.query(
            "SELECT receipt, sender, institution, outcome, recorded_at FROM messages m "
            "WHERE outcome IN ('failed','quarantined') AND recorded_at >= ? AND NOT EXISTS "
            "(SELECT 1 FROM staff_items s WHERE s.message = m.id) ORDER BY id", [lo]):
        summary = "邮件已隔离，未处理" if r["outcome"] == "quarantined" else "邮件处理失败，未登记"
        items.append(AttentionItem(r["outcome"], summary, r["receipt"], r["sender"], when(r["recorded_at"]),
                                   r["institution"]))
    # Replies (and staff mail) whose delivery failed or is unknown, until staff resend or resolve
    # them (``mailbot decide resend|resolve <reply id>``).
    for r in state.query(
            "SELECT o.id, o.kind, o.status, o.last_error, o.to_address, o.created_at, m.receipt, m.institution "
            "FROM outbox o LEFT JOIN messages m ON m.id = o.message "
            "WHERE o.status IN ('unknown','failed','sending') ORDER BY o.id"):
        category = "reply_failed" if r["status"] == "failed" else "reply_unknown"
        what = OUTCOME_LABELS.get(r["kind"], "")
        summary = f"回复#{r['id']}（{what}）：" if what else f"回复#{r['id']}："  # as `mailbot decide resend` takes it
        items.append(AttentionItem(category, summary + delivery_summary(r["status"], r["last_error"]),
                                   r["receipt"] or "", r["to_address"], when(r["created_at"]),
                                   r["institution"] or ""))
    for r in state.query(
            "SELECT receipt, sender, institution, recorded_at FROM messages "
            "WHERE domain_mismatch = 1 AND recorded_at >= ? AND recorded_at <= ? ORDER BY id", [lo, hi]):
        items.append(AttentionItem("domain_mismatch", f"表内填报单位“{r['institution']}”与发件邮箱域名不一致",
                                   r["receipt"], r["sender"], when(r["recorded_at"]), r["institution"]))
    # Late mail nobody admitted (no nominee comes from it).
    for r in state.query(
            "SELECT m.receipt, m.sender, m.institution, m.arrived_at, m.recorded_at FROM messages m "
            "WHERE m.outcome = 'late' AND NOT EXISTS (SELECT 1 FROM nominees n WHERE n.message = m.id) "
            "ORDER BY m.id"):
        items.append(AttentionItem("late", f"截止后收到报名表（{when(r['arrived_at']):%m月%d日 %H:%M}到达），未登记",
                                   r["receipt"], r["sender"], when(r["recorded_at"]), r["institution"]))
    # Corrections asked for and not yet answered by a later form from that sender or school.
    for r in state.query(
            "SELECT m.receipt, m.sender, m.institution, m.recorded_at FROM messages m "
            "WHERE m.outcome = 'correction' AND NOT EXISTS (SELECT 1 FROM messages later "
            "  WHERE later.id > m.id AND later.outcome IN ('accepted','correction','late') "
            "  AND (lower(later.sender) = lower(m.sender) OR (m.institution != '' AND later.institution = m.institution))) "
            "ORDER BY m.id"):
        items.append(AttentionItem("correction_open", "已回复要求修改，尚未收到修改后的报名表",
                                   r["receipt"], r["sender"], when(r["recorded_at"]), r["institution"]))
    # Forms registered without 填报单位 (rules with ``form.institution_required = false``: the
    # school was taken from the sender's address; with it required, such a form is a correction).
    for r in state.query(
            "SELECT m.receipt, m.sender, m.recorded_at, f.filename FROM forms f JOIN messages m ON m.id = f.message "
            "WHERE f.institution = '' AND f.outcome = 'ok' "
            "AND NOT EXISTS (SELECT 1 FROM staff_items s WHERE s.message = m.id AND s.kind = 'institution_missing') "
            "AND m.recorded_at >= ? AND m.recorded_at <= ? ORDER BY f.id", [lo, hi]):
        items.append(AttentionItem("no_institution", f"报名表“{r['filename']}”未填写填报单位，请核实学校",
                                   r["receipt"], r["sender"], when(r["recorded_at"])))
    return tuple(items)


def _with_institution(item: AttentionItem, institution: str) -> AttentionItem:
    """A staff-list item with its school as a field of its own (its summary no longer repeats it)."""
    summary = item.summary.removeprefix(f"{institution}：") if institution else item.summary
    return replace(item, summary=summary, institution=institution)


def _schools(state: State) -> tuple[SchoolLine, ...]:
    """Schools that sent a form (registered or not: a conflict or a correction counts), with
    their teachers on the list and latest receipt, in order of first mail.  Names compare as
    ``school_key``."""
    active: dict[str, int] = {}
    for r in state.query("SELECT institution, count(*) AS n FROM nominees "
                         "WHERE status IN ('seated','waiting','held') GROUP BY institution"):
        active[school_key(r["institution"])] = active.get(school_key(r["institution"]), 0) + r["n"]
    first: dict[str, tuple[str, str]] = {}  # key -> (name as first written, latest receipt)
    for r in state.query("SELECT institution, receipt FROM messages WHERE institution != '' "
                         "AND outcome IN ('accepted','correction','late') ORDER BY id"):
        key = school_key(r["institution"])
        first[key] = (first[key][0] if key in first else r["institution"], r["receipt"])
    return tuple(SchoolLine(name, active.get(key, 0), receipt) for key, (name, receipt) in first.items())


def render_digest(renderer: ReplyRenderer, digest: DigestContext) -> RenderedReply:
    return renderer.render_digest(digest)


def roster_attachment(state: State, rules: CampaignRules, settings: Settings,
                      now: datetime) -> tuple[str, bytes]:
    """The current roster as an xlsx to attach to the digest: the roster staff export (one sheet
    per program, every program), with identity numbers and phones masked (DECISIONS, "Privacy
    in what staff receive": full numbers leave only through ``export roster`` and ``rosters send``)."""
    lines = [replace(line, id_number=mask_id(line.id_number), phone=mask_phone(line.phone))
             for line in roster_lines(state, rules, settings.tz)]
    sheets = by_program(rules, lines, always=tuple(p.name for p in rules.programs))
    return f"报名名单（脱敏）-{now.astimezone(settings.tz):%Y%m%d}.xlsx", roster_xlsx(sheets)


def queue_digest(state: State, rules: CampaignRules, settings: Settings, renderer: ReplyRenderer, *,
                 since: datetime | None = None) -> list[int]:
    """Queue the digest to every staff address; returns the outbox ids (none without staff
    addresses).  Recorded as ``digest_queued`` (with the period), which starts the next
    digest's period."""
    if not settings.staff_addresses:
        return []
    digest = build_digest(state, rules, settings, since=since)
    rendered = renderer.render_digest(digest)
    raw = build_digest_message(rendered, to_addresses=list(settings.staff_addresses),
                               from_address=settings.reply.from_address, from_name=settings.reply.from_name,
                               message_id_domain=settings.reply.message_id_domain,
                               attachments=(roster_attachment(state, rules, settings, digest.period_end),))
    version = f"{rules.campaign.id}@{rules.campaign.version}"
    with state.transaction():
        ids = [state.insert("outbox", {
                "message": None, "kind": "digest", "to_address": to, "subject": rendered.subject,
                "reply_message_id": "", "raw": raw, "status": "queued", "next_attempt_at": utc_now(),
                "created_at": utc_now()}) for to in settings.staff_addresses]
        state.add_event("digest_queued", {"to": len(settings.staff_addresses), "since": _iso(digest.period_start),
                                          "until": _iso(digest.period_end)}, actor="daemon", rules_version=version)
    return ids

