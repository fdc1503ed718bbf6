"""Every loader refuses a sheet longer than its row cap instead of reading part of it."""

from __future__ import annotations

import pytest

from forms_factory import make_annex3_csv, make_annex3_docx, nominee
from mailbot.errors import UnreadableForm
from mailbot.forms.reader import read_annex3
from mailbot.limits import Limits

SMALL = Limits(max_rows=5)  # cap: 5 nominee rows + 1,000 rows of titles and blanks


@pytest.mark.parametrize(("name", "make"), [("a.csv", make_annex3_csv), ("a.docx", make_annex3_docx)])
def test_a_sheet_past_the_row_cap_is_unreadable_not_cut_short(name, make) -> None:
    data = make([nominee(1)] + [nominee(1, name="")] * 1010)  # one nominee, then a long tail
    with pytest.raises(UnreadableForm) as err:
        read_annex3(data, name, limits=SMALL)
    assert err.value.code == "too_many_rows"
