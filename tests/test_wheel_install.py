"""mailbot installed as the README deploys it (a wheel, not editable) answers as from the checkout.

The wheel is built from a copy of the checkout (``pip wheel --no-deps --no-build-isolation
--no-index``: no network, no ``build/`` or ``*.egg-info`` left in the checkout, no stale
file list from an earlier build) and installed by the suite's pip (``pip --python VENV install
--no-deps``) into a fresh venv made ``--without-pip``.  The venv gets its dependencies from a ``.pth`` line naming the suite
venv's site-packages: fast and offline, and safe because a path line in a ``.pth`` file is
only appended to ``sys.path`` (the editable install's own ``.pth`` hook there never runs), so
``mailbot`` can only come from the wheel.  ``--system-site-packages`` would not do: the
dependencies live in the suite venv, not in the system Python.

Every command then runs from a directory outside the checkout, with no system zone data
(``PYTHONTZPATH=""``: the time zone comes from the declared tzdata), once with the installed
``mailbot`` and once with the checkout's code (``python -m mailbot.cli`` in the suite venv),
and the results are compared file by file: ``check --json`` lines and exit codes, the demo's
reply files, and the messages a poll sends to the SMTP sink.  Only what must differ between
two runs is normalised: ``Date`` and ``Message-ID`` headers, MIME boundaries and the xlsx
files' write times.  Receipts need no normalising: each run starts from a fresh database and
numbers its messages alike.
"""

from __future__ import annotations

import email
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon_harness import write_config
from servers import SmtpSink

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
DEMO_MAIL = REPO / "mailbot" / "demo_mail"
FORMS = ("official.xlsx", "bad_rows.xlsx", "official.docx", "official.lo.xls", "not_annex3.xlsx")
TOP_NOT_COPIED = {".venv", ".git", "state", "build", "dist", "tests", "benchmarks", ".pytest_cache", ".hypothesis"}


def _not_copied(directory: str, names: list[str]) -> set[str]:
    """Left out of the build copy: the checkout's own venv, state and earlier build output."""
    top = TOP_NOT_COPIED if Path(directory) == REPO else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Installed:
    """The fresh venv holding the wheel."""

    venv: Path
    site_packages: Path

    @property
    def mailbot(self) -> Path:
        return self.venv / "bin" / "mailbot"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(args: list[str | Path], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A command with the caller's environment minus anything that could point back at the
    checkout (PYTHONPATH) or change mailbot's settings (MAILBOT_*), and as on a system without
    zone data (empty PYTHONTZPATH): ``zoneinfo`` must find Asia/Shanghai in the declared tzdata."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MAILBOT_") and k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE")}
    env.update(PYTHONNOUSERSITE="1", PYTHONTZPATH="")
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240, **kwargs)


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, ignore=_not_copied)
    _ok(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
              "--no-index", "-w", base / "dist", source], cwd=base))
    (wheel,) = (base / "dist").glob("mailbot-*.whl")
    venv = base / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base))
    _ok(_run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
              "--no-deps", "--no-index", wheel], cwd=base))
    site = Path(_ok(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         cwd=base)).stdout.strip())
    (site / "mailbot_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(venv, site)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """An empty working directory outside the checkout."""
    where = tmp_path / "elsewhere"
    where.mkdir()
    assert not where.resolve().is_relative_to(REPO)
    return where


def checkout_mailbot() -> list[str | Path]:
    return [sys.executable, "-m", "mailbot.cli"]


# --- normalising what differs between two runs ---------------------------------------------

_XLSX_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _attachment(data: bytes) -> Any:
    """An xlsx as its members (write times masked); any other file as its bytes."""
    if not data.startswith(b"PK"):
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: _XLSX_TIME.sub(b"<time>", z.read(name)) for name in z.namelist()}


def normalised(raw: bytes) -> list[Any]:
    """A message as comparable parts: headers (Date, Message-ID masked), then each part's
    content type, parameters but the boundary, file name and content."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    masked = {"date": "<date>", "message-id": "<message-id>"}
    out: list[Any] = [[(k, masked.get(k.lower(), str(v))) for k, v in msg.items()
                       if k.lower() != "content-type"]]
    for part in msg.walk():
        params = {k: v for k, v in part.get_params() or [] if k != "boundary"}
        entry: list[Any] = [part.get_content_type(), params, part.get_filename()]
        if not part.is_multipart():
            content = part.get_content()
            entry.append(content if isinstance(content, str) else _attachment(content))
        out.append(entry)
    return out


def outbox_files(directory: Path) -> dict[str, list[Any]]:
    return {p.name: normalised(p.read_bytes()) for p in sorted(directory.glob("*.eml"))}


def outcomes(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT sender, outcome, receipt FROM messages ORDER BY id").fetchall()


# --- tests ----------------------------------------------------------------------------------

def test_the_installed_package_and_its_bundled_files_come_from_the_venv_not_the_checkout(
        installed: Installed, outside: Path) -> None:
    probe = """
import json, os, sys
import mailbot.cli, mailbot.daemon
from mailbot import bundled
files = [m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
ours = [m.__file__ for name, m in list(sys.modules.items())
        if (name == "mailbot" or name.startswith("mailbot.")) and getattr(m, "__file__", None)]
print(json.dumps({"mailbot": ours,
                  "bundled": [str(bundled.default_rules_file()), str(bundled.templates_dir()),
                              str(bundled.demo_mail_dir())],
                  "shipped": [sorted(os.listdir(d)) for d in (bundled.rules_dir(), bundled.templates_dir(),
                                                              bundled.demo_mail_dir())],
                  "all": files}))
"""
    seen = json.loads(_ok(_run([installed.python, "-c", probe], cwd=outside)).stdout)
    suite_venv = REPO / ".venv"
    from_checkout = [f for f in seen["all"]
                     if Path(f).is_relative_to(REPO) and not Path(f).is_relative_to(suite_venv)]
    assert from_checkout == []
    assert [f for f in seen["mailbot"] if not Path(f).is_relative_to(installed.site_packages)] == []
    assert [Path(p).relative_to(installed.site_packages).as_posix() for p in seen["bundled"]] == [
        "mailbot/campaign_rules/zhejiang-2020-1x.toml", "mailbot/reply_templates", "mailbot/demo_mail"]
    in_checkout = [sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")
                   for folder in (REPO / "rules", REPO / "templates", DEMO_MAIL)]
    assert [[n for n in names if n != "__pycache__"] for names in seen["shipped"]] == in_checkout


def test_check_json_of_the_installed_mailbot_matches_the_checkout_line_by_line(
        installed: Installed, tmp_path: Path) -> None:
    answers = {}
    for name, command in (("installed", [installed.mailbot]), ("checkout", checkout_mailbot())):
        where = tmp_path / name
        where.mkdir()
        for form in FORMS:
            shutil.copy(GOLDEN / form, where / form)
        result = _run([*command, "check", "--json", *FORMS], cwd=where)
        answers[name] = (result.returncode, [json.loads(line) for line in result.stdout.splitlines()],
                         result.stderr)
    expected = [json.loads((GOLDEN / f"{form}.expected.json").read_text(encoding="utf-8")) for form in FORMS]
    assert answers["checkout"] == (1, expected, "")
    assert answers["installed"] == answers["checkout"]


def test_demo_of_the_installed_mailbot_writes_the_same_replies_as_the_checkout(
        installed: Installed, outside: Path) -> None:
    _ok(_run([installed.mailbot, "demo", "--dir", outside / "installed"], cwd=outside))
    _ok(_run([*checkout_mailbot(), "demo", "--dir", outside / "checkout"], cwd=outside))
    replies = {name: outbox_files(outside / name / "outbox") for name in ("installed", "checkout")}
    assert list(replies["installed"]) == list(replies["checkout"])
    for name in replies["checkout"]:
        assert replies["installed"][name] == replies["checkout"][name], name
    assert len(replies["checkout"]) == 9
    assert outcomes(outside / "installed" / "mailbot.db") == outcomes(outside / "checkout" / "mailbot.db")


@pytest.mark.servers
def test_a_poll_by_the_installed_mailbot_sends_the_same_messages_as_the_checkout(
        installed: Installed, tmp_path: Path, dovecot, smtp_sink: SmtpSink) -> None:
    beijing = ZoneInfo("Asia/Shanghai")
    samples = sorted(DEMO_MAIL.glob("*.eml"))
    sent: dict[str, list[list[Any]]] = {}
    recorded = {}
    for name, command in (("installed", [installed.mailbot]), ("checkout", checkout_mailbot())):
        where = tmp_path / name
        where.mkdir()
        account = dovecot.add_user()
        for sample in samples:
            stamp = sample.stem.split("_")[1]
            dovecot.append(sample.read_bytes(), datetime.strptime(stamp, "%Y-%m-%dT%H-%M").replace(tzinfo=beijing),
                           user=account.user)
        smtp_sink.clear()
        config = write_config(where, account, smtp_sink)
        _ok(_run([*command, "poll", "--config", config], cwd=where))
        sent[name] = [[m.mail_from, sorted(m.rcpt_tos), normalised(m.raw)] for m in smtp_sink.messages]
        recorded[name] = outcomes(where / "state" / "mailbot.db")
    assert (len(sent["installed"]), len(sent["checkout"])) == (9, 9)
    for i, message in enumerate(sent["checkout"]):
        assert sent["installed"][i] == message, i
    assert recorded["installed"] == recorded["checkout"]
