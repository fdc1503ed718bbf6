"""Untrusted bytes are read in worker processes under hard limits, never in the daemon.

A native reader can take the whole process down where no ``except`` reaches: python-calamine
asked for a 512 GiB sheet aborts in Rust (SIGABRT), and the kernel's OOM killer ends a process
that builds too much.  So every read of attachment bytes by a native or heavy reader (calamine,
xlrd, python-docx, openpyxl loading the sender's workbook, TNEF and zip listing in the MIME walk)
runs here, in a small warm pool of worker processes, each under:

* ``RLIMIT_AS`` (``Limits.reader_memory_bytes``): an allocation past it fails inside the worker;
* ``RLIMIT_CPU`` (``Limits.reader_cpu_seconds`` per call: the soft limit is moved to the
  worker's used CPU plus the budget before each call, SIGXCPU ends it);
* a wall time, kept by the parent (the call's timeout: the worker is SIGKILLed past it);
* a result size (``Limits.reader_max_result_bytes``): the worker pickles its own result and
  refuses a bigger one; the parent refuses a longer frame by its length before reading it.

A worker that dies (abort, kill, a limit) turns that call into :class:`WorkerFailed`; the caller
makes the attachment "unreadable: too large or damaged" and goes on, and a successor worker
starts at once.  The limits are set with ``resource.prlimit(0, ...)``, i.e. the ``prlimit64``
system call, which the systemd unit's ``SystemCallFilter=~@resources`` allows (``setrlimit``
would be killed with SIGSYS there).

A worker otherwise lives long, since each start costs ~0.4 s of CPU (interpreter and imports):
it is retired when its resident memory grew by ``RSS_GROWTH_BYTES`` since it was ready (what big
reads leave behind), or after ``CALLS_PER_WORKER`` requests.

A mail is ONE request (:func:`walk_and_judge`): the worker walks the raw mail and reads and
checks every form found, sending the walk's result and then each form's verdict as its own
frame (each under the CPU budget and the result bound).  So a form's bytes never travel back to
a worker, and when a worker dies on one form, the verdicts before it are in hand: that form
alone is ``reader_failed`` and the forms after it are read one request each in the successor.

What this is not: a sandbox against code execution.  A worker runs as the daemon's user with
its rights (the systemd unit confines both); the boundary is against crashes and resource
exhaustion, which is what the readers' failures are.

Why hand-written rather than ``concurrent.futures.ProcessPoolExecutor``: the executor marks the
whole pool broken when one worker dies (every pending call fails with ``BrokenProcessPool``),
cannot stop a call that passed its wall time (``Future.cancel`` does nothing once it runs), and
unpickles any result whatever its size; and ``multiprocessing``'s forkserver and spawn start
methods re-import the parent's ``__main__`` in every worker.  Here a worker is a plain
``python -m mailbot.forms.contained`` subprocess (a clean interpreter that imports the readers
once, then stays warm); one call is one length-prefixed pickled frame of the function and its
arguments on its stdin and one bounded frame back on its stdout (a stream: one per item, the
last one marked as such, or an end frame), read with ``select`` against the deadline.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from mailbot.errors import MailbotError, NotAnnex3, UnreadableForm
from mailbot.forms.model import Finding, FormRow, FormVerdict, Outcome
from mailbot.limits import Limits
from mailbot.rules import CampaignRules

_PRELOAD = ["mailbot.forms.checks", "mailbot.forms.reader", "mailbot.mail.walk"]
"""Imported as a worker starts: what a mail's walk and its forms' reads need.  The correction
workbook (openpyxl, and the templates' module for ``defang``: ~0.3 s of CPU) is imported by the
first correction copy a worker makes, once in its life."""
RSS_GROWTH_BYTES = 64 * 1024 * 1024
"""A worker whose resident memory after a call exceeds what it had when ready (imports done, no
read yet) by more than this is retired: what a big read leaves behind (a fragmented heap,
caches) does not pile up.  Read from ``/proc/<pid>/statm`` by the parent after each call (a few
µs).  The benchmark's mail grows a worker by ~5 KB a mail, so a worker lives for thousands of
mails and its successor's start (~0.4 s CPU: interpreter and imports) is spread over them."""
CALLS_PER_WORKER = 50_000
"""A backstop for slow leaks that resident memory does not show (descriptors, the kernel's
side): a worker is retired after this many calls whatever its memory."""
_PAGE = os.sysconf("SC_PAGE_SIZE")
READ_AHEAD = 64 * 1024
"""The least the parent asks a worker's pipe for in one read (a pipe's default capacity)."""


class WorkerFailed(MailbotError):
    """A contained call did not return a result: the worker died, passed a limit or its time."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason  # died | time_limit | result_too_large
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class WorkerLimits:
    """What one worker may use."""

    memory_bytes: int
    cpu_seconds: int
    max_result_bytes: int
    workers: int = 1


# --------------------------------------------------------------------------- the worker side

_HEADER = struct.Struct("<Q")
_PING = pickle.dumps((int, (), {}, False), protocol=pickle.HIGHEST_PROTOCOL)


def _set_limit(which: int, soft: int, hard: int) -> None:
    resource.prlimit(0, which, (soft, hard))  # the prlimit64 syscall: allowed under the unit


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _read_exact(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError
    return data


class _Refused(Exception):
    """A result past the worker's result bound (the frame sent instead is ``too_large``)."""


def _frame(status: str, value: Any, limits: WorkerLimits) -> bytes:
    """One pickled answer; :class:`_Refused` past the result bound."""
    reply = pickle.dumps((status, value), protocol=pickle.HIGHEST_PROTOCOL)
    if len(reply) > limits.max_result_bytes:
        raise _Refused(f"result of {len(reply)} bytes")
    return reply


def _answers(request: bytes, limits: WorkerLimits) -> Iterator[bytes]:
    """The frames answering one request: ``ok`` and the result; or, for a stream, one ``item``
    frame per item the function yields (each read under its own CPU budget) and ``end``, or
    ``last`` for an item it yields as :class:`Last` (no ``end`` frame after it); or ``raised``,
    ``died``, ``too_large``, which end the request."""
    try:
        fn, args, kwargs, stream = pickle.loads(request)
        del request  # the arguments may be a 40 MB message: keep one copy, not two
        if not stream:
            yield _frame("ok", fn(*args, **kwargs), limits)
            return
        items = iter(fn(*args, **kwargs))
        del args, kwargs
        # the class the streamed function yields: a worker runs this file as __main__, another module
        from mailbot.forms.contained import Last
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            last = isinstance(item, Last)
            frame = _frame("last", item.value, limits) if last else _frame("item", item, limits)
            del item
            yield frame
            if last:
                return
            _set_limit(resource.RLIMIT_CPU, int(_cpu_used()) + limits.cpu_seconds, resource.RLIM_INFINITY)
        yield pickle.dumps(("end", None))
    except _Refused as refused:
        yield pickle.dumps(("too_large", str(refused)))
    except MemoryError:
        yield pickle.dumps(("died", "out of memory (MemoryError)"))
    except BaseException as exc:  # noqa: BLE001 - the parent re-raises it as it came
        try:
            yield pickle.dumps(("raised", exc))
        except Exception:  # noqa: BLE001 - an unpicklable exception
            yield pickle.dumps(("raised", RuntimeError(f"{type(exc).__name__}: {exc}")))


def _serve(limits: WorkerLimits) -> None:
    """The worker's loop: read a framed pickled call from stdin, answer on the original stdout
    (fd 1 is pointed at stderr first, so a library printing cannot break the framing)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a worker stops
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    _set_limit(resource.RLIMIT_CORE, 0, 0)
    _set_limit(resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes)
    for name in _PRELOAD:
        __import__(name)
    while True:
        try:
            (size,) = _HEADER.unpack(_read_exact(inp, _HEADER.size))
            request = _read_exact(inp, size)
        except (EOFError, OSError):
            return
        _set_limit(resource.RLIMIT_CPU, int(_cpu_used()) + limits.cpu_seconds, resource.RLIM_INFINITY)
        answers = _answers(request, limits)
        del request
        for reply in answers:
            try:
                out.write(_HEADER.pack(len(reply)) + reply)
                out.flush()
            except (OSError, ValueError):
                return


# --------------------------------------------------------------------------- the parent side

class _Worker:
    """One ``python -m mailbot.forms.contained`` process and its two pipes."""

    def __init__(self, limits: WorkerLimits) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-m", "mailbot.forms.contained", str(limits.memory_bytes),
             str(limits.cpu_seconds), str(limits.max_result_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, close_fds=True, start_new_session=True)
        self.calls = 0
        self.ready_rss: int | None = None  # resident bytes once its imports are done
        self._ahead = bytearray()  # read from its stdout past the last frame taken
        self._statm: int | None = None

    def rss(self) -> int | None:
        """Its resident memory now (``None`` when it is gone); ``/proc/<pid>/statm`` is kept
        open and read again from its start each time."""
        try:
            if self._statm is None:
                self._statm = os.open(f"/proc/{self.process.pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
            return int(os.pread(self._statm, 256, 0).split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            return None

    def worn(self) -> bool:
        """True when it should retire after this call: past its call count, or its memory grew
        past ``RSS_GROWTH_BYTES`` since it was ready."""
        if self.calls >= CALLS_PER_WORKER:
            return True
        rss = self.rss()
        return rss is None or self.ready_rss is None or rss - self.ready_rss > RSS_GROWTH_BYTES

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Close its stdin (an idle worker exits at once); kill it if it does not."""
        if self._statm is not None:
            os.close(self._statm)
            self._statm = None
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self.process.wait(0.5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def exit_text(self) -> str:
        try:
            code = self.process.wait(2)
        except subprocess.TimeoutExpired:
            return "worker stopped answering"
        if code < 0:
            try:
                return f"worker killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"worker killed by signal {-code}"
        return f"worker exited with status {code}"

    def exchange(self, request: bytes | None, timeout: float, max_reply: int) -> bytes:
        """Send one frame (``None``: none, the next frame of a stream), read one frame back
        within ``timeout`` seconds (EOFError: died, TimeoutError: too slow, ValueError: reply
        too large)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout  # the whole exchange, the request's write included
        if request is not None:
            try:
                self.process.stdin.write(_HEADER.pack(len(request)) + request)
                self.process.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise EOFError from exc
        fd = self.process.stdout.fileno()
        head = self._take(fd, _HEADER.size, deadline)
        (size,) = _HEADER.unpack(head)
        if size > max_reply:
            raise ValueError(f"reply of {size} bytes")
        return self._take(fd, size, deadline)

    def _take(self, fd: int, n: int, deadline: float) -> bytes:
        """The next ``n`` bytes the worker wrote.  A read asks for at least ``READ_AHEAD`` bytes:
        a frame's length and its pickle (and a stream's next frame, when the worker wrote it
        already) come in one ``select`` and one ``read`` instead of two each; what is read past
        ``n`` waits in ``self._ahead`` for the next frame."""
        ahead = self._ahead
        if len(ahead) >= n:
            taken = bytes(memoryview(ahead)[:n])
            del ahead[:n]
            return taken
        chunks = [bytes(ahead)]
        need = n - len(ahead)
        ahead.clear()
        while need:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(max(need, READ_AHEAD), 1 << 20))
            if not chunk:
                raise EOFError
            if len(chunk) > need:
                ahead += memoryview(chunk)[need:]
                chunk = chunk[:need]
            chunks.append(chunk)
            need -= len(chunk)
        return b"".join(chunks)


@dataclass(frozen=True)
class Last:
    """The last item of a streamed function, yielded wrapped so: it goes back in one frame with
    the stream's end (a frame, a write and a wake-up fewer per request)."""

    value: Any


def _raise_for(status: str, value: Any) -> NoReturn:
    """A worker's answer that is not a result: the function's own exception, or the failure."""
    if status == "raised":
        raise value
    raise WorkerFailed("result_too_large" if status == "too_large" else "died", str(value))


class ReaderPool:
    """A few warm worker processes; :meth:`call` runs one function in one of them."""

    def __init__(self, limits: WorkerLimits) -> None:
        self.limits = limits
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(limits.workers):
            self._idle.put(None)  # a slot; the worker starts on first use
        self._closed = False
        self.replaced = 0  # workers lost to a death or a limit (for tests and logs)
        self.requests = 0  # requests sent to workers, a stream counting once (for tests)
        self.frames = 0  # answer frames read back from workers (for tests)

    def warm(self) -> None:
        """Start the workers now (the daemon does at start, so the first mail waits for none)."""
        slots = []
        while True:
            try:
                slots.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for worker in slots:
            self._idle.put(worker if worker is not None and worker.alive() else _Worker(self.limits))

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker.  Returns its result or re-raises its exception;
        raises :class:`WorkerFailed` when the worker died, passed a limit or ``timeout``."""
        request = self._request(fn, args, kwargs, False)
        worker = self._take()
        keep = False
        try:
            status, value = self._round_trip(worker, request, timeout)
            keep = status not in ("died", "too_large") and not worker.worn()
        finally:
            self._give_back(worker, keep, busy=False)
        if status == "ok":
            return value
        _raise_for(status, value)

    def stream(self, fn: Callable[..., Any], *args: Any, deadline: float, **kwargs: Any) -> Iterator[Any]:
        """``fn(*args, **kwargs)``, which returns an iterator, in a worker: ONE request, and each
        item pickled back as the worker makes it (each under its own CPU budget and result
        bound), every one by ``deadline`` (a ``time.monotonic()`` value, which is the same clock
        in every process).  Re-raises the function's exception; raises :class:`WorkerFailed`
        at the item the worker died on or did not send in time, so the items before it stand."""
        request: bytes | None = self._request(fn, args, kwargs, True)
        worker = self._take()
        keep = False
        try:
            while True:
                status, value = self._round_trip(worker, request, deadline - time.monotonic())
                request = None
                if status == "item":
                    yield value
                    continue
                if status == "last":  # the answer is complete: the worker is free again
                    keep = not worker.worn()
                    yield value
                    return
                keep = status in ("end", "raised") and not worker.worn()
                if status == "end":
                    return
                _raise_for(status, value)
        finally:
            self._give_back(worker, keep, busy=True)

    @staticmethod
    def _request(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], streamed: bool) -> bytes:
        return pickle.dumps((fn, args, kwargs, streamed), protocol=pickle.HIGHEST_PROTOCOL)

    def _take(self) -> _Worker:
        """A worker for one request: the slot's warm worker, or one started now in its place."""
        if self._closed:
            raise WorkerFailed("died", "reader pool is closed")
        self.requests += 1
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive():
                worker = _Worker(self.limits)
        except BaseException:
            self._idle.put(self._successor())
            raise
        worker.calls += 1
        return worker

    def _give_back(self, worker: _Worker, keep: bool, *, busy: bool) -> None:
        """Put the worker back in its slot, or (not ``keep``) stop it and put a successor there;
        ``busy``: it may be in the middle of a stream, so it is killed first."""
        if not keep:
            if busy and worker.alive():
                worker.process.kill()
            worker.stop()
        self._idle.put(worker if keep else self._successor())

    def _successor(self) -> _Worker | None:
        """A worker started now in the slot of one that retired or died, so that its interpreter
        start and imports (0.3-1 s) overlap what the daemon does before its next read instead of
        delaying that read; ``None`` (started on first use) when the pool is closed or the
        process cannot start now."""
        if self._closed:
            return None
        try:
            return _Worker(self.limits)
        except OSError:
            return None

    def _round_trip(self, worker: _Worker, request: bytes | None, timeout: float) -> tuple[str, Any]:
        deadline = time.monotonic() + max(timeout, 0.001)
        try:
            if worker.ready_rss is None:  # a new worker: wait for its imports, note its memory
                worker.exchange(_PING, deadline - time.monotonic(), 4096)
                worker.ready_rss = worker.rss()
            reply = worker.exchange(request, max(deadline - time.monotonic(), 0.001),
                                    self.limits.max_result_bytes + 4096)
        except TimeoutError as exc:
            worker.process.kill()
            self.replaced += 1
            raise WorkerFailed("time_limit", f"no result within {timeout:.1f} s") from exc
        except ValueError as exc:
            self.replaced += 1
            raise WorkerFailed("result_too_large", str(exc)) from exc
        except EOFError as exc:
            self.replaced += 1
            raise WorkerFailed("died", worker.exit_text()) from exc
        self.frames += 1
        status, value = pickle.loads(reply)
        if status in ("died", "too_large"):
            self.replaced += 1
        return status, value

    def close(self) -> None:
        """Stop every idle worker (a call in progress finishes first)."""
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.stop()


_pools: dict[WorkerLimits, ReaderPool] = {}
_pools_lock = threading.Lock()


def pool_for(limits: WorkerLimits) -> ReaderPool:
    """The process's pool for these limits (one per distinct configuration)."""
    with _pools_lock:
        pool = _pools.get(limits)
        if pool is None or pool._closed:
            pool = _pools[limits] = ReaderPool(limits)
        return pool


@atexit.register
def close_all() -> None:
    """Stop every worker of every pool (at exit; tests call it too)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


def deadline_left(deadline: float) -> float:
    """Seconds until ``deadline`` (a ``time.monotonic()`` value), never negative."""
    return max(0.0, deadline - time.monotonic())


# --------------------------------------------------------------------------- judging a form

UNREADABLE_MESSAGE = "附件过大或已损坏，无法读取（处理时超出资源限制），请检查后用 Excel 或 WPS 重新保存为 .xlsx 再发送"
"""What the sender reads when the worker reading their file died or passed a limit."""


def worker_limits(limits: Limits) -> WorkerLimits:
    return WorkerLimits(limits.reader_memory_bytes, limits.reader_cpu_seconds,
                        limits.reader_max_result_bytes, limits.reader_workers)


def pool_of(limits: Limits) -> ReaderPool:
    """The warm pool serving these limits."""
    return pool_for(worker_limits(limits))


_rules_cache: tuple[bytes, CampaignRules] | None = None
_blobs: dict[int, tuple[CampaignRules, bytes]] = {}


def _rules_blob(rules: CampaignRules) -> bytes:
    """The pickled rules, made once per rules object (a worker unpickles them once too)."""
    cached = _blobs.get(id(rules))
    if cached is None or cached[0] is not rules:
        cached = _blobs[id(rules)] = (rules, pickle.dumps(rules, protocol=pickle.HIGHEST_PROTOCOL))
    return cached[1]


def _judge_here(data: bytes, filename: str, rules_blob: bytes, limits: Limits,
                cells_left: int) -> tuple[FormVerdict, int]:
    """In the worker: read and check one file; the verdict and the cells it used."""
    global _rules_cache
    from mailbot.forms.checks import check_form
    from mailbot.forms.reader import read_annex3
    from mailbot.forms.sheet_sources import CellBudget

    if _rules_cache is None or _rules_cache[0] != rules_blob:
        _rules_cache = (rules_blob, pickle.loads(rules_blob))
    budget = CellBudget(cells_left)
    try:
        reading = read_annex3(data, filename, limits=limits, budget=budget)
    except NotAnnex3 as exc:
        return FormVerdict(filename, Outcome.NOT_ANNEX3, form_findings=(Finding(exc.code, exc.message),)), budget.spent
    except UnreadableForm as exc:
        return FormVerdict(filename, Outcome.UNREADABLE, form_findings=(Finding(exc.code, exc.message),)), budget.spent
    return check_form(reading, _rules_cache[1]), budget.spent


def failed_verdict(filename: str, failure: WorkerFailed) -> FormVerdict:
    """The verdict of a file whose reader died or passed a limit."""
    return FormVerdict(filename, Outcome.UNREADABLE,
                       form_findings=(Finding("reader_failed", UNREADABLE_MESSAGE),))


def judge(data: bytes, filename: str, rules: CampaignRules, limits: Limits, *,
          cells_left: int | None = None, timeout: float | None = None) -> tuple[FormVerdict, int]:
    """Read and check one attachment in a contained worker: one round trip.  Returns the verdict
    and the sheet cells it used (of ``cells_left``, default ``limits.max_cells_per_message``).
    A worker that dies or passes a limit gives an ``unreadable`` verdict (``reader_failed``)."""
    cells = limits.max_cells_per_message if cells_left is None else cells_left
    wall = limits.max_seconds_per_message if timeout is None else timeout
    try:
        return pool_of(limits).call(_judge_here, data, filename, _rules_blob(rules), limits, cells,
                                    timeout=wall)
    except WorkerFailed as failure:
        return failed_verdict(filename, failure), 0


# --------------------------------------------------------------------------- a whole mail

WALK_GRACE_SECONDS = 2.0
"""How long past the message's deadline the parent waits for the worker: the walk stops itself
at the deadline and forms not started by then are skipped, so a worker still silent after this
is stuck in a read and is killed."""


def _trimmed(verdict: FormVerdict, reading_cells: tuple[str, ...] | None) -> FormVerdict:
    """The verdict with its reading's rows cut to the cells of ``reading_cells`` (None: all)."""
    reading = verdict.reading
    if reading_cells is None or reading is None:
        return verdict
    rows = tuple(FormRow(r.row, {k: c for k, c in r.cells.items() if k in reading_cells}) for r in reading.rows)
    return replace(verdict, reading=replace(reading, rows=rows))


def _walk_and_judge_here(walk: Callable[..., Any], walk_args: tuple[Any, ...], rules_blob: bytes,
                         limits: Limits, deadline: float, cells: int,
                         reading_cells: tuple[str, ...] | None = None) -> Iterator[Any]:
    """In the worker: the walk's result, then per form found ``(verdict, cells used)``, or
    ``None`` for a form not started because the message's ``deadline`` passed."""
    parts = walk(*walk_args, limits, seconds=max(1e-9, deadline - time.monotonic()))
    del walk_args  # the raw mail: not kept while the forms are read
    forms = [(a.data, a.filename) for a in parts.forms]
    yield parts if forms else Last(parts)
    del parts
    for i, (data, filename) in enumerate(forms):
        item: Any = None
        if time.monotonic() < deadline:
            verdict, spent = _judge_here(data, filename, rules_blob, limits, cells)
            cells = max(0, cells - spent)
            item = (_trimmed(verdict, reading_cells), spent)
        yield Last(item) if i == len(forms) - 1 else item


@dataclass(frozen=True)
class Judged:
    """One mail's contained walk and reads.  ``parts`` is the walk's result (``None`` when its
    worker failed: ``walk_failure``); ``verdicts`` has one entry per form of ``parts.forms``,
    ``None`` for a form not read because the message's time ran out."""

    parts: Any
    verdicts: tuple[FormVerdict | None, ...] = ()
    walk_failure: WorkerFailed | None = None


def walk_and_judge(walk: Callable[..., Any], *walk_args: Any, rules: CampaignRules, limits: Limits,
                   deadline: float, cells: int, reading_cells: tuple[str, ...] | None = None) -> Judged:
    """Walk a mail (``walk(*walk_args, limits, seconds=...)``, e.g. ``find_attachments(raw)``)
    and read and check every form it finds, in ONE worker request: the raw mail goes to the
    worker once and each form's bytes never go back to it.  The forms share ``cells`` and the
    time up to ``deadline``.  When the worker dies on a form, that form alone is
    ``reader_failed``: the verdicts before it came back already, and the forms after it are read
    each in its own request, in a successor worker, as :func:`judge` does.  ``reading_cells``:
    the columns of each verdict's reading (``FormReading.rows``) the caller reads, the rest
    left in the worker (None: every cell; the rows' verdicts carry every checked value anyway):
    two thirds of a verdict's pickle is its reading's cells."""
    blob = _rules_blob(rules)
    items = pool_of(limits).stream(_walk_and_judge_here, walk, walk_args, blob, limits, deadline, cells,
                                   reading_cells, deadline=deadline + WALK_GRACE_SECONDS)
    try:
        parts = next(items)
    except WorkerFailed as failure:
        return Judged(None, walk_failure=failure)
    verdicts: list[FormVerdict | None] = []
    try:
        for item in items:
            if item is not None:
                cells = max(0, cells - item[1])
            verdicts.append(None if item is None else item[0])
    except WorkerFailed as failure:
        if len(verdicts) < len(parts.forms):
            verdicts.append(failed_verdict(parts.forms[len(verdicts)].filename, failure))
        for form in parts.forms[len(verdicts):]:
            left = deadline - time.monotonic()
            if left <= 0:
                verdicts.append(None)
                continue
            verdict, spent = judge(form.data, form.filename, rules, limits, cells_left=cells, timeout=left)
            cells = max(0, cells - spent)
            verdicts.append(_trimmed(verdict, reading_cells))
    return Judged(parts, tuple(verdicts))


if __name__ == "__main__":
    _serve(WorkerLimits(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
