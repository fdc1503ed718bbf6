"""Cost of an idle poll vs mailbox size: time and IMAP commands of ``Intake.poll_once`` when
nothing is new.

For each size N (default 0, 1,000, 10,000) a throwaway Dovecot user gets N small mails, left in
the state mailbot leaves them in:

- ``moved``: settle = "move" -- all N moved to ``Processed`` (one UID MOVE), INBOX empty with
  UIDNEXT N+1;
- ``kept``: settle = "flag" -- all N still in INBOX, flagged.

The state database gets N settled ``messages`` rows and N ``sent`` outbox rows and the cursor
at UID N, as after processing them.  Then one first poll (connects, logs in) and ``--polls``
steady idle polls are timed; every IMAP command imaplib sends is counted by wrapping
``imaplib.IMAP4._command``.

Run: ``.venv/bin/python benchmarks/idle_poll.py [--sizes 0,1000,10000] [--polls 50] [--json]``.
"""

from __future__ import annotations

import argparse
import imaplib
import io
import json
import os
import statistics
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from backlog import FIRST_ARRIVAL, CountingSink, bench_servers, peak_rss_mb  # noqa: E402

COMMANDS: list[str] = []
_original_command = imaplib.IMAP4._command


def _counting_command(self: imaplib.IMAP4, name: str, *args: Any) -> Any:
    COMMANDS.append(name if name != "UID" else f"UID {args[0]}")
    return _original_command(self, name, *args)


imaplib.IMAP4._command = _counting_command  # type: ignore[method-assign]


def fill_mailbox(account: Any, n: int, state: str) -> int:
    """APPEND ``n`` small mails over one connection and leave them ``moved`` or ``kept``;
    returns the INBOX UIDVALIDITY."""
    from mail_factory import make_mail
    from servers import quote_folder

    conn = imaplib.IMAP4(account.host, account.port, timeout=120)
    try:
        conn.login(account.user, account.password)
        for i in range(1, n + 1):
            raw = make_mail(sender=f"reg{i}@school{i}.edu.cn", message_id=f"<idle.{i}@school{i}.edu.cn>")
            typ, data = conn.append("INBOX", None, imaplib.Time2Internaldate(FIRST_ARRIVAL + timedelta(seconds=i)), raw)
            if typ != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
        conn.select("INBOX")
        if n:
            if state == "moved":
                typ, data = conn.uid("MOVE", "1:*", quote_folder("Processed"))
            else:
                typ, data = conn.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Flagged)")
            if typ != "OK":
                raise RuntimeError(f"settling the filler mail failed: {data!r}")
        conn.close()
        typ, data = conn.status("INBOX", "(UIDVALIDITY UIDNEXT MESSAGES)")
        values = data[0].decode().split("(")[1].rstrip(")").split()
        status = dict(zip(values[::2], map(int, values[1::2])))
        assert status["UIDNEXT"] == n + 1, status
        return status["UIDVALIDITY"]
    finally:
        conn.logout()


def fill_state(intake: Any, source: str, uidvalidity: int, n: int, folder: str) -> None:
    """N settled messages and N sent replies in the database, cursor at UID N."""
    state = intake.state
    at = (FIRST_ARRIVAL).isoformat()
    with state.transaction():
        state.db.conn.executemany(
            "INSERT INTO messages (id, source, uidvalidity, uid, source_key, message_id, sha256, size, arrived_at,"
            " sender, outcome, settle_folder, settled_at, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 1000, ?, ?, 'accepted', ?, ?, ?)",
            [(i, source, uidvalidity, i, str(i), f"<idle.{i}@school{i}.edu.cn>", f"{i:064x}", at,
              f"reg{i}@school{i}.edu.cn", folder, at, at) for i in range(1, n + 1)])
        state.db.conn.executemany(
            "INSERT INTO outbox (message, kind, to_address, subject, reply_message_id, raw, status,"
            " attempts, next_attempt_at, created_at, sent_at) VALUES (?, 'acceptance', ?, 'Re', ?, ?, 'sent', 1, ?, ?, ?)",
            [(i, f"reg{i}@school{i}.edu.cn", f"<r{i}@mailbot.test>", b"x" * 2000, at, at, at)
             for i in range(1, n + 1)])
        if n:
            state.advance_cursor(source, uidvalidity, n)


def measure(dovecot: Any, sink: CountingSink, work: Path, n: int, state: str, polls: int) -> dict[str, Any]:
    from intake_harness import imap_settings, open_intake

    account = dovecot.add_user(f"idle{state}{n}")
    t0 = time.perf_counter()
    uidvalidity = fill_mailbox(account, n, state)
    fill_s = time.perf_counter() - t0
    settings = imap_settings(work / f"state-{state}-{n}", account, SimpleNamespace(host=sink.host, port=sink.port),
                             imap={"sent_folder": "Sent"},
                             mailbox={"kind": "imap", "settle": "move" if state == "moved" else "flag"},
                             reply={"max_per_hour": 10 * n + 100})  # the N sent replies must not hold anything
    parts = open_intake(settings, io.StringIO())
    try:
        fill_state(parts.intake, parts.source.name, uidvalidity, n, "Processed" if state == "moved" else "INBOX")
        COMMANDS.clear()
        started = time.perf_counter()
        report = parts.intake.poll_once()
        first_ms = (time.perf_counter() - started) * 1000
        first_cmds = list(COMMANDS)
        assert report.fetched == 0, report
        times, per_poll = [], Counter()
        for _ in range(polls):
            COMMANDS.clear()
            started = time.perf_counter()
            report = parts.intake.poll_once()
            times.append((time.perf_counter() - started) * 1000)
            assert report.fetched == 0, report
            per_poll[" ".join(COMMANDS)] += 1
    finally:
        parts.close()
    times.sort()
    return {"size": n, "state": state, "fill_s": round(fill_s, 1), "first_poll_ms": round(first_ms, 2),
            "first_poll_commands": first_cmds, "median_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2), "commands_per_poll": dict(per_poll),
            "smtp_sent": sink.accepted}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0,1000,10000", help="comma-separated mailbox sizes")
    ap.add_argument("--states", default="moved,kept", help="moved (settle=move), kept (settle=flag)")
    ap.add_argument("--polls", type=int, default=50, help="steady idle polls timed per size")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    states = args.states.split(",")
    with bench_servers("mailbot-idle-") as (work, dovecot, sink):
        results = [measure(dovecot, sink, work, n, s, args.polls) for s in states for n in sizes]
    if args.json:
        print(json.dumps({"results": results, "peak_rss_mb": round(peak_rss_mb(), 1)}))
        return 0
    print(f"idle poll_once, {args.polls} polls per row; {os.cpu_count()} cores\n")
    print(f"{'state':<7}{'mails':>7}{'first ms':>10}{'median ms':>11}{'p95 ms':>9}  IMAP commands per idle poll")
    for r in results:
        cmds = "; ".join(f"{k or '(none)'} x{v}" for k, v in r["commands_per_poll"].items())
        print(f"{r['state']:<7}{r['size']:>7}{r['first_poll_ms']:>10.1f}{r['median_ms']:>11.2f}{r['p95_ms']:>9.2f}  {cmds}")
    print("\nfirst poll (fresh connection) commands: " + " ".join(results[0]["first_poll_commands"]))
    print(f"SMTP messages sent during idle polls: {results[-1]['smtp_sent']}; peak RSS {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
