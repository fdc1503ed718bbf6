"""The systemd unit and the example config are valid as shipped."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailbot.config import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads_with_every_section(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(ROOT / "deploy" / "mailbot.example.toml")
    assert (settings.mailbox.kind, settings.imap.tls, settings.smtp.mode) == ("imap", "implicit", "smtp")
    assert settings.imap.password.get_secret_value() == ""  # secrets come from files, never the config


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed on this machine")
    unit = (ROOT / "deploy" / "systemd" / "mailbot.service").read_text()
    assert "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit and "PrivateTmp=yes" in unit
    # verify needs ExecStart to exist: point it at this checkout's interpreter
    local = tmp_path / "mailbot.service"
    local.write_text(unit.replace("/opt/mailbot/.venv/bin/mailbot", sys.executable))
    result = subprocess.run([tool, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "mailbot.service" not in result.stderr, result.stderr
