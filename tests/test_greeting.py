"""The first line of every reply greets the person who wrote, by a name they gave, or says 您好！."""

from __future__ import annotations

import pytest

from mailbot.forms.model import RowVerdict
from mailbot.replies.greeting import contact_is_sender, greeting


@pytest.mark.parametrize(
    ("display_name", "expected"),
    [
        ("赵老师", "赵老师，您好！"),
        ("李主任", "李主任，您好！"),  # a title is kept and 老师 is not added after it
        ("科研处李处长", "科研处李处长，您好！"),
        ("王教授", "王教授，您好！"),
        ("张三", "张三老师，您好！"),  # a bare name gets 老师
        ("欧阳娜娜", "欧阳娜娜老师，您好！"),
        ("阿依古丽·买买提", "阿依古丽·买买提老师，您好！"),
        ("教务处-赵老师", "赵老师，您好！"),  # the part that names a person
        ("王老师（浙江某某职业技术学院）", "王老师，您好！"),
        ("浙江 王老师", "王老师，您好！"),  # a part with a title wins over a place name
        ("陈静 13812345678", "陈静老师，您好！"),
        ("浙江某某职业技术学院教务处", "您好！"),  # a unit, not a person
        ("教务处", "您好！"),
        ("报名", "您好！"),
        ("张", "您好！"),  # one character is not a name
        ("", "您好！"),
        ("jwc@zjxx.edu.cn", "您好！"),  # an address
        ("王老师 wang@163.com", "您好！"),  # an address in it: refused whole (a spoofing pattern)
        ("a " * 20 + "王老师", "您好！"),  # too long as a whole
        ("Zhang San", "您好！"),  # Latin text
        ("WINNER!!! 李四http://evil.example", "您好！"),  # a link glued to a name
        ("{{ 7*7 }}老师", "您好！"),  # template-looking text is never a name
        ("<b>王老师</b>", "王老师，您好！"),  # markup is a separator; only the Chinese part is used
        ("赵" * 41, "您好！"),  # too long to be a display name at all
        ("赵钱孙李周吴郑王冯老师", "您好！"),  # too long to be a name in a greeting
    ],
)
def test_the_greeting_comes_from_the_display_name(display_name: str, expected: str) -> None:
    assert greeting(display_name) == expected


def _row(name: str, email: str) -> RowVerdict:
    return RowVerdict(row=4, program="物流管理职业技能等级证书", program_matched=True, name=name, gender="女",
                      position="教师", email=email, id_number="", phone="")


def test_the_contact_is_greeted_only_when_the_contact_is_the_sender() -> None:
    rows = [_row("王丽", "WangLi@ZJXX.edu.cn"), _row("张三", "zs@zjxx.edu.cn")]
    assert contact_is_sender("王 丽", "wangli@zjxx.edu.cn", rows) is True
    assert contact_is_sender("王丽", "jwc@zjxx.edu.cn", rows) is False  # someone else sent the form
    assert contact_is_sender("李主任", "wangli@zjxx.edu.cn", rows) is False  # the 联系人 is no row
    assert contact_is_sender("", "wangli@zjxx.edu.cn", rows) is False
    assert greeting("", "王丽", contact_is_sender=True) == "王丽老师，您好！"
    assert greeting("", "王主任", contact_is_sender=True) == "王主任，您好！"
    assert greeting("", "王丽", contact_is_sender=False) == "您好！"
    assert greeting("赵老师", "王丽", contact_is_sender=True) == "赵老师，您好！"  # the display name first
