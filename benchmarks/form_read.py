"""Form read: ``read_annex3`` vs the bare reader it wraps, per form, for xlsx, xls, ods and docx.

The bare reader is the library call with nothing around it:
``CalamineWorkbook.from_filelike(...).get_sheet_by_index(0).to_python()`` for spreadsheets,
``docx.Document(...)`` plus every cell's text of its first table for Word.  ``read_annex3``
adds the container checks (zip bomb, sheet area, formulas), the header search, the header block
and the row collection.  The reader's promise floor (``promise_floor.promise_read``, no mailbot
code either, spreadsheets only) is the bare read plus what must surround it to give the same
rows: a zip's members read capped and searched for a DTD, an xls's compound file checked, the header row found by its labels,
the rows under it up to the footer; each round runs it too.

Forms: xlsx and docx are generated (``tests/forms_factory.py``: 2-10 nominees, each form its
own); xls and ods are the LibreOffice conversions in ``tests/golden`` (no converter here), each
read as many times.  Both readers run over the same bytes in alternating rounds; the figure is
the median round's CPU time per form (``time.process_time``).

In the daemon ``read_annex3`` does not run in the daemon's process but in a contained worker
(``mailbot.forms.contained``): the bytes are pickled to a warm worker process and the reading
pickled back.  ``--contained`` adds that path: wall time per form of ``read_annex3`` through the
worker pool against ``read_annex3`` in this process, in alternating rounds too (wall, as the
time is spent in two processes); the difference is the round trip's own cost.

Run: ``.venv/bin/python benchmarks/form_read.py [--forms 300] [--rounds 5] [--contained] [--json]``.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

PROGRAMS = ("物流管理", "老年照护", "Web前端开发", "智能财税", "网店运营推广", "建筑信息模型（BIM）")


def make_forms(kind: str, n: int, seed: int = 3) -> list[bytes]:
    """``n`` Annex 3 files of ``kind``."""
    from forms_factory import make_annex3_docx, make_annex3_xlsx, nominee

    if kind in ("xls", "ods"):
        data = (ROOT / "tests" / "golden" / f"official.lo.{kind}").read_bytes()
        return [data] * n
    make = make_annex3_xlsx if kind == "xlsx" else make_annex3_docx
    rng = random.Random(seed)
    forms = []
    for i in range(n):
        rows = [nominee(i * 10 + k, program=PROGRAMS[(i + k) % len(PROGRAMS)]) for k in range(1, rng.randint(2, 10) + 1)]
        forms.append(make(rows, institution=f"浙江第{i}职业技术学院"))
    return forms


def bare_calamine(data: bytes) -> int:
    from python_calamine import CalamineWorkbook

    return len(CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0).to_python())


def bare_docx(data: bytes) -> int:
    import docx

    table = docx.Document(io.BytesIO(data)).tables[0]
    return len([[cell.text for cell in row.cells] for row in table.rows])


def promise_read(data: bytes) -> int:
    """The reader's promise floor (``promise_floor.py``, no mailbot code): a zip's members read
    with their declared sizes capped and searched for a DTD (bombs), an xls's compound file
    checked by xlrd, then the bare calamine read, then the nominee rows under the header found
    by its labels."""
    from promise_floor import bounded_compound_file, bounded_members, nominee_rows
    from python_calamine import CalamineWorkbook

    if data[:4] == b"PK\x03\x04":
        bounded_members(data)
    elif data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        bounded_compound_file(data)
    return len(nominee_rows(CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0).to_python())[2])


def mailbot_read(data: bytes) -> int:
    from mailbot.forms.reader import read_annex3

    return len(read_annex3(data, "附件3.bin").rows)


def contained_read(data: bytes) -> int:
    from mailbot.forms import contained
    from mailbot.forms.reader import read_annex3
    from mailbot.limits import DEFAULT_LIMITS

    return len(contained.pool_of(DEFAULT_LIMITS).call(read_annex3, data, "附件3.bin", timeout=60).rows)


def per_form_ms(read: Callable[[bytes], int], forms: list[bytes], clock: Callable[[], float] = time.process_time) -> float:
    """CPU time of this process per form (or ``clock``'s): a read is CPU-bound and
    single-threaded, and on a shared machine the wall clock also counts the time other
    processes held the core."""
    started = clock()
    for data in forms:
        read(data)
    return (clock() - started) / len(forms) * 1000


def measure_contained(kind: str, forms: list[bytes], rounds: int) -> dict[str, object]:
    """Wall ms per form: ``read_annex3`` through a warm contained worker vs in this process."""
    from mailbot.forms import contained
    from mailbot.limits import DEFAULT_LIMITS

    contained.pool_of(DEFAULT_LIMITS).warm()
    contained_read(forms[0]), mailbot_read(forms[0])
    through: list[float] = []
    here: list[float] = []
    for _ in range(rounds):
        through.append(per_form_ms(contained_read, forms, time.perf_counter))
        here.append(per_form_ms(mailbot_read, forms, time.perf_counter))
    return {"kind": kind, "forms": len(forms), "rounds": rounds,
            "contained_wall_ms": round(statistics.median(through), 3),
            "in_process_wall_ms": round(statistics.median(here), 3),
            "round_trip_ms": round(statistics.median(a - b for a, b in zip(through, here)), 3)}


def measure(kind: str, forms: list[bytes], rounds: int) -> dict[str, object]:
    bare = bare_docx if kind == "docx" else bare_calamine
    promised = promise_read if kind != "docx" else None
    mailbot_read(forms[0]), bare(forms[0])  # imports and first-call caches out of the timing
    if promised:
        assert promised(forms[0]) == mailbot_read(forms[0]), "the promise floor reads other rows"
    ours: list[float] = []
    theirs: list[float] = []
    floor: list[float] = []
    for _ in range(rounds):
        ours.append(per_form_ms(mailbot_read, forms))
        theirs.append(per_form_ms(bare, forms))
        if promised:
            floor.append(per_form_ms(promised, forms))
    ratios = [a / b for a, b in zip(ours, theirs)]
    out = {"kind": kind, "forms": len(forms), "rounds": rounds,
           "read_annex3_ms": round(statistics.median(ours), 3), "bare_ms": round(statistics.median(theirs), 3),
           "ratio": round(statistics.median(ratios), 2), "ratio_min": round(min(ratios), 2),
           "ratio_max": round(max(ratios), 2)}
    if promised:
        out["promise_ms"] = round(statistics.median(floor), 3)
        out["promise_ratio"] = round(statistics.median(a / b for a, b in zip(ours, floor)), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forms", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kinds", default="xlsx,xls,ods,docx")
    ap.add_argument("--profile", choices=("xlsx", "xls", "ods", "docx"), help="cProfile read_annex3 on this kind")
    ap.add_argument("--contained", action="store_true",
                    help="also time read_annex3 through the contained worker pool (wall)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.profile:
        import cProfile
        import pstats

        forms = make_forms(args.profile, args.forms)
        mailbot_read(forms[0])
        prof = cProfile.Profile()
        prof.runcall(per_form_ms, mailbot_read, forms)
        pstats.Stats(prof).strip_dirs().sort_stats("tottime").print_stats(25)
        return 0
    kinds = args.kinds.split(",")
    forms = {kind: make_forms(kind, args.forms) for kind in kinds}
    results = [measure(kind, forms[kind], args.rounds) for kind in kinds]
    through = [measure_contained(kind, forms[kind], args.rounds) for kind in kinds] if args.contained else []
    if args.json:
        print(json.dumps({"results": results, "contained": through}, ensure_ascii=False))
        return 0
    print(f"{'kind':<6}{'forms':>7}{'read_annex3 ms':>16}{'bare ms':>9}{'ratio':>7}  (CPU; min-max of {args.rounds} rounds)"
          "   promise floor ms, read_annex3 / it")
    for r in results:
        print(f"{r['kind']:<6}{r['forms']:>7}{r['read_annex3_ms']:>16.3f}{r['bare_ms']:>9.3f}{r['ratio']:>7.2f}"
              f"  ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
              + (f"   {r['promise_ms']:.3f}, {r['promise_ratio']:.2f}" if "promise_ms" in r else ""))
    if through:
        print(f"\n{'kind':<6}{'forms':>7}{'contained ms':>14}{'in-process ms':>15}{'round trip ms':>15}  (wall)")
        for r in through:
            print(f"{r['kind']:<6}{r['forms']:>7}{r['contained_wall_ms']:>14.3f}{r['in_process_wall_ms']:>15.3f}"
                  f"{r['round_trip_ms']:>15.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
