"""Files shipped inside the package: the campaign rules, the reply templates, the demo's mail,
the schema document (``docs/SCHEMA.md``).

The checkout keeps them in its top-level ``rules/``, ``templates/`` and ``docs/`` folders; the
build maps those folders into the package as ``mailbot.campaign_rules``, ``mailbot.reply_templates``
and ``mailbot.schema_doc``
(``pyproject.toml``: ``package-dir``), so a plain ``pip install`` carries them. This module is
the one place that finds them, by ``importlib.resources``, whether mailbot runs from a wheel,
an editable install or the checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_RULES_FILE = "zhejiang-2020-1x.toml"


def _package_dir(package: str) -> Path:
    # Wheels and editable installs both put these packages on disk as folders; a Path is what
    # jinja2's FileSystemLoader and the config's path keys need.
    return Path(str(resources.files(package)))


def rules_dir() -> Path:
    """The bundled ``rules/`` folder."""
    return _package_dir("mailbot.campaign_rules")


def default_rules_file() -> Path:
    """The bundled campaign rules file used when the config names none."""
    return rules_dir() / DEFAULT_RULES_FILE


def templates_dir() -> Path:
    """The bundled reply and digest templates (``templates/``)."""
    return _package_dir("mailbot.reply_templates")


def demo_mail_dir() -> Path:
    """The sample mails ``mailbot demo`` delivers."""
    return _package_dir("mailbot.demo_mail")


def schema_doc() -> str:
    """``docs/SCHEMA.md``, shipped as ``mailbot.schema_doc``: the audit server's descriptions."""
    return (_package_dir("mailbot.schema_doc") / "SCHEMA.md").read_text(encoding="utf-8")
