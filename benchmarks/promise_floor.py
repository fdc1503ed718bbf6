"""The promise floor: the floor plus what each promise mailbot makes costs with bare libraries.

``floor.py`` is what any intake of this mail must do. mailbot also promises more (README,
``docs/RELIABILITY.md``), and each promise has a price however it is written. This file pays
each price once, the plain way, with the library the brief names for the concern and **without
one line of mailbot code** (``backlog.py`` checks ``sys.modules``), so that mailbot's cost can be
split into "what its promises cost at least" and "what mailbot adds on top":

* **untrusted bytes read contained** (hostile mail cannot stop the intake): one request per mail
  to a warm worker subprocess under ``RLIMIT_AS`` and ``RLIMIT_CPU`` (``resource.prlimit``),
  raw mail out and the reading back as length-prefixed pickles; the worker parses the MIME tree
  itself (compat32) and finds the form;
* **bounded reading** (bombs): the form's zip directory listed with ``zipfile`` and every member
  read with its declared size capped, DTD markers searched in each member, then the bare
  calamine read of the first sheet;
* **every row checked against the rules**: the header row found by its labels, then per
  nominee ``stdnum.cn.ric`` (identity number), ``phonenumbers`` (a mobile number),
  ``email_validator`` (syntax only) and ``rapidfuzz`` (the program named, among 15);
* **the sender's own workbook back with the cells to fix** (a correction): ``openpyxl``
  load, one cell filled and commented, save;
* **the sender checked** before any reply: ``authres`` parses the receiving server's
  ``Authentication-Results``; no answer to automatic mail (``Auto-Submitted``, ``Precedence``,
  ``Return-Path``);
* **nothing lost** (crash safety): the raw mail written to ``raw/xx/<sha256>.eml`` with the
  file and its folder fsynced before the record commits; one message row, one row per nominee
  (seated or waiting, first come first served, counts kept in memory), an audit event chained
  by SHA-256 and the reply in an outbox table, in one durable commit (WAL,
  ``synchronous=FULL``); per batch of 20 the replies marked ``sending`` in one commit before
  SMTP and ``sent`` in one after; the batch moved to ``Processed`` by one ``UID MOVE``;
* **the right answer in Chinese**: a text and an HTML reply rendered by ``jinja2`` (HTML
  autoescaped) naming every nominee with the identity number masked, its program's host,
  form of training and fee, its status, the receipt number; built by the ``email`` package
  (``multipart/alternative``, the correction workbook attached when there is one), with
  ``Message-ID``, ``In-Reply-To`` and ``References``; a copy APPENDed to ``Sent``;
* **a log line per mail**: ``structlog`` JSON, the sender's address as is, to ``/dev/null``.

What it leaves out, so that it stays a floor: mailbot's many other checks (duplicates across
schools, program caps by certificate, the school list, intents of mail without a form, gender
and age from the identity number), the per-sender reply budget, the audit chain's full event
set, the seat ledger's persistence, attachments other than the form. Each stage's CPU is
counted apart (``time.process_time`` around it in this process; the worker reports its own),
so ``backlog.py`` prints what each promise costs per mail.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import imaplib
import io
import os
import pickle
import resource
import smtplib
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any

SEATS_PER_PROGRAM = 50
MEMBER_CAP = 64 * 1024 * 1024  # the largest declared member size read (a bomb is cut here)
WORKER_MEMORY = 1024 * 1024 * 1024
WORKER_CPU_SECONDS = 20
_FRAME = struct.Struct(">I")
PROGRAMS = {  # program -> (host institution, form of training, fee): what a reply names
    name: (host, "5天线下集中+5天线上（共80学时）", "不超过3200元") for name, host in (
        ("物流管理", "浙江经济职业技术学院"), ("老年照护", "浙江长征职业技术学院"),
        ("Web前端开发", "浙江工业大学"), ("智能财税", "浙江金融职业学院"),
        ("网店运营推广", "浙江商业职业技术学院"), ("建筑信息模型（BIM）", "浙江工业大学"),
        ("数控车铣加工", "浙江机电职业技术学院"), ("汽车运用与维修", "浙江交通职业技术学院"),
        ("财务共享服务", "浙江财经大学"), ("工业机器人操作与运维", "浙江机电职业技术学院"),
        ("建筑工程识图", "浙江建设职业技术学院"), ("数字创意建模", "浙江工业大学"),
        ("智能新能源汽车", "浙江交通职业技术学院"), ("跨境电商B2B数据运营", "浙江商业职业技术学院"),
        ("研学旅行策划与管理（EEPM）", "浙江旅游职业学院"))}
LABELS = {"姓名": "name", "身份证号": "id_number", "手机": "phone", "电子邮箱": "email", "所报证书培训班名称": "program"}
_WIRE = email.policy.compat32.clone(linesep="\r\n")
_FORM_MAGIC = b"PK\x03\x04"


def mask_id(number: str) -> str:
    """An identity number as replies and the database show it: the first and last four kept."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:] if len(number) > 8 else "*" * len(number)


TEXT_TEMPLATE = """{{ contact }}老师，您好！

我们已于{{ received }}收到{{ institution }}报送的附件3《高校参训教师信息汇总表》，{% if findings %}其中以下内容需要修改：
{% for f in findings %}
{{ loop.index }}. 表格第{{ f.row }}行（{{ f.name }}）：{{ f.message }}
{% endfor %}
请修改后于{{ deadline }}前重新发送完整的汇总表；附件是您发来的表格，需修改的单元格已标黄。
{% else %}报名已登记，结果如下：
{% for program, rows in by_program %}
【{{ program }}职业技能等级证书】承办院校：{{ programs[program][0] }}
培训形式：{{ programs[program][1] }}；培训费：{{ programs[program][2] }}
{% for r in rows %}
{{ loop.index }}. {{ r.name }}（身份证号 {{ r.id_number|mask }}，表格第{{ r.row }}行）
   报名状态：{% if r.status == "seated" %}报名成功（在计划名额内）{% else %}暂列候补第{{ r.position }}位{% endif %}
{% endfor %}{% endfor %}
说明：标注“暂列候补”的教师所报项目的计划名额已报满，如有名额空出，将按报名先后依次递补。
{% endif %}
回执号：{{ receipt }}
收件时间：{{ received }}
如有疑问，请联系：省职教师资培训中心 0571-85290492

（本邮件由报名系统自动发送。）
"""
HTML_TEMPLATE = """<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="font-family: sans-serif"><p>{{ contact }}老师，您好！</p>
<p>我们已于{{ received }}收到{{ institution }}报送的附件3《高校参训教师信息汇总表》，{% if findings %}其中以下内容需要修改：</p>
<ol>{% for f in findings %}<li>表格第{{ f.row }}行（{{ f.name }}）：{{ f.message }}</li>{% endfor %}</ol>
<p>请修改后于{{ deadline }}前重新发送完整的汇总表；附件是您发来的表格，需修改的单元格已标黄。</p>
{% else %}报名已登记，结果如下：</p>
{% for program, rows in by_program %}<h3>{{ program }}职业技能等级证书</h3>
<p>承办院校：{{ programs[program][0] }}；培训形式：{{ programs[program][1] }}；培训费：{{ programs[program][2] }}</p>
<table border="1" cellpadding="4"><tr><th>序号</th><th>姓名</th><th>身份证号</th><th>表格行</th><th>报名状态</th></tr>
{% for r in rows %}<tr><td>{{ loop.index }}</td><td>{{ r.name }}</td><td>{{ r.id_number|mask }}</td><td>{{ r.row }}</td>
<td>{% if r.status == "seated" %}报名成功（在计划名额内）{% else %}暂列候补第{{ r.position }}位{% endif %}</td></tr>
{% endfor %}</table>{% endfor %}
<p>说明：标注“暂列候补”的教师所报项目的计划名额已报满，如有名额空出，将按报名先后依次递补。</p>{% endif %}
<p>回执号：{{ receipt }}<br>收件时间：{{ received }}<br>如有疑问，请联系：省职教师资培训中心 0571-85290492</p>
<p>（本邮件由报名系统自动发送。）</p></body></html>
"""


@dataclass(frozen=True)
class PromiseFloorResult:
    messages: int
    forms: int
    rows: int
    corrections: int
    reply_bytes: int  # all replies together, as sent
    sql_statements: int
    seconds: float
    stage_cpu_s: dict[str, float] = field(default_factory=dict)  # this process, by stage
    worker_cpu_s: dict[str, float] = field(default_factory=dict)  # the worker, by stage


# ---- the contained worker ---------------------------------------------------------------------

def _read_frame(stream: Any) -> bytes | None:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    return stream.read(_FRAME.unpack(head)[0])


def _write_frame(stream: Any, payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def bounded_members(data: bytes) -> None:
    """Every member of the zip read with its declared size capped and searched for a DTD:
    ``zipfile`` stops a member at its declared size and checks its CRC-32."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        total = 0
        for info in zf.infolist():
            if info.file_size > MEMBER_CAP or total + info.file_size > MEMBER_CAP:
                raise ValueError("too large")
            total += info.file_size
            member = zf.read(info)
            if b"<!DOCTYPE" in member or b"<!ENTITY" in member:
                raise ValueError("DTD")


def bounded_compound_file(data: bytes) -> None:
    """An xls's compound file parsed by ``xlrd.compdoc`` and its workbook stream located: its
    sector tables and stream sizes checked before a reader allocates anything."""
    from xlrd import compdoc

    doc = compdoc.CompDoc(data, logfile=io.StringIO())
    doc.locate_named_stream("Workbook")


def nominee_rows(sheet: list[list[Any]]) -> tuple[str, dict[str, int], list[tuple[int, list[str]]]]:
    """The institution, the header's columns found by their labels, and the rows under it up to
    the 说明 footer that hold more than a 序号, as text (their Excel row numbers with them)."""
    institution = ""
    for r, cells in enumerate(sheet):
        texts = [str(c).strip() for c in cells]
        if not institution and texts and texts[0].startswith("填报单位"):
            institution = texts[0].split("：", 1)[-1].split()[0] if "：" in texts[0] else texts[1]
        columns = {LABELS[t]: i for i, t in enumerate(texts) if t in LABELS}
        if len(columns) == len(LABELS):
            break
    else:
        return institution, {}, []
    rows = []
    for excel_row, cells in enumerate(sheet[r + 1:], start=r + 2):
        texts = [str(c).strip() for c in cells]
        if texts and texts[0].startswith("说明"):
            break
        if any(texts[i] for i in columns.values() if i < len(texts)):  # not blank but for its 序号
            rows.append((excel_row, texts))
    return institution, columns, rows


def _check_rows(sheet: list[list[Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Nominee rows under the header row found by its labels, each checked by the libraries."""
    import phonenumbers
    from email_validator import EmailNotValidError, validate_email
    from rapidfuzz import fuzz, process
    from stdnum.cn import ric
    from stdnum.exceptions import ValidationError

    institution, columns, sheet_rows = nominee_rows(sheet)
    rows, findings = [], []
    for excel_row, texts in sheet_rows:
        row = {key: texts[i] if i < len(texts) else "" for key, i in columns.items()}
        row["row"] = excel_row
        try:  # the birth date and the check digit (``ric.validate`` also refuses older region codes)
            number = row["id_number"]
            ric.get_birth_date(number)
            if len(number) != 18 or number[17] != ric.calc_check_digit(number):
                raise ValidationError()
        except ValidationError:
            findings.append({"row": excel_row, "name": row["name"], "column": columns["id_number"],
                             "message": "身份证号不正确"})
        try:
            phone = phonenumbers.parse(row["phone"], "CN")
            mobile = (phonenumbers.is_valid_number(phone)
                      and phonenumbers.number_type(phone) == phonenumbers.PhoneNumberType.MOBILE)
        except phonenumbers.NumberParseException:
            mobile = False
        if not mobile:
            findings.append({"row": excel_row, "name": row["name"], "column": columns["phone"],
                             "message": "手机号码不正确，请填写11位手机号码"})
        try:
            validate_email(row["email"], check_deliverability=False)
        except EmailNotValidError:
            findings.append({"row": excel_row, "name": row["name"], "column": columns["email"],
                             "message": "邮箱格式不正确"})
        match = process.extractOne(row["program"], list(PROGRAMS), scorer=fuzz.WRatio)
        row["program"] = match[0] if match else row["program"]
        rows.append(row)
    return rows, findings, institution


def _correction_copy(data: bytes, findings: list[dict[str, Any]]) -> bytes:
    """The sender's workbook with each cell to fix filled yellow and commented."""
    from openpyxl import load_workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import PatternFill

    wb = load_workbook(io.BytesIO(data), data_only=True)
    ws = wb.worksheets[0]
    fill = PatternFill("solid", fgColor="FFFF00")
    for f in findings:
        cell = ws.cell(row=f["row"], column=f["column"] + 1)
        cell.fill = fill
        cell.comment = Comment(f["message"], "报名系统")
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def worker_main() -> None:
    """A contained reader: limits first, then one request per mail until stdin closes."""
    resource.prlimit(0, resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    from python_calamine import CalamineWorkbook

    stages = {"walk (MIME parse)": 0.0, "bounds (zip members)": 0.0, "calamine read": 0.0,
              "row checks (libraries)": 0.0, "correction workbook": 0.0, "pickling": 0.0}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (frame := _read_frame(stdin)) is not None:
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(used.ru_utime + used.ru_stime) + WORKER_CPU_SECONDS
        resource.prlimit(0, resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        t = time.thread_time()  # not process_time: with RLIMIT_CPU set, that advances in ticks
        raw = pickle.loads(frame)
        if raw is None:
            _write_frame(stdout, pickle.dumps(stages))
            continue
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        form = next((data for p in msg.walk() if p.get_content_disposition() == "attachment"
                     and (data := p.get_payload(decode=True) or b"").startswith(_FORM_MAGIC)), None)
        t = _lap(stages, "walk (MIME parse)", t)
        result: dict[str, Any] = {"form": form is not None, "rows": [], "findings": [], "institution": "",
                                  "correction": None, "refused": ""}
        if form:
            try:
                bounded_members(form)
                t = _lap(stages, "bounds (zip members)", t)
                sheet = CalamineWorkbook.from_filelike(io.BytesIO(form)).get_sheet_by_index(0).to_python()
                t = _lap(stages, "calamine read", t)
                result["rows"], result["findings"], result["institution"] = _check_rows(sheet)
                t = _lap(stages, "row checks (libraries)", t)
                if result["findings"]:
                    result["correction"] = _correction_copy(form, result["findings"])
                    t = _lap(stages, "correction workbook", t)
            except Exception as exc:  # noqa: BLE001 - a damaged form is an answer, not a crash
                result["refused"] = type(exc).__name__
        _write_frame(stdout, pickle.dumps(result))
        _lap(stages, "pickling", t)


def _lap(stages: dict[str, float], stage: str, since: float) -> float:
    now = time.thread_time()
    stages[stage] = stages.get(stage, 0.0) + now - since
    return now


class ContainedWorker:
    """The daemon's side of one warm worker: a request is a pickled raw mail, an answer a
    pickled reading; the answer is read with a bound on its size."""

    MAX_ANSWER = 16 * 1024 * 1024

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-I", __file__, "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, raw: bytes | None) -> Any:
        _write_frame(self.proc.stdin, pickle.dumps(raw))
        head = self.proc.stdout.read(_FRAME.size)
        (size,) = _FRAME.unpack(head)
        if size > self.MAX_ANSWER:
            raise ValueError("answer too large")
        return pickle.loads(self.proc.stdout.read(size))

    def close(self) -> dict[str, float]:
        stages = self.ask(None)
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        return stages


# ---- the daemon's side ------------------------------------------------------------------------


class Stages:
    """CPU of this process by stage (``time.process_time``)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.process_time()
        try:
            yield
        finally:
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - t


def _sender_accepted(msg: email.message.Message, authserv_id: str) -> bool:
    """No automatic mail; DMARC (or SPF) passed by the trusted receiving server's own results."""
    import authres

    if msg.get("Auto-Submitted", "no").lower() != "no" or msg.get("Precedence", "").lower() in ("bulk", "junk", "list"):
        return False
    if not msg.get("Return-Path"):
        return False
    for value in msg.get_all("Authentication-Results", []):
        header = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {value}")
        if header.authserv_id == authserv_id:
            results = {r.method: r.result for r in header.results}
            return results.get("dmarc") == "pass" or results.get("spf") == "pass"
    return False


def _durable_raw(root: Path, raw: bytes, sha: str) -> str:
    folder = root / "raw" / sha[:2]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sha}.eml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return str(path)


def run_promise_floor(host: str, port: int, user: str, password: str, smtp_host: str, smtp_port: int,
                      state: Path, authserv_id: str,
                      tick: Callable[[int], None] = lambda n: None) -> PromiseFloorResult:
    """Process every mail in INBOX once, keeping each promise the plain way."""
    import jinja2
    import structlog
    from floor import FETCH_BATCH, fetched_messages  # the floor's fetch, as it is

    state.mkdir(parents=True, exist_ok=True)
    structlog.configure(processors=[structlog.processors.TimeStamper(fmt="iso"),
                                    structlog.processors.JSONRenderer(ensure_ascii=False)],
                        logger_factory=structlog.WriteLoggerFactory(open(os.devnull, "w")))
    log = structlog.get_logger()
    env = jinja2.Environment(autoescape=False, trim_blocks=True, keep_trailing_newline=True)
    env.filters["mask"] = mask_id
    text_t = env.from_string(TEXT_TEMPLATE)
    html_env = jinja2.Environment(autoescape=True, trim_blocks=True)
    html_env.filters["mask"] = env.filters["mask"]
    html_t = html_env.from_string(HTML_TEMPLATE)

    db = sqlite3.connect(state / "promise.db", isolation_level=None)
    statements = 0

    def count(_sql: str) -> None:
        nonlocal statements
        statements += 1

    db.executescript("""
        PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
        CREATE TABLE messages (id INTEGER PRIMARY KEY, uid INTEGER, arrived TEXT, sha256 TEXT, message_id TEXT,
                               sender TEXT, outcome TEXT, raw_path TEXT);
        CREATE INDEX messages_msgid ON messages (message_id);
        CREATE TABLE nominees (id INTEGER PRIMARY KEY, message INTEGER, row INTEGER, id_masked TEXT, id_hash TEXT,
                               name TEXT, institution TEXT, program TEXT, status TEXT, position INTEGER);
        CREATE TABLE events (id INTEGER PRIMARY KEY, message INTEGER, kind TEXT, data TEXT, prev TEXT, hash TEXT);
        CREATE TABLE outbox (id INTEGER PRIMARY KEY, message INTEGER, recipient TEXT, body BLOB, status TEXT);
    """)
    db.set_trace_callback(count)
    stages = Stages()
    seated: dict[str, int] = {}
    waiting: dict[str, int] = {}
    head = ""
    forms = rows = corrections = reply_bytes = 0
    started = time.perf_counter()
    worker = ContainedWorker()
    imap = imaplib.IMAP4(host, port, timeout=60)
    imap.login(user, password)
    for folder in ("Processed", "Sent"):
        imap.create(folder)
    imap.select("INBOX")
    uids = b" ".join(imap.uid("SEARCH", "ALL")[1]).split()
    smtp = smtplib.SMTP(smtp_host, smtp_port, timeout=60)
    for i in range(0, len(uids), FETCH_BATCH):
        batch = b",".join(uids[i:i + FETCH_BATCH]).decode()
        with stages.stage("fetch"):
            _typ, data = imap.uid("FETCH", batch, "(UID INTERNALDATE BODY.PEEK[])")
        outbox: list[tuple[int, str, bytes]] = []
        for uid, arrived, raw in fetched_messages(data):
            with stages.stage("parse (daemon)"):
                msg = email.message_from_bytes(raw, policy=email.policy.compat32)
                sender = parseaddr(str(msg.get("From", "")))[1]
                message_id = str(msg.get("Message-ID", "")).strip()
                sha = hashlib.sha256(raw).hexdigest()
            with stages.stage("duplicate and sender check"):
                if db.execute("SELECT 1 FROM messages WHERE message_id = ? AND sha256 = ?",
                              (message_id, sha)).fetchone():
                    continue
                accepted = _sender_accepted(msg, authserv_id)
            with stages.stage("contained request (daemon side)"):
                reading = worker.ask(raw) if accepted else {"form": False, "rows": [], "findings": [],
                                                            "institution": "", "correction": None}
            with stages.stage("raw mail durable"):
                raw_path = _durable_raw(state, raw, sha)
            with stages.stage("seats"):
                forms += reading["form"]
                rows += len(reading["rows"])
                outcome = ("correction" if reading["findings"] else "accepted") if reading["rows"] else "no_form"
                for row in reading["rows"] if outcome == "accepted" else ():
                    program = row["program"]
                    if seated.get(program, 0) < SEATS_PER_PROGRAM:
                        seated[program] = seated.get(program, 0) + 1
                        row["status"], row["position"] = "seated", 0
                    else:
                        waiting[program] = waiting.get(program, 0) + 1
                        row["status"], row["position"] = "waiting", waiting[program]
            with stages.stage("reply rendered (jinja2)"):
                by_program: dict[str, list[dict[str, Any]]] = {}
                for row in reading["rows"]:
                    by_program.setdefault(row["program"], []).append(row)
                ctx = {"contact": (msg.get("From", "") and parseaddr(str(msg["From"]))[0]) or sender,
                       "received": arrived.decode(), "institution": reading["institution"],
                       "findings": reading["findings"], "deadline": "2020年11月9日24时",
                       "by_program": sorted(by_program.items()), "programs": PROGRAMS,
                       "receipt": f"ZJ2020-{uid:06d}", "subject": f"Re: {msg.get('Subject', '')}"}
                text, page = text_t.render(ctx), html_t.render(ctx)
            with stages.stage("reply built (email package)"):
                reply = MIMEMultipart("mixed")
                reply["From"], reply["To"] = "shengpei@zjut.edu.cn", sender
                reply["Subject"] = Header(f"Re: 报名表【{outcome}｜回执 ZJ2020-{uid:06d}】", "utf-8")
                reply["Date"], reply["Message-ID"] = formatdate(localtime=True), make_msgid(domain="zjut.edu.cn")
                reply["In-Reply-To"] = reply["References"] = message_id
                alternative = MIMEMultipart("alternative")
                alternative.attach(MIMEText(text, "plain", "utf-8"))
                alternative.attach(MIMEText(page, "html", "utf-8"))
                reply.attach(alternative)
                if reading["correction"]:
                    corrections += 1
                    book = MIMEApplication(reading["correction"],
                                           "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
                    # ASCII: compat32 does not fold an RFC 2231 name, and SMTP refuses the long line
                    book.add_header("Content-Disposition", "attachment", filename="annex3-correction.xlsx")
                    reply.attach(book)
                body = reply.as_bytes(policy=_WIRE)  # CRLF: smtplib sends bytes as they are
                reply_bytes += len(body)
            with stages.stage("record (one durable commit)"):
                db.execute("BEGIN IMMEDIATE")
                msg_pk = db.execute("INSERT INTO messages (uid, arrived, sha256, message_id, sender, outcome, raw_path)"
                                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                                    (uid, arrived.decode(), sha, message_id, sender, outcome, raw_path)).lastrowid
                db.executemany(
                    "INSERT INTO nominees (message, row, id_masked, id_hash, name, institution, program, status, position)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(msg_pk, r["row"], mask_id(r["id_number"]),
                      hashlib.sha256(r["id_number"].encode()).hexdigest(), r["name"], reading["institution"],
                      r["program"], r.get("status", "correction"), r.get("position", 0)) for r in reading["rows"]])
                event = f"{msg_pk}|{outcome}|{len(reading['rows'])}"
                new_head = hashlib.sha256((head + event).encode()).hexdigest()
                db.execute("INSERT INTO events (message, kind, data, prev, hash) VALUES (?, ?, ?, ?, ?)",
                           (msg_pk, outcome, event, head, new_head))
                head = new_head
                out_pk = db.execute("INSERT INTO outbox (message, recipient, body, status) VALUES (?, ?, ?, 'queued')",
                                    (msg_pk, sender, body)).lastrowid
                db.execute("COMMIT")
                outbox.append((out_pk, sender, body))
            with stages.stage("log line"):
                log.info("message", uid=uid, outcome=outcome, sender=sender, rows=len(reading["rows"]))
            tick(1)
        with stages.stage("send batch (commits, SMTP, Sent copy)"):
            ids = [(pk,) for pk, _, _ in outbox]
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE outbox SET status = 'sending' WHERE id = ?", ids)
            db.execute("COMMIT")
            for _pk, recipient, body in outbox:
                smtp.sendmail("bounces@zjut.edu.cn", [recipient], body)
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE outbox SET status = 'sent' WHERE id = ?", ids)
            db.execute("COMMIT")
            for _pk, _recipient, body in outbox:
                imap.append("Sent", "\\Seen", None, body)
        with stages.stage("settle (UID MOVE)"):
            imap.uid("MOVE", batch, "Processed")
    seconds = time.perf_counter() - started
    worker_cpu = worker.close()
    smtp.quit()
    imap.logout()
    db.close()
    return PromiseFloorResult(len(uids), forms, rows, corrections, reply_bytes, statements, seconds,
                              {k: round(v, 3) for k, v in stages.cpu.items()},
                              {k: round(v, 3) for k, v in worker_cpu.items()})


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    worker_main()
