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
    Column("town_code", String(12), primary_key=True),
    Column("town_name", String(32), nullable=False),
    Column("town_kind", String(8), nullable=False),
    Column("longitude", Coord),
    Column("latitude", Coord),
)

dim_bank = Table(
    "dim_bank",
    metadata,
    Column("bank_code", String(16), primary_key=True),
    Column("bank_name", String(100), nullable=False),
    Column("joined_on", Date),
)

dim_outlet = Table(
    "dim_outlet",
    metadata,
    Column("outlet_key", Integer, primary_key=True, autoincrement=True),
    Column("bank_code", String(16), nullable=False),
    Column("outlet_code", String(32), nullable=False),
    Column("outlet_name", Text, nullable=False),
    Column("outlet_type", String(16), nullable=False),
    Column("town_code", String(12), ForeignKey("dim_town.town_code")),
    Column("community", Text),
    Column("address", Text),
    Column("longitude", Coord),
    Column("latitude", Coord),
    Column("service_items", Integer),
    Column("opened_on", Date),
    Column("status", String(8), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date),
    Column("is_current", Boolean, nullable=False),
    Column("source_file", String(255), nullable=False),
    UniqueConstraint("bank_code", "outlet_code", "valid_from"),
    Index(
        "uq_dim_outlet_current",
        "bank_code",
        "outlet_code",
        unique=True,
        sqlite_where=text("is_current"),
        postgresql_where=text("is_current"),
    ),
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
    # times a run began loading it; past GOVBANK_MAX_ATTEMPTS it is set aside as poison
    Column("attempts", Integer, nullable=False, server_default="0"),
    # one original per bank and digest: the same bytes again from that bank are a
    # duplicate; another bank's identical file is its own (and never named to it)
    Index(
        "uq_etl_file_bank_sha256_original",
        "bank_code",
        "sha256",
        unique=True,
        sqlite_where=text("status <> 'duplicate'"),
        postgresql_where=text("status <> 'duplicate'"),
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

mart_kpi = Table(
    "mart_kpi",
    metadata,
    Column("as_of", Date, primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("value", Numeric(20, 2), nullable=False),
)

mart_outlets_by_town = Table(
    "mart_outlets_by_town",
    metadata,
    Column("town_code", String(12), primary_key=True),
    Column("town_name", String(32), nullable=False),
    Column("bank_code", String(16), primary_key=True),
    Column("outlet_type", String(16), primary_key=True),
    Column("outlets", Integer, nullable=False),
)

mart_elicense_monthly = Table(
    "mart_elicense_monthly",
    metadata,
    Column("bank_code", String(16), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("biz_type", String(8), primary_key=True),
    Column("records", Integer, nullable=False),
    Column("credit_amount_yuan", Amount),
    Column("drawn_amount_yuan", Amount),
    Column("utilisation", Numeric(9, 4)),
)

mart_bank_freshness = Table(
    "mart_bank_freshness",
    metadata,
    Column("bank_code", String(16), primary_key=True),
    Column("dataset", String(8), primary_key=True),
    Column("as_of", Date, nullable=False),
    Column("last_business_date", Date),
    Column("last_received_at", TZ),
    Column("last_status", String(20)),
    Column("expected_every_days", Integer, nullable=False),
    Column("days_late", Integer, nullable=False),
    Column("is_late", Boolean, nullable=False),
)

mart_reconciliation = Table(
    "mart_reconciliation",
    metadata,
    Column("bank_code", String(16), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("scene", String(8), primary_key=True),
    Column("matched", Integer, nullable=False),
    Column("bank_only", Integer, nullable=False),
    Column("gov_only", Integer, nullable=False),
)

mart_reconciliation_detail = Table(
    "mart_reconciliation_detail",
    metadata,
    Column("side", String(10), primary_key=True),  # bank_only | gov_only
    Column("record_id", String(80), primary_key=True),  # biz_id or usage_id
    Column("bank_code", String(16), primary_key=True),
    Column("scene", String(8), nullable=False),
    Column("uscc", String(18), nullable=False),
    Column("enterprise_name", Text),
    Column("record_date", Date, nullable=False),
    Column("month", String(7), nullable=False),
)

MART_TABLES = (
    "mart_kpi",
    "mart_outlets_by_town",
    "mart_elicense_monthly",
    "mart_bank_freshness",
    "mart_reconciliation",
    "mart_reconciliation_detail",
)
DASHBOARD_TABLES = (*MART_TABLES, "dim_town", "dim_bank", "dim_outlet")
