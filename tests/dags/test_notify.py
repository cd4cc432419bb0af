"""Operators are told: a failing task posts a DingTalk robot message through Apprise.

The receiver is a loopback HTTP server. Apprise's DingTalk plugin always posts to the
robot's public host, so the Airflow process gets a ``sitecustomize`` that points that one
URL at the receiver; everything else — the notifier, the connection, the payload Apprise
builds — is what production runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from govbank.orchestration.notify import failure_text
from tests import background
from tests.conftest import ROOT


def test_failure_text_names_dag_task_bank_and_reason() -> None:
    ti = types.SimpleNamespace(dag_id="govbank_ingest", task_id="bank.ingest_bank",
                               rendered_map_index="WZB", try_number=3)
    text = failure_text({"ti": ti, "exception": ValueError("loading WZB/ELIC_WZB_20230615.csv\nfailed"),
                         "run_id": "manual__1"})
    assert text.startswith("【govbank 告警】govbank_ingest.bank.ingest_bank [WZB] 失败（第 3 次尝试）")
    assert "原因：loading WZB/ELIC_WZB_20230615.csv failed" in text  # no line of the reason starts a new one
    assert text.count("\n") == 2


class _Receiver(BaseHTTPRequestHandler):
    posts: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.posts.append((self.path, json.loads(body)))
        reply = b'{"errcode":0,"errmsg":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_failing_task_posts_a_dingtalk_message() -> None:
    background.result(failing_elicense_run)


@background.job
def failing_elicense_run(tmp_path: Path) -> None:
    """The failing Airflow run and the checks of what the receiver got (started early,
    see tests/background.py)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "from apprise.plugins.dingtalk import NotifyDingTalk\n"
        f"NotifyDingTalk.notify_url = 'http://127.0.0.1:{port}/robot/send?access_token={{token}}'\n",
        encoding="utf-8",
    )
    env = {
        **background.environ(),
        "PYTHONPATH": f"{hook}{os.pathsep}{background.environ().get('PYTHONPATH', '')}",
        "GOVBANK_LOCAL_DIR": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "GOVBANK_PSEUDONYM_KEY": "notify-test-key-0123456789abcdef",
        # a connection without a host: the pull fails at once, without retries
        "AIRFLOW_CONN_GOVBANK_ELICENSE_API": json.dumps({"conn_type": "http", "login": "x", "password": "y"}),
        "AIRFLOW_CONN_GOVBANK_ALERTS": json.dumps(
            {"conn_type": "apprise", "extra": {"config": {"path": "dingtalk://robottoken123/", "tag": "all"}}}
        ),
    }
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    try:
        run = subprocess.run(
            ["bash", "-c", "source scripts/env.sh && python -m govbank migrate >/dev/null && "
             "airflow db migrate >/dev/null && airflow dags test govbank_elicense 2023-06-15"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=500,
        )
    finally:
        server.shutdown()
    assert _Receiver.posts, run.stdout[-3000:] + run.stderr[-3000:]
    path, payload = _Receiver.posts[-1]
    assert path == "/robot/send?access_token=robottoken123"
    assert payload["msgtype"] == "text" and set(payload["text"]) == {"content"}
    content = payload["text"]["content"]
    assert "govbank_elicense.pull_usages 失败" in content
    assert "e-licence connection has no host" in content
