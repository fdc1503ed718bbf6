"""The staff list ("needs a person"): what mailbot will not decide alone, one item per case.

An item has a kind (``other_sender``, ``over_demand``, ``too_many``, ``quarantined``,
``failed``, …), the school, the sender, the receipt and when it was opened (its age).  It is
written in the same transaction as the decision that raised it, stays ``open`` until staff close
it (``close``, recorded with who and why), and is listed in the digest and, once, in a staff
alert mail (``alerted_at``).  Summaries are Chinese and masked: they are shown to staff as is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from mailbot.errors import StateError
from mailbot.masking import mask_text
from mailbot.replies.model import AttentionItem
from mailbot.state.store import State, utc_now


@dataclass(frozen=True)
class StaffItem:
    """One open or closed item of the staff list."""

    id: int
    kind: str
    institution: str
    sender: str
    receipt: str
    summary: str
    opened_at: datetime
    status: str
    message: int | None = None


QUARANTINE_REASONS = {
    "deny-listed": "发件域名在拒收名单中",
    "not-allow-listed": "发件域名不在允许名单中",
    "dmarc-fail": "发件域名的身份验证未通过",
    "spf-and-dkim-fail": "发件服务器和邮件签名的验证均未通过",
    "no-sender": "没有可回复的发件人地址",
}


def outcome_summary(outcome: str, reason: str) -> str:
    """A quarantined or failed message as the staff list names it: Chinese, no technical text
    (the reason code and the error stay in ``messages.reason`` and the log)."""
    poison = re.match(r"poison: processing did not finish (\d+) times", reason)
    if outcome == "quarantined" and poison:
        return (f"邮件已隔离：系统处理该邮件时{poison.group(1)}次未能完成（进程崩溃或被终止），"
                "已暂停自动处理，未登记，请人工查看")
    if outcome == "quarantined":
        return f"邮件已隔离：{QUARANTINE_REASONS.get(reason, '发件人未通过核验')}，未处理也未回复"
    return "处理失败：系统处理该邮件时出错，邮件已移至失败文件夹，未登记也未回复（详见系统日志）"


def attention_item(item: StaffItem, tz: tzinfo) -> AttentionItem:
    """A staff item as the digest and the alert show it (category = its kind)."""
    summary = f"{item.institution}：{item.summary}" if item.institution else item.summary
    return AttentionItem(item.kind, summary, item.receipt, item.sender, item.opened_at.astimezone(tz),  # type: ignore[arg-type]
                         item=item.id)


def _item(row: dict[str, Any]) -> StaffItem:
    return StaffItem(row["id"], row["kind"], row["institution"], row["sender"], row["receipt"],
                     row["summary"], datetime.fromisoformat(row["opened_at"]), row["status"], row["message"])


def add(state: State, kind: str, summary: str, *, actor: str, rules_version: str, institution: str = "",
        institution_key: str = "", sender: str = "", message: int | None = None, receipt: str = "",
        detail: dict[str, Any] | None = None) -> int:
    """Open an item (call inside the transaction of the decision that raises it)."""
    body = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True)
    pk = state.insert("staff_items", {
        "kind": kind, "institution": institution, "institution_key": institution_key, "sender": sender,
        "message": message, "receipt": receipt, "summary": mask_text(summary)[:500],
        "detail": mask_text(body), "status": "open", "opened_at": utc_now()})
    state.add_event("staff_item_opened", {"item": pk, "kind": kind, "institution": institution},
                    actor=actor, rules_version=rules_version, message=message)
    return pk


def list_open(state: State) -> list[StaffItem]:
    """Every open item, oldest first."""
    return [_item(r) for r in state.query(
        "SELECT * FROM staff_items WHERE status = 'open' ORDER BY opened_at, id")]


def close(state: State, item: int, *, actor: str, rules_version: str, resolution: str) -> None:
    """Close an open item with what was decided (call inside a transaction)."""
    row = state.db.conn.execute("SELECT status, message FROM staff_items WHERE id = ?", [item]).fetchone()
    if row is None or row[0] != "open":
        raise StateError(f"staff item {item} is not open")
    state.db.execute(
        "UPDATE staff_items SET status = 'closed', closed_at = ?, closed_by = ?, resolution = ? WHERE id = ?",
        [utc_now(), actor, mask_text(resolution)[:500], item])
    state.add_event("staff_item_closed", {"item": item, "resolution": mask_text(resolution)[:500]},
                    actor=actor, rules_version=rules_version, message=row[1])


def not_yet_alerted(state: State) -> list[StaffItem]:
    """Open items no staff alert has listed yet, oldest first."""
    return [_item(r) for r in state.query(
        "SELECT * FROM staff_items WHERE alerted_at IS NULL AND status = 'open' ORDER BY id")]


def any_not_yet_alerted(state: State) -> bool:
    """Whether an open item waits for its alert (one indexed read)."""
    return state.db.conn.execute(
        "SELECT 1 FROM staff_items WHERE alerted_at IS NULL AND status = 'open' LIMIT 1").fetchone() is not None


def mark_alerted(state: State, items: list[int]) -> None:
    """Record that an alert listing these items was queued (same transaction as the alert)."""
    now = utc_now()
    state.db.conn.executemany("UPDATE staff_items SET alerted_at = ? WHERE id = ?", [(now, i) for i in items])
