"""The daemon: APScheduler polling every N seconds, IMAP IDLE for instant pickup, one instance.

- Polling: a BackgroundScheduler job every ``schedule.poll_seconds`` (coalesced, never two at
  once).  After a mailbox or database error the next poll is pushed back with exponential
  backoff up to ``schedule.backoff_max_seconds``.
- IDLE: a watcher thread holds a second connection in IDLE and, when the server reports new
  mail (or the connection drops), asks for a poll at once.  Each request is a one-shot job; it
  is skipped when a poll that started after the request already covered it, so a request made
  while a poll is running is never lost.  After (re)connecting, the watcher asks for one poll,
  covering mail that arrived before its IDLE began.
- Digest: a cron job at ``schedule.digest_time`` (local time zone) queues the staff digest.
- Health: each poll's result is recorded (``mailbot.office.health``); a job every minute mails
  staff once when no poll has gone through for ``schedule.stall_alert_minutes``.  It takes
  neither the poll's lock nor its connections: a hung poll is what it must report.
- One instance: the caller holds ``lock.hold_instance_lock`` for the state dir.  Each poll and
  the digest hold the write lock (``lock.hold_write_lock``) while they work, never while IDLE
  waits or the scheduler sleeps: staff commands run in between (see ``mailbot.state.lock``).
- SIGTERM/SIGINT: stop taking new work, finish the current message, close cleanly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from mailbot.assembly import Assembly, make_source, make_transport
from mailbot.errors import MailboxError, MailbotError, StateError
from mailbot.forms import contained
from mailbot.office import health
from mailbot.state.lock import WriteLock, hold_write_lock
from mailbot.state.store import State

POLL_JOB = "poll"
STALL_CHECK_SECONDS = 60


class Daemon:
    """Runs an :class:`Assembly` until stopped."""

    def __init__(self, parts: Assembly, log: Any, *, queue_digest: Callable[[], None] | None = None) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.log = log
        self.queue_digest = queue_digest
        self.stop_event = threading.Event()
        self.work_lock = threading.Lock()
        self.backoff = 0.0
        self.scheduler = BackgroundScheduler(timezone=self.settings.tz)
        self._idle_source = None
        self._last_poll_started = float("-inf")  # monotonic time the latest poll began
        self.started_at = datetime.now(timezone.utc)
        self._stall_state: State | None = None  # the stall check's own connection

    # -- jobs -----------------------------------------------------------------------------
    def poll(self, asked_at: float | None = None) -> None:
        """One intake cycle.  ``asked_at``: the monotonic time of an immediate request (IDLE);
        such a poll is skipped when another one started after that moment.  A stop request
        ends the cycle after the message in hand; any error backs the next poll off."""
        if self.stop_event.is_set():
            return
        with self.work_lock, hold_write_lock(self.settings.state_dir) as write_lock:
            if self.stop_event.is_set() or (asked_at is not None and self._last_poll_started >= asked_at):
                return
            self.parts.intake.ledger.catch_up()  # seats a staff command changed meanwhile
            self._last_poll_started = time.monotonic()
            try:
                report = self.parts.intake.poll_once(
                    progress=self._stop_between_messages,
                    between_batches=lambda: self._let_staff_in(write_lock))
            except _Stopping:
                self.log.info("poll_interrupted", reason="stopping; the rest waits for the next start")
                return
            except Exception as exc:  # noqa: BLE001 - the daemon goes on, whatever failed
                self.backoff = min(max(self.backoff * 2, 2.0), float(self.settings.schedule.backoff_max_seconds))
                unexpected = not isinstance(exc, (MailboxError, StateError, OSError))
                self.log.error("poll_failed", error=str(exc) or type(exc).__name__, retry_in_s=self.backoff,
                               exc_info=unexpected)
                self._record(health.record_poll_failed, str(exc) or type(exc).__name__)
                self._reschedule(self.backoff)
                return
            self._record(health.record_poll_ok)
            if self.backoff:
                self.log.info("poll_recovered")
                self.backoff = 0.0
        if report.fetched:
            self.log.info("poll_done", fetched=report.fetched, recorded=report.recorded,
                          outcomes=report.outcomes, sent=report.sent.sent)

    def _record(self, recorder: Callable[..., None], *args: Any) -> None:
        """Record a poll's result for the digest and the stall check (the database may be
        what failed: then the log has it)."""
        try:
            recorder(self.parts.state, *args)
        except Exception as exc:  # noqa: BLE001
            self.log.warning("poll_health_not_recorded", error=str(exc))

    def check_stall(self, now: datetime | None = None) -> bool:
        """Mail staff once when polling has stalled (see ``mailbot.office.health``); on its own
        connection, without the poll's lock.  Returns whether an alert went out."""
        try:
            if self._stall_state is None:
                self._stall_state = State(self.settings.state_dir)
            rules = self.parts.rules
            sent = health.check_stall(self._stall_state, self.settings, self.parts.intake.renderer,
                                      lambda: make_transport(self.settings), campaign=rules.campaign.title,
                                      rules_version=f"{rules.campaign.id}@{rules.campaign.version}",
                                      started_at=self.started_at, now=now)
        except Exception as exc:  # noqa: BLE001 - the daemon goes on; the next check tries again
            self.log.error("stall_check_failed", error=str(exc))
            return False
        if sent:
            self.log.warning("poll_stalled_alert_sent", minutes=self.settings.schedule.stall_alert_minutes)
        return sent

    def _let_staff_in(self, write_lock: WriteLock) -> None:
        """Between two fetch batches of a long poll: a waiting staff command goes first, then
        its seat changes are taken in before the next batch is decided."""
        if write_lock.let_waiting_in():
            self.log.info("staff_command_let_in", reason="a staff command waited for the write lock")
            self.parts.intake.ledger.catch_up()

    def _stop_between_messages(self, _done: int) -> None:
        if self.stop_event.is_set():
            raise _Stopping

    def digest(self) -> None:
        if self.queue_digest is None:
            return
        with self.work_lock, hold_write_lock(self.settings.state_dir):
            try:
                self.queue_digest()
            except MailbotError as exc:
                self.log.error("digest_failed", error=str(exc))

    def _reschedule(self, delay: float) -> None:
        try:
            self.scheduler.modify_job(POLL_JOB, next_run_time=datetime.now(self.settings.tz) + timedelta(seconds=delay))
        except Exception:  # noqa: BLE001 - scheduler already shut down
            pass

    def poll_now(self, *, even_in_backoff: bool = False) -> None:
        """Ask for a poll as soon as possible (a one-shot job; never lost to a running poll)."""
        if self.stop_event.is_set() or (self.backoff and not even_in_backoff):
            return
        try:
            self.scheduler.add_job(self.poll, kwargs={"asked_at": time.monotonic()},
                                   misfire_grace_time=None)
        except Exception:  # noqa: BLE001 - scheduler already shut down
            pass

    # -- IDLE -----------------------------------------------------------------------------
    def _idle_loop(self) -> None:
        """Watch the folder on a second connection and ask for a poll when mail may have come.

        Before asking, the connection is (re)made and the folder selected without idling, so
        the poll starts after the point from which the next IDLE reports new mail: nothing
        falls in between, not at start, not after a dropped connection."""
        delay = 1.0
        failing = False
        wait = min(25 * 60, self.settings.schedule.poll_seconds * 5)
        while not self.stop_event.is_set():
            try:
                src = self._idle_source
                if src is None:
                    src = self._idle_source = make_source(self.settings)
                    news = True  # mail may have come before this connection watched the folder
                else:
                    news = src.wait_for_new(timeout=wait)
                if news and not self.stop_event.is_set():
                    src.wait_for_new(timeout=0)  # reconnect and select, no IDLE
                    self.poll_now(even_in_backoff=failing)  # the server is back: don't wait out the backoff
                if failing:
                    self.log.info("idle_recovered")
                failing = False
                delay = 1.0
            except MailboxError as exc:
                if not failing:
                    self.poll_now()  # the poll reports it to staff (and may still get through)
                failing = True
                self.log.warning("idle_failed", error=str(exc), retry_in_s=delay)
                self._close_idle()
                self.stop_event.wait(delay)
                delay = min(delay * 2, float(self.settings.schedule.backoff_max_seconds))

    def _close_idle(self) -> None:
        src, self._idle_source = self._idle_source, None
        if src is not None:
            try:
                src.close()
            except Exception:  # noqa: BLE001
                pass

    # -- lifecycle ------------------------------------------------------------------------
    def schedule_jobs(self) -> None:
        """Add the jobs: poll (now, then every ``poll_seconds``), the digest at ``digest_time``,
        and, with staff addresses and ``stall_alert_minutes``, the stall check every minute."""
        hour, minute = (int(x) for x in self.settings.schedule.digest_time.split(":"))
        self.scheduler.add_job(self.poll, "interval", seconds=self.settings.schedule.poll_seconds,
                               id=POLL_JOB, max_instances=1, coalesce=True,
                               next_run_time=datetime.now(self.settings.tz))
        self.scheduler.add_job(self.digest, "cron", hour=hour, minute=minute, id="digest",
                               max_instances=1, coalesce=True)
        if self.settings.schedule.stall_alert_minutes and self.settings.staff_addresses:
            self.scheduler.add_job(self.check_stall, "interval", seconds=STALL_CHECK_SECONDS, id="stall_check",
                                   max_instances=1, coalesce=True)

    def run(self) -> None:
        """Run until SIGTERM/SIGINT.  The caller holds the daemon lock (see mailbot.state.lock)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        if not self.settings.trust.authserv_ids:
            self.log.warning("sender_trust_not_configured", hint="set trust.authserv_ids: until then replies "
                             "go to whatever From address a mail carries, forged or not")
        self.schedule_jobs()
        idle_thread = None
        use_idle = self.settings.mailbox.kind == "maildir" or self.settings.imap.idle
        self.log.info("daemon_started", pid=os.getpid(), mailbox=self.parts.source.name,
                      poll_seconds=self.settings.schedule.poll_seconds, idle=use_idle)
        try:
            contained.pool_of(self.settings.limits).warm()  # the first mail waits for no worker start
            self.scheduler.start()
            if use_idle:
                idle_thread = threading.Thread(target=self._idle_loop, name="idle", daemon=True)
                idle_thread.start()
            self.stop_event.wait()
        finally:
            self.log.info("daemon_stopping")
            self.scheduler.shutdown(wait=True)
            self._close_idle()
            if self._stall_state is not None:
                self._stall_state.close()
            if idle_thread is not None:
                idle_thread.join(timeout=5)
            self.parts.close()
            contained.close_all()
            self.log.info("daemon_stopped")


class _Stopping(Exception):
    """Raised between two messages to end a cycle when the daemon is asked to stop."""
