"""Backlog throughput: ``mailbot poll`` vs the floor, on the same mailbox, in the same run.

Starts a throwaway Dovecot and an SMTP sink (``tests/servers.py``), appends N realistic
registration mails to two users (same bytes, same arrival times, each with the receiving
server's ``Authentication-Results`` under the authserv-id mailbot is told to trust), then runs,
each in a fresh child process of this one:

- ``floor``: ``benchmarks/floor.py``, no mailbot code: UID FETCH in batches, compat32 parse, a
  bare calamine read of the form's first sheet, one INSERT + one durable commit, one short
  text reply per mail over one SMTP connection;
- ``promises``: ``benchmarks/promise_floor.py``, no mailbot code either: the floor plus each
  promise mailbot makes kept the plain way with the library the brief names (contained reading
  in a warm worker, bounded zip members, every row checked, the correction workbook, the sender
  check, durable raw mail, one durable commit per mail with its nominee rows and audit event,
  batch ``sending``/``sent`` commits, jinja2 text + HTML replies, a ``Sent`` copy, one MOVE per
  batch), each stage's CPU counted apart;
- ``mailbot``: ``Intake.poll_once`` as ``mailbot poll`` runs it (production settings: settle by
  MOVE, copy of each reply APPENDed to ``Sent``, sender trust configured), then idle polls.

For each size in ``--messages`` (``1000,10000``) it prints wall time, ms/mail, the ratios
mailbot/floor and mailbot/promise floor, what each promise costs per mail, SQL statements per mail (``sqlite3.Connection.set_trace_callback`` installed on
mailbot's connection by this script, not by mailbot), the peak RSS of each phase's process tree
(this script samples ``/proc`` every 50 ms: the sum of ``VmRSS`` over the phase process and all
its descendants, e.g. contained reader workers) and the idle polls after the backlog.
``--profile`` runs the mailbot phase under cProfile and prints the top costs; ``--json`` prints
the result as one JSON object.

Run: ``.venv/bin/python benchmarks/backlog.py [--messages 1000,10000] [--profile]``.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import imaplib
import io
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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
TRUSTED_AUTHSERV_ID = "mx.zjut.edu.cn"  # the receiving server's own results: mailbot trusts them
IDLE_POLLS = 20
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
        domain = sender.split("@")[1]
        received = {"Authentication-Results": f"{TRUSTED_AUTHSERV_ID}; spf=pass smtp.mailfrom={domain}; "
                                              f"dkim=pass header.d={domain}; dmarc=pass header.from={domain}"}
        mails.append(make_mail(sender=sender, subject=f"报名表-{institution}", attachments=attachments,
                               client=clients[i % len(clients)], message_id=f"<bench.{i}@{domain}>",
                               extra_headers=received))
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


def phase_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The floor (``benchmarks/floor.py``): no mailbot code is imported in this process."""
    from floor import run_floor

    sampler = RssSampler(args.messages)
    result = run_floor(args.host, args.port, args.user, args.password, args.smtp_host, args.smtp_port,
                       Path(args.state), sampler.tick)
    assert not any(name == "mailbot" or name.startswith("mailbot.") for name in sys.modules), "floor uses mailbot"
    return {"phase": "floor", "seconds": result.seconds, "messages": result.messages, "forms": result.forms,
            "sheet_rows": result.rows, "sql_statements": result.sql_statements,
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_samples": sampler.samples}


def phase_promises(args: argparse.Namespace) -> dict[str, Any]:
    """The promise floor (``benchmarks/promise_floor.py``): no mailbot code in this process either."""
    from promise_floor import run_promise_floor

    sampler = RssSampler(args.messages)
    result = run_promise_floor(args.host, args.port, args.user, args.password, args.smtp_host, args.smtp_port,
                               Path(args.state), TRUSTED_AUTHSERV_ID, sampler.tick)
    assert not any(name == "mailbot" or name.startswith("mailbot.") for name in sys.modules), "promise floor uses mailbot"
    return {"phase": "promises", "seconds": result.seconds, "messages": result.messages, "forms": result.forms,
            "rows": result.rows, "corrections": result.corrections, "reply_bytes": result.reply_bytes,
            "sql_statements": result.sql_statements,
            "stage_cpu_s": result.stage_cpu_s, "worker_cpu_s": result.worker_cpu_s,
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_samples": sampler.samples}


class StatementCounter:
    """Counts what SQLite runs on one connection (``set_trace_callback``): installed by this
    benchmark on mailbot's connection, never by mailbot."""

    def __init__(self, conn: Any, *, texts: bool = False) -> None:
        self.statements = self.triggers = 0
        self.kinds: dict[str, int] = {}
        self.texts: dict[str, int] | None = {} if texts else None  # statement shape -> count (``--sql-top``)
        conn.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        if sql.startswith("--"):  # a statement run by a trigger
            self.triggers += 1
            return
        self.statements += 1
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        self.kinds[word] = self.kinds.get(word, 0) + 1
        if self.texts is not None:  # costs CPU counted as mailbot's: only when asked for
            shape = _LITERALS.sub("?", " ".join(sql[:4000].split()))[:160]
            self.texts[shape] = self.texts.get(shape, 0) + 1


_LITERALS = re.compile(r"[Xx]'[0-9A-Fa-f]*'?|'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
"""Bound values in a traced statement (the trace shows them expanded): replaced by ``?`` so
the same statement counts once whatever it was given."""


STAGES = {
    "assess": "assess the mail (all of it)", "parse_head": "  parse its header (stdlib header parser)",
    "auto_reply_reason": "  automatic-mail check", "sender_trust": "  sender check (Authentication-Results)",
    "_read_contained": "  MIME walk and form reads in a worker (pickling, waiting)",
    "_record": "record it (all of it)", "store_blob": "  raw mail stored (SHA-256, write, 2 fsyncs)",
    "_record_forms": "  forms and rows", "_apply_seats": "  the ledger",
    "_queue_reply": "  the reply queued (all of it)", "_render_pair": "    templates rendered",
    "build_message": "    MIME message built", "_correction_copy": "    correction workbook (worker)",
    "__exit__": "  commit (events inserted, COMMIT)", "send_pending": "send the batch (SMTP, Sent copy, commits)",
    "append": "  the Sent copy APPENDed", "flush_settle": "settle (MOVE)",
}


class CpuSampler:
    """Where the daemon spends its CPU: every 2 ms of process CPU (``ITIMER_PROF``) the main
    thread's stack is looked at, and each stage of :data:`STAGES` on it counts one sample.  A
    long call in C (fsync, SQLite, zlib) delivers one signal at its end, so it is undercounted:
    the shares are a lower bound for such stages."""

    def __init__(self) -> None:
        self.samples = 0
        self.stages: dict[str, int] = {}

    def _sample(self, _signum: int, frame: Any) -> None:
        self.samples += 1
        seen = set()
        while frame is not None:
            name = frame.f_code.co_name
            if name in STAGES and name not in seen:
                seen.add(name)
                self.stages[name] = self.stages.get(name, 0) + 1
            frame = frame.f_back

    def run(self, fn: Any, *args: Any) -> Any:
        import signal

        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, 0.002, 0.002)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)

    def shares(self) -> list[tuple[str, float]]:
        return [(STAGES[k], round(100 * self.stages.get(k, 0) / max(1, self.samples), 1)) for k in STAGES]


def phase_mailbot(args: argparse.Namespace) -> dict[str, Any]:
    """``Intake.poll_once`` over the whole backlog, as ``mailbot poll`` runs it, then idle polls."""
    from types import SimpleNamespace

    from intake_harness import imap_settings, open_intake

    account = SimpleNamespace(host=args.host, port=args.port, user=args.user, password=args.password)
    sink = SimpleNamespace(host=args.smtp_host, port=args.smtp_port)
    # the hourly reply budget raised past the backlog: every reply must leave in this one poll
    settings = imap_settings(Path(args.state), account, sink, imap={"sent_folder": "Sent", "timeout": 60},
                             mailbox={"kind": "imap", "settle": "move"},
                             reply={"max_per_hour": 10 * args.messages + 100},
                             trust={"authserv_ids": (TRUSTED_AUTHSERV_ID,)})
    sampler = RssSampler(args.messages)
    with open(os.devnull, "w") as devnull:
        parts = open_intake(settings, devnull)
        try:
            counter = StatementCounter(parts.state.db.conn, texts=args.sql_top > 0)
            started = time.perf_counter()
            if args.profile:
                import cProfile
                import pstats

                # wall: where the poll waits too (workers, Dovecot, fsync); cpu: only what it computes
                prof = cProfile.Profile(time.process_time) if args.profile_clock == "cpu" else cProfile.Profile()
                report = prof.runcall(parts.intake.poll_once, sampler.tick)
                elapsed = time.perf_counter() - started
                out = io.StringIO()
                stats = pstats.Stats(prof, stream=out).strip_dirs()
                stats.sort_stats("tottime").print_stats(args.profile_top)
                stats.sort_stats("cumulative").print_stats(args.profile_top)
                Path(args.state, "profile.txt").write_text(out.getvalue())
            elif args.sample_cpu:
                cpu = CpuSampler()
                report = cpu.run(parts.intake.poll_once, sampler.tick)
                elapsed = time.perf_counter() - started
                Path(args.state, "cpu_shares.json").write_text(json.dumps(cpu.shares(), ensure_ascii=False))
            else:
                report = parts.intake.poll_once(sampler.tick)
                elapsed = time.perf_counter() - started
            statements, triggers, kinds = counter.statements, counter.triggers, dict(counter.kinds)
            top = sorted((counter.texts or {}).items(), key=lambda kv: -kv[1])[:args.sql_top]
            idle_ms, idle_fetched, idle_statements = [], 0, []
            for _ in range(IDLE_POLLS):
                before = counter.statements
                t0 = time.perf_counter()
                idle_fetched += parts.intake.poll_once().fetched
                idle_ms.append((time.perf_counter() - t0) * 1000)
                idle_statements.append(counter.statements - before)
            db = parts.state.db
            replies = {r["status"]: r["n"] for r in db.query("SELECT status, count(*) n FROM outbox GROUP BY status")}
            rows = next(db.query("SELECT count(*) n FROM form_rows"))["n"]
            nominees = {r["status"]: r["n"] for r in db.query("SELECT status, count(*) n FROM nominees GROUP BY status")}
            reply_bytes = next(db.query("SELECT total(length(raw)) n FROM outbox"))["n"]
        finally:
            parts.close()
    own = resource.getrusage(resource.RUSAGE_SELF)
    if report.sent.held or set(replies) != {"sent"}:
        raise RuntimeError(f"not every reply was sent: outbox {replies}, held by the budget {report.sent.held}")
    idle_sorted = sorted(idle_ms)
    return {"phase": "mailbot", "seconds": elapsed, "messages": report.fetched, "outcomes": report.outcomes,
            "rows": rows, "nominees": nominees, "outbox": replies, "sent": report.sent.sent,
            "reply_bytes": int(reply_bytes),
            "sql_statements": statements, "sql_trigger_statements": triggers, "sql_kinds": kinds,
            "sql_top": top,
            "idle_polls": {"polls": IDLE_POLLS, "fetched": idle_fetched,
                           "median_ms": round(statistics.median(idle_ms), 2),
                           "p95_ms": round(idle_sorted[int(0.95 * (len(idle_sorted) - 1))], 2),
                           "sql_statements_per_poll": sorted(set(idle_statements))},
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_samples": sampler.samples,
            "cpu_own_s": round(own.ru_utime + own.ru_stime, 2), "cpu_own_system_s": round(own.ru_stime, 2)}


# ---- orchestration ---------------------------------------------------------------------------

def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from ``/proc/<pid>/task/<tid>/children``."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:  # exited meanwhile
            continue
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeRssSampler(threading.Thread):
    """Peak of the summed ``VmRSS`` of a process and all its descendants (workers included),
    sampled every 50 ms from outside: what the phase costs the machine in memory."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_kb = self.samples = self.max_processes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pids = _descendants(self.pid)
            total = sum(_rss_kb(p) for p in pids)
            self.peak_kb = max(self.peak_kb, total)
            self.max_processes = max(self.max_processes, len(pids))
            self.samples += 1
            self._stop_event.wait(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_phase(phase: str, account: Any, sink: CountingSink, state: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", phase, "--host", account.host, "--port", str(account.port),
           "--user", account.user, "--password", account.password, "--smtp-host", sink.host,
           "--smtp-port", str(sink.port), "--state", str(state), "--messages", str(args.messages)]
    if args.profile and phase == "mailbot":
        cmd += ["--profile", "--profile-top", str(args.profile_top), "--profile-clock", args.profile_clock]
    if phase == "mailbot":
        cmd += ["--sql-top", str(args.sql_top)] + (["--sample-cpu"] if args.sample_cpu else [])
    before = sink.accepted
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    sampler = TreeRssSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.stop()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{phase} phase failed:\n{stderr[-4000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    time.sleep(0.2)  # the sink counts in its own thread
    result["smtp_accepted"] = sink.accepted - before
    result["tree_peak_rss_mb"] = round(sampler.peak_kb / 1024, 1)
    result["tree_max_processes"] = sampler.max_processes
    # CPU of the phase process and every descendant it reaped (its workers): on a shared
    # machine this moves far less with the load than the wall time.
    result["cpu_s"] = round((cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime), 2)
    return result


def print_table(res: dict[str, Any]) -> None:
    n = res["messages"]
    bot, floor = res["mailbot"], res["floor"]
    print(f"\nbacklog of {n} mails ({res['mix']['clean']} clean, {res['mix']['errors']} with errors, "
          f"{res['mix']['no_attachment']} without attachment); {os.cpu_count()} cores")
    print(f"generate {res['generate_s']:.1f} s, append {res['append_s']:.1f} s per copy\n")
    print(f"{'phase':<9}{'wall s':>9}{'ms/mail':>9}{'mails/s':>9}{'SQL/mail':>10}{'tree RSS MB':>13}"
          f"{'processes':>11}{'SMTP sent':>11}")
    for key in ("floor", "promises", "mailbot"):
        r = res[key]
        print(f"{key:<9}{r['seconds']:>9.1f}{r['seconds'] / n * 1000:>9.1f}{n / r['seconds']:>9.1f}"
              f"{r['sql_statements'] / n:>10.1f}{r['tree_peak_rss_mb']:>13.1f}{r['tree_max_processes']:>11}"
              f"{r['smtp_accepted']:>11}")
    print(f"\nratio mailbot / floor: {res['ratio']:.2f} wall, {res['cpu_ratio']:.2f} CPU "
          f"(floor {floor['cpu_s']} s, mailbot {bot['cpu_s']} s of CPU, each phase's process tree)")
    promises = res["promises"]
    print(f"ratio mailbot / promise floor: {res['promise_ratio']:.2f} wall, {res['promise_cpu_ratio']:.2f} CPU "
          f"(promise floor {promises['cpu_s']} s of CPU); promise floor / floor: "
          f"{promises['cpu_s'] / max(floor['cpu_s'], 0.01):.2f} CPU; its forms {promises['forms']}, "
          f"corrections {promises['corrections']}, nominee rows {promises['rows']}; reply KB/mail "
          f"{promises['reply_bytes'] / n / 1024:.1f} (mailbot's {bot['reply_bytes'] / n / 1024:.1f})")
    print("promise floor CPU by stage, ms/mail (this process; then its contained worker):")
    for where in ("stage_cpu_s", "worker_cpu_s"):
        for stage, cpu in sorted(promises[where].items(), key=lambda kv: -kv[1]):
            print(f"  {cpu / n * 1000:7.3f}  {'worker: ' if where == 'worker_cpu_s' else ''}{stage}")
    print(f"mailbot CPU: {bot['cpu_own_s']} s in the daemon process ({bot['cpu_own_system_s']} s of it in the "
          "kernel; set-up and idle polls included), "
          f"{round(bot['cpu_s'] - bot['cpu_own_s'], 2)} s in its contained reader workers")
    print(f"mailbot outcomes: {bot['outcomes']}; nominees: {bot['nominees']}")
    print(f"mailbot SQL statements by kind: {bot['sql_kinds']} (+{bot['sql_trigger_statements']} run by triggers)")
    if bot.get("sql_top"):
        print("mailbot's most frequent SQL statements (per mail, values as ?):")
        for text, count in bot["sql_top"]:
            print(f"  {count / n:6.2f}  {text}")
    idle = bot["idle_polls"]
    print(f"idle polls after the backlog: {idle['polls']}, median {idle['median_ms']} ms, p95 {idle['p95_ms']} ms, "
          f"fetched {idle['fetched']}, SQL statements per poll {idle['sql_statements_per_poll']}")
    print("mailbot RSS MB by mails done: " + ", ".join(f"{c}:{m}" for c, m in bot["rss_samples"]))
    print("floor   RSS MB by mails done: " + ", ".join(f"{c}:{m}" for c, m in floor["rss_samples"]))


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
        floor_acct, promise_acct, bot_acct = (dovecot.add_user(u) for u in ("floor", "promises", "bot"))
        append_s = append_all(floor_acct, mails)
        append_all(promise_acct, mails)
        append_all(bot_acct, mails)
        del mails
        result: dict[str, Any] = {"messages": args.messages, "mix": mix.__dict__, "generate_s": generate_s,
                                  "append_s": append_s}
        result["floor"] = run_phase("floor", floor_acct, sink, work / "floor-state", args)
        result["promises"] = run_phase("promises", promise_acct, sink, work / "promise-state", args)
        result["mailbot"] = run_phase("mailbot", bot_acct, sink, work / "bot-state", args)
        result["ratio"] = result["mailbot"]["seconds"] / result["floor"]["seconds"]
        result["cpu_ratio"] = result["mailbot"]["cpu_s"] / max(result["floor"]["cpu_s"], 0.01)
        result["promise_ratio"] = result["mailbot"]["seconds"] / result["promises"]["seconds"]
        result["promise_cpu_ratio"] = result["mailbot"]["cpu_s"] / max(result["promises"]["cpu_s"], 0.01)
        result["sql_per_mail"] = result["mailbot"]["sql_statements"] / args.messages
        if args.profile:
            result["profile"] = (work / "bot-state" / "profile.txt").read_text()
        if args.sample_cpu:
            result["cpu_shares"] = json.loads((work / "bot-state" / "cpu_shares.json").read_text())
        return result


PHASES = {"floor": phase_floor, "promises": phase_promises, "mailbot": phase_mailbot}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", default="1000", help="mails per backlog; several sizes comma-separated")
    ap.add_argument("--profile", action="store_true", help="cProfile the mailbot phase, print top costs")
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--profile-clock", choices=("wall", "cpu"), default="wall",
                    help="cProfile's clock: wall time (waits included) or the daemon's CPU time")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--sample-cpu", action="store_true",
                    help="sample the daemon's stack every 2 ms of CPU; print the share of each stage")
    ap.add_argument("--sql-top", type=int, default=0, metavar="N",
                    help="also list mailbot's N most frequent SQL statements with their count per mail")
    ap.add_argument("--phase", choices=tuple(PHASES), help=argparse.SUPPRESS)
    for name in ("host", "user", "password", "smtp-host", "state"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--smtp-port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = [int(n) for n in str(args.messages).split(",")]
    if args.phase:
        args.messages = sizes[0]
        print(json.dumps(PHASES[args.phase](args), ensure_ascii=False))
        return 0
    results = []
    for size in sizes:
        args.messages = size
        results.append(orchestrate(args))
        if args.json:  # each size's table as soon as it is known, the JSON at the end
            with contextlib.redirect_stdout(sys.stderr):
                print_table(results[-1])
        else:
            print_table(results[-1])
            if args.profile:
                print("\n" + results[-1]["profile"])
            if args.sample_cpu:
                print("\nshare of the daemon's CPU samples in the poll, by stage (nested stages indented):")
                for stage, share in results[-1]["cpu_shares"]:
                    print(f"  {share:5.1f}%  {stage}")
    if args.json:
        print(json.dumps({"runs": results}, ensure_ascii=False))
    elif len(results) > 1:
        print("\nratio by size: " + ", ".join(f"{r['messages']}: {r['ratio']:.2f}" for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
