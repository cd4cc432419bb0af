"""Reference data shipped with the package: Ouhai's towns and the USCC exception list."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent / "data"

# Ouhai's bounding box with a margin (degrees), for outlet coordinates.
OUHAI_LON = (Decimal("120.35"), Decimal("120.80"))
OUHAI_LAT = (Decimal("27.83"), Decimal("28.10"))


@dataclass(frozen=True)
class Town:
    town_code: str
    town_name: str
    town_kind: str
    latitude: Decimal
    longitude: Decimal


@cache
def towns() -> tuple[Town, ...]:
    with (REFERENCE_DIR / "towns.csv").open(encoding="utf-8", newline="") as fh:
        return tuple(
            Town(
                r["town_code"],
                r["town_name"],
                r["town_kind"],
                Decimal(r["latitude"]),
                Decimal(r["longitude"]),
            )
            for r in csv.DictReader(fh)
        )


@cache
def town_lookup() -> dict[str, str]:
    """Name, 12-digit code or 9-digit code -> 12-digit town_code."""
    out: dict[str, str] = {}
    for t in towns():
        out[t.town_name] = t.town_code
        out[t.town_code] = t.town_code
        out[t.town_code[:9]] = t.town_code
    return out


@cache
def uscc_exceptions() -> frozenset[str]:
    with (REFERENCE_DIR / "uscc_exceptions.csv").open(encoding="utf-8", newline="") as fh:
        return frozenset(r["uscc"].strip() for r in csv.DictReader(fh) if r.get("uscc"))
