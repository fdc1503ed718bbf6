"""What ``mailbot check`` reads from a file given by hand: exactly what the daemon reads.

An .eml is walked like an arriving mail (``find_attachments``), a .zip or any other file like a
mail's only attachment (``find_in_file``); the walk and the reading and checking of every form
found are one contained request (``contained.walk_and_judge``), with the message's cell and
time budget, as in ``mailbot.pipeline``.  One verdict per form found, named ``file > where it was found``;
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


def judge_path(path: Path, rules: CampaignRules, limits: Limits = DEFAULT_LIMITS) -> list[FormVerdict]:
    """The verdicts for one file on disk, read the daemon's way (see the module docstring)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [FormVerdict(str(path), Outcome.UNREADABLE, form_findings=(
            Finding("file_unreadable", f"无法打开文件：{exc.strerror or exc}"),))]
    walk = find_attachments if path.suffix.lower() == ".eml" else find_in_file
    args = (data,) if walk is find_attachments else (data, path.name)
    judged = contained.walk_and_judge(walk, *args, rules=rules, limits=limits,
                                      deadline=time.monotonic() + limits.max_seconds_per_message,
                                      cells=limits.max_cells_per_message)
    parts = judged.parts if judged.walk_failure is None else MessageParts(
        problems=(Finding("reader_failed", contained.UNREADABLE_MESSAGE),))
    single = len(parts.forms) == 1 and parts.forms[0].origin == path.name
    verdicts: list[FormVerdict] = []
    for att, verdict in zip(parts.forms, judged.verdicts):
        if verdict is None:
            verdict = FormVerdict(att.filename, Outcome.UNREADABLE, form_findings=(Finding(
                "time_limit", f"附件过多或过大，未能在{limits.max_seconds_per_message:g}秒内处理完。"),))
        name = str(path) if single else f"{path} > {att.origin}"
        verdicts.append(FormVerdict(name, verdict.outcome, verdict.institution, verdict.contact,
                                    verdict.contact_phone, verdict.form_findings, verdict.rows, verdict.reading))
    if parts.problems:
        verdicts.append(FormVerdict(str(path), Outcome.UNREADABLE, form_findings=parts.problems))
    if not verdicts:
        verdicts.append(FormVerdict(str(path), Outcome.NOT_ANNEX3, form_findings=(NO_FORM,)))
    return verdicts
