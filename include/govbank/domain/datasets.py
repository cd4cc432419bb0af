"""The two bank datasets of bank-files.md v1: canonical fields, default headers, and
one :class:`DatasetSpec` each saying how the ingest run stages, checks and merges it.

Adding a dataset is adding a spec here, a suite, a table and its migration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    free_text: bool = False  # typed by bank staff: may hold an ID or a mobile number, masked


OUTLET_TYPES = ("政务服务超市", "自助终端", "流动服务车", "普通网点")
OUTLET_STATUSES = ("正常", "暂停", "撤销")
BIZ_TYPES = ("一照开户", "一照贷款")
BIZ_STATUSES = ("有效", "撤销")

FIELDS: dict[Dataset, tuple[Field, ...]] = {
    Dataset.OUTLET: (
        Field("outlet_code", "网点编号", "text", True, 32),
        Field("outlet_name", "网点名称", "text", True, free_text=True),
        Field("outlet_type", "网点类型", "enum", True),
        Field("town", "所属镇街", "text", True),
        Field("community", "所属村社", "text", False, free_text=True),
        Field("address", "地址", "text", True, free_text=True),
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
        Field("enterprise_name", "企业名称", "text", True, free_text=True),
        Field("legal_rep_name", "法定代表人", "text", False, personal=True),
        Field("legal_rep_id", "法定代表人证件号", "text", False, personal=True),
        Field("biz_date", "业务日期", "date", True),
        Field("credit_amount", "授信金额", "amount", False),
        Field("drawn_amount", "用信金额", "amount", False),
        Field("loan_product", "贷款产品", "text", False, free_text=True),
        Field("status", "状态", "enum", True),
    ),
}

ENUMS: dict[tuple[Dataset, str], tuple[str, ...]] = {
    (Dataset.OUTLET, "outlet_type"): OUTLET_TYPES,
    (Dataset.OUTLET, "status"): OUTLET_STATUSES,
    (Dataset.ELIC, "biz_type"): BIZ_TYPES,
    (Dataset.ELIC, "status"): BIZ_STATUSES,
}



@dataclass(frozen=True)
class DatasetSpec:
    """What the ingest run knows about one dataset; it asks this instead of branching.

    Tables and the merge are named, not imported: the domain stays below the warehouse
    and the ingest layer, which look them up (``warehouse.schema``, ``ingest.merge.MERGES``).
    """

    dataset: Dataset
    fields: tuple[Field, ...]
    key_field: str  # one row per key in a file; a key sent twice is refused in every row
    staged: tuple[str, ...]  # the staging table's columns, in order
    staging_table: str  # template of the temporary staging tables (its column types)
    target_table: str  # what the merge writes; its merge lock is named after it
    merge: str  # key of ingest.merge.MERGES
    suite: str  # expectation suite name (validate.validator.SUITE_FILES)
    numeric: frozenset[str] = frozenset()  # float columns in the GX frame, not decimal text
    frame_skip: frozenset[str] = frozenset()  # personal and checked by no expectation
    renames: Mapping[str, str] = field(default_factory=dict)  # normalised field -> staged column
    pseudonyms: Mapping[str, str] = field(default_factory=dict)  # staged column -> personal field
    bank_column: str | None = None  # staged column filled with the file's bank code
    line_column: str | None = None  # staged column holding the file line
    row_rules: tuple[str, ...] = ()  # extra per-chunk rules (ingest.checks.ROW_RULES)
    snapshot: bool = False  # a full snapshot: a refused key still counts as sent
    early_insert: bool = False  # rows may reach the target while the file is checked

    @property
    def staged_from(self) -> dict[str, str]:
        """Staged column -> the normalised field it is taken from."""
        return {staged: name for name, staged in self.renames.items()}


SPECS: dict[Dataset, DatasetSpec] = {
    Dataset.OUTLET: DatasetSpec(
        dataset=Dataset.OUTLET,
        fields=FIELDS[Dataset.OUTLET],
        key_field="outlet_code",
        staged=(
            "bank_code", "outlet_code", "outlet_name", "outlet_type", "town_code", "community",
            "address", "longitude", "latitude", "service_items", "opened_on", "status",
        ),
        staging_table="stg_outlet",
        target_table="dim_outlet",
        merge="outlet_snapshot",
        suite="OUTLET",
        numeric=frozenset({"longitude", "latitude", "service_items"}),
        bank_column="bank_code",
        snapshot=True,
    ),
    Dataset.ELIC: DatasetSpec(
        dataset=Dataset.ELIC,
        fields=FIELDS[Dataset.ELIC],
        key_field="biz_id",
        staged=(
            "biz_id", "biz_type", "uscc", "enterprise_name", "outlet_code", "biz_date",
            "credit_amount_yuan", "drawn_amount_yuan", "loan_product", "status", "legal_rep_key",
            "source_line",
        ),
        staging_table="stg_elicense_biz",
        target_table="fact_elicense_biz",
        merge="elicense_upsert",
        suite="ELIC",
        numeric=frozenset({"credit_amount", "drawn_amount"}),
        frame_skip=frozenset({"legal_rep_name"}),
        renames={"credit_amount": "credit_amount_yuan", "drawn_amount": "drawn_amount_yuan"},
        pseudonyms={"legal_rep_key": "legal_rep_id"},
        line_column="source_line",
        row_rules=("UNKNOWN_OUTLET",),
        early_insert=True,
    ),
}


def spec_of(dataset: Dataset) -> DatasetSpec:
    return SPECS[dataset]


PERSONAL_FIELDS = frozenset(f.name for fs in FIELDS.values() for f in fs if f.personal)


def field_names(dataset: Dataset) -> tuple[str, ...]:
    return tuple(f.name for f in FIELDS[dataset])


def default_headers(dataset: Dataset) -> dict[str, str]:
    return {f.name: f.header for f in FIELDS[dataset]}
