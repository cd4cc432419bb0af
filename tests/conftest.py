"""Shared fixtures. Airflow's settings are fixed here, before anything imports Airflow."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tests.browser import browser  # noqa: F401 - the session's Chromium, a fixture for every test

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # One project-local Airflow home per test session; never the developer's own.
    base = Path(os.environ.get("GOVBANK_TEST_DIR", ROOT / ".local" / "test"))
    home = base / f"airflow-{os.getpid()}"
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    Path(home).mkdir(parents=True, exist_ok=True)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The in-process unit tests first: the slow subprocess jobs of tests/background.py run
    meanwhile, on the core those tests leave free. Within a directory the order stays."""
    unit = ROOT / "tests" / "unit"
    items.sort(key=lambda item: 0 if item.path.is_relative_to(unit) else 1)


def pytest_collection_finish(session: pytest.Session) -> None:
    from tests import background

    if session.config.option.collectonly:
        return
    modules = [item.module.__name__ for item in session.items if isinstance(item, pytest.Function)]
    base = Path(os.environ.get("GOVBANK_TEST_DIR", ROOT / ".local" / "test")) / f"background-{os.getpid()}"
    started = background.start(modules, base)
    if started:
        print(f"\nstarted in the background: {', '.join(started)}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests import background

    background.finish()


PSEUDONYM_KEY = b"test-pseudonym-key-not-a-secret-0123456789"


@pytest.fixture
def warehouse_url(tmp_path: Path) -> str:
    from govbank.warehouse.db import upgrade

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def validator(tmp_path_factory: pytest.TempPathFactory):
    """One Great Expectations context for the session: building it costs seconds."""
    from govbank.validate import Validator

    return Validator(ROOT / "expectations", tmp_path_factory.mktemp("data_docs"))


@pytest.fixture(scope="session")
def demo_ingested(tmp_path_factory: pytest.TempPathFactory, validator) -> Path:  # type: ignore[no-untyped-def]
    """The demo drop through the package, once per session: every bank's files, in code
    order, processed into a SQLite warehouse (``warehouse.db``) beside the landing folder
    (``landing/``, inboxes answered, receipts in the outboxes), keyed with PSEUDONYM_KEY.
    A test copies it with copy_demo_ingested and goes on from there; nobody changes this one."""
    from govbank.config.settings import Settings
    from govbank.ingest.run import process_bank
    from govbank.orchestration.runtime import build_context
    from govbank.warehouse.db import upgrade
    from govbank_dev.demo import build_demo, write_drop

    root = tmp_path_factory.mktemp("demo_ingested")
    url = f"sqlite:///{root / 'warehouse.db'}"
    upgrade(url)
    settings = Settings.from_env({"GOVBANK_LOCAL_DIR": str(root), "GOVBANK_WAREHOUSE_URL": url})
    drop = build_demo()
    write_drop(drop, settings.landing_dir)
    ctx = build_context(settings, PSEUDONYM_KEY)
    ctx.validator_factory = lambda: validator
    try:
        for bank in sorted(drop.banks):
            process_bank(ctx, bank)
    finally:
        ctx.landing.close()
        ctx.engine.dispose()
    return root


def copy_demo_ingested(demo_ingested: Path, target: Path) -> Path:
    """A copy of the demo_ingested folder at target (which must not exist yet) to change."""
    shutil.copytree(demo_ingested, target)
    return target


def drop_file(
    inbox: Path, name: str, data: bytes, *, rows: int | None = None, sha: bool = True
) -> Path:
    """Put a data file and its .ok into an inbox, the way a bank uploads."""
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / name).write_bytes(data)
    lines = []
    if rows is not None:
        lines.append(f"rows={rows}")
    if sha:
        lines.append(f"sha256={hashlib.sha256(data).hexdigest()}")
    (inbox / f"{name}.ok").write_text("\n".join(lines) + ("\n" if lines else ""))
    return inbox / name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """With GOVBANK_NO_SKIP=1 (make test, CI) a skipped test is a failed test."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("GOVBANK_NO_SKIP") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under GOVBANK_NO_SKIP=1: {report.longrepr}"
