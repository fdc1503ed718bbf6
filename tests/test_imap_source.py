"""ImapSource against a real Dovecot: exact bytes and arrival times, no \\Seen, UID cursors,
UIDVALIDITY changes, moving, IDLE and reconnecting."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from mailbot.errors import ConfigError, MailboxError
from mailbot.mail.imap import ImapSource, parse_fetch
from mailbot.mail.source import FetchedMessage, ImapSettings, MailSource
from servers import DovecotServer, ImapAccount

pytestmark = pytest.mark.servers

SHANGHAI = ZoneInfo("Asia/Shanghai")


def make_raw(n: int, body: str = "hello") -> bytes:
    return (
        f"From: Sender {n} <sender{n}@example.edu.cn>\r\n"
        f"To: shengpei@zjut.edu.cn\r\n"
        f"Subject: =?utf-8?b?5oql5ZCN?= {n}\r\n"
        f"Message-ID: <msg{n}@example.edu.cn>\r\n"
        f"Date: Fri, 30 Oct 2020 09:00:00 +0800\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body} {n}\r\n"
    ).encode()


def settings_for(account: ImapAccount, **extra: object) -> ImapSettings:
    return ImapSettings(**{"host": account.host, "port": account.port, "tls": "plain", "user": account.user,
                           "password": account.password, "timeout": 10, **extra})


@pytest.fixture
def source(imap_account: ImapAccount):
    src = ImapSource(settings_for(imap_account))
    yield src
    src.close()


def test_source_satisfies_the_protocol_and_names_the_mailbox(source: ImapSource, imap_account: ImapAccount):
    assert isinstance(source, MailSource)
    assert source.name == f"imap://{imap_account.user}@127.0.0.1:{imap_account.port}/INBOX"


def test_fetch_returns_exact_bytes_and_arrival_times_in_uid_order(
        dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    shanghai_time = datetime(2020, 11, 9, 23, 59, 59, tzinfo=SHANGHAI)
    utc_time = datetime(2020, 11, 9, 16, 0, 0, tzinfo=timezone.utc)
    raws = [make_raw(1), make_raw(2, body="第二封")]
    uids = [dovecot.append(raws[0], shanghai_time, user=imap_account.user),
            dovecot.append(raws[1], utc_time, user=imap_account.user)]
    validity, uidnext = source.status()

    fetched = list(source.fetch_after(None, 0))

    assert fetched == [
        FetchedMessage(source=source.name, uidvalidity=validity, uid=uids[0], key=str(uids[0]),
                       arrived_at=shanghai_time, raw=raws[0]),
        FetchedMessage(source=source.name, uidvalidity=validity, uid=uids[1], key=str(uids[1]),
                       arrived_at=utc_time, raw=raws[1]),
    ]
    assert uidnext == uids[1] + 1
    assert all(m.arrived_at.utcoffset() is not None for m in fetched)
    # 23:59:59 Beijing on the deadline day is still before the deadline, in any zone.
    assert fetched[0].arrived_at.astimezone(SHANGHAI).date().isoformat() == "2020-11-09"


def test_fetch_never_sets_seen(dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    dovecot.append(make_raw(1), datetime.now(timezone.utc), user=imap_account.user)

    list(source.fetch_after(None, 0))

    assert [flags for _, _, flags in dovecot.list_folder(user=imap_account.user)] == [()]


def test_fetch_after_returns_only_new_mail(dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    now = datetime.now(timezone.utc)
    first = dovecot.append(make_raw(1), now, user=imap_account.user)
    validity, _ = source.status()

    assert list(source.fetch_after(validity, first)) == []  # "n:*" must not return the last one
    second = dovecot.append(make_raw(2), now, user=imap_account.user)
    third = dovecot.append(make_raw(3), now, user=imap_account.user)
    assert [m.uid for m in source.fetch_after(validity, first)] == [second, third]
    assert source.status() == (validity, third + 1)


def test_fetch_streams_in_batches(dovecot: DovecotServer, imap_account: ImapAccount):
    now = datetime.now(timezone.utc)
    uids = [dovecot.append(make_raw(n), now, user=imap_account.user) for n in range(7)]
    with ImapSource(settings_for(imap_account, fetch_batch=3)) as src:
        stream = src.fetch_after(None, 0)
        first = next(stream)
        src.settle(first.key, "Processed")  # commands may run between batches
        assert [first.uid] + [m.uid for m in stream] == uids


def test_changed_uidvalidity_refetches_everything(
        dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    now = datetime.now(timezone.utc)
    uids = [dovecot.append(make_raw(n), now, user=imap_account.user) for n in range(3)]
    old_validity, _ = source.status()
    source.close()

    dovecot.set_uidvalidity("INBOX", old_validity + 1000, user=imap_account.user)
    with ImapSource(settings_for(imap_account)) as fresh:
        assert fresh.status()[0] == old_validity + 1000
        again = list(fresh.fetch_after(old_validity, uids[-1]))

    assert [(m.uid, m.uidvalidity) for m in again] == [(u, old_validity + 1000) for u in uids]


def test_status_is_one_round_trip(dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    source.status()  # connect, log in, select
    client = source._mb.client
    sent: list[bytes] = []
    original_send = client.send
    client.send = lambda data: (sent.append(data), original_send(data))[1]

    for _ in range(3):
        source.status()

    assert [line.split(b" ", 2)[1] for line in sent] == [b"STATUS"] * 3


def test_settle_moves_into_the_folder_creating_it(
        dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    now = datetime.now(timezone.utc)
    raw = make_raw(1)
    uid = dovecot.append(raw, now, user=imap_account.user)
    other = dovecot.append(make_raw(2), now, user=imap_account.user)
    assert "Duplicates" not in dovecot.folders(user=imap_account.user)

    source.settle(str(uid), "Processed")
    source.settle(str(other), "Duplicates")

    assert [r for _, r, _ in dovecot.list_folder("Processed", user=imap_account.user)] == [raw]
    assert [r for _, r, _ in dovecot.list_folder("Duplicates", user=imap_account.user)] == [make_raw(2)]
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []


def test_settle_recreates_a_folder_deleted_during_the_session(
        dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    uid = dovecot.append(make_raw(1), datetime.now(timezone.utc), user=imap_account.user)
    source.status()
    source.append("Failed", make_raw(2))  # the folder exists ...
    source._mb.client.delete('"Failed"')  # ... until someone removes it under our feet

    source.settle(str(uid), "Failed")

    assert [r for _, r, _ in dovecot.list_folder("Failed", user=imap_account.user)] == [make_raw(1)]


def test_settle_to_a_nested_new_folder_and_unicode_name(
        dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    uid = dovecot.append(make_raw(1), datetime.now(timezone.utc), user=imap_account.user)

    source.settle(str(uid), "已处理")

    assert len(dovecot.list_folder("&XfJZBHQG-", user=imap_account.user)) == 1


def test_flag_adds_a_flag_without_expunging(dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    uid = dovecot.append(make_raw(1), datetime.now(timezone.utc), user=imap_account.user)

    source.flag(str(uid), "\\Flagged")
    source.flag(str(uid), "mailbot-done")

    assert [flags for _, _, flags in dovecot.list_folder(user=imap_account.user)] == [
        ("\\Flagged", "mailbot-done")]


def test_append_stores_a_seen_copy(dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    reply = make_raw(9, body="回复")

    source.append("Sent", reply)
    source.append("Outbox Copies", reply, flags=())

    assert [(raw, flags) for _, raw, flags in dovecot.list_folder("Sent", user=imap_account.user)] == [
        (reply, ("\\Seen",))]
    assert [(raw, flags) for _, raw, flags in dovecot.list_folder("Outbox Copies", user=imap_account.user)] == [
        (reply, ())]


def test_bad_key_and_missing_message_are_mailbox_errors(imap_account: ImapAccount, source: ImapSource):
    with pytest.raises(MailboxError):
        source.settle("not-a-uid", "Processed")
    source.settle("999", "Processed")  # already gone: moving nothing is not an error


def test_idle_wakes_when_another_connection_appends(
        dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    source.status()
    timer = threading.Timer(0.5, dovecot.append, (make_raw(1), datetime.now(timezone.utc)),
                            {"user": imap_account.user})
    started = time.monotonic()
    timer.start()
    try:
        woke = source.wait_for_new(timeout=20)
    finally:
        timer.join()
    elapsed = time.monotonic() - started

    assert woke is True
    assert elapsed < 5


def test_idle_times_out_quietly(source: ImapSource):
    started = time.monotonic()

    assert source.wait_for_new(timeout=0.5) is False
    assert time.monotonic() - started < 2.5
    assert source.status()[1] == 1  # the connection is still usable after DONE


def test_close_interrupts_idle(source: ImapSource):
    source.status()
    threading.Timer(0.3, source.close).start()
    started = time.monotonic()

    assert source.wait_for_new(timeout=30) is False
    assert time.monotonic() - started < 5
    with pytest.raises(MailboxError, match="closed"):
        source.status()


def test_reconnects_after_server_restart(dovecot: DovecotServer, imap_account: ImapAccount, source: ImapSource):
    uid = dovecot.append(make_raw(1), datetime.now(timezone.utc), user=imap_account.user)
    before = source.status()
    old_connection = source._mb

    dovecot.restart()  # cuts every client connection

    assert source.status() == before
    assert source._mb is not old_connection
    assert [m.uid for m in source.fetch_after(None, 0)] == [uid]


def test_idle_reports_a_lost_connection_and_recovers(dovecot: DovecotServer, imap_account: ImapAccount):
    source = ImapSource(settings_for(imap_account, timeout=2))
    source.status()
    threading.Timer(0.3, dovecot.restart).start()

    assert source.wait_for_new(timeout=20) is True  # "something happened: poll"
    time.sleep(0.1)
    for _ in range(50):  # the restart may still be in progress
        try:
            assert source.status()[1] == 1
            break
        except MailboxError:
            time.sleep(0.2)
    else:
        pytest.fail("no reconnect after restart")
    source.close()


def test_wrong_password_is_a_mailbox_error_without_the_password(imap_account: ImapAccount):
    bad = ImapSettings(host=imap_account.host, port=imap_account.port, tls="plain",
                       user=imap_account.user, password="s3cret-Wrong", timeout=5)
    with ImapSource(bad) as src, pytest.raises(MailboxError) as info:
        src.status()
    assert "s3cret-Wrong" not in str(info.value)
    assert "s3cret-Wrong" not in repr(bad)


def test_unreachable_server_is_a_mailbox_error():
    from servers import free_port

    settings = ImapSettings(host="127.0.0.1", port=free_port(), tls="plain", user="u", password="p", timeout=2)
    with ImapSource(settings) as src, pytest.raises(MailboxError, match="cannot connect"):
        src.status()


def test_plain_text_is_refused_for_remote_hosts():
    with pytest.raises(ConfigError, match="plain"):
        ImapSettings(host="imap.example.com", port=143, tls="plain", user="u", password="p")
    assert ImapSettings(host="imap.example.com", port=143, tls="plain", user="u", password="p",
                        allow_plain_remote=True).tls == "plain"
    assert ImapSettings(host="::1", port=143, tls="plain", user="u", password="p").host == "::1"
    assert ImapSettings(host="localhost", port=143, tls="plain", user="u", password="p").host == "localhost"


LOOPBACK_HOSTS = ["localhost", "LOCALHOST", "localhost.localdomain", "127.0.0.1", "127.8.9.10", "::1", "[::1]"]
REMOTE_HOSTS = ["imap.example.com", "10.0.0.1", "[2001:db8::1]", "[::1", "localhost.example.com"]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_plain_text_is_allowed_on_every_loopback_spelling_by_both_settings(host):
    from mailbot.config import ImapConfig, SmtpConfig

    assert ImapSettings(host=host, port=143, tls="plain", user="u", password="p").host == host
    assert ImapConfig(host=host, tls="plain").host == host
    assert SmtpConfig(host=host, tls="plain").host == host


@pytest.mark.parametrize("host", REMOTE_HOSTS)
def test_plain_text_is_refused_on_every_remote_host_by_both_settings(host):
    from pydantic import ValidationError

    from mailbot.config import SmtpConfig

    with pytest.raises(ConfigError, match="plain"):
        ImapSettings(host=host, port=143, tls="plain", user="u", password="p")
    with pytest.raises(ValidationError, match="only allowed for loopback hosts"):
        SmtpConfig(host=host, tls="plain")


def test_parse_fetch_handles_trailers_and_unsolicited_flags():
    data = [
        b"3 (FLAGS (\\Seen))",
        (b'4 (UID 10 BODY[] {5}', b"hello"),
        b' INTERNALDATE "30-Oct-2020 09:00:00 +0800")',
        (b'5 (UID 11 INTERNALDATE " 1-Nov-2020 00:00:00 -0130" BODY[] {2}', b"hi"),
        b")",
    ]
    assert parse_fetch(data) == [
        (10, datetime(2020, 10, 30, 1, 0, tzinfo=timezone.utc), b"hello"),
        (11, datetime(2020, 11, 1, 1, 30, tzinfo=timezone.utc), b"hi"),
    ]
    assert parse_fetch(data)[1][1].utcoffset() == -timedelta(hours=1, minutes=30)
