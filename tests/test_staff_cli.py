"""Staff speak Chinese: every command's help, every option's help, click's own usage errors and
the configuration error are Chinese; README's staff table says what each command's help says."""

from __future__ import annotations

import os

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mailbot.cli import StaffCommand, main

ROOT = Path(__file__).resolve().parents[1]
CJK = re.compile(r"[\u4e00-\u9fff]")


def commands(cmd: click.Command = main, path: str = "mailbot") -> Iterator[tuple[str, click.Command]]:
    """Every command in the tree, groups included, with its full name."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path)
        for name in cmd.list_commands(ctx):
            yield from commands(cmd.get_command(ctx, name), f"{path} {name}")


ALL = dict(commands())


@pytest.mark.parametrize("path", sorted(ALL))
def test_every_command_is_a_staff_command_with_chinese_help(path: str) -> None:
    cmd = ALL[path]
    assert isinstance(cmd, StaffCommand)
    assert CJK.search(cmd.help or ""), f"{path} has no Chinese help"


@pytest.mark.parametrize("path", sorted(ALL))
def test_every_option_of_every_command_has_chinese_help(path: str) -> None:
    cmd = ALL[path]
    ctx = click.Context(cmd, info_name=path)
    lacking = [p.name for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not CJK.search(p.help or "")]
    assert lacking == []


def test_the_help_page_is_chinese_from_usage_to_the_help_option() -> None:
    result = CliRunner().invoke(main, ["digest", "-h"], prog_name="mailbot")
    assert (result.exit_code, result.output) == (0, "\n".join([
        "用法：mailbot digest [选项]",
        "",
        "  生成报名日报：各项目名额、本时段情况、需要人工处理的事项、已报名的学校、运行状况。",
        "",
        "  默认打印文字版；--out 写出网页版；--send 发送给工作人员。",
        "",
        "  例如：",
        "    mailbot digest",
        "    mailbot digest --since 2020-11-05T08:00 --out 日报.html",
        "",
        "选项:",
        "  --since 时间     统计起点（如 2020-11-05 或",
        "                 2020-11-05T08:00，默认按本地时区）；默认：上次发送日报的时间，没有则为24小时前。",
        "  --out 文件.html  把日报的网页版写入此文件（不打印文字版）。",
        "  --send         发送给工作人员邮箱（staff_addresses），并记为一次已发日报。",
        "  --config 文件    配置文件（默认：当前目录下的 mailbot.toml）。",
        "  -h, --help     显示本说明并退出。",
        ""]))


def run(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="mailbot")


def test_an_unknown_option_is_explained_in_chinese() -> None:
    result = run("check", "--jsn", "a.xlsx")
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", "\n".join([
        "用法：mailbot check [选项] 文件...",
        "查看说明：mailbot check --help",
        "",
        "错误：没有这个选项：--jsn。您是不是要用 --json？",
        ""]))


def test_a_missing_file_is_named_in_chinese(tmp_path: Path) -> None:
    result = run("check", str(tmp_path / "没有.xlsx"))
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        2, f"错误：文件... 的值无效：“{tmp_path / '没有.xlsx'}”不存在。")


def test_a_missing_argument_an_unknown_command_and_a_bad_number_are_chinese() -> None:
    assert [run(*args).stderr.splitlines()[-1] for args in (
        ["check"], ["chek"], ["audit", "serve", "--port", "八千"], ["purge", "--staff", "王老师"],
        ["poll", "--config"], ["poll", "extra"])] == [
        "错误：缺少参数 文件...。",
        "错误：没有这个命令：chek。您是不是要用 check？",
        "错误：--port 的值无效：“八千”不是整数。",
        "错误：缺少选项 --before。",
        "错误：选项 --config 需要一个值。",
        "错误：多余的参数：extra",
    ]


def test_a_bad_configuration_is_reported_under_a_chinese_heading_with_its_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("MAILBOT_")]:
        monkeypatch.delenv(name)  # e.g. CI's MAILBOT_CORPUS_REQUIRED: the message would name the environment too
    (tmp_path / "bad.toml").write_text("timezone = \"Mars/Olympus\"\n", encoding="utf-8")
    result = run("poll", "--config", str(tmp_path / "bad.toml"))
    assert (result.exit_code, result.stderr.splitlines()) == (2, [
        "mailbot：配置有误，请联系技术人员：",
        f"{tmp_path / 'bad.toml'}: 1 problem(s)",
        "  - timezone: Value error, unknown time zone 'Mars/Olympus'"])


def first_paragraph(cmd: click.Command) -> str:
    """The help's first paragraph, its lines joined (Chinese needs no space between them)."""
    return "".join(line.strip() for line in (cmd.help or "").strip().split("\n\n")[0].splitlines())


def test_readme_staff_table_lists_every_command_with_its_helps_first_paragraph() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("<!-- staff-commands -->", 1)[1].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^\| `(mailbot [^`]+)` \| (.+) \|$", table, re.M))
    leaves = {path: first_paragraph(cmd) for path, cmd in ALL.items() if not isinstance(cmd, click.Group)}
    assert rows == leaves


def test_poll_ends_with_a_chinese_summary_for_staff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailbot.config import load_settings
    from mailbot.demo import deliver_samples

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(tmp_path / "state"))
    settings = load_settings(None)
    delivered = deliver_samples(settings.mailbox.maildir_path, settings.tz)
    result = run("poll")
    assert (len(delivered), result.exit_code, result.stderr) == (
        10, 0, "收取10封，登记10封，发出回复9封，处理失败0封。\n")  # the out-of-office reply gets none


def test_the_options_section_lists_options_only() -> None:
    result = run("check", "-h")
    assert result.output.split("选项:\n", 1)[1].splitlines() == [
        "  --json      每个报名表输出一行 JSON（含检查代码，供程序使用，见 README）。",
        "  --rules 文件  规则文件（默认：内置规则）。",
        "  -h, --help  显示本说明并退出。"]
