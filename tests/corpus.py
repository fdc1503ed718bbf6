"""Where the real-world corpus is, for every test that reads it.

``MAILBOT_CORPUS`` names the folder (default ``<checkout>/../shared/corpus``; CI has it there).
Without it the corpus tests skip and the run says so in one line (``conftest.py``); with
``MAILBOT_CORPUS_REQUIRED=1`` (set by ``.ci/run``) a missing corpus fails them instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(os.environ.get("MAILBOT_CORPUS") or Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus").resolve()
REQUIRED = os.environ.get("MAILBOT_CORPUS_REQUIRED") == "1"
MISSING = f"real-world corpus not found at {CORPUS} (set MAILBOT_CORPUS)"


def corpus_present() -> bool:
    return (CORPUS / "MANIFEST.tsv").is_file()


def require_corpus() -> Path:
    """The corpus folder; a missing corpus skips the calling test, or fails it when required."""
    if not corpus_present():
        if REQUIRED:
            pytest.fail(f"{MISSING}, and MAILBOT_CORPUS_REQUIRED=1", pytrace=False)
        pytest.skip(MISSING)
    return CORPUS


def corpus_params(values: list[Any]) -> list[Any]:
    """``values`` for ``parametrize``; without the corpus one placeholder, so that the test runs
    and :func:`require_corpus` skips or fails it (an empty parameter set would always skip)."""
    return values if corpus_present() else [pytest.param(None, id="no-corpus")]
