"""Operators are told through Airflow's notifiers: the Apprise provider posts to the
district's DingTalk or WeCom robot, or e-mail, whatever URLs the ``govbank_alerts``
connection lists (``dingtalk://<token>/``, ``wecombot://<key>``, ``mailtos://...``).

Every DAG sets :func:`failure_notifier` as its tasks' ``on_failure_callback``; the late-bank
sensor and the poison-file path use :func:`alert` with their own text. Without the
connection an alert is only logged, so the demo and tests run without a robot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from govbank.config.connections import ALERTS_CONN_ID

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 600  # robots refuse long texts; the task log has the rest


def failure_text(context: Mapping[str, Any]) -> str:
    """Which DAG, task and bank (the map index), which try, and why, in one short text."""
    ti = context.get("ti")
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    bank = getattr(ti, "rendered_map_index", None)
    reason = " ".join(str(context.get("exception") or "未知原因").split())
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + "…"
    where = f"{dag_id}.{task_id}" + (f" [{bank}]" if bank else "")
    return (
        f"【govbank 告警】{where} 失败（第 {getattr(ti, 'try_number', '?')} 次尝试）\n"
        f"原因：{reason}\n运行：{context.get('run_id', '-')}"
    )


def alert(text: str, *, title: str = "govbank 告警") -> bool:
    """Send ``text`` through the Apprise connection; False (and a log line) without one."""
    log.warning("ALERT %s", " | ".join(text.splitlines()))
    from airflow.providers.apprise.notifications.apprise import AppriseNotifier
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(ALERTS_CONN_ID)
    except AirflowNotFoundException:
        conn = None
    if conn is None or not _has_url(conn.extra_dejson.get("config")):
        log.info("no URL in the %s connection: the alert is only in this log", ALERTS_CONN_ID)
        return False
    notifier = AppriseNotifier(body=text, title=title, apprise_conn_id=ALERTS_CONN_ID)
    notifier.notify({})
    return True


def _has_url(config: Any) -> bool:
    """Whether the connection's Apprise config names at least one service."""
    entries = config if isinstance(config, list) else [config]
    return any(isinstance(e, dict) and str(e.get("path") or "").strip() for e in entries)


def failure_notifier(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every govbank task: a fresh notifier per failure.

    A notifier renders its templates into itself, so one instance shared by every task
    of a DAG would send the first failure's text for all; the text is built here instead.
    """
    try:
        alert(failure_text(context))
    except Exception:  # the task already failed; a robot being down must not hide why
        log.exception("could not send the failure alert")


def operator_alert(text: str) -> None:
    """The ingest run's alert seam: ``alert`` where Airflow is, the log line alone where it is not."""
    try:
        alert(text)
    except ImportError:  # no Airflow here (the CLI, a test): alert() logged it already
        pass
    except Exception:  # a robot down must not stop the bank's queue
        log.exception("the alert could not be sent: %s", " | ".join(text.splitlines()))
