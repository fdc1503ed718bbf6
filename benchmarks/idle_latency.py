"""Arrival -> reply latency of ``mailbot run`` (IMAP IDLE), as a distribution.

Starts a throwaway Dovecot and SMTP sink, runs ``mailbot run`` as a real process (polling every
60 s, so only IDLE explains a reply within seconds), then APPENDs one registration mail at a
time and measures from the APPEND to the reply reaching the sink.  Mails are spaced
``--gap`` seconds apart so each one finds the daemon idling.  Dovecot here checks for new mail
every second (``mailbox_idle_check_interval``), which bounds the latency from below.

Run: ``.venv/bin/python benchmarks/idle_latency.py [--mails 20] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
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
        time.sleep(IDLE_SETTLE_S)
        latencies: list[float] = []
        for i in range(1, mails + 1):
            raw = _mail(i)
            before = time.monotonic()
            dovecot.append(raw, ON_TIME, user=account.user)
            sink.wait_for(i, timeout=30)
            latencies.append(time.monotonic() - before)
            time.sleep(gap_s)
        status = daemon.stop()
    finally:
        if daemon is not None and daemon.proc.poll() is None:
            daemon.kill()
        sink.stop()
        dovecot.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    ordered = sorted(latencies)
    return {"mails": mails, "replies": len(latencies), "exit_status": status,
            "median_s": round(statistics.median(ordered), 3),
            "p95_s": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
            "max_s": round(ordered[-1], 3), "latencies_s": [round(x, 3) for x in latencies]}


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
