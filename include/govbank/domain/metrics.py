"""The KPI metrics of ``mart_kpi``: code, the report's Chinese name, unit, tile name, definition.

One list, in the seed report's order: the command line (``python -m govbank kpi``) and
the dashboard's tiles name the figures from here, and ``govbank.marts.build`` computes
exactly these codes; the marts build copies them into ``dim_metric`` so a BI tool
reads the same labels, units and definitions.
"""

from __future__ import annotations

from typing import NamedTuple


class Metric(NamedTuple):
    code: str
    label: str  # as the district's report names it
    unit: str  # 元 for amounts; the dashboard shows them in 亿元
    short: str  # the dashboard tile's label
    definition: str = ""  # how it is counted, for dim_metric and BI users

    @property
    def titled(self) -> str:
        """The label with its unit, as the report's table heads read: 政务服务超市（个）."""
        return f"{self.label}（{self.unit}）"


_LIVE = "当前版本、状态为正常的网点"
_YTD = "当年1月1日至统计截至日，状态为有效的电子营业执照业务记录"

METRICS: tuple[Metric, ...] = (
    Metric("service_supermarkets", "政务服务超市", "个", "政务服务超市",
           f"网点类型为政务服务超市的{_LIVE}数"),
    Metric("service_supermarkets_opened_ytd", "其中今年新开", "个", "今年新开",
           f"开设日期在当年1月1日至统计截至日之间的政务服务超市数（{_LIVE}）"),
    Metric("self_service_terminals", "瓯e办自助终端", "台", "自助终端",
           f"网点类型为自助终端的{_LIVE}数"),
    Metric("mobile_service_vans", "政银服务流动车", "辆", "政银服务流动车",
           f"网点类型为流动服务车的{_LIVE}数"),
    Metric("banks_in_cooperation", "合作银行", "家", "合作银行",
           f"至少有一个{_LIVE}的银行数"),
    Metric("elicense_biz_total", "电子营业执照业务", "笔", "电子营业执照业务",
           f"{_YTD}笔数（一照开户与一照贷款之和）"),
    Metric("elicense_account_openings", "一照开户", "笔", "一照开户",
           f"{_YTD}中业务类型为一照开户的笔数"),
    Metric("elicense_loans", "一照贷款", "笔", "一照贷款",
           f"{_YTD}中业务类型为一照贷款的笔数"),
    Metric("credit_amount_yuan", "授信金额", "元", "授信",
           f"{_YTD}中一照贷款的授信额度之和"),
    Metric("drawn_amount_yuan", "用信金额", "元", "用信",
           f"{_YTD}中一照贷款的已用信金额之和"),
)
BY_CODE: dict[str, Metric] = {m.code: m for m in METRICS}
