"""The runtime wheel works on its own: built, installed in a fresh virtualenv from the
lock, and run from a folder outside the checkout, it migrates a warehouse with its own
reference data and finds its own expectation suites; the dev tools are not in it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

DEV_MODULES = ("govbank/demo.py", "govbank/elicense/server.py", "govbank/elicense/generate.py")


def _uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.is_file() else shutil.which("uv")
    if found is None:
        pytest.fail("uv is needed to build and install the wheel (make venv bootstraps it)")
    return found


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the python of a fresh virtualenv with the wheel and the locked runtime deps)."""
    tmp = tmp_path_factory.mktemp("wheel")
    uv = _uv()
    _run([uv, "build", "--wheel", "--out-dir", str(tmp / "dist"), str(ROOT)], ROOT)
    (wheel,) = (tmp / "dist").glob("govbank-*.whl")
    req = tmp / "req.txt"
    _run(
        [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "-o", str(req)],
        ROOT,
    )
    _run([uv, "venv", "--python", sys.executable, str(tmp / "venv")], tmp)
    python = tmp / "venv" / "bin" / "python"
    _run([uv, "pip", "install", "--python", str(python), "-r", str(req), str(wheel)], tmp)
    return wheel, python


def _outside_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVBANK_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    env["GOVBANK_WAREHOUSE_URL"] = f"sqlite:///{tmp / 'warehouse.db'}"
    return env


def test_the_wheel_carries_its_data_and_no_dev_tools(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "govbank/domain/data/towns.csv",
        "govbank/domain/data/uscc_exceptions.csv",
        "govbank/warehouse/migrations/env.py",
        "govbank/warehouse/migrations/script.py.mako",
        "govbank/warehouse/migrations/versions/0002_reference_towns.py",
        *(f"govbank/expectations/{p.name}" for p in (ROOT / "expectations").glob("*.json")),
    ):
        assert data in names, data
    assert not set(DEV_MODULES) & names
    assert not [n for n in names if n.startswith("govbank_dev/")]


def test_installed_wheel_runs_from_outside_the_checkout(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, python = installed
    env = _outside_env(tmp_path)
    help_text = _run([str(python), "-m", "govbank", "--help"], tmp_path, env)
    assert "migrate" in help_text
    _run([str(python), "-m", "govbank", "migrate"], tmp_path, env)
    with sqlite3.connect(tmp_path / "warehouse.db") as db:
        towns = db.execute("SELECT count(*) FROM dim_town").fetchone()[0]
    assert towns == len((ROOT / "include/govbank/domain/data/towns.csv").read_text().splitlines()) - 1
    # the code, its suites and its defaults come from the install, not from this checkout
    probe = (
        "import importlib.util, govbank\n"
        "from govbank.config.settings import CHECKOUT_ROOT, Settings\n"
        "s = Settings.from_env()\n"
        "print(govbank.__file__); print(CHECKOUT_ROOT); print(s.expectations_dir)\n"
        "print(sorted(p.name for p in s.expectations_dir.glob('*.json')))\n"
        "print(s.contracts_dir)\n"
        "print(importlib.util.find_spec('govbank_dev'))\n"
    )
    out = _run([str(python), "-c", probe], tmp_path, env).splitlines()
    site = python.parent.parent
    assert Path(out[0]).is_relative_to(site), out[0]
    assert out[1] == "None"
    assert Path(out[2]).is_relative_to(site)
    assert out[3] == str(sorted(p.name for p in (ROOT / "expectations").glob("*.json")))
    assert out[4] == ".local/contracts", "contracts are the district's: GOVBANK_CONTRACTS_DIR"
    assert out[5] == "None", "the dev tools are not installed with the runtime"
