"""The staff alert: one short mail per poll listing the items newly put on the staff list.

Queued in the outbox (kind ``staff_alert``, one row per staff address) in the same transaction
that marks the items alerted, so each item is announced exactly once, even across a crash.
Without ``staff_addresses`` nothing is queued; the items still appear in the digest.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timezone

from mailbot.config import Settings
from mailbot.office import staff_items
from mailbot.replies.model import StaffAlertContext
from mailbot.replies.render import ReplyRenderer, build_digest_message
from mailbot.state.store import State, utc_now

MAX_LISTED = 50  # items named in one alert; the rest are counted (all are in the digest)


def queue_staff_alert(state: State, settings: Settings, renderer: ReplyRenderer, *, campaign: str,
                      rules_version: str, actor: str = "daemon") -> int:
    """Queue one alert listing the items not yet announced; returns how many items it lists."""
    if not settings.staff_addresses or not staff_items.any_not_yet_alerted(state):
        return 0  # the common case, without taking the write lock
    with state.transaction():
        new = staff_items.not_yet_alerted(state)
        if not new:
            return 0
        open_total = int(state.db.conn.execute(
            "SELECT count(*) FROM staff_items WHERE status = 'open'").fetchone()[0])
        ctx = StaffAlertContext(campaign=campaign, generated_at=datetime.now(timezone.utc).astimezone(settings.tz),
                                items=tuple(staff_items.attention_item(i, settings.tz) for i in new[:MAX_LISTED]),
                                open_total=open_total, more=max(0, len(new) - MAX_LISTED))
        rendered = renderer.render_page(
            "staff_alert", f"【待人工处理】{campaign}：新增{len(new)}项，共{open_total}项未处理",
            {f.name: getattr(ctx, f.name) for f in fields(ctx)})
        raw = build_digest_message(rendered, to_addresses=list(settings.staff_addresses),
                                   from_address=settings.reply.from_address, from_name=settings.reply.from_name,
                                   message_id_domain=settings.reply.message_id_domain)
        for to in settings.staff_addresses:
            state.insert("outbox", {
                "message": None, "kind": "staff_alert", "to_address": to, "subject": rendered.subject,
                "reply_message_id": "", "raw": raw, "status": "queued", "next_attempt_at": utc_now(),
                "created_at": utc_now()})
        staff_items.mark_alerted(state, [i.id for i in new])
        state.add_event("staff_alert_queued", {"items": [i.id for i in new], "to": len(settings.staff_addresses)},
                        actor=actor, rules_version=rules_version)
    return len(new)
