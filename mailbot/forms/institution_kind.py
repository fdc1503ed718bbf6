"""Is a 填报单位 a secondary vocational school (中职学校)?  Those register on the provincial
platform, not by email.  The keywords live in the rules file ([secondary_vocational])."""

from __future__ import annotations

from mailbot.normalize import compact
from mailbot.rules import CampaignRules


def secondary_vocational_keyword(institution: str, rules: CampaignRules) -> str | None:
    """The first keyword marking ``institution`` as a secondary vocational school, else None.

    Neutral phrases (高职高专) are removed first; names listed in ``exceptions`` never match."""
    sv = rules.secondary_vocational
    name = compact(institution)
    if not name or name in {compact(e) for e in sv.exceptions}:
        return None
    for phrase in sv.neutral_phrases:
        name = name.replace(compact(phrase), "")
    for keyword in sv.keywords:
        if compact(keyword) and compact(keyword) in name:
            return keyword
    return None


def is_secondary_vocational(institution: str, rules: CampaignRules) -> bool:
    return secondary_vocational_keyword(institution, rules) is not None
