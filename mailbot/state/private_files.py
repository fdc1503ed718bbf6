"""Durable, private file writes: a file appears whole (write, fsync, rename, fsync the
directory) with mode 0600, or not at all."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private_file(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically and durably, mode 0600; raises OSError.

    Plain ``os`` calls on one descriptor (every raw mail is written here, before its record
    commits): a fresh ``.tmp-`` name opened exclusively, its mode set before the data is
    written, then fsync, rename and fsync of the directory."""
    parent = target.parent
    if not os.path.isdir(parent):
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = os.path.join(parent, f".tmp-{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        dfd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
