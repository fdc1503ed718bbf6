"""The package keeps the shape docs/ARCHITECTURE.md draws: layers in its order, no import
cycles, each outside library imported by the modules its table names (import-linter contracts
in pyproject.toml), and a table row for every module that exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


def _table_rows() -> dict[str, str]:
    """Module path -> its "outside library" cell, from the module table."""
    rows: dict[str, str] = {}
    for line in ARCHITECTURE.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`mailbot/[\w/]+\.py`", cells[0]):
            assert cells[0].strip("`") not in rows, f"{cells[0]} has two rows"
            rows[cells[0].strip("`")] = cells[2]
    return rows


def _dotted(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def test_the_import_contracts_hold(capsys):
    from importlinter.cli import lint_imports  # what `lint-imports` runs

    exit_code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert exit_code == 0, capsys.readouterr().out


def test_the_module_table_lists_exactly_the_modules_that_exist():
    existing = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mailbot").rglob("*.py")
                if p.name != "__init__.py"}
    assert set(_table_rows()) == existing


def test_the_layers_contract_is_the_order_the_document_draws():
    block = ARCHITECTURE.split("Top to bottom:\n\n```\n", 1)[1].split("```", 1)[0]
    (layers,) = [c for c in CONTRACTS if c["type"] == "layers"]
    assert block.splitlines() == layers["layers"]


def test_each_outside_library_is_imported_where_the_table_says():
    from_table: dict[str, set[str]] = {}
    for path, cell in _table_rows().items():
        for library in re.findall(r"`([\w.]+)`", re.sub(r"\([^)]*\)", "", cell)):  # notes aside
            from_table.setdefault(library, set()).add(_dotted(path))
    from_contracts = {c["protected_modules"][0]: set(c["allowed_importers"])
                      for c in CONTRACTS if c["type"] == "protected"}
    assert from_table == from_contracts
