"""Backlog throughput: mailbot vs the bare I/O it cannot avoid, on the same mailbox, same run.

Starts a throwaway Dovecot and an SMTP sink (``tests/servers.py``), appends N realistic
registration mails to two users (same bytes, same arrival times), then runs, each in a fresh
child process so time and peak RSS are its own:

- ``bare``: the floor -- UID FETCH (batches of 20), MIME parse, ``read_annex3`` on each form
  attachment, one durable SQLite commit (WAL, synchronous=FULL) and one SMTP send per mail;
- ``mailbot``: ``Intake.poll_once`` as ``mailbot poll`` runs it (production settings: settle by
  MOVE, copy of each reply APPENDed to ``Sent``).

Prints a table and the ratio mailbot/bare.  ``--profile`` runs the mailbot phase under
cProfile and prints the top costs.  ``--json`` prints the result as one JSON object.

Run: ``.venv/bin/python benchmarks/backlog.py [--messages 10000] [--profile]``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import imaplib
import io
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
import time
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST_ARRIVAL = datetime(2020, 11, 2, 9, 0, tzinfo=SHANGHAI)  # on time; one second apart
PROGRAMS = ("物流管理", "老年照护", "Web前端开发", "智能财税", "网店运营推广", "建筑信息模型（BIM）",
            "数控车铣加工", "汽车运用与维修", "财务共享服务", "工业机器人操作与运维", "建筑工程识图",
            "数字创意建模", "智能新能源汽车", "跨境电商B2B数据运营", "研学旅行策划与管理（EEPM）")
TEMPLATE_INSTITUTION = "浙江模板职业技术学院"
FORM_FILENAME = "附件3：高校参训教师信息汇总表.xlsx"
FETCH_BATCH = 20  # same as ImapSettings.fetch_batch
_TEXT_NODE = re.compile(rb">([^<>]+)<")


# ---- the mailbox ---------------------------------------------------------------------------

def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak RSS of this process image, MB.  VmHWM, not ru_maxrss: Linux keeps ru_maxrss across
    exec, so a child would report the parent's peak (it held the whole generated backlog)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unique_identity_number(s: int, gender: str) -> str:
    """A valid synthetic identity number, distinct for every ``s`` below 5,040,000."""
    from forms_factory import make_identity_number

    day = s % 10080
    born = date(1970 + day % 30, 1 + (day // 30) % 12, 1 + day // 360)
    return make_identity_number(born, gender, serial=s // 10080)


def _xml_text(text: str) -> bytes:
    """``text`` as openpyxl writes it in a cell: escaped, non-ASCII as character references."""
    return html.escape(text, quote=False).encode("ascii", "xmlcharrefreplace")


class FormStamper:
    """Distinct Annex 3 workbooks fast: one openpyxl template per row count, then each mail's
    institution, identity numbers, phones and emails substituted into the sheet XML (openpyxl
    writes inline strings) and re-zipped -- about 1 ms instead of 16 ms per workbook."""

    def __init__(self) -> None:
        from forms_factory import make_annex3_xlsx, nominee

        self._nominee = nominee
        self._templates: dict[int, dict[str, bytes]] = {}
        for rows in range(1, 11):
            data = make_annex3_xlsx([nominee(k, program=PROGRAMS[k % len(PROGRAMS)]) for k in range(1, rows + 1)],
                                    institution=TEMPLATE_INSTITUTION)
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                self._templates[rows] = {n: zf.read(n) for n in zf.namelist()}

    def form(self, serial: int, rows: int, institution: str, *, bad_phone_row: int | None = None,
             programs: tuple[str, ...] = PROGRAMS) -> bytes:
        """Workbook for mail ``serial``: ``rows`` nominees with serials unique to this mail."""
        subs: dict[str, str] = {TEMPLATE_INSTITUTION: institution}
        for k in range(1, rows + 1):
            old = self._nominee(k)
            s = serial * 10 + k
            subs[str(old.id_number)] = unique_identity_number(s, str(old.gender))
            subs[str(old.phone)] = "1381234" if k == bad_phone_row else f"139{s:08d}"
            subs[str(old.email)] = f"t{serial}x{k}@example.edu.cn"
            subs[PROGRAMS[k % len(PROGRAMS)]] = programs[(serial + k) % len(programs)]
        escaped = {_xml_text(k): _xml_text(v) for k, v in subs.items()}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
            for name, data in self._templates[rows].items():
                if name.startswith("xl/worksheets/"):  # one pass: a new value is never replaced again
                    data = _TEXT_NODE.sub(lambda m: b">" + escaped.get(m.group(1), m.group(1)) + b"<", data)
                out.writestr(name, data)
        return buf.getvalue()


@dataclass(frozen=True)
class MixCounts:
    clean: int = 0
    errors: int = 0
    no_attachment: int = 0


def make_backlog(n: int, seed: int = 20201102) -> tuple[list[bytes], MixCounts]:
    """``n`` mails: ~85% clean forms (2-10 rows), ~10% with a bad phone, ~5% no attachment.
    Each from its own sender and institution, so no per-sender reply limit kicks in."""
    from mail_factory import make_mail

    rng = random.Random(seed)
    stamper = FormStamper()
    mails: list[bytes] = []
    clean = errors = bare = 0
    clients = ("qq", "foxmail", "outlook", "163")
    for i in range(1, n + 1):
        sender = f"reg{i}@school{i}.edu.cn"
        institution = f"浙江第{i}职业技术学院"
        roll = rng.random()
        if roll < 0.05:
            attachments: list[tuple[str, bytes]] = []
            bare += 1
        else:
            rows = rng.randint(2, 10)
            bad = rng.randint(1, rows) if roll < 0.15 else None
            attachments = [(FORM_FILENAME, stamper.form(i, rows, institution, bad_phone_row=bad))]
            errors += bad is not None
            clean += bad is None
        mails.append(make_mail(sender=sender, subject=f"报名表-{institution}", attachments=attachments,
                               client=clients[i % len(clients)], message_id=f"<bench.{i}@school{i}.edu.cn>"))
    return mails, MixCounts(clean, errors, bare)


def append_all(account: Any, mails: list[bytes], folder: str = "INBOX") -> float:
    """APPEND every mail over one connection, arrival times one second apart; returns seconds."""
    from servers import quote_folder

    started = time.perf_counter()
    conn = imaplib.IMAP4(account.host, account.port, timeout=60)
    try:
        conn.login(account.user, account.password)
        for i, raw in enumerate(mails):
            when = imaplib.Time2Internaldate(FIRST_ARRIVAL + timedelta(seconds=i))
            typ, data = conn.append(quote_folder(folder), None, when, raw)
            if typ != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
    finally:
        conn.logout()
    return time.perf_counter() - started


class CountingSink:
    """The test SMTP sink, but counting accepted messages instead of keeping them (the
    orchestrator would otherwise hold every reply in memory)."""

    def __init__(self) -> None:
        from servers import SmtpSink

        class _Sink(SmtpSink):
            def _on_data(self, server: Any, envelope: Any) -> str:  # noqa: ARG002
                with self._lock:
                    self.attempts += 1
                return "250 OK queued"

        self.sink = _Sink().start()
        self.host, self.port = self.sink.host, self.sink.port

    @property
    def accepted(self) -> int:
        return self.sink.attempts

    def stop(self) -> None:
        self.sink.stop()


# ---- the two phases (run in child processes) ------------------------------------------------

class RssSampler:
    """RSS every ``every`` messages, to show memory stays flat over the backlog."""

    def __init__(self, total: int, points: int = 10) -> None:
        self.every = max(1, total // points)
        self.count = 0
        self.samples: list[tuple[int, float]] = [(0, round(rss_mb(), 1))]

    def tick(self, n: int = 1) -> None:
        self.count += n
        if self.count % self.every == 0:
            self.samples.append((self.count, round(rss_mb(), 1)))


def phase_bare(args: argparse.Namespace) -> dict[str, Any]:
    """Fetch, MIME-parse, read each form, one durable commit and one SMTP send per mail."""
    import smtplib
    import sqlite3
    from email import policy
    from email.message import EmailMessage
    from email.parser import BytesParser

    from mailbot.errors import MailbotError
    from mailbot.forms.reader import read_annex3
    from mailbot.mail.imap import parse_fetch

    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(state / "bare.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS messages (uid INTEGER PRIMARY KEY, arrived TEXT, sha256 TEXT,"
               " sender TEXT, rows TEXT)")
    parser = BytesParser(policy=policy.default)
    sampler = RssSampler(args.messages)
    forms = rows_read = 0
    started = time.perf_counter()
    imap = imaplib.IMAP4(args.host, args.port, timeout=60)
    imap.login(args.user, args.password)
    imap.select("INBOX")
    uids = [int(u) for u in b" ".join(imap.uid("SEARCH", "ALL")[1]).split()]
    smtp = smtplib.SMTP(args.smtp_host, args.smtp_port, timeout=60)
    for i in range(0, len(uids), FETCH_BATCH):
        wanted = ",".join(map(str, uids[i:i + FETCH_BATCH]))
        typ, data = imap.uid("FETCH", wanted, "(UID INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        for uid, arrived, raw in parse_fetch(data):
            msg = parser.parsebytes(raw)
            found: list[Any] = []
            for part in msg.walk():
                name = part.get_filename() or ""
                if name.lower().endswith((".xlsx", ".xls", ".docx", ".csv")):
                    forms += 1
                    try:
                        reading = read_annex3(part.get_payload(decode=True), name)
                    except MailbotError:
                        continue
                    found += [r.row for r in reading.rows]
            rows_read += len(found)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                       [uid, arrived.isoformat(), hashlib.sha256(raw).hexdigest(), str(msg["From"]),
                        json.dumps(found)])
            db.execute("COMMIT")
            reply = EmailMessage()
            reply["From"], reply["To"], reply["Subject"] = "shengpei@zjut.edu.cn", str(msg["From"]), "Re: 报名表"
            reply.set_content(f"收到，共{len(found)}行。")
            smtp.sendmail("bounces@zjut.edu.cn", [msg["From"].addresses[0].addr_spec], reply.as_bytes())
            sampler.tick()
    elapsed = time.perf_counter() - started
    smtp.quit()
    imap.logout()
    db.close()
    return {"phase": "bare", "seconds": elapsed, "messages": len(uids), "forms": forms, "rows": rows_read,
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_samples": sampler.samples}


def phase_mailbot(args: argparse.Namespace) -> dict[str, Any]:
    """``Intake.poll_once`` over the whole backlog, as ``mailbot poll`` runs it."""
    from types import SimpleNamespace

    from intake_harness import imap_settings, open_intake

    account = SimpleNamespace(host=args.host, port=args.port, user=args.user, password=args.password)
    sink = SimpleNamespace(host=args.smtp_host, port=args.smtp_port)
    # the hourly reply budget raised past the backlog: every reply must leave in this one poll
    settings = imap_settings(Path(args.state), account, sink, imap={"sent_folder": "Sent", "timeout": 60},
                             mailbox={"kind": "imap", "settle": "move"},
                             reply={"max_per_hour": 10 * args.messages + 100})
    sampler = RssSampler(args.messages)
    with open(os.devnull, "w") as devnull:
        parts = open_intake(settings, devnull)
        try:
            started = time.perf_counter()
            if args.profile:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                report = prof.runcall(parts.intake.poll_once, sampler.tick)
                elapsed = time.perf_counter() - started
                out = io.StringIO()
                stats = pstats.Stats(prof, stream=out).strip_dirs()
                stats.sort_stats("tottime").print_stats(args.profile_top)
                stats.sort_stats("cumulative").print_stats(args.profile_top)
                Path(args.state, "profile.txt").write_text(out.getvalue())
            else:
                report = parts.intake.poll_once(sampler.tick)
                elapsed = time.perf_counter() - started
            db = parts.state.db
            replies = {r["status"]: r["n"] for r in db.query("SELECT status, count(*) n FROM outbox GROUP BY status")}
            rows = next(db.query("SELECT count(*) n FROM form_rows"))["n"]
            nominees = {r["status"]: r["n"] for r in db.query("SELECT status, count(*) n FROM nominees GROUP BY status")}
        finally:
            parts.close()
    if report.sent.held or set(replies) != {"sent"}:
        raise RuntimeError(f"not every reply was sent: outbox {replies}, held by the budget {report.sent.held}")
    return {"phase": "mailbot", "seconds": elapsed, "messages": report.fetched, "outcomes": report.outcomes,
            "rows": rows, "nominees": nominees, "outbox": replies, "sent": report.sent.sent,
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_samples": sampler.samples}


# ---- orchestration ---------------------------------------------------------------------------

def run_phase(phase: str, account: Any, sink: CountingSink, state: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", phase, "--host", account.host, "--port", str(account.port),
           "--user", account.user, "--password", account.password, "--smtp-host", sink.host,
           "--smtp-port", str(sink.port), "--state", str(state), "--messages", str(args.messages)]
    if args.profile and phase == "mailbot":
        cmd += ["--profile", "--profile-top", str(args.profile_top)]
    before = sink.accepted
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{phase} phase failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    time.sleep(0.2)  # the sink counts in its own thread
    result["smtp_accepted"] = sink.accepted - before
    return result


def print_table(res: dict[str, Any]) -> None:
    n = res["messages"]
    print(f"\nbacklog of {n} mails ({res['mix']['clean']} clean, {res['mix']['errors']} with errors, "
          f"{res['mix']['no_attachment']} without attachment); {os.cpu_count()} cores")
    print(f"generate {res['generate_s']:.1f} s, append {res['append_s']:.1f} s per copy\n")
    print(f"{'phase':<9}{'wall s':>9}{'ms/mail':>9}{'mails/s':>9}{'peak RSS MB':>13}{'SMTP sent':>11}")
    for key in ("bare", "mailbot"):
        r = res[key]
        print(f"{key:<9}{r['seconds']:>9.1f}{r['seconds'] / n * 1000:>9.1f}{n / r['seconds']:>9.1f}"
              f"{r['peak_rss_mb']:>13.1f}{r['smtp_accepted']:>11}")
    print(f"\nratio mailbot / bare: {res['ratio']:.2f}")
    print(f"mailbot outcomes: {res['mailbot']['outcomes']}; nominees: {res['mailbot']['nominees']}")
    print("mailbot RSS MB by mails done: " + ", ".join(f"{c}:{m}" for c, m in res["mailbot"]["rss_samples"]))
    print("bare    RSS MB by mails done: " + ", ".join(f"{c}:{m}" for c, m in res["bare"]["rss_samples"]))


@contextmanager
def bench_servers(prefix: str) -> Iterator[tuple[Path, Any, CountingSink]]:
    """A work dir, a throwaway Dovecot in it and a counting SMTP sink; all removed after."""
    from servers import DovecotServer

    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)  # the Dovecot mail user must traverse it
    (work / "dovecot").mkdir()
    dovecot = DovecotServer(root=work / "dovecot")
    dovecot.start()
    sink = CountingSink()
    try:
        yield work, dovecot, sink
    finally:
        sink.stop()
        dovecot.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    with bench_servers("mailbot-bench-") as (work, dovecot, sink):
        t0 = time.perf_counter()
        mails, mix = make_backlog(args.messages)
        generate_s = time.perf_counter() - t0
        bare_acct, bot_acct = dovecot.add_user("bare"), dovecot.add_user("bot")
        append_s = append_all(bare_acct, mails)
        append_all(bot_acct, mails)
        del mails
        result: dict[str, Any] = {"messages": args.messages, "mix": mix.__dict__, "generate_s": generate_s,
                                  "append_s": append_s}
        result["bare"] = run_phase("bare", bare_acct, sink, work / "bare-state", args)
        result["mailbot"] = run_phase("mailbot", bot_acct, sink, work / "bot-state", args)
        result["ratio"] = result["mailbot"]["seconds"] / result["bare"]["seconds"]
        if args.profile:
            result["profile"] = (work / "bot-state" / "profile.txt").read_text()
        return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--profile", action="store_true", help="cProfile the mailbot phase, print top costs")
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--phase", choices=("bare", "mailbot"), help=argparse.SUPPRESS)
    for name in ("host", "user", "password", "smtp-host", "state"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--smtp-port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        print(json.dumps((phase_bare if args.phase == "bare" else phase_mailbot)(args), ensure_ascii=False))
        return 0
    result = orchestrate(args)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print_table(result)
        if args.profile:
            print("\n" + result["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
