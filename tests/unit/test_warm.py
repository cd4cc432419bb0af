"""Warm workers: a task forked after :func:`warm_up` finds GX imported and its validator built.

One fresh Python process plays the worker (GX must not be imported yet, so not this
one): it forks a task before warming (cold), warms, forks tasks after (warm; and after
a suite changed on disk), as Airflow's supervisor forks each task from its worker.
tests/integration/test_celery.py and test_browser.py check the same line in the task
logs of real Celery and LocalExecutor workers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

WORKER = r"""
import json, logging, os, sys, threading
import govbank.orchestration.warm as warm
import govbank.orchestration.workers as workers  # imports Airflow, which sets up logging
from govbank.config.settings import Settings

handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
logging.getLogger("govbank").addHandler(handler)
logging.getLogger("govbank").setLevel(logging.INFO)

heavy = [m for m in ("great_expectations", "pandas", "pyarrow") if m in sys.modules]
print("HEAVY=" + ",".join(heavy))
print("CELERY_IMPORTS=" + ",".join(workers.CELERY_CONFIG["imports"]))
s = Settings.from_env()

def task(tag):
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        v = warm.validator(s.expectations_dir, s.data_docs_dir)
        print(f"{os.getpid()} {tag} GOT={type(v).__name__}")
        sys.stdout.flush()
        os._exit(0)
    return pid

cold = task("cold")  # forked before the warm-up: imports GX itself
os.environ["GOVBANK_WARM_UP"] = "off"
print("OFF=" + str(warm.warm_up(s)))
os.environ["GOVBANK_WARM_UP"] = "on"
broken = Settings.from_env({**os.environ, "GOVBANK_EXPECTATIONS_DIR": "/nonexistent"})
print("BROKEN=" + str(warm.warm_up(broken)))
threads = threading.active_count()
print("WARM=" + str(warm.warm_up(s)))
print("THREADS_LEFT=" + str(threading.active_count() - threads))
fds = []
for fd in os.listdir("/proc/self/fd"):
    try:
        fds.append(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
print("SOCKETS=" + str(sum(f.startswith("socket:") for f in fds)))
os.waitpid(cold, 0)
os.waitpid(task("warm"), 0)
os.waitpid(task("again"), 0)  # a second task of the same worker: its own warm copy
suite = s.expectations_dir / "outlet.json"
data = json.loads(suite.read_text(encoding="utf-8"))
data["meta"]["changed"] = "after the worker warmed"
suite.write_text(json.dumps(data), encoding="utf-8")
os.waitpid(task("changed"), 0)
"""


def test_a_task_forked_from_a_warm_worker_reuses_its_validator(tmp_path: Path) -> None:
    expectations = tmp_path / "expectations"
    shutil.copytree(ROOT / "expectations", expectations)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GOVBANK_", "AIRFLOW__"))
    } | {
        "GOVBANK_LOCAL_DIR": str(tmp_path / "local"),
        "GOVBANK_EXPECTATIONS_DIR": str(expectations),
        "PYTHONPATH": str(ROOT / "include"),
    }
    done = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    lines = out.splitlines()

    assert "HEAVY=" in lines  # importing the hooks imports no GX, pandas or pyarrow
    assert "CELERY_IMPORTS=govbank.orchestration.celery_worker" in lines
    assert "OFF=False" in lines and "BROKEN=False" in lines and "WARM=True" in lines
    assert "govbank warm-up failed" in done.stderr + out  # logged, not raised
    assert "THREADS_LEFT=0" in lines and "SOCKETS=0" in lines  # safe to fork
    by_pid = _lines_by_pid(lines)
    assert any("preloaded: no (imported cold" in t for t in by_pid[_pid_of(lines, "cold")]), out
    for tag in ("warm", "again"):
        assert "great_expectations preloaded: yes (validator reused)" in by_pid[_pid_of(lines, tag)], out
    changed = by_pid[_pid_of(lines, "changed")]
    assert any("suites changed on disk" in t for t in changed), out
    assert any("preloaded: yes (validator built" in t for t in changed), out


def _pid_of(lines: list[str], tag: str) -> str:
    [pid] = [ln.split(" ", 1)[0] for ln in lines if ln.endswith(f" {tag} GOT=Validator")]
    return pid


def _lines_by_pid(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ln in lines:
        pid, _, text = ln.partition(" ")
        if pid.isdigit():
            out.setdefault(pid, []).append(text)
    return out
