"""Every form in tests/golden/ gives exactly the committed ``NAME.expected.json`` (the object
``mailbot check --json`` prints).  Regenerate after a deliberate change with
``MAILBOT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden_forms.py`` and review the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mailbot.forms.check_report import verdict_to_json
from mailbot.bundled import default_rules_file
from mailbot.forms.checks import judge_file
from mailbot.rules import load_rules

GOLDEN = Path(__file__).resolve().parent / "golden"
INPUTS = sorted(p for p in GOLDEN.iterdir() if p.suffix in {".xlsx", ".xls", ".ods", ".docx", ".csv"})
UPDATE = os.environ.get("MAILBOT_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_golden_form_gives_its_expected_json(path):
    verdict = judge_file(path.read_bytes(), path.name, load_rules(default_rules_file()))
    actual = verdict_to_json(verdict)
    expected_path = path.with_name(path.name + ".expected.json")
    if UPDATE:
        expected_path.write_text(json.dumps(actual, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert actual == json.loads(expected_path.read_text(encoding="utf-8"))
