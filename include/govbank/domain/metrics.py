"""The KPI metrics of ``mart_kpi``: code, the report's Chinese name, unit, tile name.

One list, in the seed report's order: the command line (``python -m govbank kpi``) and
the dashboard's tiles name the figures from here, and ``govbank.marts.build`` computes
exactly these codes.
"""

from __future__ import annotations

from typing import NamedTuple


class Metric(NamedTuple):
    code: str
    label: str  # as the district's report names it
    unit: str  # 元 for amounts; the dashboard shows them in 亿元
    short: str  # the dashboard tile's label

    @property
    def titled(self) -> str:
        """The label with its unit, as the report's table heads read: 政务服务超市（个）."""
        return f"{self.label}（{self.unit}）"


METRICS: tuple[Metric, ...] = (
    Metric("service_supermarkets", "政务服务超市", "个", "政务服务超市"),
    Metric("service_supermarkets_opened_ytd", "其中今年新开", "个", "今年新开"),
    Metric("self_service_terminals", "瓯e办自助终端", "台", "自助终端"),
    Metric("mobile_service_vans", "政银服务流动车", "辆", "政银服务流动车"),
    Metric("banks_in_cooperation", "合作银行", "家", "合作银行"),
    Metric("elicense_biz_total", "电子营业执照业务", "笔", "电子营业执照业务"),
    Metric("elicense_account_openings", "一照开户", "笔", "一照开户"),
    Metric("elicense_loans", "一照贷款", "笔", "一照贷款"),
    Metric("credit_amount_yuan", "授信金额", "元", "授信"),
    Metric("drawn_amount_yuan", "用信金额", "元", "用信"),
)
BY_CODE: dict[str, Metric] = {m.code: m for m in METRICS}
