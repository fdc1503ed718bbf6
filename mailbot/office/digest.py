"""The staff digest: what happened in a period, seats per program, what needs a person (the
open items of the staff list, ``mailbot.office.staff_items`` (conflicts, withdrawals, questions
among them), plus replies stuck in the outbox and domain mismatches of the period).

Everything in it is masked; it is queued in the outbox like a reply (kind ``digest``), one
row per staff address, so it is sent (and audited) the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mailbot.config import Settings
from mailbot.office import staff_items
from mailbot.state.ledger import SeatLedger
from mailbot.masking import mask_text
from mailbot.replies.render import ReplyRenderer, RenderedReply, build_digest_message
from mailbot.replies.model import AttentionItem, DigestContext, ProgramSeats
from mailbot.rules import CampaignRules
from mailbot.state.outbox import held_by_budget
from mailbot.state.store import State, utc_now


def build_digest(state: State, rules: CampaignRules, settings: Settings, *,
                 since: datetime | None = None, now: datetime | None = None) -> DigestContext:
    """Collect the digest for the period ``since``..``now`` (default: the last 24 hours)."""
    tz = settings.tz
    now = (now or datetime.now(timezone.utc)).astimezone(tz)
    since = (since or now - timedelta(days=1)).astimezone(tz)
    lo, hi = since.astimezone(timezone.utc).isoformat(timespec="seconds"), now.astimezone(timezone.utc).isoformat(timespec="seconds")
    counts = tuple((r["outcome"], r["n"]) for r in state.query(
        "SELECT outcome, count(*) AS n FROM messages WHERE recorded_at >= ? AND recorded_at <= ? "
        "GROUP BY outcome ORDER BY n DESC, outcome", [lo, hi]))
    ledger = SeatLedger(state, {p.name: p.seats or 0 for p in rules.programs}, rules_version="")
    hosts = {p.name: p.host for p in rules.programs}
    programs = tuple(ProgramSeats(s["program"], hosts[s["program"]], s["seated"], s["capacity"], s["waiting"])
                     for s in ledger.program_summary())
    attention: list[AttentionItem] = []

    def when(iso: str | None) -> datetime | None:
        return datetime.fromisoformat(iso).astimezone(tz) if iso else None

    # The staff list: every open item, however old (an item stays until staff close it).
    attention += [staff_items.attention_item(item, tz) for item in staff_items.list_open(state)]
    # Failed or quarantined mail recorded without a staff item (before the staff list existed).
    for r in state.query("SELECT receipt, sender, reason, outcome, recorded_at FROM messages m "
                      "WHERE outcome IN ('failed','quarantined') AND recorded_at >= ? AND NOT EXISTS "
                      "(SELECT 1 FROM staff_items s WHERE s.message = m.id) ORDER BY id", [lo]):
        attention.append(AttentionItem(r["outcome"], mask_text(r["reason"])[:300], r["receipt"], r["sender"],
                                       when(r["recorded_at"])))
    for r in state.query("SELECT o.id, o.status, o.last_error, o.to_address, o.created_at, m.receipt FROM outbox o "
                      "LEFT JOIN messages m ON m.id = o.message WHERE o.status IN ('unknown','failed','sending')"):
        category = "stuck_sending" if r["status"] in ("unknown", "sending") else "failed"
        attention.append(AttentionItem(category, f"回复#{r['id']}（{r['status']}）：{mask_text(r['last_error'])[:200]}",
                                       r["receipt"] or "", r["to_address"], when(r["created_at"])))
    for r in state.query("SELECT receipt, sender, institution, recorded_at FROM messages "
                      "WHERE domain_mismatch = 1 AND recorded_at >= ? ORDER BY id", [lo]):
        attention.append(AttentionItem("domain_mismatch", f"表内填报单位“{r['institution']}”与发件邮箱域名不一致",
                                       r["receipt"], r["sender"], when(r["recorded_at"])))
    return DigestContext(campaign=rules.campaign.title, generated_at=now, period_start=since, period_end=now,
                         outcome_counts=counts, programs=programs, attention=tuple(attention),
                         deadline=rules.deadline.aware, chain_head=grouped_head(state.chain_head()),
                         sender_trust_configured=bool(settings.trust.authserv_ids),
                         replies_held=held_by_budget(state),
                         reply_budget_per_hour=settings.reply.max_per_hour)


def grouped_head(head: str) -> str:
    """The chain head in groups of 8 (never 11 digits in a row, so masking leaves it whole);
    ``mailbot verify --head`` accepts it as printed."""
    return " ".join(head[i:i + 8] for i in range(0, len(head), 8))


def render_digest(renderer: ReplyRenderer, digest: DigestContext) -> RenderedReply:
    return renderer.render_digest(digest)


def queue_digest(state: State, rules: CampaignRules, settings: Settings, renderer: ReplyRenderer) -> int:
    """Queue the digest to every staff address; returns how many were queued."""
    if not settings.staff_addresses:
        return 0
    rendered = renderer.render_digest(build_digest(state, rules, settings))
    raw = build_digest_message(rendered, to_addresses=list(settings.staff_addresses),
                               from_address=settings.reply.from_address, from_name=settings.reply.from_name,
                               message_id_domain=settings.reply.message_id_domain)
    version = f"{rules.campaign.id}@{rules.campaign.version}"
    with state.transaction():
        for to in settings.staff_addresses:
            state.insert("outbox", {
                "message": None, "kind": "digest", "to_address": to, "subject": rendered.subject,
                "reply_message_id": "", "raw": raw, "status": "queued", "next_attempt_at": utc_now(),
                "created_at": utc_now()})
        state.add_event("digest_queued", {"to": len(settings.staff_addresses)}, actor="daemon",
                        rules_version=version)
    return len(settings.staff_addresses)
