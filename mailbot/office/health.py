"""Polling health: when a poll last went through, the failures since, and the stall alert.

The daemon (and ``mailbot poll``) record each poll's result here; the digest shows the last
successful poll and the errors of its period.  When no poll has gone through for longer than
``schedule.stall_alert_minutes``, :func:`check_stall` mails staff at once, once per stall: the
alert is recorded (``poll_health.stall_alerted_at``) and not repeated until a poll goes through
again.  It runs from the daemon's scheduler outside the poll's lock (a hung poll is exactly
what it must report), on its own database connection and its own transport: its rows are
inserted ``sending`` and sent here, so the intake's sender never picks them up twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime, timedelta, timezone

from mailbot.config import Settings
from mailbot.errors import SendError
from mailbot.masking import mask_text
from mailbot.mail.smtp import Transport
from mailbot.replies.model import PollError, StaffAlertContext
from mailbot.replies.render import ReplyRenderer, build_digest_message
from mailbot.state.store import State

MAX_ERROR_CHARS = 300  # stored technical detail per failure
SHOWN_DETAIL_CHARS = 60  # technical detail shown to staff, after the Chinese summary


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def record_poll_ok(state: State, *, at: datetime | None = None) -> None:
    """A poll went through: remember when (ends a stall: the next one is alerted again)."""
    when = _iso(at or datetime.now(timezone.utc))
    with state.transaction():
        state.db.execute(
            "INSERT INTO poll_health (id, last_ok_at, stall_alerted_at) VALUES (1, ?, NULL) "
            "ON CONFLICT(id) DO UPDATE SET last_ok_at = excluded.last_ok_at, stall_alerted_at = NULL", [when])


def record_poll_failed(state: State, error: str, *, at: datetime | None = None) -> None:
    """A poll failed: keep the (masked, shortened) error for the digest."""
    with state.transaction():
        state.insert("poll_errors", {"at": _iso(at or datetime.now(timezone.utc)),
                                     "error": mask_text(error)[:MAX_ERROR_CHARS]})


def last_ok(state: State) -> datetime | None:
    """End of the last poll that went through, or None (never)."""
    row = state.db.conn.execute("SELECT last_ok_at FROM poll_health WHERE id = 1").fetchone()
    return datetime.fromisoformat(row[0]) if row and row[0] else None


_ERROR_KINDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"timed? ?out|timeout", re.I), "连接邮箱服务器超时"),
    (re.compile(r"auth|login|credential|password", re.I), "邮箱登录失败（请检查账号和密码）"),
    (re.compile(r"refused|unreachable|resolve|name or service|no route|connect", re.I), "无法连接邮箱服务器"),
    (re.compile(r"ssl|tls|certificate", re.I), "与邮箱服务器的加密连接失败"),
    (re.compile(r"database|sqlite|disk|no space|locked", re.I), "数据库或磁盘出错"),
)


def error_summary(error: str) -> str:
    """A failed poll in Chinese for staff: what kind of failure, without the technical text
    (it stays in the log and in ``poll_errors``)."""
    for pattern, summary in _ERROR_KINDS:
        if pattern.search(error):
            return summary
    return "收取邮件出错（详见系统日志）"


def errors_since(state: State, since: datetime) -> tuple[PollError, ...]:
    """The failed polls since ``since``, oldest first, summarised in Chinese."""
    return tuple(PollError(datetime.fromisoformat(r["at"]), error_summary(r["error"])) for r in state.query(
        "SELECT at, error FROM poll_errors WHERE at >= ? ORDER BY id", [_iso(since)]))


def check_stall(state: State, settings: Settings, renderer: ReplyRenderer,
                make_transport: Callable[[], Transport], *, campaign: str, rules_version: str,
                started_at: datetime, now: datetime | None = None) -> bool:
    """Mail staff when no poll has gone through for ``schedule.stall_alert_minutes`` (counted
    from ``started_at`` when none ever has); once per stall.  Returns whether an alert went out."""
    limit = settings.schedule.stall_alert_minutes
    if not limit or not settings.staff_addresses:
        return False
    now = now or datetime.now(timezone.utc)
    row = state.db.conn.execute("SELECT last_ok_at, stall_alerted_at FROM poll_health WHERE id = 1").fetchone()
    last, alerted = (row[0], row[1]) if row else (None, None)
    since = datetime.fromisoformat(last) if last else started_at
    if alerted or now - since < timedelta(minutes=limit):
        return False
    minutes = int((now - since).total_seconds() // 60)
    ctx = StaffAlertContext(campaign=campaign, generated_at=now.astimezone(settings.tz), items=(), open_total=0)
    variables = {f.name: getattr(ctx, f.name) for f in fields(ctx)}
    variables.update(last_ok=datetime.fromisoformat(last).astimezone(settings.tz) if last else None,
                     stalled_minutes=minutes,
                     errors=errors_since(state, since))
    rendered = renderer.render_page("stall_alert", f"【收信中断】{campaign}：已{minutes}分钟未能收取邮件", variables)
    raw = build_digest_message(rendered, to_addresses=list(settings.staff_addresses),
                               from_address=settings.reply.from_address, from_name=settings.reply.from_name,
                               message_id_domain=settings.reply.message_id_domain)
    stamp = _iso(now)
    ids: list[int] = []
    with state.transaction():
        state.db.execute(
            "INSERT INTO poll_health (id, last_ok_at, stall_alerted_at) VALUES (1, NULL, ?) "
            "ON CONFLICT(id) DO UPDATE SET stall_alerted_at = excluded.stall_alerted_at", [stamp])
        for to in settings.staff_addresses:
            ids.append(state.insert("outbox", {
                "message": None, "kind": "stall_alert", "to_address": to, "subject": rendered.subject,
                "reply_message_id": "", "raw": raw, "status": "sending", "attempts": 1,
                "next_attempt_at": stamp, "created_at": stamp}))
        state.add_event("stall_alert_queued", {"last_ok_at": last, "minutes": minutes,
                                                "to": len(settings.staff_addresses)},
                        actor="daemon", rules_version=rules_version)
    transport = make_transport()
    try:
        _send_now(state, transport, ids, envelope_from=settings.smtp.envelope_from or settings.reply.from_address,
                  rules_version=rules_version)
    finally:
        transport.close()
    return True


def _send_now(state: State, transport: Transport, ids: list[int], *, envelope_from: str,
              rules_version: str) -> None:
    """Send the alert rows just inserted as ``sending``; each ends ``sent`` or ``failed``
    (a crash in between leaves ``sending``, which the next start turns into ``unknown``)."""
    for pk in ids:
        to, raw = state.db.conn.execute("SELECT to_address, raw FROM outbox WHERE id = ?", [pk]).fetchone()
        status, error = "sent", ""
        try:
            transport.send(envelope_from, to, raw, name=f"{pk:06d}-stall_alert")
        except SendError as exc:
            status, error = ("unknown" if exc.unknown else "failed"), str(exc)
        stamp = _iso(datetime.now(timezone.utc))
        with state.transaction():
            state.db.execute("UPDATE outbox SET status = ?, last_error = ?, sent_at = ? WHERE id = ?",
                             [status, error, stamp if status == "sent" else None, pk])
            state.add_event(f"reply_{status}", {"outbox": pk, "kind": "stall_alert",
                                                **({"error": error} if error else {})},
                            actor="daemon", rules_version=rules_version)


