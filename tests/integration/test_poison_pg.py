"""A NUL byte in a cell on PostgreSQL (issue 17, case 1): a row issue, never a COPY error.

COPY refused the text (``CharacterNotInRepertoire``), the file stayed ``processing`` and
every retry failed the same way. Now normalising finds it, the row is rejected with
``INVALID_CHARACTER`` and its line, the escaped value is stored, and the other rows load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from govbank.config.settings import Settings
from govbank.ingest.run import process_bank
from govbank.orchestration.runtime import build_context
from govbank.warehouse.db import make_engine, upgrade
from govbank.warehouse.schema import PG_SCHEMA, etl_reject
from tests.conftest import PSEUDONYM_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

HEADER = "网点编号|网点名称|网点类型|所属镇街|所属村社|地址|经度|纬度|可办事项数|启用日期|状态"
ROW = "W{n}|瓯海{name}支行|普通网点|娄桥街道|古岸头村|娄桥街道古岸头村{n}号|120.62|27.98|12|2023-01-05|正常"


def test_a_nul_in_a_cell_rejects_its_row_on_postgres(tmp_path: Path) -> None:
    url = os.environ.get("GOVBANK_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("set GOVBANK_TEST_POSTGRES_URL")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    upgrade(url, "head")
    engine.dispose()
    settings = Settings.from_env({"GOVBANK_LOCAL_DIR": str(tmp_path), "GOVBANK_WAREHOUSE_URL": url})
    inbox = settings.landing_dir / "WZB" / "inbox"
    inbox.mkdir(parents=True)
    lines = [HEADER] + [ROW.format(n=n, name="\x00" if n == 2 else "") for n in range(1, 41)]  # 1 in 40: under the 5 % threshold
    (inbox / "OUTLET_WZB_20230601.txt").write_bytes(("\n".join(lines) + "\n").encode())
    (inbox / "OUTLET_WZB_20230601.txt.ok").write_bytes(b"")
    ctx = build_context(settings, PSEUDONYM_KEY)
    try:
        (outcome,) = process_bank(ctx, "WZB")
        with ctx.engine.connect() as conn:
            rejects = conn.execute(select(etl_reject.c.line, etl_reject.c.reason_code, etl_reject.c.value)).all()
    finally:
        ctx.landing.close()
        ctx.engine.dispose()
    assert (outcome.status, outcome.rows_loaded, outcome.rows_rejected) == ("partially_accepted", 39, 1)
    assert [tuple(r) for r in rejects] == [(3, "INVALID_CHARACTER", "瓯海\\x00支行")]
    receipt = json.loads((settings.landing_dir / "WZB" / "outbox" / "OUTLET_WZB_20230601.txt.receipt.json").read_text())
    assert "INVALID_CHARACTER" in json.dumps(receipt)
