"""The ``mailbot`` command line: a thin click layer over the library.

Examples::

    mailbot check forms/*.xlsx            # staff: check forms by hand
    mailbot check --json form.xlsx        # one JSON object per file
    mailbot poll                          # one intake cycle, then exit
    mailbot run                           # the daemon
"""

from __future__ import annotations

import sys
from pathlib import Path
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from mailbot.config import Settings

@click.group()
@click.version_option(package_name="mailbot")
def main() -> None:
    """mailbot: reads Annex 3 registration forms from a mailbox and answers each sender."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file (see README).")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Campaign rules file (default: the bundled rules).")
def check(files: tuple[Path, ...], as_json: bool, rules_path: Path | None) -> None:
    """Check Annex 3 forms by hand.

    Exit status: 0 when every file is ok, 1 when any needs action, 2 when a file can't be read.

    Example: ``mailbot check --json 浙江某学院.xlsx``
    """
    from mailbot.forms.check_report import run_check

    sys.exit(run_check(list(files), as_json=as_json, rules_path=rules_path))


CONFIG_OPTION = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Config file (default: mailbot.toml in the working directory, if present).")


def _settings(config_path: Path | None, **overrides: Any) -> "Settings":
    from mailbot.config import load_settings
    from mailbot.errors import ConfigError

    try:
        return load_settings(config_path, **overrides)
    except ConfigError as exc:
        click.echo(f"mailbot: invalid configuration\n{exc}", err=True)
        sys.exit(2)


def _hold_lock(settings: "Settings") -> None:
    """Take the state directory's instance lock for the rest of the command, or exit 1 naming
    the holder (one writer per state dir)."""
    from mailbot.state.lock import InstanceLocked, hold_instance_lock

    try:
        click.get_current_context().with_resource(hold_instance_lock(settings.state_dir))
    except InstanceLocked as exc:
        click.echo(f"mailbot: {exc}", err=True)
        sys.exit(1)


def _assemble(settings: "Settings", actor: str = "daemon", *, lock: bool = True) -> tuple[Any, Any]:
    """Open everything for a command; with ``lock`` first take the state directory's instance
    lock for the rest of the command (one writer per state dir)."""
    from mailbot.assembly import assemble
    from mailbot.errors import MailbotError
    from mailbot.logs import configure_logging, get_logger

    configure_logging(settings.log_format)
    log = get_logger()
    if lock:
        _hold_lock(settings)
    try:
        return assemble(settings, log, actor=actor), log
    except MailbotError as exc:
        click.echo(f"mailbot: {exc}", err=True)
        sys.exit(2)


@main.command()
@CONFIG_OPTION
def poll(config_path: Path | None) -> None:
    """Run one intake cycle, then exit.

    Fetches what is new, records it, queues and sends the replies, settles the messages.
    A progress bar is shown on a terminal.  Example: ``mailbot poll --config /etc/mailbot/mailbot.toml``
    """
    from mailbot.errors import MailbotError

    parts, log = _assemble(_settings(config_path))
    try:
        if sys.stderr.isatty():
            from mailbot.forms.check_report import progress_bar

            with progress_bar("处理邮件") as advance:
                report = parts.intake.poll_once(progress=advance)
        else:
            report = parts.intake.poll_once()
    except MailbotError as exc:
        log.error("poll_failed", error=str(exc))
        sys.exit(1)
    finally:
        parts.close()
    log.info("poll_done", fetched=report.fetched, recorded=report.recorded, outcomes=report.outcomes,
             sent=report.sent.sent, failed=report.failed)


@main.command()
@CONFIG_OPTION
def run(config_path: Path | None) -> None:
    """Run the daemon: poll on a schedule, IMAP IDLE for instant pickup, daily staff digest.

    Stops cleanly on SIGTERM.  Only one instance may run per state directory.
    """
    from mailbot.daemon import Daemon
    from mailbot.office.digest import queue_digest
    from mailbot.errors import MailbotError

    parts, log = _assemble(_settings(config_path))
    daemon = Daemon(parts, log, queue_digest=lambda: queue_digest(
        parts.state, parts.rules, parts.settings, parts.intake.renderer))
    try:
        daemon.run()
    except MailbotError as exc:
        click.echo(f"mailbot: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("eml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run/--no-dry-run", default=True, show_default=True,
              help="Dry run: show the decision and reply, record nothing.")
@click.option("--arrived", default=None, help="Arrival time (ISO 8601; default: now).")
@CONFIG_OPTION
def replay(eml: Path, dry_run: bool, arrived: str | None, config_path: Path | None) -> None:
    """Run the whole pipeline on one stored message.

    Example: ``mailbot replay --arrived 2020-11-05T10:00+08:00 problem.eml``
    """
    import hashlib
    from datetime import datetime, timezone

    from mailbot.mail.source import FetchedMessage

    settings = _settings(config_path)
    parts, log = _assemble(settings, actor="replay", lock=not dry_run)
    raw = eml.read_bytes()
    when = datetime.fromisoformat(arrived) if arrived else datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=settings.tz)
    sha = hashlib.sha256(raw).hexdigest()
    fetched = FetchedMessage(source="replay", uidvalidity=0, uid=0, key=sha,
                             arrived_at=when, raw=raw)
    known = parts.state.message_at(fetched.source, 0, 0, fetched.key)
    if known is not None and not dry_run:
        click.echo(f"already replayed as message {known['id']} ({known['outcome']}); nothing recorded")
        parts.close()
        return
    try:
        assessment = parts.intake.assess(fetched)
        click.echo(f"outcome: {assessment.outcome} ({assessment.reason})")
        if dry_run:
            for row in parts.intake.preview(fetched, assessment):
                click.echo(f"--- reply ({row['kind']}) to {row['to_address']}: {row['subject']}")
                click.echo(_reply_text(row["raw"]))
        else:
            parts.intake.record(fetched, assessment)
            parts.intake.send()
    finally:
        parts.close()


def _reply_text(raw: bytes) -> str:
    from mailbot.replies.render import reply_text

    return reply_text(raw)


@main.command()
@CONFIG_OPTION
@click.option("--send", is_flag=True, help="Queue it to the staff addresses and send, instead of printing.")
def digest(config_path: Path | None, send: bool) -> None:
    """Print the staff digest for the last 24 hours (or queue and send it with --send)."""
    from mailbot.office.digest import build_digest, queue_digest

    parts, _ = _assemble(_settings(config_path), actor="staff", lock=send)
    try:
        if send:
            n = queue_digest(parts.state, parts.rules, parts.settings, parts.intake.renderer)
            parts.intake.send()
            click.echo(f"digest queued to {n} staff address(es)")
        else:
            d = build_digest(parts.state, parts.rules, parts.settings)
            click.echo(parts.intake.renderer.render_digest(d).text)
    finally:
        parts.close()


@main.command()
@click.option("--before", required=True, help="Date (YYYY-MM-DD, local time zone): purge what was recorded before it.")
@click.option("--staff", required=True, help="Your name, recorded in the audit log.")
@CONFIG_OPTION
def purge(before: str, staff: str, config_path: Path | None) -> None:
    """Remove stored raw mail and personal fields past retention; the audit chain stays verifiable.

    Example: ``mailbot purge --before 2021-06-30 --staff 王老师``
    """
    from datetime import datetime, timezone

    from mailbot.state.purge import purge_before
    from mailbot.rules import load_rules
    from mailbot.state.store import State

    settings = _settings(config_path)
    _hold_lock(settings)
    cutoff = datetime.fromisoformat(before)
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=settings.tz)
    rules = load_rules(settings.rules)
    state = State(settings.state_dir)
    report = purge_before(state, cutoff.astimezone(timezone.utc).isoformat(timespec="seconds"),
                          actor=f"staff:{staff}", rules_version=f"{rules.campaign.id}@{rules.campaign.version}",
                          outbox_dir=settings.smtp.outbox_dir if settings.smtp.mode == "folder" else None)
    ok, n = state.verify_event_chain()
    click.echo(f"purged {report.messages} message(s): {report.files_removed} file(s) removed, "
               f"{report.rows_cleared} row(s) and {report.nominees_cleared} nominee(s) cleared; "
               f"audit chain {'verified' if ok else 'BROKEN'} ({n} events)")
    state.close()
    sys.exit(0 if ok else 1)


@main.command()
@CONFIG_OPTION
def verify(config_path: Path | None) -> None:
    """Check the state database (integrity_check) and the audit event chain, read-only."""
    from mailbot.errors import StateError
    from mailbot.state.store import State

    try:
        state = State.readonly(_settings(config_path).db_path)
    except StateError as exc:
        click.echo(f"mailbot: {exc}", err=True)
        sys.exit(2)
    integrity = next(state.query("PRAGMA integrity_check"))["integrity_check"]
    ok, n = state.verify_event_chain()
    click.echo(f"integrity_check: {integrity}; event chain: {'ok' if ok else 'BROKEN'} ({n} events)")
    state.close()
    sys.exit(0 if ok and integrity == "ok" else 1)


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("state/demo"), show_default=True, help="Where the demo keeps its state.")
def demo(directory: Path) -> None:
    """Show the whole job on the embedded default, no server needed.

    Delivers the bundled sample mails (synthetic people) into a local Maildir, runs one intake
    cycle, and shows what happened: the database, the replies written as .eml files, the seats.
    Each run starts afresh.  Example: ``mailbot demo --dir /tmp/mailbot-demo``
    """
    from mailbot.demo import deliver_samples, reset_demo_dir

    directory = directory.resolve()
    try:
        reset_demo_dir(directory)
    except FileExistsError as exc:
        click.echo(f"mailbot: {exc}", err=True)
        sys.exit(2)
    settings = _settings(None, state_dir=directory, log_format="console" if sys.stdout.isatty() else "json")
    delivered = deliver_samples(settings.mailbox.maildir_path, settings.tz)
    parts, _ = _assemble(settings)
    try:
        report = parts.intake.poll_once()
        click.echo("")
        click.echo(f"Delivered {len(delivered)} sample mails into {settings.mailbox.maildir_path}")
        written = next(parts.state.query("SELECT count(*) AS n FROM outbox WHERE status = 'sent'"))["n"]
        click.echo(f"Recorded {report.recorded}, replies written: {written}")
        click.echo("")
        rows = parts.state.query(
            "SELECT m.receipt, m.arrived_at, m.sender, m.outcome, m.reason, o.kind AS reply "
            "FROM messages m LEFT JOIN outbox o ON o.message = m.id ORDER BY m.id, o.id")
        for r in rows:
            arrived = datetime.fromisoformat(r["arrived_at"]).astimezone(settings.tz).strftime("%m-%d %H:%M")
            click.echo(f"  {r['receipt']:<26} {arrived}  {r['sender']:<22} {r['outcome']:<11} "
                       f"reply: {r['reply'] or '-'}")
        click.echo("")
        click.echo("Seats (seated/capacity, waiting):")
        for p in parts.intake.ledger.program_summary():
            if p["seated"] or p["waiting"]:
                click.echo(f"  {p['program']}: {p['seated']}/{p['capacity']}, waiting {p['waiting']}")
        click.echo("")
        click.echo(f"Replies (.eml):   {settings.smtp.outbox_dir}")
        click.echo(f"Database:         {settings.db_path}  (try: mailbot verify, or sqlite3 'file:{settings.db_path}?mode=ro')")
        click.echo(f"Processed mail:   {settings.mailbox.maildir_path}/.Processed")
    finally:
        parts.close()


if __name__ == "__main__":  # pragma: no cover
    main()
