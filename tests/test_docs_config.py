"""docs/CONFIG.md documents every configuration key, with its real default and environment
variable, and its examples behave as the page says."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from mailbot.config import Settings, load_settings
from mailbot.errors import ConfigError
from mailbot.limits import Limits

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8")
ROW = re.compile(r"^\| `([a-z_.]+)` \| (.*?) \| (.*?) \| `(MAILBOT_[A-Z_]+)` \| (.+) \|$", re.M)


def dotted_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf key of a pydantic model as (dotted key, default), sections recursed into."""
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from dotted_keys(field.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field.get_default(call_default_factory=True)


def env_name(key: str) -> str:
    return "MAILBOT_" + key.replace(".", "__").upper()


def toml_value(value: Any) -> str | None:
    """The default as written in the doc's default column, or None where the doc explains it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value == ():
        return "[]"
    assert isinstance(value, (Path, SecretStr)) or value is None, value
    return None


def documented_rows() -> dict[str, tuple[str, str, str]]:
    """key -> (type, default, environment variable) from the tables of CONFIG.md."""
    rows: dict[str, tuple[str, str, str]] = {}
    for m in ROW.finditer(DOC):
        assert m.group(1) not in rows, f"{m.group(1)} documented twice"
        rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return rows


def fenced_after(marker: str) -> str:
    """The fenced block that follows ``<!-- marker -->`` in CONFIG.md."""
    m = re.search(rf"<!-- {re.escape(marker)} -->\n```\w*\n(.*?)```", DOC, re.S)
    assert m, f"no block marked {marker}"
    return m.group(1)


@pytest.fixture(autouse=True)
def no_mailbot_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("MAILBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray mailbot.toml


SETTINGS_KEYS = dict(dotted_keys(Settings))
LIMITS_KEYS = {f"limits.{k}": v for k, v in dotted_keys(Limits)}


def test_the_walk_finds_every_section_and_every_limit() -> None:
    sections = {k.split(".")[0] for k in SETTINGS_KEYS if "." in k}
    assert sections == {"mailbox", "imap", "smtp", "reply", "schedule", "trust", "limits"}
    assert LIMITS_KEYS.items() <= SETTINGS_KEYS.items()


@pytest.mark.parametrize("key", sorted(SETTINGS_KEYS.keys() | LIMITS_KEYS.keys()))
def test_every_key_is_documented_with_its_environment_variable_and_default(key: str) -> None:
    rows = documented_rows()
    assert key in rows, f"{key} is missing from docs/CONFIG.md"
    _type, default, env = rows[key]
    assert env == env_name(key)
    expected = toml_value(SETTINGS_KEYS[key])
    if expected is not None:
        assert default.startswith(f"`{expected}`"), f"{key}: doc says {default}, code says {expected}"


def test_the_doc_documents_no_key_the_code_does_not_have() -> None:
    assert set(documented_rows()) - SETTINGS_KEYS.keys() == set()


def test_the_example_config_loads() -> None:
    settings = load_settings(ROOT / "deploy" / "mailbot.example.toml")
    assert (settings.mailbox.kind, settings.smtp.mode) == ("imap", "smtp")
    assert settings.imap.password_file == Path("/run/credentials/mailbot.service/imap-password")


def test_the_minimal_example_loads_with_the_ports_the_doc_promises(tmp_path: Path) -> None:
    path = tmp_path / "mailbot.toml"
    path.write_text(fenced_after("minimal-example"), encoding="utf-8")
    s = load_settings(path)
    assert (s.mailbox.kind, s.imap.tls, s.imap.port, s.smtp.mode, s.smtp.tls, s.smtp.port) == (
        "imap", "implicit", 0, "smtp", "starttls", 0)
    assert (s.mailbox.processed_folder, s.mailbox.failed_folder, s.mailbox.quarantine_folder) == (
        "Processed", "Failed", "Quarantine")
    assert s.imap.password.get_secret_value() == "" and s.smtp.password_file is not None


def test_the_invalid_example_reports_exactly_the_problems_shown(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(fenced_after("invalid-example"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(Path("broken.toml"))
    shown = fenced_after("invalid-example-output").splitlines()
    assert shown[0] == "mailbot：配置有误，请联系技术人员："
    assert str(caught.value).splitlines() == shown[1:]


def test_environment_overrides_one_key_and_keeps_the_rest_of_the_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILBOT_IMAP__HOST", "imap2.example.edu.cn")
    monkeypatch.setenv("MAILBOT_STAFF_ADDRESSES", '["a@example.edu.cn"]')
    s = load_settings(ROOT / "deploy" / "mailbot.example.toml")
    assert (s.imap.host, s.imap.user, s.imap.port) == ("imap2.example.edu.cn", "shengpei@zjut.edu.cn", 993)
    assert s.staff_addresses == ("a@example.edu.cn",)


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "mailbot.toml").write_text('state_dir = "state"\n[imap]\npassword_file = "pw"\n', encoding="utf-8")
    s = load_settings(conf / "mailbot.toml")
    assert (s.state_dir, s.imap.password_file, s.smtp.outbox_dir, s.mailbox.maildir_path) == (
        conf / "state", conf / "pw", conf / "state" / "outbox", conf / "state" / "maildir")


def test_cross_key_problems_are_reported_as_the_doc_quotes_them(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[mailbox]\nkind = "imap"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    (problem,) = caught.value.problems
    assert f"`{problem}`" in DOC
    path.write_text('[imap]\nhost = "imap.example.edu.cn"\ntls = "plain"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    (problem,) = caught.value.problems
    assert f"`{problem}`" in DOC
