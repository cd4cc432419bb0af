"""The ingest DAG over a real SFTP server gives the same tables and receipts as the local folder.

The demo drop is uploaded into each bank's inbox on OpenSSH's sshd (chrooted accounts);
Airflow runs govbank_ingest and govbank_marts with the SFTP connection; the same drop
goes through the local-folder path; the warehouses and receipts are compared.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from govbank.config.settings import Settings
from govbank.orchestration.runtime import build_marts
from govbank.warehouse.schema import metadata
from govbank_dev.demo import build_demo
from tests import background
from tests.conftest import PSEUDONYM_KEY, ROOT, copy_demo_ingested
from tests.sshd import SshdServer

pytestmark = pytest.mark.integration
# where and when differ between the two paths; what was loaded must not
VOLATILE = {"loaded_at", "received_at", "processed_at", "answered_at", "last_received_at", "archive_path",
            "data_docs", "file_id", "reject_id", "outlet_key"}
RECEIPT_VOLATILE = {"received_at", "processed_at"}


def _dump(url: str) -> dict[str, list[tuple]]:
    engine = create_engine(url)
    out = {}
    with engine.connect() as conn:
        for name, table in metadata.tables.items():
            cols = [c for c in table.columns if c.name not in VOLATILE]
            out[name] = sorted(tuple(map(str, r)) for r in conn.execute(select(*cols)))
    engine.dispose()
    return out


def _receipts(outboxes: dict[str, Path]) -> dict[str, object]:
    out: dict[str, object] = {}
    for bank, box in outboxes.items():
        for p in sorted(box.iterdir()):
            if p.name.endswith(".receipt.json"):
                doc = json.loads(p.read_text(encoding="utf-8"))
                out[p.name] = {k: v for k, v in doc.items() if k not in RECEIPT_VOLATILE}
            elif p.name.endswith(".rejects.csv"):
                out[p.name] = p.read_bytes()
            else:
                out[f"{bank}/{p.name}"] = "unexpected file"
    return out


@background.job
def sftp_run(remote: Path) -> dict[str, object]:
    """The SFTP path through Airflow (started early, see tests/background.py): the demo
    drop uploaded to sshd, govbank_ingest and govbank_marts run with the SFTP connection."""
    drop = build_demo()
    banks = sorted(drop.banks)
    with SshdServer.start(banks=banks) as server:
        for f in drop.files:
            server.put_inbox_file(f.bank_code, f.name, f.data)
            server.put_inbox_file(f.bank_code, f"{f.name}.ok", f.ok)
        env = {
            **background.environ(),
            "GOVBANK_LOCAL_DIR": str(remote),
            "AIRFLOW_HOME": str(remote / "airflow"),
            "GOVBANK_PSEUDONYM_KEY": PSEUDONYM_KEY.decode(),
            "GOVBANK_SFTP_CONN_ID": "govbank_sftp",
            "AIRFLOW_CONN_GOVBANK_SFTP": server.conn_json(server.pipeline),
        }
        env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
        script = (
            "source scripts/env.sh && python -m govbank migrate >/dev/null 2>&1 && "
            "airflow db migrate >/dev/null && "
            "airflow dags test govbank_ingest 2023-06-15 > $AIRFLOW_HOME/ingest.log 2>&1 && "
            "airflow dags test govbank_marts 2023-06-15 > $AIRFLOW_HOME/marts.log 2>&1 || "
            "{ tail -60 $AIRFLOW_HOME/ingest.log; exit 1; }"
        )
        run = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=900)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        sftp_receipts = _receipts({b: server.outbox_path(b) for b in banks})
        leftovers = [p.name for b in banks for p in server.inbox_path(b).iterdir()]
    return {
        "receipts": sftp_receipts,
        "leftovers": leftovers,
        "dump": _dump(Settings.from_env({"GOVBANK_LOCAL_DIR": str(remote)}).warehouse_url),
    }


def test_dag_over_sftp_equals_local_folder(tmp_path: Path, demo_ingested: Path) -> None:
    drop = build_demo()
    banks = sorted(drop.banks)

    # the local-folder path, through the package: the session's demo drop processed by
    # process_bank (tests/conftest.py's demo_ingested, the same key), then the marts
    local = copy_demo_ingested(demo_ingested, tmp_path / "local")
    settings = Settings.from_env({"GOVBANK_LOCAL_DIR": str(local)})
    assert settings.warehouse_url == f"sqlite:///{local / 'warehouse.db'}"
    build_marts(settings, drop.as_of)

    # the SFTP path, through Airflow
    sftp = background.result(sftp_run)

    assert sftp["leftovers"] == []
    assert sftp["dump"] == _dump(settings.warehouse_url)
    local_receipts = _receipts({b: local / "landing" / b / "outbox" for b in banks})
    assert sftp["receipts"] == local_receipts
    assert len([k for k in local_receipts if k.endswith(".receipt.json")]) == len(drop.files)
