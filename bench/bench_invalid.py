"""Peak memory of a run on a file of identical invalid rows (issue 17, case 2).

``.venv/bin/python bench/bench_invalid.py [--rows 500000] [--pg-url URL]`` writes (untimed)
a ``.gz`` of ``--rows`` identical ELIC rows that each break several rules (about 141 KB
for 500,000 rows) into a fresh local landing under ``bench/data/invalid/``, then runs
``process_bank`` on it in a fresh process, as the ingest task does (SQLite warehouse by
default, or the PostgreSQL database ``--pg-url`` names, whose ``govbank`` schema is
dropped and migrated first). The outcome, wall time, peak RSS (``VmHWM``), the size of
the rejects file and the ``etl_reject`` row count go to stdout and
``bench/results/invalid.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data" / "invalid"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "include"))

HEAD = "业务流水号|办理网点编号|业务类型|统一社会信用代码|企业名称|法定代表人|法定代表人证件号|业务日期|授信金额|用信金额|贷款产品|状态\n"
BAD = "B1|W404|一照贷款|91350100M000100Y44|某公司|张三|110105194912310021|2023-13-45|100|200|x|不知道\n"
NAME = "ELIC_WZB_20230601.txt.gz"


def generate(rows: int) -> Path:
    landing = DATA / "landing"
    shutil.rmtree(DATA, ignore_errors=True)
    inbox = landing / "WZB" / "inbox"
    inbox.mkdir(parents=True)
    with gzip.open(inbox / NAME, "wt", encoding="utf-8", compresslevel=9) as fh:
        fh.write(HEAD)
        for _ in range(rows):
            fh.write(BAD)
    (inbox / f"{NAME}.ok").write_text("")
    return landing


def child(pg_url: str | None) -> None:
    from sqlalchemy import func, select

    from govbank.config.settings import Settings
    from govbank.ingest.run import process_bank
    from govbank.orchestration.runtime import build_context
    from govbank.warehouse.db import make_engine, upgrade
    from govbank.warehouse.schema import PG_SCHEMA, etl_reject

    url = pg_url or f"sqlite:///{DATA / 'warehouse.db'}"
    if pg_url:
        engine = make_engine(pg_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
        engine.dispose()
    upgrade(url)
    settings = Settings.from_env({"GOVBANK_LOCAL_DIR": str(DATA), "GOVBANK_WAREHOUSE_URL": url})
    ctx = build_context(settings, b"bench-pseudonym-key-not-a-secret-000000")
    start = time.perf_counter()
    (outcome,) = process_bank(ctx, "WZB")
    wall = time.perf_counter() - start
    with ctx.engine.connect() as conn:
        reject_rows = conn.execute(select(func.count()).select_from(etl_reject)).scalar_one()
    rejects = DATA / "landing" / "WZB" / "outbox" / f"{NAME}.rejects.csv"
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({
        "outcome": f"{outcome.status} {outcome.rows_total} rows, {outcome.rows_rejected} rejected",
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(int(hwm.split()[1]) / 1024, 1),
        "rejects_csv_kb": round(rejects.stat().st_size / 1024, 1) if rejects.exists() else 0,
        "etl_reject_rows": reject_rows,
        "warehouse": "postgresql" if pg_url else "sqlite",
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=500_000)
    p.add_argument("--pg-url")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.pg_url)
        return
    landing = generate(args.rows)
    gz_kb = round((landing / "WZB" / "inbox" / NAME).stat().st_size / 1024, 1)
    cmd = [sys.executable, __file__, "--child"] + (["--pg-url", args.pg_url] if args.pg_url else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "include")})
    result = {"rows": args.rows, "gz_kb": gz_kb, **json.loads(out.stdout.strip().splitlines()[-1])}
    result["load_avg_1m_after"] = os.getloadavg()[0]
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(json.dumps(result, ensure_ascii=False, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "invalid.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    main()
