"""A local Maildir as a mail source (the zero-setup default, and for tests and replays).

Layout is Maildir++: the inbox is the root (``new/``, ``cur/``, ``tmp/``); folders are
``.Processed``, ``.Failed``, ... next to them (created when missing).  Files are moved with
``rename``, never rewritten, so ``raw`` is exactly the delivered bytes.

UIDs: Maildir has none, so this source keeps ``mailbot-uidlist`` in the root, like Dovecot's
``dovecot-uidlist``: a message gets the next UID the first time a scan sees it, newly seen
messages ranked by (delivery time, key).  UIDs are stable and increasing, so ``status()``'s
uidnext grows exactly when mail arrives and the caller's "nothing new" check stays one cheap
scan.  A new uidlist starts numbering at the current Unix time (not 1), so numbers stay above
any cursor kept from a lost list.  Entries for messages that left the inbox are dropped, so
the file stays as small as the inbox.  UIDVALIDITY is always 0: the store identifies Maildir
messages by their key, and ``fetch_after`` returns every message still in the inbox
(settled mail has left it; the caller skips keys it already recorded).

Delivery time: the timestamp that starts a standard Maildir file name (``1604019600.M123P4...``,
seconds plus the microseconds after ``M``), else the file's mtime; always aware UTC.
"""

from __future__ import annotations

import fcntl
import mailbox
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from mailbot.errors import MailboxError
from mailbot.mail.source import STANDARD_FOLDERS, FetchedMessage

UIDLIST = "mailbot-uidlist"
POLL_SECONDS = 0.2
#: IMAP system flags and their Maildir info letters.
FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
_NAME_TIME = re.compile(r"^(\d{9,11})(?:\.M(\d{1,6})(?=\D))?")
_COUNTER = iter(range(1, 1 << 62))


class MaildirSource:
    """A Maildir++ directory as a :class:`~mailbot.mail.source.MailSource`."""

    def __init__(self, path: str | os.PathLike[str], folders: tuple[str, ...] = STANDARD_FOLDERS) -> None:
        self.path = Path(path).expanduser().resolve()
        self.name = f"maildir:{self.path}"
        self._closed = threading.Event()
        try:
            box = mailbox.Maildir(self.path, factory=None, create=True)
            existing = set(box.list_folders())
            for folder in folders:
                if folder not in existing:
                    box.add_folder(folder)
        except OSError as exc:
            raise MailboxError(f"cannot open Maildir {self.path}: {exc.strerror or exc}") from exc

    def __repr__(self) -> str:
        return f"MaildirSource({str(self.path)!r})"

    # ---- scanning and UIDs -----------------------------------------------------------

    def _scan(self) -> dict[str, Path]:
        """Maildir key -> current path, for every message in the inbox (new/ and cur/)."""
        found: dict[str, Path] = {}
        for sub in ("new", "cur"):
            try:
                with os.scandir(self.path / sub) as entries:
                    for entry in entries:
                        if entry.name.startswith(".") or not entry.is_file():
                            continue
                        found[entry.name.split(":", 1)[0]] = Path(entry.path)
            except OSError as exc:
                raise MailboxError(f"cannot read Maildir {self.path / sub}: {exc.strerror or exc}") from exc
        return found

    @staticmethod
    def delivered_at(path: Path) -> datetime:
        """Delivery time from the file name's timestamp, else the file's mtime (aware UTC)."""
        m = _NAME_TIME.match(path.name)
        if m:
            seconds = int(m.group(1)) + int(m.group(2) or 0) / 1_000_000
        else:
            seconds = path.stat().st_mtime
        return datetime.fromtimestamp(seconds, timezone.utc)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / f"{UIDLIST}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_uidlist(self) -> tuple[int, int, dict[str, int]]:
        try:
            lines = (self.path / UIDLIST).read_text(encoding="utf-8").splitlines()
            magic, version, next_uid = lines[0].split()
            if magic != UIDLIST or version != "v1":
                raise ValueError(lines[0])
            uids = {key: int(uid) for uid, key in (line.split(" ", 1) for line in lines[1:] if line)}
            return 0, int(next_uid), uids
        except FileNotFoundError:
            return 0, max(1, int(time.time())), {}
        except (OSError, ValueError, IndexError) as exc:
            raise MailboxError(f"{self.path / UIDLIST} is damaged ({exc}); delete it to "
                               "renumber (everything is then refetched and deduplicated)") from exc

    def _write_uidlist(self, next_uid: int, uids: dict[str, int]) -> None:
        body = [f"{UIDLIST} v1 {next_uid}"]
        body += [f"{uid} {key}" for key, uid in sorted(uids.items(), key=lambda kv: kv[1])]
        tmp = self.path / f"{UIDLIST}.tmp"
        tmp.write_text("\n".join(body) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / UIDLIST)

    def _index(self) -> tuple[int, int, list[tuple[int, str, Path]]]:
        """(uidvalidity, uidnext, [(uid, key, path)] in UID order), numbering new arrivals."""
        try:
            with self._locked():
                validity, next_uid, known = self._read_uidlist()
                found = self._scan()
                fresh = [k for k in found if k not in known]
                times = {}
                for key in fresh:
                    try:
                        times[key] = self.delivered_at(found[key])
                    except FileNotFoundError:  # moved away meanwhile
                        continue
                uids = {k: u for k, u in known.items() if k in found}
                for key in sorted(times, key=lambda k: (times[k], k)):
                    uids[key] = next_uid
                    next_uid += 1
                if uids != known or not (self.path / UIDLIST).exists():
                    self._write_uidlist(next_uid, uids)
        except OSError as exc:
            raise MailboxError(f"cannot index Maildir {self.path}: {exc.strerror or exc}") from exc
        entries = sorted((uid, key, found[key]) for key, uid in uids.items())
        return validity, next_uid, entries

    # ---- MailSource ------------------------------------------------------------------

    def status(self) -> tuple[int, int]:
        """(0, uidnext); scans the inbox, which holds only unsettled mail."""
        validity, next_uid, _ = self._index()
        return validity, next_uid

    def fetch_after(self, uidvalidity: int | None, last_uid: int) -> Iterator[FetchedMessage]:
        """Every message still in the inbox, in arrival order (delivery time, ties by UID),
        one file read at a time.

        ``last_uid`` is deliberately ignored: a Maildir inbox holds only unsettled mail, and a
        message recorded but not yet moved must come back so the caller can settle it.
        """
        validity, _, entries = self._index()
        dated = []
        for uid, key, path in entries:
            try:
                dated.append((self.delivered_at(path), uid, key, path))
            except FileNotFoundError:  # moved from new/ to cur/ meanwhile: found again below
                dated.append((datetime.max.replace(tzinfo=timezone.utc), uid, key, path))
        for _, uid, key, path in sorted(dated):
            current = self._find(key) if not path.exists() else path
            if current is None:
                continue  # settled by someone else meanwhile
            try:
                raw = current.read_bytes()
                arrived = self.delivered_at(current)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise MailboxError(f"cannot read {current}: {exc.strerror or exc}") from exc
            yield FetchedMessage(source=self.name, uidvalidity=validity, uid=uid, key=key,
                                 arrived_at=arrived, raw=raw)

    def _find(self, key: str) -> Path | None:
        """The inbox file for ``key`` (it may have moved from new/ to cur/), or None."""
        for sub in ("new", "cur"):
            directory = self.path / sub
            exact = directory / key
            if exact.exists():
                return exact
            try:
                for name in os.listdir(directory):
                    if name.split(":", 1)[0] == key:
                        return directory / name
            except OSError:
                continue
        return None

    def folder_path(self, folder: str) -> Path:
        """Maildir++ directory of ``folder`` ("INBOX" is the root; "a/b" is ".a.b")."""
        if folder.upper() == "INBOX":
            return self.path
        if not folder or folder.startswith(".") or any(c in folder for c in "\0\n\r") or ".." in folder:
            raise MailboxError(f"unusable Maildir folder name: {folder!r}")
        return self.path / ("." + folder.replace("/", "."))

    def _ensure_folder(self, folder: str) -> Path:
        target = self.folder_path(folder)
        try:
            for sub in ("cur", "new", "tmp"):
                (target / sub).mkdir(parents=True, exist_ok=True)
            if target != self.path:
                (target / "maildirfolder").touch()
        except OSError as exc:
            raise MailboxError(f"cannot create Maildir folder {target}: {exc.strerror or exc}") from exc
        return target

    def settle(self, key: str, folder: str) -> None:
        """Move the message into ``folder``/cur (created if missing), keeping its flags.
        A message no longer in the inbox is left alone (it was settled already)."""
        self.folder_path(folder)  # reject a bad name even when there is nothing to move
        source = self._find(self._check_key(key))
        if source is None:
            return
        target = self._ensure_folder(folder)
        name = source.name if ":" in source.name else f"{source.name}:2,"
        try:
            os.rename(source, target / "cur" / name)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise MailboxError(f"cannot move {source} to {target}: {exc.strerror or exc}") from exc

    def settle_many(self, keys: list[str], folder: str) -> None:
        """Move several messages into ``folder`` (one rename each)."""
        for key in keys:
            self.settle(key, folder)

    def flag(self, key: str, flag: str) -> None:
        """Add a system flag (\\Seen, \\Flagged, ...) by renaming into cur/ with the info letter."""
        letter = _letter(flag)
        source = self._find(self._check_key(key))
        if source is None:
            raise MailboxError(f"message {key!r} is not in {self.path}")
        base, _, info = source.name.partition(":")
        flags = info[2:] if info.startswith("2,") else ""
        new_name = f"{base}:2,{''.join(sorted(set(flags) | {letter}))}"
        try:
            os.rename(source, self.path / "cur" / new_name)
        except OSError as exc:
            raise MailboxError(f"cannot flag {source}: {exc.strerror or exc}") from exc

    def append(self, folder: str, raw: bytes, flags: tuple[str, ...] = ("\\Seen",)) -> None:
        """Deliver ``raw`` (bytes unchanged) into ``folder``: write to tmp/, then rename into
        cur/ with the flags (or new/ when there are none)."""
        letters = [_letter(flag) for flag in flags]
        target = self._ensure_folder(folder)
        now = time.time()
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        base = f"{int(now)}.M{int((now % 1) * 1_000_000)}P{os.getpid()}Q{next(_COUNTER)}.{host}"
        tmp = target / "tmp" / base
        final = target / "cur" / f"{base}:2,{''.join(sorted(set(letters)))}" if letters else target / "new" / base
        try:
            with open(tmp, "xb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise MailboxError(f"cannot store a message in {target}: {exc.strerror or exc}") from exc

    def wait_for_new(self, timeout: float) -> bool:
        """True as soon as new/ holds a message no scan has numbered yet (checked every 0.2 s),
        including one that arrived before the wait began (e.g. during a poll); False after
        ``timeout`` or when ``close()`` is called."""
        deadline = time.monotonic() + max(0.0, timeout)
        while not self._closed.is_set():
            if self._unnumbered():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._closed.wait(min(POLL_SECONDS, remaining)):
                return False
        return False

    def _unnumbered(self) -> bool:
        _, _, known = self._read_uidlist()
        return any(name.split(":", 1)[0] not in known for name in self._listing())

    def _listing(self) -> set[str]:
        try:
            return {n for n in os.listdir(self.path / "new") if not n.startswith(".")}
        except OSError as exc:
            raise MailboxError(f"cannot read Maildir {self.path / 'new'}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Interrupt ``wait_for_new``; nothing else to release."""
        self._closed.set()

    def __enter__(self) -> MaildirSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _check_key(key: str) -> str:
        if not key or "/" in key or key.startswith(".") or "\0" in key:
            raise MailboxError(f"not a Maildir key: {key!r}")
        return key


def _letter(flag: str) -> str:
    """The Maildir info letter of an IMAP system flag; keywords have none in plain Maildir."""
    letter = FLAG_LETTERS.get(flag.title() if flag.startswith("\\") else flag)
    if letter is None:
        raise MailboxError(f"Maildir supports only the flags {sorted(FLAG_LETTERS)}, not {flag!r}")
    return letter
