"""Usage records that match the demo banks' business, with the reconciliation they intend.

Given the banks' final ELIC records, each record with status 有效 gets a fate:

- matched (86 %): one usage, same USCC, bank and scene, authorized 0-3 days from
  biz_date; a few get a later corrected version (still 有效) to exercise version replacement;
- bank_only (6 %): no usage at all;
- withdrawn (4 %): a usage that a later version (newer updated_at) withdraws (撤销), so
  the bank record ends bank_only unless the client replaces the earlier version;
- far (4 %): a 有效 usage 10-30 days away: bank_only on one side, gov_only on the other.

Records with status 撤销 get, half of them, a usage that is withdrawn later too. On top,
about 6 % extra usages of enterprises no bank reported (gov_only).

Where a bank has several 有效 records of one enterprise and scene, only fates that the
one-to-one nearest-first rule cannot pair differently are used (matched at distance 0, or
no usage), so the intended counts hold by construction, not by re-running the rule.

Command line (writes what the server's ``--records`` reads)::

    python -m govbank_dev.elicense_data --seed 7 --warehouse sqlite:///.local/warehouse.db \\
        --out usages.json --expected-out expected.json [--now 2023-06-15]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from govbank.domain.identifiers import USCC_CHARSET, uscc_check_char

SHANGHAI = ZoneInfo("Asia/Shanghai")
SCENES = ("一照开户", "一照贷款")
BANK_RECORD_FIELDS = (
    "bank_code", "biz_id", "uscc", "enterprise_name", "biz_type", "biz_date", "outlet_code", "status",
)  # fmt: skip

CountKey = tuple[str, str, str]  # bank_code, month (YYYY-MM), scene


@dataclass(frozen=True)
class GeneratedUsages:
    """Every version of every usage record (JSON-ready) and the counts they are meant to give."""

    usages: list[dict[str, Any]]
    expected: dict[CountKey, dict[str, int]]

    def current(self) -> list[dict[str, Any]]:
        """The newest version of each usage_id, as the API serves them."""
        latest: dict[str, dict[str, Any]] = {}
        for rec in sorted(self.usages, key=lambda r: (_parse(r["updated_at"]), r["usage_id"])):
            latest[rec["usage_id"]] = rec
        return list(latest.values())

    def expected_rows(self) -> list[dict[str, Any]]:
        """The intended ``mart_reconciliation`` rows, sorted by bank, month and scene."""
        return [
            {"bank_code": b, "month": m, "scene": s, **counts}
            for (b, m, s), counts in sorted(self.expected.items())
        ]

    def totals(self) -> dict[str, int]:
        out = Counter()
        for counts in self.expected.values():
            out.update(counts)
        return {k: out[k] for k in ("matched", "bank_only", "gov_only")}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.usages, ensure_ascii=False, indent=1), encoding="utf-8")

    def write_expected(self, path: Path) -> None:
        path.write_text(
            json.dumps(self.expected_rows(), ensure_ascii=False, indent=1), encoding="utf-8"
        )


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _month(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


class _Builder:
    def __init__(self, rng: random.Random, now: dt.datetime) -> None:
        self.rng = rng
        self.now = now.astimezone(SHANGHAI)
        self.today = self.now.date()
        self.pending: list[dict[str, Any]] = []  # versions, usage_id filled in at the end
        self.expected: dict[CountKey, Counter[str]] = defaultdict(Counter)

    def count(self, bank: str, day: dt.date, scene: str, what: str) -> None:
        self.expected[(bank, _month(day), scene)][what] += 1

    def moment(self, day: dt.date) -> dt.datetime:
        """A business-hours time on ``day`` in Shanghai, never after now."""
        lo = dt.datetime.combine(day, dt.time(8, 30), SHANGHAI)
        hi = min(
            dt.datetime.combine(day, dt.time(17, 30), SHANGHAI), self.now - dt.timedelta(minutes=5)
        )
        if hi < lo:
            lo = dt.datetime.combine(day, dt.time(0, 0), SHANGHAI)
            hi = max(lo, hi)
        return lo + dt.timedelta(seconds=self.rng.randint(0, int((hi - lo).total_seconds())))

    def usage(
        self,
        src: Mapping[str, Any],
        day: dt.date,
        scene: str,
        withdrawn: bool = False,
        corrected: bool = False,
    ) -> None:
        authorized = self.moment(day)
        first = authorized + dt.timedelta(seconds=self.rng.randint(1, 30))
        key = object()  # ties the versions of one usage together until ids are assigned
        base = {
            "_key": key,
            "uscc": src["uscc"],
            "enterprise_name": src["enterprise_name"],
            "scene": scene,
            "bank_code": src["bank_code"],
            "outlet_code": src["outlet_code"],
            "authorized_at": authorized,
            "updated_at": first,
            "status": "有效",
        }
        self.pending.append(base)
        if withdrawn or corrected:
            later = first + dt.timedelta(minutes=self.rng.randint(60, 10 * 24 * 60))
            later = max(
                min(later, self.now - dt.timedelta(minutes=1)), first + dt.timedelta(seconds=1)
            )
            version = dict(base, updated_at=later)
            if withdrawn:
                version["status"] = "撤销"
            else:  # the first version carried a provisional name, the later one corrects it
                base["enterprise_name"] = f"{src['enterprise_name']}（待核）"
            self.pending.append(version)

    def finish(self) -> list[dict[str, Any]]:
        firsts: dict[object, dict[str, Any]] = {}
        for rec in self.pending:
            firsts.setdefault(rec["_key"], rec)
        order = sorted(
            firsts.values(),
            key=lambda r: (r["authorized_at"], r["bank_code"], r["uscc"], r["scene"]),
        )
        per_day: Counter[dt.date] = Counter()
        ids: dict[object, str] = {}
        for rec in order:
            day = rec["authorized_at"].date()
            per_day[day] += 1
            ids[rec["_key"]] = f"U{day:%Y%m%d}{per_day[day]:04d}"
        out = []
        for rec in self.pending:
            item = {k: v for k, v in rec.items() if k != "_key"}
            item = {"usage_id": ids[rec["_key"]], **item}
            item["authorized_at"] = rec["authorized_at"].isoformat()
            item["updated_at"] = rec["updated_at"].isoformat()
            out.append(item)
        out.sort(key=lambda r: (r["updated_at"], r["usage_id"]))
        return out


_NAME_PARTS = (
    ("瓯海", "温州", "瓯越", "南白象", "娄桥", "梧田", "丽岙", "仙岩", "泽雅", "三垟"),
    ("鞋业", "服饰", "眼镜", "五金", "机械", "电气", "包装", "贸易", "科技", "食品"),
)


def _new_uscc(rng: random.Random, taken: set[str]) -> str:
    while True:
        body = "91330304" + "".join(rng.choice(USCC_CHARSET) for _ in range(9))
        code = body + uscc_check_char(body)
        if code not in taken:
            taken.add(code)
            return code


def usages_from_bank_records(
    records: Iterable[Mapping[str, Any]], seed: int, now: dt.datetime | None = None
) -> GeneratedUsages:
    """Usage records for the given bank ELIC records, deterministic by ``seed`` (and ``now``).

    ``records`` are the banks' final records: dicts with bank_code, biz_id, uscc,
    enterprise_name, biz_type (一照开户/一照贷款), biz_date (date or ISO text), outlet_code
    and status (有效/撤销). ``now`` (default: the current time) caps every generated time.
    """
    rng = random.Random(seed)
    build = _Builder(rng, now or dt.datetime.now(SHANGHAI))
    bank = sorted(
        (
            {k: r[k] for k in BANK_RECORD_FIELDS} | {"biz_date": _as_date(r["biz_date"])}
            for r in records
        ),
        key=lambda r: (r["bank_code"], r["biz_id"]),
    )
    group_size = Counter(
        (r["uscc"], r["bank_code"], r["biz_type"]) for r in bank if r["status"] == "有效"
    )
    shift = dt.timedelta

    for rec in bank:
        scene, day, code = rec["biz_type"], rec["biz_date"], rec["bank_code"]
        roll = rng.random()
        if rec["status"] != "有效":
            if roll < 0.5:
                build.usage(
                    rec, min(day + shift(rng.randint(0, 2)), build.today), scene, withdrawn=True
                )
            continue
        if group_size[(rec["uscc"], code, scene)] > 1:
            # several live records of one enterprise and scene: keep the pairing unambiguous
            if roll < 0.85:
                build.usage(rec, day, scene)
                build.count(code, day, scene, "matched")
            else:
                build.count(code, day, scene, "bank_only")
            continue
        if roll < 0.86:
            offset = rng.randint(-3, 3)
            build.usage(
                rec, min(day + shift(offset), build.today), scene, corrected=rng.random() < 0.05
            )
            build.count(code, day, scene, "matched")
        elif roll < 0.92:
            build.count(code, day, scene, "bank_only")
        elif roll < 0.96:
            build.usage(
                rec, min(day + shift(rng.randint(-3, 3)), build.today), scene, withdrawn=True
            )
            build.count(code, day, scene, "bank_only")
        else:
            away = rng.randint(10, 30)
            when = day + shift(away) if day + shift(away) <= build.today else day - shift(away)
            build.usage(rec, when, scene)
            build.count(code, day, scene, "bank_only")
            build.count(code, when, scene, "gov_only")

    live = [r for r in bank if r["status"] == "有效"] or bank
    taken = {r["uscc"] for r in bank}
    for _ in range(round(0.06 * len(live)) if live else 0):
        template = rng.choice(live)
        scene = rng.choice(SCENES)
        day = min(template["biz_date"] + shift(rng.randint(-20, 20)), build.today)
        name = f"温州{rng.choice(_NAME_PARTS[0])}{rng.choice(_NAME_PARTS[1])}有限公司"
        src = dict(template, uscc=_new_uscc(rng, taken), enterprise_name=name)
        build.usage(src, day, scene)
        build.count(template["bank_code"], day, scene, "gov_only")

    expected = {
        key: {k: counts[k] for k in ("matched", "bank_only", "gov_only")}
        for key, counts in build.expected.items()
    }
    return GeneratedUsages(build.finish(), expected)


# --------------------------------------------------------------------------- inputs


def parse_now(value: str | None) -> dt.datetime | None:
    """``--now`` of the command lines: an ISO time (Asia/Shanghai if no offset) or a date
    (its end, 23:59:59 in Asia/Shanghai)."""
    if not value:
        return None
    if len(value) == 10:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(23, 59, 59), SHANGHAI)
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)


def bank_records_from_warehouse(url: str) -> list[dict[str, Any]]:
    """The banks' current ELIC records from ``fact_elicense_biz``."""
    from sqlalchemy import select

    from govbank.warehouse.db import make_engine
    from govbank.warehouse.schema import fact_elicense_biz as f

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(*(f.c[name] for name in BANK_RECORD_FIELDS))).mappings()
            return [dict(r) for r in rows]
    finally:
        engine.dispose()


def load_bank_records(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return list(data["items"] if isinstance(data, dict) else data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m govbank_dev.elicense_data")
    parser.add_argument("--seed", type=int, required=True)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--warehouse")
    src.add_argument("--bank-records", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--expected-out", type=Path)
    parser.add_argument("--now", help="cap every generated time at this ISO time (default: now)")
    args = parser.parse_args(argv)
    bank = (
        bank_records_from_warehouse(args.warehouse)
        if args.warehouse
        else load_bank_records(args.bank_records)
    )
    generated = usages_from_bank_records(bank, args.seed, parse_now(args.now))
    generated.write(args.out)
    if args.expected_out:
        generated.write_expected(args.expected_out)
    print(
        json.dumps(
            {
                "bank_records": len(bank),
                "usage_versions": len(generated.usages),
                **generated.totals(),
            }
        )
    )


if __name__ == "__main__":
    main()
