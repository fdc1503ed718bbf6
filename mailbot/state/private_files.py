"""Durable, private file writes: a file appears whole (write, fsync, rename, fsync the
directory) with mode 0600, or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private_file(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically and durably, mode 0600; raises OSError."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
        dfd = os.open(target.parent, os.O_RDONLY)
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
