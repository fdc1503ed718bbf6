"""What every mailbox source gives the pipeline: fetched messages and a few server actions.

A source is read-only until the pipeline has recorded a message; only then does it ``settle``
(move) or ``flag`` it.  Implementations: ``imap_source.ImapSource``, ``maildir_source.MaildirSource``.

The poll loop costs one round trip when nothing is new::

    uidvalidity, uidnext = source.status()
    if uidvalidity != stored_uidvalidity or uidnext > stored_last_uid + 1:
        for msg in source.fetch_after(stored_uidvalidity, stored_last_uid): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from mailbot.config import is_loopback
from mailbot.errors import ConfigError

#: Folders the pipeline settles into; sources create missing ones on first use.
PROCESSED = "Processed"
FAILED = "Failed"
QUARANTINE = "Quarantine"
SENT = "Sent"
STANDARD_FOLDERS = (PROCESSED, FAILED, QUARANTINE, SENT)


@dataclass(frozen=True)
class FetchedMessage:
    """One message as it sits in the mailbox, bytes untouched."""

    source: str  # stable mailbox identity: "imap://user@host:port/INBOX" or "maildir:/abs/path"
    uidvalidity: int  # IMAP UIDVALIDITY; 0 for Maildir
    uid: int  # IMAP UID; Maildir: rank by (delivery time, key), see maildir_source
    key: str  # opaque handle for settle()/flag(): str(uid) for IMAP, the Maildir key
    arrived_at: datetime  # aware: IMAP INTERNALDATE, Maildir delivery time
    raw: bytes
    #: the cursor may move up to this UID once the message is recorded: every new message with
    #: a lower UID has been handed out before it (None: the message's own UID)
    cursor_uid: int | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # never dump message bytes into logs
        return (
            f"FetchedMessage(source={self.source!r}, uidvalidity={self.uidvalidity}, uid={self.uid}, "
            f"key={self.key!r}, arrived_at={self.arrived_at.isoformat()}, size={len(self.raw)})"
        )


@runtime_checkable
class MailSource(Protocol):
    """A mailbox the daemon polls.  Methods raise ``MailboxError`` on server or I/O failure."""

    name: str

    def status(self) -> tuple[int, int]:
        """(uidvalidity, uidnext) in one round trip."""
        ...

    def fetch_after(self, uidvalidity: int | None, last_uid: int) -> Iterator[FetchedMessage]:
        """Messages with uid > last_uid in UID order, streamed in batches, never marking \\Seen.
        If ``uidvalidity`` is None or not the folder's current one, every message is returned."""
        ...

    def settle(self, key: str, folder: str) -> None:
        """Move the message into ``folder``, creating the folder if missing."""
        ...

    def settle_many(self, keys: list[str], folder: str) -> None:
        """``settle`` for several messages at once (one round trip where the server allows)."""
        ...

    def flag(self, key: str, flag: str) -> None:
        """Add one flag (system like ``\\Flagged`` or a keyword) to the message."""
        ...

    def append(self, folder: str, raw: bytes, flags: tuple[str, ...] = ("\\Seen",)) -> None:
        """Store a message (e.g. a copy of a sent reply) in ``folder``, creating it if missing."""
        ...

    def wait_for_new(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True when new mail may have arrived.  ``close()``
        from another thread interrupts it (it then returns False)."""
        ...

    def close(self) -> None:
        """Release the connection; safe to call twice and from another thread."""
        ...


class ImapSettings(BaseModel):
    """How to reach the IMAP mailbox.  ``tls="plain"`` is refused for non-loopback hosts
    unless ``allow_plain_remote`` is set explicitly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(993, gt=0, lt=65536)
    tls: Literal["implicit", "starttls", "plain"] = "implicit"
    user: str = Field(min_length=1)
    password: SecretStr
    folder: str = Field("INBOX", min_length=1)
    timeout: float = Field(30.0, gt=0, description="seconds for connect and each command")
    allow_plain_remote: bool = False
    ca_file: str | None = Field(None, description="PEM bundle to trust instead of the system CAs")
    fetch_batch: int = Field(20, gt=0, description="messages per UID FETCH (bounds memory)")
    poll_interval: float = Field(
        5.0, gt=0, description="seconds between STATUS polls when the server lacks IDLE"
    )

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> ImapSettings:
        if self.tls == "plain" and not self.allow_plain_remote and not is_loopback(self.host):
            raise ConfigError(
                "imap",
                [
                    f"tls = 'plain' sends the password unencrypted to {self.host}; use 'implicit' "
                    "or 'starttls', or set allow_plain_remote = true deliberately"
                ],
            )
        return self

    @property
    def source_name(self) -> str:
        """Stable mailbox identity used as ``FetchedMessage.source``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"imap://{self.user}@{host}:{self.port}/{self.folder}"
