"""What the page's ECharts draw from: the mart rows as one JSON document.

The page carries it in a ``<script type="application/json">`` block (data, not code:
the Content-Security-Policy runs scripts from 'self' only) and ``static/dashboard.js``
draws and filters the charts from it in the browser; ECharts itself is vendored under
``static/vendor/`` so nothing is loaded from the internet. Amounts travel as strings
(exact decimals) and the browser formats them.
"""

from __future__ import annotations

from typing import Any

from govbank.dashboard.data import DashboardData
from govbank.dashboard.tables import TABLES, Filters
from govbank.domain.datasets import OUTLET_TYPES

PALETTE = ("#1f6fb2", "#d9822b", "#2e9d5b", "#b8415a", "#7a5cc2", "#5a7d8c", "#c2a83e")
TYPE_COLOURS = dict(zip(OUTLET_TYPES, ("#c0392b", "#1f6fb2", "#2e9d5b", "#8c8c8c"), strict=True))
RECON_PARTS = (("matched", "已匹配", "#2e9d5b"), ("bank_only", "仅银行有", "#d9822b"), ("gov_only", "仅政务平台有", "#1f6fb2"))


def payload(data: DashboardData, filters: Filters, prefix: str, report_url: str | None) -> dict[str, Any]:
    """Everything ``dashboard.js`` needs; no personal data (the marts hold none)."""
    banks = sorted({*data.banks, *(m.bank_code for m in data.monthly), *(r.bank_code for r in data.recon)})
    return {
        "asOf": data.as_of.isoformat() if data.as_of else None,
        "months": data.months,
        "state": {"from": filters.start, "to": filters.end, "town": filters.town, "bank": filters.bank},
        "banks": [
            {"code": b, "name": data.banks.get(b, b), "colour": PALETTE[i % len(PALETTE)]}
            for i, b in enumerate(banks)
        ],
        "outletTypes": [{"name": k, "colour": c} for k, c in TYPE_COLOURS.items()],
        "reconParts": [{"key": k, "name": n, "colour": c} for k, n, c in RECON_PARTS],
        "towns": [
            {"code": t.code, "name": t.name, "lon": t.longitude, "lat": t.latitude} for t in data.towns
        ],
        "outlets": [list(o) for o in data.outlets],
        "monthly": [
            [m.bank_code, m.month, m.biz_type, m.records,
             None if m.credit_amount_yuan is None else f"{m.credit_amount_yuan:f}",
             None if m.drawn_amount_yuan is None else f"{m.drawn_amount_yuan:f}"]
            for m in data.monthly
        ],
        "recon": [list(r) for r in data.recon],
        "tables": list(TABLES),
        "exportUrl": f"{prefix}/export",
        "reportUrl": report_url,
    }
