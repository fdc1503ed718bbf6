"""One writer per state directory: an exclusive ``flock`` on ``state/mailbot.lock``.

``mailbot run``, ``poll``, ``replay --no-dry-run``, ``digest --send``, ``purge``, ``decide`` and ``demo``
hold it for their whole life, taken before anything is opened, so a second instance refuses to
start and changes nothing.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailbot.errors import MailbotError


class InstanceLocked(MailbotError):
    """Another mailbot holds the state directory (``state_dir``, held by process ``holder``)."""

    def __init__(self, state_dir: Path, holder: str) -> None:
        super().__init__(f"another mailbot is running on {state_dir} (pid {holder})")
        self.state_dir, self.holder = state_dir, holder


@contextmanager
def hold_instance_lock(state_dir: Path) -> Iterator[None]:
    """Hold the state directory's lock (non-blocking); raises InstanceLocked naming the holder."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / "mailbot.lock"
    fh = open(path, "a+", encoding="ascii")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.seek(0)
            other = fh.read().strip() or "?"
            raise InstanceLocked(state_dir, other) from exc
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()
