"""Staff decisions: what mailbot leaves to a person, decided from the command line.

Each decision names the staff member and a reason, is one ``staff_decision`` event in the
hash-chained log (with everything needed to recompute its effect: identity-number hashes,
programs, seat counts, message and nominee ids), changes seats through the same
:class:`~mailbot.state.ledger.SeatLedger` as intake, and queues a templated Chinese mail to
everyone it affects in the same transaction (the outbox sends each exactly once).  Promotions
it causes are told like intake's.  A refused decision raises
:class:`~mailbot.errors.DecisionRefused` (Chinese) and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mailbot.errors import DecisionRefused
from mailbot.mail.source import FetchedMessage
from mailbot.masking import mask_id, mask_text
from mailbot.normalize import normalize_id_number, normalize_name
from mailbot.office import staff_items
from mailbot.office.history import OUTCOME_WORDS, REPLY_STATUS_WORDS, STATUS_WORDS
from mailbot.pipeline import Intake, institution_key
from mailbot.replies.model import DecisionNotice, NomineeLine
from mailbot.replies.render import (ATTENTION_LABELS, PROMOTED_LABEL, STAFF_STATUS_LABELS, build_notice_message,
                                    new_message_id, staff_status)
from mailbot.rules import school_key
from mailbot.state.contacts import contact_of_record, masked_address, same_address, set_contact_of_record
from mailbot.state.ledger import Promotion, SeatLedger, SeatRequest, id_hash
from mailbot.state.store import utc_now

#: staff-list kinds a seat decision on a held teacher settles
HELD_ITEMS = ("over_demand", "too_many")
#: outcomes whose mail already changed the list: nothing to release
APPLIED_OUTCOMES = ("accepted", "correction", "duplicate")


@dataclass(frozen=True)
class DecisionResult:
    """What a decision did, in Chinese for the staff member (masked), and whom it told."""

    summary: str
    notified: tuple[str, ...] = ()


def person_hash(id_number: str) -> str:
    """The ``id_hash`` of an identity number as staff type it (spaces, lower-case x)."""
    number = normalize_id_number(id_number)
    if not number:
        raise DecisionRefused("请填写身份证号")
    return id_hash(number)


class StaffDecisions:
    """The decisions of one staff member over one state (the intake's ledger, renderer, outbox)."""

    def __init__(self, intake: Intake, staff: str) -> None:
        if not staff.strip():
            raise DecisionRefused("请用 --staff 填写您的姓名")
        self.intake = intake
        self.state = intake.state
        self.actor = f"staff:{staff.strip()}"
        self.version = intake.version
        self.ledger = SeatLedger(self.state, {}, rules_version=self.version, actor=self.actor)
        self.ledger.capacities = intake.ledger.capacities  # one dict: a seat change holds for intake too
        self.programs = {p.name: p for p in intake.rules.programs}

    # -- people and seats ---------------------------------------------------------------------
    def admit(self, idh: str, reason: str) -> DecisionResult:
        """A held teacher takes part: a free seat, else the waiting list (arrival order)."""
        n = self._active(idh)
        if n["status"] != "held":
            raise DecisionRefused(f"{n['name']}（{n['id_masked']}）的状态是“{_status(n['status'])}”，"
                                  "不是待审核，无需准予登记")
        with self.state.transaction():
            self._decision("admit", reason, {"id_hash": idh, "program": n["program"], "from": "held"},
                           message=n["message"], nominee=n["id"])
            promotions = self.ledger.admit(n, why=f"工作人员准予登记：{reason}")
            now = self._status(n["id"])
            self._close_held_items(n["message"], reason)
            told = self._tell_school("admit", n, reason, nominees=(self._line(n, now),))
            self._promote(promotions, exclude=n["id"])
        return DecisionResult(f"已准予登记：{n['name']}（{n['id_masked']}），{n['program']}，{self._where(n['id'])}", told)

    def admit_late(self, receipt: str, reason: str, only: str | None = None) -> DecisionResult:
        """The teachers of a late mail (or one of them, ``only`` = id hash) are registered at the
        mail's arrival time, after every timely one: a free seat, else the end of the waiting list."""
        msg = self._message(receipt)
        if msg["outcome"] != "late":
            raise DecisionRefused(f"回执{receipt}不是逾期邮件（{_outcome(msg['outcome'])}）")
        form = next(self.state.query(
            "SELECT institution FROM forms WHERE message = ? AND institution != '' ORDER BY id LIMIT 1",
            [msg["id"]]), {"institution": ""})
        institution = form["institution"] or msg["institution"]
        rows = [r for r in self.state.query(
            "SELECT r.* FROM form_rows r JOIN forms f ON f.id = r.form WHERE f.message = ? "
            "AND r.ok = 1 AND r.program_matched = 1 ORDER BY r.id", [msg["id"]])
            if r["id_number"] and (only is None or id_hash(r["id_number"]) == only)]
        if not rows:
            raise DecisionRefused(f"回执{receipt}中没有可登记的教师（身份证号有误、信息不全或已清除）"
                                  if only is None else f"回执{receipt}中没有该身份证号的合格记录")
        key = institution_key(institution, msg["sender"])
        placed: list[tuple[dict[str, Any], str]] = []
        with self.state.transaction():
            skipped: list[str] = []
            todo = []
            for r in rows:
                h = id_hash(r["id_number"])
                other = self.ledger.active_by_hash(h)
                if other is not None:
                    skipped.append(f"{normalize_name(r['name'])}（{r['id_masked']}）已在“{other['institution']}”"
                                   f"{other['program']}登记")
                    continue
                todo.append((h, r))
            if not todo:
                raise DecisionRefused("；".join(skipped))
            self._decision("admit_late", reason, {"receipt": receipt, "id_hashes": [h for h, _ in todo],
                                                  "institution_key": key}, message=msg["id"])
            promotions: list[Promotion] = []
            for h, r in todo:
                req = SeatRequest(r["id_number"], r["id_masked"], r["name"] or "", r["program"], r["row"], r["id"])
                pk, promoted = self.ledger.admit_new(
                    req, institution_key=key, institution=institution, message=msg["id"],
                    arrived_at=msg["arrived_at"], uid=msg["uid"], sender=msg["sender"],
                    why=f"工作人员准予逾期登记：{reason}")
                promotions += promoted
                placed.append((self._nominee(pk), ""))
            if contact_of_record(self.state, key) is None:
                set_contact_of_record(self.state, institution_key=key, institution=institution,
                                      address=msg["sender"], message=msg["id"], actor=self.actor,
                                      rules_version=self.version, why="first registration of the school")
            admitted = [n["id"] for n, _ in placed]
            lines = tuple(self._line(self._nominee(pk), self._status(pk)) for pk in admitted)
            told = self._tell_school("admit", placed[0][0], reason, nominees=lines)
            self._promote(promotions, exclude=None, skip=set(admitted))
        done = "；".join(f"{ln.name}（{ln.id_masked}），{ln.program}，{_line_status(ln)}" for ln in lines)
        rest = f"；未登记：{'；'.join(skipped)}" if skipped else ""
        return DecisionResult(f"已准予逾期登记（回执{receipt}）：{done}{rest}", told)

    def withdraw(self, idh: str, reason: str) -> DecisionResult:
        """Withdraw a teacher; a seat freed goes to the head of the waiting list, who is told."""
        n = self._active(idh)
        with self.state.transaction():
            self._decision("withdraw", reason, {"id_hash": idh, "program": n["program"], "from": n["status"]},
                           message=n["message"], nominee=n["id"])
            promotions = self.ledger.withdraw(n, why=f"工作人员撤销报名：{reason}")
            self._close_held_items(n["message"], reason)
            told = self._tell_school("withdraw", n, reason, nominees=(self._line(n, "withdrawn"),))
            self._promote(promotions)
        promoted = "；递补：" + "、".join(f"{p.name}（{p.id_masked}）" for p in promotions) if promotions else ""
        return DecisionResult(f"已撤销报名：{n['name']}（{n['id_masked']}），{n['program']}{promoted}", told)

    def substitute(self, idh: str, new_id_number: str, new_name: str, reason: str) -> DecisionResult:
        """Another teacher of the school takes this teacher's place as it is (the notice allows a
        substitution only for special reasons: ``reason`` says which)."""
        n = self._active(idh)
        number, name = normalize_id_number(new_id_number), normalize_name(new_name)
        if not number or not name:
            raise DecisionRefused("请填写替换教师的身份证号和姓名")
        new_h = id_hash(number)
        other = self.ledger.active_by_hash(new_h)
        if other is not None:
            raise DecisionRefused(f"替换教师（{mask_id(number)}）已在“{other['institution']}”{other['program']}登记")
        with self.state.transaction():
            self._decision("substitute", reason, {"id_hash": idh, "new_id_hash": new_h, "new_id": mask_id(number),
                                                  "program": n["program"], "status": n["status"]},
                           message=n["message"], nominee=n["id"])
            pk = self.ledger.substitute(n, SeatRequest(number, mask_id(number), name, n["program"], n["request_row"]),
                                        why=f"工作人员同意更换参训教师：{reason}")
            new = self._nominee(pk)
            told = self._tell_school("substitute", n, reason, nominees=(self._line(new, new["status"]),),
                                     replaced=(self._line(n, "withdrawn"),))
        return DecisionResult(f"已更换：{n['name']}（{n['id_masked']}）→ {name}（{mask_id(number)}），"
                              f"{n['program']}，{self._where(pk)}", told)

    def move(self, idh: str, program: str, reason: str) -> DecisionResult:
        """Move a teacher to another program at their own arrival time; the seat left is refilled."""
        n = self._active(idh)
        target = self._program(program)
        if target == n["program"]:
            raise DecisionRefused(f"{n['name']}（{n['id_masked']}）已在“{target}”")
        with self.state.transaction():
            self._decision("move", reason, {"id_hash": idh, "from_program": n["program"], "to_program": target},
                           message=n["message"], nominee=n["id"])
            pk, promotions = self.ledger.move(n, target, why=f"工作人员调整培训项目：{reason}")
            new = self._nominee(pk)
            told = self._tell_school("move", n, reason, nominees=(self._line(new, new["status"]),),
                                     from_program=n["program"])
            self._promote(promotions, exclude=pk)
        return DecisionResult(f"已调整：{n['name']}（{n['id_masked']}），{n['program']} → {target}，"
                              f"{self._where(pk)}", told)

    def seats(self, program: str, seats: int, reason: str) -> DecisionResult:
        """Change a program's seats: more seats promote from the waiting list (who are told);
        fewer seats never take a seat from anyone seated."""
        target = self._program(program)
        if seats < 0:
            raise DecisionRefused("名额不能为负数")
        before = self.ledger.capacities.get(target, 0)
        with self.state.transaction():
            self._decision("seats", reason, {"program": target, "from": before, "to": seats})
            promotions = self.ledger.set_capacity(target, seats)
            self.ledger.record_programs({p.name: p.host for p in self.intake.rules.programs})  # audit views
            self._promote(promotions)
        seated = self.ledger.seated_count(target)
        over = (f"；{STAFF_STATUS_LABELS['seated']}{seated}人，超出的名额不收回，待有人撤销后不再递补"
                if seated > seats else "")
        promoted = f"；{len(promotions)}名候补教师{PROMOTED_LABEL}并已通知" if promotions else ""
        return DecisionResult(f"已调整名额：{target}，{before} → {seats}{promoted}{over}")

    def contact(self, school: str, address: str, reason: str) -> DecisionResult:
        """Make ``address`` the school's contact of record (only it may replace the school's list);
        the new and the old address are told."""
        key = f"name:{school_key(school)}" if school_key(school) else ""
        known = next(self.state.query(
            "SELECT institution FROM nominees WHERE institution_key = ? UNION ALL "
            "SELECT institution FROM school_contacts WHERE institution_key = ? LIMIT 1", [key, key]), None)
        if not key or known is None:
            raise DecisionRefused(f"没有“{school}”的报名记录")
        address = address.strip().lower()
        if "@" not in address:
            raise DecisionRefused(f"“{address}”不是邮箱地址")
        before = contact_of_record(self.state, key)
        if before is not None and same_address(before.address, address):
            raise DecisionRefused(f"{address}已是“{known['institution']}”的报名联系邮箱")
        institution = known["institution"]
        with self.state.transaction():
            self._decision("contact", reason, {"institution_key": key, "institution": institution,
                                               "to": masked_address(address)})
            set_contact_of_record(self.state, institution_key=key, institution=institution, address=address,
                                  message=None, actor=self.actor, rules_version=self.version,
                                  why=f"staff decision: {mask_text(reason)}")
            told = [self._notify("contact", address, institution, reason, contact_address=address)]
            if before is not None:
                told.append(self._notify("contact_replaced", before.address, institution, reason,
                                         contact_address=address))
        return DecisionResult(f"已将{address}设为“{institution}”的报名联系邮箱", tuple(told))

    # -- mail ---------------------------------------------------------------------------------
    def release(self, receipt: str, reason: str) -> DecisionResult:
        """Run a quarantined (or staff-routed, or failed) mail through the pipeline again from its
        stored raw copy, without the sender check's quarantine; it is recorded as a new message
        (source ``release``) at the original arrival time and answered like any other."""
        msg = self._message(receipt)
        if msg["outcome"] in APPLIED_OUTCOMES or msg["source"] == "release":
            raise DecisionRefused(f"回执{receipt}已处理（{_outcome(msg['outcome'])}），无需放行")
        if not msg["raw_path"]:
            raise DecisionRefused(f"回执{receipt}的原始邮件已清除，无法放行")
        copy = next(self.state.query("SELECT * FROM messages WHERE source = 'release' AND source_key = ?",
                                     [str(msg["id"])]), None)
        if copy is not None and self._released(msg["id"]):
            raise DecisionRefused(f"回执{receipt}已于此前放行（新回执{copy['receipt']}）")
        if copy is None:  # a release cut short after recording resumes with its event
            fetched = FetchedMessage(source="release", uidvalidity=0, uid=msg["uid"], key=str(msg["id"]),
                                     arrived_at=datetime.fromisoformat(msg["arrived_at"]),
                                     raw=(Path(self.state.dir) / msg["raw_path"]).read_bytes())
            try:
                assessment = self.intake.assess(fetched, released=msg["id"])
            except Exception as exc:  # noqa: BLE001 - the mail still breaks a stage: staff are told, nothing recorded
                raise DecisionRefused(f"回执{receipt}重新处理时仍然出错（{type(exc).__name__}），未放行；"
                                      "请联系技术人员") from exc
            self.intake.record(fetched, assessment)
            copy = next(self.state.query("SELECT * FROM messages WHERE source = 'release' AND source_key = ?",
                                         [str(msg["id"])]))
        with self.state.transaction():
            self._decision("release", reason, {"released": msg["id"], "as_message": copy["id"],
                                               "receipt": receipt, "outcome": copy["outcome"]}, message=msg["id"])
            for item in self._open_items(msg["id"]):
                staff_items.close(self.state, item, actor=self.actor, rules_version=self.version,
                                  resolution=f"已放行（新回执{copy['receipt']}）：{reason}")
        return DecisionResult(f"已放行回执{receipt}：重新处理为回执{copy['receipt']}，{_outcome(copy['outcome'])}",
                              (copy["sender"],) if copy["outcome"] not in ("ignored", "quarantined") else ())

    def resend(self, outbox: int, reason: str) -> DecisionResult:
        """Queue a reply whose delivery is unknown (or failed) again, same Message-ID: a client
        that already has it shows it once."""
        row = self._outbox(outbox)
        with self.state.transaction():
            self._decision("resend", reason, {"outbox": outbox, "from": row["status"]}, message=row["message"])
            self.state.db.execute("UPDATE outbox SET status = 'queued', next_attempt_at = ?, last_error = '' "
                                  "WHERE id = ?", [utc_now(), outbox])
        return DecisionResult(f"回复#{outbox}已重新排队发送至{row['to_address']}", (row["to_address"],))

    def resolve(self, outbox: int, reason: str) -> DecisionResult:
        """Mark a reply whose delivery is unknown (or failed) as looked after (status ``resolved``)."""
        row = self._outbox(outbox)
        with self.state.transaction():
            self._decision("resolve", reason, {"outbox": outbox, "from": row["status"]}, message=row["message"])
            self.state.db.execute("UPDATE outbox SET status = 'resolved' WHERE id = ?", [outbox])
        return DecisionResult(f"回复#{outbox}已标记为已处理")

    def answer(self, item: int, text: str, reason: str) -> DecisionResult:
        """Answer the mail of a staff item in its thread (``In-Reply-To``/``References``), close the item."""
        row = next(self.state.query("SELECT * FROM staff_items WHERE id = ?", [item]), None)
        if row is None or row["status"] != "open":
            raise DecisionRefused(f"待办事项#{item}不存在或已关闭")
        if row["message"] is None:
            raise DecisionRefused(f"待办事项#{item}没有对应的来信，无法答复")
        if not text.strip():
            raise DecisionRefused("请填写答复内容")
        msg = next(self.state.query("SELECT * FROM messages WHERE id = ?", [row["message"]]))
        if not msg["sender"]:
            raise DecisionRefused(f"回执{msg['receipt']}没有可答复的发件地址")
        with self.state.transaction():
            pk = self._notify("answer", msg["sender"], msg["institution"], reason, receipt=msg["receipt"],
                              answer=text.strip(), message=msg["id"], in_reply_to=msg["message_id"],
                              item=item)
            staff_items.close(self.state, item, actor=self.actor, rules_version=self.version,
                              resolution=f"已答复：{reason}")
        return DecisionResult(f"已答复回执{msg['receipt']}（{msg['sender']}），待办事项#{item}已关闭", (pk,))

    def close(self, item: int, reason: str) -> DecisionResult:
        """Close a staff item with what was decided (no mail)."""
        row = next(self.state.query("SELECT status, message FROM staff_items WHERE id = ?", [item]), None)
        if row is None or row["status"] != "open":
            raise DecisionRefused(f"待办事项#{item}不存在或已关闭")
        with self.state.transaction():
            self._decision("close", reason, {"item": item}, message=row["message"])
            staff_items.close(self.state, item, actor=self.actor, rules_version=self.version, resolution=reason)
        return DecisionResult(f"待办事项#{item}已关闭")

    def item_of(self, receipt: str) -> int:
        """The open staff item of the mail with this receipt (refused when it has none or several)."""
        msg = self._message(receipt)
        items = list(self.state.query(
            "SELECT id, kind FROM staff_items WHERE message = ? AND status = 'open' ORDER BY id", [msg["id"]]))
        if not items:
            raise DecisionRefused(f"回执{receipt}没有未关闭的待办事项")
        if len(items) > 1:
            listed = "、".join(f"#{i['id']}（{ATTENTION_LABELS.get(i['kind'], i['kind'])}）" for i in items)
            raise DecisionRefused(f"回执{receipt}有多个待办事项：{listed}，请用 --item 指定")
        return int(items[0]["id"])

    # -- helpers ------------------------------------------------------------------------------
    def _decision(self, decision: str, reason: str, detail: dict[str, Any], *, message: int | None = None,
                  nominee: int | None = None) -> None:
        if not reason.strip():
            raise DecisionRefused("请用 --reason 填写理由")
        self.state.add_event("staff_decision", {"decision": decision, "reason": mask_text(reason.strip()), **detail},
                             actor=self.actor, rules_version=self.version, message=message, nominee=nominee)

    def _released(self, message: int) -> bool:
        return any(r["detail"] for r in self.state.query(
            "SELECT detail FROM events WHERE kind = 'staff_decision' AND message = ? "
            "AND json_extract(detail, '$.decision') = 'release'", [message]))

    def _active(self, idh: str) -> dict[str, Any]:
        n = self.ledger.active_by_hash(idh)
        if n is None:
            raise DecisionRefused("没有该身份证号的有效报名（" + "、".join(
                STAFF_STATUS_LABELS[s] for s in ("seated", "waiting", "held")) + "）")
        return n

    def _nominee(self, pk: int) -> dict[str, Any]:
        return next(self.state.query("SELECT * FROM nominees WHERE id = ?", [pk]))

    def _where(self, pk: int) -> str:
        """计划名额内 / 候补（第N位） / … of one nominee now."""
        status = self._status(pk)
        return staff_status(status, self.ledger.waiting_position(pk) if status == "waiting" else None)

    def _status(self, pk: int) -> str:
        return self.ledger.status_of(pk)

    def _message(self, receipt: str) -> dict[str, Any]:
        msg = next(self.state.query("SELECT * FROM messages WHERE receipt = ?", [receipt.strip()]), None)
        if msg is None:
            raise DecisionRefused(f"没有回执号为{receipt}的邮件")
        return msg

    def _outbox(self, outbox: int) -> dict[str, Any]:
        row = next(self.state.query("SELECT * FROM outbox WHERE id = ?", [outbox]), None)
        if row is None:
            raise DecisionRefused(f"没有编号为{outbox}的回复")
        if row["status"] not in ("unknown", "failed"):
            raise DecisionRefused(f"回复#{outbox}的状态是“{_reply_status(row['status'])}”，只有投递情况不明或发送失败的回复可以重发或标记")
        return row

    def _program(self, program: str) -> str:
        if program in self.programs:
            return program
        raise DecisionRefused(f"没有培训项目“{program}”；可选：" + "、".join(self.programs))

    def _open_items(self, message: int, kinds: tuple[str, ...] | None = None) -> list[int]:
        return [r["id"] for r in self.state.query(
            "SELECT id, kind FROM staff_items WHERE message = ? AND status = 'open' ORDER BY id", [message])
            if kinds is None or r["kind"] in kinds]

    def _close_held_items(self, message: int, reason: str) -> None:
        """The mail's "held" items close when none of its teachers is held any more."""
        still = self.state.db.conn.execute(
            "SELECT 1 FROM nominees WHERE message = ? AND status = 'held' LIMIT 1", [message]).fetchone()
        if still is None:
            for item in self._open_items(message, HELD_ITEMS):
                staff_items.close(self.state, item, actor=self.actor, rules_version=self.version,
                                  resolution=f"待审核教师已全部处理：{reason}")

    def _line(self, n: dict[str, Any], status: str) -> NomineeLine:
        position = self.ledger.waiting_position(n["id"]) if status == "waiting" else None
        shown = status if status in ("seated", "waiting", "held") else "rejected"
        return self.intake._nominee_line(None, n["name"] or "", n["program"], shown, position,  # noqa: SLF001
                                         n["id_masked"])

    def _promote(self, promotions: list[Promotion], *, exclude: int | None = None,
                 skip: set[int] | None = None) -> None:
        for p in promotions:
            if p.nominee != exclude and p.nominee not in (skip or set()) and p.sender:
                self.intake.queue_promotion(p)

    def _tell_school(self, kind: str, n: dict[str, Any], reason: str, **extra: Any) -> tuple[str, ...]:
        """The address that registered the teacher and the school's contact of record."""
        to = [n["sender"]] if n["sender"] else []
        contact = contact_of_record(self.state, n["institution_key"])
        if contact is not None and not any(same_address(contact.address, a) for a in to):
            to.append(contact.address)
        receipt = next(self.state.query("SELECT receipt FROM messages WHERE id = ?", [n["message"]]))["receipt"]
        for address in to:
            self._notify(kind, address, n["institution"], reason, receipt=receipt, message=n["message"], **extra)
        return tuple(to)

    def _notify(self, kind: str, to: str, institution: str, reason: str, *, message: int | None = None,
                in_reply_to: str = "", item: int | None = None, **extra: Any) -> str:
        """Queue one ``notice_decision`` mail (or ``staff_answer``) in the decision's transaction."""
        rules, settings = self.intake.rules, self.intake.settings
        notice = DecisionNotice(kind, to, institution, datetime.now(timezone.utc).astimezone(settings.tz),  # type: ignore[arg-type]
                                reason=reason.strip(), campaign_title=rules.campaign.title,
                                help_contact=rules.intake.help_contact, **extra)
        receipt = f"回执 {notice.receipt}" if notice.receipt else ""
        subject = {
            "admit": f"【报名审核结果】{institution}：教师已予登记（{receipt}）",
            "withdraw": f"【报名名单变更】{institution}：教师已撤销报名（{receipt}）",
            "substitute": f"【报名名单变更】{institution}：参训教师已更换（{receipt}）",
            "move": f"【报名名单变更】{institution}：教师培训项目已调整（{receipt}）",
            "contact": f"【报名联系邮箱】{institution}：报名联系邮箱已变更",
            "contact_replaced": f"【报名联系邮箱】{institution}：报名联系邮箱已变更",
            "answer": f"Re: 报名表【工作人员答复｜{receipt}】" if receipt else "Re: 报名表【工作人员答复】",
        }[kind]
        rendered = self.intake.renderer.render_page(
            "notice_decision", subject, {f.name: getattr(notice, f.name) for f in fields(notice)})
        reply_id = new_message_id(settings.reply.message_id_domain)
        raw = build_notice_message(rendered, to_address=to, from_address=settings.reply.from_address,
                                   from_name=settings.reply.from_name, message_id=reply_id, in_reply_to=in_reply_to)
        out_kind = "staff_answer" if kind == "answer" else "notice_decision"
        pk = self.state.insert("outbox", {
            "message": message, "kind": out_kind, "to_address": to, "subject": rendered.subject,
            "reply_message_id": reply_id, "raw": raw, "status": "queued", "next_attempt_at": utc_now(),
            "created_at": utc_now()})
        if kind == "answer":
            self._decision("answer", reason, {"item": item, "outbox": pk}, message=message)
        self.state.add_event("reply_queued", {"kind": out_kind, "outbox": pk}, actor=self.actor,
                             rules_version=self.version, message=message)
        return to



def _status(status: str) -> str:
    return STATUS_WORDS.get(status, status)


def _line_status(line: NomineeLine) -> str:
    return staff_status(line.status, line.waiting_position)


def _outcome(outcome: str) -> str:
    return OUTCOME_WORDS.get(outcome, outcome)


def _reply_status(status: str) -> str:
    return REPLY_STATUS_WORDS.get(status, status)
