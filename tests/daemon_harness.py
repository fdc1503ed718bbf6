"""Runs ``mailbot run`` / ``mailbot poll`` as real subprocesses against the test servers.

``write_config`` writes a TOML file pointing at the Dovecot account and the SMTP sink;
``MailbotProcess`` starts the command, reads its JSON log lines from stdout as they come and
lets a test wait for a named event.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mail_factory import RECEIVING_SERVER

REPO = Path(__file__).resolve().parent.parent


def state_rows(state_dir: Path, sql: str) -> list[tuple]:
    """``sql`` on the state database, opened read-only as an auditor would (the daemon may run)."""
    with sqlite3.connect(f"file:{state_dir / 'mailbot.db'}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def write_config(tmp_path: Path, account: Any, sink: Any, *, name: str = "mailbot.toml",
                 **sections: dict[str, Any]) -> Path:
    """A config file ``tmp_path/name`` for the Dovecot ``account`` and SMTP ``sink``;
    ``sections`` override keys (``""``: the top level)."""
    data: dict[str, dict[str, Any]] = {
        "": {"state_dir": tmp_path / "state", "log_format": "json"},
        "mailbox": {"kind": "imap"},
        "imap": {"host": account.host, "port": account.port, "tls": "plain", "user": account.user,
                 "password": account.password, "timeout": 10},
        "smtp": {"mode": "smtp", "host": sink.host, "port": sink.port, "tls": "plain",
                 "envelope_from": "bounces@zjut.edu.cn", "retry_base_seconds": 0.01, "timeout": 10},
        "reply": {"message_id_domain": "mailbot.test"},
        "schedule": {"poll_seconds": 60, "backoff_max_seconds": 4},
        "trust": {"authserv_ids": [RECEIVING_SERVER]},  # as in production: our MX's results count
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.pop("").items()]
    for section, values in data.items():
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class MailbotProcess:
    """``python -m mailbot.cli COMMAND --config CONFIG`` with its log lines parsed as they arrive.

    The child gets none of the test run's ``MAILBOT_*`` variables, only those in ``env``."""

    def __init__(self, command: str, config: Path, env: dict[str, str] | None = None) -> None:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")},
               "PYTHONUNBUFFERED": "1", **(env or {})}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailbot.cli", command, "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            cwd=config.parent, env=env)
        self.events: list[dict[str, Any]] = []
        self.stdout_lines: list[str] = []
        self.stderr = ""
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.stdout_lines.append(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if isinstance(event, dict):
                    event["_t"] = time.monotonic()
                    self.events.append(event)
                self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        data = self.proc.stderr.read()
        with self._cond:
            self.stderr = data.decode("utf-8", "replace")

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e.get("event") == name]

    def wait_for(self, name: str, timeout: float = 10.0, *, after: int = 0) -> dict[str, Any]:
        """The ``after``-th (0-based) log event called ``name``; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if e.get("event") == name]
                if len(found) > after:
                    return found[after]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {name!r} log line within {timeout}s; log:\n{self.log_text()}")
                self._cond.wait(min(remaining, 0.2))

    def log_text(self) -> str:
        with self._cond:
            return "\n".join(self.stdout_lines[-60:]) + ("\n[stderr]\n" + self.stderr if self.stderr else "")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        self._err_reader.join(5)
        return rc

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not stop in ``timeout`` s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.wait(5)
            raise

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        return self.wait(10)
