"""Who writes the state directory, and when: a daemon lock and a short write lock (``flock``).

- **Daemon lock** (``state/mailbot.lock``, :func:`hold_instance_lock`): held for the whole life
  of ``mailbot run``, ``poll`` and ``demo``, taken before anything is opened.  Two daemons on one
  state directory would fetch, record and answer the same mail; the second refuses to start and
  changes nothing.
- **Write lock** (``state/write.lock``, :func:`hold_write_lock`): held around each *unit of
  work* that changes state or sends mail: a poll cycle (fetch, record, send, settle), the daily
  digest, and each state-changing staff command (``decide …``, ``rosters send --no-dry-run``,
  ``digest --send``, ``replay --no-dry-run``, ``purge``).  The daemon takes it only while it
  works, never while IDLE waits for the server or the scheduler sleeps, so staff run their
  commands while the service runs.  A staff command waits for it at most
  ``schedule.staff_wait_seconds``, saying that it waits and leaving a mark
  (``write.lock.wanted.PID``) while it does; a long poll looks for such a mark after each
  fetch batch (recorded and sent, a consistent point) and hands the lock over
  (:meth:`WriteLock.let_waiting_in`), so a backlog never keeps staff out for the whole poll.
  The daemon waits as long as it takes (a staff command's unit is one decision and its mail).

Why SQLite's own locking is not enough.  Every write transaction is ``BEGIN IMMEDIATE``, so the
ledger's reads and writes (seat counts, waiting lists, promotions) and the event chain's head
(read inside the transaction) are consistent whichever process commits first.  But a unit of
work is several transactions with mail in between, and these would interleave badly:

- The outbox sends in steps: select the queued rows, mark a batch of them ``sending`` (commit),
  hand them to SMTP, mark them ``sent`` (commit).  Two processes sending at once could both select the same
  queued row and deliver it twice.  Under the write lock one process sends at a time, and each
  selects the queue afresh, so every mail leaves once, whichever process queued it.
- At the first cycle the daemon turns rows left ``sending`` into ``unknown`` (a crash's
  remains); a row another process had in flight would be misfiled.  Under the lock none is.
- The daemon keeps the seats per program in memory (the rules' plus staff ``seats`` decisions).
  It takes in other processes' decisions at the start of each unit (``SeatLedger.catch_up``,
  cheap: ``PRAGMA data_version`` says whether anyone else committed).
- Per-sender and hourly reply counts read the outbox inside the unit that adds to it.

The stall check is the one writer outside the lock: it must report a poll that hangs holding
it.  It only inserts its own alert rows, already ``sending``, and sends those itself, never the
queue, so it cannot send anything twice.  Readers (digest preview, exports, ``history``,
``verify``, the audit views, ``backup``) take no lock: WAL gives each a consistent snapshot.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from mailbot.errors import MailbotError

WRITE_LOCK = "write.lock"
_RETRY_SECONDS = 0.1


class InstanceLocked(MailbotError):
    """Another mailbot holds the state directory (``state_dir``, held by process ``holder``)."""

    def __init__(self, state_dir: Path, holder: str) -> None:
        super().__init__(f"another mailbot is running on {state_dir} (pid {holder})")
        self.state_dir, self.holder = state_dir, holder


class WriteLockBusy(MailbotError):
    """The write lock stayed taken for the whole bounded wait (``waited`` seconds)."""

    def __init__(self, state_dir: Path, waited: float) -> None:
        super().__init__(f"{state_dir} stayed busy for {waited:g} s")
        self.state_dir, self.waited = state_dir, waited


def _open(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return open(path, "a+", encoding="ascii")


@contextmanager
def hold_instance_lock(state_dir: Path) -> Iterator[None]:
    """Hold the daemon lock (non-blocking); raises InstanceLocked naming the holder."""
    fh = _open(state_dir / "mailbot.lock")
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


class WriteLock:
    """The write lock while held by one unit of work (what :func:`hold_write_lock` yields)."""

    def __init__(self, fh: IO[str], state_dir: Path) -> None:
        self._fh, self._state_dir = fh, state_dir

    def let_waiting_in(self) -> bool:
        """Between two parts of a long unit (the daemon's fetch batches): when a staff command
        waits for the lock, hand it over, wait until that command is done and take the lock
        back.  True when someone else held it meanwhile (their changes must be taken in)."""
        if not _someone_waits(self._state_dir):
            return False
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        # The waiter retries every _RETRY_SECONDS and clears its mark once it holds the lock.
        give_up = time.monotonic() + 10 * _RETRY_SECONDS
        while _someone_waits(self._state_dir) and time.monotonic() < give_up:
            time.sleep(_RETRY_SECONDS / 2)
        fcntl.flock(self._fh, fcntl.LOCK_EX)  # blocks while the staff command works
        return True


@contextmanager
def hold_write_lock(state_dir: Path, *, wait: float | None = None,
                    on_wait: Callable[[], None] | None = None) -> Iterator[WriteLock]:
    """Hold the write lock for one unit of work.

    ``wait``: None waits until it is free (the daemon); a number waits at most that many
    seconds, then raises :class:`WriteLockBusy` (staff commands), marking itself as waiting
    meanwhile so a long poll lets it in between two fetch batches (:meth:`WriteLock.let_waiting_in`).
    ``on_wait`` is called once, when the lock is taken by someone else at the first try.  Each
    call opens the file anew, so two threads of one process exclude each other too."""
    fh = _open(state_dir / WRITE_LOCK)
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            _wait_for(fh, state_dir, wait)
        try:
            yield WriteLock(fh, state_dir)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


def _waiting_mark(state_dir: Path) -> Path:
    return state_dir / f"{WRITE_LOCK}.wanted.{os.getpid()}"


def _someone_waits(state_dir: Path) -> bool:
    """A live process has marked itself waiting (a killed waiter's mark is removed here)."""
    for mark in state_dir.glob(f"{WRITE_LOCK}.wanted.*"):
        try:
            os.kill(int(mark.name.rsplit(".", 1)[1]), 0)
            return True
        except (ValueError, ProcessLookupError):
            mark.unlink(missing_ok=True)
        except PermissionError:
            return True
    return False


def _wait_for(fh: IO[str], state_dir: Path, wait: float | None) -> None:
    """Block until the lock is ours; with ``wait``, give up after that many seconds."""
    if wait is None:
        fcntl.flock(fh, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + wait
    mark = _waiting_mark(state_dir)
    mark.touch(mode=0o600)
    try:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    raise WriteLockBusy(state_dir, wait) from exc
                time.sleep(_RETRY_SECONDS)
    finally:
        mark.unlink(missing_ok=True)
