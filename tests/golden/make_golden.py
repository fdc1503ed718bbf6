"""Regenerate the golden input forms: ``.venv/bin/python tests/golden/make_golden.py``.

Writes synthetic Annex 3 forms (openpyxl / python-docx / CSV) and, when LibreOffice is
installed, converts the official-layout workbook to .xls, .ods and .docx with
``soffice --headless --convert-to``.  Expected outputs are made by
``MAILBOT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden_forms.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from forms_factory import (  # noqa: E402
    Layout, make_annex3_csv, make_annex3_docx, make_annex3_xlsx, nominee,
)

INSTITUTION = "浙江某某职业技术学院"


def forms() -> dict[str, bytes]:
    good = [nominee(1, program="物流管理"), nominee(2, program="智能财税", position="副教授")]
    return {
        "official.xlsx": make_annex3_xlsx(good, institution=INSTITUTION, layout=Layout(numbered_empty_rows=7)),
        "one_cell_header_reordered.xlsx": make_annex3_xlsx(
            good, institution=INSTITUTION,
            layout=Layout(header_block="one_cell", column_order=(0, 2, 3, 1, 4, 6, 7, 5), extra_columns=("备注",),
                          header=("序号", "证书名称", "姓 名", "性别", "职务（职称）", "E-mail", "身份证号码", "手机号码"))),
        "numbers_as_numbers.xlsx": make_annex3_xlsx(
            [nominee(1, phone=13812345678.0, id_number=330106199001011000)], institution=INSTITUTION),
        "bad_rows.xlsx": make_annex3_xlsx(
            [nominee(1, program="不存在的证书"), nominee(2, email="not-an-email", phone="1234"),
             nominee(3, id_number="330106199001011234"), nominee(4, name="")], institution=INSTITUTION),
        "official.docx": make_annex3_docx(good, institution=INSTITUTION),
        "official.csv": make_annex3_csv(good, encoding="gb18030", institution=INSTITUTION),
        "not_annex3.xlsx": make_annex3_xlsx([], layout=Layout(header=("日期", "项目", "金额"))),
        "formulas_without_values.xlsx": make_annex3_xlsx([nominee(1, seq="=ROW()-3")], institution=INSTITUTION),
        # Findings of each kind a sender must act on exactly: a shortened name accepted (物流), a
        # landline in 手机, a name fitting two programs (建筑), a name fitting none, a repeated row
        # (same teacher, same program: delete it), the same teacher on another program, and a
        # certificate not run this time on a row with a bad identity number (delete, nothing else).
        "corrections.xlsx": make_annex3_xlsx(
            [nominee(1, program="物流"), nominee(2, program="物流管理", phone="0571-8888888"),
             nominee(3, program="建筑"), nominee(4, program="物流专业"),
             nominee(5, program="智能财税"), nominee(5, seq=6, program="财税"),
             nominee(1, seq=7, program="跨境电商"),
             nominee(8, program="网络安全评估", id_number="330106199001011234")],
            institution=INSTITUTION),
    }


def convert(source: Path, target_ext: str) -> None:
    soffice = shutil.which("soffice")
    if soffice is None:
        print(f"soffice not found: skipped {source.stem}.{target_ext}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([soffice, f"-env:UserInstallation=file://{tmp}/profile", "--headless",
                        "--convert-to", target_ext, "--outdir", tmp, str(source)],
                       check=True, capture_output=True, timeout=120)
        produced = Path(tmp) / f"{source.stem}.{target_ext}"
        shutil.copyfile(produced, HERE / f"{source.stem}.lo.{target_ext}")


def main() -> None:
    for name, data in forms().items():
        (HERE / name).write_bytes(data)
    convert(HERE / "official.xlsx", "xls")
    convert(HERE / "official.xlsx", "ods")
    convert(HERE / "official.docx", "docx")


if __name__ == "__main__":
    main()
