"""Phone validation for mainland China, via phonenumbers."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
_FIXED_TYPES = _MOBILE_TYPES | {PhoneNumberType.FIXED_LINE, PhoneNumberType.VOIP,
                                PhoneNumberType.UAN, PhoneNumberType.TOLL_FREE}
_SPLIT_RE = re.compile(r"[/、,，;；|]|或")
_EXTENSION_RE = re.compile(r"(转|分机|ext\.?|x).*$", re.IGNORECASE)


def _parse(text: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, "CN")
    except NumberParseException:
        return None


# National prefixes (carrier/IP-dialling codes) that ``parse`` may strip from a CN number, and
# the start of CN's international prefix: numbers starting so go through ``parse``.
_CN_PARSE_PREFIXES = ("11", "12", "179")


def is_mainland_mobile(number: str) -> bool:
    """True for a valid 11-digit mainland mobile (``number`` normalised, no +86)."""
    if len(number) != 11 or not number.isascii() or not number.isdigit() or number[0] != "1":
        return False
    if number.startswith(_CN_PARSE_PREFIXES):
        parsed = _parse(number)
    else:
        # What ``parse(number, "CN")`` returns for 11 plain digits starting 1 that no CN
        # prefix rule can strip: country code 86, the digits as the national number.  Built
        # directly, it costs a tenth of the parse (one per nominee row).
        parsed = phonenumbers.PhoneNumber(country_code=86, national_number=int(number))
    return (
        parsed is not None
        and parsed.country_code == 86
        and phonenumbers.is_valid_number(parsed)
        and phonenumbers.number_type(parsed) in _MOBILE_TYPES
    )


# Area code (0 + 2-3 digits) and a 7-8 digit number, or a bare local number.
_LANDLINE_RE = re.compile(r"0[1-9]\d{8,10}|[2-9]\d{6,7}")


def is_landline(number: str) -> bool:
    """True when ``number`` (normalised: no spaces or dashes) has the shape of a mainland fixed
    line, with or without its area code (``0571-8888888``, ``057188888888``, ``88888888``).
    Judged by shape only: it is used to tell a sender that a number in 手机 is not a mobile."""
    return number.isascii() and _LANDLINE_RE.fullmatch(number) is not None


def is_contact_phone(text: str) -> bool:
    """True when ``text`` holds at least one valid mainland number, mobile or fixed line
    (``0571-88008925``, ``88008925转123``, ``0571-85290492、13812345678``).  A bare
    8-digit local number is accepted as a fixed line somewhere in the province."""
    for part in _SPLIT_RE.split(text):
        part = _EXTENSION_RE.sub("", part).strip()
        digits = re.sub(r"[\s\-()（）]", "", part)
        if not digits:
            continue
        if is_mainland_mobile(digits.removeprefix("+86")):
            return True
        if re.fullmatch(r"[2-9]\d{6,7}", digits):
            return True
        parsed = _parse(digits)
        if (parsed is not None and parsed.country_code == 86
                and phonenumbers.is_valid_number(parsed)
                and phonenumbers.number_type(parsed) in _FIXED_TYPES):
            return True
    return False
