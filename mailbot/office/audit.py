"""``mailbot audit serve``: Datasette on the state database, read-only, for auditors.

The database is opened with ``?mode=ro`` for every connection Datasette makes, its write
connection included, so even a canned query marked ``write: true`` is refused by SQLite
(``attempt to write a readonly database``). Not ``immutable``: the daemon keeps writing in WAL
and readers must see its commits. Run it as the daemon's user, or on a backup copy.

The metadata (a description of every table, view and column) is read from
``docs/SCHEMA.md``, shipped in the package, so the page auditors browse and the document they
read cannot drift apart; the canned queries answer the common questions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import uvicorn
from datasette.app import Datasette
from datasette.database import Database

from mailbot.bundled import schema_doc

DATABASE = "mailbot"

CANNED_QUERIES: dict[str, dict[str, Any]] = {
    "seated_in_program": {
        "title": "某项目计划名额内的学员及进入计划名额的时间 (who was seated in a program, and when)",
        "description": "Everyone seated in the program, with the time the event log seated them.",
        "sql": """SELECT r.program, r.institution, r.name, r.id_masked, r.receipt, r.arrived_at,
       (SELECT max(h.at) FROM nominee_history h
        WHERE h.nominee = r.nominee AND h.to_status = 'seated') AS seated_at
FROM roster r
WHERE r.program = :program AND r.status = 'seated'
ORDER BY seated_at, r.arrived_at, r.nominee""",
    },
    "decisions_about_person": {
        "title": "某人的全部记录 (every decision about a person)",
        "description": "By identity number, full or masked as in replies and digests.",
        "sql": """SELECT h.event, h.at, h.actor, h.kind, h.program, h.institution, h.from_status,
       h.to_status, h.why, h.receipt
FROM nominee_history h
WHERE h.nominee IN (SELECT id FROM nominees WHERE id_number = :person OR id_masked = :person)
ORDER BY h.event""",
    },
    "all_staff_decisions": {
        "title": "工作人员的全部决定 (all staff decisions)",
        "description": "Every event written by a named staff member, oldest first.",
        "sql": "SELECT * FROM staff_decision_log ORDER BY event",
    },
    "late_and_rejected_mail": {
        "title": "逾期和未受理的邮件 (late and rejected mail)",
        "description": "Mail that was late, quarantined, redirected, unreadable or without a usable form "
                       "(questions and requests to staff, and 'how do I register', included).",
        "sql": """SELECT message, receipt, arrived_at, sender, institution, outcome, reason, reply_kind,
       reply_status
FROM message_log
WHERE outcome IN ('late', 'quarantined', 'redirect', 'unreadable', 'not_annex3', 'scan_only',
                  'no_form', 'for_staff', 'how_to_register', 'failed')
ORDER BY message""",
    },
}

_SECTION = re.compile(r"^### `(\w+)`( \(view\))?: (.+?)$(.*?)(?=^##)", re.S | re.M)
_COLUMN = re.compile(r"^\| `(\w+)` \| (.+?) \|$", re.M)


def _plain(markdown: str) -> str:
    """Markdown to the plain text Datasette shows: links to their text, no backticks or stars."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", markdown)
    return re.sub(r"[`*]", "", text).strip()


def schema_descriptions(doc: str) -> dict[str, dict[str, Any]]:
    """``{table or view: {"description": …, "columns": {column: …}}}`` from SCHEMA.md's sections."""
    out: dict[str, dict[str, Any]] = {}
    for name, _view, title, body in _SECTION.findall(doc):
        columns = {col: _plain(text) for col, text in _COLUMN.findall(body)}
        first = body.strip().split("\n\n", 1)[0]
        description = _plain(title) if first.startswith("|") else f"{_plain(title)}. {_plain(first)}"
        out[name] = {"description": " ".join(description.split()), "columns": columns}
    return out


def metadata(extra_queries: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Datasette metadata: every table and view described, the canned queries."""
    return {
        "title": "mailbot 报名状态（只读） / registration state, read-only",
        "description": "The state database as recorded by mailbot; see docs/SCHEMA.md. Read-only: "
                       "nothing here can change it. Verify the audit chain with `mailbot verify`.",
        "databases": {DATABASE: {
            "tables": schema_descriptions(schema_doc()),
            "queries": {**CANNED_QUERIES, **(extra_queries or {})},
        }},
    }


class ReadOnlyDatabase(Database):
    """Every connection, the write connection too, is opened ``?mode=ro``."""

    def connect(self, write: bool = False) -> Any:
        return super().connect(write=False)


def build_datasette(db_path: Path, *, extra_queries: dict[str, dict[str, Any]] | None = None) -> Datasette:
    """A Datasette instance on ``db_path`` (which must exist), read-only."""
    ds = Datasette(metadata=metadata(extra_queries), settings={"sql_time_limit_ms": 5000})
    ds.add_database(ReadOnlyDatabase(ds, path=str(db_path)), name=DATABASE)
    return ds


def serve(db_path: Path, *, host: str, port: int,
          extra_queries: dict[str, dict[str, Any]] | None = None) -> None:
    """Serve until interrupted (uvicorn, as ``datasette serve`` does)."""
    uvicorn.run(build_datasette(db_path, extra_queries=extra_queries).app(), host=host, port=port,
                log_level="warning")
