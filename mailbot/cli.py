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

import click

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "zhejiang-2020-1x.toml"


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
    from mailbot.check_report import run_check

    sys.exit(run_check(list(files), as_json=as_json, rules_path=rules_path))


if __name__ == "__main__":  # pragma: no cover
    main()
