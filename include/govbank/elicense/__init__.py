"""The government's e-licence usage records: client and incremental load.

``client`` speaks elicense-api.md v1 and survives its error table; ``pull`` pulls the
records since the watermark into ``fact_elicense_usage`` all or nothing. Reconciliation
with the banks lives in :mod:`govbank.marts.reconcile`. The reference server of the API
and its demo data are dev tools, outside the wheel: ``govbank_dev.elicense_server`` and
``govbank_dev.elicense_data`` (tools/govbank_dev).
"""

from govbank.elicense.client import (
    ApiAuthError,
    ApiRequestError,
    ApiUnavailableError,
    ClientConfig,
    ElicenseClient,
    ElicenseError,
    MalformedPageError,
    UsageRecord,
    config_from_connection,
    parse_page,
)
from govbank.elicense.pull import PullResult, pull_usages, read_watermark

__all__ = [
    "ApiAuthError",
    "ApiRequestError",
    "ApiUnavailableError",
    "ClientConfig",
    "ElicenseClient",
    "ElicenseError",
    "MalformedPageError",
    "PullResult",
    "UsageRecord",
    "config_from_connection",
    "parse_page",
    "pull_usages",
    "read_watermark",
]
