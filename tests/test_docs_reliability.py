"""docs/RELIABILITY.md cites tests by file::name: every citation must name a real test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def test_every_cited_test_exists() -> None:
    text = (ROOT / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    citations = CITATION.findall(text)
    assert len(citations) > 40
    missing = [f"{path}::{name}" for path, name in citations
               if not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.M)]
    assert missing == []
