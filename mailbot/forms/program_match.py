"""Written program names -> one of the campaign's programs, or a known certificate outside the
campaign, or suggestions of the closest names (rapidfuzz).

Matching compares :func:`mailbot.normalize.match_key` keys, so case, spaces, bracket width,
``1+X``, ``职业技能等级证书``, ``培训班`` and level suffixes such as ``（中级）`` don't matter.
Aliases match exactly; a program's full or short name also matches when it is contained in
what was written (``浙江工业大学建筑信息模型（BIM）师资班``) and no other name is.  A shortened
name (``物流`` for 物流管理) matches when it begins exactly one program's names and appears in no
other name, program or outside certificate; appearing in several (``建筑``, ``汽车``) makes it
``ambiguous`` with those programs, so the finding can say which names to choose from.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz, process

from mailbot.normalize import match_key
from mailbot.rules import CampaignRules, Program

_MIN_CONTAINED_KEY = 4
_MIN_PREFIX_KEY = 2  # characters of a shortened name (3 when it is all ASCII: ``web``)


@dataclass(frozen=True)
class ProgramMatch:
    """``program`` when matched; ``outside`` names a known certificate not run this time;
    ``ambiguous`` the programs a shortened name could mean; ``suggestions`` are the closest
    programs otherwise (best first)."""

    written: str
    program: Program | None = None
    outside: str | None = None
    suggestions: tuple[Program, ...] = ()
    ambiguous: tuple[Program, ...] = ()

    @property
    def matched(self) -> bool:
        return self.program is not None


@dataclass(frozen=True)
class _Index:
    exact: dict[str, tuple[str, str]]  # key -> ("program", program key) | ("outside", name)
    contained: tuple[tuple[str, tuple[str, str]], ...]  # long names that may be embedded
    choices: tuple[tuple[str, str], ...]  # (key, program key) for fuzzy suggestions
    outside: tuple[str, ...] = ()  # keys of the certificates outside the campaign


_INDEXES: dict[int, tuple[CampaignRules, _Index]] = {}  # id(rules) -> (rules, its index)


def _index(rules: CampaignRules) -> _Index:
    """The match index of ``rules``, built once per rules object.  Looked up by identity: the
    rules are frozen, and hashing the whole pydantic model (as ``lru_cache`` did) on every row
    cost more than the match itself.  The entry keeps ``rules`` alive, so its id stays its own."""
    hit = _INDEXES.get(id(rules))
    if hit is not None and hit[0] is rules:
        return hit[1]
    if len(_INDEXES) >= 8:
        _INDEXES.clear()
    index = _build_index(rules)
    _INDEXES[id(rules)] = (rules, index)
    return index


def _build_index(rules: CampaignRules) -> _Index:
    pm = rules.program_matching

    def key(text: str) -> str:
        return match_key(text, pm.strip_words, pm.levels)

    exact: dict[str, tuple[str, str]] = {}
    contained: list[tuple[str, tuple[str, str]]] = []
    choices: list[tuple[str, str]] = []
    for p in rules.programs:
        target = ("program", p.key)
        for text in (p.name, p.short_name, *p.aliases):
            exact[key(text)] = target
            choices.append((key(text), p.key))
        for text in (p.name, p.short_name):
            if len(key(text)) >= _MIN_CONTAINED_KEY:
                contained.append((key(text), target))
    for cert in rules.outside_programs.certificates:
        target = ("outside", cert)
        exact.setdefault(key(cert), target)
        if len(key(cert)) >= _MIN_CONTAINED_KEY:
            contained.append((key(cert), target))
    outside = tuple(key(cert) for cert in rules.outside_programs.certificates)
    return _Index(exact, tuple(contained), tuple(choices), outside)


def _result(written: str, target: tuple[str, str], rules: CampaignRules) -> ProgramMatch:
    kind, value = target
    if kind == "program":
        return ProgramMatch(written, program=rules.program(value))
    return ProgramMatch(written, outside=value)


def suggest(written: str, rules: CampaignRules) -> tuple[Program, ...]:
    """The closest programs to ``written`` (at most ``program_matching.suggestion_limit``)."""
    pm = rules.program_matching
    text = match_key(written, pm.strip_words, pm.levels)
    if not text:
        return ()
    idx = _index(rules)
    best: dict[str, float] = {}
    for choice, score, pos in process.extract(
        text, [c for c, _ in idx.choices], scorer=fuzz.WRatio, limit=None,
        score_cutoff=pm.suggestion_cutoff,
    ):
        program_key = idx.choices[pos][1]
        best[program_key] = max(best.get(program_key, 0.0), score)
    ranked = sorted(best, key=lambda k: (-best[k], rules.program(k).number))
    return tuple(rules.program(k) for k in ranked[: pm.suggestion_limit])


def match_program(written: str, rules: CampaignRules) -> ProgramMatch:
    """Match what a teacher wrote in 所报证书培训班名称 against the campaign's programs."""
    pm = rules.program_matching
    text = match_key(written, pm.strip_words, pm.levels)
    if not text:
        return ProgramMatch(written)
    idx = _index(rules)
    if text in idx.exact:
        return _result(written, idx.exact[text], rules)
    found = [(k, t) for k, t in idx.contained if k in text]
    # A name embedded in a longer found name (老年照护 inside a longer title) does not count.
    found = [(k, t) for k, t in found if not any(k != k2 and k in k2 for k2, _ in found)]
    targets = {t for _, t in found}
    if len(targets) == 1:
        return _result(written, targets.pop(), rules)
    shortened = _shortened(written, text, idx, rules)
    if shortened is not None:
        return shortened
    return ProgramMatch(written, suggestions=suggest(written, rules))


def _shortened(written: str, text: str, idx: _Index, rules: CampaignRules) -> ProgramMatch | None:
    """``program`` for a shortened name that begins one program's names and appears in no other
    name; ``ambiguous`` when it appears in several; None when it names nothing."""
    if len(text) < (_MIN_PREFIX_KEY + 1 if text.isascii() else _MIN_PREFIX_KEY):
        return None
    mentioned = {pk for k, pk in idx.choices if text in k}
    if not mentioned:
        return None
    programs = tuple(p for p in rules.programs if p.key in mentioned)
    begins = {pk for k, pk in idx.choices if k.startswith(text)}
    outside = any(text in k for k in idx.outside)
    if len(mentioned) == 1 and begins == mentioned and not outside:
        return ProgramMatch(written, program=programs[0])
    return ProgramMatch(written, ambiguous=programs)
