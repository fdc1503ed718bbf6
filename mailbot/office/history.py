"""``mailbot history``: everything that happened to one person or one message, in order.

Read from the hash-chained event log only (what the log says is what happened), as Chinese
lines for staff.  Events keep identity numbers and addresses masked, so the history is masked
too: full numbers leave only through the roster export.  The words for outcomes and reply states
live here and are shared with ``mailbot.decisions``; a nominee's status is in the staff's words
of :data:`mailbot.replies.render.STAFF_STATUS_LABELS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from mailbot.masking import mask_text
from mailbot.replies.render import ATTENTION_LABELS, OUTCOME_LABELS, STAFF_STATUS_LABELS
from mailbot.state.store import State

STATUS_WORDS = {**STAFF_STATUS_LABELS,
                "conflict": "身份证号冲突"}  # conflict: only in events written before migration 006
OUTCOME_WORDS = {
    "accepted": "报名成功", "correction": "需修改", "late": "逾期", "redirect": "转省平台（中职）",
    "no_form": "无附件3", "scan_only": "仅扫描件", "unreadable": "无法读取", "not_annex3": "非附件3",
    "ignored": "已忽略（自动回复/退信等）", "quarantined": "已隔离", "duplicate": "重复邮件", "failed": "处理失败",
}
REPLY_STATUS_WORDS = {"queued": "待发送", "sending": "发送中", "sent": "已发送", "failed": "发送失败",
                      "unknown": "投递情况不明", "resolved": "已处理"}
MAIL_KIND_WORDS = {**{k: f"回复（{v}）" for k, v in OUTCOME_LABELS.items()},
                   "notice_other_sender": "提醒报名联系邮箱", "notice_list_changed": "名单变更通知",
                   "notice_decision": "工作人员决定通知", "staff_answer": "工作人员答复", "staff_alert": "待办提醒",
                   "digest": "工作日报"}
#: the ``decision`` field of ``staff_decision`` events
DECISION_WORDS = {
    "admit": "准予登记（待审核教师）", "admit_late": "准予登记（逾期报名）", "withdraw": "撤销报名",
    "substitute": "更换参训教师", "move": "调整培训项目", "seats": "调整名额", "contact": "指定报名联系邮箱",
    "release": "放行邮件", "resend": "重发回复", "resolve": "回复标记为已处理", "answer": "答复来信",
    "close": "关闭待办事项",
}
EVENT_WORDS = {
    "message_recorded": "收到邮件", "staff_decision": "工作人员决定", "seats_changed": "名额调整",
    "contact_of_record_set": "报名联系邮箱", "staff_item_opened": "转工作人员", "staff_item_closed": "待办事项关闭",
    "reply_queued": "邮件排队", "reply_sent": "邮件已发出", "reply_retry": "邮件发送重试",
    "reply_failed": "邮件发送失败", "reply_unknown": "邮件投递情况不明", "reply_suppressed": "邮件未发",
}
#: the ledger's reasons (``why`` of ``nominee_*`` events), as staff read them
WHY_WORDS = {
    "first come first served": "按报名先后", "seat freed": "有名额空出，候补递补",
    "not on the institution's latest form": "不在学校最新名单中",
    "over the school's reported demand": "超出学校上报的培训需求数",
    "too many new teachers in one mail": "单封邮件新增教师过多",
    "conflict status retired": "与其他学校重复报名、未予登记的旧记录（系统升级时记为撤销）",
}


@dataclass(frozen=True)
class HistoryLine:
    """One event as staff read it."""

    at: datetime
    label: str
    text: str
    actor: str
    event: dict[str, Any]  # the event as stored (codes: ``kind``, ``actor``, ``detail``), for ``--json``

    def render(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M}  {self.label}：{self.text}（{self.actor}）"


def actor_words(actor: str) -> str:
    if actor.startswith("staff:"):
        return f"工作人员 {actor[len('staff:'):]}"
    return {"daemon": "系统", "replay": "重放", "staff": "工作人员", "migration": "系统升级"}.get(actor, actor)


def _why(why: str) -> str:
    if why in WHY_WORDS:
        return WHY_WORDS[why]
    if why.startswith("program changed to "):
        return f"改报{why[len('program changed to '):]}"
    if why.startswith("already nominated by "):
        return f"已由{why[len('already nominated by '):]}报名"
    return why


def describe(kind: str, d: dict[str, Any], receipts: dict[int, str], message: int | None) -> tuple[str, str]:
    """(label, text) of one event."""
    if kind.startswith("nominee_"):
        before = STATUS_WORDS.get(d.get("from") or "", "（新登记）")
        after = STATUS_WORDS.get(d.get("to") or "", d.get("to") or "")
        return "报名状态", f"{d.get('id', '')} {d.get('program', '')}：{before} → {after}，{_why(d.get('why', ''))}"
    label = EVENT_WORDS.get(kind, "其他记录")
    if kind == "message_recorded":
        return label, f"回执 {d.get('receipt', '')}，{OUTCOME_WORDS.get(d.get('outcome', ''), d.get('outcome', ''))}"
    if kind == "staff_decision":
        text = DECISION_WORDS.get(d.get("decision", ""), d.get("decision", ""))
        extra = {"seats": f"{d.get('program')}：{d.get('from')} → {d.get('to')}",
                 "move": f"{d.get('from_program')} → {d.get('to_program')}",
                 "substitute": f"由{d.get('new_id')}替换",
                 "contact": f"{d.get('institution')}：{d.get('to')}",
                 "release": f"重新处理为回执 {receipts.get(d.get('as_message') or 0, '')}",
                 "resend": f"回复#{d.get('outbox')}", "resolve": f"回复#{d.get('outbox')}",
                 "answer": f"待办事项#{d.get('item')}", "close": f"待办事项#{d.get('item')}"}.get(d.get("decision", ""))
        return label, f"{text}{'，' + extra if extra else ''}，理由：{d.get('reason', '')}"
    if kind == "seats_changed":
        return label, f"{d.get('program')}：{d.get('from')} → {d.get('to')}"
    if kind == "contact_of_record_set":
        return label, f"{d.get('institution', '')}：{d.get('from') or '（无）'} → {d.get('to')}"
    if kind == "staff_item_opened":
        return label, f"待办事项#{d.get('item')}（{ATTENTION_LABELS.get(d.get('kind', ''), d.get('kind', ''))}）"
    if kind == "staff_item_closed":
        return label, f"待办事项#{d.get('item')}：{d.get('resolution', '')}"
    if kind.startswith("reply_"):
        what = MAIL_KIND_WORDS.get(d.get("kind", ""), "")
        number = f"#{d['outbox']}" if "outbox" in d else ""
        if kind == "reply_suppressed":
            return label, f"{what}：超过每日上限"
        return label, "".join(p for p in (what, number) if p) or "—"
    return label, kind


def _lines(state: State, where: str, args: list[Any], tz: tzinfo) -> list[HistoryLine]:
    receipts = {r["id"]: r["receipt"] for r in state.query("SELECT id, receipt FROM messages")}
    out = []
    for e in state.query(f"SELECT * FROM events WHERE {where} ORDER BY id", args):
        label, text = describe(e["kind"], json.loads(e["detail"]), receipts, e["message"])
        event = {k: e[k] for k in ("id", "at", "actor", "kind", "message", "nominee")}
        event["detail"] = json.loads(e["detail"])
        out.append(HistoryLine(datetime.fromisoformat(e["at"]).astimezone(tz), label, mask_text(text),
                               actor_words(e["actor"]), event))
    return out


def person_history(state: State, idh: str, tz: tzinfo) -> tuple[str, list[HistoryLine]]:
    """(heading, lines) for everyone recorded under one identity-number hash: their registrations,
    every change of status, the decisions about them and the mails that named them."""
    nominees = list(state.query("SELECT id, id_masked, name, message FROM nominees WHERE id_hash = ? ORDER BY id",
                                [idh]))
    if not nominees:
        return "", []
    ids = [n["id"] for n in nominees]
    messages = sorted({n["message"] for n in nominees})
    marks = lambda xs: ",".join("?" * len(xs))  # noqa: E731
    lines = _lines(state, f"nominee IN ({marks(ids)}) OR (kind = 'message_recorded' AND message IN ({marks(messages)}))",
                   [*ids, *messages], tz)
    last = nominees[-1]
    return f"身份证号 {last['id_masked']}（{last['name'] or '姓名已清除'}）的全部记录：", lines


def message_history(state: State, receipt: str, tz: tzinfo) -> tuple[str, list[HistoryLine]]:
    """(heading, lines) for one message: recorded, its seats, replies, staff items and decisions,
    and what happened to its released copy."""
    msg = next(state.query("SELECT id, receipt, sender FROM messages WHERE receipt = ?", [receipt]), None)
    if msg is None:
        return "", []
    ids = [msg["id"]] + [r["id"] for r in state.query(
        "SELECT id FROM messages WHERE source = 'release' AND source_key = ?", [str(msg["id"])])]
    nominees = [r["id"] for r in state.query(
        f"SELECT id FROM nominees WHERE message IN ({','.join('?' * len(ids))})", ids)]
    where = f"message IN ({','.join('?' * len(ids))})"
    if nominees:
        where += f" OR nominee IN ({','.join('?' * len(nominees))})"
    return f"回执 {msg['receipt']}（发件人 {msg['sender'] or '已清除'}）的全部记录：", _lines(state, where, [*ids, *nominees], tz)
