"""``python -m govbank.dashboard``: the dashboard on its own, behind its own login.

``python -m govbank.dashboard add-user NAME`` adds an account (or changes its password)
in the users file, reading the password from stdin; ``python -m govbank.dashboard``
serves the dashboard for the accounts of that file.

Environment: ``GOVBANK_DASHBOARD_USERS_FILE`` (the users file, required),
``GOVBANK_DASHBOARD_URL`` (the dashboard role's database URL; default: the embedded
SQLite warehouse, read-only).
"""

from __future__ import annotations

import argparse
import os
import sys

from govbank.domain.errors import ConfigError


def _read_password() -> str:
    """From the terminal (asked twice) or the first line of stdin (scripts)."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _users_file(arg: str | None):  # type: ignore[no-untyped-def]  # -> pathlib.Path
    from pathlib import Path

    from govbank.dashboard.users import USERS_FILE_ENV

    value = arg or os.environ.get(USERS_FILE_ENV)
    if not value:
        raise ConfigError(f"set {USERS_FILE_ENV} (or --users-file) to the dashboard's users file")
    return Path(value)


def add_user_main(name: str, users_file: str | None) -> int:
    from govbank.dashboard.users import add_user

    try:
        path = _users_file(users_file)
        new = add_user(path, name, _read_password())
    except ConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    print(f"dashboard: {'added user' if new else 'new password for'} {name} in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m govbank.dashboard")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GOVBANK_DASHBOARD_PORT", "8090")))
    parser.add_argument("--users-file", help="default: $GOVBANK_DASHBOARD_USERS_FILE")
    commands = parser.add_subparsers(dest="command")
    add = commands.add_parser("add-user", help="add a user or change a password (read from stdin)")
    add.add_argument("name")
    add.add_argument("--users-file", dest="add_users_file", help="default: $GOVBANK_DASHBOARD_USERS_FILE")
    args = parser.parse_args(argv)
    if args.command == "add-user":
        return add_user_main(args.name, args.add_users_file or args.users_file)

    import uvicorn

    from govbank.dashboard import (
        PasswordGate,
        create_dashboard_app,
        dashboard_url,
        make_dashboard_engine,
    )
    from govbank.dashboard.users import UserFile

    try:
        if os.environ.get("GOVBANK_DASHBOARD_PASSWORD"):
            # a password in the environment is readable by every process the user starts
            raise ConfigError(
                "GOVBANK_DASHBOARD_USER/GOVBANK_DASHBOARD_PASSWORD are no longer read: "
                "add users with python -m govbank.dashboard add-user NAME"
            )
        url = dashboard_url()
        users = UserFile(_users_file(args.users_file))
    except ConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    gate = PasswordGate(users.verify)
    app = create_dashboard_app(lambda: make_dashboard_engine(url), gate)
    print(f"dashboard: http://{args.host}:{args.port}/ (users from {users.path})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
