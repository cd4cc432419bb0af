"""Runtime settings, read from the environment when asked for (never at import time).

Where the defaults come from depends on how govbank runs:

- from a checkout (``include/govbank`` beside ``pyproject.toml``): the repository's
  ``include/contracts``, ``expectations/`` and ``.local/``;
- installed from the wheel: the expectation suites the wheel ships
  (``govbank/expectations``), ``./.local`` in the working directory, and contracts in
  ``GOVBANK_CONTRACTS_DIR`` (default ``$GOVBANK_LOCAL_DIR/contracts``): the banks'
  contracts are the district's configuration, not the package's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from govbank.config.connections import WAREHOUSE_CONN_ID

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _checkout_root() -> Path | None:
    root = PACKAGE_DIR.parents[1]
    if PACKAGE_DIR.parent.name == "include" and (root / "pyproject.toml").is_file():
        return root
    return None


CHECKOUT_ROOT = _checkout_root()
"""The repository when running from a checkout; None for an installed wheel."""
# installed: relative, so it resolves against the working directory when used
DEFAULT_LOCAL_DIR = (CHECKOUT_ROOT or Path()) / ".local"
DEFAULT_CONTRACTS_DIR = (
    CHECKOUT_ROOT / "include" / "contracts" if CHECKOUT_ROOT else DEFAULT_LOCAL_DIR / "contracts"
)
DEFAULT_EXPECTATIONS_DIR = (
    CHECKOUT_ROOT / "expectations" if CHECKOUT_ROOT else PACKAGE_DIR / "expectations"
)

ConnectionUrl = Callable[[str], "str | None"]
"""A connection id -> its SQLAlchemy URL, or None when no such connection exists."""


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
    # raw bank files (archive) and raw API pages hold personal data: kept this long, then purged
    retention_days: int = 180
    max_attempts: int = 3  # loads of one file that fail on our side before it is set aside
    max_reject_rows: int = 10_000  # row issues of one file kept in detail; the rest counted per reason

    @classmethod
    def from_env(
        cls, env: dict[str, str] | None = None, connection_url: ConnectionUrl | None = None
    ) -> Settings:
        """The warehouse is ``GOVBANK_WAREHOUSE_URL``, else the ``govbank_warehouse``
        connection (``connection_url`` looks it up: tasks and the API server reach
        Airflow's connections differently), else the embedded SQLite file."""
        env = dict(os.environ if env is None else env)
        local = Path(env.get("GOVBANK_LOCAL_DIR", str(DEFAULT_LOCAL_DIR)))
        contracts = DEFAULT_CONTRACTS_DIR if CHECKOUT_ROOT else local / "contracts"
        warehouse = env.get("GOVBANK_WAREHOUSE_URL") or (
            connection_url(WAREHOUSE_CONN_ID) if connection_url else None
        )
        return cls(
            landing_dir=Path(env.get("GOVBANK_LANDING_DIR", str(local / "landing"))),
            archive_dir=Path(env.get("GOVBANK_ARCHIVE_DIR", str(local / "archive"))),
            data_docs_dir=Path(env.get("GOVBANK_DATA_DOCS_DIR", str(local / "data_docs"))),
            runs_dir=Path(env.get("GOVBANK_ELICENSE_RUNS_DIR", str(local / "elicense_runs"))),
            contracts_dir=Path(env.get("GOVBANK_CONTRACTS_DIR", str(contracts))),
            expectations_dir=Path(
                env.get("GOVBANK_EXPECTATIONS_DIR", str(DEFAULT_EXPECTATIONS_DIR))
            ),
            warehouse_url=warehouse or f"sqlite:///{(local / 'warehouse.db').as_posix()}",
            sftp_conn_id=env.get("GOVBANK_SFTP_CONN_ID") or None,
            chunk_rows=int(env.get("GOVBANK_CHUNK_ROWS", "40000")),
            gx_rows=int(env.get("GOVBANK_GX_ROWS", "120000")),
            max_decompressed_bytes=int(env["GOVBANK_MAX_DECOMPRESSED_BYTES"])
            if env.get("GOVBANK_MAX_DECOMPRESSED_BYTES")
            else None,
            retention_days=int(env.get("GOVBANK_RETENTION_DAYS", "180")),
            max_attempts=int(env.get("GOVBANK_MAX_ATTEMPTS", "3")),
            max_reject_rows=int(env.get("GOVBANK_MAX_REJECT_ROWS", "10000")),
        )

# Assets the DAGs update and listen to (plain strings: the package does not import Airflow)
ASSET_BANK_FILES = "govbank://warehouse/bank_files"
ASSET_ELICENSE_USAGE = "govbank://warehouse/fact_elicense_usage"
ASSET_MARTS = "govbank://warehouse/marts"


PSEUDONYM_KEY_ENV = "GOVBANK_PSEUDONYM_KEY"


def pseudonym_key_from_env() -> bytes:
    """The HMAC key from the environment (the DAGs prefer the connection, see airflow_support)."""
    from govbank.config.connections import PSEUDONYM_CONN_ID
    from govbank.domain.errors import ConfigError
    from govbank.domain.pseudonym import check_key

    value = os.environ.get(PSEUDONYM_KEY_ENV)
    if not value:
        raise ConfigError(f"no pseudonym key: set {PSEUDONYM_KEY_ENV} or the {PSEUDONYM_CONN_ID} connection")
    return check_key(value)
