"""The demo drop: a seeded, deterministic story of five banks sending files in 2023.

It reproduces the district's seed report (62 政务服务超市, 14 of them opened in 2023; 17
瓯e办 self-service terminals and one mobile service van of 瓯海农商银行; 837 e-licence
records up to 2023-06-15: 208 一照开户, 629 一照贷款, 授信 1,187,000,000 元, 用信
1,040,000,000 元) *through* noise that must not move the figures: withdrawn and corrected
records, invalid rows, one rejected file, closed and suspended outlets, records from 2022.
Only this module and the tests know the numbers; the pipeline has to earn them.

``build_demo`` is pure (everything in memory, bytes included); ``write_drop`` lays the
files out like the SFTP server. The same seed always gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import hashlib
import io
import random
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

from govbank.config.contracts import BankContract, load_contracts
from govbank.config.settings import DEFAULT_CONTRACTS_DIR
from govbank.domain.datasets import BIZ_STATUSES, BIZ_TYPES, OUTLET_TYPES, Dataset, field_names
from govbank.domain.identifiers import USCC_CHARSET, resident_id_check_digit, uscc_check_char
from govbank.domain.reference import Town, towns

DEFAULT_SEED = 20230615
AS_OF = dt.date(2023, 6, 15)
YEAR_START = dt.date(2023, 1, 1)

# The seed report, as mart_kpi must show it as of AS_OF.
EXPECTED_KPI: dict[str, Decimal] = {
    "service_supermarkets": Decimal("62"),
    "service_supermarkets_opened_ytd": Decimal("14"),
    "self_service_terminals": Decimal("17"),
    "mobile_service_vans": Decimal("1"),
    "banks_in_cooperation": Decimal("5"),
    "elicense_biz_total": Decimal("837"),
    "elicense_account_openings": Decimal("208"),
    "elicense_loans": Decimal("629"),
    "credit_amount_yuan": Decimal("1187000000.00"),
    "drawn_amount_yuan": Decimal("1040000000.00"),
}

SUPERMARKET, TERMINAL, VAN, ORDINARY = OUTLET_TYPES
ACTIVE, SUSPENDED = "正常", "暂停"
OPENING, LOAN = BIZ_TYPES
VALID, WITHDRAWN = BIZ_STATUSES

_WAN = Decimal("10000")
_CENT = Decimal("0.01")
_LOANS_WAN = (118_700, 104_000)  # credit, drawn in 万元
_COUNTED_OPENINGS = 208
_COUNTED_LOANS = 629


def _d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _ElicFile:
    day: dt.date
    seq: int = 0
    rejected: bool = False  # the test export with a wrong .ok (CCBOH)
    empty_ok: bool = False


@dataclass(frozen=True)
class _BankPlan:
    """One bank's part of the story; the numbers add up to the seed report."""

    code: str
    short: str  # bank name as used in outlet names
    fmt: str  # txt | xlsx | csv | csv.gz
    encoding: str  # python codec of the text (ignored for xlsx)
    newline: str
    date_fmt: str
    town_style: str  # name | code12 | code9
    outlet_days: tuple[dt.date, ...]
    elic_files: tuple[_ElicFile, ...]
    codes: dict[str, tuple[str, int]]  # outlet type -> (format, first number)
    supermarkets_old: int
    supermarkets_new: tuple[int, ...]  # 2023 openings first listed in snapshot i
    ordinary: int
    counted: int  # e-licence records that make up the report
    id_prefix: str
    products: tuple[str, ...]
    terminals: tuple[int, ...] = ()  # first listed in snapshot i
    vans: int = 0
    suspended_super_at: int | None = None  # an extra 政务服务超市 that turns 暂停
    drop_ordinary_at: int | None = None  # snapshot that leaves one 普通网点 out
    bad_coords_at: int | None = None  # a new 普通网点 sent with lat/lon swapped, fixed next time
    items_change_at: int | None = None  # snapshot where two outlets change service_items
    omit: tuple[str, ...] = ()  # optional columns the bank's export does not have
    amount_decimals: bool = True
    dec2022: int = 0  # records of late 2022 that arrive in the first file
    withdraw: tuple[tuple[int, int], ...] = ()  # (sent 有效 in file i, 撤销 in file j)
    correct: tuple[tuple[int, int, str], ...] = ()  # (first in i, final in j, what was wrong)
    fixed: tuple[tuple[int, str], ...] = ()  # invalid in file i, sent right in the next
    unfixed: tuple[tuple[int, str], ...] = ()  # invalid in file i, never sent again
    uat_rows: int = 0  # rows of the rejected test export
    outlets_since: dt.date | None = None  # its old outlets opened from here (default: joined_on)
    full_terminal_items: int | None = None  # its first 2023 terminal offers the whole catalogue


_PLANS: tuple[_BankPlan, ...] = (
    _BankPlan(
        code="WZB",
        short="温州银行",
        fmt="txt",
        encoding="gb18030",
        newline="\r\n",
        date_fmt="%Y-%m-%d",
        town_style="name",
        outlet_days=(_d("2023-01-03"), _d("2023-04-03")),
        elic_files=tuple(
            _ElicFile(_d(s))
            for s in (
                "2023-01-31",
                "2023-02-28",
                "2023-03-31",
                "2023-04-28",
                "2023-05-31",
                "2023-06-15",
            )
        ),
        codes={SUPERMARKET: ("WZB-OH-{:03d}", 1), ORDINARY: ("WZB-OH-{:03d}", 101)},
        supermarkets_old=10,
        supermarkets_new=(0, 4),
        ordinary=2,
        drop_ordinary_at=1,
        counted=230,
        id_prefix="WZ",
        products=("电子执照贷", "温银快贷", "小微易贷"),
        dec2022=6,
        withdraw=((0, 1), (3, 4)),
        correct=((1, 2, "drawn0"), (4, 5, "credit_x10")),
        fixed=((1, "bad_uscc_check"),),
        unfixed=((4, "unknown_outlet"),),
        # its outlets predate the cooperation: they were brought in when it joined in 2023
        # (the seed report: "将温州银行在我区的14个网点正式纳入政银合作范围")
        outlets_since=_d("2021-06-01"),
    ),
    _BankPlan(
        code="OHRCB",
        short="瓯海农商银行",
        fmt="xlsx",
        encoding="",
        newline="",
        date_fmt="",
        town_style="name",
        outlet_days=(_d("2023-01-10"), _d("2023-05-15")),
        elic_files=tuple(
            _ElicFile(_d(s))
            for s in (
                "2023-01-31",
                "2023-02-28",
                "2023-03-31",
                "2023-04-28",
                "2023-05-31",
                "2023-06-15",
            )
        ),
        codes={
            SUPERMARKET: ("OHRCB-S{:03d}", 1),
            TERMINAL: ("OHRCB-T{:03d}", 1),
            VAN: ("OHRCB-V{:02d}", 1),
            ORDINARY: ("OHRCB-B{:02d}", 1),
        },
        supermarkets_old=16,
        supermarkets_new=(1, 3),
        terminals=(12, 5),
        vans=1,
        ordinary=4,
        suspended_super_at=1,
        bad_coords_at=0,
        full_terminal_items=283,  # the seed report: "可办理 … 283项政务服务事项"
        counted=250,
        id_prefix="OH",
        products=("丰收小微贷", "瓯e贷", "创业贷"),
        withdraw=((2, 3),),
        correct=((0, 1, "drawn0"), (3, 4, "credit_x10")),
        fixed=((1, "drawn_gt_credit"),),
        unfixed=((3, "bad_id"),),
    ),
    _BankPlan(
        code="CCBOH",
        short="建设银行",
        fmt="csv",
        encoding="utf-8",
        newline="\n",
        date_fmt="%Y/%m/%d",
        town_style="code12",
        outlet_days=(_d("2023-02-01"), _d("2023-06-01")),
        elic_files=(
            _ElicFile(_d("2023-02-28")),
            _ElicFile(_d("2023-03-31")),
            _ElicFile(_d("2023-04-28")),
            _ElicFile(_d("2023-05-31"), rejected=True),
            _ElicFile(_d("2023-05-31"), seq=2),
            _ElicFile(_d("2023-06-15")),
        ),
        codes={SUPERMARKET: ("33030461{:02d}", 1), ORDINARY: ("33030462{:02d}", 1)},
        supermarkets_old=8,
        supermarkets_new=(1, 1),
        ordinary=2,
        counted=145,
        id_prefix="CCB",
        products=("小微快贷", "云税贷", "商户云贷"),
        withdraw=((2, 5),),
        correct=((1, 2, "drawn0"),),
        fixed=((1, "future_date"),),
        uat_rows=30,
    ),
    _BankPlan(
        code="ABCOH",
        short="农业银行",
        fmt="csv.gz",
        encoding="utf-8-sig",
        newline="\r\n",
        date_fmt="%Y%m%d",
        town_style="name",
        outlet_days=(_d("2023-01-05"), _d("2023-03-15"), _d("2023-06-15")),
        elic_files=tuple(
            _ElicFile(_d(s))
            for s in (
                "2023-01-31",
                "2023-02-28",
                "2023-03-31",
                "2023-04-28",
                "2023-05-31",
                "2023-06-15",
            )
        ),
        codes={SUPERMARKET: ("ABC-OH-S{:02d}", 1), ORDINARY: ("ABC-OH-B{:02d}", 1)},
        supermarkets_old=8,
        supermarkets_new=(0, 1, 1),
        ordinary=3,
        items_change_at=2,
        counted=122,
        id_prefix="ABC",
        products=("微捷贷", "链捷贷", "纳税e贷"),
        dec2022=4,
        correct=((1, 2, "credit_x10"),),
        unfixed=((2, "bad_uscc_charset"),),
    ),
    _BankPlan(
        code="ICBCOH",
        short="工商银行",
        fmt="csv",
        encoding="gb18030",
        newline="\r\n",
        date_fmt="%Y%m%d",
        town_style="code9",
        outlet_days=(_d("2023-01-06"), _d("2023-06-02")),
        elic_files=(
            _ElicFile(_d("2023-02-03"), empty_ok=True),
            _ElicFile(_d("2023-03-03"), empty_ok=True),
            *(_ElicFile(_d(s)) for s in ("2023-04-07", "2023-05-05", "2023-06-02", "2023-06-09")),
            _ElicFile(_d("2023-06-15")),
        ),
        codes={SUPERMARKET: ("1203{:04d}", 101), ORDINARY: ("1203{:04d}", 201)},
        supermarkets_old=6,
        supermarkets_new=(1, 1),
        ordinary=2,
        counted=90,
        id_prefix="ICBC",
        products=("经营快贷",),
        omit=("community", "loan_product"),
        amount_decimals=False,
        withdraw=((2, 3),),
    ),
)

# A bank system's own column order (the contract maps names, not positions).
_COLUMN_ORDER: dict[tuple[str, Dataset], tuple[str, ...]] = {
    ("CCBOH", Dataset.OUTLET): (
        "outlet_code",
        "outlet_name",
        "outlet_type",
        "status",
        "town",
        "community",
        "address",
        "longitude",
        "latitude",
        "service_items",
        "opened_on",
    ),
    ("CCBOH", Dataset.ELIC): (
        "biz_id",
        "biz_date",
        "outlet_code",
        "biz_type",
        "uscc",
        "enterprise_name",
        "legal_rep_name",
        "legal_rep_id",
        "credit_amount",
        "drawn_amount",
        "loan_product",
        "status",
    ),
}

# Whitespace the exports leave around values (not data, bank-files.md): field, pad, share.
_PADS: dict[tuple[str, Dataset], tuple[str, str, float]] = {
    ("WZB", Dataset.ELIC): ("enterprise_name", "\u3000", 0.05),
    ("ICBCOH", Dataset.ELIC): ("uscc", " ", 0.05),
    ("ABCOH", Dataset.OUTLET): ("address", " ", 0.2),
    ("OHRCB", Dataset.OUTLET): ("outlet_name", " ", 0.1),
}

_ROW_REASON = {
    "bad_uscc_check": "INVALID_USCC",
    "bad_uscc_charset": "INVALID_USCC",
    "drawn_gt_credit": "DRAWN_EXCEEDS_CREDIT",
    "bad_id": "INVALID_RESIDENT_ID",
    "unknown_outlet": "UNKNOWN_OUTLET",
    "future_date": "DATE_IN_FUTURE",
}
_FILE_REASON_REJECTED = "OK_ROWS_MISMATCH"

# Syllables the synthetic names are made of.
_SURNAMES = "陈王林黄张李周叶金郑吴徐潘胡朱池郭章谢戴蔡杨刘夏项"
_GIVEN = "建国伟芳丽海军敏静强磊洁勇艳杰娟涛明超秀霞平刚晓春燕永志文华红玲益瑞"
_TRADE = "瑞丰鑫盛华宏达源信嘉锦泰隆昌荣兴恒裕瓯越博汇诚德鸿永正利联卓"
_INDUSTRY = (
    "鞋业",
    "服饰",
    "眼镜",
    "阀门",
    "五金",
    "包装",
    "电气",
    "机械",
    "贸易",
    "科技",
    "印刷",
    "工艺品",
    "塑料制品",
    "汽摩配件",
    "建材",
    "餐饮管理",
    "物流",
)
_SHOPS = ("便利店", "小吃店", "五金店", "服装店", "理发店", "水果店", "家电维修部", "眼镜店")
_CROPS = ("茶叶", "杨梅", "蔬菜", "瓯柑", "竹笋", "花卉")
_ROAD_SUFFIX = ("路", "大道", "街", "中路", "东路", "南路", "西路")
_ID_AREAS = (
    "330302",
    "330303",
    "330304",
    "330304",
    "330304",
    "330305",
    "330324",
    "330326",
    "330381",
    "330382",
)
_ELIC_OUTLET_WEIGHTS = {SUPERMARKET: 6, ORDINARY: 2, VAN: 1}


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Outcome:
    """What the receipt of a file must say; ``rejects`` are (line, reason) of bad rows."""

    status: str
    rows_total: int
    rows_loaded: int
    rows_rejected: int
    reasons: tuple[str, ...] = ()
    rejects: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class PlannedFile:
    """One data file with its control file and what the pipeline should make of it.

    ``rows`` are the rows as sent, canonical (field names of datasets.py, dates as
    ``date``, amounts in 元 as ``Decimal``, ``town`` as the 12-digit code, stripped);
    ``row_reasons`` says per row why it is rejected (None = loaded). Line = index + 2.
    """

    bank_code: str
    dataset: Dataset
    business_date: dt.date
    seq: int
    name: str
    encoding: str  # gb18030 | utf-8 | utf-8-sig | xlsx
    gzipped: bool
    data: bytes
    ok: bytes
    rows: tuple[dict, ...]
    row_reasons: tuple[str | None, ...]
    expected: Outcome

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class BankDrop:
    """One bank: every row it sends (canonical, plus ``source_file``, ``source_line``,
    ``reject_reason``) and its files in the order the pipeline processes them."""

    bank_code: str
    bank_name: str
    outlet_snapshots: dict[dt.date, tuple[dict, ...]]
    elic_records: tuple[dict, ...]
    files: tuple[PlannedFile, ...]


@dataclass(frozen=True)
class DemoDrop:
    seed: int
    as_of: dt.date
    banks: dict[str, BankDrop]

    @property
    def files(self) -> tuple[PlannedFile, ...]:
        return tuple(f for b in self.banks.values() for f in b.files)

    def expected(self) -> dict[str, Outcome]:
        """File name -> planned outcome (names are unique across banks)."""
        return {f.name: f.expected for f in self.files}


# --------------------------------------------------------------------------- internals


@dataclass
class _Outlet:
    code: str
    otype: str
    name: str
    town: Town
    community: str
    address: str
    lon: Decimal | None
    lat: Decimal | None
    items: int | None
    opened_on: dt.date
    first: int
    last: int | None = None
    status_from: dict[int, str] = field(default_factory=dict)
    items_from: dict[int, int] = field(default_factory=dict)
    swapped_in: int | None = None

    def listed(self, snap: int) -> bool:
        return self.first <= snap and (self.last is None or snap <= self.last)

    def row(self, snap: int) -> dict:
        status = next(
            (s for i, s in sorted(self.status_from.items(), reverse=True) if i <= snap), ACTIVE
        )
        items = next(
            (n for i, n in sorted(self.items_from.items(), reverse=True) if i <= snap), self.items
        )
        lon, lat = (self.lat, self.lon) if self.swapped_in == snap else (self.lon, self.lat)
        return {
            "outlet_code": self.code,
            "outlet_name": self.name,
            "outlet_type": self.otype,
            "town": self.town.town_code,
            "community": self.community,
            "address": self.address,
            "longitude": lon,
            "latitude": lat,
            "service_items": items,
            "opened_on": self.opened_on,
            "status": status,
        }


@dataclass
class _Enterprise:
    uscc: str
    name: str
    rep_name: str
    rep_id: str


@dataclass
class _Record:
    bank: str
    biz_date: dt.date
    outlet: str
    counted: bool
    natural: int  # index of the file it first belongs in
    biz_type: str = OPENING
    credit_wan: int | None = None
    drawn_wan: int | None = None
    product: str | None = None
    ent: _Enterprise | None = None
    with_rep: bool = True
    biz_id: str = ""
    uat: bool = False
    sends: list[tuple[int, str]] = field(default_factory=list)  # (file index, kind)

    def canonical(self) -> dict:
        assert self.ent is not None
        loan = self.biz_type == LOAN
        return {
            "biz_id": self.biz_id,
            "outlet_code": self.outlet,
            "biz_type": self.biz_type,
            "uscc": self.ent.uscc,
            "enterprise_name": self.ent.name,
            "legal_rep_name": self.ent.rep_name if self.with_rep else None,
            "legal_rep_id": self.ent.rep_id if self.with_rep else None,
            "biz_date": self.biz_date,
            "credit_amount": _yuan(self.credit_wan) if loan else None,
            "drawn_amount": _yuan(self.drawn_wan) if loan else None,
            "loan_product": self.product if loan else None,
            "status": VALID,
        }


def _yuan(wan: int | None) -> Decimal | None:
    return None if wan is None else (Decimal(wan) * _WAN).quantize(_CENT)


def _weekdays(first: dt.date, last: dt.date) -> list[dt.date]:
    n = (last - first).days + 1
    days = (first + dt.timedelta(i) for i in range(max(n, 0)))
    return [d for d in days if d.weekday() < 5]


def _rand_day(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(rng.randrange((last - first).days + 1))


def _apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Largest remainder: integers proportional to weights that add up to total exactly."""
    s = sum(weights)
    raw = [Fraction(total * w, s) for w in weights]
    base = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - base[i]), i))
    for i in order[: total - sum(base)]:
        base[i] += 1
    return base


def _adjust(rng: random.Random, vals: list[int], total: int, lo: list[int], hi: list[int]) -> None:
    """Nudge values by one until they add up to total, each within [lo, hi]."""
    diff = total - sum(vals)
    order = list(range(len(vals)))
    while diff:
        rng.shuffle(order)
        moved = False
        for i in order:
            if diff > 0 and vals[i] < hi[i]:
                vals[i], diff, moved = vals[i] + 1, diff - 1, True
            elif diff < 0 and vals[i] > lo[i]:
                vals[i], diff, moved = vals[i] - 1, diff + 1, True
            if not diff:
                break
        if not moved:
            raise ValueError("amounts cannot reach the target within their bounds")


def _loan_amounts(rng: random.Random, n: int) -> list[tuple[int, int]]:
    """(credit, drawn) in 万元 per loan: round credit lines, drawn <= credit, exact sums."""
    credit_total, drawn_total = _LOANS_WAN
    # credit in steps of 10万, at least 10万
    weights = [rng.lognormvariate(0, 0.8) for _ in range(n)]
    units_total = credit_total // 10
    units = [max(1, round(units_total * w / sum(weights))) for w in weights]
    _adjust(rng, units, units_total, [1] * n, [10_000] * n)
    credit = [u * 10 for u in units]
    # drawn: most loans drawn in good part, some fully, a few not yet
    ratios = [
        1.0 if r < 0.2 else 0.0 if r < 0.24 else rng.uniform(0.55, 1.0)
        for r in (rng.random() for _ in range(n))
    ]
    scale = drawn_total / sum(c * r for c, r in zip(credit, ratios, strict=True))
    drawn = [min(c, round(c * r * scale)) for c, r in zip(credit, ratios, strict=True)]
    _adjust(rng, drawn, drawn_total, [0] * n, credit)
    return list(zip(credit, drawn, strict=True))


class _Names:
    """Synthetic, unique names and identifiers made of syllables and check characters."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _unique(self, make: Callable[[], str]) -> str:
        for _ in range(1000):
            value = make()
            if value not in self.used:
                self.used.add(value)
                return value
        raise RuntimeError("name space exhausted")

    def person(self) -> str:
        r = self.rng
        given = "".join(r.choice(_GIVEN) for _ in range(r.choice((1, 2, 2))))
        return r.choice(_SURNAMES) + given

    def resident_id(self) -> str:
        r = self.rng

        def make() -> str:
            birth = _rand_day(r, dt.date(1962, 1, 1), dt.date(1998, 12, 31))
            first17 = f"{r.choice(_ID_AREAS)}{birth:%Y%m%d}{r.randrange(1000):03d}"
            return first17 + resident_id_check_digit(first17)

        return self._unique(make)

    def community(self) -> str:
        r = self.rng
        return self._unique(
            lambda: r.choice(_TRADE) + r.choice(_GIVEN) + r.choice(("村", "社区", "社区"))
        )

    def enterprise(self) -> _Enterprise:
        r = self.rng
        kind = r.choices(("91", "92", "93"), (80, 15, 5))[0]

        def code() -> str:
            body = kind + "330304" + "MA" + "".join(r.choice(USCC_CHARSET) for _ in range(7))
            return body + uscc_check_char(body)

        def name() -> str:
            trade = r.choice(_TRADE) + r.choice(_TRADE)
            town = r.choice(towns()).town_name[:2]
            if kind == "91":
                return f"温州{trade}{r.choice(_INDUSTRY)}有限公司"
            if kind == "92":
                return f"瓯海区{town}{trade}{r.choice(_SHOPS)}"
            return f"温州市瓯海区{town}{trade}{r.choice(_CROPS)}专业合作社"

        return _Enterprise(
            self._unique(code), self._unique(name), self.person(), self.resident_id()
        )


def _coord(rng: random.Random, centre: Decimal) -> Decimal:
    return (centre + Decimal(rng.randint(-10_000, 10_000)) / Decimal(1_000_000)).quantize(
        Decimal("0.000001")
    )


def _build_outlets(
    plan: _BankPlan, contract: BankContract, rng: random.Random, names: _Names
) -> list[_Outlet]:
    all_towns = towns()
    zeya = next(t for t in all_towns if t.town_name == "泽雅镇")
    counters = {t: start for t, (_, start) in plan.codes.items()}
    out: list[_Outlet] = []

    def add(
        otype: str, first: int, opened: dt.date, town: Town | None = None, coords: bool = False
    ) -> _Outlet:
        fmt, _ = plan.codes[otype]
        code = fmt.format(counters[otype])
        counters[otype] += 1
        town = town or rng.choice(all_towns)
        community = names.community()
        place = town.town_name.removesuffix("街道").removesuffix("镇")
        if otype == SUPERMARKET:
            name, items = f"{plan.short}{community}政务服务超市", rng.randint(60, 260)
        elif otype == TERMINAL:
            name, items = f"瓯e办自助终端（{community}）", rng.randint(120, 180)
        elif otype == VAN:
            name, items = f"政银服务流动车（{town.town_name}）", 80
        else:
            name, items = f"{plan.short}{place}支行", rng.choice((None, 0))
        if otype == VAN:
            address = f"温州市瓯海区{town.town_name}（流动服务，驻点以当日公告为准）"
        else:
            road = place + rng.choice(_ROAD_SUFFIX)
            address = f"温州市瓯海区{town.town_name}{road}{rng.randint(1, 399)}号"
        # optional for a 普通网点, and most banks fill them in anyway
        coords = coords or otype != ORDINARY or rng.random() < 0.7
        o = _Outlet(
            code,
            otype,
            name,
            town,
            community,
            address,
            _coord(rng, town.longitude) if coords else None,
            _coord(rng, town.latitude) if coords else None,
            items,
            opened,
            first,
        )
        out.append(o)
        return o

    snap_days = plan.outlet_days
    start_old = plan.outlets_since or contract.joined_on

    def new_2023(i: int) -> dt.date:
        lo = YEAR_START if i == 0 else snap_days[i - 1] + dt.timedelta(1)
        return _rand_day(rng, lo, snap_days[i])

    for _ in range(plan.supermarkets_old):
        add(SUPERMARKET, 0, _rand_day(rng, start_old, dt.date(2022, 12, 20)))
    for i, n in enumerate(plan.supermarkets_new):
        for _ in range(n):
            add(SUPERMARKET, i, new_2023(i))
    if plan.suspended_super_at is not None:
        add(SUPERMARKET, 0, _rand_day(rng, start_old, dt.date(2022, 6, 30))).status_from[
            plan.suspended_super_at
        ] = SUSPENDED
    for i, n in enumerate(plan.terminals):
        for k in range(n):
            opened = (
                _rand_day(rng, dt.date(2021, 3, 1), dt.date(2022, 12, 20))
                if i == 0
                else new_2023(i)
            )
            terminal = add(TERMINAL, i, opened)
            if (i, k) == (1, 0) and plan.full_terminal_items is not None:
                terminal.items = plan.full_terminal_items  # after the draw: the stream stays
    for _ in range(plan.vans):
        add(VAN, 0, _rand_day(rng, dt.date(2022, 7, 1), dt.date(2022, 9, 30)), zeya)
    ordinary_towns = rng.sample(list(all_towns), plan.ordinary)
    for k, town in enumerate(ordinary_towns):
        swapped = k == plan.ordinary - 1 and plan.bad_coords_at is not None
        opened = _rand_day(rng, dt.date(1998, 1, 1), dt.date(2018, 12, 31))
        o = add(ORDINARY, 0, opened, town, coords=swapped)
        if k == 0 and plan.drop_ordinary_at is not None:
            o.last = plan.drop_ordinary_at - 1
        if swapped:
            o.swapped_in = plan.bad_coords_at
    if plan.items_change_at is not None:
        supers = [o for o in out if o.otype == SUPERMARKET and o.first < plan.items_change_at]
        for o in rng.sample(supers, 2):
            o.items_from[plan.items_change_at] = (o.items or 0) + rng.randint(5, 30)
    return sorted(out, key=lambda o: o.code)


class _BankState:
    """What a bank has on record at each file date, so every ELIC row names a known outlet."""

    def __init__(self, plan: _BankPlan, outlets: list[_Outlet]) -> None:
        self.plan = plan
        self.snap_rows: list[list[tuple[dict, str | None]]] = []
        for i in range(len(plan.outlet_days)):
            rows = []
            for o in outlets:
                if o.listed(i):
                    rows.append((o.row(i), "COORD_OUT_OF_AREA" if o.swapped_in == i else None))
            self.snap_rows.append(rows)

    def eligible(self, file_day: dt.date, biz_date: dt.date) -> list[dict]:
        """Outlets of the latest snapshot on or before file_day, 正常, opened by biz_date."""
        idx = max(i for i, d in enumerate(self.plan.outlet_days) if d <= file_day)
        return [
            r
            for r, reason in self.snap_rows[idx]
            if reason is None
            and r["status"] == ACTIVE
            and r["outlet_type"] in _ELIC_OUTLET_WEIGHTS
            and r["opened_on"] <= biz_date
        ]

    def pick(self, rng: random.Random, file_day: dt.date, biz_date: dt.date) -> str:
        pool = self.eligible(file_day, biz_date)
        weights = [_ELIC_OUTLET_WEIGHTS[r["outlet_type"]] for r in pool]
        return rng.choices(pool, weights)[0]["outlet_code"]

    def known_at(self, file_day: dt.date, code: str) -> bool:
        return any(r["outlet_code"] == code for r in self.eligible(file_day, dt.date.max))


def _normal_files(plan: _BankPlan) -> list[int]:
    return [i for i, f in enumerate(plan.elic_files) if not f.rejected]


def _counted_records(plan: _BankPlan, state: _BankState, rng: random.Random) -> list[_Record]:
    normal = _normal_files(plan)
    periods = []
    prev = YEAR_START - dt.timedelta(1)
    for i in normal:
        day = plan.elic_files[i].day
        periods.append((i, _weekdays(prev + dt.timedelta(1), day)))
        prev = day
    quotas = _apportion(plan.counted, [len(days) for _, days in periods])
    out = []
    for (i, days), n in zip(periods, quotas, strict=True):
        file_day = plan.elic_files[i].day
        for _ in range(n):
            biz_date = rng.choice(days)
            out.append(_Record(plan.code, biz_date, state.pick(rng, file_day, biz_date), True, i))
    return out


def _extra_record(
    plan: _BankPlan, state: _BankState, rng: random.Random, i: int, biz_date: dt.date | None = None
) -> _Record:
    """A record that must not count: the amounts are the bank's, the story decides why."""
    file_day = plan.elic_files[i].day
    if biz_date is None:
        prev = max((f.day for f in plan.elic_files if f.day < file_day), default=YEAR_START)
        biz_date = rng.choice(_weekdays(prev + dt.timedelta(1), file_day))
    rec = _Record(plan.code, biz_date, state.pick(rng, file_day, biz_date), False, i)
    if rng.random() < 0.7:
        credit = rng.choice((30, 50, 80, 100, 150, 200, 300, 500))
        rec.biz_type, rec.credit_wan, rec.drawn_wan = LOAN, credit, rng.randint(0, credit)
    return rec


def _next_normal(plan: _BankPlan, i: int) -> int:
    return next(j for j in _normal_files(plan) if j > i)


def _add_noise(
    plan: _BankPlan, state: _BankState, rng: random.Random, counted: list[_Record]
) -> list[_Record]:
    """Withdrawals, corrections, invalid rows, late 2022 records, the rejected export."""
    days = [f.day for f in plan.elic_files]
    used: set[int] = set()

    def take(i: int, j: int, ok: Callable[[_Record], bool]) -> _Record:
        cands = [
            k
            for k, r in enumerate(counted)
            if r.natural == i and k not in used and ok(r) and state.known_at(days[j], r.outlet)
        ]
        k = rng.choice(cands)
        used.add(k)
        return counted[k]

    def any_loan(r: _Record) -> bool:
        return r.biz_type == LOAN

    def drawn_loan(r: _Record) -> bool:
        return r.biz_type == LOAN and (r.drawn_wan or 0) > 0

    def partly_drawn_loan(r: _Record) -> bool:
        return r.biz_type == LOAN and 0 < (r.drawn_wan or 0) < (r.credit_wan or 0)

    def anything(r: _Record) -> bool:
        return True

    for r in counted:
        r.sends = [(r.natural, "final")]
    for i, j, what in plan.correct:
        r = take(i, j, drawn_loan if what == "drawn0" else any_loan)
        r.sends = [(i, what), (j, "final")]
    for i, what in plan.fixed:
        j = _next_normal(plan, i)

        def in_month_of_file(r: _Record, i: int = i) -> bool:
            return r.biz_date.month == days[i].month and r.biz_date.day <= 28

        need = {"drawn_gt_credit": partly_drawn_loan, "future_date": in_month_of_file}
        r = take(i, j, need.get(what, anything))
        r.sends = [(i, what), (j, "final")]

    extra: list[_Record] = []
    for _ in range(plan.dec2022):
        biz_date = rng.choice(_weekdays(dt.date(2022, 12, 19), dt.date(2022, 12, 30)))
        rec = _extra_record(plan, state, rng, 0, biz_date)
        rec.sends = [(0, "final")]
        extra.append(rec)
    for i, j in plan.withdraw:
        while True:
            rec = _extra_record(plan, state, rng, i)
            if state.known_at(days[j], rec.outlet):
                break
        rec.sends = [(i, "final"), (j, "withdraw")]
        extra.append(rec)
    for i, what in plan.unfixed:
        rec = _extra_record(plan, state, rng, i)
        rec.sends = [(i, what)]
        extra.append(rec)
    for i, f in enumerate(plan.elic_files):
        if f.rejected:
            for _ in range(plan.uat_rows):
                rec = _extra_record(plan, state, rng, i)
                rec.uat, rec.sends = True, [(i, "final")]
                extra.append(rec)
    return extra


def _assign_enterprises(records: list[_Record], names: _Names, rng: random.Random) -> None:
    """Some enterprises open an account first and come back for a loan at the same bank."""
    openers: list[_Enterprise] = []
    for r in sorted(records, key=lambda r: (r.biz_date, r.outlet, r.credit_wan or 0)):
        if r.biz_type == LOAN and openers and rng.random() < 0.3:
            r.ent = openers.pop(rng.randrange(len(openers)))
        else:
            r.ent = names.enterprise()
            if r.biz_type == OPENING:
                openers.append(r.ent)
        # a few records come without the legal representative (optional); a bad ID needs one
        r.with_rep = rng.random() >= 0.08 or any(k == "bad_id" for _, k in r.sends)
        if r.biz_type == LOAN and r.product is None and rng.random() >= 0.1:
            r.product = rng.choice(_PLAN_BY_CODE[r.bank].products)


def _assign_ids(plan: _BankPlan, records: list[_Record]) -> None:
    per_day: dict[tuple[bool, dt.date], int] = {}
    for r in sorted(
        records, key=lambda r: (r.biz_date, r.uat, r.outlet, r.ent.uscc if r.ent else "")
    ):
        key = (r.uat, r.biz_date)
        per_day[key] = per_day.get(key, 0) + 1
        prefix = f"{plan.id_prefix}UAT" if r.uat else plan.id_prefix
        r.biz_id = f"{prefix}{r.biz_date:%Y%m%d}{per_day[key]:04d}"


def _sent_row(rec: _Record, kind: str, file_day: dt.date, unknown_outlet: str) -> dict:
    row = rec.canonical()
    if kind == "withdraw":
        row["status"] = WITHDRAWN
    elif kind == "bad_uscc_check":
        good = row["uscc"][17]
        row["uscc"] = row["uscc"][:17] + USCC_CHARSET[(USCC_CHARSET.index(good) + 7) % 31]
    elif kind == "bad_uscc_charset":
        row["uscc"] = row["uscc"][:10] + "O" + row["uscc"][11:]
    elif kind == "drawn_gt_credit":
        row["credit_amount"], row["drawn_amount"] = row["drawn_amount"], row["credit_amount"]
    elif kind == "bad_id":
        good = row["legal_rep_id"][17]
        digits = "0123456789X"
        row["legal_rep_id"] = row["legal_rep_id"][:17] + digits[(digits.index(good) + 3) % 11]
    elif kind == "unknown_outlet":
        row["outlet_code"] = unknown_outlet
    elif kind == "future_date":
        row["biz_date"] = rec.biz_date.replace(month=rec.biz_date.month + 1)
        assert row["biz_date"] > file_day
    elif kind == "drawn0":
        row["drawn_amount"] = Decimal("0.00")
    elif kind == "credit_x10":
        row["credit_amount"] = row["credit_amount"] * 10
    else:
        assert kind == "final", kind
    return row


# --------------------------------------------------------------------------- rendering


def _columns(bank: str, dataset: Dataset, omit: Iterable[str]) -> tuple[str, ...]:
    cols = _COLUMN_ORDER.get((bank, dataset), field_names(dataset))
    return tuple(c for c in cols if c not in set(omit))


def _wan_text(v: Decimal) -> str:
    wan = v / _WAN
    return str(int(wan)) if wan == wan.to_integral_value() else format(wan.normalize(), "f")


def _cell_text(
    plan: _BankPlan, contract: BankContract, dataset: Dataset, col: str, value: object
) -> str:
    if value is None:
        return ""
    if col == "town":
        town = _TOWN_BY_CODE[str(value)]
        return {"name": town.town_name, "code12": town.town_code, "code9": town.town_code[:9]}[
            plan.town_style
        ]
    if isinstance(value, dt.date):
        return value.strftime(plan.date_fmt)
    if col in ("credit_amount", "drawn_amount"):
        assert isinstance(value, Decimal)
        if contract.feeds[dataset].amount_unit == "万元":
            return _wan_text(value)
        return f"{value:.2f}" if plan.amount_decimals or value != int(value) else str(int(value))
    if col in ("longitude", "latitude"):
        return f"{value:.6f}"
    return str(value)


def _cell_xlsx(col: str, value: object) -> object:
    if value is None:
        return None
    if col == "town":
        return _TOWN_BY_CODE[str(value)].town_name
    if isinstance(value, Decimal):
        return int(value) if value == int(value) else float(value)
    return value


def _padder(seed: int, name: str, bank: str, dataset: Dataset) -> Callable[[str, object], object]:
    spec = _PADS.get((bank, dataset))
    rng = random.Random(f"{seed}:{name}")

    def pad(col: str, text: object) -> object:
        if spec and col == spec[0] and isinstance(text, str) and text and rng.random() < spec[2]:
            return text + spec[1]
        return text

    return pad


def _render(
    plan: _BankPlan,
    contract: BankContract,
    dataset: Dataset,
    name: str,
    day: dt.date,
    rows: Sequence[dict],
    seed: int,
) -> bytes:
    cols = _columns(plan.code, dataset, plan.omit)
    feed = contract.feeds[dataset]
    headers = feed.header_map(dataset)
    pad = _padder(seed, name, plan.code, dataset)
    if plan.fmt == "xlsx":
        return _xlsx(
            [headers[c] for c in cols],
            [[pad(c, _cell_xlsx(c, r[c])) for c in cols] for r in rows],
            "网点" if dataset == Dataset.OUTLET else "电子执照业务",
            dt.datetime.combine(day, dt.time(18, 30)),
            contract.bank_name,
        )
    sample = day.strftime(plan.date_fmt)
    if not any(_parses(sample, f) == day for f in feed.date_formats):
        raise ValueError(f"{plan.code}: date format {plan.date_fmt} is not in its contract")
    buf = io.StringIO()
    delimiter = "," if feed.delimiter == "auto" else feed.delimiter
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=plan.newline)
    writer.writerow([headers[c] for c in cols])
    for r in rows:
        writer.writerow([pad(c, _cell_text(plan, contract, dataset, c, r[c])) for c in cols])
    data = buf.getvalue().encode(plan.encoding)
    if plan.fmt.endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    return data


def _parses(text: str, fmt: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, fmt).date()
    except ValueError:
        return None


def _xlsx(
    header: list[str], rows: list[list[object]], title: str, stamp: dt.datetime, creator: str
) -> bytes:
    """A workbook whose bytes depend only on its content: openpyxl stamps the save time
    into docProps/core.xml and every zip entry, so both are fixed here."""
    from openpyxl import Workbook
    from openpyxl.writer.excel import ExcelWriter

    wb = Workbook()
    ws = wb.active
    ws.title = title
    ws.append(header)
    for row in rows:
        ws.append(row)
    for cells in ws.iter_rows(min_row=2):
        for cell in cells:
            if isinstance(cell.value, dt.date):
                cell.number_format = "yyyy-mm-dd"
    wb.properties.creator = creator
    wb.properties.lastModifiedBy = creator
    wb.properties.created = stamp
    wb.properties.modified = stamp
    raw = io.BytesIO()
    ExcelWriter(wb, ZipFile(raw, "w", ZIP_DEFLATED)).save()  # save() closes the archive
    out = io.BytesIO()
    with ZipFile(io.BytesIO(raw.getvalue())) as src, ZipFile(out, "w", ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            fixed.compress_type = ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            fixed.create_system = 3
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def _file_name(dataset: Dataset, bank: str, day: dt.date, seq: int, fmt: str) -> str:
    return f"{dataset.value}_{bank}_{day:%Y%m%d}{f'_{seq:02d}' if seq else ''}.{fmt}"


def _ok_bytes(data: bytes, rows: int) -> bytes:
    return f"rows={rows}\nsha256={hashlib.sha256(data).hexdigest()}\n".encode("ascii")


def _planned(
    plan: _BankPlan,
    contract: BankContract,
    dataset: Dataset,
    day: dt.date,
    seq: int,
    rows: list[dict],
    reasons: list[str | None],
    seed: int,
    *,
    rejected: bool = False,
    empty_ok: bool = False,
) -> PlannedFile:
    name = _file_name(dataset, plan.code, day, seq, plan.fmt)
    data = _render(plan, contract, dataset, name, day, rows, seed)
    n = len(rows)
    if rejected:
        # the export job counted the header line as a row
        ok = _ok_bytes(data, n + 1)
        outcome = Outcome("rejected", n, 0, n, (_FILE_REASON_REJECTED,))
    else:
        ok = b"" if empty_ok else _ok_bytes(data, n)
        bad = [(k + 2, r) for k, r in enumerate(reasons) if r is not None]
        threshold = contract.feeds[dataset].reject_threshold
        if bad and len(bad) / n >= threshold * 0.8:
            raise ValueError(f"{name}: {len(bad)} of {n} rows invalid, too close to the threshold")
        outcome = Outcome(
            "partially_accepted" if bad else "accepted",
            n,
            n - len(bad),
            len(bad),
            tuple(sorted({r for _, r in bad})),
            tuple(bad),
        )
    encoding = "xlsx" if plan.fmt == "xlsx" else plan.encoding
    return PlannedFile(
        plan.code,
        dataset,
        day,
        seq,
        name,
        encoding,
        plan.fmt.endswith(".gz"),
        data,
        ok,
        tuple(rows),
        tuple(reasons),
        outcome,
    )


def _as_sent(plan: _BankPlan, row: dict) -> dict:
    """A column the bank's export does not have arrives as no value."""
    return {k: (None if k in plan.omit else v) for k, v in row.items()}


def _with_source(rows: Sequence[dict], reasons: Sequence[str | None], f: PlannedFile) -> list[dict]:
    return [
        {
            **r,
            "source_file": f.name,
            "source_line": k + 2,
            "reject_reason": _FILE_REASON_REJECTED if f.expected.status == "rejected" else reason,
        }
        for k, (r, reason) in enumerate(zip(rows, reasons, strict=True))
    ]


_PLAN_BY_CODE = {p.code: p for p in _PLANS}
_TOWN_BY_CODE = {t.town_code: t for t in towns()}


# --------------------------------------------------------------------------- public API


def build_demo(seed: int = DEFAULT_SEED) -> DemoDrop:
    """The whole drop in memory; the same seed gives the same bytes."""
    contracts = load_contracts(DEFAULT_CONTRACTS_DIR)
    rng = random.Random(seed)
    names = _Names(rng)

    states: dict[str, _BankState] = {}
    counted: dict[str, list[_Record]] = {}
    for plan in _PLANS:
        outlets = _build_outlets(plan, contracts[plan.code], rng, names)
        states[plan.code] = _BankState(plan, outlets)
        counted[plan.code] = _counted_records(plan, states[plan.code], rng)

    # the report's mix of business types and amounts, spread over all banks
    every = [r for p in _PLANS for r in counted[p.code]]
    types = [OPENING] * _COUNTED_OPENINGS + [LOAN] * _COUNTED_LOANS
    if len(types) != len(every):
        raise ValueError(f"plans hold {len(every)} records, the report {len(types)}")
    rng.shuffle(types)
    loans = []
    for r, t in zip(every, types, strict=True):
        r.biz_type = t
        if t == LOAN:
            loans.append(r)
    for r, (credit, drawn) in zip(loans, _loan_amounts(rng, len(loans)), strict=True):
        r.credit_wan, r.drawn_wan = credit, drawn

    banks: dict[str, BankDrop] = {}
    for plan in _PLANS:
        contract, state = contracts[plan.code], states[plan.code]
        records = counted[plan.code] + _add_noise(plan, state, rng, counted[plan.code])
        _assign_enterprises(records, names, rng)
        _assign_ids(plan, records)
        unknown = plan.codes[SUPERMARKET][0].format(
            plan.codes[SUPERMARKET][1] + plan.supermarkets_old + sum(plan.supermarkets_new)
        )
        files: list[PlannedFile] = []
        snapshots: dict[dt.date, tuple[dict, ...]] = {}
        for i, day in enumerate(plan.outlet_days):
            rows = [_as_sent(plan, r) for r, _ in state.snap_rows[i]]
            reasons = [reason for _, reason in state.snap_rows[i]]
            f = _planned(plan, contract, Dataset.OUTLET, day, 0, rows, reasons, seed)
            files.append(f)
            snapshots[day] = tuple(_with_source(rows, reasons, f))
        elic_rows: list[dict] = []
        for i, ef in enumerate(plan.elic_files):
            sends = sorted(
                ((r, kind) for r in records for j, kind in r.sends if j == i),
                key=lambda rk: (rk[0].biz_date, rk[0].biz_id),
            )
            rows = [_as_sent(plan, _sent_row(r, kind, ef.day, unknown)) for r, kind in sends]
            reasons = [_ROW_REASON.get(kind) for _, kind in sends]
            f = _planned(
                plan,
                contract,
                Dataset.ELIC,
                ef.day,
                ef.seq,
                rows,
                reasons,
                seed,
                rejected=ef.rejected,
                empty_ok=ef.empty_ok,
            )
            files.append(f)
            elic_rows.extend(_with_source(rows, reasons, f))
        files.sort(key=_processing_key)
        order = {f.name: k for k, f in enumerate(files)}
        elic_rows.sort(key=lambda r: (order[r["source_file"]], r["source_line"]))
        banks[plan.code] = BankDrop(
            plan.code, contract.bank_name, snapshots, tuple(elic_rows), tuple(files)
        )
    drop = DemoDrop(seed, AS_OF, banks)
    _self_check(drop)
    return drop


def _processing_key(f: PlannedFile) -> tuple:
    return (f.business_date, 0 if f.dataset == Dataset.OUTLET else 1, f.seq, f.name)


def bank_records(drop: DemoDrop) -> list[dict]:
    """The latest loaded version of every bank ELIC record, whatever its status or year:
    what ``fact_elicense_biz`` holds after the drop (the government usage side is made
    from it)."""
    latest: dict[tuple[str, str], dict] = {}
    for bank in drop.banks.values():
        for r in bank.elic_records:
            if r["reject_reason"] is None:
                latest[(bank.bank_code, r["biz_id"])] = r
    keys = ("biz_id", "uscc", "enterprise_name", "biz_type", "biz_date", "outlet_code", "status")
    return [
        {"bank_code": bank, **{k: r[k] for k in keys}} for (bank, _), r in sorted(latest.items())
    ]


def _self_check(drop: DemoDrop) -> None:
    """Refuse to hand out a drop whose story does not add up (guards other seeds)."""
    latest: dict[tuple[str, str], dict] = {}
    for bank in drop.banks.values():
        for r in bank.elic_records:
            if r["reject_reason"] is None:
                latest[(bank.bank_code, r["biz_id"])] = r
    ytd = [
        r
        for r in latest.values()
        if r["status"] == VALID and YEAR_START <= r["biz_date"] <= drop.as_of
    ]
    loans = [r for r in ytd if r["biz_type"] == LOAN]
    got = {
        "elicense_biz_total": len(ytd),
        "elicense_loans": len(loans),
        "credit_amount_yuan": sum((r["credit_amount"] for r in loans), Decimal("0.00")),
        "drawn_amount_yuan": sum((r["drawn_amount"] for r in loans), Decimal("0.00")),
    }
    for k, v in got.items():
        if Decimal(v) != EXPECTED_KPI[k]:
            raise AssertionError(f"demo drop: {k} = {v}, expected {EXPECTED_KPI[k]}")


def write_drop(drop: DemoDrop, landing_dir: Path) -> list[Path]:
    """Lay the drop out as ``<BANK>/inbox/<file>`` + ``.ok`` and an empty ``outbox/``.

    The data file is written before its ``.ok``, as a bank must upload. Returns the
    data files written, in processing order per bank.
    """
    written = []
    for bank in drop.banks.values():
        inbox = Path(landing_dir) / bank.bank_code / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        (Path(landing_dir) / bank.bank_code / "outbox").mkdir(parents=True, exist_ok=True)
        for f in bank.files:
            path = inbox / f.name
            path.write_bytes(f.data)
            (inbox / (f.name + ".ok")).write_bytes(f.ok)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m govbank_dev.demo", description="Write the deterministic demo drop."
    )
    parser.add_argument("--landing", type=Path, required=True, help="landing root folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    drop = build_demo(args.seed)
    write_drop(drop, args.landing)
    for f in drop.files:
        e = f.expected
        reasons = ",".join(e.reasons) or "-"
        print(
            f"{f.bank_code}/inbox/{f.name}\trows={e.rows_total}\texpect={e.status}"
            f"\tloaded={e.rows_loaded}\trejected={e.rows_rejected}\t{reasons}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
