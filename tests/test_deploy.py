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


def test_the_backup_timer_and_service_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed on this machine")
    for name in ("mailbot-backup.service", "mailbot-backup.timer"):
        text = (ROOT / "deploy" / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/mailbot/.venv/bin/mailbot", sys.executable))
    result = subprocess.run([tool, "verify", str(tmp_path / "mailbot-backup.timer"),
                             str(tmp_path / "mailbot-backup.service")], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_backup_units_command_backs_up_verifies_and_keeps_the_newest(tmp_path: Path) -> None:
    """The service's ExecStart, run by sh as systemd would (%% unescaped), on the demo's state."""
    import os
    import re

    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    demo = subprocess.run([sys.executable, "-m", "mailbot.cli", "demo", "--dir", str(tmp_path / "state")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr
    (tmp_path / "mailbot.toml").write_text(f'state_dir = "{tmp_path / "state"}"\n')
    unit = (ROOT / "deploy" / "systemd" / "mailbot-backup.service").read_text()
    (script,) = re.findall(r"^ExecStart=/bin/sh -ec '(.*?)'$", unit.replace("\\\n", ""), re.M | re.S)
    mailbot = tmp_path / "mailbot"
    mailbot.write_text(f'#!/bin/sh\nexec {sys.executable} -m mailbot.cli "$@"\n')
    mailbot.chmod(0o755)
    script = (script.replace("%%", "%").replace("/opt/mailbot/.venv/bin/mailbot", str(mailbot))
              .replace("/var/backups/mailbot", str(tmp_path / "backups"))
              .replace("/etc/mailbot/mailbot.toml", str(tmp_path / "mailbot.toml")))
    (tmp_path / "backups").mkdir()
    for old in range(15):
        (tmp_path / "backups" / f"201901{old + 1:02d}T000000Z").mkdir()  # 15 older copies
    run = subprocess.run(["/bin/sh", "-ec", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.stdout.splitlines()[-1].startswith("verified: the event log explains the state; head ")
    kept = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert len(kept) == 14 and kept[0] == "20190103T000000Z" and not kept[-1].startswith("2019")
    assert (tmp_path / "backups" / kept[-1] / "mailbot.db").is_file()
