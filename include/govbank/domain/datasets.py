"""The two bank datasets of bank-files.md v1: canonical fields and default headers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Dataset(StrEnum):
    OUTLET = "OUTLET"
    ELIC = "ELIC"


@dataclass(frozen=True)
class Field:
    name: str
    header: str
    kind: str  # text | date | decimal | amount | int | enum
    required: bool
    max_len: int | None = None
    personal: bool = False


OUTLET_TYPES = ("政务服务超市", "自助终端", "流动服务车", "普通网点")
OUTLET_STATUSES = ("正常", "暂停", "撤销")
BIZ_TYPES = ("一照开户", "一照贷款")
BIZ_STATUSES = ("有效", "撤销")

FIELDS: dict[Dataset, tuple[Field, ...]] = {
    Dataset.OUTLET: (
        Field("outlet_code", "网点编号", "text", True, 32),
        Field("outlet_name", "网点名称", "text", True),
        Field("outlet_type", "网点类型", "enum", True),
        Field("town", "所属镇街", "text", True),
        Field("community", "所属村社", "text", False),
        Field("address", "地址", "text", True),
        Field("longitude", "经度", "decimal", False),
        Field("latitude", "纬度", "decimal", False),
        Field("service_items", "可办事项数", "int", False),
        Field("opened_on", "启用日期", "date", True),
        Field("status", "状态", "enum", True),
    ),
    Dataset.ELIC: (
        Field("biz_id", "业务流水号", "text", True, 64),
        Field("outlet_code", "办理网点编号", "text", True, 32),
        Field("biz_type", "业务类型", "enum", True),
        Field("uscc", "统一社会信用代码", "text", True),
        Field("enterprise_name", "企业名称", "text", True),
        Field("legal_rep_name", "法定代表人", "text", False, personal=True),
        Field("legal_rep_id", "法定代表人证件号", "text", False, personal=True),
        Field("biz_date", "业务日期", "date", True),
        Field("credit_amount", "授信金额", "amount", False),
        Field("drawn_amount", "用信金额", "amount", False),
        Field("loan_product", "贷款产品", "text", False),
        Field("status", "状态", "enum", True),
    ),
}

ENUMS: dict[tuple[Dataset, str], tuple[str, ...]] = {
    (Dataset.OUTLET, "outlet_type"): OUTLET_TYPES,
    (Dataset.OUTLET, "status"): OUTLET_STATUSES,
    (Dataset.ELIC, "biz_type"): BIZ_TYPES,
    (Dataset.ELIC, "status"): BIZ_STATUSES,
}

PERSONAL_FIELDS = frozenset(f.name for fs in FIELDS.values() for f in fs if f.personal)


def field_names(dataset: Dataset) -> tuple[str, ...]:
    return tuple(f.name for f in FIELDS[dataset])


def default_headers(dataset: Dataset) -> dict[str, str]:
    return {f.name: f.header for f in FIELDS[dataset]}
