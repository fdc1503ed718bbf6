"""The first line of a reply: greet the person who wrote, by a name they gave, or just "您好！".

Where the name comes from, in order:

1. the ``From`` display name (``"赵老师" <jwc@…>``);
2. the form's 联系人, only when the 联系人 is the sender: a row of the form names the 联系人
   and gives the ``From`` address as its 电子邮箱 (the form's header has no address of its own).
   A 联系人 who is someone else ("王老师" on a form sent by 赵老师) is never greeted.

A display name is untrusted text.  It is cleaned (NFKC, invisible characters dropped), refused
whole when longer than :data:`MAX_DISPLAY_NAME` or when it holds an ``@``, then split into parts
at spaces and punctuation (``教务处-赵老师``, ``王老师（浙江某某学院）``).  Only a part made of
Chinese characters (and ``·``) is used, so no link, markup or template text can reach the reply;
:func:`mailbot.replies.render.defang` is applied on top like for every sender value.

- A part ending in a title (:data:`TITLES`: 老师, 主任, 处长, …) is used as written, at most
  :data:`MAX_GREETED` characters: ``李主任，您好！`` (never ``李主任老师``).
- Else a part that looks like a person's name (2 to 4 Chinese characters, or a name with ``·``,
  naming no unit such as 教务处 or 某某学院) gets 老师: ``张三老师，您好！`` (how the office writes
  to teachers and staff of the schools).
- Else, and for an address, Latin text or anything too long: ``您好！``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailbot.forms.model import RowVerdict
from mailbot.normalize import clean_text, normalize_email, normalize_name

MAX_DISPLAY_NAME = 40  # characters of a display name considered at all
MAX_GREETED = 8  # characters of the name in the greeting (欧阳娜娜老师, 阿依古丽·买买提)
FALLBACK = "您好！"

TITLES: tuple[str, ...] = (
    "老师", "教师", "讲师", "教授", "博士", "主任", "处长", "科长", "院长", "校长", "部长", "所长", "馆长",
    "局长", "厅长", "组长", "书记", "经理", "主管", "干事", "专员", "秘书", "会计", "女士", "先生", "同志",
)
"""Words that end a name already addressed politely: 老师 is not added after them."""

# Words that make a part a unit, a role or a mail system rather than a person's name.
_NOT_A_NAME = re.compile(
    r"学院|大学|学校|中学|职校|处$|室$|办$|部$|科$|系$|组$|中心|公司|集团|教务|科研|人事|办公|培训|报名|邮箱|"
    r"管理|系统|通知|附件|用户|网易|腾讯|客服|团队|小组|联系|学校|单位|工作")
_SEPARATORS = re.compile(r"[\s\-_—–|/\\,，、;；:：()（）\[\]【】<>《》\"'“”‘’.。!！?？*#~+=&]+")
_CHINESE_NAME = re.compile(r"^[\u4e00-\u9fff]+(?:·[\u4e00-\u9fff]+)*$")


def _greeted(part: str) -> str:
    """The name to greet for one part of a display name, with its title; "" when unusable."""
    if not _CHINESE_NAME.match(part) or len(part) > MAX_GREETED:
        return ""
    if part.endswith(TITLES):
        return part
    plain = part.replace("·", "")
    if _NOT_A_NAME.search(part) or not (2 <= len(plain) <= 4 or ("·" in part and len(plain) <= MAX_GREETED)):
        return ""
    return f"{part}老师"


def name_to_greet(candidate: str) -> str:
    """The name (with its title) a candidate text allows, else "": see the module's rules.
    The first part with a title wins over a bare name (``浙江 王老师`` greets 王老师, not 浙江)."""
    text = clean_text(candidate)
    if not text or len(text) > MAX_DISPLAY_NAME or "@" in text:
        return ""
    parts = [normalize_name(p) for p in _SEPARATORS.split(text) if p]
    titled = [p for p in parts if p.endswith(TITLES) and _greeted(p)]
    if titled:
        return titled[0]
    for part in parts:
        name = _greeted(part)
        if name:
            return name
    return ""


def greeting(display_name: str, contact: str = "", *, contact_is_sender: bool = False) -> str:
    """``赵老师，您好！`` from the display name, else from the 联系人 when the 联系人 is the
    sender, else ``您好！``."""
    for candidate in (display_name, contact if contact_is_sender else ""):
        name = name_to_greet(candidate)
        if name:
            return f"{name}，{FALLBACK}"
    return FALLBACK


def contact_is_sender(contact: str, sender: str, rows: Iterable[RowVerdict]) -> bool:
    """Whether the form's 联系人 wrote this mail: a row names the 联系人 and has the sender's
    address as its 电子邮箱 (case-insensitive)."""
    who, address = normalize_name(contact), normalize_email(sender).lower()
    if not who or not address:
        return False
    return any(normalize_name(r.name) == who and normalize_email(r.email).lower() == address for r in rows)
