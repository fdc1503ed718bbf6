"""Same reading or same refusal: ``read_annex3`` over a fixed set of files, recorded once and
compared after a change to the reader (speed work must keep every output).

The files: the golden forms and fixtures (xlsx, xls, ods, docx, csv), the corpus spreadsheets
when present, forms generated in many layouts (``tests/forms_factory.py``), and randomly
damaged copies of them (bytes flipped, cut, zeroed or repeated in the container; bytes of a
sheet's XML changed and the package re-zipped).  For each: the reading (every field, every
cell's text, number flag and coordinate), and for spreadsheets the ``sheet_cells`` of the
sheet read; or the refusal's class, code, message and detail.

Run: ``.venv/bin/python benchmarks/form_equivalence.py --record /tmp/before.json`` at the base,
then ``--compare /tmp/before.json`` after the change (exit status 1 on any difference).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import re
import resource
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _base_files() -> list[tuple[str, bytes]]:
    files = []
    for folder in (ROOT / "tests" / "golden", ROOT / "tests" / "fixtures"):
        for path in sorted(folder.iterdir()):
            if path.suffix not in (".json", ".py") and path.is_file():
                files.append((f"{folder.name}/{path.name}", path.read_bytes()))
    corpus = Path(os.environ.get("MAILBOT_CORPUS") or ROOT.parent / "shared" / "corpus") / "spreadsheets"
    if corpus.is_dir():
        for path in sorted(corpus.rglob("*")):
            if path.is_file() and path.suffix.lower() not in (".md", ".tsv", ".json"):
                files.append((f"corpus/{path.relative_to(corpus)}", path.read_bytes()))
    return files


def _generated() -> list[tuple[str, bytes]]:
    from forms_factory import (Layout, make_annex3_csv, make_annex3_docx, make_annex3_xlsx, nominee,
                               with_formulas)

    rng = random.Random(7)
    out = []
    layouts = [
        Layout(), Layout(title=False), Layout(title_merged=False), Layout(blank_rows_before_header=3),
        Layout(header_block="colon"), Layout(header_block="one_cell"), Layout(header_block="none"),
        Layout(column_order=(0, 2, 1, 3, 4, 6, 5, 7)), Layout(extra_columns=("备注",)),
        Layout(start_column=3), Layout(numbered_empty_rows=2), Layout(footer=False),
        Layout(after_footer=("合计", "制表人")), Layout(sheet_name="附件3"),
        Layout(header=("编号", "证书名称", "教师姓名", "性别", "职称", "邮箱", "身份证号码", "手机号码")),
        Layout(header=("序号", "姓名", "身份证号", "性别", "职务", "电子邮箱", "手机", "备注")),
        Layout(header=("No.", "培训项目", "姓名", "性别", "职务/职称", "E-mail", "身份证", "联系电话")),
        Layout(header=("序号", "所报证书培训班名称", "姓名", "性别", "职务", "电子邮箱", "身份证号", "手机"),
               start_column=2, blank_rows_before_header=1, header_block="colon"),
    ]
    for i, layout in enumerate(layouts * 3):
        rows = [nominee(i * 10 + k, **_variation(rng, k)) for k in range(1, rng.randint(1, 12) + 1)]
        data = make_annex3_xlsx(rows, institution=f"浙江第{i}职业技术学院", layout=layout,
                                extra_sheets=[("说明", [["填表说明"], ["a", 1]])] if i % 5 == 0 else (),
                                extra_sheets_first=i % 10 == 0)
        data = _deterministic(data)
        out.append((f"gen/xlsx-{i}", data))
        if i % 4 == 0:
            header_row = 2 + (layout.blank_rows_before_header) + (0 if layout.header_block == "none" else 1)
            col = "ABCDEFGHIJ"[layout.start_column - 1 + 2]
            try:
                out.append((f"gen/xlsx-formula-{i}", _deterministic(with_formulas(
                    data, {f"{col}{header_row + 1}": ("A1&\"\"", "张三")}))))
            except AssertionError:
                pass
    for i in range(20):
        rows = [nominee(500 + i * 10 + k, **_variation(rng, k)) for k in range(1, rng.randint(1, 10) + 1)]
        out.append((f"gen/docx-{i}", _deterministic(make_annex3_docx(rows, leading_tables=i % 3))))
        out.append((f"gen/csv-{i}", make_annex3_csv(rows, encoding=("utf-8-sig", "gb18030", "utf-16")[i % 3],
                                                   delimiter=",\t;"[i % 3])))
    return out


_CORE_DATE_RE = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")


def _deterministic(data: bytes) -> bytes:
    """A generated package with fixed times (member dates, the core properties' dates), so
    that each run generates the same bytes and a form is known by its name and hash."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "docProps/core.xml":
                body = _CORE_DATE_RE.sub(rb"\g<1>2026-11-01T08:00:00Z\g<2>", body)
            dst.writestr(zipfile.ZipInfo(item.filename, (2026, 11, 1, 8, 0, 0)), body, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _variation(rng: random.Random, k: int) -> dict[str, object]:
    choice = rng.random()
    if choice < 0.1:
        return {"id_number": int("33010619850312" + f"{k:04d}")}
    if choice < 0.2:
        return {"phone": 13800000000 + k}
    if choice < 0.25:
        return {"phone": 1.38e10 + k + 0.5}
    if choice < 0.3:
        return {"name": "", "gender": ""}
    if choice < 0.35:
        return {"program": "说明：这不是页脚"}
    if choice < 0.4:
        return {"email": None, "position": 3.0}
    return {}


def _damaged(name: str, data: bytes, rng: random.Random) -> bytes:
    how = rng.randrange(6)
    if not data:
        return b"\0" * rng.randint(1, 9)
    out = bytearray(data)
    if how == 0:  # flip a few bytes
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif how == 1:  # cut
        del out[rng.randrange(len(out)):]
    elif how == 2:  # zero a run
        start = rng.randrange(len(out))
        out[start:start + rng.randint(1, 200)] = bytes(min(len(out) - start, rng.randint(1, 200)))
    elif how == 3:  # repeat a run
        start = rng.randrange(len(out))
        out[start:start] = out[start:start + rng.randint(1, 300)]
    elif data[:2] == b"PK":  # edit a member's XML and re-zip
        return _damaged_member(data, rng)
    else:
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


_XML_EDITS = (b'r="', b"<c ", b"<row", b"</c>", b"<v>", b"<f>", b"t=\"s\"", b"A", b"1", b"9", b"\"", b"<", b">",
              b"<!DOCTYPE x>", b"<is><t>", b'r="XFD1048576"', b'r="A99999"', b"<c/>", b"</row>")


def _damaged_member(data: bytes, rng: random.Random) -> bytes:
    try:
        src = zipfile.ZipFile(io.BytesIO(data))
        infos = src.infolist()
        xml_infos = [i for i in infos if i.filename.endswith(".xml")]
        target = rng.choice(xml_infos).filename if xml_infos else None
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in infos:
                body = src.read(item.filename)
                if item.filename == target or (target and "sheet" in item.filename and rng.random() < 0.5):
                    body = bytearray(body)
                    for _ in range(rng.randint(1, 4)):
                        at = rng.randrange(len(body) + 1)
                        if rng.random() < 0.5:
                            body[at:at] = rng.choice(_XML_EDITS)
                        else:
                            del body[at:at + rng.randint(1, 12)]
                    body = bytes(body)
                dst.writestr(item, body)
        return buf.getvalue()
    except Exception:
        return data[: len(data) // 2]


def corpus_files(damaged_per_file: int) -> Iterator[tuple[str, bytes]]:
    base = _base_files() + _generated()
    yield from base
    rng = random.Random(11)
    for name, data in base:
        for n in range(damaged_per_file):
            yield f"{name}~{n}", _damaged(name, data, rng)


def outcome(data: bytes) -> object:
    from mailbot.errors import FormError
    from mailbot.forms.reader import read_annex3, sheet_cells

    try:
        reading = read_annex3(data, "附件3.bin")
    except FormError as exc:
        return ["refused", type(exc).__name__, exc.code, exc.message, exc.detail]
    except BaseException as exc:  # noqa: BLE001 - an escape is a result to compare too
        if isinstance(exc, KeyboardInterrupt):
            raise
        return ["escaped", type(exc).__name__, str(exc)]
    result: list[object] = [
        "read", reading.filename, reading.file_format, reading.sheet, reading.header_row, reading.labels,
        [[row.row, {k: [c.text, c.was_number, c.coordinate] for k, c in row.cells.items()}] for row in reading.rows],
        reading.institution, reading.contact, reading.contact_phone, list(reading.missing_columns),
        list(reading.notes),
    ]
    if reading.file_format not in ("docx", "csv"):
        try:
            result.append(sheet_cells(data, reading.sheet))
        except FormError as exc:
            result.append(["refused", exc.code, exc.detail])
    return result


def outcome_isolated(data: bytes) -> object:
    """:func:`outcome` in a forked child: a damaged file may make a reader abort (what the
    contained workers are for); the death is then the result."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        status = 0
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # as a contained worker is bounded
            resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
            payload = json.dumps(outcome(data), ensure_ascii=False).encode()
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        except BaseException:  # noqa: BLE001
            status = 3
        os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or os.WEXITSTATUS(status):
        return ["died", os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)]
    return json.loads(payload)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path)
    group.add_argument("--compare", type=Path)
    ap.add_argument("--damaged", type=int, default=40, help="damaged copies per file")
    args = ap.parse_args(argv)
    results: dict[str, object] = {}
    import mailbot.forms.reader  # noqa: F401 - imported once, before the forks
    import python_calamine  # noqa: F401
    for name, data in corpus_files(args.damaged):
        key = f"{name} {hashlib.sha256(data).hexdigest()[:12]}"
        results[key] = outcome_isolated(data)
    kinds: dict[str, int] = {}
    for value in results.values():
        tag = value[0] if value[0] != "refused" else f"refused {value[2]}"  # type: ignore[index]
        kinds[tag] = kinds.get(tag, 0) + 1
    print(f"{len(results)} files: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    if args.record:
        args.record.write_text(json.dumps(results, ensure_ascii=False))
        return 0
    before = json.loads(args.compare.read_text())
    differ = [k for k in before if results.get(k) != before[k]] + [k for k in results if k not in before]
    for key in differ[:20]:
        print(f"DIFFERS {key}\n  before: {str(before.get(key))[:600]}\n  after:  {str(results.get(key))[:600]}")
    print(f"{len(differ)} of {len(before)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
