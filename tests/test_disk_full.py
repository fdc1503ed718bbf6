"""A really full disk (a small tmpfs holding the state directory): the poll fails without
recording, answering or moving anything, and once space is back the mail is processed once."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, shanghai
from mail_factory import make_mail
from mailbot.errors import StateError

pytestmark = pytest.mark.servers


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 3 MiB tmpfs mounted for the test (needs root, as the test command has)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); the simulated "
                    "ENOSPC tests in test_faults_smtp_db.py still cover the code path")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Write zeros until the filesystem is full; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_fails_the_poll_and_the_mail_is_processed_once_when_space_returns(
        small_disk, dovecot, imap_account, smtp_sink) -> None:
    settings = imap_settings(small_disk, imap_account, smtp_sink)
    parts = open_intake(settings, io.StringIO())
    try:
        big = make_annex3_xlsx([nominee(n) for n in range(1, 8)])
        raw = make_mail(attachments=[("报名表.xlsx", big), ("扫描件.pdf", b"%PDF-1.4\n" + os.urandom(400_000))])
        dovecot.append(raw, shanghai(2020, 11, 2, 9, 0), user=imap_account.user)
        filler = _fill(small_disk)

        with pytest.raises(StateError):
            parts.intake.poll_once()
        assert smtp_sink.attempts == 0
        assert [uid for uid, _, _ in dovecot.list_folder("INBOX", user=imap_account.user)] != []

        filler.unlink()
        report = parts.intake.poll_once()
        assert report.outcomes == {"accepted": 1}
        assert len(smtp_sink.wait_for(1)) == 1
        assert dovecot.list_folder("INBOX", user=imap_account.user) == []
        assert list(parts.state.query("SELECT count(*) AS n FROM messages")) == [{"n": 1}]
        assert next(parts.state.query("PRAGMA integrity_check"))["integrity_check"] == "ok"
        assert parts.state.verify_event_chain()[0]
    finally:
        parts.close()
