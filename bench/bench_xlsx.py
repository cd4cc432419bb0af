"""Peak memory of reading an xlsx, for the poison workbooks of issue 17 (case 3).

``.venv/bin/python bench/bench_xlsx.py`` generates (untimed) into ``bench/data/xlsx/``:

- ``bomb``: the issue's case, a 6-7 MB workbook whose first sheet is 1.15 GB of XML
  (identical rows, placed by position, which deflate packs about 180:1);
- ``cells``: a valid workbook just under the cell limit (``XLSX_MAX_CELLS``): numbers in
  a dense grid, the most calamine is ever handed;
- ``text``: a valid workbook with most of the text limit (``XLSX_MAX_TEXT``) in shared
  strings copied into cells.

Each is read in a fresh process as the run reads it (``read_xlsx`` with the default
``chunk_rows``, every chunk drawn); the outcome, wall time and peak RSS (``VmHWM``) go to
stdout and ``bench/results/xlsx.json``. ``--before`` also runs calamine alone on the bomb,
which is what the run did before the size check (needs several GB of free memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data" / "xlsx"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "include"))

_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
        "</Relationships>"
    ),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
        '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
        "</Relationships>"
    ),
}
_HEAD = b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
_TAIL = b"</sheetData></worksheet>"
COLS = 20


def _letters(i: int) -> bytes:
    return bytes([65 + i]) if i < 26 else bytes([64 + i // 26, 65 + i % 26])


def _write(path: Path, rows, shared: list[str]) -> None:  # type: ignore[no-untyped-def]
    tmp = path.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, text in _PARTS.items():
            z.writestr(name, text)
        sst = "".join(f"<si><t>{s}</t></si>" for s in shared)
        z.writestr(
            "xl/sharedStrings.xml",
            '<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f"{sst}</sst>",
        )
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            fh.write(_HEAD)
            header = b'<row r="1">' + b"".join(
                b'<c r="%s1" t="inlineStr"><is><t>h%d</t></is></c>' % (_letters(i), i) for i in range(COLS)
            ) + b"</row>"
            fh.write(header)
            for block in rows:
                fh.write(block)
            fh.write(_TAIL)
    tmp.replace(path)


def generate(case: str) -> Path:
    path = DATA / f"{case}.xlsx"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    if case == "bomb":  # 1.15 GB: rows of 20 inline strings, no places given
        row = b"<row>" + b'<c t="inlineStr"><is><t>x</t></is></c>' * COLS + b"</row>"
        block = row * 1000
        rows = (block for _ in range(1_150_000_000 // len(block)))
        _write(path, rows, [])
    elif case == "cells":  # 198,000 rows x 20 numbers = 3.96 M cells (limit 4 M)
        def number_rows():  # type: ignore[no-untyped-def]
            for start in range(2, 198_002, 1000):
                yield b"".join(
                    b'<row r="%d">' % r
                    + b"".join(b'<c r="%s%d"><v>%d</v></c>' % (_letters(i), r, r + i) for i in range(COLS))
                    + b"</row>"
                    for r in range(start, min(start + 1000, 198_002))
                )
        _write(path, number_rows(), [])
    elif case == "text":  # 190,000 rows x 20 cells of 16-byte shared strings: 61 MB of copies
        shared = [f"{i:016d}" for i in range(50_000)]

        def text_rows():  # type: ignore[no-untyped-def]
            for start in range(2, 190_002, 1000):
                yield b"".join(
                    b'<row r="%d">' % r
                    + b"".join(b'<c r="%s%d" t="s"><v>%d</v></c>' % (_letters(i), r, (r * COLS + i) % 50_000) for i in range(COLS))
                    + b"</row>"
                    for r in range(start, min(start + 1000, 190_002))
                )
        _write(path, text_rows(), shared)
    else:
        raise SystemExit(f"unknown case {case}")
    return path


_CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from govbank.domain.errors import BankInputError
from govbank.ingest.xlsx import read_xlsx
started = time.perf_counter()
out = {}
if sys.argv[3] == "calamine":
    from python_calamine import CalamineWorkbook
    rows = CalamineWorkbook.from_path(sys.argv[1]).get_sheet_by_index(0).iter_rows()
    out["outcome"] = "header " + str(len(next(rows)))
else:
    try:
        parsed = read_xlsx(Path(sys.argv[1]), chunk_rows=40_000)
        out["outcome"] = "read %d rows" % sum(len(c) for c in parsed.chunks)
    except BankInputError as exc:
        out["outcome"] = exc.reason_code
out["wall_s"] = round(time.perf_counter() - started, 2)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        out["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
print(json.dumps(out))
"""


def measure(path: Path, how: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(ROOT / "include"), how],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        return {"outcome": f"died ({done.returncode}): {done.stderr.strip()[-200:]}"}
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="bomb,cells,text")
    ap.add_argument("--before", action="store_true", help="also calamine alone on the bomb")
    args = ap.parse_args()
    results = {}
    for case in args.cases.split(","):
        path = generate(case)
        with zipfile.ZipFile(path) as z:
            xml = z.getinfo("xl/worksheets/sheet1.xml").file_size
        row = {"file_mb": round(path.stat().st_size / 1e6, 2), "sheet_xml_mb": round(xml / 1e6, 1)}
        row.update(measure(path, "read_xlsx"))
        if args.before and case == "bomb":
            row["calamine_alone"] = measure(path, "calamine")
        results[case] = row
        print(f"{case:6} {json.dumps(row, ensure_ascii=False)}", flush=True)
    results["load_avg_1m_after"] = os.getloadavg()[0]
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "xlsx.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
