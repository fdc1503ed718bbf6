"""Private file writes: whole, 0600 whatever the umask, durable (file and directory fsynced),
and no temporary file left behind when the disk fails."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from mailbot.state import private_files
from mailbot.state.private_files import write_private_file


def test_a_file_appears_whole_with_mode_0600_even_under_a_umask_that_drops_owner_bits(tmp_path):
    old = os.umask(0o277)
    try:
        write_private_file(tmp_path / "raw" / "ab" / "x.eml", b"mail" * 50_000)
    finally:
        os.umask(old)
    target = tmp_path / "raw" / "ab" / "x.eml"
    assert target.read_bytes() == b"mail" * 50_000
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.eml"]


def test_the_file_and_then_its_directory_are_fsynced_before_it_counts_as_written(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    (tmp_path / "d").mkdir()
    monkeypatch.setattr(private_files.os, "fsync", fsync)
    write_private_file(tmp_path / "d" / "x.eml", b"data")
    assert len(synced) == 2 and synced[0].startswith(str(tmp_path / "d" / ".tmp-")) and synced[1] == "dir"


def test_a_full_disk_leaves_neither_the_file_nor_a_temporary_one(tmp_path, monkeypatch):
    def no_space(*_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "d").mkdir()
    monkeypatch.setattr(private_files.os, "write", no_space)
    with pytest.raises(OSError, match="No space left"):
        write_private_file(tmp_path / "d" / "x.eml", b"data")
    assert list((tmp_path / "d").iterdir()) == []
