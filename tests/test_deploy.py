"""The systemd unit and the example config are valid as shipped."""

from __future__ import annotations

import re
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
    assert run.stdout.splitlines()[-1].startswith("验证通过：事件日志能解释全部数据；审计链头 ")
    kept = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert len(kept) == 14 and kept[0] == "20190103T000000Z" and not kept[-1].startswith("2019")
    assert (tmp_path / "backups" / kept[-1] / "mailbot.db").is_file()


UNIT = ROOT / "deploy" / "systemd" / "mailbot.service"
DROP_IN = ROOT / "deploy" / "systemd" / "mailbot.service.d" / "ip-allow.conf.example"
DAEMON_ALLOWANCE = 400 * 1024 * 1024
"""What the daemon itself may use beside its workers (docs/RELIABILITY.md: the measured peak of
a poll with its workers stays under this)."""


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, values in order (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def test_the_unit_stops_a_crash_loop_and_carries_the_added_hardening() -> None:
    settings = unit_settings(UNIT.read_text())
    assert {k: settings.get(k) for k in ("StartLimitIntervalSec", "StartLimitBurst", "Restart", "PrivateUsers",
                                         "ProcSubset", "RemoveIPC", "PrivateMounts", "DevicePolicy")} == {
        "StartLimitIntervalSec": ["10min"], "StartLimitBurst": ["5"], "Restart": ["on-failure"],
        "PrivateUsers": ["yes"], "ProcSubset": ["pid"], "RemoveIPC": ["yes"], "PrivateMounts": ["yes"],
        "DevicePolicy": ["closed"]}
    unit_section = UNIT.read_text().split("[Service]")[0]
    assert "StartLimitIntervalSec=10min" in unit_section and "StartLimitBurst=5" in unit_section


def test_memory_max_covers_the_daemon_and_every_reader_worker_at_its_limit() -> None:
    from mailbot.limits import Limits

    limits = Limits()
    (memory_max,) = unit_settings(UNIT.read_text())["MemoryMax"]
    assert DAEMON_ALLOWANCE + limits.reader_workers * limits.reader_memory_bytes <= _bytes(memory_max)


def test_the_reader_workers_set_their_limits_only_with_a_syscall_the_unit_allows(tmp_path: Path) -> None:
    tool, strace = shutil.which("systemd-analyze"), shutil.which("strace")
    if tool is None or strace is None:
        pytest.skip("systemd-analyze or strace not installed on this machine")
    denied = subprocess.run([tool, "syscall-filter", "@resources", "@privileged"], capture_output=True,
                            text=True, timeout=60).stdout.split()
    script = ("from mailbot.forms import contained\n"
              "pool = contained.ReaderPool(contained.WorkerLimits(256 << 20, 5, 1 << 20))\n"
              "print(pool.call(sum, [1, 2], timeout=60)); pool.close()\n")
    log = tmp_path / "strace.log"
    run = subprocess.run([strace, "-f", "-qq", "-o", str(log), "-e", "trace=setrlimit,prlimit64",
                          sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.stdout == "3\n", run.stderr
    calls = [line.split("(")[0].split()[-1] for line in log.read_text().splitlines() if "(" in line]
    setting = [line for line in log.read_text().splitlines() if "RLIMIT_AS, {" in line]
    assert ("setrlimit" in denied, "prlimit64" in denied) == (True, False)
    assert sorted(set(calls)) == ["prlimit64"]
    assert len(setting) == 1 and "rlim_cur=262144*1024, rlim_max=262144*1024" in setting[0]


def _exposure(tool: str, *args: str) -> float:
    result = subprocess.run([tool, "security", "--offline=yes", *args], capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for mailbot\.service: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_systemd_analyze_security_rates_the_unit_with_its_ip_drop_in_at_most_1_0(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed on this machine")
    units = tmp_path / "etc" / "systemd" / "system"
    (units / "mailbot.service.d").mkdir(parents=True)
    (units / "mailbot.service").write_text(UNIT.read_text())
    assert _exposure(tool, "--root", str(tmp_path), "mailbot.service") <= 1.1  # was 1.4 before this unit
    (units / "mailbot.service.d" / "ip-allow.conf").write_text(DROP_IN.read_text())
    assert _exposure(tool, "--root", str(tmp_path), "mailbot.service") <= 1.0


def test_the_ip_drop_in_denies_everything_but_literal_addresses() -> None:
    settings = unit_settings(DROP_IN.read_text())
    assert settings["IPAddressDeny"] == ["any"]
    assert settings["IPAddressAllow"] == ["192.0.2.10", "192.0.2.25", "192.0.2.53", "localhost"]
