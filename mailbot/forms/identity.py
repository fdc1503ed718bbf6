"""Resident identity number (GB 11643-1999) validation, via python-stdnum ``stdnum.cn.ric``.

The birth place (first six digits) is deliberately not checked: stdnum's region table lags
behind administrative changes, and a typo there is already caught by the check digit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from enum import Enum

from stdnum.cn import ric
from stdnum.exceptions import ValidationError as StdnumValidationError


class IdProblem(str, Enum):
    LENGTH = "length"
    FORMAT = "format"
    BIRTHDATE = "birthdate"
    CHECKSUM = "checksum"


@dataclass(frozen=True)
class IdCheck:
    """Result of checking one normalised identity number."""

    problem: IdProblem | None
    birth_date: date | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@lru_cache(maxsize=4096)  # each row's number is checked by more than one row check
def check_id_number(number: str) -> IdCheck:
    """Check length, characters, birth date and check digit, in that order.

    ``number`` must already be normalised (``mailbot.normalize.normalize_id_number``)."""
    if len(number) != 18:
        return IdCheck(IdProblem.LENGTH)
    if not number[:17].isascii() or not number[:17].isdigit() or number[17] not in "0123456789X":
        return IdCheck(IdProblem.FORMAT)
    try:
        born = ric.get_birth_date(number)
    except StdnumValidationError:
        return IdCheck(IdProblem.BIRTHDATE)
    if number[17] != ric.calc_check_digit(number):
        return IdCheck(IdProblem.CHECKSUM, born)
    return IdCheck(None, born)


def age_on(born: date, day: date) -> int:
    """Age in whole years on ``day``."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def gender_from_id(number: str) -> str:
    """``男`` when the 17th digit is odd, ``女`` when even (number must be valid)."""
    return "男" if int(number[16]) % 2 else "女"


def make_id_number(prefix17: str) -> str:
    """Append the check digit to 17 digits (for synthetic test data)."""
    return prefix17 + ric.calc_check_digit(prefix17 + "0")
