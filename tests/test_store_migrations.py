"""Schema migrations are atomic: one failing halfway leaves no table and no migration record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailbot.errors import StateError
from mailbot.state import store
from mailbot.state.store import MIGRATIONS, State, run_script, sql_statements


ALL_BEFORE = sorted(name for name, _ in MIGRATIONS)  # the real ones, all applied first


def schema(db_path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()


def migration_records(db_path: Path) -> list[str]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return [name for (name,) in conn.execute("SELECT name FROM _migrations ORDER BY name")]


def half_done(db) -> None:
    """Two statements that work, then one that fails (the table exists)."""
    run_script(db, """
        CREATE TABLE staff_decisions (id INTEGER PRIMARY KEY, decided_by TEXT NOT NULL);
        CREATE INDEX staff_decisions_by ON staff_decisions(decided_by);
        CREATE TABLE messages (id INTEGER PRIMARY KEY);
    """)


def test_a_migration_failing_halfway_leaves_the_schema_and_the_records_as_they_were(tmp_path, monkeypatch):
    State(tmp_path).close()
    db_path = tmp_path / "mailbot.db"
    before = schema(db_path)
    monkeypatch.setattr(store, "MIGRATIONS", (*MIGRATIONS, ("900_staff_decisions", half_done)))
    with pytest.raises(StateError, match="table messages already exists"):
        State(tmp_path)
    assert schema(db_path) == before
    assert migration_records(db_path) == ALL_BEFORE


def test_the_first_migration_failing_on_a_new_database_leaves_only_the_empty_record_table(tmp_path, monkeypatch):
    def initial_then_broken(db) -> None:
        store._m001_initial(db)
        run_script(db, "CREATE TABLE events (id INTEGER PRIMARY KEY);")

    monkeypatch.setattr(store, "MIGRATIONS", (("001_initial", initial_then_broken),))
    with pytest.raises(StateError, match="table events already exists"):
        State(tmp_path)
    assert [(kind, name) for kind, name, _ in schema(tmp_path / "mailbot.db")] == [
        ("index", "sqlite_autoindex__migrations_1"), ("table", "_migrations")]
    assert migration_records(tmp_path / "mailbot.db") == []


def test_a_migration_that_commits_on_its_own_is_refused_and_not_recorded(tmp_path, monkeypatch):
    def with_executescript(db) -> None:  # sqlite3's executescript commits first, then autocommits
        db.conn.executescript("CREATE TABLE staff_decisions (id INTEGER PRIMARY KEY);")

    State(tmp_path).close()
    monkeypatch.setattr(store, "MIGRATIONS", (*MIGRATIONS, ("900_staff_decisions", with_executescript)))
    with pytest.raises(StateError, match="migration 900_staff_decisions ended its transaction"):
        State(tmp_path)
    assert migration_records(tmp_path / "mailbot.db") == ALL_BEFORE


def test_a_script_splits_into_its_statements_keeping_a_trigger_body_whole():
    script = """
        CREATE TABLE t (x TEXT DEFAULT ';');  -- a comment; with a semicolon
        CREATE TRIGGER t_frozen BEFORE UPDATE ON t
            BEGIN SELECT RAISE(ABORT, 'frozen'); SELECT 1; END;
    """
    assert [s.strip() for s in sql_statements(script)] == [
        "CREATE TABLE t (x TEXT DEFAULT ';');",
        "-- a comment; with a semicolon\n        CREATE TRIGGER t_frozen BEFORE UPDATE ON t\n"
        "            BEGIN SELECT RAISE(ABORT, 'frozen'); SELECT 1; END;",
        ";",
    ]


def test_a_script_ending_inside_a_trigger_is_refused():
    with pytest.raises(StateError, match="incomplete SQL statement"):
        list(sql_statements("CREATE TRIGGER t_frozen BEFORE UPDATE ON t BEGIN SELECT 1;"))
