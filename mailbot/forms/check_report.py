"""``mailbot check``: print the verdicts of files judged by hand, for staff as a Chinese table
(outcome labels and finding messages, no codes) or as JSON lines with the codes; the
terminal's progress bar for ``mailbot poll`` (rich, here only).

Personal data is masked in every output: identity numbers as ``3301**********123X``, phones as
``138****5678``.  Exit status: 0 when every file is ok, 1 when any needs action
(needs_correction, redirect, not_annex3), 2 when any file is unreadable or the rules are bad.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from mailbot.errors import ConfigError
from mailbot.forms.model import Finding, FormVerdict, Outcome
from mailbot.masking import mask_id, mask_phone
from mailbot.rules import CampaignRules, load_rules

EXIT_OK = 0
EXIT_ACTION = 1
EXIT_UNREADABLE = 2

_OUTCOME_STYLE = {
    Outcome.OK: ("green", "通过"),
    Outcome.NEEDS_CORRECTION: ("yellow", "需修改"),
    Outcome.REDIRECT: ("magenta", "中职学校，应通过平台报名"),
    Outcome.NOT_ANNEX3: ("red", "不是附件3报名表"),
    Outcome.UNREADABLE: ("red", "无法读取"),
}
"""What staff read for each outcome (the codes are for ``--json`` only)."""

Judge = Callable[[Path, CampaignRules], list[FormVerdict]]
"""Reads one file the daemon's way: one verdict per form found (``mailbot.office.hand_check``)."""


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on the terminal, counting up without a known total; yields
    ``advance(n)``."""
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda n: bar.advance(task, n)


def verdict_to_json(verdict: FormVerdict) -> dict[str, Any]:
    """The JSON object printed by ``mailbot check --json`` for one file (personal data masked)."""
    return {
        "file": verdict.filename,
        "outcome": verdict.outcome.value,
        "institution": verdict.institution,
        "contact": verdict.contact,
        "contact_phone": mask_phone(verdict.contact_phone),
        "form_findings": [{"code": f.code, "message": f.message} for f in verdict.form_findings],
        "rows": [
            {
                "row": r.row,
                "program": r.program,
                "name": r.name,
                "gender": r.gender,
                "position": r.position,
                "email": r.email,
                "id_masked": mask_id(r.id_number),
                "phone": mask_phone(r.phone),
                "ok": r.ok,
                "findings": [
                    {"column": f.column, "code": f.code, "message": f.message} for f in r.findings
                ],
            }
            for r in verdict.rows
        ],
    }


def exit_code(verdicts: list[FormVerdict]) -> int:
    """2 if any file is unreadable, else 1 if any needs action, else 0."""
    outcomes = {v.outcome for v in verdicts}
    if Outcome.UNREADABLE in outcomes:
        return EXIT_UNREADABLE
    if outcomes - {Outcome.OK}:
        return EXIT_ACTION
    return EXIT_OK


def _findings_text(findings: tuple[Finding, ...]) -> Text:
    return Text("\n".join(f.message for f in findings), style="red")


def render_verdict(verdict: FormVerdict, console: Console) -> None:
    """Print one verdict as a readable block: a summary, form findings, then a row table."""
    style, label = _OUTCOME_STYLE[verdict.outcome]
    console.rule(Text(verdict.filename, style="bold"))
    summary = Table.grid(padding=(0, 2))
    summary.add_row("结果", Text(label, style=f"bold {style}"))
    summary.add_row("填报单位", verdict.institution or "—")
    summary.add_row("联系人", verdict.contact or "—")
    summary.add_row("联系电话", mask_phone(verdict.contact_phone) or "—")
    console.print(summary)
    for f in verdict.form_findings:
        console.print(Text("• ") + _findings_text((f,)))
    if not verdict.rows:
        return
    table = Table(show_lines=True, expand=True)
    for header in ("行", "项目", "姓名", "性别", "职务", "电子邮箱", "身份证号", "手机", "问题"):
        table.add_column(header, overflow="fold")
    for r in verdict.rows:
        table.add_row(
            str(r.row),
            r.program,
            r.name,
            r.gender,
            r.position,
            r.email,
            mask_id(r.id_number),
            mask_phone(r.phone),
            _findings_text(r.findings) if r.findings else Text("无", style="green"),
        )
    console.print(table)


def _crashed(path: Path, exc: Exception) -> FormVerdict:
    return FormVerdict(
        str(path),
        Outcome.UNREADABLE,
        form_findings=(Finding("internal_error", f"内部错误，无法检查此文件（{type(exc).__name__}）。"),),
    )


def run_check(files: list[Path], as_json: bool, rules_path: Path | None, judge: Judge) -> int:
    """Judge every file with ``judge`` and print the verdicts (Chinese table, or JSON lines with
    the codes); returns the process exit status."""
    try:
        rules = load_rules(rules_path)
    except ConfigError as exc:
        print(f"mailbot：规则文件有误（{exc.source}），请联系技术人员：", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_UNREADABLE
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    verdicts: list[FormVerdict] = []
    for path in files:
        try:
            found = judge(path, rules)
        except Exception as exc:  # noqa: BLE001 - one broken file must not hide the others
            print(f"mailbot：检查 {path} 时出现内部错误（{type(exc).__name__}）", file=sys.stderr)
            found = [_crashed(path, exc)]
        verdicts.extend(found)
        for verdict in found:
            if as_json:
                sys.stdout.write(json.dumps(verdict_to_json(verdict), ensure_ascii=False) + "\n")
            else:
                render_verdict(verdict, console)
    sys.stdout.flush()
    return exit_code(verdicts)
