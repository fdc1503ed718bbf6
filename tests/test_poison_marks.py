"""Decision marks: a message is marked before it is decided and unmarked when its decision is
recorded; one whose decision did not finish twice is set aside at the next start, never read
again (Maildir intake, replies to a folder; the process deaths themselves are in
tests/test_contained_e2e.py)."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import local_settings, open_intake
from mail_factory import make_mail
from mailbot.errors import StateError
from mailbot.mail.source import FetchedMessage
from mailbot.pipeline import CycleReport

ARRIVED = datetime(2020, 11, 2, 2, 0, tzinfo=timezone.utc)
POISON_REASON = "poison: processing did not finish 2 times (crash, abort or kill); set aside for staff"


@pytest.fixture()
def parts(tmp_path):
    assembled = open_intake(local_settings(tmp_path), io.StringIO())
    yield assembled
    assembled.close()


def _fetched(parts, key: str, auth: str) -> FetchedMessage:
    raw = make_mail(sender="wang@zjxx.edu.cn", message_id=f"<{key}@zjxx.edu.cn>",
                    extra_headers={"Authentication-Results": f"mx.zjut.edu.cn; {auth}"},
                    attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(1)]))])
    return FetchedMessage(source=parts.source.name, uidvalidity=0, uid=1, key=key, arrived_at=ARRIVED, raw=raw)


def _rows(parts, sql: str) -> list[tuple]:
    return [tuple(r.values()) for r in parts.state.query(sql)]


def test_a_message_whose_decision_did_not_finish_twice_is_set_aside_and_acknowledged(parts) -> None:
    fetched = _fetched(parts, "twice", "dmarc=pass header.from=zjxx.edu.cn; spf=pass smtp.mailfrom=zjxx.edu.cn")
    for _ in range(2):  # two starts that died deciding it
        parts.state.begin_attempt(fetched.source, fetched.uidvalidity, fetched.key)

    assert parts.intake.handle(fetched) == "quarantined"

    assert _rows(parts, "SELECT outcome, reason, settle_folder FROM messages") == [
        ("quarantined", POISON_REASON, "Quarantine")]
    assert _rows(parts, "SELECT kind, to_address FROM outbox") == [("held", "wang@zjxx.edu.cn")]
    assert _rows(parts, "SELECT count(*) FROM forms") == [(0,)]  # never read again
    assert _rows(parts, "SELECT count(*) FROM attempts") == [(0,)]


def test_a_message_that_died_once_is_decided_normally_at_the_next_start(parts) -> None:
    fetched = _fetched(parts, "once", "dmarc=pass header.from=zjxx.edu.cn; spf=pass smtp.mailfrom=zjxx.edu.cn")
    parts.state.begin_attempt(fetched.source, fetched.uidvalidity, fetched.key)

    assert parts.intake.handle(fetched) == "accepted"
    assert _rows(parts, "SELECT count(*) FROM attempts") == [(0,)]


def test_a_poison_message_from_a_sender_the_gate_refuses_gets_no_acknowledgement(parts) -> None:
    fetched = _fetched(parts, "forged", "dmarc=fail header.from=zjxx.edu.cn")
    for _ in range(2):
        parts.state.begin_attempt(fetched.source, fetched.uidvalidity, fetched.key)

    assert parts.intake.handle(fetched) == "quarantined"
    assert _rows(parts, "SELECT outcome, reason FROM messages") == [("quarantined", POISON_REASON)]
    assert _rows(parts, "SELECT count(*) FROM outbox") == [(0,)]


def test_a_database_failure_while_recording_is_not_counted_as_poison(parts, monkeypatch) -> None:
    fetched = _fetched(parts, "disk", "dmarc=pass header.from=zjxx.edu.cn")

    def full(*_args, **_kwargs):
        raise StateError("database or disk is full")

    monkeypatch.setattr(parts.intake, "record", full)
    with pytest.raises(StateError):
        parts.intake.handle(fetched)
    assert _rows(parts, "SELECT count(*) FROM attempts") == [(0,)]


class _Died(BaseException):
    """Stands for the process dying while deciding a message (nothing catches it)."""


def test_in_a_fetch_batch_only_the_message_in_hand_is_marked_when_the_process_dies(parts, monkeypatch) -> None:
    auth = "dmarc=pass header.from=zjxx.edu.cn; spf=pass smtp.mailfrom=zjxx.edu.cn"
    batch = [_fetched(parts, key, auth) for key in ("first", "second", "third")]
    assess = parts.intake.assess

    def dies_on_the_second(fetched, **kwargs):
        if fetched.key == "second":
            raise _Died
        return assess(fetched, **kwargs)

    monkeypatch.setattr(parts.intake, "assess", dies_on_the_second)
    with pytest.raises(_Died):
        parts.intake.handle_batch(batch, CycleReport())

    assert _rows(parts, "SELECT source_key, outcome FROM messages") == [("first", "accepted")]
    assert _rows(parts, "SELECT source_key, attempts FROM attempts") == [("second", 1)]  # the third: untouched
    assert _rows(parts, "SELECT kind, status FROM outbox") == [("acceptance", "sent")]  # the first's reply left


def test_a_cycle_stopped_between_two_messages_takes_back_the_next_ones_mark(parts) -> None:
    auth = "dmarc=pass header.from=zjxx.edu.cn; spf=pass smtp.mailfrom=zjxx.edu.cn"
    batch = [_fetched(parts, key, auth) for key in ("first", "second")]
    parts.state.begin_attempt(batch[1].source, batch[1].uidvalidity, batch[1].key)  # died on it once before

    def stop(_done: int) -> None:
        raise _Died

    with pytest.raises(_Died):
        parts.intake.handle_batch(batch, CycleReport(), stop)

    assert _rows(parts, "SELECT source_key FROM messages") == [("first",)]
    assert _rows(parts, "SELECT source_key, attempts FROM attempts") == [("second", 1)]  # as before the cycle
