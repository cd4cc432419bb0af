"""The warehouse tables of warehouse.md v1, as SQLAlchemy Core metadata.

Tables carry no schema here; on PostgreSQL the engine maps them into ``govbank``
with ``schema_translate_map`` so one set of definitions (and one set of Alembic
migrations) serves SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

PG_SCHEMA = "govbank"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

Amount = Numeric(18, 2)
Coord = Numeric(9, 6)
TZ = DateTime(timezone=True)

dim_town = Table(
    "dim_town",
    metadata,
    Column("town_code", String(12), primary_key=True, comment="镇街代码（12位统计用区划代码）"),
    Column("town_name", String(32), nullable=False, comment="镇街名称"),
    Column("town_kind", String(8), nullable=False, comment="类别（镇/街道）"),
    Column("longitude", Coord, comment="镇街中心经度"),
    Column("latitude", Coord, comment="镇街中心纬度"),
    comment="镇街维表：瓯海区的镇和街道",
)

dim_bank = Table(
    "dim_bank",
    metadata,
    Column("bank_code", String(16), primary_key=True, comment="银行代码"),
    Column("bank_name", String(100), nullable=False, comment="银行名称"),
    Column("joined_on", Date, comment="纳入政银合作的日期"),
    comment="合作银行维表",
)

dim_outlet = Table(
    "dim_outlet",
    metadata,
    Column("outlet_key", Integer, primary_key=True, autoincrement=True, comment="网点版本代理键"),
    Column("bank_code", String(16), nullable=False, comment="银行代码"),
    Column("outlet_code", String(32), nullable=False, comment="网点编码（银行内唯一）"),
    Column("outlet_name", Text, nullable=False, comment="网点名称"),
    Column("outlet_type", String(16), nullable=False, comment="网点类型（政务服务超市/自助终端/流动服务车/普通网点）"),
    Column("town_code", String(12), ForeignKey("dim_town.town_code"), comment="所在镇街代码"),
    Column("community", Text, comment="所在村社区"),
    Column("address", Text, comment="地址"),
    Column("longitude", Coord, comment="经度"),
    Column("latitude", Coord, comment="纬度"),
    Column("service_items", Integer, comment="可办理的政务服务事项数（项）"),
    Column("opened_on", Date, comment="开设日期"),
    Column("status", String(8), nullable=False, comment="状态（正常/暂停/撤销）"),
    Column("valid_from", Date, nullable=False, comment="本版本生效日（网点清单的业务日期）"),
    Column("valid_to", Date, comment="本版本失效日（不含；空表示仍有效）"),
    Column("is_current", Boolean, nullable=False, comment="是否当前版本"),
    Column("source_file", String(255), nullable=False, comment="来源文件名"),
    UniqueConstraint("bank_code", "outlet_code", "valid_from"),
    Index(
        "uq_dim_outlet_current",
        "bank_code",
        "outlet_code",
        unique=True,
        sqlite_where=text("is_current"),
        postgresql_where=text("is_current"),
    ),
    comment="银行网点维表（缓慢变化维：每次变更一个版本）",
)

fact_elicense_biz = Table(
    "fact_elicense_biz",
    metadata,
    Column("bank_code", String(16), primary_key=True),
    Column("biz_id", String(64), primary_key=True),
    Column("biz_type", String(8), nullable=False),
    Column("uscc", String(18), nullable=False),
    Column("enterprise_name", Text, nullable=False),
    Column("outlet_code", String(32), nullable=False),
    Column("biz_date", Date, nullable=False),
    Column("credit_amount_yuan", Amount),
    Column("drawn_amount_yuan", Amount),
    Column("loan_product", Text),
    Column("status", String(4), nullable=False),
    Column("legal_rep_key", String(64)),
    Column("source_file", String(255), nullable=False),
    Column("source_line", Integer, nullable=False),
    Column("loaded_at", TZ, nullable=False),
)

fact_elicense_usage = Table(
    "fact_elicense_usage",
    metadata,
    Column("usage_id", String(64), primary_key=True),
    Column("uscc", String(18), nullable=False),
    Column("enterprise_name", Text),
    Column("scene", String(8), nullable=False),
    Column("bank_code", String(16), nullable=False),
    Column("outlet_code", String(32)),
    Column("authorized_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("status", String(4), nullable=False),
    Column("source_run", String(64)),
    Column("loaded_at", TZ, nullable=False),
)

etl_file = Table(
    "etl_file",
    metadata,
    Column("file_id", Integer, primary_key=True, autoincrement=True),
    Column("file_name", String(255), nullable=False),
    Column("bank_code", String(16), nullable=False),
    Column("dataset", String(8)),
    Column("business_date", Date),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("received_at", TZ, nullable=False),
    Column("processed_at", TZ),
    Column("status", String(20), nullable=False),
    Column("rows_total", Integer, nullable=False, server_default="0"),
    Column("rows_loaded", Integer, nullable=False, server_default="0"),
    Column("rows_rejected", Integer, nullable=False, server_default="0"),
    Column("archive_path", Text),
    Column("error", Text),
    Column("duplicate_of", Integer),
    Column("data_docs", Text),
    Column("answered_at", TZ),
    # an operator's replay: the earlier outcome (file_id) these bytes were reprocessed from
    Column("replay_of", Integer),
    Column("archive_purged_at", TZ),  # housekeeping removed the raw bytes past retention
    # times a run began loading it; past GOVBANK_MAX_ATTEMPTS it is set aside as poison
    Column("attempts", Integer, nullable=False, server_default="0"),
    # one original per bank and digest: the same bytes again from that bank are a
    # duplicate; another bank's identical file is its own (and never named to it).
    # Replays are left out: they reprocess bytes already registered, on purpose.
    Index(
        "uq_etl_file_bank_sha256_original",
        "bank_code",
        "sha256",
        unique=True,
        sqlite_where=text("status <> 'duplicate' AND replay_of IS NULL"),
        postgresql_where=text("status <> 'duplicate' AND replay_of IS NULL"),
    ),
)

etl_reject = Table(
    "etl_reject",
    metadata,
    Column("reject_id", Integer, primary_key=True, autoincrement=True),
    Column("file_id", Integer, nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("line", Integer),
    Column("field", String(64)),
    Column("reason_code", String(48), nullable=False),
    Column("message", Text, nullable=False),
    Column("value", Text),
    # NULL: one issue; N: a summary row standing for N issues of its reason not listed
    Column("occurrences", Integer),
    Index("ix_etl_reject_file", "file_id"),
)

etl_watermark = Table(
    "etl_watermark",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("watermark", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
)

# Staging: rows of one file wait here, tagged with their load, inside the file's
# transaction; a failed load rolls them back with everything else.
stg_outlet = Table(
    "stg_outlet",
    metadata,
    Column("load_id", String(36), nullable=False, index=True),
    *(
        Column(c.name, c.type, nullable=c.nullable)
        for c in dim_outlet.columns
        if c.name not in ("outlet_key", "valid_from", "valid_to", "is_current", "source_file")
    ),
)

stg_elicense_biz = Table(
    "stg_elicense_biz",
    metadata,
    Column("load_id", String(36), nullable=False, index=True),
    *(
        Column(c.name, c.type, nullable=c.nullable)
        for c in fact_elicense_biz.columns
    ),
)

MONTH_START = "当月1日（日期型月份，供BI按月分组）"

mart_kpi = Table(
    "mart_kpi",
    metadata,
    Column("as_of", Date, primary_key=True, comment="统计截至日"),
    Column("metric", String(64), primary_key=True, comment="指标代码（见 dim_metric）"),
    Column("value", Numeric(20, 2), nullable=False, comment="指标值（单位见 dim_metric.unit）"),
    comment="政银合作核心指标：每个截至日一组（年内累计或时点数）",
)

mart_outlets_by_town = Table(
    "mart_outlets_by_town",
    metadata,
    Column("town_code", String(12), primary_key=True, comment="镇街代码"),
    Column("town_name", String(32), nullable=False, comment="镇街名称"),
    Column("bank_code", String(16), primary_key=True, comment="银行代码"),
    Column("outlet_type", String(16), primary_key=True, comment="网点类型"),
    Column("outlets", Integer, nullable=False, comment="正常营业的网点数（个）"),
    comment="各镇街、各银行、各类型正常营业的网点数",
)

mart_elicense_monthly = Table(
    "mart_elicense_monthly",
    metadata,
    Column("bank_code", String(16), primary_key=True, comment="银行代码"),
    Column("month", String(7), primary_key=True, comment="业务月份（YYYY-MM）"),
    Column("biz_type", String(8), primary_key=True, comment="业务类型（一照开户/一照贷款）"),
    Column("records", Integer, nullable=False, comment="有效业务笔数（笔）"),
    Column("credit_amount_yuan", Amount, comment="授信金额（元）"),
    Column("drawn_amount_yuan", Amount, comment="用信金额（元）"),
    Column("utilisation", Numeric(9, 4), comment="用信率（用信/授信）"),
    Column("month_start", Date, comment=MONTH_START),
    comment="电子营业执照业务按银行、月份、业务类型汇总（仅有效记录）",
)

mart_bank_freshness = Table(
    "mart_bank_freshness",
    metadata,
    Column("bank_code", String(16), primary_key=True, comment="银行代码"),
    Column("dataset", String(8), primary_key=True, comment="数据集（OUTLET 网点/ELIC 电子执照业务）"),
    Column("as_of", Date, nullable=False, comment="统计截至日"),
    Column("last_business_date", Date, comment="最近一次成功入库文件的业务日期"),
    Column("last_received_at", TZ, comment="最近一次收到文件的时间"),
    Column("last_status", String(20), comment="最近一次文件的处理状态"),
    Column("expected_every_days", Integer, nullable=False, comment="约定报送周期（天）"),
    Column("days_late", Integer, nullable=False, comment="逾期天数"),
    Column("is_late", Boolean, nullable=False, comment="是否迟报"),
    comment="各银行各数据集的报送及时性",
)

mart_reconciliation = Table(
    "mart_reconciliation",
    metadata,
    Column("bank_code", String(16), primary_key=True, comment="银行代码"),
    Column("month", String(7), primary_key=True, comment="业务月份（YYYY-MM）"),
    Column("scene", String(8), primary_key=True, comment="场景（一照开户/一照贷款）"),
    Column("matched", Integer, nullable=False, comment="银行与政府平台一致的笔数（笔）"),
    Column("bank_only", Integer, nullable=False, comment="仅银行报送的笔数（笔）"),
    Column("gov_only", Integer, nullable=False, comment="仅政府平台有授权记录的笔数（笔）"),
    Column("month_start", Date, comment=MONTH_START),
    comment="银行报送与政府平台电子执照使用记录的对账汇总",
)

mart_reconciliation_detail = Table(
    "mart_reconciliation_detail",
    metadata,
    Column("side", String(10), primary_key=True, comment="未匹配的一方（bank_only 仅银行/gov_only 仅政府平台）"),
    Column("record_id", String(80), primary_key=True, comment="记录编号（银行业务编号或平台使用记录编号）"),
    Column("bank_code", String(16), primary_key=True, comment="银行代码"),
    Column("scene", String(8), nullable=False, comment="场景（一照开户/一照贷款）"),
    Column("uscc", String(18), nullable=False, comment="统一社会信用代码"),
    Column("enterprise_name", Text, comment="企业名称"),
    Column("record_date", Date, nullable=False, comment="业务日期"),
    Column("month", String(7), nullable=False, comment="业务月份（YYYY-MM）"),
    Column("month_start", Date, comment=MONTH_START),
    comment="对账未匹配的记录明细",
)

mart_outlet_detail = Table(
    "mart_outlet_detail",
    metadata,
    Column("bank_code", String(16), primary_key=True, comment="银行代码"),
    Column("outlet_code", String(32), primary_key=True, comment="网点编码"),
    Column("bank_name", String(100), nullable=False, comment="银行名称"),
    Column("outlet_name", Text, nullable=False, comment="网点名称"),
    Column("outlet_type", String(16), nullable=False, comment="网点类型"),
    Column("town_code", String(12), comment="所在镇街代码"),
    Column("town_name", String(32), comment="所在镇街名称"),
    Column("service_items", Integer, comment="可办理的政务服务事项数（项）"),
    Column("opened_on", Date, comment="开设日期"),
    Column("opened_month", Date, comment="开设月份（当月1日）"),
    comment="正常营业的网点明细（当前版本）：政务服务超市、自助终端、流动服务车及普通网点",
)

mart_bank_outlets = Table(
    "mart_bank_outlets",
    metadata,
    Column("bank_code", String(16), primary_key=True, comment="银行代码"),
    Column("bank_name", String(100), nullable=False, comment="银行名称"),
    Column("joined_on", Date, comment="纳入政银合作的日期"),
    Column("joined_month", Date, comment="纳入月份（当月1日）"),
    Column("outlets", Integer, nullable=False, comment="正常营业的网点数（个，含普通网点）"),
    Column("service_outlets", Integer, nullable=False, comment="政银合作网点数（个：政务服务超市、自助终端、流动服务车）"),
    Column("supermarkets", Integer, nullable=False, comment="政务服务超市数（个）"),
    Column("terminals", Integer, nullable=False, comment="自助终端数（台）"),
    Column("vans", Integer, nullable=False, comment="流动服务车数（辆）"),
    comment="各合作银行的加入日期及正常营业的网点数",
)

dim_metric = Table(
    "dim_metric",
    metadata,
    Column("code", String(64), primary_key=True, comment="指标代码（mart_kpi.metric）"),
    Column("label", String(64), nullable=False, comment="指标中文名称（工作总结中的叫法）"),
    Column("short_label", String(32), nullable=False, comment="看板标题用的简称"),
    Column("unit", String(8), nullable=False, comment="单位"),
    Column("definition", Text, nullable=False, comment="统计口径"),
    Column("position", Integer, nullable=False, comment="展示顺序"),
    comment="指标字典：mart_kpi 各指标的中文名、单位和口径（来自 govbank.domain.metrics）",
)

MART_TABLES = (
    "mart_kpi",
    "mart_outlets_by_town",
    "mart_elicense_monthly",
    "mart_bank_freshness",
    "mart_reconciliation",
    "mart_reconciliation_detail",
    "mart_outlet_detail",
    "mart_bank_outlets",
)
DASHBOARD_TABLES = (*MART_TABLES, "dim_town", "dim_bank", "dim_outlet", "dim_metric")
