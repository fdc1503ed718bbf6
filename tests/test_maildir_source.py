"""MaildirSource on temp dirs: exact bytes, delivery times, stable UIDs, settle/flag/append, waiting."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailbot.errors import MailboxError
from mailbot.mail.source import FetchedMessage, MailSource
from mailbot.mail.maildir import UIDLIST, MaildirSource

SHANGHAI = ZoneInfo("Asia/Shanghai")


def make_raw(n: int) -> bytes:
    return (f"From: sender{n}@example.edu.cn\r\nTo: shengpei@zjut.edu.cn\r\n"
            f"Message-ID: <m{n}@example.edu.cn>\r\nSubject: form {n}\r\n\r\n报名表 {n}\r\n").encode()


def deliver(root: Path, raw: bytes, when: datetime, name: str | None = None, sub: str = "new") -> str:
    """Drop a message into the inbox as an MDA would; returns its Maildir key."""
    stamp = when.timestamp()
    key = name or f"{int(stamp)}.M{round((stamp % 1) * 1_000_000)}P4242Q{len(os.listdir(root / sub))}.testhost"
    path = root / sub / (key if sub == "new" else f"{key}:2,")
    path.write_bytes(raw)
    os.utime(path, (stamp, stamp))
    return key


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


@pytest.fixture
def source(maildir: Path):
    src = MaildirSource(maildir)
    yield src
    src.close()


def test_creates_maildir_and_standard_folders(maildir: Path, source: MaildirSource):
    assert isinstance(source, MailSource)
    assert source.name == f"maildir:{maildir.resolve()}"
    assert sorted(p.name for p in maildir.iterdir() if p.is_dir()) == [
        ".Failed", ".Processed", ".Quarantine", ".Sent", "cur", "new", "tmp"]
    assert (maildir / ".Processed" / "maildirfolder").exists()


def test_fetch_returns_exact_bytes_and_delivery_times_in_order(maildir: Path, source: MaildirSource):
    late = datetime(2020, 11, 9, 23, 59, 59, 250000, tzinfo=SHANGHAI)
    early = datetime(2020, 10, 30, 9, 0, 0, tzinfo=timezone.utc)
    k_late = deliver(maildir, make_raw(1), late)
    k_early = deliver(maildir, make_raw(2), early, sub="cur")
    k_plain = deliver(maildir, make_raw(3), datetime(2020, 11, 10, tzinfo=timezone.utc), name="copied-in.eml")
    validity, uidnext = source.status()

    fetched = list(source.fetch_after(None, 0))

    first = uidnext - 3
    assert fetched == [
        FetchedMessage(source.name, 0, first, k_early, early, make_raw(2)),
        FetchedMessage(source.name, 0, first + 1, k_late, late, make_raw(1)),
        FetchedMessage(source.name, 0, first + 2, k_plain, datetime(2020, 11, 10, tzinfo=timezone.utc),
                       make_raw(3)),
    ]
    assert validity == 0
    assert fetched[1].arrived_at.tzinfo is not None


def test_uids_are_stable_while_mail_comes_and_goes(maildir: Path, source: MaildirSource):
    t = datetime(2020, 11, 1, tzinfo=timezone.utc)
    first = deliver(maildir, make_raw(1), t)
    second = deliver(maildir, make_raw(2), t.replace(hour=1))
    _, uidnext = source.status()
    source.settle(first, "Processed")
    third = deliver(maildir, make_raw(3), t.replace(hour=2))

    again = [(m.uid, m.key) for m in MaildirSource(maildir).fetch_after(0, uidnext - 1)]

    assert again == [(uidnext - 1, second), (uidnext, third)]  # all still in the inbox
    assert source.status() == (0, uidnext + 1)
    assert len((maildir / UIDLIST).read_text().splitlines()) == 1 + 2  # header + inbox only


def test_idle_status_is_cheap_and_stays_put(maildir: Path, source: MaildirSource):
    deliver(maildir, make_raw(1), datetime(2020, 11, 1, tzinfo=timezone.utc))
    (only,) = [m.uid for m in source.fetch_after(0, 0)]
    assert [source.status(), source.status()] == [(0, only + 1), (0, only + 1)]
    before = (maildir / UIDLIST).stat().st_mtime_ns
    source.status()
    assert (maildir / UIDLIST).stat().st_mtime_ns == before


def test_a_lost_uidlist_renumbers_above_any_old_cursor(maildir: Path, source: MaildirSource):
    for n in range(3):
        deliver(maildir, make_raw(n), datetime(2020, 11, 1, n, tzinfo=timezone.utc))
    _, uidnext = source.status()
    cursor = uidnext - 1
    (maildir / UIDLIST).unlink()
    time.sleep(1.05)

    _, renumbered_next = source.status()

    assert renumbered_next > cursor + 1  # the caller sees "new mail" and fetches
    assert len(list(source.fetch_after(0, cursor))) == 3


def test_settle_moves_the_file_unchanged_and_creates_folders(maildir: Path, source: MaildirSource):
    key = deliver(maildir, make_raw(1), datetime(2020, 11, 1, tzinfo=timezone.utc))

    source.settle(key, "Archive/2020")
    source.settle(key, "Processed")  # already gone: nothing to do

    moved = list((maildir / ".Archive.2020" / "cur").iterdir())
    assert [(p.name, p.read_bytes()) for p in moved] == [(f"{key}:2,", make_raw(1))]
    assert list(source.fetch_after(None, 0)) == []


def test_flag_adds_info_letters(maildir: Path, source: MaildirSource):
    key = deliver(maildir, make_raw(1), datetime(2020, 11, 1, tzinfo=timezone.utc))

    source.flag(key, "\\Flagged")
    source.flag(key, "\\Seen")

    assert [p.name for p in (maildir / "cur").iterdir()] == [f"{key}:2,FS"]
    assert [m.key for m in source.fetch_after(None, 0)] == [key]
    with pytest.raises(MailboxError, match="flags"):
        source.flag(key, "mailbot-done")


def test_append_stores_exact_bytes_with_flags(maildir: Path, source: MaildirSource):
    reply = b"From: shengpei@zjut.edu.cn\r\nSubject: re\r\n\r\nok\r\n"

    source.append("Sent", reply)
    source.append("Drafts", reply, flags=())

    [sent] = (maildir / ".Sent" / "cur").iterdir()
    [draft] = (maildir / ".Drafts" / "new").iterdir()
    assert (sent.read_bytes(), sent.name.endswith(":2,S")) == (reply, True)
    assert draft.read_bytes() == reply


def test_wait_for_new_wakes_on_delivery(maildir: Path, source: MaildirSource):
    deliver(maildir, make_raw(1), datetime(2020, 11, 1, tzinfo=timezone.utc))
    source.status()  # a poll has seen (numbered) message 1: old news
    timer = threading.Timer(0.3, deliver, (maildir, make_raw(2), datetime.now(timezone.utc)))
    started = time.monotonic()
    timer.start()

    assert source.wait_for_new(timeout=10) is True
    assert time.monotonic() - started < 5
    timer.join()


def test_mail_that_arrived_during_a_poll_wakes_the_next_wait_at_once(maildir: Path, source: MaildirSource):
    source.status()
    deliver(maildir, make_raw(3), datetime.now(timezone.utc))  # after the poll's scan, before the wait
    started = time.monotonic()
    assert source.wait_for_new(timeout=10) is True
    assert time.monotonic() - started < 1
    source.status()
    assert source.wait_for_new(timeout=0.3) is False  # numbered, still in new/: not news again


def test_wait_for_new_times_out_and_close_interrupts(source: MaildirSource):
    started = time.monotonic()
    assert source.wait_for_new(timeout=0.3) is False
    assert time.monotonic() - started < 2

    threading.Timer(0.2, source.close).start()
    started = time.monotonic()
    assert source.wait_for_new(timeout=30) is False
    assert time.monotonic() - started < 5


def test_bad_keys_and_folders_are_mailbox_errors(source: MaildirSource):
    with pytest.raises(MailboxError):
        source.settle("../escape", "Processed")
    with pytest.raises(MailboxError):
        source.settle("1.M1P1.host", "../outside")
    with pytest.raises(MailboxError, match="not in"):
        source.flag("missing", "\\Seen")


def test_a_message_numbered_later_but_delivered_earlier_is_handed_out_first(maildir: Path, source: MaildirSource):
    later = deliver(maildir, make_raw(1), datetime(2020, 11, 2, 10, tzinfo=SHANGHAI))
    source.status()  # numbered now
    earlier = deliver(maildir, make_raw(2), datetime(2020, 11, 2, 9, tzinfo=SHANGHAI))  # restored from a backup
    fetched = [(m.key, m.uid) for m in source.fetch_after(None, 0)]
    assert [key for key, _ in fetched] == [earlier, later]
    assert fetched[0][1] > fetched[1][1]  # by arrival, against the UIDs
