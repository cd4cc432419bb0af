"""Runtime settings, read from the environment when asked for (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONTRACTS_DIR = PROJECT_ROOT / "include" / "contracts"
DEFAULT_EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
DEFAULT_LOCAL_DIR = PROJECT_ROOT / ".local"


@dataclass(frozen=True)
class Settings:
    """Where things are. Every field has an environment variable (``GOVBANK_*``)."""

    landing_dir: Path
    archive_dir: Path
    data_docs_dir: Path
    runs_dir: Path
    contracts_dir: Path
    expectations_dir: Path
    warehouse_url: str
    sftp_conn_id: str | None = None
    chunk_rows: int = 40_000
    gx_rows: int = 120_000
    max_decompressed_bytes: int | None = None  # gzip/xlsx bomb cap; None: govbank.ingest.read's 4 GiB

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        local = Path(env.get("GOVBANK_LOCAL_DIR", str(DEFAULT_LOCAL_DIR)))
        return cls(
            landing_dir=Path(env.get("GOVBANK_LANDING_DIR", str(local / "landing"))),
            archive_dir=Path(env.get("GOVBANK_ARCHIVE_DIR", str(local / "archive"))),
            data_docs_dir=Path(env.get("GOVBANK_DATA_DOCS_DIR", str(local / "data_docs"))),
            runs_dir=Path(env.get("GOVBANK_ELICENSE_RUNS_DIR", str(local / "elicense_runs"))),
            contracts_dir=Path(env.get("GOVBANK_CONTRACTS_DIR", str(DEFAULT_CONTRACTS_DIR))),
            expectations_dir=Path(
                env.get("GOVBANK_EXPECTATIONS_DIR", str(DEFAULT_EXPECTATIONS_DIR))
            ),
            warehouse_url=env.get(
                "GOVBANK_WAREHOUSE_URL", f"sqlite:///{(local / 'warehouse.db').as_posix()}"
            ),
            sftp_conn_id=env.get("GOVBANK_SFTP_CONN_ID") or None,
            chunk_rows=int(env.get("GOVBANK_CHUNK_ROWS", "40000")),
            gx_rows=int(env.get("GOVBANK_GX_ROWS", "120000")),
            max_decompressed_bytes=int(env["GOVBANK_MAX_DECOMPRESSED_BYTES"])
            if env.get("GOVBANK_MAX_DECOMPRESSED_BYTES")
            else None,
        )

# Assets the DAGs update and listen to (plain strings: the package does not import Airflow)
ASSET_BANK_FILES = "govbank://warehouse/bank_files"
ASSET_ELICENSE_USAGE = "govbank://warehouse/fact_elicense_usage"
ASSET_MARTS = "govbank://warehouse/marts"
