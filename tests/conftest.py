"""Generic fixtures shared by the whole suite: the real test servers.

``dovecot`` is one Dovecot per session; ``imap_account`` a fresh user on it per test;
``smtp_sink`` a fresh SMTP sink per test.  When the servers cannot run the fixtures fail
(they never skip silently) unless ``MAILBOT_SKIP_SERVERS=1``.  Other fixtures belong in
the test files that use them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Test helpers import the harness as ``servers`` whether or not tests/ is a package.
sys.path.insert(0, str(Path(__file__).parent)) if str(Path(__file__).parent) not in sys.path else None

from corpus import MISSING, REQUIRED, corpus_present, require_corpus  # noqa: E402
from servers import DovecotServer, ImapAccount, ServerUnavailable, SmtpSink  # noqa: E402


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} unavailable: {exc}"
    if os.environ.get("MAILBOT_SKIP_SERVERS") == "1":
        pytest.skip(message)
    pytest.fail(f"{message}\n(run scripts/install-test-deps, or set MAILBOT_SKIP_SERVERS=1)", pytrace=False)


def _running_dovecot(what: str, **options: Any) -> Iterator[DovecotServer]:
    if os.environ.get("MAILBOT_SKIP_SERVERS") == "1":
        pytest.skip("MAILBOT_SKIP_SERVERS=1")
    try:
        server = DovecotServer(**options)
        server.start()
    except (ServerUnavailable, OSError) as exc:
        _unavailable(what, exc)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """One throwaway Dovecot for the session (127.0.0.1, free port, temp dir)."""
    yield from _running_dovecot("Dovecot")


@pytest.fixture
def imap_account(dovecot: DovecotServer) -> ImapAccount:
    """A fresh, empty mailbox user on the session Dovecot (folders auto-created)."""
    return dovecot.add_user()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A fresh SMTP sink on 127.0.0.1 keeping every accepted message in ``.messages``."""
    if os.environ.get("MAILBOT_SKIP_SERVERS") == "1":
        pytest.skip("MAILBOT_SKIP_SERVERS=1")
    try:
        sink = SmtpSink().start()
    except (OSError, RuntimeError) as exc:
        _unavailable("SMTP sink", exc)
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[DovecotServer]:
    """A second session Dovecot with TLS: STARTTLS on ``.port``, implicit TLS on ``.tls_port``;
    its self-signed certificate is ``.cert_path``.  It refuses any login before TLS, and listens
    on 127.0.0.2 so that Dovecot does not count the client (127.0.0.1) as local and secure."""
    yield from _running_dovecot("Dovecot (TLS)", tls=True, host="127.0.0.2")


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The real-world corpus folder (``tests/corpus.py``): skips, or fails when it is required."""
    return require_corpus()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Without the corpus, one line says how many corpus tests were skipped and why."""
    if corpus_present():
        return
    if REQUIRED:
        terminalreporter.write_line(f"corpus tests failed: {MISSING}, and MAILBOT_CORPUS_REQUIRED=1")
        return
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if MISSING in str(r.longrepr)]
    terminalreporter.write_line(f"{len(skipped)} corpus tests skipped: {MISSING}")
