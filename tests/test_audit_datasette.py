"""``mailbot audit serve``: Datasette on the state built by the demo's real intake, read-only.

Over HTTP: the metadata describes every table and view, the canned queries answer as the
tables say, and a canned query marked ``write: true`` is refused with the database file
unchanged. Once in a real headless browser (Debian ``chromium``): the canned query's page
shows its rows; the screenshot is kept at ``tests/artifacts/datasette-canned-query.png``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers import free_port
from mailbot.state.store import State

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "tests" / "artifacts" / "datasette-canned-query.png"
PROGRAM = "物流管理职业技能等级证书"
WRITE_QUERY = {"intrude": {"sql": "UPDATE nominees SET status = 'withdrawn'", "write": True}}


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.communicate()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("Datasette did not start listening")


def _start(command: list[str], cwd: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    _wait_for_port(port, proc)
    return proc


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's state: the bundled sample mails through one real intake cycle (Maildir)."""
    tmp = tmp_path_factory.mktemp("audit")
    done = subprocess.run([sys.executable, "-m", "mailbot.cli", "demo", "--dir", str(tmp / "demo")],
                          cwd=tmp, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")})
    assert done.returncode == 0, done.stderr
    return tmp / "demo"


@pytest.fixture(scope="module")
def server(demo_state: Path) -> Iterator[str]:
    """``mailbot audit serve`` on the demo's state; yields its base URL."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")},
           "MAILBOT_STATE_DIR": str(demo_state)}
    proc = _start([sys.executable, "-m", "mailbot.cli", "audit", "serve", "--port", str(port)],
                  demo_state.parent, env, port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.communicate(timeout=30)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def query(base: str, name: str, **params: str) -> list[dict[str, Any]]:
    return get_json(f"{base}/mailbot/{name}.json?" + urllib.parse.urlencode({**params, "_shape": "array"}))


def rows(state_dir: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    st = State.readonly(state_dir / "mailbot.db")
    try:
        return list(st.query(sql, params))
    finally:
        st.close()


def test_the_metadata_describes_every_table_view_and_column(server: str, demo_state: Path) -> None:
    described = get_json(f"{server}/-/metadata.json")["databases"]["mailbot"]["tables"]
    schema = rows(demo_state, "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
                              "AND name NOT LIKE 'sqlite_%' ORDER BY name")
    undescribed = []
    for item in schema:
        columns = [c["name"] for c in rows(demo_state, f"PRAGMA table_info({item['name']})")]
        meta = described.get(item["name"], {})
        if not meta.get("description"):
            undescribed.append(item["name"])
        undescribed += [f"{item['name']}.{c}" for c in columns if not meta.get("columns", {}).get(c)]
    assert {i["type"] for i in schema} == {"table", "view"} and undescribed == []
    assert described["roster"]["columns"]["waitlist_position"].startswith("1-based place on the program's waiting list")


def test_who_was_seated_in_a_program_and_when(server: str, demo_state: Path) -> None:
    expected = rows(demo_state, """
        SELECT n.program, n.institution, n.name, n.id_masked, m.receipt, n.requested_at AS arrived_at,
               (SELECT max(e.at) FROM events e WHERE e.nominee = n.id AND e.kind = 'nominee_seated') AS seated_at
        FROM nominees n JOIN messages m ON m.id = n.message
        WHERE n.program = ? AND n.status = 'seated' ORDER BY seated_at, arrived_at, n.id""", PROGRAM)
    assert len(expected) >= 2
    assert query(server, "seated_in_program", program=PROGRAM) == expected


def test_every_decision_about_a_person(server: str, demo_state: Path) -> None:
    (person,) = rows(demo_state, "SELECT id, id_masked FROM nominees WHERE program = ? ORDER BY id LIMIT 1", PROGRAM)
    expected = [e["kind"] for e in rows(demo_state, "SELECT kind FROM events WHERE nominee = ? ORDER BY id", person["id"])]
    found = query(server, "decisions_about_person", person=person["id_masked"])
    assert [r["kind"] for r in found] == expected and expected[0] == "nominee_seated"
    assert {r["program"] for r in found} == {PROGRAM}


def test_all_staff_decisions_are_empty_until_staff_decide(server: str) -> None:
    assert query(server, "all_staff_decisions") == []


def test_late_and_rejected_mail(server: str, demo_state: Path) -> None:
    expected = [(r["receipt"], r["outcome"]) for r in rows(
        demo_state, "SELECT receipt, outcome FROM messages WHERE outcome NOT IN "
                    "('accepted', 'correction', 'duplicate', 'ignored') ORDER BY id")]
    assert ("late" in {o for _, o in expected}) and len(expected) >= 3
    assert [(r["receipt"], r["outcome"]) for r in query(server, "late_and_rejected_mail")] == expected


def test_a_write_canned_query_is_refused_and_the_file_is_unchanged(demo_state: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    shutil.copytree(demo_state, state_dir)
    db = state_dir / "mailbot.db"
    st = State(state_dir)
    st.checkpoint()
    st.close()
    before = db.read_bytes()
    port = free_port()
    code = ("import sys; from pathlib import Path; from mailbot.office.audit import serve; "
            f"serve(Path(sys.argv[1]), host='127.0.0.1', port={port}, extra_queries={WRITE_QUERY!r})")
    proc = _start([sys.executable, "-c", code, str(db)], tmp_path, dict(os.environ), port)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/mailbot/intrude", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert answer == {"ok": False, "message": "attempt to write a readonly database", "redirect": None}
    st = State(state_dir)
    st.checkpoint()
    st.close()
    assert db.read_bytes() == before


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Debian chromium is not installed (run scripts/install-test-deps)"
        if os.environ.get("MAILBOT_SKIP_SERVERS") == "1":
            pytest.skip(message)
        pytest.fail(message + ", or set MAILBOT_SKIP_SERVERS=1", pytrace=False)
    return found


def _headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")
    return subprocess.run([chromium, *flags, *args], capture_output=True, timeout=180)


def test_a_real_browser_shows_the_canned_querys_rows(server: str, demo_state: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    url = f"{server}/mailbot/seated_in_program?" + urllib.parse.urlencode({"program": PROGRAM})
    dom = _headless(chromium, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    cells = re.findall(r'<td class="col-(\w+)[^"]*">(.*?)</td>', dom.stdout.decode())
    shown = [html.unescape(re.sub(r"<[^>]+>", "", v)).strip() for c, v in cells if c == "id_masked"]
    expected = [r["id_masked"] for r in query(server, "seated_in_program", program=PROGRAM)]
    assert shown == expected and len(expected) >= 2
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = _headless(chromium, tmp_path / "profile", f"--screenshot={SCREENSHOT}", "--window-size=1280,900", url)
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {SCREENSHOT}")
