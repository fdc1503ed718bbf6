"""The error hierarchy: every error mailbot raises on purpose is a MailbotError.

Each carries the context a user needs (a file, a key, a reason in plain words); callers
raise them ``from`` the underlying cause so tracebacks in debug logs keep the chain.
"""

from __future__ import annotations


class MailbotError(Exception):
    """Base of every deliberate mailbot error."""


class ConfigError(MailbotError):
    """Configuration or rules file is invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class FormError(MailbotError):
    """A file could not be read as an Annex 3 form.

    ``code`` is a stable machine code, ``message`` a Chinese sentence for the sender,
    ``detail`` an English explanation for logs and staff.
    """

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        self.code = code
        self.message = message
        self.detail = detail or message
        super().__init__(f"{code}: {self.detail}")


class UnreadableForm(FormError):
    """Corrupt, encrypted, oversized or unsupported file."""


class NotAnnex3(FormError):
    """A readable spreadsheet or document that is not the Annex 3 form."""


class MailboxError(MailbotError):
    """The mailbox (IMAP server or Maildir) failed or answered unexpectedly."""


class StateError(MailbotError):
    """The state database is unusable (locked past the timeout, corrupt, disk full)."""


class SendError(MailbotError):
    """A reply could not be handed to SMTP.

    ``permanent`` is True for 5xx answers; ``unknown`` is True when the connection dropped
    after DATA, so delivery is unknown and the reply must not be re-sent blindly.
    """

    def __init__(self, message: str, *, permanent: bool = False, unknown: bool = False) -> None:
        self.permanent = permanent
        self.unknown = unknown
        super().__init__(message)


class DecisionRefused(MailbotError):
    """A staff decision that cannot be applied as asked (unknown person, wrong status, ...);
    the message is Chinese, for the staff member who asked.  Nothing was changed."""
