"""The e-licence client against the reference server over real HTTP on loopback.

Every row of the error table in elicense-api.md is injected into a real server; each run
that should survive ends with the same fact_elicense_usage as a run without faults, and
each that should fail loads nothing and says why.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from govbank.domain.errors import ConfigError, TransientError
from govbank.elicense.client import (
    ApiAuthError,
    ApiRequestError,
    ApiUnavailableError,
    ElicenseClient,
    config_from_connection,
)
from govbank.elicense.pull import pull_usages, read_watermark
from govbank_dev.elicense_data import usages_from_bank_records
from tests.apiserver import RefServer, bank_records, fresh_warehouse, usage_rows

NOW = dt.datetime(2024, 9, 1, 12, tzinfo=dt.UTC)
USAGES = "/api/v1/elicense/usages"
TOKEN = "/api/v1/token"


@pytest.fixture(scope="module")
def generated():
    return usages_from_bank_records(bank_records(60, seed=11), seed=5, now=NOW)


@pytest.fixture(scope="module")
def api(generated):
    with RefServer(generated.usages) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_server(api):
    api.reset()


@pytest.fixture
def engine(tmp_path):
    eng = fresh_warehouse("sqlite", tmp_path)
    yield eng
    eng.dispose()


def pull(api, engine, tmp_path, run_id="run-1", **config):
    with ElicenseClient(api.client_config(**config)) as client:
        return pull_usages(engine, client, tmp_path / "runs", run_id)


@pytest.fixture(scope="module")
def baseline(api, generated, tmp_path_factory):
    """fact_elicense_usage after a run without faults."""
    tmp = tmp_path_factory.mktemp("baseline")
    eng = fresh_warehouse("sqlite", tmp)
    api.reset()
    result = pull(api, eng, tmp)
    rows = usage_rows(eng)
    eng.dispose()
    assert result.pages >= 5, "the data set should span several pages"
    return rows


def usage_calls(api):
    return [c for c in api.calls() if c["path"] == USAGES]


def test_fault_free_run_loads_the_current_version_of_every_record(baseline, generated):
    current = generated.current()
    assert len(baseline) == len(current)

    def utc(value: str) -> dt.datetime:
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)

    expected = sorted(
        (
            r["usage_id"], r["uscc"], r["enterprise_name"], r["scene"], r["bank_code"],
            r["outlet_code"], utc(r["authorized_at"]), utc(r["updated_at"]), r["status"],
        )
        for r in current
    )  # fmt: skip
    assert baseline == expected
    assert any(r[8] == "撤销" for r in baseline), "a withdrawn later version replaced its first"


TRANSIENT_FAULTS = {
    "500": {"kind": "status", "status": 500, "count": 2, "after": 1},
    "502": {"kind": "status", "status": 502, "count": 2, "after": 2},
    "503": {"kind": "status", "status": 503, "count": 3, "after": 0},
    "504": {"kind": "status", "status": 504, "count": 1, "after": 3},
    "connection reset": {"kind": "reset", "count": 2, "after": 1},
    "timeout": {"kind": "slow", "delay": 1.5, "count": 1, "after": 2},
    "token endpoint 503": {"kind": "status", "status": 503, "count": 2, "path": "token"},
}


@pytest.mark.parametrize("fault", TRANSIENT_FAULTS.values(), ids=TRANSIENT_FAULTS.keys())
def test_transient_fault_is_retried_and_the_result_is_the_same(
    api, engine, tmp_path, baseline, fault
):
    api.inject(**fault)
    result = pull(api, engine, tmp_path, read_timeout=0.5)

    assert usage_rows(engine) == baseline
    hit = [c for c in api.calls() if c["fault"]]
    assert len(hit) == fault["count"], "every injected fault was met"
    if fault.get("path") != "token":
        assert len(usage_calls(api)) == result.pages + fault["count"]


def test_429_waits_for_retry_after(api, engine, tmp_path, baseline):
    api.inject("status", status=429, retry_after="1", after=2)
    pull(api, engine, tmp_path)

    calls = usage_calls(api)
    limited = next(i for i, c in enumerate(calls) if c["status"] == 429)
    assert calls[limited + 1]["t"] - calls[limited]["t"] >= 0.95
    assert calls[limited + 1]["query"] == calls[limited]["query"], "the same page is asked again"
    assert usage_rows(engine) == baseline


def test_retry_after_beyond_the_limit_gives_up_at_once(api, engine, tmp_path):
    api.inject("status", status=429, retry_after="3600", count=5)
    with pytest.raises(ApiUnavailableError, match="429"):
        pull(api, engine, tmp_path)
    assert len(usage_calls(api)) == 1
    assert usage_rows(engine) == []


def test_retries_are_bounded_and_then_transient(api, engine, tmp_path):
    api.inject("status", status=503, count=50, after=1)
    with pytest.raises(ApiUnavailableError, match="503") as err:
        pull(api, engine, tmp_path, max_retries=3)
    assert isinstance(err.value, TransientError), "Airflow may retry the task later"
    assert len(usage_calls(api)) == 1 + 4
    assert usage_rows(engine) == []
    with engine.connect() as conn:
        assert read_watermark(conn) is None


def test_unreachable_server_is_transient(engine, tmp_path, api):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = api.client_config(base_url=f"http://127.0.0.1:{port}", max_retries=2)
    with ElicenseClient(config) as client, pytest.raises(ApiUnavailableError, match="connection"):
        pull_usages(engine, client, tmp_path / "runs", "run-x")


def test_expired_token_is_renewed_once(api, engine, tmp_path, baseline):
    with ElicenseClient(api.client_config()) as client:
        pull_usages(engine, client, tmp_path / "runs", "run-1")
        api.expire_tokens()  # the server forgets the token the client still holds
        pull_usages(engine, client, tmp_path / "runs", "run-2")

    token_calls = [c for c in api.calls() if c["path"] == TOKEN]
    assert len(token_calls) == 2
    assert [c["auth"] for c in usage_calls(api)].count("expired") == 1
    assert usage_rows(engine) == baseline


def test_injected_401_is_renewed_once(api, engine, tmp_path, baseline):
    api.inject("status", status=401, after=2)
    pull(api, engine, tmp_path)
    assert len([c for c in api.calls() if c["path"] == TOKEN]) == 2
    assert usage_rows(engine) == baseline


def test_401_after_a_new_token_fails(api, engine, tmp_path):
    api.inject("status", status=401, count=5, message="token revoked by the platform")
    with pytest.raises(ApiAuthError, match="token revoked by the platform"):
        pull(api, engine, tmp_path)
    assert len([c for c in api.calls() if c["path"] == TOKEN]) == 2, "one new token, no more"
    assert usage_rows(engine) == []


def test_wrong_secret_fails_with_the_servers_message(api, engine, tmp_path):
    with pytest.raises(ApiAuthError, match="wrong secret") as err:
        pull(api, engine, tmp_path, client_secret="not-the-secret")
    assert isinstance(err.value, ConfigError)
    assert "not-the-secret" not in str(err.value)


@pytest.mark.parametrize("status", [400, 403, 404])
def test_request_errors_fail_with_the_servers_message_and_load_nothing(
    api, engine, tmp_path, status
):
    api.inject("status", status=status, after=2, message=f"platform says no ({status})")
    with pytest.raises(ApiRequestError, match=rf"answered {status}: platform says no") as err:
        pull(api, engine, tmp_path)
    assert not isinstance(err.value, TransientError)
    assert [c["status"] for c in usage_calls(api)] == [200, 200, status], "no retry"
    assert usage_rows(engine) == []
    with engine.connect() as conn:
        assert read_watermark(conn) is None


def test_servers_own_400_and_404(api):
    with ElicenseClient(api.client_config()) as client:
        with pytest.raises(ApiRequestError, match="limit must be between 1 and 1000"):
            client.get_usages_raw(NOW, limit=5000)
        with pytest.raises(ApiRequestError, match="invalid cursor"):
            client.get_usages_raw(NOW, cursor="not-a-cursor")
    with ElicenseClient(api.client_config(base_url=api.url + "/elsewhere")) as client:
        with pytest.raises(ApiRequestError, match="404"):
            client.get_usages_raw(NOW)


def test_secrets_and_tokens_never_reach_logs_or_disk(api, engine, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # urllib3 and requests included
    api.inject("status", status=503, after=1)
    api.inject("status", status=401, after=2)
    pull(api, engine, tmp_path)
    with pytest.raises(ApiAuthError):
        pull(api, engine, tmp_path, run_id="run-2", client_secret="wrong-" + api.client_secret)

    tokens = api.issued_tokens()
    assert len(tokens) >= 2
    written = "".join(p.read_text() for p in (tmp_path / "runs").rglob("*") if p.is_file())
    for secret in (api.client_secret, *tokens):
        assert secret not in caplog.text
        assert secret not in written
    assert "retry" in caplog.text and "401" in caplog.text, "the log does tell what happened"
    assert api.client_secret not in repr(api.client_config())


def test_config_from_an_airflow_http_connection():
    conn = SimpleNamespace(
        host="127.0.0.1",
        schema="http",
        port=8001,
        login="govbank",
        password="s3cret",
        extra_dejson={"read_timeout": "12", "page_limit": 200, "verify": "false"},
    )
    config = config_from_connection(conn)
    assert config.base_url == "http://127.0.0.1:8001"
    assert (config.client_id, config.client_secret) == ("govbank", "s3cret")
    assert config.timeout == (5.0, 12.0)
    assert config.page_limit == 200 and config.verify is False
    assert "s3cret" not in repr(config)

    full = SimpleNamespace(
        host="https://gw.example.gov.cn/elicense/", schema=None, port=None,
        login="a", password="b", extra_dejson={},
    )  # fmt: skip
    assert config_from_connection(full).base_url == "https://gw.example.gov.cn/elicense"

    with pytest.raises(ConfigError, match="password"):
        config_from_connection(SimpleNamespace(**{**vars(conn), "password": None}))
    with pytest.raises(ConfigError, match="page_limit"):
        config_from_connection(SimpleNamespace(**{**vars(conn), "extra_dejson": {"page_limit": 0}}))


def test_raw_pages_are_kept_per_run(api, engine, tmp_path):
    result = pull(api, engine, tmp_path, run_id="scheduled__2024-09-01T00:00:00+00:00")
    folder = Path(result.run_dir)
    assert folder.parent == tmp_path / "runs"
    pages = sorted(folder.glob("page-*.json"))
    assert [p.name for p in pages][:2] == ["page-0001.json", "page-0002.json"]
    assert len(pages) == result.pages
    assert (folder / "run.json").exists()
