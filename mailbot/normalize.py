"""Normalisation of what people type into form cells.

Every function is pure and idempotent: ``f(f(x)) == f(x)``.  The common steps are

* drop invisible format characters (zero-width space/joiners, BOM, word joiner, soft hyphen,
  bidi marks: Unicode category ``Cf``) and control characters;
* NFKC: full-width digits, letters, brackets and the ideographic space become their ASCII forms;
* whitespace of every kind (NBSP, U+3000, tabs, line breaks) is collapsed or removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache

# Middle-dot look-alikes written inside minority names (阿依古丽·买买提); NFKC already maps
# U+FF0E (．) to "." and U+FF65 to U+30FB (・).
MIDDLE_DOT = "\u00b7"
_DOT_VARIANTS = "\u00b7\u2022\u2027\u2219\u22c5\u30fb\u0387\u16eb\u2e31\u318d\ua78f."
_DOT_RUN_RE = re.compile(f"[{re.escape(_DOT_VARIANTS)}]+")
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_WS_RE = re.compile(r"\s+")
_PHONE_SEPARATORS_RE = re.compile(r"[\s\-\u2010-\u2015\u2212.()\[\]/]")
_PHONE_PREFIX_RE = re.compile(r"^(?:\+86|0086|86)(?=1\d{10}$)")
_PUNCT_RE = re.compile(r"[^\w]|_")

_MAX_PASSES = 4


def _drop_invisible(text: str) -> str:
    if text.isprintable():  # no Cc/Cf characters at all: the common case, no per-character walk
        return text
    return "".join(
        ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cf", "Cc")
    )


def _fixpoint(step: Callable[[str], str], text: str) -> str:
    """Apply ``step`` until the text stops changing (NFKC after removals can recompose)."""
    for _ in range(_MAX_PASSES):
        new = step(text)
        if new == text:
            return new
        text = new
    return text


def _clean_once(text: str) -> str:
    text = unicodedata.normalize("NFKC", _drop_invisible(text))
    return _WS_RE.sub(" ", text).strip()


def clean_text(value: str | None) -> str:
    """Invisible characters dropped, NFKC, every whitespace run -> one space, trimmed."""
    return _fixpoint(_clean_once, value or "")


def compact(value: str | None) -> str:
    """:func:`clean_text` with all whitespace removed (codes, numbers, addresses)."""
    return _fixpoint(lambda t: _WS_RE.sub("", _clean_once(t)), value or "")


def normalize_id_number(value: str | None) -> str:
    """Identity number: compact, upper-case ``X``, an Excel text-marker apostrophe dropped."""

    def step(text: str) -> str:
        return _WS_RE.sub("", _clean_once(text)).lstrip("'\u2018\u2019`").upper()

    return _fixpoint(step, value or "")


def normalize_phone(value: str | None) -> str:
    """Phone: spaces, dashes, dots and parentheses removed; ``+86``/``0086``/``86`` dropped
    in front of an 11-digit mobile.  Anything else (letters, extensions) is kept as written."""

    def step(text: str) -> str:
        text = _PHONE_SEPARATORS_RE.sub("", _clean_once(text))
        return _PHONE_PREFIX_RE.sub("", text)

    return _fixpoint(step, value or "")


def has_cjk(text: str) -> bool:
    return bool(_CJK_RE.search(text))


def normalize_name(value: str | None) -> str:
    """Person name.  A Chinese name loses every space and its middle-dot variants become ``·``
    (one, between parts); a latin name keeps single inner spaces."""

    def step(text: str) -> str:
        text = _clean_once(text)
        if not has_cjk(text):
            return text
        text = _WS_RE.sub("", text)
        return _DOT_RUN_RE.sub(MIDDLE_DOT, text)

    return _fixpoint(step, value or "")


def normalize_email(value: str | None) -> str:
    """Email: compact (full-width ``＠`` becomes ``@``), a leading ``mailto:`` dropped."""

    def step(text: str) -> str:
        text = _WS_RE.sub("", _clean_once(text))
        return text[7:] if text.lower().startswith("mailto:") else text

    return _fixpoint(step, value or "")


_GENDERS = {
    "男": "男", "男性": "男", "男士": "男", "m": "男", "male": "男", "man": "男",
    "女": "女", "女性": "女", "女士": "女", "f": "女", "female": "女", "woman": "女",
}


def normalize_gender(value: str | None) -> str:
    """``男``/``女`` for the usual spellings (男性, M, male, F, female ...); otherwise the cleaned
    text as written (empty when blank)."""
    text = compact(value)
    return _GENDERS.get(text.casefold().rstrip("."), text)


def match_key(value: str | None, strip_words: Iterable[str] = (), levels: Iterable[str] = ()) -> str:
    """A comparison key for names such as program titles: compact, case-folded, level
    suffixes such as ``（中级）`` and the given noise words removed, punctuation dropped.

    ``match_key("建筑信息模型 (BIM) 职业技能等级证书（中级）", ["职业技能等级证书"], ["中级"])``
    is ``"建筑信息模型bim"``.
    """
    return _match_key(value or "", tuple(strip_words), tuple(levels))


@lru_cache(maxsize=8192)  # program names repeat across rows and forms
def _match_key(value: str, strip_words: tuple[str, ...], levels: tuple[str, ...]) -> str:
    text = compact(value).casefold()
    for level in levels:
        lv = compact(level).casefold()
        if lv:
            text = re.sub(rf"[(\[{{<]?{re.escape(lv)}[)\]}}>]?", "", text)
    for word in sorted((compact(w).casefold() for w in strip_words), key=len, reverse=True):
        if word:
            text = text.replace(word, "")
    return _PUNCT_RE.sub("", text)
