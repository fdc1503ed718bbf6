"""What ``mailbot check`` reads from a file given by hand: exactly what the daemon reads.

An .eml is walked like an arriving mail (``find_attachments``), a .zip or any other file like a
mail's only attachment (``find_in_file``); the walk runs in a contained worker and every form
found is read and checked by the contained readers, with the message's cell and time budget,
as in ``mailbot.pipeline``.  One verdict per form found, named ``file > where it was found``;
what the walk refused (a rar, a zip bomb, too many files) is one ``unreadable`` verdict.
"""

from __future__ import annotations

import time
from pathlib import Path

from mailbot.forms import contained
from mailbot.forms.model import Finding, FormVerdict, Outcome
from mailbot.limits import DEFAULT_LIMITS, Limits
from mailbot.mail.walk import MessageParts, find_attachments, find_in_file
from mailbot.rules import CampaignRules

NO_FORM = Finding("no_form", "没有找到报名表（附件3 Excel/WPS/Word 文件）。")


def _walk(data: bytes, path: Path, limits: Limits) -> MessageParts:
    seconds = float(limits.max_seconds_per_message)
    walk = find_attachments if path.suffix.lower() == ".eml" else find_in_file
    args = (data,) if walk is find_attachments else (data, path.name)
    try:
        return contained.pool_of(limits).call(walk, *args, limits, seconds=seconds, timeout=seconds + 2.0)
    except contained.WorkerFailed:
        return MessageParts(problems=(Finding("reader_failed", contained.UNREADABLE_MESSAGE),))


def judge_path(path: Path, rules: CampaignRules, limits: Limits = DEFAULT_LIMITS) -> list[FormVerdict]:
    """The verdicts for one file on disk, read the daemon's way (see the module docstring)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [FormVerdict(str(path), Outcome.UNREADABLE, form_findings=(
            Finding("file_unreadable", f"无法打开文件：{exc.strerror or exc}"),))]
    started = time.monotonic()
    parts = _walk(data, path, limits)
    single = len(parts.forms) == 1 and parts.forms[0].origin == path.name
    verdicts: list[FormVerdict] = []
    cells = limits.max_cells_per_message
    for att in parts.forms:
        left = limits.max_seconds_per_message - (time.monotonic() - started)
        if left <= 0:
            verdict = FormVerdict(att.filename, Outcome.UNREADABLE, form_findings=(Finding(
                "time_limit", f"附件过多或过大，未能在{limits.max_seconds_per_message:g}秒内处理完。"),))
        else:
            verdict, used = contained.judge(att.data, att.filename, rules, limits, cells_left=cells, timeout=left)
            cells = max(0, cells - used)
        name = str(path) if single else f"{path} > {att.origin}"
        verdicts.append(FormVerdict(name, verdict.outcome, verdict.institution, verdict.contact,
                                    verdict.contact_phone, verdict.form_findings, verdict.rows, verdict.reading))
    if parts.problems:
        verdicts.append(FormVerdict(str(path), Outcome.UNREADABLE, form_findings=parts.problems))
    if not verdicts:
        verdicts.append(FormVerdict(str(path), Outcome.NOT_ANNEX3, form_findings=(NO_FORM,)))
    return verdicts
