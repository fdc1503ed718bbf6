"""Every outside library the package imports is a declared dependency, and nothing more is
declared than it imports (plus tzdata, the zone data ``zoneinfo`` reads where the system has
none).  The lowest allowed versions are proven by ``scripts/test-min-deps``."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "mailbot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"mailbot"}


def declared() -> set[str]:
    """The dependencies, and the ``audit`` extra (Datasette, imported by mailbot/office/audit.py only)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["audit"]
    return {canonical(re.match(r"[A-Za-z0-9_.-]+", req).group(0)) for req in requirements}


def test_the_declared_dependencies_are_exactly_the_libraries_the_package_imports_plus_tzdata():
    owners = packages_distributions()
    imported = {canonical(dist) for module in imported_top_level_modules() for dist in owners.get(module, [module])}
    assert declared() == imported | {"tzdata"}


def test_every_dependency_has_a_lower_bound():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = (project["dependencies"] + project["optional-dependencies"]["test"]
                    + project["optional-dependencies"]["audit"])
    assert [r for r in requirements if ">=" not in r] == []
