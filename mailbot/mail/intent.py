"""What a mail's own words ask for: keyword rules, no model.

Two questions are answered here, from the subject and the body (quoted earlier mail and
signatures after a ``--`` line are left out):

- :func:`classify` for a mail WITHOUT a form: is it a question or a request a person must answer
  (``question``, ``request``), a "how do I register" question mailbot answers with the blank
  form (``how_to_register``), a mail that says the form is attached but has none
  (``attachment_missing``: today's "no form" answer), thanks only (``thanks``), an out-of-office
  note (``out_of_office``), or none of these (``none``: the "no form" answer too).
- :func:`says_addition` for a mail WITH a form: does it say it only adds teachers (补报, 补充,
  追加, 增报, 新增)?  Then nobody missing from its form is withdrawn.
- :func:`asks_with_form` for a mail WITH a form: does it also ask something a person must
  answer ("请问…", "能否…", a question mark)?  The form is handled as usual, and the mail goes on
  the staff list as a question too.  Stricter than :func:`classify`: words that describe what
  the form does (更换, 撤回, 改报: the resubmission policy handles those) and "did you get it?"
  (收到了吗: the reply itself answers that) do not count.

The rules are tried in the order of :data:`RULES`; the first that matches decides.  The labelled
examples in ``tests/intent_examples/`` are the specification: a change here must keep them all.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

Intent = Literal["out_of_office", "attachment_missing", "request", "how_to_register", "question",
                 "thanks", "none"]
#: intents that put the mail on the staff list and get an acknowledgement
FOR_STAFF: frozenset[str] = frozenset({"request", "question"})

_QUOTE_START = re.compile(
    r"^(?:-{2,}\s*(?:原始邮件|Original Message|Forwarded message|转发的邮件)|>|在.{0,80}写道[:：]\s*$|"
    r"On .{0,120} wrote:\s*$|发件人[:：]|From:\s)", re.IGNORECASE)
_SIGNATURE = re.compile(r"^--\s*$")

RULES: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    ("out_of_office", re.compile(r"自动回复|休假|不在办公室|外出[^，。]{0,6}(?:期间|无法)|out of (?:the )?office|"
                                 r"auto(?:matic)?[- ]?reply", re.IGNORECASE)),
    ("attachment_missing", re.compile(r"见附件|详见附件|附件(?:是|为|中|里)|请查收|报名表(?:已|见)|随信附上|"
                                      r"附上[^，。？?]{0,10}报名表|attached", re.IGNORECASE)),
    ("request", re.compile(r"撤回|撤销|取消[^，。]{0,6}报名|退出|放弃|不参加|换人|更换|调换|替换|换成|换为|改报|"
                           r"延长|延期|推迟|宽限|能否|可否|是否可以|可不可以|能不能|可以[^，。]{0,20}[吗嘛]|"
                           r"麻烦[^，。]{0,10}(?:帮|把)|请帮")),
    ("how_to_register", re.compile(r"(?:如何|怎么|怎样|怎么样)(?:报名|填写|填报)|报名(?:方式|流程|方法|表在哪)|"
                                   r"(?:哪里|在哪)(?:下载|获取|找到)?[^，。]{0,6}(?:报名表|附件3|表格)|"
                                   r"(?:报名表|附件3|表格)[^，。]{0,6}(?:哪里|在哪)|"
                                   r"(?:发|给|提供)(?:一份|一下|我们|我|个)[^，。]{0,4}(?:报名表|附件3|表格)")),
    ("question", re.compile(r"[?？]|请问|吗[。!！]?\s*$|什么时候|何时|多少|是否|怎么|如何|为什么|咨询", re.MULTILINE)),
    ("thanks", re.compile(r"谢谢|感谢|多谢|辛苦|收到|好的|thank", re.IGNORECASE)),
)

#: a person's question or request to this office is written in Chinese; mail without a Chinese
#: character (newsletters, spam, probes) is not put before staff for a question mark
_CHINESE_ONLY = frozenset({"request", "how_to_register", "question"})
_CJK = re.compile(r"[\u4e00-\u9fff]")

_ADDITION = re.compile(r"补报|补充报名|补充[^，。]{0,6}(?:教师|老师|名单|人员)|追加|增报|新增[^，。]{0,6}(?:教师|老师|名单|人员|\d|[一二两三四五六七八九十])")


# A question asked alongside a form: a question mark, or asking words.
_ASKS = re.compile(r"[?？]|请问|想问|咨询|能否|可否|是否可以|可不可以|能不能|可以[^，。]{0,20}[吗嘛]|吗[。!！]?$")
# ... unless the clause only asks whether the mail arrived (the reply answers that).
_ONLY_RECEIVED = re.compile(r"^(?:请问)?(?:[^，。]{0,8})?(?:是否|有没有|能否)?(?:已经?)?(?:收到|收悉)(?:了)?(?:吗|没有?)?[?？]?$")
_CLAUSE = re.compile(r"[^，,;；。！!？?\n]*[。！!？?]?")


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def own_words(body: str) -> str:
    """The body without the quoted earlier mail and the signature (what this sender wrote)."""
    kept: list[str] = []
    for line in body.splitlines():
        stripped = line.strip()
        if _QUOTE_START.match(stripped) or _SIGNATURE.match(stripped):
            break
        kept.append(stripped)
    return "\n".join(ln for ln in kept if ln)


def classify(subject: str, body: str) -> Intent:
    """The intent of a mail without a form, by the first rule of :data:`RULES` that matches."""
    text = _nfkc(f"{subject}\n{own_words(body)}")
    chinese = bool(_CJK.search(text))
    for intent, pattern in RULES:
        if intent in _CHINESE_ONLY and not chinese:
            continue
        if pattern.search(text):
            return intent
    return "none"


def says_addition(subject: str, body: str) -> bool:
    """Whether the mail says its form only adds teachers (补报一名, 补充报名, 追加, 新增2名…)."""
    return bool(_ADDITION.search(_nfkc(f"{subject}\n{own_words(body)}")))


def asks_with_form(subject: str, body: str) -> bool:
    """Whether a mail that carries a form also asks a question or a favour a person must answer
    (its subject or its own words, clause by clause; written in Chinese)."""
    text = _nfkc(f"{subject}\n{own_words(body)}")
    if not _CJK.search(text):
        return False
    for match in _CLAUSE.finditer(text):
        clause = match.group(0).strip()
        if clause and _ASKS.search(clause) and not _ONLY_RECEIVED.match(clause):
            return True
    return False


def first_lines(subject: str, body: str, *, lines: int = 3, width: int = 80) -> str:
    """The first lines of what the sender wrote, for the staff list (the caller masks them)."""
    words = [ln[:width] for ln in own_words(body).splitlines()[:lines]]
    return " / ".join(words) if words else subject[:width]
