"""The labelled example mails in tests/intent_examples/ decide what mailbot.mail.intent answers:
every example, negatives included, as a table."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mailbot.mail.intent import asks_with_form, classify, first_lines, own_words, says_addition

EXAMPLES = tomllib.loads((Path(__file__).parent / "intent_examples" / "examples.toml").read_text("utf-8"))["example"]
WITHOUT_FORM = [e for e in EXAMPLES if not e.get("with_form")]
ADDITION = [e for e in EXAMPLES if "addition" in e]
ASKS = [e for e in EXAMPLES if "asks" in e]


def _id(e: dict) -> str:
    return f"{e['subject']}|{e['body'][:20]}"


@pytest.mark.parametrize("example", WITHOUT_FORM, ids=_id)
def test_a_mail_without_a_form_is_classified_as_labelled(example: dict) -> None:
    assert classify(example["subject"], example["body"]) == example["intent"]


@pytest.mark.parametrize("example", ADDITION, ids=_id)
def test_a_mail_says_it_only_adds_exactly_when_labelled(example: dict) -> None:
    assert says_addition(example["subject"], example["body"]) is example["addition"]


@pytest.mark.parametrize("example", ASKS, ids=_id)
def test_a_mail_with_a_form_also_asks_exactly_when_labelled(example: dict) -> None:
    assert asks_with_form(example["subject"], example["body"]) is example["asks"]


def test_the_examples_cover_every_intent_and_both_answers_of_addition_and_asks() -> None:
    assert {e["intent"] for e in WITHOUT_FORM} == {
        "out_of_office", "attachment_missing", "request", "how_to_register", "question", "thanks", "none"}
    assert {e["addition"] for e in ADDITION} == {True, False}
    assert {e["asks"] for e in ASKS} == {True, False}
    assert all(e.get("with_form") for e in ASKS)


def test_own_words_stop_at_the_quoted_mail_and_the_signature() -> None:
    body = "请问几号开班？\n谢谢\n--\n王老师\n\n在 2020年11月3日 10:00，报名系统 写道：\n> 引文"
    assert own_words(body) == "请问几号开班？\n谢谢"


def test_first_lines_are_the_senders_own_first_lines_else_the_subject() -> None:
    assert first_lines("咨询", "第一行\n\n第二行\n第三行\n第四行") == "第一行 / 第二行 / 第三行"
    assert first_lines("咨询", "") == "咨询"
