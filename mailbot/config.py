"""Configuration: one TOML file plus ``MAILBOT_*`` environment variables (pydantic-settings).

Precedence, highest first: environment (``MAILBOT_IMAP__HOST=...``; nested keys joined by
``__``), the TOML file (``--config``, default ``mailbot.toml`` when present), the defaults
below.  Relative paths are resolved against the config file's directory (or the working
directory when there is no file).  Invalid configuration raises :class:`ConfigError` listing
every problem with its key.  Every key is documented in ``docs/CONFIG.md``.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tomllib
from datetime import tzinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from mailbot.bundled import default_rules_file, templates_dir
from mailbot.errors import ConfigError
from mailbot.time_zones import known_time_zone, zone
from mailbot.limits import Limits

TlsMode = Literal["implicit", "starttls", "plain"]


def is_loopback(host: str) -> bool:
    """True for localhost names and loopback addresses (``127.x``, ``::1``, bracketed ``[::1]``):
    the only hosts ``tls = "plain"`` may reach without ``allow_plain_remote``."""
    name = host.strip().lower()
    if name in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file at ``path`` (settings or rules) as a dict; ``ConfigError`` naming the file
    when it cannot be read, is not UTF-8 or is not TOML (with line and column)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"TOML syntax error: {exc}"]) from exc


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """Connection to an IMAP or SMTP server."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 means the protocol default for the TLS mode")
    tls: TlsMode = "implicit"
    user: str = ""
    password: SecretStr = SecretStr("")
    password_file: Path | None = None
    timeout: float = Field(30.0, gt=0)
    allow_plain_remote: bool = False
    ca_file: Path | None = Field(None, description="PEM bundle to trust instead of the system CAs")

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> "ServerSettings":
        if self.tls == "plain" and not self.allow_plain_remote and not is_loopback(self.host):
            raise ValueError(f"tls = 'plain' is only allowed for loopback hosts, not {self.host!r}")
        return self

    def tls_context(self) -> ssl.SSLContext:
        """Certificate-verifying TLS context (system CAs, or ``ca_file``)."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def secret(self) -> str:
        """The password, read from ``password_file`` when set (systemd credentials)."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError("password_file", [f"{self.password_file}: {exc.strerror}"]) from exc
        return self.password.get_secret_value()


class ImapConfig(ServerSettings):
    """The intake mailbox on an IMAP server."""

    folder: str = "INBOX"
    idle: bool = True
    sent_folder: str = Field("", description="append a copy of each reply here; empty: don't")


class SmtpConfig(ServerSettings):
    """Where replies go: an SMTP server, or a folder of .eml files (the zero-setup default)."""

    mode: Literal["smtp", "folder"] = "folder"
    tls: TlsMode = "starttls"
    envelope_from: str = ""
    outbox_dir: Path = Path("state/outbox")
    max_attempts: int = Field(5, ge=1, description="4xx retries before a reply is marked failed")
    retry_base_seconds: float = Field(60.0, gt=0)


class MailboxConfig(_Section):
    kind: Literal["maildir", "imap"] = "maildir"
    require_return_path: bool = Field(
        True, description="treat mail without Return-Path as automatic (no reply); off for sources that strip it")
    maildir_path: Path = Path("state/maildir")
    processed_folder: str = "Processed"
    failed_folder: str = "Failed"
    quarantine_folder: str = "Quarantine"
    settle: Literal["move", "flag"] = "move"


class ReplyConfig(_Section):
    from_address: str = "shengpei@zjut.edu.cn"
    from_name: str = "职业院校骨干教师培训报名"
    message_id_domain: str = "mailbot.invalid"
    max_per_sender_per_day: int = Field(5, ge=1)
    max_per_hour: int = Field(
        200, ge=1, description="replies to senders sent in any hour; past it they wait in the outbox")
    max_findings_listed: int = Field(
        50, ge=1, description="findings listed one by one in a reply; the rest are summed up in one line")
    max_nominees_listed: int = Field(
        200, ge=1, description="teachers listed one by one in a reply; the rest are counted in one line")
    max_rows_for_workbook: int = Field(
        1000, ge=1, description="a form with more rows gets no correction workbook (the findings are listed)")


class ScheduleConfig(_Section):
    poll_seconds: int = Field(60, ge=1)
    digest_time: str = Field("08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    backoff_max_seconds: int = Field(300, ge=1)
    stall_alert_minutes: int = Field(30, ge=0)
    staff_wait_seconds: int = Field(300, ge=1)


class TrustConfig(_Section):
    authserv_ids: tuple[str, ...] = ()
    allow_domains: tuple[str, ...] = ()
    deny_domains: tuple[str, ...] = ()


class Settings(BaseSettings):
    """Everything mailbot needs to run; see docs/CONFIG.md for each key."""

    model_config = SettingsConfigDict(
        env_prefix="MAILBOT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    state_dir: Path = Path("state")
    rules: Path = Field(default_factory=default_rules_file)
    templates: Path = Field(default_factory=templates_dir)
    timezone: str = "Asia/Shanghai"
    staff_addresses: tuple[str, ...] = ()
    log_format: Literal["auto", "json", "console"] = "auto"
    mailbox: MailboxConfig = MailboxConfig()
    imap: ImapConfig = ImapConfig()
    smtp: SmtpConfig = SmtpConfig()
    reply: ReplyConfig = ReplyConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    trust: TrustConfig = TrustConfig()
    limits: Limits = Limits()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_time_zone(value)

    @model_validator(mode="after")
    def _imap_needs_credentials(self) -> "Settings":
        if self.mailbox.kind == "imap" and not self.imap.user:
            raise ValueError("mailbox.kind = 'imap' needs imap.user (and a password or password_file)")
        if self.smtp.mode == "smtp" and not (self.smtp.envelope_from or self.reply.from_address):
            raise ValueError("smtp.mode = 'smtp' needs smtp.envelope_from or reply.from_address")
        return self

    @property
    def tz(self) -> tzinfo:
        return zone(self.timezone)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "mailbot.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init carries the TOML file's content (see load_settings); env wins over it.
        return (env_settings, init_settings)


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative path keys of the TOML file relative to the file's own directory."""
    def fix(section: dict[str, Any], keys: tuple[str, ...]) -> None:
        for key in keys:
            value = section.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                section[key] = str(base / value)

    fix(data, ("state_dir", "rules", "templates"))
    for name, keys in (("mailbox", ("maildir_path",)), ("smtp", ("outbox_dir", "password_file", "ca_file")),
                       ("imap", ("password_file", "ca_file"))):
        if isinstance(data.get(name), dict):
            fix(data[name], keys)
    return data


def _finish_paths(settings: Settings) -> Settings:
    """Paths left at their relative defaults live under ``state_dir``."""
    updates: dict[str, Any] = {}
    mailbox, smtp = settings.mailbox, settings.smtp
    if not mailbox.maildir_path.is_absolute() and mailbox.maildir_path == Path("state/maildir"):
        updates["mailbox"] = mailbox.model_copy(update={"maildir_path": settings.state_dir / "maildir"})
    if not smtp.outbox_dir.is_absolute() and smtp.outbox_dir == Path("state/outbox"):
        updates["smtp"] = smtp.model_copy(update={"outbox_dir": settings.state_dir / "outbox"})
    return settings.model_copy(update=updates) if updates else settings


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load the TOML file at ``path`` (``mailbot.toml`` if present when None) plus environment.

    Raises ConfigError listing every problem, each with its key path.
    """
    source = "environment"
    data: dict[str, Any] = {}
    if path is None and Path("mailbot.toml").is_file():
        path = Path("mailbot.toml")
    if path is not None:
        source = str(path)
        data = read_toml(path)
        data = _resolve_paths(data, path.resolve().parent)
    data.update(overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"{loc}: {err['msg']}")
        raise ConfigError(source + (" + MAILBOT_* environment" if _has_env() else ""), problems) from exc
    except SettingsError as exc:
        raise ConfigError("MAILBOT_* environment", [f"{exc} (lists and tables must be JSON)"]) from exc
    return _finish_paths(settings)


def _has_env() -> bool:
    return any(k.startswith("MAILBOT_") for k in os.environ)
