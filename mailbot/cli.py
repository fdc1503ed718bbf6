"""The ``mailbot`` command line: a thin click layer over the library.

Examples::

    mailbot check forms/*.xlsx            # staff: check forms by hand
    mailbot check --json form.xlsx        # one JSON object per file
    mailbot poll                          # one intake cycle, then exit
    mailbot run                           # the daemon
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from mailbot.config import Settings


_PATH_ERRORS = [  # click's messages for a path that fails its checks, as staff read them
    (re.compile(r"^(?:File|Directory|Path|file|directory|path) '(.*)' does not exist\.$"), "“{}”不存在。"),
    (re.compile(r"^(?:File|Directory|Path|file|directory|path) '(.*)' is a directory\.$"), "“{}”是目录，应为文件。"),
    (re.compile(r"^(?:File|Directory|Path|file|directory|path) '(.*)' is a file\.$"), "“{}”是文件，应为目录。"),
    (re.compile(r"^(?:File|Directory|Path|file|directory|path) '(.*)' is not readable\.$"), "“{}”无法读取（没有权限）。"),
    (re.compile(r"^'(.*)' is not a valid integer\.$"), "“{}”不是整数。"),
]


def _chinese_usage(exc: click.UsageError) -> str:
    """click's usage error, said in Chinese (option and file names left as they are)."""
    if isinstance(exc, click.NoSuchOption):
        text = f"没有这个选项：{exc.option_name}。"
        return text + (f"您是不是要用 {'、'.join(exc.possibilities)}？" if exc.possibilities else "")
    if isinstance(exc, click.exceptions.NoSuchCommand):
        text = f"没有这个命令：{exc.command_name}。"
        return text + (f"您是不是要用 {'、'.join(exc.possibilities)}？" if exc.possibilities else "")
    if isinstance(exc, click.MissingParameter):
        hint = exc.param.get_error_hint(exc.ctx).replace("'", "") if exc.param is not None else ""
        kind = "参数" if isinstance(exc.param, click.Argument) else "选项"
        return f"缺少{kind} {hint}。"
    if isinstance(exc, click.BadParameter):
        hint = exc.param.get_error_hint(exc.ctx).replace("'", "") if exc.param is not None else ""
        message = exc.message
        for pattern, chinese in _PATH_ERRORS:
            if m := pattern.match(message):
                message = chinese.format(m.group(1))
                break
        return f"{hint} 的值无效：{message}"
    message = exc.format_message()
    if m := re.match(r"^Got unexpected extra arguments? \((.*)\)$", message):
        return f"多余的参数：{m.group(1)}"
    if m := re.match(r"^Option '(.*)' requires an argument\.$", message):
        return f"选项 {m.group(1)} 需要一个值。"
    if m := re.match(r"^Option '(.*)' does not take a value\.$", message):
        return f"选项 {m.group(1)} 不接受值。"
    if message == "Missing command.":
        return "缺少命令。"
    return message


class StaffUsageError(click.UsageError):
    """A usage error shown to staff: 用法 line, where to find help, the error, all in Chinese."""

    def show(self, file: Any = None) -> None:
        if self.ctx is not None:
            click.echo(f"{self.ctx.get_usage()}\n查看说明：{self.ctx.command_path} --help\n", err=True)
        click.echo(f"错误：{self.message}", err=True)


class StaffCommand(click.Command):
    """A command staff use: help headings, the help option and usage errors in Chinese."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("options_metavar", "[选项]")
        super().__init__(*args, **kwargs)

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        names = self.get_help_option_names(ctx)
        if not names or not self.add_help_option:
            return None
        return click.Option(names, is_flag=True, is_eager=True, expose_value=False,
                            callback=lambda c, _p, v: (click.echo(c.get_help()), c.exit()) if v else None,
                            help="显示本说明并退出。")

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except StaffUsageError:
            raise
        except click.UsageError as exc:
            raise StaffUsageError(_chinese_usage(exc), exc.ctx) from exc

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, " ".join(self.collect_usage_pieces(ctx)), prefix="用法：")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        options = [record for p in self.get_params(ctx)
                   if isinstance(p, click.Option) and (record := p.get_help_record(ctx))]
        if options:
            with formatter.section("选项"):
                formatter.write_dl(options)


class StaffGroup(StaffCommand, click.Group):
    """A group of staff commands (help headings in Chinese); its commands are staff commands."""

    command_class = StaffCommand
    group_class = type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subcommand_metavar", "命令 [参数]...")
        super().__init__(*args, **kwargs)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[Any, Any, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise StaffUsageError(_chinese_usage(exc), ctx) from exc

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        StaffCommand.format_options(self, ctx, formatter)
        commands = [(name, cmd.get_short_help_str(formatter.width - 6 - len(name)))
                    for name in self.list_commands(ctx) if (cmd := self.get_command(ctx, name)) and not cmd.hidden]
        if commands:
            with formatter.section("命令"):
                formatter.write_dl(commands)


HELP_CN = click.help_option("--help", "-h", help="显示本说明并退出。")


@click.group(cls=StaffGroup, context_settings={"help_option_names": ["--help", "-h"]})
@click.version_option(package_name="mailbot", message="%(prog)s %(version)s", help="显示版本号并退出。")
def main() -> None:
    """mailbot：从邮箱收取附件3报名表，检查、登记并回复每位发件人。"""


@main.command()
@click.argument("files", nargs=-1, required=True, metavar="文件...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="每个报名表输出一行 JSON（含检查代码，供程序使用，见 README）。")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="文件",
              default=None, help="规则文件（默认：内置规则）。")
def check(files: tuple[Path, ...], as_json: bool, rules_path: Path | None) -> None:
    """手工检查报名表（与服务收到邮件时的检查完全相同）。

    \b
    可以是报名表文件，也可以是 .zip 压缩包或 .eml 邮件：会像收到的邮件一样打开，
    逐个检查其中的报名表。退出码：0 全部通过，1 有需要处理的，2 有无法读取的文件。

    \b
    例如：
      mailbot check 浙江某学院.xlsx
      mailbot check 报名.zip 来信.eml
    """
    from mailbot.forms.check_report import run_check
    from mailbot.office.hand_check import judge_path

    sys.exit(run_check(list(files), as_json=as_json, rules_path=rules_path, judge=judge_path))


CONFIG_OPTION = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="文件",
    help="配置文件（默认：当前目录下的 mailbot.toml）。")


def _settings(config_path: Path | None, **overrides: Any) -> "Settings":
    from mailbot.config import load_settings
    from mailbot.errors import ConfigError

    try:
        return load_settings(config_path, **overrides)
    except ConfigError as exc:
        click.echo(f"mailbot：配置有误，请联系技术人员：\n{exc}", err=True)
        sys.exit(2)


def _hold_lock(settings: "Settings") -> None:
    """Take the state directory's daemon lock for the rest of the command (``run``, ``poll``,
    ``demo``), or exit 1 naming the holder (one daemon per state dir)."""
    from mailbot.state.lock import InstanceLocked, hold_instance_lock

    try:
        click.get_current_context().with_resource(hold_instance_lock(settings.state_dir))
    except InstanceLocked as exc:
        click.echo(f"mailbot：另一个 mailbot 正在使用 {exc.state_dir}（进程号 {exc.holder}），"
                   "同一数据目录只能运行一个。", err=True)
        sys.exit(1)


WAITING_FOR_DAEMON = "后台服务正在处理邮件，请稍候…"


def _hold_write(settings: "Settings") -> None:
    """Take the write lock for the rest of a staff command that changes state: wait while the
    running service finishes its current work (saying so), at most
    ``schedule.staff_wait_seconds``, then exit 1 (see ``mailbot.state.lock``)."""
    from mailbot.state.lock import WriteLockBusy, hold_write_lock

    wait = settings.schedule.staff_wait_seconds
    try:
        click.get_current_context().with_resource(hold_write_lock(
            settings.state_dir, wait=wait, on_wait=lambda: click.echo(WAITING_FOR_DAEMON, err=True)))
    except WriteLockBusy:
        click.echo(f"未执行：后台服务处理邮件已超过{wait}秒仍未完成，本次没有作任何改动。"
                   "请过几分钟再试；如果一直如此，请联系技术人员。", err=True)
        sys.exit(1)


def _configure_logging(settings: "Settings", *, staff: bool) -> None:
    """The daemon's log on stdout; a staff command's only its errors, on stderr."""
    from mailbot.logs import configure_logging, configure_staff_logging

    if staff:
        configure_staff_logging(settings.log_format)
    else:
        configure_logging(settings.log_format)


def _assemble(settings: "Settings", actor: str = "daemon", *, lock: str | None = "daemon") -> tuple[Any, Any]:
    """Open everything for a command, after taking its lock for the rest of the command:
    ``"daemon"`` (run, poll, demo: one per state dir), ``"write"`` (a staff command that
    changes state: waits for the running service's current work), None (reads only)."""
    from mailbot.assembly import assemble
    from mailbot.errors import MailbotError
    from mailbot.logs import get_logger

    _configure_logging(settings, staff=lock == "write")
    log = get_logger()
    if lock == "daemon":
        _hold_lock(settings)
    elif lock == "write":
        _hold_write(settings)
    try:
        return assemble(settings, log, actor=actor), log
    except MailbotError as exc:
        click.echo(f"mailbot：无法启动：{exc}", err=True)
        sys.exit(2)


@main.command()
@CONFIG_OPTION
def poll(config_path: Path | None) -> None:
    """收取并处理一次新邮件，然后退出。

    收取新邮件、登记、发送回复、归档邮件；在终端上显示进度条，结束时显示汇总。

    \b
    例如：
      mailbot poll --config /etc/mailbot/mailbot.toml
    """
    from mailbot.errors import MailbotError

    from mailbot.state.lock import hold_write_lock

    parts, log = _assemble(_settings(config_path))
    try:
        with hold_write_lock(parts.settings.state_dir):  # a staff command may be finishing
            if sys.stderr.isatty():
                from mailbot.forms.check_report import progress_bar

                with progress_bar("处理邮件") as advance:
                    report = parts.intake.poll_once(progress=advance)
            else:
                report = parts.intake.poll_once()
    except MailbotError as exc:
        log.error("poll_failed", error=str(exc))
        _record_poll(parts.state, str(exc))
        click.echo(f"mailbot：收取失败：{exc}", err=True)
        sys.exit(1)
    else:
        _record_poll(parts.state, None)
    finally:
        parts.close()
    log.info("poll_done", fetched=report.fetched, recorded=report.recorded, outcomes=report.outcomes,
             sent=report.sent.sent, failed=report.failed)
    click.echo(poll_summary(report.fetched, report.recorded, report.sent.sent, report.failed), err=True)


def poll_summary(fetched: int, recorded: int, sent: int, failed: int) -> str:
    """The one line staff read after ``mailbot poll`` (the log line keeps the numbers for machines)."""
    return f"收取{fetched}封，登记{recorded}封，发出回复{sent}封，处理失败{failed}封。"


def _record_poll(state: Any, error: str | None) -> None:
    """Record the poll's result for the digest's health section (best effort)."""
    from mailbot.office import health

    try:
        if error is None:
            health.record_poll_ok(state)
        else:
            health.record_poll_failed(state, error)
    except Exception:  # noqa: BLE001 - the database may be what failed
        pass


@main.command()
@CONFIG_OPTION
def run(config_path: Path | None) -> None:
    """运行服务：定时收取并即时接收新邮件，每天给工作人员发送日报。

    收到 SIGTERM 时正常停止；同一状态目录只能运行一个。
    """
    from mailbot.daemon import Daemon
    from mailbot.errors import MailbotError

    parts, log = _assemble(_settings(config_path))

    def digest_job() -> None:
        """Queue the daily digest and send it at once (not at the next poll: the mailbox may be down).
        The digest's module (openpyxl, for its roster) is imported here, not at start."""
        from mailbot.office.digest import queue_digest

        if queue_digest(parts.state, parts.rules, parts.settings, parts.intake.renderer):
            parts.intake.send()

    daemon = Daemon(parts, log, queue_digest=digest_job)
    try:
        daemon.run()
    except MailbotError as exc:
        click.echo(f"mailbot：服务停止：{exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("eml", metavar="[邮件.eml]", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run/--no-dry-run", default=True,
              help="默认只显示处理结果和回复，不登记；加 --no-dry-run 才登记并发送。")
@click.option("--arrived", default=None, metavar="时间", help="收到时间（ISO 8601，例如 2020-11-05T10:00+08:00；默认：现在）。")
@click.option("--all", "replay_every", is_flag=True,
              help="全部重新判定：按 --rules 给出的新规则重新判定所有已存邮件，只显示会有什么变化，不改动任何数据、不发邮件。")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="文件",
              help="与 --all 一起使用：新的规则文件（如调整了名额或截止时间）。")
@CONFIG_OPTION
def replay(eml: Path | None, dry_run: bool, arrived: str | None, replay_every: bool, rules_path: Path | None,
           config_path: Path | None) -> None:
    """把一封保存的邮件重新完整处理一遍；或按新规则重新判定全部邮件，看会有什么变化。

    \b
    例如：
      mailbot replay --arrived 2020-11-05T10:00+08:00 来信.eml
      mailbot replay --all --rules 新规则.toml
    """
    import hashlib
    from datetime import datetime, timezone

    from mailbot.mail.source import FetchedMessage

    settings = _settings(config_path)
    if replay_every:
        _what_if(settings, rules_path)
        return
    if eml is None:
        _staff_error("请给出一封保存的邮件（.eml 文件），或用 --all --rules 新规则.toml。")
    parts, log = _assemble(settings, actor="replay", lock=None if dry_run else "write")
    raw = eml.read_bytes()
    try:
        when = datetime.fromisoformat(arrived) if arrived else datetime.now(timezone.utc)
    except ValueError:
        parts.close()
        _staff_error(f"收到时间“{arrived}”格式不对，请写成 2020-11-05T10:00+08:00。")
    if when.tzinfo is None:
        when = when.replace(tzinfo=settings.tz)
    sha = hashlib.sha256(raw).hexdigest()
    fetched = FetchedMessage(source="replay", uidvalidity=0, uid=0, key=sha,
                             arrived_at=when, raw=raw)
    known = parts.state.message_at(fetched.source, 0, 0, fetched.key)
    if known is not None and not dry_run:
        click.echo(f"这封邮件已作为第{known['id']}号邮件登记过（{_outcome_label(known['outcome'])}），"
                   "本次不再登记。")
        parts.close()
        return
    try:
        assessment = parts.intake.assess(fetched)
        click.echo(f"处理结果：{_outcome_label(assessment.outcome)}")
        if dry_run:
            for row in parts.intake.preview(fetched, assessment):
                click.echo(f"--- 回复 {row['to_address']}：{row['subject']}")
                click.echo(_reply_text(row["raw"]))
        else:
            parts.intake.record(fetched, assessment)
            parts.intake.send()
    finally:
        parts.close()


def _what_if(settings: "Settings", rules_path: Path | None) -> None:
    """``replay --all``: every stored message decided again under other rules, in a scratch copy."""
    from mailbot.errors import ConfigError, StateError
    from mailbot.logs import configure_logging, get_logger
    from mailbot.rules import load_rules
    from mailbot.what_if import replay_all

    if rules_path is None or not rules_path.is_file():
        click.echo("未执行：请用 --rules 指定新的规则文件" if rules_path is None else f"未执行：找不到规则文件 {rules_path}",
                   err=True)
        sys.exit(2)
    try:
        current, other = load_rules(settings.rules), load_rules(rules_path)
    except ConfigError as exc:
        click.echo(f"未执行：规则文件有误\n{exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_format)
    try:
        report = replay_all(settings, current, other, get_logger())
    except StateError as exc:
        click.echo(f"未执行：无法读取数据库（{exc}）", err=True)
        sys.exit(2)
    click.echo("\n".join(report.lines(rules_path.name)))


def _outcome_label(code: str) -> str:
    """A message outcome as staff read it (the code itself stays in the database and JSON)."""
    from mailbot.replies.render import OUTCOME_LABELS

    return {"accepted": "报名成功", **OUTCOME_LABELS}.get(code, code)


def _reply_text(raw: bytes) -> str:
    from mailbot.replies.render import reply_text

    return reply_text(raw)


@main.command()
@click.option("--before", required=True, metavar="日期", help="日期（YYYY-MM-DD，本地时区）：清除此日期之前登记的内容。")
@click.option("--staff", required=True, metavar="姓名", help="您的姓名，记入审计日志。")
@CONFIG_OPTION
def purge(before: str, staff: str, config_path: Path | None) -> None:
    """清除超过保存期限的原始邮件和个人信息；审计链仍可验证。

    \b
    例如：
      mailbot purge --before 2021-06-30 --staff 王老师
    """
    from datetime import datetime, timezone

    from mailbot.state.purge import purge_before
    from mailbot.rules import load_rules
    from mailbot.state.store import State

    settings = _settings(config_path)
    _hold_write(settings)
    try:
        cutoff = datetime.fromisoformat(before)
    except ValueError:
        _staff_error(f"日期“{before}”格式不对，请写成 2021-06-30。")
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=settings.tz)
    rules = load_rules(settings.rules)
    state = State(settings.state_dir)
    report = purge_before(state, cutoff.astimezone(timezone.utc).isoformat(timespec="seconds"),
                          actor=f"staff:{staff}", rules_version=f"{rules.campaign.id}@{rules.campaign.version}",
                          outbox_dir=settings.smtp.outbox_dir if settings.smtp.mode == "folder" else None)
    ok, n = state.verify_event_chain()
    click.echo(f"已清除{report.messages}封邮件：删除文件{report.files_removed}个，清除报名行{report.rows_cleared}行、"
               f"参训人员{report.nominees_cleared}人；审计链{'验证通过' if ok else '已损坏'}（{n}条事件）。")
    state.close()
    sys.exit(0 if ok else 1)


@main.command()
@CONFIG_OPTION
@click.option("--head", default=None, metavar="哈希",
              help="以前记下的审计链头（日报中的“审计链头”）：必须仍在日志中。")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON（英文代码，供程序和技术人员使用）。")
def verify(config_path: Path | None, head: str | None, as_json: bool) -> None:
    """用审计日志核对全部数据（只读）；发现问题时指出第一处并以退出码1结束。

    \b
    检查数据库完整性、事件哈希链、日志能否解释每封邮件、每位参训人员的状态、
    各校报名联系邮箱、每个待办事项和每封回复的发送结果，以及保存的原始邮件和
    证据文件的 SHA-256。

    \b
    例如：
      mailbot verify --head 3f2a…（以前日报中的审计链头）
    """
    import json

    from mailbot.errors import StateError
    from mailbot.office.proof import prove
    from mailbot.state.store import State

    try:
        state = State.readonly(_settings(config_path).db_path)
    except StateError as exc:
        click.echo(f"mailbot：无法打开数据库：{exc}", err=True)
        sys.exit(2)
    try:
        proof = prove(state, head=head)
    finally:
        state.close()
    if as_json:
        click.echo(json.dumps({"ok": proof.ok, "head": proof.head, "events": proof.events, "lines": proof.lines,
                               "breaks": [{"check": b.check, "where": b.where, "what": b.what} for b in proof.breaks]},
                              ensure_ascii=False, indent=2))
        sys.exit(0 if proof.ok else 1)
    for line in proof.zh_lines:
        click.echo(line)
    if proof.ok:
        click.echo(f"验证通过：事件日志能解释全部数据；审计链头 {proof.head or '（日志为空）'}")
        sys.exit(0)
    click.echo(f"第一处问题：{proof.breaks[0].zh}")
    sys.exit(1)


@main.command()
@click.argument("dest", metavar="目录", type=click.Path(file_okay=False, path_type=Path))
@CONFIG_OPTION
def backup(dest: Path, config_path: Path | None) -> None:
    """把全部数据（数据库、原始邮件、证据文件）备份到一个新的或空的目录。

    服务运行时也可以备份。用 MAILBOT_STATE_DIR=目录 mailbot verify 检查备份。

    \b
    例如：
      mailbot backup /var/backups/mailbot/2020-11-05
    """
    import os

    from mailbot.errors import StateError
    from mailbot.office.backup import backup_state

    os.umask(0o077)
    try:
        report = backup_state(_settings(config_path).db_path, dest)
    except StateError as exc:
        click.echo(f"mailbot：备份失败：{exc}", err=True)
        sys.exit(1)
    click.echo(f"已备份到 {report.dest}：数据库（{report.events}条事件，审计链头 {report.head or '（日志为空）'}），"
               f"文件{report.files}个，共{report.bytes}字节。")


@main.group()
def audit() -> None:
    """审计工具（需安装：pip install 'mailbot[audit]'）。"""


@audit.command("serve")
@click.option("--port", default=8001, type=int, metavar="端口", help="监听端口（默认 8001）。")
@click.option("--host", default="127.0.0.1", metavar="地址",
              help="监听地址（默认 127.0.0.1）；请只在本机监听，通过 SSH 访问。")
@CONFIG_OPTION
def audit_serve(port: int, host: str, config_path: Path | None) -> None:
    """用 Datasette 只读浏览数据库（表、视图、常用查询）。

    \b
    例如：
      sudo -u mailbot mailbot audit serve --port 8001
    然后打开 http://127.0.0.1:8001/
    """
    db_path = _settings(config_path).db_path
    if not db_path.is_file():
        click.echo(f"mailbot：找不到数据库 {db_path}", err=True)
        sys.exit(2)
    try:
        from mailbot.office.audit import serve
    except ImportError as exc:
        click.echo(f"mailbot：未安装 Datasette（{exc}）；请先 pip install 'mailbot[audit]'", err=True)
        sys.exit(2)
    click.echo(f"Datasette 已在 http://{host}:{port}/ 启动（只读：{db_path}）；按 Ctrl-C 停止")
    serve(db_path, host=host, port=port)


CONFIG_OPTION_CN = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="文件",
    help="配置文件（默认：当前目录下的 mailbot.toml）。")


def _staff_error(message: str, code: int = 2) -> NoReturn:
    click.echo(f"mailbot：{message}", err=True)
    sys.exit(code)


def _roster_sources(settings: "Settings") -> tuple[Any, Any]:
    """Rules and the state database, read-only, for the roster commands (errors in Chinese)."""
    from mailbot.errors import ConfigError, StateError
    from mailbot.rules import load_rules
    from mailbot.state.store import State

    try:
        rules = load_rules(settings.rules)
    except ConfigError as exc:
        _staff_error(f"规则文件有误，请联系技术人员：\n{exc}")
    try:
        return rules, State.readonly(settings.db_path)
    except StateError:
        _staff_error(f"找不到报名数据库 {settings.db_path}（尚未收取过邮件，或 --config 指定的配置不对）。")


@main.group(name="export", cls=StaffGroup)
@HELP_CN
def export_group() -> None:
    """导出数据（供培训中心工作人员使用）。"""


@export_group.command(name="roster", cls=StaffCommand)
@click.option("--program", default=None, metavar="项目",
              help="只导出一个培训项目：编号、简称、全称或代码均可（默认：全部项目）。")
@click.option("--status", default=None, metavar="状态",
              help="只导出一种状态：seated（计划名额内）、held（待审核）、waiting（候补）、withdrawn（已撤回）。")
@click.option("--format", "fmt", default="csv", metavar="csv|xlsx",
              help="文件格式：csv（默认，英文列名）或 xlsx（中文列名，每个项目一个工作表）。")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="文件",
              help="写入此文件（仅本人可读）；不指定时 CSV 直接显示在屏幕上。")
@CONFIG_OPTION_CN
@HELP_CN
def export_roster(program: str | None, status: str | None, fmt: str, out: Path | None,
                  config_path: Path | None) -> None:
    """导出参训名单（含完整身份证号和手机号，请妥善保管）。

    \b
    例如：
      mailbot export roster > 名单.csv
      mailbot export roster --program 物流管理 --status seated --format xlsx --out 物流管理.xlsx
    """
    from mailbot.office.roster_files import roster_csv, roster_xlsx
    from mailbot.office.rosters import ROSTER_STATUSES, STATUS_LABELS, RosterError, by_program, check_status
    from mailbot.office.rosters import find_program, roster_lines
    from mailbot.state.private_files import write_private_file

    if fmt not in ("csv", "xlsx"):
        _staff_error(f"不支持的格式“{fmt}”，请用 csv 或 xlsx。")
    if fmt == "xlsx" and out is None:
        _staff_error("xlsx 格式需要用 --out 指定文件名，例如 --out 名单.xlsx")
    settings = _settings(config_path)
    rules, state = _roster_sources(settings)
    try:
        chosen = find_program(rules, program) if program else None
        statuses = (check_status(status),) if status else ROSTER_STATUSES
        lines = roster_lines(state, rules, settings.tz, program=chosen, statuses=statuses)
    except RosterError as exc:
        _staff_error(str(exc))
    finally:
        state.close()
    if fmt == "xlsx":
        data = roster_xlsx(by_program(rules, lines, always=(chosen.name,) if chosen else ()))
    else:
        text = roster_csv(lines)
        if out is None:
            click.echo(text, nl=False)
            return
        data = text.encode("utf-8-sig")  # the BOM lets Excel open the Chinese text correctly
    assert out is not None
    try:
        write_private_file(out, data)
    except OSError as exc:
        _staff_error(f"无法写入 {out}：{exc.strerror}")
    counts = "，".join(f"{STATUS_LABELS[s]}{sum(1 for x in lines if x.status == s)}人" for s in statuses)
    click.echo(f"已写入 {out}：共{len(lines)}人（{counts}）。")


@main.command(cls=StaffCommand)
@click.option("--since", default=None, metavar="时间",
              help="统计起点（如 2020-11-05 或 2020-11-05T08:00，默认按本地时区）；默认：上次发送日报的时间，没有则为24小时前。")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="文件.html",
              help="把日报的网页版写入此文件（不打印文字版）。")
@click.option("--send", is_flag=True, help="发送给工作人员邮箱（staff_addresses），并记为一次已发日报。")
@CONFIG_OPTION_CN
@HELP_CN
def digest(config_path: Path | None, since: str | None, out_path: Path | None, send: bool) -> None:
    """生成报名日报：各项目名额、本时段情况、需要人工处理的事项、已报名的学校、运行状况。

    默认打印文字版；--out 写出网页版；--send 发送给工作人员。

    \b
    例如：
      mailbot digest
      mailbot digest --since 2020-11-05T08:00 --out 日报.html
    """
    from mailbot.office.digest import build_digest, queue_digest
    from mailbot.state.private_files import write_private_file

    settings = _settings(config_path)
    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            _staff_error(f"无法识别的时间“{since}”，请写成 2020-11-05 或 2020-11-05T08:00")
        if start.tzinfo is None:
            start = start.replace(tzinfo=settings.tz)
    parts, _ = _assemble(settings, actor="staff", lock="write" if send else None)
    try:
        if send:
            ids = queue_digest(parts.state, parts.rules, parts.settings, parts.intake.renderer, since=start)
            if not ids:
                _staff_error("配置中没有填写接收日报的工作人员邮箱，日报未发送；请联系技术人员填写", 1)
            parts.intake.send()
            statuses = [next(parts.state.query("SELECT status FROM outbox WHERE id = ?", [i]))["status"] for i in ids]
            if statuses.count("sent") < len(ids):
                _staff_error(f"日报已生成，但{len(ids) - statuses.count('sent')}个工作人员邮箱未能发出（"
                             + ("将在下次收信时自动重试发送，请勿重复运行本命令）" if "queued" in statuses else
                                "对方邮件服务器拒收或投递情况不明，请联系技术人员核对工作人员邮箱）"), 1)
            click.echo(f"日报已发送给{len(ids)}个工作人员邮箱")
            return
        rendered = parts.intake.renderer.render_digest(
            build_digest(parts.state, parts.rules, parts.settings, since=start))
        if out_path is not None:
            try:
                write_private_file(out_path, rendered.html.encode("utf-8"))
            except OSError as exc:
                _staff_error(f"无法写入 {out_path}：{exc.strerror}")
            click.echo(f"日报网页版已写入 {out_path}")
        else:
            click.echo(rendered.text, nl=False)
    finally:
        parts.close()


@main.group(name="rosters", cls=StaffGroup)
@HELP_CN
def rosters_group() -> None:
    """参训名单（供培训中心工作人员使用）。"""


ROSTER_ACTIONS = {
    "send": "将发送",
    "unchanged": "名单与上次发送的相同，不重发（如需重发，加 --again）",
    "no_address": "未填写收件地址，不发送（请在规则文件的 [[hosts]] 中填写）",
    "placeholder": "收件地址仍是示例地址，不发送（请在规则文件的 [[hosts]] 中改为真实地址）",
    "empty": "暂无计划名额内或候补的教师，不发送",
}


@rosters_group.command(name="send", cls=StaffCommand)
@click.option("--program", default=None, metavar="项目",
              help="只发送一个培训项目的名单：编号、简称、全称或代码均可（默认：全部项目）。")
@click.option("--dry-run/--no-dry-run", default=True,
              help="默认只显示将发送什么，不发送；加 --no-dry-run 才真正发送。")
@click.option("--staff", default=None, metavar="姓名", help="您的姓名，记入审计日志（真正发送时必填）。")
@click.option("--again", is_flag=True, help="名单未变化的承办单位也重新发送。")
@CONFIG_OPTION_CN
@HELP_CN
def rosters_send(program: str | None, dry_run: bool, staff: str | None, again: bool,
                 config_path: Path | None) -> None:
    """把各项目的参训名单（xlsx 附件）发给承办单位，每个承办单位一封。

    \b
    名单只含“计划名额内”和“候补”的教师。默认只显示将发送的内容；确认无误后加
    --no-dry-run --staff 姓名 真正发送。再次运行时，名单没有变化的承办单位不会重发。

    \b
    例如：
      mailbot rosters send
      mailbot rosters send --no-dry-run --staff 王老师
    """
    from mailbot.office.roster_mail import plan_rosters, queue_rosters
    from mailbot.office.rosters import ROSTER_STATUSES, STATUS_LABELS, RosterError, find_program
    if not dry_run and not (staff and staff.strip()):
        _staff_error("真正发送时请用 --staff 填写您的姓名（记入审计日志）。")
    settings = _settings(config_path)
    rules, state = _roster_sources(settings)
    try:
        chosen = find_program(rules, program) if program else None
    except RosterError as exc:
        state.close()
        _staff_error(str(exc))
    if not dry_run:
        state.close()
        parts, _ = _assemble(settings, actor=f"staff:{staff}", lock="write")
        state = parts.state
    plan = plan_rosters(state, rules, settings, program=chosen, again=again)
    click.echo("（试运行：以下内容不会发送。确认无误后加 --no-dry-run --staff 姓名 真正发送。）" if dry_run
               else f"发送参训名单（操作人：{staff}）：")
    for h in plan:
        click.echo(f"【{ROSTER_ACTIONS[h.action]}】{h.host}  收件地址：{h.address or '（未填写）'}")
        for name, counts in h.counts:
            shown = "，".join(f"{STATUS_LABELS[s]}{n}人" for s, n in zip(ROSTER_STATUSES, counts))
            click.echo(f"    {name}：{shown}")
    to_send = sum(1 for h in plan if h.action == "send")
    if dry_run:
        click.echo(f"共{len(plan)}个承办单位，将发送{to_send}封。")
        state.close()
        return
    try:
        ids = queue_rosters(parts.state, rules, settings, parts.intake.renderer, plan, actor=f"staff:{staff}")
        parts.intake.send()
        statuses = [next(parts.state.query("SELECT status FROM outbox WHERE id = ?", [i]))["status"] for i in ids]
    finally:
        parts.close()
    sent = statuses.count("sent")
    click.echo(f"共{len(plan)}个承办单位，已发送{sent}封" + (
        f"，{len(ids) - sent}封未能发出（将在 mailbot 下次运行时重试，或见日报“需要人工处理”）。" if sent < len(ids) else "。"))
    sys.exit(0 if sent == len(ids) else 1)


# --- staff decisions and history (Chinese: for the office's staff) --------------------------

def _need(value: str | None, option: str, what: str) -> str:
    """A required option, refused in Chinese when missing or blank."""
    if value is None or not str(value).strip():
        click.echo(f"未执行：请用 {option} 填写{what}", err=True)
        sys.exit(2)
    return str(value).strip()


def _decide(config_path: Path | None, staff: str | None, reason: str | None, act: Any) -> None:
    """Take the write lock (waiting while the service works), apply one decision (one
    transaction), send what it queued."""
    from mailbot.assembly import assemble
    from mailbot.decisions import StaffDecisions
    from mailbot.errors import DecisionRefused, MailbotError
    from mailbot.logs import get_logger
    staff, reason = _need(staff, "--staff", "您的姓名"), _need(reason, "--reason", "理由")
    settings = _settings(config_path)
    if not settings.db_path.is_file():
        click.echo(f"未执行：找不到报名数据库 {settings.db_path}（尚未收取过邮件，或 --config 指定的配置不对）", err=True)
        sys.exit(2)
    _hold_write(settings)
    _configure_logging(settings, staff=True)
    try:
        parts = assemble(settings, get_logger(), actor=f"staff:{staff}")
    except MailbotError as exc:
        click.echo(f"未执行：{exc}", err=True)
        sys.exit(2)
    try:
        try:
            result = act(StaffDecisions(parts.intake, staff), reason)
        except DecisionRefused as exc:
            click.echo(f"未执行：{exc}", err=True)
            sys.exit(1)
        click.echo(result.summary)
        if result.notified:
            click.echo(f"通知邮件：{'、'.join(result.notified)}")
        try:
            parts.intake.send()
        except MailbotError as exc:
            click.echo(f"决定已记录；通知邮件暂未发出，将在下次运行时发送（{exc}）", err=True)
    finally:
        parts.close()


def _id_hash(id_number: str | None) -> str:
    from mailbot.decisions import person_hash
    from mailbot.errors import DecisionRefused

    try:
        return person_hash(_need(id_number, "--id-number", "身份证号"))
    except DecisionRefused as exc:
        click.echo(f"未执行：{exc}", err=True)
        sys.exit(2)


STAFF = click.option("--staff", default=None, metavar="姓名", help="您的姓名（必填），记入审计日志。")
REASON = click.option("--reason", default=None, metavar="理由", help="理由（必填），记入审计日志，并在通知邮件中作为“说明”。")
ID_NUMBER = click.option("--id-number", default=None, metavar="身份证号", help="教师的身份证号。")


@main.group(cls=StaffGroup)
@HELP_CN
def decide() -> None:
    """工作人员决定：每项决定都记入审计日志，并按报名规则调整名额、邮件通知相关学校。

    每条命令都要填写 --staff（您的姓名）和 --reason（理由）。服务运行时也可直接使用：
    如果服务正在处理邮件，命令会显示“请稍候”，等处理完再执行。例：

        mailbot decide withdraw --id-number 330106199001011234 --staff 王老师 --reason 本人因病无法参训
    """


@decide.command("admit", cls=StaffCommand)
@ID_NUMBER
@click.option("--receipt", default=None, metavar="回执号", help="逾期邮件的回执号：准予登记其中的教师（可再用 --id-number 只登记一人）。")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_admit(id_number: str | None, receipt: str | None, staff: str | None, reason: str | None,
                 config_path: Path | None) -> None:
    """准予登记：待审核的教师（--id-number），或逾期邮件中的教师（--receipt）。

    有空余名额即进入计划名额内，否则按报名先后进入候补名单；逾期报名排在所有按时报名之后。
    """
    if receipt:
        only = _id_hash(id_number) if id_number else None
        _decide(config_path, staff, reason, lambda d, why: d.admit_late(receipt, why, only=only))
    else:
        h = _id_hash(id_number)
        _decide(config_path, staff, reason, lambda d, why: d.admit(h, why))


@decide.command("withdraw", cls=StaffCommand)
@ID_NUMBER
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_withdraw(id_number: str | None, staff: str | None, reason: str | None, config_path: Path | None) -> None:
    """撤销一名教师的报名；空出的名额按报名先后递补给候补教师，并邮件通知。"""
    h = _id_hash(id_number)
    _decide(config_path, staff, reason, lambda d, why: d.withdraw(h, why))


@decide.command("substitute", cls=StaffCommand)
@ID_NUMBER
@click.option("--new-id-number", default=None, metavar="身份证号", help="替换教师的身份证号。")
@click.option("--new-name", default=None, metavar="姓名", help="替换教师的姓名。")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_substitute(id_number: str | None, new_id_number: str | None, new_name: str | None, staff: str | None,
                      reason: str | None, config_path: Path | None) -> None:
    """更换参训教师（通知规定：无特殊原因不得更换，理由必填）：新教师保留原教师的项目和报名状态。"""
    h = _id_hash(id_number)
    new_id, name = _need(new_id_number, "--new-id-number", "替换教师的身份证号"), _need(new_name, "--new-name", "替换教师的姓名")
    _decide(config_path, staff, reason, lambda d, why: d.substitute(h, new_id, name, why))


@decide.command("move", cls=StaffCommand)
@ID_NUMBER
@click.option("--program", default=None, metavar="项目", help="新的培训项目（与规则文件中的项目名称一致）。")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_move(id_number: str | None, program: str | None, staff: str | None, reason: str | None,
                config_path: Path | None) -> None:
    """把一名教师调整到另一个培训项目：按其报名时间，有空余名额即进入计划名额内，否则候补；原项目空出的名额递补。"""
    h, target = _id_hash(id_number), _need(program, "--program", "新的培训项目")
    _decide(config_path, staff, reason, lambda d, why: d.move(h, target, why))


@decide.command("seats", cls=StaffCommand)
@click.option("--program", default=None, metavar="项目", help="培训项目。")
@click.option("--seats", "seats", type=int, default=None, metavar="人数", help="新的名额数。")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_seats(program: str | None, seats: int | None, staff: str | None, reason: str | None,
                 config_path: Path | None) -> None:
    """调整一个项目的名额。增加名额：候补教师按先后递补并收到通知；减少名额：计划名额内的教师不会被取消，
    只是此后有人撤销时不再递补，直到计划名额内的人数低于新名额。此决定优先于规则文件中的名额。"""
    target = _need(program, "--program", "培训项目")
    if seats is None:
        _need(None, "--seats", "新的名额数")
    _decide(config_path, staff, reason, lambda d, why: d.seats(target, int(seats or 0), why))


@decide.command("contact", cls=StaffCommand)
@click.option("--school", default=None, metavar="学校", help="学校名称。")
@click.option("--address", default=None, metavar="邮箱", help="新的报名联系邮箱。")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_contact(school: str | None, address: str | None, staff: str | None, reason: str | None,
                   config_path: Path | None) -> None:
    """指定学校的报名联系邮箱（只有它发来的报名表可以替换、删减或更改该校名单）；新旧邮箱都会收到通知。"""
    name, addr = _need(school, "--school", "学校名称"), _need(address, "--address", "新的报名联系邮箱")
    _decide(config_path, staff, reason, lambda d, why: d.contact(name, addr, why))


@decide.command("release", cls=StaffCommand)
@click.option("--receipt", default=None, metavar="回执号", help="被隔离、转工作人员或处理失败的邮件的回执号。")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_release(receipt: str | None, staff: str | None, reason: str | None, config_path: Path | None) -> None:
    """放行邮件：用保存的原始邮件重新处理（不再因发件人核验而隔离），记为新回执并正常回复发件人。"""
    r = _need(receipt, "--receipt", "回执号")
    _decide(config_path, staff, reason, lambda d, why: d.release(r, why))


@decide.command("resend", cls=StaffCommand)
@click.argument("reply_id", type=int, metavar="回复编号")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_resend(reply_id: int, staff: str | None, reason: str | None, config_path: Path | None) -> None:
    """重发一封投递情况不明或发送失败的回复（日报中的“回复#编号”）；邮件编号不变，收件人不会看到两封。"""
    _decide(config_path, staff, reason, lambda d, why: d.resend(reply_id, why))


@decide.command("resolve", cls=StaffCommand)
@click.argument("reply_id", type=int, metavar="回复编号")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_resolve(reply_id: int, staff: str | None, reason: str | None, config_path: Path | None) -> None:
    """把一封投递情况不明或发送失败的回复标记为已处理（例如已电话确认收到），不再重发。"""
    _decide(config_path, staff, reason, lambda d, why: d.resolve(reply_id, why))


@decide.command("answer", cls=StaffCommand)
@click.option("--item", "item", type=int, default=None, metavar="编号",
              help="待办事项编号（mailbot history 回执号 列出“待办事项#编号”）。")
@click.option("--receipt", default=None, metavar="回执号", help="或者：来信的回执号（该邮件只有一个待办事项时）。")
@click.option("--text", "text", default=None, metavar="答复", help="答复内容。")
@click.option("--text-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="文件", help="从文本文件读取答复内容。")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_answer(item: int | None, receipt: str | None, text: str | None, text_file: Path | None,
                  staff: str | None, reason: str | None, config_path: Path | None) -> None:
    """答复转给工作人员的来信：答复在原邮件的会话中发给发件人，待办事项随之关闭。"""
    if item is None and not receipt:
        _need(None, "--item", "待办事项编号（或用 --receipt 填写回执号）")
    body = text_file.read_text(encoding="utf-8") if text_file else _need(text, "--text", "答复内容")
    _decide(config_path, staff, reason,
            lambda d, why: d.answer(item if item is not None else d.item_of(str(receipt)), body, why))


@decide.command("close", cls=StaffCommand)
@click.option("--item", "item", type=int, default=None, metavar="编号",
              help="待办事项编号（mailbot history 回执号 列出“待办事项#编号”）。")
@click.option("--receipt", default=None, metavar="回执号", help="或者：邮件的回执号（该邮件只有一个待办事项时）。")
@STAFF
@REASON
@CONFIG_OPTION_CN
@HELP_CN
def decide_close(item: int | None, receipt: str | None, staff: str | None, reason: str | None,
                 config_path: Path | None) -> None:
    """关闭一个待办事项（不发邮件），理由记入审计日志。"""
    if item is None and not receipt:
        _need(None, "--item", "待办事项编号（或用 --receipt 填写回执号）")
    _decide(config_path, staff, reason,
            lambda d, why: d.close(item if item is not None else d.item_of(str(receipt)), why))


@main.command("history", cls=StaffCommand)
@click.argument("who", metavar="身份证号或回执号")
@click.option("--json", "as_json", is_flag=True, help="每条记录输出一行 JSON（原始事件，供技术人员和审计使用）。")
@CONFIG_OPTION_CN
@HELP_CN
def history(who: str, as_json: bool, config_path: Path | None) -> None:
    """按时间先后列出一位教师（身份证号）或一封邮件（回执号）的全部记录：收到的邮件、报名状态的每次变化、
    发出的邮件、待办事项和工作人员决定。身份证号和邮箱一律掩码显示（完整信息只能通过名单导出获得）。

    例：mailbot history 330106199001011234；mailbot history zhejiang-2020-1x-000012
    """
    from mailbot.decisions import person_hash
    from mailbot.errors import DecisionRefused, StateError
    from mailbot.office.history import message_history, person_history
    from mailbot.state.store import State

    settings = _settings(config_path)
    try:
        state = State.readonly(settings.db_path)
    except StateError as exc:
        click.echo(f"未执行：无法读取数据库（{exc}）", err=True)
        sys.exit(2)
    try:
        heading, lines = message_history(state, who.strip(), settings.tz)
        if not heading:
            try:
                heading, lines = person_history(state, person_hash(who), settings.tz)
            except DecisionRefused:
                heading = ""
    finally:
        state.close()
    if not heading:
        click.echo(f"没有找到“{who}”的记录（请填写回执号或身份证号）", err=True)
        sys.exit(1)
    if as_json:
        import json

        for line in lines:
            click.echo(json.dumps(line.event, ensure_ascii=False, sort_keys=True))
        return
    click.echo(heading)
    for line in lines:
        click.echo(line.render())


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("state/demo"), metavar="目录", help="演示数据存放的目录（默认 state/demo）。")
def demo(directory: Path) -> None:
    """演示完整流程，无需邮件服务器。

    \b
    把内置的示例邮件（虚构人员）放入本地邮箱，处理一次，并显示结果：数据库、
    写成 .eml 文件的回复、各项目名额。每次运行都重新开始。

    \b
    例如：
      mailbot demo --dir /tmp/mailbot-demo
    """
    from mailbot.demo import deliver_samples, reset_demo_dir

    directory = directory.resolve()
    try:
        reset_demo_dir(directory)
    except FileExistsError as exc:
        _staff_error(f"不能用作演示目录：{exc}")
    settings = _settings(None, state_dir=directory, log_format="console" if sys.stdout.isatty() else "json")
    delivered = deliver_samples(settings.mailbox.maildir_path, settings.tz)
    parts, _ = _assemble(settings)
    try:
        report = parts.intake.poll_once()
        click.echo("")
        click.echo(f"已放入示例邮件{len(delivered)}封：{settings.mailbox.maildir_path}")
        written = next(parts.state.query("SELECT count(*) AS n FROM outbox WHERE status = 'sent'"))["n"]
        click.echo(f"登记{report.recorded}封，写出回复{written}封")
        click.echo("")
        rows = parts.state.query(
            "SELECT m.receipt, m.arrived_at, m.sender, m.outcome, m.reason, o.kind AS reply "
            "FROM messages m LEFT JOIN outbox o ON o.message = m.id ORDER BY m.id, o.id")
        for r in rows:
            arrived = datetime.fromisoformat(r["arrived_at"]).astimezone(settings.tz).strftime("%m-%d %H:%M")
            reply = _outcome_label(r["reply"]) if r["reply"] else "-"
            click.echo(f"  {r['receipt']:<26} {arrived}  {r['sender']:<22} {_outcome_label(r['outcome'])}  "
                       f"回复：{reply}")
        click.echo("")
        click.echo("名额（计划名额内/总名额，候补）：")
        for p in parts.intake.ledger.program_summary():
            if p["seated"] or p["waiting"]:
                click.echo(f"  {p['program']}：{p['seated']}/{p['capacity']}，候补{p['waiting']}人")
        click.echo("")
        click.echo(f"回复（.eml）：{settings.smtp.outbox_dir}")
        click.echo(f"数据库：{settings.db_path}（可试：mailbot verify，或 sqlite3 'file:{settings.db_path}?mode=ro'）")
        click.echo(f"已处理的邮件：{settings.mailbox.maildir_path}/.Processed")
    finally:
        parts.close()


if __name__ == "__main__":  # pragma: no cover
    main()
