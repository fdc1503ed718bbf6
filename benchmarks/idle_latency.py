"""Arrival -> reply latency of ``mailbot run`` (IMAP IDLE), as a distribution.

Starts a throwaway Dovecot and SMTP sink, runs ``mailbot run`` as a real process (polling every
60 s, so only IDLE explains a reply within seconds), then APPENDs one registration mail at a
time and measures from the APPEND to the reply reaching the sink.  Mails are spaced
``--gap`` seconds apart so each one finds the daemon idling.

A watcher of its own (a plain IMAP connection idling on the same folder) records when Dovecot
announces each mail (``* n EXISTS``), which splits the latency in two: the server's part
(APPEND -> EXISTS: Dovecot 2.3 waits 500 ms after a filesystem notification before it tells
an idling client, ``NOTIFY_DELAY_MSECS`` in ``mailbox-watch.c``) and mailbot's part (EXISTS ->
reply at the sink: the wake-up, the poll, the contained read, the SMTP send).

Run: ``.venv/bin/python benchmarks/idle_latency.py [--mails 20] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

ON_TIME = datetime(2020, 11, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
TRUSTED_AUTHSERV_ID = "mx.zjut.edu.cn"
IDLE_SETTLE_S = 1.5  # after daemon_started: the first poll done and the IDLE connection idling


def _mail(i: int) -> bytes:
    from forms_factory import make_annex3_xlsx, nominee
    from mail_factory import make_mail

    domain = f"school{i}.edu.cn"
    received = {"Authentication-Results": f"{TRUSTED_AUTHSERV_ID}; spf=pass smtp.mailfrom={domain}; "
                                          f"dkim=pass header.d={domain}; dmarc=pass header.from={domain}"}
    return make_mail(sender=f"reg{i}@{domain}", message_id=f"<idle.{i}.{time.time_ns()}@{domain}>",
                     attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(i)], institution=f"浙江第{i}职业技术学院"))],
                     extra_headers=received)


class ExistsWatcher:
    """An IMAP connection idling on INBOX that notes the monotonic time of every ``EXISTS``."""

    def __init__(self, dovecot: object, user: str) -> None:
        self.conn = dovecot.connect(user)  # type: ignore[attr-defined]
        self.conn.select("INBOX")
        self.conn.send(b"w1 IDLE\r\n")
        if not self.conn.readline().startswith(b"+"):
            raise RuntimeError("IDLE refused")
        self.times: list[float] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while line := self.conn.readline():
                if re.match(rb"\* \d+ EXISTS", line):
                    self.times.append(time.monotonic())
        except (OSError, ValueError):  # the connection closed under the read at the end
            pass

    def first_after(self, moment: float) -> float | None:
        return next((t for t in list(self.times) if t >= moment), None)

    def close(self) -> None:
        try:
            self.conn.send(b"DONE\r\n")
            self.conn.shutdown()
        except OSError:
            pass


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3)


def measure(mails: int, gap_s: float) -> dict[str, object]:
    from daemon_harness import MailbotProcess, write_config
    from servers import DovecotServer, SmtpSink

    work = Path(tempfile.mkdtemp(prefix="mailbot-idle-"))
    work.chmod(0o755)  # the Dovecot mail user must traverse it
    (work / "dovecot").mkdir()
    dovecot = DovecotServer(root=work / "dovecot")
    dovecot.start()
    sink = SmtpSink().start()
    daemon = None
    try:
        account = dovecot.add_user("idle")
        config = write_config(work, account, sink, trust={"authserv_ids": [TRUSTED_AUTHSERV_ID]})
        daemon = MailbotProcess("run", config)
        daemon.wait_for("daemon_started", timeout=30)
        watcher = ExistsWatcher(dovecot, account.user)
        time.sleep(IDLE_SETTLE_S)
        latencies: list[float] = []
        announced: list[float] = []  # APPEND -> EXISTS at the watcher: the server's part
        ours: list[float] = []  # EXISTS -> reply, for each mail whose EXISTS the watcher saw
        for i in range(1, mails + 1):
            raw = _mail(i)
            before = time.monotonic()
            dovecot.append(raw, ON_TIME, user=account.user)
            sink.wait_for(i, timeout=30)
            latencies.append(time.monotonic() - before)
            exists = watcher.first_after(before)
            if exists is not None:
                announced.append(exists - before)
                ours.append(latencies[-1] - announced[-1])
            time.sleep(gap_s)
        watcher.close()
        status = daemon.stop()
    finally:
        if daemon is not None and daemon.proc.poll() is None:
            daemon.kill()
        sink.stop()
        dovecot.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return {"mails": mails, "replies": len(latencies), "announced": len(announced), "exit_status": status,
            "median_s": round(statistics.median(latencies), 3), "p95_s": _p95(latencies),
            "max_s": round(max(latencies), 3), "latencies_s": [round(x, 3) for x in latencies],
            "server_median_s": round(statistics.median(announced), 3) if announced else None,
            "server_p95_s": _p95(announced) if announced else None,
            "mailbot_median_s": round(statistics.median(ours), 3) if ours else None,
            "mailbot_p95_s": _p95(ours) if ours else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mails", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between a reply and the next mail")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = measure(args.mails, args.gap)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"IDLE arrival -> reply over {result['mails']} mails: median {result['median_s']} s, "
              f"p95 {result['p95_s']} s, max {result['max_s']} s")
        print(f"  of which APPEND -> EXISTS (Dovecot): median {result['server_median_s']} s, "
              f"p95 {result['server_p95_s']} s ({result['announced']} of the mails' EXISTS seen by the watcher)")
        print(f"  of which EXISTS -> reply (mailbot): median {result['mailbot_median_s']} s, "
              f"p95 {result['mailbot_p95_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
