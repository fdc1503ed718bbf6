"""The roster files (CSV, xlsx) from hand-made lines, and the rules' ``[[hosts]]`` table.
(The roster from a real campaign, and ``rosters send``: test_rosters_e2e.py.)"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest
from openpyxl import load_workbook

from mailbot.bundled import default_rules_file
from mailbot.config import read_toml
from mailbot.errors import ConfigError
from mailbot.office.roster_files import roster_csv, roster_xlsx
from mailbot.office.rosters import RosterLine
from mailbot.rules import load_rules, parse_rules

BEIJING = timezone(timedelta(hours=8))


def _line(**changes: object) -> RosterLine:
    values: dict[str, object] = dict(
        program="物流管理职业技能等级证书", host_institution="浙江经济职业技术学院", institution="某某学院",
        name="张三", gender="男", position="讲师", email="t@example.edu.cn", id_number="33010619960517032X",
        phone="13812345678", status="seated", waitlist_position=None,
        arrived_at=datetime(2020, 11, 2, 10, 0, tzinfo=BEIJING), receipt="zhejiang-2020-1x-000001")
    values.update(changes)
    return RosterLine(**values)  # type: ignore[arg-type]


def test_every_value_a_spreadsheet_could_run_gets_a_leading_quote_in_csv() -> None:
    lines = [_line(name=first + "x", position=first + "1") for first in ("=", "+", "-", "@", "\t", "\r")]
    rows = list(csv.reader(io.StringIO(roster_csv(lines), newline="")))
    assert [(r[3], r[5]) for r in rows[1:]] == [
        ("'=x", "'=1"), ("'+x", "'+1"), ("'-x", "'-1"), ("'@x", "'@1"), ("'\tx", "'\t1"), ("'\rx", "'\r1")]


def test_csv_keeps_leading_zeros_and_trailing_x_and_quotes_every_field() -> None:
    text = roster_csv([_line(id_number="01010519491231002X", phone="05718888000", status="waiting",
                             waitlist_position=3)])
    assert text.splitlines()[1] == (
        '"物流管理职业技能等级证书","浙江经济职业技术学院","某某学院","张三","男","讲师","t@example.edu.cn",'
        '"01010519491231002X","05718888000","waiting","3","2020-11-02T10:00:00+08:00","zhejiang-2020-1x-000001"')


def test_xlsx_stores_numbers_as_text_and_never_a_formula() -> None:
    data = roster_xlsx([("物流管理", [_line(id_number="01010519491231002X", phone="05718888000",
                                         name="=1+1", position="@SUM(A1)")])])
    ws = load_workbook(io.BytesIO(data))["物流管理"]
    row = ws[2]
    assert [(c.value, c.data_type) for c in row[3:9]] == [
        ("=1+1", "s"), ("男", "s"), ("@SUM(A1)", "s"), ("t@example.edu.cn", "s"),
        ("01010519491231002X", "s"), ("05718888000", "s")]
    assert [c.quotePrefix for c in row[3:9]] == [True, False, True, False, False, False]


def test_an_empty_roster_is_a_workbook_with_headers_only() -> None:
    wb = load_workbook(io.BytesIO(roster_xlsx([])))
    assert wb.sheetnames == ["名单"]
    assert [c.value for c in wb["名单"][1]] == [
        "所报证书培训班名称", "承办单位", "填报单位", "姓名", "性别", "职务", "电子邮箱", "身份证号", "手机",
        "状态", "候补顺序", "报名邮件到达时间", "回执号"]


def _rules_with_hosts(*hosts: dict[str, str]) -> dict:
    data = read_toml(default_rules_file())
    data["hosts"] = list(hosts)
    return data


def test_a_hosts_table_with_mistakes_is_refused_listing_each_one() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules(_rules_with_hosts(
            {"name": "浙江工大", "email": "a@zjut.edu.cn"},
            {"name": "浙江工业大学", "email": "a@zjut.edu.cn"},
            {"name": "浙江工业大学", "email": "b@zjut.edu.cn"},
            {"name": "宁波职业技术学院", "email": "not an address"},
        ), "rules.toml")
    assert caught.value.problems == [
        "hosts[3].email: String should match pattern '^$|^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$' (got 'not an address')"]
    with pytest.raises(ConfigError) as caught:
        parse_rules(_rules_with_hosts(
            {"name": "浙江工大", "email": "a@zjut.edu.cn"},
            {"name": "浙江工业大学", "email": "a@zjut.edu.cn"},
            {"name": "浙江工业大学", "email": "b@zjut.edu.cn"},
        ), "rules.toml")
    assert caught.value.problems == ["hosts[0].name: '浙江工大' hosts no program (typo?)",
                                     "hosts[2].name: '浙江工业大学' already listed"]


def test_placeholder_and_empty_addresses_are_never_mailed() -> None:
    rules = parse_rules(_rules_with_hosts(
        {"name": "浙江工业大学", "email": "roster@example.edu.cn"},
        {"name": "宁波职业技术学院", "email": ""},
        {"name": "金华职业技术学院", "email": "peixun@jhc.edu.cn"},
    ))
    assert [(h.name, h.address) for h in rules.hosts] == [
        ("浙江工业大学", ""), ("宁波职业技术学院", ""), ("金华职业技术学院", "peixun@jhc.edu.cn")]
    assert rules.host("杭州职业技术学院") is None


def test_the_bundled_rules_name_every_host_with_a_placeholder_for_staff_to_fill_in() -> None:
    rules = load_rules()
    assert [h.name for h in rules.hosts] == list(dict.fromkeys(p.host for p in rules.programs))
    assert all(h.email.endswith("@example.edu.cn") and h.address == "" for h in rules.hosts)


# Words staff type (commands, options, values) are the only latin words the help may show.
TYPED = {"mailbot", "export", "roster", "rosters", "send", "program", "status", "format", "out", "config",
         "dry", "run", "no", "staff", "again", "help", "csv", "xlsx", "seated", "held", "waiting",
         "withdrawn", "toml", "hosts", "h"}


@pytest.mark.parametrize("command", [["export"], ["export", "roster"], ["rosters"], ["rosters", "send"]])
def test_the_roster_commands_help_speaks_chinese(command: list[str]) -> None:
    import re

    from click.testing import CliRunner

    from mailbot.cli import main

    result = CliRunner().invoke(main, [*command, "--help"], prog_name="mailbot")
    assert result.exit_code == 0
    latin = {w.lower() for w in re.findall(r"[A-Za-z]+", result.output)}
    assert latin - TYPED == set(), result.output


def test_export_without_a_database_says_so_in_chinese(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from mailbot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILBOT_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["export", "roster"])
    assert (result.exit_code, result.output) == (
        2, f"mailbot：找不到报名数据库 {tmp_path / 'state' / 'mailbot.db'}（尚未收取过邮件，或 --config 指定的配置不对）。\n")
