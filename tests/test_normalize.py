"""Normalisation of typed cell values: examples, then properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot.normalize import (
    clean_text,
    compact,
    match_key,
    normalize_email,
    normalize_gender,
    normalize_id_number,
    normalize_name,
    normalize_phone,
)

INVISIBLE = "\u200b\u200c\u200d\ufeff\u2060"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("３３０１０６１９９００１０１１２３ｘ", "33010619900101123X"),
        (" 330106 1990 0101 123x ", "33010619900101123X"),
        ("'33010619900101123X", "33010619900101123X"),
        (f"3301{INVISIBLE}06199001011230\u3000", "330106199001011230"),
    ],
)
def test_identity_numbers_lose_spaces_and_get_an_upper_case_x(raw, expected):
    assert normalize_id_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["+86 138 1234 5678", "86-138-1234-5678", "(+86)13812345678", "138-1234-5678",
     "１３８１２３４５６７８", "0086 13812345678", "138\u00a01234\u200b5678"],
)
def test_mobile_phones_are_reduced_to_eleven_digits(raw):
    assert normalize_phone(raw) == "13812345678"


def test_a_landline_keeps_its_area_code():
    assert normalize_phone("0571-8800 8925") == "057188008925"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("张 三", "张三"),
        ("张\u3000三\u00a0", "张三"),
        ("阿依古丽•买买提", "阿依古丽·买买提"),
        ("阿依古丽．买买提", "阿依古丽·买买提"),
        ("阿依古丽・买买提", "阿依古丽·买买提"),
        ("阿依古丽 · 买买提", "阿依古丽·买买提"),
        ("  John   Smith ", "John Smith"),
        (f"李{INVISIBLE}四", "李四"),
    ],
)
def test_names(raw, expected):
    assert normalize_name(raw) == expected


def test_full_width_text_becomes_ascii_and_whitespace_collapses():
    assert clean_text("Ｗｅｂ前端开发（中级）\t\n") == "Web前端开发(中级)"
    assert compact(" a\u3000b\u00a0c ") == "abc"


def test_emails_lose_spaces_and_a_mailto_prefix():
    assert normalize_email(" mailto:zhang san＠qq.com ") == "zhangsan@qq.com"


@pytest.mark.parametrize("raw", ["男", "男性", "M", "male", " Male ", "ｍ"])
def test_male_spellings(raw):
    assert normalize_gender(raw) == "男"


@pytest.mark.parametrize("raw", ["女", "女性", "F", "female", "FEMALE"])
def test_female_spellings(raw):
    assert normalize_gender(raw) == "女"


def test_an_unknown_gender_is_kept_as_written():
    assert normalize_gender(" 未知 ") == "未知"


def test_match_key_ignores_levels_noise_words_and_bracket_width():
    noise, levels = ["1+X", "职业技能等级证书"], ["初级", "中级", "高级"]
    assert match_key("建筑信息模型 (BIM) 职业技能等级证书（中级）", noise, levels) == "建筑信息模型bim"
    assert match_key("1+X物流管理(初级)", noise, levels) == "物流管理"


# ------------------------------------------------------------------ properties

text = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(list(INVISIBLE + "\u3000\u00a0 \t\n·•．・.（）０１Ｘx张")),
    ),
    max_size=40,
)
NORMALISERS = [clean_text, compact, normalize_id_number, normalize_phone, normalize_name,
               normalize_email, normalize_gender]


@pytest.mark.parametrize("fn", NORMALISERS, ids=lambda f: f.__name__)
@given(value=text)
def test_every_normaliser_is_idempotent(fn, value):
    once = fn(value)
    assert fn(once) == once


@pytest.mark.parametrize("fn", [compact, normalize_id_number, normalize_phone, normalize_email])
@given(value=text)
def test_compact_normalisers_leave_no_whitespace_or_invisible_characters(fn, value):
    out = fn(value)
    assert not any(ch.isspace() or ch in INVISIBLE for ch in out)


@given(value=text)
def test_clean_text_leaves_single_inner_spaces_only(value):
    out = clean_text(value)
    assert out == out.strip()
    assert "  " not in out
    assert not any(ch.isspace() and ch != " " for ch in out)
    assert not any(ch in INVISIBLE for ch in out)


@given(value=text)
def test_chinese_names_have_no_spaces_and_only_one_kind_of_dot(value):
    out = normalize_name("张" + value)
    assert " " not in out
    assert not any(ch in "•・．" for ch in out)
