"""The government's e-licence usage records: client, incremental load, reference server.

``client`` speaks elicense-api.md v1 and survives its error table; ``load`` pulls the
records since the watermark into ``fact_elicense_usage`` all or nothing; ``server`` is
the reference implementation of the API (with fault injection) and ``generate`` makes
usage records that match the demo banks' business. Reconciliation with the banks lives
in :mod:`govbank.marts.reconcile`. The server and the generator are not imported here: the
DAGs only need the client and the load.
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
