"""The Annex 3 form as the notice prints it: its columns' keys and printed labels.

Kept apart from the readers and the rules so both can name the columns without importing each
other: the rules file validates its column keys against this table, the reader finds headers
by it, and replies list the columns in this order.
"""

from __future__ import annotations

# Canonical field keys of the Annex 3 columns, in form order, with the label as printed on
# the official form (the label is what a teacher sees and what findings name).
FIELDS: tuple[tuple[str, str], ...] = (
    ("seq", "序号"),
    ("program", "所报证书培训班名称"),
    ("name", "姓名"),
    ("gender", "性别"),
    ("position", "职务"),
    ("email", "电子邮箱"),
    ("id_number", "身份证号"),
    ("phone", "手机"),
)
OFFICIAL_LABELS: dict[str, str] = dict(FIELDS)
