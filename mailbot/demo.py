"""The zero-setup demo: bundled sample mails delivered into a local Maildir, one intake cycle.

Sample file names carry the arrival time (Beijing time) the demo gives each mail:
``NN_YYYY-MM-DDTHH-MM_label.eml``; it becomes the Maildir file name's delivery timestamp, which
the Maildir source reads as the arrival time (the deadline is judged by it, never by Date).
"""

from __future__ import annotations

import shutil
from datetime import datetime, tzinfo
from pathlib import Path

from mailbot.bundled import demo_mail_dir

MARKER = ".mailbot-demo"


def reset_demo_dir(directory: Path) -> None:
    """Empty a previous demo directory (only one the demo itself created)."""
    if directory.exists():
        if not (directory / MARKER).exists():
            raise FileExistsError(f"{directory} exists and is not a mailbot demo directory; choose another --dir")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    (directory / MARKER).write_text("created by `mailbot demo`; safe to delete\n", encoding="utf-8")


def deliver_samples(maildir: Path, tz: tzinfo) -> list[tuple[str, datetime]]:
    """Copy every sample into ``maildir/new`` named by its arrival time; returns (label, arrival)."""
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    delivered = []
    for n, sample in enumerate(sorted(demo_mail_dir().glob("*.eml")), start=1):
        _, stamp, label = sample.stem.split("_", 2)
        arrived = datetime.strptime(stamp, "%Y-%m-%dT%H-%M").replace(tzinfo=tz)
        name = f"{int(arrived.timestamp())}.M0P{n}.mailbot-demo"
        (maildir / "new" / name).write_bytes(sample.read_bytes())
        delivered.append((label, arrived))
    return delivered
