"""``python -m govbank.dashboard``: the dashboard on its own, behind its own login.

Environment: ``GOVBANK_DASHBOARD_USER`` and ``GOVBANK_DASHBOARD_PASSWORD`` (required),
``GOVBANK_DASHBOARD_URL`` (the dashboard role's database URL; default: the embedded
SQLite warehouse, read-only), ``GOVBANK_DASHBOARD_SECRET`` (signs sessions; random per
process when unset).
"""

from __future__ import annotations

import argparse
import os
import sys

from govbank.domain.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m govbank.dashboard")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GOVBANK_DASHBOARD_PORT", "8090")))
    args = parser.parse_args(argv)

    import uvicorn

    from govbank.dashboard import (
        PasswordGate,
        create_dashboard_app,
        dashboard_url,
        make_dashboard_engine,
    )

    try:
        url = dashboard_url()
        secret = os.environ.get("GOVBANK_DASHBOARD_SECRET")
        gate = PasswordGate(
            os.environ.get("GOVBANK_DASHBOARD_USER", ""),
            os.environ.get("GOVBANK_DASHBOARD_PASSWORD", ""),
            secret.encode() if secret else None,
        )
    except ConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    app = create_dashboard_app(lambda: make_dashboard_engine(url), gate)
    print(f"dashboard: http://{args.host}:{args.port}/ (user {gate.username})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
