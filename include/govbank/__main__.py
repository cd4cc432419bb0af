"""Command line: ``python -m govbank <command>`` (migrate, kpi, ingest, marts, replay,
housekeeping, report).

``ingest`` runs the stages without Airflow, for development and benchmarks; the
daily job runs them through the DAGs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from govbank.config.settings import Settings
from govbank.domain.metrics import METRICS
from govbank.warehouse.db import make_engine, upgrade


def print_kpi(settings: Settings) -> int:
    from govbank.warehouse.schema import mart_kpi

    engine = make_engine(settings.warehouse_url)
    with engine.connect() as conn:
        as_of = conn.execute(select(mart_kpi.c.as_of).order_by(mart_kpi.c.as_of.desc())).scalar()
        if as_of is None:
            print("mart_kpi is empty: run the marts DAG first", file=sys.stderr)
            return 1
        rows = conn.execute(select(mart_kpi.c.metric, mart_kpi.c.value).where(mart_kpi.c.as_of == as_of))
        values = {metric: value for metric, value in rows}
    print(f"mart_kpi as of {as_of}")
    for m in METRICS:
        value = Decimal(values.get(m.code, 0))
        amount = m.unit == "元"
        text = f"{value:,.2f}" if amount else f"{value:,.0f}"
        if amount:
            text += f"  （{value / Decimal(100_000_000):.2f} 亿元）"
        print(f"  {m.code:<34}{m.titled:<16}{text:>22}")
    return 0


def print_reconciliation(settings: Settings, expected: Path | None) -> int:
    """Totals of mart_reconciliation, and whether they are what the demo generator intended."""
    from sqlalchemy import func

    from govbank.warehouse.schema import mart_reconciliation as r

    engine = make_engine(settings.warehouse_url)
    with engine.connect() as conn:
        got = conn.execute(
            select(func.sum(r.c.matched), func.sum(r.c.bank_only), func.sum(r.c.gov_only))
        ).one()
    totals = dict(zip(("matched", "bank_only", "gov_only"), (int(v or 0) for v in got), strict=True))
    print("mart_reconciliation: " + ", ".join(f"{k}={v}" for k, v in totals.items()))
    if expected is None:
        return 0
    rows = json.loads(expected.read_text(encoding="utf-8"))
    intended = {k: sum(row[k] for row in rows) for k in totals}
    same = intended == totals
    print(f"  intended by the generator: {intended} -> {'match' if same else 'MISMATCH'}")
    return 0 if same else 1


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Replay, then rebuild the marts (unless a dry run); 1 if nothing matched or a file was refused."""
    from govbank.config.settings import pseudonym_key_from_env
    from govbank.ingest.replay import Selection, replay, report
    from govbank.orchestration.runtime import build_context, build_marts

    ctx = build_context(settings, pseudonym_key_from_env())
    sel = Selection(args.bank, args.file, args.sha256, args.status, args.since)
    try:
        results = replay(ctx, sel, dry_run=args.dry_run)
    finally:
        ctx.landing.close()
        ctx.engine.dispose()
    print(report(results, args.dry_run))
    if not args.dry_run and any(r.outcome for r in results):
        print(build_marts(settings))
    return 0 if results and not any(r.refused for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m govbank")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate", help="create or upgrade the warehouse schema (Alembic)")
    sub.add_parser("kpi", help="print the latest mart_kpi figures")
    ing = sub.add_parser("ingest", help="process every bank's inbox once, without Airflow")
    ing.add_argument("--bank", action="append")
    rec = sub.add_parser("reconciliation", help="print the reconciliation totals")
    rec.add_argument("--expected", type=Path, help="the generator's intended counts (JSON)")
    marts = sub.add_parser("marts", help="rebuild the marts")
    marts.add_argument("--as-of", type=dt.date.fromisoformat)
    rep = sub.add_parser("replay", help="reprocess archived files through today's contract and suites")
    rep.add_argument("--bank", required=True)
    which = rep.add_mutually_exclusive_group(required=True)
    which.add_argument("--file", help="the file name the bank sent")
    which.add_argument("--sha256", help="the digest of the bytes (as in the receipt)")
    which.add_argument("--status", choices=["rejected", "partially_accepted", "accepted"])
    rep.add_argument("--since", type=dt.date.fromisoformat, help="with --status: received on or after")
    rep.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")
    hk = sub.add_parser("housekeeping", help="purge raw files and API pages past GOVBANK_RETENTION_DAYS")
    hk.add_argument("--dry-run", action="store_true", help="list what would be purged, change nothing")
    rpt = sub.add_parser("report", help="write the period's work report from the marts")
    rpt.add_argument("--from", dest="start", type=dt.date.fromisoformat, required=True)
    rpt.add_argument("--to", dest="end", type=dt.date.fromisoformat, required=True)
    rpt.add_argument("--as-of", type=dt.date.fromisoformat, help="day the stocks are counted (default: --to)")
    rpt.add_argument("--out", required=True, help="FILE.xlsx, FILE.docx, or - for the text")
    args = parser.parse_args(argv)
    if args.cmd == "replay" and args.since and not args.status:
        parser.error("--since goes with --status")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if args.cmd == "migrate":
        upgrade(settings.warehouse_url)
        return 0
    if args.cmd == "kpi":
        return print_kpi(settings)
    if args.cmd == "reconciliation":
        return print_reconciliation(settings, args.expected)
    if args.cmd == "ingest":
        from govbank.config.settings import pseudonym_key_from_env
        from govbank.ingest.run import process_bank
        from govbank.orchestration.runtime import build_context, contracts_and_problems

        broken = contracts_and_problems(settings)[1]
        ctx = build_context(settings, pseudonym_key_from_env())
        for bank in args.bank or ctx.landing.bank_codes():
            if bank in broken:  # logged by contracts_and_problems; the other banks go on
                continue
            process_bank(ctx, bank)
        return 1 if broken else 0
    if args.cmd == "replay":
        return run_replay(settings, args)
    if args.cmd == "housekeeping":
        from govbank.orchestration.housekeeping import housekeeping

        result = housekeeping(settings, dry_run=args.dry_run)
        print(result.report())
        return 0
    if args.cmd == "marts":
        from govbank.orchestration.runtime import build_marts

        print(build_marts(settings, args.as_of))
        return 0
    if args.cmd == "report":
        from govbank.report import write_report

        engine = make_engine(settings.warehouse_url)
        try:
            with engine.connect() as conn:
                text = write_report(conn, args.start, args.end, args.out, args.as_of)
        finally:
            engine.dispose()
        if args.out == "-":
            sys.stdout.write(text)
        else:
            print(f"report written to {args.out}", file=sys.stderr)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
