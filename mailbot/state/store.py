"""The state database (SQLite through sqlite-utils) and the content-addressed file store.

The schema is created by named migrations recorded in ``_migrations`` (the sqlite-migrate
idea); ``docs/SCHEMA.md`` documents every table for auditors.  The connection runs in WAL
mode with ``synchronous=FULL``, foreign keys on and a busy timeout, so an auditor's long read
never blocks intake and a committed record survives a power cut.

Files holding personal data (the database, raw mail, scans) are created mode 0600 inside a
0700 directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from mailbot.errors import StateError
from mailbot.state.private_files import write_private_file

BUSY_TIMEOUT_MS = 5000


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def event_hash(prev: str, at: str, actor: str, rules_version: str, message: int | None,
               nominee: int | None, kind: str, detail: str) -> str:
    """One event's link in the chain (``docs/SCHEMA.md``: the eight values joined by 0x1F)."""
    return hashlib.sha256("\x1f".join(
        [prev, at, actor, rules_version, str(message), str(nominee), kind, detail]).encode()).hexdigest()


# --- migrations -------------------------------------------------------------------------
#
# A migration runs inside the one transaction that also records it in ``_migrations``, so a
# migration failing halfway leaves neither tables nor a record behind.  Never ``executescript``
# in a migration: Python's sqlite3 commits the open transaction before running a script, and
# then every statement commits on its own (``_migrate`` refuses a migration that did this).

def sql_statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, in order; a trigger body's own semicolons stay inside
    its statement (``sqlite3.complete_statement`` says where a statement ends)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending:
        raise StateError(f"incomplete SQL statement at the end of a migration: {pending.strip()[:80]}")


def run_script(db: sqlite_utils.Database, script: str) -> None:
    """Run every statement of ``script`` in the caller's transaction (unlike ``executescript``)."""
    for statement in sql_statements(script):
        db.conn.execute(statement)


def _m001_initial(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            uid INTEGER NOT NULL,
            source_key TEXT NOT NULL DEFAULT '',  -- how the source names it (UID, Maildir key)
            message_id TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            arrived_at TEXT NOT NULL,
            sender TEXT NOT NULL,
            sender_name TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL DEFAULT '',
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            institution TEXT NOT NULL DEFAULT '',
            receipt TEXT NOT NULL DEFAULT '',
            raw_path TEXT,
            duplicate_of INTEGER REFERENCES messages(id),
            domain_mismatch INTEGER NOT NULL DEFAULT 0,
            auth_summary TEXT NOT NULL DEFAULT '',
            rules_version TEXT NOT NULL DEFAULT '',
            settle_folder TEXT NOT NULL DEFAULT '',
            settled_at TEXT,
            recorded_at TEXT NOT NULL
        );
        -- an IMAP message is recorded once per (mailbox, UIDVALIDITY, UID); Maildir (uidvalidity 0)
        -- and replays are keyed by source_key instead
        CREATE UNIQUE INDEX messages_imap_uid ON messages(source, uidvalidity, uid) WHERE uidvalidity != 0;
        CREATE UNIQUE INDEX messages_local_key ON messages(source, source_key) WHERE uidvalidity = 0;
        CREATE INDEX messages_sha ON messages(sha256);
        CREATE INDEX messages_mid ON messages(message_id);
        CREATE INDEX messages_unsettled ON messages(settled_at) WHERE settled_at IS NULL;

        CREATE TABLE attachments (
            id INTEGER PRIMARY KEY,
            message INTEGER NOT NULL REFERENCES messages(id),
            kind TEXT NOT NULL,              -- form | scan
            filename TEXT NOT NULL,
            origin TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            path TEXT                        -- stored copy under state/ (scans); NULL after purge
        );

        CREATE TABLE forms (
            id INTEGER PRIMARY KEY,
            message INTEGER NOT NULL REFERENCES messages(id),
            filename TEXT NOT NULL,
            origin TEXT NOT NULL,
            outcome TEXT NOT NULL,
            institution TEXT NOT NULL DEFAULT '',
            contact TEXT,
            contact_phone TEXT,
            sheet TEXT NOT NULL DEFAULT '',
            findings TEXT NOT NULL DEFAULT '[]'   -- JSON list of form-level findings
        );

        CREATE TABLE form_rows (
            id INTEGER PRIMARY KEY,
            form INTEGER NOT NULL REFERENCES forms(id),
            row INTEGER NOT NULL,
            program TEXT NOT NULL,
            program_matched INTEGER NOT NULL,
            name TEXT,
            gender TEXT,
            position TEXT,
            email TEXT,
            id_number TEXT,
            id_masked TEXT NOT NULL,
            phone TEXT,
            ok INTEGER NOT NULL,
            findings TEXT NOT NULL DEFAULT '[]'
        );

        CREATE TABLE nominees (
            id INTEGER PRIMARY KEY,
            id_number TEXT,                  -- NULL after purge
            id_masked TEXT NOT NULL,
            id_hash TEXT NOT NULL,           -- sha256 of the identity number: stays after purge
            name TEXT,
            institution_key TEXT NOT NULL,
            institution TEXT NOT NULL,
            program TEXT NOT NULL,
            status TEXT NOT NULL,            -- seated | waiting | held | withdrawn (conflict before 006)
            requested_at TEXT NOT NULL,      -- arrival time of the mail that asked (FCFS key)
            request_uid INTEGER NOT NULL,
            request_row INTEGER NOT NULL,
            message INTEGER NOT NULL REFERENCES messages(id),
            form_row INTEGER REFERENCES form_rows(id),
            sender TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX nominees_active ON nominees(program, status, requested_at, request_uid, request_row);
        CREATE INDEX nominees_idh ON nominees(id_hash);
        CREATE INDEX nominees_inst ON nominees(institution_key, status);

        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,             -- 'daemon' or a named staff member
            rules_version TEXT NOT NULL,
            message INTEGER REFERENCES messages(id),
            nominee INTEGER REFERENCES nominees(id),
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,            -- JSON, personal data masked
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
        CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            message INTEGER REFERENCES messages(id),
            kind TEXT NOT NULL,
            to_address TEXT NOT NULL,
            subject TEXT NOT NULL,
            reply_message_id TEXT NOT NULL,
            raw BLOB NOT NULL,
            status TEXT NOT NULL,            -- queued | sending | sent | failed | unknown
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            sent_at TEXT
        );
        CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
        CREATE INDEX outbox_to ON outbox(to_address, created_at);

        CREATE TABLE cursors (
            source TEXT PRIMARY KEY,
            uidvalidity INTEGER NOT NULL,
            last_uid INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        );
        """
    )


_M002_SQL = """
        CREATE TABLE school_contacts (
            institution_key TEXT PRIMARY KEY,    -- as nominees.institution_key
            institution TEXT NOT NULL,
            address TEXT NOT NULL,               -- lower case
            message INTEGER REFERENCES messages(id),  -- the mail that made it the contact
            set_by TEXT NOT NULL,                -- 'daemon', 'migration' or a staff actor
            updated_at TEXT NOT NULL
        );

        CREATE TABLE staff_items (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,                  -- other_sender | over_demand | too_many | quarantined | failed | ...
            institution TEXT NOT NULL DEFAULT '',
            institution_key TEXT NOT NULL DEFAULT '',
            sender TEXT NOT NULL DEFAULT '',
            message INTEGER REFERENCES messages(id),
            receipt TEXT NOT NULL DEFAULT '',
            summary TEXT NOT NULL,               -- Chinese, masked
            detail TEXT NOT NULL DEFAULT '{}',   -- JSON, masked
            status TEXT NOT NULL DEFAULT 'open', -- open | closed
            opened_at TEXT NOT NULL,
            alerted_at TEXT,                     -- when a staff alert listing it was queued
            closed_at TEXT,
            closed_by TEXT NOT NULL DEFAULT '',
            resolution TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX staff_items_open ON staff_items(status, opened_at);
        CREATE INDEX staff_items_unalerted ON staff_items(id) WHERE alerted_at IS NULL;
"""


def _m002_school_contacts_and_staff_items(db: sqlite_utils.Database) -> None:
    """The contact of record of each school (only it may replace its list) and the staff list
    ("needs a person").  Schools registered before this migration get the sender of their
    first nominee as contact of record."""
    run_script(db, _M002_SQL)
    db.execute(
        "INSERT INTO school_contacts (institution_key, institution, address, message, set_by, updated_at) "
        "SELECT institution_key, institution, lower(sender), message, 'migration', ? FROM nominees "
        "WHERE id IN (SELECT min(id) FROM nominees WHERE status != 'conflict' GROUP BY institution_key)",
        [utc_now()])


def _m003_audit_views(db: sqlite_utils.Database) -> None:
    """The rules' programs (host, seats) beside the ledger, and the read-only views auditors
    browse (``docs/SCHEMA.md``, ``mailbot audit serve``)."""
    run_script(
        db,
        """
        CREATE TABLE programs (
            name TEXT PRIMARY KEY,
            host_institution TEXT NOT NULL,
            seats INTEGER NOT NULL,
            position INTEGER NOT NULL,       -- order in the rules file
            rules_version TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        CREATE VIEW roster AS
        WITH queue AS (
            SELECT id, row_number() OVER (PARTITION BY program
                                          ORDER BY requested_at, request_uid, request_row, id) AS pos
            FROM nominees WHERE status = 'waiting')
        SELECT n.program AS program, p.host_institution AS host_institution,
               n.institution AS institution, n.name AS name, r.gender AS gender,
               r.position AS position, r.email AS email, n.id_number AS id_number,
               r.phone AS phone, n.status AS status, queue.pos AS waitlist_position,
               n.requested_at AS arrived_at, m.receipt AS receipt,
               n.id AS nominee, n.id_masked AS id_masked
        FROM nominees n
        JOIN messages m ON m.id = n.message
        LEFT JOIN form_rows r ON r.id = n.form_row
        LEFT JOIN programs p ON p.name = n.program
        LEFT JOIN queue ON queue.id = n.id;

        CREATE VIEW program_fill AS
        SELECT p.position AS position, p.name AS program, p.host_institution AS host_institution,
               p.seats AS seats,
               count(CASE WHEN n.status = 'seated' THEN 1 END) AS seated,
               max(p.seats - count(CASE WHEN n.status = 'seated' THEN 1 END), 0) AS free,
               count(CASE WHEN n.status = 'waiting' THEN 1 END) AS waiting,
               count(CASE WHEN n.status = 'held' THEN 1 END) AS held,
               count(CASE WHEN n.status = 'conflict' THEN 1 END) AS conflict,
               count(CASE WHEN n.status = 'withdrawn' THEN 1 END) AS withdrawn
        FROM programs p
        LEFT JOIN nominees n ON n.program = p.name
        GROUP BY p.name
        ORDER BY p.position;

        CREATE VIEW message_log AS
        SELECT m.id AS message, m.receipt AS receipt, m.arrived_at AS arrived_at,
               m.recorded_at AS recorded_at, m.sender AS sender, m.institution AS institution,
               m.subject AS subject, m.outcome AS outcome, m.reason AS reason,
               o.kind AS reply_kind, o.status AS reply_status, o.sent_at AS reply_sent_at,
               o.to_address AS reply_to, m.settled_at AS settled_at
        FROM messages m
        LEFT JOIN outbox o ON o.message = m.id AND o.kind NOT IN ('promotion', 'digest');

        CREATE VIEW nominee_history AS
        SELECT e.id AS event, e.at AS at, e.actor AS actor, e.kind AS kind, n.id AS nominee,
               n.id_masked AS id_masked, n.id_hash AS id_hash, n.institution AS institution,
               n.program AS program, json_extract(e.detail, '$.from') AS from_status,
               json_extract(e.detail, '$.to') AS to_status, json_extract(e.detail, '$.why') AS why,
               m.receipt AS receipt
        FROM events e
        JOIN nominees n ON n.id = e.nominee
        LEFT JOIN messages m ON m.id = e.message;

        CREATE VIEW staff_decision_log AS
        SELECT e.id AS event, e.at AS at, e.actor AS actor, e.kind AS kind,
               json_extract(e.detail, '$.reason') AS reason, e.detail AS detail,
               m.receipt AS receipt, n.id_masked AS id_masked, n.program AS program
        FROM events e
        LEFT JOIN messages m ON m.id = e.message
        LEFT JOIN nominees n ON n.id = e.nominee
        WHERE e.actor LIKE 'staff:%' OR e.kind LIKE 'staff\\_%' ESCAPE '\\';
        """
    )


def _m004_message_attempts(db: sqlite_utils.Database) -> None:
    """Marks of messages being decided: committed before a decision, removed in the record's
    transaction; one left behind means the process died deciding that message."""
    db.execute(  # one statement: executescript would commit the migration's transaction first
        """CREATE TABLE attempts (
            source TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            source_key TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            PRIMARY KEY (source, uidvalidity, source_key)
        )""")


_M005_SQL = """
        CREATE TABLE poll_health (
            id INTEGER PRIMARY KEY CHECK (id = 1),  -- one row
            last_ok_at TEXT,                     -- end of the last poll that went through
            stall_alerted_at TEXT                -- when staff were told polling had stalled
        );
        CREATE TABLE poll_errors (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            error TEXT NOT NULL                  -- the technical error, masked, at most 300 characters
        );
        CREATE INDEX poll_errors_at ON poll_errors(at);
"""


def _m005_poll_health(db: sqlite_utils.Database) -> None:
    """When polling last went through and its failures since, for the digest and the stall alert."""
    run_script(db, _M005_SQL)


_PROGRAM_FILL_SQL = """
        DROP VIEW program_fill;
        CREATE VIEW program_fill AS
        SELECT p.position AS position, p.name AS program, p.host_institution AS host_institution,
               p.seats AS seats,
               count(CASE WHEN n.status = 'seated' THEN 1 END) AS seated,
               max(p.seats - count(CASE WHEN n.status = 'seated' THEN 1 END), 0) AS free,
               count(CASE WHEN n.status = 'waiting' THEN 1 END) AS waiting,
               count(CASE WHEN n.status = 'held' THEN 1 END) AS held,
               count(CASE WHEN n.status = 'withdrawn' THEN 1 END) AS withdrawn
        FROM programs p
        LEFT JOIN nominees n ON n.program = p.name
        GROUP BY p.name
        ORDER BY p.position;
"""


def _m006_no_conflict_status(db: sqlite_utils.Database) -> None:
    """No nominee is ``conflict`` any more (a refused row is a finding and a staff item): the
    ``program_fill`` view loses its column, and a ``conflict`` row left by a database written
    before the fair-seats work (a refused duplicate, never active) becomes ``withdrawn`` with a
    ``nominee_withdrawn`` event (actor ``migration``), so ``mailbot verify`` still explains every
    status.  Events are appended here by hand: a migration gets the connection, not the State."""
    run_script(db, _PROGRAM_FILL_SQL)
    rows = db.conn.execute("SELECT id, message, program, id_masked FROM nominees WHERE status = 'conflict' "
                           "ORDER BY id").fetchall()
    last = db.conn.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
    prev = last[0] if last else ""
    for pk, message, program, id_masked in rows:
        at = utc_now()
        body = json.dumps({"from": "conflict", "to": "withdrawn", "program": program, "id": id_masked,
                           "why": "conflict status retired"}, ensure_ascii=False, sort_keys=True)
        digest = event_hash(prev, at, "migration", "", message, pk, "nominee_withdrawn", body)
        db.conn.execute("INSERT INTO events (at, actor, rules_version, message, nominee, kind, detail, prev_hash, "
                        "hash) VALUES (?, 'migration', '', ?, ?, 'nominee_withdrawn', ?, ?, ?)",
                        [at, message, pk, body, prev, digest])
        db.conn.execute("UPDATE nominees SET status = 'withdrawn', updated_at = ? WHERE id = ?", [at, pk])
        prev = digest


MIGRATIONS: tuple[tuple[str, Callable[[sqlite_utils.Database], None]], ...] = (
    ("001_initial", _m001_initial),
    ("002_school_contacts_and_staff_items", _m002_school_contacts_and_staff_items),
    ("003_audit_views", _m003_audit_views),
    ("004_message_attempts", _m004_message_attempts),
    ("005_poll_health", _m005_poll_health),
    ("006_no_conflict_status", _m006_no_conflict_status),
)


def _ensure_private_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    else:
        os.chmod(path, 0o600)


class State:
    """The state database plus the file store beside it (``raw/``, ``evidence/``)."""

    def __init__(self, state_dir: Path, *, db_path: Path | None = None) -> None:
        self.dir = state_dir
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self.path = db_path or state_dir / "mailbot.db"
        self._insert_sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self._in_transaction = False
        self._chain_head: str | None = None  # last event hash, only while in transaction()
        self._events: list[list[Any]] = []  # events of the open transaction not yet inserted
        self._batch_events = False
        self._head: tuple[int, str] | None = None  # (generation, hash) of the last event this connection committed
        self._data_version: int | None = None
        self.generation = 0
        """Bumped whenever what this connection knows may be stale: another connection committed
        (``PRAGMA data_version`` moved) or a transaction rolled back.  Counts kept in memory
        across transactions (the ledger's, the reply budget's) are valid for one generation."""
        try:
            _ensure_private_file(self.path)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._migrate()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    @classmethod
    def readonly(cls, db_path: Path) -> "State":
        """Open an existing database read-only (auditors, ``mailbot verify``): no migration,
        no chmod, fails when the file is missing instead of creating an empty one."""
        if not db_path.is_file():
            raise StateError(f"no state database at {db_path}")
        self = cls.__new__(cls)
        self._insert_sql = {}
        self._in_transaction, self._chain_head = False, None
        self._events, self._data_version, self.generation, self._batch_events = [], None, 0, False
        self._head = None
        self.dir = db_path.parent
        self.path = db_path
        try:
            conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
        except sqlite3.Error as exc:
            raise StateError(f"state database {db_path}: {exc}") from exc
        return self

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        done = {r["name"] for r in self.query("SELECT name FROM _migrations")}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            with self.transaction():
                fn(self.db)
                if not self.db.conn.in_transaction:
                    raise StateError(f"migration {name} ended its transaction (executescript?); "
                                     "it is not atomic: use run_script")
                self.db.execute("INSERT INTO _migrations VALUES (?, ?)", [name, utc_now()])

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM _migrations ORDER BY name")]

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, batch_events: bool = False) -> Iterator[sqlite_utils.Database]:
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front).

        ``batch_events``: the events added in it are inserted together just before it commits
        (one statement instead of one each); for callers that do not read the log in between.
        An ``sqlite3.OperationalError`` inside it (disk full, I/O error, locked) is the
        database's fault, not the caller's data: it becomes a :class:`StateError`."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"state database busy or unusable: {exc}") from exc
        # The event chain head is read once per transaction and then carried along: inside
        # BEGIN IMMEDIATE no other connection can append an event.
        self._in_transaction, self._chain_head, self._events = True, None, []
        self._batch_events = batch_events
        try:
            self.changed_elsewhere()
            yield self.db
            self.flush_events()
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise StateError(f"state database write failed: {exc}") from exc
        except BaseException:
            self._rollback()
            raise
        else:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StateError(f"commit failed: {exc}") from exc
            if self._chain_head is not None:
                self._head = (self.generation, self._chain_head)
        finally:
            self._in_transaction, self._chain_head, self._events = False, None, []
            self._batch_events = False

    @property
    def in_transaction(self) -> bool:
        """Whether a :meth:`transaction` is open (it holds the write lock)."""
        return self._in_transaction

    def changed_elsewhere(self) -> bool:
        """Whether another connection committed since this one last asked (``PRAGMA
        data_version``); if so, :attr:`generation` moves on.  One statement."""
        version = int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])
        changed = version != self._data_version
        if changed:
            self._data_version = version
            self.generation += 1
        return changed

    def _rollback(self) -> None:
        """Roll back if a transaction is still open (SQLite already rolled back after some
        errors, e.g. SQLITE_FULL; a second ROLLBACK would hide the real error)."""
        self.generation += 1  # counts kept in memory during the transaction are void
        self._events = []
        if self.db.conn.in_transaction:
            self.db.execute("ROLLBACK")

    def close(self) -> None:
        self.db.conn.close()

    def unused_pages(self) -> list[int] | None:
        """Pages of the file that no table, index or the freelist uses (None without SQLite's
        ``dbstat``).  ``PRAGMA integrity_check`` of SQLite 3.40 skips this check when the schema
        has views, as ours does, so ``mailbot verify`` makes it here.  The page numbers are exact
        when the freelist is empty; otherwise the count is."""
        conn = self.db.conn
        try:
            used = {r[0] for r in conn.execute("SELECT DISTINCT pageno FROM dbstat")}
        except sqlite3.OperationalError:
            return None
        count = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        pending = (1 << 30) // size + 1  # the lock-byte page, never used
        unused = [p for p in range(1, count + 1) if p not in used and p != pending]
        return unused[free:] if len(unused) > free else []

    def chain_head(self) -> str:
        """The last event's hash (empty for an empty log): what a digest or an audit writes down."""
        row = self.db.conn.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else ""

    def backup_into(self, target: Path) -> None:
        """A consistent copy of the database at ``target`` (a new 0600 file), by SQLite's online
        backup API in one step: one read snapshot, so writers carry on and the copy is one
        committed state."""
        if target.exists():
            raise StateError(f"backup target {target} already exists")
        try:
            _ensure_private_file(target)
            dest = sqlite3.connect(target)
            try:
                self.db.conn.backup(dest)
            finally:
                dest.close()
        except sqlite3.Error as exc:
            raise StateError(f"backup to {target} failed: {exc}") from exc

    def checkpoint(self) -> None:
        """Move everything in the WAL into the database file and empty the WAL (tests compare
        database files byte for byte after this)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- files ----------------------------------------------------------------------------
    def store_blob(self, data: bytes, subdir: str, suffix: str = "") -> tuple[str, str]:
        """Store ``data`` durably by SHA-256 under ``state/<subdir>``; returns (sha256, relative path).

        Idempotent: storing the same bytes twice keeps one file.
        """
        sha = hashlib.sha256(data).hexdigest()
        rel = Path(subdir) / sha[:2] / f"{sha}{suffix}"
        target = self.dir / rel
        if target.exists():
            return sha, str(rel)
        try:
            write_private_file(target, data)
        except OSError as exc:
            raise StateError(f"cannot store {subdir} file ({exc.strerror})") from exc
        return sha, str(rel)

    # -- rows -----------------------------------------------------------------------------
    def query(self, sql: str, params: Any = ()) -> Iterator[dict[str, Any]]:
        """Rows as dicts.  Plain ``execute``: sqlite-utils' ``query`` wraps every statement in a
        SAVEPOINT/RELEASE pair, half of all statements on the hot path."""
        cur = self.db.conn.execute(sql, params)
        cols = [d[0] for d in cur.description or ()]
        for row in cur:
            yield dict(zip(cols, row))

    def insert(self, table: str, row: dict[str, Any]) -> int:
        """Insert one row (inside a transaction); returns its id.  Plain SQL on the hot path:
        ``Table.insert`` looks the table up and wraps a savepoint around every row."""
        cols = tuple(row)
        sql = self._insert_sql.get((table, cols))
        if sql is None:
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            self._insert_sql[(table, cols)] = sql
        return int(self.db.conn.execute(sql, list(row.values())).lastrowid)

    def insert_numbered(self, table: str, column: str, prefix: str, row: dict[str, Any]) -> int:
        """Insert one row (inside a transaction) whose ``column`` is ``prefix`` and its own id
        as six digits or more (a receipt), in one statement; returns the id.  The id is the
        one SQLite would pick, one above the largest (the transaction holds the write lock)."""
        cols = (*row, "id", column)
        sql = self._insert_sql.get((table, cols))
        if sql is None:
            nxt = f"(SELECT coalesce(max(id), 0) + 1 FROM {table})"
            sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(row))}, {nxt}, "
                   f"? || printf('%06d', {nxt}))")
            self._insert_sql[(table, cols)] = sql
        return int(self.db.conn.execute(sql, [*row.values(), prefix]).lastrowid)

    def insert_rows(self, table: str, cols: tuple[str, ...], rows: list[list[Any]]) -> list[int]:
        """Insert many rows with the same columns (inside a transaction) in as few statements as
        SQLite's variable limit allows; returns their ids in order.  One multi-row ``INSERT``
        assigns consecutive ids in the order of its rows; ``RETURNING id`` says which."""
        ids: list[int] = []
        per = max(1, 30000 // max(1, len(cols)))
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            marks = "(" + ", ".join("?" * len(cols)) + ")"
            sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES {', '.join([marks] * len(chunk))} "
                   "RETURNING id")
            got = [int(r[0]) for r in self.db.conn.execute(sql, [v for row in chunk for v in row])]
            ids += sorted(got)  # rows are inserted in order, each id above the one before
        return ids

    # -- events ---------------------------------------------------------------------------
    _EVENT_COLUMNS = ("at", "actor", "rules_version", "message", "nominee", "kind", "detail", "prev_hash", "hash")

    def add_event(self, kind: str, detail: dict[str, Any], *, actor: str, rules_version: str,
                  message: int | None = None, nominee: int | None = None) -> None:
        """Append one event to the hash-chained log (call inside a transaction).  Inside
        :meth:`transaction` the events are inserted together before it commits (or before a
        read of the log: :meth:`flush_events`) when it was opened with ``batch_events``, in the
        order they were added."""
        prev = self._chain_head
        if prev is None and self._in_transaction and self._head is not None and self._head[0] == self.generation:
            prev = self._head[1]  # nobody else committed since our last event: it is still the head
        if prev is None:
            last = self.db.conn.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
            prev = last[0] if last else ""
        at = utc_now()
        body = json.dumps(detail, ensure_ascii=False, sort_keys=True)
        digest = event_hash(prev, at, actor, rules_version, message, nominee, kind, body)
        row = [at, actor, rules_version, message, nominee, kind, body, prev, digest]
        if self._in_transaction:
            self._chain_head = digest  # we hold the write lock: nobody else appends until COMMIT
        if self._batch_events:
            self._events.append(row)
        else:
            self.insert("events", dict(zip(self._EVENT_COLUMNS, row)))
            if not self._in_transaction:
                self._head = None

    def flush_events(self) -> None:
        """Insert the events added in this transaction so far (before reading the log in it)."""
        if self._events:
            rows, self._events = self._events, []
            self.insert_rows("events", self._EVENT_COLUMNS, rows)

    def verify_event_chain(self) -> tuple[bool, int]:
        """Recompute the event hash chain; returns (ok, events checked)."""
        prev = ""
        n = 0
        for e in self.query("SELECT * FROM events ORDER BY id"):
            expect = event_hash(prev, e["at"], e["actor"], e["rules_version"], e["message"],
                                e["nominee"], e["kind"], e["detail"])
            if e["prev_hash"] != prev or e["hash"] != expect:
                return False, n
            prev = e["hash"]
            n += 1
        return True, n

    # -- cursors --------------------------------------------------------------------------
    def cursor(self, source: str) -> tuple[int | None, int]:
        rows = list(self.query("SELECT uidvalidity, last_uid FROM cursors WHERE source = ?", [source]))
        if not rows:
            return None, 0
        return rows[0]["uidvalidity"], rows[0]["last_uid"]

    def advance_cursor(self, source: str, uidvalidity: int, uid: int) -> None:
        """Move the cursor forward (call inside the message's transaction)."""
        self.db.execute(
            """INSERT INTO cursors (source, uidvalidity, last_uid, updated_at) VALUES (?, ?, ?, ?)
               ON CONFLICT(source) DO UPDATE SET
                 last_uid = CASE WHEN cursors.uidvalidity = excluded.uidvalidity
                                 THEN max(cursors.last_uid, excluded.last_uid) ELSE excluded.last_uid END,
                 uidvalidity = excluded.uidvalidity, updated_at = excluded.updated_at""",
            [source, uidvalidity, uid, utc_now()],
        )

    # -- decision marks -------------------------------------------------------------------
    def begin_attempt(self, source: str, uidvalidity: int, key: str) -> int:
        """Mark a message as being decided, committed before its decision starts; returns how
        many starts it has had, this one included (a count above 1: the process died on it)."""
        with self.transaction():
            return self.mark_attempt(source, uidvalidity, key)

    def mark_attempt(self, source: str, uidvalidity: int, key: str) -> int:
        """:meth:`begin_attempt` inside the caller's transaction, which must commit before the
        message's decision starts (the intake commits it with the record of the message before)."""
        now = utc_now()
        row = self.db.conn.execute(
            """INSERT INTO attempts (source, uidvalidity, source_key, attempts, first_at, last_at)
               VALUES (?, ?, ?, 1, ?, ?)
               ON CONFLICT(source, uidvalidity, source_key)
               DO UPDATE SET attempts = attempts + 1, last_at = excluded.last_at
               RETURNING attempts""",
            [source, uidvalidity, key, now, now]).fetchone()
        return int(row[0])

    def unmark_attempt(self, source: str, uidvalidity: int, key: str) -> None:
        """Take back one start that never began (the cycle stopped first), inside a transaction."""
        args = [source, uidvalidity, key]
        self.db.conn.execute("UPDATE attempts SET attempts = attempts - 1 WHERE source = ? AND uidvalidity = ? "
                             "AND source_key = ?", args)
        self.db.conn.execute("DELETE FROM attempts WHERE source = ? AND uidvalidity = ? AND source_key = ? "
                             "AND attempts <= 0", args)

    def end_attempt(self, source: str, uidvalidity: int, key: str) -> None:
        """Remove a message's mark (inside the transaction that records its decision)."""
        self.db.execute("DELETE FROM attempts WHERE source = ? AND uidvalidity = ? AND source_key = ?",
                        [source, uidvalidity, key])

    # -- lookups --------------------------------------------------------------------------
    def message_at(self, source: str, uidvalidity: int, uid: int, key: str = "") -> dict[str, Any] | None:
        """The message already recorded at this place in the mailbox: by UID for IMAP, by the
        source's own key for Maildir and replays (uidvalidity 0)."""
        # The literal uidvalidity conditions let SQLite use the partial unique indexes
        # (messages_imap_uid / messages_local_key); without them every lookup scanned the table.
        if uidvalidity:
            sql = ("SELECT * FROM messages WHERE source = ? AND uidvalidity = ? AND uid = ? "
                   "AND uidvalidity != 0")
            args: list[Any] = [source, uidvalidity, uid]
        else:
            sql, args = "SELECT * FROM messages WHERE source = ? AND uidvalidity = 0 AND source_key = ?", [source, key]
        rows = list(self.query(sql, args))
        return rows[0] if rows else None

    def messages_at(self, fetched: list[Any]) -> dict[tuple[int, int | str], dict[str, Any]]:
        """:meth:`message_at` for a fetch batch (``FetchedMessage``s of one source) in one read
        per kind of key: keyed by (uidvalidity, uid) for IMAP, (0, source key) for Maildir."""
        out: dict[tuple[int, int | str], dict[str, Any]] = {}
        imap = [f for f in fetched if f.uidvalidity]
        local = [f for f in fetched if not f.uidvalidity]
        if imap:
            for validity in {f.uidvalidity for f in imap}:
                uids = [f.uid for f in imap if f.uidvalidity == validity]
                for row in self.query(
                        "SELECT * FROM messages WHERE source = ? AND uidvalidity = ? AND uidvalidity != 0 "
                        f"AND uid IN ({', '.join('?' * len(uids))})", [imap[0].source, validity, *uids]):
                    out[(validity, row["uid"])] = row
        if local:
            keys = [f.key for f in local]
            for row in self.query("SELECT * FROM messages WHERE source = ? AND uidvalidity = 0 "
                                  f"AND source_key IN ({', '.join('?' * len(keys))})", [local[0].source, *keys]):
                out[(0, row["source_key"])] = row
        return out

    def original_of(self, message_id: str, sha256: str) -> dict[str, Any] | None:
        """The first recorded message with these bytes (and Message-ID), if any."""
        rows = list(self.query(
            "SELECT * FROM messages WHERE sha256 = ? AND message_id = ? AND duplicate_of IS NULL "
            "ORDER BY id LIMIT 1", [sha256, message_id]))
        return rows[0] if rows else None

    def unsettled(self, source: str) -> list[dict[str, Any]]:
        return list(self.query(
            "SELECT id, uidvalidity, uid, source_key, settle_folder FROM messages "
            "WHERE settled_at IS NULL AND source = ? ORDER BY id", [source]))

    def mark_settled(self, message: int) -> None:
        self.mark_settled_many([message])

    def mark_settled_many(self, messages: list[int]) -> None:
        """Mark messages settled on the server (inside a transaction): one statement per 500."""
        now = utc_now()
        for start in range(0, len(messages), 500):
            chunk = messages[start:start + 500]
            self.db.conn.execute(f"UPDATE messages SET settled_at = ? WHERE id IN ({', '.join('?' * len(chunk))})",
                                 [now, *chunk])

    def replies_to_since(self, address: str, since_iso: str) -> int:
        """Replies queued to ``address`` since then (notices about a school's list, staff mail
        and staff answers not counted: others' mail, and staff's own, must not use up a school's
        replies)."""
        row = next(self.query(
            "SELECT count(*) AS n FROM outbox WHERE to_address = ? AND created_at >= ? "
            "AND kind NOT IN ('digest', 'staff_alert', 'staff_answer') AND kind NOT LIKE 'notice\\_%' ESCAPE '\\'",
            [address, since_iso]))
        return int(row["n"])

    def notices_to_since(self, address: str, since_iso: str) -> int:
        """Notices about a school's list queued to ``address`` since then (a staff decision's
        notice is staff's mail: not counted)."""
        row = next(self.query(
            "SELECT count(*) AS n FROM outbox WHERE to_address = ? AND created_at >= ? "
            "AND kind LIKE 'notice\\_%' ESCAPE '\\' AND kind != 'notice_decision'", [address, since_iso]))
        return int(row["n"])
