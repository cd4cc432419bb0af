"""The compose stack, checked without a Docker engine.

docker-compose.yml is validated against the compose specification (check-jsonschema's
vendored schema), then against what a schema cannot see: the services it depends on,
the connections the code uses, the paths it mounts, the variables it reads from .env,
the secrets it must not hold, and the image built from the lock file.

Two integration tests run the stack's own set-up scripts for real: the PostgreSQL init
script on the local server, and the SFTP server's entrypoint with OpenSSH's sshd in a
private mount namespace, so the accounts it creates never touch this machine's /etc.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from govbank.config.connections import CONNECTION_IDS, CONNECTIONS
from tests import background
from tests.browser import wait_until_up
from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
GEN_ENV = ROOT / "docker" / "gen-env.sh"
SFTP_ENTRYPOINT = ROOT / "docker" / "sftp" / "entrypoint.sh"
PG_INIT = ROOT / "docker" / "postgres" / "init" / "10-govbank-databases.sh"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
EXPECTED_SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "sftp", "elicense-api"}
PROJECT_MOUNTS = ("dags", "plugins", "include/contracts", "expectations")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|JWT|PRIVATE_KEY|PSEUDONYM|TOKEN")
SECRET_FIELD = re.compile(r"password|secret|private_key|token|passphrase", re.IGNORECASE)

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt},
# $NAME, and $$ (a literal dollar), as compose interpolates them.
VAR_REF = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(LookupError):
    pass


# --- helpers -------------------------------------------------------------------------


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute variables the way compose does (the forms VAR_REF knows)."""

    def substitute(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m["name"] or m["bare"]
        op, arg = m["op"], m["arg"] or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if value is None or (op == ":?" and not value):
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if value is not None else ""
        return value or ""

    return VAR_REF.sub(substitute, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for v in node.values():
            yield from strings_in(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings_in(v)
    elif isinstance(node, str):
        yield node


def variables_in(node: Any) -> dict[str, set[str]]:
    """Every variable the compose file reads, with the operators it is read with."""
    found: dict[str, set[str]] = {}
    for text in strings_in(node):
        for m in VAR_REF.finditer(text):
            name = m["name"] or m["bare"]
            if name:
                found.setdefault(name, set()).add(m["op"] or "")
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """An .env file as compose reads it: single quotes literal, double quotes with escapes."""
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        key, value = key.strip(), value.strip()
        if value.startswith("'"):
            end = value.index("'", 1)
            value = value[1:end]
        elif value.startswith('"'):
            out, i = [], 1
            escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
            while value[i] != '"':
                if value[i] == "\\" and i + 1 < len(value):
                    out.append(escapes.get(value[i + 1], "\\" + value[i + 1]))
                    i += 2
                else:
                    out.append(value[i])
                    i += 1
            value = "".join(out)
        else:
            value = value.split(" #", 1)[0].strip()
        env[key] = value
    return env


def unescape_newlines(value: str) -> str:
    """What docker/sftp/entrypoint.sh (printf %b) makes of a key kept on one line."""
    return value.replace("\\n", "\n")


def sample_env() -> dict[str, str]:
    """.env.example with its blanks filled, enough to interpolate and parse the file."""
    env = read_env_file(ENV_EXAMPLE)
    return {k: v if v else f"sample-{k.lower()}" for k, v in env.items()}


def conn_env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def run_check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    exe = str(CHECK_JSONSCHEMA) if CHECK_JSONSCHEMA.exists() else shutil.which("check-jsonschema")
    if exe is None:
        pytest.fail("check-jsonschema is missing: it is a dev dependency (uv sync)")
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bank_codes() -> list[str]:
    codes = []
    for path in sorted((ROOT / "include" / "contracts").glob("*.yaml")):
        codes.append(yaml.safe_load(path.read_text(encoding="utf-8"))["bank_code"])
    return sorted(codes)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as f:
        return yaml.safe_load(f)  # resolves the << merge keys of the anchors


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def generated_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A real .env made by docker/gen-env.sh, as an operator would make it."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (openssh-client) is not installed")
    out = tmp_path_factory.mktemp("env") / ".env"
    result = subprocess.run([str(GEN_ENV), str(out)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    again = subprocess.run([str(GEN_ENV), str(out)], capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "exists" in again.stderr, "gen-env.sh must never overwrite"
    return read_env_file(out)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --- the compose file against the specification ------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    result = run_check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_interpolated_compose_file_still_follows_the_specification(
    compose: dict[str, Any], generated_env: dict[str, str], tmp_path: Path
) -> None:
    resolved = interpolate_tree(compose, generated_env)
    out = tmp_path / "docker-compose.resolved.yml"
    out.write_text(yaml.safe_dump(resolved, allow_unicode=True), encoding="utf-8")
    result = run_check_jsonschema(out)
    assert result.returncode == 0, result.stdout + result.stderr


# --- what the schema cannot check ----------------------------------------------------------


def test_the_stack_has_every_service_of_the_design(services: dict[str, Any]) -> None:
    missing = EXPECTED_SERVICES - set(services)
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        assert env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor", name
        assert env.get("AIRFLOW__CORE__LOAD_EXAMPLES", "").lower() == "false", name
        assert env.get("AIRFLOW__CELERY__BROKER_URL", "").startswith("redis://redis:"), name
        assert "@postgres:" in env.get("AIRFLOW__CELERY__RESULT_BACKEND", ""), name


def test_long_running_services_have_health_checks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name == "airflow-init" or service.get("profiles"):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_depends_on_targets_exist_and_can_be_waited_for(services: dict[str, Any]) -> None:
    for name, service in services.items():
        deps = service.get("depends_on", {})
        deps = (
            {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        )
        for target, spec in deps.items():
            assert target in services, f"{name} depends on undefined service {target!r}"
            assert target != name, f"{name} depends on itself"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}'s health"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must run once"

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        for target in services[name].get("depends_on", {}):
            visit(target, (*path, name))

    for name in services:
        visit(name, ())


def test_named_volumes_are_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                kind, source = volume.get("type"), volume.get("source", "")
            else:
                source = volume.split(":", 1)[0]
                kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
            if kind == "volume":
                assert source in declared, f"{name}: volume {source!r} is not declared"
                continue
            assert source.startswith("./"), f"{name}: mount {source!r} is not inside the repository"
            path = ROOT / source
            assert path.exists(), f"{name} mounts {source}, which does not exist"
            if path.is_dir():
                assert any(p.is_file() for p in path.rglob("*")), (
                    f"{name} mounts {source}, an empty folder: git will not keep it, add a file"
                )


def test_airflow_services_mount_the_project(services: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        targets = {str(v).split(":")[1] for v in services[name].get("volumes", [])}
        for folder in PROJECT_MOUNTS:
            assert f"/opt/airflow/{folder}" in targets, f"{name} does not mount {folder}/"


def test_build_contexts_exist(services: dict[str, Any]) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        build = {"context": build} if isinstance(build, str) else build
        context = ROOT / build.get("context", ".")
        assert context.is_dir(), f"{name}: build context {context} is missing"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_every_connection_is_defined_for_every_airflow_service(services: dict[str, Any]) -> None:
    env_values = sample_env()
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        defined = {k for k in env if k.startswith("AIRFLOW_CONN_")}
        expected = {conn_env_name(c) for c in CONNECTION_IDS}
        assert expected <= defined, f"{name} lacks {sorted(expected - defined)}"
        assert defined <= expected, (
            f"{name} defines {sorted(defined - expected)}, not in govbank.config.connections"
        )
        for spec in CONNECTIONS:
            conn = json.loads(interpolate(env[conn_env_name(spec.conn_id)], env_values))
            assert conn["conn_type"] == spec.conn_type, spec.conn_id
            host = conn.get("host", "")
            if spec.required:
                assert host in services or spec.conn_type == "generic", (
                    f"{spec.conn_id} points at {host!r}, not a service of the stack"
                )


def test_connection_ids_are_unique_and_well_formed() -> None:
    assert len(set(CONNECTION_IDS)) == len(CONNECTION_IDS)
    for conn_id in CONNECTION_IDS:
        assert re.fullmatch(r"govbank_[a-z0-9_]+", conn_id), conn_id


def conn_ids_used_in(path: Path) -> set[str]:
    """Connection ids a module names: ``*conn_id=`` arguments, ``*_CONN_ID = "..."``
    constants and ``get_connection("...")`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()

    def text(node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg and node.arg.endswith("conn_id"):
            value = text(node.value)
        elif isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            value = text(node.args[0]) if fname == "get_connection" and node.args else None
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            value = text(node.value) if any(n.upper().endswith("CONN_ID") for n in names) else None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            value = text(node.value) if node.target.id.upper().endswith("CONN_ID") else None
        else:
            value = None
        if value:
            found.add(value)
    return found


def test_code_uses_only_connections_the_stack_defines(services: dict[str, Any]) -> None:
    sources = [
        *sorted((ROOT / "dags").rglob("*.py")),
        *sorted((ROOT / "plugins").rglob("*.py")),
        *sorted((ROOT / "include" / "govbank").rglob("*.py")),
    ]
    unknown = {}
    for path in sources:
        used = conn_ids_used_in(path) - set(CONNECTION_IDS)
        if used:
            unknown[str(path.relative_to(ROOT))] = sorted(used)
    assert not unknown, f"connections used but not defined in the stack: {unknown}"
    for name in AIRFLOW_SERVICES:
        assert environment(services[name]).get("GOVBANK_SFTP_CONN_ID") in CONNECTION_IDS, name


def test_the_stack_pieces_agree_on_names_and_secrets(
    services: dict[str, Any], generated_env: dict[str, str]
) -> None:
    """Roles and databases created by PostgreSQL's init are the ones the connections use,
    the SFTP account is the one the connection logs in as, the e-licence server knows
    the client the connection presents."""
    from sqlalchemy.engine import make_url

    pg = {k: interpolate(v, generated_env) for k, v in environment(services["postgres"]).items()}
    worker = {
        k: interpolate(v, generated_env) for k, v in environment(services["airflow-worker"]).items()
    }
    conns = {c: json.loads(worker[conn_env_name(c)]) for c in CONNECTION_IDS}

    warehouse, dashboard = conns["govbank_warehouse"], conns["govbank_dashboard"]
    assert warehouse["login"] == pg["WAREHOUSE_DB_USER"]
    assert warehouse["password"] == pg["WAREHOUSE_DB_PASSWORD"]
    assert dashboard["login"] == pg["DASHBOARD_DB_USER"] == worker["GOVBANK_DASHBOARD_ROLE"]
    assert dashboard["password"] == pg["DASHBOARD_DB_PASSWORD"]
    assert warehouse["schema"] == dashboard["schema"] == pg["WAREHOUSE_DB_NAME"]

    url = make_url(worker["GOVBANK_WAREHOUSE_URL"])
    assert (url.username, url.password, url.host, url.database) == (
        pg["WAREHOUSE_DB_USER"],
        pg["WAREHOUSE_DB_PASSWORD"],
        "postgres",
        pg["WAREHOUSE_DB_NAME"],
    )
    meta = make_url(worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (meta.username, meta.password, meta.database) == (
        pg["AIRFLOW_DB_USER"],
        pg["AIRFLOW_DB_PASSWORD"],
        pg["AIRFLOW_DB_NAME"],
    )
    assert meta.username != url.username and meta.database != url.database

    sftp = {k: interpolate(v, generated_env) for k, v in environment(services["sftp"]).items()}
    assert conns["govbank_sftp"]["login"] == sftp["SFTP_PIPELINE_USER"]

    api = {
        k: interpolate(v, generated_env) for k, v in environment(services["elicense-api"]).items()
    }
    elicense = conns["govbank_elicense_api"]
    assert elicense["login"] == api["GOVBANK_ELICENSE_CLIENT_ID"]
    assert elicense["password"] == api["GOVBANK_ELICENSE_CLIENT_SECRET"]
    assert len(conns["govbank_pseudonym"]["password"]) >= 16


def test_env_example_lists_exactly_the_variables_the_stack_reads(compose: dict[str, Any]) -> None:
    used = set(variables_in(compose))
    listed = set(read_env_file(ENV_EXAMPLE))
    assert not used - listed, (
        f"read by docker-compose.yml, missing in .env.example: {used - listed}"
    )
    assert not listed - used, f"in .env.example, never read by docker-compose.yml: {listed - used}"


def test_secrets_come_only_from_env(compose: dict[str, Any]) -> None:
    # a secret variable never gets a default in the compose file
    for name, ops in variables_in(compose).items():
        if SECRET_NAME.search(name):
            assert ops <= {"", ":?", "?"}, f"${{{name}}} has a default: a secret in the file"

    def only_references(value: str) -> bool:
        return VAR_REF.sub("", value) == "" and VAR_REF.search(value) is not None

    markers = {name: f"__from_env_{name}__" for name in variables_in(compose)}
    markers.update({n: str(1000 + i) for i, n in enumerate(markers) if n.endswith("_PORT")})
    blocks = [compose["services"][s] for s in compose["services"]]
    blocks += [v for k, v in compose.items() if k.startswith("x-") and isinstance(v, dict)]
    for block in blocks:
        for key, value in environment(block).items():
            is_secret = SECRET_NAME.search(key) and not key.endswith(("_FILE", "_PATH"))
            if is_secret and not key.startswith("AIRFLOW_CONN_"):
                assert only_references(value), f"{key} holds a literal, not a ${{VAR}}"
            for m in re.finditer(r"://[^:/@\s]+:([^@\s]*)@", value):
                assert only_references(m.group(1)), f"{key}: a password literal in a URL"
            if key.startswith("AIRFLOW_CONN_"):
                conn = json.loads(interpolate(value, markers))
                fields = {**conn, **conn.get("extra", {})}
                for field, v in fields.items():
                    if SECRET_FIELD.search(field):
                        assert v in markers.values(), f"{key}.{field} is not straight from .env"

    text = VAR_REF.sub("", COMPOSE_FILE.read_text(encoding="utf-8"))
    assert "-----BEGIN" not in text
    for token in re.findall(r"[A-Za-z0-9+/=_-]{32,}", text):
        assert not (re.search(r"\d", token) and re.search(r"[a-z]", token)), (
            f"looks like a secret in docker-compose.yml: {token[:8]}..."
        )


def test_env_example_commits_no_secret() -> None:
    for key, value in read_env_file(ENV_EXAMPLE).items():
        if SECRET_NAME.search(key):
            assert value in ("", "change-me"), f".env.example holds a value for {key}"


def test_gen_env_fills_every_secret_with_working_values(generated_env: dict[str, str]) -> None:
    import paramiko
    from cryptography.fernet import Fernet

    example = read_env_file(ENV_EXAMPLE)
    assert set(generated_env) == set(example)
    assert "change-me" not in generated_env.values()
    generated = [generated_env[k] for k, v in example.items() if v == "change-me"]
    assert len(set(generated)) == len(generated), "two secrets got the same value"
    Fernet(generated_env["AIRFLOW_FERNET_KEY"].encode())

    def private_key(value: str) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key(io.StringIO(unescape_newlines(value)))

    host = private_key(generated_env["SFTP_HOST_PRIVATE_KEY"])
    assert generated_env["SFTP_HOST_PUBLIC_KEY"] == f"{host.get_name()} {host.get_base64()}"
    pipeline = private_key(generated_env["SFTP_PIPELINE_PRIVATE_KEY"])
    assert generated_env["SFTP_PIPELINE_PUBLIC_KEY"].split()[:2] == [
        pipeline.get_name(),
        pipeline.get_base64(),
    ]


def test_sftp_connection_carries_the_keys_through_json(
    services: dict[str, Any], generated_env: dict[str, str]
) -> None:
    import paramiko

    value = environment(services["airflow-worker"])[conn_env_name("govbank_sftp")]
    conn = json.loads(interpolate(value, generated_env))
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(conn["extra"]["private_key"]))
    assert generated_env["SFTP_PIPELINE_PUBLIC_KEY"].split()[1] == key.get_base64()
    assert conn["extra"]["host_key"] == generated_env["SFTP_HOST_PUBLIC_KEY"]
    assert "no_host_key_check" not in conn["extra"], "host keys are verified"


# --- the image ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_image_starts_from_airflow_3_3_2_on_the_projects_python() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms, "Dockerfile has no FROM"
    image = froms[0].split()[0]
    assert re.fullmatch(r"apache/airflow:3\.3\.2(-python3\.11)?", image), image
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "apache-airflow==3.3.2" in pyproject["project"]["dependencies"]
    assert "3.11" in pyproject["project"]["requires-python"]


def test_image_installs_from_the_lock_file() -> None:
    instructions = dockerfile_instructions()
    copies = " ".join(rest for word, rest in instructions if word == "COPY")
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "uv.lock" in copies and "pyproject.toml" in copies
    assert re.search(r"\bexport\b.*--frozen.*--no-dev", runs), "export the lock, runtime only"
    assert re.search(r"pip install\b.*-r\s+\S*requirements\.txt", runs), "install the export"
    for path in (DOCKERFILE, COMPOSE_FILE):
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in path.read_text(encoding="utf-8"), path.name
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    assert "PYTHONPATH" not in env, "govbank is installed as its wheel, not found on a path"
    assert re.search(r"\bbuild --wheel\b.*/opt/airflow/src\b", runs), "build the wheel"
    assert re.search(r"pip install\b.*--no-deps\b.*govbank-\*\.whl", runs), "install it"
    assert "AIRFLOW__CORE__LOAD_EXAMPLES=False" in env


def test_dockerignore_sends_what_the_image_copies_and_no_secret() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", ".dockerignore lists what may go in, after excluding everything"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for word, rest in dockerfile_instructions():
        if word != "COPY" or "--from" in rest:
            continue
        sources = [s for s in rest.split() if not s.startswith("--")][:-1]
        for source in sources:
            covered = any(source == a or source.startswith(a + "/") for a in allowed)
            assert covered, f"COPY {source} is excluded by .dockerignore"
            assert (ROOT / source).exists(), f"COPY {source}: missing in the repository"
    assert not allowed & {".env", ".venv", ".git", ".local", "tests"}


# --- the scripts the services run --------------------------------------------------------


def test_shell_scripts_parse_and_are_executable() -> None:
    scripts = sorted((ROOT / "docker").rglob("*.sh"))
    assert {GEN_ENV, SFTP_ENTRYPOINT, PG_INIT, ROOT / "docker" / "airflow-init.sh"} <= set(scripts)
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
        assert os.access(script, os.X_OK), f"{script.name} is not executable"


def test_airflow_init_migrates_both_databases(services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    assert init.get("user") == "0:0"
    script = (ROOT / "docker" / "airflow-init.sh").read_text(encoding="utf-8")
    assert "airflow db migrate" in script
    assert "python -m govbank migrate" in script
    assert "grant_dashboard.py" in script
    assert (ROOT / "docker" / "grant_dashboard.py").is_file()
    assert "AIRFLOW_ADMIN_PASSWORD" in environment(init)
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert "AIRFLOW_ADMIN_PASSWORD" not in environment(services[name]), name


FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
FAB_ROLES = ROOT / "docker" / "fab-roles.json"
AIRFLOW_ROLES = ROOT / "docker" / "airflow-roles.sh"


def fab_roles() -> dict[str, dict[str, set[str]]]:
    """docker/fab-roles.json as role -> resource -> actions."""
    roles: dict[str, dict[str, set[str]]] = {}
    for entry in json.loads(FAB_ROLES.read_text(encoding="utf-8")):
        roles.setdefault(entry["name"], {})[entry["resource"]] = set(entry["action"].split(","))
    return roles


def test_the_stack_runs_a_production_auth_manager(services: dict[str, Any]) -> None:
    """FAB, not the simple auth manager Airflow documents for development only."""
    for name in AIRFLOW_SERVICES | {"airflow-cli"}:
        env = environment(services[name])
        assert env.get("AIRFLOW__CORE__AUTH_MANAGER") == FAB_AUTH_MANAGER, name
        assert not [k for k in env if "SIMPLE_AUTH_MANAGER" in k], name
    module, _, cls = FAB_AUTH_MANAGER.rpartition(".")
    assert hasattr(importlib.import_module(module), cls)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert any(d.startswith("apache-airflow-providers-fab") for d in deps)


def test_airflow_init_creates_the_engineer_and_viewer_roles() -> None:
    init = (ROOT / "docker" / "airflow-init.sh").read_text(encoding="utf-8")
    assert init.index("airflow db migrate") < init.index("bash /opt/airflow/docker/airflow-roles.sh")
    script = AIRFLOW_ROLES.read_text(encoding="utf-8")
    assert "roles import" in script and "fab-roles.json" in script
    assert "users create --role Admin" in script
    roles = fab_roles()
    assert set(roles) == {"govbank_engineer", "govbank_viewer"}
    viewer, engineer = roles["govbank_viewer"], roles["govbank_engineer"]
    # both see the DAGs and the plugin's pages (Airflow's "Website" view)
    for role in (viewer, engineer):
        assert {"DAGs", "DAG Runs", "Task Instances", "Task Logs"} <= {r for r, a in role.items() if "can_read" in a}
        assert "can_read" in role["Website"]
        assert not {"Connections", "Variables", "Users", "Roles", "Config"} & set(role)
    # district staff change nothing but their own password and profile
    changes = {r for r, a in viewer.items() if a & {"can_create", "can_edit", "can_delete"}}
    assert changes == {"My Password", "My Profile"}
    # data engineers trigger runs, clear tasks and pause DAGs
    assert "can_create" in engineer["DAG Runs"]
    assert "can_edit" in engineer["Task Instances"] and "can_edit" in engineer["DAGs"]


def test_elicense_api_runs_the_reference_server(services: dict[str, Any]) -> None:
    api = services["elicense-api"]
    command = " ".join(api["command"]) if isinstance(api["command"], list) else api["command"]
    assert "python -m govbank_dev.elicense_server" in command
    assert "--demo-seed 20230615" in command
    assert "--host 0.0.0.0" in command, "the server must listen beyond the container's loopback"
    assert '--client-id "$$GOVBANK_ELICENSE_CLIENT_ID"' in command
    # the runtime image plus the dev package: the same Dockerfile, its elicense-api target
    assert api["build"]["dockerfile"] == services["airflow-worker"]["build"]["dockerfile"]
    assert api["build"]["target"] == "elicense-api"
    assert services["airflow-worker"]["build"]["target"] == "govbank"
    assert api["image"] != services["airflow-worker"]["image"], "dev tools stay out of Airflow's"
    stages = [rest.split()[-1] for word, rest in dockerfile_instructions() if word == "FROM"]
    assert {"govbank", "elicense-api"} <= set(stages)
    assert "GOVBANK_WAREHOUSE_URL" in environment(api), "its demo records come from the warehouse"


def test_sftp_service_gets_every_bank_from_the_contracts(services: dict[str, Any]) -> None:
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in services["sftp"]["volumes"]}
    assert mounts.get("./include/contracts") == "/etc/govbank/contracts"
    assert {"WZB", "OHRCB", "CCBOH", "ABCOH", "ICBCOH"} <= set(bank_codes())


# --- integration: the set-up scripts for real ----------------------------------------------


def psql_superuser() -> str:
    user = os.environ.get("GOVBANK_TEST_PG_SUPERUSER", "postgres")
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    probe = subprocess.run(
        ["psql", "-U", user, "-d", "postgres", "-tAc", "select 1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(f"no local PostgreSQL as {user}: {probe.stderr.strip()}")
    return user


@pytest.mark.integration
def test_postgres_init_separates_airflow_warehouse_and_dashboard() -> None:
    import psycopg

    from govbank.warehouse import db

    superuser = psql_superuser()
    tag = secrets.token_hex(4)
    names = {
        "AIRFLOW_DB_NAME": f"ct_airflow_{tag}",
        "AIRFLOW_DB_USER": f"ct_airflow_{tag}",
        "AIRFLOW_DB_PASSWORD": secrets.token_hex(12),
        "WAREHOUSE_DB_NAME": f"ct_govbank_{tag}",
        "WAREHOUSE_DB_USER": f"ct_writer_{tag}",
        "WAREHOUSE_DB_PASSWORD": secrets.token_hex(12),
        "DASHBOARD_DB_USER": f"ct_dashboard_{tag}",
        "DASHBOARD_DB_PASSWORD": secrets.token_hex(12),
    }
    host = os.environ.get("GOVBANK_TEST_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("PGPORT", "5432"))

    def psql(sql: str) -> None:
        subprocess.run(["psql", "-U", superuser, "-d", "postgres", "-qc", sql], check=True)

    def connect(user: str, password: str, dbname: str) -> psycopg.Connection:
        return psycopg.connect(
            host=host, port=port, user=user, password=password, dbname=dbname, autocommit=True
        )

    env = {**os.environ, **names, "POSTGRES_USER": superuser, "POSTGRES_DB": "postgres"}
    try:
        result = subprocess.run(
            ["bash", str(PG_INIT)], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        writer_url = (
            f"postgresql+psycopg://{names['WAREHOUSE_DB_USER']}:{names['WAREHOUSE_DB_PASSWORD']}"
            f"@{host}:{port}/{names['WAREHOUSE_DB_NAME']}"
        )
        db.upgrade(writer_url)
        grant = load_module(ROOT / "docker" / "grant_dashboard.py", "grant_dashboard")
        grant.grant_dashboard(writer_url, names["DASHBOARD_DB_USER"])
        grant.grant_dashboard(writer_url, names["DASHBOARD_DB_USER"])  # idempotent

        with connect(
            names["DASHBOARD_DB_USER"], names["DASHBOARD_DB_PASSWORD"], names["WAREHOUSE_DB_NAME"]
        ) as conn:
            conn.execute("SELECT count(*) FROM govbank.mart_kpi").fetchone()
            conn.execute("SELECT count(*) FROM govbank.dim_outlet").fetchone()
            for table in ("fact_elicense_biz", "etl_reject", "etl_file"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"SELECT 1 FROM govbank.{table}")
            with pytest.raises(
                (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)
            ):
                conn.execute("DELETE FROM govbank.mart_kpi")
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            connect(
                names["AIRFLOW_DB_USER"], names["AIRFLOW_DB_PASSWORD"], names["WAREHOUSE_DB_NAME"]
            ).close()
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            connect(
                names["WAREHOUSE_DB_USER"], names["WAREHOUSE_DB_PASSWORD"], names["AIRFLOW_DB_NAME"]
            ).close()
    finally:
        for key in ("AIRFLOW_DB_NAME", "WAREHOUSE_DB_NAME"):
            psql(f'DROP DATABASE IF EXISTS "{names[key]}" WITH (FORCE)')
        for key in ("DASHBOARD_DB_USER", "WAREHOUSE_DB_USER", "AIRFLOW_DB_USER"):
            psql(f'DROP ROLE IF EXISTS "{names[key]}"')


NAMESPACE_SETUP = """
set -euo pipefail
T={work}
mkdir -p "$T/host-etc" "$T/etc" "$T/srv" "$T/varlib"
chmod 755 "$T/etc" "$T/srv" "$T/varlib"
# A private /etc as in a fresh image: our own account files (no one else's accounts or
# locks), the rest linked to this machine's /etc.
mount --bind /etc "$T/host-etc"
for entry in "$T"/host-etc/* "$T"/host-etc/.[!.]*; do
    [[ -e $entry || -L $entry ]] || continue
    ln -s "$entry" "$T/etc/${{entry##*/}}"
done
rm -f "$T"/etc/{{passwd,group,shadow,gshadow,subuid,subgid,ssh}} "$T"/etc/*.lock
cp -a "$T/host-etc/ssh" "$T/etc/ssh"
touch "$T/etc/subuid" "$T/etc/subgid"
awk -F: '$3 < 1000 || $3 == 65534' "$T/host-etc/passwd" > "$T/etc/passwd"
awk -F: '$3 < 1000 || $3 == 65534' "$T/host-etc/group" > "$T/etc/group"
awk -F: 'NR == FNR {{ keep[$1]; next }} $1 in keep' "$T/etc/passwd" "$T/host-etc/shadow" \
    > "$T/etc/shadow"
awk -F: 'NR == FNR {{ keep[$1]; next }} $1 in keep' "$T/etc/group" "$T/host-etc/gshadow" \
    > "$T/etc/gshadow"
chmod 640 "$T/etc/shadow" "$T/etc/gshadow"
mount --bind "$T/etc" /etc
mount --bind "$T/srv" /srv
mount --bind "$T/varlib" /var/lib
cp {sshd_config} /etc/ssh/sshd_config
mkdir -p /etc/govbank
cp -r {contracts} /etc/govbank/contracts
cp -r {bank_keys} /etc/govbank/bank-keys
exec {entrypoint} -p {port} -o ListenAddress=127.0.0.1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SftpServer:
    """docker/sftp/entrypoint.sh in a private mount namespace: /etc, /srv and /var/lib
    are the test's own folders there, as a container's would be."""

    def __init__(self, state: Path, env: Mapping[str, str], bank_keys: Path) -> None:
        self.state, self.port = state, free_port()
        work = state / f"run-{secrets.token_hex(3)}"
        work.mkdir()
        for shared in ("srv", "varlib"):  # the volumes outlive a container
            (state / shared).mkdir(exist_ok=True)
            (work / shared).symlink_to(state / shared)
        script = NAMESPACE_SETUP.format(
            work=work,
            sshd_config=ROOT / "docker" / "sftp" / "sshd_config",
            contracts=ROOT / "include" / "contracts",
            bank_keys=bank_keys,
            entrypoint=SFTP_ENTRYPOINT,
            port=self.port,
        )
        self.log = (work / "log").open("w+")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--fork", "bash", "-c", script],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the SFTP entrypoint exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    if s.recv(64).startswith(b"SSH-2.0"):
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"sshd did not start: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.log.close()

    def client(self, login: str, key: Any, host_key: str | None = None) -> Any:
        import paramiko

        transport = paramiko.Transport(("127.0.0.1", self.port))
        transport.connect(username=login, pkey=key)
        if host_key is not None:
            seen = transport.get_remote_server_key()
            assert f"{seen.get_name()} {seen.get_base64()}" == host_key, "host key differs"
        return paramiko.SFTPClient.from_transport(transport)

    def demo_key(self, bank: str) -> Any:
        import paramiko

        return paramiko.Ed25519Key.from_private_key_file(
            str(self.state / "varlib" / "govbank-sftp" / "bank-keys" / bank)
        )


@pytest.mark.integration
def test_sftp_entrypoint_jails_each_bank_and_lets_the_pipeline_see_all(
    services: dict[str, Any], generated_env: dict[str, str], tmp_path: Path
) -> None:
    import paramiko

    sshd = Path("/usr/sbin/sshd")
    if os.geteuid() != 0 or shutil.which("unshare") is None or not sshd.exists():
        pytest.skip("needs root, unshare and openssh-server")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("mount namespaces are not allowed here")

    sftp_env = {k: interpolate(v, generated_env) for k, v in environment(services["sftp"]).items()}
    worker_env = environment(services["airflow-worker"])
    conn = json.loads(interpolate(worker_env[conn_env_name("govbank_sftp")], generated_env))
    pipeline_key = paramiko.Ed25519Key.from_private_key(io.StringIO(conn["extra"]["private_key"]))

    # a bank that sent its own public key (docker/sftp/bank-keys/<BANK>.pub)
    bank_keys = tmp_path / "bank-keys"
    bank_keys.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ohrcb")], check=True
    )
    own_key = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "ohrcb"))
    (bank_keys / "OHRCB.pub").write_text(f"{own_key.get_name()} {own_key.get_base64()} it@ohrcb\n")

    state = tmp_path / "state"
    state.mkdir()
    server = SftpServer(state, sftp_env, bank_keys)
    try:
        pipeline = server.client(conn["login"], pipeline_key, host_key=conn["extra"]["host_key"])
        assert sorted(pipeline.listdir("/")) == bank_codes()

        wzb = server.client("WZB", server.demo_key("WZB"))
        assert sorted(wzb.listdir("/")) == ["inbox", "outbox"]
        wzb.putfo(io.BytesIO(b"a|b\n1|2\n"), "/inbox/OUTLET_WZB_20230615.csv")
        with pytest.raises(PermissionError):
            wzb.putfo(io.BytesIO(b"x"), "/outbox/forged.receipt.json")
        with pytest.raises(FileNotFoundError):
            wzb.listdir("/OHRCB")

        assert pipeline.listdir("/WZB/inbox") == ["OUTLET_WZB_20230615.csv"]
        with pipeline.open("/WZB/inbox/OUTLET_WZB_20230615.csv") as f:
            assert f.read() == b"a|b\n1|2\n"
        pipeline.putfo(io.BytesIO(b'{"status": "accepted"}'), "/WZB/outbox/.part")
        pipeline.posix_rename(
            "/WZB/outbox/.part", "/WZB/outbox/OUTLET_WZB_20230615.csv.receipt.json"
        )
        pipeline.remove("/WZB/inbox/OUTLET_WZB_20230615.csv")
        assert wzb.listdir("/inbox") == []
        with wzb.open("/outbox/OUTLET_WZB_20230615.csv.receipt.json") as f:
            assert json.loads(f.read()) == {"status": "accepted"}
        with pytest.raises(PermissionError):
            wzb.remove("/outbox/OUTLET_WZB_20230615.csv.receipt.json")

        ohrcb = server.client("OHRCB", own_key)
        assert sorted(ohrcb.listdir("/")) == ["inbox", "outbox"]
        assert not (state / "varlib" / "govbank-sftp" / "bank-keys" / "OHRCB").exists()
        with pytest.raises(paramiko.AuthenticationException):
            server.client("OHRCB", server.demo_key("WZB"))
        for client in (pipeline, wzb, ohrcb):
            client.get_channel().get_transport().close()
    finally:
        server.stop()

    # a recreated container: fresh /etc, the same volumes; owners and keys survive
    uids = (state / "varlib" / "govbank-sftp" / "uids").read_text()
    receipt = state / "srv" / "sftp" / "WZB" / "outbox" / "OUTLET_WZB_20230615.csv.receipt.json"
    owner = receipt.stat().st_uid
    server = SftpServer(state, sftp_env, bank_keys)
    try:
        assert (state / "varlib" / "govbank-sftp" / "uids").read_text() == uids
        assert receipt.stat().st_uid == owner
        wzb = server.client("WZB", server.demo_key("WZB"), host_key=conn["extra"]["host_key"])
        assert wzb.listdir("/outbox") == ["OUTLET_WZB_20230615.csv.receipt.json"]
        wzb.get_channel().get_transport().close()
    finally:
        server.stop()


@pytest.mark.integration
def test_fab_roles_on_a_real_airflow() -> None:
    """docker/airflow-roles.sh on a real Airflow with the FAB auth manager (SQLite, the
    API server on loopback): district staff read the plugin's pages but may not trigger
    or clear; a data engineer may."""
    background.result(fab_roles_checked)


@background.job
def fab_roles_checked(tmp_path: Path) -> None:
    """The Airflow set-up, its API server and the checks against it (started early, see
    tests/background.py)."""
    import requests

    home = tmp_path / "airflow"
    home.mkdir()
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in background.environ().items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "GOVBANK_"))}
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__AUTH_MANAGER=FAB_AUTH_MANAGER,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
        AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
        GOVBANK_LOCAL_DIR=str(tmp_path / "local"),
        GOVBANK_PSEUDONYM_KEY=secrets.token_hex(16),
        AIRFLOW_ADMIN_USER="admin",
        AIRFLOW_ADMIN_PASSWORD="-" + secrets.token_urlsafe(12),  # a leading "-" once broke the script
    )

    def run(*args: str) -> str:
        done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    run("airflow", "db", "migrate")
    run("python", "-m", "govbank", "migrate")
    run("bash", str(AIRFLOW_ROLES))
    # a password may start with "-": given as --password=..., not taken for an option
    passwords = {"district": "-" + secrets.token_urlsafe(12), "engineer": secrets.token_urlsafe(12)}
    for user, role in (("district", "govbank_viewer"), ("engineer", "govbank_engineer")):
        run("airflow", "users", "create", "--role", role, "--username", user, f"--password={passwords[user]}",
            "--firstname", user, "--lastname", "govbank", "--email", f"{user}@localhost")  # fmt: skip
    run("airflow", "dags", "reserialize")
    port = free_port()
    server = subprocess.Popen(
        ["airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(
            f"{base}/api/v2/monitor/health", "the API server", timeout=300, interval=2,
            alive=lambda: None if server.poll() is None else "the API server exited",
        )

        def session(user: str) -> requests.Session:
            r = requests.post(f"{base}/auth/token", json={"username": user, "password": passwords[user]}, timeout=30)
            assert r.status_code in (200, 201), r.text
            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
            return s

        dag = f"{base}/api/v2/dags/govbank_marts"
        for user, may_change in (("district", False), ("engineer", True)):
            s = session(user)
            for page in ("/govbank/dashboard/", "/govbank/data-docs/files", "/api/v2/dags/govbank_marts"):
                assert s.get(base + page, timeout=60).status_code == 200, (user, page)
            trigger = s.post(f"{dag}/dagRuns", json={"logical_date": None}, timeout=60)
            clear = s.post(f"{dag}/clearTaskInstances", json={"dry_run": True}, timeout=60)
            expected = 200 if may_change else 403
            assert (trigger.status_code, clear.status_code) == (expected, expected), (user, trigger.text)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
