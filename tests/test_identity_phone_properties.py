"""Property tests for identity numbers and mobile phones: what holds for every input."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.forms.identity import check_id_number, gender_from_id, make_id_number
from mailbot.normalize import normalize_id_number, normalize_phone
from mailbot.forms.phones import is_mainland_mobile

areas = st.sampled_from(["110101", "330106", "330302", "440305", "510107", "650102"])
births = st.dates(min_value=date(1946, 1, 1), max_value=date(2002, 12, 31))
orders = st.integers(min_value=0, max_value=999)


@st.composite
def identity_numbers(draw: st.DrawFn) -> str:
    return make_id_number(f"{draw(areas)}{draw(births):%Y%m%d}{draw(orders):03d}")


@given(identity_numbers())
def test_every_generated_identity_number_is_valid_and_its_gender_follows_the_order_code(number: str) -> None:
    assert check_id_number(number).ok
    assert gender_from_id(number) == ("男" if int(number[16]) % 2 else "女")


@given(identity_numbers(), st.integers(min_value=0, max_value=17), st.integers(min_value=1, max_value=9))
def test_changing_any_one_character_is_caught(number: str, position: int, shift: int) -> None:
    alphabet = "0123456789X" if position == 17 else "0123456789"
    index = alphabet.index(number[position])
    changed = number[:position] + alphabet[(index + shift) % len(alphabet)] + number[position + 1:]
    assert changed != number
    assert not check_id_number(changed).ok


@given(identity_numbers(), st.sampled_from(["", " ", "\u3000", "\u200b", "\t"]), st.booleans())
def test_typing_noise_around_an_identity_number_normalises_away(number: str, noise: str, fullwidth: bool) -> None:
    typed = number.lower()
    if fullwidth:
        typed = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in typed)
    typed = noise + typed[:6] + noise + typed[6:] + noise
    assert normalize_id_number(typed) == number


@given(identity_numbers(), st.sampled_from(["1300", "0015", "0230", "0431", "0000"]))
def test_an_impossible_birth_date_is_never_valid(number: str, month_day: str) -> None:
    bad = make_id_number(number[:10] + month_day + number[14:17])
    assert not check_id_number(bad).ok


mobiles = st.builds(lambda p, rest: f"1{p}{rest:09d}", st.sampled_from("356789"), st.integers(0, 10**9 - 1))


FORMATS = [lambda n: n, lambda n: f"+86 {n}", lambda n: f"+86-{n}", lambda n: f"86{n}",
           lambda n: f"{n[:3]}-{n[3:7]}-{n[7:]}", lambda n: f"{n[:3]} {n[3:7]} {n[7:]}"]


@given(mobiles, st.sampled_from(FORMATS), st.booleans())
@settings(max_examples=200)
def test_phone_formatting_never_changes_validity(number: str, fmt, fullwidth: bool) -> None:  # noqa: ANN001
    typed = fmt(number)
    if fullwidth:
        typed = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() or c == "+" else c for c in typed)
    assert normalize_phone(typed) == number  # the same digits, so the same verdict as the bare number


@given(st.text(max_size=30))
def test_phone_check_never_raises(text: str) -> None:
    assert is_mainland_mobile(normalize_phone(text)) in (True, False)
