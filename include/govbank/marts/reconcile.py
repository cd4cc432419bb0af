"""Reconcile the banks' ELIC records with the government's e-licence usage records.

The rule (warehouse.md, ``mart_reconciliation``):

- Only records with status 有效 take part, on both sides.
- A bank record and a usage record *can* match when they have the same ``uscc``, the same
  ``bank_code``, ``biz_type`` = ``scene``, and ``|biz_date - date(authorized_at)| <= 7``
  days, the usage's date taken in Asia/Shanghai.
- Matching is one to one and nearest dates first: of all candidate pairs, ordered by
  (distance in days, biz_id, usage_id), take the first pair whose two records are both
  still free, and repeat. Ties in distance go to the smaller biz_id, then usage_id.
- Month: the bank record's biz_date for matched and bank_only, the usage's date (in
  Asia/Shanghai) for gov_only.

That greedy pass is sequential as written; it is computed set-based in rounds of
"mutual nearest pairs": in each round every free bank record ranks its free candidates by
(distance, usage_id) and every free usage ranks its free candidates by (distance, biz_id);
pairs that rank each other first are matched (one INSERT ... SELECT with two window
functions). With one strict order on pairs, such a pair is the smallest left at both of its
records, and matching these "locally dominant" pairs round after round yields exactly the
greedy matching. Every round matches at least the smallest remaining pair, so the loop
ends; in practice it takes two or three rounds.
"""

from __future__ import annotations

import logging

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    union_all,
)
from sqlalchemy.schema import CreateTable, DropTable

from govbank.warehouse.dialect import days_apart, local_date, month_of, month_start, temp_schema
from govbank.warehouse.schema import (
    fact_elicense_biz,
    fact_elicense_usage,
    mart_reconciliation,
    mart_reconciliation_detail,
)

log = logging.getLogger(__name__)

MAX_DAYS = 7
LIVE = "有效"
MAX_ROUNDS = 10_000


def _work_tables(conn: Connection) -> tuple[Table, Table]:
    md = MetaData()
    schema = temp_schema(conn)
    edge = Table(
        "recon_edge",
        md,
        *_pair_columns(),
        PrimaryKeyConstraint("bank_code", "biz_id", "usage_id"),
        schema=schema,
    )
    match = Table(
        "recon_match",
        md,
        *_pair_columns(),
        PrimaryKeyConstraint("bank_code", "biz_id"),
        UniqueConstraint("usage_id"),
        schema=schema,
    )
    return edge, match


def _pair_columns() -> list[Column]:  # type: ignore[type-arg]
    return [
        Column("bank_code", String(16), nullable=False),
        Column("biz_id", String(64), nullable=False),
        Column("usage_id", String(64), nullable=False),
        Column("dist", Integer, nullable=False),
    ]


def rebuild_reconciliation(conn: Connection) -> None:
    """Replace ``mart_reconciliation`` and ``mart_reconciliation_detail``, in the caller's transaction."""
    edge, match = _work_tables(conn)
    for table in (edge, match):
        conn.execute(DropTable(table, if_exists=True))
        conn.execute(CreateTable(table))
    _pair(conn, edge, match)
    _list_unmatched(conn, match)
    _count(conn, match)
    for table in (match, edge):
        conn.execute(DropTable(table))


def _pair(conn: Connection, edge: Table, match: Table) -> None:
    """Candidate pairs into ``edge``, then rounds of mutual nearest pairs into ``match``."""
    b, u = fact_elicense_biz, fact_elicense_usage
    usage_day = local_date(conn, u.c.authorized_at)
    dist = days_apart(conn, b.c.biz_date, usage_day)
    candidates = (
        select(b.c.bank_code, b.c.biz_id, u.c.usage_id, dist)
        .select_from(
            b.join(
                u,
                and_(
                    u.c.uscc == b.c.uscc,
                    u.c.bank_code == b.c.bank_code,
                    u.c.scene == b.c.biz_type,
                ),
            )
        )
        .where(b.c.status == LIVE, u.c.status == LIVE, dist <= MAX_DAYS)
    )
    conn.execute(insert(edge).from_select(["bank_code", "biz_id", "usage_id", "dist"], candidates))

    # rounds of mutual nearest pairs among the records still free
    e = edge.alias("e")
    free = (
        select(
            e.c.bank_code,
            e.c.biz_id,
            e.c.usage_id,
            e.c.dist,
            func.row_number()
            .over(partition_by=[e.c.bank_code, e.c.biz_id], order_by=[e.c.dist, e.c.usage_id])
            .label("rank_b"),
            func.row_number()
            .over(partition_by=[e.c.usage_id], order_by=[e.c.dist, e.c.bank_code, e.c.biz_id])
            .label("rank_u"),
        )
        .where(
            ~exists().where(match.c.bank_code == e.c.bank_code, match.c.biz_id == e.c.biz_id),
            ~exists().where(match.c.usage_id == e.c.usage_id),
        )
        .subquery("free")
    )
    mutual = select(free.c.bank_code, free.c.biz_id, free.c.usage_id, free.c.dist).where(
        free.c.rank_b == 1, free.c.rank_u == 1
    )
    round_insert = (
        insert(match)
        .from_select(["bank_code", "biz_id", "usage_id", "dist"], mutual)
        .execution_options(preserve_rowcount=True)  # INSERT rowcount is opt-in in SQLAlchemy 2
    )
    rounds = 0
    while True:
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise RuntimeError("reconciliation did not converge; this is a bug")
        if conn.execute(round_insert).rowcount == 0:
            break
    log.info("reconciliation: matched in %d round(s)", rounds - 1)


def _list_unmatched(conn: Connection, match: Table) -> None:
    """Every live record of either side without a pair, into ``mart_reconciliation_detail``."""
    b, u = fact_elicense_biz, fact_elicense_usage
    usage_day = local_date(conn, u.c.authorized_at)
    conn.execute(delete(mart_reconciliation_detail))
    bank_only = select(
        literal("bank_only"),
        b.c.biz_id,
        b.c.bank_code,
        b.c.biz_type,
        b.c.uscc,
        b.c.enterprise_name,
        b.c.biz_date,
        month_of(conn, b.c.biz_date),
        month_start(conn, b.c.biz_date),
    ).where(
        b.c.status == LIVE,
        ~exists().where(match.c.bank_code == b.c.bank_code, match.c.biz_id == b.c.biz_id),
    )
    gov_only = select(
        literal("gov_only"),
        u.c.usage_id,
        u.c.bank_code,
        u.c.scene,
        u.c.uscc,
        u.c.enterprise_name,
        usage_day,
        month_of(conn, usage_day),
        month_start(conn, usage_day),
    ).where(u.c.status == LIVE, ~exists().where(match.c.usage_id == u.c.usage_id))
    detail_cols = [
        "side", "record_id", "bank_code", "scene", "uscc", "enterprise_name", "record_date", "month",
        "month_start",
    ]  # fmt: skip
    conn.execute(insert(mart_reconciliation_detail).from_select(detail_cols, bank_only))
    conn.execute(insert(mart_reconciliation_detail).from_select(detail_cols, gov_only))


def _count(conn: Connection, match: Table) -> None:
    """Matched and unmatched records per bank, month and scene, into ``mart_reconciliation``."""
    b = fact_elicense_biz
    d = mart_reconciliation_detail
    matched_rows = select(
        b.c.bank_code.label("bank_code"),
        month_of(conn, b.c.biz_date).label("month"),
        month_start(conn, b.c.biz_date).label("month_start"),
        b.c.biz_type.label("scene"),
        literal(1).label("m"),
        literal(0).label("bo"),
        literal(0).label("go"),
    ).select_from(
        b.join(match, and_(match.c.bank_code == b.c.bank_code, match.c.biz_id == b.c.biz_id))
    )
    side_rows = select(
        d.c.bank_code,
        d.c.month,
        d.c.month_start,
        d.c.scene,
        literal(0),
        case((d.c.side == "bank_only", 1), else_=0),
        case((d.c.side == "gov_only", 1), else_=0),
    )
    every = union_all(matched_rows, side_rows).subquery("every")
    totals = select(
        every.c.bank_code,
        every.c.month,
        every.c.scene,
        func.sum(every.c.m),
        func.sum(every.c.bo),
        func.sum(every.c.go),
        every.c.month_start,
    ).group_by(every.c.bank_code, every.c.month, every.c.month_start, every.c.scene)
    conn.execute(delete(mart_reconciliation))
    conn.execute(
        insert(mart_reconciliation).from_select(
            ["bank_code", "month", "scene", "matched", "bank_only", "gov_only", "month_start"],
            totals,
        )
    )
