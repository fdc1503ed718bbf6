"""The benchmark scripts run end to end on a tiny mailbox (no timing is asserted, ever)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> dict:
    if os.environ.get("MAILBOT_SKIP_SERVERS") == "1":
        pytest.skip("MAILBOT_SKIP_SERVERS=1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(120)
def test_backlog_benchmark_answers_every_mail_in_all_three_phases() -> None:
    result = _run("backlog.py", "--messages", "20", "--sample-cpu", "--sql-top", "3")["runs"][0]
    mix = result["mix"]
    assert mix["clean"] + mix["errors"] + mix["no_attachment"] == 20
    floor, bot = result["floor"], result["mailbot"]
    assert floor["messages"] == bot["messages"] == 20
    assert floor["smtp_accepted"] == bot["smtp_accepted"] == 20
    expected = {"accepted": mix["clean"], "correction": mix["errors"], "no_form": mix["no_attachment"]}
    assert bot["outcomes"] == {k: n for k, n in expected.items() if n}
    assert bot["outbox"] == {"sent": 20}
    assert floor["forms"] == mix["clean"] + mix["errors"]
    assert floor["sql_statements"] == 3 * 20  # BEGIN, INSERT, COMMIT per mail: the counter counts
    assert bot["sql_statements"] == sum(bot["sql_kinds"].values()) > 0
    assert result["sql_per_mail"] == bot["sql_statements"] / 20
    assert result["sql_per_mail"] <= 30  # the bound: a count, not a timing
    assert len(bot["sql_top"]) == 3 and sum(n for _, n in bot["sql_top"]) <= bot["sql_statements"]
    stages = dict(result["cpu_shares"])
    assert len(stages) == 17 and 0 < stages["record it (all of it)"] <= 100
    assert bot["idle_polls"]["fetched"] == 0
    assert floor["tree_peak_rss_mb"] > 0 and bot["tree_peak_rss_mb"] > 0
    assert result["ratio"] == bot["seconds"] / floor["seconds"]
    assert floor["cpu_s"] > 0 and result["cpu_ratio"] == bot["cpu_s"] / max(floor["cpu_s"], 0.01)


@pytest.mark.timeout(120)
def test_the_promise_floor_reaches_mailbots_verdicts_and_counts_each_promise_apart() -> None:
    result = _run("backlog.py", "--messages", "20")["runs"][0]
    mix, promises, bot = result["mix"], result["promises"], result["mailbot"]
    assert promises["messages"] == 20 and promises["smtp_accepted"] == 20
    # the same mail read to the same end: every form found, every bad phone a correction
    assert promises["forms"] == mix["clean"] + mix["errors"]
    assert promises["corrections"] == mix["errors"] == bot["outcomes"].get("correction", 0)
    assert promises["rows"] == bot["rows"]
    # per mail: the duplicate check, BEGIN, INSERT message, one INSERT per nominee (executemany),
    # event, outbox, COMMIT; per batch of 20: BEGIN, one UPDATE per reply, COMMIT, twice
    assert promises["sql_statements"] == 20 * 6 + promises["rows"] + 2 * (2 + 20)
    assert set(promises["stage_cpu_s"]) == {
        "fetch", "parse (daemon)", "duplicate and sender check", "contained request (daemon side)",
        "raw mail durable", "seats", "reply rendered (jinja2)", "reply built (email package)",
        "record (one durable commit)", "log line", "send batch (commits, SMTP, Sent copy)", "settle (UID MOVE)"}
    assert set(promises["worker_cpu_s"]) == {
        "walk (MIME parse)", "bounds (zip members)", "calamine read", "row checks (libraries)",
        "correction workbook", "pickling"}
    assert promises["tree_max_processes"] == 2  # the contained worker ran beside it
    assert result["promise_cpu_ratio"] == bot["cpu_s"] / max(promises["cpu_s"], 0.01)


@pytest.mark.timeout(120)
def test_form_read_benchmark_compares_every_kind_with_its_bare_reader() -> None:
    result = _run("form_read.py", "--forms", "3", "--rounds", "1", "--contained")
    assert [(r["kind"], r["forms"], r["rounds"]) for r in result["results"]] == [
        ("xlsx", 3, 1), ("xls", 3, 1), ("ods", 3, 1), ("docx", 3, 1)]
    assert all(r["ratio"] > 0 for r in result["results"])
    # the reader's promise floor reads the same rows (the script asserts it) for every spreadsheet
    assert [r["kind"] for r in result["results"] if r.get("promise_ms", 0) > 0] == ["xlsx", "xls", "ods"]
    assert [(r["kind"], r["forms"]) for r in result["contained"]] == [("xlsx", 3), ("xls", 3), ("ods", 3), ("docx", 3)]
    assert all(r["contained_wall_ms"] > 0 for r in result["contained"])


@pytest.mark.timeout(120)
def test_idle_poll_benchmark_sends_one_status_per_idle_poll_whatever_the_mailbox_size() -> None:
    result = _run("idle_poll.py", "--sizes", "0,20", "--polls", "3")
    rows = {(r["state"], r["size"]): r["commands_per_poll"] for r in result["results"]}
    assert rows == {
        ("moved", 0): {"UNSELECT STATUS": 1, "STATUS": 2},
        ("moved", 20): {"STATUS": 3},
        ("kept", 0): {"UNSELECT STATUS": 1, "STATUS": 2},
        ("kept", 20): {"STATUS": 3},
    }


@pytest.mark.timeout(120)
def test_idle_latency_benchmark_gets_a_reply_to_every_mail_from_the_running_daemon() -> None:
    result = _run("idle_latency.py", "--mails", "2", "--gap", "0")
    assert (result["mails"], result["replies"], result["exit_status"]) == (2, 2, 0)
    assert len(result["latencies_s"]) == 2
    assert result["server_median_s"] is not None and result["mailbot_median_s"] is not None  # split at EXISTS


@pytest.mark.timeout(300)
def test_form_equivalence_check_finds_a_fresh_record_unchanged(tmp_path: Path) -> None:
    record = tmp_path / "readings.json"
    outputs = []
    for mode in ("--record", "--compare"):
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "form_equivalence.py"), mode, str(record),
                               "--damaged", "1"], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        outputs.append(proc.stdout.strip().splitlines()[-1])
    readings = json.loads(record.read_text())
    assert sum(1 for r in readings.values() if r[0] == "read") > 100  # forms of every kind were read
    assert outputs[1] == f"0 of {len(readings)} differ"
