"""Everyone reads the notice's words: it speaks of 报名, never of 录取 (issue 8, "Replies").

50 places per program and first-come seating are the office's working rule, not a decision the
notice makes, so no sender, staff member or host institution is told anyone was "admitted" or
that places are "full" for good.  Staff and hosts read one set of status words (one table,
``STAFF_STATUS_LABELS``), senders the same meaning at greater length (``STATUS_LABELS``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mailbot.office import history, rosters
from mailbot.replies.render import CHANGE_LABELS, STAFF_STATUS_LABELS, staff_status

ROOT = Path(__file__).resolve().parents[1]
#: words that state a decision the notice never makes
NOT_THE_NOTICES_WORDS = ("录取", "名额已满")


def printed_strings(path: Path, *, docstrings_printed: bool = False) -> list[tuple[int, str]]:
    """Every string literal of a Python module (f-string parts included) that can reach a reader:
    all but docstrings and other bare string statements, which explain the code, unless
    ``docstrings_printed`` (the command line's docstrings are its commands' help)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    explaining = set() if docstrings_printed else {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in explaining]


def words_found(texts: list[tuple[str, str]]) -> list[str]:
    """``where: text`` for every text holding one of the words the notice never uses."""
    return [f"{where}: {text}" for where, text in texts if any(w in text for w in NOT_THE_NOTICES_WORDS)]


def test_no_template_says_admitted_or_full() -> None:
    templates = sorted((ROOT / "templates").glob("*.j2"))
    assert len(templates) >= 40  # every reply, notice, digest, alert and the host's roster mail
    lines = [(f"{t.name}:{n}", line) for t in templates
             for n, line in enumerate(t.read_text(encoding="utf-8").splitlines(), 1)]
    assert words_found(lines) == []


def test_no_rules_text_says_admitted_or_full() -> None:
    lines = [(f"{r.name}:{n}", line) for r in sorted((ROOT / "rules").glob("*.toml"))
             for n, line in enumerate(r.read_text(encoding="utf-8").splitlines(), 1)]
    assert words_found(lines) == []


def test_no_text_mailbot_prints_says_admitted_or_full() -> None:
    """Labels, subjects, staff command output and help: every string literal in the package."""
    modules = sorted((ROOT / "mailbot").rglob("*.py"))
    found = [(f"{m.relative_to(ROOT)}:{line}", text) for m in modules
             for line, text in printed_strings(m, docstrings_printed=m.name == "cli.py")]
    assert len(found) > 1000  # the scan reads the package, not an empty list
    assert words_found(found) == []


def test_the_scan_of_printed_strings_sees_labels_and_f_strings_but_not_docstrings(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""从不说录取。"""\nLABELS = {"seated": "已录取"}\n\n\ndef f(n):\n'
                      '    """录取."""\n    return f"已录取{n}人"\n', encoding="utf-8")
    assert words_found([(str(line), text) for line, text in printed_strings(module)]) == [
        "2: 已录取", "7: 已录取"]


def test_staff_and_hosts_read_one_set_of_status_words() -> None:
    assert STAFF_STATUS_LABELS == {"seated": "计划名额内", "waiting": "候补", "held": "待审核", "withdrawn": "已撤回"}
    assert CHANGE_LABELS == {"seated": "进入计划名额内", "waiting": "进入候补", "promoted": "递补为计划名额内",
                             "withdrawn": "已撤回", "held": "待审核（未占名额）"}


def test_the_roster_and_the_history_take_their_status_words_from_that_one_table() -> None:
    assert rosters.STATUS_LABELS == STAFF_STATUS_LABELS
    assert {k: v for k, v in history.STATUS_WORDS.items() if k != "conflict"} == STAFF_STATUS_LABELS


@pytest.mark.parametrize(("status", "position", "words"), [
    ("seated", None, "计划名额内"),
    ("waiting", 3, "候补（第3位）"),
    ("waiting", None, "候补"),
    ("held", None, "待审核"),
    ("withdrawn", None, "已撤回"),
    ("no_such_status", None, "no_such_status"),
])
def test_a_status_in_the_staff_words(status: str, position: int | None, words: str) -> None:
    assert staff_status(status, position) == words

